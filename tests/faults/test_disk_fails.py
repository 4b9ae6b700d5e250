"""The disk under data_dir fills up mid-run, for real (issue 15, item 4): a real tmpfs
holds data_dir (checkpoints, intent, status, thresholds, the history store) and a file
fills it to ENOSPC while `prescale up` protects the demo's leaker on real cgroups. (A
read-only remount is refused by the kernel while the loop holds files open for writing,
as it does: its run lock.)
The loop goes on degraded: the leaker is still scaled up before the kernel would kill
it, `prescale status` (from the status copy in RAM) says DEGRADED with the reason, and
when the filler is deleted the buffered records are written and the recovery is
logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from prescale.app.demo import _oom_kills, create_tree, remove_tree, start_workloads
from prescale.app.edges import cgroup_layout as lay
from prescale.app.settings import Settings
from prescale.app.store.decision_log import read_log
from prescale.app.store.history import HistoryStore
from tests.cgroup_support import v1_unavailable_reason

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    chunk = b"\0" * 2**20
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(chunk)
                fh.flush()
        except OSError as exc:
            assert exc.errno == 28, exc


def wait_for(what: str, check, timeout_s: float = 90.0, proc=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        assert proc is None or proc.poll() is None, f"prescale up exited waiting for {what}"
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def status(data_dir: Path, env) -> dict | None:
    p = subprocess.run([PRESCALE, "status", "--json"], env=env, capture_output=True,
                       text=True, cwd=REPO, timeout=60)
    return json.loads(p.stdout) if p.returncode == 0 else None


@pytest.mark.slow
@pytest.mark.skipif(v1_unavailable_reason() is not None, reason=str(v1_unavailable_reason()))
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_data_dir_degrades_and_still_protects_the_leaker(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mount("-t", "tmpfs", "-o", "size=256m", "tmpfs", str(data))
    tree = create_tree(f"ro-{uuid.uuid4().hex[:6]}")
    proc = None
    try:
        s = Settings(data_dir=data)
        start_workloads(tree, s)
        env = {**os.environ, "PRESCALE_DATA_DIR": str(data),
               "PRESCALE_CGROUP__ROOTS": json.dumps([str(r) for r in tree.parents.values()]),
               "PRESCALE_LOOP__INTERVAL_S": "0.5",
               "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        proc = subprocess.Popen([PRESCALE, "up", "--mode", "auto"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for("the first tick", lambda: (data / "status.json").exists(), proc=proc)
        leaker_mem = tree.child("memory", "leaker")
        start_limit = int((leaker_mem / lay.V1_MEMORY_LIMIT).read_text())
        fill(data / "filler")  # every write under data_dir now fails: ENOSPC
        t_ro = time.time()
        snap = wait_for("DEGRADED in prescale status",
                        lambda: (st := status(data, env)) and st.get("degraded") and st,
                        proc=proc)
        assert "No space left on device" in snap["degraded"]["reason"]
        # the leaker (4 MiB/s under 128 MiB) is scaled up although nothing can be written
        wait_for("a scale-up while degraded",
                 lambda: int((leaker_mem / lay.V1_MEMORY_LIMIT).read_text()) > start_limit,
                 timeout_s=60, proc=proc)
        time.sleep(5)
        assert _oom_kills(leaker_mem) == 0
        (data / "filler").unlink()  # the disk is back
        wait_for("the recovery", lambda: (st := status(data, env)) is not None
                 and st.get("degraded") is None and st["ts_s"] > t_ro, proc=proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "DEGRADED: " in err and "degraded mode over" in err
        store = HistoryStore(str(data / "history"), flush_interval_s=0.0)
        log = list(read_log(store))
        events = [r["event"] for r in log if r["kind"] == "event"]
        assert "degraded" in events and "degraded_over" in events
        applied_ro = [r for r in log if r["kind"] == "action" and r["result"] == "applied"
                      and r["container"] == "leaker" and r["ts_s"] >= t_ro - 1]
        assert applied_ro, "the scale-up made while degraded was written after recovery"
        assert _oom_kills(leaker_mem) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_tree(tree)
        subprocess.run(["umount", "-l", str(data)], capture_output=True, timeout=30)
