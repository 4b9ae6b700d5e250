"""`prescale threshold`: list, get and set the failure-probability thresholds per owner
and app (a running coordinator picks a change up at its next tick)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from prescale.app.cli.common import ConfigOpt, err, settings_or_exit
from prescale.app.settings import Settings

threshold_app = typer.Typer(help="Failure-probability thresholds per owner and app.",
                            no_args_is_help=True)


def _threshold_args(s: Settings):
    from prescale.app.core.thresholds import ThresholdConfig
    from prescale.app.store.thresholds_store import FILE

    return Path(s.data_dir).resolve() / FILE, ThresholdConfig.from_settings(s.thresholds)


@threshold_app.command("list")
def threshold_list(config: ConfigOpt = None) -> None:
    """Every stored threshold, the default, and each known app's thresholds in effect."""
    from prescale.app.store.thresholds_store import list_thresholds

    path, cfg = _threshold_args(settings_or_exit(config))
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

    path, cfg = _threshold_args(settings_or_exit(config))
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

    path, cfg = _threshold_args(settings_or_exit(config))
    try:
        out_d = set_threshold(path, app=app_name, owner=owner, tier=tier, value=value,
                              min=min_value, max=max_value, sensitivity=sensitivity, config=cfg)
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    print(json.dumps(out_d, indent=2, default=str))
