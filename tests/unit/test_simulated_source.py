"""The simulated live containers (app/telemetry/simulated.py), on an injected clock."""

from __future__ import annotations

import os

from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction
from prescale.app.core.sample import EventKind, Tier
from prescale.app.telemetry.managed_actors import ManagedActorSource
from prescale.app.telemetry.simulated import SimulatedSource

MiB = 2**20


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _resize(name: str, new: float, aid: str) -> ScalingAction:
    return ScalingAction(aid, 0.0, name, Tier.MEMORY, 128 * MiB, new, 0.9, 0.5, 10.0, new, "t")


def test_worked_example_leak_is_killed_32_s_after_start_unless_raised():
    clock = Clock()
    src = SimulatedSource(2, "n1", clock=clock)  # base 64 MiB, 2 MiB/s, limit 128 MiB
    leak, steady = "n1-0000", "n1-0001"
    clock.t += 31.0
    b = src.poll()
    assert b.events == []
    assert {s.container: s.memory_usage_bytes for s in b.samples} == {
        leak: 126 * MiB, steady: 64 * MiB}
    clock.t += 1.0  # 64 + 2·32 = 128 MiB: the limit
    b = src.poll()
    [e] = b.events
    assert (e.container, e.kind) == (leak, EventKind.OOM_KILL)
    assert b.samples[0].memory_usage_bytes == 64 * MiB  # restarted at base


def test_apply_sets_the_limit_refuses_below_usage_and_counts_executions():
    clock = Clock()
    src = SimulatedSource(1, "n1", clock=clock)
    clock.t += 20.0  # usage 104 MiB
    r = src.apply(_resize("n1-0000", 100 * MiB, "a1"))
    assert r.status is ResultStatus.FAILED and "below current usage" in r.reason
    r = src.apply(_resize("n1-0000", 256 * MiB, "a2"))
    assert r.status is ResultStatus.APPLIED and r.new_limit == 256 * MiB
    clock.t += 30.0  # 164 MiB: no kill under the new limit
    assert src.poll().events == []
    assert src.executions == {"a1": 1, "a2": 1}
    out = src.apply(ScalingAction("a3", 0.0, "n1-0000", Tier.CPU, 1, 2, 0.9, 0.5, 1.0, 2, "t",
                                  kind=ActionKind.SCALE_OUT))
    assert out.status is ResultStatus.FAILED


def test_managed_actor_source_reads_the_listed_pid_of_its_node_only():
    me = os.getpid()
    listed = [{"name": "cache", "pid": me, "node_id": "n1", "cpu_cores": 0.5,
               "memory_bytes": 256 * MiB, "app": "Cache"},
              {"name": "elsewhere", "pid": me, "node_id": "n2", "cpu_cores": 1.0,
               "memory_bytes": 1, "app": "X"}]
    src = ManagedActorSource(lambda: listed, node_id="n1", clock=lambda: 5.0)
    [s] = src.poll().samples
    assert (s.container, s.app, s.memory_limit_bytes, s.cpu_quota_cores) == (
        "cache", "Cache", 256 * MiB, 0.5)
    assert s.memory_usage_bytes > 0 and s.cpu_usage_s_total > 0
    bad = ManagedActorSource(lambda: [{**listed[0], "pid": 2**22 + 7}], node_id="n1")
    b = bad.poll()
    assert b.samples == [] and "cache" in b.errors
    broken = ManagedActorSource(lambda: 1 / 0)
    assert "_managed_actors" in broken.poll().errors
