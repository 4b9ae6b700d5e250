"""HistoryStore survives SIGKILL: real writer and compactor processes, killed at random.

A writer process appends batches (events, records, then samples + flush) and prints
``WROTE <batch>`` after each flush returns. The test kills it with SIGKILL 20–200 ms
into its run, many times, then checks that the store reads without error and holds
every reported batch exactly once (and every other batch whole or not at all). Then it
kills compactor processes (racing a writer) the same way and checks the same.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from prescale.app.store.history import HistoryStore

REPO = Path(__file__).resolve().parents[2]
ROWS = 20  # samples per batch
T0 = 1_704_067_200.0
DAY = 86_400.0

WRITER = f"""
import sys
import time
from prescale.app.core.sample import Event, EventKind, Sample
from prescale.app.store.history import HistoryStore

root, b = sys.argv[1], int(sys.argv[2])
store = HistoryStore(root, flush_interval_s=1e9)
print("READY", flush=True)
sys.stdin.readline()  # GO: lets the test start the next process while this one runs
while True:
    ts = {T0} + (b % 4) * {DAY} + (b % 1000)
    app = f"app{{b % 3}}"
    store.append_events([Event(f"b{{b}}", ts, EventKind.RESTART, str(b), app)])
    store.append_records([{{"kind": "decision", "ts_s": ts, "container": f"b{{b}}",
                           "app": app, "batch": b}}])
    store.append_samples([
        Sample(f"c{{i}}", ts + i, memory_usage_bytes=float(b), cpu_usage_s_total=float(i),
               app=app)
        for i in range({ROWS})
    ])
    store.flush()
    print(f"WROTE {{b}}", flush=True)
    b += 1
    time.sleep(0.01)  # fewer, not smaller, files: a kill still lands mid-write often
"""

COMPACTOR = """
import os
import signal
import sys

import prescale.app.store.history as history

root, crash_at = sys.argv[1], sys.argv[2]
store = history.HistoryStore(root)


def die():
    print("CRASHING", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


# Crash points for a deterministic run: a real SIGKILL of this process at that step.
if crash_at == "before_rename":  # compacted temp file written and fsynced, not renamed
    real_replace = os.replace
    def replace(src, dst):
        if os.path.basename(dst).startswith("compact-"):
            die()
        real_replace(src, dst)
    history.os.replace = replace
elif crash_at.startswith("delete_"):  # the compacted file is in place; kill at the n-th
    n_kill = int(crash_at.split("_")[1])  # deletion of a replaced file
    real_delete = history.HistoryStore._delete
    deleted = 0
    def delete(self, path):
        global deleted
        if not os.path.basename(path).startswith("."):
            deleted += 1
            if deleted == n_kill:
                die()
        real_delete(self, path)
    history.HistoryStore._delete = delete

print("READY", flush=True)
sys.stdin.readline()
while True:
    store.compact(min_files=2)
    print("COMPACTED", flush=True)
"""


def start(script: Path, *args: str) -> subprocess.Popen[str]:
    """Start a script; it imports, opens the store, prints READY and waits for :func:`go`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )


def go(proc: subprocess.Popen[str]) -> None:
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"{proc.args} did not start: {line!r} {err}")
    proc.stdin.write("GO\n")
    proc.stdin.flush()


def kill(proc: subprocess.Popen[str]) -> list[str]:
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    return out.splitlines()


def check(root: Path, reported: set[int]) -> dict[str, int]:
    """The store reads; each reported batch is there exactly once; no batch is partial."""
    store = HistoryStore(root)
    samples = store.read_samples()
    per_batch = samples.groupby("memory_usage_bytes").size()
    partial = {int(b): int(n) for b, n in per_batch.items() if n != ROWS}
    assert partial == {}, f"batches with a wrong number of sample rows: {partial}"
    assert not samples.duplicated(["memory_usage_bytes", "container"]).any()
    present = {int(b) for b in per_batch.index}
    missing = reported - present
    assert missing == set(), f"reported batches missing: {sorted(missing)[:10]}"
    for name, df, col in [
        ("events", store.read_events(), "detail"),
        ("records", store.read_records(), "container"),
    ]:
        ids = Counter(int(v.lstrip("b")) for v in df[col])
        dupes = {b for b, n in ids.items() if n > 1}
        assert dupes == set(), f"{name}: batches stored twice: {sorted(dupes)[:10]}"
        assert reported - set(ids) == set(), f"{name}: reported batches missing"
    return {"batches": len(present), "sample_rows": len(samples)}


@pytest.mark.slow
def test_sigkill_writers_and_compactors_never_lose_or_duplicate(tmp_path):
    seed = int(os.environ.get("HISTORY_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    print(f"seed {seed}")
    root = tmp_path / "history"
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    compactor = tmp_path / "compactor.py"
    compactor.write_text(COMPACTOR)
    reported: set[int] = set()
    procs: list[subprocess.Popen[str]] = []
    try:
        # 1. 30 writers, each SIGKILLed 20–200 ms after it starts writing. The next one
        #    is started (imports, opens the store) while the current one writes.
        nxt = start(writer, str(root), "0")
        for k in range(30):
            proc, nxt = nxt, None
            procs.append(proc)
            go(proc)
            deadline = time.monotonic() + rng.uniform(0.02, 0.2)
            if k % 5 == 4:  # read while the writer writes
                HistoryStore(root).read_samples()
            if k < 29:
                nxt = start(writer, str(root), str((k + 1) * 10_000))
                procs.append(nxt)
            time.sleep(max(0.0, deadline - time.monotonic()))
            lines = kill(proc)
            reported |= {int(x.split()[1]) for x in lines if x.startswith("WROTE ")}
            if k % 10 == 9:
                check(root, reported)
        assert len(reported) >= 30, "the writers reported too few batches to test anything"

        # 2. Compactors racing a writer, both SIGKILLed 20–300 ms after they start.
        compactions = 0
        for k in range(8):
            w = start(writer, str(root), str((100 + k) * 10_000))
            c = start(compactor, str(root), "random")
            procs += [w, c]
            go(w)
            go(c)
            deadline = time.monotonic() + rng.uniform(0.02, 0.3)
            check(root, reported)  # while the compactor and the writer run
            time.sleep(max(0.0, deadline - time.monotonic()))
            compactions += sum(1 for x in kill(c) if x == "COMPACTED")
            reported |= {int(x.split()[1]) for x in kill(w) if x.startswith("WROTE ")}
            check(root, reported)
        print(f"{compactions} compactions completed before a kill")

        # 3. A full compaction cleans up whatever the kills left behind.
        store = HistoryStore(root)
        stats = store.compact(min_files=2, tmp_max_age_s=0)
        print(f"final compaction: {stats}")
        result = check(root, reported)
        print(f"{len(reported)} reported batches; store holds {result}")
        on_disk = sorted(
            str(p) for p in root.rglob("*.parquet") if not p.name.startswith(".")
        )
        live = sorted(p for t in ("samples", "events", "records") for p in store.files(t))
        assert on_disk == live, "replaced files left after a full compaction"
        assert not [p for p in root.rglob(".tmp-*")], "temp files left"
        assert len(live) == 3 * 3 * 4  # one file per table × app × day
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def fill(root: Path, batches: int) -> set[int]:
    store = HistoryStore(root, flush_interval_s=1e9)
    from prescale.app.core.sample import Event, EventKind, Sample

    for b in range(batches):
        ts = T0 + ((b // 2) % 2) * DAY + b
        app = f"app{b % 2}"
        store.append_events([Event(f"b{b}", ts, EventKind.RESTART, str(b), app)])
        store.append_records([{"kind": "decision", "ts_s": ts, "container": f"b{b}",
                               "app": app}])
        store.append_samples([
            Sample(f"c{i}", ts + i, memory_usage_bytes=float(b), app=app) for i in range(ROWS)
        ])
        store.flush()
    return set(range(batches))


def data_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*.parquet") if not p.name.startswith(".")}


@pytest.mark.parametrize("crash_at", ["before_rename", "delete_1", "delete_3", "delete_9"])
def test_compaction_killed_at_each_step_never_loses_or_duplicates(tmp_path, crash_at):
    root = tmp_path / "history"
    batches = fill(root, 24)  # 6 files in each of 2 apps × 2 days of each table
    compactor = tmp_path / "compactor.py"
    compactor.write_text(COMPACTOR)
    proc = start(compactor, str(root), crash_at)
    go(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and out.strip() == "CRASHING", (out, err)
    store = HistoryStore(root)
    live = {p for t in ("samples", "events", "records") for p in store.files(t)}
    on_disk = data_files(root)
    if crash_at == "before_rename":
        assert on_disk == live and len(on_disk) == 3 * 4 * 6
        assert len(list(root.rglob(".tmp-compact-*"))) == 1  # the unpublished compaction
    else:  # a compacted file is in place and some files it replaces are still on disk
        left = on_disk - live
        assert left and all("/part-" in p for p in left)
        assert any("/compact-" in p for p in live)
    check(root, batches)
    stats = store.compact(min_files=2, tmp_max_age_s=0)
    assert stats["leftovers_removed"] == len(on_disk - live)
    check(root, batches)
    assert data_files(root) == {p for t in ("samples", "events", "records")
                                for p in store.files(t)}
    assert len(data_files(root)) == 3 * 4 and not list(root.rglob(".tmp-*"))
