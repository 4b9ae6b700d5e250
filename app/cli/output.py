"""One output convention for every `prescale` command that prints a result.

``-o/--output table|json|jsonl``:

- ``table`` (the default): for people. Sizes in MiB/GiB, CPU in cores, times ISO 8601
  with their zone, probabilities as ``<0.001`` rather than ``2.36e-213``.
- ``json``: exactly one JSON document on stdout (``… | python -m json.tool`` reads it),
  raw numbers (bytes, cores, seconds, epoch seconds, probabilities). A command that lists
  records (``events``, ``history``, ``models list``, ``retrain``) prints them as one array.
- ``jsonl``: one JSON object per line. A listing prints one record per line, the same
  objects as the ``json`` array in the same order; a command with one result prints that
  object on one line.

JSON has no inf/nan: they are ``null`` (an unlimited limit, a p_fail not known yet).
``--json`` (where a command had it) is the same as ``-o json``; both given and
disagreeing is a usage error (exit 2). Messages, warnings and progress go to stderr, so
stdout holds only the result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

import typer


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"


_ONE = ("Output: table (for people), json (one JSON document, raw numbers) or jsonl "
        "(the same object on one line).")
_LIST = ("Output: table (for people), json (one JSON array of the records, raw numbers) "
         "or jsonl (one record per line, the same objects).")

#: ``-o`` of a command with one result
OutputOpt = Annotated[Output | None, typer.Option(
    "--output", "-o", case_sensitive=False, show_default=False, help=_ONE + " Default: table.")]
#: ``-o`` of a command that lists records
ListOutputOpt = Annotated[Output | None, typer.Option(
    "--output", "-o", case_sensitive=False, show_default=False, help=_LIST + " Default: table.")]
#: ``--json``, kept where a command had it
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as -o json.")]


def output_of(output: Output | None, as_json: bool = False) -> Output:
    """The output asked for: ``--json`` is ``-o json``; neither is ``table``. ``--json``
    with another ``-o`` is a usage error (exit 2, both named)."""
    if as_json and output not in (None, Output.JSON):
        raise typer.BadParameter(f"--json means -o json, not -o {output.value}: give one",
                                 param_hint="'--json' / '-o'")
    return Output.JSON if as_json else (output or Output.TABLE)


def jsonable(v: Any) -> Any:
    """``v`` with inf/nan as ``None`` (JSON has neither), tuples as lists, numpy scalars
    as numbers; ``{"limit": inf, "p": nan, "x": (1, 2)}`` → ``{"limit": None, "p": None,
    "x": [1, 2]}``."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if v is None or isinstance(v, str | int | bool):
        return v
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item):
        return jsonable(item())
    return str(v)


def dumps(v: Any, indent: int | None = None) -> str:
    return json.dumps(jsonable(v), indent=indent, allow_nan=False, ensure_ascii=False)


def emit(fmt: Output, doc: Any) -> bool:
    """Print a one-result command's ``doc`` as ``fmt`` asks (json: indented; jsonl: one
    line). Returns False for ``table`` (the caller prints its table)."""
    if fmt is Output.TABLE:
        return False
    print(dumps(doc, indent=2 if fmt is Output.JSON else None))
    return True


def emit_records(fmt: Output, records: Iterable[Any]) -> bool:
    """Print a listing's records as ``fmt`` asks (json: one array; jsonl: one per line).
    Returns False for ``table``."""
    if fmt is Output.TABLE:
        return False
    if fmt is Output.JSON:
        print(dumps(list(records), indent=2))
    else:
        for r in records:
            print(dumps(r))
    return True
