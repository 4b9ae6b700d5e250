"""Offline training: history store (or a trace) → labelled feature matrix → model → gate
→ registry; this module fits one model and scores it.

The pipeline (no Ray needed, except the Tune search)::

    HistoryStore.read_samples / read_events, or a trace's frames   (app, [since, until))
      → app.learning.dataset.feature_matrix              (windows of W steps, every stride-th)
      → app.learning.labels.label / lead_time_s          (failure of `tier` within horizon_s)
      → time_split (gap = horizon) or stratified_group_split   (train / validation / test)
      → make_model(kind, **params).fit(train)        (app.models; peer groups, cross-fitted
                                                      calibration)
      → validate: scores and operating threshold on validation
      → the gate (app.models.gate): beat the current model and the heuristic on the
        validation rows, or nothing is promoted (nothing registered if nothing learned)
      → refit on train + validation; threshold from its out-of-fold probabilities
      → evaluate(test) → ModelRegistry.register(…, promote=gate passed)
      → a promoted model's threshold seeds the app's adaptive threshold

One module a step: :mod:`tuning.training_data` (:func:`build_training_data` returns a
:class:`TrainingData`); this one (:func:`train_model` fits one kind on its training split
and validates it; :func:`evaluate` scores a model on any split; :func:`refit_with_threshold`
refits on training + validation); :mod:`tuning.register` (:func:`register_model` judges
(gate), refits and registers; :func:`train_and_register`; :func:`evaluate_version` scores a
registered model on another trace); :mod:`tuning.search` (:func:`tune_and_register`: Ray
Tune over kinds and hyperparameters, :mod:`tuning.space`, :mod:`tuning.trainable`, ending
with :func:`register_model`). The CLI calls them with plain values (paths, ints, strings)
and a :class:`~tuning.register.Promotion` from the settings.

Metrics (:func:`evaluate`, all from :mod:`app.models.metrics`; ``nan`` when 0/0)
    ``pr_auc`` (average precision), ``roc_auc``, ``recall_at_fpr`` (best recall with a
    false-positive rate ≤ ``max_fpr``, default 5 %, counting only the positives whose
    lead time is ≥ ``min_lead_s``: a warning too late to act on is left out),
    ``precision`` / ``recall`` / ``alarms`` at ``threshold`` (the model's operating
    threshold), ``brier``, ``ece``, ``base_rate`` (the PR-AUC of a model that knows
    nothing), and the lead-time median / p10 / p90 of the true positives at
    ``threshold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prescale.app.models import FailureModel, make_model
from prescale.app.models import metrics as mx
from prescale.app.models.operating_threshold import OperatingThreshold, choose_threshold
from prescale.tuning.training_data import TrainingData

DEFAULT_MAX_FPR = 0.05


def check_fpr(max_fpr: Any, min_lead_s: Any) -> None:
    """``ValueError`` unless ``0 ≤ max_fpr ≤ 1`` and ``min_lead_s`` is finite and ≥ 0."""
    if not (isinstance(max_fpr, (int, float)) and 0.0 <= max_fpr <= 1.0):
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr!r}")
    if not (isinstance(min_lead_s, (int, float)) and math.isfinite(min_lead_s)
            and min_lead_s >= 0):
        raise ValueError(f"min_lead_s must be a finite number ≥ 0, got {min_lead_s!r}")


def model_params(data: TrainingData, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` completed with what the data implies (the heuristic's tier and horizon).

    The heuristic predicts the ``memory`` or ``cpu`` tier (``any``/``disk`` data:
    ``memory``) and looks ``horizon_s`` ahead; it keeps its own ``min_samples`` (5, as
    ``predictor.min_samples`` serves live), so on windows of fewer samples it cannot
    rank (it is not given a shorter trend than it would use live). Example: cpu data,
    horizon 60 → ``{"tier": "cpu", "horizon_s": 60.0}``.
    """
    out = dict(params or {})
    if kind == "heuristic":
        tier = data.params["tier"]
        out.setdefault("tier", tier if tier in ("memory", "cpu") else "memory")
        out.setdefault("horizon_s", float(data.params["horizon_s"]))
    return out


#: How the operating threshold is chosen (:mod:`app.models.operating_threshold`); the
#: CLI passes the settings' (``models.threshold_target``, ``thresholds.cost_*``).
DEFAULT_THRESHOLD_TARGET: dict[str, Any] = {
    "target": "balance", "cost_false_positive": 1.0, "cost_miss": 4.0, "min_precision": 0.5}


def evaluate(
    model: FailureModel,
    data: TrainingData,
    idx: np.ndarray,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    threshold: float = 0.5,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores of ``model`` on the rows ``idx`` of ``data`` (see the module doc).

    Keys: ``n``, ``n_positive``, ``base_rate``, ``pr_auc``, ``roc_auc``,
    ``recall_at_fpr``, ``fpr_threshold`` (the threshold that reaches it), ``precision``,
    ``recall`` and ``alarms`` at ``threshold`` (the model's operating threshold),
    ``brier``, ``ece`` (expected calibration error over 10 bins),
    ``lead_time_median_s``, ``lead_time_p10_s``, ``lead_time_p90_s``, and the
    ``max_fpr``, ``min_lead_s``, ``threshold`` used; for the heuristic also
    ``rankable`` (the share of rows with enough samples for a trend). ``nan`` where a
    metric is 0/0 (e.g. PR-AUC without positives). ``scores``: the model's
    probabilities for ``idx`` when already computed.
    """
    check_fpr(max_fpr, min_lead_s)
    idx = np.asarray(idx, dtype=np.int64)
    y = data.y[idx]
    nan = float("nan")
    out: dict[str, Any] = {"n": int(idx.size), "n_positive": int(y.sum())}
    if idx.size == 0:
        out.update(base_rate=nan, pr_auc=nan, roc_auc=nan, recall_at_fpr=nan,
                   fpr_threshold=nan, precision=nan, recall=nan, alarms=0, brier=nan,
                   ece=nan, lead_time_median_s=nan, lead_time_p10_s=nan,
                   lead_time_p90_s=nan)
    else:
        p = data.predict(model, idx) if scores is None else np.asarray(scores, np.float64)
        lead = data.lead_time_s[idx]
        op = mx.operating_point(y, p, max_fpr=max_fpr, lead_time_s=lead, min_lead_s=min_lead_s)
        lt = mx.lead_time_stats(y, p, lead, threshold=threshold)
        out.update(
            base_rate=mx.base_rate(y), pr_auc=mx.pr_auc(y, p), roc_auc=mx.roc_auc(y, p),
            recall_at_fpr=op.recall, fpr_threshold=op.threshold,
            precision=mx.precision(y, p, threshold=threshold),
            recall=mx.recall(y, p, threshold=threshold), alarms=int((p >= threshold).sum()),
            brier=mx.brier_score(y, p), ece=mx.reliability(y, p).ece,
            lead_time_median_s=lt.median_s, lead_time_p10_s=lt.p10_s, lead_time_p90_s=lt.p90_s,
        )
        rankable = getattr(model, "rankable", None)
        if rankable is not None and model.input == "features":
            out["rankable"] = float(np.mean(rankable(data.X[idx])))
    out.update(max_fpr=float(max_fpr), min_lead_s=float(min_lead_s), threshold=float(threshold))
    return out


def operating_threshold(model: FailureModel, data: TrainingData, idx: np.ndarray,
                        target: dict[str, Any] | None = None,
                        scores: np.ndarray | None = None) -> OperatingThreshold:
    """The operating threshold of ``model`` chosen on the rows ``idx`` (normally the
    validation split) for ``target`` (:data:`DEFAULT_THRESHOLD_TARGET` keys)."""
    t = {**DEFAULT_THRESHOLD_TARGET, **(target or {})}
    p = data.predict(model, idx) if scores is None else scores
    return choose_threshold(data.y[idx], p, target=t["target"],
                            cost_false_positive=float(t["cost_false_positive"]),
                            cost_miss=float(t["cost_miss"]),
                            min_precision=float(t["min_precision"]))


def fit_model(data: TrainingData, kind: str, params: dict[str, Any] | None = None,
              seed: int = 0, idx: np.ndarray | None = None) -> FailureModel:
    """``make_model(kind, **params)`` fitted on the rows ``idx`` (default: the training
    split) in time order, with their peer groups."""
    model = make_model(kind, **model_params(data, kind, params))
    idx = data.train_idx if idx is None else idx
    model.fit(data.inputs(model, idx), data.y[idx], seed=seed, ts_s=data.ts_s[idx],
              groups=data.groups(idx))
    return model


def train_model(
    data: TrainingData,
    kind: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    threshold_target: dict[str, Any] | None = None,
) -> tuple[FailureModel, dict[str, Any]]:
    """Fit ``make_model(kind, **params)`` on the training split; return it and its
    validation scores (:func:`evaluate`) at its operating threshold, chosen on the
    validation split (:func:`operating_threshold`; under ``"operating_threshold"``)."""
    check_fpr(max_fpr, min_lead_s)
    model = fit_model(data, kind, params, seed)
    return model, validate(model, data, max_fpr=max_fpr, min_lead_s=min_lead_s,
                           threshold_target=threshold_target)


def validate(model: FailureModel, data: TrainingData, *, max_fpr: float = DEFAULT_MAX_FPR,
             min_lead_s: float = 0.0, threshold_target: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """:func:`evaluate` on the validation split at the operating threshold chosen there."""
    idx = data.val_idx
    p = data.predict(model, idx) if idx.size else np.zeros(0)
    op = operating_threshold(model, data, idx, threshold_target, scores=p)
    val = evaluate(model, data, idx, max_fpr=max_fpr, min_lead_s=min_lead_s,
                   threshold=op.threshold, scores=p)
    val["operating_threshold"] = op.to_dict()
    return val


def refit_with_threshold(
    data: TrainingData, kind: str, params: dict[str, Any] | None, seed: int,
    val: dict[str, Any], threshold_target: dict[str, Any] | None = None,
) -> tuple[FailureModel, np.ndarray, dict[str, Any], float]:
    """``(model, fit rows, operating threshold dict, threshold)``: ``kind`` refitted on the
    training and validation rows, its threshold chosen on its own out-of-fold
    probabilities over them (cross-fitted calibration), else kept from ``val`` (the
    judged model's validation). What :func:`register_model` registers; the
    cross-validation (:mod:`tuning.cv`) and ``scripts/eval_models.py`` do the same."""
    fit_idx = np.r_[data.train_idx, data.val_idx]
    model = fit_model(data, kind, params, seed, idx=fit_idx)
    oof = model.take_out_of_fold() if hasattr(model, "take_out_of_fold") else None
    if oof is None:
        op = {**(val.get("operating_threshold") or {}),
              "chosen_on": "validation scores of the judged model"}
        return model, fit_idx, op, float(val["threshold"])
    t = {**DEFAULT_THRESHOLD_TARGET, **(threshold_target or {})}
    chosen = choose_threshold(
        data.y[fit_idx], oof, target=t["target"],
        cost_false_positive=float(t["cost_false_positive"]),
        cost_miss=float(t["cost_miss"]), min_precision=float(t["min_precision"]))
    op = {**chosen.to_dict(), "chosen_on": "out-of-fold probabilities of the registered "
          "model over its training and validation rows"}
    return model, fit_idx, op, chosen.threshold


def single_feature_baseline(data: TrainingData, choose_idx: np.ndarray,
                            score_idx: np.ndarray) -> dict[str, Any]:
    """The best single feature (and direction) chosen by AP on the rows ``choose_idx``,
    and its AP and ROC-AUC on ``score_idx``: what a learned model has to beat."""
    if choose_idx.size == 0 or not data.y[choose_idx].any() or score_idx.size == 0:
        return {"feature": None, "direction": None, "pr_auc": None, "roc_auc": None}
    rule = mx.best_single_feature_rule(data.X[choose_idx], data.y[choose_idx], data.features)
    sign = 1.0 if rule.direction == "high" else -1.0
    col = data.X[score_idx, rule.index]
    scores = np.where(np.isnan(col), -np.inf, sign * col)
    y = data.y[score_idx]
    return {"feature": rule.feature, "direction": rule.direction,
            "pr_auc": mx.pr_auc(y, scores), "roc_auc": mx.roc_auc(y, scores)}


def score(metrics: dict[str, Any] | None, prefix: str = "") -> tuple[float, float]:
    """``(PR-AUC, recall_at_fpr)`` of ``metrics`` for ranking; ``nan``/missing → −∞.

    ``score({"pr_auc": 0.4, "recall_at_fpr": None})`` → ``(0.4, -inf)``; with
    ``prefix="val_"`` the keys are ``val_pr_auc`` and ``val_recall_at_fpr``.
    """

    def get(key: str) -> float:
        v = (metrics or {}).get(prefix + key)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return -math.inf
        return v if math.isfinite(v) else -math.inf

    return get("pr_auc"), get("recall_at_fpr")
