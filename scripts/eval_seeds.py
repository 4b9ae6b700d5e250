"""One scenario over several seeds: failures per policy, and ablations of prescale's
contention features. A single seed of a contention scenario can flatter or punish any
policy; this shows the spread.

    python -m prescale.scripts.eval_seeds --scenario tenants --seeds 1-10 \\
        --policies vpa_evict,vpa_inplace,reactive,proportional,proportional:no_reclaim

A policy ``NAME:VARIANT`` runs prescale's policy NAME with one change:
``no_reclaim`` (``cost.reclaim_after_s`` beyond any scenario: idle containers are never
shrunk for others), ``no_partial`` (``contention.partial_grants`` off), ``neither``, or
``horizontal``: the per-replica limits held at the scenario's own (each app's memory and
CPU maximum = its containers' starting limits), as the HPA's pod requests are, so that
prescale can only scale out (escalation) and in — the fair fight against ``hpa`` on
``burst``:

    python -m prescale.scripts.eval_seeds --scenario burst --seeds 1-5 \
        --policies hpa,preemptive_buffer,preemptive_buffer:horizontal

Prints a Markdown table: failures (OOM kills + latency and disk episodes) per seed,
their total and median, the disruptions (evictions) the policy caused, and what it
cost over all seeds: memory GiB·h, CPU core·h, replica-hours (replicas × hours summed
over containers; 1 per container-hour without replicas) and actions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from prescale.app.evaluation import metrics, runner, scenarios


def _horizontal(s: scenarios.Scenario) -> dict[str, Any]:
    """Every app's per-replica maximum = its containers' starting limits (the largest):
    a vertical ask above them escalates to a scale-out. Example: burst → app "burst",
    memory max 512 MiB, cpu max 1.0 core."""
    bounds: dict[str, dict[str, float]] = {}
    for i, app in enumerate(s.apps):
        b = bounds.setdefault(app, {"memory_max_bytes": 0.0, "cpu_max_cores": 0.0})
        b["memory_max_bytes"] = max(b["memory_max_bytes"], float(s.memory_limit_bytes[i]))
        b["cpu_max_cores"] = max(b["cpu_max_cores"], float(s.cpu_quota_cores[i]))
    return {"policy": {"app_bounds": bounds}}


VARIANTS: dict[str, Any] = {
    "no_reclaim": {"cost": {"reclaim_after_s": 86_400.0}},
    "no_partial": {"contention": {"partial_grants": False}},
    "neither": {"cost": {"reclaim_after_s": 86_400.0},
                "contention": {"partial_grants": False}},
    "horizontal": _horizontal,
}
MAKERS = {"leak": scenarios.leak, "burst": scenarios.burst, "creep": scenarios.creep,
          "tenants": scenarios.tenants}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(x) for x in text.split("-", 1))
        return list(range(lo, hi + 1))
    return [int(x) for x in text.split(",")]


def run(scenario: str, seeds: list[int], policies: list[str]) -> list[dict[str, Any]]:
    rows = []
    for spec in policies:
        name, _, variant = spec.partition(":")
        if variant and (variant not in VARIANTS or name not in runner.PRESCALE_POLICIES):
            raise SystemExit(f"bad policy {spec!r}: a variant ({', '.join(VARIANTS)}) "
                             f"needs one of {', '.join(runner.PRESCALE_POLICIES)}")
        runner.check_policies([name])
        fails, disrupt = [], 0
        cost = {"memory_gib_hours": 0.0, "cpu_core_hours": 0.0, "replica_hours": 0.0,
                "actions": 0}
        for seed in seeds:
            s = MAKERS[scenario](seed=seed)
            extra = VARIANTS.get(variant)
            rec = runner.run(s, name, extra_settings=extra(s) if callable(extra) else extra)
            f = metrics.figures(rec, s.horizon_s)
            fails.append(int(f["failures"]))
            disrupt += int(f["disruptions"])
            for k in ("memory_gib_hours", "cpu_core_hours", "actions"):
                cost[k] += f[k]
            cost["replica_hours"] += float(rec.replicas.sum()) * s.step_s / 3600
        rows.append({"policy": spec, "failures": fails, "total": sum(fails),
                     "median": statistics.median(fails), "disruptions": disrupt, **cost})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="tenants", choices=sorted(MAKERS))
    ap.add_argument("--seeds", default="1-10")
    ap.add_argument("--policies", default="vpa_evict,vpa_inplace,reactive,preemptive_buffer,"
                    "proportional,preemptive_buffer:neither,proportional:neither")
    a = ap.parse_args()
    seeds = _seeds(a.seeds)
    t0 = time.perf_counter()
    rows = run(a.scenario, seeds, a.policies.split(","))
    print(f"{a.scenario}, seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} runs per policy)\n")
    print("| policy | failures per seed | total | median | disruptions | memory GiB·h | "
          "CPU core·h | replica-hours | actions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {' '.join(map(str, r['failures']))} | {r['total']} | "
              f"{r['median']:g} | {r['disruptions']} | {r['memory_gib_hours']:.1f} | "
              f"{r['cpu_core_hours']:.1f} | {r['replica_hours']:.1f} | {r['actions']} |")
    print(f"\nwall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
