"""Registration: judge a trained model with the gate, refit it, register it in the
model registry (promoted only if it beats the model serving now and the heuristic), and
seed the app's adaptive threshold; score a registered version on another trace.

Promotion (:func:`register_model`, :mod:`app.models.gate`)
    The candidate's validation scores against the model serving now, re-scored on the
    same validation rows (as the issue asks: the same held-out data; when those rows lie
    inside the current model's own training data this flatters the current model, so the
    gate errs towards keeping it), and against the trend heuristic: an AP gain of at least
    ``Promotion.margin_ap`` with the 95 % bootstrap interval above 0, for each.

App grouping
    ``app="web"`` trains on the samples and events of app ``web`` only and registers
    the model under ``web``; ``app=None`` trains one model on every app of the store
    and registers it under :data:`GLOBAL_APP` (``"_global"``), the fallback for
    apps without a model of their own.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prescale.app.core.features import F
from prescale.app.models import FailureModel, make_model, model_class
from prescale.app.models import metrics as mx
from prescale.app.models.gate import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGIN_AP,
    DEFAULT_REPS,
    Reference,
    judge,
)
from prescale.tuning.jsonsafe import json_number, jsonable
from prescale.tuning.progress import OnProgress, Stages, stage_of
from prescale.tuning.train import (
    DEFAULT_MAX_FPR,
    DEFAULT_THRESHOLD_TARGET,
    check_fpr,
    evaluate,
    fit_model,
    model_params,
    refit_with_threshold,
    single_feature_baseline,
    validate,
)
from prescale.tuning.training_data import TrainingData, build_training_data

if TYPE_CHECKING:
    from prescale.app.store.history import HistoryStore

#: Registry app name of the model trained on every app (``app=None``).
GLOBAL_APP = "_global"
#: A version trained on a split by group keeps the groups it trained on, up to this many.
MAX_TRAINED_GROUPS = 10_000
#: The stages :func:`train_and_register` reports: reading, features, labels and split
#: (:func:`build_training_data`), fitting, validating, then :func:`register_model`'s gate,
#: refit, test and registration.
TRAIN_STAGES = 8


def flat_metrics(val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """The registry's metrics: the test split's under their own names (``pr_auc``,
    ``recall_at_fpr``, ``brier``, …: the held-out numbers ``prescale models`` shows)
    and the validation split's as ``val_<name>`` (what promotion compares).
    JSON-safe: ``nan``/``inf`` → ``None``."""
    out = {k: json_number(v) for k, v in test.items()}
    out.update({f"val_{k}": json_number(v) for k, v in val.items()})
    return out


def open_registry(registry: Any) -> Any:
    if isinstance(registry, (str, os.PathLike)):
        from prescale.app.store.registry import ModelRegistry

        return ModelRegistry(os.fspath(registry))
    return registry


def registry_app(app: str | None) -> str:
    """The registry's app name: ``None`` (all apps) → ``"_global"``; ``""`` is refused."""
    if app == "":
        raise ValueError("app must not be empty: name an app, or None for every app (_global)")
    if app is not None and not isinstance(app, str):
        raise ValueError(f"app must be a str or None, got {app!r}")
    return GLOBAL_APP if app is None else app


@dataclass(frozen=True)
class Promotion:
    """How a trained model is judged and what promotion does (:mod:`app.models.gate`).

    ``margin_ap`` / ``confidence`` / ``reps``: the gate; ``threshold_target``: how the
    operating threshold is chosen on validation (:data:`DEFAULT_THRESHOLD_TARGET`);
    ``thresholds_path``: the threshold store whose app (or default, for ``_global``)
    threshold starts at a promoted model's operating threshold (``None``: left alone).
    """

    margin_ap: float = DEFAULT_MARGIN_AP
    confidence: float = DEFAULT_CONFIDENCE
    reps: int = DEFAULT_REPS
    threshold_target: dict[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_THRESHOLD_TARGET))
    thresholds_path: str | None = None
    threshold_config: Any = None

    @classmethod
    def from_settings(cls, s: Any, *, seed_thresholds: bool = True) -> Promotion:
        """From a :class:`app.settings.Settings` (the threshold store in its data dir)."""
        from prescale.app.core.thresholds import ThresholdConfig
        from prescale.app.store.thresholds_store import FILE

        m, t = s.models, s.thresholds
        return cls(
            margin_ap=m.gate_margin_ap,
            threshold_target={"target": m.threshold_target,
                              "cost_false_positive": t.cost_false_positive,
                              "cost_miss": t.cost_miss,
                              "min_precision": m.threshold_min_precision},
            thresholds_path=(os.fspath(Path(s.data_dir).resolve() / FILE)
                             if seed_thresholds else None),
            threshold_config=ThresholdConfig.from_settings(t),
        )


def _heuristic_reference(data: TrainingData, idx: np.ndarray) -> Reference:
    """The trend heuristic on the rows ``idx``; a note when it cannot rank them."""
    h = make_model("heuristic", **model_params(data, "heuristic", None))
    x = data.X[idx]
    ok = h.rankable(x)
    note = ""
    if idx.size and not ok.any():
        n = data.X[idx, F["n_samples"]]
        note = (f"the heuristic cannot rank these windows: all {idx.size} have at most "
                f"{int(np.nanmax(n)) if n.size else 0} samples, fewer than its "
                f"min_samples {h.params['min_samples']}; compared as a constant score "
                "(its AP is the base rate)")
    elif idx.size and not ok.all():
        note = (f"the heuristic ranks {int(ok.sum())} of {idx.size} windows (the others have "
                f"fewer than {h.params['min_samples']} samples and score 0)")
    return Reference("heuristic", scores=h.predict_proba(x), note=note)


def unseen_rows(current: Any, data: TrainingData, idx: np.ndarray) -> np.ndarray:
    """``bool`` mask over ``idx``: the rows the ``current`` version did not train on —
    windows ending after its training data (``training["until_s"]``), or of a group
    (job, app, container) it did not train on (``training["trained_groups"]``, kept for
    a split by group). Example: trained until t = 100 on jobs {a, b}; rows (t 50, job c),
    (t 150, job a), (t 50, job a) → True, True, False."""
    tr = current.training or {}
    ts = data.ts_s[idx]
    until = tr.get("until_s")
    out = np.zeros(idx.size, dtype=bool) if until is None else ts > float(until)
    groups = tr.get("trained_groups")
    key = tr.get("trained_group_key")
    if groups is not None and key in data.meta.columns:
        out |= ~np.isin(data.meta[key].to_numpy()[idx].astype(str), np.asarray(groups, str))
    return out


def _current_reference(registry: Any, current: Any, data: TrainingData,
                       idx: np.ndarray) -> Reference:
    """The model serving now, re-scored on the rows of ``idx`` it did not train on (rows
    it trained on would flatter it); when those hold no failure, its registered AP."""
    name = f"current model {current.version_id} ({current.kind})"
    registered = (current.metrics or {}).get("val_pr_auc", (current.metrics or {}).get("pr_auc"))
    unseen = unseen_rows(current, data, idx)
    if not data.y[idx][unseen].any():
        return Reference(name, registered_ap=registered, note=(
            f"its training data covers every validation window with a failure "
            f"({int(unseen.sum())} of {idx.size} windows are new to it, none failing): "
            "compared by its registered validation AP"))
    try:
        model = registry.load(current)
        if model.input == "window":
            x = data.windows[idx] if data.windows is not None else None
            if x is None:
                raise ValueError("it reads the raw window, which this data does not keep")
        else:
            missing = [f for f in current.features if f not in F]
            if missing:
                raise ValueError(f"it reads features this version does not have: {missing[:3]}")
            x = data.X[idx][:, [F[f] for f in current.features]]
        scores = model.predict_proba(x, groups=data.groups(idx))
        return Reference(name, scores=np.asarray(scores, dtype=np.float64),
                         rows=None if unseen.all() else unseen)
    except Exception as exc:  # noqa: BLE001 - any reason it cannot be re-scored is reported
        return Reference(name, registered_ap=registered,
                         note=f"not re-scored on this data: {type(exc).__name__}: {exc}")


def evaluate_version(registry: Any, app: str, source: Any, *, tier: str = "memory",
                     version_id: str | None = None, bins: int = 10) -> dict[str, Any]:
    """Score a registered model on another trace or history (``prescale models evaluate``).

    The version (``version_id``, else the current one of ``(app, tier)``) is loaded and
    every window of ``source`` (a history store or a trace, :func:`build_training_data`
    with ``split="none"`` and the version's own data parameters: horizon, window,
    stride) is scored: AP, ROC-AUC, base rate, precision / recall / alarms at the
    version's stored operating threshold, Brier, the reliability curve, the trend
    heuristic, and the best single feature chosen on these same windows (so an upper
    bound for any one feature). ``ValueError`` names a missing version or feature.
    """
    reg = open_registry(registry)
    version = reg.get(app, tier, version_id) if version_id else reg.current(app, tier)
    if version is None:
        raise ValueError(f"app {app!r} has no current model of tier {tier!r}; see `prescale "
                         "models`, or name a version")
    model = reg.load(version)
    p = dict(version.training.get("data") or {})
    data = build_training_data(
        source, tier=version.tier, horizon_s=float(p.get("horizon_s") or 30.0),
        window_steps=int(p.get("window_steps") or 60),
        recent_steps=int(p.get("recent_steps") or 10), stride=int(p.get("stride") or 1),
        min_present=int(p.get("min_present") or 2), split="none",
        include_windows=model.input == "window")
    missing = [f for f in version.features if f not in F]
    if missing and model.input == "features":
        raise ValueError(f"{version.app}/{version.version_id} reads features this version of "
                         f"prescale does not compute: {missing[:5]}")
    idx = data.test_idx
    x = (data.windows[idx] if model.input == "window"
         else data.X[idx][:, [F[f] for f in version.features]])
    scores = np.asarray(model.predict_proba(x, groups=data.groups(idx)), dtype=np.float64)
    thr = (version.metrics or {}).get("threshold")
    threshold = math.inf if thr is None else float(thr)
    out = evaluate(model, data, idx, threshold=threshold, scores=scores)
    rel = mx.reliability(data.y[idx], scores, bins=bins) if idx.size else None
    heur = make_model("heuristic", **model_params(data, "heuristic", None))
    hp = heur.predict_proba(data.X[idx])
    y = data.y[idx]
    return jsonable({
        "app": version.app, "tier": version.tier, "version_id": version.version_id,
        "kind": version.kind, "status": version.status, "threshold": thr,
        "windows": data.summary()["test"], "params": data.params, "metrics": out,
        "reliability": None if rel is None else {
            "edges": list(rel.edges), "count": list(rel.count),
            "mean_predicted": list(rel.mean_predicted), "observed": list(rel.observed),
            "ece": rel.ece},
        "heuristic": {"pr_auc": mx.pr_auc(y, hp) if y.size else None,
                      "roc_auc": mx.roc_auc(y, hp) if y.size else None,
                      "rankable": float(np.mean(heur.rankable(data.X[idx]))) if y.size
                      else None},
        "best_single_feature": single_feature_baseline(data, idx, idx),
    })


def nothing_to_learn(data: TrainingData) -> dict[str, Any] | None:
    """The "nothing learned" answer when the training or validation split has no
    positive window (no model is fitted or registered), else ``None``. The reason counts
    the failures so the user sees why, e.g. "0 positive windows of tier memory in
    400,759 training windows (0 failure events): nothing to learn from"."""
    tier = data.params["tier"]
    n_train, n_val = int(data.y[data.train_idx].sum()), int(data.y[data.val_idx].sum())
    if n_train and n_val:
        return None
    n_events = data.params.get("failure_events")
    if not n_train and n_events:
        step = data.params.get("median_step_s")
        why = (f"no positive window of tier {tier} among the {data.train_idx.size:,} training "
               f"windows ({int(data.y.sum()):,} in all {data.n:,}), though the data has "
               f"{n_events:,} failure events of that tier: none falls within the horizon "
               f"({data.params['horizon_s']:g} s) after a window's end"
               + (f" (samples are {step:g} s apart)" if step else "")
               + ": nothing to learn from; train with a longer horizon (--horizon, "
               "predictor.horizon_s)")
    elif not n_train:
        why = (f"no positive window of tier {tier} among the {data.train_idx.size:,} training "
               f"windows ({int(data.y.sum()):,} in all {data.n:,}): nothing to learn from. "
               "A trace without failure events has no labels: derive them with `prescale "
               "replay --derive-failures`, or collect failures first")
    else:
        why = (f"no positive window of tier {tier} among the {data.val_idx.size:,} validation "
               "windows: a model cannot be judged; use more history, a longer horizon or "
               "another split")
    return {"app": registry_app(data.params["app"]), "tier": tier, "kind": None,
            "version_id": None, "promoted": False, "status": "nothing learned",
            "learned": False, "reason": why, "current_version_id": None,
            "data": data.summary()}


def register_model(
    registry: Any,
    model: FailureModel,
    data: TrainingData,
    *,
    val: dict[str, Any],
    training: dict[str, Any],
    promote_if_better: bool = True,
    promotion: Promotion | None = None,
    val_scores: np.ndarray | None = None,
    refit: tuple[str, dict[str, Any] | None, int] | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Judge ``model`` (fitted on the training split) with the gate
    (:mod:`app.models.gate`) and register it, or what ``refit()`` returns.

    ``refit = (kind, params, seed)`` (when given) fits the same kind and parameters on
    the training *and* validation rows once the gate has judged: every labelled row is
    used (with few positives, the 20 % of validation rows are worth 0.1 AP on Google
    2011, docs/BENCHMARKS.md). The gate's numbers are those of the judged model on the
    held-out validation rows. The operating threshold is then chosen on the refitted
    model's own out-of-fold probabilities over all those rows (its cross-fitted
    calibration, :mod:`app.models.base`) — the scale it will serve on, from every
    positive — else on the judged model's validation scores. The test figures are
    those of the model registered.

    On the validation rows the candidate must beat the model serving now and the trend
    heuristic (AP, by ``promotion.margin_ap`` with the bootstrap interval above 0). When
    nothing could be learned (no positive in the training or validation split, or a
    validation AP that is not a number) nothing is registered (``status``
    ``"nothing learned"``, ``version_id`` None). Otherwise the model is registered with
    the gate's numbers (``training["gate"]``) and its operating threshold (metric
    ``threshold``, chosen on validation), as ``promoted`` (current) or ``candidate``;
    a promoted model's threshold seeds the app's adaptive threshold
    (``promotion.thresholds_path``).

    ``on_stage(label)`` (the progress hook, :mod:`tuning.progress`) is called as each
    of its stages starts: the gate, the refit (when asked for and learned), the test
    split and the registration.
    """
    from prescale.app.store.thresholds_store import seed_threshold

    stage = stage_of(on_stage)
    promotion = promotion or Promotion()
    app = registry_app(data.params["app"])
    tier = data.params["tier"]
    current = registry.current(app, tier)
    idx = data.val_idx
    against = ([current.version_id] if current is not None else []) + (
        ["the heuristic"] if model.kind != "heuristic" else [])
    stage(f"gate: {model.kind} against {' and '.join(against)}" if against
          else f"gate: {model.kind}, the first model (nothing to compare against)")
    p = data.predict(model, idx) if val_scores is None else val_scores
    refs = []
    if current is not None:
        refs.append(_current_reference(registry, current, data, idx))
    if model.kind != "heuristic":
        refs.append(_heuristic_reference(data, idx))
    result = judge(data.y[idx], p, refs, data.resample_groups(idx),
                   n_train_positive=int(data.y[data.train_idx].sum()),
                   margin_ap=promotion.margin_ap, confidence=promotion.confidence,
                   reps=promotion.reps, seed=int(data.params.get("split_seed") or 0))
    gate = result.to_dict()
    base = {
        "app": app, "tier": tier, "kind": model.kind,
        "current_version_id": None if current is None else current.version_id,
        "val": jsonable(val), "test": None, "data": data.summary(), "gate": gate,
        "learned": result.learned,
    }
    if not result.learned:
        return {**base, "version_id": None, "promoted": False, "status": "nothing learned",
                "reason": result.reason}
    promote = bool(promote_if_better and result.promote)
    why = result.reason
    if result.promote and not promote_if_better:
        why = f"{why}; but promote_if_better is off"
    fit_idx = data.train_idx
    op = val.get("operating_threshold") or {}
    threshold = float(val["threshold"])
    if refit is not None:
        stage(f"refitting {refit[0]} on {data.train_idx.size + idx.size:,} training and "
              "validation windows")
        model, fit_idx, op, threshold = refit_with_threshold(
            data, refit[0], refit[1], refit[2], val, promotion.threshold_target)
    stage(f"scoring {data.test_idx.size:,} test windows, registering")
    test = evaluate(model, data, data.test_idx, max_fpr=max_fpr, min_lead_s=min_lead_s,
                    threshold=threshold)
    base["test"] = jsonable(test)
    base["test_best_single_feature"] = jsonable(
        single_feature_baseline(data, fit_idx, data.test_idx))
    ts = data.ts_s[fit_idx]
    info = {
        **training,
        "fitted_on": ("training and validation rows (refitted after the gate judged the "
                      "model fitted on the training rows)" if refit is not None
                      else "training rows"),
        "since_s": float(ts.min()),
        "until_s": float(ts.max()),
        "rows": int(fit_idx.size),
        "positives": int(data.y[fit_idx].sum()),
        "kind": model.kind,
        "params": {k: json_number(v) for k, v in model.params.items()},
        "data_hash": data.data_hash,
        "data": data.params,
        "splits": data.summary(),
        "fit_info": {k: json_number(v) for k, v in model.fit_info.items()},
        "gate": gate,
        "operating_threshold": op,
    }
    if data.params.get("split") == "group":  # what a later gate must not re-score it on
        key = data.params.get("group_key") or "app"
        trained = np.unique(data.meta[key].to_numpy()[fit_idx].astype(str))
        if trained.size <= MAX_TRAINED_GROUPS:
            info.update(trained_group_key=key, trained_groups=trained.tolist())
    metrics = flat_metrics({k: v for k, v in val.items() if k != "operating_threshold"}, test)
    version = registry.register(
        model, app=app, tier=tier, features=list(data.features),
        metrics=metrics, training=info, promote=promote,
    )
    out = {**base, "version_id": version.version_id, "promoted": promote,
           "status": "promoted" if promote else "candidate", "reason": why}
    thr = op.get("threshold")
    if promote and promotion.thresholds_path and thr is not None:
        if tier in ("memory", "cpu"):
            seeded, msg = seed_threshold(promotion.thresholds_path, tier=tier, value=float(thr),
                                         app=None if app == GLOBAL_APP else app,
                                         config=promotion.threshold_config)
            out["threshold_seeded"] = msg
        else:
            out["threshold_seeded"] = (f"not seeded: the live thresholds have no tier "
                                       f"{tier!r} (memory and cpu only)")
    return out


def train_and_register(
    store: HistoryStore | str | os.PathLike[str],
    registry: Any,
    *,
    app: str | None = None,
    kind: str = "hist_gradient_boosting",
    tier: str = "memory",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    horizon_s: float = 30.0,
    window_steps: int = 60,
    recent_steps: int = 10,
    stride: int = 1,
    min_present: int = 2,
    since_s: float | None = None,
    until_s: float | None = None,
    split: str = "auto",
    group_key: str = "app",
    split_seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    promote_if_better: bool = True,
    data: TrainingData | None = None,
    promotion: Promotion | None = None,
    refit: bool = True,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Train one ``kind`` for ``app`` (``None``: all apps → ``"_global"``) and register it.

    ``store`` is a :class:`HistoryStore` or its path, or a trace
    (:func:`build_training_data`); ``registry`` a ``ModelRegistry`` or its root path.
    The model is fitted on the training split, its operating threshold chosen on
    validation (``promotion.threshold_target``), scored on validation and test at that
    threshold, and judged by the gate (:func:`register_model`): registered with its
    metrics (``val_*`` and the test split's), the gate's numbers, features, data hash
    and parameters, and promoted only if it beats the current model and the heuristic;
    otherwise it stays a candidate, or is not registered at all when nothing could be
    learned, and ``reason`` says why in words. ``data`` reuses a :class:`TrainingData`
    (its parameters win over the data arguments).

    ``on_progress(done, total, label)`` (:mod:`tuning.progress`) hears the stages as they
    start: reading, features, labels and split, fitting, validating, the gate, the
    refit, the test split and registration (:data:`TRAIN_STAGES` of them), then
    ``(total, total, outcome)``.

    Returns ``{"app", "tier", "kind", "version_id", "promoted", "status", "reason",
    "learned", "gate", "current_version_id", "val", "test", "data", "elapsed_s"}``,
    JSON-safe (``nan`` → ``None``): ``json.dumps(out, allow_nan=False)`` works.
    """
    t0 = time.perf_counter()
    registry_app(app)
    model_class(kind)  # unknown kind: fail before reading anything
    check_fpr(max_fpr, min_lead_s)
    reg = open_registry(registry)
    stage = Stages(on_progress, TRAIN_STAGES)
    if data is None:
        data = build_training_data(
            store, app=app, tier=tier, horizon_s=horizon_s, window_steps=window_steps,
            recent_steps=recent_steps, stride=stride, min_present=min_present,
            since_s=since_s, until_s=until_s, split=split, group_key=group_key,
            split_seed=split_seed, max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
            include_windows=model_class(kind).input == "window", on_stage=stage,
        )
    else:
        stage.done = 3
    promotion = promotion or Promotion()
    nothing = nothing_to_learn(data)
    if nothing is not None:
        stage.finish("nothing learned")
        return jsonable({**nothing, "kind": kind,
                         "elapsed_s": round(time.perf_counter() - t0, 3)})
    stage(f"fitting {kind} on {data.train_idx.size:,} training windows")
    model = fit_model(data, kind, params, seed)
    stage(f"validating on {data.val_idx.size:,} windows")
    val = validate(model, data, max_fpr=max_fpr, min_lead_s=min_lead_s,
                   threshold_target=promotion.threshold_target)
    out = register_model(
        reg, model, data, val=val,
        training={"method": "train", "seed": seed},
        promote_if_better=promote_if_better, promotion=promotion,
        refit=(kind, params, seed) if refit else None, max_fpr=max_fpr, min_lead_s=min_lead_s,
        on_stage=stage,
    )
    stage.finish(f"{out.get('version_id') or 'nothing registered'} {out['status']}")
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return jsonable(out)
