"""The wall clock stepped back 600 s under a running monitor, for real (issue 15, item 3):
libfaketime (Debian's) shifts the process's CLOCK_REALTIME mid-run through its timestamp
file, the monotonic clock is left alone. The monitor's samples keep flowing (none
dropped as "timestamp_not_increasing"), its time never goes back, the step is reported
once as a clock_jump event; the control — the same monitor on the raw wall clock — drops
every sample after the step, which is how protection used to stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
STEPS_BEFORE, STEPS_AFTER = 5, 10

DRIVER = """
import json, sys, time
from prescale.app.node_monitor import Monitor
from prescale.app.settings import Settings
from prescale.app.telemetry.steady_clock import SteadyClock

class WallOnly:  # the control: what the monitor used before, the raw wall clock
    def __call__(self):
        return time.time()
    def take_jumps(self):
        return []

s = Settings(sources={"simulated": 2}, loop={"window_steps": 12}, history={"enabled": False})
m = Monitor(s, clock=None if sys.argv[1] == "steady" else WallOnly())
for i in range(int(sys.argv[2])):
    out = m.collect()
    print(json.dumps({"wall": time.time(), "now_s": out["now_s"],
                      "newest_ts": float(out["window"][:, -1, 0].max())
                                   if len(out["names"]) else None,
                      "dropped": out["dropped"],
                      "events": [[e.kind.value, e.detail] for e in out["events"]]}), flush=True)
    sys.stdin.readline()  # the test steps the clock between two collects
"""


def run(tmp_path: Path, clock: str) -> list[dict]:
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    env = {**os.environ, "LD_PRELOAD": str(LIB), "FAKETIME_TIMESTAMP_FILE": str(stamp),
           "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    n = STEPS_BEFORE + STEPS_AFTER
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, clock, str(n)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        for i in range(n):
            rows.append(json.loads(proc.stdout.readline()))
            if i == STEPS_BEFORE - 1:
                stamp.write_text("-600\n")  # the wall clock steps back 10 minutes
            time.sleep(0.3)
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rows


@pytest.mark.skipif(not LIB.exists(), reason="libfaketime is not installed "
                    "(scripts/install_system_deps.sh installs it)")
def test_a_wall_clock_step_back_does_not_stop_the_samples(tmp_path):
    rows = run(tmp_path, "steady")
    walls = [r["wall"] for r in rows]
    assert walls[STEPS_BEFORE] < walls[STEPS_BEFORE - 1] - 590  # the step really happened
    now = [r["now_s"] for r in rows]
    assert all(b > a for a, b in zip(now, now[1:], strict=False))  # never backwards
    assert all(r["newest_ts"] == pytest.approx(r["now_s"], abs=1.0) for r in rows)
    assert all(not r["dropped"].get("timestamp_not_increasing") for r in rows)
    jumps = [e for r in rows for e in r["events"] if e[0] == "clock_jump"]
    assert len(jumps) == 1 and "-600" in jumps[0][1]

    # the raw wall clock: after the step every sample is dropped (its timestamp is not
    # newer than the last, its CPU counter went negative), the window goes empty
    control = run(tmp_path, "wall")
    assert all(r["newest_ts"] is not None for r in control[:STEPS_BEFORE])
    assert all(r["newest_ts"] is None for r in control[STEPS_BEFORE:])
    assert sum(control[-1]["dropped"].values()) == 2 * STEPS_AFTER
