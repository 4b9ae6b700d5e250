"""The live loop's Ray ports (actors/coordinator.py: RayTelemetry, RayActuation) keep the
same contract as the simulated world's (tests/loop_contract.py): a real Ray, the real
monitor actor with two simulated containers."""

from __future__ import annotations

import math
import time

import pytest

from prescale.app.settings import Mode, load_settings
from tests.loop_contract import check_actuation, check_telemetry

pytestmark = pytest.mark.slow
NS = "prescale-contract-test"
MiB = 2**20


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import ray

    from prescale.actors import runtime

    s = load_settings(None, mode=Mode.AUTO, data_dir=tmp_path_factory.mktemp("contract"),
                      loop={"interval_s": 0.5, "collect_timeout_s": 5.0, "window_steps": 8},
                      cgroup={"roots": []}, sources={"simulated": 2},
                      ray={"namespace": NS}, models={"enabled": False})
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NS,
             log_to_driver=False)
    try:
        handles = runtime.start_actors(s, run_id="contract")
        yield s, handles
        runtime.stop_actors(handles, s)
    finally:
        ray.shutdown()


def test_ray_telemetry_and_actuation_keep_the_ports_contract(live):
    from prescale.actors.coordinator import RayActuation, RayTelemetry
    from prescale.app.core.actions import ActionKind, ScalingAction
    from prescale.app.core.sample import Tier

    s, _ = live
    tel = RayTelemetry(s)
    shards = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shards = check_telemetry(tel, s.loop.window_steps)
        if shards and len(shards[0].names) == 2:
            break
        time.sleep(0.5)
    (sh,) = shards
    node = sh.node
    now = time.time()
    acts = [ScalingAction(f"{c}/memory@{now}", now, c, Tier.MEMORY, 128 * MiB, 160 * MiB, 0.9,
                          0.5, math.nan, math.nan, "contract", ActionKind.RESIZE, a)
            for c, a in zip(sh.names, sh.apps, strict=True)]
    ghost = ScalingAction(f"ghost/memory@{now}", now, "ghost", Tier.MEMORY, 1.0, 2.0, 0.9, 0.5,
                          math.nan, math.nan, "contract", ActionKind.RESIZE, "")
    check_actuation(RayActuation(s, tel), acts, {c: node for c in sh.names}, ghost)
