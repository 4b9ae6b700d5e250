"""Simulated live containers: a source (and its own actuator) on the wall clock.

For tests and benchmarks of the control loop where real workloads cannot run, e.g.
a :class:`ray.cluster_utils.Cluster` of several "nodes" on one host, whose monitors must
each discover *their own* containers, or a tick benchmark with thousands of them.
Everything else of the loop (monitor, ring buffer, features, engine, pool,
coordinator, decision log) is the real thing; only the containers are simulated.

Container ``i`` of a source with prefix ``p`` is named ``f"{p}-{i:04d}"``, app
``"sim-leak"`` for even ``i`` and ``"sim-steady"`` for odd ``i``:

- *leak*: memory ``u(t) = base + rate·(t − t₀)`` from its (re)start ``t₀``; when
  ``u ≥ limit`` the kernel would kill it: an ``oom_kill`` event, then it restarts at
  ``base`` (``t₀ = t``). Worked example: base 64 MiB, rate 2 MiB/s, limit 128 MiB →
  killed 32 s after a start unless its limit is raised first.
- *steady*: memory ``base``; CPU ``cpu_cores`` for every container.

:meth:`SimulatedSource.apply` sets a limit like the cgroup actuator (absolute value,
read back), refuses to set memory below current usage, and counts how many times each
action id was really executed (:attr:`executions`) so a test can prove that no action
was applied twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch, Tier

MiB = 2**20


@dataclass
class _Sim:
    name: str
    app: str
    leak: bool
    start_s: float
    memory_limit_bytes: float
    cpu_quota_cores: float
    cpu_s_total: float = 0.0
    last_s: float = math.nan


class SimulatedSource:
    kind = "simulated"

    def __init__(self, n: int, prefix: str, *, base_bytes: float = 64 * MiB,
                 leak_bytes_per_s: float = 2 * MiB, limit_bytes: float = 128 * MiB,
                 cpu_cores: float = 0.1, cpu_quota_cores: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        if n < 0:
            raise ValueError(f"simulated containers: n must be >= 0, got {n}")
        if not prefix:
            raise ValueError("simulated containers: prefix must not be empty")
        self.base_bytes = float(base_bytes)
        self.leak_bytes_per_s = float(leak_bytes_per_s)
        self.cpu_cores = float(cpu_cores)
        self.clock = clock
        now = clock()
        self.sims = {
            f"{prefix}-{i:04d}": _Sim(f"{prefix}-{i:04d}", "sim-leak" if i % 2 == 0 else
                                      "sim-steady", i % 2 == 0, now, float(limit_bytes),
                                      float(cpu_quota_cores))
            for i in range(n)
        }
        self.executions: dict[str, int] = {}

    def usage_bytes(self, s: _Sim, now_s: float) -> float:
        if not s.leak:
            return self.base_bytes
        return self.base_bytes + self.leak_bytes_per_s * max(now_s - s.start_s, 0.0)

    def poll(self) -> SourceBatch:
        now = self.clock()
        samples, events = [], []
        for s in self.sims.values():
            if self.usage_bytes(s, now) >= s.memory_limit_bytes:
                events.append(Event(s.name, now, EventKind.OOM_KILL, s.app,
                                    "simulated: usage reached the memory limit"))
                s.start_s = now
            if math.isfinite(s.last_s):
                s.cpu_s_total += self.cpu_cores * (now - s.last_s)
            s.last_s = now
            u = self.usage_bytes(s, now)
            samples.append(Sample(s.name, now, memory_usage_bytes=u, memory_working_set_bytes=u,
                                  memory_limit_bytes=s.memory_limit_bytes,
                                  cpu_usage_s_total=s.cpu_s_total,
                                  cpu_quota_cores=s.cpu_quota_cores, app=s.app))
        return SourceBatch(samples, events)

    def owns(self, container: str) -> bool:
        return container in self.sims

    def apply(self, a: ScalingAction) -> ActionResult:
        s = self.sims.get(a.container)
        if s is None or a.kind is not ActionKind.RESIZE:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit, "not a simulated container resize")
        self.executions[a.action_id] = self.executions.get(a.action_id, 0) + 1
        if a.tier is Tier.MEMORY:
            old = s.memory_limit_bytes
            if a.new_limit < self.usage_bytes(s, self.clock()):
                return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                    old, old, "refused: below current usage")
            s.memory_limit_bytes = float(a.new_limit)
        else:
            old = s.cpu_quota_cores
            s.cpu_quota_cores = float(a.new_limit)
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.APPLIED, old,
                            float(a.new_limit), "simulated limit set")

    def close(self) -> None:
        pass
