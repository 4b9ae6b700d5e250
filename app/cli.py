"""The `prescale` command line (Typer).

Exit codes: 0 ok; 1 runtime failure; 2 bad configuration or bad input (the message
names the field or path).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.settings import ConfigError, Mode, Settings, load_settings
from app.store import jsonfile
from app.store.decision_log import read_log

app = typer.Typer(
    help="prescale: predict container failures and add resources before they happen.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)

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
    from app.settings import reference_markdown

    print(reference_markdown(), end="")


@app.command()
def up(config: ConfigOpt = None, mode: ModeOpt = None) -> None:
    """Run the control loop locally (embedded Ray) until Ctrl-C."""
    from actors import runtime
    from app.telemetry.cgroup import CgroupError, discover

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
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The watched containers as of the last tick: usage, limit, p_fail, last action."""
    s = _settings(config)
    path = Path(s.data_dir) / "status.json"
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
    age = time.time() - snap["ts_s"]
    table = Table(title=f"prescale status — run {snap['run_id']}, mode {snap['mode']}, "
                        f"tick {snap['tick']}, {age:.0f} s ago, model {snap['model']}")
    for col in ("container", "memory", "limit", "cpu", "quota", "p_fail mem", "p_fail cpu",
                "time to limit", "last action"):
        table.add_column(col)
    for c in snap["containers"]:
        la = c.get("last_action")
        last = "-" if not la else (
            f"{la['tier']} {la['result']} → "
            + (_fmt_bytes(la['new_limit']) if la['tier'] == 'memory'
               else _fmt_cores(la['new_limit']))
        )
        ttl = c.get("memory_time_to_limit_s")
        table.add_row(
            c["name"], _fmt_bytes(c["memory_usage_bytes"]), _fmt_bytes(c["memory_limit_bytes"]),
            _fmt_cores(c["cpu_usage_cores"]), _fmt_cores(c["cpu_quota_cores"]),
            f"{c['p_fail_memory']:.2f}", f"{c['p_fail_cpu']:.2f}",
            "-" if ttl is None else f"{ttl:.0f} s", last,
        )
    out.print(table)


@app.command()
def events(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    run: Annotated[str | None, typer.Option(help="Only this run id.")] = None,
    kind: Annotated[
        list[str] | None, typer.Option(help="decision | action | outcome | event (repeat).")
    ] = None,
    container: Annotated[str | None, typer.Option(help="Only this container.")] = None,
    last: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 50,
) -> None:
    """Print the decision log: decisions, actions, outcomes, failure events."""
    s = _settings(config)
    allowed = {"decision", "action", "outcome", "event"}
    if kind and not set(kind) <= allowed:
        bad = sorted(set(kind) - allowed)
        err.print(f"error: --kind must be among {sorted(allowed)}, got {bad}")
        raise typer.Exit(2)
    recs = list(read_log(Path(s.data_dir), run_id=run, kinds=set(kind) if kind else None,
                         container=container))[-last:]
    if as_json:
        for r in recs:
            print(json.dumps(r))
        return
    table = Table(title=f"decision log {Path(s.data_dir) / 'decisions.jsonl'}")
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
    from app.demo import DemoError, run_demo

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


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    app()
