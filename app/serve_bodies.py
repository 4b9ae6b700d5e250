"""Prediction request bodies as arrays, validated as a whole (pure: numpy, pyarrow and
orjson; no Ray, no HTTP, no file I/O): an Apache Arrow IPC stream (:func:`arrow_job`),
JSON read by orjson straight into arrays (:func:`json_job`), and the answer as an Arrow
table (:func:`predictions_table`).

The Arrow request (``Content-Type: application/vnd.apache.arrow.stream``)
    One row per sample, as a history store or a pandas frame holds them:

    - ``container`` (string, required): the container's name, 1–256 characters;
    - ``app`` (string, optional, one per container; null or absent = ``""``);
    - ``ts_s`` (number, required): Unix time of the reading, finite, in ``[0, 1e11]``;
    - any metric of :data:`app.core.sample.METRICS` (any integer or floating type):
      null or NaN = not available, ``inf`` only in the limits (unlimited); every
      other value finite, ``≥ 0`` and ``≤ 1e18``. An absent column is the sample's
      default for every row (``inf`` for the limits, else not available), as an
      absent key of a JSON ``series``.

    Rows may come in any order: containers are answered in the order of their first
    row, each window sorted by ``ts_s`` (stable), as JSON windows are. The schema
    metadata key ``now_s`` (a number as text) is the JSON body's ``now_s``. Only the
    stream format (the file format is refused with 400). Its buffers may be compressed
    (LZ4 frame or ZSTD, ``IpcWriteOptions(compression=...)``): each compressed buffer
    declares its decompressed size, and a stream that declares more than
    ``max_body_bytes`` in all is refused (413) before anything is decompressed.
    float32 columns are read as float64: the same numbers, so the same answers, when
    float32 holds them exactly (:func:`app.serve_client.arrow_body` narrows only such
    columns).

    Worked example: rows ``(c="a", ts_s=2, mem=5)``, ``(c="b", ts_s=1)``,
    ``(c="a", ts_s=1, mem=null)`` → containers ``["a", "b"]``, window ``[2, 2, M]``;
    a's rows ``[ts 1, mem nan]``, ``[ts 2, mem 5]``; b's row 0 is padding (all nan),
    row 1 its sample, with ``memory_limit_bytes = inf`` (the column is absent).

Validation as a whole
    Each column is checked with a few vectorised comparisons over all its rows; the
    answer names every bad column with its first bad row and that row's container
    (422): ``"memory_usage_bytes, row 17 (container 'c3'): must be ≥ 0, got -1"``. The
    request limits (``max_containers``, ``max_samples``: containers × the longest
    window) are checked from the IPC headers and the container column, before any
    value is read (413, the same words as for JSON).

JSON by orjson (:func:`json_job`)
    A ``containers`` body is parsed by orjson and each metric of all containers becomes
    one numpy column at once, checked by the same vectorised rules: no pydantic object
    per sample. It takes only what it can prove is valid and answers ``None``
    otherwise (any error, a ``features`` body, a string other than ``"inf"`` where a
    number goes, a ``true``/``false`` anywhere in the body, NaN literals): the caller
    then runs the pydantic models, whose answer (value or 4xx) is the reference; so
    both paths give the same answer for every body (a hypothesis property in
    tests/unit/test_serve_bodies.py; over HTTP in tests/integration/test_serve_api.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from prescale.app.api_models import (
    API_VERSION,
    DEFAULT_ROW,
    INF_OK,
    MAX_NAME_CHARS,
    MAX_TS_S,
    MAX_VALUE,
    METRIC_INDEX,
)
from prescale.app.core.features import F
from prescale.app.core.gc_pause import gc_paused
from prescale.app.core.sample import METRICS
from prescale.app.serve_jobs import (
    Job,
    JobResult,
    no_forecast_reasons,
    size_reason,
    tier_labels,
)

CONTAINER_COLUMN = "container"
APP_COLUMN = "app"
#: Schema metadata key of the decision time (the JSON body's ``now_s``).
NOW_KEY = b"now_s"
_N_METRICS = len(METRICS)
_METRIC_SET = frozenset(METRICS)
#: Most problems listed in one 422 (the rest are counted).
MAX_PROBLEMS = 10


# ============================================================================ errors


@dataclass(frozen=True)
class Problem:
    """One bad thing in a body: where (``column``, ``row`` of the table; None = the
    whole body or column) and what (``msg``, ``type``)."""

    column: str | None
    row: int | None
    msg: str
    type: str = "value_error"
    container: str | None = None

    def text(self) -> str:
        where = self.column or "body"
        if self.row is not None:
            where += f", row {self.row}"
            if self.container is not None:
                where += f" (container {self.container!r})"
        return f"{where}: {self.msg}"

    def entry(self) -> dict[str, Any]:
        loc: list[Any] = ["body"]
        if self.column is not None:
            loc.append(self.column)
        if self.row is not None:
            loc.append(self.row)
        return {"loc": loc, "field": self.column or "body", "row": self.row,
                "container": self.container, "msg": self.msg, "type": self.type}


class BodyError(ValueError):
    """A body that cannot be served: the HTTP ``status`` (400: not a readable Arrow
    stream; 413: above a request limit; 422: bad columns or values) and its problems.
    :meth:`payload` is the answer's JSON (the shape of the JSON path's errors:
    ``detail`` with one entry per problem, ``message`` naming each)."""

    def __init__(self, status: int, problems: Sequence[Problem] | str) -> None:
        self.status = status
        self.problems = [] if isinstance(problems, str) else list(problems)
        self.sentence = problems if isinstance(problems, str) else None
        super().__init__(self.message())

    def message(self) -> str:
        if self.sentence is not None:
            return self.sentence
        shown = "; ".join(p.text() for p in self.problems[:MAX_PROBLEMS])
        more = len(self.problems) - MAX_PROBLEMS
        return shown + (f"; … and {more} more" if more > 0 else "")

    def payload(self) -> dict[str, Any]:
        if self.sentence is not None:  # 413: a sentence, as the JSON path's 413
            return {"detail": self.sentence}
        return {"detail": [p.entry() for p in self.problems[:MAX_PROBLEMS]],
                "message": self.message()}


# ============================================================================ values


def column_problem(name: str, values: np.ndarray) -> tuple[int, str] | None:
    """The first bad row of one column of a window and why, or None; the rules of
    :func:`app.api_models.window_rows` (null/NaN = not available):

    - ``ts_s``: finite, ``≥ 0``, ``≤ 1e11``;
    - a metric: ``≥ 0``; finite and ``≤ 1e18``, except ``inf`` in a limit.

    Worked example: ``column_problem("memory_usage_bytes", [5, nan, -1])`` →
    ``(2, "must be ≥ 0, got -1")``; ``column_problem("ts_s", [1, nan])`` →
    ``(1, "must be a finite time, got null")``;
    ``column_problem("memory_limit_bytes", [inf])`` → None.
    """
    # the usual case first, in two reductions (min/max: nan makes both tests fail;
    # fmin/fmax skip nan, so an all-nan column falls through to the full check)
    if name == "ts_s":
        if values.min() >= 0 and values.max() <= MAX_TS_S:
            return None
        bad = ~np.isfinite(values) | (values < 0) | (values > MAX_TS_S)
    else:
        if np.fmin.reduce(values) >= 0 and np.fmax.reduce(values) <= MAX_VALUE:
            return None
        bad = values < 0  # nan compares False: not available is fine
        big = values > MAX_VALUE
        if INF_OK[METRIC_INDEX[name]]:
            big &= ~np.isposinf(values)
        bad |= big
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    x = float(values[i])
    if name == "ts_s":
        if not math.isfinite(x):
            return i, f"must be a finite time, got {'null' if math.isnan(x) else x}"
        if x < 0:
            return i, f"must be ≥ 0, got {x:g}"
        return i, f"must be ≤ {MAX_TS_S:g} (Unix seconds), got {x:g}"
    if x < 0:
        return i, f"must be ≥ 0, got {x:g}"
    return i, (f"must be finite and ≤ {MAX_VALUE:g}, got {x:g}"
               + (' (inf is for the limits only)' if math.isinf(x) else ""))


def windows(columns: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """``[N, W, M]`` windows from one column per given metric (``columns[m]``: S values,
    container k's ``lengths[k]`` values after container k−1's, each container's sorted
    by ``ts_s``): right aligned, ``W = max(lengths)``, shorter windows padded at the
    start with all-``nan`` rows (as :func:`app.serve_jobs.window_of`); a metric not in
    ``columns`` holds its default (``inf`` for the limits, else ``nan``).

    Laid out as ``[N, M, W]`` (each container's readings of one metric contiguous) and
    returned as the transposed view ``[N, W, M]``: the same values as a row-major window,
    written one metric at a time, and the layout :func:`app.core.features.compute_features`
    copies a window into anyway (its ``_columns``), so it reads this one without a copy.

    Worked example: lengths ``[2, 1]``, ``ts_s [10, 11, 20]`` → shape ``[2, 2, M]``;
    ``window[0, :, 0] = [10, 11]``; container 1's row 0 is all ``nan``, its row 1 has
    ``ts_s`` 20 and ``memory_limit_bytes`` inf (not given: unlimited).
    """
    n = len(lengths)
    width = int(lengths.max())
    buf = np.empty((n, _N_METRICS, width))
    buf[:] = np.repeat(DEFAULT_ROW[:, None], width, axis=1)  # every container: defaults
    window = buf.transpose(0, 2, 1)
    if bool((lengths == width).all()):
        for m, values in columns.items():
            buf[:, METRIC_INDEX[m], :] = values.reshape(n, width)
        return window
    window[np.arange(width)[None, :] < (width - lengths)[:, None]] = np.nan  # padding
    k = np.repeat(np.arange(n), lengths)
    starts = np.cumsum(lengths) - lengths
    slot = width - lengths[k] + (np.arange(int(lengths.sum())) - starts[k])
    for m, values in columns.items():
        buf[k, METRIC_INDEX[m], slot] = values
    return window


def _sorted_in_groups(ts: np.ndarray, group: np.ndarray) -> bool:
    """True when rows are grouped (``group`` non-decreasing) and ``ts`` non-decreasing
    within each group."""
    if len(ts) < 2:
        return True
    dg = np.diff(group)
    return bool((dg >= 0).all() and ((np.diff(ts) >= 0) | (dg > 0)).all())


def _job(names: list[str], apps: list[str], columns: dict[str, np.ndarray],
         group: np.ndarray, lengths: np.ndarray, now_s: float | None) -> Job:
    """Sort each container's rows by ``ts_s`` (stable) and assemble the job."""
    ts = columns["ts_s"]
    if not _sorted_in_groups(ts, group):
        order = np.lexsort((ts, group))  # lexsort is stable: ties keep their order
        columns = {m: v[order] for m, v in columns.items()}
    window = windows(columns, lengths)
    latest = float(np.nanmax(window[:, -1, 0]))
    return Job(names, apps, window=window, latest_ts_s=latest, now_s=now_s)


def _now_s(value: Any) -> float | None:
    """``now_s`` if it is a finite number in ``[0, MAX_TS_S]`` (never a boolean), else
    raises ValueError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {type(value).__name__}")
    x = float(value)
    if not (math.isfinite(x) and 0 <= x <= MAX_TS_S):
        raise ValueError(f"must be a finite time in [0, {MAX_TS_S:g}], got {x:g}")
    return x


# ============================================================================ Arrow


def _u32(b: memoryview, at: int) -> int:
    return struct.unpack_from("<I", b, at)[0]


def _field(b: memoryview, table: int, index: int) -> int | None:
    """Position of field ``index`` of the flatbuffer table at ``table``, None if absent."""
    vtable = table - struct.unpack_from("<i", b, table)[0]
    vt_size = struct.unpack_from("<H", b, vtable)[0]
    if 4 + 2 * index + 2 > vt_size:
        return None
    off = struct.unpack_from("<H", b, vtable + 4 + 2 * index)[0]
    return table + off if off else None


def _batch_header(meta: bytes) -> tuple[int, int, bool] | None:
    """``(header type, rows, compressed)`` of an IPC message's flatbuffer metadata
    (``Message { version, header_type, header, bodyLength }``; ``RecordBatch { length,
    nodes, buffers, compression }``, ``DictionaryBatch { id, data: RecordBatch }``);
    rows and compressed are for record and dictionary batches (0, False otherwise)."""
    b = memoryview(meta)
    root = _u32(b, 0)
    kind_at = _field(b, root, 1)
    kind = b[kind_at] if kind_at is not None else 0
    header_at = _field(b, root, 2)
    if kind not in (2, 3) or header_at is None:
        return kind, 0, False
    batch = header_at + _u32(b, header_at)
    if kind == 2:  # a dictionary batch carries its values as a record batch
        data_at = _field(b, batch, 1)
        if data_at is None:
            return kind, 0, False
        batch = data_at + _u32(b, data_at)
    length_at = _field(b, batch, 0)
    rows = struct.unpack_from("<q", b, length_at)[0] if length_at is not None else 0
    return kind, rows, _field(b, batch, 3) is not None


def _batch_table(b: memoryview) -> int | None:
    """Position of the RecordBatch table of a record or dictionary batch message."""
    root = _u32(b, 0)
    kind_at = _field(b, root, 1)
    header_at = _field(b, root, 2)
    if kind_at is None or b[kind_at] not in (2, 3) or header_at is None:
        return None
    batch = header_at + _u32(b, header_at)
    if b[kind_at] == 2:
        data_at = _field(b, batch, 1)
        if data_at is None:
            return None
        batch = data_at + _u32(b, data_at)
    return batch


def declared_bytes(meta: bytes, body: memoryview) -> int:
    """What the compressed buffers of one batch message declare they decompress to, in
    bytes: each buffer (``RecordBatch.buffers``: ``{offset, length}`` into the message
    body) of a compressed batch starts with its uncompressed length as a little-endian
    int64, ``-1`` when that buffer was left uncompressed (then its own length counts).
    Read before anything is decompressed, so that a small body cannot make the reader
    allocate gigabytes. Worked example: two buffers of 20 and 0 bytes whose first
    starts with ``8000`` → 8000."""
    b = memoryview(meta)
    batch = _batch_table(b)
    vec_at = None if batch is None else _field(b, batch, 2)
    if vec_at is None:
        return 0
    vec = vec_at + _u32(b, vec_at)
    total = 0
    for i in range(_u32(b, vec)):
        offset, length = struct.unpack_from("<qq", b, vec + 4 + 16 * i)
        if length <= 0:
            continue
        if length < 8 or offset < 0 or offset + length > len(body):
            raise ValueError(f"buffer {i} ({offset}, {length}) is outside the message body")
        declared = struct.unpack_from("<q", body, offset)[0]
        total += length - 8 if declared == -1 else declared
    return total


def read_arrow(body: bytes, *, max_rows: int, max_bytes: int | None = None) -> pa.Table:
    """The table of an Arrow IPC stream body, after reading only its message headers:
    more than ``max_rows`` rows (the request's ``max_samples``) → 413, and a compressed
    stream (LZ4 frame or ZSTD buffers) whose buffers declare more than ``max_bytes``
    decompressed in all (the request's ``max_body_bytes``: what the same stream may
    weigh uncompressed) → 413, both before any buffer is decoded; the table is
    validated in full (offsets, UTF-8) before use. ``BodyError`` 400 / 413 otherwise.
    Worked example: a 23 KB LZ4 stream of 1,000 containers × 30 samples declares
    1.9 MB, under the default 8 MiB: read; one that declares 10 GB: 413."""
    if body[:6] == b"ARROW1":
        raise BodyError(400, [Problem(None, None, "this is the Arrow IPC file format: send "
                                      "the stream format (pyarrow.ipc.new_stream)",
                                      "arrow_file_format")])
    buf = pa.py_buffer(body)
    rows = 0
    inflated = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(buf)
        for message in reader:
            meta = message.metadata.to_pybytes()
            kind, n, compressed = _batch_header(meta)
            if compressed:
                inflated += declared_bytes(meta, memoryview(message.body))
                if max_bytes is not None and inflated > max_bytes:
                    raise BodyError(413, f"the compressed Arrow stream declares at least "
                                         f"{inflated} bytes uncompressed, above "
                                         f"max_body_bytes = {max_bytes}")
            if kind == 3:
                rows += n
                if rows > max_rows:
                    raise BodyError(413, f"{rows} samples in one request is above "
                                         f"max_samples = {max_rows}")
        table = pa.ipc.open_stream(buf).read_all()
        table.validate(full=True)
    except BodyError:
        raise
    except (pa.ArrowException, struct.error, IndexError, ValueError, OSError) as exc:
        raise BodyError(400, [Problem(None, None, f"not a readable Arrow IPC stream: {exc}",
                                      "arrow_invalid")]) from None
    return table


def _is_text(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_string_view(t)
            or (pa.types.is_dictionary(t) and _is_text(t.value_type)))


def _plain_text(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def arrow_job(body: bytes, *, max_containers: int, max_samples: int,
              max_bytes: int | None = None) -> Job:
    """The :class:`~app.serve_jobs.Job` of an Arrow request (see the module doc), or
    ``BodyError``: 400 (not a readable stream), 413 (above a limit; ``max_bytes``: what a
    compressed stream may inflate to, :func:`read_arrow`), 422 (one entry per bad
    column: the column, its first bad row and that row's container).
    """
    table = read_arrow(body, max_rows=max_samples, max_bytes=max_bytes)
    names_in = table.column_names
    problems: list[Problem] = []
    seen: set[str] = set()
    for name in names_in:
        if name in seen:
            problems.append(Problem(name, None, "the column appears twice", "duplicate"))
        seen.add(name)
    known = _METRIC_SET | {CONTAINER_COLUMN, APP_COLUMN}
    for name in names_in:
        if name not in known:
            problems.append(Problem(name, None, "unknown column (expected container, app, "
                                    "ts_s or a metric of app.core.sample.METRICS)",
                                    "extra_forbidden"))
    for name in (CONTAINER_COLUMN, "ts_s"):
        if name not in seen:
            problems.append(Problem(name, None, "the column is required", "missing"))
    for field in table.schema:
        name, t = field.name, field.type
        if name in (CONTAINER_COLUMN, APP_COLUMN):
            if not _is_text(t):
                problems.append(Problem(name, None, f"must be a string column, got {t}",
                                        "string_type"))
        elif name in _METRIC_SET and not (pa.types.is_integer(t) or pa.types.is_floating(t)
                                          or pa.types.is_null(t)):
            problems.append(Problem(name, None, f"must be a number column (integer or "
                                    f"floating), got {t}", "float_type"))
    if problems:
        raise BodyError(422, problems)
    n_rows = table.num_rows
    if n_rows == 0:
        raise BodyError(422, [Problem(None, None, "the table has no rows (one row per "
                                      "sample)", "too_short")])
    now_s = None
    meta = table.schema.metadata or {}
    if NOW_KEY in meta:
        raw = meta[NOW_KEY].decode("utf-8", "replace")
        try:
            now_s = _now_s(float(raw))
        except ValueError as exc:
            why = str(exc) if "must" in str(exc) else f"must be a number, got {raw!r}"
            raise BodyError(422, [Problem("now_s", None, f"(schema metadata) {why}")]
                            ) from None

    # containers: first-appearance order (dictionary_encode numbers them so)
    cont = _plain_text(table.column(CONTAINER_COLUMN))
    if cont.null_count:
        row = _first(cont.is_null().to_numpy(zero_copy_only=False))
        raise BodyError(422, [Problem(CONTAINER_COLUMN, row, "must be a name, got null",
                                      "string_type")])
    enc = cont.dictionary_encode()
    codes = enc.indices.to_numpy().astype(np.int64)
    names = enc.dictionary.to_pylist()
    n = len(names)
    lengths = np.bincount(codes, minlength=n)
    why = size_reason(n, n_rows, int(lengths.max()), max_containers=max_containers,
                      max_samples=max_samples)
    if why is not None:
        raise BodyError(413, why)
    name_chars = pc.utf8_length(enc.dictionary).to_numpy()
    bad_name = (name_chars < 1) | (name_chars > MAX_NAME_CHARS)
    if bad_name.any():
        k = _first(bad_name)
        row = _first(codes == k)
        raise BodyError(422, [Problem(CONTAINER_COLUMN, row, f"must be 1 to {MAX_NAME_CHARS} "
                                      f"characters, got {int(name_chars[k])}", "string_length")])
    apps = [""] * n
    if APP_COLUMN in seen:
        apps = _apps(_plain_text(table.column(APP_COLUMN)), codes, names, problems)

    columns: dict[str, np.ndarray] = {}
    for name in names_in:
        if name not in _METRIC_SET:
            continue
        col = table.column(name)
        if pa.types.is_null(col.type):
            values = np.full(n_rows, np.nan)
        else:
            values = col.to_numpy().astype(np.float64, copy=False)  # null → nan
        bad = column_problem(name, values)
        if bad is not None:
            row, msg = bad
            problems.append(Problem(name, row, msg, container=names[codes[row]]))
        columns[name] = values
    if problems:
        raise BodyError(422, problems)
    return _job(names, apps, columns, codes, lengths, now_s)


def _apps(col: pa.Array, codes: np.ndarray, names: list[str],
          problems: list[Problem]) -> list[str]:
    """One app per container (the app of its first row; null = ``""``); a container
    whose rows name two apps, or an app above 256 characters, is a problem."""
    col = col.fill_null("")
    enc = col.dictionary_encode()
    app_codes = enc.indices.to_numpy().astype(np.int64)
    values = enc.dictionary.to_pylist()
    chars = pc.utf8_length(enc.dictionary).to_numpy()
    if (chars > MAX_NAME_CHARS).any():
        k = _first(chars > MAX_NAME_CHARS)
        row = _first(app_codes == k)
        problems.append(Problem(APP_COLUMN, row, f"must be at most {MAX_NAME_CHARS} "
                                f"characters, got {int(chars[k])}", "string_length",
                                names[codes[row]]))
        return [""] * len(names)
    # codes number containers by first appearance: a container's first row is where
    # the running maximum of the codes goes up
    first_row = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    per_container = app_codes[first_row]
    differ = app_codes != per_container[codes]
    if differ.any():
        row = _first(differ)
        k = codes[row]
        problems.append(Problem(
            APP_COLUMN, row, f"{values[app_codes[row]]!r} here but "
            f"{values[per_container[k]]!r} in row {int(first_row[k])} (one app per "
            "container)", "value_error", names[k]))
    return [values[c] for c in per_container.tolist()]


# ============================================================================ JSON


_INF_STRINGS = frozenset({"inf"})


def _floats(values: list[Any], ndim: int) -> np.ndarray | None:
    """``values`` (numbers, ``None`` = nan, the string ``"inf"``) as float64, or None
    if any is something else (a string, a list, an object). Booleans are excluded by
    the caller (no ``true``/``false`` in the body)."""
    try:
        arr = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != ndim:
        return None
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float64, copy=False)
    if kind in "iu":
        return arr.astype(np.float64)
    flat = chain.from_iterable(values) if ndim == 2 else values
    if kind == "O":
        types = set(map(type, flat))
        if not types <= {int, float, type(None), str}:
            return None
        if str in types:
            flat = chain.from_iterable(values) if ndim == 2 else values
            if not {v for v in flat if type(v) is str} <= _INF_STRINGS:
                return None
        try:
            return arr.astype(np.float64)  # None → nan, "inf" → inf
        except (ValueError, TypeError, OverflowError):
            return None
    if kind == "U" and set(flat) <= _INF_STRINGS:
        return np.full(arr.shape, np.inf)
    return None


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row indices of the given containers, concatenated: starts ``[0, 5]``, lengths
    ``[2, 3]`` → ``[0, 1, 5, 6, 7]``."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total) + offsets


_CONTAINER_KEYS = frozenset({"name", "app", "samples", "series"})
_LIST_ONLY = {list}


def json_job(body: bytes, *, fast: bool = True) -> Job | None:
    """The :class:`~app.serve_jobs.Job` of a JSON ``containers`` body when every value is
    valid, else None (then the pydantic models answer; see the module doc).

    Worked example: ``{"containers": [{"name": "a", "series": {"ts_s": [2, 1],
    "memory_usage_bytes": [5, null]}}]}`` → one window ``[1, 2, M]``: row 0 ``ts 1``,
    memory nan; row 1 ``ts 2``, memory 5; ``memory_limit_bytes`` inf (absent: the
    default). ``"memory_usage_bytes": [-1, 5]`` → None (the models say "must be ≥ 0").

    Numbers only: without a backslash in the body every JSON string is exactly two
    quotes, so when the quotes are as many as the keys and the names and apps need,
    no value is a string, and each column converts straight from the parsed numbers
    (``None`` → nan) without looking at each one's type.

    The usual body (every container a ``series`` with the same keys in the same order)
    is checked a whole body at a time (:func:`_series_job`: one C-level pass per check
    over all containers, not one Python step per container); any other body, or one that
    pass cannot prove valid, takes the container-by-container path, which decides alone
    (``fast=False`` forces it: the tests compare the two).

    The cyclic garbage collector is paused meanwhile
    (:func:`app.core.gc_pause.gc_paused`): the parsed body is ~9,000 lists and dicts per
    1,000 containers, freed by reference counting when this returns.
    """
    with gc_paused():
        return _json_job(body, fast)


def _json_job(body: bytes, fast: bool) -> Job | None:
    if b"true" in body or b"false" in body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or not doc.keys() <= {"containers", "now_s"}:
        return None
    containers = doc.get("containers")
    if type(containers) is not list or not containers:
        return None
    try:
        now_s = _now_s(doc.get("now_s"))
    except ValueError:
        return None
    if fast:
        job = _series_job(body, containers, len(doc), now_s)
        if job is not None:
            return job
    n = len(containers)
    names: list[str] = []
    apps: list[str] = []
    lengths = np.empty(n, dtype=np.int64)
    series_of: list[tuple[int, dict[str, list]]] = []
    samples_of: list[tuple[int, list]] = []
    strings = len(doc)  # keys and string values seen, to compare with the body's quotes
    for i, c in enumerate(containers):
        if type(c) is not dict or not c.keys() <= _CONTAINER_KEYS:
            return None
        name, app = c.get("name"), c.get("app", "")
        if (type(name) is not str or not 1 <= len(name) <= MAX_NAME_CHARS
                or type(app) is not str or len(app) > MAX_NAME_CHARS):
            return None
        names.append(name)
        apps.append(app)
        strings += len(c) + 1 + ("app" in c)  # its keys, the name, the app
        samples, series = c.get("samples"), c.get("series")
        if series is not None:
            if samples is not None or type(series) is not dict or "ts_s" not in series:
                return None
            values = series.values()
            if set(map(type, values)) != _LIST_ONLY:
                return None
            widths = set(map(len, values))
            if len(widths) != 1:
                return None
            w = widths.pop()
            if w < 1:
                return None
            lengths[i] = w
            strings += len(series)
            series_of.append((i, series))
        else:
            if type(samples) is not list or not samples:
                return None
            lengths[i] = len(samples)
            samples_of.append((i, samples))
    if len(set(names)) != n:
        return None
    if samples_of:
        flat = list(chain.from_iterable(s for _, s in samples_of))
        if set(map(type, flat)) != {dict}:
            return None
        strings += sum(map(len, flat))
    numbers_only = b"\\" not in body and body.count(b'"') == 2 * strings
    starts = np.cumsum(lengths) - lengths
    columns = _Columns(int(lengths.sum()))
    if series_of and not _fill_series(columns, series_of, starts, lengths, numbers_only):
        return None
    if samples_of and not _fill_samples(columns, flat, samples_of, starts, lengths,
                                        numbers_only):
        return None
    for m, values in columns.items():
        if column_problem(m, values) is not None:
            return None
    group = np.repeat(np.arange(n), lengths)
    return _job(names, apps, columns, group, lengths, now_s)


_DICT_ONLY = {dict}
_STR_ONLY = {str}


def _series_job(body: bytes, containers: list, doc_keys: int,
                now_s: float | None) -> Job | None:
    """:func:`json_job` of a body whose containers are all ``series`` with the same keys
    in the same order, checked a whole body at a time; None when the body is not of
    that form or a check fails (then the container-by-container path decides, so this
    one never has to name a problem). The same rules as that path: names 1–256
    characters and distinct, apps strings of at most 256, ``series`` a dict with
    ``ts_s`` and metrics only, every value a list, a container's lists all as long, and
    at least 1. Worked example: 1,000 containers × 7 metrics × 30 samples → about 15
    passes over 1,000 containers (type and length sets, ``==`` of two length lists) and
    one conversion per metric of its 30,000 numbers.
    """
    n = len(containers)
    if set(map(type, containers)) != _DICT_ONLY:
        return None
    orders = set(map(tuple, containers))
    for keys in orders:
        if "name" not in keys or "series" not in keys or not _CONTAINER_KEYS.issuperset(keys):
            return None
    if any("samples" in keys for keys in orders) and list(
            map(dict.get, containers, repeat("samples", n))).count(None) != n:
        return None  # a samples key beside series: only null (as the container loop)
    names = list(map(itemgetter("name"), containers))
    if set(map(type, names)) != _STR_ONLY:
        return None
    chars = list(map(len, names))
    if min(chars) < 1 or max(chars) > MAX_NAME_CHARS or len(set(names)) != n:
        return None
    with_app = [keys for keys in orders if "app" in keys]
    if with_app:
        apps = list(map(dict.get, containers, repeat("app", n), repeat("", n)))
        if (set(map(type, apps)) != _STR_ONLY
                or max(map(len, apps)) > MAX_NAME_CHARS):
            return None
        n_apps = n if len(with_app) == len(orders) else sum(
            map(dict.__contains__, containers, repeat("app", n)))
    else:
        apps, n_apps = [""] * n, 0
    series = list(map(itemgetter("series"), containers))
    if set(map(type, series)) != _DICT_ONLY:
        return None
    metrics = set(map(tuple, series))
    if len(metrics) != 1:
        return None
    metrics_keys = metrics.pop()
    if "ts_s" not in metrics_keys or not _METRIC_SET.issuperset(metrics_keys):
        return None
    per_metric = [list(map(itemgetter(m), series)) for m in metrics_keys]
    widths = None
    for lists in per_metric:
        if set(map(type, lists)) != _LIST_ONLY:
            return None
        w = list(map(len, lists))
        if widths is None:
            widths = w
        elif w != widths:
            return None
    if min(widths) < 1:
        return None
    lengths = np.array(widths, dtype=np.int64)
    count = int(lengths.sum())
    numbers_only = None  # the quote count of json_job, only when a column needs it
    columns: dict[str, np.ndarray] = {}
    for m, lists in zip(metrics_keys, per_metric, strict=True):
        values = _packed(lists, count)  # ints and floats only: no need to count quotes
        if values is None:
            if numbers_only is None:
                strings = (doc_keys + sum(map(len, containers)) + n + n_apps
                           + len(metrics_keys) * n)
                numbers_only = b"\\" not in body and body.count(b'"') == 2 * strings
            values = _column(chain.from_iterable(lists), count, numbers_only)
        if values is None or column_problem(m, values) is not None:
            return None
        columns[m] = values
    group = np.repeat(np.arange(n), lengths)
    return _job(names, apps, columns, group, lengths, now_s)


def _packed(lists: list[list], count: int) -> np.ndarray | None:
    """The ``count`` numbers of ``lists`` as float64 by :mod:`struct` (1.3–1.5× as
    fast as ``np.fromiter`` for Python floats), or None if one is not an int or float
    (``None``, a string, a list: the caller converts those another way). The same
    doubles as ``np.fromiter``: both convert with ``float(x)``. A boolean would pack
    as 0 or 1: :func:`json_job` takes no body with ``true``/``false``. Worked example:
    ``[[1, 2.5], [3]]``, 3 → ``[1.0, 2.5, 3.0]``; ``[[1, None]]`` → None."""
    flat = list(chain.from_iterable(lists))
    if len(flat) != count:
        return None
    out = np.empty(count, dtype=np.float64)
    try:
        struct.pack_into(f"={count}d", out, 0, *flat)  # native doubles, as numpy's
    except (struct.error, TypeError, OverflowError, ValueError):
        return None
    return out


class _Columns(dict):
    """Metric → its S values; a metric given for only some rows holds its default in
    the others (``inf`` for a limit, else ``nan``: what an absent key means)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, m: str, where: np.ndarray | None, values: np.ndarray) -> None:
        if where is None:
            self[m] = values
            return
        col = self.get(m)
        if col is None:
            col = self[m] = np.full(self.size, DEFAULT_ROW[METRIC_INDEX[m]])
        col[where] = values


def _column(values: Any, count: int, numbers_only: bool) -> np.ndarray | None:
    """``count`` parsed JSON values (an iterable) as float64, or None if one is not a
    number, ``null`` or (unless ``numbers_only``) ``"inf"``."""
    if numbers_only:  # no string anywhere: numbers, None (→ nan), or a nested value
        try:
            return np.fromiter(values, np.float64, count)
        except (ValueError, TypeError, OverflowError):
            return None
    return _floats(list(values), 1)


def _fill_series(columns: _Columns, series_of: list[tuple[int, dict[str, list]]],
                 starts: np.ndarray, lengths: np.ndarray, numbers_only: bool) -> bool:
    """Each metric of all ``series`` containers as one column (False: not provably
    valid)."""
    by_keys: dict[tuple[str, ...], list[int]] = {}
    for k, (_, series) in enumerate(series_of):
        by_keys.setdefault(tuple(series), []).append(k)
    idx = np.array([i for i, _ in series_of])
    every = len(series_of) == len(lengths)
    for keys, ks in by_keys.items():
        if not set(keys) <= _METRIC_SET:
            return False
        part = [series_of[k][1] for k in ks] if len(by_keys) > 1 else [s for _, s in series_of]
        whole = every and len(by_keys) == 1
        where = None if whole else _ranges(starts[idx[ks]], lengths[idx[ks]])
        count = int(lengths[idx[ks]].sum())
        for m in keys:
            values = _column(chain.from_iterable(map(itemgetter(m), part)), count,
                             numbers_only)
            if values is None:
                return False
            columns.put(m, where, values)
    return True


def _fill_samples(columns: _Columns, flat: list[dict], samples_of: list[tuple[int, list]],
                  starts: np.ndarray, lengths: np.ndarray, numbers_only: bool) -> bool:
    """All ``samples`` objects at once, grouped by their keys (usually one group)."""
    idx = np.array([i for i, _ in samples_of])
    whole = len(samples_of) == len(lengths)
    dest = None if whole else _ranges(starts[idx], lengths[idx])
    keys = list(map(tuple, flat))
    distinct = set(keys)
    for kt in distinct:
        if "ts_s" not in kt or not set(kt) <= _METRIC_SET or len(set(kt)) != len(kt):
            return False
        if len(distinct) == 1:
            part, where = flat, dest
        else:
            pick = np.array([j for j, k in enumerate(keys) if k == kt])
            part = [flat[j] for j in pick.tolist()]
            where = pick if dest is None else dest[pick]
        getter = itemgetter(*kt)
        got = map(getter, part)
        if len(kt) > 1:
            got = chain.from_iterable(got)
        values = _column(got, len(part) * len(kt), numbers_only)
        if values is None:
            return False
        values = values.reshape(len(part), len(kt))
        for c, m in enumerate(kt):
            columns.put(m, where, np.ascontiguousarray(values[:, c]))
    return True


# ============================================================================ answers


def _nullable(values: np.ndarray) -> pa.Array:
    """float64 with every value that is not finite as null: the JSON answer's numbers
    (:func:`app.api_models.out_number`); the ``.unlimited`` / ``.never_reaches_limit``
    columns say which null is ``inf``. Worked example: ``[1.5, inf, nan]`` → ``[1.5,
    null, null]``."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    return pa.array(values, type=pa.float64(), mask=None if finite.all() else ~finite)


def predictions_table(job: Job, res: JobResult, min_samples: int | None,
                      model_revision: int | None) -> pa.Table:
    """The ``/v1/predict`` answer as an Arrow table: one row per container (``name``,
    ``app``, ``n_samples``) and, per tier, the fields of the JSON answer's tier, one
    column each: ``<tier>.p_fail``, ``.time_to_limit_s``, ``.never_reaches_limit``,
    ``.forecast``, ``.limit``, ``.unlimited`` (float64 or bool; a number that is not
    finite is null, as in JSON), ``.model``, ``.model_version`` (null = the heuristic),
    ``.forecast_ready``, ``.reason`` (why p_fail is no forecast, null when it is one:
    :func:`app.serve_jobs.no_forecast_reasons`) and ``.note`` (the same text); schema
    metadata ``api_version``, ``horizon_s``, ``model_revision``. The same values as the
    JSON answer, column by column (:func:`app.serve_client.predictions_from_table` turns
    it back into that JSON).
    """
    n_samples = res.features[:, F["n_samples"]]
    cols: dict[str, pa.Array] = {
        "name": pa.array(job.names, pa.string()),
        "app": pa.array(job.apps, pa.string()),
        "n_samples": pa.array(n_samples.astype(np.int64)),
    }
    reasons = no_forecast_reasons(res, min_samples)
    for tier, tp in res.prediction.tiers.items():
        t = tier.value
        labels, versions = tier_labels(res, tier)
        why = pa.array(reasons[tier], pa.string())
        cols[f"{t}.p_fail"] = pa.array(tp.p_fail, pa.float64())
        cols[f"{t}.time_to_limit_s"] = _nullable(tp.time_to_limit_s)
        cols[f"{t}.never_reaches_limit"] = pa.array(np.isposinf(tp.time_to_limit_s),
                                                    pa.bool_())
        cols[f"{t}.forecast"] = _nullable(tp.forecast)
        cols[f"{t}.limit"] = _nullable(tp.limit)
        cols[f"{t}.unlimited"] = pa.array(np.isposinf(tp.limit), pa.bool_())
        cols[f"{t}.model"] = pa.array(labels, pa.string())
        cols[f"{t}.model_version"] = pa.array(versions, pa.string())
        cols[f"{t}.forecast_ready"] = pc.is_null(why)
        cols[f"{t}.reason"] = why
        cols[f"{t}.note"] = why
    meta = {"api_version": API_VERSION, "horizon_s": repr(float(res.prediction.horizon_s)),
            "model_revision": "" if model_revision is None else str(model_revision)}
    return pa.table(cols).replace_schema_metadata(meta)


def arrow_bytes(table: pa.Table) -> bytes:
    """``table`` as an uncompressed Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


__all__ = ["APP_COLUMN", "CONTAINER_COLUMN", "NOW_KEY", "BodyError", "Problem",
           "arrow_bytes", "arrow_job", "column_problem", "json_job", "predictions_table",
           "declared_bytes", "read_arrow", "windows"]
