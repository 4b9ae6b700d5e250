"""Read the Numenta Anomaly Benchmark (NAB) series and their labelled anomaly windows.

This is an I/O edge: the scoring itself is pure (:mod:`app.models.anomaly_series`).

Layout of a NAB directory (e.g. ``/work/shared/data/nab-aws``)::

    <root>/realAWSCloudwatch/*.csv     timestamp,value (5-minute steps)
    <root>/realKnownCause/*.csv
    <root>/labels/combined_windows.json
        {"realKnownCause/x.csv": [["2014-03-14 03:31:00.000000",
                                   "2014-03-14 14:41:00.000000"], ...], ...}

Every ``*/*.csv`` under the root (except ``labels/``) is one series; its label key is
its path relative to the root. The labels file covers the whole NAB corpus, so keys
whose file is absent are ignored; a CSV present on disk but missing from the labels
is an error (it could not be scored).

Timestamps are naive in the files and read as UTC; ``ts_s`` is Unix seconds. Rows keep
the file's order (NAB scores rows in file order; a few files have repeated or
backward timestamps around daylight-saving changes, e.g.
``machine_temperature_system_failure.csv``).

Where the data is: :func:`nab_dir` = ``$PRESCALE_TRACE_DIR/nab-aws`` when that
variable is set (it names the parent ``data`` directory), else
``<repo root>/../shared/data/nab-aws``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Environment variable naming the directory that holds ``nab-aws/`` (and other traces).
TRACE_DIR_ENV = "PRESCALE_TRACE_DIR"
NAB_SUBDIR = "nab-aws"
LABELS_FILE = Path("labels") / "combined_windows.json"

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class NabSeries:
    """One NAB file: ``ts_s`` and ``value`` (float64 [n], file order) and its windows."""

    name: str  # label key, e.g. "realKnownCause/nyc_taxi.csv"
    ts_s: np.ndarray
    value: np.ndarray
    windows_s: tuple[tuple[float, float], ...]  # [start_s, end_s], inclusive

    @property
    def rows(self) -> int:
        return int(self.value.size)


def nab_dir(env: dict[str, str] | None = None) -> Path:
    """Where the NAB data is expected (it may not exist; see :func:`find_nab_dir`)."""
    environ = os.environ if env is None else env
    base = environ.get(TRACE_DIR_ENV)
    if base:
        return Path(base) / NAB_SUBDIR
    return _REPO_ROOT.parent / "shared" / "data" / NAB_SUBDIR


def find_nab_dir(env: dict[str, str] | None = None) -> tuple[Path | None, str]:
    """``(path, "")`` when the NAB data is there, else ``(None, why)`` for a skip message."""
    root = nab_dir(env)
    labels = root / LABELS_FILE
    if not labels.is_file():
        return None, (
            f"NAB data not found: {labels} does not exist (set {TRACE_DIR_ENV} to the "
            f"directory that holds {NAB_SUBDIR}/, or put it at <repo>/../shared/data/{NAB_SUBDIR})"
        )
    return root, ""


def _to_s(stamps: pd.Series | list[str], what: str) -> np.ndarray:
    try:
        parsed = pd.to_datetime(pd.Series(stamps, dtype="object"), format="ISO8601", utc=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: bad timestamp ({exc})") from exc
    if parsed.isna().any():
        raise ValueError(f"{what}: empty timestamp at row {int(parsed.isna().to_numpy().argmax())}")
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def read_windows(root: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    """``labels/combined_windows.json`` as ``{key: ((start_s, end_s), ...)}``."""
    path = Path(root) / LABELS_FILE
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of file → windows, got {type(raw).__name__}")
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for key, windows in raw.items():
        if not isinstance(windows, list) or any(
            not isinstance(w, list) or len(w) != 2 for w in windows
        ):
            raise ValueError(f"{path}: {key!r} must be a list of [start, end] pairs")
        if not windows:
            out[key] = ()
            continue
        starts = _to_s([w[0] for w in windows], f"{path}: {key!r}")
        ends = _to_s([w[1] for w in windows], f"{path}: {key!r}")
        if np.any(starts > ends):
            raise ValueError(f"{path}: {key!r} has a window whose start is after its end")
        out[key] = tuple(zip(starts.tolist(), ends.tolist(), strict=True))
    return out


def read_series(path: Path, name: str, windows_s: tuple[tuple[float, float], ...]) -> NabSeries:
    """One ``timestamp,value`` CSV."""
    try:
        frame = pd.read_csv(path, dtype={"timestamp": "object"})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    if list(frame.columns) != ["timestamp", "value"]:
        raise ValueError(f"{path}: expected columns timestamp,value, got {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{path}: no rows")
    value = pd.to_numeric(frame["value"], errors="coerce")
    bad = value.isna() & frame["value"].notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(f"{path}: value {frame['value'].iloc[row]!r} at row {row} is not a number")
    return NabSeries(
        name=name,
        ts_s=_to_s(frame["timestamp"], str(path)),
        value=value.to_numpy(dtype=np.float64),
        windows_s=windows_s,
    )


def load_nab(root: Path) -> list[NabSeries]:
    """Every series under ``root`` with its windows, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"NAB directory {root} does not exist")
    windows = read_windows(root)
    paths = sorted(p for p in root.glob("*/*.csv") if p.parent.name != LABELS_FILE.parent.name)
    if not paths:
        raise ValueError(f"{root}: no <category>/*.csv series found")
    series = []
    for path in paths:
        name = path.relative_to(root).as_posix()
        if name not in windows:
            raise ValueError(f"{path}: no entry {name!r} in {root / LABELS_FILE}")
        series.append(read_series(path, name, windows[name]))
    return series
