"""The demo pair against the real kernel: off → the leaker is OOM-killed; auto → nobody is.

Runs the installed `prescale` command exactly as a user does (``--json``), so these
also cover the CLI, embedded Ray, the actors, the cgroup source and actuator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cgroup_support import v1_unavailable_reason

REASON = v1_unavailable_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.cgroup,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]
PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
# Long enough for every mode's story: the leaker (4 MiB/s from its start, before Ray
# starts) reaches its 128 MiB limit about 30 s after it starts, well inside the workloads'
# start + Ray's start + this many seconds of the loop.
DURATION_S = "30"


def run_demo(mode: str, data_dir: Path) -> dict:
    env = {**os.environ, "PRESCALE_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [PRESCALE, "demo", "--mode", mode, "--duration", DURATION_S, "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert summary["mode"] == mode
    assert summary["ticks"] >= 0.75 * float(DURATION_S)  # ~1 tick a second, no stall
    return {c["name"]: c for c in summary["containers"]} | {"_summary": summary}


def test_off_mode_leaker_is_oom_killed_by_the_kernel(tmp_path):
    c = run_demo("off", tmp_path)
    assert c["leaker"]["oom_kills"] >= 1
    assert c["leaker"]["exit_code"] == -9  # SIGKILL from the OOM killer
    assert c["steady"]["oom_kills"] == 0
    for name in ("leaker", "steady", "cpuhog"):
        assert c[name]["actions"] == []
    assert c["leaker"]["final_limit_bytes"] == 128 * 2**20


def test_auto_mode_prevents_the_oom_kill(tmp_path):
    c = run_demo("auto", tmp_path)
    for name in ("leaker", "steady", "cpuhog"):
        assert c[name]["oom_kills"] == 0, name
    leaker = c["leaker"]
    assert leaker["scale_ups"] >= 1
    assert leaker["final_limit_bytes"] > 128 * 2**20
    # the first scale-up came before usage reached the old limit
    assert leaker["lead_times_s"] and leaker["lead_times_s"][0] > 0
    assert leaker["peak_usage_bytes"] > 128 * 2**20  # it really grew past the old limit
    assert c["steady"]["actions"] == []
    assert c["steady"]["final_limit_bytes"] == 128 * 2**20
    # the decision log holds the same actions, readable by `prescale events -o jsonl`
    run_id = c["_summary"]["run_id"]
    proc = subprocess.run(
        [PRESCALE, "events", "-o", "jsonl", "--run", run_id, "--kind", "action", "--last",
         "1000"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={**os.environ, "PRESCALE_DATA_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    logged = [json.loads(line) for line in proc.stdout.splitlines()]
    applied = [r for r in logged if r["container"] == "leaker" and r["result"] == "applied"]
    assert len(applied) == leaker["scale_ups"]
    assert all(r["new_limit"] > r["old_limit"] for r in applied)


def test_recommend_mode_logs_decisions_and_changes_nothing(tmp_path):
    c = run_demo("recommend", tmp_path)
    leaker = c["leaker"]
    assert leaker["decisions"] >= 1
    assert leaker["actions"] and all(a["result"] == "dry_run" for a in leaker["actions"])
    for name, limit in (("leaker", 128), ("steady", 128), ("cpuhog", 64)):
        assert c[name]["final_limit_bytes"] == limit * 2**20, name
        assert c[name]["final_cpu_quota_cores"] == 0.25, name
    assert leaker["oom_kills"] >= 1  # nothing was applied, so the kernel killed it
    # the first recommendation came before the kill (lead time = recommendation → kill)
    assert leaker["lead_times_s"] and leaker["lead_times_s"][0] > 0
