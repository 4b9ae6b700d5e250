"""Anomaly detection: an unsupervised isolation forest over feature rows, and its calibrated score.

Pure: numpy, pandas and scikit-learn only; no file I/O, no clock, no Ray. Running a
detector over one labelled single-metric series (the NAB benchmark) and scoring its
flags against the labelled windows is :mod:`app.models.anomaly_series`.

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
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import IsolationForest

#: Name of the column :func:`with_anomaly_feature` appends.
ANOMALY_FEATURE = "anomaly_score"

_FORMAT = "prescale-anomaly-detector/v1"


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
