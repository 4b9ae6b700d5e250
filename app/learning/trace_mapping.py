"""Pure conversions from public trace units to :class:`~app.core.sample.Sample` units.

numpy only, no I/O: :mod:`app.telemetry.replay` reads the files and calls these on
whole columns at once (no Python loop per row).

Rates and counters
------------------
Traces report *rates* averaged over the interval that ends at a row (Bitbrains:
MHz and KB/s over the previous 300 s; Google: a 5-minute window). A ``Sample``
holds *cumulative counters*, so rates are integrated per container
(:func:`integrate_rate`): the counter of the first row of a container is 0 and
row ``i`` adds ``rate[i] × (ts[i] − ts[i−1])``. The rate of row ``i`` is credited to
the interval ending at ``i``, so a consumer that differentiates the counter
(``Δtotal / Δt``, as :mod:`app.core.features` does) gets ``rate[i]`` back exactly.

Worked example (one container, CPU cores 0.03, 0.01, 0.00933… at ts 0, 300, 600):
``cpu_usage_s_total = [0, 0 + 0.01 × 300, 3 + 0.00933… × 300] = [0, 3, 5.8]``.

A ``nan`` rate adds nothing (the counter carries on unchanged); a gap of hours
between two rows is integrated at the later row's rate (the trace has nothing better).
"""

from __future__ import annotations

import numpy as np

from prescale.app.core.sample import EventKind

KIB = 1024.0
#: Bytes of 64 GiB: the default size of Google 2011's largest machine (memory 1.0).
GIB_64 = float(64 * 2**30)
#: Default core count of Google 2011's largest machine (CPU 1.0).
GOOGLE2011_MACHINE_CORES = 32.0
#: Unix time of Google 2011 trace time 0: trace time 600 s is 19:00 EDT on Sunday
#: 1 May 2011 (= 23:00 UTC = 1304290800), per the trace's documentation
#: (google/cluster-data ClusterData2011_2.md). 1304290800 − 600 = 1304290200.
GOOGLE2011_EPOCH_OFFSET_S = 1_304_290_200.0
#: Google 2011's "after the end of the trace" timestamp (2^63 − 1 µs).
GOOGLE2011_NEVER_US = 2**63 - 1

#: Google 2011 task event types that carry (or re-state) a task's resource requests.
GOOGLE2011_REQUEST_EVENTS: tuple[int, ...] = (0, 1, 7, 8)  # SUBMIT, SCHEDULE, UPDATE_*
#: Google 2011 task event type → (EventKind, detail). SUBMIT, SCHEDULE and UPDATE_* are
#: not outcomes and map to nothing.
GOOGLE2011_EVENTS: dict[int, tuple[EventKind, str]] = {
    2: (EventKind.KILLED, "evicted"),  # EVICT: descheduled for a higher-priority task
    3: (EventKind.EXIT_NONZERO, "failed"),  # FAIL: the task failed
    4: (EventKind.SUCCESS, "finished"),  # FINISH: completed normally
    5: (EventKind.KILLED, "killed"),  # KILL: cancelled by the user or a dependency
    6: (EventKind.LOST, "lost"),  # LOST: presumably terminated, the record is lost
}

#: Timestamps at or above this are taken as milliseconds (1e11 s is the year 5138).
MS_THRESHOLD = 1e11


def epoch_seconds(ts: np.ndarray) -> np.ndarray:
    """Unix seconds from a timestamp column that is in seconds or in milliseconds.

    Bitbrains' column is named ``Timestamp [ms]`` but holds seconds; a copy that
    really holds milliseconds is recognised by its size (median ≥ 1e11).

    Worked example: ``[1372629804, 1372630104]`` → unchanged;
    ``[1372629804000, 1372630104000]`` → ``[1372629804.0, 1372630104.0]``.
    """
    out = np.asarray(ts, dtype=np.float64)
    finite = out[np.isfinite(out)]
    if finite.size and np.median(finite) >= MS_THRESHOLD:
        return out / 1000.0
    return out.copy()


def provisioned_or_nan(values: np.ndarray) -> np.ndarray:
    """A provisioned capacity as a limit: a reported 0 means "not provisioned" → ``nan``.

    Bitbrains reports 0 cores, 0 MHz and 0 KB while a VM is not running; taken
    literally that would be a limit of 0 that any usage violates.

    Worked example: ``[2, 0, 4]`` → ``[2, nan, 4]``.
    """
    out = np.asarray(values, dtype=np.float64).copy()
    out[out == 0] = np.nan
    return out


def mhz_to_cores(usage_mhz: np.ndarray, capacity_mhz: np.ndarray, cores: np.ndarray) -> np.ndarray:
    """CPU usage in cores: ``usage_mhz / (capacity_mhz / cores)``.

    A usage of 0 MHz is 0 cores even when the capacity is 0 (a VM that is off);
    a non-zero usage with no capacity (0 or nan) is ``nan``.

    Worked example: 2 cores, 5851.9989 MHz provisioned (2925.99945 MHz per core),
    usage 87.7799835 MHz → 0.03 cores; usage 29.2599945 MHz → 0.01 cores.
    """
    usage = np.asarray(usage_mhz, dtype=np.float64)
    cap = np.asarray(capacity_mhz, dtype=np.float64)
    n = np.asarray(cores, dtype=np.float64)
    ok = (cap > 0) & (n > 0)
    per_core = np.where(ok, cap, 1.0) / np.where(ok, n, 1.0)
    out = np.where(ok, usage / per_core, np.nan)
    out[usage == 0] = 0.0
    return out


def segment_starts(keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows that start a new group in an array sorted by group.

    Worked example: ``[7, 7, 9, 9, 9, 3]`` → ``[T, F, T, F, F, T]``.
    """
    k = np.asarray(keys)
    out = np.ones(k.shape[0], dtype=bool)
    if k.shape[0] > 1:
        out[1:] = k[1:] != k[:-1]
    return out


def segment_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum that restarts at every ``starts`` row; ``nan`` adds 0.

    Worked example: values ``[1, 2, 3, 10, nan, 20]``, starts ``[T, F, F, T, F, F]``
    → ``[1, 3, 6, 10, 10, 30]``.

    One ``np.cumsum`` per group (a loop over groups, not rows), so each group's sum is
    exactly what a cumsum of that group alone gives: no error from other groups.
    """
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(starts, dtype=bool)
    if v.shape != s.shape or v.ndim != 1:
        raise ValueError(f"values and starts must be 1-D of one shape: {v.shape} vs {s.shape}")
    if v.size == 0:
        return v.copy()
    if not s[0]:
        raise ValueError("starts[0] must be True: the first row starts a group")
    inc = np.where(np.isnan(v), 0.0, v)
    out = np.empty_like(inc)
    bounds = np.append(np.flatnonzero(s), inc.size)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        np.cumsum(inc[lo:hi], out=out[lo:hi])
    return out


def integrate_rate(ts_s: np.ndarray, rate: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative counter from a rate sampled at ``ts_s``, per group (see module doc).

    ``out[first row of a group] = 0``; ``out[i] = out[i−1] + rate[i] × (ts[i] − ts[i−1])``.
    Rows must be sorted by group, then by time.

    Worked example: ts ``[0, 300, 600]``, rate ``[0.03, 0.01, 0.028/3]`` → ``[0, 3, 5.8]``;
    a second group starting at row 3 restarts at 0.
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    r = np.asarray(rate, dtype=np.float64)
    s = np.asarray(starts, dtype=bool)
    if not (ts.shape == r.shape == s.shape):
        raise ValueError(f"ts_s, rate and starts differ in shape: {ts.shape}, {r.shape}, {s.shape}")
    dt = np.zeros_like(ts)
    if ts.size > 1:
        dt[1:] = ts[1:] - ts[:-1]
    dt[s] = 0.0
    if np.any(dt < 0):
        raise ValueError("ts_s must increase within each group")
    inc = r * dt
    inc[dt == 0] = 0.0  # a group's first row (and nan × 0) adds nothing
    return segment_cumsum(inc, s)


def google_window_cpu_s(
    rate_cores: np.ndarray, duration_s: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative CPU seconds at the start and at the end of consecutive usage windows.

    Windows are sorted by task, then start time (``starts`` marks each task's first
    window). Window ``k`` adds ``rate_cores[k] × duration_s[k]``.

    Worked example: one task, windows of 300 s at 0.0098272 cores then 0.02 cores →
    start ``[0, 2.94816]``, end ``[2.94816, 8.94816]``.
    """
    inc = np.asarray(rate_cores, dtype=np.float64) * np.asarray(duration_s, dtype=np.float64)
    s = np.asarray(starts, dtype=bool)
    end = segment_cumsum(inc, s)
    start = np.zeros_like(end)  # a task's first window starts at 0 …
    start[1:] = end[:-1]  # … the others where the previous window ended
    start[s] = 0.0
    return start, end
