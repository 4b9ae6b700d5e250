"""The `prescale` command line (Typer).

Exit codes: 0 ok; 1 runtime failure; 2 bad configuration or bad input (the message
names the field or path).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from prescale.app.settings import ConfigError, Mode, Settings, load_settings
from prescale.app.store import jsonfile
from prescale.app.store.decision_log import KINDS as LOG_KINDS
from prescale.app.store.decision_log import read_log

app = typer.Typer(
    help="prescale: predict container failures and add resources before they happen.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
models_app = typer.Typer(help="The model registry: list (default), promote, rollback.")
app.add_typer(models_app, name="models")
threshold_app = typer.Typer(help="Failure-probability thresholds per owner and app.",
                            no_args_is_help=True)
app.add_typer(threshold_app, name="threshold")
bench_app = typer.Typer(help="Benchmarks (ratios against a floor measured in the same run).",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Tables keep their shape when piped (rich assumes 80 columns without a terminal).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: configs/local.toml)."),
]
ModeOpt = Annotated[Mode | None, typer.Option("--mode", help="off | recommend | auto.")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _fmt_bytes(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "unlimited" if v is not None and v > 0 else "-"
    return f"{v / 2**20:,.1f} MiB"


def _fmt_cores(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.2f}"


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, not TOML-like text.")] = False,
) -> None:
    """Print the effective settings (file + PRESCALE_* environment + defaults)."""
    s = _settings(config)
    data = s.model_dump(mode="json")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for k, v in scalars.items():
        print(f"{k} = {json.dumps(v)}")
    for group, values in data.items():
        if isinstance(values, dict):
            print(f"\n[{group}]")
            for k, v in values.items():
                print(f"{k} = {json.dumps(v)}")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), as in the README."""
    from prescale.app.settings import reference_markdown

    print(reference_markdown(), end="")


@app.command()
def up(config: ConfigOpt = None, mode: ModeOpt = None) -> None:
    """Run the control loop locally (embedded Ray) until Ctrl-C."""
    from prescale.actors import runtime
    from prescale.app.edges.cgroupfs import CgroupError
    from prescale.app.telemetry.cgroup import discover

    s = _settings(config, mode=mode)
    s = s.model_copy(update={"data_dir": Path(s.data_dir).resolve()})
    if not s.cgroup.roots:
        err.print("warning: cgroup.roots is empty: no container will be watched")
    try:
        found = discover(s.cgroup)
    except CgroupError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    err.print(f"prescale up: mode={s.mode.value}, {len(found)} container(s), "
              f"data in {s.data_dir}; Ctrl-C to stop")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_id = f"up-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    runtime.init_ray(s)
    handles = runtime.start_actors(s, run_id)
    try:
        def tick(summary: dict) -> None:
            if summary["decisions"] or summary["errors"]:
                err.print(f"tick {summary['tick']}: {summary['containers']} containers, "
                          f"actions {summary['actions']}, errors {summary['errors']}")
        n = runtime.run_loop(handles, s, stop=stop, on_tick=tick)
    finally:
        runtime.stop_actors(handles)
        import ray
        ray.shutdown()
    err.print(f"stopped after {n} ticks")


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
) -> None:
    """Run the prediction API (Ray Serve: /v1/predict, /v1/recommend, ...) until Ctrl-C."""
    from prescale.app.serve_app import run_serve

    s = _settings(config)
    try:
        run_serve(s, host=host, port=port, blocking=True)
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Redraw the table every --interval seconds until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, max=3600.0, help="Seconds between redraws (with --watch).")] = 1.0,
) -> None:
    """The watched containers as of the last tick: usage, limit, p_fail, last action."""
    from prescale.app import status_view

    s = _settings(config)
    path = Path(s.data_dir) / "status.json"
    stale_s = status_view.stale_after(s.loop.interval_s)
    if watch:
        if as_json:
            err.print("error: --watch and --json cannot be combined")
            raise typer.Exit(2)
        raise typer.Exit(status_view.watch(path, interval, console=out, stale_after_s=stale_s))
    try:
        snap = jsonfile.read(path)
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    if snap is None:
        err.print(f"no status yet at {path}: start `prescale up` (or `prescale demo`)")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(snap, indent=2))
        return
    try:
        out.print(status_view.build_table(snap, time.time(), stale_s))
    except ValueError as exc:
        err.print(f"error: {path}: {exc}")
        raise typer.Exit(1) from None


@app.command()
def events(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    run: Annotated[str | None, typer.Option(help="Only this run id.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="decision|action|outcome|judgement|threshold|event (repeat)."),
    ] = None,
    container: Annotated[str | None, typer.Option(help="Only this container.")] = None,
    last: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 50,
) -> None:
    """Print the decision log: decisions, actions, outcomes, failure events."""
    s = _settings(config)
    allowed = set(LOG_KINDS)
    if kind and not set(kind) <= allowed:
        bad = sorted(set(kind) - allowed)
        err.print(f"error: --kind must be among {sorted(allowed)}, got {bad}")
        raise typer.Exit(2)
    recs = list(read_log(_open_store(s), run_id=run, kinds=set(kind) if kind else None,
                         container=container))[-last:]
    if as_json:
        for r in recs:
            print(json.dumps(r))
        return
    table = Table(title=f"decision log (records in {s.history_uri()})")
    for col in ("time", "kind", "container", "tier", "p_fail", "thr", "ttl s", "old", "new",
                "result", "reason"):
        table.add_column(col, overflow="fold")
    for r in recs:
        tier = r.get("tier")
        fmt = _fmt_bytes if tier == "memory" else _fmt_cores

        def num(v: Any, f: str = ".2f") -> str:
            return "-" if v is None else format(v, f)

        table.add_row(
            datetime.fromtimestamp(r["ts_s"]).strftime("%H:%M:%S"), r["kind"],
            r.get("container", "-"), tier or "-", num(r.get("p_fail")), num(r.get("threshold")),
            num(r.get("time_to_limit_s") if r["kind"] != "outcome" else r.get("lead_time_s"),
                ".1f"),
            fmt(r.get("old_limit")) if "old_limit" in r else "-",
            fmt(r.get("new_limit")) if r.get("new_limit") is not None else "-",
            r.get("result") or r.get("event") or r.get("outcome") or "-",
            r.get("reason", ""),
        )
    out.print(table)


@app.command()
def demo(
    config: ConfigOpt = None,
    mode: Annotated[Mode, typer.Option("--mode", help="off | recommend | auto.")] = Mode.AUTO,
    duration: Annotated[
        float | None, typer.Option("--duration", min=5, max=3600, help="Seconds of the loop.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Real workloads in real cgroups (leaker, steady, CPU hog) under the loop; a summary."""
    from prescale.app.demo import DemoError, run_demo

    s = _settings(config, mode=mode)
    if duration is not None:
        s = s.model_copy(update={"demo": s.demo.model_copy(update={"duration_s": duration})})
    if not as_json:
        err.print(f"prescale demo: mode={s.mode.value}, {s.demo.duration_s:g} s "
                  f"(leaker at {s.demo.leak_rate_bytes_per_s / 2**20:g} MiB/s under "
                  f"{s.demo.leaker_limit_bytes / 2**20:g} MiB)")
    try:
        summary = run_demo(s, quiet=True)
    except DemoError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    finally:
        import ray
        if ray.is_initialized():
            ray.shutdown()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"demo {summary['run_id']}: {summary['ticks']} ticks in "
                        f"{summary['wall_s']} s")
    for col in ("container", "OOM kills", "scale-ups", "lead times s", "final mem limit",
                "peak usage", "final cpu quota"):
        table.add_column(col)
    for c in summary["containers"]:
        table.add_row(c["name"], str(c["oom_kills"]), str(c["scale_ups"]),
                      ", ".join(f"{x:.1f}" for x in c["lead_times_s"]) or "-",
                      _fmt_bytes(c["final_limit_bytes"]), _fmt_bytes(c["peak_usage_bytes"]),
                      _fmt_cores(c["final_cpu_quota_cores"]))
    out.print(table)
    out.print(f"decision log: prescale events --run {summary['run_id']}"
              + (f" --config {config}" if config else ""))


def _open_store(s: Settings):
    from prescale.app.store.history import HistoryStore

    try:
        return HistoryStore(s.history_uri(), flush_interval_s=s.history.flush_interval_s)
    except ValueError as exc:
        err.print(f"error: history.uri: {exc}")
        raise typer.Exit(2) from None


def _time_opt(text: str | None, name: str) -> float | None:
    from prescale.app.timeparse import parse_time_s

    if text is None:
        return None
    try:
        return parse_time_s(text, time.time())
    except ValueError as exc:
        err.print(f"error: {name}: {exc}")
        raise typer.Exit(2) from None


@app.command()
def history(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    container: Annotated[str | None, typer.Option(help="Only this container.")] = None,
    since: Annotated[str | None, typer.Option(help="From: 2h, 3d, ISO time, epoch s.")] = None,
    until: Annotated[str | None, typer.Option(help="Until (exclusive), same forms.")] = None,
    last: Annotated[int, typer.Option(min=1, help="At most this many rows (the newest).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Stored samples and failure events from the history store."""
    import pandas as pd

    s = _settings(config)
    store = _open_store(s)
    since_s, until_s = _time_opt(since, "--since"), _time_opt(until, "--until")
    if app_name is None and not as_json:
        apps = store.apps()
        err.print(f"apps in {s.history_uri()}: {', '.join(a or '(unknown)' for a in apps) or '-'}")
    filt = {"app": app_name, "container": container, "since_s": since_s, "until_s": until_s}
    samples = store.read_samples(**filt).sort_values("ts_s").tail(last)
    events = store.read_events(**filt).sort_values("ts_s").tail(last)
    if as_json:
        for kind, df in (("sample", samples), ("event", events)):
            for rec in df.to_dict(orient="records"):
                clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                         for k, v in rec.items()}
                print(json.dumps({"type": kind, **clean}))
        return
    table = Table(title=f"samples ({len(samples)} newest shown)")
    for col in ("time (UTC)", "app", "container", "memory", "limit", "cpu s total", "quota",
                "latency s"):
        table.add_column(col)
    for r in samples.itertuples(index=False):
        table.add_row(
            pd.Timestamp(r.ts_s, unit="s").strftime("%Y-%m-%d %H:%M:%S"), r.app or "-",
            r.container, _fmt_bytes(r.memory_usage_bytes), _fmt_bytes(r.memory_limit_bytes),
            _fmt_cores(r.cpu_usage_s_total), _fmt_cores(r.cpu_quota_cores),
            "-" if math.isnan(r.block_latency_s) else f"{r.block_latency_s:.3f}",
        )
    out.print(table)
    etable = Table(title=f"events ({len(events)} newest shown)")
    for col in ("time (UTC)", "app", "container", "kind", "detail"):
        etable.add_column(col)
    for r in events.itertuples(index=False):
        etable.add_row(pd.Timestamp(r.ts_s, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                       r.app or "-", r.container, r.kind, r.detail)
    out.print(etable)


TRACES = ("bitbrains", "google2011")


@app.command()
def replay(
    trace: Annotated[str, typer.Option(help="bitbrains | google2011 | PATH (CSV/Parquet).")],
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per wall second (inf = bulk).")
    ] = math.inf,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="PATH traces: sample_field=column.")
    ] = None,
    container_col: Annotated[str, typer.Option(help="PATH traces: container column.")] = "id",
    ts_col: Annotated[str, typer.Option(help="PATH traces: timestamp column.")] = "timestamp",
    app_name: Annotated[str | None, typer.Option("--app", help="PATH traces: app name.")] = None,
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    config: ConfigOpt = None,
) -> None:
    """Replay a trace into the history store, with a progress bar. A trace without failure
    events has nothing to train on: --derive-failures derives OOM kills from a memory
    limit per container (app/core/limit_failures.py), and says so."""
    from rich.progress import Progress

    from prescale.app.telemetry import replay as rp

    s = _settings(config)
    data = _trace_or_exit(trace, mapping, container_col, ts_col, app_name, derive_failures,
                          limit_multiple, first_fraction)
    store = _open_store(s)
    n_rows = len(data.samples) + len(data.events)
    err.print(f"{data.source}: {len(data.samples):,} samples, {len(data.events):,} events, "
              f"{len(data.containers):,} containers; dropped {data.dropped or 'none'}")
    err.print(_failure_summary(data))
    t0 = time.monotonic()
    with Progress(console=err, transient=False) as bar:
        task = bar.add_task("replaying", total=n_rows)
        if math.isinf(speed):
            counts = rp.replay_into(data, store,
                                    progress=lambda done, total: bar.update(task, completed=done))
        else:
            src = rp.ReplaySource(data, speed=speed)
            counts = {"samples": 0, "events": 0}
            while not src.done:
                batch = src.poll()
                counts["samples"] += store.append_samples(batch.samples)
                counts["events"] += store.append_events(batch.events)
                store.maybe_flush()
                bar.update(task, completed=counts["samples"] + counts["events"])
                time.sleep(min(s.loop.interval_s, 1.0))
            store.flush()
    store.close()
    err.print(f"stored {counts['samples']:,} samples and {counts['events']:,} events in "
              f"{time.monotonic() - t0:.1f} s into {s.history_uri()}")


DeriveOpt = Annotated[bool, typer.Option(
    "--derive-failures", help="The trace records no failures: derive OOM kills from a memory "
    "limit of --limit-multiple × the median of each container's first --first-fraction of "
    "readings (usage at or above it is a kill; app/core/limit_failures.py).")]
LimitMultipleOpt = Annotated[float, typer.Option(
    min=0.01, help="--derive-failures: the limit as a multiple of the early median.")]
FirstFractionOpt = Annotated[float, typer.Option(
    min=0.01, max=1.0, help="--derive-failures: the share of each container's readings the "
    "median is taken over.")]


def _failure_summary(data) -> str:
    """How many of a trace's events are failures (app/core/labels.py), in words."""
    from prescale.app.core.labels import TIER_EVENTS

    kinds = {k.value for k in TIER_EVENTS["any"]}
    ev = data.events
    n = int(ev["kind"].isin(kinds).sum()) if len(ev) else 0
    if n == 0:
        return ("0 failure events: nothing to train on (this trace records no failure; "
                "--derive-failures derives OOM kills from a memory limit per container)")
    by_kind = ev[ev["kind"].isin(kinds)]["kind"].value_counts().to_dict()
    return f"{n:,} failure events ({', '.join(f'{k} {v:,}' for k, v in by_kind.items())})"


def _trace_or_exit(trace, mapping, container_col, ts_col, app_name, derive, limit_multiple,
                   first_fraction):
    """The trace as TraceData (failures derived when asked for); exit 2 naming what is
    wrong."""
    from prescale.app.telemetry import replay as rp

    try:
        data = _load_trace(rp, trace, mapping, container_col, ts_col, app_name)
        if derive:
            data = _derived(rp, data, limit_multiple, first_fraction)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        err.print(f"error: --trace {trace}: {exc}")
        raise typer.Exit(2) from None
    return data


def _derived(rp, data, limit_multiple: float, first_fraction: float):
    from prescale.app.core.limit_failures import derive_limit_failures

    samples, events, info = derive_limit_failures(
        data.samples, limit_multiple=limit_multiple, first_fraction=first_fraction)
    samples = samples.drop(columns="running").loc[:, list(rp.SAMPLE_COLUMNS)]
    samples = samples.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)
    events = events.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)
    left_out = info["containers_without_limit"]
    err.print(f"derived failures: memory limit = {limit_multiple:g} × the median of each "
              f"container's first {first_fraction:.0%} of readings; {info['oom_kills']:,} OOM "
              f"kills (a reading at or above it after one below); "
              f"{len(left_out)} container(s) without enough early readings left out"
              + (f" ({', '.join(left_out[:5])})" if left_out else ""))
    return rp.TraceData(samples, _concat_events(rp, data.events, events), data.dropped,
                        f"{data.source} (failures derived: limit {limit_multiple:g} × early "
                        "median)")


def _concat_events(rp, *frames):
    import pandas as pd

    parts = [f for f in frames if len(f)]
    if not parts:
        return rp.empty_events()
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)


def _load_trace(rp, trace, mapping, container_col, ts_col, app_name):
    root = rp.find_trace_dir()
    if trace == "bitbrains":
        return rp.read_bitbrains(root / "bitbrains-rnd" / "rnd-2013-07-vms-001-050.csv.gz")
    if trace == "google2011":
        g = root / "google2011"
        return rp.read_google2011(g / "task_usage_600-900s_even_jobs.csv",
                                  g / "task_events_even_jobs.csv.gz")
    path = Path(trace)
    if not path.exists():
        raise FileNotFoundError(f"no such file (and not one of {', '.join(TRACES)})")
    if path.is_dir():  # a Google 2011 directory: one task_usage* and one task_events* file
        usage = sorted(path.glob("task_usage*"))
        events = sorted(path.glob("task_events*"))
        if len(usage) != 1 or len(events) != 1:
            raise ValueError(f"a directory trace must hold one task_usage* and one "
                             f"task_events* file (Google 2011); found {len(usage)} and "
                             f"{len(events)}")
        return rp.read_google2011(usage[0], events[0])
    if not mapping and path.suffix not in (".parquet", ".pq") and \
            "vm_id" in rp._first_line(path):  # a Bitbrains-format file
        return rp.read_bitbrains(path)
    pairs = {}
    for item in mapping or []:
        field, sep, column = item.partition("=")
        if not sep:
            raise ValueError(f"--map {item!r}: use sample_field=column")
        pairs[field] = column
    if not pairs:
        raise ValueError("a PATH trace needs --map sample_field=column (at least one)")
    return rp.read_csv_mapping(path, pairs, container_col=container_col, ts_col=ts_col,
                               app=app_name)


def _registry(s: Settings):
    from prescale.app.store.registry import CorruptModelError, ModelRegistry

    try:
        return ModelRegistry(s.registry_dir())
    except (CorruptModelError, ValueError, OSError) as exc:
        err.print(f"error: model registry {s.registry_dir()}: {exc}")
        raise typer.Exit(2) from None


@models_app.callback(invoke_without_command=True)
def models_list(
    ctx: typer.Context,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """List model versions (newest first) with their held-out test metrics at their
    operating threshold, their validation AP and whether they passed the gate."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    s = _settings(config)
    versions = _registry(s).list(app=app_name)
    if as_json:
        for v in versions:
            print(json.dumps(asdict(v), default=str))
        return
    table = Table(title=f"models in {s.registry_dir()}")
    for col in ("app", "tier", "version", "kind", "status", "created", "PR-AUC", "ROC-AUC",
                "threshold", "precision", "recall", "base rate", "val PR-AUC", "gate",
                "rows"):
        table.add_column(col)
    def fmt(m: dict, key: str, digits: int = 3) -> str:
        val = m.get(key)
        return ("-" if val is None else f"{val:.{digits}f}" if isinstance(val, float)
                else str(val))

    for v in versions:
        def f(key: str, m: dict = v.metrics, digits: int = 3) -> str:
            return fmt(m, key, digits)

        gate = (v.training or {}).get("gate") or {}
        verdict = ("-" if not gate else "passed" if gate.get("promote")
                   else "not passed")
        table.add_row(v.app, v.tier, v.version_id, v.kind, v.status,
                      datetime.fromtimestamp(v.created_s).strftime("%Y-%m-%d %H:%M"),
                      f("pr_auc"), f("roc_auc"), f("threshold", digits=4), f("precision"),
                      f("recall"), f("base_rate"), f("val_pr_auc"), verdict,
                      str(v.training.get("rows", "-")))
    out.print(table)


@models_app.command("promote")
def models_promote(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    version_id: Annotated[str, typer.Argument(metavar="VERSION")],
    tier: Annotated[str, typer.Option()] = "memory",
    force: Annotated[bool, typer.Option(
        "--force", help="Promote even a version trained on no positive window or without a "
        "validation AP (it would serve in place of the heuristic).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Make VERSION the current model of APP (the running coordinator picks it up)."""
    s = _settings(config)
    reg = _registry(s)
    try:
        target = reg.get(app_name, tier, version_id)
        training, metrics = target.training or {}, target.metrics or {}
        why = ("it was trained on no positive window" if not training.get("positives")
               else "it has no validation AP" if metrics.get("val_pr_auc", 0.0) is None
               else None)
        if why and not force:
            err.print(f"error: {app_name}/{tier} {version_id} is not promoted: {why}, so it "
                      "learned nothing to serve in place of the heuristic (--force to "
                      "promote it anyway)")
            raise typer.Exit(2)
        v = reg.promote(app_name, tier, version_id)
    except (KeyError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    err.print(f"{v.app}/{v.tier}: {v.version_id} is current")


@models_app.command("evaluate")
def models_evaluate(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App (_global: the global "
                                                                "model).")],
    trace: Annotated[str | None, typer.Option(
        help="Score on this trace (bitbrains | google2011 | a Bitbrains-format file | a "
        "directory with Google 2011 task_usage* and task_events* files | PATH with --map) "
        "instead of the history store.")] = None,
    version_id: Annotated[str | None, typer.Option("--version", help="Default: current.")]
    = None,
    tier: Annotated[str | None, typer.Option(help="Default: models.tier.")] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="PATH traces: "
                                                      "sample_field=column.")] = None,
    container_col: Annotated[str, typer.Option(help="PATH traces: container column.")] = "id",
    ts_col: Annotated[str, typer.Option(help="PATH traces: timestamp column.")] = "timestamp",
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Score a registered model on another trace (or the history store): AP, ROC-AUC,
    base rate, precision and recall at its stored threshold, beside the best single
    feature and the heuristic, and its reliability curve."""
    from prescale.tuning.register import evaluate_version

    s = _settings(config)
    source: Any = s.history_uri()
    if trace is not None:
        source = _trace_or_exit(trace, mapping, container_col, ts_col, None, derive_failures,
                                limit_multiple, first_fraction)
        if not as_json:
            err.print(_failure_summary(source))
    try:
        res = evaluate_version(_registry(s), app_name, source, tier=tier or s.models.tier,
                               version_id=version_id)
    except (KeyError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(res, allow_nan=False))
        return
    m, rule, heur = res["metrics"], res["best_single_feature"], res["heuristic"]

    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    thr = "never alarms" if res["threshold"] is None else f"{res['threshold']:.4g}"
    out.print(f"{res['app']}/{res['tier']} {res['version_id']} ({res['kind']}, "
              f"{res['status']}) on {m['n']:,} windows, {m['n_positive']:,} positive "
              f"(base rate {f(m['base_rate'], 4)}); stored threshold {thr}")
    table = Table(title="scores on these windows (held out only if the model did not train on "
                        "them)")
    for col in ("score", "AP", "ROC-AUC", "precision", "recall", "alarms"):
        table.add_column(col)
    table.add_row(res["kind"], f(m["pr_auc"]), f(m["roc_auc"]), f(m["precision"]),
                  f(m["recall"]), str(m["alarms"]))
    table.add_row(f"best single feature: {rule['feature']} ({rule['direction']}), chosen on "
                  "these windows", f(rule["pr_auc"]), f(rule["roc_auc"]), "", "", "")
    hnote = (" (cannot rank: too few samples)" if heur["rankable"] == 0 else "")
    table.add_row(f"heuristic{hnote}", f(heur["pr_auc"]), f(heur["roc_auc"]), "", "", "")
    table.add_row("base rate", f(m["base_rate"], 4), "0.500", "", "", "")
    out.print(table)
    rel = res["reliability"]
    if rel:
        rt = Table(title=f"reliability (expected calibration error {f(rel['ece'])})")
        for col in ("p bin", "windows", "mean p", "observed failure rate"):
            rt.add_column(col)
        for k, c in enumerate(rel["count"]):
            if c:
                rt.add_row(f"{rel['edges'][k]:.1f}–{rel['edges'][k + 1]:.1f}", str(c),
                           f(rel["mean_predicted"][k]), f(rel["observed"][k]))
        out.print(rt)


@models_app.command("rollback")
def models_rollback(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    tier: Annotated[str, typer.Option()] = "memory",
    config: ConfigOpt = None,
) -> None:
    """Retire APP's current model and bring back the one before it."""
    s = _settings(config)
    try:
        v = _registry(s).rollback(app_name, tier)
    except (KeyError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    err.print(f"{v.app}/{v.tier}: rolled back to {v.version_id}")


def _print_training(out_dict: dict, as_json: bool) -> None:
    """The result in words (or JSON); exit 1 when nothing could be learned."""
    if as_json:
        print(json.dumps(out_dict, allow_nan=False))
    else:
        _describe_training(out_dict)
    if out_dict.get("status") == "nothing learned":
        raise typer.Exit(1)


def _describe_training(r: dict) -> None:
    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    who = f"{r.get('app')}/{r.get('tier')}"
    if r.get("status") == "nothing learned":
        err.print(f"nothing learned for {who}: {r.get('reason')}")
        err.print(f"nothing registered; {who} keeps serving what it served (its current model "
                  "or the heuristic)")
        return
    kind = r.get("kind")
    if r.get("promoted"):
        err.print(f"{who}: {r.get('version_id')} ({kind}) is current — {r.get('reason')}")
    else:
        err.print(f"{who}: {r.get('version_id')} ({kind}) registered as a candidate — "
                  f"{r.get('reason')}")
    for c in (r.get("gate") or {}).get("comparisons", []):
        if c.get("note"):
            err.print(f"  note on the {c['reference']}: {c['note']}")
    test = r.get("test") or {}
    thr = test.get("threshold")
    err.print(f"operating threshold {('never alarms' if thr is None else f'{thr:.4g}')}"
              + (f"; {r['threshold_seeded']}" if r.get("threshold_seeded") else ""))
    rule = r.get("test_best_single_feature") or {}
    err.print(f"held-out test split ({test.get('n', 0):,} windows, {test.get('n_positive', 0):,} "
              f"positive, base rate {f(test.get('base_rate'), 4)}): AP {f(test.get('pr_auc'))}, "
              f"ROC-AUC {f(test.get('roc_auc'))}, precision {f(test.get('precision'))} and "
              f"recall {f(test.get('recall'))} at the threshold; best single feature "
              f"{rule.get('feature')} ({rule.get('direction')}) AP {f(rule.get('pr_auc'))}")


@app.command()
def train(
    app_name: Annotated[str | None, typer.Option("--app", help="App (empty: a global model).")]
    = None,
    kind: Annotated[str, typer.Option(help="random_forest | hist_gradient_boosting | "
                                           "heuristic | lstm")] = "hist_gradient_boosting",
    stride: Annotated[int, typer.Option(min=1, help="A window every N samples.")] = 1,
    tier: Annotated[str | None, typer.Option(help="memory|cpu|disk|any (default: models.tier)")]
    = None,
    split: Annotated[str, typer.Option(help="auto (default: by app when each container has "
                                            "one window, else by time) | time | group")]
    = "auto",
    split_seed: Annotated[int, typer.Option(help="Seed of a group split.")] = 0,
    window_steps: Annotated[int | None, typer.Option(min=1, help="Default: loop.window_steps.")]
    = None,
    horizon: Annotated[float | None, typer.Option(
        min=1.0, help="Seconds ahead a failure counts (default: predictor.horizon_s).")] = None,
    since: Annotated[str | None, typer.Option(help="Training data from (2h, 3d, ISO).")] = None,
    until: Annotated[str | None, typer.Option(help="Training data until.")] = None,
    trace: Annotated[str | None, typer.Option(
        help="Train on this trace (bitbrains | google2011 | a Bitbrains-format file | a "
        "directory with Google 2011 task_usage* and task_events* files | PATH with --map) "
        "instead of the history store.")] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="PATH traces: "
                                                      "sample_field=column.")] = None,
    container_col: Annotated[str, typer.Option(help="PATH traces: container column.")] = "id",
    ts_col: Annotated[str, typer.Option(help="PATH traces: timestamp column.")] = "timestamp",
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Train one model and register it. It becomes current only if, on the held-out
    validation rows, it beats the model serving now and the trend heuristic (AP, by
    models.gate_margin_ap with the 95% bootstrap interval above 0); the reason is printed
    in words. Exit 1 when nothing could be learned (no failure in the data)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from prescale.tuning.register import Promotion, train_and_register

    s = _settings(config)
    source: Any = s.history_uri()
    if trace is not None:
        source = _trace_or_exit(trace, mapping, container_col, ts_col, app_name,
                                derive_failures, limit_multiple, first_fraction)
        if not as_json:
            err.print(_failure_summary(source))
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                   console=err, disable=as_json)
    try:
        with bar:
            bar.add_task(f"training {kind} for {app_name or 'all apps (_global)'}: "
                         "dataset → fit → judge → refit → register", total=None)
            result = train_and_register(
                source, str(s.registry_dir()), app=app_name, kind=kind,
                tier=tier or s.models.tier, horizon_s=horizon or s.predictor.horizon_s,
                window_steps=window_steps or s.loop.window_steps,
                recent_steps=s.predictor.recent_steps, split=split, split_seed=split_seed,
                stride=stride, since_s=_time_opt(since, "--since"),
                until_s=_time_opt(until, "--until"), promotion=Promotion.from_settings(s))
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    _print_training(result, as_json)


@app.command()
def tune(
    app_name: Annotated[str | None, typer.Option("--app", help="App (empty: a global model).")]
    = None,
    trials: Annotated[int, typer.Option(min=1, max=1000)] = 8,
    kinds: Annotated[str, typer.Option(help="Comma-separated model kinds to search.")]
    = "random_forest,hist_gradient_boosting,heuristic",
    stride: Annotated[int, typer.Option(min=1)] = 1,
    tier: Annotated[str | None, typer.Option(help="memory|cpu|disk|any (default: models.tier)")]
    = None,
    split: Annotated[str, typer.Option(help="auto (default: by app when each container has "
                                            "one window, else by time) | time | group")]
    = "auto",
    split_seed: Annotated[int, typer.Option(help="Seed of a group split.")] = 0,
    window_steps: Annotated[int | None, typer.Option(min=1, help="Default: loop.window_steps.")]
    = None,
    horizon: Annotated[float | None, typer.Option(
        min=1.0, help="Seconds ahead a failure counts (default: predictor.horizon_s).")] = None,
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Ray Tune search over model kinds and hyperparameters (ASHA early stopping); the best
    is judged by the same gate as `prescale train` (beat the current model and the
    heuristic on validation) and registered. Exit 1 when nothing could be learned."""
    from prescale.tuning.register import Promotion
    from prescale.tuning.search import tune_and_register

    s = _settings(config)
    try:
        result = tune_and_register(
            s.history_uri(), str(s.registry_dir()), app=app_name, tier=tier or s.models.tier,
            trials=trials, storage_path=str(Path(s.data_dir).resolve() / "tune"),
            kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
            split=split, split_seed=split_seed, horizon_s=horizon or s.predictor.horizon_s,
            window_steps=window_steps or s.loop.window_steps,
            recent_steps=s.predictor.recent_steps, stride=stride,
            since_s=_time_opt(since, "--since"), until_s=_time_opt(until, "--until"),
            num_cpus=s.ray.num_cpus, progress=not as_json,
            promotion=Promotion.from_settings(s))
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    except RuntimeError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    _print_training(result, as_json)


@app.command()
def retrain(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app (_global: the "
                                                               "global model).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if not due.")] = False,
    trials: Annotated[int | None, typer.Option(min=1, max=1000,
                                               help="Default: models.retrain_trials.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
) -> None:
    """Retrain each app's model (and the global one) when due: weekly
    (models.retrain_interval_s) or when the live precision/recall of the judged outcomes
    drifts below the floors; through Ray Tune and the same gate as `prescale train`. The
    control loop schedules this itself (models.retrain_live); this command is for cron or
    a Ray job. It does nothing when nothing is due."""
    from prescale.tuning.register import GLOBAL_APP
    from prescale.tuning.retrain import (
        due,
        last_trained_s,
        live_rates_by_app,
        policy_of,
        retrain_app,
    )
    from prescale.tuning.search import ray_session

    s = _settings(config)
    m = s.models
    policy = policy_of(s)
    store, registry = _open_store(s), _registry(s)
    apps = ([app_name] if app_name is not None
            else [a for a in store.apps() if a] + [GLOBAL_APP])
    rates = live_rates_by_app(read_log(store, kinds={"judgement"}), m.tier, m.live_window_n)
    now_s = time.time()
    report = []
    for a in apps:
        is_due, why = due(policy, now_s, last_trained_s(registry, a, m.tier),
                          rates.get(a) if a != GLOBAL_APP else None)
        report.append({"app": a, "due": is_due or force, "why": why if not force else "forced"})
    if any(e["due"] for e in report):
        with ray_session(s.ray.num_cpus, None, False):
            for entry in report:
                if entry["due"]:
                    entry["result"] = retrain_app(s, entry["app"], trials=trials, nice=0)
    if not as_json:
        for entry in report:
            res = entry.get("result")
            err.print(f"{entry['app']}: {entry['why']}" + (
                f" → {res.get('version_id') or 'nothing registered'} {res['status']}: "
                f"{res.get('reason')}" if res else ""))
    if as_json:
        print(json.dumps(report, default=str))


def _threshold_args(s: Settings):
    from prescale.app.core.thresholds import ThresholdConfig
    from prescale.app.store.thresholds_store import FILE

    return Path(s.data_dir).resolve() / FILE, ThresholdConfig.from_settings(s.thresholds)


@threshold_app.command("list")
def threshold_list(config: ConfigOpt = None) -> None:
    """Every stored threshold, the default, and each known app's thresholds in effect."""
    from prescale.app.store.thresholds_store import list_thresholds

    path, cfg = _threshold_args(_settings(config))
    try:
        print(json.dumps(list_thresholds(path, cfg), indent=2, default=str))
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None


@threshold_app.command("get")
def threshold_get(
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
) -> None:
    """The thresholds in effect for an app or owner (and where each value came from)."""
    from prescale.app.store.thresholds_store import get_thresholds

    path, cfg = _threshold_args(_settings(config))
    try:
        print(json.dumps(get_thresholds(path, app=app_name, owner=owner, config=cfg), indent=2,
                         default=str))
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None


@threshold_app.command("set")
def threshold_set(
    tier: Annotated[str, typer.Option(help="memory | cpu")],
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    value: Annotated[float | None, typer.Option(help="p_fail threshold in [0, 1].")] = None,
    min_value: Annotated[float | None, typer.Option("--min", help="Lowest learned value.")]
    = None,
    max_value: Annotated[float | None, typer.Option("--max", help="Highest learned value.")]
    = None,
    sensitivity: Annotated[float | None, typer.Option(help="Step per outcome (0: fixed).")]
    = None,
    config: ConfigOpt = None,
) -> None:
    """Set a threshold, its bounds or sensitivity for an app, an owner or the default.
    A running coordinator picks the change up at its next tick."""
    from prescale.app.store.thresholds_store import set_threshold

    path, cfg = _threshold_args(_settings(config))
    try:
        out_d = set_threshold(path, app=app_name, owner=owner, tier=tier, value=value,
                              min=min_value, max=max_value, sensitivity=sensitivity, config=cfg)
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    print(json.dumps(out_d, indent=2, default=str))


@bench_app.command("ingest")
def bench_ingest(
    samples: Annotated[int, typer.Option(min=1)] = 200_000,
    containers: Annotated[int, typer.Option(min=1)] = 100,
    flush_every: Annotated[int, typer.Option(min=1, help="Ticks per store flush.")] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Samples/s through validation into the monitor buffer and into the history store,
    each beside pyarrow's write_table of the same rows."""
    from prescale.scripts import bench_ingest as b

    args = ["--samples", str(samples), "--containers", str(containers),
            "--flush-every", str(flush_every)] + (["--json"] if as_json else [])
    raise typer.Exit(b.main(args))


@bench_app.command("tick")
def bench_tick(
    containers: Annotated[str, typer.Option(
        help="Comma-separated fleet sizes.")] = "1000,10000,100000",
    repeats: Annotated[str, typer.Option(help="Timed ticks per size (at most 3 from 50k).")] = "5",
    seed: Annotated[str, typer.Option()] = "0",
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Milliseconds per engine tick (features, prediction, decision) beside the floor
    (read the window once + one batched predict_proba), as a ratio. See docs/BENCHMARKS.md."""
    from prescale.scripts import bench_tick as b

    args = ["--containers", containers, "--repeats", repeats, "--seed", seed]
    args += (["--config", str(config)] if config else []) + (["--json"] if as_json else [])
    raise typer.Exit(b.main(args))


@app.command()
def evaluate(
    scenario: Annotated[str, typer.Option(help="A scenario, a comma-separated list, or all.")
                        ] = "all",
    policies: Annotated[str, typer.Option(help="Comma-separated policies.")] = (
        "static,reactive,vpa,vpa_evict,vpa_inplace,hpa,preemptive_buffer,proportional,"
        "multi_tier"),
    as_json: Annotated[bool, typer.Option("--json")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Report + PNG plots here.")
                       ] = None,
    trace: Annotated[Path | None, typer.Option(
        help="Evaluate on this trace file instead (replayed whole unless capped).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="prescale's settings (TOML); default: the defaults + "
        "PRESCALE_* env. What differs from the defaults is printed.")] = None,
    max_containers: Annotated[int | None, typer.Option(
        help="Replay only the first N containers of --trace (stated in the output).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        help="Replay only the first N steps of --trace (stated in the output).")] = None,
    pool_memory: Annotated[str | None, typer.Option(
        help="Pool memory, e.g. 512GiB (default: sized from the trace / the scenario's).")
                           ] = None,
    pool_cpu: Annotated[float | None, typer.Option(
        help="Pool CPU in cores (default: sized from the trace / the scenario's).")] = None,
    jobs: Annotated[int | None, typer.Option(
        help="Runs in parallel worker processes (default: the CPUs, at most 4).")] = None,
) -> None:
    """Run the real engine and the baselines over scenarios on a simulated clock, side by
    side. See docs/BENCHMARKS.md."""
    from prescale.app.evaluation.report import main as evaluate_main

    raise typer.Exit(evaluate_main(
        scenario, policies, as_json, out_dir, trace, echo=print,
        fail=lambda m: err.print(f"error: {m}"), config=config,
        max_containers=max_containers, max_steps=max_steps, pool_memory=pool_memory,
        pool_cpu=pool_cpu, jobs=jobs, bar=sys.stderr.isatty()))


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    app()
