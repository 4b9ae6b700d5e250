"""The training data: history store (or a trace) → labelled feature matrix with its
train / validation / test splits (:class:`TrainingData`, :func:`build_training_data`).

The steps::

    HistoryStore.read_samples / read_events, or a trace's frames   (app, [since, until))
      → app.learning.dataset.feature_matrix              (windows of W steps, every stride-th)
      → app.learning.labels.label / lead_time_s          (failure of `tier` within horizon_s)
      → time_split (gap = horizon) or stratified_group_split   (train / validation / test)

App grouping
    ``app="web"`` reads the samples and events of app ``web`` only; ``app=None`` those
    of every app of the store (a model registered under
    :data:`tuning.register.GLOBAL_APP`, the fallback for apps without their own).

Sizes and time
    ``max_train_rows`` keeps a uniform random sample (seeded, in time order) of the
    training split and ``max_eval_rows`` of the validation and test splits; both are
    recorded in the training parameters and the data hash.
    :func:`tuning.search.tune_and_register` defaults to 20 000 training rows so that 8
    trials of forests and boosting fit in a couple of minutes on 2 cores (measured
    numbers in its docstring).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prescale.app.core.features import FEATURES, F
from prescale.app.core.peers import peer_groups
from prescale.app.learning.dataset import feature_matrix, window_array
from prescale.app.learning.labels import (
    LABEL_TIERS,
    TIER_EVENTS,
    lead_time_s,
    memory_exhausted,
    stratified_group_split,
    time_split,
)
from prescale.app.models import FailureModel
from prescale.app.models import metrics as mx
from prescale.tuning.jsonsafe import json_number
from prescale.tuning.progress import stage_of

if TYPE_CHECKING:
    from prescale.app.store.history import HistoryStore

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("auto", "time", "group", "none")


@dataclass(frozen=True, eq=False)
class TrainingData:
    """A labelled feature matrix with its splits (see :func:`build_training_data`).

    ``X float64[n, F]`` (columns :attr:`features`), ``y int8[n]``, ``lead_time_s
    float64[n]`` (time to the failure within the horizon, ``nan`` for negatives),
    ``meta`` (``container``, ``app``, ``ts_end_s``, ``row``), ``train_idx`` /
    ``val_idx`` / ``test_idx`` (int64 positions, time-ordered), ``params`` (every
    parameter that made it, JSON-friendly), ``data_hash`` (sha256 of X, y, the
    splits and ``params``) and, when asked for, the raw ``windows float64[n, W, M]``
    that window models (lstm) read.
    """

    X: np.ndarray
    y: np.ndarray
    lead_time_s: np.ndarray
    meta: pd.DataFrame
    features: tuple[str, ...]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    params: dict[str, Any]
    data_hash: str
    windows: np.ndarray | None = field(default=None, repr=False)
    #: peer groups (the rows of one app that end at the same time; app.core.peers)
    peer_group: np.ndarray | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.y.size)

    def groups(self, idx: np.ndarray) -> np.ndarray:
        """The peer-group codes of the rows ``idx`` (what ``fit``/``predict_proba`` take)."""
        pg = self.peer_group
        if pg is None:
            pg = peer_groups(self.meta["app"].to_numpy(), self.ts_s)
        return pg[idx]

    @property
    def resample_unit(self) -> str:
        """What the bootstrap resamples whole: the split's groups (``app`` / container
        for a split by group), else containers."""
        return self.params.get("group_key") or "container"

    def resample_groups(self, idx: np.ndarray) -> np.ndarray:
        return self.meta[self.resample_unit].to_numpy()[idx]

    def predict(self, model: FailureModel, idx: np.ndarray) -> np.ndarray:
        """``model``'s probabilities for the rows ``idx`` (with their peer groups)."""
        return model.predict_proba(self.inputs(model, idx), groups=self.groups(idx))

    @property
    def ts_s(self) -> np.ndarray:
        return self.meta["ts_end_s"].to_numpy(np.float64)

    def inputs(self, model: FailureModel, idx: np.ndarray) -> np.ndarray:
        """The rows ``idx`` in the form ``model`` reads (features, or the raw window)."""
        if model.input == "window":
            if self.windows is None:
                raise ValueError(
                    f"model kind {model.kind!r} reads the raw window: build the data with "
                    "build_training_data(..., include_windows=True)"
                )
            return self.windows[idx]
        return self.X[idx]

    def summary(self) -> dict[str, Any]:
        """Sizes, base rates and time span of each split (JSON-friendly)."""
        out: dict[str, Any] = {"n": self.n, "n_positive": int(self.y.sum()),
                               "data_hash": self.data_hash}
        ts = self.ts_s
        for name, idx in (("train", self.train_idx), ("val", self.val_idx),
                          ("test", self.test_idx)):
            out[name] = {
                "n": int(idx.size),
                "n_positive": int(self.y[idx].sum()),
                "base_rate": json_number(mx.base_rate(self.y[idx])) if idx.size else None,
                "ts_from_s": float(ts[idx].min()) if idx.size else None,
                "ts_to_s": float(ts[idx].max()) if idx.size else None,
            }
        return out


def open_store(store: HistoryStore | str | os.PathLike[str]) -> HistoryStore:
    """``store`` itself, or the :class:`HistoryStore` at a path / URI that must exist."""
    from prescale.app.store.history import HistoryStore

    if isinstance(store, HistoryStore):
        return store
    if not isinstance(store, (str, os.PathLike)):
        raise ValueError(f"store must be a HistoryStore or a path, got {type(store).__name__}")
    text = os.fspath(store)
    if "://" not in text and not Path(text).is_dir():
        raise ValueError(f"history store {text!r} does not exist (no such directory)")
    return HistoryStore(text)


def _check_positive(name: str, value: Any) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_optional_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int ≥ 1 or None, got {value!r}")
    return int(value)



def _subsample(idx: np.ndarray, max_rows: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_rows`` of ``idx``, uniformly at random, in the order of ``idx``."""
    if max_rows is None or idx.size <= max_rows:
        return idx
    keep = np.sort(rng.choice(idx.size, size=max_rows, replace=False))
    return idx[keep]


def _hash(arrays: Sequence[np.ndarray], params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _read_source(source: Any, app: str | None, since_s: float | None, until_s: float | None,
                 horizon_s: float) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(samples sorted by container and time, events, where)`` of ``source``: a history
    store (or its path), or a trace (anything with ``samples`` and ``events`` frames, e.g.
    :class:`app.telemetry.trace_data.TraceData`)."""
    if hasattr(source, "samples") and hasattr(source, "events"):
        samples, events = source.samples, source.events
        where = f"the trace {getattr(source, 'source', '') or '(in memory)'}"
        if app is not None:
            samples = samples[samples["app"] == app]
            events = events[events["app"] == app]
        ts = samples["ts_s"].to_numpy(np.float64)
        keep = np.ones(len(samples), dtype=bool)
        if since_s is not None:
            keep &= ts >= since_s
        if until_s is not None:
            keep &= ts < until_s
        samples = samples[keep].sort_values(["container", "ts_s"], kind="stable")
        samples = samples.reset_index(drop=True)
        if until_s is not None:
            events = events[events["ts_s"].to_numpy(np.float64) < until_s + horizon_s]
        if samples.empty:
            apps = sorted(set(source.samples["app"]))
            raise ValueError(f"no samples for {'any app' if app is None else f'app {app!r}'} "
                             f"in {where} (since_s={since_s}, until_s={until_s}); apps with "
                             f"data: {apps[:20]}")
        return samples, events, where
    st = open_store(source)
    samples = st.read_samples(app=app, since_s=since_s, until_s=until_s)
    if samples.empty:
        where = "any app" if app is None else f"app {app!r}"
        raise ValueError(
            f"no samples for {where} in the history store {st.root!r} "
            f"(since_s={since_s}, until_s={until_s}); apps with data: {st.apps()}"
        )
    events_until = None if until_s is None else until_s + horizon_s
    events = st.read_events(app=app, since_s=since_s, until_s=events_until)
    return samples, events, f"the history store {st.root!r}"


def choose_split(meta: pd.DataFrame) -> tuple[str, str]:
    """``(split, why)`` for ``split="auto"``: by group (app) when most containers have a
    single window — a snapshot per task, where time order means nothing (Google 2011) —
    else by time. Example: 6,153 windows of 6,153 containers → ``("group", "one window
    per container (median 1): split by app")``."""
    per = meta.groupby("container", sort=False).size()
    median = float(per.median()) if len(per) else 0.0
    if median <= 1:
        return "group", f"one window per container (median {median:g}): split by app"
    return "time", f"{median:g} windows per container (median): split by time"


def build_training_data(
    store: Any,
    *,
    app: str | None = None,
    tier: str = "memory",
    horizon_s: float = 30.0,
    window_steps: int = 60,
    recent_steps: int = 10,
    stride: int = 1,
    min_present: int = 2,
    since_s: float | None = None,
    until_s: float | None = None,
    split: str = "auto",
    group_key: str = "app",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    include_windows: bool = False,
    throttle_target_fraction: float | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> TrainingData:
    """Read the history of ``app`` (``None``: every app) and make a :class:`TrainingData`.

    - ``store``: a history store or its path, or a trace (``samples`` and ``events``
      frames, e.g. a :class:`~app.telemetry.trace_data.TraceData`: ``prescale train --trace``).
    - Samples with ``since_s ≤ ts_s < until_s``; events up to ``until_s + horizon_s``
      (a window near the end is labelled by what happened after it).
    - Windows of ``window_steps`` rows end at every ``stride``-th row of a container
      once it has ``min_present`` rows (:mod:`app.learning.dataset`); features use
      ``recent_steps`` for the recent slope and throttling.
    - ``y = 1`` when a failure of ``tier`` (:data:`app.learning.labels.TIER_EVENTS`;
      ``throttle_target_fraction`` adds throttling above it as a cpu failure) hits
      the window's container within ``(ts_end_s, ts_end_s + horizon_s]``: the one label
      definition of :mod:`app.learning.labels`.
    - Tier ``memory``: a window whose last reading is at or above its limit
      (:func:`~app.learning.labels.memory_exhausted`) is a container being killed, not one
      to warn about: it is left out (``params["exhausted_windows_dropped"]``).
    - ``split="time"``: :func:`~app.learning.labels.time_split` with ``gap_s =
      horizon_s`` (no training label looks into the validation period);
      ``split="group"``: :func:`~app.learning.labels.stratified_group_split` by
      ``group_key`` (``"app"`` or ``"container"``; whole groups, moved so that every
      split has a positive where it can); ``split="auto"`` (default): :func:`choose_split`
      (by group for one snapshot per task, e.g. Google 2011; else by time);
      ``split="none"``: every window in the test split (to score a trained model).
    - ``max_train_rows`` / ``max_eval_rows``: uniform subsample of the training /
      each evaluation split (seeded by ``split_seed``); ``include_windows``: keep
      the raw windows for window models (``n × W × len(METRICS) × 8`` bytes).

    Raises ``ValueError`` naming the problem: no samples, no window, an empty
    training split, a bad parameter. Nothing is written. ``on_stage(label)`` (the
    progress hook, :mod:`tuning.progress`) is called as each of its 3 stages starts:
    reading, features, labels and split.
    """
    if tier not in LABEL_TIERS:
        raise ValueError(f"tier must be one of {list(LABEL_TIERS)}, got {tier!r}")
    horizon_s = _check_positive("horizon_s", horizon_s)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if split in ("group", "auto") and group_key not in ("app", "container"):
        raise ValueError(f"group_key must be 'app' or 'container', got {group_key!r}")
    if app is not None and not isinstance(app, str):
        raise ValueError(f"app must be a str or None, got {app!r}")
    max_train_rows = _check_optional_int("max_train_rows", max_train_rows)
    max_eval_rows = _check_optional_int("max_eval_rows", max_eval_rows)
    stage = stage_of(on_stage)
    stage("taking the trace's samples" if hasattr(store, "samples")
          else "reading the history store")
    samples, events, _ = _read_source(store, app, since_s, until_s, horizon_s)

    stage(f"features: {len(samples):,} samples, windows of {window_steps} steps")
    X, meta = feature_matrix(
        samples, window_steps, recent_steps, stride, min_present=min_present
    )
    if len(meta) == 0:
        raise ValueError(
            f"no container has {min_present} samples: no window to train on "
            f"({len(samples)} samples; lower min_present)"
        )
    windows = None
    if include_windows:
        windows, wmeta = window_array(
            samples, window_steps=window_steps, stride=stride, min_present=min_present
        )
        assert np.array_equal(wmeta["row"].to_numpy(), meta["row"].to_numpy())
    dropped = 0
    if tier == "memory":
        exhausted = memory_exhausted(X[:, F["memory_usage_last_bytes"]],
                                     X[:, F["memory_limit_bytes"]])
        dropped = int(exhausted.sum())
        if dropped:
            keep = ~exhausted
            X, meta = X[keep], meta[keep].reset_index(drop=True)
            if windows is not None:
                windows = windows[keep]
    stage(f"labels and split: {len(meta):,} windows")
    throttled = None
    if throttle_target_fraction is not None:
        throttled = X[:, F["cpu_throttled_fraction"]]
    lead = lead_time_s(
        meta, events, tier=tier, horizon_s=horizon_s,
        throttle_target_fraction=throttle_target_fraction, throttled_fraction=throttled,
    )
    y = (~np.isnan(lead)).astype(np.int8)
    ev_kinds = {k.value for k in TIER_EVENTS[tier]}
    n_failures = int(events["kind"].astype(str).isin(ev_kinds).sum()) if len(events) else 0
    steps = np.diff(samples["ts_s"].to_numpy(np.float64))
    same = samples["container"].to_numpy()[1:] == samples["container"].to_numpy()[:-1]
    step_s = float(np.median(steps[same])) if same.any() else math.nan

    split_why = None
    if split == "auto":
        split, split_why = choose_split(meta)
    if split == "none":  # every window is for scoring (prescale models evaluate --trace)
        empty = np.zeros(0, dtype=np.int64)
        parts = (empty, empty, np.argsort(meta["ts_end_s"].to_numpy(), kind="stable"))
    elif split == "time":
        parts = time_split(meta, fractions, gap_s=horizon_s)
    else:
        parts = stratified_group_split(meta, y, key=group_key, fractions=fractions,
                                       seed=split_seed)
    if len(parts) != 3:
        raise ValueError(f"fractions must give 3 splits (train, val, test), got {len(parts)}")
    rng = np.random.default_rng(split_seed)
    train_idx = _subsample(parts[0], max_train_rows, rng)
    val_idx = _subsample(parts[1], max_eval_rows, rng)
    test_idx = _subsample(parts[2], max_eval_rows, rng)
    if train_idx.size == 0 and split != "none":
        raise ValueError(
            f"the training split is empty ({len(meta)} windows, split={split!r}): "
            "more history, other fractions or a shorter horizon (the time split drops "
            "the horizon before each cut)"
        )
    params = {
        "app": app, "tier": tier, "horizon_s": horizon_s, "window_steps": window_steps,
        "recent_steps": recent_steps, "stride": stride, "min_present": min_present,
        "since_s": since_s, "until_s": until_s, "split": split,
        "group_key": group_key if split == "group" else None,
        "fractions": [float(f) for f in fractions], "split_seed": split_seed,
        "max_train_rows": max_train_rows, "max_eval_rows": max_eval_rows,
        "throttle_target_fraction": throttle_target_fraction,
        "failure_events": n_failures, "median_step_s": step_s if math.isfinite(step_s) else None,
    }
    if split_why is not None:
        params["split_auto"] = split_why
    if dropped:
        params["exhausted_windows_dropped"] = dropped
    data_hash = _hash((X, y, train_idx, val_idx, test_idx), params)
    return TrainingData(
        X=X, y=y, lead_time_s=lead, meta=meta, features=tuple(FEATURES),
        train_idx=train_idx, val_idx=val_idx, test_idx=test_idx, params=params,
        data_hash=data_hash, windows=windows,
        peer_group=peer_groups(meta["app"].to_numpy(), meta["ts_end_s"].to_numpy()),
    )
