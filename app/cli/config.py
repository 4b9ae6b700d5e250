"""`prescale config`: the effective settings and the configuration reference."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from prescale.app.cli.common import ConfigOpt, settings_or_exit

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, not TOML-like text.")] = False,
) -> None:
    """Print the effective settings (file + PRESCALE_* environment + defaults)."""
    s = settings_or_exit(config)
    data = s.model_dump(mode="json")
    if as_json:
        print(json.dumps(data, indent=2))
        return
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for k, v in scalars.items():
        print(f"{k} = {json.dumps(v)}")
    for group, values in data.items():
        if isinstance(values, dict):
            print(f"\n[{group}]")
            for k, v in values.items():
                print(f"{k} = {json.dumps(v)}")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), as in the README."""
    from prescale.app.settings import reference_markdown

    print(reference_markdown(), end="")
