"""`prescale threshold`: list, get and set the failure-probability thresholds per owner
and app (a running coordinator picks a change up at its next tick)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    fail,
    fmt_probability,
    new_app,
    out,
    settings_or_exit,
)
from prescale.app.cli.output import OutputOpt, emit, output_of

if TYPE_CHECKING:
    from prescale.app.settings import Settings

threshold_app = new_app("Failure-probability thresholds per owner and app.",
                        no_args_is_help=True)


def _threshold_args(s: Settings):
    from prescale.app.core.thresholds import ThresholdConfig
    from prescale.app.store.thresholds_store import FILE

    return Path(s.data_dir).resolve() / FILE, ThresholdConfig.from_settings(s.thresholds)


def _table(title: str, rows: list[tuple[str, str, dict[str, Any]]]) -> Table:
    """One row per scope and tier: the value in effect (and where it came from), its
    learned bounds and step, whether it moved by itself, and the recent outcomes."""
    table = Table(title=title)
    for col in ("scope", "tier", "p_fail threshold", "from", "learned bounds", "step",
                "learned", "recent outcomes"):
        table.add_column(col)
    for scope, tier, d in rows:
        src = (d.get("source") or {}).get("value", "-")
        recent = d.get("recent")
        seen = ("-" if not recent else
                f"{recent.get('n', 0)} judged: {recent.get('false_positive', 0)} false "
                f"alarms, {recent.get('miss', 0)} misses")
        table.add_row(scope, tier, fmt_probability(d.get("value")), str(src),
                      f"{fmt_probability(d.get('min'))}–{fmt_probability(d.get('max'))}",
                      f"{d.get('sensitivity', 0):g}", "yes" if d.get("learned") else "no",
                      seen)
    return table


def _scope_rows(scope: str, tiers: dict[str, dict[str, Any]]
                ) -> list[tuple[str, str, dict[str, Any]]]:
    return [(scope, tier, d) for tier, d in tiers.items()]


@threshold_app.command("list")
def threshold_list(config: ConfigOpt = None, output: OutputOpt = None) -> None:
    """Every stored threshold, the default, and each known app's thresholds in effect
    (-o json: default, set (what each scope stores), app_owner, apps)."""
    from prescale.app.store.thresholds_store import list_thresholds

    fmt = output_of(output)
    path, cfg = _threshold_args(settings_or_exit(config))
    try:
        doc = list_thresholds(path, cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if emit(fmt, doc):
        return
    rows = _scope_rows("default", doc["default"])
    for app, tiers in doc["apps"].items():
        owner = doc["app_owner"].get(app)
        rows += _scope_rows(f"app:{app}" + (f" (owner:{owner})" if owner else ""), tiers)
    out.print(_table(f"thresholds in {path}", rows))


@threshold_app.command("get")
def threshold_get(
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """The thresholds in effect for an app or owner (and where each value came from)."""
    from prescale.app.store.thresholds_store import get_thresholds

    fmt = output_of(output)
    path, cfg = _threshold_args(settings_or_exit(config))
    try:
        doc = get_thresholds(path, app=app_name, owner=owner, config=cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if emit(fmt, doc):
        return
    scope = (f"app:{app_name}" if app_name else f"owner:{owner}" if owner else "default")
    if app_name and doc.get("owner"):
        scope += f" (owner:{doc['owner']})"
    out.print(_table(f"thresholds in effect for {scope}",
                     _scope_rows(scope, doc["thresholds"])))


@threshold_app.command("set")
def threshold_set(
    tier: Annotated[str, typer.Option(help="memory | cpu | disk | network | io")],
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
    output: OutputOpt = None,
) -> None:
    """Set a threshold, its bounds or sensitivity for an app, an owner or the default.
    A running coordinator picks the change up at its next tick. A bad value (exit 2)
    changes nothing."""
    from prescale.app.store.thresholds_store import set_threshold

    fmt = output_of(output)
    path, cfg = _threshold_args(settings_or_exit(config))
    try:
        doc = set_threshold(path, app=app_name, owner=owner, tier=tier, value=value,
                            min=min_value, max=max_value, sensitivity=sensitivity, config=cfg)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if emit(fmt, doc):
        return
    out.print(_table(f"set in {path}", [(doc["scope"], doc["tier"], doc["threshold"])]))
