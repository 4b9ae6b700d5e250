"""The `prescale` command line (Typer).

One module a command group: :mod:`.run` (up, serve, demo), :mod:`.observe` (status,
events, history), :mod:`.traces` (replay, and the trace loading train and models
evaluate share), :mod:`.training` (train, tune, retrain), :mod:`.models`,
:mod:`.thresholds`, :mod:`.config`, :mod:`.bench` (bench, evaluate), :mod:`.workloads`
(policies, describe); :mod:`.common` holds what they share and :mod:`.output` the one
output convention (``-o table|json|jsonl``). This module assembles them: the top-level
commands in the order ``prescale --help`` lists them, then the groups.

Conventions every command keeps (tests/e2e/test_cli_conventions.py walks them all):
``-h``/``--help``; ``-o/--output`` on every command that prints a result; the exit
codes of :data:`EXIT_CODES`; ``--version``; shell completion (``--install-completion``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from prescale.app.cli import (
    bench,
    config,
    models,
    observe,
    run,
    thresholds,
    traces,
    training,
    workloads,
)
from prescale.app.cli.common import TYPER_SETTINGS

#: the exit codes, as the help states them
EXIT_CODES = {
    0: "ok",
    1: "runtime failure: nothing to show yet, nothing learned, a failed run",
    2: "bad input or configuration: the message names the flag, field or\n"
       "     path, and nothing is changed",
    3: "status --check: the loop is stale (no tick within --stale-after)",
    4: "status --check: the loop is degraded (writes failing)",
}

HELP = ("prescale: predict container failures and add resources before they happen.\n\n"
        "Every command that prints a result takes -o/--output table|json|jsonl: table for "
        "people (sizes in MiB/GiB, CPU in cores, times ISO 8601 with their zone), json for "
        "one JSON document (raw numbers: bytes, cores, seconds), jsonl for one JSON object "
        "per line. Sizes are read in Kubernetes form (512Mi, 2Gi, 2G), CPU as cores or "
        "millicores (500m), durations as 90s, 1h30m, 2d.\n\n"
        "\b\nExit codes:\n"
        + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items()))

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=True, **TYPER_SETTINGS)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prescale")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        print(f"prescale {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print prescale's version and exit.")] = False,
) -> None:
    pass


for command in (run.up, run.serve, observe.status, observe.events, run.demo, observe.history,
                traces.replay, training.train, training.tune, training.retrain, bench.evaluate,
                workloads.policies, workloads.describe):
    app.command()(command)
app.add_typer(config.config_app, name="config")
app.add_typer(models.models_app, name="models")
app.add_typer(thresholds.threshold_app, name="threshold")
app.add_typer(bench.bench_app, name="bench")


def main() -> None:
    app()
