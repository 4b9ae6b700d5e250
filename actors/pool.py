"""PoolManagerActor: each node's capacity minus a reserve, and the limits granted.

Nodes are what the monitors report (``collect()`` gives each node's capacity: host
totals for cgroups, the node's Ray resources when Ray workers are watched); before the
first report the pool is this host alone (node ``local``). A node whose monitor is gone
is dropped with its containers (:meth:`PoolManager.drop_nodes`).

Thin shell over :class:`app.core.pool.Pool` and :func:`app.core.contention.arbitrate`:
each tick the coordinator sends all asks at once; when they exceed what is free the
pool first reclaims from idle containers, then grants by risk with dominant-resource
fairness across tenants, and defers or denies the rest with a reason. The pool
(grants, placement, reservations) is checkpointed to ``<data_dir>/pool.json`` once per
tick, when the tick confirms what was really set (:meth:`PoolManager.confirm_many`,
called every tick), and when nodes are dropped; a restarted actor resumes it. What an
``observe`` or an ``arbitrate`` changed before a crash is rebuilt by the next tick's
``observe`` (the limits in force) and by the coordinator's resumed intent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from prescale.app.core.actions import ScalingAction
from prescale.app.core.contention import (
    ArbitrationResult,
    ContentionConfig,
    ReclaimCandidate,
    arbitrate,
)
from prescale.app.core.pool import DEFAULT_NODE, Capacity, Pool
from prescale.app.core.sample import Tier
from prescale.app.core.tenants import Tenancy
from prescale.app.settings import Settings
from prescale.app.store import jsonfile
from prescale.app.telemetry.host import host_capacity

CHECKPOINT = "pool.json"


class PoolManager:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.path = Path(settings.data_dir) / CHECKPOINT
        p = settings.pool
        self.reserve = Capacity(float(p.reserve_memory_bytes), p.reserve_cpu_cores)
        self.warm = Capacity(float(p.warm_memory_bytes), p.warm_cpu_cores)
        self.notices: list[str] = []
        self.pool = self._load(settings)
        c = settings.contention
        self.contention = ContentionConfig(risk_band=c.risk_band, defer_factor=c.defer_factor,
                                           partial_grants=c.partial_grants)

    def _load(self, settings: Settings) -> Pool:
        """The checkpointed pool, or a fresh one from the host's capacity; a checkpoint
        that cannot be read is set aside (a line in :attr:`notices`) and rebuilt: the
        monitors report every limit in force at the next tick."""
        try:
            saved = jsonfile.read(self.path)
            if saved:
                return Pool.from_dict(saved)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.notices.append(jsonfile.quarantine(
                self.path, str(exc) or type(exc).__name__,
                "the pool is rebuilt from the limits the monitors report"))
        return Pool(host_capacity(settings), self.reserve, warm=self.warm)

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    def _save(self) -> None:
        jsonfile.write_atomic(self.path, self.pool.to_dict())

    def observe(self, limits: dict[str, dict[str, float]], now_s: float | None = None,
                nodes: dict[str, dict[str, float]] | None = None,
                node_of: dict[str, str] | None = None,
                replicas: dict[str, int] | None = None) -> None:
        """``limits``: ``{container: {"memory": bytes, "cpu": cores}}`` as seen in the
        samples of the monitors that answered; ``nodes``: their ``{node: capacity}``;
        ``node_of``: each container's node. A container of an answering node that is
        not in ``limits`` is gone; those of silent nodes keep their grants."""
        nodes = nodes or {}
        node_of = node_of or {}
        for node, cap in nodes.items():
            self.pool.set_node(node, Capacity(**cap), self.reserve, self.warm)
        if nodes and DEFAULT_NODE in self.pool.nodes and DEFAULT_NODE not in nodes:
            self.pool.drop_node(DEFAULT_NODE)  # the real nodes replace the placeholder
        replicas = replicas or {}
        for name, by_tier in limits.items():
            for tier, value in by_tier.items():
                self.pool.observe(name, Tier(tier), value, node=node_of.get(name),
                                  replicas=replicas.get(name))
        answered = set(nodes) or set(self.pool.nodes)
        known = {c for t in Tier for c in self.pool.grants.get(t, {})}
        for gone in known - set(limits):
            if self.pool.node_of(gone) in answered or self.pool.node_of(gone) is None:
                self.pool.forget(gone)
        if now_s is not None:
            self.pool.expire(now_s)

    def arbitrate(
        self,
        asks: list[ScalingAction],
        idle: list[ReclaimCandidate],
        now_s: float,
        commit: bool,
        tenancy: Tenancy | None = None,
    ) -> ArbitrationResult:
        """Grant, defer or deny every ask of a tick (see app.core.contention); ``tenancy``:
        what the containers' workload policies say (tenant, risk weight)."""
        c = self.s.contention
        result = arbitrate(
            asks, self.pool, idle=idle, tenants=c.tenants, weights=c.app_weights,
            tenant_weights=c.tenant_weights, now_s=now_s, config=self.contention, commit=commit,
            tenancy=tenancy,
        )
        return result

    def drop_nodes(self, nodes: list[str]) -> list[str]:
        """The nodes are gone (their monitors died with them): drop them and their
        containers (never the last node). Returns the containers dropped."""
        gone: list[str] = []
        for node in nodes:
            if node in self.pool.nodes and len(self.pool.nodes) > 1:
                gone += self.pool.drop_node(node)
        if gone or nodes:
            self._save()
        return gone

    def confirm(self, container: str, tier: str, limit: float) -> None:
        """Record the limit the actuator really set (it may differ from the grant)."""
        self.confirm_many([(container, tier, limit)])

    def confirm_many(self, applied: list[tuple[str, str, float]]) -> None:
        """:meth:`confirm` for every ``(container, tier, limit)`` of a tick, and the
        tick's one write of the pool (also when nothing was applied)."""
        for container, tier, limit in applied:
            self.pool.observe(container, Tier(tier), limit)
        self._save()

    def snapshot(self) -> dict[str, Any]:
        d = self.pool.to_dict()
        d["free"] = {t.value: self.pool.free(t) for t in Tier}
        return d


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class PoolManagerActor(PoolManager):
    """:class:`PoolManager` as a named, restartable Ray actor."""
