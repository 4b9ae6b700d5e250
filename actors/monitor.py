"""MonitorActor: samples this node's containers into a ring buffer and applies actions.

A thin shell: the source (:mod:`app.telemetry.cgroup`) reads the kernel, the ring
buffer (:mod:`app.core.ring`) keeps the last ``window_steps`` samples, the actuator
(:mod:`app.actuators.cgroup`) writes limits. ``collect()`` returns the window of all
containers as one array, so the coordinator makes one call per tick, not one per
container.

Restart: the ring buffer is not checkpointed (it refills within one window); applied
action ids are remembered so a retried call does not apply an action twice, and
cgroup writes set absolute values, so even a replay after a restart is harmless.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

import ray

from app.actuators.cgroup import CgroupActuator
from app.core.actions import ActionResult, ResultStatus, ScalingAction
from app.core.ring import RingBuffer
from app.core.sample import Event, Sample, Tier
from app.settings import Settings
from app.telemetry.cgroup import CgroupError, CgroupSource

_REMEMBERED_ACTIONS = 10_000


class Monitor:
    """The monitor's logic without Ray (the actor below is this class, remote)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = CgroupSource(settings.cgroup)
        self.actuator = CgroupActuator(settings.cgroup)
        self.ring = RingBuffer(settings.loop.window_steps)
        self.last: dict[str, Sample] = {}
        self.applied: OrderedDict[str, ActionResult] = OrderedDict()
        self.dropped: dict[str, int] = {}

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def collect(self) -> dict[str, Any]:
        """Sample every container once; return the window ``[N, W, M]`` and what happened."""
        batch = self.source.poll()
        errors = batch.errors
        events: list[Event] = list(batch.events)
        seen = set()
        for s in batch.samples:
            prev = self.last.get(s.container)
            if prev is not None and s.ts_s <= prev.ts_s:
                self._drop("timestamp_not_increasing")
                continue
            if not (s.memory_usage_bytes >= 0 or math.isnan(s.memory_usage_bytes)):
                self._drop("negative_memory")
                continue
            self.ring.push(s)
            self.last[s.container] = s
            seen.add(s.container)
        for gone in set(self.ring.names()) - seen - set(errors):
            self.ring.forget(gone)
            self.last.pop(gone, None)
        names, window = self.ring.window(sorted(seen))
        return {
            "now_s": time.time(),
            "names": names,
            "window": window,
            "errors": errors,
            "events": events,
            "dropped": dict(self.dropped),
        }

    def apply(self, actions: list[ScalingAction]) -> list[ActionResult]:
        """Apply each action once (by ``action_id``); report what the kernel really set."""
        results = []
        by_name = {c.name: c for c in self.source.containers()}
        for a in actions:
            if a.action_id in self.applied:
                results.append(self.applied[a.action_id])
                continue
            results.append(self._apply_one(a, by_name))
            self.applied[a.action_id] = results[-1]
            while len(self.applied) > _REMEMBERED_ACTIONS:
                self.applied.popitem(last=False)
        return results

    def _apply_one(self, a: ScalingAction, by_name: dict) -> ActionResult:
        container = by_name.get(a.container)
        if container is None:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit, "container no longer exists")
        try:
            if a.tier is Tier.MEMORY:
                r = self.actuator.set_memory_limit(container, int(a.new_limit))
            else:
                r = self.actuator.set_cpu_quota(container, float(a.new_limit))
        except (CgroupError, ValueError, OSError) as exc:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit, f"actuator: {exc}")
        status = ResultStatus.APPLIED if r.ok else ResultStatus.FAILED
        reason = "limit written and read back" if r.ok else f"kernel refused: {r.error}"
        return ActionResult(a.action_id, a.container, a.tier, status, r.old, r.new, reason)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class MonitorActor(Monitor):
    """One per node: :class:`Monitor` as a restartable Ray actor."""
