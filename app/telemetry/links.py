"""Containers' network links: the bytes each has received, and its receive limit.

An I/O edge over :mod:`app.edges.netlimit`. Configured with ``{container: host-side
interface}``: the end of the container's veth pair that stays in this process's network
namespace (``veth-web``), from where everything is read. Each poll runs ``tc -j qdisc
show`` once (every interface's root qdisc) and, per link:

1. **Check**: the interface must exist here (``/sys/class/net/<dev>``). When it does
   not, ``errors[container]`` says so, e.g. ``"link of 'web' (veth-web): no such network
   interface"`` — at **every** poll while it lasts (the monitor keeps a container that
   is reported, and the fault stays in view); the other links go on.
2. **Sample**: ``Sample(container, ts_s=clock(), net_rx_bytes_total=…,
   net_rx_limit_bytes_per_s=…)``. ``net_rx_bytes_total`` is the host side's
   *transmitted* bytes (what leaves the host through the veth arrives in the
   container: :func:`~app.edges.netlimit.rx_bytes_of`); ``net_rx_limit_bytes_per_s``
   the rate of the TBF at the root of the host side's egress, ``inf`` when there is
   none (no limit). Every other field is left at its default (``nan``/``inf``): the
   monitor merges it with the samples other sources give for the same container
   (:func:`~app.core.sample.merge_sources`).

The rate the container receives at is derived later from consecutive samples
(:mod:`app.core.features`); against the limit it says how close the link is to
saturation. Worked example: two polls 2 s apart read ``tx_bytes`` 10_000_000 then
11_940_000 under a TBF of 1_000_000 bytes/s → 970_000 bytes/s received, 97 % of the
limit. A saturated link reads a little under 100 %: the TBF charges each TCP segment
its 66 bytes of headers, the counter counts them once per offloaded packet (measured
here: 0.957 MB/s of payload and the counter at +1.5 % of it, ≈ 97 % of the limit).

Worked example: ``LinkSource({"web": "veth-web"})`` with a TBF of 1_000_000 bytes/s on
``veth-web`` that has sent 5_230_912 bytes → one sample ``web``, ``net_rx_bytes_total``
5_230_912, ``net_rx_limit_bytes_per_s`` 1_000_000, no errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from prescale.app.core.sample import Sample, SourceBatch
from prescale.app.edges.netlimit import (
    DEFAULT_TIMEOUT_S,
    NetLimitError,
    NoSuchInterfaceError,
    check_links,
    interface_exists,
    read_rate_limit,
    read_rate_limits,
    rx_bytes_of,
)


class LinkSource:
    """Samples of containers' received bytes and receive limits.

    Example::

        source = LinkSource({"web": "veth-web", "db": "veth-db"})
        batch = source.poll()    # two samples with net_rx_bytes_total / net_rx_limit_…
        source.watches("web")    # True: the monitor routes network resizes to the link actuator
    """

    kind = "links"

    def __init__(self, links: Mapping[str, str], clock: Callable[[], float] = time.time,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        #: container name → host-side interface of its veth pair, as configured
        self.links: dict[str, str] = check_links(links)
        self.clock = clock
        self.timeout_s = float(timeout_s)

    def watches(self, name: str) -> bool:
        """Whether ``name`` has a link here (its network resizes go to the link actuator)."""
        return name in self.links

    def poll(self) -> SourceBatch:
        """One sample per readable link and ``errors[container]`` for each link whose
        interface is missing or unreadable. When tc itself fails, no limit can be read:
        every link is an error with what tc said (none is reported without its
        limit)."""
        batch = SourceBatch()
        if not self.links:
            return batch
        try:
            limits = read_rate_limits(self.timeout_s)
        except NetLimitError as exc:
            for name, dev in self.links.items():
                batch.errors[name] = f"link of {name!r} ({dev}): {exc}"
            return batch
        for name, dev in self.links.items():
            if not interface_exists(dev):
                batch.errors[name] = f"link of {name!r} ({dev}): no such network interface"
                continue
            try:
                rx_bytes = rx_bytes_of(dev)
                ts = float(self.clock())
                limit = limits.get(dev)
                if limit is None:  # not in tc's list (created since): ask for it alone
                    limit = read_rate_limit(dev, self.timeout_s)
            except NoSuchInterfaceError:  # gone since the check
                batch.errors[name] = f"link of {name!r} ({dev}): no such network interface"
                continue
            except NetLimitError as exc:
                batch.errors[name] = f"link of {name!r} ({dev}): {exc}"
                continue
            batch.samples.append(Sample(container=name, ts_s=ts, net_rx_bytes_total=rx_bytes,
                                        net_rx_limit_bytes_per_s=limit))
        return batch

    def close(self) -> None:
        """Nothing is held open."""


__all__ = ["LinkSource"]
