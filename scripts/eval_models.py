"""Evaluate every failure model kind on real and simulated data (issue 4's acceptance).

Usage::

    .venv/bin/python -m prescale.scripts.eval_models [--quick] [--json] [--data-dir DIR]
        [--kinds random_forest,heuristic,...]

Prints Markdown tables for docs/BENCHMARKS.md (``--json``: one JSON object instead).
``--quick`` is a reduced configuration for the tests (well under 90 s). Exit codes:
0 ok, 2 bad arguments. A missing trace is not an error: its part says "skipped" and why.

Part A — Google 2011 (``google2011/`` of the shared data): job-grouped k-fold CV
    Each task has one usage window (trace time 600–900 s), read by
    :func:`~app.telemetry.replay.read_google2011` into two samples (start, end) with
    every usage column and the task's attributes (:mod:`app.telemetry.replay`). The
    training data is what ``prescale train --trace google2011 --tier any`` builds
    (:func:`tuning.train.build_training_data`): a window of 2 steps per task, tier
    ``any`` (:mod:`app.core.labels`: FAIL, EVICT or KILL after the window, LOST and
    FINISH not), horizon 1 day (past the end of the trace). Then
    :func:`tuning.cv.cross_validate`: 5 folds of whole jobs with the positives spread
    (:func:`app.core.labels.group_folds`), ``google_repeats`` times with other seeds;
    in each fold the model is trained as ``prescale train`` trains it (80/20 split by
    job of the other folds, judged on the 20 %, refitted on both, operating threshold
    from its out-of-fold probabilities) and scored on the held-out jobs: AP, ROC-AUC,
    precision and recall at its threshold, calibration. Beside it, chosen on the other
    folds: the best single usage column (:data:`tuning.cv.USAGE_FEATURES`) and the best
    single feature of all; and the trend heuristic (``min_samples`` 5 as live: on 2
    samples per task it cannot rank, and the table says so).

Part B — replay fleets (memory failures within H, split by time 60/10/30, gap H)
    (i) ``sim``: :func:`app.sim.fleet.simulate_fleet` (120 containers × 1440 steps of
    60 s, seed 0: one day; H = 15 min, windows of 15 steps, ``recent_steps`` 5, a window
    ending at every 2nd step). Its ``oom_kill`` events are the ground truth.
    (ii) ``bitbrains``: the 50 Bitbrains VMs (300 s steps) with failures derived by
    :func:`app.core.limit_failures.derive_limit_failures` (the same derivation as
    ``prescale replay --derive-failures``: a memory limit of 1.3 × the VM's median usage
    over its first 25 % of rows; a reading at or above it is an OOM kill); H = 30 min
    (6 steps), windows of 12 steps (1 h), ``recent_steps`` 4, ``stride`` 2. Windows that
    end at or above the limit (a VM being killed) are left out, as training does.
    Each model is trained as ``prescale train`` trains it (fitted on the 60 %, judged and
    its threshold chosen as registration does, refitted on the 70 %) and scored on the
    last 30 %: precision and recall at its operating threshold, PR-AUC, ROC-AUC, Brier
    score and the median lead time of the true positives; failures caught and the
    median first warning (:func:`failure_level`); for the simulated fleet the recall
    per failing scenario. Beside them the base rate, the best single-feature rule
    (chosen on train) and the heuristic. Uncertainty: 95 % intervals of each PR-AUC and
    of its paired difference from the rule and from the heuristic, from 200 bootstrap
    resamples of whole containers of the test period (:func:`container_bootstrap`).

Model settings (never tuned on the test splits; the fleet sizes were cut for time
only): each kind's defaults (what ``prescale train --kind K`` uses), except the forest's
tree count on the fleets (100) and the LSTM's epochs (30 on Google, 4 on the fleets).

Timings: wall seconds per step and part, the process's CPU seconds, and the 1-minute
load average at the start and the end (the machine is shared: wall time under load
can be 2–3 × the CPU time divided by the 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.limit_failures import derive_limit_failures
from prescale.app.core.sample import EventKind
from prescale.app.models import MODEL_KINDS, make_model, torch_available
from prescale.app.models.metrics import (
    best_single_feature_rule,
    brier_score,
    confusion,
    lead_time_stats,
    pr_auc,
    reliability,
    roc_auc,
)
from prescale.app.sim.fleet import FAILING_SCENARIOS, simulate_fleet
from prescale.app.telemetry.replay import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    SAMPLE_COLUMNS,
    TraceData,
    find_trace_dir,
    read_bitbrains,
    read_google2011,
)
from prescale.tuning.cv import cross_validate, summarise
from prescale.tuning.train import (
    TrainingData,
    build_training_data,
    fit_model,
    model_params,
    refit_with_threshold,
    validate,
)

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
    rf_trees=40,
    rf_trees_fleet=40,
    hgb_iter=50,
    lstm_epochs_google=5,
    lstm_epochs_fleet=2,
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


# --------------------------------------------------------------------------- helpers


def _clean(value: Any) -> Any:
    """JSON-safe: nan/inf → None, numpy scalars → Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _rule_score(X: np.ndarray, index: int, direction: str) -> np.ndarray:
    """The scores of a single-feature rule (nan never alarms), as in best_single_feature_rule."""
    sign = 1.0 if direction == "high" else -1.0
    col = X[:, index]
    return np.where(np.isnan(col), -np.inf, sign * col)


# --------------------------------------------------------------------------- Google 2011


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


# --------------------------------------------------------------------------- fleets


def failure_level(y: np.ndarray, p: np.ndarray, lead_s: np.ndarray, containers: np.ndarray,
                  ts_end_s: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """Failures caught and the first warning of each, from window-level predictions.

    A *failure* is one (container, failure time) pair that some positive window points
    at (failure time = ``ts_end_s + lead_s``). It is *caught* when at least one of its
    windows alarms (``p ≥ threshold``); its *first warning* is the largest lead time
    among its alarmed windows (the earliest alarm within the horizon).

    Worked example: container a, windows ending at 0, 10, 20 all pointing at a failure
    at 30 (leads 30, 20, 10) with p = 0.2, 0.6, 0.9 → caught, first warning 20 s; a
    second failure whose windows never alarm → 1 of 2 caught, median first warning 20 s.
    """
    pos = (y == 1) & np.isfinite(lead_s)
    fail_ts = np.round(ts_end_s + lead_s, 6)
    frame = pd.DataFrame({"c": containers[pos], "t": fail_ts[pos],
                          "alarm": p[pos] >= threshold, "lead": lead_s[pos]})
    if frame.empty:
        return {"failures": 0, "caught": 0, "caught_fraction": math.nan,
                "median_first_warning_s": math.nan}
    alarmed = frame[frame["alarm"]]
    first = alarmed.groupby(["c", "t"])["lead"].max()
    n_fail = int(frame.groupby(["c", "t"]).ngroups)
    return {
        "failures": n_fail,
        "caught": int(first.size),
        "caught_fraction": first.size / n_fail,
        "median_first_warning_s": float(first.median()) if first.size else math.nan,
    }


def container_bootstrap(y: np.ndarray, scores: dict[str, np.ndarray], containers: np.ndarray,
                        *, reps: int, seed: int = 0,
                        references: Sequence[str] = ("rule", "heuristic")
                        ) -> dict[str, dict[str, float]]:
    """95 % intervals of each score's PR-AUC, and of its difference from each reference.

    Resamples whole containers with replacement (``reps`` times, seeded), so rows of
    one container, which are correlated, move together; every score is evaluated on
    the same resamples (paired differences). Interval = the 2.5th and 97.5th
    percentile. Resamples without a positive are skipped. Keys: ``pr_auc_lo/hi`` and
    ``minus_<reference>_lo/hi``.
    """
    codes, uniq = pd.factorize(containers)
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniq)))]
    rows = [order[bounds[i]:bounds[i + 1]] for i in range(len(uniq))]
    rng = np.random.default_rng(seed)
    refs = [r for r in references if r in scores]
    draws: dict[str, list[float]] = {k: [] for k in scores}
    diffs: dict[tuple[str, str], list[float]] = {(k, r): [] for k in scores for r in refs
                                                 if k != r}
    for _ in range(reps):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([rows[i] for i in pick])
        if not y[idx].any():
            continue
        aps = {k: pr_auc(y[idx], v[idx]) for k, v in scores.items()}
        for k, a in aps.items():
            draws[k].append(a)
        for (k, r), d in diffs.items():
            d.append(aps[k] - aps[r])
    out: dict[str, dict[str, float]] = {}
    for k in scores:
        lo, hi = np.percentile(draws[k], [2.5, 97.5]) if draws[k] else (math.nan, math.nan)
        out[k] = {"pr_auc_lo": float(lo), "pr_auc_hi": float(hi)}
    for (k, r), d in diffs.items():
        lo, hi = np.percentile(d, [2.5, 97.5]) if d else (math.nan, math.nan)
        out[k].update({f"minus_{r}_lo": float(lo), f"minus_{r}_hi": float(hi)})
    return out


def fleet_data(samples: pd.DataFrame, events: pd.DataFrame, fc: FleetConfig,
               kinds: Sequence[str]) -> TrainingData:
    return build_training_data(
        TraceData(samples.loc[:, list(SAMPLE_COLUMNS)], events), tier="memory",
        horizon_s=fc.horizon_s, window_steps=fc.window_steps, recent_steps=fc.recent_steps,
        stride=fc.stride, min_present=fc.min_present, split="time", fractions=fc.fractions,
        include_windows="lstm" in kinds)


def evaluate_fleet(name: str, samples: pd.DataFrame, events: pd.DataFrame, fc: FleetConfig,
                   cfg: EvalConfig, kinds: Sequence[str], *, per_app: Sequence[str] = ()
                   ) -> dict[str, Any]:
    """Training data, each model trained as registration trains it, its test metrics
    (module doc, part B)."""
    t0 = time.perf_counter()
    data = fleet_data(samples, events, fc, kinds)
    t_prep = time.perf_counter() - t0
    test = data.test_idx
    yt = data.y[test]
    X = data.X
    fit_rows = np.r_[data.train_idx, data.val_idx]
    rule = best_single_feature_rule(X[data.train_idx], data.y[data.train_idx], data.features)
    apps_test = data.meta["app"].to_numpy()[test]
    containers_test = data.meta["container"].to_numpy()[test]
    ts = data.ts_s
    lead = data.lead_time_s
    result: dict[str, Any] = {
        "fleet": name,
        "samples": int(len(samples)),
        "containers": int(samples["container"].nunique()),
        "failures": int((events["kind"] == EventKind.OOM_KILL.value).sum()),
        "horizon_s": fc.horizon_s, "window_steps": fc.window_steps,
        "recent_steps": fc.recent_steps, "stride": fc.stride,
        "windows": int(data.n),
        "exhausted_windows_dropped": int(data.params.get("exhausted_windows_dropped", 0)),
        "n_train": int(fit_rows.size), "n_train_positive": int(data.y[fit_rows].sum()),
        "n_test": int(test.size), "n_test_positive": int(yt.sum()),
        "test_from_s": float(ts[test].min()) if test.size else math.nan,
        "base_rate": float(yt.mean()) if yt.size else math.nan,
        "rule": {
            "feature": rule.feature, "direction": rule.direction, "pr_auc_train": rule.pr_auc,
            "pr_auc": pr_auc(yt, _rule_score(X[test], rule.index, rule.direction)),
        },
        "test_positive_per_app": {a: int(yt[apps_test == a].sum()) for a in per_app},
        "models": {},
        "timings_s": {"features_labels_split": t_prep},
    }
    scores = {"rule": _rule_score(X[test], rule.index, rule.direction)}
    for kind in kinds:
        t = time.perf_counter()
        params = model_params_for(kind, cfg, lstm_epochs=cfg.lstm_epochs_fleet,
                                  rf_trees=cfg.rf_trees_fleet)
        if kind == "heuristic":
            model = make_model("heuristic", **model_params(data, "heuristic", params))
            val = validate(model, data)
            thr, op = val["threshold"], val["operating_threshold"]
        else:
            judged = fit_model(data, kind, params)
            val = validate(judged, data)
            model, _, op, thr = refit_with_threshold(data, kind, params, 0, val)
        p = data.predict(model, test)
        scores[kind] = p
        fl = failure_level(yt, p, lead[test], containers_test, ts[test], threshold=thr)
        tp, fp, fn, tn = confusion(yt, p, threshold=thr)
        lt = lead_time_stats(yt, p, lead[test], threshold=thr)
        alarm = p >= thr
        result["models"][kind] = {
            "threshold": thr, "threshold_chosen_on": op.get("chosen_on", "validation"),
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan,
            "pr_auc": pr_auc(yt, p), "roc_auc": roc_auc(yt, p),
            "brier": brier_score(yt, p), "ece": reliability(yt, p).ece,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "median_lead_s": lt.median_s, "p10_lead_s": lt.p10_s, "p90_lead_s": lt.p90_s,
            "recall_per_app": {
                a: (int((alarm & (yt == 1) & (apps_test == a)).sum())
                    / int(((yt == 1) & (apps_test == a)).sum()))
                if ((yt == 1) & (apps_test == a)).any() else math.nan
                for a in per_app
            },
            "failures": fl["failures"], "failures_caught": fl["caught"],
            "failures_caught_fraction": fl["caught_fraction"],
            "median_first_warning_s": fl["median_first_warning_s"],
            "calibration": getattr(model, "fit_info", {}).get("calibration"),
        }
        result["timings_s"][f"train_score_{kind}"] = time.perf_counter() - t
    t0 = time.perf_counter()
    ci = container_bootstrap(yt, scores, containers_test, reps=cfg.bootstrap_reps)
    result["rule"].update(ci["rule"])
    for kind in kinds:
        result["models"][kind].update(ci[kind])
    result["bootstrap_reps"] = cfg.bootstrap_reps
    result["timings_s"]["bootstrap"] = time.perf_counter() - t0
    return result


def evaluate_sim(cfg: EvalConfig, kinds: Sequence[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    fleet = simulate_fleet(cfg.sim_containers, cfg.sim_steps, cfg.sim_step_s, seed=cfg.sim_seed,
                           noise_fraction=cfg.sim_noise_fraction)
    t_gen = time.perf_counter() - t0
    res = evaluate_fleet("sim", fleet.samples, fleet.events, cfg.sim, cfg, kinds,
                         per_app=[f"sim-{s}" for s in FAILING_SCENARIOS])
    res["setup"] = {"containers": cfg.sim_containers, "steps": cfg.sim_steps,
                    "step_s": cfg.sim_step_s, "seed": cfg.sim_seed,
                    "noise_fraction": cfg.sim_noise_fraction}
    res["timings_s"] = {"generate": t_gen, **res["timings_s"]}
    return res


def evaluate_bitbrains(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str]) -> dict[str, Any]:
    path = data_dir / BITBRAINS_RND_FILE
    if not path.is_file():
        return {"skipped": f"Bitbrains trace not found ({path}); set PRESCALE_TRACE_DIR or "
                           "--data-dir"}
    t0 = time.perf_counter()
    trace = read_bitbrains(path)
    raw = trace.samples
    if cfg.bitbrains_max_vms is not None:
        vms = sorted(raw["container"].unique(), key=lambda c: int(c.split("-")[1]))
        raw = raw[raw["container"].isin(vms[: cfg.bitbrains_max_vms])]
    samples, events, info = derive_limit_failures(
        raw, limit_multiple=cfg.bitbrains_limit_multiple,
        first_fraction=cfg.bitbrains_first_fraction)
    t_load = time.perf_counter() - t0
    res = evaluate_fleet("bitbrains", samples, events, cfg.bitbrains, cfg, kinds)
    res["derivation"] = info
    res["timings_s"] = {"load_derive": t_load, **res["timings_s"]}
    return res


# --------------------------------------------------------------------------- report


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def _ms(d: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std [min, max]`` of a :func:`tuning.cv.spread`."""
    if not d or d.get("n", 0) == 0:
        return "—"
    return (f"{_f(d['mean'], digits)} ± {_f(d['std'], digits)} "
            f"[{_f(d['min'], digits)}, {_f(d['max'], digits)}]")


def _ci(d: dict[str, Any], key: str) -> str:
    lo, hi = d.get(f"{key}_lo"), d.get(f"{key}_hi")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{lo:.3f}, {hi:.3f}]"


def _minutes(s: Any) -> str:
    return "—" if s is None or not math.isfinite(s) else f"{s / 60:.1f}"


def render_google(g: dict[str, Any]) -> str:
    if "skipped" in g:
        return f"### Google 2011\n\nSkipped: {g['skipped']}\n"
    n_folds = g["folds"] * g["repeats"]
    lines = [
        "### Google 2011: usage snapshot → FAIL, EVICT or KILL later (job-grouped "
        f"{g['folds']}-fold CV × {g['repeats']})",
        "",
        f"{g['n_tasks']} tasks of {g['n_jobs']} jobs; {g['n_positive']} positive tasks in "
        f"{g['positive_jobs']} jobs (base rate {g['n_positive'] / g['n_tasks']:.4f}); "
        f"horizon 1 day; a {g['params']['window_steps']}-step window per task; {g['folds']} "
        f"folds of whole jobs with the positives spread, {g['repeats']} seeds: {n_folds} "
        "held-out folds, mean ± std [min, max] over them. Each model is trained as "
        "`prescale train` trains it (split by job, judged, refitted, threshold from its "
        "out-of-fold probabilities).",
        "",
        "| score | AP | ROC-AUC | AP − best usage column (paired) | folds > usage column "
        "| precision at its threshold | recall at its threshold | precision ÷ base rate "
        "| ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(g["models"].values()), None)
    if first is not None:
        s = first["summary"]
        lines.append(f"| base rate | {_ms(s['model']['base_rate'], 4)} | 0.5 | — | — | — | — "
                     "| 1 | — |")
        lines.append(f"| best single usage column (chosen on the other folds) "
                     f"| {_ms(s['usage_rule']['pr_auc'])} | {_ms(s['usage_rule']['roc_auc'])} "
                     "| 0 | — | — | — | — | — |")
        lines.append(f"| best single feature of all (chosen on the other folds) "
                     f"| {_ms(s['rule']['pr_auc'])} | {_ms(s['rule']['roc_auc'])} | — | — | — "
                     "| — | — | — |")
        h = s["heuristic"]
        lines.append(f"| heuristic (ranks {h['rankable']['mean']:.0%} of the windows: "
                     f"{g['params']['window_steps']} samples < min_samples 5) "
                     f"| {_ms(h['pr_auc'])} | {_ms(h['roc_auc'])} | — | — | — | — | — | — |")
    for kind, m in g["models"].items():
        s = m["summary"]
        beats = sum(1 for f in m["folds"]
                    if f["model"]["pr_auc"] > f["usage_rule"]["pr_auc"])
        lines.append(
            f"| {kind} | {_ms(s['model']['pr_auc'])} | {_ms(s['model']['roc_auc'])} "
            f"| {_ms(s['model_minus_usage_rule_ap'])} | {beats}/{len(m['folds'])} "
            f"| {_ms(s['model']['precision'])} | {_ms(s['model']['recall'])} "
            f"| {_ms(s['precision_over_base_rate'], 1)} | {_ms(s['model']['ece'])} |")
    if first is not None:
        lines += ["", "Usage columns chosen: " + ", ".join(first["summary"]["usage_rules"])
                  + "; best features of all: " + ", ".join(first["summary"]["rules"]) + "."]
    for kind, m in g["models"].items():
        lines += ["", f"Per fold, {kind} (AP / usage column AP / positives / threshold / "
                  "precision / recall):", "",
                  "| repeat | fold | test tasks | positives | AP | usage column AP "
                  "| ROC-AUC | threshold | precision | recall |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for f in m["folds"]:
            lines.append(
                f"| {f['repeat']} | {f['fold']} | {f['n_test']} | {f['n_test_positive']} "
                f"| {_f(f['model']['pr_auc'])} | {_f(f['usage_rule']['pr_auc'])} "
                f"| {_f(f['model']['roc_auc'])} | {_f(f['threshold']['threshold'], 4)} "
                f"| {_f(f['model']['precision'])} | {_f(f['model']['recall'])} |")
        rel = m["pooled_reliability"]
        lines += ["", f"Reliability of {kind} on the held-out folds (all folds pooled):", "",
                  "| p bin | windows | mean p | observed failure rate |", "|---|---|---|---|"]
        for k, c in enumerate(rel["count"]):
            if c:
                lines.append(f"| {rel['edges'][k]:.1f}–{rel['edges'][k + 1]:.1f} | {c} "
                             f"| {_f(rel['mean_predicted'][k])} | {_f(rel['observed'][k])} |")
    return "\n".join(lines) + "\n"


def render_fleets(fleets: dict[str, dict[str, Any]]) -> str:
    lines = [
        "### Replay fleets: memory failure within H (time split 60/10/30, gap H)",
        "",
    ]
    for name, f in fleets.items():
        if "skipped" in f:
            lines.append(f"- `{name}`: skipped: {f['skipped']}")
            continue
        extra = ""
        if name == "bitbrains":
            d = f["derivation"]
            extra = (f"; limit {d['limit_multiple']:g} × median of the first "
                     f"{d['first_fraction']:.0%} of each VM's rows, {d['oom_kills']} derived "
                     f"OOM kills, {len(d['containers_without_limit'])} VM(s) without a "
                     "limit left out")
        lines.append(
            f"- `{name}`: {f['containers']} containers, {f['samples']} samples, "
            f"{f['failures']} OOM kills{extra}; H = {f['horizon_s'] / 60:g} min, "
            f"W = {f['window_steps']} steps, stride {f['stride']}; {f['windows']} windows "
            f"scored ({f['exhausted_windows_dropped']} ending at or above the limit left "
            f"out), fitted on {f['n_train']} ({f['n_train_positive']} positive), test "
            f"{f['n_test']} ({f['n_test_positive']} positive).")
    lines += [
        "",
        "| fleet | score | threshold | precision | recall | PR-AUC [95 % CI] "
        "| − rule [95 % CI] | − heuristic [95 % CI] | ROC-AUC | Brier | median lead of TP "
        "windows (min) | failures caught | median first warning (min) | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in fleets.items():
        if "skipped" in f:
            continue
        lines.append(f"| {name} | base rate (random score) | — | — | — | {_f(f['base_rate'])} "
                     "| — | — | — | — | — | — | — | — | — | — |")
        r = f["rule"]
        lines.append(f"| {name} | rule: {r['feature']} ({r['direction']}) | — | — | — "
                     f"| {_f(r['pr_auc'])} {_ci(r, 'pr_auc')} | 0 | — | — | — | — | — | — "
                     "| — | — | — |")
        h = f["models"].get("heuristic", {})
        for kind, m in f["models"].items():
            caught = f"{m['failures_caught']}/{m['failures']}"
            minus_h = ("0" if kind == "heuristic" else
                       f"{_f(m['pr_auc'] - h['pr_auc'])} {_ci(m, 'minus_heuristic')}"
                       if h else "—")
            lines.append(
                f"| {name} | {kind} | {_f(m['threshold'], 4)} | {_f(m['precision'])} "
                f"| {_f(m['recall'])} | {_f(m['pr_auc'])} {_ci(m, 'pr_auc')} "
                f"| {_f(m['pr_auc'] - r['pr_auc'])} {_ci(m, 'minus_rule')} | {minus_h} "
                f"| {_f(m['roc_auc'])} | {_f(m['brier'], 4)} | {_minutes(m['median_lead_s'])} "
                f"| {caught} | {_minutes(m['median_first_warning_s'])} "
                f"| {m['tp']} | {m['fp']} | {m['fn']} |")
    sim = fleets.get("sim")
    if sim and "skipped" not in sim:
        apps = list(sim["test_positive_per_app"])
        lines += ["", "Recall at the operating threshold per failing scenario of the "
                  "simulated fleet (test positives in brackets):", "",
                  "| model | " + " | ".join(
                      f"{a.removeprefix('sim-')} ({sim['test_positive_per_app'][a]})"
                      for a in apps) + " |",
                  "|---|" + "---|" * len(apps)]
        for kind, m in sim["models"].items():
            lines.append(f"| {kind} | " + " | ".join(_f(m["recall_per_app"][a]) for a in apps)
                         + " |")
    return "\n".join(lines) + "\n"


def render_timings(timings: dict[str, float], parts: dict[str, dict[str, Any]]) -> str:
    lines = ["### Timings (s)", "", "| part | step | seconds |", "|---|---|---|"]
    for part, res in parts.items():
        for step, secs in res.get("timings_s", {}).items():
            lines.append(f"| {part} | {step} | {secs:.1f} |")
    for part in ("google2011", "sim", "bitbrains", "all"):
        if part in timings:
            lines.append(f"| **{part}** | total wall | **{timings[part]:.1f}** |")
    if "cpu_all" in timings:
        lines.append(f"| all | process CPU | {timings['cpu_all']:.1f} |")
        lines.append(f"| all | load average (1 min) start → end "
                     f"| {_f(timings['load_avg_1m_start'], 1)} → "
                     f"{_f(timings['load_avg_1m_end'], 1)} |")
    return "\n".join(lines) + "\n"


def render(report: dict[str, Any]) -> str:
    head = (f"## Failure models ({'quick' if report['config']['quick'] else 'full'} "
            f"configuration; kinds: {', '.join(report['kinds'])})\n")
    return "\n".join([
        head,
        render_google(report["google2011"]),
        render_fleets(report["fleets"]),
        render_timings(report["timings_s"], {"google2011": report["google2011"],
                                             **report["fleets"]}),
    ])


# --------------------------------------------------------------------------- main


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def run(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str],
        parts: Sequence[str] = ("google2011", "sim", "bitbrains")) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    load_start = _load()
    timings: dict[str, float] = {}
    skipped = {"skipped": "not asked for (--parts)"}
    t = time.perf_counter()
    google = evaluate_google(cfg, data_dir, kinds) if "google2011" in parts else skipped
    timings["google2011"] = time.perf_counter() - t
    t = time.perf_counter()
    sim = evaluate_sim(cfg, kinds) if "sim" in parts else skipped
    timings["sim"] = time.perf_counter() - t
    t = time.perf_counter()
    bitbrains = evaluate_bitbrains(cfg, data_dir, kinds) if "bitbrains" in parts else skipped
    timings["bitbrains"] = time.perf_counter() - t
    timings["all"] = time.perf_counter() - started
    timings["cpu_all"] = time.process_time() - cpu_started
    timings["load_avg_1m_start"] = load_start
    timings["load_avg_1m_end"] = _load()
    config = asdict(cfg)
    config["kinds"] = list(kinds)
    return {
        "config": config,
        "data_dir": str(data_dir),
        "kinds": list(kinds),
        "google2011": google,
        "fleets": {"sim": sim, "bitbrains": bitbrains},
        "timings_s": timings,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced configuration (tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory holding google2011/ and bitbrains-rnd/ "
                             "(default: $PRESCALE_TRACE_DIR or ../shared/data)")
    parser.add_argument("--kinds", default=None,
                        help=f"comma-separated model kinds (default: all of {list(MODEL_KINDS)}"
                             " that are installed)")
    parser.add_argument("--parts", default="google2011,sim,bitbrains",
                        help="comma-separated parts to run (default: all three)")
    args = parser.parse_args(argv)
    kinds = default_kinds()
    if args.kinds:
        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        unknown = [k for k in kinds if k not in MODEL_KINDS]
        if unknown or not kinds:
            print(f"error: unknown model kinds {unknown}; known: {list(MODEL_KINDS)}",
                  file=sys.stderr)
            return 2
        if "lstm" in kinds and not torch_available():
            print("error: the lstm kind needs PyTorch: pip install 'prescale[lstm]'",
                  file=sys.stderr)
            return 2
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    bad = [p for p in parts if p not in ("google2011", "sim", "bitbrains")]
    if bad or not parts:
        print(f"error: unknown parts {bad}; known: google2011, sim, bitbrains", file=sys.stderr)
        return 2
    cfg = QUICK if args.quick else FULL
    data_dir = args.data_dir if args.data_dir is not None else find_trace_dir()
    report = run(cfg, data_dir, kinds, parts)
    if args.json:
        print(json.dumps(_clean(report), indent=1, allow_nan=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
