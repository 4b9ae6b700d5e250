"""PoolManagerActor: the host's capacity minus a reserve, and the limits granted.

Thin shell over :class:`app.core.pool.Pool`; the grants are checkpointed to
``<data_dir>/pool.json`` after every change, so a restarted actor resumes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import ray

from app.core.actions import PoolVerdict, ScalingAction
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
        self.path = Path(settings.data_dir) / CHECKPOINT
        reserve = Capacity(float(settings.pool.reserve_memory_bytes),
                           settings.pool.reserve_cpu_cores)
        capacity = host_capacity(settings)
        saved = jsonfile.read(self.path)
        self.pool = Pool(capacity, reserve)
        if saved:
            restored = Pool.from_dict(saved)
            self.pool.grants = restored.grants

    def _save(self) -> None:
        jsonfile.write_atomic(self.path, self.pool.to_dict())

    def observe(self, limits: dict[str, dict[str, float]]) -> None:
        """``{container: {"memory": bytes, "cpu": cores}}`` as seen in the samples."""
        for name, by_tier in limits.items():
            for tier, value in by_tier.items():
                self.pool.observe(name, Tier(tier), value)
        for tier in Tier:
            for gone in set(self.pool.grants[tier]) - set(limits):
                self.pool.grants[tier].pop(gone)
        self._save()

    def request(self, asks: list[ScalingAction], commit: bool) -> list[PoolVerdict]:
        verdicts = self.pool.request(asks, commit=commit)
        if commit:
            self._save()
        return verdicts

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
