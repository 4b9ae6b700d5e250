"""CoordinatorActor: the tick (:mod:`app.loop.tick`) over Ray and files.

The tick itself is Ray-free; this module builds its ports:

- telemetry: every node's monitor (``prescale-monitor:<node>``), asked to ``collect()``
  in parallel; a monitor that has not answered within ``loop.collect_timeout_s`` is
  not asked again until it answers, and its node is *unknown* this tick;
- allocator: the pool manager actor (its calls in order on one handle);
- actuation: each action to the monitor of its container's node (cgroups, simulated)
  or to the workload actuators (placement groups, Serve), one call per target, all in
  parallel; a target that is gone or fails gives FAILED results, never a stuck tick;
- journal: the decision log in the history store, ``<data_dir>/inflight.json`` (the
  intent) and ``<data_dir>/status.json``; checkpoint: ``<data_dir>/coordinator.json``
  (both :mod:`app.store.loop_files`);
- thresholds: ``<data_dir>/thresholds.json``;
- hooks: the model registry (hot reload; a corrupt version is refused and logged),
  scheduled retraining (:mod:`actors.retrainer`), metrics (:mod:`actors.metrics`) and
  the history store's compaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError

from prescale.actors import names
from prescale.actors.metrics import CoordinatorMetrics
from prescale.actors.ready import wait_ready
from prescale.actors.retrainer import Retrainer
from prescale.app.core import features
from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction
from prescale.app.core.contention import ArbitrationResult, ReclaimCandidate
from prescale.app.core.engine import AppModel, EngineConfig, ModelLookup, Plan
from prescale.app.core.tenants import Tenancy
from prescale.app.core.thresholds import ThresholdConfig
from prescale.app.loop import records as rec
from prescale.app.loop.shard import Shard
from prescale.app.loop.tick import Ports, Tick, TickHooks
from prescale.app.models.base import OneGroup
from prescale.app.settings import Settings
from prescale.app.store.decision_log import DecisionLog
from prescale.app.store.history import HistoryStore
from prescale.app.store.loop_files import CHECKPOINT, FileCheckpoint, FileJournal
from prescale.app.store.model_cache import ModelCache
from prescale.app.store.registry import ModelRegistry
from prescale.app.store.thresholds_store import FILE as THRESHOLDS_FILE
from prescale.app.store.thresholds_store import ThresholdStore

log = logging.getLogger(__name__)
MAINTENANCE_S = 600.0
WORKLOADS_ROUTE = "_workloads"


class RayTelemetry:
    """Every monitor of the namespace, collected in parallel."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.handles: dict[str, Any] = {}  # monitor name → handle
        self._pending: dict[str, Any] = {}  # monitor → its unanswered collect()

    def monitors(self) -> dict[str, Any]:
        """The live monitors of this namespace, by name (one per node)."""
        ns = self.s.ray.namespace
        found = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                       if a.get("namespace") == ns and names.is_monitor(a["name"]))
        for n in found:
            if n not in self.handles:
                try:
                    self.handles[n] = ray.get_actor(n, namespace=ns)
                except ValueError:  # died between the listing and now
                    continue
        for gone in set(self.handles) - set(found):
            del self.handles[gone]
            self._pending.pop(gone, None)
        return dict(self.handles)

    def collect(self) -> tuple[list[Shard], dict[str, str]]:
        monitors = self.monitors()
        refs = {name: self._pending.get(name) or handle.collect.remote()
                for name, handle in monitors.items()}
        timeout = self.s.loop.collect_timeout_s
        ready, _ = (ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
                    if refs else ([], []))
        ready_set = set(ready)
        shards, unknown = [], {}
        for name, ref in refs.items():
            node = names.node_of_monitor(name)
            if ref not in ready_set:
                self._pending[name] = ref
                unknown[node] = f"monitor did not answer within {timeout:g} s"
                continue
            self._pending.pop(name, None)
            try:
                shards.append(Shard.from_dict(ray.get(ref)))
            except RayError as exc:  # died, unschedulable (its node is gone), crashed
                unknown[node] = f"monitor failed: {type(exc).__name__}"
        return shards, unknown

    def live_nodes(self) -> set[str]:
        return {names.node_of_monitor(m) for m in self.handles}


class RayAllocator:
    """The pool manager actor (waited for when Ray is restarting it)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.pool: Any = None
        self._observed: tuple[Any, ...] | None = None  # this tick's observe(), to replay

    def prepare(self) -> None:
        """Once per tick: the actor's handle, waiting while Ray restarts it."""
        self.pool = ray.get_actor(names.POOL, namespace=self.s.ray.namespace)
        self._observed = None
        wait_ready(self.pool)

    def observe(self, limits, now_s, nodes, node_of, replicas) -> None:
        self._observed = (dict(limits), now_s, dict(nodes), dict(node_of), dict(replicas))
        self.pool.observe.remote(*self._observed)

    def arbitrate(self, asks: Sequence[ScalingAction], idle: Sequence[ReclaimCandidate],
                  now_s: float, commit: bool, tenancy: Tenancy | None = None
                  ) -> ArbitrationResult:
        """The pool's verdicts. If the pool actor is lost during the tick (its node went
        away: Ray restarts it elsewhere from its checkpoint, without this tick's
        ``observe``), wait for it, replay this tick's ``observe`` (an actor runs one
        caller's calls in order) and ask once more; the tick goes on, and a log line and
        the arbitration's summary say so. A pool that does not come back fails the tick
        (the runtime retries the next one)."""
        args = (list(asks), list(idle), now_s, commit, tenancy)
        try:
            return ray.get(self.pool.arbitrate.remote(*args))
        except ActorUnavailableError as exc:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if not wait_ready(self.pool, timeout_s=max(30.0, self.s.loop.interval_s)):
            raise RuntimeError(f"the pool manager did not come back after {why}")
        if self._observed is not None:
            self.pool.observe.remote(*self._observed)
        result = ray.get(self.pool.arbitrate.remote(*args))
        note = (f"pool manager restarted during the tick ({why}): this tick's observe "
                "replayed, asks arbitrated again")
        log.warning(note)
        return replace(result, summary=[note, *result.summary])

    def confirm(self, applied: Sequence[tuple[str, str, float]]) -> None:
        self.pool.confirm_many.remote(list(applied))

    def drop_nodes(self, nodes: Sequence[str]) -> None:
        self.pool.drop_nodes.remote(list(nodes))

    def take_notices(self) -> list[str]:
        """Lines about the pool's checkpoint set aside (at the actor's start)."""
        return ray.get(self.pool.take_notices.remote())


class RayActuation:
    """Each action to its node's monitor, or to the workload actuators."""

    def __init__(self, settings: Settings, telemetry: RayTelemetry) -> None:
        self.s = settings
        self.telemetry = telemetry

    def _workloads(self) -> Any | None:
        try:
            return ray.get_actor(names.WORKLOADS, namespace=self.s.ray.namespace)
        except ValueError:
            return None

    def routes(self, actions: Sequence[ScalingAction], node_of: Mapping[str, str]
               ) -> dict[str, str]:
        h = self._workloads() if actions else None
        try:
            managed = ray.get(h.names.remote(), timeout=10) if h is not None else {}
        except RayError:  # dead or stuck: its containers get no route, hence FAILED
            managed = {}
        return {a.action_id: WORKLOADS_ROUTE if a.container in managed
                else (names.monitor(node_of[a.container]) if node_of.get(a.container)
                      else "") for a in actions}

    def apply(self, actions: Sequence[ScalingAction], routes: Mapping[str, str],
              local: Mapping[str, str]) -> dict[str, ActionResult]:
        if not self.telemetry.handles:
            self.telemetry.monitors()
        by_target: dict[str, list[ScalingAction]] = {}
        for a in actions:
            by_target.setdefault(routes.get(a.action_id, ""), []).append(a)
        calls, results = {}, {}
        for target, acts in by_target.items():
            handle = (self._workloads() if target == WORKLOADS_ROUTE
                      else self.telemetry.handles.get(target) if target else None)
            if handle is None:
                for a in acts:
                    results[a.action_id] = ActionResult(
                        a.action_id, a.container, a.tier, ResultStatus.FAILED, a.old_limit,
                        a.old_limit, f"no actuator for {a.container!r} ({target or 'no route'})")
                continue
            # the monitor knows a container by its own name (not the qualified one)
            sent = [replace(a, container=local[a.container]) if a.container in local else a
                    for a in acts]
            calls[target] = (acts, handle.apply.remote(sent))
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


class CoordinatorHooks(TickHooks):
    """Models from the registry, scheduled retraining, metrics, history upkeep."""

    def __init__(self, settings: Settings, store: HistoryStore, log: DecisionLog,
                 engine_config: EngineConfig) -> None:
        self.s = settings
        self.store, self.log = store, log
        self.tier = engine_config.model_tier.value
        self.registry = (ModelRegistry(settings.registry_dir()) if settings.models.enabled
                         else None)
        self.cache = ModelCache()
        self.retrainer = Retrainer(settings, self.registry)
        self.metrics = CoordinatorMetrics(max_containers=1000, window_s=3600.0)
        self._one_group: dict[tuple[str, str, str, str], OneGroup] = {}
        self.last_maintenance_s = time.time()
        self.metrics_s = 0.0

    def models(self, records, now_s) -> ModelLookup | None:
        """Each app's registered model (its own, else the global one), refreshed from the
        registry without a restart; a corrupt version is refused, logged, and the
        previous one keeps serving."""
        if self.registry is None:
            return None
        records += [rec.to_dict(rec.EventRecord(now_s, "_models", "", "model_error", msg))
                    for msg in self.cache.refresh(self.registry)]

        def lookup(app: str) -> AppModel | None:
            found = self.cache.get(app, self.tier)
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

    def after_settle(self, judgements, now_s):
        # scheduled retraining: a background Ray task, only checked here (never waited for)
        self.retrainer.observe(judgements)
        return self.retrainer.tick(now_s)

    def state(self) -> dict[str, Any]:
        return {"metrics": self.metrics.book.state(), "retrain": self.retrainer.state()}

    def restore(self, saved) -> None:
        if saved.get("metrics"):
            self.metrics.book.restore(saved["metrics"])
        self.retrainer.restore(saved.get("retrain"))

    def upkeep(self, now_s: float) -> None:
        """Compaction and retention of the history store, every MAINTENANCE_S. The
        coordinator is the store's only compactor (one per store, as it requires)."""
        if now_s - self.last_maintenance_s < MAINTENANCE_S:
            return
        self.last_maintenance_s = now_s
        h = self.s.history
        known = set(self.store.unreadable)
        try:  # upkeep never stops the loop; what went wrong is logged
            self.store.upkeep(min_files=h.compact_min_files,
                              retention_s=h.retention_days * 86_400, now_s=now_s)
        except Exception as exc:  # noqa: BLE001 - logged, retried next MAINTENANCE_S
            self.log.append([rec.to_dict(rec.EventRecord(
                now_s, "_history", "", "history_error",
                f"compaction/retention failed: {type(exc).__name__}: {exc}"))])
        self.log.append([rec.to_dict(rec.EventRecord(
            now_s, "_history", "", "history_error",
            f"unreadable history file {path} ({why}): left in place, passed over by reads "
            f"and compaction; move it aside or delete it"))
            for path, why in sorted(self.store.unreadable.items()) if path not in known])

    def after_tick(self, summary, rows, judgements, records, plan: Plan, apps) -> None:
        summary["stages_s"]["metrics_prev"] = self.metrics_s
        summary["retrain"] = self.retrainer.status()
        t0 = time.perf_counter()
        try:  # metrics never stop the loop
            self.metrics.record_tick(
                {**summary,
                 "thresholds": {apps.get(n) or n: {t.value: float(v[i])
                                                   for t, v in plan.thresholds.items()}
                                for i, n in enumerate(plan.names)}},
                rows, judgements, records)
        except ValueError as exc:
            self.log.append([rec.to_dict(rec.EventRecord(
                summary["now_s"], "_metrics", "", "metrics_error", str(exc)))])
        self.metrics_s = time.perf_counter() - t0


class Coordinator:
    """The ports of the live loop around one :class:`~app.loop.tick.Tick`."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.s = settings
        self.run_id = run_id
        data_dir = Path(settings.data_dir)
        store = HistoryStore(settings.history_uri(),
                             flush_interval_s=settings.history.flush_interval_s)
        self.log = DecisionLog(store, run_id, settings.mode.value)
        engine_config = EngineConfig.from_settings(settings)
        self.telemetry = RayTelemetry(settings)
        self.hooks = CoordinatorHooks(settings, store, self.log, engine_config)
        ports = Ports(
            telemetry=self.telemetry, allocator=RayAllocator(settings),
            actuation=RayActuation(settings, self.telemetry),
            journal=FileJournal(data_dir, self.log),
            checkpoint=FileCheckpoint(data_dir / CHECKPOINT),
            thresholds=ThresholdStore(data_dir / THRESHOLDS_FILE,
                                      ThresholdConfig.from_settings(settings.thresholds)),
            hooks=self.hooks)
        self.loop = Tick(engine_config, ports, run_id=run_id, mode=settings.mode.value,
                         window_steps=settings.loop.window_steps)
        features.prepare()  # compiled while the actor starts, not on the first tick

    @property
    def engine(self):
        return self.loop.engine

    def run_once(self) -> dict[str, Any]:
        return self.loop.run_once()

    def monitors(self) -> dict[str, Any]:
        return self.telemetry.monitors()

    def ping(self) -> int:
        return self.loop.tick

    def close(self) -> int:
        """The loop stops: the closing rows of the held decisions' episodes still open
        are logged (:meth:`app.loop.tick.Tick.close`). Returns how many."""
        return len(self.loop.close())


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class CoordinatorActor(Coordinator):
    """:class:`Coordinator` as a named, restartable Ray actor."""
