"""Retraining scheduled by the live loop: the coordinator's helper (Ray task, no stall).

Every ``models.retrain_check_interval_s`` (on the tick's own clock; the first one interval
after the loop starts, when it has some history) the coordinator asks
:meth:`Retrainer.tick` whether a model is due (:mod:`tuning.retrain`): the global model
(``_global``, the fallback of every app) and every app that has a model of its own or
judged outcomes of its own, by :class:`tuning.schedule.RetrainPolicy` — weekly, or early
when the app's live precision or recall over its last ``models.live_window_n`` judged
outcomes drops below its floor (an app without a model of its own, served by
``_global``, gets one on drift only; ``_global`` is trained when it never was).

A due one is retrained by :func:`tuning.retrain.retrain_app` (Ray Tune and the
promotion gate) in a background Ray task, one at a time; the tick only checks, without
waiting, whether the task has finished (``ray.wait(timeout=0)``), so it never stalls,
and the trials run one at a time at a lower CPU priority so a core stays for the loop.
A finished task's answer — promoted, candidate (and why), nothing learned — is a
decision-log event; a retraining that learned nothing is tried again after at most a
day. The per-app outcomes and the last attempts are checkpointed with the coordinator
(:meth:`state` / :meth:`restore`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from prescale.app.loop import records as rec
from prescale.tuning.retrain import (
    RETRY_NOTHING_LEARNED_S,
    due,
    last_trained_s,
    outcome_of,
    policy_of,
)
from prescale.tuning.schedule import live_rates

GLOBAL_APP = "_global"


@ray.remote(num_cpus=0, max_retries=0)
def retrain_task(settings: Any, app: str) -> dict[str, Any]:
    """:func:`tuning.retrain.retrain_app` in a Ray worker (its trials are Tune's)."""
    from prescale.tuning.retrain import retrain_app

    return retrain_app(settings, app)


class Retrainer:
    """The live loop's retraining schedule (module doc)."""

    def __init__(self, settings: Any, registry: Any) -> None:
        self.s = settings
        self.registry = registry
        self.policy = policy_of(settings)
        self.tier = settings.models.tier
        self.outcomes: dict[str, deque[tuple[bool, bool]]] = {}
        self.last_attempt_s: dict[str, float] = {}
        self.retry_after_s: dict[str, float] = {}
        self.last_check_s = -math.inf
        self.running: dict[str, Any] | None = None  # app, started_s, why, ref
        self.last_result: dict[str, Any] | None = None

    # -- what the loop tells it ------------------------------------------------------
    def observe(self, judgements: list[dict[str, Any]]) -> None:
        """Judged outcomes of this tick (the coordinator's judgement records)."""
        n = self.s.models.live_window_n
        for j in judgements:
            o = outcome_of(str(j.get("judgement") or j.get("kind")))
            if o is None or j.get("tier", self.tier) != self.tier:
                continue
            self.outcomes.setdefault(str(j.get("app") or ""), deque(maxlen=n)).append(o)

    def tick(self, now_s: float) -> list[dict[str, Any]]:
        """Collect a finished retraining, start a due one; decision-log records."""
        records: list[dict[str, Any]] = []
        if self.running is not None:
            records += self._collect(now_s)
        if self.last_check_s == -math.inf:  # the first check one interval after start:
            self.last_check_s = now_s  # a loop that just started has little history yet
            return records
        if (self.running is None and self.s.models.retrain_live and self.registry is not None
                and now_s - self.last_check_s >= self.s.models.retrain_check_interval_s):
            self.last_check_s = now_s
            records += self._start_due(now_s)
        return records

    def status(self) -> dict[str, Any]:
        run = self.running
        return {"running": None if run is None else {k: run[k] for k in ("app", "why",
                                                                          "started_s")},
                "last": self.last_result}

    # -- checkpoint ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"outcomes": {a: [list(o) for o in d] for a, d in self.outcomes.items()},
                "last_attempt_s": dict(self.last_attempt_s),
                "retry_after_s": dict(self.retry_after_s), "last": self.last_result}

    def restore(self, d: dict[str, Any] | None) -> None:
        if not d:
            return
        n = self.s.models.live_window_n
        self.outcomes = {a: deque(((bool(x), bool(y)) for x, y in v), maxlen=n)
                         for a, v in (d.get("outcomes") or {}).items()}
        self.last_attempt_s = {a: float(t) for a, t in (d.get("last_attempt_s") or {}).items()}
        self.retry_after_s = {a: float(t) for a, t in (d.get("retry_after_s") or {}).items()}
        self.last_result = d.get("last")

    # -- internals ----------------------------------------------------------------------
    def candidates(self) -> list[str]:
        """``_global`` first, then every app with a model of its own or judged outcomes
        (an app with neither is served by ``_global``; its own outcomes are what would
        show that it needs more)."""
        own = {v.app for v in self.registry.list(tier=self.tier)} | set(self.outcomes)
        return [GLOBAL_APP] + sorted(a for a in own if a and a != GLOBAL_APP)

    def rates(self, app: str) -> tuple[float, float, int] | None:
        if app == GLOBAL_APP:
            pairs = [o for d in self.outcomes.values() for o in d]
        else:
            pairs = list(self.outcomes.get(app, ()))
        if not pairs:
            return None
        return live_rates([a for a, _ in pairs], [f for _, f in pairs],
                          self.s.models.live_window_n)

    def _start_due(self, now_s: float) -> list[dict[str, Any]]:
        for app in self.candidates():
            if now_s < self.retry_after_s.get(app, -math.inf):
                continue
            last = last_trained_s(self.registry, app, self.tier, self.last_attempt_s.get(app))
            if last is None and app != GLOBAL_APP:
                last = now_s  # an app served by _global gets its own model on drift only
            if last is not None and last > now_s:
                last = now_s  # a clock that went back: judge from now
            is_due, why = due(self.policy, now_s, last, self.rates(app))
            if not is_due:
                continue
            here = ray.get_runtime_context().get_node_id()
            ref = retrain_task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)
            ).remote(self.s, app)
            self.running = {"app": app, "why": why, "started_s": now_s, "ref": ref}
            self.last_attempt_s[app] = now_s
            return [self._record(now_s, app, "retrain_started", f"retraining {app}: {why}")]
        return []

    def _collect(self, now_s: float) -> list[dict[str, Any]]:
        run = self.running
        assert run is not None
        ready, _ = ray.wait([run["ref"]], timeout=0)
        if not ready:
            return []
        self.running = None
        app = run["app"]
        try:
            res = ray.get(ready[0])
        except RayError as exc:
            res = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
        status = res.get("status")
        if status in ("nothing learned", "error"):
            self.retry_after_s[app] = now_s + min(RETRY_NOTHING_LEARNED_S,
                                                  self.s.models.retrain_interval_s)
        self.last_result = {"app": app, "why": run["why"], "started_s": run["started_s"],
                            "finished_s": now_s, "status": status,
                            "version_id": res.get("version_id"), "reason": res.get("reason"),
                            "gate": res.get("gate")}
        what = (f"{res.get('version_id')} {status}" if res.get("version_id") else status)
        return [self._record(now_s, app, "retrain_done",
                             f"retrained {app} ({run['why']}): {what}: {res.get('reason')}")]

    @staticmethod
    def _record(now_s: float, app: str, event: str, reason: str) -> dict[str, Any]:
        return rec.to_dict(rec.EventRecord(now_s, "_models", app, event, reason))
