"""The commands that read what prescale recorded: `prescale status` (the last tick),
`prescale events` (the decision log) and `prescale history` (stored samples and events)."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    err,
    fmt_bytes,
    fmt_cores,
    open_store,
    out,
    settings_or_exit,
    time_option,
)
from prescale.app.store import jsonfile
from prescale.app.store.decision_log import KINDS as LOG_KINDS
from prescale.app.store.decision_log import read_log


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

    s = settings_or_exit(config)
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
    s = settings_or_exit(config)
    allowed = set(LOG_KINDS)
    if kind and not set(kind) <= allowed:
        bad = sorted(set(kind) - allowed)
        err.print(f"error: --kind must be among {sorted(allowed)}, got {bad}")
        raise typer.Exit(2)
    recs = list(read_log(open_store(s), run_id=run, kinds=set(kind) if kind else None,
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
        fmt = fmt_bytes if tier == "memory" else fmt_cores

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

    s = settings_or_exit(config)
    store = open_store(s)
    since_s, until_s = time_option(since, "--since"), time_option(until, "--until")
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
            r.container, fmt_bytes(r.memory_usage_bytes), fmt_bytes(r.memory_limit_bytes),
            fmt_cores(r.cpu_usage_s_total), fmt_cores(r.cpu_quota_cores),
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
