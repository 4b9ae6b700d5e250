"""What every `prescale` command shares: the consoles, the --config and --mode options,
loading the settings (exit 2 naming the field), opening the history store and the model
registry, time options and the byte / core formats of the tables."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from prescale.app.settings import ConfigError, Mode, Settings, load_settings

# Tables keep their shape when piped (rich assumes 80 columns without a terminal).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: configs/local.toml)."),
]
ModeOpt = Annotated[Mode | None, typer.Option("--mode", help="off | recommend | auto.")]


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def fmt_bytes(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "unlimited" if v is not None and v > 0 else "-"
    return f"{v / 2**20:,.1f} MiB"


def fmt_cores(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.2f}"


def status_or_exit(s: Settings) -> dict[str, Any]:
    """The last tick's status (``status.json``, or its RAM copy when the disk refused it);
    exit 1 with the reason when there is none or it is unreadable."""
    from prescale.app.store import jsonfile

    path = Path(s.data_dir) / "status.json"
    try:
        snap = jsonfile.read_newest(path)
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None
    if snap is None:
        err.print(f"no status yet at {path}: start `prescale up` (or `prescale demo`)")
        raise typer.Exit(1)
    return snap


def warn_unreadable(store) -> None:
    """Name each history file a read passed over because it cannot be read."""
    for path, why in sorted(store.unreadable.items()):
        err.print(f"warning: skipped unreadable history file {path} ({why}); its rows are "
                  f"not shown: move it aside or delete it")


def open_store(s: Settings):
    from prescale.app.store.history import HistoryStore

    try:
        return HistoryStore(s.history_uri(), flush_interval_s=s.history.flush_interval_s)
    except ValueError as exc:
        err.print(f"error: history.uri: {exc}")
        raise typer.Exit(2) from None


def time_option(text: str | None, name: str) -> float | None:
    from prescale.app.timeparse import parse_time_s

    if text is None:
        return None
    try:
        return parse_time_s(text, time.time())
    except ValueError as exc:
        err.print(f"error: {name}: {exc}")
        raise typer.Exit(2) from None


def open_registry(s: Settings):
    from prescale.app.store.registry import ModelRegistry
    from prescale.app.store.registry_index import CorruptModelError

    try:
        return ModelRegistry(s.registry_dir())
    except (CorruptModelError, ValueError, OSError) as exc:
        err.print(f"error: model registry {s.registry_dir()}: {exc}")
        raise typer.Exit(2) from None
