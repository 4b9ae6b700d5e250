"""HistoryStore on real files (tmp_path) and pyarrow's in-memory mock filesystem."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from prescale.app.core.sample import INF, METRICS, NAN, Event, EventKind, Sample
from prescale.app.store.history import HistoryStore
from prescale.app.store.history_layout import (
    REPLACES_KEY,
    app_dir_name,
    app_from_dir_name,
    day_expired,
    day_in_range,
    day_index,
    day_name,
    day_start_s,
    live_files,
    split_by_partition,
)

DAY = 86_400.0
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z


class FakeClock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def data_files(root: Path, table: str = "samples") -> list[Path]:
    return sorted(p for p in (root / table).rglob("*.parquet") if not p.name.startswith("."))


def sample(container: str, ts_s: float, app: str = "web", **kw: float) -> Sample:
    return Sample(container=container, ts_s=ts_s, app=app, **kw)


# --- pure helpers -------------------------------------------------------------------


def test_day_helpers_worked_examples():
    assert day_index(86_399.5) == 0 and day_index(86_400.0) == 1 and day_index(-0.5) == -1
    assert day_name(0) == "1970-01-01" and day_name(19_723) == "2024-01-01"
    assert day_name(day_index(T0 - 0.5)) == "2023-12-31"
    assert day_name(day_index(T0)) == "2024-01-01"
    assert day_start_s("2024-01-01") == T0
    # day 1970-01-02 spans [86400, 172800)
    assert not day_in_range("1970-01-02", 172_800.0, None)
    assert day_in_range("1970-01-02", 172_799.9, None)
    assert not day_in_range("1970-01-02", None, 86_400.0)
    assert day_in_range("1970-01-02", None, 86_400.1)
    cutoff = T0 + 9.5 * DAY - 7 * DAY  # now 2024-01-10 12:00, max age 7 days
    assert day_expired("2024-01-02", cutoff) and not day_expired("2024-01-03", cutoff)


def test_app_dir_names_escape_and_round_trip():
    cases = {
        "": "app=_unknown",
        "web": "app=web",
        "a/b": "app=a%2Fb",
        "..": "app=%2E.",
        ".hidden": "app=%2Ehidden",
        "_unknown": "app=%5Funknown",
        "x y=z%": "app=x%20y%3Dz%25",
        "日本": "app=%E6%97%A5%E6%9C%AC",
    }
    for app, name in cases.items():
        assert app_dir_name(app) == name
        assert app_from_dir_name(name) == app
        assert "/" not in name
    assert app_from_dir_name("day=2024-01-01") is None


def test_live_files_skips_replaced_worked_example():
    assert live_files(["p1", "p2", "p3", "c1"], {"c1": ["p1", "p2"]}) == ["c1", "p3"]
    # c2 replaced c1 (whose own replaced files are gone): only c2 and p3 are live
    assert live_files(["c1", "c2", "p3"], {"c1": ["p1"], "c2": ["c1", "p2"]}) == ["c2", "p3"]


def test_split_by_partition_worked_example():
    import pyarrow as pa

    t = pa.table({"app": ["web", "web", "db", "web"], "ts_s": [0.0, 86_400.0, 5.0, 1.0]})
    got = {(a, d): p.column("ts_s").to_pylist() for a, d, p in split_by_partition(t)}
    assert got == {("app=web", "1970-01-01"): [0.0, 1.0], ("app=web", "1970-01-02"): [86_400.0],
                   ("app=db", "1970-01-01"): [5.0]}
    assert split_by_partition(t.slice(0, 0)) == []


# --- round trips ---------------------------------------------------------------------


def test_samples_round_trip_exact_values_nan_inf(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    a = Sample("c1", T0 + 1.25, memory_usage_bytes=123_456_789.0, memory_limit_bytes=INF,
               cpu_quota_cores=0.25, block_latency_s=NAN, oom_kills_total=-INF, app="web")
    b = Sample("c0", T0 + 2.5, memory_usage_bytes=1e300, cpu_usage_s_total=5e-324, app="web")
    c = Sample("c1", T0 + 0.5, memory_usage_bytes=7.0, app="web")
    assert store.append_samples([a, b, c]) == 3
    assert store.buffered == 3
    assert store.read_samples().empty  # still in memory
    assert store.flush() == 3
    assert store.buffered == 0
    df = store.read_samples()
    assert list(df.columns) == ["container", "app", *METRICS]
    assert list(df["container"]) == ["c0", "c1", "c1"]
    assert list(df["ts_s"]) == [T0 + 2.5, T0 + 0.5, T0 + 1.25]
    for row, s in zip(df.itertuples(index=False), [b, c, a], strict=True):
        for name in ["container", "app", *METRICS]:
            got, want = getattr(row, name), getattr(s, name)
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), name
            else:
                assert got == want, name
    assert df["memory_limit_bytes"].iloc[2] == INF
    assert df["oom_kills_total"].iloc[2] == -INF
    assert all(df[m].dtype == "float64" for m in METRICS)


def test_events_and_records_round_trip(tmp_path):
    store = HistoryStore(tmp_path)
    events = [
        Event("c1", T0 + 5.0, EventKind.OOM_KILL, "kernel oom_kill", "web"),
        Event("c0", T0 + 6.0, EventKind.RESTART, "", ""),
    ]
    assert store.append_events(events) == 2
    ev = store.read_events()
    assert ev.to_dict("records") == [
        {"container": "c0", "app": "", "ts_s": T0 + 6.0, "kind": "restart", "detail": ""},
        {"container": "c1", "app": "web", "ts_s": T0 + 5.0, "kind": "oom_kill",
         "detail": "kernel oom_kill"},
    ]
    records = [
        {"kind": "decision", "ts_s": T0 + 1.0, "container": "c1", "app": "web",
         "p_fail": 0.75, "forecast": [1.0, INF], "why": {"tier": "memory"}},
        {"kind": "action", "ts_s": T0 + 2.0, "container": "c1", "app": "web",
         "old_limit_bytes": 128 * 2**20, "new_limit_bytes": None, "nan": NAN},
        {"kind": "outcome", "ts_s": T0 + 3.0, "container": "c2"},
    ]
    assert store.append_records(records) == 3
    df = store.read_records()
    assert list(df.columns) == ["kind", "ts_s", "container", "app", "json"]
    assert list(df["kind"]) == ["decision", "action", "outcome"]
    assert list(df["app"]) == ["web", "web", ""]
    back = store.read_record_dicts()
    assert back[0] == records[0]
    assert back[1]["old_limit_bytes"] == 128 * 2**20 and math.isnan(back[1]["nan"])
    assert back[2] == records[2]
    assert store.read_record_dicts(kinds={"action", "outcome"}) == back[1:]
    assert store.read_records(kinds={"nope"}).empty


def test_durable_writes_visible_to_another_store_instance(tmp_path):
    writer = HistoryStore(tmp_path, flush_interval_s=1e9)
    writer.append_events([Event("c", T0, EventKind.TIMEOUT, "t", "a")])
    writer.append_records([{"kind": "decision", "ts_s": T0, "container": "c"}])
    writer.append_samples([sample("c", T0)])
    reader = HistoryStore(tmp_path)
    assert len(reader.read_events()) == 1 and len(reader.read_records()) == 1
    assert reader.read_samples().empty  # samples are buffered until flush
    writer.close()
    assert len(reader.read_samples()) == 1


# --- filters and pruning -------------------------------------------------------------


@pytest.fixture
def filled(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    rows = [
        sample("c1", T0 - 0.5, "web"),  # 2023-12-31
        sample("c1", T0, "web"),  # 2024-01-01
        sample("c2", T0 + 10, "web"),
        sample("c1", T0 + DAY - 0.5, "web"),
        sample("c1", T0 + DAY, "web"),  # 2024-01-02
        sample("c1", T0 + 5, "db"),
        sample("c9", T0 + 5, ""),
    ]
    store.append_samples(rows)
    store.flush()
    return store


def test_read_filters_app_container_and_time_with_day_boundaries(filled):
    def ts(**kw):
        return list(filled.read_samples(**kw)["ts_s"])

    assert len(filled.read_samples()) == 7
    assert ts(app="web", container="c1") == [T0 - 0.5, T0, T0 + DAY - 0.5, T0 + DAY]
    assert ts(app="web", container="c1", since_s=T0) == [T0, T0 + DAY - 0.5, T0 + DAY]
    assert ts(app="web", container="c1", until_s=T0) == [T0 - 0.5]  # until is exclusive
    assert ts(app="web", since_s=T0, until_s=T0 + DAY) == [T0, T0 + DAY - 0.5, T0 + 10]
    assert ts(app="web", since_s=T0 + DAY) == [T0 + DAY]
    assert list(filled.read_samples(app="db")["container"]) == ["c1"]
    assert list(filled.read_samples(app="")["container"]) == ["c9"]
    assert list(filled.read_samples(container="c1", since_s=T0 + 1, until_s=T0 + 6)["app"]) \
        == ["db"]
    assert filled.read_samples(app="nope").empty
    assert filled.apps() == ["", "db", "web"]


def test_reads_open_only_the_apps_and_days_asked_for(filled, tmp_path):
    # Corrupt one file of web/2024-01-02: reads that prune that partition still work.
    day2 = tmp_path / "samples" / "app=web" / "day=2024-01-02"
    (victim,) = list(day2.glob("*.parquet"))
    victim.write_bytes(b"not parquet")
    assert len(filled.read_samples(app="db")) == 1
    assert len(filled.read_samples(app="web", until_s=T0 + DAY)) == 4
    assert len(filled.read_samples(since_s=T0 - DAY, until_s=T0 + DAY)) == 6
    # a read that reaches it passes it over and names it (it stays for the operator)
    assert filled.unreadable == {}
    got = filled.read_samples(app="web")
    assert list(filled.unreadable) == [str(victim)]
    assert "parquet" in filled.unreadable[str(victim)].lower()
    assert len(got) == 4  # the rows of its other days
    assert victim.read_bytes() == b"not parquet"


def test_bad_filters_refused(filled):
    with pytest.raises(ValueError, match="since_s .* is after until_s"):
        filled.read_samples(since_s=T0 + 1, until_s=T0)
    with pytest.raises(ValueError, match="since_s must be a number"):
        filled.read_samples(since_s=NAN)
    with pytest.raises(ValueError, match="container must be a str"):
        filled.read_samples(container=3)
    with pytest.raises(ValueError, match="table must be one of"):
        filled.files("nope")


# --- buffering -----------------------------------------------------------------------


def test_buffering_and_maybe_flush_with_fake_clock(tmp_path):
    clock = FakeClock(1000.0)
    store = HistoryStore(tmp_path, flush_interval_s=5.0, clock=clock)
    assert store.append_samples([sample("c", T0), sample("c", T0 + 1)]) == 2
    assert store.maybe_flush() == 0
    clock.now_s = 1004.9
    assert store.append_samples([sample("c", T0 + 2)]) == 1  # no flush yet
    assert store.maybe_flush() == 0
    assert data_files(tmp_path) == [] and store.buffered == 3
    clock.now_s = 1005.0
    assert store.maybe_flush() == 3
    assert len(data_files(tmp_path)) == 1 and store.buffered == 0
    assert len(store.read_samples()) == 3
    store.append_samples([sample("c", T0 + 3)])
    clock.now_s = 1009.9
    assert store.maybe_flush() == 0
    clock.now_s = 1010.0
    assert store.append_samples([sample("c", T0 + 4)]) == 1  # appending never writes
    assert store.buffered == 2 and len(store.read_samples()) == 3
    assert store.maybe_flush() == 2 and len(store.read_samples()) == 5
    assert store.maybe_flush() == 0  # nothing buffered
    store.append_samples([sample("c", T0 + 5)])
    store.close()
    assert len(store.read_samples()) == 6


def test_one_flush_writes_one_file_per_partition(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    store.append_samples([sample("c", T0, "a"), sample("c", T0 + DAY, "a")])
    store.append_samples([sample("d", T0 + 1, "a"), sample("c", T0, "b")])
    assert store.flush() == 4
    rel = [str(p.parent.relative_to(tmp_path)) for p in data_files(tmp_path)]
    assert sorted(rel) == [
        "samples/app=a/day=2024-01-01",
        "samples/app=a/day=2024-01-02",
        "samples/app=b/day=2024-01-01",
    ]


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("\ud800", "cannot be encoded as UTF-8"),
        ("x" * 300, "too long"),
        (7, "must be a str"),
    ],
)
def test_unrepresentable_app_names_refused_and_nothing_changes(tmp_path, app, message):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    good = sample("c", T0, "web")
    with pytest.raises(ValueError, match=message) as err:
        store.append_samples([good, Sample("c", T0, app=app)])
    assert repr(app)[:20] in str(err.value)
    assert store.buffered == 0
    with pytest.raises(ValueError, match=message):
        store.append_events([Event("c", T0, EventKind.RESTART, "", app)])
    with pytest.raises(ValueError, match=message):
        store.append_records([{"kind": "k", "ts_s": T0, "container": "c", "app": app}])
    with pytest.raises(ValueError, match=message):
        store.read_samples(app=app)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_hostile_app_names_stay_inside_the_root(tmp_path):
    root = tmp_path / "root"
    store = HistoryStore(root)
    apps = ["../../escape", "..", "/abs", ".", "_x"]
    store.append_events([Event("c", T0, EventKind.RESTART, "", a) for a in apps])
    assert [p for p in tmp_path.iterdir()] == [root]
    assert store.apps() == sorted(apps)
    for a in apps:
        assert list(store.read_events(app=a)["app"]) == [a]


def test_literal_unknown_app_is_not_the_empty_app(tmp_path):
    store = HistoryStore(tmp_path)
    store.append_events([Event("c1", T0, EventKind.RESTART, "", ""),
                         Event("c2", T0, EventKind.RESTART, "", "_unknown")])
    assert list(store.read_events(app="")["container"]) == ["c1"]
    assert list(store.read_events(app="_unknown")["container"]) == ["c2"]


def test_bad_samples_refused_naming_the_field_and_nothing_buffered(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    ok = sample("ok", T0)
    cases = [
        ([ok, Sample("bad", T0, memory_usage_bytes="12")],
         r"samples\[1\] \(container 'bad'\): memory_usage_bytes must be a number"),
        ([ok, Sample("bad", T0, cpu_quota_cores=None)], "cpu_quota_cores must be a number"),
        ([ok, Sample("bad", T0, block_calls_total=True)], "block_calls_total must be a number"),
        ([ok, Sample(5, T0)], r"samples\[1\] \(container 5\): container must be a str"),
        ([ok, Sample("bad", NAN)], r"samples\[1\] \(container 'bad'\): ts_s must be finite"),
        ([ok, Sample("bad", INF)], "ts_s must be finite"),
        ([ok, {"container": "x"}], r"samples\[1\]: must be a Sample, got dict"),
    ]
    for batch, message in cases:
        with pytest.raises(ValueError, match=message):
            store.append_samples(batch)
        assert store.buffered == 0
    assert store.flush() == 0 and data_files(tmp_path) == []


def test_bad_events_and_records_refused_and_nothing_written(tmp_path):
    store = HistoryStore(tmp_path)
    good_ev = Event("c", T0, EventKind.RESTART)
    with pytest.raises(ValueError, match=r"events\[1\] \(container 'c'\): kind must be one of"):
        store.append_events([good_ev, Event("c", T0, "exploded")])
    with pytest.raises(ValueError, match=r"events\[1\] .*ts_s must be finite"):
        store.append_events([good_ev, Event("c", NAN, EventKind.RESTART)])
    good = {"kind": "decision", "ts_s": T0, "container": "c"}
    cases = [
        ({"ts_s": T0, "container": "c"}, r"records\[1\]: kind must be a non-empty str"),
        ({"kind": "d", "container": "c"}, r"records\[1\] \(kind 'd'\): ts_s must be a number"),
        ({"kind": "d", "ts_s": INF, "container": "c"}, "ts_s must be finite"),
        ({"kind": "d", "ts_s": T0}, "container must be a str"),
        ({"kind": "d", "ts_s": T0, "container": "c", "x": object()}, "not JSON serialisable"),
        ("decision", r"records\[1\]: must be a dict"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            store.append_records([good, bad])
    assert [p for p in tmp_path.rglob("*.parquet")] == []


def test_constructor_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="flush_interval_s must be"):
        HistoryStore(tmp_path, flush_interval_s=-1)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        HistoryStore(f)
    with pytest.raises(ValueError, match="history uri 'nosuchscheme://x'"):
        HistoryStore("nosuchscheme://x")


# --- retention -----------------------------------------------------------------------


def test_retention_removes_only_whole_old_days(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    for d in range(5):  # 2024-01-01 .. 2024-01-05, two files each in samples
        store.append_samples([sample("c", T0 + d * DAY + 10, "web")])
        store.flush()
        store.append_samples([sample("c", T0 + d * DAY + 20, "db")])
        store.flush()
    store.append_events([Event("c", T0 + 0.5, EventKind.RESTART, "", "web")])
    store.append_records([{"kind": "decision", "ts_s": T0 + 3 * DAY, "container": "c"}])
    now = T0 + 4.5 * DAY  # 2024-01-05 12:00; max age 2 days → cutoff 2024-01-03 12:00
    assert store.apply_retention(max_age_s=2 * DAY, now_s=now) == 2 * 2 + 1
    assert sorted(set(store.read_samples()["ts_s"] // DAY * DAY)) == [
        T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY]
    assert store.read_events().empty and len(store.read_records()) == 1
    assert store.apply_retention(max_age_s=2 * DAY, now_s=now) == 0
    with pytest.raises(ValueError, match="max_age_s must be"):
        store.apply_retention(max_age_s=-1)
    clock_store = HistoryStore(tmp_path, clock=FakeClock(T0 + 10 * DAY))
    assert clock_store.apply_retention(max_age_s=0) == 2 * 3 + 1
    # a later write into a deleted day recreates the partition
    store.append_events([Event("c", T0 + 0.5, EventKind.RESTART, "", "web")])
    assert len(store.read_events()) == 1


# --- compaction ----------------------------------------------------------------------


def fill_small_files(store: HistoryStore, n_files: int) -> None:
    for i in range(n_files):
        store.append_samples([sample(f"c{i % 3}", T0 + i, "web", memory_usage_bytes=float(i)),
                              sample("z", T0 + DAY + i, "web", cpu_usage_s_total=float(i))])
        store.flush()
        store.append_records([{"kind": "decision", "ts_s": T0 + i, "container": "c", "i": i}])


def test_compaction_merges_and_keeps_exactly_the_same_rows(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 5)
    fill_small_files(HistoryStore(tmp_path / "other"), 0)
    before_s, before_r = store.read_samples(), store.read_records()
    assert len(data_files(tmp_path)) == 10
    stats = store.compact(min_files=6)  # 5 files per partition: below the minimum
    assert stats["partitions"] == 0 and len(data_files(tmp_path)) == 10
    stats = store.compact(min_files=4)
    assert stats == {"partitions": 3, "files_merged": 15, "rows_merged": 15,
                     "leftovers_removed": 0, "temp_files_removed": 0}
    files = data_files(tmp_path)
    assert len(files) == 2 and all(p.name.startswith("compact-") for p in files)
    assert len(data_files(tmp_path, "records")) == 1
    replaced = json.loads(pq.read_metadata(files[0]).metadata[REPLACES_KEY])
    assert len(replaced) == 5 and all(n.startswith("part-") for n in replaced)
    pd.testing.assert_frame_equal(store.read_samples(), before_s)
    pd.testing.assert_frame_equal(store.read_records(), before_r)
    # a compacted file is merged again with new small files
    fill_small_files(store, 3)
    stats = store.compact(min_files=4)
    assert stats["partitions"] == 3 and stats["files_merged"] == 12
    assert len(store.read_samples()) == 16 and len(data_files(tmp_path)) == 2
    with pytest.raises(ValueError, match="min_files must be an int >= 2"):
        store.compact(min_files=1)


def test_compaction_skips_files_that_are_not_small(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 4)
    assert store.compact(min_files=2, small_file_bytes=1)["partitions"] == 0
    assert len(data_files(tmp_path)) == 8


def test_crash_mid_compaction_rows_seen_once_and_leftovers_cleaned(tmp_path):
    """Compacted file written, replaced files not yet deleted: simulated by putting the
    replaced files back after a compaction."""
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 4)
    before = store.read_samples()
    saved = tmp_path.parent / f"{tmp_path.name}-saved"
    shutil.copytree(tmp_path / "samples", saved)
    assert store.compact(min_files=2)["files_merged"] == 12
    shutil.copytree(saved, tmp_path / "samples", dirs_exist_ok=True)  # the "crash"
    assert len(data_files(tmp_path)) == 10  # 8 old + 2 compacted
    pd.testing.assert_frame_equal(store.read_samples(), before)
    assert len(store.files("samples")) == 2
    stats = store.compact(min_files=2)
    assert stats["leftovers_removed"] == 8 and stats["partitions"] == 0
    assert len(data_files(tmp_path)) == 2
    pd.testing.assert_frame_equal(store.read_samples(), before)


def test_crash_between_two_compactions_chain(tmp_path):
    """c2 replaces c1; c1 still on disk: c1 is skipped, rows are seen once."""
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 2)
    store.compact(min_files=2)
    saved = {p: p.read_bytes() for p in data_files(tmp_path)}
    fill_small_files(store, 2)
    store.compact(min_files=2)
    for p, content in saved.items():
        p.write_bytes(content)
    assert len(data_files(tmp_path)) == 4
    assert len(store.read_samples()) == 8
    assert store.compact(min_files=2)["leftovers_removed"] == 2
    assert len(store.read_samples()) == 8


def test_hidden_and_temp_files_are_ignored_and_stale_temps_removed(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 1)
    pdir = tmp_path / "samples" / "app=web" / "day=2024-01-01"
    (pdir / ".tmp-part-crashed.parquet").write_bytes(b"PAR1 half a file")
    (pdir / "_SUCCESS").write_bytes(b"")
    (pdir / "_common_metadata.parquet").write_bytes(b"junk")
    (pdir / "notes.txt").write_text("not data")
    assert len(store.read_samples()) == 2
    assert store.compact(min_files=2)["temp_files_removed"] == 0  # younger than an hour
    assert store.compact(min_files=2, tmp_max_age_s=0)["temp_files_removed"] == 1
    assert not (pdir / ".tmp-part-crashed.parquet").exists()
    assert len(store.read_samples()) == 2


# --- other filesystems ---------------------------------------------------------------


def test_mock_filesystem_uri(tmp_path):
    store = HistoryStore("mock://", flush_interval_s=1e9)
    fill_small_files(store, 4)
    store.append_events([Event("c", T0, EventKind.OOM_KILL, "x", "a/b")])
    assert len(store.read_samples(app="web")) == 8
    assert store.apps() == ["", "a/b", "web"]
    assert list(store.read_events()["app"]) == ["a/b"]
    before = store.read_samples()
    assert store.compact(min_files=2)["partitions"] == 3
    pd.testing.assert_frame_equal(store.read_samples(), before)
    paths = store.files("samples", app="web")
    assert len(paths) == 2 and all("/compact-" in p for p in paths)
    assert store.apply_retention(max_age_s=0, now_s=T0 + 10 * DAY) == 2 + 1 + 1
    assert store.read_samples().empty


def test_file_uri_and_pathlike(tmp_path):
    store = HistoryStore(f"file://{tmp_path}/h")
    store.append_events([Event("c", T0, EventKind.SUCCESS, "", "web")])
    assert (tmp_path / "h" / "events" / "app=web" / "day=2024-01-01").is_dir()
    other = HistoryStore(tmp_path / "h")
    assert list(other.read_events()["kind"]) == ["success"]
    rel = HistoryStore(os.path.relpath(tmp_path / "h"))
    assert len(rel.read_events()) == 1


def test_pyarrow_dataset_reads_the_files_with_hive_partitioning(tmp_path):
    import pyarrow.dataset as ds

    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    fill_small_files(store, 3)
    d = ds.dataset(store.files("samples"), filesystem=store.filesystem, format="parquet",
                   partitioning=ds.HivePartitioning.discover(), partition_base_dir=store.root
                   + "/samples")
    assert d.to_table().num_rows == 6


def test_old_files_without_a_newer_metric_read_as_nan_and_compact(tmp_path):
    import pyarrow as pa

    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    store.append_samples([sample("new", T0 + 1, block_latency_s=0.5)])
    store.flush()
    old_cols = [m for m in METRICS if m != "block_latency_s"]
    old = pa.table({"container": ["old"], "app": ["web"], "legacy_x": [1.0],
                    **{m: [T0 if m == "ts_s" else 2.0] for m in old_cols}})
    pq.write_table(old, tmp_path / "samples/app=web/day=2024-01-01/part-0-old.parquet")
    df = store.read_samples()
    assert list(df.columns) == ["container", "app", *METRICS]
    assert list(df["container"]) == ["new", "old"]
    assert df["block_latency_s"].iloc[0] == 0.5 and math.isnan(df["block_latency_s"].iloc[1])
    assert df["memory_usage_bytes"].iloc[1] == 2.0
    assert store.compact(min_files=2)["rows_merged"] == 2
    pd.testing.assert_frame_equal(store.read_samples(), df)


def test_failed_flush_keeps_the_buffer_and_writes_nothing_twice(tmp_path):
    store = HistoryStore(tmp_path, flush_interval_s=1e9)
    store.append_samples([sample("a", T0, "aa"), sample("b", T0, "bb")])
    blocker = tmp_path / "samples" / "app=bb"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the partition directory should be")
    with pytest.raises(OSError):
        store.flush()
    assert store.buffered == 1  # app "aa" was written, app "bb" is still buffered
    assert list(store.read_samples(app="aa")["container"]) == ["a"]
    blocker.unlink()
    assert store.flush() == 1
    assert list(store.read_samples()["container"]) == ["a", "b"]
