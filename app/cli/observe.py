"""The commands that read what prescale recorded: `prescale status` (the last tick),
`prescale events` (the decision log) and `prescale history` (stored samples and events)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    duration_option,
    err,
    fail,
    fmt_bytes,
    fmt_cores,
    fmt_limit,
    fmt_probability,
    fmt_time,
    open_store,
    out,
    settings_or_exit,
    status_or_exit,
    time_option,
    warn_unreadable,
)
from prescale.app.cli.output import (
    JsonOpt,
    ListOutputOpt,
    Output,
    OutputOpt,
    emit,
    emit_records,
    output_of,
)

if TYPE_CHECKING:
    from prescale.app.loop.records import Record

#: the record kinds of the decision log (app/store/decision_log.py holds them equal)
LOG_KINDS = ("decision", "action", "outcome", "judgement", "threshold", "event")


def status(
    config: ConfigOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Exit by the loop's health, for probes: 0 ok, 3 stale (no tick "
        "within --stale-after), 4 degraded (writes failing), 1 no status yet; the reason "
        "on stderr. Without it the exit is 0 whenever a status could be shown.")] = False,
    stale_after: Annotated[str | None, typer.Option(
        "--stale-after", metavar="DURATION",
        help="Age past which the last tick is stale, e.g. 30s, 2m (default: 5 loop "
        "intervals, at least 10s).")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch/--no-watch", "-w",
        help="Redraw the table every --interval seconds until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, max=3600.0, help="Seconds between redraws (with --watch).")] = 1.0,
) -> None:
    """The watched containers as of the last tick: usage, limit, p_fail, last action, and
    the loop's health (-o json: the status snapshot with a "health" object: state ok |
    stale | degraded, age_s, stale_after_s, reason, exit_code)."""
    from prescale.app import status_view

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    path = Path(s.data_dir) / "status.json"
    stale_s = duration_option(stale_after, "--stale-after")
    if stale_s is None:
        stale_s = status_view.stale_after(s.loop.interval_s)
    elif stale_s <= 0:
        raise fail(f"--stale-after: must be above 0, got {stale_after!r}")
    if watch:
        if fmt is not Output.TABLE or check:
            raise fail("--watch draws a table until Ctrl-C: it takes neither -o json/jsonl "
                       "nor --check")
        raise typer.Exit(status_view.watch(path, interval, console=out, stale_after_s=stale_s))
    snap = status_or_exit(s)  # or its RAM copy when the disk refuses writes
    now = time.time()
    try:
        health = status_view.health(snap, now, stale_s)
        if fmt is Output.TABLE:
            out.print(status_view.build_table(snap, now, stale_s))
    except ValueError as exc:
        raise fail(f"{path}: {exc}", 1) from None
    emit(fmt, {**snap, "health": health.to_dict()})
    if check:
        if health.exit_code:
            err.print(f"{health.state}: {health.reason}", markup=False, highlight=False)
        raise typer.Exit(health.exit_code)


def events(
    config: ConfigOpt = None,
    output: ListOutputOpt = None,
    as_json: JsonOpt = False,
    run: Annotated[str | None, typer.Option(help="Only this run id.")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help=f"{' | '.join(LOG_KINDS)} (repeat for several)."),
    ] = None,
    container: Annotated[str | None, typer.Option(help="Only this container.")] = None,
    last: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 50,
) -> None:
    """Print the decision log: decisions, actions, outcomes, failure events (-o jsonl: one
    record per line, as stored: ts_s in epoch seconds, limits in bytes or cores)."""
    from prescale.app.loop.records import parse as parse_record
    from prescale.app.store.decision_log import read_log

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    if kind and not set(kind) <= set(LOG_KINDS):
        bad = sorted(set(kind) - set(LOG_KINDS))
        raise fail(f"--kind must be among {list(LOG_KINDS)}, got {bad}")
    store = open_store(s)
    recs = list(read_log(store, run_id=run, kinds=set(kind) if kind else None,
                         container=container))[-last:]
    warn_unreadable(store)
    if emit_records(fmt, recs):
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


def event_row(r: Record) -> tuple[str, ...]:
    """One typed decision-log record as a row of ``prescale events``: time (ISO 8601 with
    its zone), kind, container, tier, p_fail, threshold (``<0.001`` rather than
    ``2.36e-213``), time to limit (lead time for an outcome), old, new (in the tier's
    unit: MiB/GiB, cores, MiB/s), result (or event / outcome / judgement / threshold
    adjustment), reason."""
    from prescale.app.loop.records import OutcomeRecord

    tier = getattr(r, "tier", None)

    def num(name: str, f: str = ".2f") -> str:
        v = getattr(r, name, None)
        return "-" if v is None else format(v, f)

    def prob(name: str) -> str:
        v = getattr(r, name, None)
        return "-" if v is None else fmt_probability(v)

    ttl = "lead_time_s" if isinstance(r, OutcomeRecord) else "time_to_limit_s"
    old = getattr(r, "old_limit", None)
    new = getattr(r, "new_limit", None)
    result = (getattr(r, "result", None) or getattr(r, "event", None)
              or getattr(r, "outcome", None) or getattr(r, "judgement", None)
              or getattr(r, "adjustment", None) or "-")
    return (fmt_time(r.ts_s), r.KIND, r.container or "-", tier or "-", prob("p_fail"),
            prob("threshold"), num(ttl, ".1f"), "-" if old is None else fmt_limit(tier, old),
            "-" if new is None else fmt_limit(tier, new), result,
            getattr(r, "reason", "") or "")


def history(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    container: Annotated[str | None, typer.Option(help="Only this container.")] = None,
    since: Annotated[str | None, typer.Option(
        metavar="TIME", help="From: a duration before now (2h, 1h30m, 3d), ISO 8601, epoch "
        "s.")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="TIME", help="Until (exclusive), same forms.")] = None,
    last: Annotated[int, typer.Option(min=1, help="At most this many rows (the newest).")] = 50,
    output: ListOutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Stored samples and failure events from the history store (-o jsonl: one row per
    line, "type" sample or event, raw units: bytes, cores, epoch seconds)."""
    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    store = open_store(s)
    since_s, until_s = time_option(since, "--since"), time_option(until, "--until")
    if app_name is None and fmt is Output.TABLE:
        apps = store.apps()
        err.print(f"apps in {s.history_uri()}: {', '.join(a or '(unknown)' for a in apps) or '-'}")
    filt = {"app": app_name, "container": container, "since_s": since_s, "until_s": until_s}
    samples = store.read_samples(**filt).sort_values("ts_s").tail(last)
    events = store.read_events(**filt).sort_values("ts_s").tail(last)
    warn_unreadable(store)
    if emit_records(fmt, ({"type": kind, **rec} for kind, df in (("sample", samples),
                                                                   ("event", events))
                          for rec in df.to_dict(orient="records"))):
        return
    table = Table(title=f"samples ({len(samples)} newest shown)")
    for col in ("time", "app", "container", "memory", "limit", "cpu s total", "quota",
                "latency s"):
        table.add_column(col)
    for r in samples.itertuples(index=False):
        table.add_row(
            fmt_time(r.ts_s), r.app or "-", r.container, fmt_bytes(r.memory_usage_bytes),
            fmt_bytes(r.memory_limit_bytes), _seconds(r.cpu_usage_s_total),
            fmt_cores(r.cpu_quota_cores),
            "-" if math.isnan(r.block_latency_s) else f"{r.block_latency_s:.3f}",
        )
    out.print(table)
    etable = Table(title=f"events ({len(events)} newest shown)")
    for col in ("time", "app", "container", "kind", "detail"):
        etable.add_column(col)
    for r in events.itertuples(index=False):
        etable.add_row(fmt_time(r.ts_s), r.app or "-", r.container, r.kind, r.detail)
    out.print(etable)


def _seconds(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:,.2f}"
