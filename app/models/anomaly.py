"""Anomaly detection: an unsupervised isolation forest over feature rows, and its scoring.

Pure: numpy, pandas and scikit-learn only; no file I/O, no clock, no Ray. The NAB
files are read by :mod:`app.telemetry.nab`; ``scripts/eval_anomaly_nab.py`` ties the two.

Two uses
--------
* As a **feature**: :func:`with_anomaly_feature` appends an ``anomaly_score`` column
  (:data:`ANOMALY_FEATURE`) to a feature matrix, e.g. the rows of
  :func:`app.core.features.compute_features`, for the failure models to use.
* As its **own signal**: :func:`is_anomalous` flags the rows whose score exceeds a
  threshold (by default the detector's :attr:`AnomalyDetector.threshold`).

Input handling (what a tree model needs)
----------------------------------------
scikit-learn's ``IsolationForest`` refuses ``nan`` and ``inf``. :meth:`AnomalyDetector.fit`
learns, per column, from the *finite* training values: the median ``med``, the minimum
``lo``, the maximum ``hi`` and ``span = hi − lo`` (1 if that is 0). Then, in training
and scoring alike, each cell is mapped by:

* ``nan`` (a reading that is missing) → ``med``: a missing reading alone never makes
  a row look anomalous;
* ``+inf`` (e.g. an unlimited limit) → ``hi + span``, ``−inf`` → ``lo − span``: beyond
  every finite training value, so a split can separate "unlimited" from any finite
  value, as a tree model does when it treats ``inf`` as "larger than everything";
* finite values unchanged.

A column with no finite training value gets ``med = lo = hi = 0`` and ``span = 1``.
Worked example: training column ``[1, 3, nan, inf]`` → finite values ``[1, 3]``,
``med = 2``, ``lo = 1``, ``hi = 3``, ``span = 2``; so ``nan → 2``, ``inf → 5``,
``−inf → −1``.

Why not the supervised tree models' handling (:mod:`app.models.sklearn_models`:
``±inf → ±1e30``, ``nan → −1``)? Those only need an order, but an isolation tree
splits at uniform random points between a node's min and max: a 1e30 cap would spend
nearly every split on the gap up to 1e30 and isolate every unlimited row first, and a
``−1`` cluster would make "missing" itself look anomalous.

Because a value beyond a node's range always follows the extreme branch, the exact
value chosen for ``inf`` only has to lie beyond ``hi``, and a score **saturates**
outside the training range: a row 10× beyond the training maximum of a column scores
exactly like a row at that maximum with the same other columns (in one dimension:
exactly like the training maximum). So a far-out row ranks high but is not guaranteed
the top score; it is flagged only if the training's own extreme rows in that column
would be.

Score mapping
-------------
``IsolationForest.score_samples(x)`` is ``−s(x)``, where ``s(x) = 2^(−E[h(x)]/c(ψ))`` is
the paper's anomaly score (Liu, Ting and Zhou 2008): ``E[h(x)]`` is the mean path
length that isolates ``x`` over the trees, ``c(ψ)`` the mean path length of an
unsuccessful search in a binary tree of ``ψ`` = ``max_samples`` points; ``s ∈ (0, 1]``,
near 1 = isolated quickly = anomalous, ≤ 0.5 = normal. This module calls
``s = −score_samples`` the *raw* score (:meth:`AnomalyDetector.raw_score`).

Raw scores of different forests are not comparable (they depend on the data's
shape), so :meth:`AnomalyDetector.score` calibrates them on the detector's own
training rows with the empirical distribution function:

    ``score(x) = #{training rows i : s_i ≤ s(x)} / n_train``

i.e. the fraction of training rows that look at most as anomalous as ``x``. It is in
[0, 1], higher = more anomalous, and a threshold on it *is* a training quantile:
``score > 0.99`` ⇔ ``s(x)`` exceeds the 99th percentile of the training raw scores.
Worked example: training raw scores ``[0.40, 0.45, 0.50, 0.60]`` (n = 4) → a row with
raw 0.47 scores 2/4 = 0.5, raw 0.45 scores 0.5 (ties count as "at most"), raw 0.30
scores 0.0, raw 0.60 or 0.70 scores 1.0 (saturates at the training maximum).

``contamination`` is the expected fraction of anomalies among the training rows; the
detector's default threshold is ``1 − contamination`` (0.01 → flag above the training
99th percentile). It is never tuned on labels.

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

import io
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

#: Name of the column :func:`with_anomaly_feature` appends.
ANOMALY_FEATURE = "anomaly_score"

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

_FORMAT = "prescale-anomaly-detector/v1"


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


# --------------------------------------------------------------------------- detector


def _as_matrix(X: np.ndarray | Sequence[Sequence[float]], what: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be 2-D [rows, features], got shape {arr.shape}")
    return arr


class AnomalyDetector:
    """Isolation forest over feature rows; :meth:`score` is in [0, 1], higher = more anomalous.

    ``contamination`` (0 < c < 0.5): expected fraction of anomalies in the training
    rows; :attr:`threshold` = ``1 − contamination``. ``n_estimators`` trees, each on
    ``max_samples`` rows (at most the training size). ``seed`` makes fit and score
    deterministic. Input handling and the score mapping are in the module docstring.
    """

    def __init__(
        self,
        *,
        contamination: float = 0.01,
        n_estimators: int = 100,
        max_samples: int = 256,
        seed: int = 0,
    ) -> None:
        if isinstance(contamination, bool) or not isinstance(contamination, (int, float)):
            raise ValueError(f"contamination must be a number in (0, 0.5), got {contamination!r}")
        if not 0.0 < float(contamination) < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
        for name, value in (("n_estimators", n_estimators), ("max_samples", max_samples)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.contamination = float(contamination)
        self.n_estimators = int(n_estimators)
        self.max_samples = int(max_samples)
        self.seed = int(seed)
        self._forest: IsolationForest | None = None
        self._fill: dict[str, np.ndarray] | None = None
        self._train_raw: np.ndarray | None = None  # sorted raw scores of the training rows

    # -- state
    @property
    def threshold(self) -> float:
        """Default flag threshold on :meth:`score`: ``1 − contamination``."""
        return 1.0 - self.contamination

    @property
    def is_fitted(self) -> bool:
        return self._forest is not None

    @property
    def n_features(self) -> int:
        self._check_fitted()
        assert self._fill is not None
        return int(self._fill["med"].shape[0])

    def _check_fitted(self) -> None:
        if self._forest is None:
            raise ValueError("AnomalyDetector is not fitted: call fit(X) first")

    # -- fit / score
    def fit(self, X: np.ndarray | Sequence[Sequence[float]]) -> AnomalyDetector:
        """Learn the fill values and the forest from training rows ``X`` [n ≥ 2, F ≥ 1].

        On bad input raises ``ValueError`` and leaves a previously fitted state intact.
        """
        arr = _as_matrix(X, "X")
        if arr.shape[0] < 2 or arr.shape[1] < 1:
            raise ValueError(f"X needs at least 2 rows and 1 column to fit, got shape {arr.shape}")
        finite = np.isfinite(arr)
        masked = np.where(finite, arr, np.nan)
        has = finite.any(axis=0)
        safe = np.where(has[None, :], masked, 0.0)  # all-nan columns would warn
        med = np.where(has, np.nanmedian(safe, axis=0), 0.0)
        lo = np.where(has, np.nanmin(safe, axis=0), 0.0)
        hi = np.where(has, np.nanmax(safe, axis=0), 0.0)
        span = np.where(hi > lo, hi - lo, 1.0)
        fill = {"med": med, "lo": lo, "hi": hi, "span": span}
        clean = _apply_fill(arr, fill)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, arr.shape[0]),
            contamination="auto",
            random_state=self.seed,
        )
        forest.fit(clean)
        train_raw = np.sort(-forest.score_samples(clean))
        self._forest, self._fill, self._train_raw = forest, fill, train_raw
        return self

    def raw_score(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """The paper's anomaly score ``s = −score_samples`` ∈ (0, 1] of each row ([n])."""
        self._check_fitted()
        assert self._forest is not None and self._fill is not None
        arr = _as_matrix(X, "X")
        if arr.shape[1] != self.n_features:
            raise ValueError(
                f"X has {arr.shape[1]} columns but the detector was fitted on {self.n_features}"
            )
        if arr.shape[0] == 0:
            return np.zeros(0)
        return -self._forest.score_samples(_apply_fill(arr, self._fill))

    def score(self, X: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Calibrated score ∈ [0, 1] of each row ([n]): the fraction of training rows
        whose raw score is ≤ this row's (see the module docstring's worked example)."""
        raw = self.raw_score(X)
        return calibrate(raw, self._train_raw)  # type: ignore[arg-type]

    # -- persistence
    def to_bytes(self) -> bytes:
        """Serialise a fitted detector (pickle). Load only bytes you trust (the model
        registry checks their hash first): unpickling runs code."""
        self._check_fitted()
        payload = {
            "format": _FORMAT,
            "params": {
                "contamination": self.contamination,
                "n_estimators": self.n_estimators,
                "max_samples": self.max_samples,
                "seed": self.seed,
            },
            "forest": self._forest,
            "fill": self._fill,
            "train_raw": self._train_raw,
        }
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> AnomalyDetector:
        """Inverse of :meth:`to_bytes`; ``ValueError`` for bytes that are not one."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        try:
            payload = pickle.load(io.BytesIO(bytes(data)))
        except Exception as exc:  # any unpickling failure means the bytes are corrupt
            raise ValueError(
                f"not a serialised AnomalyDetector (unpickling failed: {exc})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"not a serialised AnomalyDetector (expected format {_FORMAT!r})")
        detector = cls(**payload["params"])
        forest, fill, train_raw = payload["forest"], payload["fill"], payload["train_raw"]
        if not isinstance(forest, IsolationForest) or not isinstance(train_raw, np.ndarray):
            raise ValueError("serialised AnomalyDetector is missing its forest or training scores")
        detector._forest, detector._fill, detector._train_raw = forest, fill, train_raw
        return detector

    def __repr__(self) -> str:
        state = (
            f"fitted on {len(self._train_raw)} rows" if self._train_raw is not None else "unfitted"
        )
        return (
            f"AnomalyDetector(contamination={self.contamination}, "
            f"n_estimators={self.n_estimators}, max_samples={self.max_samples}, "
            f"seed={self.seed}; {state})"
        )


def _apply_fill(arr: np.ndarray, fill: dict[str, np.ndarray]) -> np.ndarray:
    """Replace nan by the column median and ±inf by ``hi + span`` / ``lo − span``."""
    out = np.where(np.isnan(arr), fill["med"][None, :], arr)
    out = np.where(out == np.inf, (fill["hi"] + fill["span"])[None, :], out)
    out = np.where(out == -np.inf, (fill["lo"] - fill["span"])[None, :], out)
    return out


def calibrate(raw: np.ndarray, train_raw_sorted: np.ndarray) -> np.ndarray:
    """``#{train ≤ raw} / n_train`` for each raw score (``train_raw_sorted`` ascending).

    >>> calibrate(np.array([0.47, 0.45, 0.30, 0.70]), np.array([0.40, 0.45, 0.50, 0.60]))
    array([0.5, 0.5, 0. , 1. ])
    """
    train = np.asarray(train_raw_sorted, dtype=np.float64)
    if train.ndim != 1 or train.size == 0:
        raise ValueError("train_raw_sorted must be a non-empty 1-D array")
    return np.searchsorted(train, np.asarray(raw, dtype=np.float64), side="right") / train.size


def with_anomaly_feature(
    X: np.ndarray | Sequence[Sequence[float]], detector: AnomalyDetector
) -> np.ndarray:
    """``X`` with one more column, :data:`ANOMALY_FEATURE` = ``detector.score(X)``: [n, F+1]."""
    arr = _as_matrix(X, "X")
    return np.column_stack([arr, detector.score(arr)])


def is_anomalous(scores: np.ndarray | Sequence[float], threshold: float) -> np.ndarray:
    """``scores > threshold`` (bool [n]); ``nan`` scores are never anomalous.

    ``threshold`` is in [0, 1): with :meth:`AnomalyDetector.score`, 0.99 flags the rows
    more anomalous than 99 % of the training rows.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (a score is at most 1), got {threshold}")
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return s > threshold


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
