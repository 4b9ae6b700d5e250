"""The contract every failure model keeps, and the calibrated-estimator machinery.

A :class:`FailureModel` maps inputs to the probability that a container fails
(for the tier its labels were made for) within the horizon:

- ``fit(X, y, *, seed=0, ts_s=None) -> self`` — ``y`` is 0/1 (``[n]``);
- ``predict_proba(X) -> float64[n]`` in [0, 1], never ``nan``;
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
    splits of :mod:`app.core.labels` return time-ordered indices). The estimator is
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
"""

from __future__ import annotations

import contextlib
import pickle
import platform
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from app.core.sample import METRICS

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
    def _check_seed(seed: Any) -> int:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")
        return int(seed)

    # --- the contract ---------------------------------------------------------------
    @abstractmethod
    def fit(self, X: Any, y: Any, *, seed: int = 0, ts_s: Any = None) -> FailureModel:
        """Fit on ``X`` and 0/1 labels ``y``; returns ``self``."""

    @abstractmethod
    def predict_proba(self, X: Any) -> np.ndarray:
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
    }

    def _check_params(self) -> None:
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

    def fit(self, X: Any, y: Any, *, seed: int = 0, ts_s: Any = None) -> CalibratedModel:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator

        seed = self._check_seed(seed)
        x = np.asarray(X, dtype=np.float64)
        n = x.shape[0] if x.ndim else 0
        if n == 0:
            raise ValueError("cannot fit on an empty training set (X has no rows)")
        labels = self._check_y(y, n)
        x = self._check_X(x, fitting=True)
        ts = self._check_ts(ts_s, n)
        order = np.arange(n) if ts is None else np.argsort(ts, kind="stable")
        n_pos = int(labels.sum())
        info: dict[str, Any] = {"n_train": n, "n_positive": n_pos, "base_rate": n_pos / n}
        estimator: Any = None
        constant: float | None = None
        if n_pos in (0, n):
            constant = float(n_pos / n)
            info["fallback"] = "one class in y: predicts the base rate"
            info["calibration"] = "none"
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
        self._shape = tuple(x.shape[1:])
        self.fit_info = info
        self._fitted = True
        return self

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

    def predict_proba(self, X: Any) -> np.ndarray:
        x = self._check_X(X, fitting=False)
        if self._constant is not None:
            return np.full(x.shape[0], self._constant)
        if x.shape[0] == 0:
            return np.zeros(0)
        with self._threads():
            p = self._estimator_.predict_proba(x)[:, 1]
        return np.clip(np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.0), 0.0, 1.0)
