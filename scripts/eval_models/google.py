"""Part A of the failure-model evaluation: Google 2011 (``google2011/`` of the shared
data), job-grouped k-fold cross-validation.

Each task has one usage window (trace time 600–900 s), read by
:func:`~app.telemetry.google2011.read_google2011` into two samples (start, end) with
every usage column and the task's attributes (:mod:`app.telemetry.google2011`). The
training data is what ``prescale train --trace google2011 --tier any`` builds
(:func:`tuning.training_data.build_training_data`): a window of 2 steps per task, tier
``any`` (:mod:`app.learning.labels`: FAIL, EVICT or KILL after the window, LOST and
FINISH not), horizon 1 day (past the end of the trace). Then
:func:`tuning.cv.cross_validate`: 5 folds of whole jobs with the positives spread
(:func:`app.learning.labels.group_folds`), ``google_repeats`` times with other seeds;
in each fold the model is trained as ``prescale train`` trains it (80/20 split by
job of the other folds, judged on the 20 %, refitted on both, operating threshold
from its out-of-fold probabilities) and scored on the held-out jobs: AP, ROC-AUC,
precision and recall at its threshold, calibration. Beside it, chosen on the other
folds: the best single usage column (:data:`tuning.cv.USAGE_FEATURES`) and the best
single feature of all; and the trend heuristic (``min_samples`` 5 as live: on 2
samples per task it cannot rank, and the table says so).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prescale.app.telemetry.google2011 import read_google2011
from prescale.app.telemetry.trace_data import GOOGLE2011_EVENTS_FILE, GOOGLE2011_USAGE_FILE
from prescale.scripts.eval_models.config import GOOGLE_KW, EvalConfig, model_params_for
from prescale.tuning.cv import cross_validate, summarise
from prescale.tuning.training_data import build_training_data


def evaluate_google(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str]) -> dict[str, Any]:
    usage, events_path = data_dir / GOOGLE2011_USAGE_FILE, data_dir / GOOGLE2011_EVENTS_FILE
    if not (usage.is_file() and events_path.is_file()):
        return {"skipped": f"Google 2011 trace not found ({usage}, {events_path}); set "
                           "PRESCALE_TRACE_DIR or --data-dir"}
    t0 = time.perf_counter()
    trace = read_google2011(usage, events_path)
    data = build_training_data(trace, include_windows="lstm" in kinds, **GOOGLE_KW)
    t_prep = time.perf_counter() - t0
    models: dict[str, Any] = {}
    timings: dict[str, float] = {"load_features_labels": t_prep}
    for kind in kinds:
        if kind == "heuristic":
            continue  # scored beside every fold of every kind
        params = model_params_for(kind, cfg, lstm_epochs=cfg.lstm_epochs_google,
                                  rf_trees=cfg.rf_trees)
        t = time.perf_counter()
        folds = []
        for rep in range(cfg.google_repeats):
            for f in cross_validate(data, kind, params, k=cfg.google_folds, seed=rep):
                folds.append({**f, "repeat": rep})
        timings[f"cv_{kind}"] = time.perf_counter() - t
        models[kind] = {"params": params, "summary": summarise(folds), "folds": folds,
                        "pooled_reliability": _pooled_reliability(folds)}
    meta = data.meta
    return {
        "source": trace.source,
        "n_tasks": int(data.n),
        "n_jobs": int(meta["app"].nunique()),
        "n_positive": int(data.y.sum()),
        "positive_jobs": int(meta["app"][data.y.astype(bool)].nunique()),
        "params": data.params,
        "folds": cfg.google_folds,
        "repeats": cfg.google_repeats,
        "models": models,
        "timings_s": timings,
    }


def _pooled_reliability(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """The folds' reliability bins added up (counts, and count-weighted means)."""
    rels = [f["model"]["reliability"] for f in folds]
    count = np.sum([r["count"] for r in rels], axis=0)
    with np.errstate(invalid="ignore"):
        mp = np.nansum([np.nan_to_num(np.array(r["mean_predicted"], float)) * np.array(r["count"])
                        for r in rels], axis=0) / count
        ob = np.nansum([np.nan_to_num(np.array(r["observed"], float)) * np.array(r["count"])
                        for r in rels], axis=0) / count
    return {"edges": rels[0]["edges"], "count": count.tolist(), "mean_predicted": mp.tolist(),
            "observed": ob.tolist()}

