"""`prescale bench` (ingest and tick benchmarks, each as a ratio against a floor measured
in the same run) and `prescale evaluate` (the engine and the baselines over scenarios)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from prescale.app.cli.common import ConfigOpt, err

bench_app = typer.Typer(help="Benchmarks (ratios against a floor measured in the same run).",
                        no_args_is_help=True)


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
