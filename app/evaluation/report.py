"""``prescale evaluate``: run scenarios × policies, and write the report (an I/O edge).

:func:`evaluate` runs every scenario once per policy (pure parts: scenarios, runner,
metrics) and returns a JSON-able dict. :func:`write_report` writes ``report.md`` and
the PNG plots of :mod:`app.evaluation.plots` into a directory: per scenario, the demand
against the limit over time in the tier where it fails (memory; CPU against the quota,
the disk against the volume, the receive rate against its limit where those are what
fails), one row per container (pages of a few rows, each
naming the containers it shows and where the others are) and one column per policy,
with applied actions and failures marked; and one summary chart of failures and
memory slack per scenario and policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prescale.app.evaluation import metrics, runner, traces
from prescale.app.evaluation.scenarios import ALL, SYNTHETIC, Scenario

COLUMNS = ("failures", "failure_minutes", "disruptions", "violations", "slack_memory", "slack_cpu",
           "memory_gib_hours", "cpu_core_hours", "actions", "median_lead_time_s",
           "false_positive_rate", "asks_denied")
#: the Autopilot / VPA figures for memory (:func:`app.evaluation.metrics.memory_figures`)
MEMORY_COLUMNS = ("mem_violations", "mem_violation_rate", "mem_slack", "mem_limit_changes")


def build_scenario(name: str, trace: str | None = None, *, max_containers: int | None = None,
                   max_steps: int | None = None) -> Scenario:
    if trace is not None:
        return traces.from_file(trace, max_containers=max_containers, max_steps=max_steps)
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


def with_pool(s: Scenario, memory_bytes: float | None, cpu_cores: float | None) -> Scenario:
    """``s`` with the pool the user asked for (``--pool-memory``/``--pool-cpu``), noted in
    ``trace_info`` so that the report says so."""
    if memory_bytes is None and cpu_cores is None:
        return s
    for what, v in (("--pool-memory", memory_bytes), ("--pool-cpu", cpu_cores)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError(f"{what} must be a finite number > 0, got {v!r}")
    info = dict(s.trace_info)
    info["pool_rule"] = "set by --pool-memory/--pool-cpu"
    mem = s.pool_memory_bytes if memory_bytes is None else float(memory_bytes)
    cpu = s.pool_cpu_cores if cpu_cores is None else float(cpu_cores)
    info.update(pool_memory_bytes=mem, pool_cpu_cores=cpu)
    return replace(s, pool_memory_bytes=mem, pool_cpu_cores=cpu, trace_info=info)


def settings_changed(base: Any) -> dict[str, Any]:
    """The settings in ``base`` (file + env) that differ from the defaults, by dotted
    key: ``{"cost.idle_after_s": 86400.0}``."""
    from pydantic import BaseModel

    from prescale.app.settings import Settings

    out: dict[str, Any] = {}

    def walk(model: type[BaseModel], prefix: str, have: dict[str, Any],
             default: dict[str, Any]) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.", have[name], default[name])
            elif have[name] != default[name]:
                out[f"{prefix}{name}"] = have[name]

    walk(Settings, "", base.model_dump(mode="json"),
         Settings.model_construct().model_dump(mode="json"))
    return out


# -- running: every (scenario, policy) pair, in worker processes -------------------------

_PROGRESS: Any = None  # a shared array of steps done, one slot per run (-1: not started)
_NOTIFY: Callable[[], None] | None = None  # runs in this process: the watcher's poll


def _init_worker(shared: Any, notify: Callable[[], None] | None = None) -> None:
    global _PROGRESS, _NOTIFY
    _PROGRESS, _NOTIFY = shared, notify


def _run_one(s: Scenario, policy: str, base: Any, slot: int, keep: bool
             ) -> tuple[dict[str, Any], runner.RunRecord | None]:
    t1 = time.perf_counter()

    def tick(k: int) -> None:
        if _PROGRESS is not None:
            _PROGRESS[slot] = k
        if _NOTIFY is not None:
            _NOTIFY()

    rec = runner.run(s, policy, base_settings=base, progress=tick)
    fig = metrics.figures(rec, s.horizon_s)
    fig["run_s"] = round(time.perf_counter() - t1, 2)
    if rec.threshold_final:
        fig["final_threshold"] = rec.threshold_final
    tick(s.steps)
    return fig, (rec if keep else None)


def _entry(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name, "description": s.description, "source": s.source,
        "containers": s.n, "steps": s.steps, "step_s": s.step_s,
        "horizon_s": s.horizon_s, "ground_truth": s.ground_truth,
        "pool": {"memory_bytes": s.pool_memory_bytes, "cpu_cores": s.pool_cpu_cores,
                 "rule": s.trace_info.get("pool_rule", "the scenario's own")},
        "trace_info": _jsonable(dict(s.trace_info)),
        "prescale_settings": _jsonable(s.settings), "policies": {}}


def evaluate(scenarios: Sequence[Scenario | Callable[[], Scenario]], policies: Sequence[str],
             *, keep_records: bool = False, progress: Callable[[str], None] | None = None,
             base_settings: Any = None, jobs: int = 1,
             on_progress: Callable[[float, float | None, str], None] | None = None
             ) -> dict[str, Any]:
    """Run every scenario under every policy; returns ``{"scenarios": [...], "wall_s"}``.
    A scenario given as a callable is built when its turn comes; one whose trace is
    missing is reported with ``"skipped"`` and the reason. ``jobs`` > 1 runs the pairs
    in that many worker processes (the figures do not depend on it); ``progress`` gets
    one line per finished run; ``on_progress(done, total, label)`` (the CLI's bar) the
    runs done of all (:class:`_Watch`), a few times a second."""
    t0 = time.perf_counter()
    out: list[dict[str, Any]] = []
    built: list[Scenario] = []
    for item in scenarios:
        if on_progress is not None and callable(item):
            on_progress(0, None, f"building scenario {getattr(item, '__name__', 'trace')}")
        try:
            s = item() if callable(item) else item
        except traces.TraceMissing as exc:
            out.append({"name": getattr(item, "__name__", "trace"), "skipped": str(exc)})
            continue
        out.append(_entry(s))
        built.append(s)
    entries = [e for e in out if "skipped" not in e]
    pairs = [(si, p) for si in range(len(built)) for p in policies]
    records: dict[str, dict[str, runner.RunRecord]] = {}
    results: dict[int, tuple[dict[str, Any], runner.RunRecord | None]] = {}
    shown = _Watch(on_progress, [(built[si].name, p, built[si].steps) for si, p in pairs],
                   idle="starting" if jobs <= 1 or len(pairs) <= 1
                   else f"starting {min(jobs, len(pairs))} worker processes")
    shown.poll(force=True)
    if jobs <= 1 or len(pairs) <= 1:
        _init_worker(shown.array, shown.poll)
        try:
            for j, (si, p) in enumerate(pairs):
                results[j] = _run_one(built[si], p, base_settings, j, keep_records)
                shown.finish(j)
                _done(progress, built[si].name, p, results[j][0])
        finally:
            _init_worker(None)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(shown.array,)) as ex:
            futs = {ex.submit(_run_one, built[si], p, base_settings, j, keep_records): j
                    for j, (si, p) in enumerate(pairs)}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for f in done:
                    j = futs[f]
                    results[j] = f.result()
                    shown.finish(j)
                    si, p = pairs[j]
                    _done(progress, built[si].name, p, results[j][0])
                shown.poll()
    for j, (si, p) in enumerate(pairs):
        fig, rec = results[j]
        entries[si]["policies"][p] = fig
        if keep_records and rec is not None:
            records.setdefault(built[si].name, {})[p] = rec
    result: dict[str, Any] = {"scenarios": out, "policies": list(policies),
                              "wall_s": round(time.perf_counter() - t0, 2)}
    if keep_records:
        result["_records"] = records
    return result


def _done(progress: Callable[[str], None] | None, name: str, p: str, fig: dict[str, Any]
          ) -> None:
    if progress:
        progress(f"{name}/{p}: {fig['failures']} failures, {fig['run_s']} s")


class _Watch:
    """Progress of every run for ``on_progress(done, total, label)``: ``done`` of
    ``total`` scenario × policy runs finished, and the label names the runs in flight
    with the share of its steps each has made (read from a shared array the runs write,
    in this process or in the workers), e.g. ``"running leak/vpa 40%, leak/hpa 5%"``.
    Calls at most every ``every_s`` (and whenever a run finishes); with ``on_progress``
    None it only keeps the array."""

    def __init__(self, on_progress: Callable[[float, float | None, str], None] | None,
                 runs: list[tuple[str, str, int]], every_s: float = 0.25,
                 idle: str = "starting") -> None:
        import multiprocessing as mp

        self.array = mp.get_context("spawn").Array("q", len(runs), lock=False)
        for j in range(len(runs)):
            self.array[j] = -1
        self.on_progress, self.runs, self.every_s, self.idle = on_progress, runs, every_s, idle
        self.finished: set[int] = set()
        self._last = -math.inf

    def finish(self, j: int) -> None:
        self.finished.add(j)
        self.poll(force=True)

    def poll(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        n, done = len(self.runs), len(self.finished)
        running = [f"{name}/{policy} {min(k, steps) / max(steps, 1):.0%}"
                   for j, (name, policy, steps) in enumerate(self.runs)
                   if j not in self.finished and (k := self.array[j]) >= 0]
        queued = [f"{name}/{policy}" for j, (name, policy, _) in enumerate(self.runs)
                  if j not in self.finished and self.array[j] < 0]
        label = ("done" if done == n else f"running {', '.join(running)}" if running
                 else self.idle if done == 0 else f"next {queued[0]}" if queued else "")
        self.on_progress(done, n, label)


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
        if v != 0 and abs(v) < 0.001:
            return f"{v:.2e}"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def header_lines(e: dict[str, Any]) -> list[str]:
    """What a reader needs to compare the rows: caps, the pool and the replay rules."""
    info = e.get("trace_info") or {}
    lines = []
    if info:
        n_all, t_all = info.get("containers_in_trace"), info.get("steps_in_trace")
        caps = [f"--max-containers {info['max_containers']}"
                if info.get("max_containers") else "",
                f"--max-steps {info['max_steps']}" if info.get("max_steps") else ""]
        caps = [c for c in caps if c]
        what = (f"{e['containers']} of {n_all} containers, {e['steps']} of {t_all} steps")
        lines.append(f"CAPPED ({', '.join(caps)}): {what}" if info.get("capped")
                     else f"whole trace: {what}")
        lines.append(f"lifetimes: {info.get('lifetime_rule')}; {info.get('limit_rule')}")
    pool = e.get("pool")
    if pool:
        lines.append(f"pool: {pool['memory_bytes'] / 2**30:.1f} GiB, "
                     f"{pool['cpu_cores']:.1f} cores ({pool['rule']})")
    return lines


def markdown_tables(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for e in result["scenarios"]:
        if "skipped" in e:
            lines += [f"### {e['name']}", "", f"skipped: {e['skipped']}", ""]
            continue
        lines += [f"### {e['name']}", "", f"{e['description']} — {e['containers']} containers × "
                  f"{e['steps']} steps of {e['step_s']:g} s, H = {e['horizon_s']:g} s.", ""]
        lines += [f"- {h}" for h in header_lines(e)] + [""]
        lines += ["| policy | " + " | ".join(COLUMNS) + " |",
                  "|---|" + "---|" * len(COLUMNS)]
        for p, f in e["policies"].items():
            lines.append(f"| {p} | " + " | ".join(_cell(f.get(c)) for c in COLUMNS) + " |")
        lines += ["", f"Memory, Autopilot/VPA figures (violation: demand > limit, after "
                  f"{_warmup(e)} s of warm-up):", "",
                  "| policy | " + " | ".join(MEMORY_COLUMNS) + " |",
                  "|---|" + "---|" * len(MEMORY_COLUMNS)]
        for p, f in e["policies"].items():
            lines.append(f"| {p} | " + " | ".join(_cell(f.get(c)) for c in MEMORY_COLUMNS)
                         + " |")
        lines.append("")
    changed = result.get("settings_changed")
    if changed:
        lines += ["Settings that differ from the defaults (file + PRESCALE_* env): "
                  + ", ".join(f"`{k} = {v}`" for k, v in changed.items()), ""]
    return "\n".join(lines)


def _warmup(e: dict[str, Any]) -> str:
    for f in e["policies"].values():
        return f"{f.get('warmup_s', 0):g}"
    return "?"


def write_report(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``report.md`` + the PNG plots (:mod:`app.evaluation.plots`) into ``out_dir``
    (needs ``evaluate(keep_records=True)``)."""
    from prescale.app.evaluation import plots

    written = plots.write_plots(result, out_dir)
    md = ["# prescale evaluate", "",
          f"Policies: {', '.join(result['policies'])}. Wall time {result['wall_s']} s.", ""]
    md += [f"![{p.stem}]({p.name})" for p in written if p.name == "summary.png"]
    md += ["", markdown_tables(result)]
    md += [f"![{p.stem}]({p.name})\n" for p in written if p.name != "summary.png"]
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
             "false_positive_rate": "fp_rate", "asks_denied": "denied",
             "mem_violations": "mem_viol", "mem_violation_rate": "viol_rate",
             "mem_slack": "mem_slack", "mem_limit_changes": "mem_changes"}
    lines = []
    for e in result["scenarios"]:
        if "skipped" in e:
            lines.append(f"{e['name']}: skipped ({e['skipped']})")
            continue
        lines.append(f"{e['name']} — {e['description']} ({e['containers']} containers, "
                     f"{e['steps']} × {e['step_s']:g} s, H {e['horizon_s']:g} s)")
        lines += [f"  {h}" for h in header_lines(e)]
        lines.append(f"  {'policy':<18}" + "".join(f"{short[c]:>11}" for c in COLUMNS))
        for p, f in e["policies"].items():
            lines.append(f"  {p:<18}" + "".join(f"{_cell(f.get(c)):>11}" for c in COLUMNS))
        lines.append(f"  memory, Autopilot/VPA figures (violation: demand > limit after "
                     f"{_warmup(e)} s warm-up)")
        lines.append(f"  {'policy':<18}" + "".join(f"{short[c]:>12}" for c in MEMORY_COLUMNS))
        for p, f in e["policies"].items():
            lines.append(f"  {p:<18}" + "".join(f"{_cell(f.get(c)):>12}"
                                                for c in MEMORY_COLUMNS))
        lines.append("")
    changed = result.get("settings_changed")
    lines.append("settings that differ from the defaults (file + PRESCALE_* env): "
                 + (", ".join(f"{k} = {v}" for k, v in changed.items()) if changed
                    else "none"))
    lines.append(f"wall time {result['wall_s']} s")
    return "\n".join(lines)


def main(scenario: str, policies: str, as_json: bool, out_dir: Path | None,
         trace: Path | None, echo: Callable[[str], None], fail: Callable[[str], None], *,
         config: Path | None = None, max_containers: int | None = None,
         max_steps: int | None = None, pool_memory: str | None = None,
         pool_cpu: float | None = None, jobs: int | None = None,
         on_progress: Callable[[float, float | None, str], None] | None = None) -> int:
    """The body of ``prescale evaluate``: 0 ok, 2 bad input (the message names it).
    ``on_progress``: see :func:`evaluate`."""
    import json
    import os

    from pydantic import ByteSize, TypeAdapter, ValidationError

    from prescale.app.settings import ConfigError, Settings, load_settings

    try:
        pols = runner.check_policies([p.strip() for p in policies.split(",") if p.strip()])
        base = load_settings(config) if config is not None else Settings()
        pool_mem = None
        if pool_memory is not None:
            try:
                pool_mem = float(TypeAdapter(ByteSize).validate_python(pool_memory))
            except ValidationError as exc:
                raise ValueError(f"--pool-memory: not a size: {pool_memory!r} (e.g. 512GiB)"
                                 ) from exc
        if jobs is not None and jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        if trace is not None:
            if not Path(trace).is_file():
                raise traces.TraceMissing(f"--trace: file not found: {trace}")
            if on_progress is not None:
                on_progress(0, None, f"reading the trace {Path(trace).name}")
            items: list[Any] = [with_pool(build_scenario(
                "trace", str(trace), max_containers=max_containers, max_steps=max_steps),
                pool_mem, pool_cpu)]
        else:
            if max_containers is not None or max_steps is not None:
                raise ValueError("--max-containers/--max-steps apply to --trace only")
            items = [(lambda n=n: with_pool(build_scenario(n), pool_mem, pool_cpu))
                     for n in scenario_names(scenario)]
            for it, n in zip(items, scenario_names(scenario), strict=True):
                it.__name__ = n
        n_jobs = jobs if jobs is not None else max(1, min(os.cpu_count() or 1, 4))
        result = evaluate(items, pols, keep_records=out_dir is not None, base_settings=base,
                          jobs=n_jobs, on_progress=on_progress)
        result["settings_changed"] = settings_changed(base)
        result["config"] = str(config) if config is not None else None
    except (ValueError, traces.TraceMissing, ConfigError) as exc:
        fail(str(exc))
        return 2
    if out_dir is not None:
        if on_progress is not None:
            n = sum(len(e.get("policies", ())) for e in result["scenarios"])
            on_progress(n, n, f"writing the report and plots to {out_dir}")
        write_report(result, Path(out_dir))
    clean = strip_records(result)
    echo(json.dumps(clean, indent=1) if as_json else text_table(clean))
    return 0
