"""Windows, feature matrix, labels, lead times and splits on hand-made frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prescale.app.core.features import FEATURES, F, compute_features
from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import METRICS, Event, EventKind, M, Sample
from prescale.app.learning.dataset import (
    META_COLUMNS,
    feature_matrix,
    iter_windows,
    window_array,
    window_ends,
)
from prescale.app.learning.labels import group_split, label, lead_time_s, time_split

pytestmark = pytest.mark.filterwarnings("error")

NAN = math.nan


def sample(container: str, ts: float, usage: float, app: str = "web") -> Sample:
    return Sample(
        container,
        ts,
        memory_usage_bytes=usage,
        memory_limit_bytes=1000.0,
        cpu_usage_s_total=ts / 10.0,
        app=app,
    )


def frame(samples: list[Sample]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"container": s.container, "app": s.app, **dict(zip(METRICS, s.row(), strict=True))}
         for s in samples]
    )


# container a: ts 0..40 (5 rows), container b: ts 100, 110 (2 rows, app "db")
A = [sample("a", 10.0 * i, 100.0 + i) for i in range(5)]
B = [sample("b", 100.0, 500.0, "db"), sample("b", 110.0, 510.0, "db")]
HISTORY = frame(A + B)


# --- windows -------------------------------------------------------------------------


def test_windows_end_at_every_row_with_nan_padding():
    windows, meta = window_array(HISTORY, window_steps=3)
    assert windows.shape == (7, 3, len(METRICS))
    assert list(meta.columns) == list(META_COLUMNS)
    assert meta["container"].tolist() == ["a"] * 5 + ["b"] * 2
    assert meta["app"].tolist() == ["web"] * 5 + ["db"] * 2
    assert meta["ts_end_s"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 100.0, 110.0]
    assert meta["row"].tolist() == list(range(7))
    pad = np.full(len(METRICS), NAN)
    # window ending at a@0: two padding rows, then the row itself
    np.testing.assert_array_equal(windows[0], np.array([pad, pad, A[0].row()]))
    # window ending at a@20: exactly rows a@0, a@10, a@20
    np.testing.assert_array_equal(windows[2], np.array([A[0].row(), A[1].row(), A[2].row()]))
    np.testing.assert_array_equal(windows[4], np.array([A[2].row(), A[3].row(), A[4].row()]))
    # b's first window never reaches back into a
    np.testing.assert_array_equal(windows[5], np.array([pad, pad, B[0].row()]))
    np.testing.assert_array_equal(windows[6], np.array([pad, B[0].row(), B[1].row()]))


def test_windows_match_the_online_ring_buffer():
    """Offline windows are exactly what the monitor's ring buffer gives online."""
    windows, meta = window_array(HISTORY, window_steps=3)
    for i, (container, row) in enumerate(zip(meta["container"], meta["row"], strict=True)):
        ring = RingBuffer(steps=3)
        for s in (A + B)[: row + 1]:
            if s.container == container:
                ring.push(s)
        _, online = ring.window([container])
        np.testing.assert_array_equal(windows[i], online[0])


def test_stride_and_min_present_as_in_the_module_doc():
    assert window_ends(HISTORY, stride=2).tolist() == [0, 2, 4, 5]
    _, meta = window_array(HISTORY, window_steps=3, stride=2)
    assert meta["ts_end_s"].tolist() == [0.0, 20.0, 40.0, 100.0]
    _, meta = window_array(HISTORY, window_steps=3, stride=2, min_present=2)
    assert meta["ts_end_s"].tolist() == [10.0, 30.0, 110.0]
    _, meta = window_array(HISTORY, window_steps=3, min_present=3)
    assert meta["ts_end_s"].tolist() == [20.0, 30.0, 40.0]


def test_chunks_concatenate_to_the_whole():
    whole, meta = window_array(HISTORY, window_steps=4)
    chunks = list(iter_windows(HISTORY, window_steps=4, chunk_rows=3))
    assert [c[0].shape[0] for c in chunks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), whole)
    pd.testing.assert_frame_equal(pd.concat([c[1] for c in chunks], ignore_index=True), meta)


def test_feature_matrix_is_compute_features_of_each_window():
    X, meta = feature_matrix(HISTORY, 3, 2, 1, chunk_rows=2)
    windows, meta_w = window_array(HISTORY, window_steps=3)
    assert X.shape == (7, len(FEATURES))
    np.testing.assert_array_equal(X, compute_features(windows, recent_steps=2))
    pd.testing.assert_frame_equal(meta, meta_w)
    # window ending at a@20: usage 100, 101, 102 at ts 0, 10, 20 → slope 0.1 B/s
    assert X[2, F["memory_slope_bytes_per_s"]] == pytest.approx(0.1)
    assert X[2, F["n_samples"]] == 3
    assert X[0, F["n_samples"]] == 1


def test_app_column_is_optional_and_empty_history_gives_empty_results():
    windows, meta = window_array(HISTORY.drop(columns=["app"]), window_steps=2)
    assert meta["app"].tolist() == [""] * 7
    empty = HISTORY.iloc[0:0]
    X, meta = feature_matrix(empty, 3, 2)
    assert X.shape == (0, len(FEATURES)) and len(meta) == 0
    assert list(meta.columns) == list(META_COLUMNS)
    assert list(iter_windows(empty, window_steps=3)) == []


def test_large_history_is_vectorised_and_chunked():
    """100k rows × W = 12 → features in a few seconds, no per-row Python loop."""
    n_containers, steps = 1000, 100
    rng = np.random.default_rng(0)
    df = pd.DataFrame(np.nan, index=range(n_containers * steps), columns=list(METRICS))
    df.insert(0, "container", np.repeat([f"c{i:04d}" for i in range(n_containers)], steps))
    df["ts_s"] = np.tile(np.arange(steps) * 5.0, n_containers)
    df["memory_usage_bytes"] = rng.uniform(0, 1e9, len(df))
    df["memory_limit_bytes"] = 2e9
    X, meta = feature_matrix(df, 12, 4, 1)
    assert X.shape == (100_000, len(FEATURES))
    # spot check against a window computed by hand for one row
    r = 5 * steps + 50
    ref = compute_features(
        df.loc[r - 11 : r, list(METRICS)].to_numpy()[None], recent_steps=4
    )
    np.testing.assert_array_equal(X[r], ref[0])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["memory_usage_bytes"]), "lacks the columns"),
        (lambda d: d.iloc[[0, 5, 1, 2, 3, 4, 6]], "contiguous"),
        (lambda d: d.iloc[[1, 0, 2, 3, 4, 5, 6]], "non-decreasing"),
        (lambda d: d.assign(ts_s=d["ts_s"].where(d.index != 3)), "finite"),
        (lambda d: d.assign(memory_usage_bytes="x"), "numeric"),
    ],
)
def test_bad_history_is_refused_with_a_clear_error(mutate, message):
    bad = mutate(HISTORY.copy())
    before = bad.copy()
    with pytest.raises(ValueError, match=message):
        feature_matrix(bad, 3, 2)
    pd.testing.assert_frame_equal(bad, before)  # changes nothing


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(window_steps=0), "window_steps"),
        (dict(window_steps=3, stride=0), "stride"),
        (dict(window_steps=3, min_present=4), "min_present"),
        (dict(window_steps=3, chunk_rows=0), "chunk_rows"),
    ],
)
def test_bad_window_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        iter_windows(HISTORY, **kwargs)


# --- labels --------------------------------------------------------------------------


def meta_of(rows: list[tuple[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"container": [c for c, _ in rows], "app": "x", "ts_end_s": [t for _, t in rows]}
    )


def events_of(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"container": [c for c, _, _ in rows], "ts_s": [t for _, t, _ in rows],
         "kind": [k for _, _, k in rows]}
    )


def test_label_and_lead_time_worked_example():
    meta = meta_of([("a", 0.0), ("a", 10.0), ("a", 20.0), ("a", 40.0)])
    events = events_of([("a", 35.0, "oom_kill")])
    y = label(meta, events, horizon_s=30.0, tier="memory")
    assert y.tolist() == [0, 1, 1, 0]
    assert y.dtype == np.int8
    lead = lead_time_s(meta, events, tier="memory", horizon_s=30.0)
    np.testing.assert_array_equal(lead, [NAN, 25.0, 15.0, NAN])
    # without a horizon: time to the next failure, however far
    np.testing.assert_array_equal(lead_time_s(meta, events, tier="memory"), [35, 25, 15, NAN])


def test_label_interval_is_open_at_the_window_end_and_closed_at_the_horizon():
    meta = meta_of([("a", 10.0), ("a", 5.0), ("a", 4.9), ("b", 5.0)])
    events = events_of([("a", 10.0, "oom_kill")])
    # a@10: failure at ts_end itself is not "after" → 0; a@5: 10 − 5 = 5 = H → 1;
    # a@4.9: 5.1 > H → 0; b never failed → 0
    assert label(meta, events, horizon_s=5.0, tier="memory").tolist() == [0, 1, 0, 0]


def test_next_failure_skips_to_the_first_one_after_and_ignores_other_containers():
    meta = meta_of([("a", 0.0), ("b", 0.0), ("a", 12.0), ("a", 25.0)])
    events = events_of(
        [("b", 50.0, "oom_kill"), ("a", 20.0, "oom_kill"), ("a", 10.0, "oom_kill"),
         ("c", 1.0, "oom_kill")]
    )
    np.testing.assert_array_equal(
        lead_time_s(meta, events, tier="memory"), [10.0, 50.0, 8.0, NAN]
    )


def test_tiers_pick_their_event_kinds():
    meta = meta_of([("a", 0.0)])
    expected = {
        "oom_kill": {"memory": 1, "cpu": 0, "disk": 0, "any": 1},
        "timeout": {"memory": 0, "cpu": 1, "disk": 0, "any": 1},
        "disk_full": {"memory": 0, "cpu": 0, "disk": 1, "any": 1},
        "killed": {"memory": 0, "cpu": 0, "disk": 0, "any": 1},
        "exit_nonzero": {"memory": 0, "cpu": 0, "disk": 0, "any": 1},
        "restart": {"memory": 0, "cpu": 0, "disk": 0, "any": 0},
        "success": {"memory": 0, "cpu": 0, "disk": 0, "any": 0},
    }
    for kind, per_tier in expected.items():
        events = events_of([("a", 1.0, kind)])
        got = {t: int(label(meta, events, horizon_s=5.0, tier=t)[0]) for t in per_tier}
        assert got == per_tier, kind


def test_events_as_event_objects_give_the_same_labels():
    meta = meta_of([("a", 0.0), ("a", 10.0)])
    objs = [Event("a", 12.0, EventKind.OOM_KILL), Event("a", 3.0, EventKind.SUCCESS)]
    frame_events = events_of([("a", 12.0, "oom_kill"), ("a", 3.0, "success")])
    assert label(meta, objs, horizon_s=5.0, tier="memory").tolist() == [0, 1]
    assert label(meta, frame_events, horizon_s=5.0, tier="memory").tolist() == [0, 1]


def test_cpu_throttling_that_breaks_the_target_counts_as_a_failure():
    meta = meta_of([("a", 0.0), ("a", 10.0), ("a", 20.0), ("a", 30.0), ("b", 5.0)])
    throttled = np.array([0.0, 0.1, 0.6, 0.0, 0.9])  # a@20 and b@5 break the 0.5 target
    events = events_of([("a", 35.0, "timeout")])
    y = label(meta, events, horizon_s=10.0, tier="cpu",
              throttle_target_fraction=0.5, throttled_fraction=throttled)
    # a@0: 20 ∉ (0, 10]; a@10: throttled at 20 → 1; a@20: its own throttling is at
    # ts_end (not after), timeout at 35 ∉ (20, 30] → 0; a@30: timeout at 35 → 1; b: 0
    assert y.tolist() == [0, 1, 0, 1, 0]
    lead = lead_time_s(meta, events, tier="cpu", throttle_target_fraction=0.5,
                       throttled_fraction=throttled)
    np.testing.assert_array_equal(lead, [20.0, 10.0, 15.0, 5.0, NAN])
    # the target is exclusive: exactly 0.6 does not break 0.6
    y = label(meta, events_of([]), horizon_s=10.0, tier="cpu",
              throttle_target_fraction=0.6, throttled_fraction=throttled)
    assert y.tolist() == [0, 0, 0, 0, 0]


def test_a_window_with_no_failure_ever_and_no_events_at_all():
    meta = meta_of([("a", 0.0), ("b", 1.0)])
    assert label(meta, events_of([]), horizon_s=5.0, tier="any").tolist() == [0, 0]
    empty_meta = meta_of([])
    assert label(empty_meta, events_of([("a", 1.0, "oom_kill")]), horizon_s=5.0,
                 tier="any").shape == (0,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(horizon_s=0.0, tier="memory"), "horizon_s"),
        (dict(horizon_s=float("inf"), tier="memory"), "horizon_s"),
        (dict(horizon_s=5.0, tier="network"), "tier must be one of"),
        (dict(horizon_s=5.0, tier="memory", throttle_target_fraction=0.5,
              throttled_fraction=np.zeros(1)), "tier 'cpu' only"),
        (dict(horizon_s=5.0, tier="cpu", throttle_target_fraction=0.5), "needs throttled"),
        (dict(horizon_s=5.0, tier="cpu", throttle_target_fraction=0.5,
              throttled_fraction=np.zeros(3)), "one value per meta row"),
    ],
)
def test_bad_label_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        label(meta_of([("a", 0.0)]), events_of([("a", 1.0, "timeout")]), **kwargs)


def test_bad_events_are_refused():
    meta = meta_of([("a", 0.0)])
    with pytest.raises(ValueError, match="unknown event kinds"):
        label(meta, events_of([("a", 1.0, "exploded")]), horizon_s=5.0, tier="any")
    with pytest.raises(ValueError, match="lacks the columns"):
        label(meta, pd.DataFrame({"container": ["a"]}), horizon_s=5.0, tier="any")
    with pytest.raises(ValueError, match="finite"):
        label(meta, events_of([("a", NAN, "oom_kill")]), horizon_s=5.0, tier="any")


def test_labels_of_a_real_feature_matrix():
    """End to end: history → features → labels, with the throttling tier."""
    _, meta = feature_matrix(HISTORY, 3, 2)
    events = [Event("a", 25.0, EventKind.OOM_KILL), Event("b", 105.0, EventKind.KILLED)]
    assert label(meta, events, horizon_s=10.0, tier="memory").tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert label(meta, events, horizon_s=10.0, tier="any").tolist() == [0, 0, 1, 0, 0, 1, 0]


# --- splits --------------------------------------------------------------------------


def test_time_split_worked_example_and_gap():
    rng = np.random.default_rng(3)
    ts = rng.permutation(10).astype(float)  # meta in shuffled order
    meta = pd.DataFrame({"container": "a", "app": "x", "ts_end_s": ts})
    train, val, test = time_split(meta)
    assert ts[train].tolist() == [0, 1, 2, 3, 4, 5]  # indices come in time order
    assert ts[val].tolist() == [6, 7]
    assert ts[test].tolist() == [8, 9]
    train, val, test = time_split(meta, gap_s=1.5)
    assert ts[train].tolist() == [0, 1, 2, 3, 4]
    assert ts[val].tolist() == [6]
    assert ts[test].tolist() == [8, 9]


def test_time_split_keeps_equal_times_together_and_never_overlaps():
    ts = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3], dtype=float)
    meta = pd.DataFrame({"container": "a", "ts_end_s": ts})
    train, val, test = time_split(meta, (0.5, 0.3, 0.2))
    # cuts: sorted position 5 (ts 1) and 8 (ts 2) → train ts 0, val ts 1, test ts 2–3
    assert ts[train].tolist() == [0, 0, 0]
    assert ts[val].tolist() == [1, 1, 1, 1]
    assert ts[test].tolist() == [2, 2, 3]
    parts = [set(train), set(val), set(test)]
    assert sum(map(len, parts)) == len(ts) and set().union(*parts) == set(range(len(ts)))
    assert ts[train].max() < ts[val].min() and ts[val].max() < ts[test].min()


def test_time_split_of_nothing_and_two_way():
    empty = pd.DataFrame({"container": [], "ts_end_s": []})
    assert [len(s) for s in time_split(empty)] == [0, 0, 0]
    meta = pd.DataFrame({"container": "a", "ts_end_s": np.arange(4.0)})
    train, test = time_split(meta, (0.75, 0.25))
    assert train.tolist() == [0, 1, 2] and test.tolist() == [3]


@pytest.mark.parametrize(
    "fractions, message",
    [((1.0,), "≥ 2"), ((0.5, 0.6), "add up to 1"), ((1.2, -0.2), "non-negative")],
)
def test_bad_fractions(fractions, message):
    meta = pd.DataFrame({"container": "a", "app": "x", "ts_end_s": [1.0, 2.0]})
    with pytest.raises(ValueError, match=message):
        time_split(meta, fractions)
    with pytest.raises(ValueError, match=message):
        group_split(meta, "app", fractions)


def test_group_split_worked_example():
    # a seed whose permutation of the 3 sorted groups is the identity: a, b, c
    seed = next(s for s in range(1000) if np.random.default_rng(s).permutation(3).tolist()
                == [0, 1, 2])
    meta = pd.DataFrame(
        {"app": list("aaaaaabbcc"), "container": [f"k{i}" for i in range(10)],
         "ts_end_s": np.arange(10.0)[::-1]}
    )
    train, val, test = group_split(meta, "app", (0.6, 0.2, 0.2), seed)
    assert sorted(meta["app"][train]) == list("aaaaaa")
    assert set(meta["app"][val]) == {"b"} and set(meta["app"][test]) == {"c"}
    # in time order (ts runs backwards here)
    assert train.tolist() == [5, 4, 3, 2, 1, 0]


def test_group_split_keeps_groups_whole_and_is_seeded():
    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {"container": [f"c{i}" for i in rng.integers(0, 40, 2000)],
         "ts_end_s": rng.uniform(0, 100, 2000)}
    )
    meta["app"] = meta["container"].str[:2]
    splits = group_split(meta, "container", seed=7)
    again = group_split(meta, "container", seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(splits, again, strict=True))
    groups = [set(meta["container"].iloc[s]) for s in splits]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(s) for s in splits) == 2000
    assert np.unique(np.concatenate(splits)).size == 2000
    assert 0.45 < len(splits[0]) / 2000 < 0.75
    other = group_split(meta, "container", seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(splits, other, strict=True))


def test_group_split_errors():
    meta = pd.DataFrame({"app": ["a", None], "ts_end_s": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no column 'job'"):
        group_split(meta, "job")
    with pytest.raises(ValueError, match="missing values"):
        group_split(meta, "app")


def test_metric_column_order_is_the_sample_order():
    """The frame's columns are read by name, so their order in the frame does not matter."""
    shuffled = HISTORY[["app", "container", *reversed(METRICS)]]
    np.testing.assert_array_equal(
        window_array(shuffled, window_steps=3)[0], window_array(HISTORY, window_steps=3)[0]
    )
    assert M["ts_s"] == 0
