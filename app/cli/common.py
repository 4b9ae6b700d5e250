"""What every `prescale` command shares: the consoles, the --config and --mode options,
loading the settings (exit 2 naming the field), opening the history store and the model
registry, time and quantity options (exit 2 naming the flag) and the human formats of
the tables (:mod:`prescale.app.status_view`).

Nothing heavy is imported at module level (the settings pull in the whole core): ``-h``
and shell completion, which runs the program on every Tab, stay fast."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from prescale.app.status_view import (  # noqa: F401 - the CLI's human formats, re-exported
    fmt_bytes,
    fmt_cores,
    fmt_limit,
    fmt_probability,
    fmt_rate,
    fmt_time,
)

if TYPE_CHECKING:
    from prescale.app.settings import Settings

# Tables keep their shape when piped (rich assumes 80 columns without a terminal).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

#: settings.Mode's values (tests/unit/test_cli_output.py holds them equal)
MODES = ("off", "recommend", "auto")
ModeName = Literal["off", "recommend", "auto"]

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: configs/local.toml)."),
]
ModeOpt = Annotated[ModeName | None, typer.Option(
    "--mode", help="off (observe) | recommend (decide, touch nothing) | auto (apply); "
    "default: the settings' mode.")]

#: typer's options: the CLI's help, completion and usage errors
TYPER_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": None,  # plain help: no <bool> after flags, no boxes in a pipe
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


def new_app(help: str, **kw: Any) -> typer.Typer:
    """A command group with the CLI's conventions (``-h``, plain help)."""
    return typer.Typer(help=help, **TYPER_SETTINGS, **kw)


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    from prescale.app.settings import ConfigError, load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def fail(message: str, code: int = 2) -> typer.Exit:
    """Say ``error: message`` on stderr; the exit to raise (2: bad input, 1: runtime)."""
    err.print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code)


def status_or_exit(s: Settings) -> dict[str, Any]:
    """The last tick's status (``status.json``, or its RAM copy when the disk refused it);
    exit 1 with the reason when there is none or it is unreadable."""
    from prescale.app.store import jsonfile

    path = Path(s.data_dir) / "status.json"
    try:
        snap = jsonfile.read_newest(path)
    except ValueError as exc:
        raise fail(str(exc), 1) from None
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
        raise fail(f"history.uri: {exc}") from None


def time_option(text: str | None, name: str) -> float | None:
    """``--since``/``--until``: ``2h``, ``1h30m``, ``now``, epoch seconds or ISO 8601;
    exit 2 naming the flag."""
    from prescale.app.timeparse import parse_time_s

    if text is None:
        return None
    try:
        return parse_time_s(text, time.time())
    except ValueError as exc:
        raise fail(f"{name}: {exc}") from None


def _parsed_option(text: str | None, parse: Callable[..., float], name: str
                   ) -> float | None:
    """``parse(text, field=name)``, or ``None`` without a text; exit 2 with the parser's
    message (which names the flag)."""
    if text is None:
        return None
    try:
        return parse(text, field=name)
    except ValueError as exc:
        raise fail(str(exc)) from None


def duration_option(text: str | None, name: str) -> float | None:
    """A duration flag (``90s``, ``1h30m``, ``2d``, seconds); exit 2 naming the flag."""
    from prescale.app.timeparse import parse_duration_s

    return _parsed_option(text, parse_duration_s, name)


def bytes_option(text: str | None, name: str) -> float | None:
    """A size flag in Kubernetes form (``512Mi``, ``2Gi``, ``2G``); exit 2 naming it."""
    from prescale.app.core.quantity import parse_bytes

    return _parsed_option(text, parse_bytes, name)


def cores_option(text: str | None, name: str) -> float | None:
    """A CPU flag (``1.5``, ``500m``); exit 2 naming it."""
    from prescale.app.core.quantity import parse_cores

    return _parsed_option(text, parse_cores, name)


def open_registry(s: Settings):
    from prescale.app.store.registry import ModelRegistry
    from prescale.app.store.registry_index import CorruptModelError

    try:
        return ModelRegistry(s.registry_dir())
    except (CorruptModelError, ValueError, OSError) as exc:
        raise fail(f"model registry {s.registry_dir()}: {exc}") from None
