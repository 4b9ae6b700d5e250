"""The whole loop acts on Ray workloads: real Serve, a real managed actor, real load.

1. Serve: the loop scales a deployment out.

A CPU-bound deployment (one replica, ``num_cpus`` 0.1, which is also its app's CPU
maximum) is put under load. The Serve deployments source (one container per deployment,
sized per replica) feeds the monitor; the coordinator's engine predicts the CPU
overload, the guards escalate the capped resize to a ``SCALE_OUT`` (the container is
replicated), the coordinator routes it to the workload actuators actor
(:mod:`actors.workloads`, Serve actuator behind retries), and Serve runs two replicas —
while requests keep being answered.

2. A managed actor (its own placement group) whose memory grows toward its bundle's
``memory``: the managed-actors source reports it, the engine predicts the exhaustion,
the coordinator routes the memory RESIZE to the workload actuators, and the
placement-group actuator moves the actor to a bigger bundle with its state.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from prescale.app.settings import Mode, Settings, load_settings
from tests.http_load import Load

pytestmark = pytest.mark.slow
NS = "prescale-serve-loop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MiB = 2**20


def _settings(data_dir) -> Settings:
    return load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.AUTO, data_dir=data_dir,
        loop={"interval_s": 1.0, "collect_timeout_s": 5.0}, cgroup={"roots": []},
        sources={"serve_deployments": True, "managed_actors": True},
        ray={"namespace": NS}, models={"enabled": False},
        policy={"app_bounds": {"serve:busy": {"cpu_min_cores": 0.05, "cpu_max_cores": 0.1,
                                              "max_replicas": 2}}})


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    import ray
    from ray import serve

    from prescale.actors import names, runtime
    from prescale.actors.workloads import WorkloadActuatorActor

    s = _settings(tmp_path_factory.mktemp("workloads"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NS,
             log_to_driver=False)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        workloads = WorkloadActuatorActor.options(name=names.WORKLOADS, namespace=NS).remote()
        handles = runtime.start_actors(s, run_id="workload-loop")
        yield s, handles, workloads, port
        runtime.stop_actors(handles, s)
        ray.get(workloads.shutdown.remote())
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _log(s):
    from prescale.app.store.decision_log import read_log
    from prescale.app.store.history import HistoryStore

    return list(read_log(HistoryStore(s.history_uri()), run_id="workload-loop"))


def _run_until_applied(s, handles, container: str, tier: str, timeout_s: float = 90.0):
    """Ticks until an action on ``container``'s ``tier`` is applied.

    Returns the tick's summary and the applied actions of that tier. Actions on the
    other tiers may come first or alongside (a Ray worker's start-up burns CPU against
    a 0.1-core bundle, which a loaded CI machine can stretch over several ticks); they
    are left to the actuator, which changes one tier and keeps the other.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary = ray.get(handles.coordinator.run_once.remote())
        applied = [r for r in _log(s) if r["kind"] == "action" and r["result"] == "applied"
                   and r["container"] == container and r["tier"] == tier]
        if applied:
            return summary, applied
        time.sleep(s.loop.interval_s)
    return None, []


def test_the_loop_scales_a_serve_deployment_out_ahead_of_its_cpu_overload(loop):
    import ray
    from ray import serve

    from prescale.app.actuators.serve import ServeApp

    s, handles, workloads, port = loop
    @serve.deployment
    class Busy:
        def __call__(self, request) -> str:
            t = time.thread_time()
            while time.thread_time() - t < 0.03:  # 30 ms of CPU per request
                pass
            return "ok"

    busy = Busy.options(num_replicas=1, ray_actor_options={"num_cpus": 0.1},
                        max_ongoing_requests=4)
    managed = ray.get(workloads.manage_serve.remote(ServeApp(
        "busy", {"Busy": busy}, bind=lambda d: d["Busy"].bind(),
        managed=frozenset({"Busy"}), route_prefix="/busy")))
    assert managed == ["busy/Busy"]
    url = f"http://127.0.0.1:{port}/busy"
    assert requests.get(url, timeout=30).status_code == 200
    with Load(url) as load:
        scaled, applied = _run_until_applied(s, handles, "busy/Busy", "cpu")
        time.sleep(2)  # the load goes on over the two replicas
    assert scaled is not None, "the loop never acted on the overloaded deployment"
    [act] = applied
    assert (act["container"], act["action_kind"], act["old_limit"], act["new_limit"]) == (
        "busy/Busy", "scale_out", 1, 2), act
    assert act["tier"] == "cpu" and act["p_fail"] >= act["threshold"]
    assert "scale out" in act["reason"]
    status = serve.status().applications["busy"].deployments["Busy"]
    running = {str(getattr(k, "value", k)): v for k, v in status.replica_states.items()}
    assert running == {"RUNNING": 2}
    assert load.ok > 0 and load.errors == [], load.errors[:5]
    print(f"\nserve loop: scaled out at tick {scaled['tick']} "
          f"(p_fail {act['p_fail']:.2f} ≥ {act['threshold']:.2f}); {load.ok} requests OK")


def test_the_loop_moves_a_growing_managed_actor_to_a_bigger_bundle_with_its_state(loop):
    import ray

    from prescale.app.actuators.ray_pg import Bundle

    s, handles, workloads, _ = loop

    class Leaky:
        """Grows 8 MiB/s (touched pages) up to 400 MiB; its state is the chunk count."""

        def __init__(self) -> None:

            self.chunks: list[bytes] = []
            self.calls = 0
            self._lock = threading.Lock()
            threading.Thread(target=self._grow, daemon=True).start()

        def _grow(self) -> None:
            while True:
                with self._lock:
                    if len(self.chunks) < 50:
                        self.chunks.append(b"\x01" * (8 * 2**20))
                time.sleep(1.0)

        def ping(self) -> int:
            self.calls += 1
            return self.calls

        def get_state(self) -> dict:
            with self._lock:
                return {"chunks": len(self.chunks), "calls": self.calls}

        def set_state(self, state: dict) -> None:
            with self._lock:
                self.chunks = [b"\x01" * (8 * 2**20) for _ in range(state["chunks"])]
                self.calls = state["calls"]

    limit = 256 * MiB
    ray.get(workloads.manage_actor.remote("leaky", Leaky, Bundle(0.1, limit)))
    before = ray.get(workloads.call.remote("leaky", "ping"))
    summary, applied = _run_until_applied(s, handles, "leaky", "memory")
    assert summary is not None, "the loop never resized the growing managed actor"
    [act] = applied
    assert (act["action_kind"], act["tier"], act["old_limit"]) == ("resize", "memory", limit)
    assert act["new_limit"] > limit and act["p_fail"] >= act["threshold"]
    assert "moved" in act["reason"] and "old group removed" in act["reason"], act["reason"]
    [d] = ray.get(workloads.describe.remote())[-1:]
    assert d["name"] == "leaky" and d["memory_bytes"] == int(act["new_limit"])
    after = ray.get(workloads.call.remote("leaky", "ping"))
    assert after > before  # the state moved with it: the call counter went on
    print(f"\nmanaged actor: memory bundle {limit / MiB:.0f} → {act['new_limit'] / MiB:.0f} "
          f"MiB at tick {summary['tick']} (p_fail {act['p_fail']:.2f}); calls {before} → {after}")
