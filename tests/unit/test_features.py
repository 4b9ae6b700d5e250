"""Features: hand-computed examples for every feature, padding, resets, vectorisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import prescale.app.core.features as features_module
from prescale.app.core.features import FEATURES, F, compute_features
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


def test_swapped_layout_gives_the_strided_layouts_bytes(monkeypatch):
    """compute_features reads each chunk through :func:`features._columns` (a copy with
    the last two axes swapped, for contiguous rows); reading the same chunk through the
    plain strided view ``moveaxis(window, 2, 0)`` (what it did before) must give the same
    bytes, holes, young containers and all."""
    w = random_windows(700, 12, seed=3)
    fast = compute_features(w, recent_steps=4)
    monkeypatch.setattr(features_module, "_columns", lambda chunk: np.moveaxis(chunk, 2, 0))
    strided = compute_features(w, recent_steps=4)
    assert fast.tobytes() == strided.tobytes()
    assert np.isnan(fast).any() and np.isfinite(fast).any()
