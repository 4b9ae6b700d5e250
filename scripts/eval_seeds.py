"""One scenario over several seeds: failures per policy, and ablations of prescale's
contention features. A single seed of a contention scenario can flatter or punish any
policy; this shows the spread.

    python -m prescale.scripts.eval_seeds --scenario tenants --seeds 1-10 \\
        --policies vpa_evict,vpa_inplace,reactive,proportional,proportional:no_reclaim

A policy ``NAME:VARIANT`` runs prescale's policy NAME with one change:
``no_reclaim`` (``cost.reclaim_after_s`` beyond any scenario: idle containers are never
shrunk for others), ``no_partial`` (``contention.partial_grants`` off) or ``neither``.
Prints a Markdown table: failures (OOM kills + latency and disk episodes) per seed,
their total and median, and the disruptions (evictions) the policy caused.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from prescale.app.evaluation import metrics, runner, scenarios

VARIANTS: dict[str, dict[str, Any]] = {
    "no_reclaim": {"cost": {"reclaim_after_s": 86_400.0}},
    "no_partial": {"contention": {"partial_grants": False}},
    "neither": {"cost": {"reclaim_after_s": 86_400.0},
                "contention": {"partial_grants": False}},
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
        for seed in seeds:
            s = MAKERS[scenario](seed=seed)
            rec = runner.run(s, name, extra_settings=VARIANTS.get(variant))
            f = metrics.figures(rec, s.horizon_s)
            fails.append(int(f["failures"]))
            disrupt += int(f["disruptions"])
        rows.append({"policy": spec, "failures": fails, "total": sum(fails),
                     "median": statistics.median(fails), "disruptions": disrupt})
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
    print("| policy | failures per seed | total | median | disruptions |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {' '.join(map(str, r['failures']))} | {r['total']} | "
              f"{r['median']:g} | {r['disruptions']} |")
    print(f"\nwall {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
