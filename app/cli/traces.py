"""`prescale replay` and the trace loading that `train` and `models evaluate` share:
a named trace (bitbrains, google2011), a Google 2011 directory, a Bitbrains-format file or
a CSV/Parquet file with a column mapping; failures derived from a memory limit when asked
for (--derive-failures)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer

from prescale.app.cli.common import ConfigOpt, err, fail, open_store, settings_or_exit
from prescale.app.cli.output import OutputOpt, emit, output_of
from prescale.app.cli.progress import Progress, ProgressOpt, wanted

TRACES = ("bitbrains", "google2011")


DeriveOpt = Annotated[bool, typer.Option(
    "--derive-failures/--no-derive-failures", help="The trace records no failures: derive "
    "OOM kills from a memory limit of --limit-multiple × the median of each container's "
    "first --first-fraction of readings (usage at or above it is a kill; "
    "app/learning/limit_failures.py).")]
LimitMultipleOpt = Annotated[float, typer.Option(
    min=0.01, help="--derive-failures: the limit as a multiple of the early median.")]
FirstFractionOpt = Annotated[float, typer.Option(
    min=0.01, max=1.0, help="--derive-failures: the share of each container's readings the "
    "median is taken over.")]
MapOpt = Annotated[list[str] | None, typer.Option(
    "--map", help="PATH traces: sample_field=column.")]
ContainerColOpt = Annotated[str, typer.Option(help="PATH traces: container column.")]
TsColOpt = Annotated[str, typer.Option(help="PATH traces: timestamp column.")]


def replay(
    trace: Annotated[str, typer.Option(help="bitbrains | google2011 | PATH (CSV/Parquet).")],
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per wall second (inf = bulk).")
    ] = math.inf,
    mapping: MapOpt = None,
    container_col: ContainerColOpt = "id",
    ts_col: TsColOpt = "timestamp",
    app_name: Annotated[str | None, typer.Option("--app", help="PATH traces: app name.")] = None,
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    config: ConfigOpt = None,
    output: OutputOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Replay a trace into the history store; the progress (rows stored of all) on
    stderr. A trace without failure events has nothing to train on: --derive-failures
    derives OOM kills from a memory limit per container (app/learning/limit_failures.py),
    and says so. -o json: what was stored (source, samples, events, containers,
    failure_events, seconds, history)."""
    from prescale.app.telemetry.replay import ReplaySource, replay_into

    fmt = output_of(output)
    s = settings_or_exit(config)
    with Progress("replay", wanted(progress), unit="rows") as on_progress:
        on_progress(0, None, f"reading the trace {trace}")
        data = trace_or_exit(trace, mapping, container_col, ts_col, app_name,
                             derive_failures, limit_multiple, first_fraction)
        store = open_store(s)
        n_rows = len(data.samples) + len(data.events)
        err.print(f"{data.source}: {len(data.samples):,} samples, {len(data.events):,} "
                  f"events, {len(data.containers):,} containers; dropped "
                  f"{data.dropped or 'none'}", markup=False)
        err.print(failure_summary(data), markup=False)
        t0 = time.monotonic()
        label = f"into {s.history_uri()}"

        def stored(done: int, total: int) -> None:  # the last batch in, the store flushes
            on_progress(done, total, label if done < total else f"flushing {label}")

        on_progress(0, n_rows, label)
        if math.isinf(speed):
            counts = replay_into(data, store, progress=stored,
                                 batch_rows=max(1_000, min(50_000, n_rows // 100)))
        else:
            src = ReplaySource(data, speed=speed)
            counts = {"samples": 0, "events": 0}
            while not src.done:
                batch = src.poll()
                counts["samples"] += store.append_samples(batch.samples)
                counts["events"] += store.append_events(batch.events)
                store.maybe_flush()
                on_progress(counts["samples"] + counts["events"], n_rows,
                            f"{label} at {speed:g}× speed")
                time.sleep(min(s.loop.interval_s, 1.0))
            store.flush()
        on_progress(n_rows, n_rows, label)
    store.close()
    took_s = time.monotonic() - t0
    err.print(f"stored {counts['samples']:,} samples and {counts['events']:,} events in "
              f"{took_s:.1f} s into {s.history_uri()}", markup=False)
    emit(fmt, {"source": data.source, "samples": counts["samples"], "events": counts["events"],
               "containers": len(data.containers), "failure_events": _failures(data),
               "dropped": data.dropped, "seconds": round(took_s, 3),
               "history": s.history_uri()})


def _failures(data) -> int:
    from prescale.app.learning.labels import TIER_EVENTS

    ev = data.events
    return int(ev["kind"].isin({k.value for k in TIER_EVENTS["any"]}).sum()) if len(ev) else 0


def failure_summary(data) -> str:
    """How many of a trace's events are failures (app/learning/labels.py), in words."""
    from prescale.app.learning.labels import TIER_EVENTS

    kinds = {k.value for k in TIER_EVENTS["any"]}
    ev = data.events
    n = _failures(data)
    if n == 0:
        return ("0 failure events: nothing to train on (this trace records no failure; "
                "--derive-failures derives OOM kills from a memory limit per container)")
    by_kind = ev[ev["kind"].isin(kinds)]["kind"].value_counts().to_dict()
    return f"{n:,} failure events ({', '.join(f'{k} {v:,}' for k, v in by_kind.items())})"


def trace_or_exit(trace, mapping, container_col, ts_col, app_name, derive, limit_multiple,
                  first_fraction):
    """The trace as TraceData (failures derived when asked for); exit 2 naming what is
    wrong."""
    try:
        data = _load_trace(trace, mapping, container_col, ts_col, app_name)
        if derive:
            data = _derived(data, limit_multiple, first_fraction)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise fail(f"--trace {trace}: {exc}") from None
    return data


def _derived(data, limit_multiple: float, first_fraction: float):
    from prescale.app.learning.limit_failures import derive_limit_failures
    from prescale.app.telemetry.trace_data import SAMPLE_COLUMNS, TraceData

    samples, events, info = derive_limit_failures(
        data.samples, limit_multiple=limit_multiple, first_fraction=first_fraction)
    samples = samples.drop(columns="running").loc[:, list(SAMPLE_COLUMNS)]
    samples = samples.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)
    events = events.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)
    left_out = info["containers_without_limit"]
    err.print(f"derived failures: memory limit = {limit_multiple:g} × the median of each "
              f"container's first {first_fraction:.0%} of readings; {info['oom_kills']:,} OOM "
              f"kills (a reading at or above it after one below); "
              f"{len(left_out)} container(s) without enough early readings left out"
              + (f" ({', '.join(left_out[:5])})" if left_out else ""))
    return TraceData(samples, _concat_events(data.events, events), data.dropped,
                     f"{data.source} (failures derived: limit {limit_multiple:g} × early "
                     "median)")


def _concat_events(*frames):
    import pandas as pd

    from prescale.app.telemetry.trace_data import empty_events

    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_events()
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["ts_s", "container"], kind="stable").reset_index(drop=True)


def _load_trace(trace, mapping, container_col, ts_col, app_name):
    from prescale.app.telemetry.bitbrains import read_bitbrains
    from prescale.app.telemetry.csv_trace import read_csv_mapping
    from prescale.app.telemetry.google2011 import read_google2011
    from prescale.app.telemetry.trace_data import find_trace_dir, first_line

    root = find_trace_dir()
    if trace == "bitbrains":
        return read_bitbrains(root / "bitbrains-rnd" / "rnd-2013-07-vms-001-050.csv.gz")
    if trace == "google2011":
        g = root / "google2011"
        return read_google2011(g / "task_usage_600-900s_even_jobs.csv",
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
        return read_google2011(usage[0], events[0])
    if not mapping and path.suffix not in (".parquet", ".pq") and \
            "vm_id" in first_line(path):  # a Bitbrains-format file
        return read_bitbrains(path)
    pairs = {}
    for item in mapping or []:
        field, sep, column = item.partition("=")
        if not sep:
            raise ValueError(f"--map {item!r}: use sample_field=column")
        pairs[field] = column
    if not pairs:
        raise ValueError("a PATH trace needs --map sample_field=column (at least one)")
    return read_csv_mapping(path, pairs, container_col=container_col, ts_col=ts_col,
                            app=app_name)
