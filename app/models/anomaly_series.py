"""An anomaly detector over one labelled single-metric series, NAB-style: window
features of the series, the probation rows it is fitted on, its flags matched against
the labelled anomaly windows, and the z-score baseline scored the same way.

Pure: numpy and pandas only; no file I/O, no clock, no Ray. The NAB files are read by
:mod:`app.telemetry.nab`; ``scripts/eval_anomaly_nab.py`` ties the two. The detector
itself (input handling, the score mapping) is :mod:`app.models.anomaly`.

Univariate windows
------------------
:func:`univariate_window_features` turns a single-metric series (NAB files are
``timestamp,value``) into feature rows; see its docstring for the formulas.

Scoring against labelled windows (NAB-style, simpler than NAB's scoring function)
----------------------------------------------------------------------------------
For one series with labelled anomaly windows ``[start_s, end_s]``
(:func:`evaluate_series` runs all of it; :func:`score_flags` is the matching):

1. **Probation**: the first ``p = min(floor(0.15·n), 750)`` rows (NAB's probationary
   period, :func:`probation_rows`: 15 % of the file, capped at 750 rows as NAB does,
   which only shortens it for files over 5000 rows) are for fitting only; nothing
   there is scored.
   The detector is fitted on the probation rows that have a full trailing window
   (rows ``W … p−1``), and scores rows ``p … n−1``.
2. **Flags**: a scored row is flagged when its score ``> detector.threshold``
   (``1 − contamination``).
3. **Windows**: a window is scored when it overlaps the scored rows' time range
   (``end ≥`` first scored ``ts`` and ``start ≤`` last scored ``ts``). It is
   **detected** (a true positive) when at least one flagged row has
   ``start ≤ ts ≤ end``. **recall = detected / windows**.
4. **Alarms**: flagged rows are merged, in row order, into alarms: consecutive
   flagged rows ``i < j`` belong to the same alarm when ``j − i < W`` (``merge_gap``).
   An alarm is **true** when at least one of its rows lies inside a window, else it
   is a **false alarm**. **precision = true alarms / alarms**.
5. **Delay**: for each detected window, ``ts`` of its first flagged row − ``start``
   (seconds); the median is over all detected windows (over all files for totals).

Rates with a zero denominator are ``nan`` (reported as "—").

Baseline
--------
:func:`zscore_baseline_flags`: ``z = (x − μ)/σ`` with ``μ``, ``σ`` (population) of the
raw values of the same probation rows; flag ``|z| > 3``. ``σ = 0`` flags every value
``≠ μ``. Scored with the same :func:`score_flags`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prescale.app.models.anomaly import AnomalyDetector, is_anomalous

#: Column order of :func:`univariate_window_features`.
UNIVARIATE_FEATURES: tuple[str, ...] = (
    "window_mean",
    "window_std",
    "zscore_last",
    "delta_last",
)

#: NAB's probationary period: this fraction of a file's rows, at most
#: ``PROBATION_FRACTION · 5000`` rows.
PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750


# --------------------------------------------------------------------------- features


def univariate_window_features(
    values: np.ndarray | Sequence[float], window_points: int
) -> np.ndarray:
    """Feature rows of a single-metric series: ``float64[n, len(UNIVARIATE_FEATURES)]``.

    Row ``i`` describes value ``x_i`` against the ``W = window_points`` values *before*
    it, ``x_{i−W} … x_{i−1}`` (the current value is left out, so a spike is not
    diluted into its own baseline):

    ``window_mean``  ``m_i`` = mean of those W values;
    ``window_std``   ``s_i`` = their population standard deviation;
    ``zscore_last``  ``(x_i − m_i) / s_i``; when ``s_i = 0``: 0 if ``x_i = m_i``,
                     else ``±inf`` (a flat series that moves);
    ``delta_last``   ``x_i − x_{i−1}``, the rate of change per step (per row).

    Rows without W earlier values (the first W) have ``nan`` for the first three;
    row 0 has ``nan`` ``delta_last``. A ``nan`` value makes the windows containing it
    ``nan``. Vectorised with pandas rolling windows (exact 0 std on constant windows).

    Worked example, W = 3, values ``[1, 2, 3, 10]``: row 3 sees ``[1, 2, 3]`` →
    mean 2, std ``sqrt(2/3) = 0.8165``, z ``(10 − 2)/0.8165 = 9.798``, delta 7.
    """
    if isinstance(window_points, bool) or not isinstance(window_points, (int, np.integer)):
        raise ValueError(f"window_points must be an int ≥ 2, got {window_points!r}")
    if window_points < 2:
        raise ValueError(f"window_points must be ≥ 2 (a std needs 2 points), got {window_points}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    series = pd.Series(x)
    rolling = series.shift(1).rolling(window_points, min_periods=window_points)
    mean = rolling.mean().to_numpy()
    std = rolling.std(ddof=0).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = x - mean
        z = np.where(std > 0, dev / std, np.where(dev == 0, 0.0, np.sign(dev) * np.inf))
    z[np.isnan(mean) | np.isnan(x)] = np.nan
    delta = series.diff().to_numpy()
    return np.column_stack([mean, std, z, delta])


# --------------------------------------------------------------------------- scoring


def probation_rows(n_rows: int) -> int:
    """NAB's probationary period: ``min(floor(0.15·n), 750)`` rows.

    Examples: 4032 rows → 604; 1243 → 186; 22695 → 750.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be ≥ 0, got {n_rows}")
    return int(min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS))


def merge_alarms(flag_rows: np.ndarray | Sequence[int], merge_gap: int) -> list[np.ndarray]:
    """Group ascending flagged row indices into alarms: consecutive flags ``i < j`` are
    in one alarm when ``j − i < merge_gap``.

    Example, ``merge_gap = 3``: flags ``[10, 11, 13, 16, 30]`` → alarms
    ``[10, 11, 13]`` (gaps 1, 2), ``[16]`` (gap 3 is not < 3), ``[30]``.
    """
    if merge_gap < 1:
        raise ValueError(f"merge_gap must be ≥ 1, got {merge_gap}")
    rows = np.asarray(flag_rows, dtype=np.int64)
    if rows.size == 0:
        return []
    if np.any(np.diff(rows) <= 0):
        raise ValueError("flag_rows must be strictly increasing row indices")
    breaks = np.flatnonzero(np.diff(rows) >= merge_gap) + 1
    return np.split(rows, breaks)


@dataclass(frozen=True)
class WindowScore:
    """How a set of flags matched the labelled windows of one series (or of several)."""

    windows: int
    detected: int
    alarms: int
    true_alarms: int
    flags: int
    delays_s: tuple[float, ...]  # one per detected window

    @property
    def false_alarms(self) -> int:
        return self.alarms - self.true_alarms

    @property
    def recall(self) -> float:
        return self.detected / self.windows if self.windows else math.nan

    @property
    def precision(self) -> float:
        return self.true_alarms / self.alarms if self.alarms else math.nan

    @property
    def median_delay_s(self) -> float:
        return float(np.median(self.delays_s)) if self.delays_s else math.nan

    @staticmethod
    def total(scores: Sequence[WindowScore]) -> WindowScore:
        """Counts summed, delays pooled (the total's median is over all windows)."""
        return WindowScore(
            windows=sum(s.windows for s in scores),
            detected=sum(s.detected for s in scores),
            alarms=sum(s.alarms for s in scores),
            true_alarms=sum(s.true_alarms for s in scores),
            flags=sum(s.flags for s in scores),
            delays_s=tuple(d for s in scores for d in s.delays_s),
        )


def rows_in_windows(
    ts_s: np.ndarray | Sequence[float], windows_s: Sequence[tuple[float, float]]
) -> np.ndarray:
    """bool [n]: ``start ≤ ts ≤ end`` for some window.

    Over the scored rows, the mean of this is the precision a detector flagging rows
    at random would have (the chance level for the precision column).
    Example: ts ``[0, 60, 120, 180]``, window ``[60, 120]`` → ``[F, T, T, F]``.
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    inside = np.zeros(ts.shape, dtype=bool)
    for start, end in windows_s:
        inside |= (ts >= start) & (ts <= end)
    return inside


def score_flags(
    ts_s: np.ndarray | Sequence[float],
    flags: np.ndarray | Sequence[bool],
    windows_s: Sequence[tuple[float, float]],
    *,
    first_scored_row: int,
    merge_gap: int,
) -> WindowScore:
    """Match per-row ``flags`` with labelled ``windows_s`` (rules 3–5 of the module docstring).

    Rows before ``first_scored_row`` are ignored (flags there do not count, windows
    that end before the first scored ``ts`` are not scored).
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    fl = np.asarray(flags, dtype=bool)
    if ts.ndim != 1 or fl.shape != ts.shape:
        raise ValueError(
            f"ts_s and flags must be 1-D of the same length, got {ts.shape}, {fl.shape}"
        )
    if not 0 <= first_scored_row <= ts.size:
        raise ValueError(f"first_scored_row must be in [0, {ts.size}], got {first_scored_row}")
    for start, end in windows_s:
        if not start <= end:
            raise ValueError(f"window start must be ≤ end, got [{start}, {end}]")
    scored_ts = ts[first_scored_row:]
    flag_rows = np.flatnonzero(fl[first_scored_row:]) + first_scored_row
    if scored_ts.size == 0:
        return WindowScore(0, 0, 0, 0, 0, ())
    t_lo, t_hi = float(np.min(scored_ts)), float(np.max(scored_ts))
    flag_ts = ts[flag_rows]
    inside = rows_in_windows(flag_ts, windows_s)
    windows = detected = 0
    delays: list[float] = []
    for start, end in windows_s:
        in_w = (flag_ts >= start) & (flag_ts <= end)
        if end < t_lo or start > t_hi:
            continue
        windows += 1
        if in_w.any():
            detected += 1
            delays.append(float(flag_ts[np.argmax(in_w)] - start))
    alarms = merge_alarms(flag_rows, merge_gap)
    pos = {int(r): k for k, r in enumerate(flag_rows)}
    true_alarms = sum(1 for alarm in alarms if any(inside[pos[int(r)]] for r in alarm))
    return WindowScore(
        windows=windows,
        detected=detected,
        alarms=len(alarms),
        true_alarms=true_alarms,
        flags=int(flag_rows.size),
        delays_s=tuple(delays),
    )


def zscore_baseline_flags(
    values: np.ndarray | Sequence[float], n_train: int, k: float = 3.0
) -> np.ndarray:
    """``|x − μ| / σ > k`` with ``μ``, ``σ`` (population) of ``values[:n_train]`` (bool [n]).

    ``σ = 0`` flags every value ``≠ μ``; ``nan`` values are never flagged.
    Example: training ``[1, 2, 3]`` (μ 2, σ 0.8165) and k = 3 flag ``x`` outside
    ``2 ± 2.449``: 4.5 is flagged, 4.4 is not.
    """
    x = np.asarray(values, dtype=np.float64)
    if not 1 <= n_train <= x.size:
        raise ValueError(f"n_train must be in [1, {x.size}], got {n_train}")
    train = x[:n_train]
    train = train[np.isfinite(train)]
    if train.size == 0:
        raise ValueError("the baseline's training rows have no finite value")
    mu, sigma = float(train.mean()), float(train.std())
    dev = np.abs(x - mu)
    with np.errstate(invalid="ignore"):
        return dev > k * sigma if sigma > 0 else dev > 0


@dataclass(frozen=True)
class SeriesResult:
    """:func:`evaluate_series` for one series: the detector's and the baseline's scores."""

    rows: int
    probation_rows: int
    detector: WindowScore
    baseline: WindowScore


def evaluate_series(
    ts_s: np.ndarray | Sequence[float],
    values: np.ndarray | Sequence[float],
    windows_s: Sequence[tuple[float, float]],
    *,
    window_points: int = 12,
    contamination: float = 0.01,
    n_estimators: int = 100,
    seed: int = 0,
    baseline_k: float = 3.0,
) -> SeriesResult:
    """Fit on the probation rows, flag the rest, and score detector and baseline.

    The rules are in the module docstring (Scoring, Baseline); ``window_points`` is
    both the featuriser's W and the alarm ``merge_gap``.
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    if ts.shape != x.shape or ts.ndim != 1:
        raise ValueError(
            f"ts_s and values must be 1-D of the same length, got {ts.shape}, {x.shape}"
        )
    p = probation_rows(x.size)
    if p - window_points < 2:
        raise ValueError(
            f"series of {x.size} rows has a probation of {p} rows: too short to fit with "
            f"window_points={window_points} (needs probation ≥ window_points + 2)"
        )
    feats = univariate_window_features(x, window_points)
    detector = AnomalyDetector(contamination=contamination, n_estimators=n_estimators, seed=seed)
    detector.fit(feats[window_points:p])
    flags = np.zeros(x.size, dtype=bool)
    flags[p:] = is_anomalous(detector.score(feats[p:]), detector.threshold)
    base_flags = zscore_baseline_flags(x, p, baseline_k)
    kw = {"first_scored_row": p, "merge_gap": window_points}
    return SeriesResult(
        rows=int(x.size),
        probation_rows=p,
        detector=score_flags(ts, flags, windows_s, **kw),
        baseline=score_flags(ts, base_flags, windows_s, **kw),
    )
