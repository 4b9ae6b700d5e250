"""Docker containers, for real: a private dockerd (tests/docker_support.py), busybox
containers with real kernel limits, the Docker source and actuator over the Engine API.

1. A container that leaks memory is resized by the loop before the kernel kills it
   (its ``oom_kill`` counter stays 0), while an unlabelled control with the same leak
   and the same limit is OOM-killed (the Engine's ``oom`` event, ``State.OOMKilled``).
2. A CPU-quota resize is read back from the container's cgroup and the Engine.
3. A container removed while watched: one error, then nothing (no error storm).
4. The daemon stopped: a clear error naming it, the other sources go on.
"""

from __future__ import annotations

import math
import time

import pytest

from prescale.app.actuators.docker import DockerActuator
from prescale.app.core.actions import ResultStatus, ScalingAction
from prescale.app.core.engine import EngineConfig
from prescale.app.core.sample import SourceBatch, Tier
from prescale.app.edges import cgroup_layout as lay
from prescale.app.loop.shard import Shard
from prescale.app.loop.tick import Ports, Tick
from prescale.app.node_monitor import Monitor
from prescale.app.settings import Settings
from prescale.app.telemetry.docker import DockerSource
from tests.docker_support import engine_fixtures, skip_reason
from tests.loop_ports import MemAllocator, MemCheckpoint, MemJournal, MemThresholds

MiB = 2**20
LABEL = {"prescale.enable": "true", "prescale.app": "leaky"}
# 4 MiB/s into a tmpfs (charged to the container's memory cgroup, never reclaimable)
LEAK = "while :; do dd if=/dev/zero bs=1M count=2 >> /data/f 2>/dev/null; sleep 0.5; done"

_why = skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or ""), pytest.mark.cgroup]

engine, _clean = engine_fixtures()


def _oom_kills(engine, cid: str) -> int:
    text = (engine.cgroup_dir(cid) / lay.V1_OOM_CONTROL).read_text()
    return int(lay.parse_oom_kills(text) or 0)


class _Static:
    """A second source that is not Docker (the loop keeps it when Docker fails)."""

    kind = "static"

    def __init__(self) -> None:
        from prescale.app.core.sample import Sample

        self.sample = lambda: Sample("static-1", time.time(), memory_usage_bytes=1.0 * MiB,
                                     memory_working_set_bytes=1.0 * MiB,
                                     memory_limit_bytes=64.0 * MiB)

    def poll(self) -> SourceBatch:
        return SourceBatch([self.sample()])

    def close(self) -> None:
        pass


class _MonitorTelemetry:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.shards: list[dict] = []

    def collect(self):
        d = self.monitor.collect()
        self.shards.append(d)
        return [Shard.from_dict(d)], {}

    def live_nodes(self):
        return {self.monitor.node_id}


class _MonitorActuation:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.results = []
        self.at_s: list[float] = []
        self.latency_s: list[float] = []

    def routes(self, actions, node_of):
        return {a.action_id: node_of.get(a.container, "") for a in actions}

    def apply(self, actions, routes, local):
        from dataclasses import replace

        t0 = time.perf_counter()
        todo = [replace(a, container=local.get(a.container, a.container)) for a in actions]
        results = self.monitor.apply(todo)
        if todo:
            self.latency_s.append((time.perf_counter() - t0) / len(todo))
        self.results += results
        self.at_s += [time.monotonic()] * len(results)
        return {r.action_id: r for r in results}


@pytest.mark.slow
def test_a_leaking_container_is_resized_before_the_kernel_kills_it(engine):
    """The loop with default settings (auto mode), ticking every second over the real
    monitor with only the Docker source: the labelled leaker's limit is raised ahead of
    the leak; the unlabelled control (same 40 MiB limit, same 4 MiB/s leak) is killed.
    A third leaker carries its own policy in labels (memory max 48 MiB, and a typo'd
    label): it is raised up to 48 MiB and no further, and the typo is reported once."""
    limit = 40 * MiB
    managed = engine.run("leak-managed", LEAK, labels=LABEL, mem_limit=limit, tmpfs_mib=256)
    control = engine.run("leak-control", LEAK, labels={"prescale.app": "leaky"},
                         mem_limit=limit, tmpfs_mib=256)
    capped = engine.run("leak-capped", LEAK, labels={**LABEL, "prescale.memory.max": "48Mi",
                                                    "prescale.memroy.min": "1Mi"},
                        mem_limit=limit, tmpfs_mib=256)
    settings = Settings(mode="auto", cgroup={"roots": []}, history={"enabled": False})
    source = DockerSource(engine.host)
    monitor = Monitor(settings, sources=[source])
    telemetry, actuation = _MonitorTelemetry(monitor), _MonitorActuation(monitor)
    ports = Ports(telemetry=telemetry, allocator=MemAllocator(), actuation=actuation,
                  journal=MemJournal(), checkpoint=MemCheckpoint(), thresholds=MemThresholds())
    tick = Tick(EngineConfig.from_settings(settings), ports, run_id="docker-leak", mode="auto",
                window_steps=settings.loop.window_steps)
    start, wall_start = time.monotonic(), time.time()
    control_killed_at = None
    while time.monotonic() - start < 40:
        t0 = time.monotonic()
        tick.run_once()
        if control_killed_at is None and _oom_kills(engine, control) > 0:
            control_killed_at = time.monotonic() - start
        usage = engine.api.stats(managed, stream=False, one_shot=True)["memory_stats"]["usage"]
        if control_killed_at is not None and usage > 2 * limit:
            break  # the managed one now holds twice what killed the control
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    elapsed = time.monotonic() - start

    applied = [r for r in actuation.results
               if r.container == "leak-managed" and r.status is ResultStatus.APPLIED]
    sizes = [(round(at - start, 1), r.old_limit / MiB, r.new_limit / MiB)
             for r, at in zip(actuation.results, actuation.at_s, strict=True) if r in applied]
    print(f"\ncontrol OOM-killed at {control_killed_at} s; managed usage {usage / MiB:.0f} MiB "
          f"after {elapsed:.1f} s; resizes (at s, old MiB, new MiB) {sizes}"
          f"; resize latency {[round(x * 1000) for x in actuation.latency_s]} ms")
    assert control_killed_at is not None, "the control was never OOM-killed"
    # the Engine saw it too: its oom event for the control (State.OOMKilled is only set
    # when the container exits; the kernel killed the dd in it, the shell goes on)
    ooms = list(engine.api.events(since=int(wall_start), until=f"{time.time():.9f}",
                                  decode=True, filters={"container": control, "event": "oom"}))
    assert ooms, "no oom event for the control"
    assert _oom_kills(engine, managed) == 0
    assert usage > limit  # it really leaked past the limit it started with
    assert applied and applied[0].old_limit == limit and applied[-1].new_limit > usage
    info = engine.api.inspect_container(managed)
    assert info["State"]["Running"] and not info["State"]["OOMKilled"]
    assert info["HostConfig"]["Memory"] == applied[-1].new_limit
    # the control is never acted on (no label): no action for it
    assert all(r.container != "leak-control" for r in actuation.results)
    # the labelled policy: raised, never above its own 48 MiB max; the typo said once
    capped_sizes = [r.new_limit for r in actuation.results
                    if r.container == "leak-capped" and r.status is ResultStatus.APPLIED]
    print(f"leak-capped limits set (MiB): {[x / MiB for x in capped_sizes]}; OOM kills "
          f"{_oom_kills(engine, capped)}")
    assert capped_sizes and max(capped_sizes) == 48 * MiB
    assert engine.api.inspect_container(capped)["HostConfig"]["Memory"] == 48 * MiB
    said = [d["errors"]["leak-capped"] for d in telemetry.shards
            if "leak-capped" in d["errors"]]
    assert said == ["docker container 'leak-capped': label prescale.memroy.min is not a "
                    "policy label: ignored (did you mean prescale.memory.min?)"]
    assert telemetry.shards[-1]["labels"]["leak-capped"]["prescale.memory.max"] == "48Mi"
    events = [e for d in telemetry.shards for e in d["events"]]
    assert not [e for e in events if e.container == "leak-managed"]
    assert "leak-control" not in {n for d in telemetry.shards for n in d["names"]}
    monitor.close()


def test_cpu_quota_resize_is_read_back(engine):
    cid = engine.run("cpu-one", "sleep 600", labels=LABEL, cpu_quota=50_000)
    source = DockerSource(engine.host)
    (s,) = source.poll().samples
    assert s.container == "cpu-one" and s.app == "leaky" and s.cpu_quota_cores == 0.5
    assert source.containers["cpu-one"].via == "cgroup"
    assert source.labels_of("cpu-one")["prescale.app"] == "leaky"
    act = DockerActuator(engine.host)
    a = ScalingAction("cpu-1", 0.0, "cpu-one", Tier.CPU, 0.5, 0.25, 0.9, 0.5, 10.0, 0.6, "test")
    t0 = time.perf_counter()
    r = act.apply(a)
    print(f"\ncpu resize: {(time.perf_counter() - t0) * 1000:.0f} ms; {r}")
    assert r.status is ResultStatus.APPLIED and r.old_limit == 0.5 and r.new_limit == 0.25
    assert act.apply(a) is r and act.acted == 1  # the same id: nothing done again
    quota_file = engine.cgroup_dir(cid, "cpu") / lay.V1_CPU_QUOTA
    assert lay.parse_int(quota_file.read_text()) == 25_000
    assert engine.api.inspect_container(cid)["HostConfig"]["CpuQuota"] == 25_000
    (s,) = source.poll().samples
    assert s.cpu_quota_cores == 0.25
    # the stats API path (a daemon whose cgroups are not visible) reads the same limit
    (s2,) = DockerSource(engine.host, use_cgroups=False).poll().samples
    assert s2.cpu_quota_cores == 0.25 and s2.cpu_usage_s_total >= 0
    # bad values: refused before anything is sent, nothing changed
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="new_limit"):
            act.apply(ScalingAction(f"bad-{bad}", 0.0, "cpu-one", Tier.CPU, 0.25, bad, 0.9,
                                    0.5, 10.0, 0.6, "test"))
    with pytest.raises(ValueError, match="minimum"):
        act.apply(ScalingAction("bad-mem", 0.0, "cpu-one", Tier.MEMORY, math.inf, 2 * MiB,
                                0.9, 0.5, 10.0, 0.6, "test"))
    assert engine.api.inspect_container(cid)["HostConfig"]["CpuQuota"] == 25_000
    assert engine.api.inspect_container(cid)["HostConfig"]["Memory"] == 0
    # an unlabelled container is never touched
    other = engine.run("not-mine", "sleep 600", cpu_quota=50_000)
    r = act.apply(ScalingAction("x-1", 0.0, "not-mine", Tier.CPU, 0.5, 0.25, 0.9, 0.5, 10.0,
                                0.6, "test"))
    assert r.status is ResultStatus.DENIED and "does not carry the label" in r.reason
    assert engine.api.inspect_container(other)["HostConfig"]["CpuQuota"] == 50_000


def test_a_container_removed_while_watched_is_reported_once(engine):
    engine.run("stays", "sleep 600", labels=LABEL, mem_limit=32 * MiB)
    gone = engine.run("goes", "sleep 600", labels=LABEL, mem_limit=32 * MiB)
    settings = Settings(cgroup={"roots": []}, history={"enabled": False})
    monitor = Monitor(settings, sources=[DockerSource(engine.host)])
    first = monitor.collect()
    assert first["names"] == ["goes", "stays"] and first["errors"] == {}
    engine.api.remove_container(gone, force=True)
    polls = [monitor.collect() for _ in range(5)]
    errors = [p["errors"] for p in polls]
    assert list(errors[0]) == ["goes"] and "is gone: removed" in errors[0]["goes"]
    assert all(e == {} for e in errors[1:]), errors  # once, no storm
    assert all(p["names"] == ["stays"] for p in polls[1:])
    # an action for the removed container fails plainly, changing nothing
    (r,) = monitor.apply([ScalingAction("g-1", 0.0, "goes", Tier.MEMORY, 32 * MiB, 64 * MiB,
                                        0.9, 0.5, 10.0, 0.6, "test")])
    assert r.status is ResultStatus.FAILED


def test_the_daemon_down_is_a_clear_error_and_the_other_sources_go_on(engine):
    """Runs last: it stops the module's daemon."""
    engine.run("before-stop", "sleep 600", labels=LABEL, mem_limit=32 * MiB)
    settings = Settings(cgroup={"roots": []}, history={"enabled": False})
    monitor = Monitor(settings, sources=[DockerSource(engine.host), _Static()])
    assert monitor.collect()["names"] == ["before-stop", "static-1"]
    engine.remove_all()
    engine.stop_daemon()
    for _ in range(3):
        d = monitor.collect()
        assert d["names"] == ["static-1"]
        err = d["errors"]["_source:docker"]
        assert engine.host in err and "not reachable" in err, err
    # the actuator says the same, without raising out of the monitor's apply
    (r,) = monitor.apply([ScalingAction("d-1", 0.0, "before-stop", Tier.MEMORY, 32 * MiB,
                                        64 * MiB, 0.9, 0.5, 10.0, 0.6, "test")])
    assert r.status is ResultStatus.FAILED and engine.host in r.reason, r.reason
