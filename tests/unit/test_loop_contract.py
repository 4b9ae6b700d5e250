"""The ports' contract (tests/loop_contract.py) for the simulated world of `evaluate`
and the in-memory ports the tick's unit tests use. The live loop's Ray ports pass the
same checks in tests/integration/test_loop_contract_ray.py."""

from __future__ import annotations

import math

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.contention import ContentionConfig
from prescale.app.core.sample import Tier
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.evaluation import scenarios
from prescale.app.evaluation.world import SimWorld
from tests.loop_contract import check_actuation, check_telemetry
from tests.loop_ports import MemActuation, MemTelemetry, leak_window, shard

MiB = 2**20


def _action(c: str, new: float, now: float = 1.0) -> ScalingAction:
    return ScalingAction(f"{c}/memory@{now}", now, c, Tier.MEMORY, 512 * MiB, new, 0.9, 0.5,
                         math.nan, math.nan, "test", ActionKind.RESIZE, "app")


def test_the_simulated_world_keeps_the_contract():
    s = scenarios.leak(n=2, hours=1.0)
    w = SimWorld(s, "preemptive_buffer", window_steps=10, contention=ContentionConfig())
    ports = w.ports(ThresholdBook())
    for k in range(3):
        w.begin(k)
        shards = check_telemetry(ports.telemetry, 10)
        assert [sh.names for sh in shards] == [list(s.names)]
    acts = [_action("leak-0", 600 * MiB), _action("leak-1", 700 * MiB)]
    check_actuation(ports.actuation, acts, {a.container: "sim" for a in acts},
                    _action("nobody", 1 * MiB))
    assert list(w.mem_lim) == [600 * MiB, 700 * MiB]  # applied once, from step k + 1
    assert len(w.rec.actions) == 2


def test_the_in_memory_ports_keep_the_contract():
    t = MemTelemetry()
    t.next = [shard(leak_window())]
    check_telemetry(t, 12)
    acts = [_action("w", 600 * MiB)]
    check_actuation(MemActuation(), acts, {"w": "n1"}, _action("nobody", 1 * MiB))
