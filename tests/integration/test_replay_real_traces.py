"""Trace replay on the real public traces in ../shared/data (read-only, never copied).

The expected figures are counted here independently of the readers (gzip + csv, one
pass per file), then compared with what the readers return. Skips, with the path it
looked at, when the traces are absent; ``PRESCALE_TRACE_DIR`` points elsewhere.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from prescale.app.core.sample import Sample
from prescale.app.telemetry.bitbrains import read_bitbrains
from prescale.app.telemetry.google2011 import read_google2011
from prescale.app.telemetry.replay import ReplaySource, replay_into
from prescale.app.telemetry.trace_data import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
)

TRACE_DIR = Path(os.environ.get("PRESCALE_TRACE_DIR")
                 or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def need(rel: str) -> Path:
    path = TRACE_DIR / rel
    if not path.is_file():
        pytest.skip(f"real trace {path} is absent (set PRESCALE_TRACE_DIR to the directory "
                    "holding bitbrains-rnd/ and google2011/)")
    return path


# --------------------------------------------------------------------------- Bitbrains


@pytest.fixture(scope="module")
def bitbrains():
    path = need(BITBRAINS_RND_FILE)
    t = time.perf_counter()
    trace = read_bitbrains(path)
    return trace, time.perf_counter() - t, path


@pytest.fixture(scope="module")
def bitbrains_counted():
    """Rows, duplicates and rows per VM, counted with gzip + csv (not the reader)."""
    path = need(BITBRAINS_RND_FILE)
    rows = dups = 0
    seen: set[tuple[str, str]] = set()
    per_vm: Counter[str] = Counter()
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # header
        for rec in reader:
            rows += 1
            key = (rec[0], rec[1])
            if key in seen:
                dups += 1
            else:
                seen.add(key)
                per_vm[f"vm-{int(rec[0])}"] += 1
    return rows, dups, per_vm


def test_bitbrains_loads_every_vm_and_every_row(bitbrains, bitbrains_counted):
    trace, load_s, _ = bitbrains
    rows, dups, per_vm = bitbrains_counted
    assert rows == 413_169 and dups == 4_158  # the file as published in ../shared/data
    assert trace.dropped == {"duplicate_ts": dups, "bad_value": 0, "missing_key": 0}
    assert len(trace.samples) == rows - dups == 409_011
    assert len(per_vm) == 50 and trace.containers == sorted(per_vm)
    assert trace.samples.groupby("container").size().to_dict() == dict(per_vm)
    assert trace.events.empty
    print(f"\nBitbrains loaded in {load_s:.1f} s")  # a benchmark's figure, not a test's


def test_bitbrains_order_and_counters(bitbrains):
    df = bitbrains[0].samples
    ts = df.ts_s.to_numpy()
    assert np.all(np.diff(ts) >= 0)
    same = ts[1:] == ts[:-1]
    names = df.container.to_numpy()
    assert all(a < b for a, b in zip(names[:-1][same], names[1:][same], strict=True))
    for vm, g in df.groupby("container"):
        for c in ("cpu_usage_s_total", "io_read_bytes_total", "io_write_bytes_total",
                  "net_rx_bytes_total", "net_tx_bytes_total"):
            v = g[c].to_numpy()
            assert v[0] == 0.0 and np.all(np.diff(v) >= 0), (vm, c)


def test_bitbrains_worked_example_on_the_real_file(bitbrains):
    vm1 = bitbrains[0].samples.query("container == 'vm-1'").iloc[:3]
    assert vm1.ts_s.tolist() == [1372629804.0, 1372630104.0, 1372630404.0]
    assert vm1.memory_limit_bytes.tolist() == [8415870976.0] * 3
    assert vm1.memory_usage_bytes.iloc[0] == pytest.approx(1059423027.2, rel=1e-15)
    assert vm1.cpu_usage_s_total.tolist() == pytest.approx([0.0, 3.0, 5.8], rel=1e-12)
    assert vm1.io_read_bytes_total.tolist() == pytest.approx([0.0, 0.0, 9850880.0], rel=1e-12)


def test_bitbrains_replays_one_day_at_a_time(bitbrains):
    trace = bitbrains[0]
    ts = trace.samples.ts_s.to_numpy()
    src = ReplaySource(trace, speed=60)
    day_end = src.start_s + 86_400
    got = 0
    while src.position_s < day_end:
        batch = src.step(300)
        assert all(isinstance(s, Sample) for s in batch.samples[:3])
        got += len(batch.samples)
    assert got == int(np.count_nonzero(ts <= day_end))
    s, _ = src.advance_frames(math.inf)
    assert got + len(s) == len(ts) and src.done


class CountingFrameSink:
    def __init__(self):
        self.rows = 0
        self.per_container: Counter[str] = Counter()
        self.flushed = False

    def append_sample_frame(self, df):
        self.rows += len(df)
        self.per_container.update(df.container.value_counts().to_dict())

    def append_events(self, events):
        self.rows += len(list(events))

    def flush(self):
        self.flushed = True


def test_bitbrains_replay_into_a_frame_sink(bitbrains, bitbrains_counted):
    sink, calls = CountingFrameSink(), []
    out = replay_into(bitbrains[0], sink, progress=lambda d, t: calls.append((d, t)))
    assert out == {"samples": 409_011, "events": 0, "batches": 9}
    assert sink.rows == 409_011 and sink.flushed
    assert sink.per_container == bitbrains_counted[2]
    assert calls[-1] == (409_011, 409_011) and len(calls) == 9


# --------------------------------------------------------------------------- Google 2011


@pytest.fixture(scope="module")
def google():
    usage, events = need(GOOGLE2011_USAGE_FILE), need(GOOGLE2011_EVENTS_FILE)
    t = time.perf_counter()
    trace = read_google2011(usage, events)
    return trace, time.perf_counter() - t, usage, events


@pytest.fixture(scope="module")
def google_counted(google):
    """Tasks of the usage file and their outcome events, counted with csv."""
    _, _, usage, events = google
    with open(usage, newline="") as fh:
        tasks = {(r["job_id"], r["task_index"]) for r in csv.DictReader(fh)}
    kinds: Counter[str] = Counter()
    with gzip.open(events, "rt", newline="") as fh:
        for rec in csv.reader(fh):
            if (rec[2], rec[3]) in tasks:
                kinds[rec[5]] += 1
    return tasks, kinds


def test_google_yields_every_task_and_its_outcomes(google, google_counted):
    trace, load_s, _, _ = google
    tasks, kinds = google_counted
    assert len(tasks) == 6_153
    assert set(trace.containers) == {f"{j}-{t}" for j, t in tasks}
    assert len(trace.samples) == 2 * 6_153  # a start and an end sample per window
    assert trace.dropped == {"bad_window": 0, "duplicate_window": 0, "duplicate_ts": 0,
                             "bad_event": 0, "event_never": 0}
    got = trace.events.groupby(["kind", "detail"]).size().to_dict()
    assert got == {("exit_nonzero", "failed"): kinds["3"], ("killed", "evicted"): kinds["2"],
                   ("killed", "killed"): kinds["5"]}
    # the data: 66 FAIL, 39 EVICT, 144 KILL; no FINISH and no LOST for these tasks
    assert (kinds["3"], kinds["2"], kinds["5"], kinds["4"], kinds["6"]) == (66, 39, 144, 0, 0)
    assert trace.events.container.isin(set(trace.containers)).all()
    print(f"\nGoogle 2011 loaded in {load_s:.1f} s")  # a benchmark's figure, not a test's


def test_google_limits_and_cpu(google):
    df = google[0].samples
    assert np.isfinite(df.memory_limit_bytes).all()  # every task has a known request
    over = df[df.memory_usage_bytes > df.memory_limit_bytes].container.nunique()
    assert over == 49  # tasks whose window peak exceeds their memory request
    first = df.query("container == '3418314-0'")
    assert first.ts_s.tolist() == [1304290800.0, 1304291100.0]
    assert first.memory_usage_bytes.tolist() == [0.08044 * 64 * 2**30] * 2
    assert first.memory_limit_bytes.tolist() == [0.09473 * 64 * 2**30] * 2  # SCHEDULE's
    assert first.cpu_usage_s_total.tolist() == pytest.approx([0.0, 2.94816], rel=1e-12)
    src = ReplaySource(google[0], speed=math.inf)
    batch = src.poll()
    assert len(batch.samples) == 12_306 and len(batch.events) == 249 and src.done


def test_google_replay_into_the_real_history_store(google, tmp_path):
    history = pytest.importorskip("prescale.app.store.history",
                                  reason="the history store is not there")
    trace = google[0]
    store = history.HistoryStore(tmp_path / "history", flush_interval_s=3600)
    out = replay_into(trace, store, batch_rows=5_000)
    assert out == {"samples": 12_306, "events": 249, "batches": 4}
    back = store.read_samples().sort_values(["ts_s", "container"], kind="stable")
    assert len(back) == 12_306
    cols = ["container", "app", "ts_s", "memory_usage_bytes", "memory_limit_bytes",
            "cpu_usage_s_total"]
    assert back[cols].reset_index(drop=True).equals(trace.samples[cols])
    events = store.read_events()
    assert len(events) == 249
    assert sorted(events.kind.tolist()) == sorted(trace.events.kind.tolist())
