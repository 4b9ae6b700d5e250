"""Faults around the driver, provoked for real (issue 15, items 6 and 9):

- two loops on one data_dir: the second `prescale up` is refused, naming the holder's
  pid, and a holder killed with SIGKILL does not leave a lock behind;
- SIGTERM to `prescale up` (with its embedded Ray running and ticking) stops it cleanly,
  like Ctrl-C: exit 0, "stopped after N ticks", no traceback or crash dump.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from prescale.app.store.run_lock import LockHeld, RunLock
from tests.up_support import run_up

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from prescale.app.store.run_lock import RunLock
lock = RunLock(sys.argv[1], "holder under test")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def env_for(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "PRESCALE_DATA_DIR": str(data_dir), "PRESCALE_CGROUP__ROOTS": "[]",
            "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def test_second_loop_on_one_data_dir_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = subprocess.run([PRESCALE, "up"], capture_output=True, text=True, cwd=REPO,
                           env=env_for(tmp_path), timeout=120)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert f"in use by pid {holder.pid}" in p.stderr
        assert "holder under test" in p.stderr
        assert not (tmp_path / "status.json").exists()  # nothing started
        with pytest.raises(LockHeld, match=str(holder.pid)):
            RunLock(tmp_path, "this test").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead holder's lock: a new run takes it at once
    with RunLock(tmp_path, "after the kill") as lock:
        assert lock.holder()["pid"] == os.getpid()


@pytest.mark.slow
def test_sigterm_stops_up_cleanly_like_ctrl_c(tmp_path):
    code, err = run_up(tmp_path, env_for(tmp_path))
    assert code == 0, err
    assert "stopped after" in err
    assert "Traceback" not in err and "SIGTERM" not in err.replace("SIGTERM to stop", "")
    assert not (tmp_path / ".prescale.lock").read_text()  # released on the way out
