"""The Ray actors for real: one Ray instance for the module, real cgroups, real workloads."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from prescale.app.core.actions import ResultStatus, ScalingAction, Verdict
from prescale.app.core.sample import METRICS, Tier
from prescale.app.settings import Mode, load_settings
from tests.cgroup_support import v1_unavailable_reason

REASON = v1_unavailable_reason()
pytestmark = [pytest.mark.cgroup, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
MiB = 2**20


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import ray

    from prescale.actors import runtime
    from prescale.app import demo

    data_dir = tmp_path_factory.mktemp("data")
    tree = demo.create_tree(f"test-{uuid.uuid4().hex[:8]}")
    try:
        base = load_settings()
        s = base.model_copy(update={
            "mode": Mode.AUTO,
            "data_dir": data_dir,
            "cgroup": base.cgroup.model_copy(update={"roots": list(tree.parents.values())}),
            # the leaker must not get scaled up by the loop in these tests
            "thresholds": base.thresholds.model_copy(
                update={"p_fail": 1.0, "max_p_fail": 1.0, "sensitivity": 0.0}),
        })
        s = type(base).model_validate(s.model_dump())
        demo.start_workloads(tree, s)
        from tests.prom_support import free_port

        os.environ["RAY_metrics_report_interval_ms"] = "500"  # Ray's default is 10 s
        metrics_port = free_port()
        ray.init(address="local", num_cpus=1, include_dashboard=False, namespace=s.ray.namespace,
                 object_store_memory=150 * MiB, log_to_driver=False,
                 _metrics_export_port=metrics_port)
        s = s.model_copy(update={"ray": s.ray.model_copy(
            update={"metrics_export_port": metrics_port})})
        handles = runtime.start_actors(s, run_id="itest")
        yield s, handles, tree
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.environ.pop("RAY_metrics_report_interval_ms", None)
        demo.remove_tree(tree)


def test_monitor_returns_one_window_for_all_containers(env):
    import ray

    s, h, _ = env
    for _ in range(3):
        batch = ray.get(h.monitor.collect.remote())
        time.sleep(0.2)
    assert batch["names"] == ["cpuhog", "leaker", "steady"]
    assert batch["window"].shape == (3, s.loop.window_steps, len(METRICS))
    assert batch["errors"] == {}


def test_pool_refuses_a_grant_beyond_capacity(env):
    import ray

    _, h, _ = env
    snap = ray.get(h.pool.snapshot.remote())
    huge = snap["capacity"]["memory_bytes"] * 2
    ask = ScalingAction("steady/memory@1", 1.0, "steady", Tier.MEMORY, 128 * MiB, huge,
                        0.99, 0.5, 5.0, huge, "test")
    [v] = ray.get(h.pool.arbitrate.remote([ask], [], 1.0, True)).verdicts
    assert v.verdict is Verdict.DENIED
    assert "needs" in v.reason and "free" in v.reason
    assert ray.get(h.pool.snapshot.remote())["grants"] == snap["grants"]


def test_apply_is_idempotent_by_action_id(env):
    import ray

    _, h, tree = env
    ask = ScalingAction("cpuhog/memory@42", 42.0, "cpuhog", Tier.MEMORY, 64 * MiB, 96 * MiB,
                        0.9, 0.5, 5.0, 80 * MiB, "test")
    [r1] = ray.get(h.monitor.apply.remote([ask]))
    assert r1.status is ResultStatus.APPLIED and r1.new_limit == 96 * MiB
    limit_file = Path(tree.child("memory", "cpuhog"), "memory.limit_in_bytes")
    limit_file.write_text(str(80 * MiB))  # someone else changes it afterwards
    [r2] = ray.get(h.monitor.apply.remote([ask]))  # a retried call: not applied again
    assert r2 == r1
    assert int(limit_file.read_text()) == 80 * MiB


def test_coordinator_restarts_from_its_checkpoint(env):
    import ray
    from ray.exceptions import RayActorError

    s, h, _ = env
    ticks = [ray.get(h.coordinator.run_once.remote())["tick"] for _ in range(3)]
    assert ticks == sorted(ticks) and ticks[-1] >= 3
    status = Path(s.data_dir, "status.json")
    assert status.exists()
    ray.kill(h.coordinator, no_restart=False)  # crash; Ray restarts it
    deadline = time.monotonic() + 30
    while True:
        try:
            after = ray.get(h.coordinator.run_once.remote())["tick"]
            break
        except RayActorError:
            assert time.monotonic() < deadline, "coordinator did not come back"
            time.sleep(0.5)
    assert after == ticks[-1] + 1  # resumed the tick count, not 1


def test_a_pool_lost_mid_tick_is_waited_for_and_its_observe_replayed(env, tmp_path):
    """The pool manager's process dies in the middle of the tick's arbitrate (as when
    its node goes away: the caller gets ``ActorUnavailableError``, "connection reset";
    Ray restarts it from its checkpoint, which lacks this tick's observe). The
    coordinator's allocator waits for it, replays the observe and asks again: the tick
    gets its verdicts and its summary says what happened."""
    import ray

    from prescale.actors.coordinator import RayAllocator
    from prescale.actors.pool import PoolManager

    s, _, _ = env
    marker = tmp_path / "died-once"

    @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
    class PoolDyingOnce(PoolManager):  # the real pool manager, whose first arbitrate dies
        def arbitrate(self, *args, **kwargs):
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return super().arbitrate(*args, **kwargs)

    own = s.model_copy(update={"data_dir": tmp_path / "data"})  # its own checkpoint
    alloc = RayAllocator(own)
    alloc.pool = PoolDyingOnce.remote(own)
    ray.get(alloc.pool.__ray_ready__.remote())
    name = "replayed"  # a container only this tick's observe names
    alloc.observe({name: {"memory": 64 * MiB}}, time.time(), {}, {}, {})
    ask = ScalingAction(f"{name}/memory@7", 7.0, name, Tier.MEMORY, 64 * MiB, 80 * MiB,
                        0.9, 0.5, 5.0, 70 * MiB, "test")
    result = alloc.arbitrate([ask], [], 7.0, False)
    assert marker.exists()  # it did die once
    [v] = result.verdicts
    assert v.verdict is Verdict.GRANTED, v.reason
    assert result.summary[0].startswith(
        "pool manager restarted during the tick (ActorUnavailableError: "), result.summary
    assert ray.get(alloc.pool.snapshot.remote())["grants"]["memory"][name] == 64 * MiB
    ray.kill(alloc.pool)


def test_coordinator_hot_reloads_models_and_refuses_a_corrupt_one(env):
    """A registered model for an app replaces the heuristic without a restart; a corrupt
    newer version is refused, logged, and the previous version keeps serving."""
    import json

    import numpy as np
    import ray

    from prescale.app.core.features import FEATURES
    from prescale.app.models import make_model
    from prescale.app.store.registry import ModelRegistry

    s, h, _ = env
    registry = ModelRegistry(s.registry_dir())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 0] > 0).astype(int)
    training = {"since_s": 0.0, "until_s": 1.0, "rows": 200, "positives": int(y.sum()),
                "data_hash": "test"}

    def register(seed):
        model = make_model("hist_gradient_boosting").fit(x, y, seed=seed)
        return registry.register(model, app="steady", tier="memory", features=list(FEATURES),
                                 metrics={"pr_auc": 0.9}, training=training, promote=True)

    v1 = register(1)
    ray.get(h.coordinator.run_once.remote())
    status = json.loads(Path(s.data_dir, "status.json").read_text())
    by_name = {c["name"]: c for c in status["containers"]}
    assert by_name["steady"]["model"] == f"steady/{v1.version_id} (hist_gradient_boosting)"
    assert by_name["leaker"]["model"] == "trend-exhaustion/v1"

    v2 = register(2)
    model_file = Path(s.registry_dir(), v2.path)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    model_file.write_bytes(bytes(data))
    ray.get(h.coordinator.run_once.remote())
    status = json.loads(Path(s.data_dir, "status.json").read_text())
    by_name = {c["name"]: c for c in status["containers"]}
    assert by_name["steady"]["model"] == f"steady/{v1.version_id} (hist_gradient_boosting)"
    from prescale.app.store.decision_log import read_log
    from prescale.app.store.history import HistoryStore

    errors = [r for r in read_log(HistoryStore(s.history_uri()), kinds={"event"})
              if r.get("event") == "model_error"]
    assert errors and v2.version_id in errors[-1]["reason"]


def test_real_prometheus_scrapes_the_running_coordinator(env):
    """The coordinator's own metrics, through Ray's metrics port, into a real Prometheus:
    every metric the Grafana dashboard queries is there after a few real ticks."""
    import re

    import ray

    from prescale.app.metric_specs import EXPORTED_NAMES
    from tests.prom_support import running_prometheus

    s, h, _ = env
    dashboard = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "prescale.json"
    queried = set(re.findall(r"ray_prescale_[a-z_]+", dashboard.read_text()))
    queried = {re.sub(r"_(bucket|sum|count)$", "", m) for m in queried}
    coordinator_metrics = {m for m in queried if "serve" not in m}
    exported = {re.sub(r"_(bucket|sum|count)$", "", n) for n in EXPORTED_NAMES}
    assert coordinator_metrics and coordinator_metrics <= exported
    # gauges and the tick histogram exist from the first tick; counters appear with their
    # first increment (no OOM kill, drop or model error happens here)
    needed = {m for m in coordinator_metrics if not m.endswith("_total")
              and "precision" not in m and "recall" not in m}
    assert {"ray_prescale_p_fail", "ray_prescale_tick_duration_seconds"} <= needed
    with running_prometheus([f"127.0.0.1:{s.ray.metrics_export_port}"]) as prom:
        def all_there():
            for _ in range(2):
                ray.get(h.coordinator.run_once.remote())
            names = {r["metric"]["__name__"] for r in prom.query('{__name__=~"ray_prescale_.*"}')}
            names = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
            missing = needed - names
            return not missing or None

        prom.wait_for(all_there, timeout_s=60, what="every coordinator metric of the dashboard")
        p_fail = prom.query('ray_prescale_p_fail{tier="memory"}')
        assert {r["metric"]["container"] for r in p_fail} >= {"leaker", "steady", "cpuhog"}
        assert all(0.0 <= float(r["value"][1]) <= 1.0 for r in p_fail)
