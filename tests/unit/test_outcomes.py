"""The one outcome tracker (app/core/outcomes.py): lead times from the same scale-up
records the judgements use, their state in one dict, and an engine checkpoint written
before the two trackers were one still loads."""

from __future__ import annotations

import json

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.engine import Engine, EngineConfig, EngineState, Snapshot
from prescale.app.core.outcomes import (
    LEAD_TIME_JUDGEMENT,
    Outcome,
    OutcomeConfig,
    OutcomeKind,
    OutcomeTracker,
)
from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import Sample, Tier
from prescale.app.core.thresholds import ThresholdBook

MiB = 2**20


def action(t, old, tier=Tier.MEMORY, kind=ActionKind.RESIZE):
    return ScalingAction(f"x@{t}", t, "x", tier, old, old * 2, 0.9, 0.5, 20, old, "",
                         kind=kind)


def tracker(expire_s: float = 100.0) -> OutcomeTracker:
    return OutcomeTracker(OutcomeConfig(horizon_s=60.0, lead_time_expire_s=expire_s))


def test_lead_time_worked_example():
    tr = tracker()
    tr.scale_up(action(100.0, 128 * MiB))
    tr.scale_up(action(100.0, 1.0, tier=Tier.CPU))  # cpu has no lead time
    tr.scale_up(action(100.0, 2, kind=ActionKind.SCALE_OUT))  # nor has a scale-out
    assert len(tr.pending) == 3 and len(tr.lead_pending) == 1
    for t in range(101, 119):
        assert tr.observe_lead_times(float(t), {"x": 120 * MiB}, {}) == []
    [o] = tr.observe_lead_times(119.0, {"x": 129 * MiB}, {})
    assert (o.outcome, o.lead_time_s, o.judgement) == ("crossed", 19.0, "needed")
    assert tr.lead_pending == []


def test_a_recommendation_not_applied_gets_the_lead_time_to_the_kill():
    tr = tracker()
    tr.scale_up(action(100.0, 128 * MiB), applied=False)
    assert tr.observe_lead_times(110.0, {"x": 120 * MiB}, {}) == []
    [o] = tr.observe_lead_times(117.0, {"x": 1 * MiB}, {"x": 1})
    assert (o.outcome, o.lead_time_s) == ("failed", 17.0)


def test_failed_expired_gone_and_round_trip():
    tr = tracker(expire_s=10.0)
    tr.scale_up(action(0.0, 100.0))
    saved = json.loads(json.dumps(tr.to_dict()))
    [o] = tr.observe_lead_times(1.0, {"x": 50.0}, {"x": 1})
    assert o.outcome == "failed"
    tr = OutcomeTracker.from_dict(saved, tr.config)
    [o] = tr.observe_lead_times(11.0, {"x": 50.0}, {})
    assert (o.outcome, o.judgement) == ("not_crossed", "false_positive")
    tr = OutcomeTracker.from_dict(saved, tr.config)
    [o] = tr.observe_lead_times(1.0, {}, {})
    assert (o.outcome, o.judgement) == ("gone", None)


def test_judgement_and_lead_time_close_on_their_own_clocks():
    """One scale-up: a false positive after H = 60 s, yet its lead time is still open
    and a crossing at 150 s (< 4 H) gives it (the two views of one record)."""
    tr = OutcomeTracker(OutcomeConfig(horizon_s=60.0))
    assert tr.config.lead_time_expire_s == 240.0
    tr.scale_up(action(0.0, 100.0))
    [j] = tr.observe(61.0, {("x", Tier.MEMORY): 50.0})
    assert j.kind is OutcomeKind.FALSE_POSITIVE
    assert tr.observe_lead_times(61.0, {"x": 50.0}, {}) == []
    [o] = tr.observe_lead_times(150.0, {"x": 100.0}, {})
    assert (o.outcome, o.lead_time_s) == ("crossed", 150.0)
    tr.scale_up(action(200.0, 100.0))
    tr.forget("x")
    assert (tr.pending, tr.lead_pending) == ([], [])


def test_lead_time_judgement_mapping():
    assert LEAD_TIME_JUDGEMENT == {"crossed": "needed", "failed": "needed",
                                   "not_crossed": "false_positive"}
    assert Outcome("a", "c", "gone", 0.0, 1.0, None).judgement is None


def _leaking_engine() -> tuple[Engine, dict]:
    """An engine that scaled a leaking container up at 1055 s (applied): its judgement
    and its lead-time check are open. Returns the engine and its checkpoint."""
    cfg = EngineConfig()
    eng, ring, book = Engine(cfg), RingBuffer(30), ThresholdBook()
    for k in range(12):
        u = (96 + 8 * k) * MiB
        ring.push(Sample("c", 1000.0 + 5 * k, memory_usage_bytes=u, memory_working_set_bytes=u,
                         memory_limit_bytes=200 * MiB, cpu_usage_s_total=0.0,
                         cpu_quota_cores=1.0, app="x"))
    names, w = ring.window(["c"])
    plan = eng.plan(Snapshot(1055.0, names, ["x"], w), book)
    [a] = plan.asks
    eng.settle(1055.0, [(a, ActionResult(a.action_id, "c", a.tier, ResultStatus.APPLIED,
                                         a.old_limit, a.new_limit, "test"))], live=names)
    assert eng.state.outcomes.pending and eng.state.outcomes.lead_pending
    return eng, json.loads(json.dumps(eng.state.to_dict(), default=float))


def test_an_old_checkpoint_with_a_separate_lead_time_list_still_loads():
    """Before the trackers were one, coordinator.json held the lead-time checks in a
    top-level ``pending`` list (``t_action_s``, ``old_limit_bytes``, …) next to
    ``outcomes``; it loads into the same state the new format gives."""
    eng, new = _leaking_engine()
    old = json.loads(json.dumps(new))
    old["pending"] = old["outcomes"].pop("lead_pending")
    assert set(old["pending"][0]) == {"action_id", "container", "t_action_s",
                                      "old_limit_bytes", "applied"}
    cfg = eng.config
    a, b = EngineState.from_dict(new, cfg), EngineState.from_dict(old, cfg)
    def as_json(st: EngineState) -> dict:
        return json.loads(json.dumps(st.to_dict(), default=float))

    assert as_json(a) == as_json(b) == new
    usage = {"c": 300.0 * MiB}
    assert a.outcomes.observe_lead_times(1060.0, usage, {}) == \
        b.outcomes.observe_lead_times(1060.0, usage, {}) != []
