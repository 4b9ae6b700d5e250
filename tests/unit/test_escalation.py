"""Vertical → horizontal: a vertical ask the pool denies (its node is full) becomes a
scale-out in the same tick where the container has replicas, within its max_replicas
and scale-out cooldown; never for a container without replicas or a workload held back.
Worked example of :func:`app.core.guards.escalate_denied`, then the live tick."""

from __future__ import annotations

import numpy as np

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.engine import EngineConfig
from prescale.app.core.guards import GuardConfig, escalate_denied
from prescale.app.core.policy_types import PolicyInput, PolicyState
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier
from prescale.app.loop.tick import Tick
from prescale.app.settings import Settings
from tests.loop_ports import MemAllocator, MiB, leak_window, mem_ports, shard


def _inp(replicas):
    one = lambda v: np.array([float(v)])  # noqa: E731
    pred = Prediction(30.0, "t", {Tier.MEMORY: TierPrediction(one(0.9), one(20), one(700 * MiB),
                                                              one(512 * MiB))})
    return PolicyInput(100.0, ["web"], pred, np.array([0.5]), apps=["web"],
                       replicated=np.array([replicas is not None]),
                       replicas=None if replicas is None else np.array([float(replicas)]))


ASK = ScalingAction("web/memory@100000", 100.0, "web", Tier.MEMORY, 512 * MiB, 768 * MiB,
                    0.9, 0.5, 20.0, 700 * MiB, "p_fail 0.90 >= 0.50", app="web")
WHY = "pool: needs 256.0 MiB, 100.0 MiB free of 4096.0 MiB grantable"


def test_escalate_denied_worked_example():
    cfg = GuardConfig(max_replicas=4)
    out, notes, state = escalate_denied(_inp(2), [(ASK, WHY)], cfg, PolicyState())
    (a,) = out
    assert (a.kind, a.old_limit, a.new_limit) == (ActionKind.SCALE_OUT, 2, 3)
    assert a.reason == (f"p_fail 0.90 >= 0.50; denied by the pool ({WHY}): the vertical ask "
                        "does not fit its node: scale out: replicas 2 → 3")
    assert notes == [] and state.last_action_s == {"web/replicas": 100.0}
    # at its max, in cooldown, or without replicas: not escalated, and said why
    out, notes, _ = escalate_denied(_inp(4), [(ASK, WHY)], cfg, PolicyState())
    assert out == [] and notes == ["web: not escalated to a scale-out: the vertical ask does "
                                   "not fit its node; at max_replicas 4"]
    out, notes, _ = escalate_denied(_inp(2), [(ASK, WHY)], cfg, state)
    assert out == [] and "scale-out in cooldown (60.0 s left)" in notes[0]
    assert escalate_denied(_inp(None), [(ASK, WHY)], cfg, PolicyState())[:2] == ([], [])


def _tick(ports, **settings):
    s = Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                 **({"policy": {"cooldown_s": 0.0}} | settings))
    return Tick(EngineConfig.from_settings(s), ports, run_id="r", mode="auto",
                window_steps=12, now=lambda: 0.0)


def _ports(replicas):
    ports = mem_ports()
    ports.allocator = MemAllocator(memory_bytes=270 * MiB)  # 14 MiB free: short of the forecast
    ports.telemetry.next = [shard(leak_window(), replicas=replicas)]  # w leaks to its limit
    return ports


def test_a_denied_vertical_ask_becomes_a_scale_out_in_the_same_tick():
    """The pool then decides the scale-out like any ask: on this one full node a third
    replica needs 256 MiB more, so it is denied too, and the log says both."""
    ports = _ports({"w": 2})
    summary = _tick(ports).run_once()
    actions = {r["action_kind"]: r for r in ports.journal.records if r["kind"] == "action"}
    assert actions["resize"]["result"] == "denied"
    out = actions["scale_out"]
    assert (out["old_limit"], out["new_limit"], out["result"]) == (2, 2, "denied")
    assert "denied by the pool (denied #1: needs 99.0 MiB memory" in out["reason"]
    assert ("the vertical ask does not fit its node: scale out: replicas 2 → 3; denied #1: "
            "needs 512.0 MiB memory on node local") in out["reason"]
    assert summary["actions"] == ["denied", "denied"]


def test_no_escalation_without_replicas_at_the_max_or_when_held_back():
    for replicas, settings in (({}, {}),
                               ({"w": 2}, {"policy": {"cooldown_s": 0.0, "max_replicas": 2}}),
                               ({"w": 2}, {"workloads": [{"name": "w", "container": "w",
                                                          "controlled": ["cpu"]}]})):
        ports = _ports(replicas)
        s = Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                     **({"policy": {"cooldown_s": 0.0}} | settings))
        Tick(EngineConfig.from_settings(s), ports, run_id="r", mode="auto", window_steps=12,
             now=lambda: 0.0).run_once()
        assert not [r for r in ports.journal.records if r["kind"] == "action"
                    and r["action_kind"] == "scale_out"], (replicas, settings)


class _TwoNodes(MemAllocator):
    """The pool of two nodes: n1 (where w runs) as full as in the test above, n2 empty."""

    def __init__(self):
        super().__init__()
        from prescale.app.core.pool import ZERO, Capacity, Pool

        self.pool = Pool({"n1": Capacity(270 * MiB, 64.0), "n2": Capacity(4096 * MiB, 64.0)},
                         reserve=ZERO)

    def observe(self, limits, now_s, nodes, node_of, replicas) -> None:
        for c, by_tier in limits.items():
            for t, v in by_tier.items():
                self.pool.observe(c, Tier(t), v, node=node_of.get(c), replicas=replicas.get(c))


def test_on_a_full_node_the_escalated_replica_spills_to_another_node():
    """The same denied vertical ask, but the pool has a second node with room: the
    scale-out is granted there, and the pool says where the replica went and why."""
    ports = _ports({"w": 2})
    ports.allocator = _TwoNodes()
    _tick(ports).run_once()
    actions = {r["action_kind"]: r for r in ports.journal.records if r["kind"] == "action"}
    assert actions["resize"]["result"] == "denied"
    out = actions["scale_out"]
    assert (out["old_limit"], out["new_limit"], out["result"]) == (2, 3, "applied")
    assert "on node n2 (spilled: node n1 has" in out["reason"]
    assert ports.allocator.pool.spilled == {"w": {"n2": 1}}


def _idle_window(steps: int = 12, t0: float = 1_700_000_000.0):
    """One replica's window of ``w``: 60 MiB of a 256 MiB limit, 0.05 of 1 core."""
    from prescale.app.core.sample import Sample

    rows = [Sample("w", t0 + 5.0 * k, memory_usage_bytes=60 * MiB,
                   memory_working_set_bytes=60 * MiB, memory_limit_bytes=256 * MiB,
                   cpu_usage_s_total=0.25 * k, cpu_quota_cores=1.0).row()
            for k in range(steps)]
    return np.array(rows, dtype=float)[None]


def test_idle_replicas_are_scaled_in_through_the_tick_and_the_pool():
    """4 idle replicas (the run counted from the first tick: scale_in_after_s 0, this
    test's setting): the tick scales in 4 → 3, the pool releases one replica's memory
    and CPU, and the journal says why; min_replicas 4 holds them all."""
    ports = mem_ports()
    ports.allocator = _TwoNodes()
    ports.telemetry.next = [shard(_idle_window(), replicas={"w": 4})]
    _tick(ports, cost={"scale_in_after_s": 0.0}).run_once()
    (out,) = [r for r in ports.journal.records if r["kind"] == "action"]
    assert (out["action_kind"], out["old_limit"], out["new_limit"], out["result"]) == (
        "scale_out", 4, 3, "applied")
    assert "scale-in: replicas idle for 0 s: replicas 4 → 3" in out["reason"]
    assert "pool: released 256.0 MiB and 1.00 cores on node n1" in out["reason"]
    ports = mem_ports()
    ports.telemetry.next = [shard(_idle_window(), replicas={"w": 4})]
    _tick(ports, cost={"scale_in_after_s": 0.0}, policy={"cooldown_s": 0.0,
                                                          "min_replicas": 4}).run_once()
    assert not [r for r in ports.journal.records if r["kind"] == "action"]
