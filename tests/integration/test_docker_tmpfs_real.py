"""The disk tier of a Docker container's own ``--tmpfs``, for real: a private dockerd
(tests/docker_support.py), busybox containers started with ``--tmpfs /data:size=24m``
writing 1 MiB every 0.5 s, ``sources.volumes = {name: "docker:/data"}`` read through
``/proc/<pid>/root`` and grown with ``nsenter -t <pid> -m mount -o remount,size=…``.

1. The loop (real monitor with the Docker and volume sources, real tick, auto mode)
   grows the managed container's tmpfs before ENOSPC (sizes read back from inside the
   container with ``df``), while the control (same writer, its workload ``off``) gets
   ENOSPC.
2. A container restarted (another PID: a fresh tmpfs) is said once and read from its new
   process; a grow decided before the restart is refused; a stopped one is a clear error
   naming the container and the path, at the source and at the actuator, no crash.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from prescale.app.actuators.volume import VolumeActuator
from prescale.app.core.actions import ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.docker_engine import DockerPids
from prescale.app.settings import Settings
from prescale.app.telemetry.volumes import VolumeSource
from tests.docker_support import engine_fixtures, skip_reason
from tests.loop_ports import monitor_tick

MiB = 2**20
LABEL = {"prescale.enable": "true", "prescale.app": "writer"}
# 1 MiB every 0.5 s (2 MiB/s) into the tmpfs until it refuses; says how it ended
WRITER = ("i=0; while [ $i -lt 70 ]; do "
          "dd if=/dev/zero bs=1M count=1 >> /data/f 2>/tmp/err || "
          "{ echo ENOSPC $i; cat /tmp/err; exit 28; }; i=$((i+1)); sleep 0.5; done; echo done")

_why = skip_reason() or (None if shutil.which("nsenter") else
                         "nsenter is not installed (util-linux)")
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.cgroup]

engine, _clean = engine_fixtures()


def _df_kib(engine, cid: str) -> tuple[int, int]:
    """``(size, used)`` KiB of /data as ``df`` inside the container says."""
    ex = engine.api.exec_create(cid, ["df", "-k", "/data"])
    out = engine.api.exec_start(ex["Id"]).decode()
    fields = out.strip().splitlines()[-1].split()
    return int(fields[1]), int(fields[2])


def _pid(engine, cid: str) -> int:
    return int(engine.api.inspect_container(cid)["State"]["Pid"])


@pytest.mark.slow
def test_a_containers_tmpfs_is_grown_before_enospc_and_the_off_control_is_not(engine):
    managed = engine.run("disk-managed", WRITER, labels=LABEL, tmpfs_mib=24)
    control = engine.run("disk-control", WRITER, labels=LABEL, tmpfs_mib=24)
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False},
                        sources={"docker": True, "docker_host": engine.host,
                                 "volumes": {"disk-managed": "docker:/data",
                                             "disk-control": "docker:/data"}},
                        workloads=[{"name": "control", "container": "disk-control",
                                    "mode": "off"}])
    tick, actuation, journal = monitor_tick(settings, run_id="docker-disk")
    start = time.monotonic()
    control_full_at = None
    sizes_inside: list[tuple[float, int]] = []
    try:
        while time.monotonic() - start < 50:
            t0 = time.monotonic()
            tick.run_once()
            size_kib, _used = _df_kib(engine, managed)
            if not sizes_inside or sizes_inside[-1][1] != size_kib:
                sizes_inside.append((round(time.monotonic() - start, 1), size_kib))
            if control_full_at is None and not engine.api.inspect_container(
                    control)["State"]["Running"]:
                control_full_at = time.monotonic() - start
            if control_full_at is not None and time.monotonic() - start > control_full_at + 5:
                break
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        managed_size_kib, managed_used_kib = _df_kib(engine, managed)
        statvfs = os.statvfs(f"/proc/{_pid(engine, managed)}/root/data")
    finally:
        actuation.monitor.close()
    control_state = engine.api.inspect_container(control)["State"]
    control_out = engine.api.logs(control).decode()
    managed_state = engine.api.inspect_container(managed)["State"]
    managed_out = engine.api.logs(managed).decode()
    grown = [r for r in actuation.results
             if r.container == "disk-managed" and r.status is ResultStatus.APPLIED]
    print(f"\ncontrol: {control_out.strip()!r} (exit {control_state['ExitCode']}) at "
          f"{control_full_at and round(control_full_at, 1)} s; managed: "
          f"{managed_out.strip()!r}, running {managed_state['Running']}, df {managed_used_kib} "
          f"of {managed_size_kib} KiB; grown (MiB) "
          f"{[(r.old_limit / MiB, round(r.new_limit / MiB, 2)) for r in grown]}; "
          f"df size inside (s, KiB) {sizes_inside}; "
          f"after {time.monotonic() - start:.0f} s")
    assert control_full_at is not None, "the control never filled its tmpfs"
    assert control_state["ExitCode"] == 28 and "ENOSPC" in control_out
    assert "No space left on device" in control_out
    assert "ENOSPC" not in managed_out and managed_state["Running"]
    assert managed_used_kib * 1024 > 24 * MiB  # holds more than it started with
    assert grown and grown[0].old_limit == 24 * MiB
    # what the actuator read back is what the container itself sees
    assert grown[-1].new_limit == managed_size_kib * 1024 == statvfs.f_blocks * statvfs.f_frsize
    assert all("docker container 'disk-managed'" in r.reason for r in grown)
    # the control was never acted on; its decisions say why
    assert not [r for r in actuation.results if r.container == "disk-control"]
    held = [r for r in journal.records if r["kind"] == "decision"
            and r["container"] == "disk-control" and r["tier"] == "disk"]
    assert held and all("off mode" in r["reason"] or "cooldown" in r["reason"] for r in held)


def test_a_restarted_or_stopped_container_is_named_and_nothing_crashes(engine):
    cid = engine.run("disk-restart", "dd if=/dev/zero of=/data/f bs=1M count=4; sleep 600",
                     labels=LABEL, tmpfs_mib=16)
    pids = DockerPids(engine.host)
    source = VolumeSource({"disk-restart": "docker:/data"}, docker_pids=pids)
    actuator = VolumeActuator({"disk-restart": "docker:/data"}, docker_pids=pids)
    deadline = time.monotonic() + 10
    while True:
        batch = source.poll()
        (s,) = batch.samples
        if s.disk_used_bytes >= 4 * MiB or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert s.disk_limit_bytes == 16 * MiB and s.disk_used_bytes == 4 * MiB
    assert batch.errors == {}
    first_pid = _pid(engine, cid)

    def grow(action_id: str, to_mib: int) -> ScalingAction:
        return ScalingAction(action_id, 0.0, "disk-restart", Tier.DISK, 16 * MiB,
                             to_mib * MiB, 0.9, 0.5, 10.0, 0.6, "test")

    r = actuator.apply(grow("g-1", 20))
    assert r.status is ResultStatus.APPLIED and r.new_limit == 20 * MiB, r
    assert _df_kib(engine, cid)[0] == 20 * 1024
    # restarted: a new process, a fresh tmpfs back at 16 MiB; a grow decided before is
    # refused, the next poll says it once and reads the new one
    engine.api.restart(cid, timeout=1)
    new_pid = _pid(engine, cid)
    assert new_pid != first_pid
    r = actuator.apply(grow("g-2", 24))
    assert r.status is ResultStatus.FAILED, r
    assert (f"volume of 'disk-restart' at docker:/data: docker container 'disk-restart' "
            f"restarted since its volume was last read (pid {first_pid} → {new_pid})"
            in r.reason), r.reason
    batch = source.poll()
    assert batch.samples[0].disk_limit_bytes == 16 * MiB
    assert batch.errors == {"disk-restart": (
        f"volume of 'disk-restart' at docker:/data: docker container 'disk-restart' "
        f"restarted (pid {first_pid} → {new_pid}): its tmpfs is a new one, read from now on")}
    assert source.poll().errors == {}
    assert actuator.apply(grow("g-3", 24)).status is ResultStatus.APPLIED
    # stopped: an error naming the container and the path, at every poll; FAILED to grow
    engine.api.stop(cid, timeout=1)
    for _ in range(2):
        batch = source.poll()
        assert batch.samples == []
        err = batch.errors["disk-restart"]
        assert err.startswith("volume of 'disk-restart' at docker:/data: docker container "
                              "'disk-restart' is not running (exited"), err
    r = actuator.apply(grow("g-4", 32))
    assert r.status is ResultStatus.FAILED
    assert "volume of 'disk-restart' at docker:/data: docker container 'disk-restart' is " \
           "not running" in r.reason, r.reason
    # removed
    engine.api.remove_container(cid, force=True)
    assert "does not exist" in source.poll().errors["disk-restart"]
    source.close()
