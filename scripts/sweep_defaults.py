"""Choose defaults on whole traces and the synthetic scenarios together (issue 12).

    python -m prescale.scripts.sweep_defaults --grid 'cost.long_peak_s=86400,604800' \\
        --grid 'cost.peak_margin_fraction=0.2,0.5' [--policies preemptive_buffer] \\
        [--scenarios bitbrains-month,leak,diurnal,...] [--jobs 2] [--json]

Every combination of the ``--grid`` values (dotted setting = comma-separated values)
runs every scenario under every prescale policy; one row per combination and policy:
the memory violations (Autopilot/VPA definition: demand > limit after the warm-up),
OOM kills, failures and memory GiB·h per scenario, and their sums over the synthetic
scenarios. ``bitbrains-month`` is the whole shared Bitbrains file (50 VMs, 30 days,
the pool sized from the trace). A combination is a default candidate only if it helps
every scenario family, never one trace alone (docs/BENCHMARKS.md says what was chosen).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from prescale.app.evaluation import metrics, runner, traces
from prescale.app.evaluation.scenarios import SYNTHETIC
from prescale.app.telemetry.trace_data import BITBRAINS_RND_FILE, find_trace_dir

BB_MONTH = "bitbrains-month"


def _scenario(name: str) -> Any:
    if name == BB_MONTH:
        return traces.from_file(find_trace_dir() / BITBRAINS_RND_FILE)
    if name in SYNTHETIC:
        return SYNTHETIC[name]()
    if name in traces.TRACE_BUILDERS:
        return traces.TRACE_BUILDERS[name]()
    raise SystemExit(f"unknown scenario {name!r}; known: {BB_MONTH}, "
                     f"{', '.join([*SYNTHETIC, *traces.TRACE_BUILDERS])}")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *path, leaf = key.split(".")
        d = out
        for p in path:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _one(scenario: str, policy: str, combo: dict[str, Any]) -> dict[str, Any]:
    s = _scenario(scenario)
    t0 = time.perf_counter()
    rec = runner.run(s, policy, extra_settings=_nest(combo))
    f = metrics.figures(rec, s.horizon_s)
    return {"scenario": scenario, "policy": policy, "combo": combo,
            "failures": f["failures"], "oom_kills": f["oom_kills"],
            "mem_violations": f["mem_violations"], "mem_slack": f["mem_slack"],
            "memory_gib_hours": f["memory_gib_hours"], "run_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", action="append", default=[],
                    help="setting=v1,v2 (dotted setting name; repeatable)")
    ap.add_argument("--policies", default="preemptive_buffer")
    ap.add_argument("--scenarios", default=",".join([BB_MONTH, *SYNTHETIC]))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    axes: list[tuple[str, list[Any]]] = []
    for g in a.grid:
        key, _, vals = g.partition("=")
        if not key or not vals:
            raise SystemExit(f"bad --grid {g!r}: want setting=v1,v2")
        axes.append((key.strip(), [_value(v) for v in vals.split(",")]))
    combos = [dict(zip([k for k, _ in axes], vs, strict=True))
              for vs in itertools.product(*[v for _, v in axes])] or [{}]
    scen = [x.strip() for x in a.scenarios.split(",") if x.strip()]
    pols = [p.strip() for p in a.policies.split(",") if p.strip()]
    runner.check_policies(pols)
    for x in scen:
        if x != BB_MONTH and x not in SYNTHETIC and x not in traces.TRACE_BUILDERS:
            _scenario(x)
    jobs = [(x, p, c) for c in combos for p in pols for x in scen]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        rows = list(ex.map(_one, *zip(*jobs, strict=True)))
    if a.json:
        print(json.dumps({"rows": rows, "wall_s": round(time.perf_counter() - t0, 1)}))
        return 0
    for c in combos:
        for p in pols:
            mine = [r for r in rows if r["combo"] == c and r["policy"] == p]
            syn = [r for r in mine if r["scenario"] in SYNTHETIC]
            head = ", ".join(f"{k}={v}" for k, v in c.items()) or "defaults"
            print(f"{head} | {p}")
            for r in mine:
                print(f"  {r['scenario']:<16} fail {r['failures']:>5} oom {r['oom_kills']:>5} "
                      f"mem_viol {r['mem_violations']:>5} slack {r['mem_slack']} "
                      f"GiB·h {r['memory_gib_hours']:>10.1f} ({r['run_s']} s)")
            if syn:
                print(f"  {'synthetic Σ':<16} fail {sum(r['failures'] for r in syn):>5} "
                      f"oom {sum(r['oom_kills'] for r in syn):>5} "
                      f"GiB·h {sum(r['memory_gib_hours'] for r in syn):>10.1f}")
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
