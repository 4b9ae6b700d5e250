"""The whole loop scales a Serve deployment out: real Serve, real load, real actors.

A CPU-bound deployment (one replica, ``num_cpus`` 0.1, which is also its app's CPU
maximum) is put under load. The Serve deployments source (one container per deployment,
sized per replica) feeds the monitor; the coordinator's engine predicts the CPU
overload, the guards escalate the capped resize to a ``SCALE_OUT`` (the container is
replicated), the coordinator routes it to the workload actuators actor
(:mod:`actors.workloads`, Serve actuator behind retries), and Serve runs two replicas —
while requests keep being answered.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from app.settings import Mode, Settings, load_settings

pytestmark = pytest.mark.slow
NS = "prescale-serve-loop"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(data_dir) -> Settings:
    d = load_settings().model_dump()
    d.update(mode=Mode.AUTO, data_dir=data_dir)
    d["loop"].update(interval_s=1.0, collect_timeout_s=5.0)
    d["cgroup"]["roots"] = []
    d["sources"].update(serve_deployments=True)
    d["ray"].update(namespace=NS)
    d["models"].update(enabled=False)
    d["policy"]["app_bounds"] = {"serve:busy": {"cpu_min_cores": 0.05, "cpu_max_cores": 0.1,
                                                "max_replicas": 2}}
    return Settings.model_validate(d)


class Load:
    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.ok = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with requests.Session() as s:
            while not self._stop.is_set():
                try:
                    r = s.get(self.url, timeout=30)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.errors.append(f"HTTP {r.status_code}")
                except Exception as exc:  # noqa: BLE001 - recorded, asserted
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)


def test_the_loop_scales_a_serve_deployment_out_ahead_of_its_cpu_overload(tmp_path):
    import ray
    from ray import serve

    from actors import names, runtime
    from actors.workloads import WorkloadActuatorActor
    from app.actuators.serve import ServeApp
    from app.store.decision_log import read_log
    from app.store.history import HistoryStore

    s = _settings(tmp_path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NS,
             log_to_driver=False)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})

        @serve.deployment
        class Busy:
            def __call__(self, request) -> str:
                t = time.thread_time()
                while time.thread_time() - t < 0.03:  # 30 ms of CPU per request
                    pass
                return "ok"

        busy = Busy.options(num_replicas=1, ray_actor_options={"num_cpus": 0.1},
                            max_ongoing_requests=4)
        workloads = WorkloadActuatorActor.options(name=names.WORKLOADS, namespace=NS).remote()
        managed = ray.get(workloads.manage_serve.remote(ServeApp(
            "busy", {"Busy": busy}, bind=lambda d: d["Busy"].bind(),
            managed=frozenset({"Busy"}), route_prefix="/busy")))
        assert managed == ["busy/Busy"]
        handles = runtime.start_actors(s, run_id="serve-loop")
        url = f"http://127.0.0.1:{port}/busy"
        assert requests.get(url, timeout=30).status_code == 200
        scaled = None
        with Load(url) as load:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and scaled is None:
                summary = ray.get(handles.coordinator.run_once.remote())
                if "applied" in summary["actions"]:
                    scaled = summary
                time.sleep(s.loop.interval_s)
            time.sleep(2)  # the load goes on over the two replicas
        assert scaled is not None, "the loop never acted on the overloaded deployment"
        log = list(read_log(HistoryStore(s.history_uri()), run_id="serve-loop"))
        [act] = [r for r in log if r["kind"] == "action" and r["result"] == "applied"]
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
        runtime.stop_actors(handles, s)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
