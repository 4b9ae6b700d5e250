"""``decide`` runs the idle scale-down only over the containers that are low in some tier
(``_low_rows``); its decisions and new state must be exactly those of running it over
every container, as before the shortcut (``reference`` below, verbatim)."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_policies_property import FAST, policy_configs, snapshots, states

from prescale.app.core.cost import CostConfig, propose_scale_downs
from prescale.app.core.guards import guard
from prescale.app.core.policy import (
    _RAW,
    PolicyInput,
    _low_rows,
    _rows,
    _with_scale_ins,
    decide,
)
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier
from prescale.app.core.scale_in import propose_scale_ins

MiB = 2**20


def reference(inp, cfg, state):
    raw = _RAW[cfg.kind](inp, cfg)
    if cfg.cost.enabled:
        prev_low = state.low_since_s
        downs, state = propose_scale_downs(inp, cfg.cost, state)
        by_key = {(d.container, d.tier): d for d in downs if d.action is not None}
        raw = [by_key.get((d.container, d.tier), d) if d.action is None else d for d in raw]
        if inp.replicated is not None:  # the scale-in pass (app/core/scale_in.py)
            raw = _with_scale_ins(raw, propose_scale_ins(inp, cfg.cost, state, prev_low))
    return guard(inp, raw, cfg.guards, state)


@FAST
@given(data=st.data())
def test_decide_equals_the_full_cost_pass(data):
    inp = data.draw(snapshots(n=data.draw(st.integers(1, 8))))
    cfg = data.draw(policy_configs())
    state = data.draw(states(inp))
    got, got_state = decide(inp, cfg, state)
    want, want_state = reference(inp, cfg, state)
    assert repr(got) == repr(want)  # repr: nan == nan (float repr round-trips)
    assert repr(got_state) == repr(want_state)


def _inp(limit, usage, p):
    n = len(limit)
    tp = TierPrediction(np.array(p, float), np.full(n, math.inf), np.array(usage, float),
                        np.array(limit, float))
    pred = Prediction(30.0, "t", {Tier.MEMORY: tp})
    return PolicyInput(1000.0, [f"c{i}" for i in range(n)], pred, np.full(n, 0.5),
                       apps=["a"] * n, usage={Tier.MEMORY: np.array(usage, float)})


def test_low_rows_worked_example():
    # limit 1 GiB: usage 100 MiB at p 0.01 is low; usage unknown, p nan, usage 600 MiB
    # (≥ 0.5 × limit), p 0.3 (> 0.05) and an unlimited container are not
    inp = _inp([1024 * MiB] * 5 + [math.inf], [100 * MiB, math.nan, 100 * MiB, 600 * MiB,
                                               100 * MiB, 100 * MiB],
               [0.01, 0.01, math.nan, 0.01, 0.3, 0.01])
    assert _low_rows(inp, CostConfig()).tolist() == [True, False, False, False, False, False]


def test_rows_picks_every_per_container_field():
    inp = _inp([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0.0, 0.5, 1.0])
    sub = _rows(inp, np.array([2, 0]))
    assert sub.containers == ["c2", "c0"] and sub.apps == ["a", "a"]
    assert sub.prediction.tiers[Tier.MEMORY].limit.tolist() == [3.0, 1.0]
    assert sub.usage[Tier.MEMORY].tolist() == [0.3, 0.1]
    assert sub.thresholds.tolist() == [0.5, 0.5] and sub.now_s == inp.now_s


@FAST
@given(data=st.data())
def test_acting_only_is_the_full_cost_pass_filtered(data):
    """``propose_scale_downs(..., acting_only=True)`` (what ``decide`` reads): the
    decisions with an action of the full pass, in its order, and the same state."""
    inp = data.draw(snapshots(n=data.draw(st.integers(1, 8))))
    cfg = data.draw(policy_configs())
    state = data.draw(states(inp))
    full, full_state = propose_scale_downs(inp, cfg.cost, state)
    got, got_state = propose_scale_downs(inp, cfg.cost, state, acting_only=True)
    assert repr(got) == repr([d for d in full if d.action is not None])
    assert repr(got_state) == repr(full_state)


def test_acting_only_worked_example():
    """Three containers, one low for long enough: only its scale-down is returned."""
    from prescale.app.core.policy_types import PolicyState
    cost = CostConfig(idle_after_s=60.0)
    inp = _inp([1024 * MiB] * 3, [100 * MiB, 900 * MiB, 100 * MiB], [0.0, 0.0, 0.0])
    state = PolicyState(low_since_s={"c0/memory": 0.0, "c2/memory": 990.0})
    full, _ = propose_scale_downs(inp, cost, state)
    got, _ = propose_scale_downs(inp, cost, state, acting_only=True)
    assert [d.container for d in full] == ["c0", "c1", "c2"]
    assert [d.container for d in got] == ["c0"] and got[0] == full[0]
    assert got[0].action.new_limit < 1024 * MiB
