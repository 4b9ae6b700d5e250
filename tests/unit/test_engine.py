"""The engine's tick, by the worked example of app/core/engine.py, and the coordinator's
shard merge (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.actions import ActionResult, ResultStatus
from prescale.app.core.engine import Engine, EngineConfig, EngineState, Snapshot
from prescale.app.core.outcomes import OutcomeKind
from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import METRICS, Sample
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.settings import Settings

MiB = 2**20


def _settings() -> Settings:
    d = Settings().model_dump()
    d["predictor"].update(horizon_s=60.0, min_samples=5)
    d["thresholds"].update(p_fail=0.3)
    return Settings.model_validate(d)


def test_worked_example_leak_is_scaled_before_the_limit_and_judged_needed():
    s = _settings()
    cfg = EngineConfig.from_settings(s)
    eng = Engine(cfg)
    book = ThresholdBook(ThresholdConfig.from_settings(s.thresholds))
    ring = RingBuffer(30)
    limit = 256 * MiB
    first_ask = None
    judged = []
    for k in range(40):
        t = 1000.0 + 5 * k
        u = (96 + 8 * k) * MiB  # 1.6 MiB/s
        ring.push(Sample("leaker", t, memory_usage_bytes=u, memory_working_set_bytes=u,
                         memory_limit_bytes=limit, cpu_usage_s_total=0.01 * k,
                         cpu_quota_cores=1.0, app="leak"))
        names, w = ring.window(["leaker"])
        plan = eng.plan(Snapshot(t, names, ["leak"], w), book)
        judged += plan.judgements
        results = []
        for a in plan.asks:
            if first_ask is None:
                first_ask = (u, a)
            limit = a.new_limit
            results.append((a, ActionResult(a.action_id, a.container, a.tier,
                                            ResultStatus.APPLIED, a.old_limit, a.new_limit,
                                            "test")))
        eng.settle(t, results, live=names)
        if judged:
            break
    u, a = first_ask
    # at 160 MiB the trend reaches 160 + 1.6·60 = 256 MiB at H: p_fail ≈ 0.5 ≥ 0.3 →
    # new limit max(forecast, limit)·(1 + 0.25) = 320 MiB, 60 s before the limit
    assert u == 160 * MiB
    assert (a.old_limit, a.new_limit) == (256 * MiB, 320 * MiB)
    assert 0.3 <= a.p_fail and a.preemptive and a.time_to_limit_s == pytest.approx(60.0)
    # the usage then passed the old 256 MiB: the scale-up was needed
    assert [j.kind for j in judged] == [OutcomeKind.NEEDED]


def test_state_round_trips_through_json_and_decisions_are_the_same():
    import json

    s = _settings()
    cfg = EngineConfig.from_settings(s)
    book = ThresholdBook(ThresholdConfig.from_settings(s.thresholds))
    a, ring = Engine(cfg), RingBuffer(30)
    for k in range(12):
        u = (96 + 8 * k) * MiB
        ring.push(Sample("c", 1000.0 + 5 * k, memory_usage_bytes=u, memory_working_set_bytes=u,
                         memory_limit_bytes=256 * MiB, cpu_usage_s_total=0.0,
                         cpu_quota_cores=1.0, app="x"))
    names, w = ring.window(["c"])
    first = a.plan(Snapshot(1055.0, names, ["x"], w), book)
    assert first.asks
    restored = Engine(cfg, EngineState.from_dict(json.loads(json.dumps(
        a.state.to_dict(), default=float)), cfg))
    again = restored.plan(Snapshot(1056.0, names, ["x"], w), book)
    assert again.asks == []  # the cooldown survived the round trip
    assert "cooldown" in again.decisions[0].reason


def test_snapshot_rejects_mismatched_shapes():
    w = np.zeros((2, 5, len(METRICS)))
    with pytest.raises(ValueError, match="apps has 1 entries for 2 names"):
        Snapshot(0.0, ["a", "b"], ["x"], w)
    with pytest.raises(ValueError, match="window has shape"):
        Snapshot(0.0, ["a"], ["x"], w)


def test_a_tick_with_an_increase_offers_idle_containers_to_reclaim_above_their_long_peak():
    """``idle`` bursts to 700 MiB at the start, then sits at 100 MiB of 1 GiB; the window
    (30 samples) forgets the burst, the engine's long peak does not. When ``leaker`` asks
    for more, the plan offers ``idle`` down to 700 × 1.2 = 840 MiB — not 120 MiB."""
    s = _settings()
    cfg = EngineConfig.from_settings(s)
    eng = Engine(cfg)
    book = ThresholdBook(ThresholdConfig.from_settings(s.thresholds))
    ring = RingBuffer(30)
    names = ["idle", "leaker"]
    offered = None
    for k in range(140):
        t = 1000.0 + 5 * k
        idle_u = (700 if k < 3 else 100) * MiB
        leak_u = (100 + 8 * max(0, k - 80)) * MiB
        for n, u, lim in (("idle", idle_u, 1024 * MiB), ("leaker", leak_u, 256 * MiB)):
            ring.push(Sample(n, t, memory_usage_bytes=u, memory_working_set_bytes=u,
                             memory_limit_bytes=lim, cpu_usage_s_total=0.01 * k,
                             cpu_quota_cores=1.0, app=n))
        _, w = ring.window(names)
        plan = eng.plan(Snapshot(t, names, names, w), book)
        if not any(a.new_limit > a.old_limit for a in plan.asks):
            assert plan.reclaim == []  # no increase, no contention possible: none offered
            continue
        offered = (t, [(c.container, c.tier.value, c.limit, c.floor) for c in plan.reclaim])
        break
    assert offered is not None, "the leaker never asked for more"
    t, cands = offered
    assert t - 1015.0 >= cfg.policy.cost.reclaim_after_s  # low since the 4th sample
    assert ("idle", "memory", 1024 * MiB, math.ceil(700 * MiB * 1.2 / 4096) * 4096) in cands
    assert ("leaker", "memory") not in {c[:2] for c in cands}  # it is growing, not low
    # (its CPU is low and offered; the pool never reclaims from a container asking)
