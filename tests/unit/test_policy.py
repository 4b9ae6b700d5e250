import math

import numpy as np
import pytest

from prescale.app.core.actions import ActionKind, Decision, ScalingAction, action_id_for
from prescale.app.core.cost import CostConfig
from prescale.app.core.guards import Bounds, GuardConfig, guard
from prescale.app.core.policy import (
    PolicyConfig,
    PolicyInput,
    PolicyState,
    decide,
    multi_tier,
    preemptive_buffer,
    proportional,
    target_limit,
)
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier
from prescale.app.settings import CostSettings, PolicySettings

MiB = 2**20
CFG = PolicySettings(margin_fraction=0.25, cooldown_s=10, cpu_step_fraction=0.5)


def pred(mem_p, mem_forecast, mem_limit, cpu_p=(0.0,), cpu_forecast=(0.1,), cpu_limit=(1.0,)):
    n = len(mem_p)
    cpu_p = (cpu_p * n)[:n]
    cpu_forecast = (cpu_forecast * n)[:n]
    cpu_limit = (cpu_limit * n)[:n]

    def tp(p, f, lim):
        return TierPrediction(np.array(p, float), np.full(n, 20.0), np.array(f, float),
                              np.array(lim, float))

    return Prediction(30.0, "test", {Tier.MEMORY: tp(mem_p, mem_forecast, mem_limit),
                                     Tier.CPU: tp(cpu_p, cpu_forecast, cpu_limit)})


def run(p, now=100.0, state=None, thr=0.5):
    n = len(p.tiers[Tier.MEMORY].p_fail)
    names = [f"c{i}" for i in range(n)]
    return preemptive_buffer(PolicyInput(now, names, p, np.full(n, thr)), CFG,
                             state or PolicyState())


def test_worked_example_memory():
    # limit 128 MiB, forecast 160 MiB, p 0.98 -> 160 * 1.25 = 200 MiB
    decisions, state = run(pred([0.98], [160 * MiB], [128 * MiB]))
    mem = [d for d in decisions if d.tier is Tier.MEMORY][0]
    assert mem.action is not None
    assert mem.action.new_limit == 200 * MiB
    assert mem.action.old_limit == 128 * MiB
    assert mem.action.action_id == "c0/memory@100000"
    assert state.last_action_s == {"c0/memory": 100.0}


def test_worked_example_cpu_step():
    # quota 0.25, forecast 0.25, throttled: max(0.3125, 0.375) = 0.375 -> 0.38
    assert target_limit(Tier.CPU, 0.25, 0.25, CFG) == 0.38


def test_below_threshold_no_action():
    decisions, state = run(pred([0.49], [500 * MiB], [128 * MiB]))
    assert all(d.action is None for d in decisions)
    assert "0.49 < threshold 0.50" in decisions[0].reason
    assert state.last_action_s == {}


def test_cooldown_blocks_then_allows():
    p = pred([0.9], [160 * MiB], [128 * MiB])
    _, s1 = run(p, now=100.0)
    d2, s2 = run(p, now=105.0, state=s1)
    assert d2[0].action is None and "cooldown (5.0 s left)" in d2[0].reason
    d3, _ = run(p, now=110.0, state=s2)
    assert d3[0].action is not None


def test_clamped_to_max_and_at_max_no_action():
    big = pred([1.0], [10 * 2**30], [1 * 2**30])
    d, _ = run(big)
    assert d[0].action.new_limit == CFG.memory_max_bytes
    at_max = pred([1.0], [10 * 2**30], [float(CFG.memory_max_bytes)])
    d, _ = run(at_max)
    assert d[0].action is None and "maximum" in d[0].reason


def test_forecast_below_limit_still_grows_by_margin():
    # threshold 0.3 lets p=0.4 act although the forecast is under the limit
    d, _ = run(pred([0.4], [100 * MiB], [128 * MiB]), thr=0.3)
    assert d[0].action.new_limit == 160 * MiB


def test_unlimited_is_left_alone_and_page_rounding():
    d, _ = run(pred([1.0], [1e9], [math.inf]))
    assert d[0].action is None and "no limit" in d[0].reason
    assert target_limit(Tier.MEMORY, 1000.0, 1001.0, PolicySettings(memory_min_bytes=0)) == 4096


# --- the decision core: policies, guards, engine ------------------------------------

GUARDS = GuardConfig(
    min_limit={"memory": 32 * MiB, "cpu": 0.1},
    max_limit={"memory": 2 * 2**30, "cpu": 4.0},
    cooldown_s=10.0,
    hold_s=300.0,
    urgent_p_fail=0.9,
    dead_band_fraction=0.02,
    safety_margin_fraction=0.1,
    max_replicas=5,
    scale_out_cooldown_s=60.0,
)


def conf(**kw):
    kw.setdefault("guards", GUARDS)
    kw.setdefault("cost", CostConfig(enabled=False))
    return PolicyConfig(**kw)


def tp(p, lim, f, ttl=None):
    n = len(p)
    ttl = [20.0] * n if ttl is None else ttl
    return TierPrediction(np.array(p, float), np.array(ttl, float), np.array(f, float),
                          np.array(lim, float))


def make(now=100.0, mem=None, cpu=None, thr=0.5, names=None, **kw):
    tiers = {}
    if mem is not None:
        tiers[Tier.MEMORY] = tp(*mem)
    if cpu is not None:
        tiers[Tier.CPU] = tp(*cpu)
    n = len(next(iter(tiers.values())).p_fail)
    names = names or [f"c{i}" for i in range(n)]
    return PolicyInput(now, names, Prediction(30.0, "test", tiers), np.full(n, thr), **kw)


def ask(inp, container, tier, old, new, p=0.8, kind=ActionKind.RESIZE):
    a = ScalingAction(action_id_for(container, tier, inp.now_s), inp.now_s, container, tier,
                      old, new, p, 0.5, 20.0, new, "ask", kind=kind)
    return Decision(inp.now_s, container, tier, p, 0.5, 20.0, new, old, a, "ask")


def acts(decisions):
    return [d.action for d in decisions if d.action is not None]


def test_buffer_absolute_buffer_worked_example():
    # forecast 160 MiB: max(25% = 40 MiB, 64 MiB) = 64 MiB above it -> 224 MiB
    cfg = conf(buffer_abs={"memory": 64 * MiB})
    d, _ = preemptive_buffer(make(mem=([0.98], [128 * MiB], [160 * MiB])), cfg, PolicyState())
    assert d[0].action.new_limit == 224 * MiB
    assert "buffer 64.0 MiB above 160.0 MiB" in d[0].reason


def test_proportional_worked_example_keeps_headroom_ratio():
    # limit 200, usage 100, forecast 150 MiB, margin 0.1: 200 x 1.5 x 1.1 = 330 MiB
    cfg = conf(margin_fraction=0.1)
    inp = make(mem=([0.9], [200 * MiB], [150 * MiB]), usage={Tier.MEMORY: [100 * MiB]})
    d, state = proportional(inp, cfg, PolicyState())
    assert d[0].action.new_limit == 330 * MiB
    assert d[0].action.kind is ActionKind.RESIZE and d[0].action.preemptive
    assert "load × 1.50" in d[0].reason
    assert state.last_action_s == {"c0/memory": 100.0}
    assert state.last_direction == {"c0/memory": 1}
    # the buffer rule on the same snapshot: max(150, 200) x 1.1 = 220 MiB
    d, _ = preemptive_buffer(inp, cfg, PolicyState())
    assert d[0].action.new_limit == 220 * MiB


def test_proportional_cpu_and_fallback_and_missing_usage():
    # quota 1 core, usage 0.5 -> forecast 0.8: 1 x 1.6 x 1.25 = 2.0 cores (step 1.5 is less)
    inp = make(mem=([0.0, 0.0], [MiB * 128] * 2, [0, 0]),
               cpu=([0.9, 0.9], [1.0, 1.0], [0.8, 0.8]),
               usage={Tier.CPU: [0.5, float("nan")], Tier.MEMORY: [1.0, 1.0]})
    d, _ = proportional(inp, conf(), PolicyState())
    cpu = {x.container: x for x in d if x.tier is Tier.CPU}
    assert cpu["c0"].action.new_limit == 2.0
    # unknown usage: buffer rule, max(0.8, 1) x 1.25 = 1.25 < step 1.5 -> 1.5
    assert cpu["c1"].action.new_limit == 1.5
    assert "fell back to the buffer rule" in cpu["c1"].reason
    with pytest.raises(ValueError, match="PolicyInput.usage"):
        proportional(make(mem=([0.9], [MiB], [MiB])), conf(), PolicyState())


def test_multi_tier_orders_by_time_to_limit_and_sizes_each_tier_by_its_rule():
    # c0: memory ttl 50 s, cpu ttl 10 s; c1: memory ttl 5 s, cpu below threshold
    inp = make(
        mem=([0.6, 0.9], [128 * MiB, 256 * MiB], [160 * MiB, 300 * MiB], [50.0, 5.0]),
        cpu=([0.7, 0.1], [1.0, 1.0], [1.2, 0.2], [10.0, float("nan")]),
        usage={Tier.MEMORY: [100 * MiB, 250 * MiB], Tier.CPU: [0.8, 0.1]},
    )
    d, _ = multi_tier(inp, conf(), PolicyState())
    order = [(a.container, a.tier.value) for a in acts(d)]
    assert order == [("c1", "memory"), ("c0", "cpu"), ("c0", "memory")]
    new = {(a.container, a.tier.value): a.new_limit for a in acts(d)}
    assert new[("c1", "memory")] == 375 * MiB  # buffer: 300 x 1.25
    assert new[("c0", "memory")] == 200 * MiB  # buffer: 160 x 1.25
    assert new[("c0", "cpu")] == 1.88  # proportional: 1 x 1.5 x 1.25 = 1.875 -> 1.88
    c0cpu = next(a for a in acts(d) if a.container == "c0" and a.tier is Tier.CPU)
    assert "bottleneck 1 of 2 by time to limit (cpu 10 s first)" in c0cpu.reason
    assert c0cpu.reason.endswith("bottleneck judged over 2 tiers by time to limit: cpu 10 s "
                                 "(p_fail 0.70), memory 50 s (p_fail 0.60)")
    assert d[-1].container == "c1" and d[-1].tier is Tier.CPU  # unknown ttl last


def test_multi_tier_per_tier_thresholds():
    inp = make(mem=([0.6], [128 * MiB], [160 * MiB]), cpu=([0.7], [1.0], [1.2]),
               usage={Tier.MEMORY: [100 * MiB], Tier.CPU: [0.9]},
               tier_thresholds={Tier.CPU: [0.8]})
    d, _ = multi_tier(inp, conf(), PolicyState())
    by = {x.tier: x for x in d}
    assert by[Tier.MEMORY].action is not None
    assert by[Tier.CPU].action is None and "0.70 < threshold 0.80" in by[Tier.CPU].reason


def test_guard_worked_example_step_and_floor():
    g = GuardConfig(max_step_fraction=0.5, safety_margin_fraction=0.1)
    inp = make(mem=([0.9], [512 * MiB], [0]), usage={Tier.MEMORY: [500 * MiB]})
    d, s = guard(inp, [ask(inp, "c0", Tier.MEMORY, 512 * MiB, 1200 * MiB)], g, PolicyState())
    assert d[0].action.new_limit == 768 * MiB
    assert "max step: +256.0 MiB (50% of the limit)" in d[0].reason
    d, _ = guard(inp, [ask(inp, "c0", Tier.MEMORY, 512 * MiB, 300 * MiB, p=0.0)], g,
                 PolicyState())
    assert d[0].action is None and "cannot lower: 550.0 MiB" in d[0].reason
    inp = make(mem=([0.0], [1024 * MiB], [0]), usage={Tier.MEMORY: [500 * MiB]})
    d, _ = guard(inp, [ask(inp, "c0", Tier.MEMORY, 1024 * MiB, 300 * MiB, p=0.0)], g,
                 PolicyState())
    assert d[0].action.new_limit == 550 * MiB
    assert "safety floor: usage 500.0 MiB × 1.10" in d[0].reason


def test_guard_floor_wins_over_step_for_memory_growth():
    # limit 100 MiB, usage 99 MiB, step 5%: 105 MiB would sit below 99 x 1.1 = 108.9 MiB
    g = GuardConfig(max_step_fraction=0.05, min_limit={}, max_limit={})
    inp = make(mem=([0.9], [100 * MiB], [0]), usage={Tier.MEMORY: [99 * MiB]})
    d, _ = guard(inp, [ask(inp, "c0", Tier.MEMORY, 100 * MiB, 200 * MiB)], g, PolicyState())
    assert d[0].action.new_limit == math.ceil(99 * MiB * 1.1 / 4096) * 4096


def test_guard_per_app_and_per_container_bounds():
    g = GuardConfig(app_bounds={"web": Bounds(max_limit={"memory": 256 * MiB})},
                    container_bounds={"c0": Bounds(max_limit={"memory": 1024 * MiB})})
    inp = make(mem=([0.9] * 3, [128 * MiB] * 3, [0] * 3), apps=["web", "web", ""])
    asks = [ask(inp, c, Tier.MEMORY, 128 * MiB, 4096 * MiB) for c in ("c0", "c1", "c2")]
    d, _ = guard(inp, asks, GuardConfig(**{**g.__dict__, "max_step_fraction": 100.0}),
                 PolicyState())
    assert [x.action.new_limit for x in d] == [1024 * MiB, 256 * MiB, 2048 * MiB]
    assert "clamped to max 256.0 MiB" in d[1].reason
    bad = GuardConfig(container_bounds={"c0": Bounds(min_limit={"memory": 3 * 2**30})})
    d, _ = guard(inp, asks[:1], bad, PolicyState())
    assert d[0].action is None and "conflicting bounds" in d[0].reason


def test_guard_cooldown_is_per_container_and_tier():
    g = GuardConfig(tier_cooldown_s={"cpu": 30.0}, max_limit={"memory": 2**31, "cpu": 4.0})
    i1 = make(now=100.0, mem=([0.9], [128 * MiB], [0]), cpu=([0.9], [1.0], [1.0]))
    _, s = guard(i1, [ask(i1, "c0", Tier.MEMORY, 128 * MiB, 160 * MiB)], g, PolicyState())
    i2 = make(now=101.0, mem=([0.9], [160 * MiB], [0]), cpu=([0.9], [1.0], [1.0]))
    d, s = guard(i2, [ask(i2, "c0", Tier.MEMORY, 160 * MiB, 200 * MiB),
                      ask(i2, "c0", Tier.CPU, 1.0, 1.5)], g, s)
    assert d[0].action is None and "in cooldown (9.0 s left)" in d[0].reason
    assert d[1].action.new_limit == 1.5
    i3 = make(now=120.0, mem=([0.9], [160 * MiB], [0]), cpu=([0.9], [1.5], [1.0]))
    d, _ = guard(i3, [ask(i3, "c0", Tier.MEMORY, 160 * MiB, 200 * MiB),
                      ask(i3, "c0", Tier.CPU, 1.5, 2.0)], g, s)
    assert d[0].action is not None
    assert d[1].action is None and "in cooldown (11.0 s left)" in d[1].reason


def test_guard_hysteresis_hold_and_urgent_override():
    usage = {Tier.MEMORY: [50 * MiB]}

    def at(now, old, new, p, state):
        inp = make(now=now, mem=([p], [old], [0]), usage=usage)
        return guard(inp, [ask(inp, "c0", Tier.MEMORY, old, new, p=p)], GUARDS, state)

    _, s = at(100.0, 256 * MiB, 320 * MiB, 0.8, PolicyState())  # up
    d, s = at(150.0, 320 * MiB, 256 * MiB, 0.0, s)  # down 50 s later: reversal
    assert d[0].action is None
    assert "would reverse the last action (up 50 s ago) within the hold of 300 s" in d[0].reason
    d, s = at(400.0, 320 * MiB, 256 * MiB, 0.0, s)  # after the hold
    assert d[0].action.new_limit == 256 * MiB
    d, _ = at(450.0, 256 * MiB, 320 * MiB, 0.6, s)  # up 50 s after a down, not urgent
    assert d[0].action is None and "(down 50 s ago)" in d[0].reason
    d, _ = at(450.0, 256 * MiB, 320 * MiB, 0.95, s)  # urgent: allowed, said so
    assert d[0].action.new_limit == 320 * MiB
    assert "hold overridden: p_fail 0.95 >= urgent 0.90" in d[0].reason


def test_guard_dead_band_and_unknown_usage_and_floor_blocks():
    small = make(mem=([0.9], [1000 * MiB], [0]), usage={Tier.MEMORY: [500 * MiB]})
    d, _ = guard(small, [ask(small, "c0", Tier.MEMORY, 1000 * MiB, 1010 * MiB)], GUARDS,
                 PolicyState())
    assert d[0].action is None and "below the dead band 20.0 MiB (2%)" in d[0].reason
    # usage 950 MiB: the same small ask is raised to the floor 1045 MiB, beyond the band
    inp = make(mem=([0.9], [1000 * MiB], [0]), usage={Tier.MEMORY: [950 * MiB]})
    d, _ = guard(inp, [ask(inp, "c0", Tier.MEMORY, 1000 * MiB, 1010 * MiB)], GUARDS,
                 PolicyState())
    assert d[0].action.new_limit == 1045 * MiB  # 950 x 1.1
    d, s = guard(inp, [ask(inp, "c0", Tier.MEMORY, 1000 * MiB, 500 * MiB, p=0.0)], GUARDS,
                 PolicyState())
    assert d[0].action is None and "cannot lower" in d[0].reason  # 950 x 1.1 > 1000
    assert s.last_action_s == {}
    blind = make(mem=([0.0], [1000 * MiB], [0]))
    d, _ = guard(blind, [ask(blind, "c0", Tier.MEMORY, 1000 * MiB, 500 * MiB, p=0.0)],
                 GUARDS, PolicyState())
    assert d[0].action is None and "never lowered blind" in d[0].reason
    # limit 3 GiB above the 2 GiB max, usage 1.9 GiB: floor 2.09 GiB > max -> blocked
    big = make(mem=([0.0], [3 * 2**30], [0]), usage={Tier.MEMORY: [1.9 * 2**30]})
    d, _ = guard(big, [ask(big, "c0", Tier.MEMORY, 3 * 2**30, 2**30, p=0.0)], GUARDS,
                 PolicyState())
    assert d[0].action is None
    assert "safety floor 2140.2 MiB is above the max 2048.0 MiB" in d[0].reason
    # a decrease that would still end above the max is not pushed down to it
    big = make(mem=([0.0], [3 * 2**30], [0]), usage={Tier.MEMORY: [2**30]})
    d, _ = guard(big, [ask(big, "c0", Tier.MEMORY, 3 * 2**30, 2.5 * 2**30, p=0.0)], GUARDS,
                 PolicyState())
    assert d[0].action is None
    assert "target 2560.0 MiB is above the max 2048.0 MiB: a limit outside its bounds" in (
        d[0].reason)


def test_escalation_to_scale_out_at_max_or_when_it_does_not_fit():
    mx = 2 * 2**30
    inp = make(mem=([0.95] * 3, [mx, mx, 512 * MiB], [0] * 3), cpu=([0.9] * 3, [4.0] * 3, [0] * 3),
               replicated=[True, False, True], replicas=[3, 1, 5],
               headroom_on_node={Tier.MEMORY: [0.0, 0.0, 10 * MiB]})
    asks = [ask(inp, c, t, old, old * 1.25, p=0.95)
            for c, old_m in (("c0", mx), ("c1", mx), ("c2", 512 * MiB))
            for t, old in ((Tier.MEMORY, old_m), (Tier.CPU, 4.0))]
    d, s = guard(inp, asks, GUARDS, PolicyState())
    c0m, c0c, c1m, _, c2m, _ = d
    assert c0m.action.kind is ActionKind.SCALE_OUT
    assert (c0m.action.old_limit, c0m.action.new_limit) == (3, 4)
    assert c0m.action.action_id == "c0/replicas@100000"
    assert "at the maximum limit 2048.0 MiB: scale out: replicas 3 → 4" in c0m.action.reason
    assert c0c.action is None and "already proposed this tick" in c0c.reason
    assert c1m.action is None and "not replicated: cannot scale out" in c1m.reason
    assert "maximum" in c1m.reason
    assert c2m.action is None and "at max_replicas 5" in c2m.reason
    assert s.last_action_s["c0/replicas"] == 100.0
    # 60 s scale-out cooldown
    later = make(now=130.0, mem=([0.95], [mx], [0]), replicated=[True], replicas=[4])
    d, _ = guard(later, [ask(later, "c0", Tier.MEMORY, mx, mx * 1.25)], GUARDS, s)
    assert d[0].action is None and "scale-out in cooldown (30.0 s left)" in d[0].reason


def test_does_not_fit_on_node_or_pool():
    inp = make(mem=([0.9] * 2, [256 * MiB] * 2, [0] * 2), replicated=[True, False],
               headroom_on_node={Tier.MEMORY: [16 * MiB, float("nan")]},
               pool_free={Tier.MEMORY: 32 * MiB})
    asks = [ask(inp, c, Tier.MEMORY, 256 * MiB, 320 * MiB) for c in ("c0", "c1")]
    d, _ = guard(inp, asks, GUARDS, PolicyState())
    assert d[0].action.kind is ActionKind.SCALE_OUT
    assert "needs +64.0 MiB, node has 16.0 MiB free: scale out" in d[0].reason
    assert d[1].action.kind is ActionKind.RESIZE and d[1].action.new_limit == 320 * MiB
    assert "pool has 32.0 MiB free; not replicated: left to the pool" in d[1].reason


def test_decide_fills_idle_tiers_with_cost_scale_downs_and_up_wins():
    cost = CostConfig(idle_after_s=0.0, step_down_fraction=0.5, peak_margin_fraction=0.2)
    cfg = conf(cost=cost)
    inp = make(mem=([0.9, 0.0], [128 * MiB, 1024 * MiB], [160 * MiB, 0]),
               usage={Tier.MEMORY: [100 * MiB, 100 * MiB]})
    d, s = decide(inp, cfg, PolicyState())
    assert d[0].action.new_limit == 200 * MiB and d[0].action.preemptive
    # idle: max(100 x 1.2, 1024 x 0.5) = 512 MiB; the guard step (100%) allows it
    assert d[1].action.new_limit == 512 * MiB and not d[1].action.preemptive
    assert d[1].reason.startswith("cost: idle for 0 s")
    assert s.last_direction == {"c0/memory": 1, "c1/memory": -1}
    assert s.low_since_s == {"c1/memory": 100.0}
    d2, s2 = decide(inp, cfg, PolicyState())
    assert d2 == d and s2 == s  # deterministic


def test_policy_input_bad_input_names_the_field():
    p = pred([0.5, 0.5], [1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match=r"PolicyInput.thresholds has shape \(3,\)"):
        PolicyInput(1.0, ["a", "b"], p, np.zeros(3))
    with pytest.raises(ValueError, match="duplicate names: \\['a'\\]"):
        PolicyInput(1.0, ["a", "a"], p, np.zeros(2))
    with pytest.raises(ValueError, match=r"PolicyInput.usage\[memory\] has shape \(1,\)"):
        PolicyInput(1.0, ["a", "b"], p, np.zeros(2), usage={Tier.MEMORY: [1.0]})
    with pytest.raises(ValueError, match="now_s must be a finite number"):
        PolicyInput(float("nan"), ["a", "b"], p, np.zeros(2))
    with pytest.raises(ValueError, match="replicas has a negative count"):
        PolicyInput(1.0, ["a", "b"], p, np.zeros(2), replicas=[1, -1])
    inp = PolicyInput(1.0, ["a", "b"], p, np.zeros(2))
    with pytest.raises(ValueError, match="'zz', which is not in PolicyInput.containers"):
        guard(inp, [ask(inp, "zz", Tier.MEMORY, 1.0, 2.0)], GUARDS, PolicyState())


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="PolicyConfig.kind"):
        PolicyConfig(kind="magic")
    with pytest.raises(ValueError, match="multi_tier_methods\\[cpu\\]"):
        PolicyConfig(multi_tier_methods={"cpu": "guess"})
    with pytest.raises(ValueError, match="GuardConfig.max_step_fraction"):
        GuardConfig(max_step_fraction=0)
    with pytest.raises(ValueError, match="min_limit\\[memory\\].*above max_limit"):
        GuardConfig(min_limit={"memory": 2.0}, max_limit={"memory": 1.0})
    with pytest.raises(ValueError, match="CostConfig.idle_usage_fraction"):
        CostConfig(idle_usage_fraction=1.5)


def test_policy_state_round_trip_and_old_checkpoint():
    s = PolicyState({"a/memory": 1.0}, {"a/memory": -1}, {"a/cpu": 0.5}, {"a/cpu": 0.25})
    assert PolicyState.from_dict(s.to_dict()) == s
    assert PolicyState.from_dict({"last_action_s": {"a/memory": 3}}) == PolicyState(
        {"a/memory": 3.0})
    with pytest.raises(ValueError, match="last_direction values must be"):
        PolicyState.from_dict({"last_direction": {"a/memory": 2}})
    with pytest.raises(ValueError, match="PolicyState.low_peak has a non-numeric value"):
        PolicyState.from_dict({"low_peak": {"a/memory": "x"}})


def test_config_from_settings_maps_the_spine_fields():
    c = PolicyConfig.from_settings(PolicySettings(cooldown_s=7, memory_max_bytes=3 * 2**30))
    assert c.kind == "preemptive_buffer" and c.margin_fraction == 0.25
    assert c.guards.cooldown_s == 7
    assert c.guards.bounds_for("x", "", Tier.MEMORY) == (32 * MiB, 3 * 2**30)
    assert c.guards.bounds_for("x", "", Tier.CPU) == (0.1, 1.0)
    assert c.cost == CostConfig()


def test_increase_lost_in_rounding_is_not_proposed():
    inp = make(mem=([0.9], [128 * MiB], [0]), cpu=([0.9], [0.05], [0]))
    d, s = guard(inp, [ask(inp, "c0", Tier.CPU, 0.05, 0.05 + 1e-17)],
                 GuardConfig(min_limit={}, dead_band_fraction=0), PolicyState())
    assert d[0].action is None and "below one rounding unit" in d[0].reason
    assert s.last_action_s == {}


def test_config_from_settings_maps_the_new_fields():
    """Every field of the policy settings (a duck-typed group) and the cost settings,
    mapped 1:1."""
    from types import SimpleNamespace as NS

    policy = NS(
        kind="multi_tier", margin_fraction=0.3, cooldown_s=5.0, cpu_step_fraction=0.4,
        memory_min_bytes=16 * MiB, memory_max_bytes=4 * 2**30, cpu_min_cores=0.2,
        cpu_max_cores=8.0, buffer_memory_bytes=64 * MiB, buffer_cpu_cores=0.25,
        multi_tier_methods={"memory": "proportional"}, multi_tier_margins={"cpu": 0.5},
        max_step_fraction=0.5, max_step_memory_bytes=512 * MiB, max_step_cpu_cores=None,
        tier_cooldown_s={"cpu": 30.0}, hold_s=120.0, urgent_p_fail=None,
        dead_band_fraction=0.05, safety_margin_fraction=0.2, max_replicas=4,
        min_replicas=2, scale_out_cooldown_s=90.0,
        app_bounds={"web": NS(memory_min_bytes=None, memory_max_bytes=MiB * 512,
                              cpu_min_cores=None, cpu_max_cores=None, max_replicas=8)},
        container_bounds={"db-0": {"memory_min_bytes": 256 * MiB}},
    )
    cost = CostSettings(enabled=False, idle_usage_fraction=0.4, idle_after_s=7200.0,
                        idle_p_fail_max=0.1, peak_margin_fraction=0.3, step_down_fraction=0.2,
                        step_interval_s=300.0)
    c = PolicyConfig.from_settings(policy, cost)
    assert (c.kind, c.margin_fraction, c.cpu_step_fraction) == ("multi_tier", 0.3, 0.4)
    assert c.buffer_abs == {"memory": 64 * MiB, "cpu": 0.25}
    assert c.multi_tier_methods == {"memory": "proportional"}
    assert c.multi_tier_margins == {"cpu": 0.5}
    g = c.guards
    assert g.bounds_for("x", "web", Tier.MEMORY) == (16 * MiB, 512 * MiB)
    assert g.bounds_for("db-0", "", Tier.MEMORY) == (256 * MiB, 4 * 2**30)
    assert g.bounds_for("x", "", Tier.CPU) == (0.2, 8.0)
    assert g.max_replicas_for("x", "web") == 8 and g.max_replicas_for("x", "") == 4
    assert g.min_replicas_for("x", "web") == 2
    assert g.max_step_abs == {"memory": 512 * MiB}
    assert (g.max_step_fraction, g.cooldown_s, g.tier_cooldown_s) == (0.5, 5.0, {"cpu": 30.0})
    assert (g.hold_s, g.urgent_p_fail, g.dead_band_fraction) == (120.0, None, 0.05)
    assert (g.safety_margin_fraction, g.scale_out_cooldown_s) == (0.2, 90.0)
    assert c.cost == CostConfig(False, 0.4, 7200.0, 0.1, 0.3, 0.2, 300.0)
