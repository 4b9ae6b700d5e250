"""Idle scale-down (app/core/cost.py) and the resource-hours-saved accumulator."""

import math

import numpy as np
import pytest

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus
from prescale.app.core.cost import (
    CostConfig,
    SavingsLedger,
    accumulate_savings,
    is_low,
    propose_scale_downs,
)
from prescale.app.core.guards import GuardConfig
from prescale.app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide, scale_down_idle
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier

MiB = 2**20
GiB = 2**30
COST = CostConfig(idle_usage_fraction=0.5, idle_after_s=3600, idle_p_fail_max=0.05,
                  peak_margin_fraction=0.2, step_down_fraction=0.1, step_interval_s=600)
CFG = PolicyConfig(guards=GuardConfig(), cost=COST)


def snap(now, limits, usage, p=None, peak=None, tier=Tier.MEMORY, names=None):
    n = len(limits)
    p = [0.01] * n if p is None else p
    tp = TierPrediction(np.array(p, float), np.full(n, np.inf), np.array(usage, float),
                        np.array(limits, float))
    return PolicyInput(
        now, names or [f"c{i}" for i in range(n)], Prediction(30.0, "t", {tier: tp}),
        np.full(n, 0.5), usage={tier: usage},
        peak_usage=None if peak is None else {tier: peak},
    )


def test_worked_example_one_step_down():
    # L 1 GiB, u 100 MiB, input peak 300 MiB, run peak 120 MiB, low since t=0, now 3600 s
    state = PolicyState(low_since_s={"c0/memory": 0.0}, low_peak={"c0/memory": 120 * MiB})
    d, s = propose_scale_downs(snap(3600.0, [GiB], [100 * MiB], peak=[300 * MiB]), COST, state)
    a = d[0].action
    # max(300 x 1.2 = 360 MiB, 0.9 GiB = 921.6 MiB) rounded up to a page
    assert a.new_limit == math.ceil(0.9 * GiB / 4096) * 4096 == 966369280
    assert a.old_limit == GiB and a.kind is ActionKind.RESIZE and not a.preemptive
    assert "idle for 3600 s" in a.reason and "never below peak 300.0 MiB × 1.20" in a.reason
    assert s.low_since_s == {"c0/memory": 0.0} and s.low_peak == {"c0/memory": 120 * MiB}


def test_low_run_starts_continues_and_ends():
    _, s = propose_scale_downs(snap(0.0, [GiB], [100 * MiB]), COST, PolicyState())
    assert s.low_since_s == {"c0/memory": 0.0}
    d, s = propose_scale_downs(snap(1800.0, [GiB], [200 * MiB]), COST, s)
    assert d[0].action is None and "low for 1800 s of 3600 s" in d[0].reason
    assert s.low_peak == {"c0/memory": 200 * MiB}
    d, s = propose_scale_downs(snap(2000.0, [GiB], [600 * MiB]), COST, s)
    assert "not idle: usage 600.0 MiB is 59% of the limit (>= 50%)" in d[0].reason
    assert s.low_since_s == {} and s.low_peak == {}
    d, s = propose_scale_downs(snap(2100.0, [GiB], [100 * MiB], p=[0.2]), COST, s)
    assert "not idle: p_fail 0.20 > 0.05" in d[0].reason and s.low_since_s == {}
    d, _ = propose_scale_downs(snap(2200.0, [math.inf], [100 * MiB]), COST, s)
    assert "no limit set" in d[0].reason
    # a container that leaves the snapshot loses its run
    _, s = propose_scale_downs(snap(0.0, [GiB, GiB], [1.0, 1.0]), COST, PolicyState())
    assert set(s.low_since_s) == {"c0/memory", "c1/memory"}
    _, s = propose_scale_downs(snap(1.0, [GiB], [1.0], names=["c1"]), COST, s)
    assert set(s.low_since_s) == {"c1/memory"}


def test_converges_to_peak_plus_margin_gradually_and_counts_savings():
    """Tick every 300 s; one 10 % step per 600 s once idle for 1 h; the limit goes
    1024 → 921.6 → … → 396.7 → 360 MiB (= peak 300 × 1.2) and stays."""
    limit, state, ledger = float(GiB), PolicyState(), SavingsLedger()
    history = []
    for k in range(0, 40):
        now = 300.0 * k
        d, state = scale_down_idle(snap(now, [limit], [100 * MiB], peak=[300 * MiB]), CFG,
                                   state)
        a = d[0].action
        ledger = accumulate_savings(ledger, now, [a] if a else [])
        if a is not None:
            assert a.new_limit >= 360 * MiB and a.new_limit >= limit * 0.9
            history.append((now, a.new_limit))
            limit = a.new_limit
    assert [t for t, _ in history] == [3600.0 + 600 * j for j in range(10)]
    assert limit == 360 * MiB
    assert "at peak 300.0 MiB × 1.20" in d[0].reason
    # savings = Σ (1 GiB − limit) × dt, integrated tick by tick
    expected, prev, cur = 0.0, None, float(GiB)
    changes = dict(history)
    for k in range(40):
        now = 300.0 * k
        if prev is not None:
            expected += (GiB - cur) * (now - prev)
        cur = changes.get(now, cur)
        prev = now
    assert ledger.saved_hours()["memory"] == pytest.approx(expected / 3600, rel=1e-12)
    assert ledger.reduction == {"c0/memory": GiB - 360 * MiB}


def test_memory_is_never_lowered_below_usage_plus_margin():
    # peak margin 0 and a 100 % step ask for the usage itself; the guard floors it
    cfg = PolicyConfig(cost=CostConfig(idle_after_s=0, peak_margin_fraction=0,
                                       step_down_fraction=1.0),
                       guards=GuardConfig(min_limit={}, max_step_fraction=1.0))
    d, _ = scale_down_idle(snap(0.0, [220 * MiB], [105 * MiB]), cfg, PolicyState())
    assert d[0].action.new_limit == 115.5 * MiB  # 105 x 1.1, on a page boundary
    assert "safety floor: usage 105.0 MiB × 1.10" in d[0].reason


def test_cpu_steps_down_too_and_respects_step_interval():
    cfg = PolicyConfig(cost=CostConfig(idle_after_s=3600, tier_idle_after_s={"cpu": 0.0},
                                       step_interval_s=600))
    d, s = scale_down_idle(snap(0.0, [1.0], [0.1], tier=Tier.CPU), cfg, PolicyState())
    assert d[0].action.new_limit == 0.9  # max(0.1 x 1.2, 1.0 x 0.9)
    d, s = scale_down_idle(snap(300.0, [0.9], [0.1], tier=Tier.CPU), cfg, s)
    assert d[0].action is None and "next step down in 300 s" in d[0].reason
    d, s = scale_down_idle(snap(600.0, [0.9], [0.1], tier=Tier.CPU), cfg, s)
    assert d[0].action.new_limit == 0.81


def test_scale_down_waits_for_the_hysteresis_hold_after_a_scale_up():
    cfg = PolicyConfig(cost=CostConfig(idle_after_s=0, step_interval_s=0),
                       guards=GuardConfig(hold_s=300))
    state = PolicyState(last_action_s={"c0/memory": 0.0}, last_direction={"c0/memory": 1})
    d, _ = decide(snap(100.0, [GiB], [100 * MiB]), cfg, state)
    assert d[0].action is None and "would reverse the last action (up 100 s ago)" in d[0].reason
    d, _ = decide(snap(300.0, [GiB], [100 * MiB]), cfg, state)
    assert d[0].action is not None


def test_savings_ledger_worked_example():
    def res(old, new, status=ResultStatus.APPLIED):
        return ActionResult("id", "c0", Tier.MEMORY, status, old, new, "")

    led = accumulate_savings(SavingsLedger(), 0.0, [res(GiB, 768 * MiB)])
    assert led.reduction == {"c0/memory": 256 * MiB} and led.saved_hours() == {"memory": 0.0}
    led = accumulate_savings(led, 1800.0, [res(768 * MiB, 512 * MiB)])
    assert led.saved_hours() == {"memory": 128 * MiB}
    led = accumulate_savings(led, 3600.0, [res(512 * MiB, 640 * MiB)])
    assert led.saved_hours() == {"memory": 384 * MiB}
    assert led.reduction == {"c0/memory": 384 * MiB}
    assert SavingsLedger.from_dict(led.to_dict()) == led
    # a scale-up larger than what was saved takes it back to 0 (never negative)
    led2 = accumulate_savings(led, 3600.0, [res(640 * MiB, 2 * GiB)])
    assert led2.reduction == {}
    # CPU in core·h: 2 → 1 core for 2 h = 2 core·h
    cpu = ActionResult("id", "w", Tier.CPU, ResultStatus.APPLIED, 2.0, 1.0, "")
    led3 = accumulate_savings(accumulate_savings(SavingsLedger(), 0.0, [cpu]), 7200.0)
    assert led3.saved_hours() == {"cpu": 2.0}


def test_savings_ledger_drops_gone_containers_and_survives_time_going_back():
    a = ActionResult("id", "a", Tier.MEMORY, ResultStatus.APPLIED, 2.0 * GiB, GiB, "")
    b = ActionResult("id", "b", Tier.MEMORY, ResultStatus.APPLIED, 2.0 * GiB, GiB, "")
    led = accumulate_savings(SavingsLedger(), 0.0, [a, b])
    led = accumulate_savings(led, 3600.0, live=["a"])
    assert led.saved_hours() == {"memory": GiB} and set(led.reduction) == {"a/memory"}
    # a clock stepped back between runs: nothing integrated, the interval restarts there
    back = accumulate_savings(led, 10.0)
    assert back.saved_hours() == led.saved_hours() and back.last_s == 10.0
    assert back.reduction == led.reduction
    later = accumulate_savings(back, 10.0 + 3600.0)  # then one more hour of 1 GiB
    assert later.saved_hours() == {"memory": 2 * GiB}
    with pytest.raises(ValueError, match="now_s must be finite"):
        accumulate_savings(led, math.nan)
    with pytest.raises(ValueError, match="malformed checkpoint"):
        SavingsLedger.from_dict({"reduction": {"a/memory": "lots"}})


def test_scale_outs_and_unchanged_results_are_not_savings():
    from prescale.app.core.actions import ScalingAction

    out = ScalingAction("x", 0.0, "c0", Tier.MEMORY, 2, 3, 0.9, 0.5, 1.0, 1.0, "",
                        kind=ActionKind.SCALE_OUT)
    dry = ActionResult("id", "c0", Tier.MEMORY, ResultStatus.DRY_RUN, GiB, GiB, "")
    led = accumulate_savings(SavingsLedger(), 0.0, [out, dry])
    assert led.reduction == {}


def test_tier_overrides_idle_after_and_margin():
    """CPU is scaled down after an hour at peak × 1.2 by default (a quota too low
    throttles), memory after three days at peak × 2 (a limit too low kills)."""
    c = CostConfig()
    assert (c.idle_after_for(Tier.CPU), c.peak_margin_for(Tier.CPU)) == (3600.0, 0.2)
    assert (c.idle_after_for(Tier.MEMORY), c.peak_margin_for(Tier.MEMORY)) == (259_200.0, 1.0)
    with pytest.raises(ValueError, match=r"tier_idle_after_s\[cpu\]"):
        CostConfig(tier_idle_after_s={"cpu": -1.0})


def test_a_limit_never_reaches_zero():
    # an idle CPU tier using nothing, with no lower bound and a 100 % step
    cfg = PolicyConfig(cost=CostConfig(idle_after_s=0, step_down_fraction=1.0,
                                       peak_margin_fraction=0.0, tier_idle_after_s={},
                                       tier_peak_margin_fraction={}),
                       guards=GuardConfig(min_limit={}))
    d, s = scale_down_idle(snap(0.0, [0.5], [0.0], tier=Tier.CPU), cfg, PolicyState())
    assert d[0].action is None and "a limit of 0 or less is never set" in d[0].reason
    assert s.last_action_s == {}


# -- reclaim candidates under contention ----------------------------------------------


def test_reclaim_worked_example_keeps_the_long_peak_plus_margin():
    # the module docstring: limit 1600 MiB, u 180 MiB, long peak 614 MiB (an hourly
    # burst), run peak 200 MiB, low for 600 s ≥ reclaim_after_s 300 s
    from prescale.app.core.cost import reclaim_candidates

    cfg = CostConfig(peak_margin_fraction=0.2, reclaim_after_s=300)
    state = PolicyState(low_since_s={"c0/memory": 0.0}, low_peak={"c0/memory": 200 * MiB})
    inp = snap(600.0, [1600 * MiB], [180 * MiB])
    [c] = reclaim_candidates(inp, cfg, GuardConfig(), state,
                             long_peak={Tier.MEMORY: np.array([614 * MiB])})
    assert (c.container, c.tier, c.limit) == ("c0", Tier.MEMORY, 1600 * MiB)
    assert c.floor == math.ceil(614 * MiB * 1.2 / 4096) * 4096  # 736.8 MiB, page-rounded
    # without the long peak the run peak decides: 200 MiB × 1.2 = 240 MiB
    [c] = reclaim_candidates(inp, cfg, GuardConfig(), state)
    assert c.floor == 240 * MiB


def test_reclaim_needs_a_long_enough_low_run_a_low_tick_and_room_below_the_limit():
    from prescale.app.core.cost import reclaim_candidates

    cfg = CostConfig(reclaim_after_s=300)
    state = PolicyState(low_since_s={"c0/memory": 0.0})
    g = GuardConfig()
    assert reclaim_candidates(snap(299.0, [GiB], [100 * MiB]), cfg, g, state) == []  # too soon
    assert reclaim_candidates(snap(300.0, [GiB], [100 * MiB], p=[0.5]), cfg, g, state) == []
    assert reclaim_candidates(snap(300.0, [GiB], [600 * MiB]), cfg, g, state) == []  # not low
    # the peak × margin is not below the limit: nothing to give
    assert reclaim_candidates(snap(300.0, [GiB], [100 * MiB]), cfg, g, state,
                              long_peak={Tier.MEMORY: np.array([900.0 * MiB])}) == []
    assert reclaim_candidates(snap(300.0, [GiB], [100 * MiB]),
                              CostConfig(enabled=False), g, state) == []
    # the lower bound wins over the peak: min 512 MiB for this container
    from prescale.app.core.guards import Bounds

    g2 = GuardConfig(container_bounds={"c0": Bounds({"memory": 512 * MiB}, {})})
    [c] = reclaim_candidates(snap(300.0, [GiB], [100 * MiB]), cfg, g2, state)
    assert c.floor == 512 * MiB


@pytest.mark.parametrize("usage_mib,peak_mib,floor_mib", [(100, 10, 110), (300, 0, 330),
                                                           (50, 400, 400)])
def test_reclaim_floor_never_below_usage_plus_safety_margin(usage_mib, peak_mib, floor_mib):
    from prescale.app.core.cost import reclaim_candidates

    cfg = CostConfig(reclaim_margin_fraction=0.0, reclaim_after_s=0, idle_usage_fraction=0.5)
    state = PolicyState(low_since_s={"c0/memory": 0.0})
    g = GuardConfig(safety_margin_fraction=0.1, min_limit={"memory": 0.0})
    [c] = reclaim_candidates(snap(10.0, [GiB], [usage_mib * MiB]), cfg, g, state,
                             long_peak={Tier.MEMORY: np.array([peak_mib * MiB])})
    assert c.floor >= usage_mib * MiB * 1.1 - 1  # (float rounding of the product)
    assert c.floor == floor_mib * MiB  # max(usage × 1.1, peak × 1.0)


def test_is_low_worked_example_and_it_is_what_the_cost_pass_reads():
    """The one "is low" test (defaults 0.5 and 0.05): vectorised, and the low runs of
    the cost pass start exactly where it says."""
    cfg = CostConfig()
    limit = [GiB, GiB, GiB, GiB, GiB, np.inf, 0.0]
    usage = [100 * MiB, 600 * MiB, 100 * MiB, 100 * MiB, np.nan, 100 * MiB, 0.0]
    p = [0.01, 0.01, 0.1, np.nan, 0.01, 0.01, 0.01]
    want = [True, False, False, False, False, False, False]
    assert is_low(limit, usage, p, cfg).tolist() == want
    assert bool(is_low(GiB, 512 * MiB - 1, 0.05, cfg)) and not is_low(GiB, 512 * MiB, 0.0, cfg)
    names = [f"c{i}" for i in range(len(limit))]
    _, state = propose_scale_downs(snap(0.0, limit, usage, p=p, names=names), cfg,
                                   PolicyState())
    assert sorted(state.low_since_s) == [f"c{i}/memory" for i, w in enumerate(want) if w]
