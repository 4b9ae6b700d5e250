"""A corrupt Parquet file in the history store (bit rot, a truncated copy, an operator's
mistake) is passed over by reads and compaction, named, and left in place (issue 15,
item 2): `prescale events` and `prescale history` still show every readable row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prescale.app.core.sample import Sample
from prescale.app.loop import records as rec
from prescale.app.store.decision_log import DecisionLog
from prescale.app.store.history import HistoryStore

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000.0


def write_history(root: Path) -> HistoryStore:
    """Five record files and five sample files of app "web" (one flush each)."""
    store = HistoryStore(str(root), flush_interval_s=0.0)
    log = DecisionLog(store, "r1", "auto")
    for i in range(5):
        log.append([rec.to_dict(rec.EventRecord(T0 + i, "c", "web", "oom_kill", f"n{i}"))])
        store.append_samples([Sample(container="c", app="web", ts_s=T0 + i,
                                     memory_usage_bytes=float(i))])
        store.flush()
    return store


def corrupt_one(root: Path, table: str) -> Path:
    (victim,) = sorted(root.glob(f"{table}/**/part-*.parquet"))[:1]
    victim.write_bytes(os.urandom(200))
    return victim


def test_events_and_history_skip_a_corrupt_file_and_name_it(tmp_path):
    write_history(tmp_path / "history")
    bad_rec = corrupt_one(tmp_path / "history", "records")
    bad_smp = corrupt_one(tmp_path / "history", "samples")
    env = {**os.environ, "PRESCALE_DATA_DIR": str(tmp_path)}
    p = subprocess.run([PRESCALE, "events", "-o", "jsonl"], capture_output=True, text=True,
                       cwd=REPO, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 4  # the four readable records
    assert f"skipped unreadable history file {bad_rec}" in " ".join(p.stderr.split())
    p = subprocess.run([PRESCALE, "history", "--app", "web", "-o", "jsonl"], capture_output=True,
                       text=True, cwd=REPO, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert sum(r["type"] == "sample" for r in rows) == 4
    assert str(bad_smp) in " ".join(p.stderr.split())


def test_compaction_passes_over_a_corrupt_file_and_leaves_it(tmp_path):
    store = write_history(tmp_path)
    bad = corrupt_one(tmp_path, "records")
    stats = store.compact(min_files=2)
    assert stats["files_merged"] == 9  # 5 samples + 4 records files: the corrupt one kept
    assert bad.exists() and str(bad) in store.unreadable
    assert len(store.read_records()) == 4
