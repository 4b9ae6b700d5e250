"""Read the Google cluster-usage trace 2011 (:func:`read_google2011`). The unit
conversions are pure functions in :mod:`app.learning.trace_mapping`, applied here to whole
pandas columns at once; the frames are those of
:class:`~app.telemetry.trace_data.TraceData`.

:func:`read_google2011` — Google cluster-usage trace 2011 (clusterdata-2011-2).

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
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from prescale.app.learning import trace_mapping as tm
from prescale.app.telemetry.trace_data import (
    TraceData,
    check_file,
    coerce_numeric,
    events_frame,
    first_line,
    require_columns,
    samples_frame,
)

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
    up, ep = check_file(task_usage_path), check_file(task_events_path)

    # ---- usage windows
    has_header = first_line(up).lstrip().startswith("start_time")
    if has_header:
        head = [str(c).strip() for c in pd.read_csv(up, nrows=0).columns]
        require_columns(up, head, GOOGLE_USAGE_USED, "Google task_usage")
        gauges = [c for c in GOOGLE_USAGE_GAUGES if c in head]
        u = pd.read_csv(up, usecols=[*GOOGLE_USAGE_USED, *gauges])
    else:
        gauges = list(GOOGLE_USAGE_GAUGES)
        u = pd.read_csv(up, header=None, names=list(GOOGLE_USAGE_COLUMNS),
                        usecols=[*GOOGLE_USAGE_USED, *gauges])
    bad = coerce_numeric(u, [*GOOGLE_USAGE_USED, *gauges])
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
    ev_bad = coerce_numeric(ev, GOOGLE_EVENT_USED)
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
    samples = samples_frame(names[two], apps[two], values)

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
    return TraceData(samples, events_frame(events), dropped, f"google2011:{up}+{ep}")
