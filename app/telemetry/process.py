"""Process-tree source: a "container" is a root process and all its descendants (psutil).

This is an I/O edge. The parsing and arithmetic live in small pure helpers
(:func:`parse_net_dev`, :func:`classify_exit`, :class:`CumulativeSum`) that are tested
on plain values; where a process's cgroup is and how its files read is
:mod:`app.edges.cgroup_layout` and :mod:`app.edges.cgroupfs`.

What one :class:`~app.core.sample.Sample` of a target holds
-------------------------------------------------------------
The tree is the root process plus every process whose parent chain leads to it, as
seen in one scan of ``/proc`` per poll. Each process is read inside ``oneshot()``.

``memory_usage_bytes``
    Σ RSS. Pages shared between processes (libraries, copy-on-write after ``fork``)
    are counted once per process, so this over-counts a forking tree — as ``ps`` does.
``memory_working_set_bytes``
    Σ (RSS − shared) = Σ RssAnon: the anonymous memory that cannot be dropped without
    swap (``shared`` in ``/proc/<pid>/statm`` is RssFile + RssShmem). Chosen over USS
    because USS needs ``/proc/<pid>/smaps`` (tens of ms per big process); RSS − shared
    comes from the ``statm`` read we already do.
``memory_limit_bytes``
    The memory limit of the root process's cgroup: the smallest ``memory.limit_in_bytes``
    (v1) or ``memory.max`` (v2) on the path from its cgroup up to the hierarchy's mount
    point (a parent's limit bounds its children). ``inf`` when no memory controller is
    mounted or no directory on the path has a limit; ``nan`` when the cgroup is not
    visible from here (another cgroup namespace) or not readable. ``RLIMIT_AS`` /
    ``RLIMIT_DATA`` are *not* used: they bound virtual size, which is not comparable
    to RSS (a JVM or Go program maps far more than it touches).
``cpu_quota_cores``
    Likewise the tightest CFS quota on the cgroup path (``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` on v1, ``cpu.max`` on v2); ``inf`` when there is none.
``cpu_usage_s_total``
    Σ (user + system) of the live processes plus the last value seen of every process
    that has left the tree (exited, or re-parented away), so the counter never goes
    backwards (see :class:`CumulativeSum`). The CPU a process used between the last
    poll and its exit is not seen. ``children_user``/``children_system`` are not added
    (they would count a reaped child twice). The counter carries on across a restart
    of a ``match`` target: the container is the service, not one pid.
``io_read_bytes_total`` / ``io_write_bytes_total``
    Σ ``read_bytes`` / ``write_bytes`` of ``/proc/<pid>/io`` (what reached the block
    layer, not the page cache), cumulative in the same way; ``nan`` when no process of
    the tree may be read (``/proc/<pid>/io`` needs ptrace rights).
``net_rx_bytes_total`` / ``net_tx_bytes_total``
    psutil has no per-process network counters. When the root process is in a network
    namespace of its own (``/proc/<pid>/ns/net`` differs from ours), the namespace's
    interfaces *are* the container's: the sum over ``/proc/<pid>/net/dev`` without
    ``lo``. Otherwise (it shares our namespace, so the counters would be the whole
    host's) they are ``nan``.
``oom_kills_total``, ``memory_failcnt_total``, throttling
    ``nan``: a process tree does not own its cgroup (it may share it with others), so
    the cgroup's counters are not the container's. OOM kills are reported as events.

:meth:`ProcessTreeSource.last_info` gives per container what a Sample has no field
for: ``open_files`` (Σ open file descriptors, sockets and pipes included, as
``RLIMIT_NOFILE`` counts them), ``nofile_limit``, the pids, the cgroup and namespace.

Events
------
When the root process of a target ends, one event is reported (once):

* our child (``ProcessTarget.popen``): its return code, via :func:`classify_exit`:
  0 → ``success``, > 0 → ``exit_nonzero`` ("exit code 3"), −9 → ``killed``
  ("SIGKILL (the OOM killer or an operator)"), or ``oom_kill`` when the memory cgroup's
  ``oom_kill`` counter (v1 ``memory.oom_control``, v2 ``memory.events``) rose since
  the previous poll, other signals → ``killed`` with the signal's name.
* not our child, caught as a zombie (its parent has not reaped it yet): the exit
  status the kernel keeps in ``/proc/<pid>/stat`` (field 52), classified the same way.
* not our child and already reaped: the exit code is unknowable (only the parent gets
  it). If the cgroup's ``oom_kill`` counter rose since the previous poll, that is an
  ``oom_kill`` event; otherwise **no failure event is invented** — a graceful
  shutdown must not be learned as a failure. The container gets an ``errors`` entry
  saying so, and when a ``match`` target finds a new process, a ``restart`` event
  ("pid 10 → pid 12") records that the service was replaced.

A descendant (not the root) that vanishes while the cgroup's ``oom_kill`` counter
rises gives one ``oom_kill`` event per kill (at most one per vanished process).
Caveat: a cgroup shared with processes outside the tree can make its counter rise
for someone else's kill; give a workload a cgroup of its own (and the cgroup source)
when attribution must be exact.

A process that vanishes or is denied mid-read never makes :meth:`poll` raise: it
drops out of the sum (its counters are kept), and a target whose root cannot be read
gets an ``errors`` entry.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch
from prescale.app.edges.cgroup_layout import (
    CgroupMount,
    Version,
    locate_cgroup,
    parse_mountinfo,
    parse_proc_cgroup,
)
from prescale.app.edges.cgroupfs import (
    cpu_quota_cores_at,
    memory_limit_at,
    oom_kills_at,
    tightest_on_path,
)

NAN = math.nan
INF = math.inf

#: Interfaces left out of a namespace's network counters (traffic inside the container).
IGNORED_INTERFACES: frozenset[str] = frozenset({"lo"})

KILLED_DETAIL = "SIGKILL (the OOM killer or an operator)"

# --------------------------------------------------------------------------- target


@dataclass(frozen=True)
class ProcessTarget:
    """One container to watch: a root process (by ``pid`` or command-line regex) and
    its descendants.

    * ``pid``: that process; when it ends the target is gone for good.
    * ``match``: a regex searched (``re.search``) in the command line joined by
      spaces; the oldest matching process is the root (a service's master rather than
      its workers), and when it is gone the regex is matched again, so a restarted
      service is followed.
    * ``popen``: the :class:`subprocess.Popen` of a process *we* started; its return
      code then classifies the exit. ``pid`` may be left out (it is ``popen.pid``).
    * ``app``: the application it belongs to (default: ``name``).

    Exactly one of ``pid`` / ``match`` (``popen`` counts as ``pid``); a bad regex or
    pid raises :class:`ValueError` naming the target and the value.
    """

    name: str
    pid: int | None = None
    match: str | None = None
    app: str = ""
    popen: subprocess.Popen[Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ProcessTarget.name must be a non-empty string, got {self.name!r}")
        who = f"ProcessTarget {self.name!r}"
        if self.popen is not None:
            if self.match is not None:
                raise ValueError(f"{who}: give popen or match, not both")
            if self.pid is None:
                object.__setattr__(self, "pid", self.popen.pid)
            elif self.pid != self.popen.pid:
                raise ValueError(f"{who}: pid {self.pid} is not popen's pid {self.popen.pid}")
        if (self.pid is None) == (self.match is None):
            raise ValueError(
                f"{who}: give exactly one of pid or match (got pid={self.pid!r}, "
                f"match={self.match!r})"
            )
        if self.pid is not None and (
            isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid <= 0
        ):
            raise ValueError(f"{who}: pid must be a positive integer, got {self.pid!r}")
        if self.match is not None:
            if not isinstance(self.match, str) or not self.match:
                raise ValueError(f"{who}: match must be a non-empty regex, got {self.match!r}")
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"{who}: bad regex in match {self.match!r}: {exc}") from None
        if not isinstance(self.app, str):
            raise ValueError(f"{who}: app must be a string, got {self.app!r}")


# --------------------------------------------------------------------------- pure helpers


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


def classify_exit(
    returncode: int | None, oom_kills_delta: int = 0, how: str = ""
) -> tuple[EventKind, str] | None:
    """The event for a root process that ended, or None when nothing honest can be said.

    ``returncode`` is as :attr:`subprocess.Popen.returncode` (−N = killed by signal N;
    None = unknown); ``oom_kills_delta`` is the rise of its memory cgroup's
    ``oom_kill`` counter since the previous poll; ``how`` is appended to the detail.

    Worked examples:

    * ``(0, 0)`` → ``(success, "exit code 0")``
    * ``(3, 0)`` → ``(exit_nonzero, "exit code 3")``; ``(3, 1)`` the same (it exited
      by itself, so the kill was someone else's)
    * ``(-9, 0)`` → ``(killed, "SIGKILL (the OOM killer or an operator)")``
    * ``(-9, 1)`` → ``(oom_kill, "SIGKILL; memory cgroup oom_kill counter +1")``
    * ``(-15, 2)`` → ``(killed, "SIGTERM")``
    * ``(None, 1)`` → ``(oom_kill, "exit code unknown; memory cgroup oom_kill counter
      +1")``
    * ``(None, 0)`` → ``None``
    """
    suffix = f" ({how})" if how else ""
    if returncode is None:
        if oom_kills_delta > 0:
            return (
                EventKind.OOM_KILL,
                f"exit code unknown; memory cgroup oom_kill counter +{oom_kills_delta}{suffix}",
            )
        return None
    if returncode == 0:
        return EventKind.SUCCESS, f"exit code 0{suffix}"
    if returncode > 0:
        return EventKind.EXIT_NONZERO, f"exit code {returncode}{suffix}"
    signum = -returncode
    if signum == signal.SIGKILL:
        if oom_kills_delta > 0:
            return (
                EventKind.OOM_KILL,
                f"SIGKILL; memory cgroup oom_kill counter +{oom_kills_delta}{suffix}",
            )
        return EventKind.KILLED, f"{KILLED_DETAIL}{suffix}"
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return EventKind.KILLED, f"{name}{suffix}"


def parse_zombie_exit_status(stat_text: str) -> int | None:
    """The exit code of a zombie from ``/proc/<pid>/stat`` (field 52, ``exit_code``,
    a ``waitpid`` status; Linux ≥ 3.5), as a Popen-style return code; None when the
    process is not a zombie or the field is missing.

    Example: a zombie (state ``Z``) whose field 52 is ``768`` (= 3 << 8) → ``3``;
    ``9`` (killed by SIGKILL) → ``-9``.
    """
    _, sep, rest = stat_text.rpartition(")")  # the command name may contain spaces and ')'
    if not sep:
        return None
    fields = rest.split()  # fields[0] is field 3 (state), so field N is fields[N - 3]
    if not fields or fields[0] != "Z" or len(fields) < 50:
        return None
    try:
        status = int(fields[49])
    except ValueError:
        return None
    return os.waitstatus_to_exitcode(status)


# --------------------------------------------------------------------------- I/O helpers


def _try(read: Callable[[], Any]) -> Any:
    """``read()``, or None when access is denied (a vanished process still raises)."""
    try:
        return read()
    except psutil.AccessDenied:
        return None


# --------------------------------------------------------------------------- state


ProcKey = tuple[int, float]  # (pid, create_time): a pid can be reused, the pair cannot


@dataclass
class _CgroupPlace:
    memory: tuple[Version, Path, Path] | None | Literal["hidden"]
    cpu: tuple[Version, Path, Path] | None | Literal["hidden"]


@dataclass
class _State:
    root: psutil.Process | None = None
    root_key: ProcKey | None = None
    ended: bool = False  # the current root ended and was reported
    gone_note: str = ""  # why there is no sample (errors entry while no root runs)
    cpu: CumulativeSum = field(default_factory=CumulativeSum)
    io_read: CumulativeSum = field(default_factory=CumulativeSum)
    io_write: CumulativeSum = field(default_factory=CumulativeSum)
    net_rx: CumulativeSum = field(default_factory=CumulativeSum)
    net_tx: CumulativeSum = field(default_factory=CumulativeSum)
    tree: set[ProcKey] = field(default_factory=set)
    oom_place: tuple[Version, Path] | None = None
    oom_last: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- source


class ProcessTreeSource:
    """Samples of process trees, and the events of their root processes (module doc).

    Example::

        source = ProcessTreeSource([ProcessTarget("web", match=r"gunicorn: master"),
                                    ProcessTarget("job", popen=subprocess.Popen([...]))])
        batch = source.poll()       # samples, events (killed, exit_nonzero, ...), errors
        source.last_info()["web"]   # {"open_files": 42, "pids": [...], ...}
    """

    kind = "process"

    def __init__(
        self, targets: list[ProcessTarget], *, clock: Callable[[], float] = time.time
    ) -> None:
        seen: set[str] = set()
        for t in targets:
            if not isinstance(t, ProcessTarget):
                raise ValueError(f"targets must be ProcessTarget objects, got {t!r}")
            if t.name in seen:
                raise ValueError(f"two process targets are named {t.name!r}")
            seen.add(t.name)
        self.targets = list(targets)
        self.clock = clock
        self._regex = {t.name: re.compile(t.match) for t in targets if t.match is not None}
        self._states = {t.name: _State() for t in targets}
        self._mounts: list[CgroupMount] | None = None
        self._scan: list[tuple[float, int, str]] | None = None
        try:
            self._own_netns: str | None = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = None

    # -- Source protocol

    def poll(self) -> SourceBatch:
        """One sample per target whose root runs; exit/restart/OOM events since the last
        poll; ``errors[name]`` for a target with no (readable) root process."""
        batch = SourceBatch()
        children = self._children_map()
        self._scan = None  # command lines: read lazily, at most once per poll
        for target in self.targets:
            state = self._states[target.name]
            try:
                self._poll_one(target, state, children, batch)
            except (psutil.Error, OSError, ValueError) as exc:
                batch.errors[target.name] = f"{type(exc).__name__}: {exc}"
        return batch

    def close(self) -> None:
        self._states = {t.name: _State() for t in self.targets}

    def last_info(self) -> dict[str, dict[str, Any]]:
        """Per container, what the last successful poll saw beyond a Sample:
        ``root_pid``, ``pids`` (sorted), ``processes``, ``open_files`` (Σ open file
        descriptors), ``nofile_limit`` (the root's soft ``RLIMIT_NOFILE``; inf =
        unlimited), ``memory_cgroup`` (directory or None), ``netns`` ("own", "shared"
        or "unknown") and ``unreadable`` (processes whose memory could not be read)."""
        return {name: dict(s.info) for name, s in self._states.items() if s.info}

    # -- one target

    def _poll_one(
        self,
        target: ProcessTarget,
        state: _State,
        children: dict[int, list[psutil.Process]],
        batch: SourceBatch,
    ) -> None:
        name, app = target.name, target.app or target.name

        # 1. Did the root end since the previous poll?
        if not state.ended:
            ended, code, how = self._root_ended(target, state)
            if ended:
                state.ended = True
                self._report_end(target, state, code, how, batch)

        # 2. Find a (new) root when there is none.
        if state.root is None or state.ended:
            if target.match is not None:
                if self._scan is None:
                    self._scan = self._cmdlines()  # once per poll, for all match targets
                found = self._resolve(self._regex[name], self._scan)
                if found is None:
                    batch.errors[name] = (state.gone_note + "; " if state.gone_note else "") + (
                        f"no running process matches {target.match!r}"
                    )
                    return
                key = (found.pid, found.create_time())
                if state.root_key is not None and key != state.root_key:
                    batch.events.append(Event(
                        name, float(self.clock()), EventKind.RESTART,
                        f"pid {state.root_key[0]} → pid {found.pid} (matched {target.match!r})",
                        app,
                    ))
                self._adopt(state, found, key)
            elif state.ended:
                batch.errors[name] = state.gone_note
                return
            else:
                assert target.pid is not None
                try:
                    proc = psutil.Process(target.pid)
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.ZombieProcess(target.pid)
                except psutil.NoSuchProcess:
                    batch.errors[name] = f"no running process with pid {target.pid}"
                    return
                self._adopt(state, proc, (proc.pid, proc.create_time()))

        # 3. Read the tree.
        self._sample(target, state, children, batch)

    @staticmethod
    def _adopt(state: _State, proc: psutil.Process, key: ProcKey) -> None:
        state.root, state.root_key, state.ended, state.gone_note = proc, key, False, ""
        state.oom_place, state.oom_last = None, None

    def _root_ended(self, target: ProcessTarget, state: _State) -> tuple[bool, int | None, str]:
        """``(ended, return code or None, how the code is known)``."""
        if target.popen is not None:
            code = target.popen.poll()
            if code is not None:
                return True, code, ""
            return False, None, ""
        root = state.root
        if root is None:
            return False, None, ""
        try:
            if not root.is_running():
                return True, None, "not our child"
            if root.status() != psutil.STATUS_ZOMBIE:
                return False, None, ""
        except psutil.NoSuchProcess:
            return True, None, "not our child"
        try:
            stat = Path(f"/proc/{root.pid}/stat").read_text()
        except OSError:
            return True, None, "not our child"
        code = parse_zombie_exit_status(stat)
        return True, code, "read from the zombie's /proc stat" if code is not None else (
            "not our child")

    def _report_end(
        self, target: ProcessTarget, state: _State, code: int | None, how: str, batch: SourceBatch
    ) -> None:
        name, app = target.name, target.app or target.name
        pid = state.root_key[0] if state.root_key else target.pid
        delta = self._oom_delta(state)
        verdict = classify_exit(code, delta, how)
        if verdict is not None:
            kind, detail = verdict
            batch.events.append(Event(name, float(self.clock()), kind, f"pid {pid}: {detail}",
                                      app))
        if code is None:
            state.gone_note = (
                f"process {pid} exited (exit code unknown: not our child"
                + ("; reported as oom_kill" if verdict else "; no failure event") + ")"
            )
        else:
            state.gone_note = f"process {pid} exited ({verdict[1] if verdict else code})"
        state.tree = set()

    def _oom_delta(self, state: _State) -> int:
        """Rise of the root's memory cgroup oom_kill counter since the previous poll."""
        if state.oom_place is None or state.oom_last is None:
            return 0
        try:
            now = oom_kills_at(*state.oom_place)
        except (OSError, ValueError):
            return 0
        if now is None:
            return 0
        delta = now - state.oom_last
        state.oom_last = now
        return max(0, delta)

    # -- process table

    @staticmethod
    def _children_map() -> dict[int, list[psutil.Process]]:
        out: dict[int, list[psutil.Process]] = {}
        for p in psutil.process_iter(["ppid"]):
            ppid = p.info.get("ppid")
            if ppid is not None:
                out.setdefault(ppid, []).append(p)
        return out

    @staticmethod
    def _cmdlines() -> list[tuple[float, int, str]]:
        """``(create_time, pid, command line)`` of every other live process, oldest first."""
        me = os.getpid()
        out = []
        for p in psutil.process_iter(["cmdline", "create_time", "status"]):
            info = p.info
            if p.pid == me or info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            cmd = info.get("cmdline")
            if not cmd or info.get("create_time") is None:
                continue
            out.append((info["create_time"], p.pid, " ".join(cmd)))
        out.sort()
        return out

    @staticmethod
    def _resolve(
        regex: re.Pattern[str], cmdlines: list[tuple[float, int, str]]
    ) -> psutil.Process | None:
        for _, pid, cmd in cmdlines:
            if regex.search(cmd):
                try:
                    proc = psutil.Process(pid)
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        return proc
                except psutil.NoSuchProcess:
                    continue
        return None

    # -- sampling

    def _sample(
        self,
        target: ProcessTarget,
        state: _State,
        children: dict[int, list[psutil.Process]],
        batch: SourceBatch,
    ) -> None:
        name, app = target.name, target.app or target.name
        root = state.root
        assert root is not None and state.root_key is not None
        procs = [root]
        seen = {root.pid}
        i = 0
        while i < len(procs):
            for child in children.get(procs[i].pid, ()):
                if child.pid not in seen:
                    seen.add(child.pid)
                    procs.append(child)
            i += 1

        ts = float(self.clock())
        cpu: dict[ProcKey, float] = {}
        rd: dict[ProcKey, float] = {}
        wr: dict[ProcKey, float] = {}
        rss = anon = 0.0
        mem_read = unreadable = fds = 0
        pids: list[int] = []
        for p in procs:
            try:
                key: ProcKey = (p.pid, p.create_time())
                with p.oneshot():
                    times = _try(p.cpu_times)
                    mem = _try(p.memory_info)
                    io = _try(p.io_counters)
                    nfd = _try(p.num_fds)
            except psutil.NoSuchProcess:  # also a zombie that can no longer be read
                if p is root:
                    raise
                continue
            pids.append(p.pid)
            cpu[key] = NAN if times is None else times.user + times.system
            rd[key] = NAN if io is None else float(io.read_bytes)
            wr[key] = NAN if io is None else float(io.write_bytes)
            if mem is None:
                unreadable += 1
            else:
                mem_read += 1
                rss += mem.rss
                anon += max(0, mem.rss - mem.shared)
            fds += nfd or 0

        # OOM kills of descendants that vanished since the previous poll.
        keys: set[ProcKey] = set(cpu)
        place = self._cgroup_place(root.pid)
        self._track_oom(target, state, place, keys, ts, batch)
        state.tree = keys

        limit = self._limit(place.memory, memory_limit_at)
        quota = self._limit(place.cpu, cpu_quota_cores_at)
        rx, tx, netns = self._net(root.pid)
        sample = Sample(
            container=name,
            ts_s=ts,
            memory_usage_bytes=float(rss) if mem_read else NAN,
            memory_working_set_bytes=float(anon) if mem_read else NAN,
            memory_limit_bytes=limit,
            cpu_usage_s_total=state.cpu.update(cpu),
            cpu_quota_cores=quota,
            io_read_bytes_total=state.io_read.update(rd),
            io_write_bytes_total=state.io_write.update(wr),
            net_rx_bytes_total=state.net_rx.update(rx),
            net_tx_bytes_total=state.net_tx.update(tx),
            app=app,
        )
        batch.samples.append(sample)
        nofile = _try(lambda: root.rlimit(psutil.RLIMIT_NOFILE))
        state.info = {
            "root_pid": root.pid,
            "pids": sorted(pids),
            "processes": len(pids),
            "open_files": fds,
            "nofile_limit": (
                NAN if nofile is None
                else INF if nofile[0] == psutil.RLIM_INFINITY else float(nofile[0])
            ),
            "memory_cgroup": (
                str(place.memory[1]) if isinstance(place.memory, tuple) else None
            ),
            "netns": netns,
            "unreadable": unreadable,
        }

    def _track_oom(
        self,
        target: ProcessTarget,
        state: _State,
        place: _CgroupPlace,
        keys: set[ProcKey],
        ts: float,
        batch: SourceBatch,
    ) -> None:
        mem = place.memory
        where = (mem[0], mem[1]) if isinstance(mem, tuple) else None
        count = None
        if where is not None:
            try:
                count = oom_kills_at(*where)
            except (OSError, ValueError):
                count = None
        if where != state.oom_place or count is None or state.oom_last is None:
            state.oom_place, state.oom_last = where, count  # new baseline
            return
        delta = count - state.oom_last
        state.oom_last = count
        vanished = sorted(k[0] for k in state.tree - keys if k != state.root_key)
        if delta > 0 and vanished:
            shown = ", ".join(str(p) for p in vanished)
            for _ in range(min(delta, len(vanished))):
                batch.events.append(Event(
                    target.name, ts, EventKind.OOM_KILL,
                    f"memory cgroup {where[1]} oom_kill counter +{delta} while pid(s) {shown} "
                    "of the tree vanished",
                    target.app or target.name,
                ))

    def _cgroup_place(self, pid: int) -> _CgroupPlace:
        if self._mounts is None:
            try:
                self._mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            except OSError:
                self._mounts = []
        try:
            own = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            return _CgroupPlace("hidden", "hidden")
        return _CgroupPlace(
            locate_cgroup(own, self._mounts, "memory"), locate_cgroup(own, self._mounts, "cpu")
        )

    @staticmethod
    def _limit(
        place: tuple[Version, Path, Path] | None | Literal["hidden"],
        read_at: Callable[[Version, Path], float | None],
    ) -> float:
        if place is None:
            return INF  # no such controller: nothing limits the process
        if place == "hidden":
            return NAN
        version, d, top = place
        try:
            return tightest_on_path(d, top, lambda p: read_at(version, p))
        except (OSError, ValueError):
            return NAN

    def _net(self, pid: int) -> tuple[dict[Hashable, float], dict[Hashable, float], str]:
        """Per network namespace ``{netns: rx}``, ``{netns: tx}`` (empty when the root
        shares our namespace) and "own" / "shared" / "unknown"."""
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            return {}, {}, "unknown"
        if self._own_netns is None:
            return {}, {}, "unknown"
        if ns == self._own_netns:
            return {}, {}, "shared"
        try:
            rx, tx = net_totals(parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text()))
        except (OSError, ValueError):
            return {ns: NAN}, {ns: NAN}, "own"
        return {ns: rx}, {ns: tx}, "own"
