"""Anomaly detector: features, input handling, score mapping, flags, scoring rules, round trips."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from prescale.app.core.features import FEATURES, compute_features
from prescale.app.core.sample import METRICS, M
from prescale.app.models.anomaly import (
    ANOMALY_FEATURE,
    AnomalyDetector,
    _apply_fill,
    calibrate,
    is_anomalous,
    with_anomaly_feature,
)
from prescale.app.models.anomaly_series import (
    UNIVARIATE_FEATURES,
    WindowScore,
    evaluate_series,
    merge_alarms,
    probation_rows,
    rows_in_windows,
    score_flags,
    univariate_window_features,
)

INF = math.inf
NAN = math.nan


# --------------------------------------------------------------------------- features


def test_univariate_features_worked_example():
    out = univariate_window_features([1.0, 2.0, 3.0, 10.0], 3)
    assert out.shape == (4, len(UNIVARIATE_FEATURES)) == (4, 4)
    assert UNIVARIATE_FEATURES == ("window_mean", "window_std", "zscore_last", "delta_last")
    # rows 0-2 have no 3 earlier values
    assert np.isnan(out[:3, :3]).all()
    np.testing.assert_array_equal(out[:, 3], [NAN, 1.0, 1.0, 7.0])
    mean, std, z, delta = out[3]
    assert mean == 2.0
    assert std == pytest.approx(math.sqrt(2 / 3))
    assert z == pytest.approx(8 / math.sqrt(2 / 3))  # 9.798
    assert z == pytest.approx(9.79796, abs=1e-5)
    assert delta == 7.0


def test_univariate_flat_window_gives_zero_or_infinite_z():
    out = univariate_window_features([5.0, 5.0, 5.0, 5.0, 6.0, 4.0], 3)
    assert out[3].tolist() == [5.0, 0.0, 0.0, 0.0]  # flat and unchanged: z 0
    assert out[4].tolist() == [5.0, 0.0, INF, 1.0]  # flat, then moves up: +inf
    assert out[5, 2] == pytest.approx((4 - 16 / 3) / np.std([5, 5, 6]))


def test_univariate_nan_value_spoils_only_its_windows():
    x = np.arange(10, dtype=float)
    x[5] = NAN
    out = univariate_window_features(x, 3)
    z = out[:, 2]
    assert np.isfinite(z[3:5]).all()
    assert np.isnan(z[5:9]).all()  # row 5 itself, and rows whose window holds row 5
    assert np.isfinite(z[9])
    assert np.isnan(out[5:7, 3]).all() and out[7, 3] == 1.0


@pytest.mark.parametrize(
    ("values", "w", "msg"),
    [
        ([1.0, 2.0], 1, "window_points must be ≥ 2"),
        ([1.0, 2.0], 2.5, "window_points must be an int"),
        ([[1.0, 2.0]], 2, "values must be 1-D"),
    ],
)
def test_univariate_bad_input(values, w, msg):
    with pytest.raises(ValueError, match=msg):
        univariate_window_features(values, w)


# --------------------------------------------------------------------------- input handling


def test_fill_worked_example_nan_to_median_inf_beyond_range():
    train = np.array([[1.0, 7.0], [3.0, NAN], [NAN, NAN], [INF, NAN]])
    det = AnomalyDetector(n_estimators=5, seed=0).fit(train)
    fill = det._fill
    assert fill is not None
    # column 0: finite [1, 3] → med 2, lo 1, hi 3, span 2; column 1: [7] → span 0 → 1
    assert fill["med"].tolist() == [2.0, 7.0]
    assert fill["lo"].tolist() == [1.0, 7.0]
    assert fill["hi"].tolist() == [3.0, 7.0]
    assert fill["span"].tolist() == [2.0, 1.0]
    cells = np.array([[NAN, INF], [INF, -INF], [-INF, 9.0]])
    assert _apply_fill(cells, fill).tolist() == [[2.0, 8.0], [5.0, 6.0], [-1.0, 9.0]]


def test_column_without_any_finite_value_fills_zero_and_one():
    train = np.array([[1.0, NAN], [2.0, INF], [3.0, NAN]])
    det = AnomalyDetector(n_estimators=5, seed=0).fit(train)
    assert det._fill is not None
    assert det._fill["med"][1] == 0.0 and det._fill["span"][1] == 1.0
    assert _apply_fill(np.array([[0.0, INF], [0.0, NAN]]), det._fill)[:, 1].tolist() == [1.0, 0.0]
    scores = det.score([[2.0, NAN], [2.0, -INF]])
    assert np.all((scores >= 0) & (scores <= 1))


# --------------------------------------------------------------------------- score mapping


def test_calibrate_worked_example():
    train = np.array([0.40, 0.45, 0.50, 0.60])
    raw = np.array([0.47, 0.45, 0.30, 0.60, 0.70])
    assert calibrate(raw, train).tolist() == [0.5, 0.5, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="non-empty"):
        calibrate(raw, np.array([]))


def _gaussian(n: int, f: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f))


def test_score_is_the_training_ecdf_of_the_raw_score():
    train = _gaussian(1000)
    det = AnomalyDetector(seed=0).fit(train)
    raw_train = det.raw_score(train)
    assert np.all((raw_train > 0) & (raw_train <= 1))  # the paper's s ∈ (0, 1]
    scores = det.score(train)
    # no ties in continuous data: the training scores are exactly the ranks / n
    assert np.unique(raw_train).size == 1000
    assert sorted(scores.tolist()) == [k / 1000 for k in range(1, 1001)]
    # threshold 0.99 = the training 99th percentile: exactly 10 of 1000 rows above it
    assert det.threshold == 0.99
    assert int(is_anomalous(scores, det.threshold).sum()) == 10
    # new rows: the same ECDF of their raw scores
    new = _gaussian(50, seed=2)
    np.testing.assert_array_equal(det.score(new), calibrate(det.raw_score(new), np.sort(raw_train)))
    # far outside the training cloud → more anomalous than every training row
    assert det.score([[8.0, -8.0, 8.0]])[0] == 1.0
    assert det.score([[0.0, 0.0, 0.0]])[0] < 0.5


def test_is_anomalous():
    assert is_anomalous([0.5, 0.99, 0.991, 1.0, NAN], 0.99).tolist() == [
        False,
        False,
        True,
        True,
        False,
    ]
    for bad in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="threshold"):
            is_anomalous([0.5], bad)


def test_with_anomaly_feature_on_real_feature_rows():
    """The detector as a feature: appended to compute_features rows (inf limits, nan)."""
    rng = np.random.default_rng(3)
    n, w = 200, 6
    window = np.full((n, w, len(METRICS)), NAN)
    window[:, :, M["ts_s"]] = 100.0 + 10.0 * np.arange(w)
    usage = 1e8 + 1e6 * rng.normal(size=(n, 1)) + 1e5 * np.arange(w) * rng.random((n, 1))
    window[:, :, M["memory_usage_bytes"]] = usage
    window[:, :, M["memory_limit_bytes"]] = np.where(np.arange(n) % 2 == 0, 5e8, INF)[:, None]
    window[:, :, M["cpu_usage_s_total"]] = np.cumsum(rng.random((n, w)), axis=1)
    window[::3, :, M["cpu_usage_s_total"]] = NAN  # no CPU readings: CPU features nan
    window[:, :, M["cpu_quota_cores"]] = INF
    window[-1, :, M["memory_usage_bytes"]] = 4.9e8  # one container close to its limit
    X = compute_features(window, recent_steps=3)
    assert np.isinf(X).any() and np.isnan(X).any()  # unlimited limits, unknown counters
    det = AnomalyDetector(seed=0).fit(X[:-1])
    out = with_anomaly_feature(X, det)
    assert out.shape == (n, len(FEATURES) + 1)
    np.testing.assert_array_equal(out[:, :-1], X)
    np.testing.assert_array_equal(out[:, -1], det.score(X))
    assert ANOMALY_FEATURE == "anomaly_score"
    assert np.all((out[:, -1] >= 0) & (out[:, -1] <= 1))
    # the odd one out (usage 390 σ above the rest) ranks high, though not at 1.0: see
    # test_score_saturates_beyond_the_training_range
    assert out[-1, -1] > 0.95


def test_score_saturates_beyond_the_training_range():
    """Documented limitation: past the training maximum a row follows the same branch
    as that maximum in every tree, so 10× further out scores exactly the same."""
    train = _gaussian(500, f=1)
    det = AnomalyDetector(seed=0).fit(train)
    top = float(train.max())
    raw = det.raw_score([[top], [top + 1.0], [10 * top]])
    assert raw[0] == raw[1] == raw[2]
    assert det.score([[10 * top]])[0] == det.score([[top]])[0]


# --------------------------------------------------------------------------- detection


def _synthetic(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 3000
    i = np.arange(n)
    x = 50 + 10 * np.sin(2 * np.pi * i / 288) + rng.normal(size=n)
    x[1500] += 15.0  # spike up
    x[2200] -= 15.0  # spike down
    x[2600:] += 8.0  # level shift
    ts = 1.4e9 + 300.0 * i
    return ts, x


def test_detector_flags_injected_spikes_and_level_shift():
    ts, x = _synthetic()
    w = 12
    p = probation_rows(x.size)
    assert p == 450
    feats = univariate_window_features(x, w)
    det = AnomalyDetector(seed=0).fit(feats[w:p])
    scores = det.score(feats)
    flags = is_anomalous(scores, det.threshold)
    # each spike is more anomalous than all but one of the 438 training rows (a score
    # saturates beyond the training range, where the training's own extreme row sits)
    assert scores[1500] == scores[2200] == 437 / 438
    assert flags[1500] and flags[2200]
    assert flags[2600 : 2600 + w].any()
    # quiet stretches away from the injections stay mostly unflagged (~1 % by design)
    quiet = np.r_[p:1490, 1530:2190, 2230:2590]
    assert flags[quiet].mean() < 0.03

    windows = [(ts[1490], ts[1510]), (ts[2190], ts[2210]), (ts[2595], ts[2620])]
    result = evaluate_series(ts, x, windows, window_points=w)
    assert result.probation_rows == 450 and result.rows == 3000
    assert (result.detector.windows, result.detector.detected) == (3, 3)
    assert result.detector.recall == 1.0
    # the spikes are caught at once, 10 rows (3000 s) after their window's start; the
    # level shift (row 2600, 1500 s after its window's start) no later than that
    spike_up, spike_down, shift = result.detector.delays_s
    assert (spike_up, spike_down) == (3000.0, 3000.0)
    assert shift <= 1500.0
    # the |z| > 3 baseline catches the spikes but not the +8 shift (3σ of the sine ≈ 21)
    assert result.baseline == WindowScore(3, 2, 2, 2, 2, (3000.0, 3000.0))


def test_determinism_with_a_seed():
    train, new = _gaussian(500), _gaussian(100, seed=5)
    a = AnomalyDetector(seed=42).fit(train).score(new)
    b = AnomalyDetector(seed=42).fit(train).score(new)
    np.testing.assert_array_equal(a, b)
    raw_a = AnomalyDetector(seed=42).fit(train).raw_score(new)
    raw_c = AnomalyDetector(seed=43).fit(train).raw_score(new)
    assert not np.array_equal(raw_a, raw_c)


def test_round_trip_bytes_and_pickle():
    train, new = _gaussian(300), _gaussian(40, seed=9)
    det = AnomalyDetector(contamination=0.02, n_estimators=50, seed=4).fit(train)
    back = AnomalyDetector.from_bytes(det.to_bytes())
    np.testing.assert_array_equal(back.score(new), det.score(new))
    assert (back.contamination, back.n_estimators, back.seed) == (0.02, 50, 4)
    assert back.threshold == pytest.approx(0.98)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score(new), det.score(new))


def test_from_bytes_refuses_what_is_not_a_detector():
    with pytest.raises(ValueError, match="unpickling failed"):
        AnomalyDetector.from_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="expected format"):
        AnomalyDetector.from_bytes(pickle.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="must be bytes"):
        AnomalyDetector.from_bytes("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not fitted"):
        AnomalyDetector().to_bytes()


def test_bad_input_is_refused_and_changes_nothing():
    train, new = _gaussian(200), _gaussian(10, seed=3)
    det = AnomalyDetector(seed=0).fit(train)
    before = det.score(new)
    with pytest.raises(ValueError, match="at least 2 rows"):
        det.fit([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="2-D"):
        det.fit([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="fitted on 3"):
        det.score([[1.0, 2.0]])
    np.testing.assert_array_equal(det.score(new), before)
    assert det.score(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="not fitted"):
        AnomalyDetector().score(new)
    for kwargs, msg in (
        ({"contamination": 0.5}, "contamination"),
        ({"contamination": 0}, "contamination"),
        ({"n_estimators": 0}, "n_estimators"),
        ({"max_samples": 1.5}, "max_samples"),
        ({"seed": None}, "seed"),
    ):
        with pytest.raises(ValueError, match=msg):
            AnomalyDetector(**kwargs)


# --------------------------------------------------------------------------- scoring rules


def test_probation_rows_is_nabs():
    assert [probation_rows(n) for n in (0, 1243, 4032, 4730, 18050, 22695)] == [
        0,
        186,
        604,
        709,
        750,
        750,
    ]


def test_merge_alarms_worked_example():
    alarms = merge_alarms([10, 11, 13, 16, 30], 3)
    assert [a.tolist() for a in alarms] == [[10, 11, 13], [16], [30]]
    assert merge_alarms([], 3) == []
    assert [a.tolist() for a in merge_alarms([1, 2, 3], 1)] == [[1], [2], [3]]
    with pytest.raises(ValueError, match="strictly increasing"):
        merge_alarms([5, 3], 3)
    with pytest.raises(ValueError, match="merge_gap"):
        merge_alarms([1], 0)


def test_rows_in_windows():
    assert rows_in_windows([0, 60, 120, 180], [(60, 120)]).tolist() == [False, True, True, False]


def test_score_flags_hand_made():
    """Rows 0..99 one minute apart; probation rows 0..9; merge gap 3.

    Windows: A rows 20-30, B rows 50-60, C rows 5-7 (ends in probation: not scored),
    D rows 95-150 (starts before the last row: scored). Flags: row 2 (probation,
    ignored); 18, 19, 21 → one alarm reaching into A (true; A detected at row 21,
    60 s after its start); 40 → false; 43 (3 rows after 40: a new alarm) → false;
    58, 59 → true (B at row 58, 480 s); 70 → false. D is missed.
    """
    ts = 60.0 * np.arange(100)
    windows = [(1200.0, 1800.0), (3000.0, 3600.0), (300.0, 420.0), (5700.0, 9000.0)]
    flags = np.zeros(100, dtype=bool)
    flags[[2, 18, 19, 21, 40, 43, 58, 59, 70]] = True
    got = score_flags(ts, flags, windows, first_scored_row=10, merge_gap=3)
    assert got == WindowScore(
        windows=3, detected=2, alarms=5, true_alarms=2, flags=8, delays_s=(60.0, 480.0)
    )
    assert got.recall == pytest.approx(2 / 3)
    assert got.precision == 0.4
    assert got.false_alarms == 3
    assert got.median_delay_s == 270.0

    # a wider merge gap joins 40 and 43 (and 18-21): 4 alarms, still 2 true
    wide = score_flags(ts, flags, windows, first_scored_row=10, merge_gap=4)
    assert (wide.alarms, wide.true_alarms) == (4, 2)
    # no flags: recall 0, precision undefined, no delay
    none = score_flags(ts, np.zeros(100, bool), windows, first_scored_row=10, merge_gap=3)
    assert (none.windows, none.detected, none.alarms) == (3, 0, 0)
    assert math.isnan(none.precision) and math.isnan(none.median_delay_s)
    # a series without windows: recall undefined, every alarm false
    empty = score_flags(ts, flags, [], first_scored_row=10, merge_gap=3)
    assert math.isnan(empty.recall) and empty.precision == 0.0


def test_score_flags_bad_input():
    ts = np.arange(5.0)
    with pytest.raises(ValueError, match="same length"):
        score_flags(ts, [True], [], first_scored_row=0, merge_gap=2)
    with pytest.raises(ValueError, match="first_scored_row"):
        score_flags(ts, np.zeros(5, bool), [], first_scored_row=6, merge_gap=2)
    with pytest.raises(ValueError, match="start must be ≤ end"):
        score_flags(ts, np.zeros(5, bool), [(3.0, 1.0)], first_scored_row=0, merge_gap=2)


def test_window_score_totals_pool_delays():
    a = WindowScore(windows=2, detected=1, alarms=4, true_alarms=1, flags=9, delays_s=(100.0,))
    b = WindowScore(
        windows=3, detected=3, alarms=6, true_alarms=4, flags=7, delays_s=(10.0, 20.0, 30.0)
    )
    t = WindowScore.total([a, b])
    assert (t.windows, t.detected, t.alarms, t.true_alarms, t.flags) == (5, 4, 10, 5, 16)
    assert t.recall == 0.8 and t.precision == 0.5
    assert t.median_delay_s == 25.0  # median of 10, 20, 30, 100 (not of the medians)


def test_zscore_baseline_worked_example():
    from prescale.app.models.anomaly_series import zscore_baseline_flags

    x = [1.0, 2.0, 3.0, 4.5, 4.4, -0.5, NAN]  # μ 2, σ 0.8165: flag outside 2 ± 2.449
    assert zscore_baseline_flags(x, 3).tolist() == [False, False, False, True, False, True, False]
    assert zscore_baseline_flags([5.0, 5.0, 5.0, 6.0, 5.0], 3).tolist() == [
        False,
        False,
        False,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="n_train"):
        zscore_baseline_flags(x, 0)


def test_evaluate_series_refuses_a_series_too_short():
    ts, x = _synthetic()
    with pytest.raises(ValueError, match="too short"):
        evaluate_series(ts[:80], x[:80], [], window_points=12)
