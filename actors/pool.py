"""PoolManagerActor: the host's capacity minus a reserve, and the limits granted.

Thin shell over :class:`app.core.pool.Pool` and :func:`app.core.contention.arbitrate`:
each tick the coordinator sends all asks at once; when they exceed what is free the
pool first reclaims from idle containers, then grants by risk with dominant-resource
fairness across tenants, and defers or denies the rest with a reason. The pool
(grants, placement, reservations) is checkpointed to ``<data_dir>/pool.json`` after
every change, so a restarted actor resumes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import ray

from app.core.actions import ScalingAction
from app.core.contention import ArbitrationResult, ContentionConfig, ReclaimCandidate, arbitrate
from app.core.pool import Capacity, Pool
from app.core.sample import Tier
from app.settings import Settings
from app.store import jsonfile

CHECKPOINT = "pool.json"


def host_capacity(settings: Settings) -> Capacity:
    mem = settings.pool.capacity_memory_bytes
    cpu = settings.pool.capacity_cpu_cores
    return Capacity(
        memory_bytes=float(mem if mem is not None else psutil.virtual_memory().total),
        cpu_cores=float(cpu if cpu is not None else psutil.cpu_count()),
    )


class PoolManager:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.path = Path(settings.data_dir) / CHECKPOINT
        p = settings.pool
        self.pool = Pool(
            host_capacity(settings),
            Capacity(float(p.reserve_memory_bytes), p.reserve_cpu_cores),
            warm=Capacity(float(p.warm_memory_bytes), p.warm_cpu_cores),
        )
        saved = jsonfile.read(self.path)
        if saved:
            self.pool.assign(Pool.from_dict(saved))
        c = settings.contention
        self.contention = ContentionConfig(risk_band=c.risk_band, defer_factor=c.defer_factor)

    def _save(self) -> None:
        jsonfile.write_atomic(self.path, self.pool.to_dict())

    def observe(self, limits: dict[str, dict[str, float]], now_s: float | None = None) -> None:
        """``{container: {"memory": bytes, "cpu": cores}}`` as seen in the samples."""
        for name, by_tier in limits.items():
            for tier, value in by_tier.items():
                self.pool.observe(name, Tier(tier), value)
        known = {c for t in Tier for c in self.pool.grants.get(t, {})}
        for gone in known - set(limits):
            self.pool.forget(gone)
        if now_s is not None:
            self.pool.expire(now_s)
        self._save()

    def arbitrate(
        self,
        asks: list[ScalingAction],
        idle: list[ReclaimCandidate],
        now_s: float,
        commit: bool,
    ) -> ArbitrationResult:
        """Grant, defer or deny every ask of a tick (see app.core.contention)."""
        c = self.s.contention
        result = arbitrate(
            asks, self.pool, idle=idle, tenants=c.tenants, weights=c.app_weights,
            tenant_weights=c.tenant_weights, now_s=now_s, config=self.contention, commit=commit,
        )
        if commit:
            self._save()
        return result

    def confirm(self, container: str, tier: str, limit: float) -> None:
        """Record the limit the actuator really set (it may differ from the grant)."""
        self.pool.observe(container, Tier(tier), limit)
        self._save()

    def snapshot(self) -> dict[str, Any]:
        d = self.pool.to_dict()
        d["free"] = {t.value: self.pool.free(t) for t in Tier}
        return d


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class PoolManagerActor(PoolManager):
    """:class:`PoolManager` as a named, restartable Ray actor."""
