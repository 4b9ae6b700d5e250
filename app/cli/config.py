"""`prescale config`: the effective settings and the configuration reference."""

from __future__ import annotations

import json
import re
from typing import Any

from prescale.app.cli.common import ConfigOpt, new_app, settings_or_exit
from prescale.app.cli.output import JsonOpt, OutputOpt, emit, output_of

config_app = new_app("Inspect the configuration.", no_args_is_help=True)

_BYTES_KEY = re.compile(r"_bytes(_per_s)?$")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective settings (file + PRESCALE_* environment + defaults). The table
    is TOML that reads back as a config file: sizes in Kubernetes form where exact
    ("2Gi", "512Mi"), the rest as stored (seconds in *_s, cores in *_cores; secrets such
    as api.token masked); -o json gives every value raw (bytes as numbers)."""
    s = settings_or_exit(config)
    data = s.model_dump(mode="json")
    if emit(output_of(output, as_json), data):
        return
    print(toml_text(s), end="")


def toml_text(s: Any) -> str:
    """The settings as TOML that reads back to the same settings, sizes readable:
    ``pool.reserve_memory_bytes = 2147483648`` is written ``reserve_memory_bytes =
    "2Gi"`` under ``[pool]``; seconds (``*_s``) and cores (``*_cores``) as stored. A
    group is a ``[table]``, ``workloads`` an array of tables, other maps inline; an unset
    value (TOML has no null) is a comment naming it."""
    from pydantic import BaseModel

    data = s.model_dump(mode="json")
    head: list[str] = []
    groups: list[str] = []
    for name, field in type(s).model_fields.items():
        ann, v = field.annotation, data[name]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            groups.append(f"\n[{name}]")
            groups += [_line(k, x, f"{name}.") for k, x in v.items()]
        elif name == "workloads":
            for item in v:
                groups.append(f"\n[[{name}]]")
                groups += [_line(k, x, f"{name}[].") for k, x in item.items()]
        else:
            head.append(_line(name, v))
    return "\n".join(head + groups) + "\n"


def _line(key: str, v: Any, prefix: str = "") -> str:
    return f"# {prefix}{key}: not set" if v is None else f"{key} = {_value(key, v)}"


def _value(key: str, v: Any) -> str:
    """One TOML value; a whole number of bytes (a ``*_bytes`` or ``*_bytes_per_s`` key)
    in its exact Kubernetes form, e.g. ``"512Mi"``."""
    from prescale.app.core.quantity import to_quantity

    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_value(str(k), x)}"
                               for k, x in v.items() if x is not None) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(key, x) for x in v) + "]"
    if _BYTES_KEY.search(key) and isinstance(v, int | float) and not isinstance(v, bool):
        return json.dumps(to_quantity(v))
    return json.dumps(v)


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown), as in the README."""
    from prescale.app.settings import reference_markdown

    print(reference_markdown(), end="")
