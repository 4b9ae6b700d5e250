"""The retraining job: which apps are due, and retraining one through Ray Tune and the gate.

One path for ``prescale retrain`` (cron, a Ray job) and for the live loop's scheduled
retraining (:class:`actors.retrainer.Retrainer`, which runs :func:`retrain_app` as a
background Ray task):

- :func:`live_rates_by_app` — the live precision and recall of each app from its judged
  outcomes (a scale-up judged *needed* is an alarm that was right, a *false positive*
  one that was wrong, a *miss* a failure nobody alarmed for);
- :func:`due` — :class:`tuning.schedule.RetrainPolicy` over an app's last training
  (its current model's creation, or the last attempt that learned nothing) and its live
  rates: weekly, or early on drift;
- :func:`retrain_app` — :func:`tuning.search.tune_and_register` (Ray Tune over the model
  kinds, ``models.retrain_trials`` trials, at most one at a time so the loop keeps a
  core) for one app (``_global``: every app), promoted only through the gate, the
  adaptive threshold seeded from a promoted model. The trials run at a lower CPU
  priority (``nice`` + :data:`NICE`), so the control loop's tick does not wait for them.

Worked example of :func:`live_rates_by_app`: judgements needed, false_positive, miss,
needed for app ``web`` → alarmed T, T, F, T; failed T, F, T, T → precision 2/3, recall
2/3 over 4 outcomes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from prescale.tuning.schedule import RetrainPolicy, live_rates

#: What the trials' processes add to their nice value (lower CPU priority than the loop).
NICE = 10
#: An attempt that learned nothing is tried again after at most this long.
RETRY_NOTHING_LEARNED_S = 86_400.0


def policy_of(settings: Any) -> RetrainPolicy:
    m = settings.models
    return RetrainPolicy(interval_s=m.retrain_interval_s, min_precision=m.min_live_precision,
                         min_recall=m.min_live_recall, window_n=m.live_window_n)


def outcome_of(judgement: str) -> tuple[bool, bool] | None:
    """``(alarmed, failed)`` of a judged outcome; ``None`` for kinds that are neither."""
    return {"needed": (True, True), "false_positive": (True, False),
            "miss": (False, True)}.get(judgement)


def live_rates_by_app(records: Iterable[Mapping[str, Any]], tier: str, window_n: int
                      ) -> dict[str, tuple[float, float, int]]:
    """``app → (precision, recall, n)`` over each app's last ``window_n`` judged
    outcomes of ``tier`` (records with ``app``, ``tier`` and ``judgement``, oldest first;
    module doc example)."""
    per: dict[str, tuple[list[bool], list[bool]]] = {}
    for r in records:
        o = outcome_of(str(r.get("judgement")))
        if o is None or r.get("tier", tier) != tier:
            continue
        a, f = per.setdefault(str(r.get("app") or ""), ([], []))
        a.append(o[0])
        f.append(o[1])
    return {app: live_rates(a, f, window_n) for app, (a, f) in per.items()}


def due(policy: RetrainPolicy, now_s: float, last_trained_s: float | None,
        rates: tuple[float, float, int] | None) -> tuple[bool, str]:
    """Whether ``app`` is due (see :class:`RetrainPolicy`); no outcomes → rates unknown."""
    p, r, n = rates if rates is not None else (math.nan, math.nan, 0)
    return policy.due(now_s, last_trained_s, p, r, n)


def last_trained_s(registry: Any, app: str, tier: str,
                   last_attempt_s: float | None = None) -> float | None:
    """When ``app`` was last trained: its newest registered version (current or not: a
    candidate that lost to the current one was a training too), or the last attempt that
    registered nothing, whichever is later."""
    versions = [v for v in registry.list(app=app, tier=tier)]
    times = [v.created_s for v in versions]
    if last_attempt_s is not None:
        times.append(last_attempt_s)
    return max(times) if times else None


def retrain_app(settings: Any, app: str, *, trials: int | None = None,
                kinds: tuple[str, ...] | None = None, nice: int = NICE) -> dict[str, Any]:
    """Tune, judge and register a model for ``app`` (``_global``: every app) with the
    settings' data parameters; returns :func:`tuning.search.tune_and_register`'s answer
    (``status`` "promoted", "candidate" or "nothing learned", with the reason in words),
    or ``{"status": "error", "reason": …}`` when the data cannot be read."""
    from prescale.tuning.register import GLOBAL_APP, Promotion
    from prescale.tuning.search import DEFAULT_TUNE_KINDS, tune_and_register
    from prescale.tuning.trainable import lower_priority

    lower_priority(nice)
    s = settings
    try:
        return tune_and_register(
            s.history_uri(), str(s.registry_dir()), app=None if app == GLOBAL_APP else app,
            tier=s.models.tier, trials=trials or s.models.retrain_trials,
            kinds=kinds or DEFAULT_TUNE_KINDS, horizon_s=s.predictor.horizon_s,
            window_steps=s.loop.window_steps, recent_steps=s.predictor.recent_steps,
            storage_path=os.path.join(os.path.abspath(os.fspath(s.data_dir)), "tune"),
            max_concurrent_trials=1, promotion=Promotion.from_settings(s),
            trial_nice=nice)
    except ValueError as exc:
        return {"app": app, "tier": s.models.tier, "status": "error", "reason": str(exc),
                "promoted": False, "learned": False}
