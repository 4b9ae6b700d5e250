"""Part B of the failure-model evaluation: replay fleets (memory failures within H,
split by time 60/10/30, gap H).

(i) ``sim``: :func:`app.sim.fleet.simulate_fleet` (120 containers × 1440 steps of
60 s, seed 0: one day; H = 15 min, windows of 15 steps, ``recent_steps`` 5, a window
ending at every 2nd step). Its ``oom_kill`` events are the ground truth.
(ii) ``bitbrains``: the 50 Bitbrains VMs (300 s steps) with failures derived by
:func:`app.learning.limit_failures.derive_limit_failures` (the same derivation as
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
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.sample import EventKind
from prescale.app.learning.limit_failures import derive_limit_failures
from prescale.app.models import make_model
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
from prescale.app.telemetry.bitbrains import read_bitbrains
from prescale.app.telemetry.trace_data import BITBRAINS_RND_FILE, SAMPLE_COLUMNS, TraceData
from prescale.scripts.eval_models.config import EvalConfig, FleetConfig, model_params_for
from prescale.tuning.train import fit_model, model_params, refit_with_threshold, validate
from prescale.tuning.training_data import TrainingData, build_training_data


def _rule_score(X: np.ndarray, index: int, direction: str) -> np.ndarray:
    """The scores of a single-feature rule (nan never alarms), as in best_single_feature_rule."""
    sign = 1.0 if direction == "high" else -1.0
    col = X[:, index]
    return np.where(np.isnan(col), -np.inf, sign * col)




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

