"""Random forest and histogram gradient boosting over the feature matrix.

Both are :class:`~app.models.base.CalibratedModel`: fitted on the older part of
the training rows and calibrated (sigmoid by default) on the newer part; see
:mod:`app.models.base`. Inputs are ``X = [n, F]`` feature rows (any F; normally
:data:`app.core.features.FEATURES`), with ``nan`` (unknown) and ``±inf``
(e.g. an unlimited limit, a time to limit that never comes) allowed.

``random_forest``
    ``RandomForestClassifier(class_weight="balanced_subsample")`` behind a
    cleaning pipeline, because the forest needs finite ``float32`` values:

    1. ``±inf`` → ``±inf_cap`` (default 1e30: above any real byte count or
       duration, below float32's 3.4e38, so "unlimited" stays the largest value);
    2. ``SimpleImputer(strategy="constant", fill_value=-1, add_indicator=True,
       keep_empty_features=True)``: ``nan`` → ``-1`` (every feature is ≥ 0 or a
       slope, so -1 reads "below anything seen", and the forest can still split it
       off) plus one 0/1 *missing-indicator* column for every feature that had a
       ``nan`` in training; a feature that is all ``nan`` is kept (as -1) so the
       column count never changes.

    Worked example: a row ``[5, nan, inf]`` whose training data had ``nan`` in
    column 1 only → ``[5, -1, 1e30, 1]`` (the last column: "column 1 was missing").

``hist_gradient_boosting``
    ``HistGradientBoostingClassifier``, which handles ``nan`` natively (a learned
    direction per split); ``±inf`` is capped as above first (its binning takes
    percentiles, and ``inf − inf`` would make a ``nan`` bin edge).

Seeds: ``random_state = seed`` for the estimator, so the same data and seed give
the same model (``n_jobs`` does not change the result, only the speed).

Threads: the forest uses ``n_jobs`` (default 1) processes' worth of threads; the
boosting's OpenMP threads are limited to ``n_threads`` (default 1; ``None`` = all
cores) while fitting and predicting. One thread is the right default under Ray Tune,
which runs one trial per CPU: on this 2-core machine, two OpenMP threads per
trial made a fit 2–3× slower, not faster.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from prescale.app.models.base import CalibratedModel

INF_CAP = 1e30
MISSING_FILL = -1.0


def cap_infinities(x: np.ndarray, cap: float = INF_CAP) -> np.ndarray:
    """``±inf`` → ``±cap``; ``nan`` stays (``[1, inf, -inf, nan]`` → ``[1, 1e30, -1e30, nan]``)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isinf(x), np.copysign(cap, x), x)


_CONTROLLER: tuple[Any, int] | None = None  # (controller, len(sys.modules) when made)


def _thread_controller() -> Any:
    """A cached ``threadpoolctl.ThreadpoolController``, rebuilt when modules were imported.

    ``threadpool_limits(...)`` builds a new controller on every call, which scans every
    loaded shared library: 3.5–5 ms per call, paid on every ``predict_proba`` (the tick
    benchmark's 20 per-app calls cost ~100 ms of CPU at 1k containers). ``limit()`` on a
    cached controller costs ~0.03 ms. A controller only knows the libraries loaded when
    it was made, so it is made after ``sklearn.ensemble`` (the boosting's OpenMP
    runtime) and made again whenever ``sys.modules`` has grown since (an import may have
    loaded another OpenMP or BLAS library, e.g. another ML package's): in a running
    loop that is once, and the limits are those ``threadpool_limits`` would set.
    """
    global _CONTROLLER
    if _CONTROLLER is None or _CONTROLLER[1] != len(sys.modules):
        import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the boosting uses)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = (ThreadpoolController(), len(sys.modules))
    return _CONTROLLER[0]


class EmptyColumnsToZero(BaseEstimator, TransformerMixin):
    """Set the columns that were entirely ``nan`` in training to 0 (in fit and after).

    HistGradientBoosting handles ``nan`` natively, but its binning fails on a column
    with no value at all (e.g. ``cpu_slope_cores_per_s`` from 2-sample windows). Other
    ``nan`` are left for the boosting. Example: training ``[[1, nan], [2, nan]]`` →
    column 1 is empty → ``[[5, nan]]`` becomes ``[[5, 0]]``; ``[[nan, 3]]`` stays.
    """

    def fit(self, x: np.ndarray, y: Any = None) -> EmptyColumnsToZero:
        self.empty_ = np.all(np.isnan(np.asarray(x, dtype=float)), axis=0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, dtype=float, copy=True)
        x[:, self.empty_] = 0.0
        return x


def _positive_int(params: dict[str, Any], name: str, *, allow_none: bool = False) -> None:
    v = params[name]
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an int ≥ 1{' or None' if allow_none else ''}, got {v!r}")


def _check_cap(cap: Any) -> None:
    if not (isinstance(cap, (int, float)) and 0 < cap < 3e38):
        raise ValueError(f"inf_cap must be a number in (0, 3e38) (float32), got {cap!r}")


class RandomForestModel(CalibratedModel):
    kind = "random_forest"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **CalibratedModel.DEFAULTS,
        "n_estimators": 200,
        "max_depth": None,
        "min_samples_leaf": 1,
        "max_features": "sqrt",
        "n_jobs": 1,
        "inf_cap": INF_CAP,
    }

    def _check_params(self) -> None:
        super()._check_params()
        _positive_int(self.params, "n_estimators")
        _positive_int(self.params, "max_depth", allow_none=True)
        _positive_int(self.params, "min_samples_leaf")
        _check_cap(self.params["inf_cap"])

    def _estimator(self, seed: int) -> Any:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        p = self.params
        return Pipeline(
            [
                (
                    "cap_inf",
                    FunctionTransformer(cap_infinities, kw_args={"cap": float(p["inf_cap"])}),
                ),
                (
                    "impute",
                    SimpleImputer(
                        strategy="constant",
                        fill_value=MISSING_FILL,
                        add_indicator=True,
                        keep_empty_features=True,
                    ),
                ),
                (
                    "forest",
                    RandomForestClassifier(
                        n_estimators=p["n_estimators"],
                        max_depth=p["max_depth"],
                        min_samples_leaf=p["min_samples_leaf"],
                        max_features=p["max_features"],
                        class_weight="balanced_subsample",
                        n_jobs=p["n_jobs"],
                        random_state=seed,
                    ),
                ),
            ]
        )


class HistGradientBoostingModel(CalibratedModel):
    kind = "hist_gradient_boosting"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **CalibratedModel.DEFAULTS,
        "max_iter": 200,
        "learning_rate": 0.1,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 0.0,
        "class_weight": None,
        "early_stopping": "auto",
        "n_threads": 1,
        "inf_cap": INF_CAP,
    }

    def _check_params(self) -> None:
        super()._check_params()
        _positive_int(self.params, "max_iter")
        _positive_int(self.params, "min_samples_leaf")
        lr = self.params["learning_rate"]
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"learning_rate must be a number > 0, got {lr!r}")
        _positive_int(self.params, "n_threads", allow_none=True)
        _check_cap(self.params["inf_cap"])
        if self.params["class_weight"] not in (None, "balanced"):
            raise ValueError(
                f"class_weight must be None or 'balanced', got {self.params['class_weight']!r}"
            )

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.params["n_threads"] is None:
            yield
        else:
            with _thread_controller().limit(limits=int(self.params["n_threads"])):
                yield

    def _estimator(self, seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        p = self.params
        hgb = HistGradientBoostingClassifier(
            max_iter=p["max_iter"],
            learning_rate=p["learning_rate"],
            max_leaf_nodes=p["max_leaf_nodes"],
            min_samples_leaf=p["min_samples_leaf"],
            l2_regularization=p["l2_regularization"],
            class_weight=p["class_weight"],
            early_stopping=p["early_stopping"],
            random_state=seed,
        )
        cap = FunctionTransformer(cap_infinities, kw_args={"cap": float(p["inf_cap"])})
        return Pipeline([("cap_inf", cap), ("empty_to_zero", EmptyColumnsToZero()),
                         ("boosting", hgb)])
