"""Idle scale-down (app/core/cost.py) and the resource-hours-saved accumulator."""

import math
from collections.abc import Mapping

import numpy as np
import pytest

from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    Decision,
    ResultStatus,
    ScalingAction,
    action_id_for,
)
from prescale.app.core.contention import ReclaimCandidate
from prescale.app.core.cost import (
    SCALED_DOWN,
    CostConfig,
    SavingsLedger,
    accumulate_savings,
    is_low,
    propose_scale_downs,
)
from prescale.app.core.guards import GuardConfig
from prescale.app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide, scale_down_idle
from prescale.app.core.policy_types import fmt, key_of, round_up
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier

MiB = 2**20
GiB = 2**30
COST = CostConfig(idle_usage_fraction=0.5, idle_after_s=3600, idle_p_fail_max=0.05,
                  peak_margin_fraction=0.2, step_down_fraction=0.1, step_interval_s=600)
CFG = PolicyConfig(guards=GuardConfig(), cost=COST)


def snap(now, limits, usage, p=None, peak=None, tier=Tier.MEMORY, names=None, forecast=None,
         horizon_s=30.0):
    """One tier's snapshot; the forecast is the usage (flat) unless given."""
    n = len(limits)
    p = [0.01] * n if p is None else p
    tp = TierPrediction(np.array(p, float), np.full(n, np.inf),
                        np.array(usage if forecast is None else forecast, float),
                        np.array(limits, float))
    return PolicyInput(
        now, names or [f"c{i}" for i in range(n)], Prediction(horizon_s, "t", {tier: tp}),
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


# -- the column-wise pass is the per-row one ------------------------------------------


def test_usage_unknown_and_revert_reasons():
    """The branches the other tests leave: usage unknown; a pre-emptive raise reverted
    (to max(the limit before it, long peak × (1 + reclaim margin)), before any step down)
    once ``revert_after_s`` has passed since the last action, and not before."""
    d, _ = propose_scale_downs(snap(0.0, [GiB], [math.nan]), COST, PolicyState())
    assert d[0].reason == "cost: usage unknown" and d[0].action is None
    cfg = CostConfig(idle_after_s=3600, revert_after_s=900, reclaim_margin_fraction=0.2)
    state = PolicyState(last_action_s={"c0/memory": 0.0}, raised_from={"c0/memory": 256 * MiB})
    d, _ = propose_scale_downs(snap(1000.0, [GiB], [100 * MiB], peak=[300 * MiB]), cfg, state)
    a = d[0].action
    assert a.new_limit == 360 * MiB and a.cause == "idle" and not a.preemptive  # 300 × 1.2
    assert a.reason == d[0].reason == (
        "cost: revert: the pre-emptive raise from 256.0 MiB was not needed (usage 100.0 MiB "
        "never reached it, p_fail 0.01): back to 360.0 MiB (never below the long peak "
        "300.0 MiB × 1.20)")
    d, s = propose_scale_downs(snap(800.0, [GiB], [100 * MiB]), cfg, state)  # not yet due
    assert d[0].action is None and d[0].reason.startswith("cost: low for 0 s of 3600 s")
    assert s.raised_from == state.raised_from
    # not low (usage 60 %) but calm: the revert still applies, to the peak × margin
    d, _ = propose_scale_downs(snap(1000.0, [GiB], [600 * MiB]), cfg, state)
    assert d[0].action.new_limit == math.ceil(600 * MiB * 1.2 / 4096) * 4096
    # the long peak needs the raised limit: no revert, the usage reason
    d, _ = propose_scale_downs(snap(1000.0, [GiB], [600 * MiB], peak=[900 * MiB]), cfg, state)
    assert d[0].action is None and d[0].reason.startswith("cost: not idle: usage 600.0 MiB")


def test_revert_held_while_the_forecast_needs_the_raise():
    """A ramping container keeps its pre-emptive raise: the revert is held while
    ⌈forecast × (1 + reclaim margin)⌉ is above the revert target (module docstring,
    "Revert", the held example: cpu_saturation's ramp), and the reason says so; the same
    container with a flat forecast is reverted as before, and so is the ramp once it
    levels off. (The code before the hold reverted the ramp to 1.16 cores.)"""
    cfg = CostConfig(idle_after_s=3600, revert_after_s=900, reclaim_margin_fraction=0.2)
    state = PolicyState(last_action_s={"c0/cpu": 0.0}, raised_from={"c0/cpu": 1.0})

    def at(forecast, usage=0.965):
        inp = snap(900.0, [1.5], [usage], peak=[usage], tier=Tier.CPU, forecast=[forecast],
                   horizon_s=900.0)
        full, _ = propose_scale_downs(inp, cfg, state)
        acting, _ = propose_scale_downs(inp, cfg, state, acting_only=True)
        assert repr(acting) == repr([d for d in full if d.action is not None])
        return full[0]

    d = at(1.086)  # T = ⌈max(1.0, 0.965 × 1.2 = 1.158)⌉ = 1.16; ⌈1.086 × 1.2⌉ = 1.31 > 1.16
    assert d.action is None
    assert d.reason == (
        "cost: revert held: usage 0.96 cores is forecast to reach 1.09 cores within 900 s; "
        "× 1.20 that needs 1.31 cores, above the revert target 1.16 cores: the pre-emptive "
        "raise from 1.00 cores is kept")
    # through the policy too: no scale-down, the raise stays
    pol = PolicyConfig(guards=GuardConfig(), cost=cfg)
    inp = snap(900.0, [1.5], [0.965], peak=[0.965], tier=Tier.CPU, forecast=[1.086],
               horizon_s=900.0)
    assert all(x.action is None for x in decide(inp, pol, state, sparse=True)[0])
    assert scale_down_idle(inp, pol, state)[0][0].reason.startswith("cost: revert held: ")
    # flat (the forecast is the usage) and levelled off (⌈0.96 × 1.2⌉ = 1.16 = T): reverted
    for flat in (0.965, 0.96):
        d = at(flat)
        assert d.action.new_limit == 1.16 and d.reason.startswith("cost: revert: ")
    # the forecast unknown (a model without one): reverted as before
    assert at(math.nan).action.new_limit == 1.16
    # memory during a slow leak: held while the leak is forecast past the target
    mem = PolicyState(last_action_s={"c0/memory": 0.0}, raised_from={"c0/memory": 256 * MiB})
    d, _ = propose_scale_downs(snap(1000.0, [GiB], [250 * MiB], forecast=[330 * MiB],
                                    horizon_s=900.0), cfg, mem)
    assert d[0].action is None  # T = 300 MiB; 330 × 1.2 = 396 MiB > 300 MiB
    assert d[0].reason.startswith("cost: revert held: usage 250.0 MiB is forecast to reach "
                                  "330.0 MiB within 900 s; × 1.20 that needs 396.0 MiB")
    d, _ = propose_scale_downs(snap(1000.0, [GiB], [250 * MiB], horizon_s=900.0), cfg, mem)
    assert d[0].action.new_limit == 300 * MiB  # flat: 250 × 1.2


def _random_case(seed: int):
    """A snapshot, state and configs that reach every branch of the cost pass and of
    the reclaim (limits inf, 0, nan; usage nan, missing, -0.0; p_fail nan or high; runs
    young, waiting, at peak, due; raises to revert; ints in the state; a "/" in a name;
    runs of other tiers, replicas and gone containers; bounds, OOM floors, labels)."""
    from prescale.app.core.guards import Bounds

    rng = np.random.default_rng(seed)
    n = 80
    names = [f"c{i}" if i % 9 else f"ns/c{i}" for i in range(n)]
    now = 1_000_000.0 + seed
    tiers, usage, peak, thr, floor = {}, {}, {}, {}, {}
    for tier, unit in ((Tier.MEMORY, GiB), (Tier.CPU, 1.0), (Tier.DISK, GiB)):
        limit = rng.choice([0.25, 0.5, 1.0, 2.0, 3.3], n) * unit
        odd = rng.random(n)
        limit[odd < 0.04] = np.inf
        limit[(odd >= 0.04) & (odd < 0.07)] = 0.0
        limit[(odd >= 0.07) & (odd < 0.09)] = np.nan
        u = np.nan_to_num(limit, posinf=unit) * rng.choice([0.003, 0.1, 0.3, 0.49, 0.6, 0.9], n)
        u[rng.random(n) < 0.05] = np.nan
        u[rng.random(n) < 0.03] = -0.0
        p = rng.choice([0.0, 0.004, 0.01, 0.03, 0.05, 0.2, 1.0, np.nan], n,
                       p=[0.2, 0.1, 0.2, 0.15, 0.1, 0.1, 0.1, 0.05])
        p += rng.uniform(0, 1e-3, n) * (rng.random(n) < 0.5)  # some exact, some not
        tiers[tier] = TierPrediction(p, rng.uniform(0, 3600, n), u * 1.1, limit)
        if not (tier == Tier.CPU and seed % 4 == 3):  # sometimes no CPU usage at all
            usage[tier] = u
        pk = u * rng.choice([1.0, 1.5, 3.0, 6.0], n)
        pk[rng.random(n) < 0.1] = np.nan
        peak[tier] = pk
        thr[tier] = rng.uniform(0.3, 0.7, n)
        floor[tier] = np.where(rng.random(n) < 0.1, 0.6 * np.nan_to_num(limit), 0.0)
    keys = [f"{c}/{t}" for c in names for t in ("memory", "cpu", "disk", "replicas")]
    keys += ["gone/memory", "gone/cpu"]
    pick = [k for k in keys if rng.random() < 0.6]
    rng.shuffle(pick)  # the state's order is not the containers'
    ages = [0.0, 100.0, 299.0, 300.0, 3599.0, 3600.0, 259_200.0, 300_000.0]
    state = PolicyState(
        last_action_s={k: now - float(rng.choice([0.0, 100.0, 599.0, 600.0, 899.0, 900.0,
                                                   5000.0]))
                       for k in keys if rng.random() < 0.3},
        low_since_s={k: (now - float(rng.choice(ages))) if j % 11 else
                     (int(now) - 300_000 if j % 2 else math.nan) for j, k in enumerate(pick)},
        low_peak={k: float(rng.uniform(0, 2 * GiB)) if j % 5 else int(rng.integers(0, GiB))
                  for j, k in enumerate(pick) if rng.random() < 0.7},
        raised_from={k: float(rng.choice([0.1, 0.3, 0.5, 4.0])) * (GiB if "/memory" in k else 1.0)
                     for k in keys if rng.random() < 0.15},
    )
    apps = None if seed % 3 == 0 else [f"app{i % 4}" for i in range(n)]
    labels = None if seed % 2 else [{"team": f"t{i % 3}"} for i in range(n)]
    inp = PolicyInput(now, names, Prediction(30.0, "t", tiers), rng.uniform(0.3, 0.7, n),
                      apps=apps, labels=labels, usage=usage,
                      peak_usage=None if seed % 5 == 4 else peak,
                      tier_thresholds=None if seed % 2 else thr,
                      floor=None if seed % 3 == 1 else floor)
    cost = CostConfig(idle_after_s=float(rng.choice([0.0, 3600.0, 259_200.0])),
                      peak_margin_fraction=float(rng.choice([0.0, 0.2, 1.0])),
                      step_down_fraction=float(rng.choice([0.1, 0.5])), step_interval_s=600.0,
                      revert_after_s=float(rng.choice([0.0, 900.0])),
                      reclaim_after_s=float(rng.choice([0.0, 300.0])),
                      tier_idle_after_s={"cpu": 3600.0} if seed % 2 else {},
                      tier_peak_margin_fraction={"cpu": 0.2} if seed % 2 else {})
    guards = GuardConfig(
        container_bounds={names[1]: Bounds({"memory": 900 * MiB}, {})} if seed % 2 else {},
        app_bounds={"app1": Bounds({"cpu": 0.7}, {})} if seed % 3 else {})
    long_peak = None if seed % 4 == 0 else {
        t: np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 1.5, n) * GiB
                    * (1 if t != Tier.CPU else 1 / GiB)) for t in (Tier.MEMORY, Tier.CPU)}
    return inp, cost, guards, state, long_peak


@pytest.mark.parametrize("seed", range(16))
def test_column_wise_cost_pass_and_reclaim_are_the_per_row_ones(seed):
    """propose_scale_downs and reclaim_candidates give exactly (repr: every field, every
    float, the int kept in the state, the order) what the per-row code they replaced
    gives (kept below as the specification)."""
    from prescale.app.core.cost import reclaim_candidates

    inp, cost, guards, state, long_peak = _random_case(seed)
    want, want_state = _ref_propose_scale_downs(inp, cost, state)
    got, got_state = propose_scale_downs(inp, cost, state)
    assert repr(got) == repr(want)  # (== would fail on nan: not equal to itself)
    assert repr(got_state) == repr(want_state)
    # acting_only (what decide reads): the decisions with an action, the same state
    acting, acting_state = propose_scale_downs(inp, cost, state, acting_only=True)
    assert repr(acting) == repr([d for d in want if d.action is not None])
    assert repr(acting_state) == repr(want_state)
    for st in (state, got_state):  # any order of the runs, and this tick's
        want_r = _ref_reclaim_candidates(inp, cost, guards, st, long_peak=long_peak)
        got_r = reclaim_candidates(inp, cost, guards, st, long_peak=long_peak)
        assert repr(got_r) == repr(want_r)


def test_the_random_cases_reach_every_branch():
    """What the equivalence test above covers: every reason of the cost pass, a
    scale-down and a revert, and reclaim candidates kept and dropped."""
    from prescale.app.core.cost import reclaim_candidates

    branches = {"cost: no limit set": False, "cost: usage unknown": False,
                "cost: not idle: p_fail": False, "cost: not idle: usage": False,
                "cost: low for": False, "; next step down in": False,
                "but the limit is at peak": False, "): step down to": True,
                "cost: revert: ": True, "cost: revert held: ": False}  # text → with an action
    seen, kept, dropped = set(), 0, 0
    for seed in range(16):
        inp, cost, guards, state, long_peak = _random_case(seed)
        got, new_state = propose_scale_downs(inp, cost, state)
        for d in got:
            seen |= {(t, d.action is not None) for t in branches if t in d.reason}
        out = reclaim_candidates(inp, cost, guards, new_state, long_peak=long_peak)
        kept, dropped = kept + len(out), dropped + len(new_state.low_since_s) - len(out)
    assert set(branches.items()) <= seen, set(branches.items()) - seen
    assert kept > 0 and dropped > 0


def test_round_up_and_fmt_column_wise_are_round_up_and_fmt():
    from prescale.app.core.cost import _TWO_PLACES, _texts
    from prescale.app.core.policy_types import fmt_all, format_each, round_up_array

    rng = np.random.default_rng(0)
    v = np.concatenate([
        [0.0, -0.0, 1e-12, -1e-12, -0.5, 0.375, 0.38, 0.005, 1001.0, 4096.0, 4096.0 * 3 + 1e-6,
         0.1 + 0.2, 1e300, 1.5e300, -1e301, np.inf, -np.inf, np.nan, 2.0**53, 2.0**60 + 1.0],
        rng.uniform(0, 4, 500), rng.uniform(0, 2**34, 500), np.round(rng.uniform(0, 4, 200), 2),
        np.round(rng.uniform(0, 2**20, 200)) * 4096, -rng.uniform(0, 10, 50)])
    for tier in ("memory", "cpu", "disk", "network", "io", "gpu"):
        want = [round_up(tier, x) for x in v.tolist()]
        got = round_up_array(tier, v).tolist()
        assert repr(got) == repr(want), tier  # every bit, -0.0 and nan included
        assert fmt_all(tier, v) == [fmt(tier, x) for x in v.tolist()], tier
    assert round_up_array("memory", np.array([1001.0, 4096.0, np.inf])).tolist() == [
        4096.0, 4096.0, np.inf]  # the docstring's worked examples
    assert round_up_array("cpu", np.array([0.375, 0.38, -0.001])).tolist() == [0.38, 0.38, 0.0]
    assert _texts(np.array([1.0, 0.5, 1.0]), _TWO_PLACES) == ["1.00", "0.50", "1.00"]
    assert _texts(np.array([0.0, -0.0]), _TWO_PLACES) == ["0.00", "-0.00"]
    assert fmt_all("memory", np.array([])) == []
    assert format_each("%.1f", [1.25, 2.0]) == ["1.2", "2.0"]  # its worked example


def test_build_fills_every_field_as_the_constructor():
    """_build makes the objects the constructor makes, for the three classes the cost
    pass builds; a field left out (a new field not filled there) raises."""
    from itertools import repeat

    from prescale.app.core.cost import _build

    a = ScalingAction("c/memory@1", 1.0, "c", Tier.MEMORY, 1.0, 2.0, 0.6, 0.5, 3.0, 4.0, "r",
                      ActionKind.RESIZE, "web", False, "idle")
    cols = {f: [getattr(a, f)] * 2 for f in ScalingAction.__dataclass_fields__}
    assert _build(ScalingAction, 2, **cols) == [a, a]
    assert repr(_build(ScalingAction, 2, **cols)) == repr([a, a])
    d = Decision(1.0, "c", Tier.MEMORY, 0.6, 0.5, 3.0, 4.0, 1.0, a, "r")
    cols = {f: repeat(getattr(d, f)) for f in Decision.__dataclass_fields__}
    assert _build(Decision, 3, **cols) == [d] * 3
    r = ReclaimCandidate("c", Tier.CPU, 2.0, 1.0, "web")
    built = _build(ReclaimCandidate, 1, container=["c"], tier=[Tier.CPU], limit=[2.0],
                   floor=[1.0], app=["web"])
    assert built == [r] and repr(built) == repr([r]) and vars(built[0]) == vars(r)
    with pytest.raises(KeyError):
        _build(ReclaimCandidate, 1, container=["c"], tier=[Tier.CPU], limit=[2.0], floor=[1.0])
    with pytest.raises(TypeError, match="no field"):
        _build(ReclaimCandidate, 1, container=["c"], tier=[Tier.CPU], limit=[2.0],
               floor=[1.0], app=["web"], extra=[1])
    with pytest.raises(ValueError, match="2 values for 1"):
        _build(ReclaimCandidate, 1, container=["c", "d"], tier=[Tier.CPU], limit=[2.0],
               floor=[1.0], app=["web"])


# The per-row cost pass and reclaim as they were before they went column-wise
# (commit 12fa8b3), verbatim but for the revert held by the forecast (added later, in
# _ref_revert and where its reason is used): the specification the tests above hold
# them to.


def _ref_tier_usage(inp, tier):
    u = inp.usage.get(tier) if inp.usage else None
    return np.full(len(inp.containers), np.nan) if u is None else u


def _ref_propose_scale_downs(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """One decision per container and tier of ``inp.prediction``: a scale-down of the
    idle ones (unguarded: pass the result through :func:`app.core.guards.guard`), and
    the state with the low-usage runs updated. Runs of containers not in the snapshot
    are dropped.
    """
    now = inp.now_s
    low_since: dict[str, float] = {}
    low_peak: dict[str, float] = {}
    decisions: list[Decision] = []
    for tier, tp in inp.prediction.tiers.items():
        if tier not in SCALED_DOWN:
            continue
        tier_text = f"{tier}"  # key_of(name, tier), with the tier formatted once
        lows = is_low(tp.limit, _ref_tier_usage(inp, tier), tp.p_fail, cfg).tolist()
        for i, name in enumerate(inp.containers):
            key = f"{name}/{tier_text}"
            p = float(tp.p_fail[i])
            limit = float(tp.limit[i])
            usage = inp.usage_of(tier, i)
            action = None
            if not (math.isfinite(limit) and limit > 0):
                reason = "cost: no limit set: nothing to scale down"
            elif not math.isfinite(usage):
                reason = "cost: usage unknown"
            elif not p <= cfg.idle_p_fail_max:
                reason = f"cost: not idle: p_fail {p:.2f} > {cfg.idle_p_fail_max:.2f}"
            else:
                low = lows[i]
                if low:
                    since = state.low_since_s.get(key, now)
                    run_peak = max(state.low_peak.get(key, usage), usage)
                    low_since[key], low_peak[key] = since, run_peak
                action, reason, held = _ref_revert(inp, cfg, state, i, tier, limit, usage, p,
                                                   key)
                if action is None and low:
                    action, idle_reason = _ref_step_down(inp, cfg, state, i, tier, limit,
                                                         usage, p, now - since, run_peak, key)
                    reason = reason if held and action is None else idle_reason
                elif action is None and not held:
                    reason = (f"cost: not idle: usage {fmt(tier, usage)} is {usage / limit:.0%} "
                              f"of the limit (>= {cfg.idle_usage_fraction:.0%})")
            decisions.append(Decision(
                now, name, tier, p, inp.threshold_of(tier, i), float(tp.time_to_limit_s[i]),
                float(tp.forecast[i]), limit, action, reason,
            ))
    new_state = PolicyState(
        last_action_s=dict(state.last_action_s),
        last_direction=dict(state.last_direction),
        low_since_s=low_since,
        low_peak=low_peak,
        raised_from=dict(state.raised_from),
    )
    return decisions, new_state


def _ref_revert(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, tier: Tier,
    limit: float, usage: float, p: float, key: str,
) -> tuple[ScalingAction | None, str, bool]:
    """Undo a pre-emptive raise that was not needed (module docstring, "Revert"), unless
    the forecast holds it (added with the hold: the third value)."""
    base = state.raised_from.get(key)
    if base is None or not base < limit:
        return None, "", False
    last = state.last_action_s.get(key)
    if last is not None and inp.now_s - last < cfg.revert_after_s:
        return None, (f"cost: raised from {fmt(tier, base)} {inp.now_s - last:.0f} s ago; "
                      f"reverted if still not needed after {cfg.revert_after_s:g} s"), False
    peak_in = inp.peak_of(tier, i)
    peak = max(usage, peak_in if math.isfinite(peak_in) else 0.0)
    target = round_up(tier, max(base, peak * (1 + cfg.reclaim_margin_fraction)))
    if not target < limit:
        return None, (f"cost: raised from {fmt(tier, base)}, but the long peak "
                      f"{fmt(tier, peak)} × {1 + cfg.reclaim_margin_fraction:.2f} needs it"
                      ), False
    forecast = float(inp.prediction.tiers[tier].forecast[i])
    need = round_up(tier, forecast * (1 + cfg.reclaim_margin_fraction))
    if math.isfinite(forecast) and need > target:
        return None, (
            f"cost: revert held: usage {fmt(tier, usage)} is forecast to reach "
            f"{fmt(tier, forecast)} within {inp.prediction.horizon_s:g} s; × "
            f"{1 + cfg.reclaim_margin_fraction:.2f} that needs {fmt(tier, need)}, above the "
            f"revert target {fmt(tier, target)}: the pre-emptive raise from "
            f"{fmt(tier, base)} is kept"), True
    return (*_ref_down_action(
        inp, i, tier, limit, target, p,
        f"cost: revert: the pre-emptive raise from {fmt(tier, base)} was not needed (usage "
        f"{fmt(tier, usage)} never reached it, p_fail {p:.2f}): back to {fmt(tier, target)} "
        f"(never below the long peak {fmt(tier, peak)} × "
        f"{1 + cfg.reclaim_margin_fraction:.2f})"), False)


def _ref_step_down(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, tier: Tier,
    limit: float, usage: float, p: float, idle_for_s: float, run_peak: float,
    key: str | None = None,
) -> tuple[ScalingAction | None, str]:
    name, now = inp.containers[i], inp.now_s
    key = key_of(name, tier) if key is None else key
    low = (f"usage {fmt(tier, usage)} < {cfg.idle_usage_fraction:.0%} of limit "
           f"{fmt(tier, limit)}, p_fail {p:.2f} <= {cfg.idle_p_fail_max:.2f}")
    idle_after = cfg.idle_after_for(tier)
    if idle_for_s < idle_after:
        return None, f"cost: low for {idle_for_s:.0f} s of {idle_after:g} s ({low})"
    last = state.last_action_s.get(key)
    if last is not None and now - last < cfg.step_interval_s:
        wait = cfg.step_interval_s - (now - last)
        return None, f"cost: idle ({low}); next step down in {wait:.0f} s"
    peak_in = inp.peak_of(tier, i)
    peak = max(run_peak, usage, peak_in if math.isfinite(peak_in) else 0.0)
    margin = cfg.peak_margin_for(tier)
    keep = peak * (1 + margin)
    target = round_up(tier, max(keep, limit * (1 - cfg.step_down_fraction)))
    if target >= limit:
        return None, (f"cost: idle ({low}) but the limit is at peak {fmt(tier, peak)} × "
                      f"{1 + margin:.2f}")
    reason = (f"cost: idle for {idle_for_s:.0f} s ({low}): step down to {fmt(tier, target)} "
              f"(at most {cfg.step_down_fraction:.0%}; never below peak {fmt(tier, peak)} × "
              f"{1 + margin:.2f})")
    return _ref_down_action(inp, i, tier, limit, target, p, reason)


def _ref_down_action(inp: PolicyInput, i: int, tier: Tier, limit: float, target: float, p: float,
                 reason: str) -> tuple[ScalingAction, str]:
    tp = inp.prediction.tiers[tier]
    name, now = inp.containers[i], inp.now_s
    action = ScalingAction(
        action_id=action_id_for(name, tier, now),
        now_s=now,
        container=name,
        tier=tier,
        old_limit=limit,
        new_limit=target,
        p_fail=p,
        threshold=inp.threshold_of(tier, i),
        time_to_limit_s=float(tp.time_to_limit_s[i]),
        forecast=float(tp.forecast[i]),
        reason=reason,
        kind=ActionKind.RESIZE,
        app=inp.app_of(i),
        preemptive=False,
        cause="idle",
    )
    return action, reason


def _ref_reclaim_candidates(
    inp: PolicyInput, cfg: CostConfig, guards: GuardConfig, state: PolicyState, *,
    long_peak: Mapping[Tier, np.ndarray] | None = None,
) -> list[ReclaimCandidate]:
    """The containers and tiers that may be shrunk to serve others under contention
    (module docstring, "Reclaim"): low now, low for at least ``cfg.reclaim_after_s``
    according to ``state`` (the state :func:`propose_scale_downs` returned this tick),
    and a floor below the limit. ``long_peak``: tier → ``[N]`` highest usage in the
    last ``cfg.long_peak_s`` (nan = unknown). Empty when ``cfg.enabled`` is false
    (the low runs are only kept by the cost pass)."""
    if not cfg.enabled:
        return []
    out: list[ReclaimCandidate] = []
    now = inp.now_s
    pos = {name: i for i, name in enumerate(inp.containers)}
    for tier, tp in inp.prediction.tiers.items():
        if tier not in SCALED_DOWN:
            continue
        tier_text = f"{tier}"
        peaks = (long_peak or {}).get(tier)
        lows: list[bool] | None = None
        for key, since in state.low_since_s.items():
            name, _, t = key.rpartition("/")
            if t != tier_text or now - since < cfg.reclaim_after_s:
                continue
            i = pos.get(name)
            if i is None:
                continue
            if lows is None:
                lows = is_low(tp.limit, _ref_tier_usage(inp, tier), tp.p_fail, cfg).tolist()
            if not lows[i]:
                continue  # not low this tick (the run is kept only while it is)
            limit, usage = float(tp.limit[i]), inp.usage_of(tier, i)
            peak = max(state.low_peak.get(key, usage), usage)
            if peaks is not None and math.isfinite(float(peaks[i])):
                peak = max(peak, float(peaks[i]))
            app = inp.app_of(i)
            lo, _ = guards.bounds_for(name, app, tier_text, inp.labels_of(i))
            safety = guards.floor_for(tier_text, usage)
            floor = round_up(tier, max(peak * (1 + cfg.reclaim_margin_fraction),
                                       safety if math.isfinite(safety) else math.inf, lo,
                                       inp.floor_of(tier_text, i)))
            if floor < limit:
                out.append(ReclaimCandidate(name, tier, limit, floor, app))
    return out

