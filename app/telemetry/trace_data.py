"""A trace read into memory (:class:`TraceData`), what every trace reader shares, and
where the shared real traces are (:func:`find_trace_dir`).

This is an I/O edge (files). The unit conversions are pure functions in
:mod:`app.learning.trace_mapping`; here they are applied to whole pandas columns at once
(no Python loop per row: the ~413k-row Bitbrains file loads in about a second).

Readers return a :class:`TraceData`: a ``samples`` DataFrame (columns ``container``,
``app``, ``ts_s`` and every metric of :data:`~app.core.sample.METRICS`, sorted by
``ts_s`` then ``container``), an ``events`` DataFrame (``container``, ``app``,
``ts_s``, ``kind``, ``detail``; ``kind`` is an :class:`~app.core.sample.EventKind`
value), what was dropped and why (``dropped``), and where it came from (``source``).
A metric the trace does not have is ``nan``; a limit it does not have is ``inf``.

The readers: :mod:`app.telemetry.bitbrains`, :mod:`app.telemetry.google2011`,
:mod:`app.telemetry.csv_trace`; :mod:`app.telemetry.replay` plays a trace back.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from itertools import starmap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.sample import METRICS, Event, EventKind, Sample

#: Columns of a :attr:`TraceData.samples` frame, in order.
SAMPLE_COLUMNS: tuple[str, ...] = ("container", "app", *METRICS)
#: Columns of a :attr:`TraceData.events` frame, in order.
EVENT_COLUMNS: tuple[str, ...] = ("container", "app", "ts_s", "kind", "detail")
#: Default of each metric when a trace does not have it (limits: inf, the rest: nan).
METRIC_DEFAULTS: dict[str, float] = {
    f.name: float(f.default) for f in fields(Sample) if f.name in METRICS and f.name != "ts_s"
}

#: Where the shared real traces are, relative to :func:`find_trace_dir`.
BITBRAINS_RND_FILE = "bitbrains-rnd/rnd-2013-07-vms-001-050.csv.gz"
GOOGLE2011_USAGE_FILE = "google2011/task_usage_600-900s_even_jobs.csv"
GOOGLE2011_EVENTS_FILE = "google2011/task_events_even_jobs.csv.gz"
TRACE_DIR_ENV = "PRESCALE_TRACE_DIR"


def find_trace_dir() -> Path:
    """The directory of the shared real traces: ``$PRESCALE_TRACE_DIR``, else
    ``<repo>/../shared/data``. It may not exist; callers check (tests skip)."""
    env = os.environ.get(TRACE_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


# --------------------------------------------------------------------------- TraceData


@dataclass
class TraceData:
    """A trace read into memory (see the module docstring for the columns)."""

    samples: pd.DataFrame
    events: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def containers(self) -> list[str]:
        """The containers that have samples, sorted."""
        return sorted(self.samples["container"].unique().tolist())

    def __len__(self) -> int:
        return len(self.samples) + len(self.events)


def empty_samples() -> pd.DataFrame:
    """A samples frame with no rows (the right columns and dtypes)."""
    return pd.DataFrame({c: pd.Series(dtype=str if c in ("container", "app") else np.float64)
                         for c in SAMPLE_COLUMNS})


def empty_events() -> pd.DataFrame:
    """An events frame with no rows (the right columns and dtypes)."""
    return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "ts_s" else str)
                         for c in EVENT_COLUMNS})


def _sort_order(ts_s: np.ndarray, container: np.ndarray) -> np.ndarray:
    """Row order by ts_s, then container name (string order), stable."""
    codes, _ = pd.factorize(container, sort=True)
    return np.lexsort((codes, ts_s))


def samples_frame(container: np.ndarray, app: np.ndarray | str,
                   values: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """A samples frame with every column (defaults for the missing metrics), sorted."""
    n = len(container)
    data: dict[str, Any] = {"container": np.asarray(container, dtype=object)}
    data["app"] = (np.full(n, app, dtype=object) if isinstance(app, str)
                   else np.asarray(app, dtype=object))
    for m in METRICS:
        if m in values:
            data[m] = np.asarray(values[m], dtype=np.float64)
        else:
            data[m] = np.full(n, METRIC_DEFAULTS[m], dtype=np.float64)
    order = _sort_order(data["ts_s"], data["container"])
    return pd.DataFrame({k: v[order] for k, v in data.items()}, columns=list(SAMPLE_COLUMNS))


def events_frame(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return empty_events()
    order = _sort_order(df["ts_s"].to_numpy(np.float64), df["container"].to_numpy(object))
    return df.iloc[order][list(EVENT_COLUMNS)].reset_index(drop=True)


def iter_samples(df: pd.DataFrame) -> Iterator[Sample]:
    """The rows of a samples frame as :class:`Sample` objects, lazily.

    One ``tolist()`` per column, then ``Sample(*row)``: about 1 µs per row.
    """
    cols = [df[c].tolist() for c in ("container", *METRICS, "app")]
    return starmap(Sample, zip(*cols, strict=True))


def iter_events(df: pd.DataFrame) -> Iterator[Event]:
    """The rows of an events frame as :class:`Event` objects, lazily."""
    kinds = [EventKind(k) for k in df["kind"].tolist()]
    return starmap(Event, zip(df["container"].tolist(), df["ts_s"].tolist(), kinds,
                              df["detail"].tolist(), df["app"].tolist(), strict=True))


def require_columns(path: Path, have: list[str], need: tuple[str, ...] | list[str],
                     what: str) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise ValueError(f"{path}: missing {what} column(s) {missing}; the file has {have}")


def first_line(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.readline()


def check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file not found: {p}")
    return p


def coerce_numeric(df: pd.DataFrame, cols: list[str] | tuple[str, ...]) -> np.ndarray:
    """Convert ``cols`` to numbers in place; returns the (writable) mask of the rows with
    a value that was present but is not a number."""
    bad = np.zeros(len(df), dtype=bool)
    for c in cols:
        if not pd.api.types.is_numeric_dtype(df[c]):
            conv = pd.to_numeric(df[c], errors="coerce")
            bad |= (conv.isna() & df[c].notna()).to_numpy()
            df[c] = conv
    return bad
