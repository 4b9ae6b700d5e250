"""A client of the prediction API (``/v1/predict``, ``/v1/recommend``) that sends windows
as an Apache Arrow IPC stream or as JSON, and reads the answer as JSON or Arrow.

(:mod:`app.client` is the other client: the dependency-free timing reporter an
application imports. This one needs ``requests``, ``pyarrow`` and ``orjson``.)

Windows are one table, one row per sample — the columns of the Arrow request
(:mod:`app.serve_bodies`): ``container``, optional ``app``, ``ts_s`` and any metric of
:data:`app.core.sample.METRICS`; a :class:`pyarrow.Table`, a pandas ``DataFrame`` (as
the history store reads them) or the JSON API's own ``containers`` list::

    from prescale.app.serve_client import PredictClient

    client = PredictClient("http://127.0.0.1:8000", token=None)
    answer = client.predict(frame)                     # Arrow body, JSON answer (a dict)
    answer = client.predict(frame, body="series")      # the same as JSON series
    table = client.predict(frame, answer="arrow")      # one Arrow row per container
    recs = client.recommend(frame, now_s=1767225600.0) # always JSON

Every form gives the same answer for the same table: null / NaN is "not available",
``inf`` only in the limits (unlimited), an absent column is its default.
:func:`predictions_from_table` turns an Arrow answer back into the JSON answer.

Worked example: ``samples_table([{"name": "a", "app": "web", "samples": [{"ts_s": 1,
"memory_usage_bytes": 5}, {"ts_s": 2}]}])`` → rows ``(a, web, 1, 5)``, ``(a, web, 2,
null)``; as a JSON series body ``{"containers": [{"name": "a", "app": "web", "series":
{"ts_s": [1.0, 2.0], "memory_usage_bytes": [5.0, null]}}]}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import requests

from prescale.app.api_models import ARROW_STREAM, JSON_TYPE, LIMIT_METRICS
from prescale.app.core.sample import METRICS

CONTAINER = "container"
APP = "app"
_METRIC_SET = frozenset(METRICS)
_LIMITS = frozenset(LIMIT_METRICS)
TIER_FIELDS = ("p_fail", "time_to_limit_s", "never_reaches_limit", "forecast", "limit",
               "unlimited", "model", "model_version", "forecast_ready", "reason", "note")


# ============================================================================ tables


def samples_table(data: Any) -> pa.Table:
    """The samples of ``data`` as one Arrow table (one row per sample).

    ``data``: a :class:`pyarrow.Table` (returned as is), a pandas ``DataFrame``
    (``from_pandas``, no index), or the JSON API's ``containers`` (``[{"name", "app",
    "samples" | "series"}]``). For the JSON form, a key absent from some samples of a
    container takes the API's default in those rows (``inf`` for a limit, else null),
    so the table means what the JSON meant; ``"inf"`` becomes ``inf``, ``null`` null.
    """
    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "to_numpy") and hasattr(data, "columns"):  # pandas DataFrame
        return pa.Table.from_pandas(data, preserve_index=False)
    return _table_of_containers(list(data))


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "infinity"):
        return math.inf
    return float(v)


def _table_of_containers(containers: list[Mapping[str, Any]]) -> pa.Table:
    metrics: list[str] = []
    names: list[str] = []
    apps: list[str] = []
    rows_of: list[list[dict[str, Any]]] = []
    for c in containers:
        if c.get("series") is not None:
            series = c["series"]
            n = len(series["ts_s"])
            rows = [{m: v[i] for m, v in series.items()} for i in range(n)]
            present = set(series)
            rows = [{**r, "__present": present} for r in rows]
        else:
            rows = [{**s, "__present": set(s)} for s in c["samples"]]
        for r in rows:
            for m in r:
                if m in _METRIC_SET and m not in metrics:
                    metrics.append(m)
        names += [c["name"]] * len(rows)
        apps += [c.get("app", "")] * len(rows)
        rows_of.append(rows)
    flat = [r for rows in rows_of for r in rows]
    ordered = ["ts_s"] + [m for m in METRICS if m in metrics and m != "ts_s"]
    cols: dict[str, Any] = {CONTAINER: pa.array(names, pa.string()),
                            APP: pa.array(apps, pa.string())}
    for m in ordered:
        default = math.inf if m in _LIMITS else None
        cols[m] = pa.array([_number(r[m]) if m in r["__present"] else default for r in flat],
                           pa.float64())
    return pa.table(cols)


def _groups(table: pa.Table) -> tuple[list[str], list[str], list[np.ndarray]]:
    """Containers in the order of their first row: names, apps (of the first row) and
    each one's row indices."""
    col = table.column(CONTAINER).combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    enc = col.dictionary_encode()
    codes = enc.indices.to_numpy()
    names = enc.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    rows = np.split(order, bounds)
    app_col = table.column(APP).to_pylist() if APP in table.column_names else None
    apps = [(app_col[r[0]] or "") if app_col is not None else "" for r in rows]
    return names, apps, rows


def _json_values(values: np.ndarray) -> list[float | str | None]:
    """Floats as JSON values: ``nan`` → null, ``inf`` → ``"inf"`` (the API's words)."""
    out = values.astype(object)
    out[np.isnan(values)] = None
    out[np.isposinf(values)] = "inf"
    out[np.isneginf(values)] = "-inf"
    return out.tolist()


# ============================================================================ bodies


#: IPC buffer compressions the API reads (pyarrow ``IpcWriteOptions(compression=...)``).
COMPRESSIONS = ("lz4", "zstd")


def _narrowed(table: pa.Table) -> pa.Table:
    """Each float64 metric column that float32 holds exactly, as float32 (``ts_s``
    never: Unix seconds need float64). The API reads float32 back as float64: the same
    numbers, so the same answers, in half the bytes. Worked example: usage
    ``[40 MiB, 44 MiB, nan]`` → float32 (exact); ``cpu_usage_s_total [0.3]`` → stays
    float64 (0.3 as float32 is 0.30000001192…)."""
    for i, field in enumerate(table.schema):
        if field.name not in _METRIC_SET or field.name == "ts_s" or field.type != pa.float64():
            continue
        x = table.column(i).to_numpy()
        y = x.astype(np.float32)
        with np.errstate(invalid="ignore"):
            same = np.array_equal(y, x, equal_nan=True)
        if same:
            table = table.set_column(i, field.name, pa.array(y))
    return table


def arrow_body(data: Any, *, now_s: float | None = None, compression: str | None = None,
               float32: bool = True) -> bytes:
    """An Arrow IPC stream body of ``data`` (see :func:`samples_table`); ``now_s``
    goes into the schema metadata. The ``container`` and ``app`` columns are sent
    dictionary-encoded (each name once, then a 4-byte index per row: 1,000 containers ×
    30 samples, 2.19 → 1.93 MB); with ``float32`` each metric column that float32 holds
    exactly is sent as float32 (:func:`_narrowed`; the bench's 1.93 → 1.33 MB);
    ``compression`` (``"lz4"`` or ``"zstd"``) compresses the buffers (the bench's
    regular windows: 1.93 MB → 23 KB; real readings compress less)."""
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS} or None, got "
                         f"{compression!r}")
    table = samples_table(data)
    if float32:
        table = _narrowed(table)
    for name in (CONTAINER, APP):
        if name in table.column_names and not pa.types.is_dictionary(
                table.schema.field(name).type):
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).combine_chunks()
                                     .dictionary_encode())
    if now_s is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"now_s": repr(float(now_s)).encode()})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def json_body(data: Any, *, form: str = "series", now_s: float | None = None) -> bytes:
    """A JSON ``containers`` body of ``data``: ``form="series"`` (one list per metric)
    or ``"samples"`` (one object per reading); containers in the order of their first
    row, each window in row order (the API sorts by ``ts_s``)."""
    if form not in ("series", "samples"):
        raise ValueError(f"form must be 'series' or 'samples', got {form!r}")
    table = samples_table(data)
    metrics = [m for m in table.column_names if m in _METRIC_SET]
    values = {m: _json_values(table.column(m).to_numpy().astype(np.float64))
              for m in metrics}
    names, apps, groups = _groups(table)
    containers = []
    for name, app, rows in zip(names, apps, groups, strict=True):
        idx = rows.tolist()
        if form == "series":
            body = {"series": {m: [values[m][i] for i in idx] for m in metrics}}
        else:
            body = {"samples": [{m: values[m][i] for m in metrics} for i in idx]}
        containers.append({"name": name, "app": app, **body})
    doc: dict[str, Any] = {"containers": containers}
    if now_s is not None:
        doc["now_s"] = float(now_s)
    return orjson.dumps(doc)


# ============================================================================ answers


def read_table(body: bytes) -> pa.Table:
    """An Arrow IPC stream (an Arrow answer) as a table."""
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def _json_number(x: float | None) -> float | None:
    """An answer's number as JSON has it: finite, else None (as the API writes it)."""
    if x is None or not math.isfinite(x):
        return None
    return x


def predictions_from_table(table: pa.Table) -> dict[str, Any]:
    """An Arrow ``/v1/predict`` answer as the JSON answer (the same dict, key for key).

    Worked example: a row ``name "a", memory.time_to_limit_s null,
    memory.never_reaches_limit true, memory.forecast null`` → ``{"name": "a", …,
    "tiers": {"memory": {"time_to_limit_s": None, "never_reaches_limit": True,
    "forecast": None, …}}}``.
    """
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    cols = table.to_pydict()
    tiers = list(dict.fromkeys(c.split(".")[0] for c in table.column_names if "." in c))
    numbers = ("time_to_limit_s", "forecast", "limit")
    out = []
    for i, name in enumerate(cols["name"]):
        per_tier = {}
        for t in tiers:
            per_tier[t] = {f: (_json_number(cols[f"{t}.{f}"][i]) if f in numbers
                               else cols[f"{t}.{f}"][i]) for f in TIER_FIELDS}
        out.append({"name": name, "app": cols["app"][i], "n_samples": cols["n_samples"][i],
                    "tiers": per_tier})
    revision = meta.get("model_revision", "")
    return {"api_version": meta.get("api_version"), "horizon_s": float(meta["horizon_s"]),
            "model_revision": int(revision) if revision else None, "predictions": out}


# ============================================================================ HTTP


class PredictClient:
    """``/v1/predict`` and ``/v1/recommend`` of one API (``base_url``), with a bearer
    ``token`` if the API has one; keeps one HTTP session (connection reuse). Arrow
    bodies go LZ4-compressed by default (``compression``; docs/BENCHMARKS.md)."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout_s: float = 60.0,
                 session: requests.Session | None = None,
                 compression: str | None = "lz4") -> None:
        if compression is not None and compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS} or None, got "
                             f"{compression!r}")
        #: how Arrow bodies are compressed (:func:`arrow_body`); None for an API older
        #: than compressed bodies
        self.compression = compression
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.headers: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: bytes, *, content_type: str,
             accept: str = JSON_TYPE) -> requests.Response:
        """POST ``body`` as is; the response, whatever its status."""
        return self.session.post(self.base_url + path, data=body, timeout=self.timeout_s,
                                 headers={**self.headers, "Content-Type": content_type,
                                          "Accept": accept})

    def _send(self, path: str, data: Any, body: str, answer: str,
              now_s: float | None) -> requests.Response:
        if body == "arrow":
            raw, ctype = arrow_body(data, now_s=now_s, compression=self.compression), ARROW_STREAM
        elif body in ("series", "samples"):
            raw, ctype = json_body(data, form=body, now_s=now_s), JSON_TYPE
        else:
            raise ValueError(f"body must be 'arrow', 'series' or 'samples', got {body!r}")
        r = self.post(path, raw, content_type=ctype,
                      accept=ARROW_STREAM if answer == "arrow" else JSON_TYPE)
        if r.status_code != 200:
            raise APIError(r)
        return r

    def predict(self, data: Any, *, body: str = "arrow", answer: str = "json",
                now_s: float | None = None) -> dict[str, Any] | pa.Table:
        """The prediction of every container of ``data``: the JSON answer (a dict), or
        with ``answer="arrow"`` an Arrow table (one row per container). ``body``:
        ``"arrow"`` (default), ``"series"`` or ``"samples"``. ``APIError`` on a 4xx/5xx."""
        r = self._send("/v1/predict", data, body, answer, now_s)
        return read_table(r.content) if answer == "arrow" else orjson.loads(r.content)

    def recommend(self, data: Any, *, body: str = "arrow",
                  now_s: float | None = None) -> dict[str, Any]:
        """What the configured policy would do (JSON; nothing is applied)."""
        return orjson.loads(self._send("/v1/recommend", data, body, "json", now_s).content)


class APIError(RuntimeError):
    """An answer other than 200: ``status``, the JSON ``body`` (or text) and its
    ``message`` (which names the bad field, column and row)."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        detail = self.body.get("message") or self.body.get("detail") if isinstance(
            self.body, dict) else self.body
        super().__init__(f"HTTP {self.status}: {detail}")


__all__ = ["COMPRESSIONS", "APIError", "PredictClient", "arrow_body", "json_body",
           "predictions_from_table", "read_table", "samples_table"]
