"""Cluster mode as users run it: a real ``ray start --head`` on loopback and
``ray job submit ... -- python -m prescale.actors.controller --config ...``.

The head is started with ``--block`` by this module and stopped by terminating that
process (``ray stop`` would stop *every* Ray on the host). The containers are
simulated (two per node); everything else is the real controller.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.prom_support import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
EXCLUDES = json.dumps({"excludes": [".venv", ".git", ".prescale", "*.parquet", "*.png"]})


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head")
    # its own short temp dir: the head's address file stays out of /tmp/ray, so no other
    # test's ray.init() joins this cluster (and socket paths stay under 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    port, dash = free_port(), free_port()
    # the job's `python` is looked up on the head's PATH: this interpreter's first (CI runs
    # the venv's pytest without activating the venv)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = (tmp / "head.log").open("w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", "--num-cpus=1", "--include-dashboard=true",
         "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = subprocess.run([RAY, "job", "list", "--address", url], env=env,
                               capture_output=True, text=True)
            if r.returncode == 0:
                break
            assert proc.poll() is None, (tmp / "head.log").read_text()[-2000:]
            time.sleep(1)
        else:
            pytest.fail("the Ray head's job server did not come up in 90 s")
        yield url, env, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _config(tmp: Path, namespace: str) -> Path:
    p = tmp / f"{namespace}.toml"
    p.write_text(f"""
mode = "auto"
data_dir = "{tmp / namespace}"
[loop]
interval_s = 0.5
[ray]
address = "auto"
namespace = "{namespace}"
detached = true
[sources]
simulated = 2
[models]
enabled = false
""")
    return p


def _submit(url, env, config: Path, *extra: str) -> str:
    r = subprocess.run(
        [RAY, "job", "submit", "--no-wait", "--address", url, "--working-dir", str(ROOT),
         "--runtime-env-json", EXCLUDES, "--", "python", "-m", "prescale.actors.controller",
         "--config", str(config), *extra],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return re.search(r"raysubmit_\w+", r.stdout + r.stderr).group(0)


def _status(url, env, job: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(url).get_job_status(job).value)


def _wait_status(url, env, job, want: set[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = _status(url, env, job)
        if st in want:
            return st
        time.sleep(1)
    return st


def _logs(url, env, job) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(url).get_job_logs(job)


def _alive_prescale_actors(url: str, namespace: str) -> list[str]:
    from ray.util.state import list_actors

    return sorted(a.name for a in list_actors(address=url, filters=[("state", "=", "ALIVE")],
                                              detail=True)
                  if a.ray_namespace == namespace and a.name)


def test_controller_runs_as_a_job_and_finishes_cleanly(head):
    url, env, tmp = head
    job = _submit(url, env, _config(tmp, "jobdur"), "--duration", "8")
    assert _wait_status(url, env, job, {"SUCCEEDED", "FAILED", "STOPPED"}, 150) == "SUCCEEDED", \
        _logs(url, env, job)[-3000:]
    logs = _logs(url, env, job)
    ticks = int(re.search(r"stopped cleanly after (\d+) ticks", logs).group(1))
    assert ticks >= 5
    status = json.loads((tmp / "jobdur" / "status.json").read_text())
    assert len(status["containers"]) == 2 and status["tick"] == ticks
    assert _alive_prescale_actors(url, "jobdur") == []  # detached, and still cleaned up


def test_ray_job_stop_stops_the_controller_cleanly(head):
    url, env, tmp = head
    job = _submit(url, env, _config(tmp, "jobstop"))
    assert _wait_status(url, env, job, {"RUNNING"}, 120) == "RUNNING"
    status_file = tmp / "jobstop" / "status.json"
    deadline = time.monotonic() + 90
    while not status_file.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert status_file.exists(), _logs(url, env, job)[-3000:]
    assert _alive_prescale_actors(url, "jobstop")  # pool, coordinator, a monitor
    r = subprocess.run([RAY, "job", "stop", "--address", url, job], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _wait_status(url, env, job, {"STOPPED", "SUCCEEDED", "FAILED"}, 60) == "STOPPED"
    assert "stopped cleanly" in _logs(url, env, job)
    assert _alive_prescale_actors(url, "jobstop") == []
