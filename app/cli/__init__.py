"""The `prescale` command line (Typer).

Exit codes: 0 ok; 1 runtime failure; 2 bad configuration or bad input (the message
names the field or path).

One module a command group: :mod:`.run` (up, serve, demo), :mod:`.observe` (status,
events, history), :mod:`.traces` (replay, and the trace loading train and models
evaluate share), :mod:`.training` (train, tune, retrain), :mod:`.models`,
:mod:`.thresholds`, :mod:`.config`, :mod:`.bench` (bench, evaluate); :mod:`.common` holds
what they share. This module assembles them: the top-level commands in the order
``prescale --help`` lists them, then the groups.
"""

from __future__ import annotations

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

app = typer.Typer(
    help="prescale: predict container failures and add resources before they happen.",
    no_args_is_help=True,
    add_completion=False,
)
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
