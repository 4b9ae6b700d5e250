"""Running the real `prescale up` in a test: start it, wait for ticks, stop it with
SIGTERM the way an operator would, and return what it said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[1]


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """`up` on ``data_dir`` with no cgroup roots (add ``PRESCALE_*`` in ``extra``)."""
    return {**os.environ, "PRESCALE_DATA_DIR": str(data_dir), "PRESCALE_CGROUP__ROOTS": "[]",
            "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra}


def run_up(data_dir: Path, env: dict[str, str], *, ticks: int = 1, mode: str = "auto",
           timeout_s: float = 120.0) -> tuple[int, str]:
    """Start `prescale up`, wait until ``status.json`` says ``ticks`` ticks, SIGTERM it;
    ``(exit code, stderr)``. Fails the test if it exits early or never gets there."""
    code, _, err = run_up_output(data_dir, env, "--mode", mode, ticks=ticks,
                                 timeout_s=timeout_s)
    return code, err


def run_up_output(data_dir: Path, env: dict[str, str], *args: str, ticks: int = 1,
                  timeout_s: float = 120.0) -> tuple[int, str, str]:
    """:func:`run_up` with the command line's own ``args`` after ``up`` (no ``--mode``
    unless given); ``(exit code, stdout, stderr)``."""
    proc = subprocess.Popen([PRESCALE, "up", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = data_dir / "status.json"
    try:
        deadline = time.monotonic() + timeout_s
        while not (status.exists() and json.loads(status.read_text() or "{}")
                   .get("tick", 0) >= ticks):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"fewer than {ticks} ticks in {timeout_s} s"
            time.sleep(0.25)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
