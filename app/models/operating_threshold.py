"""The operating threshold of a model, chosen on validation data (pure numpy).

A model outputs a probability; the loop acts when it reaches a threshold. 0.5 is the
wrong threshold for rare failures (a calibrated model with a 1 % base rate almost never
says 0.5), so each model gets its own, chosen on its validation split from the
precision–recall curve for a target stated in the settings (``models.threshold_target``):

``balance`` (default)
    the highest threshold t at which the false alarms' cost reaches the misses' cost,
    ``c_fp · FP(t) ≥ c_miss · FN(t)``, with the costs of the adaptive thresholds
    (``thresholds.cost_false_positive``, ``thresholds.cost_miss``): the point the live
    threshold rule settles at (:mod:`app.core.thresholds`: a false positive raises it by
    η·c_fp/c, a miss lowers it by η·c_miss/c), so the live threshold starts where it
    would end. With a miss 4 × as costly it accepts 4 false alarms per miss.
``cost``
    the threshold t that minimises ``c_fp · FP(t) + c_miss · FN(t)`` (the expected cost
    per window; for rare failures this alarms only where p ≥ c_fp / (c_fp + c_miss), so
    little). Ties go to the higher threshold (fewer alarms).
``precision``
    the lowest threshold whose precision is at least ``models.threshold_min_precision``
    (the most recall at that precision); none → ``inf`` (never alarm).

Alarm: ``p ≥ t``. The candidates are the distinct predicted values (and ``inf``).

Worked example: y = [1, 0, 1, 0, 0], p = [0.9, 0.8, 0.7, 0.3, 0.1], c_fp = 1, c_miss = 4:
cost: t = inf → 4·2 = 8; 0.9 → 4·1 = 4; 0.8 → 1 + 4 = 5; 0.7 → 1; 0.3 → 2; 0.1 → 3 →
t = 0.7 (precision 2/3, recall 1). Balance: (FP, 4·FN) = (0, 8), (0, 4), (1, 4), (1, 0)
→ the first with FP ≥ 4·FN is t = 0.7. With the precision target 0.9: only t = 0.9
reaches it → t = 0.9 (precision 1, recall 0.5). Where they differ: y = [1, 0, 0, 0, 0,
0, 1], p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3] → balance: (FP, 4·FN) = (0, 8), (0, 4),
(1, 4), (2, 4), (3, 4), (4, 4) → t = 0.5 (recall 0.5, precision 1/5); cost: 8, 4, 5, 6,
7, 8, 9, 5 → t = 0.9 (recall 0.5, precision 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TARGETS = ("balance", "cost", "precision")


@dataclass(frozen=True)
class OperatingThreshold:
    """The chosen threshold and what it gives on the data it was chosen on."""

    threshold: float  # alarm when p ≥ threshold; inf: never
    target: str  # e.g. "cost: a miss costs 4 × a false alarm", "precision ≥ 0.5"
    precision: float  # nan when nothing alarms
    recall: float  # nan without positives
    alarms: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in asdict(self).items()}


def _curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, TP, FP)`` at each distinct score, highest first, with ``inf``
    (nothing alarms) in front."""
    order = np.argsort(-p, kind="stable")
    s, hits = p[order], y[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    last = np.ones(s.size, dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    return np.r_[np.inf, s[last]], np.r_[0, tp[last]], np.r_[0, fp[last]]


def choose_threshold(
    y: Any,
    p: Any,
    *,
    target: str = "balance",
    cost_false_positive: float = 1.0,
    cost_miss: float = 4.0,
    min_precision: float = 0.5,
) -> OperatingThreshold:
    """The operating threshold for ``target`` on ``(y, p)`` (module doc, worked example)."""
    labels = np.asarray(y).astype(np.float64)
    if labels.ndim != 1 or not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y must be 1-D and hold 0/1 labels only")
    probs = np.asarray(p, dtype=np.float64)
    if probs.shape != labels.shape or np.isnan(probs).any():
        raise ValueError(f"p must have one number per label ({labels.size}), got {probs.shape}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")
    for name, c in (("cost_false_positive", cost_false_positive), ("cost_miss", cost_miss)):
        if not (isinstance(c, int | float) and math.isfinite(c) and c > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {c!r}")
    if not (isinstance(min_precision, int | float) and 0.0 <= min_precision <= 1.0):
        raise ValueError(f"min_precision must be in [0, 1], got {min_precision!r}")
    y_b = labels.astype(bool)
    n_pos = int(y_b.sum())
    thresholds, tp, fp = _curve(y_b, probs)
    ratio = f"a miss costs {cost_miss / cost_false_positive:g} × a false alarm"
    if target == "balance":
        reached = np.flatnonzero(cost_false_positive * fp >= cost_miss * (n_pos - tp))
        k = int(reached[0])  # the last threshold (alarm on everything) always reaches it
        what = f"balance: {ratio}"
    elif target == "cost":
        cost = cost_false_positive * fp + cost_miss * (n_pos - tp)
        k = int(np.argmin(cost))  # the first minimum: the highest threshold among ties
        what = f"cost: {ratio}"
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        ok = np.flatnonzero(prec >= min_precision)
        k = int(ok[-1]) if ok.size else 0
        what = f"precision ≥ {min_precision:g}"
    alarms = int(tp[k] + fp[k])
    return OperatingThreshold(
        threshold=float(thresholds[k]),
        target=what,
        precision=float(tp[k] / alarms) if alarms else math.nan,
        recall=float(tp[k] / n_pos) if n_pos else math.nan,
        alarms=alarms,
        n=int(labels.size),
    )
