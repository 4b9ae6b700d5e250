"""Labels (failure within the horizon), lead times, and leakage-free splits.

A window (one row of the *meta* frame of :mod:`app.learning.dataset`: ``container``,
``app``, ``ts_end_s``) is **positive for tier T** if a failure event of tier T
happens to the *same container* in ``(ts_end_s, ts_end_s + horizon_s]``: strictly
after the window's last sample (a failure at ``ts_end_s`` is already in the
window, e.g. as an ``oom_kills_total`` step) and at most ``horizon_s`` later.

Tiers (:data:`TIER_EVENTS`):

``memory``  ← ``oom_kill``
``cpu``     ← ``timeout``; and, with ``throttle_target_fraction`` θ*, *throttling
              that breaks the target*: every window whose feature
              ``cpu_throttled_fraction`` exceeds θ* (strictly) is a cpu failure of
              its container at its ``ts_end_s``
``disk``    ← ``disk_full``
``any``     ← ``oom_kill``, ``killed``, ``exit_nonzero``, ``timeout``, ``disk_full``
              (``restart``, ``success`` and ``lost`` are never failures)

This is the one label definition: ``prescale train``, ``tune``, ``retrain``,
``models evaluate`` and ``scripts/eval_models.py`` all label windows with
:func:`label` over these tiers. On the Google 2011 trace that makes FAIL
(``exit_nonzero``), EVICT and KILL (``killed``) failures, and LOST and FINISH not.
Where a trace has no failure events, they can be derived from usage against a limit
(:mod:`app.learning.limit_failures`) with :func:`memory_exhausted`, the same test the
closed-loop evaluation (``prescale evaluate``) applies: usage at or above the limit is
an OOM kill.

``lead_time_s`` is the time from ``ts_end_s`` to the first such failure strictly
after it (``nan`` if there is none, or, with ``horizon_s``, none within it); so
``label == (lead_time_s <= horizon_s)``.

Worked example (horizon 30 s): container "a" has windows ending at ts 0, 10, 20,
40 and an ``oom_kill`` at ts 35 → memory labels 0, 1, 1, 0 (35 ∉ (0, 30]; 35 ∈
(10, 40] and (20, 50]; 35 < 40) and lead times nan, 25, 15, nan.

Vectorised over all containers at once: windows and failures are sorted together
by (container, time, failures before windows at equal times); a backward running
minimum gives each window the next failure of the same container.

Splits
    :func:`time_split` cuts by time (never at random), so a model is always
    validated on data that comes *after* its training data; ``gap_s`` (use the
    horizon) purges the windows whose label looks into the next split.
    :func:`group_split` keeps whole groups (apps/jobs or containers) together and
    assigns the groups at random (seeded). It is for data where time order is
    meaningless, e.g. the Google 2011 trace, which has one usage snapshot per
    task: there the risk is memorising a job, not the future, so the split is by job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from prescale.app.core.sample import Event, EventKind

#: Event kinds that count as a failure of each label tier.
TIER_EVENTS: dict[str, tuple[EventKind, ...]] = {
    "memory": (EventKind.OOM_KILL,),
    "cpu": (EventKind.TIMEOUT,),
    "disk": (EventKind.DISK_FULL,),
    "any": (
        EventKind.OOM_KILL,
        EventKind.KILLED,
        EventKind.EXIT_NONZERO,
        EventKind.TIMEOUT,
        EventKind.DISK_FULL,
    ),
}
#: The label tiers, in a fixed order.
LABEL_TIERS: tuple[str, ...] = tuple(TIER_EVENTS)

_KINDS = frozenset(k.value for k in EventKind)


def memory_exhausted(usage_bytes: np.ndarray, limit_bytes: np.ndarray) -> np.ndarray:
    """``bool``: memory usage at or above its limit (an OOM kill); ``nan`` → False.

    The one test of memory exhaustion. Worked example: usage 100, 150, 200, nan against
    limits 150, 150, inf, 150 → False, True, False, False.
    """
    u = np.asarray(usage_bytes, dtype=np.float64)
    lim = np.asarray(limit_bytes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return u >= lim


def events_frame(events: pd.DataFrame | Iterable[Event]) -> pd.DataFrame:
    """Events as a frame with columns ``container``, ``ts_s`` (float), ``kind`` (str).

    Accepts a DataFrame with at least those columns or an iterable of
    :class:`~app.core.sample.Event`. Unknown kinds and non-finite times are refused.
    """
    if isinstance(events, pd.DataFrame):
        missing = [c for c in ("container", "ts_s", "kind") if c not in events.columns]
        if missing:
            raise ValueError(f"events frame lacks the columns {missing}")
        frame = pd.DataFrame(
            {
                "container": events["container"].to_numpy(),
                "ts_s": pd.to_numeric(events["ts_s"], errors="coerce").to_numpy(np.float64),
                "kind": events["kind"].astype(str).to_numpy(),
            }
        )
    else:
        items = list(events)
        if any(not isinstance(e, Event) for e in items):
            raise ValueError("events must be a DataFrame or an iterable of Event")
        frame = pd.DataFrame(
            {
                "container": [e.container for e in items],
                "ts_s": np.array([e.ts_s for e in items], dtype=np.float64),
                "kind": [str(e.kind) for e in items],
            }
        )
    unknown = sorted(set(frame["kind"]) - _KINDS)
    if unknown:
        raise ValueError(f"unknown event kinds {unknown}; known: {sorted(_KINDS)}")
    if not np.isfinite(frame["ts_s"].to_numpy()).all():
        raise ValueError("events ts_s must be finite numbers")
    return frame


def _check_meta(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(meta, pd.DataFrame):
        raise ValueError(f"meta must be a pandas DataFrame, got {type(meta).__name__}")
    missing = [c for c in ("container", "ts_end_s") if c not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks the columns {missing}")
    ts = meta["ts_end_s"].to_numpy(dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError("meta ts_end_s must be finite")
    return meta["container"].to_numpy(), ts


def _check_tier(tier: str) -> str:
    tier = str(tier)
    if tier not in TIER_EVENTS:
        raise ValueError(f"tier must be one of {list(LABEL_TIERS)}, got {tier!r}")
    return tier


def _check_horizon(horizon_s: object) -> None:
    ok = isinstance(horizon_s, (int, float, np.integer, np.floating)) and not isinstance(
        horizon_s, bool
    )
    if not (ok and np.isfinite(horizon_s) and horizon_s > 0):
        raise ValueError(f"horizon_s must be a finite number > 0, got {horizon_s!r}")


def _failures(
    meta_containers: np.ndarray,
    meta_ts: np.ndarray,
    events: pd.DataFrame | Iterable[Event],
    tier: str,
    throttled_fraction: np.ndarray | None,
    throttle_target_fraction: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(containers, ts_s)`` of the failures of ``tier``."""
    ev = events_frame(events)
    kinds = {k.value for k in TIER_EVENTS[tier]}
    hit = ev["kind"].isin(kinds).to_numpy()
    containers = ev["container"].to_numpy()[hit]
    ts = ev["ts_s"].to_numpy()[hit]
    if throttle_target_fraction is None:
        if throttled_fraction is not None:
            raise ValueError("throttled_fraction given without throttle_target_fraction")
        return containers, ts
    if tier != "cpu":
        raise ValueError(f"throttle_target_fraction applies to tier 'cpu' only, not {tier!r}")
    target = float(throttle_target_fraction)
    if not (0.0 <= target < 1.0):
        raise ValueError(f"throttle_target_fraction must be in [0, 1), got {target!r}")
    if throttled_fraction is None:
        raise ValueError(
            "throttle_target_fraction needs throttled_fraction (the feature "
            "cpu_throttled_fraction of each meta row, e.g. X[:, F['cpu_throttled_fraction']])"
        )
    frac = np.asarray(throttled_fraction, dtype=np.float64)
    if frac.shape != meta_ts.shape:
        raise ValueError(
            f"throttled_fraction must have one value per meta row ({meta_ts.shape[0]}), "
            f"got shape {frac.shape}"
        )
    broken = frac > target  # nan → False
    return (
        np.concatenate([containers, meta_containers[broken]]),
        np.concatenate([ts, meta_ts[broken]]),
    )


def _next_failure_s(
    meta_containers: np.ndarray,
    meta_ts: np.ndarray,
    fail_containers: np.ndarray,
    fail_ts: np.ndarray,
) -> np.ndarray:
    """Time of the first failure of the same container strictly after each meta ts."""
    n, m = meta_ts.size, fail_ts.size
    out = np.full(n, np.nan)
    if n == 0 or m == 0:
        return out
    codes, _ = pd.factorize(np.concatenate([meta_containers, fail_containers]))
    ts = np.concatenate([meta_ts, fail_ts])
    is_meta = np.r_[np.ones(n, dtype=np.int8), np.zeros(m, dtype=np.int8)]
    # by container, then time; at equal times failures first (not "after" the window)
    order = np.lexsort((is_meta, ts, codes))
    s_codes, s_ts, s_meta = codes[order], ts[order], is_meta[order].astype(bool)
    # for each sorted position, the nearest failure position at or after it
    pos = np.where(s_meta, n + m, np.arange(n + m))
    nxt = np.minimum.accumulate(pos[::-1])[::-1]
    found = nxt < n + m
    nxt_c = np.where(found, nxt, 0)
    same = found & (s_codes[nxt_c] == s_codes)
    t_next = np.where(same, s_ts[nxt_c], np.nan)
    meta_pos = order[s_meta]  # original meta indices, in sorted order
    out[meta_pos] = t_next[s_meta]
    return out


def lead_time_s(
    meta: pd.DataFrame,
    events: pd.DataFrame | Iterable[Event],
    *,
    tier: str,
    horizon_s: float | None = None,
    throttle_target_fraction: float | None = None,
    throttled_fraction: np.ndarray | None = None,
) -> np.ndarray:
    """Seconds from each window's ``ts_end_s`` to its container's next ``tier`` failure.

    ``float64[n]``; always > 0; ``nan`` if there is no failure after ``ts_end_s``
    (or, when ``horizon_s`` is given, none within ``horizon_s``). See the module doc.
    """
    tier = _check_tier(tier)
    containers, ts = _check_meta(meta)
    if horizon_s is not None:
        _check_horizon(horizon_s)
    fc, ft = _failures(
        containers, ts, events, tier, throttled_fraction, throttle_target_fraction
    )
    lead = _next_failure_s(containers, ts, fc, ft) - ts
    if horizon_s is not None:
        lead[lead > horizon_s] = np.nan
    return lead


def label(
    meta: pd.DataFrame,
    events: pd.DataFrame | Iterable[Event],
    *,
    horizon_s: float,
    tier: str,
    throttle_target_fraction: float | None = None,
    throttled_fraction: np.ndarray | None = None,
) -> np.ndarray:
    """``int8[n]``: 1 where a ``tier`` failure of the container is in (ts_end, ts_end + H].

    ``throttle_target_fraction`` (tier ``cpu`` only) also counts windows whose
    ``throttled_fraction`` (one value per meta row, the feature
    ``cpu_throttled_fraction``) exceeds it as failures. See the module doc.
    """
    _check_horizon(horizon_s)
    lead = lead_time_s(
        meta,
        events,
        tier=tier,
        horizon_s=horizon_s,
        throttle_target_fraction=throttle_target_fraction,
        throttled_fraction=throttled_fraction,
    )
    return (~np.isnan(lead)).astype(np.int8)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size < 2 or not np.isfinite(f).all() or (f < 0).any():
        raise ValueError(f"fractions must be ≥ 2 non-negative numbers, got {fractions!r}")
    if abs(f.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must add up to 1, got {fractions!r} (sum {f.sum()!r})")
    return f


def time_split(
    meta: pd.DataFrame,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    gap_s: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """Split the rows of ``meta`` by ``ts_end_s`` into consecutive periods.

    Returns one ``int64`` index array (positions into ``meta``) per fraction, each
    in time order (stable). Cut times ``c_k`` are the ``ts_end_s`` of the row at
    sorted position ``round(cumsum(fractions)[k] × n)``; split k holds the rows with
    ``c_{k−1} ≤ ts < c_k``, so rows with the same time never straddle a cut (the
    sizes then differ a little from the fractions). ``gap_s`` drops from split k
    the rows with ``ts + gap_s ≥ c_k``: pass the horizon so that no training label
    looks into the validation period.

    Worked example: ts 0, 1, …, 9 with (0.6, 0.2, 0.2) → cuts at 6 and 8 → train
    0–5, validation 6–7, test 8–9; with ``gap_s = 1.5`` → train 0–4, validation 6.
    """
    f = _check_fractions(fractions)
    if not (np.isfinite(gap_s) and gap_s >= 0):
        raise ValueError(f"gap_s must be a finite number ≥ 0, got {gap_s!r}")
    if not isinstance(meta, pd.DataFrame) or "ts_end_s" not in meta.columns:
        raise ValueError("meta must be a DataFrame with a ts_end_s column")
    ts = meta["ts_end_s"].to_numpy(dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError("meta ts_end_s must be finite")
    n = ts.size
    order = np.argsort(ts, kind="stable")
    cut_pos = np.rint(np.cumsum(f)[:-1] * n).astype(np.int64)
    ts_sorted = ts[order]
    cuts = np.where(cut_pos < n, ts_sorted[np.minimum(cut_pos, max(n - 1, 0))], np.inf) \
        if n else np.full(cut_pos.size, np.inf)
    split_sorted = np.searchsorted(cuts, ts_sorted, side="right")
    out = []
    for k in range(f.size):
        keep = split_sorted == k
        if k < f.size - 1 and gap_s > 0:
            keep &= ts_sorted + gap_s < cuts[k]
        out.append(order[keep].astype(np.int64))
    return tuple(out)


def group_split(
    meta: pd.DataFrame,
    key: str = "app",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Split the rows of ``meta`` so that each value of ``meta[key]`` is in one split.

    For data where time order is meaningless (see the module doc). The groups
    (sorted, then shuffled with ``numpy.random.default_rng(seed)``) are laid end to
    end by row count; a group goes to split k when the middle of its rows falls in
    ``[cumsum(f)[k−1], cumsum(f)[k]) × n``. With few groups a split can be empty.
    Returns one ``int64`` index array per fraction, in time order if ``meta`` has
    ``ts_end_s`` (else in row order).

    Worked example: groups a (6 rows), b (2), c (2) laid in the order a, b, c with
    (0.6, 0.2, 0.2) → middles 3, 7, 9 of n = 10 → a: train, b: validation, c: test.
    """
    f = _check_fractions(fractions)
    if not isinstance(meta, pd.DataFrame):
        raise ValueError(f"meta must be a pandas DataFrame, got {type(meta).__name__}")
    if key not in meta.columns:
        raise ValueError(f"meta has no column {key!r} to group by (columns: {list(meta.columns)})")
    codes, uniques = pd.factorize(meta[key], sort=True)
    if (codes < 0).any():
        raise ValueError(f"meta[{key!r}] has missing values; every row needs a group")
    n = codes.size
    n_groups = len(uniques)
    perm = np.random.default_rng(seed).permutation(n_groups)
    sizes = np.bincount(codes, minlength=n_groups)[perm]
    mid = np.cumsum(sizes) - sizes / 2.0
    group_split_of = np.empty(n_groups, dtype=np.int64)
    group_split_of[perm] = np.searchsorted(np.cumsum(f)[:-1] * n, mid, side="right")
    split = group_split_of[codes]
    if "ts_end_s" in meta.columns:
        order = np.argsort(meta["ts_end_s"].to_numpy(dtype=np.float64), kind="stable")
    else:
        order = np.arange(n)
    return tuple(order[split[order] == k].astype(np.int64) for k in range(f.size))


def _assign_groups(codes: np.ndarray, y: np.ndarray, fractions: np.ndarray,
                   seed: int) -> np.ndarray:
    """Split (0 … len(fractions)−1) of every group code (see :func:`stratified_group_split`)."""
    n_groups = int(codes.max()) + 1 if codes.size else 0
    k = fractions.size
    pos = np.bincount(codes, weights=np.asarray(y, dtype=np.float64), minlength=n_groups)
    rows = np.bincount(codes, minlength=n_groups).astype(np.float64)
    perm = np.random.default_rng(seed).permutation(n_groups)
    split_of = np.empty(n_groups, dtype=np.int64)
    got_pos, got_rows = np.zeros(k), np.zeros(k)
    pos_target = np.maximum(fractions * pos.sum(), 1e-12)
    row_target = np.maximum(fractions * rows.sum(), 1e-12)
    with_pos = perm[pos[perm] > 0]
    with_pos = with_pos[np.lexsort((-rows[with_pos], -pos[with_pos]))]
    for grp in with_pos:
        f = int(np.argmax((pos_target - got_pos) / pos_target))
        split_of[grp] = f
        got_pos[f] += pos[grp]
        got_rows[f] += rows[grp]
    without = perm[pos[perm] == 0]
    without = without[np.argsort(-rows[without], kind="stable")]
    for grp in without:
        f = int(np.argmax((row_target - got_rows) / row_target))
        split_of[grp] = f
        got_rows[f] += rows[grp]
    return split_of


def stratified_group_split(
    meta: pd.DataFrame,
    y: np.ndarray,
    key: str = "app",
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Split the rows of ``meta`` by whole groups of ``meta[key]``, spreading the positives.

    For data where time order is meaningless (a snapshot per task: Google 2011), where
    the risk is memorising a job. The groups are shuffled (seeded); the groups with a
    positive row go first, most positives first (then most rows), each to the split
    furthest below its share of the positives (``(f_k·P − p_k) / (f_k·P)``; ties: the
    first split); then the others, most rows first, each to the split furthest below
    its share of the rows. So every split gets a positive when there are at least as
    many positive groups as splits, and the sizes follow the fractions as far as whole
    groups allow. Returns one ``int64`` index array per fraction, in time order if
    ``meta`` has ``ts_end_s`` (else in row order).

    Worked example: groups a (6 rows, 1 positive), b (2 rows, 1), d (1 row, 1) and
    c (2 rows, none) with (0.6, 0.2, 0.2): positive targets 1.8, 0.6, 0.6 → a to train,
    then b to validation (deficits 0.44, 1, 1), d to test; row targets 6.6, 2.2, 2.2
    against rows 6, 2, 1 → c to test. Splits: a | b | c, d.
    """
    f = _check_fractions(fractions)
    if not isinstance(meta, pd.DataFrame):
        raise ValueError(f"meta must be a pandas DataFrame, got {type(meta).__name__}")
    if key not in meta.columns:
        raise ValueError(f"meta has no column {key!r} to group by (columns: {list(meta.columns)})")
    labels = np.asarray(y)
    if labels.shape != (len(meta),):
        raise ValueError(f"y must have one label per meta row ({len(meta)}), got {labels.shape}")
    codes, _ = pd.factorize(meta[key], sort=True)
    if (codes < 0).any():
        raise ValueError(f"meta[{key!r}] has missing values; every row needs a group")
    split = _assign_groups(codes, labels, f, seed)[codes] if codes.size else codes
    if "ts_end_s" in meta.columns:
        order = np.argsort(meta["ts_end_s"].to_numpy(dtype=np.float64), kind="stable")
    else:
        order = np.arange(len(meta))
    return tuple(order[split[order] == k].astype(np.int64) for k in range(f.size))


def group_folds(groups: np.ndarray, y: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``int64`` fold (0 … k−1) of every row: whole groups, positives spread over folds.

    :func:`stratified_group_split` with k equal fractions (a stratified group k-fold):
    with at least k groups holding a positive, every fold gets one.

    Worked example, k = 2: groups a (3 rows, 2 positives), b (1 row, 1 positive),
    c (4 rows, none), d (1 row, none) → a to fold 0, b to fold 1 (positive deficits
    −0.33, 1); row targets 4.5 each against 3, 1 → c (largest) to fold 1, then d to
    fold 0 (deficits 0.33, −0.11) → folds a, d | b, c.
    """
    g = np.asarray(groups)
    labels = np.asarray(y, dtype=np.float64)
    if g.shape != labels.shape or g.ndim != 1:
        raise ValueError(f"groups {g.shape} and y {labels.shape} must be 1-D and match")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k must be an int ≥ 2, got {k!r}")
    codes, uniques = pd.factorize(g, sort=True)
    if len(uniques) < k:
        raise ValueError(f"{len(uniques)} groups cannot fill {k} folds")
    return _assign_groups(codes, labels, np.full(k, 1.0 / k), seed)[codes]
