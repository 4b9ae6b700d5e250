"""Features: a window of samples → one row of numbers per container.

Input is a window ``float64[N, W, len(METRICS)]`` (see :mod:`app.core.sample`):
N containers, W steps, columns in :data:`~app.core.sample.METRICS` order. A row
whose ``ts_s`` is not finite is *absent* (the ring buffer pads the start of a
young container's window with all-``nan`` rows); a reading that is ``nan`` in an
otherwise present row is *missing* and is skipped by every feature that needs it.
Everything is computed for all N containers at once with masked numpy sums; the
same code runs online (monitor) and offline (training). Each chunk of containers is
copied into contiguous ``[containers, W]`` planes, one per metric (:func:`_block`), so
one numpy call covers a plane or several; rows whose mask is full (the usual case) are
summed without forming the mask. Every feature keeps the bits of the formulas below
computed one metric at a time (``tests/unit/test_features.py`` holds that reference).

Notation, per container: ``t_i`` = ``ts_s`` of present row i; a metric's *valid
rows* are the present rows where that metric is not ``nan``; a *step* of a metric
pairs each valid row with the previous valid row of the same metric (skipping
absent rows and missing readings); ``Δx`` is the change of x over a step. Counter
resets (the cgroup was recreated, a ``Δ`` of a ``*_total`` counter < 0) never give
negative rates or counts: for rates and deltas such a step's ``Δ`` counts as 0, for
the throttled fraction the step is dropped. Rates need ``Δt > 0``.
``recent`` means the last ``recent_steps`` rows of the window array (absent rows
among them are ignored).

Features (:data:`FEATURES`, column order; units in the names):

``n_samples``
    number of present rows (finite ``ts_s``).
``memory_usage_last_bytes``
    ``memory_usage_bytes`` of the last valid row (``nan`` if none).
``memory_limit_bytes``
    ``memory_limit_bytes`` of the last valid row; ``inf`` = unlimited, ``nan`` = unknown.
``memory_headroom_bytes``
    ``memory_limit_bytes − memory_usage_last_bytes`` (``inf`` if unlimited).
``memory_slope_bytes_per_s``
    ordinary least-squares slope ``b = Σ(t−t̄)(u−ū) / Σ(t−t̄)²`` of
    ``memory_usage_bytes`` (u) against ``ts_s`` over all valid rows; ``nan`` if fewer
    than 2 valid rows (or all at the same time).
``memory_recent_slope_bytes_per_s``
    the same slope over the valid rows among the last ``recent_steps`` rows.
``memory_resid_std_bytes``
    population standard deviation of the full-window fit's residuals
    ``r = (u−ū) − b(t−t̄)``: ``sqrt(Σr²/n)``; 0 for exactly linear data, ``nan``
    when the slope is ``nan``.
``memory_slope_std_bytes_per_s``
    standard error of ``b``: ``sqrt(Σr²/(n−2) / Σ(t−t̄)²)``; 0 when n = 2, ``nan``
    when the slope is ``nan``.
``memory_time_to_limit_s``
    ``headroom / b`` if ``b > 0`` and ``headroom > 0``; 0 if ``headroom ≤ 0``;
    ``inf`` otherwise (``b ≤ 0``, or unlimited). ``nan`` if the headroom is unknown,
    or it is finite and positive but ``b`` is ``nan`` (no trend known yet).
``cpu_usage_cores_last``
    ``max(Δcpu_usage_s_total, 0) / Δts_s`` over the last step.
``cpu_usage_cores_mean``
    ``Σ max(Δcpu, 0) / Σ Δt`` over all steps; without resets that is
    ``(cpu_last − cpu_first) / (t_last − t_first)``.
``cpu_slope_cores_per_s``
    least-squares slope of the per-step rates ``ρ_i = max(Δcpu, 0)/Δt`` placed at
    the step's end time ``t_i`` (needs ≥ 2 steps, i.e. 3 valid rows, else ``nan``).
``cpu_rate_std_cores``
    population standard deviation of the per-step rates ``ρ_i`` (``nan`` if no step).
``cpu_quota_cores``
    ``cpu_quota_cores`` of the last valid row; ``inf`` = unlimited, ``nan`` = unknown.
``cpu_throttled_fraction``
    ``ΣΔcpu_throttled_periods_total / ΣΔcpu_periods_total`` over the recent steps
    (rows valid for both counters), dropping steps with ``Δperiods ≤ 0`` or
    ``Δthrottled < 0``; clipped to [0, 1]; 0 when there is no such step. Without
    resets that is ``(thr_last − thr_first) / (per_last − per_first)``.
``oom_kills_delta``
    ``Σ max(Δoom_kills_total, 0)`` over the window (= last − first valid value
    without resets); 0 if fewer than 2 valid rows.
``memory_failcnt_delta``
    the same for ``memory_failcnt_total``.
``memory_usage_{mean,std,min,max}_bytes``
    mean, population standard deviation, minimum and maximum of ``memory_usage_bytes``
    over its valid rows (``nan`` if none).
``cpu_memory_correlation``
    Pearson correlation of the per-step CPU rate ρ_i with the memory usage of the same
    row, over rows where both exist: ``cov(ρ, u) / (σ_ρ σ_u)``; ``nan`` with fewer than
    3 such rows or a constant series.
``block_latency_last_s``
    the last valid ``block_latency_s`` (mean latency of the key code blocks reported by
    the application in that interval).
``block_latency_change_s``
    mean ``block_latency_s`` over the recent rows minus its mean over the earlier rows
    (``nan`` if either part has none): a slowdown is positive.
``memory_latency_correlation``
    Pearson correlation of ``memory_usage_bytes`` with ``block_latency_s`` over rows with
    both (``nan`` with fewer than 3 or a constant series).
``memory_pressure_full_fraction``
    ``Σ Δmemory_pressure_full_s_total / Σ Δt`` over the window: the share of time all
    tasks were stalled on memory (cgroup v2 PSI; ``nan`` where the kernel has no PSI).
``memory_usage_limit_fraction``
    ``memory_usage_last_bytes / memory_limit_bytes``: 0 when unlimited, ``nan`` when
    either is unknown (or the limit is 0).
``{io_read,io_write,net_rx,net_tx}_bytes_per_s``
    the mean rate of each byte counter over the window: ``Σ max(Δtotal, 0) / Σ Δt``
    over the steps between *adjacent* rows that both have a reading (a reset counts 0,
    a missing reading drops its two steps; ``nan`` without a step).
``<gauge>_last`` for every gauge of :data:`GAUGE_METRICS`
    the gauge's last valid reading (``nan`` if none), e.g. ``cpu_peak_cores_last``,
    ``memory_page_cache_bytes_last``, ``scheduling_priority_last``: what a trace or
    source reports beyond usage and limits (Google 2011 reports all of them).
``cpu_usage_request_fraction``
    ``cpu_usage_cores_mean / cpu_request_cores_last`` (``nan`` when either is unknown
    or the request is 0).

Worked example of the usage-beyond-limits features (one container, rows at t = 0, 10,
20, 30, ``recent_steps = 2``): memory usage 100 → 170 with limit 200 → usage ÷ limit
``170/200 = 0.85``; ``io_read_bytes_total`` 0, 100, 100, 400 → ``400/30 = 13.33`` B/s;
``cpu_peak_cores`` 0.5, nan, 2, nan → ``cpu_peak_cores_last = 2``; CPU rates 0.5, 1.0,
1.5 (mean 1.0) with ``cpu_request_cores`` 2 → ``cpu_usage_request_fraction = 0.5``.

Worked example of the added features (one container, rows at t = 0, 10, 20, 30):
memory usage 100, 120, 150, 170 → mean 135, std ``sqrt((35²+15²+15²+35²)/4) = 26.93``,
min 100, max 170; CPU rates 0.5, 1.0, 1.5 at t = 10, 20, 30 against usage 120, 150, 170
→ correlation 0.9934; latencies 0.1, 0.1, 0.2, 0.4 with ``recent_steps = 2`` → last 0.4,
change ``(0.2+0.4)/2 − (0.1+0.1)/2 = 0.2``; memory–latency correlation 0.9097; PSI
full totals 0, 1, 3, 6 s → ``6/30 = 0.2``.

Worked example (one container, ``recent_steps = 2``): rows at ``ts_s`` 100, 110,
120, 130 with ``memory_usage_bytes`` 100, 120, 150, 170 and ``memory_limit_bytes``
200; ``cpu_usage_s_total`` 0, 5, 15, 30. Then t̄ = 115, ū = 135,
``Σ(t−t̄)² = 225+25+25+225 = 500``, ``Σ(t−t̄)(u−ū) = 525+75+75+525 = 1200`` →
slope b = 2.4 B/s; residuals 1, −3, 3, −1 → resid std ``sqrt(20/4) = 2.236``,
slope std ``sqrt(20/2/500) = 0.1414``; recent slope ``(170−150)/10 = 2``;
headroom 30 B → time to limit ``30/2.4 = 12.5 s``. CPU rates 0.5, 1.0, 1.5 cores
at t = 110, 120, 130 → last 1.5, mean ``30/30 = 1.0``, slope 0.05 cores/s, rate std
``sqrt(0.5/3) = 0.408``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from prescale.app.core.sample import METRICS, M

#: Gauge metrics whose last reading is a feature (``<gauge>_last``).
GAUGE_METRICS: tuple[str, ...] = (
    "memory_working_set_bytes",
    "memory_assigned_bytes",
    "memory_page_cache_bytes",
    "memory_page_cache_unmapped_bytes",
    "cpu_peak_cores",
    "disk_io_time_fraction",
    "disk_io_peak_time_fraction",
    "disk_used_machine_fraction",
    "cpu_cycles_per_instruction",
    "memory_accesses_per_instruction",
    "cpu_request_cores",
    "disk_request_machine_fraction",
    "scheduling_priority",
    "scheduling_class",
)
#: Byte counters whose mean rate is a feature (``<stem>_bytes_per_s``).
RATE_COUNTERS: dict[str, str] = {
    "io_read_bytes_per_s": "io_read_bytes_total",
    "io_write_bytes_per_s": "io_write_bytes_total",
    "net_rx_bytes_per_s": "net_rx_bytes_total",
    "net_tx_bytes_per_s": "net_tx_bytes_total",
}

#: Feature names in column order of :func:`compute_features`'s result.
FEATURES: tuple[str, ...] = (
    "n_samples",
    "memory_usage_last_bytes",
    "memory_limit_bytes",
    "memory_headroom_bytes",
    "memory_slope_bytes_per_s",
    "memory_recent_slope_bytes_per_s",
    "memory_resid_std_bytes",
    "memory_slope_std_bytes_per_s",
    "memory_time_to_limit_s",
    "cpu_usage_cores_last",
    "cpu_usage_cores_mean",
    "cpu_slope_cores_per_s",
    "cpu_rate_std_cores",
    "cpu_quota_cores",
    "cpu_throttled_fraction",
    "oom_kills_delta",
    "memory_failcnt_delta",
    "memory_usage_mean_bytes",
    "memory_usage_std_bytes",
    "memory_usage_min_bytes",
    "memory_usage_max_bytes",
    "cpu_memory_correlation",
    "block_latency_last_s",
    "block_latency_change_s",
    "memory_latency_correlation",
    "memory_pressure_full_fraction",
    "memory_usage_limit_fraction",
    *RATE_COUNTERS,
    *(f"{g}_last" for g in GAUGE_METRICS),
    "cpu_usage_request_fraction",
)
#: Column index of each feature.
F: dict[str, int] = {name: i for i, name in enumerate(FEATURES)}

_CHUNK = 1024  # containers per vectorised pass
_COPY = 64  # containers per copy step of _block: their window rows stay in L2 across its copies

#: Metrics each chunk copies into its block (:func:`_block`), one plane each, in this
#: order (metrics handled together are neighbours); the block's last planes hold the
#: steps of the byte counters (:data:`_BYTES`).
_ROWS: tuple[str, ...] = (
    "ts_s",
    "memory_usage_bytes",
    "block_latency_s",
    # counters paired with their previous valid reading (the module doc's steps)
    "memory_failcnt_total",
    "oom_kills_total",
    "cpu_usage_s_total",
    "memory_pressure_full_s_total",
)
_FINITE = slice(1, 7)  # planes whose valid readings are the finite ones
_STEPPED = slice(3, 7)  # failcnt, oom, cpu, psi
assert _ROWS[_FINITE][0] == "memory_usage_bytes" and _ROWS[_STEPPED][2] == "cpu_usage_s_total"
#: Planes of the byte counters' steps between adjacent rows (column 0 is no step), and
#: the counters' (neighbouring) columns of the window.
_BYTES = slice(len(_ROWS), len(_ROWS) + len(RATE_COUNTERS))
_BYTE_COLUMNS = slice(M["io_read_bytes_total"], M["io_read_bytes_total"] + len(RATE_COUNTERS))
assert METRICS[_BYTE_COLUMNS] == tuple(RATE_COUNTERS.values())
#: The two period counters, whose recent rows are copied too (:func:`_block`).
_PERIODS = M["cpu_periods_total"]
assert M["cpu_throttled_periods_total"] == _PERIODS + 1


def _copy_runs(rows: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    """``(first plane, end plane, first column)`` of each run of planes whose metrics
    are neighbouring columns of the window (one copy each)."""
    runs: list[tuple[int, int, int]] = []
    for i, name in enumerate(rows):
        if runs and runs[-1][1] == i and runs[-1][2] + i - runs[-1][0] == M[name]:
            runs[-1] = (runs[-1][0], i + 1, runs[-1][2])
        else:
            runs.append((i, i + 1, M[name]))
    return tuple(runs)


_RUNS = _copy_runs(_ROWS)
#: Metrics only whose last reading is needed, read straight from the window
#: (:func:`_fill_last`): the two limits (last reading that is not nan), the gauges.
_LAST_COLUMNS = np.array([M["memory_limit_bytes"], M["cpu_quota_cores"],
                          *(M[g] for g in GAUGE_METRICS)])


def compute_features(window: np.ndarray, *, recent_steps: int) -> np.ndarray:
    """Features of every container of ``window``: ``float64[N, len(FEATURES)]``.

    ``window`` is ``[N, W, len(METRICS)]``; ``recent_steps`` (≥ 2) is how many of
    the last rows the recent slope and the throttled fraction look at. Formulas and
    a worked example are in the module docstring. Never emits numpy warnings;
    quantities that cannot be computed are ``nan`` (see each feature).
    """
    window = np.asarray(window, dtype=np.float64)
    if window.ndim != 3:
        raise ValueError(
            f"window must be 3-D [containers, steps, metrics], got shape {window.shape}"
        )
    if window.shape[2] != len(METRICS):
        raise ValueError(
            f"window's last axis must have len(METRICS) = {len(METRICS)} columns, "
            f"got {window.shape[2]}"
        )
    if isinstance(recent_steps, bool) or not isinstance(recent_steps, (int, np.integer)):
        raise ValueError(f"recent_steps must be an int ≥ 2, got {recent_steps!r}")
    if recent_steps < 2:
        raise ValueError(f"recent_steps must be ≥ 2 (a slope needs 2 points), got {recent_steps}")

    n_containers, width = window.shape[:2]
    if width == 0:  # no rows: counts and sums are 0, everything else unknown
        out = np.full((n_containers, len(FEATURES)), np.nan)
        for name in ("n_samples", "cpu_throttled_fraction", "oom_kills_delta",
                     "memory_failcnt_delta"):
            out[:, F[name]] = 0.0
        return out
    rs = max(width - int(recent_steps), 0)  # the first recent row
    out = np.empty((n_containers, len(FEATURES)))  # _fill writes every column
    size = min(_CHUNK, n_containers)
    shapes = ((len(_ROWS) + len(RATE_COUNTERS), size, width), (4, size, width - rs))
    with _work_arrays(shapes) as (block, recent), np.errstate(all="ignore"):
        # Chunks of containers keep the [chunk, W] planes in cache; every chunk is still
        # one vectorised pass.
        for start in range(0, n_containers, _CHUNK):
            chunk = window[start : start + _CHUNK]
            n = chunk.shape[0]
            finite = _block(chunk, block[:, :n], recent[:, :n], rs)
            _fill(out[start : start + _CHUNK], chunk, block[:, :n], recent[:, :n], rs, finite)
    return out


@contextlib.contextmanager
def _work_arrays(shapes: tuple[tuple[int, ...], ...]) -> Iterator[list[np.ndarray]]:
    """``with _work_arrays(shapes) as arrays``: float64 work arrays of ``shapes``
    (contents undefined). The process keeps one set of at most :data:`_SPARE_BYTES`
    between calls and lends it to a call that finds it free: allocating ~5 MB anew on
    every call made glibc hand the pages back and fault them in again (~2,000 page
    faults per 10k-container call in a fresh process, 5-10 % of its time). A call that
    finds the set lent (another thread), or needs more, allocates its own."""
    size = sum(int(np.prod(shape)) for shape in shapes) * 8
    if size > _SPARE_BYTES or not _SPARE_LOCK.acquire(blocking=False):
        yield [np.empty(shape) for shape in shapes]
        return
    try:
        if not _SPARE or _SPARE[0][0] != shapes:
            _SPARE[:] = [(shapes, [np.empty(shape) for shape in shapes])]
        yield _SPARE[0][1]
    finally:
        _SPARE_LOCK.release()


_SPARE_LOCK = threading.Lock()
_SPARE: list[tuple[tuple[tuple[int, ...], ...], list[np.ndarray]]] = []  # the kept set
_SPARE_BYTES = 16 << 20


def _block(chunk: np.ndarray, block: np.ndarray, recent: np.ndarray, rs: int) -> np.ndarray:
    """Copy the metrics of :data:`_ROWS` of ``chunk`` (``[n, W, len(METRICS)]``) into
    ``block`` (``[len(_ROWS) + 4, n, W]``: one contiguous ``[n, W]`` plane per metric,
    then the steps of the byte counters between adjacent rows, 0.0 in column 0), and
    the recent rows (from ``rs``) of ts, usage and the two period counters into
    ``recent`` (``[4, n, W − rs]``). Then one numpy call covers a whole plane (or
    several) and every sum runs over a contiguous row, as before. ``_COPY`` containers
    at a time: a contiguous pass over their window rows notes which metrics have a
    finite reading anywhere in the chunk (the result, ``bool[len(METRICS)]``, for the
    gauges) and brings the rows into cache for the strided copies of the runs of
    :data:`_RUNS`. Every value is copied unchanged. Measured at 10k containers × 60
    steps × 40 metrics: about as long as one ``window.sum()`` for the copies, plus
    about half that for the finite readings."""
    n, width, n_cols = chunk.shape
    flags = np.empty((min(_COPY, n), width, n_cols), dtype=bool)
    seen = np.zeros_like(flags)  # the flags of all parts ORed
    steps = block[_BYTES].reshape(len(RATE_COUNTERS), n * width)  # a view: planes contiguous
    for s in range(0, n, _COPY):
        part = chunk[s : s + _COPY]
        p = len(part)
        np.bitwise_or(seen[:p], np.isfinite(part, out=flags[:p]), out=seen[:p])
        for p0, p1, c0 in _RUNS:
            block[p0:p1, s : s + p] = part[:, :, c0 : c0 + p1 - p0].transpose(2, 0, 1)
        recent[2:4, s : s + p] = part[:, rs:, _PERIODS : _PERIODS + 2].transpose(2, 0, 1)
        rows = part.reshape(-1, n_cols)  # the byte counters' steps, over flat rows
        np.subtract(rows[1:, _BYTE_COLUMNS].T, rows[:-1, _BYTE_COLUMNS].T,
                    out=steps[:, s * width + 1 : (s + p) * width])
    recent[0:2] = block[0:2, :, rs:]
    block[_BYTES, :, 0] = 0.0  # not a step (nor written above)
    return _any_columns(seen)


def _any_columns(flags: np.ndarray) -> np.ndarray:
    """``flags.any(axis=(0, 1))`` for a contiguous ``bool[p, W, C]``, in a few calls:
    ORed 8 at a time as uint64 words, over blocks of rows."""
    n_cols = flags.shape[2]
    if n_cols % 8 or not flags.flags.c_contiguous:
        return flags.any(axis=(0, 1))
    words = flags.reshape(-1).view(np.uint64).reshape(-1, n_cols // 8)
    group = next(g for g in (64, 8, 1) if len(words) % g == 0)  # rows per reduced line
    words = np.bitwise_or.reduce(words.reshape(-1, group * (n_cols // 8)), axis=0)
    return np.bitwise_or.reduce(words.reshape(group, -1), axis=0).view(bool)


def _fill(out: np.ndarray, chunk: np.ndarray, block: np.ndarray, recent: np.ndarray,
          rs: int, finite: np.ndarray) -> None:
    """Every feature of one chunk (``[n, W, M]``, W ≥ 1) from its planes (:func:`_block`).

    The same bytes as the formulas of the module doc computed one metric at a time:
    every sum runs over the same row (same length, same order) of the same numbers,
    everything else is elementwise. ``where(mask, x, 0)`` is not formed for a row
    whose mask is full (the usual case; a row without any entry sums to 0.0), and for
    the others it is ``x``'s bits AND the mask's (:func:`_masked`), which is the same
    value or the same +0.0. ``tests/unit/test_features.py`` checks the bytes against
    that reference."""
    n, width = chunk.shape[:2]
    rows = np.arange(n)
    ts = block[0]
    present = np.isfinite(ts)
    count = _count(present)
    out[:, F["n_samples"]] = count
    has = count > 0
    last_row = np.full(n, width - 1)  # the last present row
    patchy = np.flatnonzero(count != width)
    if len(patchy):
        last_row[patchy] -= np.argmax(present[patchy, ::-1], axis=1)
    at_last = block[1:3, rows, last_row]  # usage and latency at that row

    valid = np.isfinite(block[_FINITE])  # usage, latency, failcnt, oom, cpu, psi
    valid &= present
    n_valid = _count(valid)
    any_valid = n_valid > 0
    valid_last = valid[0:2, rows, last_row]
    last = _fill_last(chunk, present, has, last_row, patchy, finite)  # limits, gauges

    # memory
    usage = block[1]
    ok = valid[0]
    n_ok = n_valid[0]
    any_ok = any_valid[0]
    u_last = _last_at(usage, ok, at_last[0], valid_last[0], any_ok)
    l_last = last[:, 0]
    headroom = l_last - u_last
    sum_u, ss_u, slope, resid_std, slope_se, _ = _fit(ts, usage, ok, n_ok, resid=True)
    recent_present = np.isfinite(recent[0])
    recent_ok = recent_present & np.isfinite(recent[1])
    recent_slope = _fit(recent[0], recent[1], recent_ok, _count(recent_ok), spread=False)[2]
    ttl = np.where(headroom <= 0, 0.0, np.where(slope > 0, headroom / slope, np.inf))
    unknown = np.isnan(headroom) | (np.isnan(slope) & np.isfinite(headroom) & (headroom > 0))
    ttl[unknown] = np.nan
    out[:, F["memory_usage_last_bytes"]] = u_last
    out[:, F["memory_limit_bytes"]] = l_last
    out[:, F["memory_headroom_bytes"]] = headroom
    out[:, F["memory_slope_bytes_per_s"]] = slope
    out[:, F["memory_recent_slope_bytes_per_s"]] = recent_slope
    out[:, F["memory_resid_std_bytes"]] = resid_std
    out[:, F["memory_slope_std_bytes_per_s"]] = slope_se
    out[:, F["memory_time_to_limit_s"]] = ttl
    out[:, F["memory_usage_mean_bytes"]] = sum_u / np.where(n_ok > 0, n_ok, np.nan)
    out[:, F["memory_usage_std_bytes"]] = np.sqrt(ss_u / np.where(any_ok, n_ok, np.nan))
    low, high = usage.min(axis=1), usage.max(axis=1)  # right where every row is valid
    partial = np.flatnonzero(n_ok != width)
    if len(partial):
        bits = _bits(ok[partial])
        low[partial] = _fill_masked(usage[partial], bits, np.inf).min(axis=1)
        high[partial] = _fill_masked(usage[partial], bits, -np.inf).max(axis=1)
    out[:, F["memory_usage_min_bytes"]] = np.where(any_ok, low, np.nan)
    out[:, F["memory_usage_max_bytes"]] = np.where(any_ok, high, np.nan)

    lat = block[2]
    lat_ok = valid[1]
    out[:, F["memory_latency_correlation"]] = _corr(usage, lat, ok & lat_ok)

    # Δts between adjacent rows, over the flat plane: [:, 0] is not a step, and 0.0
    dts = np.empty((n, width))
    np.subtract(ts.reshape(-1)[1:], ts.reshape(-1)[:-1], out=dts.reshape(-1)[1:])
    dts[:, 0] = 0.0

    # counters paired with their previous valid reading: failcnt, oom, cpu, psi
    step, delta, dt = _stepped(block[_STEPPED], valid[2:6], ts, dts, n_valid[2:6])
    spaced = dt > 0  # rates need time to pass (cpu, psi)
    if dt is dts and not np.any(step[2:4] > spaced):
        n_step = np.maximum(n_valid[2:6] - 1, 0)  # no gaps: all valid readings but the first
    else:
        step[2:4] &= spaced
        n_step = _count(step)
    np.maximum(delta, 0.0, out=delta)  # a reset counts 0
    sums = _sums(delta, step, n_step, width - 1)
    if dt is dts:  # Δts of the cpu and psi steps are the plane's: one sum for full rows
        dt = np.broadcast_to(dts, (2, n, width))
        sum_dt = _sums(dt, step[2:4], n_step[2:4], width - 1, _row_sum(dts))
    else:
        sum_dt = _sums(dt, step[2:4], n_step[2:4], width - 1)
    out[:, F["memory_failcnt_delta"]] = sums[0]
    out[:, F["oom_kills_delta"]] = sums[1]
    total_dt = sum_dt[1]
    out[:, F["memory_pressure_full_fraction"]] = np.where(
        total_dt > 0, sums[3] / np.where(total_dt > 0, total_dt, 1), np.nan)

    # cpu rates ρ at the step's end time
    cpu_step = step[2]
    n_steps = n_step[2]
    rate = np.divide(delta[2], dt[0])  # only read at steps
    # column 0 is never a step: +0.0 there, as where(step, x, 0); ts and usage are not
    # read there any more (the memory-latency correlation comes first)
    rate[:, 0] = 0.0
    ts[:, 0] = 0.0
    sum_rate, ss_rate, rate_slope, _, _, rate_dev = _fit(ts, rate, cpu_step, n_steps, lead=1)
    has_step = n_steps > 0
    out[:, F["cpu_usage_cores_last"]] = _last_at(
        rate, cpu_step, rate[rows, last_row], cpu_step[rows, last_row], has_step)
    out[:, F["cpu_usage_cores_mean"]] = np.where(has_step, sums[2] / sum_dt[0], np.nan)
    out[:, F["cpu_slope_cores_per_s"]] = rate_slope
    out[:, F["cpu_rate_std_cores"]] = np.where(has_step, np.sqrt(ss_rate / n_steps), np.nan)
    out[:, F["cpu_quota_cores"]] = last[:, 1]
    # correlation of ρ with the usage of the same row: where every step's row has a
    # usage and every ρ is finite (the usual case: a full usage row, a finite Σρ) the
    # mean and deviations of ρ are the fit's; the other containers are summed anew
    usage[:, 0] = 0.0
    corr = _corr(usage, rate, cpu_step, n_steps, lead=1, dev_y=rate_dev, ss_y=ss_rate)
    maybe = np.flatnonzero((n_ok != width) | ~np.isfinite(sum_rate))
    both = cpu_step[maybe] & ok[maybe]
    both &= np.isfinite(rate[maybe])
    differ = _count(both) != n_steps[maybe]  # both ⊆ cpu_step
    if differ.any():
        rows_ = maybe[differ]
        corr[rows_] = _corr(rate[rows_], usage[rows_], both[differ])
    out[:, F["cpu_memory_correlation"]] = corr

    # block latency
    out[:, F["block_latency_last_s"]] = _last_at(lat, lat_ok, at_last[1], valid_last[1],
                                                 any_valid[1])
    out[:, F["block_latency_change_s"]] = _change(lat, lat_ok, any_valid[1], rs)

    # cpu throttling, over the recent rows
    thr_ok = recent_present & np.isfinite(recent[2])
    thr_ok &= np.isfinite(recent[3])
    tstep, tdelta = _stepped(recent[2:4], thr_ok)[:2]
    tstep &= tdelta[0] > 0
    tstep &= tdelta[1] >= 0
    tsum = _row_sum(_masked(tdelta, _bits(tstep)))
    out[:, F["cpu_throttled_fraction"]] = np.where(
        tsum[0] > 0, np.clip(tsum[1] / tsum[0], 0.0, 1.0), 0.0)

    # usage beyond memory and CPU: usage ÷ limit, byte rates, last gauges
    limit = l_last
    out[:, F["memory_usage_limit_fraction"]] = np.where(
        np.isinf(limit), 0.0, np.where(limit > 0, u_last / np.where(limit > 0, limit, 1.0),
                                       np.nan))
    # byte rates: steps between adjacent rows; the sums run over rows 1.., W − 1 long
    k = len(RATE_COUNTERS)
    dv = block[_BYTES]
    adj_dt = dts[:, 1:]  # nan where either row is absent
    # every step counts in a row whose Δts are all > 0 and whose Δ are all finite: when
    # no Δ is non-finite next to a known Δts (the usual case) that is every row with
    # its Δts all > 0, else every such row whose Δ's plain sum is finite too
    full = np.repeat((adj_dt.min(axis=1, initial=np.inf) > 0)[None], k, axis=0)
    known = np.isfinite(dv)
    known |= np.isnan(dts)  # (column 0: 0.0 and 0.0)
    if np.count_nonzero(known) != known.size:
        full &= np.isfinite(_row_sum(dv[:, :, 1:]))
    which, rows_ = np.nonzero(~full)
    d = dv[which, rows_, 1:]  # their Δ as they are, masked below
    np.maximum(dv, 0.0, out=dv)
    total_dv = _row_sum(dv[:, :, 1:])
    total_dt = np.repeat(_row_sum(adj_dt)[None], k, axis=0)
    if len(rows_):
        bits = np.isfinite(d)
        bits &= adj_dt[rows_] > 0
        bits = _bits(bits)
        total_dt[which, rows_] = _row_sum(_masked(adj_dt[rows_], bits))
        np.maximum(d, 0.0, out=d)
        total_dv[which, rows_] = _row_sum(_masked(d, bits, out=d))
    out[:, [F[f] for f in RATE_COUNTERS]] = np.where(
        total_dt > 0, total_dv / np.where(total_dt > 0, total_dt, 1.0), np.nan).T
    out[:, [F[f"{g}_last"] for g in GAUGE_METRICS]] = last[:, 2:]
    request = out[:, F["cpu_request_cores_last"]]
    mean_cores = out[:, F["cpu_usage_cores_mean"]]
    out[:, F["cpu_usage_request_fraction"]] = np.where(
        request > 0, mean_cores / np.where(request > 0, request, 1.0), np.nan)


def _bits(mask: np.ndarray) -> np.ndarray:
    """``mask`` as int64 all ones (True) or zero (False), for :func:`_masked`."""
    return np.negative(mask.view(np.int8)).astype(np.int64)  # 1 → −1: all ones


def _row_sum(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=-1)``: numpy's pairwise sum of each row (the same call, without the
    method's Python layer)."""
    return np.add.reduce(x, axis=-1)


def _count(mask: np.ndarray) -> np.ndarray:
    """``mask.sum(axis=-1)`` (int64), summed as bytes when the rows are short enough
    (about twice as fast as numpy's bool sum, which casts every row)."""
    if mask.shape[-1] < 256:
        return np.add.reduce(mask.view(np.uint8), axis=-1, dtype=np.uint8).astype(np.int64)
    return mask.sum(axis=-1)


def _masked(x: np.ndarray, bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``where(mask, x, 0.0)`` to the bit: ``x``'s bits AND ``bits`` (:func:`_bits`) are
    ``x`` where the mask is True and +0.0 elsewhere; branch-free, unlike ``where``."""
    res = np.bitwise_and(x.view(np.int64), bits, out=None if out is None else out.view(np.int64))
    return res.view(np.float64)


def _fill_masked(x: np.ndarray, bits: np.ndarray, fill: float) -> np.ndarray:
    """``where(mask, x, fill)`` to the bit (``bits`` from :func:`_bits`)."""
    res = np.bitwise_and(x.view(np.int64), bits)
    res |= np.bitwise_and(~bits, np.float64(fill).view(np.int64))
    return res.view(np.float64)


def _sums(x: np.ndarray, mask: np.ndarray, count: np.ndarray, full: int,
          full_sum: np.ndarray | None = None) -> np.ndarray:
    """``where(mask, x, 0.0).sum(axis=-1)`` to the bit, for ``x`` and ``mask``
    ``[..., L]`` and ``count`` the mask's row counts. A row whose mask holds ``full``
    entries (all but leading columns where ``x`` is +0.0 already) is ``x``'s sum as it
    is (``full_sum``, if given, is that sum for every row: ``x`` repeats one plane), a
    row without any entry is 0.0, and only the others are masked."""
    res = (_row_sum(x) if full_sum is None
           else np.array(np.broadcast_to(full_sum, count.shape)))
    partial = count != full
    if partial.any():
        res[count == 0] = 0.0
        partial &= count != 0
        if partial.any():
            res[partial] = _row_sum(_masked(x[partial], _bits(mask[partial])))
    return res


def _rows(v: np.ndarray, width: int) -> np.ndarray:
    """``v[:, None]`` as a contiguous ``[len(v), width]`` array: an elementwise op with
    it runs over whole planes, where the broadcast one would loop row by row."""
    return np.repeat(v, width).reshape(len(v), width)


def _centred(planes: tuple[np.ndarray, ...], mask: np.ndarray, count: np.ndarray, lead: int,
             denominator: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(where(mask, x − m, 0.0), s)`` to the bit for each ``x`` of ``planes`` (``[n,
    L]``), row by row, with ``s = Σ where(mask, x, 0.0)`` and ``m = s / denominator``.
    A row whose mask is full after ``lead`` leading columns (``count`` = L − lead; those
    columns are never in it and ``x`` must hold +0.0 there) needs no mask; only the
    others are masked, or every row when most are partial."""
    width = planes[0].shape[1]
    partial = np.flatnonzero(count != width - lead)
    out = []
    if len(partial) > len(count) // 2:
        bits = _bits(mask)
        for x in planes:
            dev = _masked(x, bits)
            s = _row_sum(dev)
            np.subtract(x, _rows(s / denominator, width), out=dev)
            out.append((_masked(dev, bits, out=dev), s))
        return out
    if len(partial):
        bits = _bits(mask[partial])
        part_denominator = denominator[partial]
    for x in planes:
        s = _row_sum(x)
        dev = np.subtract(x, _rows(s / denominator, width))
        dev[:, :lead] = 0.0
        if len(partial):
            sub = x[partial]
            part = _masked(sub, bits)
            s[partial] = _row_sum(part)
            np.subtract(sub, (s[partial] / part_denominator)[:, None], out=part)
            dev[partial] = _masked(part, bits, out=part)
        out.append((dev, s))
    return out


def _fit(t: np.ndarray, y: np.ndarray, mask: np.ndarray, count: np.ndarray, *, lead: int = 0,
         resid: bool = False, spread: bool = True) -> tuple[np.ndarray | None, ...]:
    """:func:`_ols` of ``y`` on ``t`` (``[n, L]``) over ``mask`` (``count`` its row
    counts; ``lead`` leading columns never in it, where ``t`` and ``y`` hold +0.0):
    ``(Σy, Σ(y−ȳ)², slope, resid_std, slope_se, y−ȳ where mask else 0)``; the residual
    ones only with ``resid``, ``Σ(y−ȳ)²`` only with ``spread``."""
    (dt, _), (dy, sum_y) = _centred((t, y), mask, count, lead, count)
    prod = np.multiply(dt, dt)
    stt = _row_sum(prod)
    np.multiply(dt, dy, out=prod)
    sty = _row_sum(prod)
    syy = None
    if spread:
        np.multiply(dy, dy, out=prod)
        syy = _row_sum(prod)
    ok = (count >= 2) & (stt > 0)
    slope = np.where(ok, sty / stt, np.nan)
    if not resid:
        return sum_y, syy, slope, None, None, dy
    np.multiply(_rows(np.where(ok, slope, 0.0), t.shape[1]), dt, out=prod)
    np.subtract(dy, prod, out=prod)
    np.multiply(prod, prod, out=prod)
    ssr = _row_sum(prod)
    resid_std = np.where(ok, np.sqrt(ssr / count), np.nan)
    slope_se = np.where(count > 2, np.sqrt(ssr / (count - 2) / stt), 0.0)
    slope_se = np.where(ok, slope_se, np.nan)
    return sum_y, syy, slope, resid_std, slope_se, dy


def _corr(x: np.ndarray, y: np.ndarray, mask: np.ndarray, count: np.ndarray | None = None, *,
          lead: int = 0, dev_y: np.ndarray | None = None, ss_y: np.ndarray | None = None
          ) -> np.ndarray:
    """Row-wise Pearson correlation of x and y over ``mask``, which holds only rows
    where both are finite (nan: < 3 points or flat). ``count``: the mask's row counts;
    ``dev_y``, ``ss_y``: y's deviations from its mean (0 outside the mask) and their
    sum of squares, when known (:func:`_fit`'s; ``lead`` as there, x +0.0 there too).
    Else containers with fewer than 3 rows in the mask are nan without a sum: when they
    are many, only the others are summed."""
    if count is None:
        count = _count(mask)
    enough = count >= 3
    res = np.full(len(count), np.nan)
    if not enough.any():
        return res
    subset = dev_y is None and np.count_nonzero(enough) < 0.75 * len(count)
    if subset:
        x, y, mask, count = x[enough], y[enough], mask[enough], count[enough]
    denominator = np.where(count > 0, count, np.nan)
    if dev_y is None:
        (dx, _), (dev_y, _) = _centred((x, y), mask, count, lead, denominator)
        ss_y = _row_sum(np.multiply(dev_y, dev_y))
    else:
        ((dx, _),) = _centred((x,), mask, count, lead, denominator)
    prod = np.multiply(dx, dx)
    sxx = _row_sum(prod)
    np.multiply(dx, dev_y, out=prod)
    cov = _row_sum(prod)
    den = np.sqrt(sxx * ss_y)
    r = np.where((count >= 3) & (den > 0), cov / np.where(den > 0, den, 1.0), np.nan)
    if not subset:
        return r
    res[enough] = r
    return res


def _fill_last(chunk: np.ndarray, present: np.ndarray, has: np.ndarray, last_row: np.ndarray,
               patchy: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """The last readings of :data:`_LAST_COLUMNS`, ``[n, 2 + len(GAUGE_METRICS)]``, read
    at each container's last present row (``last_row``; it is the window's last row but
    for the ``patchy`` containers; ``has``: there is one), else (a reading
    missing there) searched for along the row: the two limits' last reading that is not
    nan (``_last``), each gauge's last valid one. A gauge missing there in every
    container of the chunk and finite nowhere in it (``finite``, by metric; most sources
    have no such gauge) is left as read, as it always was."""
    last = chunk[:, -1, _LAST_COLUMNS]
    if len(patchy):
        last[patchy] = chunk[patchy, last_row[patchy]][:, _LAST_COLUMNS]
    missing = np.isnan(last)
    missing &= has[:, None]
    skip = missing.all(axis=0) & ~finite[_LAST_COLUMNS]
    skip[:2] = False  # (the limits are always searched)
    for j in np.flatnonzero(missing.any(axis=0) & ~skip):
        redo = missing[:, j]
        column = _LAST_COLUMNS[j]
        sub = chunk[redo, :, column]
        valid = present[redo] & (np.isfinite(sub) if j >= 2 else ~np.isnan(sub))
        last[redo, j] = _last(sub, valid)
    return np.where(has[:, None], last, np.nan)


def _last_at(values: np.ndarray, mask: np.ndarray, at_last: np.ndarray, valid_last: np.ndarray,
             any_valid: np.ndarray) -> np.ndarray:
    """:func:`_last` given the reading at each container's last present row
    (``at_last``) and whether it is valid there: only the containers whose last valid
    reading is earlier are searched."""
    last = np.where(valid_last, at_last, np.nan)
    redo = any_valid & ~valid_last
    if redo.any():
        last[redo] = _last(values[redo], mask[redo])
    return last


def _stepped(values: np.ndarray, mask: np.ndarray, ts: np.ndarray | None = None,
             dts: np.ndarray | None = None, count: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_steps` and :func:`_delta` for ``k`` counters at once: ``values`` is
    ``[k, n, L]`` (each ``[n, L]`` plane contiguous), ``mask`` ``[k, n, L]`` or one
    ``[n, L]`` for all (``count``: its row counts, if known). Returns ``(step, Δvalue,
    Δts)``, ``step`` and ``Δvalue`` ``[k, n, L]``, ``Δvalue`` 0.0 in column 0 (never a
    step); ``Δts`` (with ``ts`` and ``dts``, its differences between adjacent rows,
    0.0 in column 0) is ``dts`` itself without gaps, else ``[2, n, L]`` for the
    counters 2 and 3. Only the entries at steps are meaningful. Without gaps (every
    step from the row just before, the usual case) the Δ are shifted differences over
    each flat plane, else each step's previous valid row is looked up."""
    k, n, width = values.shape
    step = np.zeros(mask.shape, dtype=bool)
    flat = step.reshape(-1)
    flat_mask = np.ascontiguousarray(mask).reshape(-1)
    np.logical_and(flat_mask[1:], flat_mask[:-1], out=flat[1:])
    step[..., 0] = False
    if count is None:
        count = _count(mask)
    # adjacent steps are all the steps iff each valid reading but a row's first has one
    if np.count_nonzero(step) == count.sum() - np.count_nonzero(count):
        if step.ndim == 2:
            step = np.broadcast_to(step, values.shape).copy()
        delta = np.empty((k, n, width))
        planes = values.reshape(k, n * width)
        np.subtract(planes[:, 1:], planes[:, :-1], out=delta.reshape(k, -1)[:, 1:])
        delta[:, :, 0] = 0.0
        return step, delta, dts
    prev = np.where(mask, np.arange(width), -1)
    np.maximum.accumulate(prev, axis=-1, out=prev)
    prev[..., 1:] = prev[..., :-1].copy()
    prev[..., 0] = -1
    step = np.broadcast_to(mask & (prev >= 0), values.shape).copy()
    np.maximum(prev, 0, out=prev)
    if prev.ndim == 2:
        prev = np.broadcast_to(prev, values.shape)
    delta = values - np.take_along_axis(values, prev, axis=2)
    delta[:, :, 0] = 0.0
    dt = None
    if ts is not None:
        dt = ts - np.take_along_axis(np.broadcast_to(ts, (2, n, width)), prev[2:4], axis=2)
        dt[:, :, 0] = 0.0
    return step, delta, dt


def _change(lat: np.ndarray, ok: np.ndarray, any_ok: np.ndarray, rs: int) -> np.ndarray:
    """Mean of ``lat`` over its valid recent rows (from ``rs``) minus its mean over the
    earlier ones, per container (``nan`` if either has none: always so without any
    valid row, so when those are many only the others are summed)."""
    k = np.count_nonzero(any_ok)
    res = np.full(len(lat), np.nan)
    if k == 0:
        return res
    if k < 0.75 * len(lat):
        lat, ok = lat[any_ok], ok[any_ok]
    z = np.empty((2,) + lat.shape)
    _masked(lat, _bits(ok), out=z[0])
    z[1] = z[0]
    z[0][:, :rs] = 0.0  # the recent rows
    z[1][:, rs:] = 0.0  # the earlier ones
    n_recent = _count(ok[:, rs:])
    n_earlier = _count(ok[:, :rs])
    sums = _row_sum(z)
    change = (sums[0] / np.where(n_recent > 0, n_recent, np.nan)
              - sums[1] / np.where(n_earlier > 0, n_earlier, np.nan))
    if len(change) == len(res):
        return change
    res[any_ok] = change
    return res


class UsageTrend(NamedTuple):
    """The trend of a used amount against its limit, per container (``[N]`` each):
    what the ``memory_*`` features are for memory (module docstring: last, limit,
    headroom, slope, recent slope, residual std, slope std, time to limit)."""

    last: np.ndarray
    limit: np.ndarray
    headroom: np.ndarray
    slope: np.ndarray
    recent_slope: np.ndarray
    resid_std: np.ndarray
    slope_std: np.ndarray
    time_to_limit_s: np.ndarray
    n_samples: np.ndarray


def _trend(ts: np.ndarray, used: np.ndarray, limit: np.ndarray, present: np.ndarray,
           ok: np.ndarray, recent: slice) -> UsageTrend:
    u_last = _last(used, ok)
    l_last = _last(limit, present & ~np.isnan(limit))
    headroom = l_last - u_last
    slope, resid_std, slope_se = _ols(ts, used, ok)
    recent_slope, _, _ = _ols(ts[:, recent], used[:, recent], ok[:, recent])
    ttl = np.where(headroom <= 0, 0.0, np.where(slope > 0, headroom / slope, np.inf))
    unknown = np.isnan(headroom) | (np.isnan(slope) & np.isfinite(headroom) & (headroom > 0))
    ttl[unknown] = np.nan
    return UsageTrend(u_last, l_last, headroom, slope, recent_slope, resid_std, slope_se, ttl,
                      present.sum(axis=1).astype(np.float64))


def usage_trend(window: np.ndarray, used: str, limit: str, *, recent_steps: int) -> UsageTrend:
    """The trend of metric ``used`` against metric ``limit`` over ``window`` (``[N, W,
    len(METRICS)]``), with the formulas of the ``memory_*`` features. For a tier kept out
    of :data:`FEATURES` (the learned models' input): the disk, ``usage_trend(window,
    "disk_used_bytes", "disk_limit_bytes", recent_steps=5)``.

    Worked example (one container, rows at t = 0, 10, 20, 30, ``recent_steps = 2``):
    disk used 100, 120, 150, 170 MiB of a 200 MiB volume → slope 2.4 MiB/s, recent
    slope 2 MiB/s, headroom 30 MiB, time to limit 12.5 s (the memory example's numbers).
    """
    window = np.asarray(window, dtype=np.float64)
    ts = window[:, :, M["ts_s"]]
    present = np.isfinite(ts)
    values = window[:, :, M[used]]
    recent = slice(max(window.shape[1] - recent_steps, 0), None)
    with np.errstate(all="ignore"):
        return _trend(ts, values, window[:, :, M[limit]], present,
                      present & np.isfinite(values), recent)


class RateTrend(NamedTuple):
    """The rate of a counter against a limit on that rate, per container (``[N]``
    each): what the ``cpu_*`` rate features are for CPU (module docstring: last rate,
    mean rate, slope of the rates, their std), the limit's last reading, and the count
    of present rows."""

    last: np.ndarray
    mean: np.ndarray
    slope: np.ndarray
    std: np.ndarray
    limit: np.ndarray
    n_samples: np.ndarray


def _rates(ts: np.ndarray, counter: np.ndarray, present: np.ndarray
           ) -> tuple[RateTrend, np.ndarray, np.ndarray]:
    ok = present & np.isfinite(counter)
    prev, step = _steps(ok)
    d = np.maximum(_delta(counter, prev), 0.0)
    dt = _delta(ts, prev)
    step &= dt > 0
    rate = np.where(step, d / dt, np.nan)
    n_steps = step.sum(axis=1)
    sum_dt = np.where(step, dt, 0.0).sum(axis=1)
    mean_rate = np.where(step, d, 0.0).sum(axis=1) / sum_dt
    rate_slope, _, _ = _ols(ts, rate, step)
    rate_mean = np.where(step, rate, 0.0).sum(axis=1) / n_steps
    rate_dev = np.where(step, rate - rate_mean[:, None], 0.0)
    rate_std = np.sqrt((rate_dev * rate_dev).sum(axis=1) / n_steps)
    nan = np.full(len(ts), np.nan)
    return (RateTrend(_last(rate, step), np.where(n_steps > 0, mean_rate, np.nan), rate_slope,
                      np.where(n_steps > 0, rate_std, np.nan), nan,
                      present.sum(axis=1).astype(np.float64)), rate, step)


def rate_trend(window: np.ndarray, counter: str, limit: str) -> RateTrend:
    """The rate of counter ``counter`` against the rate limit ``limit`` over ``window``,
    with the formulas of the ``cpu_*`` rate features. For a tier kept out of
    :data:`FEATURES`: the network, ``rate_trend(window, "net_rx_bytes_total",
    "net_rx_limit_bytes_per_s")``.

    Worked example (the CPU one with bytes): ``net_rx_bytes_total`` 0, 5, 15, 30 MB at
    t = 100, 110, 120, 130 → rates 0.5, 1.0, 1.5 MB/s: last 1.5, mean 1.0, slope
    0.05 MB/s per s, std 0.408 MB/s."""
    window = np.asarray(window, dtype=np.float64)
    ts = window[:, :, M["ts_s"]]
    present = np.isfinite(ts)
    lim = window[:, :, M[limit]]
    with np.errstate(all="ignore"):
        rt, _, _ = _rates(ts, window[:, :, M[counter]], present)
        return rt._replace(limit=_last(lim, present & ~np.isnan(lim)))


def _last(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values`` at the last True of ``mask`` in each row ([N, W] → [N]); nan if none."""
    width = mask.shape[1]
    if width == 0:
        return np.full(mask.shape[0], np.nan)
    idx = width - 1 - np.argmax(mask[:, ::-1], axis=1)
    picked = np.take_along_axis(values, idx[:, None], axis=1)[:, 0]
    return np.where(mask.any(axis=1), picked, np.nan)


def _steps(mask: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Pair each valid position with the previous valid one.

    Returns ``(prev, step)``: ``prev[n, j]`` is the index of the last True of
    ``mask[n, :j]`` (clamped to 0 when there is none) and ``step[n, j]`` is True
    where ``mask[n, j]`` and such a previous position exists. ``prev`` is ``None``
    when every step is from the row just before (no gaps: the usual case), which
    :func:`_delta` then computes as a plain shifted difference.
    """
    width = mask.shape[1]
    idx = np.where(mask, np.arange(width), -1)
    upto = np.maximum.accumulate(idx, axis=1) if width else idx
    prev = np.full_like(upto, -1)
    prev[:, 1:] = upto[:, :-1]
    step = mask & (prev >= 0)
    if width > 1 and not (step[:, 1:] & (prev[:, 1:] != np.arange(width - 1))).any():
        return None, step
    return np.maximum(prev, 0), step


def _delta(values: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """``values[n, j] − values[n, prev[n, j]]``; with ``prev`` None (no gaps,
    :func:`_steps`), ``values[n, j] − values[n, j − 1]``. Only the entries at steps
    are meaningful (every caller masks the others): the first column is 0 (or nan)."""
    if prev is None:
        out = np.empty_like(values)
        out[:, 0] = values[:, 0] - values[:, 0]
        np.subtract(values[:, 1:], values[:, :-1], out=out[:, 1:])
        return out
    return values - np.take_along_axis(values, prev, axis=1)


def _ols(
    t: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row least-squares fit of ``y`` on ``t`` over ``mask``.

    Returns ``(slope, resid_std, slope_se)`` ([N] each): the slope, the population
    std of the residuals and the slope's standard error (0 when n = 2); all ``nan``
    where fewer than 2 points or no spread in ``t``. Centred two-pass sums keep
    precision with epoch-second timestamps.
    """
    n = mask.sum(axis=1)
    t_mean = np.where(mask, t, 0.0).sum(axis=1) / n
    y_mean = np.where(mask, y, 0.0).sum(axis=1) / n
    dt = np.where(mask, t - t_mean[:, None], 0.0)
    dy = np.where(mask, y - y_mean[:, None], 0.0)
    stt = (dt * dt).sum(axis=1)
    sty = (dt * dy).sum(axis=1)
    ok = (n >= 2) & (stt > 0)
    slope = np.where(ok, sty / stt, np.nan)
    resid = dy - np.where(ok, slope, 0.0)[:, None] * dt
    ssr = (resid * resid).sum(axis=1)
    resid_std = np.where(ok, np.sqrt(ssr / n), np.nan)
    slope_se = np.where(n > 2, np.sqrt(ssr / (n - 2) / stt), 0.0)
    slope_se = np.where(ok, slope_se, np.nan)
    return slope, resid_std, slope_se
