"""Trace replay: read public traces into samples and events, and play them back.

This is an I/O edge (files, the clock). The unit conversions are pure functions in
:mod:`app.learning.trace_mapping`; here they are applied to whole pandas columns at once
(no Python loop per row: the ~413k-row Bitbrains file loads in about a second).

Readers return a :class:`TraceData`: a ``samples`` DataFrame (columns ``container``,
``app``, ``ts_s`` and every metric of :data:`~app.core.sample.METRICS`, sorted by
``ts_s`` then ``container``), an ``events`` DataFrame (``container``, ``app``,
``ts_s``, ``kind``, ``detail``; ``kind`` is an :class:`~app.core.sample.EventKind`
value), what was dropped and why (``dropped``), and where it came from (``source``).
A metric the trace does not have is ``nan``; a limit it does not have is ``inf``.

:func:`read_bitbrains` — GWA-T-12 Bitbrains (one VM per ``vm_id``, 300 s steps)
    ``container = f"vm-{vm_id}"``, ``app = "bitbrains-rnd"``. Worked example, the
    first three rows of VM 1 (ts 1372629804, +300, +600; 2 cores; 5851.9989 MHz;
    8218624 KB provisioned; CPU 87.7799835, 29.2599945, 27.3093282 MHz; memory
    1034592.8 KB; disk read 160.8667, 0, 32.0667 KB/s):

    * ``cpu_quota_cores = 2``; ``memory_limit_bytes = 8218624 × 1024 = 8415870976``;
    * ``memory_usage_bytes = 1034592.8 × 1024 = 1059423027.2`` (also the working set);
    * usage cores = MHz / (5851.9989 / 2) = 0.03, 0.01, 0.00933…;
      ``cpu_usage_s_total = 0, 0.01 × 300 = 3, 3 + 0.00933… × 300 = 5.8``;
    * ``io_read_bytes_total = 0, 0 × 1024 × 300 = 0, 32.0667 × 1024 × 300 = 9850880``.

    A provisioned value of 0 (the VM is not running: 0 cores, 0 MHz, 0 KB) is a
    missing limit (``nan``), not a limit of 0. A second row of a VM with the same
    timestamp is dropped (the first in file order is kept) and counted in
    ``dropped["duplicate_ts"]``. No failure events.

:func:`read_google2011` — Google cluster-usage trace 2011 (clusterdata-2011-2)
    One usage row is a window ``[start_time, end_time]`` of one task; it becomes two
    samples, at the start and at the end. ``container = f"{job_id}-{task_index}"``,
    ``app = f"job-{job_id}"``. Times are µs since trace time 0 → seconds, plus
    ``epoch_offset_s`` (default 1304290200: trace time 600 s is 19:00 EDT 1 May 2011)
    so samples carry real Unix times (the monitor's validation refuses times before
    2000). Worked example, task 3418314/0, window 600–900 s, cpu_rate 0.0003071,
    canonical_memory 0.08044, max_memory 0.08044, memory request 0.09473:

    * ``ts_s = 1304290200 + 600 = 1304290800`` and ``1304291100``;
    * ``memory_usage_bytes = max_memory × 64 GiB = 0.08044 × 68719476736 = 5527794708.6``
      (the window's peak: what a limit has to hold); ``memory_working_set_bytes =
      canonical_memory × 64 GiB`` (the window's mean);
    * ``memory_limit_bytes = 0.09473 × 64 GiB`` (``inf`` when the task has no known
      request); ``cpu_quota_cores = inf`` (a Borg CPU request is not a hard cap);
    * CPU cores = 0.0003071 × 32 = 0.0098272; ``cpu_usage_s_total = 0`` at the start and
      ``0.0098272 × 300 = 2.94816`` at the end (later windows of the task carry on);
    * every other usage column becomes a gauge of both samples
      (:data:`GOOGLE_USAGE_GAUGES`): max_cpu_rate 0.02377 → ``cpu_peak_cores = 0.02377 ×
      32 = 0.76064``; assigned_memory 0.09521 → ``memory_assigned_bytes = 0.09521 × 64
      GiB``; total / unmapped page cache → bytes the same way; disk I/O time, its max
      and local disk space stay fractions of the largest machine; cpi 5.588 and mai
      0.0208 as they are;
    * the task's priority (9), scheduling class (3), CPU request (0.125 → 4 cores) and
      disk request from its task events, as for the memory request below
      (:data:`GOOGLE_EVENT_GAUGES`).

    The memory request is the one of the task's latest SUBMIT, SCHEDULE or UPDATE
    event at or before the window's start that has one (ties: the later line in the
    file). SCHEDULE is included because in this trace the tasks alive at trace start
    have a SUBMIT at time 0 with the *original* request and a SCHEDULE at time 0 with
    the *current* one (often 10× larger), and no UPDATE events.
    Events: FAIL → ``exit_nonzero`` ("failed"), EVICT → ``killed`` ("evicted"),
    KILL → ``killed`` ("killed"), LOST → ``lost`` ("lost": not a failure, see
    :data:`app.learning.labels.TIER_EVENTS`), FINISH → ``success``
    ("finished"); only for the tasks of the usage file, at any time in the file.

:func:`read_csv_mapping` — any CSV or Parquet file with one row per sample.

:class:`ReplaySource` plays a :class:`TraceData` as a telemetry source; and
:func:`replay_into` writes one into a history store as fast as it can.
"""

from __future__ import annotations

import gzip
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from itertools import starmap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.sample import METRICS, Event, EventKind, Sample, SourceBatch
from prescale.app.learning import trace_mapping as tm

# --------------------------------------------------------------------------- layout

#: Columns of a :attr:`TraceData.samples` frame, in order.
SAMPLE_COLUMNS: tuple[str, ...] = ("container", "app", *METRICS)
#: Columns of a :attr:`TraceData.events` frame, in order.
EVENT_COLUMNS: tuple[str, ...] = ("container", "app", "ts_s", "kind", "detail")
#: Default of each metric when a trace does not have it (limits: inf, the rest: nan).
METRIC_DEFAULTS: dict[str, float] = {
    f.name: float(f.default) for f in fields(Sample) if f.name in METRICS and f.name != "ts_s"
}

BB_VM = "vm_id"
BB_TS = "Timestamp [ms]"
BB_CORES = "CPU cores"
BB_CPU_CAP = "CPU capacity provisioned [MHZ]"
BB_CPU_USE = "CPU usage [MHZ]"
BB_MEM_CAP = "Memory capacity provisioned [KB]"
BB_MEM_USE = "Memory usage [KB]"
BB_DISK_R = "Disk read throughput [KB/s]"
BB_DISK_W = "Disk write throughput [KB/s]"
BB_NET_RX = "Network received throughput [KB/s]"
BB_NET_TX = "Network transmitted throughput [KB/s]"
#: The Bitbrains columns this reader uses (``CPU usage [%]`` is redundant and ignored).
BITBRAINS_COLUMNS: tuple[str, ...] = (
    BB_VM, BB_TS, BB_CORES, BB_CPU_CAP, BB_CPU_USE, BB_MEM_CAP, BB_MEM_USE,
    BB_DISK_R, BB_DISK_W, BB_NET_RX, BB_NET_TX,
)
BITBRAINS_APP = "bitbrains-rnd"

#: Google 2011 task_usage columns (the original files have no header).
GOOGLE_USAGE_COLUMNS: tuple[str, ...] = (
    "start_time", "end_time", "job_id", "task_index", "machine_id", "cpu_rate",
    "canonical_memory", "assigned_memory", "unmapped_page_cache", "total_page_cache",
    "max_memory", "disk_io_time", "local_disk_space", "max_cpu_rate", "max_disk_io_time",
    "cpi", "mai", "sample_portion", "aggregation_type", "sampled_cpu_usage",
)
GOOGLE_USAGE_USED: tuple[str, ...] = (
    "start_time", "end_time", "job_id", "task_index", "cpu_rate", "canonical_memory",
    "max_memory",
)
#: The other usage columns: read when the file has them, each into a Sample gauge
#: (``scale``: "memory" → × machine memory bytes, "cores" → × machine cores, None → as is).
GOOGLE_USAGE_GAUGES: dict[str, tuple[str, str | None]] = {
    "assigned_memory": ("memory_assigned_bytes", "memory"),
    "unmapped_page_cache": ("memory_page_cache_unmapped_bytes", "memory"),
    "total_page_cache": ("memory_page_cache_bytes", "memory"),
    "disk_io_time": ("disk_io_time_fraction", None),
    "local_disk_space": ("disk_used_machine_fraction", None),
    "max_cpu_rate": ("cpu_peak_cores", "cores"),
    "max_disk_io_time": ("disk_io_peak_time_fraction", None),
    "cpi": ("cpu_cycles_per_instruction", None),
    "mai": ("memory_accesses_per_instruction", None),
}
#: Task attributes from the task events (the latest event at or before a window's start
#: that states one), each into a Sample gauge, scaled as above.
GOOGLE_EVENT_GAUGES: dict[str, tuple[str, str | None]] = {
    "priority": ("scheduling_priority", None),
    "scheduling_class": ("scheduling_class", None),
    "cpu_request": ("cpu_request_cores", "cores"),
    "disk_request": ("disk_request_machine_fraction", None),
}
#: Google 2011 task_events columns (no header).
GOOGLE_EVENT_COLUMNS: tuple[str, ...] = (
    "time", "missing_info", "job_id", "task_index", "machine_id", "event_type", "user",
    "scheduling_class", "priority", "cpu_request", "memory_request", "disk_request",
    "different_machines_restriction",
)
GOOGLE_EVENT_USED: tuple[str, ...] = ("time", "job_id", "task_index", "event_type",
                                      "memory_request", *GOOGLE_EVENT_GAUGES)

#: Where the shared real traces are, relative to :func:`find_trace_dir`.
BITBRAINS_RND_FILE = "bitbrains-rnd/rnd-2013-07-vms-001-050.csv.gz"
GOOGLE2011_USAGE_FILE = "google2011/task_usage_600-900s_even_jobs.csv"
GOOGLE2011_EVENTS_FILE = "google2011/task_events_even_jobs.csv.gz"
TRACE_DIR_ENV = "PRESCALE_TRACE_DIR"


def find_trace_dir() -> Path:
    """The directory of the shared real traces: ``$PRESCALE_TRACE_DIR``, else
    ``<repo>/../shared/data``. It may not exist; callers check (tests skip)."""
    env = os.environ.get(TRACE_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


# --------------------------------------------------------------------------- TraceData


@dataclass
class TraceData:
    """A trace read into memory (see the module docstring for the columns)."""

    samples: pd.DataFrame
    events: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def containers(self) -> list[str]:
        """The containers that have samples, sorted."""
        return sorted(self.samples["container"].unique().tolist())

    def __len__(self) -> int:
        return len(self.samples) + len(self.events)


def empty_samples() -> pd.DataFrame:
    """A samples frame with no rows (the right columns and dtypes)."""
    return pd.DataFrame({c: pd.Series(dtype=str if c in ("container", "app") else np.float64)
                         for c in SAMPLE_COLUMNS})


def empty_events() -> pd.DataFrame:
    """An events frame with no rows (the right columns and dtypes)."""
    return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "ts_s" else str)
                         for c in EVENT_COLUMNS})


def _sort_order(ts_s: np.ndarray, container: np.ndarray) -> np.ndarray:
    """Row order by ts_s, then container name (string order), stable."""
    codes, _ = pd.factorize(container, sort=True)
    return np.lexsort((codes, ts_s))


def _samples_frame(container: np.ndarray, app: np.ndarray | str,
                   values: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """A samples frame with every column (defaults for the missing metrics), sorted."""
    n = len(container)
    data: dict[str, Any] = {"container": np.asarray(container, dtype=object)}
    data["app"] = (np.full(n, app, dtype=object) if isinstance(app, str)
                   else np.asarray(app, dtype=object))
    for m in METRICS:
        if m in values:
            data[m] = np.asarray(values[m], dtype=np.float64)
        else:
            data[m] = np.full(n, METRIC_DEFAULTS[m], dtype=np.float64)
    order = _sort_order(data["ts_s"], data["container"])
    return pd.DataFrame({k: v[order] for k, v in data.items()}, columns=list(SAMPLE_COLUMNS))


def _events_frame(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return empty_events()
    order = _sort_order(df["ts_s"].to_numpy(np.float64), df["container"].to_numpy(object))
    return df.iloc[order][list(EVENT_COLUMNS)].reset_index(drop=True)


def iter_samples(df: pd.DataFrame) -> Iterator[Sample]:
    """The rows of a samples frame as :class:`Sample` objects, lazily.

    One ``tolist()`` per column, then ``Sample(*row)``: about 1 µs per row.
    """
    cols = [df[c].tolist() for c in ("container", *METRICS, "app")]
    return starmap(Sample, zip(*cols, strict=True))


def iter_events(df: pd.DataFrame) -> Iterator[Event]:
    """The rows of an events frame as :class:`Event` objects, lazily."""
    kinds = [EventKind(k) for k in df["kind"].tolist()]
    return starmap(Event, zip(df["container"].tolist(), df["ts_s"].tolist(), kinds,
                              df["detail"].tolist(), df["app"].tolist(), strict=True))


# --------------------------------------------------------------------------- readers


def _require_columns(path: Path, have: list[str], need: tuple[str, ...] | list[str],
                     what: str) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise ValueError(f"{path}: missing {what} column(s) {missing}; the file has {have}")


def _first_line(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.readline()


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file not found: {p}")
    return p


def _numeric(df: pd.DataFrame, cols: list[str] | tuple[str, ...]) -> np.ndarray:
    """Convert ``cols`` to numbers in place; returns the (writable) mask of the rows with
    a value that was present but is not a number."""
    bad = np.zeros(len(df), dtype=bool)
    for c in cols:
        if not pd.api.types.is_numeric_dtype(df[c]):
            conv = pd.to_numeric(df[c], errors="coerce")
            bad |= (conv.isna() & df[c].notna()).to_numpy()
            df[c] = conv
    return bad


def read_bitbrains(path: str | os.PathLike) -> TraceData:
    """Read a GWA-T-12 Bitbrains file (``vm_id`` + the original columns; CSV, gz ok).

    The mapping and its worked example are in the module docstring. Rows with a
    non-numeric value (``dropped["bad_value"]``) or a missing vm_id/timestamp
    (``dropped["missing_key"]``) are dropped; so are repeated timestamps of a VM
    (``dropped["duplicate_ts"]``, first kept).
    """
    p = _check_file(path)
    raw = pd.read_csv(p, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    _require_columns(p, list(raw.columns), BITBRAINS_COLUMNS, "Bitbrains")
    raw = raw.loc[:, list(BITBRAINS_COLUMNS)].copy()
    bad = _numeric(raw, BITBRAINS_COLUMNS[1:])
    no_key = (raw[BB_VM].isna() | raw[BB_TS].isna()).to_numpy() & ~bad
    raw = raw[~bad & ~no_key]
    ts = tm.epoch_seconds(raw[BB_TS].to_numpy())
    vm = raw[BB_VM].to_numpy()
    if pd.api.types.is_float_dtype(raw[BB_VM]) and np.all(vm == np.floor(vm)):
        vm = vm.astype(np.int64)
    dup = pd.DataFrame({"vm": vm, "ts": ts}).duplicated().to_numpy()
    keep = np.flatnonzero(~dup)
    vm_codes, vm_uniques = pd.factorize(vm[keep], sort=True)
    ts = ts[keep]
    order = np.lexsort((ts, vm_codes))  # by VM, then time: for the integration
    idx = keep[order]
    ts, vm_codes = ts[order], vm_codes[order]

    def col(name: str) -> np.ndarray:
        return raw[name].to_numpy(np.float64)[idx]

    starts = tm.segment_starts(vm_codes)
    cores = col(BB_CORES)
    usage_cores = tm.mhz_to_cores(col(BB_CPU_USE), col(BB_CPU_CAP), cores)
    mem_bytes = col(BB_MEM_USE) * tm.KIB
    values = {
        "ts_s": ts,
        "memory_usage_bytes": mem_bytes,
        "memory_working_set_bytes": mem_bytes,
        "memory_limit_bytes": tm.provisioned_or_nan(col(BB_MEM_CAP)) * tm.KIB,
        "cpu_usage_s_total": tm.integrate_rate(ts, usage_cores, starts),
        "cpu_quota_cores": tm.provisioned_or_nan(cores),
        "io_read_bytes_total": tm.integrate_rate(ts, col(BB_DISK_R) * tm.KIB, starts),
        "io_write_bytes_total": tm.integrate_rate(ts, col(BB_DISK_W) * tm.KIB, starts),
        "net_rx_bytes_total": tm.integrate_rate(ts, col(BB_NET_RX) * tm.KIB, starts),
        "net_tx_bytes_total": tm.integrate_rate(ts, col(BB_NET_TX) * tm.KIB, starts),
    }
    names = np.array([f"vm-{v}" for v in vm_uniques], dtype=object)
    samples = _samples_frame(names[vm_codes], BITBRAINS_APP, values)
    dropped = {"duplicate_ts": int(dup.sum()), "bad_value": int(bad.sum()),
               "missing_key": int(no_key.sum())}
    return TraceData(samples, empty_events(), dropped, f"bitbrains:{p}")


def read_google2011(
    task_usage_path: str | os.PathLike,
    task_events_path: str | os.PathLike,
    *,
    machine_memory_bytes: float = tm.GIB_64,
    machine_cores: float = tm.GOOGLE2011_MACHINE_CORES,
    epoch_offset_s: float = tm.GOOGLE2011_EPOCH_OFFSET_S,
) -> TraceData:
    """Read Google 2011 task_usage windows and the outcome events of their tasks.

    ``machine_memory_bytes`` (default 64 GiB) and ``machine_cores`` (default 32) are
    the size of the largest machine, to which the trace normalises every figure
    (assumed: the trace does not publish it; scale both to taste). Pass
    ``epoch_offset_s=0`` to keep raw trace seconds. Mapping and worked example: see
    the module docstring. Dropped: windows with a missing key or ``end <= start``
    (``bad_window``), repeated windows of a task with the same start
    (``duplicate_window``), events at "after the trace" (``event_never``). A window
    that starts where the previous window of its task ended shares that sample (the
    end of the earlier window is kept; not counted as dropped).
    """
    for name, v in (("machine_memory_bytes", machine_memory_bytes),
                    ("machine_cores", machine_cores)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if not (isinstance(epoch_offset_s, int | float) and math.isfinite(epoch_offset_s)):
        raise ValueError(f"epoch_offset_s must be a finite number, got {epoch_offset_s!r}")
    up, ep = _check_file(task_usage_path), _check_file(task_events_path)

    # ---- usage windows
    has_header = _first_line(up).lstrip().startswith("start_time")
    if has_header:
        head = [str(c).strip() for c in pd.read_csv(up, nrows=0).columns]
        _require_columns(up, head, GOOGLE_USAGE_USED, "Google task_usage")
        gauges = [c for c in GOOGLE_USAGE_GAUGES if c in head]
        u = pd.read_csv(up, usecols=[*GOOGLE_USAGE_USED, *gauges])
    else:
        gauges = list(GOOGLE_USAGE_GAUGES)
        u = pd.read_csv(up, header=None, names=list(GOOGLE_USAGE_COLUMNS),
                        usecols=[*GOOGLE_USAGE_USED, *gauges])
    bad = _numeric(u, [*GOOGLE_USAGE_USED, *gauges])
    key = ["start_time", "end_time", "job_id", "task_index"]
    bad |= u[key].isna().any(axis=1).to_numpy()
    bad |= ~(u["end_time"].to_numpy(np.float64) > u["start_time"].to_numpy(np.float64))
    u = u[~bad].astype({c: np.int64 for c in key})
    dup_w = u.duplicated(["job_id", "task_index", "start_time"]).to_numpy()
    u = u[~dup_w].sort_values(["job_id", "task_index", "start_time"], kind="stable")
    u = u.reset_index(drop=True)

    job, task = u["job_id"].to_numpy(), u["task_index"].to_numpy()
    start_us, end_us = u["start_time"].to_numpy(), u["end_time"].to_numpy()
    first = tm.segment_starts(job) | tm.segment_starts(task)
    duration_s = (end_us - start_us) / 1e6
    rate_cores = u["cpu_rate"].to_numpy(np.float64) * machine_cores
    cpu_start, cpu_end = tm.google_window_cpu_s(rate_cores, duration_s, first)

    # ---- task events (only the needed columns; only the usage file's tasks)
    ev = pd.read_csv(ep, header=None, names=list(GOOGLE_EVENT_COLUMNS),
                     usecols=list(GOOGLE_EVENT_USED))
    ev_bad = _numeric(ev, GOOGLE_EVENT_USED)
    ev_bad |= ev[["time", "job_id", "task_index", "event_type"]].isna().any(axis=1).to_numpy()
    ev = ev[~ev_bad]
    ev = ev.astype({"time": np.int64, "job_id": np.int64, "task_index": np.int64,
                    "event_type": np.int64})
    tasks = u[["job_id", "task_index"]].drop_duplicates()
    ev = ev.reset_index(drop=True).reset_index(names="line")
    ev = ev.merge(tasks, on=["job_id", "task_index"], how="inner").sort_values("line")
    never = (ev["time"] == tm.GOOGLE2011_NEVER_US).to_numpy()

    # memory limit (and the other task attributes): the latest request-carrying event at
    # or before the window's start that states it
    left = pd.DataFrame({"start_time": start_us, "job_id": job, "task_index": task,
                         "row": np.arange(len(u))}).sort_values("start_time", kind="stable")
    carries = ev["event_type"].isin(tm.GOOGLE2011_REQUEST_EVENTS).to_numpy() & ~never

    def as_of(column: str) -> np.ndarray:
        req = ev[carries & ev[column].notna().to_numpy()]
        req = req.sort_values(["time", "line"], kind="stable")[
            ["time", "job_id", "task_index", column]]
        asof = pd.merge_asof(left, req, left_on="start_time", right_on="time",
                             by=["job_id", "task_index"], direction="backward",
                             allow_exact_matches=True).sort_values("row")
        return asof[column].to_numpy(np.float64)

    limit_bytes = as_of("memory_request") * machine_memory_bytes
    limit_bytes = np.where(np.isnan(limit_bytes), math.inf, limit_bytes)
    scale = {"memory": machine_memory_bytes, "cores": machine_cores, None: 1.0}
    gauge_values = {metric: u[c].to_numpy(np.float64) * scale[unit]
                    for c, (metric, unit) in GOOGLE_USAGE_GAUGES.items() if c in u.columns}
    gauge_values.update({metric: as_of(c) * scale[unit]
                         for c, (metric, unit) in GOOGLE_EVENT_GAUGES.items()})

    # ---- samples: start and end point of each window
    names = (u["job_id"].astype(str) + "-" + u["task_index"].astype(str)).to_numpy(object)
    apps = ("job-" + u["job_id"].astype(str)).to_numpy(object)
    prev_end = np.concatenate(([-1], end_us[:-1]))
    join = ~first & (start_us == prev_end)
    n = len(u)
    two = np.empty(2 * n, dtype=np.int64)  # window index of each point: s0 e0 s1 e1 …
    two[0::2] = np.arange(n)
    two[1::2] = np.arange(n)
    is_end = np.tile([False, True], n)
    keep_pt = is_end | ~np.repeat(join, 2)
    two, is_end = two[keep_pt], is_end[keep_pt]
    ts_s = np.where(is_end, end_us[two], start_us[two]) / 1e6 + epoch_offset_s
    dup_pt = pd.DataFrame({"c": names[two], "t": ts_s}).duplicated().to_numpy()
    two, is_end, ts_s = two[~dup_pt], is_end[~dup_pt], ts_s[~dup_pt]
    values = {
        "ts_s": ts_s,
        "memory_usage_bytes": u["max_memory"].to_numpy(np.float64)[two] * machine_memory_bytes,
        "memory_working_set_bytes":
            u["canonical_memory"].to_numpy(np.float64)[two] * machine_memory_bytes,
        "memory_limit_bytes": limit_bytes[two],
        "cpu_usage_s_total": np.where(is_end, cpu_end[two], cpu_start[two]),
        **{metric: v[two] for metric, v in gauge_values.items()},
    }
    samples = _samples_frame(names[two], apps[two], values)

    # ---- outcome events
    out = ev[ev["event_type"].isin(list(tm.GOOGLE2011_EVENTS)).to_numpy() & ~never]
    kinds = {t: k.value for t, (k, _) in tm.GOOGLE2011_EVENTS.items()}
    details = {t: d for t, (_, d) in tm.GOOGLE2011_EVENTS.items()}
    events = pd.DataFrame({
        "container": (out["job_id"].astype(str) + "-" + out["task_index"].astype(str)),
        "app": "job-" + out["job_id"].astype(str),
        "ts_s": out["time"].to_numpy(np.float64) / 1e6 + epoch_offset_s,
        "kind": out["event_type"].map(kinds),
        "detail": out["event_type"].map(details),
    })
    dropped = {"bad_window": int(bad.sum()), "duplicate_window": int(dup_w.sum()),
               "duplicate_ts": int(dup_pt.sum()), "bad_event": int(ev_bad.sum()),
               "event_never": int((never & ev["event_type"].isin(
                   list(tm.GOOGLE2011_EVENTS)).to_numpy()).sum())}
    return TraceData(samples, _events_frame(events), dropped, f"google2011:{up}+{ep}")


_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SET_ELSEWHERE = {"container": "container_col", "ts_s": "ts_col", "app": "app"}


def read_csv_mapping(
    path: str | os.PathLike,
    mapping: Mapping[str, str],
    *,
    container_col: str,
    ts_col: str,
    app: str | None = None,
    scale: Mapping[str, float] | None = None,
) -> TraceData:
    """Read any CSV (``.csv``, ``.csv.gz``…) or Parquet (``.parquet``, ``.pq``) file with
    one row per sample.

    ``mapping`` maps :class:`Sample` metric names to column names, e.g.
    ``{"memory_usage_bytes": "mem", "cpu_usage_s_total": "cpu_s"}``; the values must
    already be in the Sample's units (counters cumulative) unless ``scale`` gives a
    factor per metric (e.g. ``{"memory_usage_bytes": 1024}`` for KB). Metrics not
    mapped are ``nan`` (limits ``inf``). ``ts_col`` holds Unix seconds, or dates
    that pandas parses (taken as UTC when they carry no zone). ``app`` is the same
    for every row (default: the file name without its suffixes).

    Errors (raised before anything is read beyond the header): an unknown metric
    name in ``mapping`` or ``scale``, and columns missing from the file, each named.
    Dropped rows: missing container or time / unparsable time (``bad_ts``), a
    value that is not a number (``bad_value``), a second row of a container with the
    same time (``duplicate_ts``, the first in file order is kept).

    Worked example: rows ``(a, 10, 5)``, ``(a, 10, 6)``, ``(b, 5, x)`` with
    ``{"memory_usage_bytes": "mem"}``, scale 1024 → one sample ``a@10`` with 5120
    bytes; dropped ``{"duplicate_ts": 1, "bad_value": 1}``.
    """
    p = Path(path)
    name = p.name.lower()
    unknown = sorted(k for k in mapping if k not in METRICS or k == "ts_s")
    if unknown:
        hints = [f"{k!r} (use {_SET_ELSEWHERE[k]}=)" if k in _SET_ELSEWHERE else repr(k)
                 for k in unknown]
        raise ValueError(
            f"mapping has unknown Sample field(s) {', '.join(hints)}; "
            f"known metrics: {[m for m in METRICS if m != 'ts_s']}")
    bad_cols = sorted(k for k, v in mapping.items() if not isinstance(v, str) or not v)
    if bad_cols:
        raise ValueError(f"mapping values must be column names (non-empty str): {bad_cols}")
    scale = dict(scale or {})
    unknown_scale = sorted(k for k in scale if k not in mapping)
    if unknown_scale:
        raise ValueError(f"scale names metric(s) not in mapping: {unknown_scale}")
    bad_scale = sorted(k for k, v in scale.items()
                       if not (isinstance(v, int | float) and math.isfinite(v)))
    if bad_scale:
        raise ValueError(f"scale factors must be finite numbers: {bad_scale}")
    if name.endswith(_PARQUET_SUFFIXES):
        fmt = "parquet"
    elif name.endswith(_CSV_SUFFIXES):
        fmt = "csv"
    else:
        raise ValueError(f"{p}: unsupported file type; expected one of "
                         f"{_CSV_SUFFIXES + _PARQUET_SUFFIXES}")
    p = _check_file(p)
    need = list(dict.fromkeys([container_col, ts_col, *mapping.values()]))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        have = list(pq.read_schema(p).names)
        _require_columns(p, have, need, "mapped")
        df = pd.read_parquet(p, columns=need)
    else:
        have = [str(c) for c in pd.read_csv(p, nrows=0).columns]
        _require_columns(p, have, need, "mapped")
        df = pd.read_csv(p, usecols=need)

    ts_raw = df[ts_col]
    if pd.api.types.is_numeric_dtype(ts_raw):
        ts = ts_raw.to_numpy(np.float64)
    else:
        parsed = pd.to_datetime(ts_raw, errors="coerce", utc=True, format="mixed")
        ts = np.where(parsed.isna(), np.nan,
                      (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy())
        ts = ts.astype(np.float64)
    bad_ts = ~np.isfinite(ts) | df[container_col].isna().to_numpy()
    values_df = pd.DataFrame({m: df[c] for m, c in mapping.items()})
    bad_value = _numeric(values_df, list(mapping)) & ~bad_ts
    ok = ~bad_ts & ~bad_value
    container = df[container_col].astype(str).to_numpy(object)[ok]
    ts = ts[ok]
    dup = pd.DataFrame({"c": container, "t": ts}).duplicated().to_numpy()
    values = {"ts_s": ts[~dup]}
    for m in mapping:
        v = values_df[m].to_numpy(np.float64)[ok][~dup]
        values[m] = v * float(scale[m]) if m in scale else v
    app_name = app if app is not None else name.split(".")[0]
    samples = _samples_frame(container[~dup], app_name, values)
    dropped = {"bad_ts": int(bad_ts.sum()), "bad_value": int(bad_value.sum()),
               "duplicate_ts": int(dup.sum())}
    return TraceData(samples, empty_events(), dropped, f"csv:{p}")


# --------------------------------------------------------------------------- replay


class ReplaySource:
    """A :class:`~app.telemetry.base.Source` that plays a trace on a simulated clock.

    Simulated time = ``start_s + (clock() − t0) × speed``, where ``t0`` is the clock
    at the first :meth:`poll` (the replay starts when it is first polled, not when
    it is built). ``start_s`` defaults to the trace's first timestamp; rows before it
    are never delivered. Each poll returns the rows with ``ts`` in
    ``(previous simulated time, current simulated time]`` (the first poll:
    ``[start_s, current]``). ``speed=inf`` delivers everything left on the next poll.

    Worked example (fake clock, speed 60, trace at 0, 300, 600 s): poll at clock 100
    → t0 = 100, sim = 0 → the rows at 0; poll at clock 105 → sim = 300 → the rows at
    300; poll at clock 106 → sim = 360 → nothing; poll at clock 110 → sim = 600 →
    the rows at 600; :attr:`done`.

    :meth:`advance` (and :meth:`step`) move the simulated time explicitly without
    reading the clock (tests, benchmarks); the next :meth:`poll` carries on from
    there at ``speed``. Time never goes back: a clock that does is ignored, and
    ``advance`` to an earlier time is a ``ValueError``.
    """

    kind = "replay"

    def __init__(
        self,
        trace: TraceData,
        *,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        start_s: float | None = None,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not speed > 0:
            raise ValueError(f"speed must be a number > 0 (inf: as fast as possible), "
                             f"got {speed!r}")
        if start_s is not None and not (isinstance(start_s, int | float)
                                        and math.isfinite(start_s)):
            raise ValueError(f"start_s must be a finite number of seconds, got {start_s!r}")
        self.trace = trace
        self.speed = float(speed)
        self._clock = clock
        self._samples = trace.samples
        self._events = trace.events
        self._s_ts = trace.samples["ts_s"].to_numpy(np.float64)
        self._e_ts = trace.events["ts_s"].to_numpy(np.float64)
        if np.any(np.diff(self._s_ts) < 0) or np.any(np.diff(self._e_ts) < 0):
            raise ValueError(f"trace {trace.source!r}: samples and events must be sorted by "
                             "ts_s (use the readers, or sort_values('ts_s'))")
        if start_s is None:
            firsts = [a[0] for a in (self._s_ts, self._e_ts) if a.size]
            start_s = float(min(firsts)) if firsts else 0.0
        self.start_s = float(start_s)
        self._s_pos = int(np.searchsorted(self._s_ts, self.start_s, "left"))
        self._e_pos = int(np.searchsorted(self._e_ts, self.start_s, "left"))
        self._position_s = self.start_s
        self._base_s = self.start_s  # simulated time at clock t0
        self._t0: float | None = None
        self._closed = False

    @property
    def position_s(self) -> float:
        """The simulated time delivered up to (inclusive)."""
        return self._position_s

    @property
    def done(self) -> bool:
        """Every row at or after ``start_s`` was delivered (or the source is closed)."""
        return self._closed or (self._s_pos >= self._s_ts.size and self._e_pos >= self._e_ts.size)

    @property
    def remaining(self) -> int:
        """Sample and event rows not delivered yet."""
        if self._closed:
            return 0
        return int(self._s_ts.size - self._s_pos + self._e_ts.size - self._e_pos)

    def poll(self) -> SourceBatch:
        """The rows up to the current simulated time (see the class docstring)."""
        if self._closed:
            return SourceBatch()
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        if math.isinf(self.speed):
            to_s = math.inf
        else:
            to_s = self._base_s + (now - self._t0) * self.speed
        return self._batch(*self._take(max(to_s, self._position_s)))

    def advance(self, to_s: float) -> SourceBatch:
        """The rows with ts in (position, to_s], without reading the clock."""
        return self._batch(*self.advance_frames(to_s))

    def step(self, dt_s: float) -> SourceBatch:
        """:meth:`advance` by ``dt_s`` simulated seconds (≥ 0)."""
        if isinstance(dt_s, bool) or not isinstance(dt_s, int | float) or not dt_s >= 0:
            raise ValueError(f"dt_s must be a number >= 0, got {dt_s!r}")
        return self.advance(self._position_s + dt_s)

    def advance_frames(self, to_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Like :meth:`advance`, but the rows as (samples, events) DataFrame slices."""
        if isinstance(to_s, bool) or not isinstance(to_s, int | float) or math.isnan(to_s):
            raise ValueError(f"to_s must be a number of seconds, got {to_s!r}")
        if to_s < self._position_s:
            raise ValueError(f"cannot advance back in time: to_s={to_s} is before the "
                             f"replay position {self._position_s}")
        if self._closed:
            return self._samples.iloc[0:0], self._events.iloc[0:0]
        frames = self._take(float(to_s))
        self._base_s, self._t0 = float(to_s), None  # the next poll() re-anchors the clock
        return frames

    def close(self) -> None:
        self._closed = True

    def _take(self, to_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        s_end = int(np.searchsorted(self._s_ts, to_s, "right"))
        e_end = int(np.searchsorted(self._e_ts, to_s, "right"))
        s = self._samples.iloc[self._s_pos:s_end]
        e = self._events.iloc[self._e_pos:e_end]
        self._s_pos, self._e_pos = max(self._s_pos, s_end), max(self._e_pos, e_end)
        self._position_s = to_s
        return s, e

    @staticmethod
    def _batch(samples: pd.DataFrame, events: pd.DataFrame) -> SourceBatch:
        return SourceBatch(samples=list(iter_samples(samples)), events=list(iter_events(events)))


def replay_into(
    trace: TraceData,
    sink: Any,
    *,
    batch_rows: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write every sample and event of ``trace`` into ``sink``, ``batch_rows`` at a time.

    ``sink`` is a history store: ``append_samples(iterable of Sample)``,
    ``append_events(iterable of Event)`` and ``flush()``. When it has
    ``append_sample_frame(df)`` (or ``append_event_frame(df)``), slices of the
    DataFrame are passed instead and no Sample objects are built. ``progress(done,
    total)`` is called after each batch (rows = samples + events). ``flush()`` is
    called once at the end. Returns ``{"samples": n, "events": m, "batches": k}``.

    The sink is checked before anything is written: a missing method is a
    ``TypeError`` naming it.
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be an int >= 1, got {batch_rows!r}")
    sample_frame = getattr(sink, "append_sample_frame", None)
    event_frame = getattr(sink, "append_event_frame", None)
    missing = [m for m, alt in (("append_samples", sample_frame), ("append_events", event_frame),
                                ("flush", None))
               if alt is None and not callable(getattr(sink, m, None))]
    if missing:
        raise TypeError(f"sink {type(sink).__name__} lacks method(s) {missing}")
    samples, events = trace.samples, trace.events
    total = len(samples) + len(events)
    done = batches = 0
    for frame, use_frame, use_objects, to_objects in (
        (samples, sample_frame, getattr(sink, "append_samples", None), iter_samples),
        (events, event_frame, getattr(sink, "append_events", None), iter_events),
    ):
        for lo in range(0, len(frame), batch_rows):
            part = frame.iloc[lo:lo + batch_rows]
            if use_frame is not None:
                use_frame(part)
            else:
                use_objects(list(to_objects(part)))
            done += len(part)
            batches += 1
            if progress is not None:
                progress(done, total)
    sink.flush()
    return {"samples": len(samples), "events": len(events), "batches": batches}
