"""RayWorkersSource against a real Ray: real actors, real kills, real restarts.

One Ray instance for the module, with the dashboard (the state API is served by it;
``include_dashboard=False`` makes every ``ray.util.state`` call fail in Ray 2.60).
Ray's memory-monitor OOM kill is not provoked here (it acts on node memory; see the
captured shape in tests/unit/test_ray_source_mapping.py).
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid

import pytest

from prescale.app.core.sample import Event, EventKind, Sample
from prescale.app.telemetry.base import Source

MiB = 2**20


@pytest.fixture(scope="module")
def ray_node():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
             object_store_memory=150 * MiB, namespace=f"test-ray-source-{uuid.uuid4().hex[:8]}",
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def Hog(ray_node):
    ray = ray_node

    @ray.remote(num_cpus=0.25, max_task_retries=0)
    class Hog:
        def __init__(self):
            self.blocks: list[bytearray] = []

        def pid(self) -> int:
            return os.getpid()

        def grow(self, mib: int) -> int:
            for _ in range(mib):
                block = bytearray(MiB)
                block[::4096] = b"x" * len(block[::4096])  # touch every page
                self.blocks.append(block)
            return len(self.blocks)

        def burn(self, seconds: float) -> None:
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass

        def crash(self) -> None:
            os._exit(1)

        def exit(self, code: int) -> None:
            raise SystemExit(code)

        def quit(self) -> None:
            ray.actor.exit_actor()

    return Hog


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _poll_until(source, done, timeout_s: float = 15.0):
    """Polls until ``done(events_so_far, last_batch)``; returns all events and the last batch."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while True:
        batch = source.poll()
        events.extend(batch.events)
        if done(events, batch) or time.monotonic() > deadline:
            return events, batch
        time.sleep(0.2)


def _sample_of(batch, container: str) -> Sample:
    [s] = [s for s in batch.samples if s.container == container]
    return s


def test_construction_checks_node_and_state_api(ray_node):
    from prescale.app.telemetry.ray_workers import RaySourceError, RayWorkersSource

    with pytest.raises(ValueError, match="56 lowercase hex"):
        RayWorkersSource(node_id="not-a-node")
    with pytest.raises(RaySourceError, match="does not know node 0000"):
        RayWorkersSource(node_id="0" * 56)
    with pytest.raises(RaySourceError, match="include_dashboard=True"):
        RayWorkersSource(address="http://127.0.0.1:9", timeout_s=2)


def test_actor_is_a_container_whose_rss_grows(ray_node, Hog):
    from prescale.app.telemetry.ray_workers import RayWorkersSource

    ray = ray_node
    name = _uid("hog")
    hog = Hog.options(name=name, memory=200 * MiB).remote()
    anon = Hog.remote()
    pid = ray.get(hog.pid.remote())
    anon_id = anon._actor_id.hex()
    ray.get(anon.pid.remote())
    source = RayWorkersSource()
    assert isinstance(source, Source) and source.kind == "ray"
    try:
        before = _sample_of(source.poll(), name)
        assert before.app == "Hog"
        assert before.memory_limit_bytes == 200 * MiB
        assert before.cpu_quota_cores == 0.25
        assert before.memory_usage_bytes > before.memory_working_set_bytes > 10 * MiB
        assert math.isnan(before.oom_kills_total)
        anon_sample = _sample_of(source.poll(), f"Hog:{anon_id[:8]}")
        assert anon_sample.memory_limit_bytes == math.inf  # no memory resource asked

        ray.get(hog.grow.remote(120))
        ray.get(hog.burn.remote(0.3))
        after = _sample_of(source.poll(), name)
        grown = after.memory_usage_bytes - before.memory_usage_bytes
        assert 115 * MiB <= grown <= 140 * MiB, grown / MiB
        anon_grown = after.memory_working_set_bytes - before.memory_working_set_bytes
        assert 115 * MiB <= anon_grown <= 140 * MiB, anon_grown / MiB  # bytearrays are anon
        assert after.cpu_usage_s_total - before.cpu_usage_s_total >= 0.3
        assert after.ts_s > before.ts_s
        import psutil

        assert after.memory_usage_bytes == pytest.approx(psutil.Process(pid).memory_info().rss,
                                                         rel=0.05)
    finally:
        source.close()
        ray.kill(hog)
        ray.kill(anon)


def test_each_death_is_classified_and_reported_once(ray_node, Hog):
    from prescale.app.telemetry.ray_workers import RayWorkersSource

    ray = ray_node
    names = {k: _uid(k) for k in ("sigkill", "raykill", "exit2", "quit")}
    actors = {k: Hog.options(name=n).remote() for k, n in names.items()}
    pids = {k: ray.get(a.pid.remote()) for k, a in actors.items()}
    source = RayWorkersSource()
    try:
        first = source.poll()
        assert {s.container for s in first.samples} >= set(names.values())
        assert not [e for e in first.events if e.container in names.values()]

        os.kill(pids["sigkill"], signal.SIGKILL)
        ray.kill(actors["raykill"])
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actors["exit2"].exit.remote(2))
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actors["quit"].quit.remote())

        def all_dead(events, _batch):
            return {e.container for e in events} >= set(names.values())

        events, _ = _poll_until(source, all_dead)
        mine = {e.container: e for e in events if e.container in names.values()}
        assert len([e for e in events if e.container in names.values()]) == 4, events
        assert mine[names["sigkill"]].kind is EventKind.KILLED
        assert "SYSTEM_ERROR" in mine[names["sigkill"]].detail
        assert mine[names["raykill"]].kind is EventKind.SUCCESS
        assert mine[names["raykill"]].detail == "ray.kill"
        assert mine[names["exit2"]].kind is EventKind.EXIT_NONZERO
        assert "exit code 2" in mine[names["exit2"]].detail
        assert mine[names["quit"]].kind is EventKind.SUCCESS
        assert all(e.app == "Hog" for e in mine.values())

        again = source.poll()  # reported once
        assert not [e for e in again.events if e.container in names.values()]
        assert not {s.container for s in again.samples} & set(names.values())
        # a new source treats the deaths as history
        fresh = RayWorkersSource()
        assert not [e for e in fresh.poll().events if e.container in names.values()]
    finally:
        source.close()


def test_crash_with_max_restarts_gives_killed_then_restart(ray_node, Hog):
    from prescale.app.telemetry.ray_workers import RayWorkersSource

    ray = ray_node
    name = _uid("phoenix")
    actor = Hog.options(name=name, max_restarts=1).remote()
    old_pid = ray.get(actor.pid.remote())
    source = RayWorkersSource()
    try:
        source.poll()
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.crash.remote())

        def restarted(events, batch):
            return any(e.container == name and e.kind is EventKind.RESTART for e in events) and \
                any(s.container == name for s in batch.samples)

        events, batch = _poll_until(source, restarted)
        mine = [e for e in events if e.container == name]
        assert [e.kind for e in mine] == [EventKind.KILLED, EventKind.RESTART], mine
        assert f"pid {old_pid} SYSTEM_ERROR" in mine[0].detail
        assert mine[1].detail.startswith("restarted by Ray after killed: SYSTEM_ERROR")
        new_pid = ray.get(actor.pid.remote())
        assert new_pid != old_pid
        assert not [e for e in source.poll().events if e.container == name]
    finally:
        source.close()
        ray.kill(actor)


def test_running_task_is_a_container_and_its_kill_an_event(ray_node):
    from prescale.app.telemetry.ray_workers import STATE_API_ERROR_KEY, RayWorkersSource

    ray = ray_node

    @ray.remote(num_cpus=0.5, max_retries=0)
    def slow_task(mib: int) -> int:
        block = bytearray(mib * MiB)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(60)
        return len(block)

    ref = slow_task.remote(64)
    source = RayWorkersSource(include_tasks=True, task_grace_s=10.0)
    try:
        def running(_events, batch):
            return any(s.container.startswith("slow_task:") for s in batch.samples)

        _, batch = _poll_until(source, running)
        [sample] = [s for s in batch.samples if s.container.startswith("slow_task:")]
        assert sample.cpu_quota_cores == 0.5
        assert sample.memory_limit_bytes == math.inf
        assert sample.memory_usage_bytes >= 64 * MiB
        assert "pytest" in sample.app  # the driver job's entrypoint (this pytest run)
        assert STATE_API_ERROR_KEY not in batch.errors
        task_id = ref.task_id().hex()
        assert sample.container == f"slow_task:{task_id[:8]}"

        from ray.util.state import get_task

        pid = get_task(task_id, address=source.address).worker_pid
        os.kill(pid, signal.SIGKILL)

        def killed(events, _batch):
            return any(e.container == sample.container for e in events)

        events, _ = _poll_until(source, killed)
        mine = [e for e in events if e.container == sample.container]
        assert [e.kind for e in mine] == [EventKind.KILLED], mine
        assert mine[0].detail.startswith("WORKER_DIED")
        with pytest.raises(ray.exceptions.WorkerCrashedError):
            ray.get(ref)
    finally:
        source.close()
