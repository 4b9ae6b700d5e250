"""The contract every failure model keeps, and the calibrated-estimator machinery.

A :class:`FailureModel` maps inputs to the probability that a container fails
(for the tier its labels were made for) within the horizon:

- ``fit(X, y, *, seed=0, ts_s=None, groups=None) -> self`` — ``y`` is 0/1 (``[n]``);
  ``groups`` (one code per row) says which rows are peers (the containers of one app
  at one time, :func:`app.core.peers.peer_groups`); ``None``: all rows are one group;
- ``predict_proba(X, groups=None) -> float64[n]`` in [0, 1], never ``nan``;
- ``needs_groups``: whether the predictions depend on ``groups`` (the model reads
  peer features): such a model must be asked about one group at a time, or be given
  ``groups``;
- ``name`` (``"<kind>/<version>"``), ``kind``, ``params`` (the constructor
  parameters, JSON-friendly), ``input`` (``"features"``: ``X`` is
  ``[n, F]`` from :mod:`app.core.features`; ``"window"``: ``X`` is the raw window
  ``[n, W, len(METRICS)]``), ``trainable`` and, after ``fit``, ``fit_info``;
- ``to_bytes()`` / ``FailureModel.from_bytes(data)`` — pickle in an envelope with a
  format version; the same seed and data give the same predictions, and a round
  trip gives identical predictions.

``from_bytes`` unpickles, which runs code: only load bytes whose hash the model
registry vouches for.

Training (``CalibratedModel``, shared by every learned kind)
    Rows are taken in time order (``ts_s`` if given, else the order given; the
    splits of :mod:`app.learning.labels` return time-ordered indices). The estimator is
    fitted on the oldest ``1 − calibration_fraction`` of the rows (the *head*) and
    its probabilities are calibrated on the newest ``calibration_fraction`` (the
    *tail*) with scikit-learn's ``CalibratedClassifierCV(FrozenEstimator(est),
    method=...)`` (``sigmoid`` = Platt scaling, ``isotonic``): the calibration data
    always lies after the training data, as the future will. The estimator is not
    refitted on the tail (the calibration map belongs to the head's model).

    Degenerate data never crashes, it falls back (recorded in ``fit_info``):

    - ``y`` has one class only → a constant model that returns the base rate
      ``mean(y)`` (0 or 1) for every input;
    - the head or the tail has fewer than 2 rows of either class (or
      ``calibration = "none"``) → the estimator is fitted on all rows and not
      calibrated.

    Worked example: 1000 rows, ``calibration_fraction = 0.2`` → the estimator is
    fitted on the 800 oldest rows, the sigmoid on the 200 newest.

    That is ``calibration_folds = 0``. By default (``calibration_folds = 3``) no row is
    held back from the estimator: it is fitted on all rows, and the calibration map
    (:class:`ScoreCalibrator`) on out-of-fold scores — each fold's rows scored by an
    estimator fitted on the other two (the folds: :func:`_calibration_folds`; what
    scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does, keeping the
    out-of-fold probabilities, :meth:`CalibratedModel.take_out_of_fold`). With few
    positives (Google 2011: 67 in 6,153 tasks) every row the estimator does not see
    costs AP (docs/BENCHMARKS.md). Fewer positive (or negative) rows than folds → head/tail.
    Worked example: 1000 rows → 4 fits: one on all 1000 rows (the model), three on
    ~667 rows each, whose predictions for the other ~333 fit the sigmoid.

Peer features (``peer_features``, on by default): when ``X`` is the full feature matrix
(:data:`app.core.features.FEATURES`), the estimator also sees each row's standing
among its group (:func:`app.core.peers.peer_features`), computed from the rows given to
``fit`` / ``predict_proba`` with their ``groups``. ``fit_info["peer_features"]`` says
whether they were used; ``needs_groups`` is then true.
"""

from __future__ import annotations

import contextlib
import pickle
import platform
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from prescale.app.core.sample import METRICS

#: Version of the byte format of :meth:`FailureModel.to_bytes`.
MODEL_FORMAT = 1
_MAGIC = "prescale-model"
CALIBRATION_METHODS = ("sigmoid", "isotonic", "none")
_MIN_CLASS_ROWS = 2  # rows of each class the head and the tail need for calibration


class FailureModel(ABC):
    """Base of every model kind (see the module doc for the contract)."""

    kind: ClassVar[str]
    version: ClassVar[str] = "v1"
    input: ClassVar[str] = "features"
    trainable: ClassVar[bool] = True
    #: Every constructor parameter with its default.
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown parameters {unknown} for model kind {self.kind!r}; "
                f"known: {sorted(self.DEFAULTS)}"
            )
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}
        self._check_params()
        self.fit_info: dict[str, Any] = {}
        self._fitted = False
        self._shape: tuple[int, ...] | None = None  # input shape after the row axis

    def _check_params(self) -> None:
        """Raise ValueError naming a bad parameter (subclasses extend)."""
        return None

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.version}"

    @property
    def fitted(self) -> bool:
        return self._fitted

    @property
    def needs_groups(self) -> bool:
        """Whether ``predict_proba`` depends on ``groups`` (see the module doc)."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r}, fitted={self._fitted})"

    # --- inputs ---------------------------------------------------------------------
    def _check_X(self, X: Any, *, fitting: bool) -> np.ndarray:
        if not fitting and not self._fitted:
            raise RuntimeError(f"model {self.name} is not fitted: call fit() first")
        x = np.asarray(X, dtype=np.float64)
        if self.input == "features":
            if x.ndim != 2:
                raise ValueError(f"X must be 2-D [rows, features], got shape {x.shape}")
        else:
            if x.ndim != 3 or x.shape[2] != len(METRICS):
                raise ValueError(
                    f"X must be a 3-D window [rows, steps, {len(METRICS)} metrics], "
                    f"got shape {x.shape}"
                )
        if not fitting:
            expected = self._shape[0] if self.input == "features" else None
            if expected is not None and x.shape[1] != expected:
                raise ValueError(
                    f"X has {x.shape[1]} feature columns; the model expects {expected}"
                )
        return x

    @staticmethod
    def _check_y(y: Any, n: int) -> np.ndarray:
        arr = np.asarray(y)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"y must be 1-D with one label per row of X ({n}), got {arr.shape}")
        if arr.dtype == bool:
            return arr.astype(np.int64)
        try:
            values = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("y must hold 0/1 labels") from None
        if not np.isin(values, (0.0, 1.0)).all():
            bad = values[~np.isin(values, (0.0, 1.0))][:5]
            raise ValueError(f"y must hold 0/1 labels only, found {bad.tolist()}")
        return values.astype(np.int64)

    @staticmethod
    def _check_ts(ts_s: Any, n: int) -> np.ndarray | None:
        if ts_s is None:
            return None
        ts = np.asarray(ts_s, dtype=np.float64)
        if ts.shape != (n,) or not np.isfinite(ts).all():
            raise ValueError(f"ts_s must be {n} finite times (one per row of X), got {ts.shape}")
        return ts

    @staticmethod
    def _check_groups(groups: Any, n: int) -> np.ndarray | None:
        if groups is None:
            return None
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must have one code per row of X ({n}), got {g.shape}")
        return g

    @staticmethod
    def _check_seed(seed: Any) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")
        return int(seed)

    # --- the contract ---------------------------------------------------------------
    @abstractmethod
    def fit(self, X: Any, y: Any, *, seed: int = 0, ts_s: Any = None,
            groups: Any = None) -> FailureModel:
        """Fit on ``X`` and 0/1 labels ``y``; returns ``self``."""

    @abstractmethod
    def predict_proba(self, X: Any, groups: Any = None) -> np.ndarray:
        """Failure probability per row, ``float64[n]`` in [0, 1]."""

    def to_bytes(self) -> bytes:
        """The fitted (or unfitted) model as bytes: a pickled, versioned envelope."""
        envelope = {
            "magic": _MAGIC,
            "format": MODEL_FORMAT,
            "kind": self.kind,
            "name": self.name,
            "params": dict(self.params),
            "versions": _library_versions(),
            "model": self,
        }
        return pickle.dumps(envelope, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> FailureModel:
        """The model in ``data`` (from :meth:`to_bytes`); ``ValueError`` if it is not one.

        Called on a subclass, the model must also be of that class. Unpickling runs
        code: only pass bytes whose hash you trust.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"model data must be bytes, got {type(data).__name__}")
        try:
            envelope = pickle.loads(data)
        except ImportError as exc:
            if "prescale[lstm]" in str(exc):
                raise  # the lstm kind without torch: say so, it is not corruption
            raise ValueError(f"not a prescale model (corrupt or truncated): {exc!r}") from exc
        except Exception as exc:
            raise ValueError(f"not a prescale model (corrupt or truncated): {exc!r}") from exc
        if not isinstance(envelope, dict) or envelope.get("magic") != _MAGIC:
            raise ValueError("not a prescale model: the envelope is missing")
        if envelope.get("format") != MODEL_FORMAT:
            raise ValueError(
                f"prescale model format {envelope.get('format')!r} is not supported "
                f"(this version reads format {MODEL_FORMAT})"
            )
        model = envelope.get("model")
        if not isinstance(model, cls) or model.kind != envelope.get("kind"):
            raise ValueError(
                f"model data holds {type(model).__name__}, not a {cls.__name__} "
                f"of kind {envelope.get('kind')!r}"
            )
        return model


def _library_versions() -> dict[str, str]:
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
    }


class CalibratedModel(FailureModel):
    """A scikit-learn-style estimator, fitted on the head and calibrated on the tail."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "calibration": "sigmoid",
        "calibration_fraction": 0.2,
        "calibration_folds": 3,
        "peer_features": True,
    }

    @property
    def needs_groups(self) -> bool:
        return bool(getattr(self, "_peers", False))

    def _augment(self, x: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """``x`` with the peer-feature columns appended when the model uses them."""
        if not getattr(self, "_peers", False):
            return x
        from prescale.app.core.peers import peer_features

        return np.hstack([x, peer_features(x, groups)])

    def _check_params(self) -> None:
        if not isinstance(self.params["peer_features"], bool):
            raise ValueError(
                f"peer_features must be true or false, got {self.params['peer_features']!r}")
        folds = self.params["calibration_folds"]
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
            raise ValueError(f"calibration_folds must be 0 (head/tail) or an int ≥ 2, "
                             f"got {folds!r}")
        method = self.params["calibration"]
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {method!r}")
        frac = self.params["calibration_fraction"]
        if not (isinstance(frac, (int, float)) and 0.0 < frac < 1.0):
            raise ValueError(f"calibration_fraction must be in (0, 1), got {frac!r}")

    @abstractmethod
    def _estimator(self, seed: int) -> Any:
        """A fresh, unfitted scikit-learn classifier (``fit``, ``predict_proba``)."""

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """Thread limits for native code while fitting or predicting (default: none)."""
        yield

    def fit(self, X: Any, y: Any, *, seed: int = 0, ts_s: Any = None,
            groups: Any = None) -> CalibratedModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator

        from prescale.app.core.features import FEATURES
        from prescale.app.core.peers import PEER_FEATURES

        seed = self._check_seed(seed)
        x = np.asarray(X, dtype=np.float64)
        n = x.shape[0] if x.ndim else 0
        if n == 0:
            raise ValueError("cannot fit on an empty training set (X has no rows)")
        labels = self._check_y(y, n)
        x = self._check_X(x, fitting=True)
        ts = self._check_ts(ts_s, n)
        g = self._check_groups(groups, n)
        shape = tuple(x.shape[1:])
        peers = (bool(self.params["peer_features"]) and self.input == "features"
                 and x.shape[1] == len(FEATURES))
        if peers:
            from prescale.app.core.peers import peer_features

            x = np.hstack([x, peer_features(x, g)])
        order = np.arange(n) if ts is None else np.argsort(ts, kind="stable")
        n_pos = int(labels.sum())
        info: dict[str, Any] = {"n_train": n, "n_positive": n_pos, "base_rate": n_pos / n}
        info["peer_features"] = (
            f"on: {len(PEER_FEATURES)} columns" if peers else
            "off" if not self.params["peer_features"] else
            "off: the model reads the raw window" if self.input != "features" else
            f"off: X has {shape[0]} columns, not the {len(FEATURES)} of FEATURES")
        estimator: Any = None
        constant: float | None = None
        out_of_fold: np.ndarray | None = None
        if n_pos in (0, n):
            constant = float(n_pos / n)
            info["fallback"] = "one class in y: predicts the base rate"
            info["calibration"] = "none"
        elif self.params["calibration_folds"] and self.params["calibration"] != "none" \
                and min(n_pos, n - n_pos) >= self.params["calibration_folds"]:
            k = int(self.params["calibration_folds"])
            method = self.params["calibration"]
            folds, how = _calibration_folds(order, labels, ts, g, k, seed)
            raw = np.empty(n)
            with self._threads():
                for fit_rows, held in folds:
                    est = self._estimator(seed).fit(x[fit_rows], labels[fit_rows])
                    raw[held] = est.predict_proba(x[held])[:, 1]
                est = self._estimator(seed).fit(x, labels)
            cal = ScoreCalibrator(method).fit(raw, labels)
            estimator = CalibratedEstimator(est, cal)
            out_of_fold = cal.transform(raw)
            info.update(calibration=f"{method}, cross-fitted over {k} folds {how}",
                        n_fit=n, n_calibration=n)
        else:
            method = self.params["calibration"]
            n_cal = int(round(n * self.params["calibration_fraction"]))
            head, tail = order[: n - n_cal], order[n - n_cal :]
            reason = self._calibration_problem(method, labels[head], labels[tail])
            with self._threads():
                if reason is None:
                    est = self._estimator(seed).fit(x[head], labels[head])
                    cal = CalibratedClassifierCV(FrozenEstimator(est), method=method, cv=2)
                    cal.fit(x[tail], labels[tail])
                    estimator = cal
                    info.update(
                        calibration=method, n_fit=int(head.size), n_calibration=int(n_cal)
                    )
                else:
                    estimator = self._estimator(seed).fit(x[order], labels[order])
                    info.update(calibration=f"none: {reason}", n_fit=n, n_calibration=0)
        info["seed"] = seed
        # commit only now: a fit that fails half-way leaves the previous model as it was
        self._estimator_, self._constant = estimator, constant
        self._out_of_fold = out_of_fold
        self._shape = shape
        self._peers = peers
        self.fit_info = info
        self._fitted = True
        return self

    def take_out_of_fold(self) -> np.ndarray | None:
        """The calibrated out-of-fold probabilities of the rows of the last ``fit`` (in
        their input order), once: a cross-fitted model's honest scores on its own
        training rows (``None`` for head/tail calibration). They are dropped from the
        model when taken, so they are never pickled with it."""
        out = getattr(self, "_out_of_fold", None)
        self._out_of_fold = None
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_out_of_fold", None)
        return state

    @staticmethod
    def _calibration_problem(method: str, y_head: np.ndarray, y_tail: np.ndarray) -> str | None:
        if method == "none":
            return "calibration = 'none'"
        for part, ys in (("fit", y_head), ("calibration", y_tail)):
            pos = int(ys.sum())
            if min(pos, ys.size - pos) < _MIN_CLASS_ROWS:
                return (
                    f"the {part} part has {pos} positive and {ys.size - pos} negative rows "
                    f"(needs ≥ {_MIN_CLASS_ROWS} of each)"
                )
        return None

    def predict_proba(self, X: Any, groups: Any = None) -> np.ndarray:
        x = self._check_X(X, fitting=False)
        g = self._check_groups(groups, x.shape[0])
        if self._constant is not None:
            return np.full(x.shape[0], self._constant)
        if x.shape[0] == 0:
            return np.zeros(0)
        x = self._augment(x, g)
        with self._threads():
            p = self._estimator_.predict_proba(x)[:, 1]
        return np.clip(np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.0), 0.0, 1.0)


def _calibration_folds(order: np.ndarray, labels: np.ndarray, ts: np.ndarray | None,
                       groups: np.ndarray | None, k: int, seed: int
                       ) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """The ``(fit rows, held-out rows)`` of the cross-fitted calibration, and how made.

    Rows with distinct times (or no times: the order given is the time order):
    stratified folds in time order (each fold is close to a block of time). Rows that
    share their time (one snapshot per task): whole peer groups per fold
    (:func:`app.learning.labels.group_folds`: the jobs a model will meet are new jobs),
    else stratified shuffled folds. A fold whose fitting
    rows lack a class falls back to the stratified shuffled folds.
    """
    from sklearn.model_selection import StratifiedKFold

    n = labels.size
    distinct = ts is None or np.unique(ts).size * 2 > n  # no times: the order given
    if distinct:
        return ([(order[a], order[b]) for a, b in StratifiedKFold(n_splits=k).split(
            np.zeros(n), labels[order])], "in time order")
    if groups is not None and np.unique(groups).size >= k:
        from prescale.app.learning.labels import group_folds

        fold = group_folds(groups, labels, k, seed=seed)
        folds = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
        if all(0 < labels[a].sum() < a.size for a, _ in folds):
            return folds, "by peer group"
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n), labels)), "shuffled"


class ScoreCalibrator:
    """A monotone map from an estimator's score to a probability, fitted on scores the
    estimator did not train on: ``sigmoid`` (Platt: ``1 / (1 + exp(a·s + b))``, a
    logistic regression on the score) or ``isotonic`` (a non-decreasing step function).

    Worked example (sigmoid): scores 0.1, 0.2, 0.8, 0.9 with labels 0, 0, 1, 1 →
    a < 0, so 0.9 maps above 0.5 and 0.1 below it.
    """

    def __init__(self, method: str) -> None:
        if method not in ("sigmoid", "isotonic"):
            raise ValueError(f"method must be sigmoid or isotonic, got {method!r}")
        self.method = method

    def fit(self, scores: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            self.map_ = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], y)
        else:
            from sklearn.isotonic import IsotonicRegression

            self.map_ = IsotonicRegression(y_min=0.0, y_max=1.0,
                                           out_of_bounds="clip").fit(s, y)
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "sigmoid":
            return self.map_.predict_proba(s[:, None])[:, 1]
        return np.asarray(self.map_.predict(s), dtype=np.float64)


class CalibratedEstimator:
    """An estimator and the :class:`ScoreCalibrator` of its scores, with the
    ``predict_proba`` of a scikit-learn classifier (``[:, 1]`` calibrated)."""

    def __init__(self, estimator: Any, calibrator: ScoreCalibrator) -> None:
        self.estimator = estimator
        self.calibrator = calibrator

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = self.calibrator.transform(self.estimator.predict_proba(x)[:, 1])
        return np.column_stack([1.0 - p, p])


class OneGroup:
    """``model`` asked about one group (one app's containers at one tick) at a time.

    The engine calls each distinct model object once per tick over the rows of every
    app it serves; a model with peer features (``needs_groups``) must instead see one
    app's rows per call, so its host hands the engine one :class:`OneGroup` per app
    (the same object each tick): distinct objects, one call per app, every call one
    group. ``input`` and ``predict_proba`` are the model's.
    """

    def __init__(self, model: FailureModel, group: str) -> None:
        self.model = model
        self.group = group
        self.input = model.input

    def predict_proba(self, x: Any) -> np.ndarray:
        return self.model.predict_proba(x)
