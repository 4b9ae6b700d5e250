"""The OOM response (app/core/oom.py): the bump, the floor, the loop breaker — the
module docstring's worked example, then through the policy and the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus
from prescale.app.core.engine import Engine, EngineConfig, Snapshot
from prescale.app.core.oom import OomConfig, OomState, bump_target
from prescale.app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Event, EventKind, Sample, Tier
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.settings import Settings

MiB = 2**20
CFG = OomConfig()  # min bump 100 MiB, ratio 1.2, loop 3 in 3600 s, loop ratio 2


def test_bump_worked_example_compounds_and_breaks_the_loop() -> None:
    state = OomState()
    limit = 512 * MiB
    steps = []
    for t in (0.0, 600.0, 1200.0):
        k = state.record_kills(t, {"c": 1}, CFG)["c"]
        new, how = bump_target(CFG, limit, limit, math.nan, k)
        steps.append((k, round(new / MiB, 1), how))
        state.settle(t, "c", new, CFG)
        limit = new
    assert steps[0][:2] == (1, 614.4) and "× 1.2^1" in steps[0][2]
    assert steps[1][:2] == (2, 884.7)
    assert steps[2][:2] == (3, 1769.5) and "kill loop × 2" in steps[2][2]
    # the last bump is the floor for a day, then it expires
    assert state.floors(1200.0 + 86_399, ["c", "d"]) == [pytest.approx(limit), 0.0]
    assert state.floors(1200.0 + 86_400, ["c"]) == [0.0]
    # a kill an hour and more after the last one starts a new window
    assert state.record_kills(1200.0 + 3600.0, {"c": 1}, CFG)["c"] == 1


def test_bump_is_at_least_the_vpa_and_restores_a_scale_down() -> None:
    # small limits: +100 MiB wins over × 1.2 (the VPA's OOMMinBumpUp)
    new, how = bump_target(CFG, 256 * MiB, 0.0, math.nan, 1)
    assert new == 356 * MiB and how.startswith("VPA floor")
    # the forecast wins when it is above
    assert bump_target(CFG, 256 * MiB, 0.0, 400 * MiB, 1)[0] == 500 * MiB
    # a kill after a scale-down from 2 GiB gives the 2 GiB back at once
    new, how = bump_target(CFG, 512 * MiB, 512 * MiB, math.nan, 1, limit_peak=2048 * MiB)
    assert new == 2048 * MiB and how.startswith("back to its limit")


def test_state_round_trips_and_refuses_garbage() -> None:
    s = OomState()
    s.record_kills(10.0, {"a": 2}, CFG)
    s.settle(10.0, "a", 700.0 * MiB, CFG)
    s.flagged["a"] = "kill loop"
    assert OomState.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="OomState: malformed"):
        OomState.from_dict({"floor": {"a": "x"}})
    with pytest.raises(ValueError, match="loop_kills"):
        OomConfig(loop_kills=0)


def _inp(kills: list[int], limits_mib: list[float], usage_mib: list[float], **kw) -> PolicyInput:
    n = len(kills)
    lim = np.array(limits_mib) * MiB
    mem = TierPrediction(p_fail=np.zeros(n), time_to_limit_s=np.full(n, np.nan),
                         forecast=np.full(n, np.nan), limit=lim)
    cpu = TierPrediction(p_fail=np.zeros(n), time_to_limit_s=np.full(n, np.nan),
                         forecast=np.full(n, np.nan), limit=np.ones(n))
    pred = Prediction(horizon_s=60.0, model="test", tiers={Tier.MEMORY: mem, Tier.CPU: cpu})
    names = [f"c{i}" for i in range(n)]
    return PolicyInput(1000.0, names, pred, np.full(n, 0.5),
                       usage={Tier.MEMORY: np.array(usage_mib) * MiB, Tier.CPU: np.zeros(n)},
                       oom_kills=np.array(kills), **kw)


def test_decide_bumps_a_killed_container_through_its_cooldown() -> None:
    cfg = PolicyConfig()
    inp = _inp([1, 0], [512, 512], [512, 100])
    state = PolicyState(last_action_s={"c0/memory": 995.0}, last_direction={"c0/memory": 1})
    decisions, _ = decide(inp, cfg, state)
    (bump,) = [d for d in decisions if d.action is not None and d.container == "c0"]
    assert bump.action.cause == "oom" and bump.action.new_limit == pytest.approx(
        614.4 * MiB, abs=4096)
    assert "OOM kill (1 within 3600 s)" in bump.reason
    assert decisions[0] is bump  # the answer to a kill goes first


def test_a_kill_loop_scales_out_a_replicated_container() -> None:
    inp = _inp([3], [512], [512], replicated=np.array([True]), replicas=np.array([2.0]))
    decisions, _ = decide(inp, PolicyConfig(), PolicyState())
    (d,) = [d for d in decisions if d.action is not None]
    assert d.action.kind is ActionKind.SCALE_OUT and d.action.new_limit == 3
    assert "kill loop: 3 OOM kills" in d.reason


def test_the_floor_holds_against_an_idle_scale_down() -> None:
    # c0 is idle by every cost rule, but an OOM bump made its 1 GiB a floor
    inp = _inp([0], [1024], [50], floor={Tier.MEMORY: np.array([1024.0 * MiB])})
    from prescale.app.core.cost import CostConfig
    cfg = PolicyConfig(cost=CostConfig(idle_after_s=0.0))
    state = PolicyState(low_since_s={"c0/memory": 0.0}, low_peak={"c0/memory": 50.0 * MiB})
    decisions, _ = decide(inp, cfg, state)
    down = [d for d in decisions if d.container == "c0" and d.tier == Tier.MEMORY]
    assert down and down[0].action is None
    assert "stabilisation floor" in down[0].reason
    # without the floor the same input scales down
    free = _inp([0], [1024], [50])
    decisions, _ = decide(free, cfg, state)
    assert any(d.action is not None and d.action.new_limit < 1024 * MiB for d in decisions)


def _samples(name: str, t: float, usage: float, limit: float, kills: float) -> Sample:
    return Sample(container=name, ts_s=t, memory_usage_bytes=usage,
                  memory_working_set_bytes=usage, memory_limit_bytes=limit,
                  oom_kills_total=kills, cpu_usage_s_total=t * 0.1, cpu_quota_cores=1.0)


def test_engine_bumps_on_the_event_holds_the_floor_and_flags_a_loop() -> None:
    from prescale.app.core.ring import RingBuffer

    s = Settings(mode="auto", policy={"cooldown_s": 600.0})
    engine = Engine(EngineConfig.from_settings(s))
    book = ThresholdBook()
    ring = RingBuffer(12)
    limit = 512.0 * MiB
    flagged = {}
    for k in range(12):
        t = 1000.0 + 10 * k
        kill = k in (8, 9, 10)
        ring.push(_samples("w", t, 100.0 * MiB if kill else 200.0 * MiB, limit,
                           float(sum(1 for j in (8, 9, 10) if j <= k))))
        names, window = ring.window(["w"])
        events = [Event("w", t, EventKind.OOM_KILL, "test", "app")] if kill else []
        plan = engine.plan(Snapshot(t, names, ["app"], window, events), book)
        for a in plan.asks:
            engine.settle(t, [(a, ActionResult(a.action_id, a.container, a.tier,
                                               ResultStatus.APPLIED, a.old_limit,
                                               a.new_limit, "ok"))], names)
            limit = a.new_limit
        flagged.update(plan.flagged)
        if kill:
            assert plan.asks and plan.asks[0].cause == "oom", plan.decisions
    assert limit > 1500 * MiB  # three kills in 30 s: 512 → 614 → 885 → 1770 MiB
    assert "kill loop: 3 OOM kills" in flagged["w"]
    assert engine.state.oom.floor["w"][0] == limit
    # the state survives a checkpoint
    from prescale.app.core.engine import EngineState
    again = EngineState.from_dict(engine.state.to_dict(), engine.config)
    assert again.oom == engine.state.oom


def test_grew_steadily_tells_a_leak_from_a_burst() -> None:
    from prescale.app.core.oom import grew_steadily

    assert grew_steadily([200, 260, 320, 380, 440, 500], 512)
    assert not grew_steadily([200, 200, 200, 200, 200, 300, 450, 500], 512)  # a ramp
    assert not grew_steadily([200, 201, 202, 203, 204, 205], 512)  # rises too little
    assert not grew_steadily([200, 300, 400], 512)  # too few readings


def _run_killed(load: str):
    """A container of one app killed at 512 MiB, then restarted: a leak (memory rose
    over the whole window, restarts at 210 MiB) or a burst (flat, then a ramp; restarts
    into the same load at 480 MiB). Returns the engine and the flags it raised."""
    from prescale.app.core.ring import RingBuffer

    engine = Engine(EngineConfig.from_settings(Settings(mode="auto")))
    book, ring = ThresholdBook(), RingBuffer(12)
    limit, kills = 512.0 * MiB, 0.0
    if load == "leak":
        before = [200 + 30 * k for k in range(11)]  # 200 → 500 MiB
        after = [0, 210, 215, 220]
    else:
        before = [200] * 7 + [300, 400, 450, 500, 505]
        after = [0, 480, 490, 470]
    flags = {}
    t = 1000.0
    for k, mib in enumerate(before + [100] + after):
        kill = k == len(before)
        kills += kill
        t += 30.0
        ring.push(_samples("w", t, mib * MiB, limit, kills))
        names, window = ring.window(["w"])
        events = [Event("w", t, EventKind.OOM_KILL, "test", "app")] if kill else []
        plan = engine.plan(Snapshot(t, names, ["app"], window, events), book)
        for a in plan.asks:
            if a.tier is Tier.MEMORY and a.cause == "oom":
                engine.settle(t, [(a, ActionResult(a.action_id, "w", a.tier,
                                                   ResultStatus.APPLIED, a.old_limit,
                                                   a.new_limit, "ok"))], names)
                limit = a.new_limit
        flags.update(plan.flagged)
    return engine, flags


def test_a_leak_that_restarts_low_is_a_runaway_and_loses_its_floor() -> None:
    engine, flags = _run_killed("leak")
    assert "runaway" in flags["w"] and "restarted at 220.0 MiB" in flags["w"]
    assert "w" not in engine.state.oom.floor  # its grant may be reclaimed
    # its long peak restarted from the post-restart usage, not the leak's 512 MiB
    assert engine.state.peaks.peak(Tier.MEMORY)[0] < 300 * MiB


def test_a_killed_burst_is_not_a_runaway_and_keeps_its_floor() -> None:
    engine, flags = _run_killed("burst")
    assert "w" not in flags
    assert engine.state.oom.floor["w"][0] > 512 * MiB
    assert engine.state.peaks.peak(Tier.MEMORY)[0] >= 480 * MiB
