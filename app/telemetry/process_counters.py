"""Counters of processes that come and go: :class:`CumulativeSum` (a sum of per-member
cumulative counters that never goes backwards when members leave), one process's RSS and
CPU seconds (:func:`read_rss_cpu`), and a network namespace's byte counters
(:func:`parse_net_dev`, :func:`net_totals`). Used by the process-tree, Serve and managed
actor sources."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import psutil

NAN = math.nan

#: Interfaces left out of a namespace's network counters (traffic inside the container).
IGNORED_INTERFACES: frozenset[str] = frozenset({"lo"})


class CumulativeSum:
    """A sum of per-member cumulative counters that never goes backwards when members
    leave (a process exits, a network namespace goes away).

    ``update(live)`` takes the current value of every live member (``nan`` = could
    not be read now: its last seen value stands in). A member that is no longer in
    ``live`` has left: its last seen value moves into a "departed" total for good.

    Worked example::

        s = CumulativeSum()
        s.update({"a": 1.0, "b": 2.0})  # → 3.0
        s.update({"a": 1.5})            # b left: 1.5 + 2.0 (b's last) → 3.5
        s.update({"a": nan, "c": 0.5})  # a unreadable: 1.5 + 0.5 + 2.0 → 4.0

    Until any member was ever read the value is ``nan``. The result is also clamped to
    never fall below the previous one.
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, float] = {}
        self._departed = 0.0
        self._total = NAN

    def update(self, live: Mapping[Hashable, float]) -> float:
        for key in [k for k in self._last if k not in live]:
            self._departed += self._last.pop(key)
        for key, value in live.items():
            if math.isnan(value):
                continue
            self._last[key] = max(value, self._last.get(key, 0.0))
        if not self._last and math.isnan(self._total) and self._departed == 0.0:
            return NAN
        total = self._departed + sum(self._last.values())
        self._total = total if math.isnan(self._total) else max(self._total, total)
        return self._total

    @property
    def value(self) -> float:
        return self._total


def read_rss_cpu(procs: dict[int, psutil.Process], pid: int) -> tuple[float, float]:
    """(RSS bytes, user + system CPU seconds) of ``pid``, its ``psutil.Process`` kept in
    ``procs`` between polls. Raises ``psutil.Error`` (and forgets the pid) when it cannot
    be read, ``TypeError``/``ValueError`` when ``pid`` is not a pid."""
    try:
        proc = procs.get(pid) or psutil.Process(pid)
        procs[pid] = proc
        with proc.oneshot():
            t = proc.cpu_times()
            return float(proc.memory_info().rss), float(t.user + t.system)
    except psutil.Error:
        procs.pop(pid, None)
        raise


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/<pid>/net/dev`` → ``{interface: (rx_bytes, tx_bytes)}``.

    Example::

        Inter-|   Receive                            |  Transmit
         face |bytes    packets errs drop fifo frame compressed multicast|bytes ...
            lo:     100       1    0    0    0     0          0         0      100 ...
          eth0:    5000      40    0    0    0     0          0         0     7000 ...

    → ``{"lo": (100, 100), "eth0": (5000, 7000)}`` (receive bytes is the first column
    after the colon, transmit bytes the ninth). A malformed line raises ValueError.
    """
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue  # the two header lines
        cols = rest.split()
        if len(cols) < 9:
            raise ValueError(f"expected 16 counters after the interface name, got {line!r}")
        try:
            out[name.strip()] = (int(cols[0]), int(cols[8]))
        except ValueError:
            raise ValueError(f"expected integer counters in {line!r}") from None
    return out


def net_totals(
    interfaces: Mapping[str, tuple[int, int]], ignored: frozenset[str] = IGNORED_INTERFACES
) -> tuple[float, float]:
    """``(rx, tx)`` summed over the interfaces not in ``ignored``.

    Example: ``{"lo": (100, 100), "eth0": (5000, 7000), "eth1": (1, 2)}`` → ``(5001.0,
    7002.0)``; ``{"lo": (100, 100)}`` → ``(0.0, 0.0)``.
    """
    rx = sum(v[0] for k, v in interfaces.items() if k not in ignored)
    tx = sum(v[1] for k, v in interfaces.items() if k not in ignored)
    return float(rx), float(tx)
