"""Trace replay: the pure unit conversions, the three readers on small real files
written here, the ReplaySource clock (a settable clock, speed 60) and replay_into."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
import pytest

from prescale.app.core.sample import METRICS, Event, EventKind, Sample
from prescale.app.learning import trace_mapping as tm
from prescale.app.telemetry.base import Source
from prescale.app.telemetry.bitbrains import read_bitbrains
from prescale.app.telemetry.csv_trace import read_csv_mapping
from prescale.app.telemetry.google2011 import read_google2011
from prescale.app.telemetry.replay import ReplaySource, replay_into
from prescale.app.telemetry.trace_data import (
    EVENT_COLUMNS,
    SAMPLE_COLUMNS,
    TraceData,
    iter_events,
    iter_samples,
)

NAN, INF = math.nan, math.inf
GIB64 = 64 * 2**30


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-9, nan_ok=True)


# --------------------------------------------------------------------------- pure mapping


def test_epoch_seconds_keeps_seconds_and_converts_milliseconds():
    assert tm.epoch_seconds(np.array([1372629804, 1372630104])).tolist() == [
        1372629804.0, 1372630104.0]
    assert tm.epoch_seconds(np.array([1372629804000, 1372630104000])).tolist() == [
        1372629804.0, 1372630104.0]


def test_provisioned_zero_is_missing():
    out = tm.provisioned_or_nan(np.array([2.0, 0.0, 4.0]))
    assert out[0] == 2.0 and math.isnan(out[1]) and out[2] == 4.0


def test_mhz_to_cores_worked_example():
    out = tm.mhz_to_cores(np.array([87.7799835, 29.2599945, 0.0, 5.0]),
                          np.array([5851.9989, 5851.9989, 0.0, 0.0]),
                          np.array([2, 2, 0, 0]))
    assert out[:3].tolist() == approx([0.03, 0.01, 0.0])
    assert math.isnan(out[3])  # usage without any capacity: unknown, not inf


def test_segment_starts_and_cumsum_worked_examples():
    assert tm.segment_starts(np.array([7, 7, 9, 9, 9, 3])).tolist() == [
        True, False, True, False, False, True]
    starts = np.array([True, False, False, True, False, False])
    out = tm.segment_cumsum(np.array([1, 2, 3, 10, NAN, 20.0]), starts)
    assert out.tolist() == [1.0, 3.0, 6.0, 10.0, 10.0, 30.0]
    with pytest.raises(ValueError, match="starts\\[0\\]"):
        tm.segment_cumsum(np.array([1.0]), np.array([False]))


def test_integrate_rate_worked_example_restarts_per_group():
    ts = np.array([0.0, 300.0, 600.0, 0.0, 60.0])
    rate = np.array([0.03, 0.01, 0.028 / 3, 5.0, 2.0])
    starts = np.array([True, False, False, True, False])
    assert tm.integrate_rate(ts, rate, starts).tolist() == approx([0, 3, 5.8, 0, 120])
    # a nan rate adds nothing, the counter carries on
    assert tm.integrate_rate(np.array([0.0, 10, 20]), np.array([1.0, NAN, 2.0]),
                             np.array([True, False, False])).tolist() == [0.0, 0.0, 20.0]
    with pytest.raises(ValueError, match="increase"):
        tm.integrate_rate(np.array([10.0, 5.0]), np.ones(2), np.array([True, False]))


def test_google_window_cpu_worked_example():
    start, end = tm.google_window_cpu_s(np.array([0.0098272, 0.02, 1.0]),
                                        np.array([300.0, 300.0, 10.0]),
                                        np.array([True, False, True]))
    assert start.tolist() == approx([0.0, 2.94816, 0.0])
    assert end.tolist() == approx([2.94816, 8.94816, 10.0])


def test_google_event_mapping():
    assert tm.GOOGLE2011_EVENTS[3] == (EventKind.EXIT_NONZERO, "failed")
    assert tm.GOOGLE2011_EVENTS[2] == (EventKind.KILLED, "evicted")
    assert tm.GOOGLE2011_EVENTS[5] == (EventKind.KILLED, "killed")
    assert tm.GOOGLE2011_EVENTS[6] == (EventKind.LOST, "lost")
    assert tm.GOOGLE2011_EVENTS[4] == (EventKind.SUCCESS, "finished")
    assert tm.GOOGLE2011_EPOCH_OFFSET_S + 600 == 1304290800.0  # 2011-05-01 23:00 UTC


# --------------------------------------------------------------------------- Bitbrains

BB_HEADER = (
    "vm_id,Timestamp [ms],CPU cores,CPU capacity provisioned [MHZ],CPU usage [MHZ],"
    "CPU usage [%],Memory capacity provisioned [KB],Memory usage [KB],"
    "Disk read throughput [KB/s],Disk write throughput [KB/s],"
    "Network received throughput [KB/s],Network transmitted throughput [KB/s]"
)
BB_ROWS = [
    # VM 1: the first three real rows of the Rnd trace (the module docstring's example)
    "1,1372629804,2,5851.9989,87.7799835,1.5,8218624.0,1034592.8,160.86666666666667,"
    "21.733333333333334,0.26666666666666666,1.4666666666666666",
    "1,1372630104,2,5851.9989,29.259994499999998,0.5,8218624.0,458575.4666666667,0.0,"
    "2.3333333333333335,0.2,1.0",
    "1,1372630404,2,5851.9989,27.309328199999996,0.4666666666666666,8218624.0,184548.0,"
    "32.06666666666667,4.2,0.13333333333333333,1.0666666666666667",
    # VM 2: off (all zero), then 4 cores of 2600 MHz, then a duplicate timestamp
    "2,1372629804,0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0",
    "2,1372630104,4,10400.0,1300.0,12.5,1048576.0,524288.0,1.0,2.0,3.0,4.0",
    "2,1372630104,4,10400.0,2600.0,25.0,1048576.0,999999.0,9.0,9.0,9.0,9.0",
    # VM 10: sorts between vm-1 and vm-2 (string order)
    "10,1372629804,1,2600.0,2600.0,100.0,1024.0,1024.0,0,0,0,0",
]


def write_bitbrains(path, rows=BB_ROWS, header=BB_HEADER):
    text = "\n".join([header, *rows]) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["bb.csv", "bb.csv.gz"])
def test_bitbrains_mapping_exact_values(tmp_path, name):
    trace = read_bitbrains(write_bitbrains(tmp_path / name))
    df = trace.samples
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert trace.dropped == {"duplicate_ts": 1, "bad_value": 0, "missing_key": 0}
    assert trace.events.empty and list(trace.events.columns) == list(EVENT_COLUMNS)
    # sorted by ts, then container name
    assert list(zip(df.ts_s, df.container, strict=True)) == [
        (1372629804.0, "vm-1"), (1372629804.0, "vm-10"), (1372629804.0, "vm-2"),
        (1372630104.0, "vm-1"), (1372630104.0, "vm-2"), (1372630404.0, "vm-1")]
    assert set(df.app) == {"bitbrains-rnd"}

    vm1 = df[df.container == "vm-1"]
    assert vm1.memory_usage_bytes.tolist() == approx(
        [1034592.8 * 1024, 458575.4666666667 * 1024, 184548.0 * 1024])
    assert vm1.memory_usage_bytes.iloc[0] == approx(1059423027.2)
    assert vm1.memory_working_set_bytes.tolist() == vm1.memory_usage_bytes.tolist()
    assert vm1.memory_limit_bytes.tolist() == [8415870976.0] * 3
    assert vm1.cpu_quota_cores.tolist() == [2.0] * 3
    assert vm1.cpu_usage_s_total.tolist() == approx([0.0, 3.0, 5.8])
    assert vm1.io_read_bytes_total.tolist() == approx([0.0, 0.0, 9850880.0])
    assert vm1.io_write_bytes_total.tolist() == approx([0.0, 716800.0, 716800.0 + 1290240.0])
    assert vm1.net_rx_bytes_total.tolist() == approx([0.0, 61440.0, 102400.0])
    assert vm1.net_tx_bytes_total.tolist() == approx([0.0, 307200.0, 634880.0])
    for m in ("memory_failcnt_total", "oom_kills_total", "cpu_periods_total",
              "block_latency_s"):
        assert vm1[m].isna().all()

    vm2 = df[df.container == "vm-2"]
    off, on = vm2.iloc[0], vm2.iloc[1]
    # not provisioned: no limit (nan), usage 0
    assert math.isnan(off.memory_limit_bytes) and math.isnan(off.cpu_quota_cores)
    assert off.memory_usage_bytes == 0.0 and off.cpu_usage_s_total == 0.0
    # the first of the duplicate rows is kept: 1300 MHz / (10400 / 4) = 0.5 cores × 300 s
    assert on.cpu_usage_s_total == 150.0
    assert on.memory_usage_bytes == 524288.0 * 1024
    assert on.memory_limit_bytes == 1048576.0 * 1024 and on.cpu_quota_cores == 4.0
    assert (on.io_read_bytes_total, on.io_write_bytes_total) == (307200.0, 614400.0)
    assert (on.net_rx_bytes_total, on.net_tx_bytes_total) == (921600.0, 1228800.0)


def test_bitbrains_samples_are_sample_objects(tmp_path):
    trace = read_bitbrains(write_bitbrains(tmp_path / "bb.csv"))
    samples = list(iter_samples(trace.samples))
    assert len(samples) == 6
    s = samples[0]
    assert isinstance(s, Sample) and s.container == "vm-1" and s.app == "bitbrains-rnd"
    assert s.ts_s == 1372629804.0 and s.memory_limit_bytes == 8415870976.0
    assert type(s.ts_s) is float and type(s.container) is str
    np.testing.assert_array_equal(np.array(s.row()),
                                  trace.samples.iloc[0][list(METRICS)].to_numpy(np.float64))


def test_bitbrains_header_with_spaces_and_bad_values(tmp_path):
    header = ", ".join(BB_HEADER.split(","))  # the original files pad with whitespace
    rows = [*BB_ROWS[:3], "1,1372630704,2,5851.9989,oops,0.4,8218624.0,1,0,0,0,0"]
    trace = read_bitbrains(write_bitbrains(tmp_path / "bb.csv", rows, header))
    assert len(trace.samples) == 3
    assert trace.dropped == {"duplicate_ts": 0, "bad_value": 1, "missing_key": 0}


def test_bitbrains_missing_column_is_named(tmp_path):
    header = BB_HEADER.replace("Memory usage [KB]", "Mem used")
    with pytest.raises(ValueError, match=r"Memory usage \[KB\]"):
        read_bitbrains(write_bitbrains(tmp_path / "bb.csv", BB_ROWS, header))
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_bitbrains(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- Google 2011

G_USAGE_HEADER = (
    "start_time,end_time,job_id,task_index,machine_id,cpu_rate,canonical_memory,"
    "assigned_memory,unmapped_page_cache,total_page_cache,max_memory,disk_io_time,"
    "local_disk_space,max_cpu_rate,max_disk_io_time,cpi,mai,sample_portion,"
    "aggregation_type,sampled_cpu_usage"
)


def usage_row(start_s, end_s, job, task, cpu, canonical, maxmem):
    return (f"{int(start_s * 1e6)},{int(end_s * 1e6)},{job},{task},42,{cpu},{canonical},"
            f"0.3,0,0,{maxmem},0,0,0.9,0,1.5,0.01,0,1,0")


G_USAGE_ROWS = [
    usage_row(600, 900, 7, 0, 0.5, 0.25, 0.5),
    usage_row(900, 1200, 7, 0, 0.25, 0.125, 0.25),  # joins the previous window at 900
    usage_row(600, 900, 7, 1, 0.0, 0.05, 0.1),  # no request known → limit inf
    usage_row(600, 900, 8, 0, 0.03125, 0.1, 0.2),
    usage_row(1000, 1300, 8, 0, 0.03125, 0.1, 0.2),  # after a gap; after an UPDATE
]
NEVER = 2**63 - 1


def event_row(time_us, job, task, etype, mem=""):
    return f"{time_us},,{job},{task},42,{etype},user,1,9,0.1,{mem},0.001,0"


G_EVENT_ROWS = [
    event_row(0, 8, 0, 0, 0.1),  # SUBMIT at trace start: the original request …
    event_row(0, 8, 0, 1, 0.25),  # … SCHEDULE at the same time: the current one (wins)
    event_row(500_000_000, 7, 0, 0, 0.5),
    event_row(600_000_000, 7, 1, 0, ""),  # SUBMIT without a request (missing_info)
    event_row(700_000_000, 8, 0, 8, 0.5),  # UPDATE_RUNNING: too late for the 600 s window
    event_row(950_000_000, 8, 0, 3),  # FAIL
    event_row(960_000_000, 9, 0, 3),  # a task not in the usage file: ignored
    event_row(1_300_000_000, 7, 0, 2),  # EVICT
    event_row(1_400_000_000, 7, 0, 6),  # LOST
    event_row(1_500_000_000, 8, 0, 5),  # KILL
    event_row(1_600_000_000, 8, 0, 4),  # FINISH
    event_row(NEVER, 7, 1, 4),  # "after the end of the trace": dropped
]


def write_google(tmp_path, *, header=True):
    usage = tmp_path / "usage.csv"
    usage.write_text("\n".join(([G_USAGE_HEADER] if header else []) + G_USAGE_ROWS) + "\n")
    events = tmp_path / "events.csv.gz"
    with gzip.open(events, "wt") as fh:
        fh.write("\n".join(G_EVENT_ROWS) + "\n")
    return usage, events


@pytest.mark.parametrize("header", [True, False])
def test_google_mapping_exact_values(tmp_path, header):
    usage, events = write_google(tmp_path, header=header)
    trace = read_google2011(usage, events, machine_memory_bytes=1000.0, epoch_offset_s=0)
    df = trace.samples
    got = list(zip(df.ts_s, df.container, df.app, df.memory_usage_bytes,
                   df.memory_working_set_bytes, df.memory_limit_bytes, df.cpu_usage_s_total,
                   strict=True))
    # cpu: 0.5 × 32 cores × 300 s = 4800, then + 0.25 × 32 × 300 = 7200; 0.03125 × 32 = 1 core
    assert got == ([
        (600.0, "7-0", "job-7", 500.0, 250.0, 500.0, 0.0),
        (600.0, "7-1", "job-7", 100.0, 50.0, INF, 0.0),
        (600.0, "8-0", "job-8", 200.0, 100.0, 250.0, 0.0),
        (900.0, "7-0", "job-7", 500.0, 250.0, 500.0, 4800.0),
        (900.0, "7-1", "job-7", 100.0, 50.0, INF, 0.0),
        (900.0, "8-0", "job-8", 200.0, 100.0, 250.0, 300.0),
        (1000.0, "8-0", "job-8", 200.0, 100.0, 500.0, 300.0),
        (1200.0, "7-0", "job-7", 250.0, 125.0, 500.0, 7200.0),
        (1300.0, "8-0", "job-8", 200.0, 100.0, 500.0, 600.0),
    ])
    assert df.cpu_quota_cores.tolist() == [INF] * 9
    assert df.io_read_bytes_total.isna().all() and df.net_rx_bytes_total.isna().all()
    ev = trace.events
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert list(zip(ev.ts_s, ev.container, ev.app, ev.kind, ev.detail, strict=True)) == [
        (950.0, "8-0", "job-8", "exit_nonzero", "failed"),
        (1300.0, "7-0", "job-7", "killed", "evicted"),
        (1400.0, "7-0", "job-7", "lost", "lost"),
        (1500.0, "8-0", "job-8", "killed", "killed"),
        (1600.0, "8-0", "job-8", "success", "finished"),
    ]
    assert trace.dropped == {"bad_window": 0, "duplicate_window": 0, "duplicate_ts": 0,
                             "bad_event": 0, "event_never": 1}
    objs = list(iter_events(ev))
    assert objs[0] == Event("8-0", 950.0, EventKind.EXIT_NONZERO, "failed", "job-8")


def test_google_defaults_64gib_32_cores_and_unix_time(tmp_path):
    usage, events = write_google(tmp_path)
    trace = read_google2011(usage, events)
    first = trace.samples.iloc[0]
    assert first.ts_s == 1304290800.0  # trace time 600 s = 2011-05-01 23:00 UTC
    assert first.memory_usage_bytes == 0.5 * GIB64
    assert first.memory_limit_bytes == 0.5 * GIB64
    assert trace.samples.cpu_usage_s_total.max() == 7200.0
    assert trace.events.ts_s.iloc[0] == 1304290200.0 + 950.0


def test_google_bad_windows_and_duplicates_are_counted(tmp_path):
    usage, events = write_google(tmp_path)
    rows = [*G_USAGE_ROWS, usage_row(600, 900, 7, 0, 0.9, 0.9, 0.9),  # repeated window
            usage_row(900, 600, 7, 2, 0.1, 0.1, 0.1),  # ends before it starts
            "x,900000000,7,3,42,0.1,0.1,0.3,0,0,0.1,0,0,0.9,0,1.5,0.01,0,1,0"]
    usage.write_text("\n".join([G_USAGE_HEADER, *rows]) + "\n")
    trace = read_google2011(usage, events, machine_memory_bytes=1000.0, epoch_offset_s=0)
    assert len(trace.samples) == 9
    assert trace.dropped["bad_window"] == 2 and trace.dropped["duplicate_window"] == 1
    assert trace.samples.memory_usage_bytes.iloc[0] == 500.0  # the first window is kept


@pytest.mark.parametrize("kwargs,match", [
    ({"machine_memory_bytes": 0}, "machine_memory_bytes"),
    ({"machine_cores": math.nan}, "machine_cores"),
    ({"epoch_offset_s": math.inf}, "epoch_offset_s"),
])
def test_google_bad_parameters(tmp_path, kwargs, match):
    usage, events = write_google(tmp_path)
    with pytest.raises(ValueError, match=match):
        read_google2011(usage, events, **kwargs)


def test_google_usage_missing_column_is_named(tmp_path):
    usage, events = write_google(tmp_path)
    usage.write_text(G_USAGE_HEADER.replace("max_memory", "peak") + "\n" + G_USAGE_ROWS[0])
    with pytest.raises(ValueError, match="max_memory"):
        read_google2011(usage, events)


# --------------------------------------------------------------------------- CSV / Parquet

CSV_TEXT = """host,time,mem_kb,cpu_s,note
a,10,5,1.5,x
a,10,6,2,x
b,5,x,1,x
b,20,7,,x
,30,1,1,x
"""
MAPPING = {"memory_usage_bytes": "mem_kb", "cpu_usage_s_total": "cpu_s"}


def test_csv_mapping_exact_values(tmp_path):
    path = tmp_path / "svc-metrics.csv"
    path.write_text(CSV_TEXT)
    trace = read_csv_mapping(path, MAPPING, container_col="host", ts_col="time",
                             scale={"memory_usage_bytes": 1024})
    df = trace.samples
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert df.container.tolist() == ["a", "b"] and df.ts_s.tolist() == [10.0, 20.0]
    assert df.memory_usage_bytes.tolist() == [5120.0, 7168.0]
    assert df.cpu_usage_s_total.tolist()[0] == 1.5 and math.isnan(df.cpu_usage_s_total.iloc[1])
    assert df.memory_limit_bytes.tolist() == [INF, INF] and df.cpu_quota_cores.tolist() == [
        INF, INF]
    assert df.app.tolist() == ["svc-metrics"] * 2
    assert trace.dropped == {"bad_ts": 1, "bad_value": 1, "duplicate_ts": 1}


def test_parquet_mapping_with_dates(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame({
        "pod": ["web-1", "web-0", "web-0"],
        "when": pd.to_datetime(["2024-01-01T00:00:10Z", "2024-01-01T00:00:10Z",
                                "2024-01-01T00:00:00Z"]),
        "limit": [1e9, 2e9, 2e9],
        "mem": [1.0, 2.0, 3.0],
    }).to_parquet(path)
    trace = read_csv_mapping(path, {"memory_limit_bytes": "limit", "memory_usage_bytes": "mem"},
                             container_col="pod", ts_col="when", app="web")
    df = trace.samples
    t0 = 1704067200.0  # 2024-01-01T00:00:00Z
    assert list(zip(df.ts_s, df.container, df.memory_limit_bytes, df.memory_usage_bytes,
                    strict=True)) == [(t0, "web-0", 2e9, 3.0), (t0 + 10, "web-0", 2e9, 2.0),
                                      (t0 + 10, "web-1", 1e9, 1.0)]
    assert set(df.app) == {"web"}


def test_csv_date_strings(tmp_path):
    path = tmp_path / "nab.csv"
    path.write_text("timestamp,value\n2014-02-14 14:30:00,0.132\nnot a date,1\n")
    trace = read_csv_mapping(path, {"cpu_quota_cores": "value"}, container_col="value",
                             ts_col="timestamp")
    assert trace.samples.ts_s.tolist() == [1392388200.0]
    assert trace.dropped["bad_ts"] == 1


def test_mapping_errors_name_what_is_wrong(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(CSV_TEXT)
    kw = {"container_col": "host", "ts_col": "time"}
    with pytest.raises(ValueError, match="'memory_bytes'.*'rss'"):
        read_csv_mapping(path, {"memory_bytes": "mem_kb", "rss": "mem_kb"}, **kw)
    with pytest.raises(ValueError, match="'container' \\(use container_col=\\)"):
        read_csv_mapping(path, {"container": "host"}, **kw)
    with pytest.raises(ValueError, match="'ts_s' \\(use ts_col=\\)"):
        read_csv_mapping(path, {"ts_s": "time"}, **kw)
    with pytest.raises(ValueError, match=r"\['mem', 'zzz'\]"):
        read_csv_mapping(path, {"memory_usage_bytes": "mem", "cpu_usage_s_total": "zzz"}, **kw)
    with pytest.raises(ValueError, match="'pod'"):
        read_csv_mapping(path, MAPPING, container_col="pod", ts_col="time")
    with pytest.raises(ValueError, match="scale"):
        read_csv_mapping(path, MAPPING, scale={"net_rx_bytes_total": 8}, **kw)
    json_path = tmp_path / "m.json"
    json_path.write_text("{}")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_csv_mapping(json_path, MAPPING, **kw)


# --------------------------------------------------------------------------- ReplaySource


class SettableClock:
    """A clock the test moves by hand (the replay's simulated time follows it)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.t


def small_trace(tmp_path) -> TraceData:
    path = tmp_path / "t.csv"
    path.write_text("c,ts,mem\na,0,1\nb,0,2\na,300,3\nb,300,4\na,600,5\n")
    trace = read_csv_mapping(path, {"memory_usage_bytes": "mem"}, container_col="c",
                             ts_col="ts", app="app")
    trace.events = pd.DataFrame({"container": ["a"], "app": ["app"], "ts_s": [450.0],
                                 "kind": ["oom_kill"], "detail": ["kernel"]})
    return trace


def rows(batch):
    return [(s.container, s.ts_s) for s in batch.samples]


def test_replay_speed_60_with_a_settable_clock(tmp_path):
    clock = SettableClock(100.0)
    src = ReplaySource(small_trace(tmp_path), speed=60, clock=clock)
    assert isinstance(src, Source) and src.kind == "replay"
    assert not src.done and src.remaining == 6
    b = src.poll()  # the clock starts at the first poll: sim = 0
    assert rows(b) == [("a", 0.0), ("b", 0.0)] and b.events == [] and b.errors == {}
    clock.t = 105.0  # 5 s × 60 = 300 simulated s
    assert rows(src.poll()) == [("a", 300.0), ("b", 300.0)]
    clock.t = 106.0  # sim 360: nothing new
    b = src.poll()
    assert b.samples == [] and b.events == [] and src.position_s == 360.0
    clock.t = 107.5  # sim 450: the event, inclusive
    b = src.poll()
    assert b.samples == [] and b.events == [
        Event("a", 450.0, EventKind.OOM_KILL, "kernel", "app")]
    clock.t = 107.0  # a clock that goes back does not rewind the replay
    assert src.poll().samples == [] and src.position_s == 450.0
    clock.t = 110.0  # sim 600
    b = src.poll()
    assert rows(b) == [("a", 600.0)] and b.samples[0].memory_usage_bytes == 5.0
    assert src.done and src.remaining == 0
    clock.t = 1000.0
    assert src.poll().samples == []


def test_replay_advance_needs_no_clock_and_refuses_to_go_back(tmp_path):
    clock = SettableClock(0.0)
    src = ReplaySource(small_trace(tmp_path), speed=60, clock=clock)
    assert rows(src.advance(0)) == [("a", 0.0), ("b", 0.0)]
    assert src.advance(299).samples == []
    assert rows(src.advance(300)) == [("a", 300.0), ("b", 300.0)]
    assert clock.calls == 0
    with pytest.raises(ValueError, match="back in time"):
        src.advance(100)
    with pytest.raises(ValueError, match="to_s"):
        src.advance(math.nan)
    assert src.position_s == 300.0  # the refused calls changed nothing
    b = src.step(150)
    assert b.samples == [] and len(b.events) == 1 and src.position_s == 450.0
    # the next poll carries on from 450 at speed 60, re-anchored on its clock
    clock.t = 50.0
    assert src.poll().samples == [] and src.position_s == 450.0
    clock.t = 52.5
    assert rows(src.poll()) == [("a", 600.0)] and src.done


def test_replay_start_s_skips_earlier_rows_and_speed_inf(tmp_path):
    src = ReplaySource(small_trace(tmp_path), speed=1, start_s=300)
    s, e = src.advance_frames(300)
    assert list(zip(s.container, s.ts_s, strict=True)) == [("a", 300.0), ("b", 300.0)]
    assert e.empty
    fast = ReplaySource(small_trace(tmp_path), speed=math.inf)
    b = fast.poll()
    assert len(b.samples) == 5 and len(b.events) == 1 and fast.done
    assert fast.poll().samples == []


@pytest.mark.parametrize("speed", [0, -1, math.nan, "fast", True])
def test_replay_bad_speed(tmp_path, speed):
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(small_trace(tmp_path), speed=speed)


def test_replay_refuses_an_unsorted_trace_and_close_ends_it(tmp_path):
    trace = small_trace(tmp_path)
    unsorted = TraceData(trace.samples.iloc[::-1].reset_index(drop=True), trace.events)
    with pytest.raises(ValueError, match="sorted"):
        ReplaySource(unsorted, speed=1)
    src = ReplaySource(trace, speed=1)
    src.close()
    assert src.done and src.poll().samples == []


# --------------------------------------------------------------------------- replay_into


class ObjectSink:
    """A store that takes Sample and Event objects (the history store's API)."""

    def __init__(self):
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        self.flushes = 0

    def append_samples(self, samples):
        self.samples.extend(samples)

    def append_events(self, events):
        self.events.extend(events)

    def flush(self):
        self.flushes += 1


class FrameSink(ObjectSink):
    """A store that also takes DataFrames directly."""

    def __init__(self):
        super().__init__()
        self.frames: list[pd.DataFrame] = []

    def append_sample_frame(self, df):
        self.frames.append(df)


def test_replay_into_objects_in_batches_with_progress(tmp_path):
    trace = small_trace(tmp_path)
    sink, calls = ObjectSink(), []
    out = replay_into(trace, sink, batch_rows=2, progress=lambda d, t: calls.append((d, t)))
    assert out == {"samples": 5, "events": 1, "batches": 4}
    assert calls == [(2, 6), (4, 6), (5, 6), (6, 6)]
    assert [(s.container, s.ts_s, s.memory_usage_bytes) for s in sink.samples] == [
        ("a", 0.0, 1.0), ("b", 0.0, 2.0), ("a", 300.0, 3.0), ("b", 300.0, 4.0),
        ("a", 600.0, 5.0)]
    assert sink.events == [Event("a", 450.0, EventKind.OOM_KILL, "kernel", "app")]
    assert sink.flushes == 1


def test_replay_into_prefers_frames(tmp_path):
    trace = small_trace(tmp_path)
    sink = FrameSink()
    out = replay_into(trace, sink, batch_rows=3)
    assert out == {"samples": 5, "events": 1, "batches": 3}
    assert sink.samples == [] and [len(f) for f in sink.frames] == [3, 2]
    pd.testing.assert_frame_equal(pd.concat(sink.frames), trace.samples)
    assert len(sink.events) == 1 and sink.flushes == 1


def test_replay_into_checks_the_sink_first(tmp_path):
    trace = small_trace(tmp_path)
    with pytest.raises(TypeError, match=r"\['append_samples', 'append_events', 'flush'\]"):
        replay_into(trace, object())
    sink = ObjectSink()
    with pytest.raises(ValueError, match="batch_rows"):
        replay_into(trace, sink, batch_rows=0)
    assert sink.samples == [] and sink.flushes == 0
