"""Evaluate every failure model kind on real and simulated data (issue 4's acceptance).

Usage::

    .venv/bin/python -m scripts.eval_models [--quick] [--json] [--data-dir DIR]
        [--kinds random_forest,heuristic,...]

Prints Markdown tables for docs/BENCHMARKS.md (``--json``: one JSON object instead).
``--quick`` is a reduced configuration for the tests (well under 90 s). Exit codes:
0 ok, 2 bad arguments. A missing trace is not an error: its part says "skipped" and why.

Part A — Google 2011 (``google2011/`` of the shared data)
    Each task has one usage window (trace time 600–900 s), read by
    :func:`~app.telemetry.replay.read_google2011` into two samples (start, end). The
    features are :func:`~app.core.dataset.feature_matrix` over a window of 2 steps
    (``recent_steps = 2``, ``min_present = 2``): one row per task, at its window's end.
    Label: the task has a FAIL, EVICT or KILL event (``detail`` failed / evicted /
    killed; LOST and FINISH are not failures) strictly after its window's end and
    within the horizon H = *the rest of the trace*: from the earliest window end to the
    last such event in the file (54,928 s ≈ 15.3 h on the shared data; note the events
    file covers trace hours 0–5.7 and 14.1–15.5 only). Split by job
    (:func:`split_by_job`: ``group_split`` on ``app = "job-<id>"``, 70 % of the *jobs*
    train, 30 % test; one job holds 63 % of the tasks), for 10 seeds (the 67 positives
    come in 37 jobs, so one split says little): for each seed and model kind, the test
    PR-AUC; beside it the base rate (the expected PR-AUC of a random score) and the
    best single-feature rule (``best_single_feature_rule`` chosen on the train split,
    its PR-AUC on the test split); reported as mean ± std over the seeds, with the
    paired difference model − rule. The model seed is the split seed. The heuristic
    gets ``min_samples = 2`` (a task has two samples).

Part B — replay fleets (memory failures within H, ``time_split`` 70/30 with a gap of H)
    (i) ``sim``: :func:`app.sim.fleet.simulate_fleet` (120 containers × 1440 steps of
    60 s, seed 0: one day; H = 15 min, windows of 15 steps, ``recent_steps`` 5, a window
    ending at every 2nd step: ~86k windows). Its ``oom_kill`` events are the ground truth.
    (ii) ``bitbrains``: the 50 Bitbrains VMs (300 s steps) with failures derived by
    :func:`derive_bitbrains_failures` (a memory limit of 1.3 × the VM's median usage
    over its first 25 % of rows; every upward crossing is an OOM kill; see there);
    H = 30 min (6 steps), windows of 12 steps (1 h), ``recent_steps`` 4. Subsampling:
    a window ends at every 2nd row of each VM (``stride = 2``, ~130k windows instead
    of ~260k), to keep the run under 6 minutes on 2 cores; only windows that end while
    the VM runs under its limit are scored (one VM, vm-38, has no valid reading in its
    first quarter and is left out). Both strides keep the full run under 2 CPU-minutes
    (105 CPU-s measured; wall times are in the timings table).
    For each model kind (and the heuristic, whose horizon is H): precision and recall
    at the default threshold 0.5, PR-AUC, Brier score and the median lead time of the
    true positives (the time from the window's end, when the alarm would fire, to the
    failure); for the simulated fleet also the recall per failing scenario. Beside
    them the base rate and the best single-feature rule (chosen on train). At the
    failure level (:func:`failure_level`): how many of the test period's failures had
    at least one alarmed window, and the median *first* warning (the earliest alarm
    within H before each caught failure). Uncertainty: 95 % intervals of each PR-AUC
    and of its paired difference from the rule, from 200 bootstrap resamples of whole
    containers of the test period (:func:`container_bootstrap`).
    Every window starts being scored once it holds ``min_present = 5`` samples (the
    heuristic's ``min_samples``), for every model alike.

Model settings (never tuned on the test splits; the fleet sizes were cut for time
only): random forest 200 trees on Google and 100 on the fleets (``n_jobs = 2``),
gradient boosting 200 iterations, LSTM hidden 32 with 30 epochs on Google and 4 on the
fleets, all calibrated with the sigmoid on the newest 20 % of the training rows
(``app.models.base``); every other parameter is the model's default.

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

from app.core.dataset import feature_matrix, window_array
from app.core.features import FEATURES
from app.core.labels import group_split, label, lead_time_s, time_split
from app.core.sample import EventKind
from app.models import MODEL_KINDS, make_model, torch_available
from app.models.metrics import (
    base_rate,
    best_single_feature_rule,
    brier_score,
    confusion,
    lead_time_stats,
    pr_auc,
)
from app.sim.fleet import FAILING_SCENARIOS, simulate_fleet
from app.telemetry.replay import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    find_trace_dir,
    read_bitbrains,
    read_google2011,
)

GOOGLE_FAILURE_DETAILS = ("failed", "evicted", "killed")  # FAIL, EVICT, KILL
THRESHOLD = 0.5


@dataclass(frozen=True)
class FleetConfig:
    horizon_s: float
    window_steps: int
    recent_steps: int
    stride: int
    min_present: int = 5
    fractions: tuple[float, float] = (0.7, 0.3)


@dataclass(frozen=True)
class EvalConfig:
    quick: bool = False
    google_seeds: int = 10
    google_window_steps: int = 2
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
    google_seeds=3,
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


def model_params(kind: str, cfg: EvalConfig, *, horizon_s: float, min_samples: int,
                 lstm_epochs: int, rf_trees: int) -> dict[str, Any]:
    if kind == "random_forest":
        return {"n_estimators": int(rf_trees), "n_jobs": 2}
    if kind == "hist_gradient_boosting":
        return {"max_iter": cfg.hgb_iter}
    if kind == "heuristic":
        return {"horizon_s": float(horizon_s), "min_samples": int(min_samples)}
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


def mean_std(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and sample std (ddof 1) of the finite values, and how many there were."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}


def _rule_score(X: np.ndarray, index: int, direction: str) -> np.ndarray:
    """The scores of a single-feature rule (nan never alarms), as in best_single_feature_rule."""
    sign = 1.0 if direction == "high" else -1.0
    col = X[:, index]
    return np.where(np.isnan(col), -np.inf, sign * col)


def fill_empty_columns(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``X`` with every column that is all ``nan`` on the ``train`` rows set to 0 (a copy).

    Works around scikit-learn's ``HistGradientBoostingClassifier``, which fails to bin
    a column with no value at all ("window shape cannot be larger than input array
    shape"; e.g. ``cpu_slope_cores_per_s`` needs 3 samples and the Google windows have
    2). Such a column carries no information for any model, so nothing is lost.
    Example: columns [1, 2] and [nan, nan] → [1, 2] and [0, 0].
    """
    empty = np.isnan(X[train]).all(axis=0)
    if not empty.any():
        return X
    out = X.copy()
    out[:, empty] = 0.0
    return out


def _fit_predict(kind: str, params: dict[str, Any], X: np.ndarray, windows: np.ndarray | None,
                 y: np.ndarray, ts: np.ndarray, train: np.ndarray, test: np.ndarray,
                 seed: int) -> tuple[np.ndarray, dict[str, Any], float]:
    t0 = time.perf_counter()
    model = make_model(kind, **params)
    data = windows if model.input == "window" else X
    if data is None:
        raise ValueError(f"model kind {kind!r} needs raw windows")
    if kind == "hist_gradient_boosting":
        data = fill_empty_columns(data, train)
    model.fit(data[train], y[train], seed=seed, ts_s=ts[train])
    p = model.predict_proba(data[test])
    return p, dict(model.fit_info), time.perf_counter() - t0


# --------------------------------------------------------------------------- Google 2011


def google_labels(samples: pd.DataFrame, events: pd.DataFrame, window_steps: int
                  ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray, float]:
    """``(X, windows, meta, y, horizon_s)`` of the Google 2011 tasks (module doc, part A)."""
    df = samples.sort_values(["container", "ts_s"], kind="stable").reset_index(drop=True)
    X, meta = feature_matrix(df, window_steps, 2, min_present=window_steps)
    windows, meta_w = window_array(df, window_steps=window_steps, min_present=window_steps)
    if not meta["row"].equals(meta_w["row"]):
        raise AssertionError("feature and window rows differ")
    failures = events[events["detail"].isin(GOOGLE_FAILURE_DETAILS)]
    if failures.empty or meta.empty:
        return X, windows, meta, np.zeros(len(meta), dtype=np.int8), math.nan
    horizon_s = float(math.ceil(failures["ts_s"].max() - meta["ts_end_s"].min()))
    y = label(meta, failures, horizon_s=horizon_s, tier="any")
    return X, windows, meta, y, horizon_s


def split_by_job(meta: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` task positions: 70 % of the *jobs* train, 30 % test (seeded).

    ``group_split`` over a frame with one row per job (``app``), mapped back to the
    tasks: the fractions count jobs, not tasks. (One job holds 3871 of the 6153 tasks;
    with fractions of tasks, ``group_split`` always puts it in train and leaves the test
    set anywhere from 1 to ~1850 tasks, depending on where the shuffle puts it.)
    Example: jobs a (5 tasks), b (1), c (1), … → each job whole in one split.
    """
    jobs = pd.DataFrame({"app": pd.unique(meta["app"])})
    train_j, test_j = group_split(jobs, "app", (0.7, 0.3), seed=seed)
    in_test = meta["app"].isin(set(jobs["app"].to_numpy()[test_j])).to_numpy()
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def evaluate_google(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str]) -> dict[str, Any]:
    usage, events_path = data_dir / GOOGLE2011_USAGE_FILE, data_dir / GOOGLE2011_EVENTS_FILE
    if not (usage.is_file() and events_path.is_file()):
        return {"skipped": f"Google 2011 trace not found ({usage}, {events_path}); set "
                           "PRESCALE_TRACE_DIR or --data-dir"}
    t0 = time.perf_counter()
    trace = read_google2011(usage, events_path)
    X, windows, meta, y, horizon_s = google_labels(
        trace.samples, trace.events, cfg.google_window_steps)
    t_prep = time.perf_counter() - t0
    ts = meta["ts_end_s"].to_numpy(np.float64)
    per_seed = []
    fit_s: dict[str, float] = {k: 0.0 for k in kinds}
    for seed in range(cfg.google_seeds):
        train, test = split_by_job(meta, seed)
        rule = best_single_feature_rule(X[train], y[train], FEATURES)
        row: dict[str, Any] = {
            "seed": seed,
            "n_train": int(train.size),
            "n_train_positive": int(y[train].sum()),
            "n_test": int(test.size),
            "n_test_positive": int(y[test].sum()),
            "test_jobs": int(meta["app"].iloc[test].nunique()),
            "base_rate": base_rate(y[test]),
            "rule": {
                "feature": rule.feature,
                "direction": rule.direction,
                "pr_auc_train": rule.pr_auc,
                "pr_auc": pr_auc(y[test], _rule_score(X[test], rule.index, rule.direction)),
            },
            "models": {},
        }
        for kind in kinds:
            params = model_params(kind, cfg, horizon_s=horizon_s if np.isfinite(horizon_s)
                                  else 1.0, min_samples=2, lstm_epochs=cfg.lstm_epochs_google,
                                  rf_trees=cfg.rf_trees)
            p, info, secs = _fit_predict(kind, params, X, windows, y, ts, train, test, seed)
            fit_s[kind] += secs
            row["models"][kind] = {"pr_auc": pr_auc(y[test], p), "brier": brier_score(y[test], p),
                                   "calibration": info.get("calibration")}
        per_seed.append(row)

    def collect(get: Any) -> list[float]:
        return [get(r) for r in per_seed]

    summary: dict[str, Any] = {
        "base_rate": mean_std(collect(lambda r: r["base_rate"])),
        "rule": mean_std(collect(lambda r: r["rule"]["pr_auc"])),
        "rule_features": _counts(f"{r['rule']['feature']} ({r['rule']['direction']})"
                                 for r in per_seed),
        "models": {},
    }
    for kind in kinds:
        ap = collect(lambda r, k=kind: r["models"][k]["pr_auc"])
        diff = [a - r["rule"]["pr_auc"] for a, r in zip(ap, per_seed, strict=True)]
        lift = [a / r["base_rate"] for a, r in zip(ap, per_seed, strict=True)
                if r["base_rate"] and r["base_rate"] > 0]
        summary["models"][kind] = {
            "pr_auc": mean_std(ap),
            "minus_rule": mean_std(diff),
            "over_base_rate": mean_std(lift),
            "seeds_beating_rule": int(sum(d > 0 for d in diff if np.isfinite(d))),
            "seeds_beating_base_rate": int(sum(
                a > r["base_rate"] for a, r in zip(ap, per_seed, strict=True)
                if np.isfinite(a))),
        }
    return {
        "source": trace.source,
        "n_tasks": int(len(meta)),
        "n_jobs": int(meta["app"].nunique()),
        "n_positive": int(y.sum()),
        "positive_jobs": int(meta["app"][y.astype(bool)].nunique()),
        "horizon_s": horizon_s,
        "window_steps": cfg.google_window_steps,
        "seeds": cfg.google_seeds,
        "per_seed": per_seed,
        "summary": summary,
        "timings_s": {"load_features_labels": t_prep, **{f"fit_predict_{k}": v
                                                          for k, v in fit_s.items()}},
    }


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------- Bitbrains


def derive_bitbrains_failures(
    samples: pd.DataFrame, *, limit_multiple: float, first_fraction: float,
    min_first_readings: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Give Bitbrains VMs a memory limit and derive OOM kills from it (pure).

    Bitbrains has no failures, so they are derived the way a static limit would cause
    them:

    1. A ``memory_usage_bytes`` of 0 is missing (``nan``; also the working set): a
       running VM never uses 0 KB, it is off or not measured.
    2. Per VM (rows by time), the limit is ``L = limit_multiple × median`` of the valid
       readings among its first ``ceil(first_fraction × rows)`` rows; it replaces
       ``memory_limit_bytes``. A VM with fewer than ``min_first_readings`` valid
       readings there gets no limit and is left out (reported in ``info``).
    3. An ``oom_kill`` at every valid reading above L whose previous valid reading was
       ≤ L (or that is the VM's first valid reading): an upward crossing. The VM is
       then treated as restarted: its recorded usage carries on (what a restarted VM
       would have used is not in the trace), and the next kill needs the usage to come
       back under L and cross again. ``oom_kills_total`` counts the kills so far.
    4. ``running`` (returned column): the reading is valid and ≤ L. Only windows that
       end on a running row are scored (a VM above its limit is being killed).

    Returns ``(samples sorted by container and time, events, info)``.

    Worked example (one VM, ``limit_multiple = 1.2``, ``first_fraction = 0.5``):
    usage 100, 0, 140, 130, 170, 150, 120, 160 → 0 is missing; the first 4 rows hold
    100, 140, 130 → median 130 → L = 156; above L: 170 (row 4, previous valid 130 →
    a kill) and 160 (row 7, previous valid 120 → a kill); 150 is not above. So
    ``oom_kills_total`` = 0, 0, 0, 0, 1, 1, 1, 2 and running = T, F, T, T, F, T, T, F.
    """
    if not (math.isfinite(limit_multiple) and limit_multiple > 0):
        raise ValueError(f"limit_multiple must be a finite number > 0, got {limit_multiple!r}")
    if not (0 < first_fraction <= 1):
        raise ValueError(f"first_fraction must be in (0, 1], got {first_fraction!r}")
    df = samples.sort_values(["container", "ts_s"], kind="stable").reset_index(drop=True)
    usage = df["memory_usage_bytes"].to_numpy(np.float64).copy()
    usage[usage == 0] = np.nan
    df["memory_usage_bytes"] = usage
    ws = df["memory_working_set_bytes"].to_numpy(np.float64).copy()
    ws[ws == 0] = np.nan
    df["memory_working_set_bytes"] = ws

    codes, names = pd.factorize(df["container"], sort=False)
    n_rows = np.bincount(codes, minlength=len(names))
    start = np.r_[0, np.cumsum(n_rows)[:-1]]
    pos = np.arange(len(df)) - start[codes]
    first = pos < np.ceil(first_fraction * n_rows)[codes]
    valid = ~np.isnan(usage)
    first_vals = pd.Series(np.where(first & valid, usage, np.nan))
    med = first_vals.groupby(codes).median().to_numpy()
    n_first = pd.Series(first & valid).groupby(codes).sum().to_numpy()
    limit_vm = np.where(n_first >= min_first_readings, limit_multiple * med, np.nan)
    keep_vm = np.isfinite(limit_vm)
    limit = limit_vm[codes]

    above = valid & (usage > limit)
    # previous valid reading of the same VM: forward-fill "above" over the valid rows
    prev_above = pd.Series(np.where(valid, above, np.nan)).groupby(codes).shift(1)
    prev_above = prev_above.groupby(codes).ffill().to_numpy()
    kill = above & ~(prev_above == 1.0)  # nan (no previous valid reading) counts as ≤ L
    df["memory_limit_bytes"] = limit
    df["oom_kills_total"] = pd.Series(kill.astype(np.float64)).groupby(codes).cumsum().to_numpy()
    df["running"] = valid & (usage <= limit)
    kept = keep_vm[codes]
    out = df[kept].reset_index(drop=True)
    k = kill[kept]
    events = pd.DataFrame({
        "container": out["container"].to_numpy()[k],
        "app": out["app"].to_numpy()[k],
        "ts_s": out["ts_s"].to_numpy(np.float64)[k],
        "kind": EventKind.OOM_KILL.value,
        "detail": f"derived: usage above {limit_multiple:g} × first-part median",
    })
    info = {
        "vms": int(keep_vm.sum()),
        "vms_without_limit": [str(names[i]) for i in np.flatnonzero(~keep_vm)],
        "rows": int(len(out)),
        "missing_readings": int((~valid[kept]).sum()),
        "rows_above_limit": int(above[kept].sum()),
        "oom_kills": int(k.sum()),
        "limit_multiple": limit_multiple,
        "first_fraction": first_fraction,
    }
    return out, events, info


# --------------------------------------------------------------------------- fleets


def failure_level(y: np.ndarray, p: np.ndarray, lead_s: np.ndarray, containers: np.ndarray,
                  ts_end_s: np.ndarray, *, threshold: float = THRESHOLD) -> dict[str, Any]:
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
                        *, reps: int, seed: int = 0, reference: str = "rule"
                        ) -> dict[str, dict[str, float]]:
    """95 % intervals of each score's PR-AUC, and of its difference from ``reference``.

    Resamples whole containers with replacement (``reps`` times, seeded), so rows of
    one container, which are correlated, move together; every score is evaluated on
    the same resamples (paired differences). Interval = the 2.5th and 97.5th
    percentile. Resamples without a positive are skipped.
    """
    codes, uniq = pd.factorize(containers)
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniq)))]
    rows = [order[bounds[i]:bounds[i + 1]] for i in range(len(uniq))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in scores}
    diffs: dict[str, list[float]] = {k: [] for k in scores if k != reference}
    for _ in range(reps):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([rows[i] for i in pick])
        if not y[idx].any():
            continue
        aps = {k: pr_auc(y[idx], v[idx]) for k, v in scores.items()}
        for k, a in aps.items():
            draws[k].append(a)
            if k != reference:
                diffs[k].append(a - aps[reference])
    out: dict[str, dict[str, float]] = {}
    for k in scores:
        lo, hi = np.percentile(draws[k], [2.5, 97.5]) if draws[k] else (math.nan, math.nan)
        out[k] = {"pr_auc_lo": float(lo), "pr_auc_hi": float(hi)}
        if k != reference:
            dl, dh = np.percentile(diffs[k], [2.5, 97.5]) if diffs[k] else (math.nan, math.nan)
            out[k].update(minus_rule_lo=float(dl), minus_rule_hi=float(dh))
    return out


def evaluate_fleet(name: str, samples: pd.DataFrame, events: pd.DataFrame, fc: FleetConfig,
                   cfg: EvalConfig, kinds: Sequence[str], *, score_mask: np.ndarray | None = None,
                   per_app: Sequence[str] = ()) -> dict[str, Any]:
    """Features, labels, a time split and every model's test metrics (module doc, part B).

    ``samples`` must be sorted by container then time; ``score_mask`` (one bool per
    sample row) keeps only the windows that end on a True row.
    """
    t0 = time.perf_counter()
    X, meta = feature_matrix(samples, fc.window_steps, fc.recent_steps, fc.stride,
                             min_present=fc.min_present)
    windows = None
    if "lstm" in kinds:
        windows, meta_w = window_array(samples, window_steps=fc.window_steps, stride=fc.stride,
                                       min_present=fc.min_present)
        if not meta["row"].equals(meta_w["row"]):
            raise AssertionError("feature and window rows differ")
    if score_mask is not None:
        keep = np.asarray(score_mask, dtype=bool)[meta["row"].to_numpy()]
        X, meta = X[keep], meta[keep].reset_index(drop=True)
        if windows is not None:
            windows = windows[keep]
    y = label(meta, events, horizon_s=fc.horizon_s, tier="memory")
    lead = lead_time_s(meta, events, tier="memory", horizon_s=fc.horizon_s)
    ts = meta["ts_end_s"].to_numpy(np.float64)
    train, test = time_split(meta, fc.fractions, gap_s=fc.horizon_s)
    t_prep = time.perf_counter() - t0

    yt = y[test]
    rule = best_single_feature_rule(X[train], y[train], FEATURES)
    apps_test = meta["app"].to_numpy()[test]
    result: dict[str, Any] = {
        "fleet": name,
        "samples": int(len(samples)),
        "containers": int(samples["container"].nunique()),
        "failures": int((events["kind"] == EventKind.OOM_KILL.value).sum()),
        "horizon_s": fc.horizon_s,
        "window_steps": fc.window_steps,
        "recent_steps": fc.recent_steps,
        "stride": fc.stride,
        "windows": int(len(meta)),
        "n_train": int(train.size),
        "n_train_positive": int(y[train].sum()),
        "n_test": int(test.size),
        "n_test_positive": int(yt.sum()),
        "test_from_s": float(ts[test].min()) if test.size else math.nan,
        "base_rate": base_rate(yt),
        "rule": {
            "feature": rule.feature,
            "direction": rule.direction,
            "pr_auc_train": rule.pr_auc,
            "pr_auc": pr_auc(yt, _rule_score(X[test], rule.index, rule.direction)),
        },
        "test_positive_per_app": {a: int(yt[apps_test == a].sum()) for a in per_app},
        "models": {},
        "timings_s": {"features_labels_split": t_prep},
    }
    containers_test = meta["container"].to_numpy()[test]
    scores = {"rule": _rule_score(X[test], rule.index, rule.direction)}
    for kind in kinds:
        params = model_params(kind, cfg, horizon_s=fc.horizon_s, min_samples=fc.min_present,
                              lstm_epochs=cfg.lstm_epochs_fleet, rf_trees=cfg.rf_trees_fleet)
        p, info, secs = _fit_predict(kind, params, X, windows, y, ts, train, test, seed=0)
        scores[kind] = p
        fl = failure_level(yt, p, lead[test], containers_test, ts[test])
        tp, fp, fn, tn = confusion(yt, p, threshold=THRESHOLD)
        lt = lead_time_stats(yt, p, lead[test], threshold=THRESHOLD)
        alarm = p >= THRESHOLD
        result["models"][kind] = {
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan,
            "pr_auc": pr_auc(yt, p),
            "brier": brier_score(yt, p),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "median_lead_s": lt.median_s,
            "p10_lead_s": lt.p10_s,
            "p90_lead_s": lt.p90_s,
            "recall_per_app": {
                a: (int((alarm & (yt == 1) & (apps_test == a)).sum())
                    / int(((yt == 1) & (apps_test == a)).sum()))
                if ((yt == 1) & (apps_test == a)).any() else math.nan
                for a in per_app
            },
            "failures": fl["failures"],
            "failures_caught": fl["caught"],
            "failures_caught_fraction": fl["caught_fraction"],
            "median_first_warning_s": fl["median_first_warning_s"],
            "calibration": info.get("calibration"),
        }
        result["timings_s"][f"fit_predict_{kind}"] = secs
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
    samples = fleet.samples.sort_values(["container", "ts_s"], kind="stable")
    samples = samples.reset_index(drop=True)
    t_gen = time.perf_counter() - t0
    res = evaluate_fleet("sim", samples, fleet.events, cfg.sim, cfg, kinds,
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
    samples, events, info = derive_bitbrains_failures(
        raw, limit_multiple=cfg.bitbrains_limit_multiple,
        first_fraction=cfg.bitbrains_first_fraction)
    t_load = time.perf_counter() - t0
    running = samples["running"].to_numpy()
    res = evaluate_fleet("bitbrains", samples.drop(columns="running"), events, cfg.bitbrains, cfg,
                         kinds, score_mask=running)
    res["derivation"] = info
    res["timings_s"] = {"load_derive": t_load, **res["timings_s"]}
    return res


# --------------------------------------------------------------------------- report


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def _ms(d: dict[str, Any], digits: int = 3) -> str:
    if not d or d.get("n", 0) == 0:
        return "—"
    return f"{_f(d['mean'], digits)} ± {_f(d['std'], digits)}"


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
    s = g["summary"]
    lines = [
        "### Google 2011: usage snapshot → FAIL, EVICT or KILL later (split by job)",
        "",
        f"{g['n_tasks']} tasks of {g['n_jobs']} jobs; {g['n_positive']} positive tasks in "
        f"{g['positive_jobs']} jobs (base rate {g['n_positive'] / g['n_tasks']:.4f}); "
        f"horizon = rest of the trace ({g['horizon_s']:.0f} s); features over a "
        f"{g['window_steps']}-step window; split by job (70 % of the jobs train, 30 % test), "
        f"{g['seeds']} seeds "
        "(mean ± std over seeds; the model seed is the split seed).",
        "",
        "| score | test PR-AUC | ÷ base rate | − best rule (paired) | seeds > rule "
        "| seeds > base rate |",
        "|---|---|---|---|---|---|",
        f"| base rate (random score) | {_ms(s['base_rate'], 4)} | 1 | — | — | — |",
        f"| best single-feature rule (chosen on train) | {_ms(s['rule'])} | — | 0 | — | — |",
    ]
    for kind, m in s["models"].items():
        lines.append(
            f"| {kind} | {_ms(m['pr_auc'])} | {_ms(m['over_base_rate'], 1)} "
            f"| {_ms(m['minus_rule'])} | {m['seeds_beating_rule']}/{g['seeds']} "
            f"| {m['seeds_beating_base_rate']}/{g['seeds']} |")
    rules = ", ".join(f"{k} ×{v}" for k, v in s["rule_features"].items())
    lines += ["", f"Rules chosen on train: {rules}.", "",
              "| seed | test tasks | test positives | base rate | rule | "
              + " | ".join(s["models"]) + " |",
              "|---|---|---|---|---|" + "---|" * len(s["models"])]
    for r in g["per_seed"]:
        lines.append(
            f"| {r['seed']} | {r['n_test']} | {r['n_test_positive']} | {_f(r['base_rate'], 4)} "
            f"| {_f(r['rule']['pr_auc'])} | "
            + " | ".join(_f(r["models"][k]["pr_auc"]) for k in s["models"]) + " |")
    return "\n".join(lines) + "\n"


def render_fleets(fleets: dict[str, dict[str, Any]]) -> str:
    lines = [
        "### Replay fleets: memory failure within H (time split 70/30, gap H)",
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
                     f"OOM kills, {len(d['vms_without_limit'])} VM(s) without a limit left out")
        lines.append(
            f"- `{name}`: {f['containers']} containers, {f['samples']} samples, "
            f"{f['failures']} OOM kills{extra}; H = {f['horizon_s'] / 60:g} min, "
            f"W = {f['window_steps']} steps, stride {f['stride']}; {f['windows']} windows "
            f"scored, train {f['n_train']} ({f['n_train_positive']} positive), test "
            f"{f['n_test']} ({f['n_test_positive']} positive).")
    lines += [
        "",
        "| fleet | score | precision@0.5 | recall@0.5 | PR-AUC [95 % CI] | − rule [95 % CI] "
        "| Brier | median lead of TP windows (min) | failures caught | median first warning "
        "(min) | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in fleets.items():
        if "skipped" in f:
            continue
        lines.append(f"| {name} | base rate (random score) | — | — | {_f(f['base_rate'])} "
                     "| — | — | — | — | — | — | — | — |")
        r = f["rule"]
        lines.append(f"| {name} | rule: {r['feature']} ({r['direction']}) | — | — "
                     f"| {_f(r['pr_auc'])} {_ci(r, 'pr_auc')} | 0 | — | — | — | — | — | — | — |")
        for kind, m in f["models"].items():
            caught = f"{m['failures_caught']}/{m['failures']}"
            lines.append(
                f"| {name} | {kind} | {_f(m['precision'])} | {_f(m['recall'])} "
                f"| {_f(m['pr_auc'])} {_ci(m, 'pr_auc')} "
                f"| {_f(m['pr_auc'] - r['pr_auc'])} {_ci(m, 'minus_rule')} "
                f"| {_f(m['brier'], 4)} | {_minutes(m['median_lead_s'])} | {caught} "
                f"| {_minutes(m['median_first_warning_s'])} "
                f"| {m['tp']} | {m['fp']} | {m['fn']} |")
    sim = fleets.get("sim")
    if sim and "skipped" not in sim:
        apps = list(sim["test_positive_per_app"])
        lines += ["", "Recall@0.5 per failing scenario of the simulated fleet (test positives "
                  "in brackets):", "",
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


def run(cfg: EvalConfig, data_dir: Path, kinds: Sequence[str]) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    load_start = _load()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    google = evaluate_google(cfg, data_dir, kinds)
    timings["google2011"] = time.perf_counter() - t
    t = time.perf_counter()
    sim = evaluate_sim(cfg, kinds)
    timings["sim"] = time.perf_counter() - t
    t = time.perf_counter()
    bitbrains = evaluate_bitbrains(cfg, data_dir, kinds)
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
    cfg = QUICK if args.quick else FULL
    data_dir = args.data_dir if args.data_dir is not None else find_trace_dir()
    report = run(cfg, data_dir, kinds)
    if args.json:
        print(json.dumps(_clean(report), indent=1, allow_nan=False))
    else:
        print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
