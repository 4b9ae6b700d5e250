"""Training data: a history of samples → sliding windows → a feature matrix.

Input is a *history frame*: a pandas DataFrame with a ``container`` column, the
numeric columns of :data:`~app.core.sample.METRICS` (``ts_s`` first) and
optionally ``app`` (``""`` when absent); one row per container per step. Each
container's rows must be contiguous and in time order (``ts_s`` finite and
non-decreasing), as ``df.sort_values(["container", "ts_s"], kind="stable")``
gives; a frame that is not is refused with an error that says so.

Windows
    A window of ``W = window_steps`` steps *ends at* a row r of container c: it is
    the rows r−W+1 … r of c, oldest first, as ``float64[W, len(METRICS)]``. Where c
    has fewer than W rows up to r, the window starts with all-``nan`` rows, exactly
    as :class:`~app.core.ring.RingBuffer` pads a young container online, so the
    same features come out offline and online.

Which rows end a window
    Counting a container's rows from 0 (p = position in the container), windows
    end at the rows with ``p ≥ min_present − 1`` and
    ``(p − (min_present − 1)) % stride == 0``: the first window that has
    ``min_present`` real rows, then every ``stride``-th row after it.

    Worked example: container "a" with rows at ts 0, 10, 20, 30, 40, W = 3,
    stride = 2, min_present = 1 → windows end at p = 0, 2, 4 (ts 0, 20, 40); the
    window ending at ts 20 holds the rows at ts 0, 10, 20; the one ending at ts 0
    holds [nan-row, nan-row, row@0]. With min_present = 2: p = 1, 3 (ts 10, 30).

Every window comes with one row of *meta*: ``container``, ``app`` (of the window's
last row), ``ts_end_s`` (its last row's ``ts_s``) and ``row`` (the last row's
position in the frame), which :mod:`app.learning.labels` turns into labels.

Everything is vectorised: the windows of a chunk of rows are gathered with one
fancy index ``values[end − W + 1 + arange(W)]`` (no Python loop per row or per
container), masked where the index falls before the container's first row. A
chunk of ``chunk_rows`` windows takes ``chunk_rows × W × len(METRICS) × 8`` bytes
(8192 × 12 × 18 × 8 ≈ 14 MiB), so 400k rows × W = 12 never needs the 0.7 GB that
all windows at once would take; the frame's numeric values (rows × 18 × 8 bytes,
58 MB for 400k rows) are the largest allocation. Measured on the 2-core dev
machine: 400k rows × W = 12 → ``X [400000, 17]`` in 3.9 s, peak RSS +138 MiB.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from prescale.app.core.features import FEATURES, compute_features
from prescale.app.core.sample import METRICS, M

#: Columns of the meta frame that goes with each window (and each feature row).
META_COLUMNS: tuple[str, ...] = ("container", "app", "ts_end_s", "row")

DEFAULT_CHUNK_ROWS = 8192


class _Prepared:
    """The history frame as arrays: values ``[rows, M]``, per-row container start."""

    def __init__(self, df: pd.DataFrame) -> None:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"history must be a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in ("container", *METRICS) if c not in df.columns]
        if missing:
            raise ValueError(f"history frame lacks the columns {missing}")
        not_numeric = [
            c for c in METRICS
            if not (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]))
        ]
        if not_numeric:
            raise ValueError(f"history columns {not_numeric} must be numeric (float), are not")
        n = len(df)
        self.values = df.loc[:, list(METRICS)].to_numpy(dtype=np.float64, copy=False)
        self.containers = df["container"].to_numpy()
        self.apps = df["app"].to_numpy() if "app" in df.columns else np.full(n, "", dtype=object)
        ts = self.values[:, M["ts_s"]]
        if n and not np.isfinite(ts).all():
            bad = int(np.flatnonzero(~np.isfinite(ts))[0])
            raise ValueError(f"history ts_s must be finite; row {bad} has {ts[bad]!r}")
        boundary = np.ones(n, dtype=bool)
        if n > 1:
            boundary[1:] = self.containers[1:] != self.containers[:-1]
        n_groups = int(boundary.sum())
        if n and n_groups != pd.unique(self.containers).size:
            raise ValueError(
                "history rows of each container must be contiguous: sort the frame with "
                "df.sort_values(['container', 'ts_s'], kind='stable')"
            )
        if n > 1:
            backwards = (~boundary[1:]) & (ts[1:] < ts[:-1])
            if backwards.any():
                bad = int(np.flatnonzero(backwards)[0]) + 1
                raise ValueError(
                    f"history ts_s must be non-decreasing within a container; row {bad} "
                    f"(container {self.containers[bad]!r}) goes back from {ts[bad - 1]!r} to "
                    f"{ts[bad]!r}: sort with df.sort_values(['container', 'ts_s'], kind='stable')"
                )
        #: index of the first row of each row's container
        self.start = np.maximum.accumulate(np.where(boundary, np.arange(n), 0)) if n else \
            np.zeros(0, dtype=np.int64)
        self.n = n


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return int(value)


def _window_ends(prep: _Prepared, stride: int, min_present: int) -> np.ndarray:
    pos = np.arange(prep.n) - prep.start
    offset = pos - (min_present - 1)
    return np.flatnonzero((offset >= 0) & (offset % stride == 0))


def _gather(prep: _Prepared, ends: np.ndarray, window_steps: int) -> np.ndarray:
    idx = ends[:, None] - (window_steps - 1) + np.arange(window_steps)
    valid = idx >= prep.start[ends][:, None]
    out = prep.values[np.where(valid, idx, ends[:, None])]
    out[~valid] = np.nan
    return out


def _meta(prep: _Prepared, ends: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "container": prep.containers[ends],
            "app": prep.apps[ends],
            "ts_end_s": prep.values[ends, M["ts_s"]],
            "row": ends.astype(np.int64),
        }
    )


def window_ends(df: pd.DataFrame, *, stride: int = 1, min_present: int = 1) -> np.ndarray:
    """Frame positions of the rows that end a window (see the module doc), ascending."""
    stride = _check_int("stride", stride, 1)
    min_present = _check_int("min_present", min_present, 1)
    return _window_ends(_Prepared(df), stride, min_present)


def iter_windows(
    df: pd.DataFrame,
    *,
    window_steps: int,
    stride: int = 1,
    min_present: int = 1,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Yield ``(windows float64[k, W, len(METRICS)], meta)`` chunks of ≤ ``chunk_rows``.

    Windows come in frame order (by container, then time); ``meta`` has the
    columns :data:`META_COLUMNS` and a fresh ``RangeIndex``. An empty frame (or
    one with no row that ends a window) yields nothing. The frame is validated
    before the first chunk.
    """
    window_steps = _check_int("window_steps", window_steps, 1)
    stride = _check_int("stride", stride, 1)
    min_present = _check_int("min_present", min_present, 1)
    chunk_rows = _check_int("chunk_rows", chunk_rows, 1)
    if min_present > window_steps:
        raise ValueError(
            f"min_present ({min_present}) cannot exceed window_steps ({window_steps})"
        )
    prep = _Prepared(df)
    ends = _window_ends(prep, stride, min_present)
    return _chunks(prep, ends, window_steps, chunk_rows)


def _chunks(
    prep: _Prepared, ends: np.ndarray, window_steps: int, chunk_rows: int
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    for start in range(0, ends.size, chunk_rows):
        chunk = ends[start : start + chunk_rows]
        yield _gather(prep, chunk, window_steps), _meta(prep, chunk)


def window_array(
    df: pd.DataFrame, *, window_steps: int, stride: int = 1, min_present: int = 1
) -> tuple[np.ndarray, pd.DataFrame]:
    """All windows at once: ``(float64[n, W, len(METRICS)], meta)`` (for window models).

    Takes ``n × W × len(METRICS) × 8`` bytes; use a ``stride`` (or
    :func:`iter_windows`) on large histories.
    """
    windows, metas = [], []
    for w, meta in iter_windows(
        df, window_steps=window_steps, stride=stride, min_present=min_present
    ):
        windows.append(w)
        metas.append(meta)
    if not windows:
        return np.zeros((0, window_steps, len(METRICS))), _empty_meta()
    return np.concatenate(windows), pd.concat(metas, ignore_index=True)


def feature_matrix(
    df: pd.DataFrame,
    window_steps: int,
    recent_steps: int,
    stride: int = 1,
    *,
    min_present: int = 1,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[np.ndarray, pd.DataFrame]:
    """``(X float64[n, len(FEATURES)], meta)``: features of every window of the history.

    ``X[i]`` is :func:`app.core.features.compute_features` of the window that ends
    at ``meta.row[i]``; the same function the monitor runs online, so offline and
    online features agree exactly.
    """
    recent_steps = _check_int("recent_steps", recent_steps, 2)
    blocks, metas = [], []
    for w, meta in iter_windows(
        df, window_steps=window_steps, stride=stride, min_present=min_present,
        chunk_rows=chunk_rows,
    ):
        blocks.append(compute_features(w, recent_steps=recent_steps))
        metas.append(meta)
    if not blocks:
        return np.zeros((0, len(FEATURES))), _empty_meta()
    return np.concatenate(blocks), pd.concat(metas, ignore_index=True)


def _empty_meta() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "container": pd.Series([], dtype=object),
            "app": pd.Series([], dtype=object),
            "ts_end_s": pd.Series([], dtype=np.float64),
            "row": pd.Series([], dtype=np.int64),
        }
    )
