"""Read any CSV or Parquet file with one row per sample (:func:`read_csv_mapping`), given
which column holds each :class:`~app.core.sample.Sample` metric; the frames are those of
:class:`~app.telemetry.trace_data.TraceData`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from prescale.app.core.sample import METRICS
from prescale.app.telemetry.trace_data import (
    TraceData,
    check_file,
    coerce_numeric,
    empty_events,
    require_columns,
    samples_frame,
)

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SET_ELSEWHERE = {"container": "container_col", "ts_s": "ts_col", "app": "app"}


def read_csv_mapping(
    path: str | os.PathLike,
    mapping: Mapping[str, str],
    *,
    container_col: str,
    ts_col: str,
    app: str | None = None,
    scale: Mapping[str, float] | None = None,
) -> TraceData:
    """Read any CSV (``.csv``, ``.csv.gz``…) or Parquet (``.parquet``, ``.pq``) file with
    one row per sample.

    ``mapping`` maps :class:`Sample` metric names to column names, e.g.
    ``{"memory_usage_bytes": "mem", "cpu_usage_s_total": "cpu_s"}``; the values must
    already be in the Sample's units (counters cumulative) unless ``scale`` gives a
    factor per metric (e.g. ``{"memory_usage_bytes": 1024}`` for KB). Metrics not
    mapped are ``nan`` (limits ``inf``). ``ts_col`` holds Unix seconds, or dates
    that pandas parses (taken as UTC when they carry no zone). ``app`` is the same
    for every row (default: the file name without its suffixes).

    Errors (raised before anything is read beyond the header): an unknown metric
    name in ``mapping`` or ``scale``, and columns missing from the file, each named.
    Dropped rows: missing container or time / unparsable time (``bad_ts``), a
    value that is not a number (``bad_value``), a second row of a container with the
    same time (``duplicate_ts``, the first in file order is kept).

    Worked example: rows ``(a, 10, 5)``, ``(a, 10, 6)``, ``(b, 5, x)`` with
    ``{"memory_usage_bytes": "mem"}``, scale 1024 → one sample ``a@10`` with 5120
    bytes; dropped ``{"duplicate_ts": 1, "bad_value": 1}``.
    """
    p = Path(path)
    name = p.name.lower()
    unknown = sorted(k for k in mapping if k not in METRICS or k == "ts_s")
    if unknown:
        hints = [f"{k!r} (use {_SET_ELSEWHERE[k]}=)" if k in _SET_ELSEWHERE else repr(k)
                 for k in unknown]
        raise ValueError(
            f"mapping has unknown Sample field(s) {', '.join(hints)}; "
            f"known metrics: {[m for m in METRICS if m != 'ts_s']}")
    bad_cols = sorted(k for k, v in mapping.items() if not isinstance(v, str) or not v)
    if bad_cols:
        raise ValueError(f"mapping values must be column names (non-empty str): {bad_cols}")
    scale = dict(scale or {})
    unknown_scale = sorted(k for k in scale if k not in mapping)
    if unknown_scale:
        raise ValueError(f"scale names metric(s) not in mapping: {unknown_scale}")
    bad_scale = sorted(k for k, v in scale.items()
                       if not (isinstance(v, int | float) and math.isfinite(v)))
    if bad_scale:
        raise ValueError(f"scale factors must be finite numbers: {bad_scale}")
    if name.endswith(_PARQUET_SUFFIXES):
        fmt = "parquet"
    elif name.endswith(_CSV_SUFFIXES):
        fmt = "csv"
    else:
        raise ValueError(f"{p}: unsupported file type; expected one of "
                         f"{_CSV_SUFFIXES + _PARQUET_SUFFIXES}")
    p = check_file(p)
    need = list(dict.fromkeys([container_col, ts_col, *mapping.values()]))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        have = list(pq.read_schema(p).names)
        require_columns(p, have, need, "mapped")
        df = pd.read_parquet(p, columns=need)
    else:
        have = [str(c) for c in pd.read_csv(p, nrows=0).columns]
        require_columns(p, have, need, "mapped")
        df = pd.read_csv(p, usecols=need)

    ts_raw = df[ts_col]
    if pd.api.types.is_numeric_dtype(ts_raw):
        ts = ts_raw.to_numpy(np.float64)
    else:
        parsed = pd.to_datetime(ts_raw, errors="coerce", utc=True, format="mixed")
        ts = np.where(parsed.isna(), np.nan,
                      (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy())
        ts = ts.astype(np.float64)
    bad_ts = ~np.isfinite(ts) | df[container_col].isna().to_numpy()
    values_df = pd.DataFrame({m: df[c] for m, c in mapping.items()})
    bad_value = coerce_numeric(values_df, list(mapping)) & ~bad_ts
    ok = ~bad_ts & ~bad_value
    container = df[container_col].astype(str).to_numpy(object)[ok]
    ts = ts[ok]
    dup = pd.DataFrame({"c": container, "t": ts}).duplicated().to_numpy()
    values = {"ts_s": ts[~dup]}
    for m in mapping:
        v = values_df[m].to_numpy(np.float64)[ok][~dup]
        values[m] = v * float(scale[m]) if m in scale else v
    app_name = app if app is not None else name.split(".")[0]
    samples = samples_frame(container[~dup], app_name, values)
    dropped = {"bad_ts": int(bad_ts.sum()), "bad_value": int(bad_value.sum()),
               "duplicate_ts": int(dup.sum())}
    return TraceData(samples, empty_events(), dropped, f"csv:{p}")
