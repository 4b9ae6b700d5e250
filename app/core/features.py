"""Features: a window of samples → one row of numbers per container.

Input is a window ``float64[N, W, len(METRICS)]`` (see :mod:`app.core.sample`):
N containers, W steps, columns in :data:`~app.core.sample.METRICS` order. A row
whose ``ts_s`` is not finite is *absent* (the ring buffer pads the start of a
young container's window with all-``nan`` rows); a reading that is ``nan`` in an
otherwise present row is *missing* and is skipped by every feature that needs it.
The same code runs online (monitor) and offline (training): one compiled pass per
container (numba; :mod:`app.core._features_kernel`) over its W rows, contiguous in the
window, so the window is read once. Every sum runs over the window's row (or its recent
part) with 0.0 where a mask is False, in numpy's pairwise order: every feature keeps the
bits of the formulas below computed with numpy one metric at a time
(``tests/unit/test_features.py`` holds that reference; only the sign of a nan may
differ). The first call in a process compiles the kernel, or loads it from numba's
cache (``__pycache__`` next to the kernel's file, else numba's per-user cache directory).

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

_CHUNK = 1024  # containers copied at a time when the window is not C-contiguous

def compute_features(window: np.ndarray, *, recent_steps: int) -> np.ndarray:
    """Features of every container of ``window``: ``float64[N, len(FEATURES)]``.

    ``window`` is ``[N, W, len(METRICS)]``; ``recent_steps`` (≥ 2) is how many of
    the last rows the recent slope and the throttled fraction look at. Formulas and
    a worked example are in the module docstring. Never emits numpy warnings;
    quantities that cannot be computed are ``nan`` (see each feature).

    One compiled pass per container (:func:`app.core._features_kernel.kernel`, imported
    on the first call: importing this module for its names does not load numba) over its
    W rows, which are contiguous in a C-ordered window: the window is read once. Any
    other layout is copied :data:`_CHUNK` containers at a time first.
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
    from prescale.app.core._features_kernel import kernel

    rs = max(width - int(recent_steps), 0)  # the first recent row
    out = np.empty((n_containers, len(FEATURES)))  # the kernel writes every column
    if window.flags.c_contiguous:
        kernel(window, rs, out)
    else:
        for start in range(0, n_containers, _CHUNK):
            kernel(np.ascontiguousarray(window[start : start + _CHUNK]), rs,
                    out[start : start + _CHUNK])
    return out


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


def prepare() -> None:
    """Compile the features' pass now, or load it from numba's cache (see
    :func:`compute_features`): the first call after an install compiles for ~6 s, later
    processes load it in ~0.5 s. A process that serves ticks or requests calls this while
    it starts, so that neither its first tick nor its first request pays it. The same as
    any first call: one container of two absent rows (its features: 0 samples)."""
    compute_features(np.full((1, 2, len(METRICS)), np.nan), recent_steps=2)
