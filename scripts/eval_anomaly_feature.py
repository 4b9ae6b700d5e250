"""Does the anomaly score earn a place among the default features? (issue 13, point 6)

Usage::

    .venv/bin/python -m prescale.scripts.eval_anomaly_feature

For each dataset, the default gradient boosting of ``prescale train`` is fitted twice on
the same rows, once on the features and once on the features plus ``anomaly_score``
(:func:`app.models.anomaly.with_anomaly_feature`: an isolation forest fitted on the
training rows only), and the AP of both is compared on held-out rows. Peer features are
off in both arms (they need the 46 feature columns as they are). Datasets: Google 2011
(5 job-grouped folds of :func:`app.learning.labels.group_folds`), the simulated fleet and the
Bitbrains-derived fleet of ``scripts/eval_models/`` (training split → validation
split). Prints one line per dataset: AP without, with, and the difference per split.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from prescale.app.learning.labels import group_folds
from prescale.app.learning.limit_failures import derive_limit_failures
from prescale.app.models import make_model
from prescale.app.models import metrics as mx
from prescale.app.models.anomaly import AnomalyDetector
from prescale.app.sim.fleet import simulate_fleet
from prescale.app.telemetry.bitbrains import read_bitbrains
from prescale.app.telemetry.google2011 import read_google2011
from prescale.app.telemetry.trace_data import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    find_trace_dir,
)
from prescale.scripts.eval_models.config import FULL, GOOGLE_KW
from prescale.scripts.eval_models.fleets import fleet_data
from prescale.tuning.training_data import TrainingData, build_training_data


def _ap(data: TrainingData, X: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    m = make_model("hist_gradient_boosting", peer_features=False)
    m.fit(X[train], data.y[train], ts_s=data.ts_s[train])
    return mx.pr_auc(data.y[test], m.predict_proba(X[test]))


def compare(name: str, data: TrainingData, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
    gains, without, with_ = [], [], []
    for train, test in splits:
        detector = AnomalyDetector(seed=0).fit(data.X[train])
        X_anom = np.column_stack([data.X, detector.score(data.X)])
        a, b = _ap(data, data.X, train, test), _ap(data, X_anom, train, test)
        without.append(a)
        with_.append(b)
        gains.append(b - a)
    print(f"{name}: AP without {np.mean(without):.4f}, with anomaly_score {np.mean(with_):.4f}"
          f", difference {np.mean(gains):+.4f} (per split "
          f"{', '.join(f'{g:+.4f}' for g in gains)})", flush=True)


def main() -> int:
    t0 = time.perf_counter()
    d = find_trace_dir()
    if (d / GOOGLE2011_USAGE_FILE).is_file():
        g = build_training_data(read_google2011(d / GOOGLE2011_USAGE_FILE,
                                                d / GOOGLE2011_EVENTS_FILE), **GOOGLE_KW)
        folds = group_folds(g.meta["app"].to_numpy(), g.y, 5, seed=0)
        compare("google2011 (5 job folds)", g,
                [(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(5)])
    fleet = simulate_fleet(FULL.sim_containers, FULL.sim_steps, FULL.sim_step_s,
                           seed=FULL.sim_seed, noise_fraction=FULL.sim_noise_fraction)
    sd = fleet_data(fleet.samples, fleet.events, FULL.sim, ("hist_gradient_boosting",))
    compare("sim (training → validation split)", sd, [(sd.train_idx, sd.val_idx)])
    if (d / BITBRAINS_RND_FILE).is_file():
        s, e, _ = derive_limit_failures(read_bitbrains(d / BITBRAINS_RND_FILE).samples)
        bd = fleet_data(s, e, FULL.bitbrains, ("hist_gradient_boosting",))
        compare("bitbrains derived (training → validation split)", bd,
                [(bd.train_idx, bd.val_idx)])
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
