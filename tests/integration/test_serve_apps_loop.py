"""A Serve application the user deployed with `serve deploy` is scaled out by the loop.

Real Ray (with its dashboard), real Serve, real HTTP, the real `serve deploy` CLI. Two
applications from one config file (tests/serve_fixture_app.py): ``busy`` is opted in
(``sources.serve_apps = ["busy"]``), ``other`` is not. Both are put under load. The loop
is started as ``prescale up`` starts it (:func:`actors.runtime.start_actors`, which also
starts the workload actuators because an app is opted in); the Serve source feeds the
monitor with the opted-in deployment, the engine predicts the CPU overload of its one
replica (capped at 0.1 cores by the app bounds), the guards escalate to a ``SCALE_OUT``,
and the Serve-config actuator changes ``num_replicas`` in the application's deployed
config and PUTs it back through the dashboard's REST API. Checked: the new
``num_replicas`` in ``deployed_app_config`` with ``import_path`` and ``route_prefix``
unchanged, the first replica still running (a light-weight update, not a redeploy),
every request answered (failures counted), and ``other``'s config and replicas untouched.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prescale.app.settings import Mode, Settings, load_settings
from prescale.app.store import jsonfile
from tests.http_load import Load
from tests.prom_support import free_port

pytestmark = pytest.mark.slow
NS = "prescale-serve-apps"
REPO = Path(__file__).resolve().parents[2]


def _settings(data_dir) -> Settings:
    return load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.AUTO, data_dir=data_dir,
        loop={"interval_s": 1.0, "collect_timeout_s": 5.0}, cgroup={"roots": []},
        sources={"serve_apps": ["busy", "bsuy"]},  # bsuy: a typo, said in the status
        ray={"namespace": NS}, models={"enabled": False},
        policy={"app_bounds": {"serve:busy": {"cpu_min_cores": 0.05, "cpu_max_cores": 0.1,
                                              "max_replicas": 2}}})


CONFIG = """\
proxy_location: HeadOnly
http_options:
  host: 127.0.0.1
  port: {port}
applications:
  - name: busy
    route_prefix: /busy
    import_path: tests.serve_fixture_app:busy
    deployments:
      - name: Busy
        num_replicas: 1
        max_ongoing_requests: 4
        ray_actor_options: {{num_cpus: 0.1}}
  - name: other
    route_prefix: /other
    import_path: tests.serve_fixture_app:other
    deployments:
      - name: Other
        num_replicas: 1
        max_ongoing_requests: 4
        ray_actor_options: {{num_cpus: 0.1}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import ray

    from prescale.app.edges.serve_rest import ServeRestClient

    tmp = tmp_path_factory.mktemp("serve-apps")
    dash_port, http_port = free_port(), free_port()
    # the replicas import tests.serve_fixture_app: workers inherit the raylet's environment
    old_pp = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old_pp) if p)
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=dash_port, namespace=NS, log_to_driver=False)
    url = f"http://127.0.0.1:{dash_port}"
    try:
        config = tmp / "serve.yaml"
        config.write_text(CONFIG.format(port=http_port))
        t0 = time.monotonic()
        # the `serve` CLI as a user runs it
        deploy = subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy",
                                 str(config), "--address", url],
                                capture_output=True, text=True, timeout=120)
        assert deploy.returncode == 0, deploy.stderr[-2000:]
        api = ServeRestClient(url)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            apps = api.details().get("applications") or {}
            if {"busy", "other"} <= set(apps) and all(
                    apps[a]["status"] == "RUNNING" for a in ("busy", "other")):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the applications did not start: {api.details().get('applications')}")
        print(f"\nserve deploy → both applications RUNNING in {time.monotonic() - t0:.1f} s")
        yield tmp, api, http_port
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()
            if old_pp is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_pp


def _log(s):
    from prescale.app.store.decision_log import read_log
    from prescale.app.store.history import HistoryStore

    return list(read_log(HistoryStore(s.history_uri()), run_id="serve-apps"))


def _replica_ids(details, app: str, dep: str) -> dict[str, str]:
    return {r["replica_id"]: r["state"]
            for r in details["applications"][app]["deployments"][dep]["replicas"]}


def test_a_serve_deployed_app_is_scaled_out_through_its_config_and_the_other_untouched(
        cluster):
    import ray

    from prescale.actors import runtime

    tmp, api, http_port = cluster
    s = _settings(tmp / "data")
    before = api.details()
    busy_cfg = copy.deepcopy(before["applications"]["busy"]["deployed_app_config"])
    other_cfg = copy.deepcopy(before["applications"]["other"]["deployed_app_config"])
    other_replicas = _replica_ids(before, "other", "Other")
    [first_busy] = _replica_ids(before, "busy", "Busy")
    handles = runtime.start_actors(s, run_id="serve-apps")
    try:
        assert handles.workloads is not None and handles.owns_workloads
        kinds = ray.get(handles.workloads.names.remote())
        assert kinds == {"busy/Busy": "serve-config"}, kinds  # other is not opted in
        busy_url = f"http://127.0.0.1:{http_port}/busy"
        other_url = f"http://127.0.0.1:{http_port}/other"
        with Load(busy_url, threads=3) as load, Load(other_url, threads=1) as other_load:
            t0 = time.monotonic()
            applied, ticks = [], 0
            while time.monotonic() - t0 < 60 and not applied:
                ray.get(handles.coordinator.run_once.remote())
                ticks += 1
                applied = [r for r in _log(s) if r["kind"] == "action"
                           and r["result"] == "applied" and r["container"] == "busy/Busy"
                           and r["action_kind"] == "scale_out"]
                time.sleep(s.loop.interval_s)
            took_s = time.monotonic() - t0
            time.sleep(3)  # the load goes on over the two replicas
        assert applied, f"the loop never scaled busy/Busy out in {ticks} ticks"
        [act] = applied
        assert (act["old_limit"], act["new_limit"]) == (1, 2), act
        assert act["p_fail"] >= act["threshold"] and "serve deploy" in act["reason"], act
        after = api.details()
        busy_now = after["applications"]["busy"]
        cfg = busy_now["deployed_app_config"]
        assert cfg["import_path"] == busy_cfg["import_path"] == "tests.serve_fixture_app:busy"
        assert cfg["route_prefix"] == busy_cfg["route_prefix"] == "/busy"
        [entry] = cfg["deployments"]
        assert entry == {**busy_cfg["deployments"][0], "num_replicas": 2}, entry
        states = _replica_ids(after, "busy", "Busy")
        assert sorted(states.values()) == ["RUNNING", "RUNNING"], states
        assert states.get(first_busy) == "RUNNING"  # kept: not a redeploy
        # the application not opted in: same config, same replicas, no action on it
        assert after["applications"]["other"]["deployed_app_config"] == other_cfg
        assert _replica_ids(after, "other", "Other") == other_replicas
        assert not [r for r in _log(s) if r.get("container", "").startswith("other/")]
        status = jsonfile.read_newest(Path(s.data_dir) / "status.json")
        assert status["errors"]["_serve_apps"] == (
            "sources.serve_apps names 'bsuy' (did you mean 'busy'?), which no running Serve "
            "application has; running: busy, other")
        assert load.ok > 0 and other_load.ok > 0
        assert load.errors == [] and other_load.errors == [], (load.errors[:5],
                                                               other_load.errors[:5])
        print(f"\nbusy/Busy scaled out 1 → 2 replicas at tick {ticks} ({took_s:.1f} s after "
              f"the load began; p_fail {act['p_fail']:.2f} ≥ {act['threshold']:.2f}); "
              f"requests: busy {load.ok} OK / {len(load.errors)} failed, other "
              f"{other_load.ok} OK / {len(other_load.errors)} failed; reason: {act['reason']}")
    finally:
        runtime.stop_actors(handles, s)
