"""The timing client (app.client) and the spool source (app.telemetry.timings), on real
files, real threads and real processes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from prescale.app.client import (
    MAX_RECORD_BYTES,
    Reporter,
    encode_record,
    set_default_reporter,
    timed,
)
from prescale.app.core.sample import EventKind
from prescale.app.telemetry.timings import TimingRecord, TimingsSource, parse_record

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def rec(container: str, block: str, duration: float, ok: bool = True, **extra: object) -> bytes:
    obj = {"container": container, "block": block, "duration_s": duration, "ok": ok, **extra}
    return json.dumps(obj).encode() + b"\n"


# --------------------------------------------------------------------------- client


def test_context_manager_writes_one_exact_line(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    r = Reporter(spool, app="shop")
    before = time.time()
    with timed("checkout", container="web-1", reporter=r):
        time.sleep(0.05)
    [line] = lines(spool)
    assert set(line) == {"v", "ts_s", "container", "block", "duration_s", "ok", "timeout",
                         "app", "pid"}
    assert (line["v"], line["container"], line["block"], line["ok"], line["timeout"],
            line["app"], line["pid"]) == (1, "web-1", "checkout", True, False, "shop",
                                          os.getpid())
    assert 0.05 <= line["duration_s"] < 1.0
    assert before <= line["ts_s"] <= time.time()
    assert (r.sent, r.failures) == (1, {})


def test_encode_record_worked_example() -> None:
    assert encode_record(ts_s=100.0, container="web", block="checkout", duration_s=0.5,
                         ok=True, timeout=False, pid=7) == (
        b'{"v":1,"ts_s":100.0,"container":"web","block":"checkout","duration_s":0.5,'
        b'"ok":true,"timeout":false,"app":"","pid":7}\n'
    )


def test_exception_is_reraised_and_recorded_as_failure(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    r = Reporter(spool, container="web")
    err = KeyError("x")
    with pytest.raises(KeyError) as info:
        with r.timed("lookup"):
            raise err
    assert info.value is err  # the very same exception, unchanged
    with pytest.raises(TimeoutError):
        with r.timed("fetch"):
            raise TimeoutError("upstream")
    a, b = lines(spool)
    assert (a["block"], a["ok"], a["timeout"], a["error"]) == ("lookup", False, False, "KeyError")
    assert (b["block"], b["ok"], b["timeout"], b["error"]) == ("fetch", False, True,
                                                               "TimeoutError")


def test_decorator_sync_and_async(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    r = Reporter(spool, container="web")

    @r.timed("add")
    def add(a: int, b: int) -> int:
        """Adds."""
        return a + b

    @r.timed("boom")
    def boom() -> None:
        raise ValueError("no")

    @r.timed("slow", timeout_s=0.01)
    async def slow() -> str:
        await asyncio.sleep(0.03)
        return "done"

    assert add(2, 3) == 5
    assert (add.__name__, add.__doc__) == ("add", "Adds.")
    with pytest.raises(ValueError, match="no"):
        boom()
    assert asyncio.run(slow()) == "done"
    got = [(x["block"], x["ok"], x["timeout"], x.get("error")) for x in lines(spool)]
    assert got == [("add", True, False, None), ("boom", False, False, "ValueError"),
                   ("slow", True, True, None)]
    assert lines(spool)[2]["duration_s"] >= 0.03


def test_environment_configures_the_default_reporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "env.jsonl"
    set_default_reporter(None)
    try:
        monkeypatch.setenv("PRESCALE_SPOOL", str(spool))
        monkeypatch.setenv("PRESCALE_CONTAINER", "from-env")
        monkeypatch.setenv("PRESCALE_APP", "envapp")
        with timed("block"):
            pass
        monkeypatch.delenv("PRESCALE_SPOOL")
        with timed("block"):  # no spool: counted, nothing raised
            pass
        [line] = lines(spool)
        assert (line["container"], line["app"]) == ("from-env", "envapp")
        from prescale.app.client import default_reporter

        assert default_reporter().failures == {"no_spool": 1}

        @timed("decorated-early")
        def work() -> int:
            return 7

        later = Reporter(tmp_path / "later.jsonl", container="c")
        set_default_reporter(later)  # after decoration: still followed
        assert work() == 7
        assert [x["block"] for x in lines(tmp_path / "later.jsonl")] == ["decorated-early"]
    finally:
        set_default_reporter(None)


def test_unwritable_spool_never_raises_and_is_counted(tmp_path: Path) -> None:
    missing = Reporter(tmp_path / "no" / "such" / "dir.jsonl", container="c")
    with missing.timed("a"):
        pass
    assert missing.record("a", 0.1) is False
    assert (missing.sent, missing.failures) == (0, {"open:ENOENT": 2})

    full = Reporter("/dev/full", container="c")  # every write fails with ENOSPC
    with full.timed("a"):
        pass
    assert (full.sent, full.failures) == (0, {"write:ENOSPC": 1})

    with pytest.raises(ValueError, match="boom"):  # the block's error still propagates
        with full.timed("a"):
            raise ValueError("boom")
    assert full.failures == {"write:ENOSPC": 2}


def test_bad_arguments_raise_at_the_call_site(tmp_path: Path) -> None:
    r = Reporter(tmp_path / "t.jsonl")
    with pytest.raises(ValueError, match="block must be a non-empty string"):
        r.timed("")
    with pytest.raises(ValueError, match="container is 257 characters long"):
        r.timed("a", container="x" * 257)
    with pytest.raises(ValueError, match="timeout_s must be a number > 0"):
        r.timed("a", timeout_s=0)
    with pytest.raises(ValueError, match="duration_s must be a finite number"):
        r.record("a", -1.0)
    with pytest.raises(ValueError, match="duration_s must be a finite number"):
        r.record("a", math.nan)
    assert not (tmp_path / "t.jsonl").exists()


# The longest names, in 4-byte UTF-8 characters: ~2.3 KiB per line, so that interleaved
# writes (if they happened) would show as broken JSON.
BIG_CONTAINER = "\U0001d4e7" * 250
BIG_BLOCK = "\u00e9" * 250

CHILD = r"""
import sys
from prescale.app.client import Reporter
r = Reporter(sys.argv[1], container=sys.argv[2])
for i in range(int(sys.argv[4])):
    r.record(sys.argv[3] + ":" + str(i), 0.001 * i, ok=i % 3 != 0)
sys.exit(0 if r.sent == int(sys.argv[4]) else 1)
"""


def test_concurrent_threads_and_processes_never_interleave(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    n = 300
    r = Reporter(spool, container=BIG_CONTAINER)

    def worker(tid: int) -> None:
        for i in range(n):
            r.record(f"{BIG_BLOCK}t{tid}:{i}", 0.001 * i, ok=i % 3 != 0)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(spool), BIG_CONTAINER, f"{BIG_BLOCK}p{k}", str(n)],
            env=env,
        )
        for k in range(3)
    ]
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert r.sent == 4 * n and r.failures == {}

    raw = spool.read_bytes().split(b"\n")
    assert raw[-1] == b""
    assert all(len(x) < MAX_RECORD_BYTES for x in raw)
    parsed = [json.loads(x) for x in raw[:-1]]  # every line is whole JSON
    assert len(parsed) == 7 * n
    by_writer = Counter(x["block"].rpartition(":")[0] for x in parsed)
    assert by_writer == {f"{BIG_BLOCK}{w}": n for w in
                         ["t0", "t1", "t2", "t3", "p0", "p1", "p2"]}

    # …and the source reads them all back, with exact counts.
    source = TimingsSource(spool, clock=Clock())
    [s] = source.poll().samples
    assert (s.container, s.block_calls_total, s.block_failures_total) == (
        BIG_CONTAINER, 7 * n, 7 * 100)  # i % 3 == 0 fails: 100 of every 300
    assert s.block_latency_s == pytest.approx(0.001 * (n - 1) / 2)
    assert source.dropped == {}


# --------------------------------------------------------------------------- source


def test_parse_record_worked_examples() -> None:
    assert parse_record(b'{"container":"web","block":"a","duration_s":0.5,"ok":true}') == (
        TimingRecord("web", "a", 0.5, True)
    )
    assert parse_record(b'{"container":"web"') == "not_json"
    bad = {
        b"": "empty",
        b"\xff\xfe": "not_utf8",
        b"[1, 2]": "not_object",
        b'{"v":2,"container":"w","block":"a","duration_s":1,"ok":true}': "unknown_version",
        b'{"container":"","block":"a","duration_s":1,"ok":true}': "bad_container",
        b'{"container":"w","block":7,"duration_s":1,"ok":true}': "bad_block",
        b'{"container":"w","block":"a","duration_s":-1,"ok":true}': "bad_duration",
        b'{"container":"w","block":"a","duration_s":NaN,"ok":true}': "bad_duration",
        b'{"container":"w","block":"a","duration_s":true,"ok":true}': "bad_duration",
        b'{"container":"w","block":"a","duration_s":1,"ok":1}': "bad_ok",
        b'{"container":"w","block":"a","duration_s":1,"ok":true,"timeout":"y"}': "bad_timeout",
        b'{"container":"w","block":"a","duration_s":1,"ok":true,"ts_s":"now"}': "bad_ts",
        b'{"container":"w","block":"a","duration_s":1,"ok":true,"ts_s":1e999}': "bad_ts",
        b'{"container":"w","block":"a","duration_s":1,"ok":true,"app":3}': "bad_app",
    }
    for line, reason in bad.items():
        assert parse_record(line) == reason, line


def test_counts_mean_latency_and_timeouts_exact(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    r = Reporter(spool, container="web", app="shop")
    r.record("checkout", 0.5)
    r.record("checkout", 1.0, ok=False)
    r.record("search", 3.0)
    r.record("search", 2.0)  # exactly at the timeout: not a timeout
    r.record("cart", 0.25, timeout=True, container="api")
    clock = Clock(1_800_000_000.0)
    source = TimingsSource(spool, clock=clock, timeouts_s={"search": 2.0})
    b1 = source.poll()
    web, api = sorted(b1.samples, key=lambda s: s.container, reverse=True)
    assert (web.container, web.ts_s, web.block_calls_total, web.block_failures_total) == (
        "web", 1_800_000_001.0, 4.0, 1.0)
    assert web.block_latency_s == (0.5 + 1.0 + 3.0 + 2.0) / 4 == 1.625
    assert (web.app, api.app) == ("shop", "shop")
    assert (api.block_calls_total, api.block_failures_total, api.block_latency_s) == (
        1.0, 0.0, 0.25)
    assert math.isnan(web.memory_limit_bytes) and math.isnan(web.memory_usage_bytes)
    assert [(e.container, e.kind, e.detail) for e in b1.events] == [
        ("web", EventKind.TIMEOUT, "block 'search' took 3.000 s > timeout 2.0 s"),
        ("api", EventKind.TIMEOUT, "block 'cart' reported a timeout after 0.250 s"),
    ]
    written = [x["ts_s"] for x in lines(spool)]
    assert [e.ts_s for e in b1.events] == [written[2], written[4]]  # when it happened

    b2 = source.poll()  # nothing new: counters stay, latency unknown
    assert [(s.container, s.block_calls_total, s.block_failures_total) for s in b2.samples] == [
        ("api", 1.0, 0.0), ("web", 4.0, 1.0)]
    assert all(math.isnan(s.block_latency_s) for s in b2.samples)
    assert b2.events == []

    r.record("checkout", 0.5, ok=False)
    b3 = source.poll()
    [web3] = [s for s in b3.samples if s.container == "web"]
    assert (web3.block_calls_total, web3.block_failures_total, web3.block_latency_s) == (
        5.0, 2.0, 0.5)
    assert source.dropped == {}


def test_torn_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    line = rec("web", "a", 0.5)
    append(spool, rec("web", "a", 1.5) + line[:20])
    source = TimingsSource(spool, clock=Clock())
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (1.0, 1.5)
    append(spool, line[20:-1])  # still no newline
    [s] = source.poll().samples
    assert (s.block_calls_total, math.isnan(s.block_latency_s)) == (1.0, True)
    append(spool, b"\n")
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (2.0, 0.5)
    assert source.dropped == {}


def test_truncation_restarts_from_the_beginning(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    append(spool, rec("web", "a", 1.0) * 3)
    source = TimingsSource(spool, clock=Clock())
    assert source.poll().samples[0].block_calls_total == 3.0
    with open(spool, "r+b") as fh:  # copytruncate
        fh.truncate(0)
    append(spool, rec("web", "a", 2.0))
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (4.0, 2.0)
    assert source.reader.truncations == 1
    assert source.dropped == {}


def test_rotation_reads_the_old_file_to_its_end_then_the_new(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    append(spool, rec("web", "a", 1.0))
    source = TimingsSource(spool, clock=Clock())
    assert source.poll().samples[0].block_calls_total == 1.0
    spool.rename(tmp_path / "t.jsonl.1")
    append(tmp_path / "t.jsonl.1", rec("web", "a", 3.0) + b'{"container":"web"')  # torn
    assert source.poll().samples[0].block_calls_total == 2.0  # no new file yet: old one
    Reporter(spool, container="web").record("a", 5.0)  # the writer creates the new file
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (3.0, 5.0)
    assert source.reader.rotations == 1
    assert source.dropped == {"torn": 1}


def test_malformed_and_too_long_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    spool = tmp_path / "t.jsonl"
    append(spool, b"".join([
        rec("web", "a", 1.0),
        b"garbage\n",
        b"\n",
        b'{"container":"web","block":"a","duration_s":"slow","ok":true}\n',
        b'{"container":"web","block":"a","duration_s":1,"ok":true,"x":"' + b"y" * 5000
        + b'"}\n',
        rec("web", "a", 3.0),
    ]))
    source = TimingsSource(spool, clock=Clock(), max_line_bytes=4096)
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (2.0, 2.0)
    assert source.dropped == {"not_json": 1, "empty": 1, "bad_duration": 1, "too_long": 1}

    # A too-long line that arrives over several polls is dropped once, never held whole.
    append(spool, b"z" * 3000)
    assert math.isnan(source.poll().samples[0].block_latency_s)
    append(spool, b"z" * 3000)
    source.poll()
    append(spool, b"z" * 3000 + b"\n" + rec("web", "a", 7.0))
    [s] = source.poll().samples
    assert (s.block_calls_total, s.block_latency_s) == (3.0, 7.0)
    assert source.dropped["too_long"] == 2


def test_missing_spool_is_empty_and_bad_configuration_raises(tmp_path: Path) -> None:
    source = TimingsSource(tmp_path / "later.jsonl", clock=Clock())
    assert source.poll().samples == []
    Reporter(tmp_path / "later.jsonl", container="c").record("a", 1.0)
    assert source.poll().samples[0].block_calls_total == 1.0
    source.close()

    with pytest.raises(FileNotFoundError, match="no/such"):
        TimingsSource(tmp_path / "no" / "such" / "t.jsonl")
    with pytest.raises(ValueError, match="is a directory"):
        TimingsSource(tmp_path)
    with pytest.raises(ValueError, match=r"timeouts_s\['search'\] must be a number > 0"):
        TimingsSource(tmp_path / "t.jsonl", timeouts_s={"search": 0})
    with pytest.raises(ValueError, match="timeouts_s"):
        TimingsSource(tmp_path / "t.jsonl", timeouts_s={"search": math.inf})
