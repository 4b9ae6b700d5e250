"""When to retrain a failure model (pure: no clock, no I/O; the caller passes ``now_s``).

:class:`RetrainPolicy` says a model is *due* for retraining

1. when it was never trained (``last_trained_s is None``);
2. periodically: ``now_s − last_trained_s ≥ interval_s`` (weekly by default);
3. on drift: the live precision or recall, measured over the most recent
   ``window_n`` outcomes (alarms that were confirmed or not, failures that were
   caught or missed), is below its floor (``min_precision`` / ``min_recall``) —
   judged only when at least ``min_outcomes`` (default ``window_n``) outcomes
   back it up, so a handful of early outcomes never trigger a retrain. A live value
   that is ``nan`` (0/0: no alarm, or no failure, in the window) says nothing and
   never triggers one.

The checks run in that order and the first that fires is the reason. Worked
examples (``interval_s`` = 7 days = 604800 s, floors 0.5 / 0.5, ``window_n`` 50):

- never trained → ``(True, "never trained")``;
- trained at 0, now 604800, precision 0.9, recall 0.9, 60 outcomes → due:
  "periodic: 7.0 days since the last training (interval 7.0 days)";
- trained at 0, now 86400 (1 day), precision 0.3, recall 0.9, 60 outcomes → due:
  "drift: live precision 0.300 < floor 0.500 over the last 50 outcomes" (the
  live rates cover at most ``window_n`` outcomes);
- same with only 20 outcomes → not due: "not due: next periodic retrain in 6.0 days;
  too few outcomes to judge drift (20 < 50)";
- trained at 0, now 86400, precision 0.8, recall 0.7, 60 outcomes → not due:
  "not due: next periodic retrain in 6.0 days; live precision 0.800 ≥ 0.500, live
  recall 0.700 ≥ 0.500 over the last 50 outcomes".

:func:`live_rates` turns the recent outcomes into the live precision and recall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


def _real(name: str, v: object, *, allow_nan: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    f = float(v)
    if math.isnan(f) and allow_nan:
        return f
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return f


def _fraction(name: str, v: object) -> float:
    f = _real(name, v, allow_nan=True)
    if not math.isnan(f) and not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (or nan: unknown), got {v!r}")
    return f


def _count(name: str, v: object, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {v!r}")
    return v


@dataclass(frozen=True)
class RetrainPolicy:
    """Periodic and drift-triggered retraining (see the module doc).

    ``interval_s`` (> 0): retrain at least this often (default one week);
    ``min_precision`` / ``min_recall`` (in [0, 1]; 0 switches that check off): the
    live floors; ``window_n`` (≥ 1): how many recent outcomes the live rates cover;
    ``min_outcomes`` (1 … ``window_n``, default ``window_n``): outcomes needed to
    judge drift.
    """

    interval_s: float = WEEK_S
    min_precision: float = 0.5
    min_recall: float = 0.5
    window_n: int = 50
    min_outcomes: int | None = None

    def __post_init__(self) -> None:
        interval = _real("interval_s", self.interval_s)
        if interval <= 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s!r}")
        for name in ("min_precision", "min_recall"):
            v = _fraction(name, getattr(self, name))
            if math.isnan(v):
                raise ValueError(f"{name} must be in [0, 1], got nan")
        _count("window_n", self.window_n, 1)
        if self.min_outcomes is not None:
            _count("min_outcomes", self.min_outcomes, 1)
            if self.min_outcomes > self.window_n:
                raise ValueError(
                    f"min_outcomes ({self.min_outcomes}) cannot exceed window_n "
                    f"({self.window_n}): the live rates never cover more outcomes"
                )

    @property
    def outcomes_needed(self) -> int:
        return self.window_n if self.min_outcomes is None else self.min_outcomes

    def next_due_s(self, last_trained_s: float | None) -> float:
        """When the periodic retrain falls due (``-inf``: now, never trained).
        Example: trained at 1000 with the weekly interval → 605800."""
        if last_trained_s is None:
            return -math.inf
        return _real("last_trained_s", last_trained_s) + float(self.interval_s)

    def due(
        self,
        now_s: float,
        last_trained_s: float | None,
        live_precision: float,
        live_recall: float,
        n_outcomes: int,
    ) -> tuple[bool, str]:
        """``(due, reason)`` at ``now_s`` (module doc: the checks and worked examples).

        ``live_precision`` / ``live_recall`` over the last ``min(n_outcomes,
        window_n)`` outcomes (``nan`` = unknown); ``n_outcomes`` (≥ 0) how many
        outcomes they rest on. A ``last_trained_s`` after ``now_s`` is refused.
        """
        now = _real("now_s", now_s)
        prec = _fraction("live_precision", live_precision)
        rec = _fraction("live_recall", live_recall)
        n = _count("n_outcomes", n_outcomes, 0)
        if last_trained_s is None:
            return True, "never trained"
        last = _real("last_trained_s", last_trained_s)
        if last > now:
            raise ValueError(
                f"last_trained_s ({last_trained_s!r}) is after now_s ({now_s!r}): "
                "check the clocks"
            )
        age = now - last
        interval = float(self.interval_s)
        if age >= interval:
            return True, (
                f"periodic: {age / DAY_S:.1f} days since the last training "
                f"(interval {interval / DAY_S:.1f} days)"
            )
        judged = min(n, self.window_n)
        floors = (("precision", prec, float(self.min_precision)),
                  ("recall", rec, float(self.min_recall)))
        if n >= self.outcomes_needed:
            for name, value, floor in floors:
                if not math.isnan(value) and value < floor:
                    return True, (
                        f"drift: live {name} {value:.3f} < floor {floor:.3f} over the "
                        f"last {judged} outcomes"
                    )
        wait = f"next periodic retrain in {(interval - age) / DAY_S:.1f} days"
        if n < self.outcomes_needed:
            return False, (
                f"not due: {wait}; too few outcomes to judge drift "
                f"({n} < {self.outcomes_needed})"
            )
        held = ", ".join(
            f"live {name} unknown" if math.isnan(value)
            else f"live {name} {value:.3f} ≥ {floor:.3f}"
            for name, value, floor in floors
        )
        return False, f"not due: {wait}; {held} over the last {judged} outcomes"


def live_rates(
    alarmed: Sequence[bool], failed: Sequence[bool], window_n: int
) -> tuple[float, float, int]:
    """``(precision, recall, n)`` over the last ``window_n`` outcomes.

    One outcome per prediction that has one: ``alarmed[i]`` (the model said it would
    fail) and ``failed[i]`` (it did, within the horizon), oldest first. Precision =
    TP / (TP + FP), recall = TP / (TP + FN), ``nan`` when 0/0; ``n`` = outcomes used.

    Worked example: alarmed = [T, T, F, T, F], failed = [T, F, T, T, F], window 4 →
    the last 4: (T,F) FP, (F,T) FN, (T,T) TP, (F,F) TN → precision 1/2 = 0.5,
    recall 1/2 = 0.5, n = 4.
    """
    _count("window_n", window_n, 1)
    a, f = list(alarmed), list(failed)
    if len(a) != len(f):
        raise ValueError(f"alarmed ({len(a)}) and failed ({len(f)}) must have the same length")
    for name, seq in (("alarmed", a), ("failed", f)):
        bad = [x for x in seq if not isinstance(x, (bool, np.bool_))]
        if bad:
            raise ValueError(f"{name} must hold booleans, found {bad[0]!r}")
    a, f = [bool(x) for x in a[-window_n:]], [bool(x) for x in f[-window_n:]]
    tp = sum(1 for x, y in zip(a, f, strict=True) if x and y)
    fp = sum(1 for x, y in zip(a, f, strict=True) if x and not y)
    fn = sum(1 for x, y in zip(a, f, strict=True) if not x and y)
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    return precision, recall, len(a)
