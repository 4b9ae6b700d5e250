"""Peer features: a container's standing among the containers of its group (pure).

A Google 2011 task is one of its job's tasks; a container is one of its app's
replicas. How a container compares with its peers *at the same time* says things its
own numbers cannot: a task using a tenth of what its siblings use has probably just
(re)started or is stuck. The failure models compute these columns themselves
(``peer_features`` of :mod:`app.models.base`) from the rows they are given, so the
same code runs offline and online:

- offline, a group is the rows of one app that end at the same time
  (:func:`peer_groups` of ``meta``: ``(app, ts_end_s)``);
- online, a model is asked about the containers of one app at one tick: they are one
  group.

Where peers do not line up in time (every container alone in its group), the columns
are constant in training and a tree model never splits on them.

Columns (:data:`PEER_FEATURES`), for each base feature b of :data:`PEER_BASE`:

``peer_rank_<b>``
    the percentile rank of the row's b among the group's finite values, ``rank / n``
    with ties averaged (1 = the group's largest); ``nan`` where b is ``nan``.
``peer_ratio_<b>``
    b ÷ the group's median of b (``nan`` where the median is 0 or ``nan``).
``peer_median_<b>``
    the group's median of b (the app's typical level).

and ``peer_count``: the number of rows in the group.

Worked example (one group, b = memory 10, 20, 20, 50): ranks 1, 2.5, 2.5, 4 → ÷ 4 =
0.25, 0.625, 0.625, 1.0; median 20 → ratios 0.5, 1, 1, 2.5; ``peer_count`` 4.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prescale.app.core.features import FEATURES, F

#: The features whose standing among peers is measured.
PEER_BASE: tuple[str, ...] = (
    "memory_usage_last_bytes",
    "memory_working_set_bytes_last",
    "memory_page_cache_bytes_last",
    "cpu_usage_cores_mean",
    "cpu_peak_cores_last",
    "memory_usage_limit_fraction",
)
#: Column names of :func:`peer_features`, in order.
PEER_FEATURES: tuple[str, ...] = (
    *(f"peer_{kind}_{b}" for b in PEER_BASE for kind in ("rank", "ratio", "median")),
    "peer_count",
)


def peer_groups(apps: np.ndarray, ts_end_s: np.ndarray) -> np.ndarray:
    """``int64`` group codes: one per distinct ``(app, ts_end_s)`` (offline grouping).

    Example: apps a, a, b, a with times 1, 1, 1, 2 → 3 groups: (a, 1), (b, 1), (a, 2).
    """
    a = np.asarray(apps, dtype=object)
    t = np.asarray(ts_end_s, dtype=np.float64)
    if a.shape != t.shape:
        raise ValueError(f"apps {a.shape} and ts_end_s {t.shape} must have the same shape")
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([a, t]))
    return codes.astype(np.int64)


def peer_features(X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``float64[n, len(PEER_FEATURES)]`` for feature rows ``X`` ``[n, len(FEATURES)]``.

    ``groups``: one code per row (``None``: all rows are one group). See the module
    doc for the columns and a worked example.
    """
    x = np.asarray(X, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        raise ValueError(f"X must be [n, {len(FEATURES)}] (app.core.features.FEATURES), "
                         f"got shape {x.shape}")
    n = x.shape[0]
    if groups is None:
        g = np.zeros(n, dtype=np.int64)
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must have one code per row ({n}), got shape {g.shape}")
    out = np.empty((n, len(PEER_FEATURES)))
    if n == 0:
        return out
    if groups is None or np.unique(g).size == 1:
        return _one_group(x, out)
    frame = pd.DataFrame({b: x[:, F[b]] for b in PEER_BASE})
    frame = frame.replace([np.inf, -np.inf], np.nan)
    by = frame.groupby(g, sort=False)
    ranks = by.rank(pct=True, method="average")
    medians = by.transform("median")
    col = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in PEER_BASE:
            med = medians[b].to_numpy(np.float64)
            out[:, col] = ranks[b].to_numpy(np.float64)
            out[:, col + 1] = np.where(med > 0, frame[b].to_numpy(np.float64) / med, np.nan)
            out[:, col + 2] = med
            col += 3
    out[:, col] = pd.Series(g).groupby(g, sort=False).transform("size").to_numpy(np.float64)
    return out


def _one_group(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`peer_features` of rows that are all one group, in numpy (what the loop asks
    for every tick, one app at a time: ~20× faster than the grouped pandas path)."""
    from scipy.stats import rankdata

    n = x.shape[0]
    col = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in PEER_BASE:
            v = x[:, F[b]].copy()
            v[np.isinf(v)] = np.nan
            ok = ~np.isnan(v)
            rank = np.full(n, np.nan)
            k = int(ok.sum())
            med = np.nan
            if k:
                rank[ok] = rankdata(v[ok], method="average") / k
                med = float(np.median(v[ok]))
            out[:, col] = rank
            out[:, col + 1] = v / med if med > 0 else np.nan
            out[:, col + 2] = med
            col += 3
    out[:, col] = float(n)
    return out
