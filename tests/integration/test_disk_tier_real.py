"""The disk tier end to end, for real: two writers fill two size-limited tmpfs volumes at
the same rate; the loop (the real monitor with the volume source, the real tick, auto
mode) grows the managed one live before it is full, and the control, whose workload is
``off``, gets ENOSPC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from prescale.app.core.actions import ResultStatus
from prescale.app.edges.tmpfs import volume_usage
from prescale.app.settings import Settings
from tests.loop_ports import monitor_tick

MiB = 2**20
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None,
    reason="needs root and mount(8) to mount a tmpfs")

# writes 1 MiB every 0.5 s (2 MiB/s) until the volume refuses; prints how it ended
WRITER = """
import errno, sys, time
path, chunk = sys.argv[1], b"x" * (1 << 20)
with open(path, "ab", buffering=0) as f:
    for i in range(int(sys.argv[2])):
        try:
            f.write(chunk)
        except OSError as exc:
            print("ENOSPC" if exc.errno == errno.ENOSPC else f"error {exc}", i, flush=True)
            sys.exit(28)
        time.sleep(0.5)
print("done", flush=True)
"""


@pytest.fixture
def volumes(tmp_path):
    made = []
    for name in ("managed", "control"):
        d = tmp_path / name
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(d)], check=True)
        made.append(d)
    yield {"disk-managed": str(made[0]), "disk-control": str(made[1])}
    for d in made:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_filling_volume_is_grown_before_enospc_and_the_off_control_is_not(volumes):
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"volumes": volumes},
                        workloads=[{"name": "control", "container": "disk-control",
                                    "mode": "off"}])
    tick, actuation, journal = monitor_tick(settings, run_id="disk")
    writers = {name: subprocess.Popen([sys.executable, "-c", WRITER, f"{path}/f", "60"],
                                      stdout=subprocess.PIPE, text=True)
               for name, path in volumes.items()}
    start = time.monotonic()
    try:
        while time.monotonic() - start < 45 and writers["disk-control"].poll() is None:
            t0 = time.monotonic()
            tick.run_once()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        for _ in range(5):  # a few ticks more for the managed writer, still writing
            tick.run_once()
            time.sleep(1.0)
        managed_used, managed_size = volume_usage(volumes["disk-managed"])
    finally:
        for p in writers.values():
            p.kill()
    control_out = writers["disk-control"].communicate()[0]
    managed_out = writers["disk-managed"].communicate()[0]
    grown = [r for r in actuation.results
             if r.container == "disk-managed" and r.status is ResultStatus.APPLIED]
    events = [r for r in journal.records if r["kind"] == "event"
              and r.get("container") == "disk-control"]
    print(f"\ncontrol: {control_out.strip()!r} after {time.monotonic() - start:.0f} s; "
          f"managed: {managed_out.strip()!r}, {managed_used / MiB:.0f} of "
          f"{managed_size / MiB:.0f} MiB; grown (MiB) "
          f"{[(r.old_limit / MiB, r.new_limit / MiB) for r in grown]}; control events "
          f"{[e.get('event') or e.get('detail') for e in events]}")
    assert control_out.startswith("ENOSPC")  # the off control filled its 24 MiB
    assert "ENOSPC" not in managed_out  # the managed writer never got ENOSPC
    assert managed_used > 24 * MiB  # it holds more than the size it started with
    assert grown and grown[0].old_limit == 24 * MiB and grown[-1].new_limit == managed_size
    decisions = [r for r in journal.records if r["kind"] == "decision"
                 and r["container"] == "disk-managed" and r["tier"] == "disk"]
    assert decisions and "MiB" in decisions[0]["reason"]
    # the control was never acted on: its decisions say why
    assert not [r for r in actuation.results if r.container == "disk-control"]
    held = [r for r in journal.records if r["kind"] == "decision"
            and r["container"] == "disk-control" and r["tier"] == "disk"]
    assert held and "workload control is in off mode: disk 24.0 MiB → 48.0 MiB not applied" in (
        held[0]["reason"])
    assert all("off mode" in r["reason"] or "blocked: in cooldown" in r["reason"] for r in held)
