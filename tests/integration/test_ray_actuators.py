"""The Ray actuators against a real local Ray (2 CPUs) and a real Serve over HTTP.

One Ray instance for the module (``num_cpus=2``, no dashboard, 150 MB object store);
Serve is started on a free 127.0.0.1 port by the Serve tests and shut down at the end.
Classes shipped to Ray are defined inside fixtures so that they are pickled by value
(the test modules are not importable in Ray's workers).

(a) A managed counter actor is resized through its placement group while a thread
    keeps calling it: no call fails and no increment is lost; on 2 CPUs a resize that
    cannot fit beside the old group goes through checkpoint → remove → restart, and one
    that cannot fit at all is refused or rolled back with the state intact.
(b) A Serve deployment serving HTTP is scaled out from 1 to 2 replicas by a
    ``SCALE_OUT`` action (as the coordinator does ahead of a predicted overload) while
    requests keep succeeding, then resized vertically (num_cpus 0.1 → 0.2).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest
import requests

from prescale.app.actuators.base import Actuator
from prescale.app.actuators.ray_pg import Bundle, ManagedActor, PlacementGroupActuator
from prescale.app.actuators.retry import RetryingActuator, RetryPolicy
from prescale.app.actuators.serve import ServeActuator, ServeApp
from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction, action_id_for
from prescale.app.core.sample import Tier

MiB = 2**20
_NOW_S = 1_700_000_000.0


def _action(container: str, tier: Tier, old: float, new: float, *, now_s: float = _NOW_S,
            kind: ActionKind = ActionKind.RESIZE, reason: str = "test") -> ScalingAction:
    return ScalingAction(
        action_id=action_id_for(container, tier, now_s), now_s=now_s, container=container,
        tier=tier, old_limit=old, new_limit=new, p_fail=0.9, threshold=0.5,
        time_to_limit_s=30.0, forecast=new, reason=reason, kind=kind,
    )


@pytest.fixture(scope="module")
def ray_node():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * MiB,
             namespace=f"test-ray-actuators-{uuid.uuid4().hex[:8]}", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def Counter(ray_node):
    class Counter:
        """A stateful workload: a counter that must survive every move."""

        def __init__(self, start: int = 0) -> None:
            self.n = start

        def inc(self) -> int:
            self.n += 1
            return self.n

        def value(self) -> int:
            return self.n

        def pid(self) -> int:
            return os.getpid()

        def get_state(self) -> dict:
            return {"n": self.n}

        def set_state(self, state: dict) -> None:
            self.n = state["n"]

    return Counter


class Caller:
    """Calls ``managed.call("inc")`` in a loop on a thread, recording every outcome."""

    def __init__(self, managed: ManagedActor, pause_s: float = 0.005) -> None:
        self.managed = managed
        self.pause_s = pause_s
        self.values: list[int] = []
        self.times: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                self.values.append(self.managed.call("inc", timeout_s=30))
                self.times.append(t)
            except Exception as exc:  # noqa: BLE001 - recorded, asserted empty
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(self.pause_s)

    def between(self, t0: float, t1: float) -> int:
        return sum(t0 <= t <= t1 for t in self.times)

    def __enter__(self) -> Caller:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=60)


def _wait_free_cpu(ray, expected: float, timeout_s: float = 10.0) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        if abs(free - expected) < 1e-3 or time.monotonic() > deadline:
            return free
        time.sleep(0.1)


# -- (a) placement groups


def test_managed_actor_is_resized_through_its_placement_group_and_keeps_serving(
        ray_node, Counter):
    ray = ray_node
    from ray.util.placement_group import placement_group_table

    m = ManagedActor("counter", Counter, Bundle(0.25, 64 * MiB)).start()
    try:
        assert m.call("inc") == 1
        pid0, pg0, handle0 = m.call("pid"), m.placement_group, m.handle
        assert _wait_free_cpu(ray, 1.75) == pytest.approx(1.75)
        actuator = PlacementGroupActuator([m])
        assert isinstance(actuator, Actuator)
        action = _action("counter", Tier.CPU, 0.25, 0.5)
        with Caller(m) as caller:
            t0 = time.monotonic()
            result = actuator.apply(action)
            t1 = time.monotonic()
        # what really changed, read back
        assert result.status is ResultStatus.APPLIED, result.reason
        assert (result.old_limit, result.new_limit) == (0.25, 0.5)
        report = actuator.reports[action.action_id]
        assert report.mode == "alongside"
        assert (report.old_bundle, report.new_bundle) == (Bundle(0.25, 64 * MiB),
                                                          Bundle(0.5, 64 * MiB))
        assert report.old_group_removed
        print(f"\nalongside 0.25 → 0.5 cores: calls held {report.unavailable_s * 1000:.1f} ms, "
              f"took {report.elapsed_s:.2f} s")
        assert "bundle {CPU: 0.25, memory: 67108864} → {CPU: 0.5, memory: 67108864}" \
            in result.reason
        assert placement_group_table(pg0)["state"] == "REMOVED"
        row = placement_group_table(m.placement_group)
        assert row["state"] == "CREATED"
        assert row["bundles"][0] == {"CPU": 0.5, "memory": float(64 * MiB)}
        assert _wait_free_cpu(ray, 1.5) == pytest.approx(1.5)
        # it kept serving: every call succeeded, some during the move, none lost
        assert caller.errors == []
        assert caller.between(t0, t1) > 0
        assert caller.values == list(range(2, 2 + len(caller.values)))
        assert m.call("value") == 1 + len(caller.values)
        assert m.call("pid") != pid0
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(handle0.inc.remote(), timeout=10)  # the old actor went with its group
        # the same action id again: the first result, no second move
        generation, pid1 = m.generation, m.call("pid")
        assert actuator.apply(action) is result
        assert actuator.acted == 1
        assert (m.generation, m.call("pid")) == (generation, pid1)
        # an actor it does not manage: refused, nothing touched
        denied = actuator.apply(_action("stranger", Tier.CPU, 0.25, 0.5))
        assert denied.status is ResultStatus.DENIED
        assert "'stranger' is not a managed actor (managed: counter)" in denied.reason
        assert m.generation == generation
    finally:
        m.stop()


def test_on_two_cpus_a_resize_without_room_checkpoints_removes_and_restarts(ray_node, Counter):
    ray = ray_node
    from ray.util.placement_group import placement_group_table

    m = ManagedActor("big", Counter, Bundle(1.0, 64 * MiB)).start()
    try:
        m.call("inc")
        actuator = PlacementGroupActuator([m], ready_timeout_s=1.0)

        # 1.0 → 1.5 cores: 1 CPU free, so the new group cannot sit beside the old one
        action = _action("big", Tier.CPU, 1.0, 1.5)
        pg0 = m.placement_group
        with Caller(m) as caller:
            result = actuator.apply(action)
        assert result.status is ResultStatus.APPLIED, result.reason
        assert (result.old_limit, result.new_limit) == (1.0, 1.5)
        report = actuator.reports[action.action_id]
        assert report.mode == "replace"
        assert report.notes == ("no room alongside (CPU: 1.5 needed, 1 free)",)
        assert 0 < report.unavailable_s < 10
        assert placement_group_table(pg0)["state"] == "REMOVED"
        assert placement_group_table(m.placement_group)["bundles"][0]["CPU"] == 1.5
        # calls waited through the unavailability instead of failing; the state survived
        assert caller.errors == []
        assert caller.values == list(range(2, 2 + len(caller.values)))
        assert m.call("value") == 1 + len(caller.values)
        print(f"\nreplace 1.0 → 1.5 cores: unavailable {report.unavailable_s:.2f} s, "
              f"took {report.elapsed_s:.2f} s")

        # without the up-front check: the new group stays pending, then the fallback
        waiting = PlacementGroupActuator([m], ready_timeout_s=1.0, precheck_room=False)
        action2 = _action("big", Tier.CPU, 1.5, 0.75, now_s=_NOW_S + 1)
        result2 = waiting.apply(action2)
        assert result2.status is ResultStatus.APPLIED, result2.reason
        assert result2.new_limit == 0.75
        report2 = waiting.reports[action2.action_id]
        assert report2.mode == "replace"
        assert report2.notes == ("new group stayed pending for 1 s",)
        assert report2.elapsed_s >= 1.0
        print(f"pending 1 s, then replace 1.5 → 0.75 cores: unavailable "
              f"{report2.unavailable_s:.2f} s, took {report2.elapsed_s:.2f} s")
        value = m.call("value")
        assert value == 1 + len(caller.values)  # the moves lost nothing

        # 3 cores can never fit on 2: refused up front, nothing changed
        pid, pg = m.call("pid"), m.placement_group
        result3 = actuator.apply(_action("big", Tier.CPU, 0.75, 3.0, now_s=_NOW_S + 2))
        assert result3.status is ResultStatus.FAILED
        assert result3.reason == (
            "ResizeError: big: bundle {CPU: 3, memory: 67108864} does not fit even after "
            "removing {CPU: 0.75, memory: 67108864} (CPU: 3 needed, 2 free); nothing changed")
        assert (result3.old_limit, result3.new_limit) == (0.75, 0.75)
        assert (m.call("pid"), m.placement_group) == (pid, pg)

        # ... and without the check: moved out, the new group stays pending, rolled back
        rolling_back = PlacementGroupActuator([m], ready_timeout_s=1.0, replace_timeout_s=1.0,
                                              precheck_room=False)
        result4 = rolling_back.apply(_action("big", Tier.CPU, 0.75, 3.0, now_s=_NOW_S + 3))
        assert result4.status is ResultStatus.FAILED
        assert "rolled back: restarted in {CPU: 0.75, memory: 67108864} from its checkpoint" \
            in result4.reason
        assert (result4.old_limit, result4.new_limit) == (0.75, 0.75)
        assert m.call("pid") != pid
        assert m.call("value") == value  # state intact
        print(f"rollback: {result4.reason}")
        assert placement_group_table(m.placement_group)["bundles"][0]["CPU"] == 0.75

        # memory is a tier too: 64 MiB → 96 MiB (fits alongside: 0.75 + 0.75 ≤ 2)
        result5 = actuator.apply(_action("big", Tier.MEMORY, 64 * MiB, 96 * MiB,
                                         now_s=_NOW_S + 4))
        assert result5.status is ResultStatus.APPLIED, result5.reason
        assert (result5.old_limit, result5.new_limit) == (64 * MiB, 96 * MiB)
        assert actuator.reports[result5.action_id].mode == "alongside"
        assert placement_group_table(m.placement_group)["bundles"][0] == {
            "CPU": 0.75, "memory": float(96 * MiB)}
        assert m.call("value") == value
    finally:
        m.stop()
    assert _wait_free_cpu(ray, 2.0) == pytest.approx(2.0)


# -- (b) Serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_url(ray_node):
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


class Load:
    """GETs ``url`` in a loop on a thread; records (time, status, replica) or the error."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = session.get(self.url, timeout=10)
                    if r.status_code == 200:
                        self.ok.append((t, r.json()["replica"]))
                    else:
                        self.errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except Exception as exc:  # noqa: BLE001 - recorded, asserted empty
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)

    def replicas_after(self, t0: float) -> set[str]:
        return {rep for t, rep in self.ok if t >= t0}

    def between(self, t0: float, t1: float) -> int:
        return sum(t0 <= t <= t1 for t, _ in self.ok)

    def __enter__(self) -> Load:
        self._thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _predicted_overload_action() -> ScalingAction:
    """What the real engine (features → trend predictor → policy → guards) decides for a
    replicated Serve deployment whose CPU use climbs toward its quota at the max bound."""
    import numpy as np

    from prescale.app.core.features import compute_features
    from prescale.app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide
    from prescale.app.core.predictor import TrendExhaustionPredictor
    from prescale.app.core.sample import Sample
    from prescale.app.settings import Settings

    s = Settings()
    rows, cpu_s = [], 0.0
    for i in range(21):
        cpu_s += 0.5 + 0.45 * i / 20  # cores used in that second
        rows.append(Sample("echo/Echo", _NOW_S - 20 + i, memory_usage_bytes=50e6,
                           memory_limit_bytes=1e9, cpu_usage_s_total=cpu_s,
                           cpu_quota_cores=s.policy.cpu_max_cores).row())
    p = s.predictor
    pred = TrendExhaustionPredictor(
        horizon_s=p.horizon_s, min_samples=p.min_samples,
        sigma_floor_fraction=p.sigma_floor_fraction, cpu_busy_fraction=p.cpu_busy_fraction,
    ).predict(compute_features(np.array([rows]), recent_steps=p.recent_steps))
    inp = PolicyInput(_NOW_S, ["echo/Echo"], pred, np.array([s.thresholds.p_fail]),
                      apps=["echo"], replicated=np.array([True]), replicas=np.array([1.0]))
    decisions, _ = decide(inp, PolicyConfig.from_settings(s.policy, s.cost), PolicyState())
    [action] = [d.action for d in decisions if d.action is not None]
    return action


def test_serve_deployment_is_scaled_out_ahead_of_a_predicted_overload(ray_node, serve_url):
    from ray import serve

    @serve.deployment
    class Echo:
        def __call__(self, request) -> dict:
            return {"replica": serve.get_replica_context().replica_id.unique_id}

    echo = Echo.options(num_replicas=1, ray_actor_options={"num_cpus": 0.1},
                        max_ongoing_requests=8)
    actuator = ServeActuator(
        [ServeApp("echo", {"Echo": echo}, bind=lambda d: d["Echo"].bind(),
                  managed=frozenset({"Echo"}), route_prefix="/echo")],
        ready_timeout_s=45.0,
    )
    t = time.perf_counter()
    actuator.deploy("echo")
    deploy_s = time.perf_counter() - t
    url = f"{serve_url}/echo"
    first = requests.get(url, timeout=10)
    assert first.status_code == 200
    replica0 = first.json()["replica"]
    assert actuator.read("echo", "Echo").replica_ids == (replica0,)

    # The engine predicts an overload of echo/Echo from its CPU trend (0.5 → 0.95 of its
    # 1-core quota in 20 s) and, the replica being at its max, escalates to a scale-out.
    overload = _predicted_overload_action()
    assert (overload.kind, overload.container, overload.old_limit, overload.new_limit) == (
        ActionKind.SCALE_OUT, "echo/Echo", 1, 2)
    assert overload.p_fail >= 0.5 and "scale out: replicas 1 → 2" in overload.reason
    scaler = RetryingActuator(actuator, RetryPolicy(max_attempts=2, max_total_s=60))
    with Load(url) as load:
        t0 = time.monotonic()
        result = scaler.apply(overload)
        t1 = time.monotonic()
        time.sleep(1.5)  # keep the load on the two replicas for a while
    assert result.status is ResultStatus.APPLIED, result.reason
    assert (result.old_limit, result.new_limit) == (1, 2)
    status = serve.status().applications["echo"].deployments["Echo"]
    assert str(status.status.value) == "HEALTHY"
    assert {str(getattr(k, "value", k)): v for k, v in status.replica_states.items()} == {
        "RUNNING": 2}
    # requests kept succeeding during and after, and both replicas (the old one kept) serve
    assert load.errors == []
    assert load.between(t0, t1) > 0
    assert len(load.replicas_after(t1)) == 2
    assert replica0 in load.replicas_after(t1)
    print(f"\nserve: deploy {deploy_s:.2f} s, scale-out 1 → 2 in {t1 - t0:.2f} s, "
          f"{len(load.ok)} requests OK, {load.between(t0, t1)} during the scale-out")

    # the same action again: the first result, no change
    t = time.monotonic()
    assert scaler.apply(overload) is result
    assert time.monotonic() - t < 0.5
    assert actuator.acted == 1
    assert actuator.read("echo", "Echo").running == 2

    # deployments the operator did not list are refused, nothing changes
    for container in ("echo/Other", "other/Echo", "Echo"):
        denied = actuator.apply(_action(container, Tier.CPU, 2, 3, kind=ActionKind.SCALE_OUT))
        assert denied.status is ResultStatus.DENIED, container
        assert "is not a deployment the operator listed (listed: echo/Echo)" in denied.reason
    assert actuator.read("echo", "Echo").running == 2

    # vertical: num_cpus 0.1 → 0.2 per replica by a rolling redeploy, still serving
    before = actuator.read("echo", "Echo")
    grow = _action("echo/Echo", Tier.CPU, 0.1, 0.2, now_s=_NOW_S + 1)
    with Load(url) as load:
        t0 = time.monotonic()
        resized = actuator.apply(grow)
        t1 = time.monotonic()
    assert resized.status is ResultStatus.APPLIED, resized.reason
    assert (resized.old_limit, resized.new_limit) == (0.1, 0.2)
    after = actuator.read("echo", "Echo")
    assert after.ray_actor_options["num_cpus"] == 0.2
    assert after.running == 2 and after.settled(2)
    assert not set(after.replica_ids) & set(before.replica_ids)  # replaced
    assert load.errors == []
    assert load.between(t0, t1) > 0
    print(f"serve: vertical num_cpus 0.1 → 0.2 in {t1 - t0:.2f} s, "
          f"{load.between(t0, t1)} requests OK during it")
    serve.delete("echo")
