"""Corrupt state files never stop protection (issue 15, item 2), provoked for real:
garbage in the real files the live loop's own file ports read (coordinator.json,
inflight.json, thresholds.json, pool.json). Each is set aside (renamed beside itself,
kept for the operator), logged once as a ``state_quarantined`` event naming the file,
and rebuilt; the tick that finds it still scales up a container about to be OOM-killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prescale.app.core.engine import EngineConfig
from prescale.app.core.thresholds import ThresholdConfig
from prescale.app.loop.tick import QUARANTINED, Ports, Tick
from prescale.app.settings import Settings
from prescale.app.store.decision_log import DecisionLog, read_log
from prescale.app.store.history import HistoryStore
from prescale.app.store.loop_files import CHECKPOINT, INFLIGHT, FileCheckpoint, FileJournal
from prescale.app.store.thresholds_store import FILE as THRESHOLDS
from prescale.app.store.thresholds_store import ThresholdStore, load_book, set_threshold
from tests.loop_ports import (
    MemActuation,
    MemAllocator,
    MemTelemetry,
    leak_window,
    shard,
)
from tests.up_support import run_up, up_env

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
RUN = "r1"


def file_ports(data_dir: Path) -> tuple[Ports, HistoryStore]:
    """The live loop's file ports (journal, checkpoint, thresholds) over ``data_dir``;
    telemetry, allocator and actuation in memory (they are Ray's; not the point here)."""
    store = HistoryStore(str(data_dir / "history"), flush_interval_s=0.0)
    ports = Ports(telemetry=MemTelemetry(), allocator=MemAllocator(),
                  actuation=MemActuation(),
                  journal=FileJournal(data_dir, DecisionLog(store, RUN, "auto")),
                  checkpoint=FileCheckpoint(data_dir / CHECKPOINT),
                  thresholds=ThresholdStore(data_dir / THRESHOLDS, ThresholdConfig()))
    return ports, store


def tick(ports: Ports) -> Tick:
    s = Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                 policy={"cooldown_s": 0.0})
    return Tick(EngineConfig.from_settings(s), ports, run_id=RUN, mode="auto",
                window_steps=12, now=lambda: 0.0)


def set_aside(data_dir: Path, name: str) -> list[Path]:
    return sorted(data_dir.glob(f"{name}.corrupt-*"))


def test_corrupt_files_are_set_aside_logged_and_the_tick_still_protects(tmp_path):
    (tmp_path / CHECKPOINT).write_text('{"run_id": "r1", "tick": ')  # torn write
    (tmp_path / INFLIGHT).write_text(json.dumps({"run_id": RUN, "actions": "oops"}))
    (tmp_path / THRESHOLDS).write_bytes(os.urandom(64))
    ports, store = file_ports(tmp_path)
    t = tick(ports)  # reads the checkpoint: set aside, fresh state
    ports.telemetry.next = [shard(leak_window())]  # 1 MiB/step toward its limit
    summary = t.run_once()  # no exception
    assert summary["actions"] == ["applied"]  # the leaker still got its scale-up
    for name in (CHECKPOINT, INFLIGHT, THRESHOLDS):
        assert len(set_aside(tmp_path, name)) == 1, name
    assert len(summary["notices"]) == 3
    store.flush()
    events = [r for r in read_log(store, kinds={"event"}) if r["event"] == QUARANTINED]
    assert len(events) == 3
    for name in (CHECKPOINT, INFLIGHT, THRESHOLDS):
        (line,) = [e["reason"] for e in events if str(tmp_path / name) + ":" in e["reason"]]
        assert "moved to" in line and ".corrupt-" in line
    # rebuilt: the next tick reads what this one wrote, and logs nothing again
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0, t0=1_700_000_060.0))]
    assert tick(ports).run_once()["notices"] == []
    json.loads((tmp_path / CHECKPOINT).read_text())


def test_thresholds_corrupted_while_running_keep_the_last_good_book(tmp_path):
    ports, store = file_ports(tmp_path)
    set_threshold(tmp_path / THRESHOLDS, tier="memory", value=0.6, app="app")
    t = tick(ports)
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0))]
    assert t.run_once()["notices"] == []  # read the good book
    (tmp_path / THRESHOLDS).write_text("[1, 2")  # an editor's half-written save
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0, t0=1_700_000_060.0))]
    summary = t.run_once()
    (line,) = summary["notices"]
    assert "last good thresholds were written back" in line
    assert len(set_aside(tmp_path, THRESHOLDS)) == 1
    book = load_book(tmp_path / THRESHOLDS)  # the good one is back, the override kept
    assert book.lookup("memory", "app").value == pytest.approx(0.6)


@pytest.mark.slow
def test_prescale_up_on_four_corrupt_files_runs_and_says_which(tmp_path):
    """The live loop (real Ray actors) started on a data_dir whose four state files are
    garbage: every tick succeeds, each file is named once on stderr and in the log."""
    names = (CHECKPOINT, INFLIGHT, THRESHOLDS, "pool.json")
    for name in names:
        (tmp_path / name).write_text("{corrupt")
    env = up_env(tmp_path)
    code, err = run_up(tmp_path, env, ticks=3)
    assert code == 0, err
    assert "tick failed" not in err
    for name in names:
        assert err.count(f"warning: state set aside: {tmp_path / name}:") == 1, (name, err)
        assert len(set_aside(tmp_path, name)) == 1, name

    p = subprocess.run([PRESCALE, "events", "--kind", "event", "-o", "jsonl"], env=env,
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    logged = [json.loads(line) for line in p.stdout.splitlines()]
    assert sum(r["event"] == QUARANTINED for r in logged) == 4, p.stdout
