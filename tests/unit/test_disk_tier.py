"""The disk tier in the pure core: its trend and prediction (worked examples), the engine
predicting it only where a container has a volume, multi_tier judging the bottleneck
over every tier, and the pool granting a disk ask without drawing on node capacity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.actions import ScalingAction, Verdict
from prescale.app.core.contention import arbitrate
from prescale.app.core.cost import CostConfig
from prescale.app.core.engine import Engine, EngineConfig, Snapshot
from prescale.app.core.features import usage_trend
from prescale.app.core.guards import GuardConfig
from prescale.app.core.policy import PolicyConfig, multi_tier
from prescale.app.core.policy_types import PolicyInput, PolicyState
from prescale.app.core.pool import Capacity, Pool
from prescale.app.core.predictor import Prediction, TierPrediction, TrendExhaustionPredictor
from prescale.app.core.sample import METRICS, Sample, Tier
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.settings import Settings

MiB = 2**20


def _window(used_mib, limit_mib, *, t0=100.0, step_s=10.0, volume=True):
    rows = [Sample("v", t0 + step_s * k, memory_usage_bytes=10 * MiB,
                   memory_limit_bytes=100 * MiB,
                   disk_used_bytes=u * MiB if volume else math.nan,
                   disk_limit_bytes=limit_mib * MiB if volume else math.inf).row()
            for k, u in enumerate(used_mib)]
    return np.array(rows, dtype=float)[None]


def test_usage_trend_worked_example():
    tr = usage_trend(_window([100, 120, 150, 170], 200), "disk_used_bytes",
                     "disk_limit_bytes", recent_steps=2)
    assert tr.slope[0] == pytest.approx(2.4 * MiB)
    assert tr.recent_slope[0] == pytest.approx(2 * MiB)
    assert tr.headroom[0] == 30 * MiB and tr.time_to_limit_s[0] == pytest.approx(12.5)
    assert tr.n_samples[0] == 4 and len(METRICS) == _window([1], 2).shape[2]


def test_predict_trend_is_the_memory_formula():
    """u = 400, s = 2 MiB/s, H = 30 s, L = 450, r = 3, H·e = 4 MiB, f·L = 4.5 → 0.9772."""
    from prescale.app.core.features import UsageTrend

    one = lambda v: np.array([float(v)])  # noqa: E731
    tr = UsageTrend(one(400 * MiB), one(450 * MiB), one(50 * MiB), one(2 * MiB), one(math.nan),
                    one(3 * MiB), one(4 * MiB / 30), one(25.0), one(10))
    p = TrendExhaustionPredictor(horizon_s=30.0, sigma_floor_fraction=0.01).predict_trend(tr)
    assert p.p_fail[0] == pytest.approx(0.97725, abs=1e-4)
    assert p.forecast[0] == 460 * MiB and p.time_to_limit_s[0] == 25.0
    few = TrendExhaustionPredictor(min_samples=20).predict_trend(tr)
    assert few.p_fail[0] == 0.0  # too few samples: no forecast


def _snapshot(volume: bool) -> Snapshot:
    w = _window([4 + 2 * k for k in range(12)], 32, volume=volume)
    return Snapshot(float(w[0, -1, 0]), ["v"], ["app"], w)


def test_the_engine_predicts_the_disk_only_where_a_volume_is():
    eng = Engine(EngineConfig.from_settings(Settings(predictor={"horizon_s": 60.0})))
    plan = eng.plan(_snapshot(True), ThresholdBook())
    disk = plan.prediction.tiers[Tier.DISK]
    assert disk.limit[0] == 32 * MiB and disk.p_fail[0] > 0.9  # 26 of 32 MiB, +0.2 MiB/s
    (d,) = [d for d in plan.decisions if d.tier is Tier.DISK]
    assert d.action is not None and d.action.new_limit > 32 * MiB
    assert "MiB" in d.reason
    plain = Engine(EngineConfig.from_settings(Settings())).plan(_snapshot(False), ThresholdBook())
    assert Tier.DISK not in plain.prediction.tiers


def _tp(p, ttl, lim, f):
    return TierPrediction(np.array([p]), np.array([ttl]), np.array([f]), np.array([lim]))


def test_multi_tier_judges_the_bottleneck_over_every_tier():
    pred = Prediction(30.0, "t", {
        Tier.MEMORY: _tp(0.6, 40.0, 200 * MiB, 210 * MiB),
        Tier.CPU: _tp(0.0, math.inf, 1.0, 0.2),
        Tier.DISK: _tp(0.97, 12.0, 32 * MiB, 40 * MiB)})
    inp = PolicyInput(100.0, ["v"], pred, np.array([0.5]),
                      usage={Tier.MEMORY: np.array([150.0 * MiB]), Tier.CPU: np.array([0.2]),
                             Tier.DISK: np.array([30.0 * MiB])})
    cfg = PolicyConfig(kind="multi_tier", guards=GuardConfig(cooldown_s=0.0),
                       cost=CostConfig(enabled=False))
    d, _ = multi_tier(inp, cfg, PolicyState())
    acting = [x for x in d if x.action is not None]
    assert [x.tier for x in acting] == [Tier.DISK, Tier.MEMORY]  # disk fills first
    assert "bottleneck 1 of 2 by time to limit (disk 12 s first)" in acting[0].reason
    assert ("bottleneck judged over 3 tiers by time to limit: disk 12 s (p_fail 0.97), "
            "memory 40 s (p_fail 0.60), cpu never (p_fail 0.00)") in acting[0].reason
    assert acting[0].action.new_limit == 50 * MiB  # buffer: 40 MiB × 1.25


def test_a_disk_ask_is_granted_without_node_capacity():
    pool = Pool(Capacity(1 * MiB, 0.1), Capacity(0, 0))  # no room for anything pooled
    pool.observe("v", Tier.DISK, 32 * MiB)  # ignored: not pooled
    ask = ScalingAction("v/disk@1", 1.0, "v", Tier.DISK, 32 * MiB, 64 * MiB, 0.9, 0.5, 12.0,
                        40 * MiB, "", preemptive=True)
    r = arbitrate([ask], pool, idle=[], tenants={}, weights={}, now_s=1.0)
    (v,) = r.verdicts
    assert v.verdict is Verdict.GRANTED
    assert v.reason == ("granted: not drawn from a shared capacity; pool: disk is not pooled "
                        "(the container's own volume; no node capacity is shared)")
    assert pool.check_invariant() == [] and pool.granted(Tier.MEMORY) == 0


# -- the network tier ----------------------------------------------------------------------

def test_rate_trend_worked_example_and_the_network_prediction():
    from prescale.app.core.features import rate_trend

    rows = [Sample("n", 100.0 + 10 * k, net_rx_bytes_total=b * 1e6,
                   net_rx_limit_bytes_per_s=2e6).row()
            for k, b in enumerate([0, 5, 15, 30])]
    tr = rate_trend(np.array(rows)[None], "net_rx_bytes_total", "net_rx_limit_bytes_per_s")
    assert tr.last[0] == pytest.approx(1.5e6) and tr.mean[0] == pytest.approx(1.0e6)
    assert tr.slope[0] == pytest.approx(0.05e6) and tr.std[0] == pytest.approx(0.408248e6)
    assert tr.limit[0] == 2e6
    pred = TrendExhaustionPredictor(horizon_s=30.0, min_samples=3).predict_rate(tr)
    # forecast 1.5 + 0.05·30 = 3.0 MB/s against β·L = 1.8: saturated; ttl (1.8 − 1.5)/0.05
    assert pred.p_fail[0] > 0.99 and pred.time_to_limit_s[0] == pytest.approx(6.0)


def test_the_engine_steps_a_saturated_link_up():
    rows = [Sample("n", 100.0 + 5 * k, memory_usage_bytes=10 * MiB,
                   memory_limit_bytes=100 * MiB, net_rx_bytes_total=k * 1.0 * MiB * 5,
                   net_rx_limit_bytes_per_s=1.0 * MiB).row() for k in range(12)]
    w = np.array(rows)[None]
    eng = Engine(EngineConfig.from_settings(Settings(policy={"cooldown_s": 0.0})))
    plan = eng.plan(Snapshot(float(w[0, -1, 0]), ["n"], ["app"], w), ThresholdBook())
    (d,) = [d for d in plan.decisions if d.tier is Tier.NETWORK]
    assert d.action is not None and d.action.new_limit == pytest.approx(1.5 * MiB)
    assert "network step 50% (demand above the limit is not visible)" in d.reason
    assert "1.00 MiB/s" in d.reason


def test_net_saturation_acts_and_beats_the_static_baseline_on_a_short_run():
    """The first half of the scenario (the ramp passes the limit in it): prescale's
    network tier raises the limits, the static baseline queues."""
    from prescale.app.evaluation.metrics import figures
    from prescale.app.evaluation.runner import run
    from prescale.app.evaluation.scenarios import net_saturation, scaled

    s = scaled(net_saturation(), 0.5)
    static, ours = (run(s, p) for p in ("static", "preemptive_buffer"))
    assert figures(static, s.horizon_s)["failures"] > 0
    assert figures(ours, s.horizon_s)["failures"] == 0
    raised = [a for a in ours.actions if a.tier == "network"]
    assert raised and all(a.new > a.old for a in raised)


# -- the block-I/O tier ---------------------------------------------------------------------

def test_the_engine_steps_a_throttled_writer_up_and_only_it():
    """A writer at its 1 MiB/s blkio write limit (5 s samples, 5 MiB per step written to
    the limited device) is stepped up 50 % like a saturated link: 1.00 → 1.50 MiB/s. A
    container without a write limit gets no I/O decision at all."""
    def rows(name, limit):
        return [Sample(name, 100.0 + 5 * k, memory_usage_bytes=10 * MiB,
                       memory_limit_bytes=100 * MiB,
                       io_limited_write_bytes_total=k * 1.0 * MiB * 5 if limit else math.nan,
                       io_write_limit_bytes_per_s=1.0 * MiB if limit else math.inf).row()
                for k in range(12)]
    w = np.array([rows("w", True), rows("free", False)])
    eng = Engine(EngineConfig.from_settings(Settings(policy={"cooldown_s": 0.0})))
    plan = eng.plan(Snapshot(float(w[0, -1, 0]), ["w", "free"], ["app", "app"], w),
                    ThresholdBook())
    io = [d for d in plan.decisions if d.tier is Tier.IO]
    assert [d.container for d in io if d.action is not None] == ["w"]
    (d,) = [d for d in io if d.container == "w"]
    assert d.action.new_limit == pytest.approx(1.5 * MiB)
    assert "io step 50% (demand above the limit is not visible)" in d.reason
    assert "1.00 MiB/s" in d.reason
    assert plan.prediction.tiers[Tier.IO].p_fail[0] > 0.99
