"""Contention in the live loop: an idle container gives memory to one about to fail.

One node, the real monitor, pool manager and coordinator; two simulated containers
(app/telemetry/simulated.py): ``…-0000`` leaks 4 MiB/s from 64 MiB, ``…-0001`` sits at
64 MiB; both start at a 128 MiB limit. The pool holds 296 MiB (no reserve): 40 MiB
free. The leak's app may grow to 200 MiB, so its scale-up needs 72 MiB: 32 MiB short.

The engine offers the steady container for reclaim (low — 64 MiB < 60 % of 128 MiB —
with p_fail 0 for longer than ``cost.reclaim_after_s``; floor 64 × 1.2 = 76.8 MiB), the
pool manager shrinks it by exactly the 32 MiB missing (128 → 96 MiB) and grants the
leak's scale-up in the same tick; the coordinator applies the reclaim first and logs
both with their explanations. Nothing is overcommitted.
"""

from __future__ import annotations

import pytest

from prescale.app.settings import Mode, Settings, load_settings

pytestmark = pytest.mark.slow
NS = "prescale-reclaim-test"
RUN = "reclaim"
MiB = 2**20


def _settings(data_dir) -> Settings:
    return load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.AUTO, data_dir=data_dir,
        loop={"interval_s": 0.5, "collect_timeout_s": 5.0}, cgroup={"roots": []},
        sources={"simulated": 2, "simulated_leak_bytes_per_s": 4 * MiB},
        ray={"namespace": NS}, models={"enabled": False},
        pool={"reserve_memory_bytes": 0, "capacity_memory_bytes": 296 * MiB},
        cost={"idle_usage_fraction": 0.6, "reclaim_after_s": 1.0},
        policy={"app_bounds": {"sim-leak": {"memory_max_bytes": 200 * MiB}}})


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    import ray

    from prescale.actors import runtime

    s = _settings(tmp_path_factory.mktemp("reclaim"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=NS,
             log_to_driver=False)
    try:
        handles = runtime.start_actors(s, run_id=RUN)
        yield s, handles
        runtime.stop_actors(handles, s)
    finally:
        ray.shutdown()


def test_an_idle_container_is_shrunk_first_so_the_leak_is_served_in_the_same_tick(loop):
    import time

    import ray

    from prescale.app.store.decision_log import read_log
    from prescale.app.store.history import HistoryStore

    s, h = loop
    reclaim = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and reclaim is None:
        ray.get(h.coordinator.run_once.remote())
        log = list(read_log(HistoryStore(s.history_uri()), run_id=RUN))
        acts = [r for r in log if r["kind"] == "action"]
        reclaim = next((r for r in acts if "reclaim:" in r["reason"]), None)
        time.sleep(s.loop.interval_s)
    assert reclaim is not None, "no reclaim in 60 s"
    assert reclaim["container"].endswith("-0001") and reclaim["tier"] == "memory"
    assert reclaim["result"] == "applied"
    assert (reclaim["old_limit"], reclaim["new_limit"]) == (128 * MiB, 96 * MiB)
    assert "idle" in reclaim["reason"] and "floor 76.8 MiB" in reclaim["reason"]
    assert reclaim["reason"].count("reclaim:") == 1  # explained once
    [grown] = [r for r in acts if r["container"].endswith("-0000") and r["ts_s"] ==
               reclaim["ts_s"] and r["tier"] == "memory"]
    assert grown["result"] == "applied" and grown["verdict"] == "granted"
    assert (grown["old_limit"], grown["new_limit"]) == (128 * MiB, 200 * MiB)
    assert "reclaimed" in grown["reason"], grown["reason"]
    snap = ray.get(h.pool.snapshot.remote())
    print(f"\nreclaim: {reclaim['reason']}\nleak: {grown['reason']}\npool: {snap}")
