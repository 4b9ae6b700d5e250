"""Evaluation metrics for failure predictions (numpy and scikit-learn, vectorised).

PR-AUC, ROC-AUC and the Brier score are scikit-learn's (``average_precision_score``,
``roc_auc_score``, ``brier_score_loss``); this module adds the input checks and the
edge cases scikit-learn has no number for (no positive, one class, no rows: ``nan``
here, where scikit-learn warns, raises or returns 0), and lets scores be ``±inf``.

Conventions: ``y`` is 0/1 (1 = the container failed within the horizon);
``p``/``scores`` are the model's outputs; a row *alarms* at threshold t when
``score ≥ t``. A metric that is 0/0 is ``nan`` (e.g. precision when nothing
alarms, recall when there is no positive): never a silent 0.

Worked example used below: ``y = [1, 0, 1, 0]``, ``p = [0.9, 0.8, 0.7, 0.1]``.

- :func:`precision` / :func:`recall` at t = 0.75: alarms on rows 0, 1 → TP 1,
  FP 1, FN 1 → precision 1/2 = 0.5, recall 1/2 = 0.5.
- :func:`pr_auc` (average precision: scikit-learn's ``average_precision_score``, the
  step-wise sum, not a trapezoid): ``AP = Σ_k (R_k − R_{k−1})·P_k`` over the distinct
  thresholds, highest first (tied scores are one threshold). Thresholds 0.9, 0.8,
  0.7, 0.1 → (P, R) = (1, .5), (.5, .5), (2/3, 1), (.5, 1) →
  AP = .5·1 + 0·.5 + .5·(2/3) + 0·.5 = 0.8333.
- :func:`recall_at_fpr` with budget b = 0.5 (N = 2 negatives): the lowest
  threshold whose false-positive rate FP/N ≤ b is 0.7 (FP 1, FPR .5) → recall 1.0;
  with b = 0 it is 0.9 → recall 0.5.
- :func:`brier_score`: mean((p − y)²) = (.01 + .64 + .09 + .01)/4 = 0.1875.
- :func:`base_rate`: mean(y) = 0.5 (the PR-AUC of a model that knows nothing).
- :func:`lead_time_stats`: true positives with lead times 10, 20, 30, 40, 50 s →
  median 30, p10 14, p90 46 (linear interpolation).
- :func:`roc_auc` (the Mann–Whitney statistic: the chance that a random positive
  scores above a random negative, ties count ½): positives 0.9, 0.7 against negatives
  0.8, 0.1 → pairs (0.9 > 0.8, 0.9 > 0.1, 0.7 < 0.8, 0.7 > 0.1) → 3/4 = 0.75.
- :func:`reliability` with 2 bins: p 0.9, 0.8, 0.7 fall in [0.5, 1] (mean 0.8, observed
  2/3), p 0.1 in [0, 0.5) (mean 0.1, observed 0); expected calibration error
  ``(3·|0.8 − 2/3| + 1·|0.1 − 0|)/4 = 0.125``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _labels(y: object) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {arr.shape}")
    values = arr.astype(np.float64)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("y must hold 0/1 labels only")
    return values.astype(bool)


def _scores(p: object, n: int, name: str = "scores") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be 1-D with one value per label ({n}), got {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contain nan")
    return arr


def _pair(y: object, p: object) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(y)
    return labels, _scores(p, labels.size)


def confusion(y: object, p: object, *, threshold: float = 0.5) -> tuple[int, int, int, int]:
    """``(TP, FP, FN, TN)`` with alarm = ``p ≥ threshold``."""
    labels, scores = _pair(y, p)
    alarm = scores >= threshold
    tp = int((alarm & labels).sum())
    fp = int((alarm & ~labels).sum())
    fn = int((~alarm & labels).sum())
    return tp, fp, fn, labels.size - tp - fp - fn


def precision(y: object, p: object, *, threshold: float = 0.5) -> float:
    """TP / (TP + FP); ``nan`` if nothing alarms. Example: module doc (0.5)."""
    tp, fp, _, _ = confusion(y, p, threshold=threshold)
    return tp / (tp + fp) if tp + fp else float("nan")


def recall(y: object, p: object, *, threshold: float = 0.5) -> float:
    """TP / (TP + FN); ``nan`` if there is no positive. Example: module doc (0.5)."""
    tp, _, fn, _ = confusion(y, p, threshold=threshold)
    return tp / (tp + fn) if tp + fn else float("nan")


def _curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, TP, FP)`` at each distinct score, highest first (alarm: score ≥ t)."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    hits = labels[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    last = np.ones(s.size, dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    return s[last], tp[last], fp[last]


def _ranked(s: np.ndarray) -> np.ndarray:
    """``s`` as scikit-learn takes it: unchanged when finite, else its dense ranks
    (scikit-learn refuses ``±inf``; the ranking metrics depend on the order only)."""
    return s if np.isfinite(s).all() else np.unique(s, return_inverse=True)[1].reshape(-1)


def pr_auc(y: object, scores: object) -> float:
    """Average precision (area under the precision–recall curve); ``nan`` without positives.

    ``sklearn.metrics.average_precision_score``. Scores may be any reals including
    ``±inf`` (only the order matters). Example in the module doc (0.8333).
    """
    labels, s = _pair(y, scores)
    if not labels.any():  # scikit-learn: a warning and 0.0
        return float("nan")
    return float(average_precision_score(labels, _ranked(s)))


average_precision = pr_auc


@dataclass(frozen=True)
class OperatingPoint:
    """The lowest threshold whose false-positive rate fits the budget, and its rates."""

    threshold: float  # inf: no threshold fits (never alarm)
    recall: float
    fpr: float


def operating_point(
    y: object,
    scores: object,
    *,
    max_fpr: float,
    lead_time_s: object = None,
    min_lead_s: float = 0.0,
) -> OperatingPoint:
    """Best recall with FP / N ≤ ``max_fpr`` (module doc: b = 0.5 → t 0.7, recall 1).

    With ``lead_time_s`` (one value per row, the time from the row to its failure)
    a positive row whose lead time is below ``min_lead_s`` (or unknown) is left out
    of the evaluation altogether: a warning that comes too late to act on neither
    counts as caught nor as missed. No negative row → FPR 0 everywhere; no positive
    row (left) → recall ``nan``.
    """
    labels, s = _pair(y, scores)
    if not (0.0 <= max_fpr <= 1.0):
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr!r}")
    if lead_time_s is not None:
        lead = np.asarray(lead_time_s, dtype=np.float64)
        if lead.shape != labels.shape:
            raise ValueError(
                f"lead_time_s must have one value per label ({labels.size}), got {lead.shape}"
            )
        keep = ~labels | (lead >= min_lead_s)  # nan lead → dropped positive
        labels, s = labels[keep], s[keep]
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    thresholds, tp, fp = _curve(labels, s)
    fpr = fp / n_neg if n_neg else np.zeros(fp.size)
    feasible = np.flatnonzero(fpr <= max_fpr)
    if feasible.size == 0:
        return OperatingPoint(float("inf"), 0.0 if n_pos else float("nan"), 0.0)
    k = feasible[-1]  # TP and FP only grow as the threshold falls: the last one wins
    rec = tp[k] / n_pos if n_pos else float("nan")
    return OperatingPoint(float(thresholds[k]), float(rec), float(fpr[k]))


def recall_at_fpr(
    y: object,
    scores: object,
    *,
    max_fpr: float,
    lead_time_s: object = None,
    min_lead_s: float = 0.0,
) -> float:
    """Recall of :func:`operating_point` (the best recall with FPR ≤ ``max_fpr``)."""
    return operating_point(
        y, scores, max_fpr=max_fpr, lead_time_s=lead_time_s, min_lead_s=min_lead_s
    ).recall


def brier_score(y: object, p: object) -> float:
    """mean((p − y)²), lower is better; ``nan`` for no rows. Example: module doc (0.1875).

    ``sklearn.metrics.brier_score_loss``, told both labels (so one class alone is fine).
    """
    labels, probs = _pair(y, p)
    if probs.size and ((probs < 0).any() or (probs > 1).any()):
        raise ValueError("probabilities must be in [0, 1]")
    if not labels.size:  # scikit-learn: an error
        return float("nan")
    return float(brier_score_loss(labels, probs, labels=[False, True]))


def base_rate(y: object) -> float:
    """mean(y): the fraction of positive rows; ``nan`` for no rows."""
    labels = _labels(y)
    return float(labels.mean()) if labels.size else float("nan")


def roc_auc(y: object, scores: object) -> float:
    """Area under the ROC curve (module doc: 0.75); ``nan`` without both classes.

    ``sklearn.metrics.roc_auc_score`` (tied scores count ½, as in the Mann–Whitney
    statistic). Scores may be any reals including ``±inf`` (only the order matters).
    """
    labels, s = _pair(y, scores)
    if labels.all() or not labels.any():  # scikit-learn: an error
        return float("nan")
    return float(roc_auc_score(labels, _ranked(s)))


@dataclass(frozen=True)
class Reliability:
    """A reliability curve: per probability bin, its rows, mean prediction and observed
    failure rate (``nan`` for an empty bin), and the expected calibration error."""

    edges: tuple[float, ...]
    count: tuple[int, ...]
    mean_predicted: tuple[float, ...]
    observed: tuple[float, ...]
    ece: float


def reliability(y: object, p: object, *, bins: int = 10) -> Reliability:
    """Equal-width bins over [0, 1] (the last one closed); module doc example (0.125)."""
    labels, probs = _pair(y, p)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an int ≥ 1, got {bins!r}")
    if probs.size and ((probs < 0).any() or (probs > 1).any()):
        raise ValueError("probabilities must be in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=probs, minlength=bins)
    sum_y = np.bincount(which, weights=labels.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        obs = np.where(count > 0, sum_y / count, np.nan)
    n = labels.size
    ece = float(np.nansum(count * np.abs(mean_p - obs)) / n) if n else float("nan")
    return Reliability(tuple(float(e) for e in edges), tuple(int(c) for c in count),
                       tuple(float(v) for v in mean_p), tuple(float(v) for v in obs), ece)


@dataclass(frozen=True)
class LeadTimeStats:
    """Lead times (s) of the true positives that have one."""

    n: int
    median_s: float
    p10_s: float
    p90_s: float


def lead_time_stats(
    y: object, p: object, lead_time_s: object, *, threshold: float = 0.5
) -> LeadTimeStats:
    """Median, 10th and 90th percentile of the lead times of the true positives.

    True positive: ``y = 1`` and ``p ≥ threshold``; rows without a finite lead time
    are skipped; with none left every statistic is ``nan``. Example: module doc.
    """
    labels, probs = _pair(y, p)
    lead = np.asarray(lead_time_s, dtype=np.float64)
    if lead.shape != labels.shape:
        raise ValueError(
            f"lead_time_s must have one value per label ({labels.size}), got {lead.shape}"
        )
    chosen = lead[labels & (probs >= threshold) & np.isfinite(lead)]
    if chosen.size == 0:
        nan = float("nan")
        return LeadTimeStats(0, nan, nan, nan)
    p10, p50, p90 = np.percentile(chosen, [10, 50, 90])
    return LeadTimeStats(int(chosen.size), float(p50), float(p10), float(p90))


@dataclass(frozen=True)
class FeatureRule:
    """A one-feature baseline: alarm when the feature is high (or low)."""

    feature: str
    index: int
    direction: str  # "high": larger values alarm; "low": smaller values alarm
    pr_auc: float


def best_single_feature_rule(
    X: object, y: object, feature_names: Sequence[str]
) -> FeatureRule:
    """The single feature and direction whose values, used as scores, give the best PR-AUC.

    Each column j is scored twice: ``x_j`` ("high") and ``−x_j`` ("low"); a ``nan``
    never alarms (it ranks below every number). Ties go to the first column, and
    "high" before "low". This is the baseline a learned model must beat.

    Worked example: columns a = [1, 2, 3, 4] and b = [4, 3, 2, 1] with
    y = [0, 0, 1, 1] → a "high" and b "low" both rank perfectly (PR-AUC 1.0): the
    rule is a, "high".
    """
    x = np.asarray(X, dtype=np.float64)
    labels = _labels(y)
    if x.ndim != 2 or x.shape[0] != labels.size:
        raise ValueError(f"X must be [n = {labels.size}, features], got shape {x.shape}")
    names = list(feature_names)
    if len(names) != x.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {x.shape[1]} columns")
    if x.shape[1] == 0:
        raise ValueError("X has no feature column")
    best: FeatureRule | None = None
    for j, name in enumerate(names):
        for direction, sign in (("high", 1.0), ("low", -1.0)):
            s = np.where(np.isnan(x[:, j]), -np.inf, sign * x[:, j])
            ap = pr_auc(labels, s)
            if best is None or (ap > best.pr_auc) or (np.isnan(best.pr_auc) and not np.isnan(ap)):
                best = FeatureRule(name, j, direction, ap)
    assert best is not None
    return best
