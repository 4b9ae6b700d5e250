import math

import numpy as np

from app.core.policy import PolicyInput, PolicyState, preemptive_buffer, target_limit
from app.core.predictor import Prediction, TierPrediction
from app.core.sample import Tier
from app.settings import PolicySettings

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
