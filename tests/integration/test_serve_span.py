"""A Serve deployment whose replicas span nodes is one container with all its replicas.

A ``ray.cluster_utils.Cluster``: a head with no CPU and two 1-CPU workers. The
deployment ``span/Api`` has 2 replicas of 1 CPU each, so Serve must put one on each
worker. Each worker's monitor reports the replica on its node (psutil reads only local
processes); the coordinator merges them (``merge_shards``): one container ``span/Api``
with 2 replicas — not ``span/Api@node`` twice — so that the loop decides once for the
deployment and its actions go to the workload actuators by name.
"""

from __future__ import annotations

import socket

import pytest

from prescale.app.settings import Mode, Settings, load_settings

pytestmark = pytest.mark.slow
NS = "prescale-serve-span"
RUN = "span"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(data_dir) -> Settings:
    return load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.RECOMMEND, data_dir=data_dir,
        loop={"interval_s": 0.5, "collect_timeout_s": 10.0}, cgroup={"roots": []},
        sources={"serve_deployments": True}, ray={"namespace": NS}, models={"enabled": False})


@pytest.fixture(scope="module")
def span(tmp_path_factory):
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from prescale.actors import runtime

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        c.add_node(num_cpus=1)
    c.wait_for_nodes()
    s = _settings(tmp_path_factory.mktemp("span"))
    try:
        ray.init(address=c.address, namespace=NS, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port(),
                                  "location": "HeadOnly"})

        @serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 1})
        class Api:
            def __call__(self, request) -> str:
                return "ok"

        serve.run(Api.bind(), name="span", route_prefix="/span")
        handles = runtime.start_actors(s, run_id=RUN)
        yield s, handles
        runtime.stop_actors(handles, s)
    finally:
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.shutdown()


def test_a_deployment_on_two_nodes_is_one_container_with_both_replicas(span):
    import time

    import ray

    from prescale.app.edges.serve_instance import serve_details
    from prescale.app.store import jsonfile

    s, h = span
    dep = serve_details().applications["span"].deployments["Api"]
    nodes = {r.node_id for r in dep.replicas
             if str(getattr(r.state, "value", r.state)) == "RUNNING"}
    assert len(nodes) == 2, f"the replicas are not on two nodes: {nodes}"
    rows: list = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ray.get(h.coordinator.run_once.remote())
        status = jsonfile.read(s.data_dir / "status.json")
        rows = [r for r in status["containers"] if r["name"].startswith("span/Api")]
        if rows and rows[0].get("replicas") == 2:
            break
        time.sleep(s.loop.interval_s)
    assert [(r["name"], r.get("replicas")) for r in rows] == [("span/Api", 2)], rows
    assert rows[0]["state"] == "ok" and rows[0]["memory_usage_bytes"] > 0
    print(f"\nserve span: {rows[0]['name']} on {len(nodes)} nodes, "
          f"replicas {rows[0]['replicas']}, node {rows[0]['node'][:8]}")
