"""TrendExhaustionPredictor: the module docstring's worked examples, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.features import FEATURES, compute_features
from prescale.app.core.predictor import Prediction, TierPrediction, TrendExhaustionPredictor
from prescale.app.core.sample import Sample, Tier

pytestmark = pytest.mark.filterwarnings("error")

MIB = 2.0**20
INF = math.inf
NAN = math.nan
PHI_2 = 0.9772498680518208  # Φ(2)


def predictor(**overrides) -> TrendExhaustionPredictor:
    args = dict(horizon_s=30.0, min_samples=3, sigma_floor_fraction=0.01, cpu_busy_fraction=0.9)
    args.update(overrides)
    return TrendExhaustionPredictor(**args)


def memory_example(**overrides) -> dict[str, float]:
    """The memory worked example; the CPU tier is unlimited (p = 0)."""
    row = dict.fromkeys(FEATURES, NAN)
    row.update(
        n_samples=10,
        memory_usage_last_bytes=400 * MIB,
        memory_limit_bytes=450 * MIB,
        memory_headroom_bytes=50 * MIB,
        memory_slope_bytes_per_s=2 * MIB,
        memory_recent_slope_bytes_per_s=2 * MIB,
        memory_resid_std_bytes=3 * MIB,
        memory_slope_std_bytes_per_s=(4 / 30) * MIB,
        memory_time_to_limit_s=25.0,
        cpu_quota_cores=INF,
        cpu_throttled_fraction=0.0,
    )
    row.update(overrides)
    return row


def cpu_example(**overrides) -> dict[str, float]:
    """The CPU worked example; the memory tier is unlimited (p = 0)."""
    row = dict.fromkeys(FEATURES, NAN)
    row.update(
        n_samples=10,
        memory_limit_bytes=INF,
        cpu_usage_cores_last=1.5,
        cpu_usage_cores_mean=1.2,
        cpu_slope_cores_per_s=0.02,
        cpu_rate_std_cores=0.15,
        cpu_quota_cores=2.0,
        cpu_throttled_fraction=0.1,
    )
    row.update(overrides)
    return row


def matrix(*rows: dict[str, float]) -> np.ndarray:
    return np.array([[r[name] for name in FEATURES] for r in rows], dtype=np.float64)


def test_memory_worked_example():
    pred = predictor().predict(matrix(memory_example()))
    assert isinstance(pred, Prediction)
    assert pred.model == "trend-exhaustion/v1" == TrendExhaustionPredictor.name
    assert pred.horizon_s == 30.0
    assert set(pred.tiers) == {Tier.MEMORY, Tier.CPU}
    mem = pred.tiers[Tier.MEMORY]
    assert isinstance(mem, TierPrediction)
    assert mem.forecast[0] == pytest.approx(460 * MIB)
    assert mem.p_fail[0] == pytest.approx(PHI_2, rel=1e-12)
    assert mem.time_to_limit_s[0] == 25.0
    assert mem.limit[0] == 450 * MIB
    assert pred.tiers[Tier.CPU].p_fail[0] == 0  # unlimited quota


def test_memory_recent_slope_is_used_when_larger():
    # recent 2 MiB/s, full 1 MiB/s → same forecast as the worked example
    row = memory_example(memory_slope_bytes_per_s=1 * MIB)
    mem = predictor().predict(matrix(row)).tiers[Tier.MEMORY]
    assert mem.forecast[0] == pytest.approx(460 * MIB)
    assert mem.p_fail[0] == pytest.approx(PHI_2)
    # a nan recent slope falls back to the full one
    row = memory_example(memory_recent_slope_bytes_per_s=NAN)
    assert predictor().predict(matrix(row)).tiers[Tier.MEMORY].p_fail[0] == pytest.approx(PHI_2)


def test_memory_sigma_floor_and_negative_slope():
    # no noise: σ = 0.1 · 450 MiB = 45 MiB → z = 10/45
    row = memory_example(memory_resid_std_bytes=0.0, memory_slope_std_bytes_per_s=0.0)
    mem = predictor(sigma_floor_fraction=0.1).predict(matrix(row)).tiers[Tier.MEMORY]
    assert mem.p_fail[0] == pytest.approx(0.5 * (1 + math.erf((10 / 45) / math.sqrt(2))))
    # a shrinking container is forecast at its current usage: z = (400-450)/5 = -10
    row = memory_example(
        memory_slope_bytes_per_s=-2 * MIB, memory_recent_slope_bytes_per_s=-1 * MIB
    )
    mem = predictor().predict(matrix(row)).tiers[Tier.MEMORY]
    assert mem.forecast[0] == 400 * MIB
    assert mem.p_fail[0] == pytest.approx(0.5 * math.erfc(10 / math.sqrt(2)), rel=1e-6)


def test_zero_sigma_is_a_step():
    row = memory_example(memory_resid_std_bytes=0.0, memory_slope_std_bytes_per_s=0.0)
    p = predictor(sigma_floor_fraction=0.0).predict(matrix(row)).tiers[Tier.MEMORY].p_fail
    assert p[0] == 1.0
    row["memory_slope_bytes_per_s"] = row["memory_recent_slope_bytes_per_s"] = 0.0
    p = predictor(sigma_floor_fraction=0.0).predict(matrix(row)).tiers[Tier.MEMORY].p_fail
    assert p[0] == 0.0


def test_cpu_worked_example():
    pred = predictor().predict(matrix(cpu_example()))
    cpu = pred.tiers[Tier.CPU]
    assert cpu.forecast[0] == pytest.approx(2.1)
    assert cpu.p_fail[0] == pytest.approx(PHI_2, rel=1e-12)
    assert cpu.time_to_limit_s[0] == pytest.approx(15.0)
    assert cpu.limit[0] == 2.0
    assert pred.tiers[Tier.MEMORY].p_fail[0] == 0  # unlimited memory


def test_cpu_throttling_now_dominates_a_flat_trend():
    # c_H = max(0.5, 0.6) = 0.6, σ = max(0.05, 0.02) → z = (0.6 - 1.8)/0.05 = -24 → p_trend ≈ 0
    row = cpu_example(
        cpu_usage_cores_last=0.5,
        cpu_usage_cores_mean=0.6,
        cpu_slope_cores_per_s=-0.01,
        cpu_rate_std_cores=0.05,
        cpu_throttled_fraction=0.6,
    )
    cpu = predictor().predict(matrix(row)).tiers[Tier.CPU]
    assert cpu.forecast[0] == pytest.approx(0.6)
    assert cpu.p_fail[0] == pytest.approx(0.6)
    assert cpu.time_to_limit_s[0] == 0  # throttled ≥ 0.5


def test_cpu_time_to_limit_cases():
    def cpu(**overrides) -> TierPrediction:
        return predictor().predict(matrix(cpu_example(**overrides))).tiers[Tier.CPU]

    assert cpu(cpu_usage_cores_last=1.9).time_to_limit_s[0] == 0  # busy: 1.9 ≥ 0.9 · 2
    assert cpu(cpu_slope_cores_per_s=0.0).time_to_limit_s[0] == INF  # flat: never
    assert cpu(cpu_slope_cores_per_s=-0.1).time_to_limit_s[0] == INF
    # unlimited quota: never, and p = 0 even while "throttled"
    unlimited = cpu(cpu_quota_cores=INF, cpu_throttled_fraction=0.3)
    assert unlimited.time_to_limit_s[0] == INF
    assert unlimited.p_fail[0] == 0
    assert math.isnan(cpu(cpu_slope_cores_per_s=NAN).time_to_limit_s[0])  # trend unknown


def test_nan_inputs_give_zero_probability_never_nan():
    rows = [
        memory_example(memory_usage_last_bytes=NAN),
        memory_example(memory_limit_bytes=NAN),
        memory_example(memory_slope_bytes_per_s=NAN, memory_recent_slope_bytes_per_s=NAN),
        memory_example(memory_resid_std_bytes=NAN),
        memory_example(memory_limit_bytes=INF),
        cpu_example(cpu_usage_cores_last=NAN, cpu_usage_cores_mean=NAN),
        cpu_example(cpu_rate_std_cores=NAN),
        cpu_example(cpu_quota_cores=NAN),
        dict.fromkeys(FEATURES, NAN),
    ]
    pred = predictor().predict(matrix(*rows))
    for tier in (Tier.MEMORY, Tier.CPU):
        assert not np.isnan(pred.tiers[tier].p_fail).any(), tier
    np.testing.assert_array_equal(pred.tiers[Tier.MEMORY].p_fail, 0.0)
    # a cpu trend that cannot be computed leaves the measured throttling (0.1)
    np.testing.assert_array_equal(pred.tiers[Tier.CPU].p_fail, [0] * 5 + [0.1] * 3 + [0])
    assert math.isnan(pred.tiers[Tier.MEMORY].forecast[0])


def test_too_few_samples_give_zero():
    rows = [memory_example(n_samples=2), memory_example(n_samples=3), cpu_example(n_samples=2)]
    pred = predictor(min_samples=3).predict(matrix(*rows))
    assert pred.tiers[Tier.MEMORY].p_fail.tolist() == [0.0, pytest.approx(PHI_2), 0.0]
    assert pred.tiers[Tier.CPU].p_fail.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("shape", [(17,), (2, 16), (2, 18), (1, 2, 17)])
def test_bad_feature_shape(shape):
    with pytest.raises(ValueError, match="features must have shape"):
        predictor().predict(np.zeros(shape))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(horizon_s=0.0), "horizon_s"),
        (dict(horizon_s=INF), "horizon_s"),
        (dict(min_samples=-1), "min_samples"),
        (dict(sigma_floor_fraction=-0.1), "sigma_floor_fraction"),
        (dict(cpu_busy_fraction=0.0), "cpu_busy_fraction"),
        (dict(cpu_busy_fraction=1.5), "cpu_busy_fraction"),
    ],
)
def test_bad_parameters(overrides, match):
    with pytest.raises(ValueError, match=match):
        predictor(**overrides)


def test_end_to_end_from_a_window():
    """A container leaking 2 MiB/s towards a 450 MiB limit, and a quiet one."""
    t = np.arange(10) * 5.0
    leak = [
        Sample(
            "leak",
            ts_s=float(ti),
            memory_usage_bytes=(310 + 2 * ti) * MIB,
            memory_limit_bytes=450 * MIB,
            cpu_usage_s_total=0.1 * ti,
            cpu_quota_cores=1.0,
            cpu_periods_total=10 * ti,
            cpu_throttled_periods_total=0.0,
        )
        for ti in t
    ]
    quiet = [
        Sample("quiet", ts_s=float(ti), memory_usage_bytes=100 * MIB, cpu_usage_s_total=0.1 * ti)
        for ti in t
    ]
    window = np.array([[s.row() for s in leak], [s.row() for s in quiet]])
    features = compute_features(window, recent_steps=4)
    pred = predictor().predict(features)
    mem = pred.tiers[Tier.MEMORY]
    # last usage 310 + 90 = 400 MiB, slope 2 MiB/s exactly → forecast 460 MiB, σ = floor 4.5 MiB
    assert mem.forecast[0] == pytest.approx(460 * MIB)
    assert mem.p_fail[0] == pytest.approx(0.5 * (1 + math.erf((10 / 4.5) / math.sqrt(2))))
    assert mem.time_to_limit_s[0] == pytest.approx(25.0)
    assert mem.p_fail[1] == 0 and mem.time_to_limit_s[1] == INF
    cpu = pred.tiers[Tier.CPU]
    assert cpu.forecast[0] == pytest.approx(0.1)
    assert cpu.p_fail.tolist() == [pytest.approx(0.0, abs=1e-12), 0.0]
