"""CoordinatorActor: one tick of the control loop, over every node's monitor.

``run_once()`` reads as the seed loop::

    resume in-flight actions of a tick that was cut short
    gather    every monitor's window, in parallel (a slow or dead monitor's containers
              are "unknown" this tick; nobody waits more than loop.collect_timeout_s)
    plan      the engine (app/core/engine.py): features → predict → thresholds →
              judge → policy + guards → asks
    arbitrate the pool manager: capacity per node, contention
    log       decisions, durably, before acting (and the in-flight intent)
    act       each granted action to the actuator of its container: the monitor of
              its node (cgroups, simulated), or the workload actuators (placement
              groups, Serve)
    record    results, outcome tracking, savings, checkpoint, status, metrics

What must survive a restart is checkpointed (``<data_dir>/coordinator.json``): the
engine state (policy cooldowns, outcome tracker, lead-time checks, savings), the
containers seen and their nodes, the tick count. The actions of a tick are written to
``<data_dir>/inflight.json`` before any is applied; a coordinator that is killed
mid-tick re-sends them on restart with the *same action ids* (every actuator is
idempotent by id, so none is applied twice) and logs what they did, so no decision is
lost. A tick that fails (the pool manager died under it) rolls the engine state back
to the checkpoint, as a restart would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayError

from prescale.actors import names
from prescale.actors.metrics import CoordinatorMetrics
from prescale.actors.ready import wait_ready
from prescale.actors.retrainer import Retrainer
from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    Decision,
    ResultStatus,
    ScalingAction,
    Verdict,
)
from prescale.app.core.engine import AppModel, Engine, EngineConfig, EngineState, Plan, Snapshot
from prescale.app.core.features import F, compute_features
from prescale.app.core.predictor import Prediction
from prescale.app.core.sample import METRICS, Tier
from prescale.app.core.thresholds import ThresholdConfig
from prescale.app.models.base import OneGroup
from prescale.app.settings import Mode, Settings
from prescale.app.store import jsonfile
from prescale.app.store.decision_log import DecisionLog
from prescale.app.store.history import HistoryStore
from prescale.app.store.registry import ModelCache, ModelRegistry
from prescale.app.store.thresholds_store import FILE as THRESHOLDS_FILE
from prescale.app.store.thresholds_store import ThresholdStore

CHECKPOINT = "coordinator.json"
INFLIGHT = "inflight.json"
STATUS = "status.json"
MAINTENANCE_S = 600.0
UNKNOWN_FORGET_S = 600.0  # an unknown container is dropped from the status after this
WORKLOADS_ROUTE = "_workloads"


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
        # a reclaim's verdict is its own reason: said once
        "reason": "; ".join(x for x in (a.reason, "" if verdict_reason == a.reason
                                        else verdict_reason, r.reason) if x),
    }


def _action_from_dict(d: dict[str, Any]) -> ScalingAction:
    """Back from JSON, where inf and nan were written as null (unlimited, no estimate)."""
    fix = {k: (math.inf if k in ("old_limit", "time_to_limit_s") else math.nan)
           for k, v in d.items() if v is None}
    return ScalingAction(**{**d, **fix, "tier": Tier(d["tier"]), "kind": ActionKind(d["kind"])})


def merge_shards(shards: list[dict[str, Any]], window_shape: tuple[int, int]
                 ) -> tuple[Snapshot, dict[str, tuple[str, str]], dict[str, Any]]:
    """One snapshot of the containers of every monitor that answered.

    Returns the snapshot, ``route``: container → (node, the name its monitor knows it
    by) and the merged errors / dropped counts / capacities. A name seen on two nodes
    is qualified as ``name@<node[:8]>`` on both, so that each action reaches its node.
    Worked example: node a has ``web`` and ``db``, node b has ``web`` → containers
    ``db``, ``web@a…``, ``web@b…``.

    Except a horizontally scaled container (every node reports it with a replica
    count: a Serve deployment whose replicas span nodes): it stays *one* container,
    whose replicas are the sum and whose window is that of its most loaded node (the
    highest last memory usage ÷ limit or CPU rate ÷ quota: those replicas fail first);
    its actions go to the workload actuators by name. Worked example: ``app/api`` with
    1 replica at 0.9 of its memory on node a and 2 at 0.4 on node b → ``app/api``, 3
    replicas, node a's window.
    """
    seen_on: dict[str, list[int]] = {}
    for k, sh in enumerate(shards):
        for n in sh["names"]:
            seen_on.setdefault(n, []).append(k)
    spanning = {n for n, ks in seen_on.items()
                if len(ks) > 1 and all(n in shards[k].get("replicas", {}) for k in ks)}
    names_, apps, windows, events, route = [], [], [], [], {}
    replicas: dict[str, int] = {}
    errors: dict[str, str] = {}
    dropped: dict[str, int] = {}
    nodes: dict[str, dict[str, float]] = {}
    hottest: dict[str, tuple[float, int, int]] = {}  # spanning name → (load, shard, row)
    for k, sh in enumerate(shards):
        node = sh["node"]
        nodes[node] = sh["capacity"]
        keep = []
        for i, (n, app) in enumerate(zip(sh["names"], sh["apps"], strict=True)):
            if n in spanning:
                load = _row_load(sh["window"][i])
                if n not in hottest or load > hottest[n][0]:
                    hottest[n] = (load, k, i)
                replicas[n] = replicas.get(n, 0) + int(sh["replicas"][n])
                continue
            name = n if len(seen_on[n]) == 1 else f"{n}@{node[:8]}"
            if name in route:  # two nodes whose ids share 8 characters: the full id
                name = f"{n}@{node}"
            names_.append(name)
            apps.append(app)
            route[name] = (node, n)
            keep.append(i)
            if n in sh.get("replicas", {}):
                replicas[name] = sh["replicas"][n]
        if keep:
            windows.append(sh["window"][keep])
        events += sh["events"]
        errors.update(sh["errors"])
        for key, v in sh["dropped"].items():
            dropped[key] = dropped.get(key, 0) + v
    for n, (_, k, i) in sorted(hottest.items()):
        sh = shards[k]
        names_.append(n)
        apps.append(sh["apps"][i])
        route[n] = (sh["node"], n)
        windows.append(sh["window"][i:i + 1])
    now_s = max((sh["now_s"] for sh in shards), default=time.time())
    window = (np.concatenate(windows) if windows
              else np.empty((0, *window_shape), dtype=float))
    snap = Snapshot(now_s, names_, apps, window, events, replicas)
    return snap, route, {"errors": errors, "dropped": dropped, "nodes": nodes}


def _row_load(row: np.ndarray) -> float:
    """How close one container's window ``[W, M]`` is to a limit: the larger of the last
    memory usage ÷ limit and the last CPU rate ÷ quota (the features' own formulas; 0
    when unknown). Example: usage 90 of limit 100 → 0.9; CPU counter 10 → 10.5 s over
    1 s with quota 1 → 0.5."""
    f = compute_features(row[None], recent_steps=2)[0]
    with np.errstate(all="ignore"):
        fracs = np.array([f[F["memory_usage_last_bytes"]] / f[F["memory_limit_bytes"]],
                          f[F["cpu_usage_cores_last"]] / f[F["cpu_quota_cores"]]])
    fracs = fracs[np.isfinite(fracs)]
    return float(fracs.max()) if len(fracs) else 0.0


class Coordinator:
    def __init__(self, settings: Settings, run_id: str) -> None:
        self.s = settings
        self.run_id = run_id
        self.data_dir = Path(settings.data_dir)
        self.store = HistoryStore(settings.history_uri(),
                                  flush_interval_s=settings.history.flush_interval_s)
        self.log = DecisionLog(self.store, run_id, settings.mode.value)
        self.last_maintenance_s = time.time()
        self.engine_config = EngineConfig.from_settings(settings)
        self.engine = Engine(self.engine_config)
        self.thresholds = ThresholdStore(self.data_dir / THRESHOLDS_FILE,
                                         ThresholdConfig.from_settings(settings.thresholds))
        self.registry = ModelRegistry(settings.registry_dir()) if settings.models.enabled else None
        self.models = ModelCache()
        self.retrainer = Retrainer(settings, self.registry)  # scheduled retraining
        self._one_group: dict[tuple[str, str, str, str], OneGroup] = {}
        self.last_action: dict[str, dict[str, Any]] = {}
        self.tick = 0
        #: every container seen: node, app, last time seen, and whether it is unknown now
        self.seen: dict[str, dict[str, Any]] = {}
        self.judgements: list[dict[str, Any]] = []  # this tick's, for the metrics
        self.metrics = CoordinatorMetrics(max_containers=1000, window_s=3600.0)
        self._pending_collect: dict[str, Any] = {}  # monitor → its unanswered collect()
        self._monitors: dict[str, Any] = {}
        self._metrics_s = 0.0
        self._inflight: dict[str, Any] = {}
        self._restore()

    # -- persistence -------------------------------------------------------------
    def _restore(self) -> None:
        self.engine = Engine(self.engine_config)
        saved = jsonfile.read(self.data_dir / CHECKPOINT)
        if not saved or saved.get("run_id") != self.run_id:
            return
        self.engine.state = EngineState.from_dict(saved, self.engine_config)
        self.last_action = saved.get("last_action", {})
        self.tick = saved["tick"]
        self.seen = saved.get("seen", {})
        if saved.get("metrics"):
            self.metrics.book.restore(saved["metrics"])
        self.retrainer.restore(saved.get("retrain"))

    def _checkpoint(self) -> None:
        jsonfile.write_atomic(
            self.data_dir / CHECKPOINT,
            {
                "run_id": self.run_id,
                "tick": self.tick,
                **self.engine.state.to_dict(),
                "last_action": self.last_action,
                "seen": self.seen,
                "metrics": self.metrics.book.state(),
                "retrain": self.retrainer.state(),
            },
        )

    # -- the tick ------------------------------------------------------------------
    def run_once(self) -> dict[str, Any]:
        try:
            return self._run_once()
        except Exception:
            self._restore()  # as if restarted: the engine state of the last good tick
            raise

    def _run_once(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        pool = ray.get_actor(names.POOL, namespace=self.s.ray.namespace)
        wait_ready(pool)  # a pool manager that Ray is restarting: wait for it
        self._resume_inflight(pool)  # a tick cut short: finish it first
        lap = _Laps(t0)
        shards, unknown = self._gather()  # collect, all monitors in parallel
        lap("gather")
        snap, route, merged = merge_shards(
            shards, (self.s.loop.window_steps, len(METRICS)))
        apps = dict(zip(snap.names, snap.apps, strict=True))
        lost = self._mark_seen(snap, route, unknown, pool)
        records = self._event_records(snap.events)
        plan = self.engine.observe(  # featurise, predict, judge
            snap, self.thresholds.book(), models=self._model_lookup(records, snap.now_s))
        records += self._judgement_records(plan, apps)  # thresholds learn from them
        if plan.judgements:  # learned once: a crash later in the tick must not re-judge
            self._checkpoint()
        if self.s.mode is not Mode.OFF:
            self.engine.propose(plan, snap)  # decide
        lap("plan")
        pool.observe.remote(self._limits(plan.names, plan.prediction), snap.now_s,
                            merged["nodes"], {n: r[0] for n, r in route.items()},
                            dict(snap.replicas))
        tick_records: list[dict[str, Any]] = []
        results: list[ActionResult] = []
        reclaimed: list[tuple[ScalingAction, ActionResult]] = []
        records += [_decision_record(d, apps.get(d.container, "")) for d in plan.decisions
                    if d.action is not None or d.p_fail >= d.threshold]
        # a kill loop or a runaway (app/core/oom.py): the operator should look
        records += [{"kind": "event", "ts_s": snap.now_s, "container": c,
                     "app": apps.get(c, ""), "event": "operator_attention", "reason": why}
                    for c, why in plan.flagged.items()]
        if plan.asks:
            commit = self.s.mode is Mode.AUTO
            arb = ray.get(pool.arbitrate.remote(  # arbitrate (reclaiming idle ones first)
                plan.asks, plan.reclaim, snap.now_s, commit))
            lap("arbitrate")
            routes = self._write_inflight(plan, arb, route, records, commit)  # durable intent
            tick_records += records
            self.log.append(records)  # durable before acting
            self._mark_inflight_logged()
            lap("log")
            results, records, reclaimed = self._act(plan.asks, arb, commit, routes, route,
                                                    pool, apps)  # apply
            lap("act")
        self.engine.settle(snap.now_s, reclaimed + list(zip(plan.asks, results, strict=True)),
                           live=plan.names)
        # scheduled retraining: a background Ray task, only checked here (never waited for)
        self.retrainer.observe(self.judgements_app(apps))
        retrain_records = self.retrainer.tick(snap.now_s)
        tick_records += records + retrain_records
        self.log.append(records + retrain_records)  # record
        self.tick += 1
        self._checkpoint()
        jsonfile.remove(self.data_dir / INFLIGHT)
        self._maintain_history(snap.now_s)
        lap("record")
        rows = self._write_status(plan, merged, time.perf_counter() - t0, unknown,
                                  snap.replicas)
        lap("status")
        tick_s = time.perf_counter() - t0
        summary = {
            "tick": self.tick,
            "now_s": snap.now_s,
            "containers": len(plan.names),
            "monitors": len(shards),
            "unknown": sorted(unknown),
            "lost_containers": lost,
            "decisions": len(plan.asks),
            "actions": [r.status.value for r in results],
            "errors": merged["errors"],
            "tick_s": tick_s,
            # where the tick's time went: gather (all monitors, in parallel), plan (the
            # engine: features, predict, judge, decide), arbitrate, log (intent and
            # decisions, fsynced), act, record (results, checkpoint), status; metrics_prev:
            # the previous tick's metrics export, which runs after the summary is made
            "stages_s": {**lap.stages, "metrics_prev": self._metrics_s},
            "retrain": self.retrainer.status(),
        }
        t_metrics = time.perf_counter()
        try:  # metrics never stop the loop
            self.metrics.record_tick(
                {**summary, "dropped": merged["dropped"],
                 "thresholds": {apps.get(n) or n: {t.value: float(v[i])
                                                   for t, v in plan.thresholds.items()}
                                for i, n in enumerate(plan.names)}},
                rows, self.judgements, tick_records)
        except ValueError as exc:
            self.log.append([{"kind": "event", "ts_s": snap.now_s, "container": "_metrics",
                              "app": "", "event": "metrics_error", "reason": str(exc)}])
        self._metrics_s = time.perf_counter() - t_metrics
        return summary

    # -- gather --------------------------------------------------------------------
    def monitors(self) -> dict[str, Any]:
        """The live monitors of this namespace, by name (one per node)."""
        ns = self.s.ray.namespace
        found = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                       if a.get("namespace") == ns and names.is_monitor(a["name"]))
        for n in found:
            if n not in self._monitors:
                try:
                    self._monitors[n] = ray.get_actor(n, namespace=ns)
                except ValueError:  # died between the listing and now
                    continue
        for gone in set(self._monitors) - set(found):
            del self._monitors[gone]
            self._pending_collect.pop(gone, None)
        return dict(self._monitors)

    def _gather(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Every monitor's window, collected in parallel. A monitor that has not answered
        within ``loop.collect_timeout_s`` is not asked again until it answers (its call
        stays pending); its node is reported in ``unknown`` with the reason."""
        monitors = self.monitors()
        refs = {}
        for name, handle in monitors.items():
            ref = self._pending_collect.get(name)
            refs[name] = ref if ref is not None else handle.collect.remote()
        ready, _ = (ray.wait(list(refs.values()), num_returns=len(refs),
                             timeout=self.s.loop.collect_timeout_s)
                    if refs else ([], []))
        ready_set = set(ready)
        shards, unknown = [], {}
        for name, ref in refs.items():
            node = names.node_of_monitor(name)
            if ref not in ready_set:
                self._pending_collect[name] = ref
                unknown[node] = (f"monitor did not answer within "
                                 f"{self.s.loop.collect_timeout_s:g} s")
                continue
            self._pending_collect.pop(name, None)
            try:
                shards.append(ray.get(ref))
            except RayError as exc:  # died, unschedulable (its node is gone), crashed
                unknown[node] = f"monitor failed: {type(exc).__name__}"
        return shards, unknown

    def _mark_seen(self, snap: Snapshot, route: dict[str, tuple[str, str]],
                   unknown: dict[str, str], pool: Any) -> list[str]:
        """Track every container's node. Containers of a node whose monitor is slow or
        failed are *unknown* (kept, with their grants); those of a node whose monitor is
        gone for good (the node left the cluster) are unknown too, and the pool drops the
        node. Returns the containers that became unknown this tick."""
        for n, app in zip(snap.names, snap.apps, strict=True):
            self.seen[n] = {"node": route[n][0], "app": app, "last_s": snap.now_s,
                            "unknown": None}
        live_nodes = {names.node_of_monitor(m) for m in self._monitors}
        newly, dead_nodes = [], set()
        for n, info in list(self.seen.items()):
            if info["last_s"] == snap.now_s:
                continue
            node = info["node"]
            why = (unknown.get(node) or
                   ("node left the cluster (its monitor is gone)" if node not in live_nodes
                    else "not reported by its monitor"))
            if node not in live_nodes:
                dead_nodes.add(node)
            if why == "not reported by its monitor":
                del self.seen[n]  # its monitor answered without it: it is gone
                continue
            if info["unknown"] is None:
                newly.append(n)
            info["unknown"] = why
            if snap.now_s - info["last_s"] > UNKNOWN_FORGET_S:
                del self.seen[n]
        if dead_nodes:
            pool.drop_nodes.remote(sorted(dead_nodes))
        return sorted(newly)

    # -- models, judgements ----------------------------------------------------------
    def _model_lookup(self, records: list[dict[str, Any]], now_s: float):
        """The engine's model lookup: each app's registered model (its own, else the
        global one), refreshed from the registry without a restart; a corrupt version
        is refused, logged, and the previous one keeps serving."""
        if self.registry is None:
            return None
        records += [{"kind": "event", "ts_s": now_s, "container": "_models", "app": "",
                     "event": "model_error", "reason": msg}
                    for msg in self.models.refresh(self.registry)]
        tier = self.engine_config.model_tier.value

        def lookup(app: str) -> AppModel | None:
            found = self.models.get(app, tier)
            if found is None:
                return None
            version, model = found
            if getattr(model, "needs_groups", False):  # peer features: one app per call
                key = (version.app, version.version_id, version.sha256, app)
                bound = self._one_group.get(key)
                if bound is None or bound.model is not model:
                    bound = self._one_group[key] = OneGroup(model, app)
                model = bound
            return AppModel(f"{version.app}/{version.version_id} ({version.kind})", model,
                            tuple(version.features))

        return lookup

    def _judgement_records(self, plan: Plan, apps: dict[str, str]) -> list[dict[str, Any]]:
        """Judgements move their app's threshold (durably); lead-time outcomes."""
        self.judgements = [j.to_dict() for j in plan.judgements]
        now_s = plan.now_s
        records = [{**j.to_dict(), "kind": "judgement", "judgement": j.kind.value,
                    "ts_s": now_s, "container": j.container, "app": apps.get(j.container, "")}
                   for j in plan.judgements]
        records += [{**a.to_dict(), "kind": "threshold", "adjustment": a.kind,
                     "ts_s": now_s, "container": a.app, "app": a.app}
                    for a in self.thresholds.learn(plan.judgements)]
        records += [{"kind": "outcome", "ts_s": now_s, "app": apps.get(o.container, ""),
                     **o.to_dict()} for o in plan.lead_outcomes]
        return records

    def judgements_app(self, apps: dict[str, str]) -> list[dict[str, Any]]:
        """This tick's judgements with their containers' apps (the retrainer's input)."""
        return [{**j, "app": apps.get(j.get("container", ""), j.get("app") or "")}
                for j in self.judgements]

    @staticmethod
    def _event_records(events) -> list[dict[str, Any]]:
        return [{"kind": "event", "ts_s": e.ts_s, "container": e.container, "app": e.app,
                 "event": e.kind.value, "reason": e.detail} for e in events]

    # -- acting ----------------------------------------------------------------------
    def _workloads(self) -> Any | None:
        """The workload actuators actor, if it runs."""
        try:
            return ray.get_actor(names.WORKLOADS, namespace=self.s.ray.namespace)
        except ValueError:
            return None

    def _routes(self, actions: list[ScalingAction], route: dict[str, tuple[str, str]]
                ) -> dict[str, str]:
        """action id → where it goes: the workload actuators (for the containers they
        manage), or the monitor of the container's node. One ``names()`` call."""
        h = self._workloads() if actions else None
        try:
            managed = ray.get(h.names.remote(), timeout=10) if h is not None else {}
        except RayError:  # dead or stuck: its containers get no route, hence FAILED
            managed = {}
        out = {}
        for a in actions:
            if a.container in managed:
                out[a.action_id] = WORKLOADS_ROUTE
            else:
                node = route.get(a.container, (self.seen.get(a.container, {}).get("node"),))[0]
                out[a.action_id] = names.monitor(node) if node else ""
        return out

    def _dispatch(self, actions: list[ScalingAction], routes: dict[str, str],
                  route: dict[str, tuple[str, str]]) -> dict[str, ActionResult]:
        """Send each action to its actuator (one call per target, all in parallel); a
        target that is gone or fails gives FAILED results, never a stuck tick."""
        by_target: dict[str, list[ScalingAction]] = {}
        for a in actions:
            by_target.setdefault(routes.get(a.action_id, ""), []).append(a)
        calls = {}
        results: dict[str, ActionResult] = {}
        for target, acts in by_target.items():
            handle = None
            if target == WORKLOADS_ROUTE:
                handle = self._workloads()
            elif target:
                handle = self._monitors.get(target)
            if handle is None:
                for a in acts:
                    results[a.action_id] = ActionResult(
                        a.action_id, a.container, a.tier, ResultStatus.FAILED, a.old_limit,
                        a.old_limit, f"no actuator for {a.container!r} ({target or 'no route'})")
                continue
            # the monitor knows a container by its own name (not the qualified one)
            local = [a if a.container not in route or route[a.container][1] == a.container
                     else _renamed(a, route[a.container][1]) for a in acts]
            calls[target] = (acts, handle.apply.remote(local))
        for target, (acts, ref) in calls.items():
            try:
                got = ray.get(ref, timeout=300)
            except RayError as exc:  # includes GetTimeoutError
                got = [ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                    a.old_limit, a.old_limit,
                                    f"actuator {target} failed: {type(exc).__name__}")
                       for a in acts]
            for a, r in zip(acts, got, strict=True):
                results[a.action_id] = ActionResult(r.action_id, a.container, r.tier, r.status,
                                                    r.old_limit, r.new_limit, r.reason)
        return results

    def _write_inflight(self, plan: Plan, arb, route, decision_records, commit: bool
                        ) -> dict[str, str]:
        """The tick's intent, durable before anything is applied (and the engine state
        with the cooldowns these actions start). Returns the actions' routes."""
        todo = list(arb.reclaims) + arb.granted(plan.asks)  # (partial grants cut)
        if not commit:
            todo = []
        routes = self._routes(todo, route)
        self._checkpoint()
        self._inflight = {
            "run_id": self.run_id, "now_s": plan.now_s, "commit": commit,
            "actions": [a.to_dict() for a in todo], "routes": routes,
            # qualified names (seen on two nodes) → the name their monitor knows
            "local": {a.container: route[a.container][1] for a in todo
                      if a.container in route and route[a.container][1] != a.container},
            "apps": {n: a for n, a in zip(plan.names, plan.apps, strict=True)},
            "decisions": decision_records, "logged": False,
        }
        jsonfile.write_atomic(self.data_dir / INFLIGHT, self._inflight)
        return routes

    def _mark_inflight_logged(self) -> None:
        jsonfile.write_atomic(self.data_dir / INFLIGHT, {**self._inflight, "logged": True})

    def _resume_inflight(self, pool: Any) -> None:
        """Finish a tick that was cut short (the coordinator was killed mid-tick): log its
        decisions if they were not, re-send its actions with the same ids (an actuator
        that applied one returns what it did then) and log the results."""
        saved = jsonfile.read(self.data_dir / INFLIGHT)
        if not saved or saved.get("run_id") != self.run_id:
            return
        if not saved["logged"]:
            self.log.append(saved["decisions"])
        actions = [_action_from_dict(d) for d in saved["actions"]]
        self.monitors()
        results = self._dispatch(actions, saved["routes"],
                                 {c: ("", local) for c, local in saved["local"].items()})
        records = []
        for a in actions:
            r = results[a.action_id]
            records.append(_action_record(a, r, "resumed after a coordinator restart",
                                          saved["apps"].get(a.container, ""), Verdict.GRANTED))
        pool.confirm_many.remote(_confirmed(actions, results))
        self.engine.settle(saved["now_s"], [(a, results[a.action_id]) for a in actions],
                           live=list(saved["apps"]))
        self.log.append(records)
        self._checkpoint()
        jsonfile.remove(self.data_dir / INFLIGHT)

    def _act(self, asks, arb, commit, routes, route, pool, apps):
        """Apply what the pool granted (reclaims from idle containers first), in auto mode;
        turn every verdict into a result and a logged action with its explanation.
        Returns the asks' results (in order), the records, and the reclaims with theirs."""
        verdicts = {v.action_id: v for v in arb.verdicts}
        applied: dict[str, ActionResult] = {}
        records: list[dict[str, Any]] = []
        dropped: set[str] = set()
        reclaimed: list[tuple[ScalingAction, ActionResult]] = []
        if commit and arb.reclaims:
            got = self._dispatch(list(arb.reclaims), routes, route)
            for a in arb.reclaims:
                r = got[a.action_id]
                reclaimed.append((a, r))
                records.append(_action_record(a, r, arb.explanations.get(a.action_id, ""),
                                              apps.get(a.container, ""), Verdict.GRANTED))
                if r.status is not ResultStatus.APPLIED:
                    dropped.update(arb.reclaim_dependent)
            pool.confirm_many.remote(_confirmed(arb.reclaims, got))
        granted = [a for a in arb.granted(asks) if a.action_id not in dropped]
        if commit and granted:
            applied = self._dispatch(granted, routes, route)
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
            records.append(_action_record(a, r, why, apps.get(a.container, ""), v.verdict))
            self.last_action[a.container] = {
                "ts_s": a.now_s, "tier": a.tier.value, "old_limit": r.old_limit,
                "new_limit": r.new_limit, "requested_limit": a.new_limit,
                "result": r.status.value,
            }
        pool.confirm_many.remote(_confirmed(asks, applied))  # one write for the tick
        return results, records, reclaimed

    # -- upkeep and status -------------------------------------------------------------
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

    def _write_status(self, plan: Plan, merged, tick_s: float, unknown: dict[str, str],
                      replicas: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """``status.json``: every container's usage, limits, risk and last action; the
        unknown ones (slow or lost monitor) with the reason. Returns the known rows."""
        pred, feats = plan.prediction, plan.features
        rows = []
        for i, n in enumerate(plan.names):
            mem, cpu = pred.tiers[Tier.MEMORY], pred.tiers[Tier.CPU]
            rows.append({
                "name": n,
                "node": self.seen.get(n, {}).get("node"),
                "state": "ok",
                "replicas": (replicas or {}).get(n),  # None: not horizontally scaled
                "memory_usage_bytes": float(feats[i, F["memory_usage_last_bytes"]]),
                "memory_limit_bytes": float(mem.limit[i]),
                "cpu_usage_cores": float(feats[i, F["cpu_usage_cores_last"]]),
                "cpu_quota_cores": float(cpu.limit[i]),
                "p_fail_memory": float(mem.p_fail[i]),
                "p_fail_cpu": float(cpu.p_fail[i]),
                "memory_time_to_limit_s": float(mem.time_to_limit_s[i]),
                "model": plan.model_of.get(n, pred.model),
                "samples": int(feats[i, F["n_samples"]]) if math.isfinite(
                    feats[i, F["n_samples"]]) else 0,
                "last_action": self.last_action.get(n),
            })
        unknown_rows = [{"name": n, "node": info["node"], "state": "unknown",
                         "reason": info["unknown"], "last_seen_s": info["last_s"],
                         "last_action": self.last_action.get(n)}
                        for n, info in sorted(self.seen.items()) if info.get("unknown")]
        jsonfile.write_atomic(self.data_dir / STATUS, {
            "ts_s": plan.now_s, "run_id": self.run_id, "mode": self.s.mode.value,
            "tick": self.tick, "tick_s": tick_s, "model": pred.model,
            "horizon_s": pred.horizon_s,
            "saved_resource_hours": self.engine.state.savings.saved_hours(),
            "errors": merged["errors"], "dropped": merged["dropped"],
            "nodes": merged["nodes"], "unknown_nodes": unknown,
            "containers": rows + unknown_rows,
        })
        return rows

    def ping(self) -> int:
        return self.tick


class _Laps:
    """Stage timer of a tick: ``lap("plan")`` records the time since the previous lap."""

    def __init__(self, t0: float) -> None:
        self.last = t0
        self.stages: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = now - self.last
        self.last = now


def _confirmed(actions, results: dict[str, ActionResult]) -> list[tuple[str, str, float]]:
    """(container, tier, limit really set) of the applied ones, for the pool manager."""
    return [(a.container, a.tier.value, results[a.action_id].new_limit) for a in actions
            if a.action_id in results and results[a.action_id].status is ResultStatus.APPLIED]


def _renamed(a: ScalingAction, container: str) -> ScalingAction:
    return replace(a, container=container)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CoordinatorActor(Coordinator):
    """:class:`Coordinator` as a named, restartable Ray actor."""
