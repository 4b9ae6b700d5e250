"""What each actor costs: resident memory and CPU per tick, on a real local Ray.

    python -m prescale.scripts.bench_actor_cost [CONTAINERS]      # default 250

Starts the local runtime (one monitor, the pool manager, the coordinator; mode auto,
default settings, window 60 steps) with CONTAINERS simulated containers (half leak and
get scaled up, app/telemetry/simulated.py), runs 60 ticks back to back to fill the
windows, then 40 more, and prints one JSON line: each actor's RSS (MiB) and its CPU
time per tick (user + system of its process over the 40 ticks / 40), and the median
tick. README "Scaling out" and docs/BENCHMARKS.md quote it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        n = int(argv[0]) if argv else 250
        if n < 1:
            raise ValueError
    except ValueError:
        print("error: CONTAINERS must be an integer >= 1", file=sys.stderr)
        return 2
    import psutil
    import ray

    from prescale.actors import runtime
    from prescale.app.settings import Mode, load_settings

    s = load_settings(  # configs/local.toml, with these keys changed
        None, mode=Mode.AUTO, data_dir=tempfile.mkdtemp(prefix="actor-cost-"),
        cgroup={"roots": []}, sources={"simulated": n}, models={"enabled": False},
        ray={"namespace": "prescale-actor-cost"})
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             namespace=s.ray.namespace, log_to_driver=False)
    try:
        h = runtime.start_actors(s, "cost")
        pids = {name: ray.get(a.__ray_call__.remote(lambda self: os.getpid()))
                for name, a in (("monitor", h.monitor), ("coordinator", h.coordinator),
                                ("pool", h.pool))}
        procs = {k: psutil.Process(v) for k, v in pids.items()}

        def cpu() -> dict[str, float]:
            return {k: p.cpu_times().user + p.cpu_times().system for k, p in procs.items()}

        for _ in range(60):
            ray.get(h.coordinator.run_once.remote())
        before, ticks = cpu(), []
        for _ in range(40):
            ticks.append(ray.get(h.coordinator.run_once.remote())["tick_s"])
        after = cpu()
        out = {k: {"rss_mib": round(procs[k].memory_info().rss / 2**20, 1),
                   "cpu_ms_per_tick": round((after[k] - before[k]) / 40 * 1000, 1)}
               for k in procs}
        out.update(containers=n, tick_ms_p50=round(statistics.median(ticks) * 1000, 1),
                   load=os.getloadavg()[0])
        print(json.dumps(out))
        runtime.stop_actors(h)
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
