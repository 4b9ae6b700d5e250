"""Tick time against the number of monitors (shards), on a real local Ray.

    python -m prescale.scripts.bench_shards [--shards 1,2,4,8,16] [--per-shard 250]
                                   [--total 2000] [--ticks 20] [--json]

For each K in ``--shards`` it starts K monitor actors (shards; on one host they share
the node, each named as its own node so the coordinator gathers them as it would on a
K-node cluster), each with simulated containers (app/telemetry/simulated.py), plus the
pool manager and the coordinator, runs warm-up ticks until the windows are full, then
times ``--ticks`` ticks of ``CoordinatorActor.run_once`` back to back (mode auto: the
leaking half of the containers get scaled, through their monitors).

Two series:

- *fixed total* (``--total`` containers split over K shards): what sharding itself costs
  — the floor is the same containers in one shard, measured in the same run; the
  ratio tick(K)/tick(1) is printed;
- *fixed per shard* (``--per-shard`` containers on each of K shards): how a tick grows
  with the cluster — the per-shard cost is the slope of a least-squares line through
  (K, tick ms).

Worked example of the slope: ticks of 40, 60 and 100 ms at K = 1, 2, 4 → slope =
Σ(K−K̄)(t−t̄)/Σ(K−K̄)² with K̄ = 7/3, t̄ = 66.7 → (−4/3·−26.7 + −1/3·−6.7 + 5/3·33.3)/(16/9
+ 1/9 + 25/9) = 20 ms per shard.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STAGES = ("gather", "plan", "arbitrate", "log", "act", "record", "status", "metrics_prev")


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs (see the module docstring's example)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def _settings(n_per_shard: int, data_dir: Path, window_steps: int):
    from prescale.app.settings import Mode, load_settings

    return load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.AUTO, data_dir=data_dir,
        loop={"window_steps": window_steps, "collect_timeout_s": 30.0},
        cgroup={"roots": []}, sources={"simulated": n_per_shard},
        ray={"namespace": "prescale-bench-shards"}, models={"enabled": False},
        # the simulated hosts are all this host: room in the pool for every shard's containers
        pool={"capacity_memory_bytes": 1 << 50, "capacity_cpu_cores": 4096})


def measure(k: int, n_per_shard: int, ticks: int, window_steps: int) -> dict:
    import ray

    from prescale.actors import names
    from prescale.actors.coordinator import CoordinatorActor
    from prescale.actors.monitor import MonitorActor
    from prescale.actors.pool import PoolManagerActor

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        s = _settings(n_per_shard, Path(tmp), window_steps)
        ns = s.ray.namespace
        monitors = [MonitorActor.options(name=names.monitor(f"{i:03d}-shard"), namespace=ns)
                    .remote(s, node_id=f"{i:03d}-shard") for i in range(k)]
        pool = PoolManagerActor.options(name=names.POOL, namespace=ns).remote(s)
        coord = CoordinatorActor.options(name=names.COORDINATOR, namespace=ns).remote(s, "bench")
        try:
            ray.get([m.__ray_ready__.remote() for m in monitors] + [pool.__ray_ready__.remote(),
                                                                    coord.__ray_ready__.remote()])
            for _ in range(window_steps):  # fill the windows
                ray.get(coord.run_once.remote())
            out = []
            for _ in range(ticks):
                out.append(ray.get(coord.run_once.remote()))
        finally:
            for h in (coord, pool, *monitors):
                ray.kill(h, no_restart=True)
            time.sleep(0.5)
    assert all(o["monitors"] == k for o in out), "a monitor did not answer"
    ms = [o["tick_s"] * 1000 for o in out]
    stage = {st: statistics.median(o["stages_s"].get(st, 0.0) * 1000 for o in out)
             for st in STAGES}
    return {"shards": k, "containers": k * n_per_shard, "tick_ms_p50": statistics.median(ms),
            "tick_ms_p90": float(np.percentile(ms, 90)), "stages_ms_p50": stage,
            "actions": sum(len(o["actions"]) for o in out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", default="1,2,4,8,16")
    p.add_argument("--per-shard", type=int, default=250)
    p.add_argument("--total", type=int, default=2000)
    p.add_argument("--ticks", type=int, default=20)
    p.add_argument("--window-steps", type=int, default=20)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        ks = [int(x) for x in a.shards.split(",")]
        if not ks or min(ks) < 1 or a.per_shard < 1 or a.total < max(ks) or a.ticks < 1:
            raise ValueError
    except ValueError:
        print("error: --shards must be integers >= 1; --per-shard, --ticks >= 1; "
              "--total >= the largest shard count", file=sys.stderr)
        return 2
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             namespace="prescale-bench-shards")
    try:
        fixed_total = [measure(k, a.total // k, a.ticks, a.window_steps) for k in ks]
        fixed_per = [measure(k, a.per_shard, a.ticks, a.window_steps) for k in ks]
    finally:
        ray.shutdown()
    base = fixed_total[0]["tick_ms_p50"]
    for r in fixed_total:
        r["ratio_to_one_shard"] = r["tick_ms_p50"] / base
    result = {
        "fixed_total": fixed_total, "fixed_per_shard": fixed_per,
        "per_shard_cost_ms": slope([r["shards"] for r in fixed_per],
                                   [r["tick_ms_p50"] for r in fixed_per]),
        "sharding_overhead_ms_per_shard": slope([r["shards"] for r in fixed_total],
                                                [r["tick_ms_p50"] for r in fixed_total]),
        "load": os.getloadavg(),
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"fixed total ({a.total} containers):")
    head = " | ".join(STAGES)
    print(f"| shards | containers/shard | tick p50 ms | p90 ms | {head} | ratio to 1 shard |")
    print("|---" * (len(STAGES) + 5) + "|")
    for r in fixed_total:
        st = " | ".join(f"{r['stages_ms_p50'][x]:.1f}" for x in STAGES)
        print(f"| {r['shards']} | {r['containers'] // r['shards']} | {r['tick_ms_p50']:.1f} | "
              f"{r['tick_ms_p90']:.1f} | {st} | {r['ratio_to_one_shard']:.2f} |")
    print(f"\nfixed per shard ({a.per_shard} containers each):")
    print(f"| shards | containers | tick p50 ms | p90 ms | {head} |")
    print("|---" * (len(STAGES) + 4) + "|")
    for r in fixed_per:
        st = " | ".join(f"{r['stages_ms_p50'][x]:.1f}" for x in STAGES)
        print(f"| {r['shards']} | {r['containers']} | {r['tick_ms_p50']:.1f} | "
              f"{r['tick_ms_p90']:.1f} | {st} |")
    print(f"\nper-shard cost (slope, fixed per shard): {result['per_shard_cost_ms']:.1f} ms; "
          f"sharding overhead (slope, fixed total): "
          f"{result['sharding_overhead_ms_per_shard']:.1f} ms per shard; "
          f"load {result['load'][0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
