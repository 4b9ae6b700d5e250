"""`prescale up` and its whole Ray killed outright (SIGKILL to the session) mid-tick, for
real (issue 15, item 5): the kill lands the moment the tick's intent (inflight.json)
appears, i.e. while its actions are being applied to real cgroups. The next run
reconciles that intent against the kernel, so every limit the kernel holds after the
kill is the starting one or one an action record says prescale set: no unrecorded
kernel write, on every try."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from prescale.app.demo import create_tree, remove_tree, start_workloads
from prescale.app.edges import cgroup_layout as lay
from prescale.app.settings import Settings
from prescale.app.store.decision_log import read_log
from prescale.app.store.history import HistoryStore
from tests.cgroup_support import v1_unavailable_reason

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
TRIES = 3


def env_for(data_dir: Path, roots: list[Path]) -> dict[str, str]:
    return {**os.environ, "PRESCALE_DATA_DIR": str(data_dir),
            "PRESCALE_CGROUP__ROOTS": json.dumps([str(r) for r in roots]),
            "PRESCALE_LOOP__INTERVAL_S": "0.5", "PRESCALE_POLICY__COOLDOWN_S": "0",
            "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process of its session (its embedded Ray)."""
    sid = os.getsid(proc.pid)
    victims = [p for p in psutil.process_iter() if _sid(p) == sid]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(victims, timeout=30)


def _sid(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except (ProcessLookupError, PermissionError):
        return None


def kernel_limits(tree) -> dict[tuple[str, str], float]:
    out = {}
    for name in ("leaker", "steady", "cpuhog"):
        mem = int((tree.child("memory", name) / lay.V1_MEMORY_LIMIT).read_text())
        cpu = tree.child("cpu", name)
        quota = int((cpu / lay.V1_CPU_QUOTA).read_text())
        period = int((cpu / lay.V1_CPU_PERIOD).read_text())
        out[(name, "memory")] = float(mem)
        out[(name, "cpu")] = quota / period
    return out


def explained(limit: float, candidates: list[float]) -> bool:
    return any(abs(limit - c) <= 0.01 * max(abs(c), 1e-9) for c in candidates)


@pytest.mark.slow
@pytest.mark.skipif(v1_unavailable_reason() is not None, reason=str(v1_unavailable_reason()))
def test_sigkill_mid_tick_leaves_no_unrecorded_kernel_write(tmp_path):
    tree = create_tree(f"kill-{uuid.uuid4().hex[:6]}")
    try:
        s = Settings(data_dir=tmp_path)
        start_workloads(tree, s)
        start = kernel_limits(tree)
        env = env_for(tmp_path, list(tree.parents.values()))
        inflight = tmp_path / "inflight.json"
        mid_tick = 0
        for _ in range(TRIES):
            proc = subprocess.Popen([PRESCALE, "up", "--mode", "auto"], cwd=REPO, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            deadline = time.monotonic() + 90
            while not inflight.exists() and time.monotonic() < deadline:
                assert proc.poll() is None, "prescale up exited on its own"
                time.sleep(0.002)
            mid_tick += inflight.exists()
            kill_session(proc)
            after_kill = kernel_limits(tree)
            # the next run: its first ticks reconcile the killed run's intent
            proc = subprocess.Popen([PRESCALE, "up", "--mode", "recommend"], cwd=REPO,
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
            status = tmp_path / "status.json"
            t0 = time.monotonic()
            while time.monotonic() - t0 < 90:
                if status.exists() and json.loads(status.read_text()).get("mode") == "recommend":
                    break
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert not inflight.exists()  # reconciled and cleared
            store = HistoryStore(str(tmp_path / "history"), flush_interval_s=0.0)
            written: dict[tuple[str, str], list[float]] = {}
            for r in read_log(store, kinds={"action"}):
                if r["result"] == "applied":
                    written.setdefault((r["container"], r["tier"]), []).append(r["new_limit"])
            for key, limit in after_kill.items():
                assert explained(limit, [start[key], *written.get(key, [])]), (
                    key, limit, start[key], written.get(key))
            status.unlink(missing_ok=True)
        assert mid_tick == TRIES  # every kill landed with an intent on disk
    finally:
        remove_tree(tree)
