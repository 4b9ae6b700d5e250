"""The one label definition's helpers, the stratified group splits, derived failures and
peer features, with the worked examples of their docstrings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prescale.app.core.features import FEATURES, F
from prescale.app.core.peers import PEER_FEATURES, peer_features, peer_groups
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.sample import EventKind
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.learning.labels import (
    TIER_EVENTS,
    group_folds,
    label,
    memory_exhausted,
    stratified_group_split,
)
from prescale.app.learning.limit_failures import derive_limit_failures
from prescale.app.models.metrics import reliability, roc_auc


def test_memory_exhausted_worked_example():
    got = memory_exhausted([100, 150, 200, math.nan], [150, 150, math.inf, 150])
    assert got.tolist() == [False, True, False, False]


def test_lost_and_finished_are_never_failures():
    assert EventKind.LOST not in TIER_EVENTS["any"] and EventKind.SUCCESS not in TIER_EVENTS["any"]
    meta = pd.DataFrame({"container": ["a", "b", "c"], "ts_end_s": [0.0, 0.0, 0.0]})
    events = pd.DataFrame({"container": ["a", "b", "c"], "ts_s": [5.0, 5.0, 5.0],
                           "kind": ["lost", "killed", "exit_nonzero"]})
    assert label(meta, events, horizon_s=10, tier="any").tolist() == [0, 1, 1]


def test_stratified_group_split_worked_example():
    meta = pd.DataFrame({"app": ["a"] * 6 + ["b"] * 2 + ["c"] * 2 + ["d"]})
    y = np.array([1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1])
    tr, va, te = stratified_group_split(meta, y, fractions=(0.6, 0.2, 0.2))
    assert set(meta["app"].iloc[tr]) == {"a"} and set(meta["app"].iloc[va]) == {"b"}
    assert set(meta["app"].iloc[te]) == {"c", "d"}


def test_stratified_group_split_gives_every_split_positives_and_keeps_groups_whole():
    rng = np.random.default_rng(0)
    apps = np.array([f"job-{i}" for i in rng.integers(0, 60, 2000)] + ["job-big"] * 3000)
    y = np.zeros(apps.size, dtype=int)
    y[rng.choice(apps.size, 40, replace=False)] = 1
    meta = pd.DataFrame({"app": apps})
    for seed in range(5):
        parts = stratified_group_split(meta, y, seed=seed)
        assert sorted(np.concatenate(parts).tolist()) == list(range(apps.size))
        assert all(y[p].sum() > 0 for p in parts)
        groups = [set(apps[p]) for p in parts]
        assert not (groups[0] & groups[1]) and not (groups[1] & groups[2])


def test_group_folds_worked_example_and_spread():
    g = np.array(["a"] * 3 + ["b"] + ["c"] * 4 + ["d"])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0])
    assert group_folds(g, y, 2).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        group_folds(g, y, 5)


def test_derive_limit_failures_worked_example():
    u = np.array([100, 0, 140, 130, 170, 150, 120, 160], dtype=float)
    df = pd.DataFrame({"container": "vm-1", "app": "x", "ts_s": 300.0 * np.arange(8),
                       "memory_usage_bytes": u, "memory_working_set_bytes": u})
    samples, events, info = derive_limit_failures(df, limit_multiple=1.2, first_fraction=0.5,
                                                  min_first_readings=1)
    assert (samples["memory_limit_bytes"] == 156.0).all()
    assert samples["oom_kills_total"].tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert samples["running"].tolist() == [True, False, True, True, False, True, True, False]
    assert events["ts_s"].tolist() == [1200.0, 2100.0] and set(events["kind"]) == {"oom_kill"}
    assert (info["oom_kills"], info["rows_at_or_above_limit"], info["missing_readings"]) == (
        2, 2, 1)
    # at the limit is a kill (the same test as the closed-loop evaluation)
    at = pd.DataFrame({"container": "vm-2", "app": "x", "ts_s": [0.0, 300, 600],
                       "memory_usage_bytes": [100.0, 100, 130],
                       "memory_working_set_bytes": [100.0, 100, 130]})
    _, ev, _ = derive_limit_failures(at, limit_multiple=1.3, first_fraction=1.0,
                                     min_first_readings=1)
    assert ev["ts_s"].tolist() == [600.0]
    with pytest.raises(ValueError, match="limit_multiple"):
        derive_limit_failures(at, limit_multiple=0)
    with pytest.raises(ValueError, match="lack the columns"):
        derive_limit_failures(at.drop(columns="app"))


def test_peer_features_worked_example():
    x = np.full((4, len(FEATURES)), np.nan)
    x[:, F["memory_usage_last_bytes"]] = [10, 20, 20, 50]
    out = dict(zip(PEER_FEATURES, peer_features(x).T, strict=True))
    assert out["peer_rank_memory_usage_last_bytes"].tolist() == [0.25, 0.625, 0.625, 1.0]
    assert out["peer_ratio_memory_usage_last_bytes"].tolist() == [0.5, 1.0, 1.0, 2.5]
    assert out["peer_median_memory_usage_last_bytes"].tolist() == [20.0] * 4
    assert out["peer_count"].tolist() == [4.0] * 4
    assert np.isnan(out["peer_rank_cpu_peak_cores_last"]).all()  # no reading, no rank
    # two groups: each ranked among its own
    two = peer_features(x, np.array([0, 0, 1, 1]))
    assert two[:, PEER_FEATURES.index("peer_count")].tolist() == [2.0] * 4
    codes = peer_groups(np.array(["a", "a", "b", "a"], dtype=object), np.array([1, 1, 1, 2.0]))
    assert len(set(codes.tolist())) == 3 and codes[0] == codes[1]


def test_roc_auc_and_reliability_worked_examples():
    assert roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == 0.75
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2]))
    r = reliability([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], bins=2)
    assert r.count == (1, 3) and r.observed == (0.0, 2 / 3)
    assert r.ece == pytest.approx(0.125)


def test_heuristic_says_which_windows_it_can_forecast():
    p = TrendExhaustionPredictor(horizon_s=30, min_samples=5, sigma_floor_fraction=0.02,
                                 cpu_busy_fraction=0.9)
    x = np.zeros((3, len(FEATURES)))
    x[:, F["n_samples"]] = [2, 5, 9]
    assert p.forecastable(x).tolist() == [False, True, True]


def test_threshold_seed_worked_example():
    book = ThresholdBook()
    seeded, why = book.seed("memory", 0.03, app="web")
    assert seeded
    assert why == "app:web/memory threshold starts at 0.03 (bounds widened to include it)"
    t = book.lookup("memory", "web")
    assert (t.value, t.min, t.learned) == (0.03, 0.03, True)
    book.set("memory", app="db", value=0.6)
    seeded, why = book.seed("memory", 0.2, app="db")
    assert not seeded and book.value("memory", "db") == 0.6
    assert why == ("kept the threshold 0.6 set on app:db/memory; the model's operating "
                   "threshold 0.2 is not used")
    assert book.seed("memory", 0.4)[0] and book.value("memory") == 0.4  # the default scope


def test_peer_features_one_group_path_equals_the_grouped_path():
    rng = np.random.default_rng(3)
    x = rng.random((300, len(FEATURES)))
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:5, F["memory_usage_last_bytes"]] = 0.5  # ties
    x[7, F["cpu_peak_cores_last"]] = np.inf
    one = peer_features(x)  # the numpy path (one group)
    both = peer_features(np.vstack([x, x]), np.repeat([0, 1], 300))  # the pandas path
    assert np.allclose(one, both[:300], equal_nan=True)
    assert np.allclose(one, both[300:], equal_nan=True)
