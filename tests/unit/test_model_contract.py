"""The same contract for every model kind, plus a learnability check.

Synthetic task: containers whose memory grows (or shrinks) linearly with noise
towards a 1 GB limit; a row is positive when the trend reaches the limit within
H = 30 s, i.e. when the feature ``memory_time_to_limit_s ≤ 30`` (a simple function
of one feature). Feature models get the feature matrix, the LSTM the raw windows
the features were computed from, the heuristic the features (its own formula).
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from prescale.app.core.features import FEATURES, F, compute_features
from prescale.app.core.sample import METRICS, M
from prescale.app.models import (
    MODEL_KINDS,
    FailureModel,
    HeuristicModel,
    RandomForestModel,
    load_model,
    make_model,
    model_class,
    torch_available,
)
from prescale.app.models.lstm import INSTALL_HINT, window_channels
from prescale.app.models.metrics import pr_auc
from prescale.app.models.sklearn_models import cap_infinities

H = 30.0
LIMIT = 1e9
W = 8
SMALL = {  # quick settings for tests
    "random_forest": dict(n_estimators=40),
    "hist_gradient_boosting": dict(max_iter=40),
    "heuristic": dict(horizon_s=H, min_samples=2),
    "lstm": dict(epochs=15, hidden_size=16),
}
KINDS = [
    pytest.param(
        kind,
        marks=pytest.mark.skipif(
            kind == "lstm" and not torch_available(),
            reason="torch is not installed (optional extra prescale[lstm])",
        ),
    )
    for kind in MODEL_KINDS
]


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(windows [n, W, M], features [n, F], y [n])`` of the task in the module doc."""
    rng = np.random.default_rng(seed)
    win = np.full((n, W, len(METRICS)), np.nan)
    t = 1.7e9 + np.arange(W) * 5.0
    u0 = rng.uniform(0.2, 0.9, n) * LIMIT
    slope = rng.normal(0.0, 0.004, n) * LIMIT  # bytes/s
    usage = u0[:, None] + slope[:, None] * (t - t[0]) + rng.normal(0, 0.002, (n, W)) * LIMIT
    win[:, :, M["ts_s"]] = t
    win[:, :, M["memory_usage_bytes"]] = usage
    win[:, :, M["memory_limit_bytes"]] = LIMIT
    win[:, :, M["cpu_usage_s_total"]] = np.cumsum(rng.uniform(0, 5, (n, W)), axis=1)
    win[:, :, M["cpu_quota_cores"]] = np.inf
    young = rng.random(n) < 0.1  # some young containers: padded windows
    win[young, :3] = np.nan
    X = compute_features(win, recent_steps=4)
    y = (X[:, F["memory_time_to_limit_s"]] <= H).astype(np.int64)
    return win, X, y


TRAIN = synthetic(2000, seed=1)
TEST = synthetic(1000, seed=2)


def inputs(model: FailureModel, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    return data[0] if model.input == "window" else data[1]


_FITTED: dict[str, FailureModel] = {}


def fitted(kind: str) -> FailureModel:
    """One model per kind fitted on TRAIN with seed 0 (shared by the tests)."""
    if kind not in _FITTED:
        model = make_model(kind, **SMALL[kind])
        _FITTED[kind] = model.fit(inputs(model, TRAIN), TRAIN[2], seed=0)
    return _FITTED[kind]


def test_synthetic_task_is_sane():
    assert 0.05 < TRAIN[2].mean() < 0.2
    assert TRAIN[1].shape == (2000, len(FEATURES))
    assert set(MODEL_KINDS) == {"random_forest", "hist_gradient_boosting", "heuristic", "lstm"}


@pytest.mark.parametrize("kind", KINDS)
def test_fit_predict_shapes_and_probabilities(kind):
    model = fitted(kind)
    assert model.kind == kind and model.name == f"{kind}/v1" and model.fitted
    assert model.params == {**type(model).DEFAULTS, **SMALL[kind]}
    p = model.predict_proba(inputs(model, TEST))
    assert p.shape == (1000,) and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert p.std() > 0  # not a constant
    assert model.predict_proba(inputs(model, TEST)[:0]).shape == (0,)
    assert model.fit_info["n_train"] == 2000
    if model.trainable:
        # by default the estimator sees every row and the sigmoid every row out of fold
        assert model.fit_info["calibration"] == "sigmoid, cross-fitted over 3 folds in time order"
        assert (model.fit_info["n_fit"], model.fit_info["n_calibration"]) == (2000, 2000)


@pytest.mark.parametrize("kind", KINDS)
def test_learnability(kind):
    model = fitted(kind)
    assert pr_auc(TEST[2], model.predict_proba(inputs(model, TEST))) >= 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_pickling_round_trip_gives_identical_predictions(kind):
    model = fitted(kind)
    data = model.to_bytes()
    assert isinstance(data, bytes)
    for loader in (load_model, FailureModel.from_bytes, type(model).from_bytes):
        again = loader(data)
        assert type(again) is type(model) and again.params == model.params
        assert again.fit_info == model.fit_info
        np.testing.assert_array_equal(
            again.predict_proba(inputs(model, TEST)), model.predict_proba(inputs(model, TEST))
        )


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_model(kind):
    model = fitted(kind)
    # the global random state moved on since: that must not matter
    np.random.random(10)
    if torch_available():
        import torch

        torch.rand(10)
    again = make_model(kind, **SMALL[kind]).fit(inputs(model, TRAIN), TRAIN[2], seed=0)
    np.testing.assert_array_equal(
        again.predict_proba(inputs(model, TEST)), model.predict_proba(inputs(model, TEST))
    )
    if kind in ("random_forest", "lstm"):  # randomised: another seed, another model
        other = make_model(kind, **SMALL[kind]).fit(inputs(model, TRAIN), TRAIN[2], seed=1)
        assert not np.array_equal(
            other.predict_proba(inputs(model, TEST)), model.predict_proba(inputs(model, TEST))
        )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [0, 1])
def test_one_class_training_data_predicts_the_base_rate(kind, value):
    model = make_model(kind, **SMALL[kind])
    x = inputs(model, TRAIN)[:200]
    model.fit(x, np.full(200, value), seed=0)
    p = model.predict_proba(inputs(model, TEST))
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    if model.trainable:
        np.testing.assert_array_equal(p, np.full(1000, float(value)))
        assert model.fit_info["fallback"] == "one class in y: predicts the base rate"


@pytest.mark.parametrize("kind", KINDS)
def test_nan_and_inf_in_inputs(kind):
    model = make_model(kind, **{**SMALL[kind], **({"epochs": 3} if kind == "lstm" else {})})
    rng = np.random.default_rng(5)

    def spoil(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        r = rng.random(x.shape)
        x[r < 0.05] = np.nan
        x[(r >= 0.05) & (r < 0.08)] = np.inf
        x[(r >= 0.08) & (r < 0.10)] = -np.inf
        return x

    x_train, x_test = spoil(inputs(model, TRAIN)[:600]), spoil(inputs(model, TEST))
    model.fit(x_train, TRAIN[2][:600], seed=0)
    p = model.predict_proba(x_test)
    assert p.shape == (1000,) and np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    # rows that are nothing but nan predict too
    assert np.isfinite(model.predict_proba(np.full_like(x_test[:3], np.nan))).all()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs_are_refused(kind):
    model = fitted(kind)
    x = inputs(model, TEST)
    with pytest.raises(ValueError, match="must be"):
        model.predict_proba(x[0])  # one dimension short
    if model.input == "features":
        with pytest.raises(ValueError, match="columns"):
            model.predict_proba(x[:, :-1])
    fresh = make_model(kind, **SMALL[kind])
    with pytest.raises(ValueError, match="0/1"):
        fresh.fit(inputs(model, TRAIN)[:10], np.arange(10), seed=0)
    with pytest.raises(ValueError, match="one label per row"):
        fresh.fit(inputs(model, TRAIN)[:10], np.zeros(9), seed=0)
    with pytest.raises(ValueError, match="seed"):
        fresh.fit(inputs(model, TRAIN)[:10], np.zeros(10), seed=-1)
    # a refused refit changes nothing: the fitted model predicts as before
    before = model.predict_proba(x)
    with pytest.raises(ValueError, match="0/1"):
        model.fit(inputs(model, TRAIN), np.full(2000, 2), seed=0)
    with pytest.raises(ValueError, match="ts_s"):
        model.fit(inputs(model, TRAIN), TRAIN[2], seed=0, ts_s=np.zeros(3))
    np.testing.assert_array_equal(model.predict_proba(x), before)
    assert model.fit_info["n_train"] == 2000


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k != "heuristic"])
def test_trainable_model_predicts_only_after_fit(kind):
    if kind == "lstm" and not torch_available():
        pytest.skip("torch is not installed (optional extra prescale[lstm])")
    with pytest.raises(RuntimeError, match="not fitted"):
        make_model(kind).predict_proba(np.zeros((1, len(FEATURES))))
    with pytest.raises(ValueError, match="empty training set"):
        make_model(kind).fit(np.zeros((0, len(FEATURES))), np.zeros(0), seed=0)


def test_heuristic_needs_no_training_and_is_the_predictor():
    model = HeuristicModel(horizon_s=H, min_samples=2)
    p = model.predict_proba(TEST[1])  # no fit
    from prescale.app.core.predictor import TrendExhaustionPredictor
    from prescale.app.core.sample import Tier

    ref = TrendExhaustionPredictor(H, 2, 0.02, 0.9).predict(TEST[1]).tiers[Tier.MEMORY].p_fail
    np.testing.assert_array_equal(p, ref)
    with pytest.raises(ValueError, match=f"expects {len(FEATURES)}"):
        model.predict_proba(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="tier"):
        HeuristicModel(tier="disk")


def test_calibration_uses_the_newest_rows_and_falls_back_when_it_cannot():
    x, y = TRAIN[1][:1000], np.zeros(1000, dtype=int)
    y[:50] = 1  # positives only among the first (oldest, in row order) rows
    head_tail = {"n_estimators": 10, "calibration_folds": 0}
    rf = RandomForestModel(**head_tail).fit(x, y, seed=0)
    assert rf.fit_info["calibration"] == (
        "none: the calibration part has 0 positive and 200 negative rows (needs ≥ 2 of each)"
    )
    assert rf.fit_info["n_fit"] == 1000
    # the same rows with times that run backwards: now the positives are the newest
    ts = np.arange(1000.0)[::-1]
    rf = RandomForestModel(**head_tail).fit(x, y, seed=0, ts_s=ts)
    assert rf.fit_info["calibration"] == (
        "none: the fit part has 0 positive and 800 negative rows (needs ≥ 2 of each)"
    )
    y2 = np.zeros(1000, dtype=int)
    y2[::10] = 1
    rf = RandomForestModel(**head_tail, calibration="isotonic").fit(x, y2, seed=0)
    assert rf.fit_info["calibration"] == "isotonic"
    # cross-fitted (the default): every row is fitted and calibrated out of fold; with
    # fewer positives than folds it falls back to head/tail
    rf = RandomForestModel(n_estimators=10).fit(x, y2, seed=0)
    assert rf.fit_info["calibration"] == "sigmoid, cross-fitted over 3 folds in time order"
    y3 = np.zeros(1000, dtype=int)
    y3[[10, 500]] = 1
    rf = RandomForestModel(n_estimators=10).fit(x, y3, seed=0)
    assert rf.fit_info["calibration"].startswith("none: ")
    rf = RandomForestModel(n_estimators=10, calibration="none").fit(x, y2, seed=0)
    assert rf.fit_info["calibration"] == "none: calibration = 'none'"


def test_calibrated_probabilities_match_the_observed_rate():
    """Calibration: the mean predicted probability is close to the test base rate."""
    for kind in ("random_forest", "hist_gradient_boosting"):
        p = fitted(kind).predict_proba(TEST[1])
        assert abs(p.mean() - TEST[2].mean()) < 0.03, kind


def test_forest_cleaning_caps_infinities_and_adds_missing_indicators():
    assert cap_infinities(np.array([1.0, np.inf, -np.inf, np.nan])).tolist()[:3] == [
        1.0, 1e30, -1e30
    ]
    model = RandomForestModel(n_estimators=5, calibration="none")
    x = np.array([[5.0, 1.0, 2.0], [6.0, np.nan, np.inf], [7.0, 3.0, 4.0], [8.0, 4.0, 1.0]])
    model.fit(x, [0, 1, 0, 1], seed=0)
    pipe = model._estimator_  # the documented pipeline: cap → impute + indicator → forest
    cleaned = pipe[:-1].transform(np.array([[5.0, np.nan, np.inf]]))
    np.testing.assert_array_equal(cleaned, [[5.0, -1.0, 1e30, 1.0]])


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown model kind 'svm'"):
        make_model("svm")
    with pytest.raises(ValueError, match=r"unknown parameters \['n_trees'\]"):
        make_model("random_forest", n_trees=3)
    with pytest.raises(ValueError, match="calibration must be one of"):
        make_model("hist_gradient_boosting", calibration="platt")
    with pytest.raises(ValueError, match="calibration_fraction"):
        make_model("random_forest", calibration_fraction=1.0)
    with pytest.raises(ValueError, match="n_estimators"):
        make_model("random_forest", n_estimators=0)
    with pytest.raises(ValueError, match="horizon_s"):
        make_model("heuristic", horizon_s=-1.0)
    assert model_class("heuristic") is HeuristicModel


def test_corrupt_or_foreign_bytes_are_refused():
    good = fitted("random_forest").to_bytes()
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(b"\x00garbage")
    with pytest.raises(ValueError, match="envelope is missing"):
        load_model(pickle.dumps({"some": "dict"}))
    with pytest.raises(ValueError, match="format 99"):
        envelope = pickle.loads(good)
        envelope["format"] = 99
        load_model(pickle.dumps(envelope))
    with pytest.raises(ValueError, match="not a HeuristicModel"):
        HeuristicModel.from_bytes(good)
    # a pickle that names a module that does not exist is corrupt too, not an ImportError
    foreign = pickle.dumps(RandomForestModel).replace(b"sklearn_models", b"sklearn_modelz")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(foreign)
    with pytest.raises(ValueError, match="must be bytes"):
        load_model("text")  # type: ignore[arg-type]


def test_lstm_without_torch_raises_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ImportError) as info:
        make_model("lstm")
    assert str(info.value) == INSTALL_HINT
    assert "prescale[lstm]" in INSTALL_HINT
    assert model_class("lstm").kind == "lstm"  # the class itself is importable


def test_lstm_channels_worked_example():
    win = np.full((1, 2, len(METRICS)), np.nan)
    win[0, :, M["ts_s"]] = [100.0, 110.0]
    win[0, :, M["cpu_usage_s_total"]] = [3.0, 8.0]
    win[0, :, M["memory_usage_bytes"]] = [50.0, 60.0]
    win[0, :, M["memory_limit_bytes"]] = [200.0, np.inf]
    ch = window_channels(win)
    from prescale.app.models.lstm import CHANNELS

    c = {name: i for i, name in enumerate(CHANNELS)}
    assert ch[0, :, c["present"]].tolist() == [1.0, 1.0]
    assert ch[0, :, c["age_s"]].tolist() == [-10.0, 0.0]
    np.testing.assert_array_equal(ch[0, :, c["cpu_usage_s_rate"]], [np.nan, 0.5])
    np.testing.assert_array_equal(ch[0, :, c["memory_usage_fraction"]], [0.25, np.nan])
    np.testing.assert_array_equal(ch[0, :, c["memory_limit_bytes"]], [200.0, np.nan])
    np.testing.assert_array_equal(ch[0, :, c["memory_usage_fraction_rate"]], [np.nan, np.nan])
    win[0, 1, M["memory_limit_bytes"]] = 200.0  # fractions 0.25, 0.30 → (0.05)/10 s
    ch = window_channels(win)
    assert ch[0, 1, c["memory_usage_fraction_rate"]] == pytest.approx(0.005)
    counters = sum(1 for m in METRICS if m.endswith("_total"))
    # present, age, 5 levels, usage fraction and its rate, one rate per counter, throttled
    assert ch.shape == (1, 2, len(CHANNELS)) == (1, 2, 2 + 5 + 2 + counters + 1)
