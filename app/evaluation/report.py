"""``prescale evaluate``: run scenarios × policies, and write the report (an I/O edge).

:func:`evaluate` runs every scenario once per policy (pure parts: scenarios, runner,
metrics) and returns a JSON-able dict. :func:`write_report` writes ``report.md`` and
PNG plots (matplotlib, Agg backend) into a directory: per scenario, usage against the
limit over time for up to :data:`MAX_PLOTTED` containers, one panel per policy, with
applied actions (triangles) and failures (red crosses) marked; and one summary chart
of failures and memory slack per scenario and policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.evaluation import metrics, runner, traces
from app.evaluation.scenarios import ALL, SYNTHETIC, Scenario

MAX_PLOTTED = 3
COLUMNS = ("failures", "failure_minutes", "disruptions", "violations", "slack_memory", "slack_cpu",
           "memory_gib_hours", "cpu_core_hours", "actions", "median_lead_time_s",
           "false_positive_rate")


def build_scenario(name: str, trace: str | None = None) -> Scenario:
    if trace is not None:
        return traces.from_file(trace)
    if name in SYNTHETIC:
        return SYNTHETIC[name]()
    if name in traces.TRACE_BUILDERS:
        return traces.TRACE_BUILDERS[name]()
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(ALL)}, all")


def scenario_names(spec: str) -> list[str]:
    names = list(ALL) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in ALL]
    if bad or not names:
        raise ValueError(f"unknown scenario {', '.join(map(repr, bad)) or repr(spec)}; "
                         f"known: {', '.join(ALL)}, all")
    return names


def evaluate(scenarios: Sequence[Scenario | Callable[[], Scenario]], policies: Sequence[str],
             *, keep_records: bool = False, progress: Callable[[str], None] | None = None
             ) -> dict[str, Any]:
    """Run every scenario under every policy; returns ``{"scenarios": [...], "wall_s"}``.
    A scenario given as a callable is built when its turn comes; one whose trace is
    missing is reported with ``"skipped"`` and the reason."""
    t0 = time.perf_counter()
    out: list[dict[str, Any]] = []
    records: dict[str, dict[str, runner.RunRecord]] = {}
    for item in scenarios:
        try:
            s = item() if callable(item) else item
        except traces.TraceMissing as exc:
            out.append({"name": getattr(item, "__name__", "trace"), "skipped": str(exc)})
            continue
        entry: dict[str, Any] = {
            "name": s.name, "description": s.description, "source": s.source,
            "containers": s.n, "steps": s.steps, "step_s": s.step_s,
            "horizon_s": s.horizon_s, "ground_truth": s.ground_truth,
            "prescale_settings": _jsonable(s.settings), "policies": {}}
        for p in policies:
            t1 = time.perf_counter()
            rec = runner.run(s, p)
            fig = metrics.figures(rec, s.horizon_s)
            fig["run_s"] = round(time.perf_counter() - t1, 2)
            if rec.threshold_final:
                fig["final_threshold"] = rec.threshold_final
            entry["policies"][p] = fig
            if keep_records:
                records.setdefault(s.name, {})[p] = rec
            if progress:
                progress(f"{s.name}/{p}: {fig['failures']} failures, {fig['run_s']} s")
        out.append(entry)
    result: dict[str, Any] = {"scenarios": out, "policies": list(policies),
                              "wall_s": round(time.perf_counter() - t0, 2)}
    if keep_records:
        result["_records"] = records
    return result


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown_tables(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for e in result["scenarios"]:
        if "skipped" in e:
            lines += [f"### {e['name']}", "", f"skipped: {e['skipped']}", ""]
            continue
        lines += [f"### {e['name']}", "", f"{e['description']} — {e['containers']} containers × "
                  f"{e['steps']} steps of {e['step_s']:g} s, H = {e['horizon_s']:g} s.", "",
                  "| policy | " + " | ".join(COLUMNS) + " |",
                  "|---|" + "---|" * len(COLUMNS)]
        for p, f in e["policies"].items():
            lines.append(f"| {p} | " + " | ".join(_cell(f.get(c)) for c in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``report.md`` + PNG plots into ``out_dir`` (needs ``evaluate(keep_records=True)``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    records: dict[str, dict[str, runner.RunRecord]] = result.get("_records", {})
    for name, by_policy in records.items():
        pols = list(by_policy)
        first = next(iter(by_policy.values()))
        n_plot = min(MAX_PLOTTED, len(first.names))
        fig, axes = plt.subplots(n_plot, len(pols), figsize=(3.2 * len(pols), 2.4 * n_plot),
                                 squeeze=False, sharex=True)
        for j, p in enumerate(pols):
            rec = by_policy[p]
            hours = np.arange(rec.memory_limit_bytes.shape[1]) * rec.step_s / 3600
            for i in range(n_plot):
                ax = axes[i][j]
                reps = rec.replicas[i]
                serving = reps if rec.replicas_ready is None else rec.replicas_ready[i]
                ax.plot(hours, rec.memory_demand_bytes[i] * serving / 2**20, lw=0.8,
                        label="memory demand")
                ax.plot(hours, rec.memory_limit_bytes[i] * reps / 2**20, lw=0.8,
                        label="memory limit")
                for a in rec.actions:
                    if a.container == i and a.tier in ("memory", "replicas"):
                        ax.plot(a.ts_s / 3600 - rec.t0_s / 3600,
                                rec.memory_limit_bytes[i, min(a.step + 1, len(hours) - 1)]
                                * reps[min(a.step + 1, len(hours) - 1)] / 2**20,
                                "^" if a.new > a.old else "v", ms=3, color="green")
                fails = np.flatnonzero(rec.oom_kill[i] | rec.timeout[i] | rec.disk_full[i])
                if len(fails):
                    ax.plot(hours[fails], np.nan_to_num(rec.memory_limit_bytes[i, fails]
                                                        * reps[fails] / 2**20),
                            "x", color="red", ms=4)
                if i == 0:
                    ax.set_title(p, fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{rec.names[i]}\nMiB", fontsize=7)
                ax.tick_params(labelsize=6)
        axes[-1][0].set_xlabel("hours", fontsize=7)
        axes[0][0].legend(fontsize=5, loc="upper left")
        fig.suptitle(f"{name}: memory demand vs limit (▲ action, × failure)", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    ok = [e for e in result["scenarios"] if "skipped" not in e]
    if ok:
        pols = result["policies"]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
        x = np.arange(len(ok))
        w = 0.8 / max(len(pols), 1)
        for j, p in enumerate(pols):
            a1.bar(x + j * w, [e["policies"][p]["failures"] for e in ok], w, label=p)
            a2.bar(x + j * w, [e["policies"][p]["slack_memory"] for e in ok], w, label=p)
        for ax, title in ((a1, "failures"), (a2, "memory slack (allocated − used)/allocated")):
            ax.set_xticks(x + 0.4 - w / 2, [e["name"] for e in ok], rotation=45, fontsize=7)
            ax.set_title(title, fontsize=9)
        a1.set_yscale("symlog")
        a1.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / "summary.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    md = ["# prescale evaluate", "",
          f"Policies: {', '.join(result['policies'])}. Wall time {result['wall_s']} s.", "",
          "![summary](summary.png)", "", markdown_tables(result)]
    for name in records:
        md += [f"![{name}]({name}.png)", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(md))
    written.append(report)
    return written


def strip_records(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def text_table(result: dict[str, Any]) -> str:
    """Side-by-side plain-text table: one block per scenario, one row per policy."""
    short = {"failures": "fail", "failure_minutes": "fail_min", "disruptions": "disrupt",
             "violations": "viol",
             "slack_memory": "slack_mem", "slack_cpu": "slack_cpu",
             "memory_gib_hours": "mem_GiBh", "cpu_core_hours": "cpu_coreh",
             "actions": "actions", "median_lead_time_s": "lead_s",
             "false_positive_rate": "fp_rate"}
    lines = []
    for e in result["scenarios"]:
        if "skipped" in e:
            lines.append(f"{e['name']}: skipped ({e['skipped']})")
            continue
        lines.append(f"{e['name']} — {e['description']} ({e['containers']} containers, "
                     f"{e['steps']} × {e['step_s']:g} s, H {e['horizon_s']:g} s)")
        head = f"  {'policy':<18}" + "".join(f"{short[c]:>11}" for c in COLUMNS)
        lines.append(head)
        for p, f in e["policies"].items():
            lines.append(f"  {p:<18}" + "".join(f"{_cell(f.get(c)):>11}" for c in COLUMNS))
        lines.append("")
    lines.append(f"wall time {result['wall_s']} s")
    return "\n".join(lines)


def main(scenario: str, policies: str, as_json: bool, out_dir: Path | None,
         trace: Path | None, echo: Callable[[str], None], fail: Callable[[str], None]) -> int:
    """The body of ``prescale evaluate``: 0 ok, 2 bad input (the message names it)."""
    import json

    try:
        pols = runner.check_policies([p.strip() for p in policies.split(",") if p.strip()])
        if trace is not None:
            if not Path(trace).is_file():
                raise traces.TraceMissing(f"--trace: file not found: {trace}")
            items: list[Any] = [build_scenario("trace", str(trace))]
        else:
            items = [(lambda n=n: build_scenario(n)) for n in scenario_names(scenario)]
            for it, n in zip(items, scenario_names(scenario), strict=True):
                it.__name__ = n
        result = evaluate(items, pols, keep_records=out_dir is not None)
    except (ValueError, traces.TraceMissing) as exc:
        fail(str(exc))
        return 2
    if out_dir is not None:
        write_report(result, Path(out_dir))
    clean = strip_records(result)
    echo(json.dumps(clean, indent=1) if as_json else text_table(clean))
    return 0
