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
# Long enough for every mode's story: the leaker (4 MiB/s from its start, once Ray and
# the actors are up) reaches its 128 MiB limit about 30 s after it starts, inside this
# many seconds of the loop, with time for the loop to see it (the kill, or usage
# crossing the old limit: the lead time).
DURATION_S = "40"


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
    # while it ran, the live view (stderr, not a terminal: plain lines every 5 s) showed
    # every container several times, not one line and silence
    for name in ("leaker", "steady", "cpuhog"):
        shown = [line for line in proc.stderr.splitlines()
                 if line.startswith("[") and f"] {name} " in line]
        assert len(shown) >= 4 and "p_fail memory" in shown[-1], proc.stderr[-3000:]
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
    assert len(leaker["lead_times_s"]) <= leaker["scale_ups"]  # lead times of scale-ups only
    _few_decision_rows(c)
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
    # a dry run says what it would have set
    assert all(a["new_limit"] == a["requested_limit"] > a["old_limit"]
               for a in leaker["actions"])
    assert leaker["recommendations"] == len(leaker["actions"]) and leaker["scale_ups"] == 0
    _few_decision_rows(c)
    for name, limit in (("leaker", 128), ("steady", 128), ("cpuhog", 64)):
        assert c[name]["final_limit_bytes"] == limit * 2**20, name
        assert c[name]["final_cpu_quota_cores"] == 0.25, name
    assert leaker["oom_kills"] >= 1  # nothing was applied, so the kernel killed it
    # the first recommendation came before the kill (lead time = recommendation → kill);
    # no lead time is shown as a scale-up's
    assert leaker["recommendation_lead_times_s"]
    assert leaker["recommendation_lead_times_s"][0] > 0
    assert leaker["lead_times_s"] == []


def _few_decision_rows(c: dict) -> None:
    """A decision held back tick after tick (a cooldown, a bound) is logged once, and
    once more with its count when it ends, not every tick (before: 59 rows for 7
    actions in a 60 s auto demo); the rows still count every tick's decision."""
    rows = sum(c[n]["decisions"] for n in ("leaker", "steady", "cpuhog"))
    actions = sum(len(c[n]["actions"]) for n in ("leaker", "steady", "cpuhog"))
    assert rows <= 3 * actions + 3, {n: c[n]["decisions"] for n in ("leaker", "cpuhog")}
    assert sum(c[n]["decided_ticks"] for n in ("leaker", "steady", "cpuhog")) >= rows
