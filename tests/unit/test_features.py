"""Features: hand-computed examples for every feature, padding, resets, vectorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import prescale.app.core.features as features_module
from prescale.app.core.features import FEATURES, GAUGE_METRICS, RATE_COUNTERS, F, compute_features
from prescale.app.core.sample import METRICS, M, Sample

pytestmark = pytest.mark.filterwarnings("error")  # no numpy RuntimeWarning may escape

INF = math.inf
NAN = math.nan
PAD = (NAN,) * len(METRICS)


def window(*containers: list[Sample], width: int | None = None) -> np.ndarray:
    """A window from lists of samples, each padded at the start with all-nan rows."""
    width = width or max(len(c) for c in containers)
    rows = [[PAD] * (width - len(c)) + [s.row() for s in c] for c in containers]
    return np.array(rows, dtype=np.float64)


def features_of(samples: list[Sample], *, recent_steps: int = 2, width: int | None = None):
    """Features of one container as a {name: value} dict."""
    out = compute_features(window(samples, width=width), recent_steps=recent_steps)
    assert out.shape == (1, len(FEATURES))
    assert out.dtype == np.float64
    return dict(zip(FEATURES, out[0], strict=True))


def basic(**overrides) -> list[Sample]:
    """The module docstring's worked example, plus throttling and failure counters."""
    columns = dict(
        ts_s=[100.0, 110.0, 120.0, 130.0],
        memory_usage_bytes=[100.0, 120.0, 150.0, 170.0],
        memory_limit_bytes=[200.0, 200.0, 200.0, 200.0],
        cpu_usage_s_total=[0.0, 5.0, 15.0, 30.0],
        cpu_quota_cores=[2.0, 2.0, 2.0, 2.0],
        cpu_periods_total=[0.0, 100.0, 200.0, 300.0],
        cpu_throttled_periods_total=[0.0, 0.0, 10.0, 40.0],
        oom_kills_total=[0.0, 0.0, 1.0, 1.0],
        memory_failcnt_total=[5.0, 6.0, 8.0, 8.0],
    )
    columns.update(overrides)
    n = len(columns["ts_s"])
    return [Sample("c", **{k: v[i] for k, v in columns.items()}) for i in range(n)]


def test_feature_list_and_index():
    assert len(FEATURES) == len(set(FEATURES)) == 46
    assert [F[name] for name in FEATURES] == list(range(len(FEATURES)))
    assert FEATURES[0] == "n_samples"


def test_every_feature_hand_computed():
    f = features_of(basic(), recent_steps=2)
    # memory: t̄ = 115, ū = 135, Σdt² = 500, Σdt·du = 1200, residuals 1, -3, 3, -1
    expected = {
        "n_samples": 4,
        "memory_usage_last_bytes": 170,
        "memory_limit_bytes": 200,
        "memory_headroom_bytes": 30,
        "memory_slope_bytes_per_s": 2.4,
        "memory_recent_slope_bytes_per_s": 2.0,  # (170 - 150) / 10
        "memory_resid_std_bytes": math.sqrt(20 / 4),
        "memory_slope_std_bytes_per_s": math.sqrt(20 / 2 / 500),
        "memory_time_to_limit_s": 12.5,  # 30 / 2.4
        # cpu rates 0.5, 1.0, 1.5 at t = 110, 120, 130
        "cpu_usage_cores_last": 1.5,
        "cpu_usage_cores_mean": 1.0,  # 30 / 30
        "cpu_slope_cores_per_s": 0.05,
        "cpu_rate_std_cores": math.sqrt(0.5 / 3),
        "cpu_quota_cores": 2.0,
        "cpu_throttled_fraction": 0.3,  # last 2 rows: (40 - 10) / (300 - 200)
        "oom_kills_delta": 1,
        "memory_failcnt_delta": 3,
        "memory_usage_mean_bytes": 135,
        "memory_usage_std_bytes": math.sqrt((35**2 + 15**2 + 15**2 + 35**2) / 4),
        "memory_usage_min_bytes": 100,
        "memory_usage_max_bytes": 170,
        # rates 0.5, 1.0, 1.5 against usage 120, 150, 170
        "cpu_memory_correlation": 0.9933992677987827,
    }
    expected["memory_usage_limit_fraction"] = 170 / 200
    no_reading = {"block_latency_last_s", "block_latency_change_s",
                  "memory_latency_correlation", "memory_pressure_full_fraction",
                  *features_module.RATE_COUNTERS, "cpu_usage_request_fraction",
                  *(f"{g}_last" for g in features_module.GAUGE_METRICS)}
    assert set(expected) | no_reading == set(FEATURES)
    for name in no_reading:  # no latency or PSI in this window
        assert math.isnan(f[name]), name
    for name, value in expected.items():
        assert f[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def test_usage_beyond_limits_worked_example():
    """The module docstring's worked example of usage ÷ limit, rates and gauges."""
    f = features_of(basic(io_read_bytes_total=[0.0, 100.0, 100.0, 400.0],
                          cpu_peak_cores=[0.5, math.nan, 2.0, math.nan],
                          cpu_request_cores=[2.0] * 4, scheduling_priority=[9.0] * 4))
    assert f["memory_usage_limit_fraction"] == pytest.approx(0.85)
    assert f["io_read_bytes_per_s"] == pytest.approx(400 / 30)
    assert math.isnan(f["io_write_bytes_per_s"])  # no reading
    assert f["cpu_peak_cores_last"] == 2.0
    assert f["cpu_request_cores_last"] == 2.0 and f["scheduling_priority_last"] == 9.0
    assert f["cpu_usage_request_fraction"] == pytest.approx(0.5)
    assert math.isnan(f["memory_page_cache_bytes_last"])
    unlimited = features_of(basic(memory_limit_bytes=[math.inf] * 4))
    assert unlimited["memory_usage_limit_fraction"] == 0.0
    # a counter reset never gives a negative rate
    reset = features_of(basic(net_tx_bytes_total=[0.0, 300.0, 0.0, 300.0]))
    assert reset["net_tx_bytes_per_s"] == pytest.approx(600 / 30)


def test_recent_steps_changes_recent_features_only():
    f2 = features_of(basic(), recent_steps=2)
    f3 = features_of(basic(), recent_steps=3)
    # last 3 rows: t 110..130, u 120, 150, 170 → symmetric 3-point slope (170-120)/20
    assert f3["memory_recent_slope_bytes_per_s"] == pytest.approx(2.5)
    assert f3["cpu_throttled_fraction"] == pytest.approx(40 / 200)
    # recent_steps larger than the window: everything
    f9 = features_of(basic(), recent_steps=9)
    assert f9["memory_recent_slope_bytes_per_s"] == pytest.approx(2.4)
    assert f9["cpu_throttled_fraction"] == pytest.approx(40 / 300)
    for name in FEATURES:
        if name not in ("memory_recent_slope_bytes_per_s", "cpu_throttled_fraction"):
            same = f3[name] == f2[name] == f9[name] or all(
                math.isnan(f[name]) for f in (f2, f3, f9))
            assert same, name


def test_epoch_timestamps_keep_precision():
    t0 = 1.7e9
    f = features_of(basic(ts_s=[t0 + 100, t0 + 110, t0 + 120, t0 + 130]))
    assert f["memory_slope_bytes_per_s"] == pytest.approx(2.4, rel=1e-9)
    assert f["memory_resid_std_bytes"] == pytest.approx(math.sqrt(5), rel=1e-9)
    assert f["cpu_slope_cores_per_s"] == pytest.approx(0.05, rel=1e-9)


def test_exactly_linear_memory_has_zero_residual_and_slope_error():
    f = features_of(basic(memory_usage_bytes=[100.0, 130.0, 160.0, 190.0]))
    assert f["memory_slope_bytes_per_s"] == pytest.approx(3.0)
    assert f["memory_resid_std_bytes"] == pytest.approx(0.0, abs=1e-12)
    assert f["memory_slope_std_bytes_per_s"] == pytest.approx(0.0, abs=1e-12)
    assert f["memory_time_to_limit_s"] == pytest.approx(10 / 3)


def test_padding_rows_are_ignored():
    plain = compute_features(window(basic()), recent_steps=3)
    padded = compute_features(window(basic(), width=7), recent_steps=3)
    np.testing.assert_array_equal(plain, padded)
    # padding that reaches into the recent rows: only the valid ones count
    short = basic()[2:]  # rows at t = 120, 130
    f = features_of(short, recent_steps=3, width=5)
    assert f["n_samples"] == 2
    assert f["memory_slope_bytes_per_s"] == pytest.approx(2.0)
    assert f["memory_recent_slope_bytes_per_s"] == pytest.approx(2.0)
    assert f["cpu_throttled_fraction"] == pytest.approx(0.3)
    # a row with a nan ts_s but other readings is absent too
    rows = window(basic())
    rows[0, 1, M["ts_s"]] = NAN
    f = dict(zip(FEATURES, compute_features(rows, recent_steps=2)[0], strict=True))
    assert f["n_samples"] == 3
    # rows t = 100, 120, 130; u = 100, 150, 170 → t − t̄ = −50/3, 10/3, 40/3, u − ū = −40, 10, 30
    # → Σ(t−t̄)² = 4200/9, Σ(t−t̄)(u−ū) = 1100 → slope = 33/14
    assert f["memory_slope_bytes_per_s"] == pytest.approx(33 / 14)
    assert f["cpu_usage_cores_last"] == pytest.approx(1.5)
    assert f["cpu_usage_cores_mean"] == pytest.approx(1.0)


def test_no_valid_rows():
    f = features_of([], recent_steps=2, width=4)
    assert f["n_samples"] == 0
    for name in (
        "memory_usage_last_bytes",
        "memory_limit_bytes",
        "memory_headroom_bytes",
        "memory_slope_bytes_per_s",
        "memory_recent_slope_bytes_per_s",
        "memory_resid_std_bytes",
        "memory_slope_std_bytes_per_s",
        "memory_time_to_limit_s",
        "cpu_usage_cores_last",
        "cpu_usage_cores_mean",
        "cpu_slope_cores_per_s",
        "cpu_rate_std_cores",
        "cpu_quota_cores",
    ):
        assert math.isnan(f[name]), name
    assert f["cpu_throttled_fraction"] == 0
    assert f["oom_kills_delta"] == 0
    assert f["memory_failcnt_delta"] == 0


def test_one_valid_row():
    f = features_of(basic()[-1:], width=4)
    assert f["n_samples"] == 1
    assert f["memory_usage_last_bytes"] == 170
    assert f["memory_limit_bytes"] == 200
    assert f["memory_headroom_bytes"] == 30
    assert f["cpu_quota_cores"] == 2
    for name in (
        "memory_slope_bytes_per_s",
        "memory_recent_slope_bytes_per_s",
        "memory_resid_std_bytes",
        "memory_slope_std_bytes_per_s",
        "memory_time_to_limit_s",  # headroom known but no trend yet
        "cpu_usage_cores_last",
        "cpu_usage_cores_mean",
        "cpu_slope_cores_per_s",
        "cpu_rate_std_cores",
    ):
        assert math.isnan(f[name]), name
    assert f["cpu_throttled_fraction"] == 0
    assert f["oom_kills_delta"] == 0


def test_two_valid_rows():
    f = features_of(basic()[-2:], width=4)
    assert f["memory_slope_bytes_per_s"] == pytest.approx(2.0)
    assert f["memory_resid_std_bytes"] == pytest.approx(0.0, abs=1e-12)
    assert f["memory_slope_std_bytes_per_s"] == 0
    assert f["cpu_usage_cores_last"] == pytest.approx(1.5)
    assert f["cpu_usage_cores_mean"] == pytest.approx(1.5)
    assert math.isnan(f["cpu_slope_cores_per_s"])  # one rate only
    assert f["cpu_rate_std_cores"] == 0
    assert f["cpu_throttled_fraction"] == pytest.approx(0.3)
    assert f["memory_failcnt_delta"] == 0


def test_missing_readings_inside_the_window():
    f = features_of(
        basic(
            memory_usage_bytes=[100.0, NAN, 150.0, 170.0],
            cpu_usage_s_total=[0.0, 5.0, NAN, 30.0],
            memory_limit_bytes=[200.0, 200.0, 300.0, NAN],
            cpu_quota_cores=[2.0, 2.0, 4.0, NAN],
        )
    )
    assert f["n_samples"] == 4
    slope = 33 / 14  # rows t = 100, 120, 130 (see test_padding_rows_are_ignored)
    assert f["memory_slope_bytes_per_s"] == pytest.approx(slope)
    assert f["memory_limit_bytes"] == 300  # last non-nan limit
    assert f["memory_headroom_bytes"] == 130
    assert f["memory_time_to_limit_s"] == pytest.approx(130 / slope)
    # cpu steps: (100→110) 0.5 and (110→130) 25/20 = 1.25
    assert f["cpu_usage_cores_last"] == pytest.approx(1.25)
    assert f["cpu_usage_cores_mean"] == pytest.approx(1.0)
    assert f["cpu_slope_cores_per_s"] == pytest.approx((1.25 - 0.5) / 20)
    assert f["cpu_rate_std_cores"] == pytest.approx(0.375)
    assert f["cpu_quota_cores"] == 4


def test_counter_reset_gives_no_negative_rates_or_counts():
    f = features_of(
        basic(
            cpu_usage_s_total=[0.0, 10.0, 2.0, 12.0],  # reset between t=110 and t=120
            cpu_periods_total=[0.0, 100.0, 0.0, 100.0],
            cpu_throttled_periods_total=[0.0, 10.0, 0.0, 30.0],
            oom_kills_total=[2.0, 2.0, 0.0, 1.0],
            memory_failcnt_total=[9.0, 10.0, 1.0, 3.0],
        ),
        recent_steps=4,
    )
    # rates 1.0, 0 (reset step), 1.0
    assert f["cpu_usage_cores_last"] == pytest.approx(1.0)
    assert f["cpu_usage_cores_mean"] == pytest.approx(20 / 30)
    assert f["cpu_slope_cores_per_s"] == pytest.approx(0.0, abs=1e-12)
    assert f["cpu_rate_std_cores"] == pytest.approx(math.sqrt(2 / 9))
    # throttling: the reset step is dropped → (10 + 30) / (100 + 100)
    assert f["cpu_throttled_fraction"] == pytest.approx(0.2)
    assert f["oom_kills_delta"] == 1
    assert f["memory_failcnt_delta"] == 1 + 2


def test_throttled_counter_reset_hidden_by_growing_periods():
    # the cgroup was recreated between t=110 and t=120 but periods already grew past
    # the old value: Δperiods = 150 > 0, Δthrottled = −35 < 0 → that step is dropped
    f = features_of(
        basic(
            cpu_periods_total=[0.0, 100.0, 250.0, 350.0],
            cpu_throttled_periods_total=[0.0, 40.0, 5.0, 25.0],
        ),
        recent_steps=4,
    )
    assert f["cpu_throttled_fraction"] == pytest.approx((40 + 20) / (100 + 100))


def test_unlimited_limits_and_time_to_limit_cases():
    f = features_of(basic(memory_limit_bytes=[INF] * 4, cpu_quota_cores=[INF] * 4))
    assert f["memory_limit_bytes"] == INF
    assert f["memory_headroom_bytes"] == INF
    assert f["memory_time_to_limit_s"] == INF
    assert f["cpu_quota_cores"] == INF
    # over the limit already
    f = features_of(basic(memory_limit_bytes=[160.0] * 4))
    assert f["memory_headroom_bytes"] == -10
    assert f["memory_time_to_limit_s"] == 0
    # shrinking usage never reaches the limit
    f = features_of(basic(memory_usage_bytes=[170.0, 150.0, 120.0, 100.0]))
    assert f["memory_slope_bytes_per_s"] == pytest.approx(-2.4)
    assert f["memory_time_to_limit_s"] == INF
    # limit unknown (nan readings) → headroom and time unknown
    f = features_of(basic(memory_limit_bytes=[NAN] * 4))
    assert math.isnan(f["memory_headroom_bytes"])
    assert math.isnan(f["memory_time_to_limit_s"])


def test_throttled_fraction_without_period_counters_is_zero():
    f = features_of(basic(cpu_periods_total=[NAN] * 4, cpu_throttled_periods_total=[NAN] * 4))
    assert f["cpu_throttled_fraction"] == 0
    f = features_of(basic(cpu_periods_total=[5.0] * 4, cpu_throttled_periods_total=[1.0] * 4))
    assert f["cpu_throttled_fraction"] == 0  # Δperiods = 0


def test_duplicate_timestamps_do_not_divide_by_zero():
    f = features_of(basic(ts_s=[100.0, 100.0, 100.0, 100.0]))
    assert math.isnan(f["memory_slope_bytes_per_s"])
    assert math.isnan(f["cpu_usage_cores_last"])
    assert f["oom_kills_delta"] == 1


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((4, len(METRICS)), "3-D"),
        ((2, 4, len(METRICS), 1), "3-D"),
        ((2, 4, len(METRICS) - 1), "len\\(METRICS\\)"),
    ],
)
def test_bad_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        compute_features(np.zeros(shape), recent_steps=2)


@pytest.mark.parametrize("recent_steps", [1, 0, -3, 2.5])
def test_bad_recent_steps(recent_steps):
    with pytest.raises(ValueError, match="recent_steps"):
        compute_features(window(basic()), recent_steps=recent_steps)


def test_empty_inputs():
    empty = compute_features(np.zeros((0, 5, len(METRICS))), recent_steps=2)
    assert empty.shape == (0, len(FEATURES))
    f = compute_features(np.zeros((3, 0, len(METRICS))), recent_steps=2)
    assert f.shape == (3, len(FEATURES))
    assert (f[:, F["n_samples"]] == 0).all()


def random_windows(n: int, width: int, seed: int = 1) -> np.ndarray:
    """Messy random windows: padding, gaps, nan readings, resets, unlimited limits."""
    rng = np.random.default_rng(seed)
    w = np.full((n, width, len(METRICS)), NAN)
    w[:, :, M["ts_s"]] = 1.7e9 + np.cumsum(rng.uniform(0.5, 10, (n, width)), axis=1)
    for name in (
        "cpu_usage_s_total",
        "cpu_periods_total",
        "oom_kills_total",
        "memory_failcnt_total",
    ):
        w[:, :, M[name]] = np.cumsum(rng.uniform(0, 10, (n, width)), axis=1)
    w[:, :, M["cpu_throttled_periods_total"]] = w[:, :, M["cpu_periods_total"]] * 0.3
    w[:, :, M["memory_usage_bytes"]] = rng.uniform(1e8, 2e9, (n, width))
    w[:, :, M["memory_limit_bytes"]] = np.where(rng.random((n, 1)) < 0.2, INF, 2.5e9)
    w[:, :, M["cpu_quota_cores"]] = np.where(rng.random((n, 1)) < 0.2, INF, 2.0)
    # counter resets at a random step for some containers
    reset = rng.random(n) < 0.2
    at = rng.integers(1, width, n)
    after = np.arange(width)[None, :] >= at[:, None]
    w[:, :, M["cpu_usage_s_total"]] -= np.where(reset[:, None] & after, 1e4, 0.0)
    # random nan readings and nan timestamps
    w[rng.random(w.shape) < 0.05] = NAN
    w[rng.random((n, width)) < 0.05, M["ts_s"]] = NAN
    # padding at the start: 0..width rows
    pad = rng.integers(0, width + 1, n)
    w[np.arange(width)[None, :] < pad[:, None]] = NAN
    return w


def test_vectorised_equals_one_container_at_a_time(monkeypatch):
    w = random_windows(1000, 12)
    together = compute_features(w, recent_steps=4)
    monkeypatch.setattr(features_module, "_CHUNK", 97)  # chunk boundaries change nothing
    np.testing.assert_array_equal(compute_features(w, recent_steps=4), together)
    for i in range(w.shape[0]):
        alone = compute_features(w[i : i + 1], recent_steps=4)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-12, equal_nan=True)
    # the random data exercises every branch it should
    n = together[:, F["n_samples"]]
    assert (n == 0).any() and (n == 1).any() and (n >= 5).any()
    assert np.isinf(together[:, F["memory_limit_bytes"]]).any()
    rates = together[:, F["cpu_usage_cores_last"]]
    assert (rates[~np.isnan(rates)] >= 0).all()


def test_slopes_agree_with_polyfit():
    w = random_windows(50, 12, seed=7)
    f = compute_features(w, recent_steps=4)
    checked = 0
    for i in range(w.shape[0]):
        t = w[i, :, M["ts_s"]]
        u = w[i, :, M["memory_usage_bytes"]]
        ok = np.isfinite(t) & np.isfinite(u)
        if ok.sum() < 3:
            continue
        (slope, _), (ssr,), *_ = np.polyfit(t[ok] - t[ok].mean(), u[ok], 1, full=True)
        assert f[i, F["memory_slope_bytes_per_s"]] == pytest.approx(slope, rel=1e-9)
        assert f[i, F["memory_resid_std_bytes"]] == pytest.approx(
            math.sqrt(ssr / ok.sum()), rel=1e-9
        )
        checked += 1
    assert checked > 10


def test_added_features_worked_example():
    """The worked example of the added features in the module docstring."""
    from prescale.app.core.features import F

    rows = [Sample("a", t, memory_usage_bytes=u, cpu_usage_s_total=c, block_latency_s=lat,
                   memory_pressure_full_s_total=psi).row()
            for t, u, c, lat, psi in [(0, 100, 0, 0.1, 0), (10, 120, 5, 0.1, 1),
                                      (20, 150, 15, 0.2, 3), (30, 170, 30, 0.4, 6)]]
    f = compute_features(np.array([rows]), recent_steps=2)[0]
    assert f[F["memory_usage_mean_bytes"]] == 135.0
    assert f[F["memory_usage_std_bytes"]] == pytest.approx(725 ** 0.5)
    assert (f[F["memory_usage_min_bytes"]], f[F["memory_usage_max_bytes"]]) == (100.0, 170.0)
    assert f[F["cpu_memory_correlation"]] == pytest.approx(0.99339927, abs=1e-8)
    assert f[F["block_latency_last_s"]] == 0.4
    assert f[F["block_latency_change_s"]] == pytest.approx(0.2)
    assert f[F["memory_latency_correlation"]] == pytest.approx(0.90971765, abs=1e-8)
    assert f[F["memory_pressure_full_fraction"]] == pytest.approx(0.2)
    # without latency or PSI readings (the cgroup v1 case) those features are nan
    bare = [Sample("b", t, memory_usage_bytes=100.0).row() for t in (0, 10, 20)]
    g = compute_features(np.array([bare]), recent_steps=2)[0]
    assert np.isnan(g[F["block_latency_last_s"]])
    assert np.isnan(g[F["memory_pressure_full_fraction"]])
    assert np.isnan(g[F["cpu_memory_correlation"]]) and g[F["memory_usage_std_bytes"]] == 0.0


# -- the same values as the reference -------------------------------------------------
#
# compute_features runs one compiled pass per container (app.core._features_kernel). Every feature
# must keep its value: it is checked against the implementation it replaced, kept below
# as it was (numpy, one metric at a time, a ``where`` for every mask).


def assert_same_features(got: np.ndarray, expected: np.ndarray) -> None:
    """``got`` equals ``expected``: nan at the same places, and every other value
    (±inf, ±0.0 included) the same bits. The tolerance is zero on purpose: the kernel
    sums every row in numpy's pairwise order (``_features_kernel._block_sum``: 8 accumulators,
    blocks of 128) over the same ``where(mask, x, 0.0)`` entries and does every other
    operation as the reference does, in IEEE double without fast-math or contraction, so
    it rounds exactly as the reference; a sequential sum would be off by a few ulps
    (~1e-15 relative) and fail here. Only the sign and payload of nan are not compared
    (the numpy version left a gauge's ``-nan`` as read in some chunks)."""
    assert got.shape == expected.shape and got.dtype == expected.dtype == np.float64
    nan = np.isnan(got)
    differ = [name for j, name in enumerate(FEATURES)
              if not np.array_equal(nan[:, j], np.isnan(expected[:, j]))]
    assert not differ, f"nan at other places in {differ}"
    got, expected = np.where(nan, 0.0, got), np.where(nan, 0.0, expected)
    differ = [name for j, name in enumerate(FEATURES)
              if got[:, j].tobytes() != expected[:, j].tobytes()]
    assert not differ, f"other values in {differ}"


def fleet_windows(n: int, width: int, seed: int) -> np.ndarray:
    """Windows of every kind the fast paths tell apart: full rows (strictly increasing
    timestamps, every reading finite), young containers padded at the start, holes and
    absent rows (gaps between valid readings), counter resets, repeated timestamps,
    counters and gauges a source lacks, readings inf, -inf, -nan or huge enough that
    their sums overflow, constant series, gauges valid only early or only in absent rows."""
    rng = np.random.default_rng(seed)
    w = np.full((n, width, len(METRICS)), NAN)
    jitter = rng.uniform(0, 0.01, (n, width)) * (rng.random((n, 1)) < 0.5)
    w[:, :, M["ts_s"]] = 1.7e9 + np.arange(width) * 10.0 + jitter
    uneven = rng.random(n) < 0.3  # steps using every bit: sums depend on their order
    w[uneven, :, M["ts_s"]] = np.cumsum(rng.uniform(0.5, 10, (uneven.sum(), width)), axis=1)
    for name in METRICS[1:]:
        steps = rng.exponential(rng.uniform(0.1, 1e6), (n, width))
        w[:, :, M[name]] = np.cumsum(steps, axis=1)
    w[:, :, M["memory_usage_bytes"]] = rng.uniform(1e8, 2e9, (n, width))
    w[:, :, M["block_latency_s"]] = rng.gamma(4, 0.01, (n, width))
    w[:, :, M["memory_limit_bytes"]] = np.where(rng.random((n, 1)) < 0.2, INF, 2.5e9)
    kind = rng.integers(0, 12, n)
    for k, name in ((1, "memory_pressure_full_s_total"), (2, "block_latency_s"),
                    (3, "cpu_usage_s_total"), (4, "io_read_bytes_total")):
        w[kind == k, :, M[name]] = NAN  # a source without it
    young = kind == 5
    pad = rng.integers(0, width + 1, n)
    w[young[:, None] & (np.arange(width)[None, :] < pad[:, None])] = NAN
    holes = kind == 6
    w[holes[:, None, None] & (rng.random(w.shape) < 0.1)] = NAN
    w[holes[:, None] & (rng.random((n, width)) < 0.1), M["ts_s"]] = NAN
    resets = kind == 7
    at = rng.integers(0, width, n)
    after = (np.arange(width)[None, :] >= at[:, None]) & resets[:, None]
    for name in ("cpu_usage_s_total", "oom_kills_total", "net_tx_bytes_total",
                 "memory_pressure_full_s_total", "cpu_throttled_periods_total"):
        w[:, :, M[name]] -= np.where(after, 1e7, 0.0)
    dups = (kind == 8) & (width > 1)
    w[dups, width // 2, M["ts_s"]] = w[dups, width // 2 - 1, M["ts_s"]]
    odd = kind == 9
    w[odd, rng.integers(0, width), M["io_write_bytes_total"]] = -INF
    w[odd, rng.integers(0, width), M["memory_usage_bytes"]] = INF
    w[odd, rng.integers(0, width), M["cpu_quota_cores"]] = -NAN
    w[odd, :, M["net_rx_bytes_total"]] = rng.choice([1.7e308, -1.7e308], (odd.sum(), width))
    flat = kind == 10
    w[flat] = w[flat][:, :1]
    w[kind == 11, -1, M["memory_limit_bytes"]] = NAN
    w[kind == 11, :, M["cpu_quota_cores"]] = NAN
    gauges = [M[g] for g in GAUGE_METRICS]
    w[:, :, gauges] = NAN
    w[:, : max(width // 3, 1), M["cpu_peak_cores"]] = rng.uniform(0, 4, (n, max(width // 3, 1)))
    w[:, :, M["memory_assigned_bytes"]] = -NAN
    absent = ~np.isfinite(w[:, :, M["ts_s"]])
    w[:, :, M["scheduling_class"]] = np.where(absent, 3.0, NAN)
    w[rng.random(n) < 0.5, -1, M["cpu_request_cores"]] = 2.0
    w[kind == 4, :, M["disk_io_time_fraction"]] = INF
    return w


CASES = [  # (windows, recent_steps)
    (lambda: fleet_windows(2100, 60, seed=11), 10),
    (lambda: fleet_windows(600, 60, seed=12), 2),
    (lambda: fleet_windows(500, 60, seed=13), 61),
    (lambda: fleet_windows(1030, 7, seed=14), 3),
    (lambda: fleet_windows(300, 3, seed=15), 2),
    (lambda: fleet_windows(300, 2, seed=16), 2),
    (lambda: fleet_windows(100, 1, seed=17), 2),
    (lambda: random_windows(1000, 12, seed=1), 4),
    (lambda: random_windows(700, 60, seed=5), 10),
    (lambda: fleet_windows(1500, 60, seed=18)[::2], 10),  # a strided view
    (lambda: np.asfortranarray(fleet_windows(800, 30, seed=19)), 5),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_values_as_the_reference(case):
    make, recent_steps = CASES[case]
    w = make()
    got = compute_features(w, recent_steps=recent_steps)
    assert_same_features(got, reference_features(np.asarray(w, dtype=np.float64),
                                                 recent_steps))


def test_the_check_can_fail():
    """assert_same_features sees one ulp, a nan moved, an inf for a huge value."""
    w = fleet_windows(50, 20, seed=3)
    good = compute_features(w, recent_steps=4)
    j = F["memory_slope_bytes_per_s"]
    i = int(np.flatnonzero(np.isfinite(good[:, j]))[0])
    for change in (lambda f: np.nextafter(f, np.inf), lambda f: np.nan,
                   lambda f: np.copysign(np.inf, f)):
        bad = good.copy()
        bad[i, j] = change(bad[i, j])
        with pytest.raises(AssertionError, match="memory_slope_bytes_per_s"):
            assert_same_features(bad, good)


@pytest.mark.parametrize("width", [129, 136, 300, 1100])
def test_same_values_beyond_one_pairwise_block(width):
    """Rows longer than numpy's pairwise block (128) are summed as halves, as numpy
    does: still the reference's values."""
    w = fleet_windows(60, width, seed=width)
    assert_same_features(compute_features(w, recent_steps=50), reference_features(w, 50))


def test_same_values_with_other_chunks(monkeypatch):
    """A window that is not C-contiguous is copied a chunk at a time: chunk boundaries
    anywhere give the reference's values, and the same bytes as the contiguous window."""
    w = fleet_windows(1400, 20, seed=21)
    monkeypatch.setattr(features_module, "_CHUNK", 97)
    got = compute_features(w[::2], recent_steps=4)
    assert_same_features(got, reference_features(w[::2], 4, chunk=97))
    assert got.tobytes() == compute_features(np.ascontiguousarray(w[::2]),
                                             recent_steps=4).tobytes()


def test_concurrent_calls_give_the_same_bytes():
    """The kernel holds no GIL and each call has its own work arrays: concurrent calls
    from threads, with windows of other shapes in between, give the same bytes as calls
    one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    windows = [fleet_windows(n, width, seed=30 + i) for i, (n, width) in enumerate(
        ((1500, 60), (1500, 60), (1500, 60), (1500, 60), (300, 60), (40, 7), (1, 60)))]
    alone = [compute_features(w, recent_steps=5).tobytes() for w in windows]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            together = list(pool.map(lambda w: compute_features(w, recent_steps=5).tobytes(),
                                     windows))
            assert together == alone


def test_reference_fleet_exercises_every_path():
    """The fleet windows reach the paths the implementation tells apart."""
    w = fleet_windows(2100, 60, seed=11)
    f = compute_features(w, recent_steps=10)
    n = f[:, F["n_samples"]]
    assert (n == 60).mean() > 0.5 and (n == 0).any() and ((n > 0) & (n < 60)).any()
    for name in ("memory_pressure_full_fraction", "block_latency_change_s",
                 "cpu_memory_correlation", "memory_latency_correlation", "io_read_bytes_per_s"):
        col = f[:, F[name]]
        assert np.isnan(col).any() and np.isfinite(col).any(), name
    peak = np.isfinite(f[:, F["cpu_peak_cores_last"]])
    assert 0.5 < peak.mean() < 1  # found in the early rows, where there are any
    # -nan in every row: no valid reading; finite only in absent rows: none either
    assert np.isnan(f[:, F["memory_assigned_bytes_last"]]).all()
    assert np.isnan(f[:, F["scheduling_class_last"]]).all()
    assert np.isinf(f[:, F["memory_limit_bytes"]]).any()
    assert (f[:, F["oom_kills_delta"]] > 0).any()


# -- the reference: the features one metric at a time (as before the planes) ----------


def reference_features(window: np.ndarray, recent_steps: int, chunk: int = 1024) -> np.ndarray:
    """The features as computed one metric at a time, before the planes (kept frozen)."""
    n_containers = window.shape[0]
    out = np.full((n_containers, len(FEATURES)), np.nan)
    with np.errstate(all="ignore"):
        for start in range(0, n_containers, chunk):
            stop = start + chunk
            # [N, W, M] → [M, N, W] with each row (a container's W readings of a metric)
            # contiguous, as the reference always read it
            cols = np.ascontiguousarray(window[start:stop].transpose(0, 2, 1)).transpose(1, 0, 2)
            _ref_fill(out[start:stop], cols, recent_steps)
    return out


def _ref_fill(out: np.ndarray, cols: np.ndarray, recent_steps: int) -> None:
    ts = cols[M["ts_s"]]
    present = np.isfinite(ts)
    recent = slice(max(cols.shape[2] - recent_steps, 0), None)

    def col(name: str) -> np.ndarray:
        return cols[M[name]]

    out[:, F["n_samples"]] = present.sum(axis=1)

    # memory
    usage = col("memory_usage_bytes")
    mem_ok = present & np.isfinite(usage)
    names = ("memory_usage_last_bytes", "memory_limit_bytes", "memory_headroom_bytes",
             "memory_slope_bytes_per_s", "memory_recent_slope_bytes_per_s",
             "memory_resid_std_bytes", "memory_slope_std_bytes_per_s", "memory_time_to_limit_s")
    trend = _ref_trend(ts, usage, col("memory_limit_bytes"), present, mem_ok, recent)
    for name, value in zip(names, trend, strict=True):
        out[:, F[name]] = value

    # cpu usage rates
    (last, mean, slope, std), rate, step = _ref_rates(ts, col("cpu_usage_s_total"), present)
    out[:, F["cpu_usage_cores_last"]] = last
    out[:, F["cpu_usage_cores_mean"]] = mean
    out[:, F["cpu_slope_cores_per_s"]] = slope
    out[:, F["cpu_rate_std_cores"]] = std
    quota = col("cpu_quota_cores")
    out[:, F["cpu_quota_cores"]] = _ref_last(quota, present & ~np.isnan(quota))
    _ref_fill_extra(out, cols, present, recent, rate, step)

    # cpu throttling, over the recent rows
    periods = col("cpu_periods_total")[:, recent]
    throttled = col("cpu_throttled_periods_total")[:, recent]
    thr_ok = present[:, recent] & np.isfinite(periods) & np.isfinite(throttled)
    prev, step = _ref_steps(thr_ok)
    dper = _ref_delta(periods, prev)
    dthr = _ref_delta(throttled, prev)
    step &= (dper > 0) & (dthr >= 0)
    sum_per = np.where(step, dper, 0.0).sum(axis=1)
    sum_thr = np.where(step, dthr, 0.0).sum(axis=1)
    fraction = np.where(sum_per > 0, np.clip(sum_thr / sum_per, 0.0, 1.0), 0.0)
    out[:, F["cpu_throttled_fraction"]] = fraction

    # failure counters
    for feature, metric in (
        ("oom_kills_delta", "oom_kills_total"),
        ("memory_failcnt_delta", "memory_failcnt_total"),
    ):
        values = col(metric)
        prev, step = _ref_steps(present & np.isfinite(values))
        d = np.maximum(_ref_delta(values, prev), 0.0)
        out[:, F[feature]] = np.where(step, d, 0.0).sum(axis=1)


def _ref_trend(ts: np.ndarray, used: np.ndarray, limit: np.ndarray, present: np.ndarray,
           ok: np.ndarray, recent: slice) -> tuple[np.ndarray, ...]:
    u_last = _ref_last(used, ok)
    l_last = _ref_last(limit, present & ~np.isnan(limit))
    headroom = l_last - u_last
    slope, resid_std, slope_se = _ref_ols(ts, used, ok)
    recent_slope, _, _ = _ref_ols(ts[:, recent], used[:, recent], ok[:, recent])
    ttl = np.where(headroom <= 0, 0.0, np.where(slope > 0, headroom / slope, np.inf))
    unknown = np.isnan(headroom) | (np.isnan(slope) & np.isfinite(headroom) & (headroom > 0))
    ttl[unknown] = np.nan
    return u_last, l_last, headroom, slope, recent_slope, resid_std, slope_se, ttl


def _ref_rates(ts: np.ndarray, counter: np.ndarray, present: np.ndarray
           ) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    ok = present & np.isfinite(counter)
    prev, step = _ref_steps(ok)
    d = np.maximum(_ref_delta(counter, prev), 0.0)
    dt = _ref_delta(ts, prev)
    step &= dt > 0
    rate = np.where(step, d / dt, np.nan)
    n_steps = step.sum(axis=1)
    sum_dt = np.where(step, dt, 0.0).sum(axis=1)
    mean_rate = np.where(step, d, 0.0).sum(axis=1) / sum_dt
    rate_slope, _, _ = _ref_ols(ts, rate, step)
    rate_mean = np.where(step, rate, 0.0).sum(axis=1) / n_steps
    rate_dev = np.where(step, rate - rate_mean[:, None], 0.0)
    rate_std = np.sqrt((rate_dev * rate_dev).sum(axis=1) / n_steps)
    return ((_ref_last(rate, step), np.where(n_steps > 0, mean_rate, np.nan), rate_slope,
             np.where(n_steps > 0, rate_std, np.nan)), rate, step)


def _ref_masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    n = mask.sum(axis=1)
    return np.where(mask, x, 0.0).sum(axis=1) / np.where(n > 0, n, np.nan)


def _ref_corr(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of x and y over ``mask`` (nan: < 3 points or flat)."""
    mask = mask & np.isfinite(x) & np.isfinite(y)
    n = mask.sum(axis=1)
    mx, my = _ref_masked_mean(x, mask), _ref_masked_mean(y, mask)
    dx = np.where(mask, x - mx[:, None], 0.0)
    dy = np.where(mask, y - my[:, None], 0.0)
    cov = (dx * dy).sum(axis=1)
    den = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    return np.where((n >= 3) & (den > 0), cov / np.where(den > 0, den, 1.0), np.nan)


def _ref_fill_extra(out: np.ndarray, cols: np.ndarray, present: np.ndarray, recent: slice,
                rate: np.ndarray, step: np.ndarray) -> None:
    ts = cols[M["ts_s"]]
    usage = cols[M["memory_usage_bytes"]]
    ok = present & np.isfinite(usage)
    mean = _ref_masked_mean(usage, ok)
    dev = np.where(ok, usage - mean[:, None], 0.0)
    any_ok = ok.any(axis=1)
    out[:, F["memory_usage_mean_bytes"]] = mean
    out[:, F["memory_usage_std_bytes"]] = np.sqrt(
        (dev * dev).sum(axis=1) / np.where(any_ok, ok.sum(axis=1), np.nan))
    if usage.shape[1]:
        out[:, F["memory_usage_min_bytes"]] = np.where(
            any_ok, np.where(ok, usage, np.inf).min(axis=1), np.nan)
        out[:, F["memory_usage_max_bytes"]] = np.where(
            any_ok, np.where(ok, usage, -np.inf).max(axis=1), np.nan)
    out[:, F["cpu_memory_correlation"]] = _ref_corr(rate, usage, step & ok)

    lat = cols[M["block_latency_s"]]
    lat_ok = present & np.isfinite(lat)
    out[:, F["block_latency_last_s"]] = _ref_last(lat, lat_ok)
    earlier = np.zeros_like(lat_ok)
    earlier[:, : recent.start] = lat_ok[:, : recent.start]
    later = np.zeros_like(lat_ok)
    later[:, recent] = lat_ok[:, recent]
    out[:, F["block_latency_change_s"]] = (_ref_masked_mean(lat, later)
                                           - _ref_masked_mean(lat, earlier))
    out[:, F["memory_latency_correlation"]] = _ref_corr(usage, lat, ok & lat_ok)

    psi = cols[M["memory_pressure_full_s_total"]]
    psi_ok = present & np.isfinite(psi)
    prev, pstep = _ref_steps(psi_ok)
    dpsi = np.maximum(_ref_delta(psi, prev), 0.0)
    dt = _ref_delta(ts, prev)
    pstep &= dt > 0
    total_dt = np.where(pstep, dt, 0.0).sum(axis=1)
    out[:, F["memory_pressure_full_fraction"]] = np.where(
        total_dt > 0, np.where(pstep, dpsi, 0.0).sum(axis=1) / np.where(total_dt > 0, total_dt, 1),
        np.nan)
    _ref_fill_beyond(out, cols, present)


def _ref_fill_beyond(out: np.ndarray, cols: np.ndarray, present: np.ndarray) -> None:
    """Usage beyond memory and CPU: usage ÷ limit, byte rates, last gauges (module doc)."""
    u_last = out[:, F["memory_usage_last_bytes"]]
    limit = out[:, F["memory_limit_bytes"]]
    out[:, F["memory_usage_limit_fraction"]] = np.where(
        np.isinf(limit), 0.0, np.where(limit > 0, u_last / np.where(limit > 0, limit, 1.0),
                                       np.nan))
    ts = cols[M["ts_s"]]
    dt = np.diff(ts, axis=1)  # nan where either row is absent
    for feature, metric in RATE_COUNTERS.items():
        values = cols[M[metric]]
        if not np.isfinite(values).any():  # no such counter from this source
            out[:, F[feature]] = np.nan
            continue
        dv = np.diff(values, axis=1)
        ok = np.isfinite(dv) & (dt > 0)
        total_dt = np.where(ok, dt, 0.0).sum(axis=1)
        out[:, F[feature]] = np.where(
            total_dt > 0, np.where(ok, np.maximum(dv, 0.0), 0.0).sum(axis=1)
            / np.where(total_dt > 0, total_dt, 1.0), np.nan)
    # gauges: the reading of the last present row, else (a missing reading there) the
    # last valid one; a gauge no row has (most sources) is nan after one cheap check
    width = present.shape[1]
    any_present = present.any(axis=1)
    last_row = (width - 1 - np.argmax(present[:, ::-1], axis=1) if width
                else np.zeros(present.shape[0], dtype=np.intp))
    rows = np.arange(present.shape[0])
    for g in GAUGE_METRICS:
        values = cols[M[g]]
        last = values[rows, last_row] if width else np.full(rows.size, np.nan)
        missing = np.isnan(last) & any_present
        if missing.any() and not (missing.all() and not np.isfinite(values).any()):
            sub = values[missing]
            last[missing] = _ref_last(sub, present[missing] & np.isfinite(sub))
        out[:, F[f"{g}_last"]] = np.where(any_present, last, np.nan)
    request = out[:, F["cpu_request_cores_last"]]
    mean_cores = out[:, F["cpu_usage_cores_mean"]]
    out[:, F["cpu_usage_request_fraction"]] = np.where(
        request > 0, mean_cores / np.where(request > 0, request, 1.0), np.nan)


def _ref_last(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values`` at the last True of ``mask`` in each row ([N, W] → [N]); nan if none."""
    width = mask.shape[1]
    if width == 0:
        return np.full(mask.shape[0], np.nan)
    idx = width - 1 - np.argmax(mask[:, ::-1], axis=1)
    picked = np.take_along_axis(values, idx[:, None], axis=1)[:, 0]
    return np.where(mask.any(axis=1), picked, np.nan)


def _ref_steps(mask: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Pair each valid position with the previous valid one.

    Returns ``(prev, step)``: ``prev[n, j]`` is the index of the last True of
    ``mask[n, :j]`` (clamped to 0 when there is none) and ``step[n, j]`` is True
    where ``mask[n, j]`` and such a previous position exists. ``prev`` is ``None``
    when every step is from the row just before (no gaps: the usual case), which
    :func:`_ref_delta` then computes as a plain shifted difference.
    """
    width = mask.shape[1]
    idx = np.where(mask, np.arange(width), -1)
    upto = np.maximum.accumulate(idx, axis=1) if width else idx
    prev = np.full_like(upto, -1)
    prev[:, 1:] = upto[:, :-1]
    step = mask & (prev >= 0)
    if width > 1 and not (step[:, 1:] & (prev[:, 1:] != np.arange(width - 1))).any():
        return None, step
    return np.maximum(prev, 0), step


def _ref_delta(values: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """``values[n, j] − values[n, prev[n, j]]``; with ``prev`` None (no gaps,
    :func:`_ref_steps`), ``values[n, j] − values[n, j − 1]``. Only the entries at steps
    are meaningful (every caller masks the others): the first column is 0 (or nan)."""
    if prev is None:
        out = np.empty_like(values)
        out[:, 0] = values[:, 0] - values[:, 0]
        np.subtract(values[:, 1:], values[:, :-1], out=out[:, 1:])
        return out
    return values - np.take_along_axis(values, prev, axis=1)


def _ref_ols(
    t: np.ndarray, y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row least-squares fit of ``y`` on ``t`` over ``mask``.

    Returns ``(slope, resid_std, slope_se)`` ([N] each): the slope, the population
    std of the residuals and the slope's standard error (0 when n = 2); all ``nan``
    where fewer than 2 points or no spread in ``t``. Centred two-pass sums keep
    precision with epoch-second timestamps.
    """
    n = mask.sum(axis=1)
    t_mean = np.where(mask, t, 0.0).sum(axis=1) / n
    y_mean = np.where(mask, y, 0.0).sum(axis=1) / n
    dt = np.where(mask, t - t_mean[:, None], 0.0)
    dy = np.where(mask, y - y_mean[:, None], 0.0)
    stt = (dt * dt).sum(axis=1)
    sty = (dt * dy).sum(axis=1)
    ok = (n >= 2) & (stt > 0)
    slope = np.where(ok, sty / stt, np.nan)
    resid = dy - np.where(ok, slope, 0.0)[:, None] * dt
    ssr = (resid * resid).sum(axis=1)
    resid_std = np.where(ok, np.sqrt(ssr / n), np.nan)
    slope_se = np.where(n > 2, np.sqrt(ssr / (n - 2) / stt), 0.0)
    slope_se = np.where(ok, slope_se, np.nan)
    return slope, resid_std, slope_se


def test_without_a_writable_cache_the_kernel_still_compiles(tmp_path):
    """Where numba finds no writable cache directory (a read-only install, a user
    without a home) it refuses ``cache=True`` at import; features then compile without a
    cache, and say so once. Run in a fresh process whose only cache locator never applies
    to a file (IPython's): the same features as here."""
    import os
    import subprocess
    import sys

    w = fleet_windows(30, 12, seed=4)
    np.save(tmp_path / "w.npy", w)
    code = ("import sys, numpy as np; from prescale.app.core.features import compute_features;"
            "w = np.load(sys.argv[1]); np.save(sys.argv[2], compute_features(w, recent_steps=3))")
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.npy"),
                           str(tmp_path / "f.npy")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_features(np.load(tmp_path / "f.npy"), compute_features(w, recent_steps=3))
    # not silent: one warning, naming the way out
    assert done.stderr.count("RuntimeWarning: features: numba has no writable cache") == 1
    assert "NUMBA_CACHE_DIR" in done.stderr


def test_importing_the_names_does_not_load_numba():
    """FEATURES and F are imported by processes that never compute a feature (the API,
    the CLI): numba and LLVM (~100 MiB) load only with the first compute_features."""
    import subprocess
    import sys

    code = ("import sys; from prescale.app.core.features import FEATURES, F;"
            "assert 'numba' not in sys.modules, 'numba loaded';"
            "import numpy as np; from prescale.app.core.features import compute_features;"
            "compute_features(np.zeros((1, 3, 40)), recent_steps=2);"
            "assert 'numba' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
