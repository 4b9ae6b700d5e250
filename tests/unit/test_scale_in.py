"""Scale-in of idle replicas (app/core/scale_in.py and the guards' step 7): the worked
examples, min_replicas from every level (labels included), the hold after a scale-out,
and a property test: whatever the usage, limits, long peaks and floors, a scale-in never
leaves fewer than min_replicas nor fewer than the long peak of the total usage needs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.app.core.actions import ActionKind
from prescale.app.core.cost import CostConfig
from prescale.app.core.guards import Bounds, GuardConfig
from prescale.app.core.policy import PolicyConfig, decide
from prescale.app.core.policy_types import PolicyInput, PolicyState
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier
from prescale.app.core.scale_in import replicas_needed
from prescale.app.core.workloads import from_labels
from prescale.app.settings import Settings

MiB = 2**20
NOW = 10_000.0


def _inp(replicas, cpu_used, *, cpu_limit=1.0, demand_cpu=math.nan, mem_used=100 * MiB,
         mem_limit=1024 * MiB, demand_mem=math.nan, p_fail=0.0, labels=None):
    one = lambda v: np.array([float(v)])  # noqa: E731
    tiers = {Tier.MEMORY: TierPrediction(one(p_fail), one(math.inf), one(mem_used),
                                         one(mem_limit)),
             Tier.CPU: TierPrediction(one(p_fail), one(math.inf), one(cpu_used),
                                      one(cpu_limit))}
    return PolicyInput(NOW, ["web"], Prediction(30.0, "t", tiers), np.array([0.5]),
                       apps=["web"], labels=None if labels is None else [labels],
                       usage={Tier.MEMORY: one(mem_used), Tier.CPU: one(cpu_used)},
                       replicated=np.array([True]), replicas=one(replicas),
                       demand_peak={Tier.MEMORY: one(demand_mem), Tier.CPU: one(demand_cpu)})


def _cfg(step_interval_s=600.0, **guards):
    return PolicyConfig(guards=GuardConfig(**guards),
                        cost=CostConfig(step_interval_s=step_interval_s))


def _idle_since(s):
    return PolicyState(low_since_s={"web/replicas": NOW - s})


def _scale_in(decisions):
    return [d.action for d in decisions if d.action is not None
            and d.action.kind is ActionKind.SCALE_OUT]


def test_replicas_needed_worked_example():
    # (a) 0.8 / 0.5 = 1.6 → strictly more → 2; (b) 2.4 × 1.2 = 2.88 → 3
    assert replicas_needed(0.8, 2.4, 1.0, 0.2, 0.5) == 3
    assert replicas_needed(0.8, math.nan, 1.0, 0.2, 0.5) == 2  # no long peak: the load
    assert replicas_needed(0.0, 0.0, 1.0, 0.2, 0.5) == 1


def test_the_module_worked_example_4_to_3_then_held():
    """4 replicas at 0.2 cores each, the long peak of the total 2.4 cores, margin 0.2."""
    decisions, state = decide(_inp(4, 0.2, demand_cpu=2.4), _cfg(), _idle_since(900))
    (a,) = _scale_in(decisions)
    assert (a.old_limit, a.new_limit, a.cause, a.tier) == (4, 3, "idle", Tier.CPU)
    assert "scale-in: replicas idle for 900 s: replicas 4 → 3" in a.reason
    assert state.last_action_s["web/replicas"] == NOW and state.last_direction[
        "web/replicas"] == -1
    # ten minutes later at 3 (0.27 cores each): the long peak needs 3
    later = PolicyInput(**{**_inp(3, 0.8 / 3, demand_cpu=2.4).__dict__, "now_s": NOW + 600})
    decisions, _ = decide(later, _cfg(), state)
    assert _scale_in(decisions) == []


def test_not_before_scale_in_after_s_nor_while_busy():
    assert _scale_in(decide(_inp(4, 0.2), _cfg(), _idle_since(899))[0]) == []
    # one replica's load above half its limit: not idle, and the run is reset
    d, state = decide(_inp(4, 0.6), _cfg(), _idle_since(5000))
    assert _scale_in(d) == [] and "web/replicas" not in state.low_since_s


def test_min_replicas_from_every_level_labels_first():
    # global 3: 4 → 3 fine, 3 → 2 blocked
    d, _ = decide(_inp(4, 0.1), _cfg(min_replicas=3), _idle_since(900))
    assert [a.new_limit for a in _scale_in(d)] == [3]
    d, _ = decide(_inp(3, 0.1), _cfg(min_replicas=3), _idle_since(900))
    (blocked,) = [x for x in d if "scale-in" in x.reason]
    assert blocked.action is None and "blocked: replicas 3: at min_replicas 3" in blocked.reason
    # the app's bound below the global one wins; a label wins over both
    cfg = _cfg(min_replicas=3, app_bounds={"web": Bounds(min_replicas=2)})
    assert [a.new_limit for a in _scale_in(decide(_inp(3, 0.1), cfg, _idle_since(900))[0])] == [2]
    lab = {"prescale.min-replicas": "3"}
    d, _ = decide(_inp(3, 0.1, labels=lab), cfg, _idle_since(900))
    assert _scale_in(d) == []


def test_a_scale_out_is_not_reversed_within_the_hold():
    state = PolicyState(last_action_s={"web/replicas": NOW - 100},
                        last_direction={"web/replicas": 1}, low_since_s={"web/replicas": 0.0})
    d, _ = decide(_inp(4, 0.1), _cfg(), state)  # the cost pass waits step_interval_s
    assert _scale_in(d) == []
    d, _ = decide(_inp(4, 0.1), _cfg(step_interval_s=0.0), state)  # the guards hold it
    (x,) = [x for x in d if "scale-in" in x.reason]
    assert x.action is None
    assert "would reverse the last scale-out (100 s ago) within the hold of 300 s" in x.reason


def test_min_replicas_labels_and_settings_are_checked():
    w = from_labels("web", {"prescale.min-replicas": "4", "prescale.max-replicas": "2"})
    assert w.problems == ("label prescale.min-replicas above prescale.max-replicas",)
    w = from_labels("web", {"prescale.min-replicas": "zero"})
    assert "prescale.min-replicas" in w.problems[0]
    with pytest.raises(ValueError, match="min_replicas 5 is above max_replicas 2"):
        Settings(policy={"app_bounds": {"web": {"min_replicas": 5, "max_replicas": 2}}})
    with pytest.raises(ValueError, match="min_replicas must be in"):
        GuardConfig(min_replicas=11)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 12), min_r=st.integers(1, 12),
       cpu_used=st.floats(0, 2.0), cpu_limit=st.floats(0.1, 4.0),
       demand_cpu=st.one_of(st.just(math.nan), st.floats(0, 40.0)),
       mem_used=st.floats(1 * MiB, 2048 * MiB), mem_limit=st.floats(64 * MiB, 4096 * MiB),
       demand_mem=st.one_of(st.just(math.nan), st.floats(0, 40 * 1024 * MiB)),
       idle_s=st.floats(0, 10_000), p_fail=st.sampled_from([0.0, 0.01, 0.2]))
def test_property_never_below_min_replicas_nor_the_long_peaks_need(
        n, min_r, cpu_used, cpu_limit, demand_cpu, mem_used, mem_limit, demand_mem, idle_s,
        p_fail):
    cost = CostConfig()
    inp = _inp(n, cpu_used, cpu_limit=cpu_limit, demand_cpu=demand_cpu, mem_used=mem_used,
               mem_limit=mem_limit, demand_mem=demand_mem, p_fail=p_fail)
    cfg = PolicyConfig(guards=GuardConfig(min_replicas=min(min_r, 10)), cost=cost)
    decisions, _ = decide(inp, cfg, _idle_since(idle_s))
    for a in _scale_in(decisions):
        assert a.new_limit == n - 1 and a.new_limit >= min(min_r, 10)
        for used, limit, peak, tier in ((cpu_used, cpu_limit, demand_cpu, "cpu"),
                                        (mem_used, mem_limit, demand_mem, "memory")):
            total = used * n
            need = max(total, peak if math.isfinite(peak) else 0.0)
            margin = cost.peak_margin_for(tier)
            assert a.new_limit * limit >= need * (1 + margin) - 1e-6  # the long peak fits
            assert total / a.new_limit < cost.idle_usage_fraction * limit  # stays idle
