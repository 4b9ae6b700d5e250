"""`prescale bench` (ingest and tick benchmarks, each as a ratio against a floor measured
in the same run) and `prescale evaluate` (the engine and the baselines over scenarios)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    bytes_option,
    cores_option,
    err,
    fail,
    new_app,
    out,
    settings_or_exit,
)
from prescale.app.cli.output import JsonOpt, Output, OutputOpt, emit, output_of
from prescale.app.cli.progress import Progress, ProgressOpt, wanted

bench_app = new_app("Benchmarks (ratios against a floor measured in the same run).",
                    no_args_is_help=True)


@bench_app.command("ingest")
def bench_ingest(
    samples: Annotated[int, typer.Option(min=1)] = 200_000,
    containers: Annotated[int, typer.Option(min=1)] = 100,
    flush_every: Annotated[int, typer.Option(min=1, help="Ticks per store flush.")] = 50,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Samples/s through validation into the monitor buffer and into the history store,
    each beside pyarrow's write_table of the same rows."""
    from prescale.scripts import bench_ingest as b

    fmt = output_of(output, as_json)
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = b.main(["--samples", str(samples), "--containers", str(containers),
                       "--flush-every", str(flush_every), "--json"])
    if code:
        raise typer.Exit(code)
    res = json.loads(buf.getvalue())
    if emit(fmt, res):
        return
    table = Table(title=f"ingest: {res['samples']:,} samples of {res['containers']:,} "
                        f"containers, a flush every {res['flush_every_ticks']} ticks")
    for col in ("path", "samples/s", "÷ pyarrow write_table"):
        table.add_column(col, justify="left" if col == "path" else "right")
    table.add_row("monitor buffer", f"{res['monitor_samples_per_s']:,}",
                  f"{res['ratio_monitor_to_write_table']:.3f}")
    table.add_row("history store", f"{res['store_samples_per_s']:,}",
                  f"{res['ratio_store_to_write_table']:.3f}")
    table.add_row("pyarrow write_table (floor)", f"{res['write_table_samples_per_s']:,}", "1")
    out.print(table)


@bench_app.command("tick")
def bench_tick(
    containers: Annotated[str, typer.Option(
        help="Comma-separated fleet sizes.")] = "1000,10000,100000",
    repeats: Annotated[int, typer.Option(
        min=1, help="Timed ticks per size (at most 3 from 50k).")] = 5,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    config: ConfigOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Milliseconds per engine tick (features, prediction, decision) beside the floor
    (read the window once + one batched predict_proba), as a ratio. See docs/BENCHMARKS.md
    (its Markdown tables: python -m prescale.scripts.bench_tick)."""
    from prescale.scripts import bench_tick as b

    fmt = output_of(output, as_json)
    try:
        sizes = b.parse_containers(containers)
    except ValueError as exc:
        raise fail(str(exc)) from None
    s = settings_or_exit(config)
    res = b.run(sizes, s, repeats=repeats, seed=seed,
                progress=lambda m: err.print(m, markup=False, highlight=False))
    if emit(fmt, res):
        return
    out.print(f"window steps {res['window_steps']}, {res['metrics']} metrics, "
              f"{res['features']} features; model: {res['model']}; load average "
              f"{', '.join(map(str, res['load_average']))}", markup=False)
    out.print(tick_table(res))


def tick_table(res: dict[str, Any]) -> Table:
    """The medians of ``prescale bench tick`` in ms per tick (min–max of the total over
    the repeats), a row per size and mode, and the ratio to the floor."""

    def spread(sp: dict[str, float]) -> str:
        return f"{sp['median']:,.1f} ({sp['min']:,.1f}–{sp['max']:,.1f})"

    table = Table(title="ms per tick (median; min–max over the repeats)")
    for col in ("containers", "mode", "features", "prediction", "of which model",
                "decision", "total", "floor", "÷ floor", "asks (up / down / out)",
                "peak RSS"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for r in res["results"]:
        for mode, ratio in (("heuristic", r["ratio_heuristic"]), ("learned", r["ratio"])):
            m = r[mode]
            ms = m["ms"]
            table.add_row(f"{r['containers']:,}", mode, f"{ms['features']:,.1f}",
                          f"{ms['prediction']:,.1f}", f"{ms['model']:,.1f}",
                          f"{ms['decision']:,.1f}", spread(m["spread_ms"]["total"]),
                          spread(r["floor"]["floor_ms"]), f"{ratio}",
                          f"{m['asks']} ({m['scale_up']} / {m['scale_down']} / "
                          f"{m['scale_out']})", f"{r['peak_rss_mib']:,} MiB")
    return table


def evaluate(
    scenario: Annotated[str, typer.Option(help="A scenario, a comma-separated list, or all.")
                        ] = "all",
    policies: Annotated[str, typer.Option(help="Comma-separated policies.")] = (
        "static,reactive,vpa,vpa_evict,vpa_inplace,hpa,preemptive_buffer,proportional,"
        "multi_tier"),
    output: OutputOpt = None,
    as_json: JsonOpt = False,
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
        metavar="SIZE", help="Pool memory, e.g. 512Gi, 2T, 64GiB (default: sized from the "
        "trace / the scenario's).")] = None,
    pool_cpu: Annotated[str | None, typer.Option(
        metavar="CPU", help="Pool CPU in cores or millicores, e.g. 64, 500m (default: sized "
        "from the trace / the scenario's).")] = None,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Runs in parallel worker processes (default: the CPUs, at most 4).")] = None,
    progress: ProgressOpt = None,
) -> None:
    """Run the real engine and the baselines over scenarios on a simulated clock, side by
    side; the progress (scenario × policy runs done, the runs in flight) on stderr. See
    docs/BENCHMARKS.md."""
    fmt = output_of(output, as_json)
    mem = bytes_option(pool_memory, "--pool-memory")
    cpu = cores_option(pool_cpu, "--pool-cpu")
    printed: list[str] = []
    with Progress("evaluate", wanted(progress), unit="runs") as on_progress:
        on_progress(0, None, "loading the evaluation code")
        from prescale.app.evaluation.report import main as evaluate_main

        code = evaluate_main(
            scenario, policies, fmt is not Output.TABLE, out_dir, trace,
            echo=printed.append,
            fail=lambda m: err.print(f"error: {m}", markup=False, highlight=False),
            config=config, max_containers=max_containers, max_steps=max_steps,
            pool_memory=None if mem is None else str(int(mem)), pool_cpu=cpu, jobs=jobs,
            on_progress=on_progress)
    if code == 0 and fmt is Output.TABLE:
        print("".join(printed))
        printed.clear()
    if code == 0 and printed:
        emit(fmt, json.loads("".join(printed)))
    raise typer.Exit(code)
