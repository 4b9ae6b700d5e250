"""CoordinatorActor: one tick of the control loop.

``run_once()`` reads as the seed loop: collect → featurise → predict → decide →
arbitrate (pool) → log (durably, before acting) → apply → record. State that must
survive a restart (policy cooldowns, pending lead-time checks, last actions, tick
count) is checkpointed to ``<data_dir>/coordinator.json`` at the end of each tick.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors import names
from actors.metrics import CoordinatorMetrics
from app.core.actions import (
    ActionKind,
    ActionResult,
    Decision,
    ResultStatus,
    ScalingAction,
    Verdict,
)
from app.core.cost import SavingsLedger, accumulate_savings
from app.core.features import F, compute_features
from app.core.outcome_tracker import OutcomeConfig, OutcomeTracker, failure_tier
from app.core.outcomes import LeadTimeTracker
from app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide
from app.core.predictor import Prediction, TrendExhaustionPredictor
from app.core.sample import Tier
from app.core.thresholds import ThresholdConfig
from app.settings import Mode, Settings
from app.store import jsonfile
from app.store.decision_log import DecisionLog
from app.store.history import HistoryStore
from app.store.registry import ModelCache, ModelRegistry
from app.store.thresholds_store import FILE as THRESHOLDS_FILE
from app.store.thresholds_store import ThresholdStore

CHECKPOINT = "coordinator.json"
STATUS = "status.json"
MAINTENANCE_S = 600.0


def _decision_record(d: Decision, app: str) -> dict[str, Any]:
    return {
        "kind": "decision",
        "ts_s": d.now_s,
        "container": d.container,
        "app": app,
        "tier": d.tier.value,
        "p_fail": d.p_fail,
        "threshold": d.threshold,
        "time_to_limit_s": d.time_to_limit_s,
        "forecast": d.forecast,
        "old_limit": d.limit,
        "new_limit": d.action.new_limit if d.action else None,
        "action_id": d.action.action_id if d.action else None,
        "reason": d.reason,
    }


def _action_record(
    a: ScalingAction, r: ActionResult, verdict_reason: str, app: str,
    verdict: Verdict | None = None,
) -> dict[str, Any]:
    return {
        "kind": "action",
        "ts_s": a.now_s,
        "action_id": a.action_id,
        "action_kind": a.kind.value,
        "verdict": verdict.value if verdict is not None else None,
        "container": a.container,
        "app": app,
        "tier": a.tier.value,
        "p_fail": a.p_fail,
        "threshold": a.threshold,
        "time_to_limit_s": a.time_to_limit_s,
        "old_limit": r.old_limit,
        "requested_limit": a.new_limit,
        "new_limit": r.new_limit,
        "result": r.status.value,
        "reason": f"{a.reason}; {verdict_reason}; {r.reason}",
    }


class Coordinator:
    def __init__(self, settings: Settings, run_id: str) -> None:
        self.s = settings
        self.run_id = run_id
        self.data_dir = Path(settings.data_dir)
        self.store = HistoryStore(settings.history_uri(),
                                  flush_interval_s=settings.history.flush_interval_s)
        self.log = DecisionLog(self.store, run_id, settings.mode.value)
        self.last_maintenance_s = time.time()
        p = settings.predictor
        self.predictor = TrendExhaustionPredictor(
            horizon_s=p.horizon_s,
            min_samples=p.min_samples,
            sigma_floor_fraction=p.sigma_floor_fraction,
            cpu_busy_fraction=p.cpu_busy_fraction,
        )
        self.tracker = LeadTimeTracker(expire_after_s=4 * p.horizon_s)
        t = settings.thresholds
        self.thresholds = ThresholdStore(self.data_dir / THRESHOLDS_FILE,
                                         ThresholdConfig.from_settings(t))
        self.outcomes = OutcomeTracker(OutcomeConfig(
            horizon_s=t.outcome_horizon_s or p.horizon_s, cpu_reach_fraction=p.cpu_busy_fraction))
        self.registry = ModelRegistry(settings.registry_dir()) if settings.models.enabled else None
        self.models = ModelCache()
        self.policy_state = PolicyState()
        self.policy_config = PolicyConfig.from_settings(settings.policy, settings.cost)
        self.savings = SavingsLedger()
        self.last_action: dict[str, dict[str, Any]] = {}
        self.tick = 0
        self.model_of: dict[str, str] = {}
        self.judgements: list[dict[str, Any]] = []  # this tick's, for the metrics
        self.metrics = CoordinatorMetrics(max_containers=1000, window_s=3600.0)
        self._restore()

    # -- persistence -------------------------------------------------------------
    def _restore(self) -> None:
        saved = jsonfile.read(self.data_dir / CHECKPOINT)
        if not saved or saved.get("run_id") != self.run_id:
            return
        self.policy_state = PolicyState.from_dict(saved["policy_state"])
        if saved.get("savings"):
            self.savings = SavingsLedger.from_dict(saved["savings"])
        self.tracker.load(saved["pending"])
        self.last_action = saved["last_action"]
        self.tick = saved["tick"]
        if saved.get("outcomes"):
            self.outcomes = OutcomeTracker.from_dict(saved["outcomes"], self.outcomes.config)
        if saved.get("metrics"):
            self.metrics.book.restore(saved["metrics"])

    def _checkpoint(self) -> None:
        jsonfile.write_atomic(
            self.data_dir / CHECKPOINT,
            {
                "run_id": self.run_id,
                "tick": self.tick,
                "policy_state": self.policy_state.to_dict(),
                "savings": self.savings.to_dict(),
                "pending": self.tracker.to_list(),
                "last_action": self.last_action,
                "outcomes": self.outcomes.to_dict(),
                "metrics": self.metrics.book.state(),
            },
        )

    # -- the tick ------------------------------------------------------------------
    def run_once(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        monitor = ray.get_actor(names.MONITOR, namespace=self.s.ray.namespace)
        pool = ray.get_actor(names.POOL, namespace=self.s.ray.namespace)

        batch = ray.get(monitor.collect.remote())  # collect
        now_s, containers, window = batch["now_s"], batch["names"], batch["window"]
        apps = dict(zip(containers, batch["apps"], strict=True))
        records = self._event_records(batch["events"])
        feats = compute_features(window, recent_steps=self.s.predictor.recent_steps)
        pred = self.predictor.predict(feats)  # predict
        records += self._apply_models(now_s, containers, batch["apps"], feats, window, pred)
        thresholds = self._thresholds(containers, apps)
        records += self._judge(now_s, containers, apps, feats, pred, thresholds, batch["events"])
        pool.observe.remote(self._limits(containers, pred), now_s)

        tick_records: list[dict[str, Any]] = []  # everything logged this tick (metrics)
        decisions: list[Decision] = []
        results: list[ActionResult] = []
        if self.s.mode is not Mode.OFF:
            usage_now = {Tier.MEMORY: feats[:, F["memory_usage_last_bytes"]],
                         Tier.CPU: feats[:, F["cpu_usage_cores_last"]]}
            decisions, self.policy_state = decide(  # decide
                PolicyInput(now_s, containers, pred, thresholds[Tier.MEMORY],
                            apps=batch["apps"], tier_thresholds=thresholds, usage=usage_now),
                self.policy_config, self.policy_state,
            )
            asks = [replace(d.action, app=apps.get(d.container, ""))
                    for d in decisions if d.action is not None]
            commit = self.s.mode is Mode.AUTO
            arb = ray.get(pool.arbitrate.remote(asks, [], now_s, commit)) if asks else None
            records += [_decision_record(d, apps.get(d.container, "")) for d in decisions
                        if d.action is not None or d.p_fail >= d.threshold]
            tick_records += records
            self.log.append(records)  # durable before acting
            records = []
            if arb is not None:
                results, records = self._act(asks, arb, commit, monitor, pool, apps)  # apply
        tick_records += records
        self.log.append(records)  # record
        self.savings = accumulate_savings(
            self.savings, now_s, [r for r in results if r.status is ResultStatus.APPLIED],
            live=containers)
        self.tick += 1
        self._checkpoint()
        self._maintain_history(now_s)
        tick_s = time.perf_counter() - t0
        rows = self._write_status(now_s, containers, feats, pred, batch, tick_s)
        summary = {
            "tick": self.tick,
            "now_s": now_s,
            "containers": len(containers),
            "decisions": sum(1 for d in decisions if d.action is not None),
            "actions": [r.status.value for r in results],
            "errors": batch["errors"],
            "tick_s": tick_s,
        }
        try:  # metrics never stop the loop
            self.metrics.record_tick(
                {**summary, "dropped": batch["dropped"],
                 "thresholds": {apps.get(n) or n: {t.value: float(v[i])
                                                   for t, v in thresholds.items()}
                                for i, n in enumerate(containers)}},
                rows, self.judgements, tick_records)
        except ValueError as exc:
            self.log.append([{"kind": "event", "ts_s": now_s, "container": "_metrics",
                              "app": "", "event": "metrics_error", "reason": str(exc)}])
        return summary

    @staticmethod
    def _event_records(events) -> list[dict[str, Any]]:
        return [{"kind": "event", "ts_s": e.ts_s, "container": e.container, "app": e.app,
                 "event": e.kind.value, "reason": e.detail} for e in events]

    def _tenant(self, container: str, app: str) -> str:
        t = self.s.contention.tenants
        return t.get(container) or t.get(app) or ""

    def _thresholds(self, containers: list[str], apps: dict[str, str]) -> dict[Tier, np.ndarray]:
        """Per tier, the p_fail threshold of each container: a fixed per-container override
        (``thresholds.per_app``), else the (learned) threshold of its app, owner, default."""
        book = self.thresholds.book()
        fixed = self.s.thresholds.per_app
        return {
            tier: np.array([
                fixed[n] if n in fixed else book.value(
                    tier, app=apps.get(n) or n, owner=self._tenant(n, apps.get(n, "")) or None)
                for n in containers
            ], dtype=float)
            for tier in (Tier.MEMORY, Tier.CPU)
        }

    def _judge(self, now_s, containers, apps, feats, pred, thresholds, events) -> list[dict]:
        """Outcome tracking: judge past scale-ups (needed / false positive) and failures
        (miss), and let each judgement move its app's threshold (app/core/thresholds.py).
        Also the lead-time outcomes of past actions."""
        usage = {n: float(feats[i, F["memory_usage_last_bytes"]]) for i, n in enumerate(containers)}
        ooms: dict[str, float] = {}
        judgements = []
        for e in events:
            if e.kind.value == "oom_kill":
                ooms[e.container] = ooms.get(e.container, 0) + 1
            tier = failure_tier(e.kind)
            if tier is not None:
                judgements += self.outcomes.failure(
                    e.container, tier, e.ts_s, app=e.app or e.container,
                    owner=self._tenant(e.container, e.app), detail=e.detail)
        reach = {}
        for i, n in enumerate(containers):
            reach[(n, Tier.MEMORY)] = usage[n]
            reach[(n, Tier.CPU)] = float(feats[i, F["cpu_usage_cores_last"]])
            for tier in (Tier.MEMORY, Tier.CPU):
                self.outcomes.decision(n, tier, now_s, float(pred.tiers[tier].p_fail[i]),
                                       float(thresholds[tier][i]))
        judgements += self.outcomes.observe(now_s, reach)
        self.judgements = [j.to_dict() for j in judgements]
        records = [{**j.to_dict(), "kind": "judgement", "judgement": j.kind.value,
                    "ts_s": now_s, "container": j.container, "app": apps.get(j.container, "")}
                   for j in judgements]
        records += [{**a.to_dict(), "kind": "threshold", "adjustment": a.kind,
                     "ts_s": now_s, "container": a.app, "app": a.app}
                    for a in self.thresholds.learn(judgements)]
        records += [{"kind": "outcome", "ts_s": now_s, "app": apps.get(o.container, ""),
                     **o.to_dict()} for o in self.tracker.observe(now_s, usage, ooms)]
        return records

    def _act(self, asks, arb, commit, monitor, pool, apps):
        """Apply what the pool granted (reclaims from idle containers first), in auto mode;
        turn every verdict into a result and a logged action with its explanation."""
        verdicts = {v.action_id: v for v in arb.verdicts}
        applied: dict[str, ActionResult] = {}
        records: list[dict[str, Any]] = []
        dropped: set[str] = set()
        if commit and arb.reclaims:
            for a, r in zip(arb.reclaims, ray.get(monitor.apply.remote(arb.reclaims)),
                            strict=True):
                records.append(_action_record(a, r, arb.explanations.get(a.action_id, ""),
                                              apps.get(a.container, ""), Verdict.GRANTED))
                if r.status is ResultStatus.APPLIED:
                    pool.confirm.remote(a.container, a.tier.value, r.new_limit)
                else:
                    dropped.update(arb.reclaim_dependent)
        granted = [a for a in asks if verdicts[a.action_id].verdict is Verdict.GRANTED
                   and a.action_id not in dropped]
        if commit and granted:
            applied = {r.action_id: r for r in ray.get(monitor.apply.remote(granted))}
        results = []
        for a in asks:
            v = verdicts[a.action_id]
            why = arb.explanations.get(a.action_id, v.reason)
            r = applied.get(a.action_id)
            if r is None:
                if a.action_id in dropped:
                    status, note = ResultStatus.DEFERRED, "its reclaim failed"
                elif v.verdict is Verdict.GRANTED:
                    status, note = ResultStatus.DRY_RUN, "recommend mode: nothing touched"
                elif v.verdict is Verdict.DEFERRED:
                    status, note = ResultStatus.DEFERRED, "not applied"
                else:
                    status, note = ResultStatus.DENIED, "not applied"
                r = ActionResult(a.action_id, a.container, a.tier, status, a.old_limit,
                                 a.old_limit, note)
            results.append(r)
            if r.status in (ResultStatus.APPLIED, ResultStatus.DRY_RUN):
                was_applied = r.status is ResultStatus.APPLIED
                if a.kind is ActionKind.RESIZE and a.new_limit > a.old_limit:
                    self.tracker.track(a, applied=was_applied)
                    self.outcomes.scale_up(a, owner=self._tenant(a.container, a.app),
                                           applied=was_applied)
                if was_applied:
                    pool.confirm.remote(a.container, a.tier.value, r.new_limit)
            records.append(_action_record(a, r, why, apps.get(a.container, ""), v.verdict))
            self.last_action[a.container] = {
                "ts_s": a.now_s, "tier": a.tier.value, "old_limit": r.old_limit,
                "new_limit": r.new_limit, "requested_limit": a.new_limit,
                "result": r.status.value,
            }
        return results, records

    def _apply_models(self, now_s, containers, apps, feats, window, pred) -> list[dict]:
        """Replace the heuristic's p_fail with each app's registered model, where one exists
        (the app's own, else the global one). New versions are picked up without a restart;
        a corrupt one is refused and the previous version keeps serving."""
        if self.registry is None or not containers:
            return []
        records = [{"kind": "event", "ts_s": now_s, "container": "_models", "app": "",
                    "event": "model_error", "reason": msg}
                   for msg in self.models.refresh(self.registry)]
        tier = Tier(self.s.models.tier)
        p_fail = pred.tiers[tier].p_fail
        by_app: dict[str, list[int]] = {}
        for i, app in enumerate(apps):
            by_app.setdefault(app, []).append(i)
        self.model_of: dict[str, str] = {}
        for app, idx in by_app.items():
            found = self.models.get(app, tier.value)
            if found is None:
                continue
            version, model = found
            rows = np.array(idx)
            if model.input == "window":
                x = window[rows]
            else:
                x = feats[rows][:, [F[name] for name in version.features]]
            p_fail[rows] = model.predict_proba(x)
            label = f"{version.app}/{version.version_id} ({version.kind})"
            self.model_of.update({containers[i]: label for i in idx})
        return records

    def _maintain_history(self, now_s: float) -> None:
        """Compaction and retention of the history store, every MAINTENANCE_S. The
        coordinator is the store's only compactor (one per store, as it requires)."""
        if now_s - self.last_maintenance_s < MAINTENANCE_S:
            return
        self.last_maintenance_s = now_s
        h = self.s.history
        self.store.compact(min_files=h.compact_min_files)
        self.store.apply_retention(max_age_s=h.retention_days * 86_400, now_s=now_s)

    @staticmethod
    def _limits(containers: list[str], pred: Prediction) -> dict[str, dict[str, float]]:
        return {
            n: {t.value: float(pred.tiers[t].limit[i]) for t in pred.tiers}
            for i, n in enumerate(containers)
        }

    def _write_status(self, now_s, containers, feats, pred: Prediction, batch, tick_s
                      ) -> list[dict[str, Any]]:
        rows = []
        for i, n in enumerate(containers):
            mem, cpu = pred.tiers[Tier.MEMORY], pred.tiers[Tier.CPU]
            rows.append({
                "name": n,
                "memory_usage_bytes": float(feats[i, F["memory_usage_last_bytes"]]),
                "memory_limit_bytes": float(mem.limit[i]),
                "cpu_usage_cores": float(feats[i, F["cpu_usage_cores_last"]]),
                "cpu_quota_cores": float(cpu.limit[i]),
                "p_fail_memory": float(mem.p_fail[i]),
                "p_fail_cpu": float(cpu.p_fail[i]),
                "memory_time_to_limit_s": float(mem.time_to_limit_s[i]),
                "model": self.model_of.get(n, pred.model),
                "samples": int(feats[i, F["n_samples"]]) if math.isfinite(
                    feats[i, F["n_samples"]]) else 0,
                "last_action": self.last_action.get(n),
            })
        jsonfile.write_atomic(self.data_dir / STATUS, {
            "ts_s": now_s, "run_id": self.run_id, "mode": self.s.mode.value, "tick": self.tick,
            "tick_s": tick_s, "model": pred.model, "horizon_s": pred.horizon_s,
            "saved_resource_hours": self.savings.saved_hours(),
            "errors": batch["errors"], "dropped": batch["dropped"], "containers": rows,
        })
        return rows

    def ping(self) -> int:
        return self.tick


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CoordinatorActor(Coordinator):
    """:class:`Coordinator` as a named, restartable Ray actor."""
