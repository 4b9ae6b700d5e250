"""Settings of the failure-model evaluation: the full configuration and the reduced
``--quick`` one (for the tests), and each model kind's parameters.

Model settings (never tuned on the test splits; the fleet sizes were cut for time
only): each kind's defaults (what ``prescale train --kind K`` uses), except the forest's
tree count on the fleets (100) and the LSTM's epochs (30 on Google, 4 on the fleets).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from prescale.app.models import MODEL_KINDS, torch_available

GOOGLE_KW = {"tier": "any", "horizon_s": 86_400.0, "window_steps": 2, "recent_steps": 2,
             "min_present": 2}


@dataclass(frozen=True)
class FleetConfig:
    horizon_s: float
    window_steps: int
    recent_steps: int
    stride: int
    min_present: int = 5
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)


@dataclass(frozen=True)
class EvalConfig:
    quick: bool = False
    google_folds: int = 5
    google_repeats: int = 2
    sim_containers: int = 120
    sim_steps: int = 1440
    sim_step_s: float = 60.0
    sim_seed: int = 0
    sim_noise_fraction: float = 0.01
    sim: FleetConfig = FleetConfig(horizon_s=900.0, window_steps=15, recent_steps=5, stride=2)
    bitbrains_limit_multiple: float = 1.3
    bitbrains_first_fraction: float = 0.25
    bitbrains_max_vms: int | None = None
    bitbrains: FleetConfig = FleetConfig(
        horizon_s=1800.0, window_steps=12, recent_steps=4, stride=2)
    rf_trees: int = 200
    rf_trees_fleet: int = 100
    hgb_iter: int = 200
    lstm_epochs_google: int = 30
    lstm_epochs_fleet: int = 4
    bootstrap_reps: int = 200


FULL = EvalConfig()
QUICK = replace(
    FULL,
    quick=True,
    google_repeats=1,
    sim_containers=24,
    sim_steps=480,
    bitbrains_max_vms=8,
    bitbrains=replace(FULL.bitbrains, stride=4),
    # the tests check the report's structure and counts, never a model's score: the
    # smallest models that still train and score every fold (full sizes above)
    rf_trees=10,
    rf_trees_fleet=10,
    hgb_iter=10,
    lstm_epochs_google=1,
    lstm_epochs_fleet=1,
    bootstrap_reps=30,
)


def default_kinds() -> tuple[str, ...]:
    """Every model kind; ``lstm`` only when PyTorch is installed."""
    return tuple(k for k in MODEL_KINDS if k != "lstm" or torch_available())


def model_params_for(kind: str, cfg: EvalConfig, *, lstm_epochs: int, rf_trees: int
                     ) -> dict[str, Any]:
    if kind == "random_forest":
        return {"n_estimators": int(rf_trees), "n_jobs": 2}
    if kind == "hist_gradient_boosting":
        return {"max_iter": cfg.hgb_iter}
    if kind == "lstm":
        return {"epochs": int(lstm_epochs)}
    return {}

