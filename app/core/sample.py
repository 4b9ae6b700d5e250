"""Sample and Event: what a container looked like at a time, and what happened to it.

A :class:`Sample` holds raw readings, mostly cumulative counters as the kernel
exposes them (``*_total``); rates are derived later by :mod:`app.core.features`
from consecutive samples. A reading the source cannot provide is ``nan``; an
unlimited limit is ``inf``.

The monitor's ring buffer stores samples as rows of ``len(METRICS)`` floats in the
order of :data:`METRICS`, so a window of N containers × W steps is one
``float64`` array of shape ``[N, W, len(METRICS)]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from operator import attrgetter

INF = math.inf
NAN = math.nan


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one container. Units are in the field names."""

    container: str
    ts_s: float
    memory_usage_bytes: float = NAN
    memory_working_set_bytes: float = NAN
    memory_limit_bytes: float = INF
    memory_failcnt_total: float = NAN
    oom_kills_total: float = NAN
    cpu_usage_s_total: float = NAN
    cpu_quota_cores: float = INF
    cpu_periods_total: float = NAN
    cpu_throttled_periods_total: float = NAN
    cpu_throttled_s_total: float = NAN
    io_read_bytes_total: float = NAN
    io_write_bytes_total: float = NAN
    net_rx_bytes_total: float = NAN
    net_tx_bytes_total: float = NAN
    block_calls_total: float = NAN
    block_failures_total: float = NAN
    block_latency_s: float = NAN  # mean latency of key code blocks over the last interval
    # PSI (cgroup v2 pressure stall information): cumulative seconds some / all tasks
    # of the container were stalled waiting for the resource
    cpu_pressure_some_s_total: float = NAN
    memory_pressure_some_s_total: float = NAN
    memory_pressure_full_s_total: float = NAN
    io_pressure_some_s_total: float = NAN
    # Gauges that some sources report (the Google 2011 task usage and task events; nan
    # elsewhere). A "machine fraction" is normalised to the largest machine, as that
    # trace normalises it.
    memory_assigned_bytes: float = NAN  # memory the scheduler set aside for the container
    memory_page_cache_bytes: float = NAN  # page cache (file-backed memory) charged to it
    memory_page_cache_unmapped_bytes: float = NAN  # the part of it no process maps
    cpu_peak_cores: float = NAN  # the highest CPU rate within the last interval
    disk_io_time_fraction: float = NAN  # share of the interval spent in disk I/O (mean)
    disk_io_peak_time_fraction: float = NAN  # the same, its highest within the interval
    disk_used_machine_fraction: float = NAN  # local disk space used
    cpu_cycles_per_instruction: float = NAN
    memory_accesses_per_instruction: float = NAN
    cpu_request_cores: float = NAN  # CPU the container asked for (a share, not a cap)
    disk_request_machine_fraction: float = NAN  # local disk space it asked for
    scheduling_priority: float = NAN  # higher is more important (Google 2011: 0–11)
    scheduling_class: float = NAN  # latency sensitivity (Google 2011: 0–3)
    # The container's writable space (a size-limited volume: a tmpfs, Docker's --tmpfs
    # with a size, a Kubernetes emptyDir with a sizeLimit): bytes used and its size.
    disk_used_bytes: float = NAN
    disk_limit_bytes: float = INF
    # The container's receive bandwidth limit (a TBF on the host side of its veth: what
    # it can download), against the rate of net_rx_bytes_total.
    net_rx_limit_bytes_per_s: float = INF
    # The container's block-I/O write bandwidth limit (cgroup v1
    # ``blkio.throttle.write_bps_device``, v2 ``io.max`` ``wbps``), summed over the devices
    # that have one, and the bytes it wrote to those devices: their rate against the limit.
    io_write_limit_bytes_per_s: float = INF
    io_limited_write_bytes_total: float = NAN
    app: str = ""  # the application (or app type) the container belongs to

    def row(self) -> tuple[float, ...]:
        """The numeric fields in :data:`METRICS` order (without ``container``/``app``)."""
        return _ROW(self)


#: Column order of a window's last axis (every numeric field of :class:`Sample`).
METRICS: tuple[str, ...] = tuple(f.name for f in fields(Sample))[1:-1]
_ROW = attrgetter(*METRICS)
#: Column index of each metric in a window.
M: dict[str, int] = {name: i for i, name in enumerate(METRICS)}


class EventKind(StrEnum):
    OOM_KILL = "oom_kill"  # the kernel's OOM killer (seen in a cgroup counter or by Ray)
    KILLED = "killed"  # ended by a signal (e.g. SIGKILL) whose sender is not known
    EXIT_NONZERO = "exit_nonzero"
    TIMEOUT = "timeout"
    DISK_FULL = "disk_full"
    RESTART = "restart"
    SUCCESS = "success"
    #: the record of the container was lost (Google 2011 LOST): what happened is not
    #: known, so it is never a failure label
    LOST = "lost"
    #: the wall clock of a node stepped (container ``_clock:<node>``): not a failure
    CLOCK_JUMP = "clock_jump"


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a container at ``ts_s``."""

    container: str
    ts_s: float
    kind: EventKind
    detail: str = ""
    app: str = ""


class Tier(StrEnum):
    """A resource that can run out, and the kind of failure it causes."""

    MEMORY = "memory"  # OOM kill
    CPU = "cpu"  # starvation: CFS throttling
    DISK = "disk"  # ENOSPC: the container's writable space is full
    NETWORK = "network"  # saturation: its traffic queues at its bandwidth limit
    IO = "io"  # throttling: its block-device writes queue at their bandwidth limit


def events_between(prev: Sample | None, cur: Sample) -> list[Event]:
    """Failure events implied by counter deltas between two samples of one container.

    Worked example: ``prev.oom_kills_total = 1``, ``cur.oom_kills_total = 3`` →
    two ``oom_kill`` events at ``cur.ts_s``. A counter that goes down (the cgroup
    was recreated) or is ``nan`` implies nothing.
    """
    if prev is None:
        return []
    delta = cur.oom_kills_total - prev.oom_kills_total
    if not delta > 0:  # also false for nan
        return []
    return [
        Event(cur.container, cur.ts_s, EventKind.OOM_KILL, "kernel memory.oom_control oom_kill",
              cur.app)
        for _ in range(int(delta))
    ]


@dataclass(frozen=True, slots=True)
class SourceBatch:
    """What one poll of a source returns: samples, failure events, and per-container
    errors (a container that could not be read this time, with the reason)."""

    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    #: containers that scale horizontally, with their current replica count
    replicas: dict[str, int] = field(default_factory=dict)


def merge_sources(per_source: list[list[Sample]]) -> list[Sample]:
    """Merge the samples several sources gave for the same container in one poll.

    A container can be seen by two sources (a cgroup, and the timings its application
    reports). The first source's sample is kept and its ``nan`` readings are filled
    from later sources; ``ts_s`` is the latest of them; ``app`` the first non-empty.
    Duplicates *within* one source are left alone for the validator to count.

    Worked example: cgroup gives ``web`` (ts 10, memory 5, block_latency nan) and the
    timings source ``web`` (ts 11, memory nan, block_latency 0.2) → one sample
    ``web`` (ts 11, memory 5, block_latency 0.2).
    """
    if len(per_source) == 1:
        return list(per_source[0])
    merged: dict[str, int] = {}
    out: list[Sample] = []
    for samples in per_source:
        own: set[str] = set()
        for s in samples:
            i = merged.get(s.container)
            if i is None or s.container in own:
                if i is None:
                    merged[s.container] = len(out)
                out.append(s)
            else:
                out[i] = _fill(out[i], s)
            own.add(s.container)
    return out


def _fill(a: Sample, b: Sample) -> Sample:
    values = {}
    for f in fields(Sample):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name == "ts_s":
            values[f.name] = max(va, vb)
        elif f.name == "app":
            values[f.name] = va or vb
        elif isinstance(va, float) and math.isnan(va):
            values[f.name] = vb
        else:
            values[f.name] = va
    return Sample(**values)
