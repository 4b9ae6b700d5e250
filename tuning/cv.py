"""Grouped, stratified k-fold cross-validation of the training pipeline (no Ray).

What ``prescale train`` does, repeated on k held-out folds, so a model's figures come
with their spread instead of resting on one split. For each fold f of
:func:`app.learning.labels.group_folds` (whole groups — jobs, apps or containers — with the
positives spread so that every fold has some):

1. the other folds are the data ``prescale train`` would get: split by group into
   training and validation (:func:`~app.learning.labels.stratified_group_split`, 80/20);
2. the model is fitted on the training part and its operating threshold chosen on the
   validation part (:func:`tuning.train.validate`), then refitted on both parts with the
   same parameters, exactly as when registering (:func:`tuning.register.register_model`);
3. fold f is scored by the refitted model: AP, ROC-AUC, base rate, precision and
   recall at its threshold, Brier score, calibration (a reliability curve), and beside
   them the best single feature and the best single usage column (each chosen on the
   other folds by AP, :func:`app.models.metrics.best_single_feature_rule`) and the
   trend heuristic (:func:`tuning.train.model_params`; ``rankable`` says on how
   many rows it has a trend at all).

:func:`summarise` gives mean, standard deviation, min and max over the folds (and the
paired difference model − best single feature). Worked example of the spread: fold
APs 0.4, 0.5, 0.6 → mean 0.5, std (ddof 1) 0.1, min 0.4, max 0.6.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from prescale.app.learning.labels import group_folds, stratified_group_split
from prescale.app.models import make_model
from prescale.app.models import metrics as mx
from prescale.tuning.train import (
    DEFAULT_THRESHOLD_TARGET,
    evaluate,
    fit_model,
    model_params,
    refit_with_threshold,
    validate,
)
from prescale.tuning.training_data import TrainingData

INNER_FRACTIONS = (0.8, 0.2)
#: The features that come from a trace's usage columns alone (on Google 2011: max_memory,
#: canonical and assigned memory, the page caches, cpu_rate and max_cpu_rate, disk I/O
#: time and its max, local disk space, cpi and mai): "the best single usage column" is
#: the best of these; task attributes (priority, class, requests, the limit) are not.
USAGE_FEATURES: tuple[str, ...] = (
    "memory_usage_last_bytes", "memory_working_set_bytes_last", "memory_assigned_bytes_last",
    "memory_page_cache_bytes_last", "memory_page_cache_unmapped_bytes_last",
    "cpu_usage_cores_last", "cpu_usage_cores_mean", "cpu_peak_cores_last",
    "disk_io_time_fraction_last", "disk_io_peak_time_fraction_last",
    "disk_used_machine_fraction_last", "cpu_cycles_per_instruction_last",
    "memory_accesses_per_instruction_last",
)


def _rule_scores(X: np.ndarray, index: int, direction: str) -> np.ndarray:
    sign = 1.0 if direction == "high" else -1.0
    return np.where(np.isnan(X[:, index]), -np.inf, sign * X[:, index])


def fold_data(data: TrainingData, train_val: np.ndarray, test: np.ndarray,
              key: str, seed: int) -> TrainingData:
    """``data`` with the rows ``train_val`` split by group into training and validation
    (80/20, stratified) and ``test`` as the test split."""
    meta = data.meta.iloc[train_val].reset_index(drop=True)
    tr, va = stratified_group_split(meta, data.y[train_val], key=key,
                                    fractions=INNER_FRACTIONS, seed=seed)
    return replace(data, train_idx=np.sort(train_val[tr]), val_idx=np.sort(train_val[va]),
                   test_idx=np.sort(test))


def cross_validate(
    data: TrainingData,
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    k: int = 5,
    seed: int = 0,
    key: str = "app",
    threshold_target: dict[str, Any] | None = None,
    reliability_bins: int = 10,
) -> list[dict[str, Any]]:
    """One dict per fold (module doc): ``fold``, sizes, ``model`` (:func:`evaluate` at the
    operating threshold plus ``reliability``), ``threshold`` (the operating threshold
    and what it gave on validation), ``rule`` (feature, direction, AP, ROC-AUC on the
    fold) and ``heuristic`` (AP, ROC-AUC, rankable share)."""
    folds = group_folds(data.meta[key].to_numpy(), data.y, k, seed=seed)
    target = {**DEFAULT_THRESHOLD_TARGET, **(threshold_target or {})}
    out = []
    for f in range(k):
        test = np.flatnonzero(folds == f)
        d = fold_data(data, np.flatnonzero(folds != f), test, key, seed + f)
        judged = fit_model(d, kind, params, seed=seed)
        val = validate(judged, d, threshold_target=target)
        model, fit_idx, op, threshold = refit_with_threshold(d, kind, params, seed, val, target)
        p = d.predict(model, test)
        m = evaluate(model, d, test, threshold=threshold, scores=p)
        rel = mx.reliability(d.y[test], p, bins=reliability_bins)
        m["reliability"] = {"edges": list(rel.edges), "count": list(rel.count),
                            "mean_predicted": list(rel.mean_predicted),
                            "observed": list(rel.observed), "ece": rel.ece}
        fit_rows = np.r_[d.train_idx, d.val_idx]
        rule = mx.best_single_feature_rule(data.X[fit_rows], data.y[fit_rows], data.features)
        rs = _rule_scores(data.X[test], rule.index, rule.direction)
        cols = [data.features.index(f) for f in USAGE_FEATURES]
        usage = mx.best_single_feature_rule(data.X[fit_rows][:, cols], data.y[fit_rows],
                                            USAGE_FEATURES)
        us = _rule_scores(data.X[test][:, cols], usage.index, usage.direction)
        heur = make_model("heuristic", **model_params(d, "heuristic", None))
        hp = heur.predict_proba(data.X[test])
        out.append({
            "fold": f,
            "n_train": int(d.train_idx.size), "n_val": int(d.val_idx.size),
            "n_test": int(test.size), "n_test_positive": int(d.y[test].sum()),
            "test_groups": int(data.meta[key].iloc[test].nunique()),
            "model": m,
            "threshold": op,
            "fit_info": dict(model.fit_info),
            "rule": {"feature": rule.feature, "direction": rule.direction,
                     "pr_auc": mx.pr_auc(d.y[test], rs), "roc_auc": mx.roc_auc(d.y[test], rs)},
            "usage_rule": {"feature": usage.feature, "direction": usage.direction,
                           "pr_auc": mx.pr_auc(d.y[test], us),
                           "roc_auc": mx.roc_auc(d.y[test], us)},
            "heuristic": {"pr_auc": mx.pr_auc(d.y[test], hp), "roc_auc": mx.roc_auc(d.y[test], hp),
                          "rankable": float(np.mean(heur.rankable(data.X[test])))},
        })
    return out


def spread(values: list[float]) -> dict[str, float | int]:
    """Mean, std (ddof 1), min and max of the finite values, and how many (module doc)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarise(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """The spread of every figure over the folds (see :func:`spread`)."""
    def col(get: Any) -> list[float]:
        return [get(f) for f in folds]

    m = {key: spread(col(lambda f, k=key: f["model"][k])) for key in
         ("pr_auc", "roc_auc", "base_rate", "precision", "recall", "brier", "ece", "threshold")}
    return {
        "folds": len(folds),
        "model": m,
        "rule": {key: spread(col(lambda f, k=key: f["rule"][k])) for key in ("pr_auc", "roc_auc")},
        "usage_rule": {key: spread(col(lambda f, k=key: f["usage_rule"][k]))
                       for key in ("pr_auc", "roc_auc")},
        "model_minus_usage_rule_ap": spread(col(
            lambda f: f["model"]["pr_auc"] - f["usage_rule"]["pr_auc"])),
        "heuristic": {key: spread(col(lambda f, k=key: f["heuristic"][k]))
                      for key in ("pr_auc", "roc_auc", "rankable")},
        "model_minus_rule_ap": spread(col(lambda f: f["model"]["pr_auc"] - f["rule"]["pr_auc"])),
        "precision_over_base_rate": spread(col(
            lambda f: (f["model"]["precision"] / f["model"]["base_rate"])
            if f["model"]["base_rate"] else math.nan)),
        "rules": sorted({f"{f['rule']['feature']} ({f['rule']['direction']})" for f in folds}),
        "usage_rules": sorted({f"{f['usage_rule']['feature']} ({f['usage_rule']['direction']})"
                               for f in folds}),
    }
