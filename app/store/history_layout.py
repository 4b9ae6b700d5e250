"""The history store's on-disk layout, pure: partition and file names, table schemas,
row checks. No I/O beyond pyarrow types; :mod:`app.store.history` does the writing and
reading.

Layout (one directory tree per table; ``table`` is ``samples``, ``events`` or
``records``)::

    <root>/<table>/app=<app>/day=<YYYY-MM-DD>/<file>.parquet

- ``day`` is the UTC date of each row's ``ts_s``: ``ts_s = 1704067199.5`` →
  ``day=2023-12-31``; ``ts_s = 1704067200.0`` → ``day=2024-01-01``.
- ``app`` is percent-encoded (:func:`app_dir_name`), so no app name can leave the
  root: ``"a/b"`` → ``app=a%2Fb``, ``".."`` → ``app=%2E.``. The empty app is stored as
  ``app=_unknown``; a literal app ``"_unknown"`` as ``app=%5Funknown``. The real app
  name is also a column of every file, so readers never depend on the directory name.
  An app that cannot be represented (not a ``str``, not encodable as UTF-8, or whose
  directory name would exceed 255 bytes) is refused with a ``ValueError`` naming it.
- Files are ``part-<ns>-<id>.parquet`` (one per write) or ``compact-<ns>-<id>.parquet``
  (written by :meth:`app.store.history.HistoryStore.compact`). Names beginning with
  ``.`` or ``_`` are never data: pyarrow datasets, Ray Data and the store all skip them.

Columns:

- ``samples``: ``container``, ``app``, then every name of
  :data:`app.core.sample.METRICS` (``ts_s`` first) as ``float64``; ``nan`` and
  ``inf`` are stored as such.
- ``events``: ``container``, ``app``, ``ts_s``, ``kind`` (an ``EventKind`` value),
  ``detail``.
- ``records``: ``kind``, ``ts_s``, ``container``, ``app`` and ``json``, the whole
  record as JSON (``sort_keys``; ``nan``/``inf`` written as Python's ``NaN`` /
  ``Infinity`` so they round-trip through :func:`json.loads`), so a record of any
  shape fits.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa

from prescale.app.core.sample import METRICS

TABLES: tuple[str, ...] = ("samples", "events", "records")
DAY_S = 86_400.0
UNKNOWN_APP_DIR = "_unknown"
MAX_DIR_NAME_BYTES = 255
REPLACES_KEY = b"prescale.replaces"
TABLE_KEY = b"prescale.table"
PART_PREFIX = "part-"
COMPACT_PREFIX = "compact-"
TMP_PREFIX = ".tmp-"
#: The earliest and latest ``ts_s`` a day partition can be named for (years 1–9999).
MIN_TS_S = -62_135_596_800.0
MAX_TS_S = 253_402_300_800.0  # exclusive: 10000-01-01
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()

SAMPLES_SCHEMA = pa.schema(
    [("container", pa.string()), ("app", pa.string())] + [(m, pa.float64()) for m in METRICS]
)
EVENTS_SCHEMA = pa.schema(
    [
        ("container", pa.string()),
        ("app", pa.string()),
        ("ts_s", pa.float64()),
        ("kind", pa.string()),
        ("detail", pa.string()),
    ]
)
RECORDS_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("ts_s", pa.float64()),
        ("container", pa.string()),
        ("app", pa.string()),
        ("json", pa.string()),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {
    "samples": SAMPLES_SCHEMA,
    "events": EVENTS_SCHEMA,
    "records": RECORDS_SCHEMA,
}


def app_dir_name(app: Any) -> str:
    """The partition directory name of ``app``; ``ValueError`` naming it if impossible.

    Examples: ``""`` → ``app=_unknown``; ``"web"`` → ``app=web``; ``"a/b"`` →
    ``app=a%2Fb``; ``".."`` → ``app=%2E.``; ``"_unknown"`` → ``app=%5Funknown``.
    A leading ``.`` or ``_`` is always encoded, so the value never looks hidden.
    """
    if not isinstance(app, str):
        raise ValueError(f"app {app!r}: must be a str, got {type(app).__name__}")
    if app == "":
        value = UNKNOWN_APP_DIR
    else:
        try:
            value = quote(app, safe="")
        except UnicodeEncodeError as exc:
            raise ValueError(f"app {app!r}: cannot be encoded as UTF-8 ({exc.reason})") from None
        if value[0] in "._":
            value = f"%{ord(value[0]):02X}{value[1:]}"
    name = f"app={value}"
    if len(name.encode()) > MAX_DIR_NAME_BYTES:
        raise ValueError(
            f"app {app!r}: too long, its directory name {name[:40]}… would be "
            f"{len(name.encode())} bytes (at most {MAX_DIR_NAME_BYTES})"
        )
    return name


def app_from_dir_name(name: str) -> str | None:
    """Inverse of :func:`app_dir_name`; ``None`` for a name that is not an app directory."""
    if not name.startswith("app="):
        return None
    value = name[4:]
    return "" if value == UNKNOWN_APP_DIR else unquote(value, errors="strict")


def day_index(ts_s: float) -> int:
    """Days since 1970-01-01 UTC of ``ts_s``: ``86399.5`` → 0, ``86400.0`` → 1, ``-0.5`` → -1."""
    return math.floor(ts_s / DAY_S)


def day_name(index: int) -> str:
    """``YYYY-MM-DD`` of a day index: 0 → ``1970-01-01``; 19723 → ``2024-01-01``."""
    return dt.date.fromordinal(_EPOCH_ORDINAL + index).isoformat()


def day_start_s(name: str) -> float:
    """``ts_s`` of the start (00:00 UTC) of day ``YYYY-MM-DD``: ``2024-01-01`` → 1704067200.0."""
    return (dt.date.fromisoformat(name).toordinal() - _EPOCH_ORDINAL) * DAY_S


def day_in_range(name: str, since_s: float | None, until_s: float | None) -> bool:
    """Whether day ``name`` ([start, start + 1 day)) overlaps ``[since_s, until_s)``.

    Example: day ``1970-01-02`` spans [86400, 172800): ``since_s=172800`` → False,
    ``since_s=172799.9`` → True, ``until_s=86400`` → False, ``until_s=86400.1`` → True.
    """
    start = day_start_s(name)
    if since_s is not None and start + DAY_S <= since_s:
        return False
    return not (until_s is not None and start >= until_s)


def day_expired(name: str, cutoff_s: float) -> bool:
    """A day is expired when all of it is older than ``cutoff_s`` (its end ≤ cutoff).

    Example: now = 2024-01-10 12:00 UTC, max_age 7 days → cutoff 2024-01-03 12:00:
    ``2024-01-02`` (ends 2024-01-03 00:00) is expired, ``2024-01-03`` is not.
    """
    return day_start_s(name) + DAY_S <= cutoff_s


def is_data_file(name: str) -> bool:
    """Visible Parquet data file: not hidden (``.``/``_`` prefix), ends in ``.parquet``."""
    return not name.startswith((".", "_")) and name.endswith(".parquet")


def live_files(names: Iterable[str], replaces: dict[str, list[str]]) -> list[str]:
    """The data files a reader uses: every name not replaced by an existing compacted file.

    ``replaces`` maps each compacted file that exists to the names it replaces.
    Example: names ``[p1, p2, p3, c1]``, ``replaces = {c1: [p1, p2]}`` → ``[c1, p3]``.
    A compacted file replaced by a newer one is skipped too (its rows are in the newer).
    """
    replaced = {r for c, rs in replaces.items() for r in rs}
    return sorted(n for n in names if n not in replaced)


def check_ts(ts: np.ndarray, what: str, labels: Callable[[int], str]) -> None:
    """``ValueError`` naming the first ``ts`` (``what[i]``, ``labels(i)``) that is not a
    finite time in years 1–9999 (one a day partition can be named for)."""
    ok = np.isfinite(ts) & (ts >= MIN_TS_S) & (ts < MAX_TS_S)
    if not ok.all():
        i = int(np.argmin(ok))
        raise ValueError(
            f"{what}[{i}] ({labels(i)}): ts_s must be finite (a time in years 1–9999), "
            f"got {float(ts[i])!r}"
        )


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"value of type {type(obj).__name__} is not JSON serialisable")


def record_row(i: int, rec: Any) -> tuple[str, float, str, str, str]:
    """Validate one decision record; its ``(kind, ts_s, container, app, json)`` row."""
    if not isinstance(rec, dict):
        raise ValueError(f"records[{i}]: must be a dict, got {type(rec).__name__}")
    kind = rec.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"records[{i}]: kind must be a non-empty str, got {kind!r}")
    ts = rec.get("ts_s")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError(f"records[{i}] (kind {kind!r}): ts_s must be a number, got {ts!r}")
    ts = float(ts)
    if not (math.isfinite(ts) and MIN_TS_S <= ts < MAX_TS_S):
        raise ValueError(
            f"records[{i}] (kind {kind!r}): ts_s must be finite (a time in years 1–9999), "
            f"got {ts!r}"
        )
    container = rec.get("container")
    if not isinstance(container, str):
        raise ValueError(
            f"records[{i}] (kind {kind!r}): container must be a str, got {container!r}"
        )
    app = rec.get("app", "")
    if app is None:
        app = ""
    app_dir_name(app)
    try:
        text = json.dumps(rec, sort_keys=True, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"records[{i}] (kind {kind!r}): not JSON serialisable: {exc}") from None
    return kind, ts, container, app, text


def split_by_partition(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """Rows of ``table`` (with ``app`` and ``ts_s`` columns) grouped by partition:
    ``(app directory, day, rows)``, rows in their input order.

    Example: apps ``[web, web, db]`` at ``ts_s`` ``[0, 86400, 5]`` →
    ``(app=web, 1970-01-01, row 0)``, ``(app=web, 1970-01-02, row 1)``,
    ``(app=db, 1970-01-01, row 2)`` (in some order).
    """
    if table.num_rows == 0:
        return []
    enc = table.column("app").combine_chunks().dictionary_encode()
    names = enc.dictionary.to_pylist()
    apps = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    days = np.floor(table.column("ts_s").to_numpy() / DAY_S).astype(np.int64)
    first_day = int(days.min())
    keys = apps * (int(days.max()) - first_day + 1) + (days - first_day)
    if (keys == keys[0]).all():
        return [(app_dir_name(names[apps[0]]), day_name(int(days[0])), table)]
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return [
        (app_dir_name(names[apps[c[0]]]), day_name(int(days[c[0]])), table.take(pa.array(c)))
        for c in np.split(order, bounds)
    ]


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: missing ones null, extra ones dropped."""
    bare = schema.remove_metadata()
    if table.schema.remove_metadata().equals(bare):
        return table.replace_schema_metadata(None)
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=bare)


def type_ok(t: type, typ: pa.DataType) -> bool:
    """Whether a value of type ``t`` fits a column of ``typ`` (a str, or a number that is
    not a bool)."""
    if typ == pa.string():
        return issubclass(t, str)
    return t is not bool and issubclass(t, int | float | np.floating | np.integer)
