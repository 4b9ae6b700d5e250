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
    status_or_exit,
    time_option,
    warn_unreadable,
)
from prescale.app.loop.records import OutcomeRecord, Record
from prescale.app.loop.records import parse as parse_record
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
    snap = status_or_exit(s)  # or its RAM copy when the disk refuses writes
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
    store = open_store(s)
    recs = list(read_log(store, run_id=run, kinds=set(kind) if kind else None,
                         container=container))[-last:]
    warn_unreadable(store)
    if as_json:
        for r in recs:
            print(json.dumps(r))
        return
    table = Table(title=f"decision log (records in {s.history_uri()})")
    for col in ("time", "kind", "container", "tier", "p_fail", "thr", "ttl s", "old", "new",
                "result", "reason"):
        table.add_column(col, overflow="fold")
    for d in recs:
        try:
            r = parse_record(d)
        except (ValueError, TypeError) as exc:  # shown, not fatal: the rest still prints
            table.add_row(fmt_time(d.get("ts_s")), str(d.get("kind")),
                          str(d.get("container", "-")), "-", "-", "-", "-", "-", "-",
                          "unreadable", f"not a record of this version: {exc}")
            continue
        table.add_row(*event_row(r))
    out.print(table)


def fmt_time(ts_s: Any) -> str:
    """``HH:MM:SS`` of an epoch time, ``-`` when there is none."""
    if not isinstance(ts_s, int | float) or not math.isfinite(ts_s):
        return "-"
    return datetime.fromtimestamp(ts_s).strftime("%H:%M:%S")


def event_row(r: Record) -> tuple[str, ...]:
    """One typed decision-log record as a row of ``prescale events``: time, kind,
    container, tier, p_fail, threshold, time to limit (lead time for an outcome), old,
    new, result (or event / outcome / judgement / threshold adjustment), reason."""
    tier = getattr(r, "tier", None)
    fmt = fmt_bytes if tier == "memory" else fmt_cores

    def num(name: str, f: str = ".2f") -> str:
        v = getattr(r, name, None)
        return "-" if v is None else format(v, f)

    ttl = "lead_time_s" if isinstance(r, OutcomeRecord) else "time_to_limit_s"
    old = getattr(r, "old_limit", None)
    new = getattr(r, "new_limit", None)
    result = (getattr(r, "result", None) or getattr(r, "event", None)
              or getattr(r, "outcome", None) or getattr(r, "judgement", None)
              or getattr(r, "adjustment", None) or "-")
    return (fmt_time(r.ts_s), r.KIND, r.container or "-", tier or "-", num("p_fail"),
            num("threshold"), num(ttl, ".1f"), "-" if old is None else fmt(old),
            "-" if new is None else fmt(new), result, getattr(r, "reason", "") or "")


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
    warn_unreadable(store)
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
