"""The training-free trend heuristic as a :class:`~app.models.base.FailureModel`.

Wraps :class:`app.core.predictor.TrendExhaustionPredictor` (formulas and worked
examples there): ``predict_proba`` is the ``p_fail`` of one of its tiers
(``memory`` by default, or ``cpu``). ``fit`` learns nothing; it only checks the
inputs and records the base rate, so the heuristic goes through the same
training, evaluation and registry path as the learned kinds, and is the baseline
they must beat. Its probabilities are not calibrated. It predicts without ``fit``
(``fitted`` is always true).

``X`` must be the full feature matrix ``[n, len(FEATURES)]`` of
:mod:`app.core.features` (the heuristic reads its columns by name).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from prescale.app.core.config import default_of
from prescale.app.core.features import FEATURES
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.sample import Tier
from prescale.app.models.base import FailureModel


class HeuristicModel(FailureModel):
    kind = "heuristic"
    trainable = False
    #: the predictor's own defaults (one source: app.core.config)
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "tier": "memory",
        **{name: default_of(TrendExhaustionPredictor, name) for name in (
            "horizon_s", "min_samples", "sigma_floor_fraction", "cpu_busy_fraction")},
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # training-free: ready to predict without fit
        self._fitted = True
        self._shape = (len(FEATURES),)

    def _check_params(self) -> None:
        tier = self.params["tier"]
        if tier not in (Tier.MEMORY.value, Tier.CPU.value):
            raise ValueError(f"tier must be 'memory' or 'cpu', got {tier!r}")
        self._predictor()  # the predictor validates the rest, naming the parameter

    def _predictor(self) -> TrendExhaustionPredictor:
        p = self.params
        return TrendExhaustionPredictor(
            horizon_s=p["horizon_s"],
            min_samples=p["min_samples"],
            sigma_floor_fraction=p["sigma_floor_fraction"],
            cpu_busy_fraction=p["cpu_busy_fraction"],
        )

    def _check_X(self, X: Any, *, fitting: bool) -> np.ndarray:
        x = super()._check_X(X, fitting=fitting)
        if x.shape[1] != len(FEATURES):
            raise ValueError(
                f"the heuristic needs the {len(FEATURES)} columns of app.core.features.FEATURES, "
                f"X has {x.shape[1]}"
            )
        return x

    def fit(self, X: Any, y: Any, *, seed: int = 0, ts_s: Any = None,
            groups: Any = None) -> HeuristicModel:
        seed = self._check_seed(seed)
        x = self._check_X(X, fitting=True)
        labels = self._check_y(y, x.shape[0])
        self._check_ts(ts_s, x.shape[0])
        self._check_groups(groups, x.shape[0])
        n = labels.size
        self.fit_info = {
            "n_train": n,
            "n_positive": int(labels.sum()),
            "base_rate": float(labels.mean()) if n else float("nan"),
            "calibration": "none: training-free heuristic",
            "seed": seed,
        }
        self._fitted = True
        return self

    def rankable(self, X: Any) -> np.ndarray:
        """``bool[n]``: the rows with enough samples for a trend
        (:meth:`~app.core.predictor.TrendExhaustionPredictor.forecastable`); the others
        get p = 0 from :meth:`predict_proba`, which ranks nothing."""
        return self._predictor().forecastable(self._check_X(X, fitting=False))

    def predict_proba(self, X: Any, groups: Any = None) -> np.ndarray:
        x = self._check_X(X, fitting=False)
        self._check_groups(groups, x.shape[0])
        pred = self._predictor().predict(x)
        p = pred.tiers[Tier(self.params["tier"])].p_fail
        return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)
