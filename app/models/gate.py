"""The promotion gate: a model becomes current only if it earns it (pure numpy).

``prescale train``, ``tune`` and ``retrain`` (and the live loop's scheduled retraining)
all end here. A candidate is judged on the validation split, on the *same rows* as
every reference it must beat:

1. **Something was learned.** The training split has positive windows and the
   validation split has some too, and the candidate's validation AP (average
   precision, :func:`app.models.metrics.pr_auc`) is a number. Otherwise nothing is
   promoted and ``learned`` is false: there was nothing to learn from, or nothing to
   judge by.
2. **It beats every reference** — the model serving now (re-scored on these rows, or on
   those of them it did not train on: rows it trained on would flatter it) and the trend
   heuristic: for each, the AP difference ``Δ = AP(candidate) −
   AP(reference)`` is at least ``margin`` *and* the lower end of its ``confidence``
   bootstrap interval is above 0. The interval comes from ``reps`` resamples of whole
   groups (containers, or jobs for a split by job) with replacement, every score
   evaluated on the same resample (paired); resamples without a positive are skipped.

A reference that cannot rank (the heuristic on windows too short for a trend) is
scored as a constant — its AP is then the base rate — and the gate says so. A reference
with no scores on these rows (a current model that cannot read this data) is compared by
its registered AP alone, without an interval, and the gate says so.

Worked example (margin 0.01): candidate AP 0.60, heuristic AP 0.45 with the 95 %
interval of Δ = 0.15 at [0.05, 0.26] → passes; current model AP 0.58, Δ = 0.02 at
[−0.03, 0.07] → fails ("the 95 % interval of the gain over the current model reaches
−0.030"): not promoted, and the reason names both numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.models.metrics import pr_auc

DEFAULT_MARGIN_AP = 0.01
DEFAULT_CONFIDENCE = 0.95
DEFAULT_REPS = 200


@dataclass(frozen=True)
class Reference:
    """What the candidate must beat: scores on the validation rows, or (``scores`` None)
    only a registered AP; ``rows`` (a bool mask over the validation rows): compare on
    those only (e.g. the rows the current model did not train on); ``note`` says
    anything the reader must know about it."""

    name: str
    scores: np.ndarray | None = None
    registered_ap: float | None = None
    note: str = ""
    rows: np.ndarray | None = None


@dataclass(frozen=True)
class Comparison:
    reference: str
    reference_ap: float | None
    gain_ap: float | None  # AP(candidate) − AP(reference)
    ci_low: float | None
    ci_high: float | None
    passed: bool
    reason: str
    note: str = ""


@dataclass(frozen=True)
class GateResult:
    promote: bool
    learned: bool
    reason: str
    candidate_ap: float | None
    base_rate: float | None
    n_val: int
    n_val_positive: int
    n_train_positive: int
    margin_ap: float
    confidence: float
    reps: int
    comparisons: list[Comparison] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        return clean(asdict(self))


def _fmt(v: float | None) -> str:
    return "unknown" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _group_rows(groups: np.ndarray) -> list[np.ndarray]:
    codes, uniq = pd.factorize(np.asarray(groups))
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniq)))]
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(uniq))]


def paired_ap_gains(y: np.ndarray, candidate: np.ndarray, references: Mapping[str, np.ndarray],
                    groups: np.ndarray, *, reps: int, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """Bootstrap draws of ``AP(candidate) − AP(ref)`` per reference (whole groups
    resampled with replacement; resamples without a positive skipped)."""
    rows = _group_rows(groups)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in references}
    for _ in range(reps):
        pick = rng.integers(0, len(rows), size=len(rows))
        idx = np.concatenate([rows[i] for i in pick])
        yy = y[idx]
        if not yy.any():
            continue
        ap_c = pr_auc(yy, candidate[idx])
        for k, s in references.items():
            draws[k].append(ap_c - pr_auc(yy, s[idx]))
    return {k: np.asarray(v) for k, v in draws.items()}


def judge(
    y_val: Any,
    candidate: Any,
    references: list[Reference],
    groups: Any,
    *,
    n_train_positive: int,
    margin_ap: float = DEFAULT_MARGIN_AP,
    confidence: float = DEFAULT_CONFIDENCE,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> GateResult:
    """Judge ``candidate`` (its validation scores) against ``references`` (module doc)."""
    y = np.asarray(y_val).astype(bool)
    p = np.asarray(candidate, dtype=np.float64)
    g = np.asarray(groups)
    if p.shape != y.shape or g.shape != y.shape:
        raise ValueError(f"candidate {p.shape} and groups {g.shape} must match y {y.shape}")
    if not (isinstance(margin_ap, int | float) and math.isfinite(margin_ap) and margin_ap >= 0):
        raise ValueError(f"margin_ap must be a finite number ≥ 0, got {margin_ap!r}")
    if not (isinstance(confidence, float) and 0.5 <= confidence < 1.0):
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    n_pos = int(y.sum())
    base = float(y.mean()) if y.size else math.nan
    common = dict(base_rate=base, n_val=int(y.size), n_val_positive=n_pos,
                  n_train_positive=int(n_train_positive), margin_ap=float(margin_ap),
                  confidence=float(confidence), reps=int(reps))
    if n_train_positive <= 0:
        return GateResult(False, False, "the training split has no positive window: "
                          "nothing to learn from", None, **common)
    if n_pos == 0:
        return GateResult(False, False, f"the validation split ({y.size} windows) has no "
                          "positive window: the model cannot be judged", None, **common)
    ap = pr_auc(y, p)
    if not math.isfinite(ap):
        return GateResult(False, False, "the validation AP is not a number", None, **common)
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    comparisons = []
    for r in references:
        if r.scores is not None:
            rows = np.ones(y.size, dtype=bool) if r.rows is None else np.asarray(r.rows, bool)
            ref_scores = np.asarray(r.scores, dtype=np.float64)[rows]
            yy, pp = y[rows], p[rows]
            ap_here = pr_auc(yy, pp)
            ref_ap = pr_auc(yy, ref_scores)
            gain = ap_here - ref_ap
            d = paired_ap_gains(yy, pp, {r.name: ref_scores}, g[rows], reps=reps,
                                seed=seed)[r.name]
            lo, hi = (np.percentile(d, [lo_q, hi_q]) if d.size else (math.nan, math.nan))
            lo, hi = float(lo), float(hi)
            where = ("" if r.rows is None else
                     f" on the {int(rows.sum())} validation windows it did not train on")
            if gain < margin_ap:
                passed, why = False, (f"AP gain over the {r.name} {gain:+.3f} is below the "
                                      f"margin {margin_ap:g}{where}")
            elif not lo > 0:
                passed, why = False, (f"the {confidence:.0%} interval of the AP gain over the "
                                      f"{r.name} reaches {_fmt(lo)}{where}")
            else:
                passed, why = True, (f"beats the {r.name} by {gain:+.3f} AP "
                                     f"({confidence:.0%} interval [{lo:.3f}, {hi:.3f}]){where}")
        else:
            ref_ap = r.registered_ap
            lo = hi = None
            if ref_ap is None or not math.isfinite(ref_ap):
                gain, passed = None, True
                why = f"the {r.name} has no AP to beat"
            else:
                gain = ap - ref_ap
                passed = gain >= margin_ap
                why = (f"{'beats' if passed else 'does not beat'} the {r.name}'s registered "
                       f"AP {ref_ap:.3f} by the margin {margin_ap:g} ({gain:+.3f}; its "
                       "scores on these rows are unknown, no interval)")
        comparisons.append(Comparison(r.name, ref_ap, gain, lo, hi, passed, why, r.note))
    failed = [c for c in comparisons if not c.passed]
    if failed:
        reason = "not promoted: " + "; ".join(c.reason for c in failed)
    else:
        reason = (f"promoted: validation AP {ap:.3f}; "
                  + "; ".join(c.reason for c in comparisons) if comparisons
                  else f"promoted: validation AP {ap:.3f}, nothing to beat")
    return GateResult(not failed, True, reason, ap, comparisons=comparisons, **common)
