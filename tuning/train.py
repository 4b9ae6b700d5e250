"""Offline training: history store (or a trace) → labelled feature matrix → model → gate
→ registry.

The pipeline (no Ray needed, except :func:`tune_and_register`)::

    HistoryStore.read_samples / read_events, or a trace's frames   (app, [since, until))
      → app.core.dataset.feature_matrix              (windows of W steps, every stride-th)
      → app.core.labels.label / lead_time_s          (failure of `tier` within horizon_s)
      → time_split (gap = horizon) or stratified_group_split   (train / validation / test)
      → make_model(kind, **params).fit(train)        (app.models; peer groups, cross-fitted
                                                      calibration)
      → validate: scores and operating threshold on validation
      → the gate (app.models.gate): beat the current model and the heuristic on the
        validation rows, or nothing is promoted (nothing registered if nothing learned)
      → refit on train + validation; threshold from its out-of-fold probabilities
      → evaluate(test) → ModelRegistry.register(…, promote=gate passed)
      → a promoted model's threshold seeds the app's adaptive threshold

:func:`build_training_data` returns a :class:`TrainingData`; :func:`train_model`
fits one kind on its training split and validates it; :func:`evaluate` scores a model on
any split; :func:`register_model` judges (gate), refits and registers;
:func:`train_and_register` and :func:`tune_and_register` (Ray Tune over kinds and
hyperparameters, :mod:`tuning.space`, :mod:`tuning.trainable`) end with it;
:func:`evaluate_version` scores a registered model on another trace. The CLI calls them
with plain values (paths, ints, strings) and a :class:`Promotion` from the settings.

App grouping
    ``app="web"`` trains on the samples and events of app ``web`` only and registers
    the model under ``web``; ``app=None`` trains one model on every app of the store
    and registers it under :data:`GLOBAL_APP` (``"_global"``), the fallback for
    apps without a model of their own.

Metrics (:func:`evaluate`, all from :mod:`app.models.metrics`; ``nan`` when 0/0)
    ``pr_auc`` (average precision), ``roc_auc``, ``recall_at_fpr`` (best recall with a
    false-positive rate ≤ ``max_fpr``, default 5 %, counting only the positives whose
    lead time is ≥ ``min_lead_s``: a warning too late to act on is left out),
    ``precision`` / ``recall`` / ``alarms`` at ``threshold`` (the model's operating
    threshold), ``brier``, ``ece``, ``base_rate`` (the PR-AUC of a model that knows
    nothing), and the lead-time median / p10 / p90 of the true positives at
    ``threshold``.

Promotion (:func:`register_model`, :mod:`app.models.gate`)
    The candidate's validation scores against the model serving now, re-scored on the
    same validation rows (as the issue asks: the same held-out data; when those rows lie
    inside the current model's own training data this flatters the current model, so the
    gate errs towards keeping it), and against the trend heuristic: an AP gain of at least
    ``Promotion.margin_ap`` with the 95 % bootstrap interval above 0, for each.

Sizes and time
    ``max_train_rows`` keeps a uniform random sample (seeded, in time order) of the
    training split and ``max_eval_rows`` of the validation and test splits; both are
    recorded in the training parameters and the data hash. :func:`tune_and_register`
    defaults to 20 000 training rows so that 8 trials of forests and boosting fit in
    a couple of minutes on 2 cores (measured numbers in its docstring).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prescale.app.core.dataset import feature_matrix, window_array
from prescale.app.core.features import FEATURES, F
from prescale.app.core.labels import (
    LABEL_TIERS,
    TIER_EVENTS,
    lead_time_s,
    memory_exhausted,
    stratified_group_split,
    time_split,
)
from prescale.app.core.peers import peer_groups
from prescale.app.models import FailureModel, load_model, make_model, model_class
from prescale.app.models import metrics as mx
from prescale.app.models.gate import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGIN_AP,
    DEFAULT_REPS,
    Reference,
    judge,
)
from prescale.app.models.operating_threshold import OperatingThreshold, choose_threshold

if TYPE_CHECKING:
    from prescale.app.store.history import HistoryStore

#: Registry app name of the model trained on every app (``app=None``).
GLOBAL_APP = "_global"
DEFAULT_MAX_FPR = 0.05
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("auto", "time", "group", "none")
#: The model kinds :func:`tune_and_register` searches by default (lstm: on request).
DEFAULT_TUNE_KINDS = ("random_forest", "hist_gradient_boosting", "heuristic")
DEFAULT_TUNE_MAX_TRAIN_ROWS = 20_000
#: A version trained on a split by group keeps the groups it trained on, up to this many.
MAX_TRAINED_GROUPS = 10_000


# --------------------------------------------------------------------------- data


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
                "base_rate": _num(mx.base_rate(self.y[idx])) if idx.size else None,
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


def _check_fpr(max_fpr: Any, min_lead_s: Any) -> None:
    if not (isinstance(max_fpr, (int, float)) and 0.0 <= max_fpr <= 1.0):
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr!r}")
    if not (isinstance(min_lead_s, (int, float)) and math.isfinite(min_lead_s)
            and min_lead_s >= 0):
        raise ValueError(f"min_lead_s must be a finite number ≥ 0, got {min_lead_s!r}")


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
    :class:`app.telemetry.replay.TraceData`)."""
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
) -> TrainingData:
    """Read the history of ``app`` (``None``: every app) and make a :class:`TrainingData`.

    - ``store``: a history store or its path, or a trace (``samples`` and ``events``
      frames, e.g. a :class:`~app.telemetry.replay.TraceData`: ``prescale train --trace``).
    - Samples with ``since_s ≤ ts_s < until_s``; events up to ``until_s + horizon_s``
      (a window near the end is labelled by what happened after it).
    - Windows of ``window_steps`` rows end at every ``stride``-th row of a container
      once it has ``min_present`` rows (:mod:`app.core.dataset`); features use
      ``recent_steps`` for the recent slope and throttling.
    - ``y = 1`` when a failure of ``tier`` (:data:`app.core.labels.TIER_EVENTS`;
      ``throttle_target_fraction`` adds throttling above it as a cpu failure) hits
      the window's container within ``(ts_end_s, ts_end_s + horizon_s]``: the one label
      definition of :mod:`app.core.labels`.
    - Tier ``memory``: a window whose last reading is at or above its limit
      (:func:`~app.core.labels.memory_exhausted`) is a container being killed, not one
      to warn about: it is left out (``params["exhausted_windows_dropped"]``).
    - ``split="time"``: :func:`~app.core.labels.time_split` with ``gap_s =
      horizon_s`` (no training label looks into the validation period);
      ``split="group"``: :func:`~app.core.labels.stratified_group_split` by
      ``group_key`` (``"app"`` or ``"container"``; whole groups, moved so that every
      split has a positive where it can); ``split="auto"`` (default): :func:`choose_split`
      (by group for one snapshot per task, e.g. Google 2011; else by time);
      ``split="none"``: every window in the test split (to score a trained model).
    - ``max_train_rows`` / ``max_eval_rows``: uniform subsample of the training /
      each evaluation split (seeded by ``split_seed``); ``include_windows``: keep
      the raw windows for window models (``n × W × len(METRICS) × 8`` bytes).

    Raises ``ValueError`` naming the problem: no samples, no window, an empty
    training split, a bad parameter. Nothing is written.
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
    samples, events, _ = _read_source(store, app, since_s, until_s, horizon_s)

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


# --------------------------------------------------------------------------- models


def model_params(data: TrainingData, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` completed with what the data implies (the heuristic's tier and horizon).

    The heuristic predicts the ``memory`` or ``cpu`` tier (``any``/``disk`` data:
    ``memory``) and looks ``horizon_s`` ahead; it keeps its own ``min_samples`` (5, as
    ``predictor.min_samples`` serves live), so on windows of fewer samples it cannot
    rank (it is not given a shorter trend than it would use live). Example: cpu data,
    horizon 60 → ``{"tier": "cpu", "horizon_s": 60.0}``.
    """
    out = dict(params or {})
    if kind == "heuristic":
        tier = data.params["tier"]
        out.setdefault("tier", tier if tier in ("memory", "cpu") else "memory")
        out.setdefault("horizon_s", float(data.params["horizon_s"]))
    return out


#: How the operating threshold is chosen (:mod:`app.models.operating_threshold`); the
#: CLI passes the settings' (``models.threshold_target``, ``thresholds.cost_*``).
DEFAULT_THRESHOLD_TARGET: dict[str, Any] = {
    "target": "balance", "cost_false_positive": 1.0, "cost_miss": 4.0, "min_precision": 0.5}


def evaluate(
    model: FailureModel,
    data: TrainingData,
    idx: np.ndarray,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    threshold: float = 0.5,
    scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores of ``model`` on the rows ``idx`` of ``data`` (see the module doc).

    Keys: ``n``, ``n_positive``, ``base_rate``, ``pr_auc``, ``roc_auc``,
    ``recall_at_fpr``, ``fpr_threshold`` (the threshold that reaches it), ``precision``,
    ``recall`` and ``alarms`` at ``threshold`` (the model's operating threshold),
    ``brier``, ``ece`` (expected calibration error over 10 bins),
    ``lead_time_median_s``, ``lead_time_p10_s``, ``lead_time_p90_s``, and the
    ``max_fpr``, ``min_lead_s``, ``threshold`` used; for the heuristic also
    ``rankable`` (the share of rows with enough samples for a trend). ``nan`` where a
    metric is 0/0 (e.g. PR-AUC without positives). ``scores``: the model's
    probabilities for ``idx`` when already computed.
    """
    _check_fpr(max_fpr, min_lead_s)
    idx = np.asarray(idx, dtype=np.int64)
    y = data.y[idx]
    nan = float("nan")
    out: dict[str, Any] = {"n": int(idx.size), "n_positive": int(y.sum())}
    if idx.size == 0:
        out.update(base_rate=nan, pr_auc=nan, roc_auc=nan, recall_at_fpr=nan,
                   fpr_threshold=nan, precision=nan, recall=nan, alarms=0, brier=nan,
                   ece=nan, lead_time_median_s=nan, lead_time_p10_s=nan,
                   lead_time_p90_s=nan)
    else:
        p = data.predict(model, idx) if scores is None else np.asarray(scores, np.float64)
        lead = data.lead_time_s[idx]
        op = mx.operating_point(y, p, max_fpr=max_fpr, lead_time_s=lead, min_lead_s=min_lead_s)
        lt = mx.lead_time_stats(y, p, lead, threshold=threshold)
        out.update(
            base_rate=mx.base_rate(y), pr_auc=mx.pr_auc(y, p), roc_auc=mx.roc_auc(y, p),
            recall_at_fpr=op.recall, fpr_threshold=op.threshold,
            precision=mx.precision(y, p, threshold=threshold),
            recall=mx.recall(y, p, threshold=threshold), alarms=int((p >= threshold).sum()),
            brier=mx.brier_score(y, p), ece=mx.reliability(y, p).ece,
            lead_time_median_s=lt.median_s, lead_time_p10_s=lt.p10_s, lead_time_p90_s=lt.p90_s,
        )
        rankable = getattr(model, "rankable", None)
        if rankable is not None and model.input == "features":
            out["rankable"] = float(np.mean(rankable(data.X[idx])))
    out.update(max_fpr=float(max_fpr), min_lead_s=float(min_lead_s), threshold=float(threshold))
    return out


def operating_threshold(model: FailureModel, data: TrainingData, idx: np.ndarray,
                        target: dict[str, Any] | None = None,
                        scores: np.ndarray | None = None) -> OperatingThreshold:
    """The operating threshold of ``model`` chosen on the rows ``idx`` (normally the
    validation split) for ``target`` (:data:`DEFAULT_THRESHOLD_TARGET` keys)."""
    t = {**DEFAULT_THRESHOLD_TARGET, **(target or {})}
    p = data.predict(model, idx) if scores is None else scores
    return choose_threshold(data.y[idx], p, target=t["target"],
                            cost_false_positive=float(t["cost_false_positive"]),
                            cost_miss=float(t["cost_miss"]),
                            min_precision=float(t["min_precision"]))


def fit_model(data: TrainingData, kind: str, params: dict[str, Any] | None = None,
              seed: int = 0, idx: np.ndarray | None = None) -> FailureModel:
    """``make_model(kind, **params)`` fitted on the rows ``idx`` (default: the training
    split) in time order, with their peer groups."""
    model = make_model(kind, **model_params(data, kind, params))
    idx = data.train_idx if idx is None else idx
    model.fit(data.inputs(model, idx), data.y[idx], seed=seed, ts_s=data.ts_s[idx],
              groups=data.groups(idx))
    return model


def train_model(
    data: TrainingData,
    kind: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    threshold_target: dict[str, Any] | None = None,
) -> tuple[FailureModel, dict[str, Any]]:
    """Fit ``make_model(kind, **params)`` on the training split; return it and its
    validation scores (:func:`evaluate`) at its operating threshold, chosen on the
    validation split (:func:`operating_threshold`; under ``"operating_threshold"``)."""
    _check_fpr(max_fpr, min_lead_s)
    model = fit_model(data, kind, params, seed)
    return model, validate(model, data, max_fpr=max_fpr, min_lead_s=min_lead_s,
                           threshold_target=threshold_target)


def validate(model: FailureModel, data: TrainingData, *, max_fpr: float = DEFAULT_MAX_FPR,
             min_lead_s: float = 0.0, threshold_target: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """:func:`evaluate` on the validation split at the operating threshold chosen there."""
    idx = data.val_idx
    p = data.predict(model, idx) if idx.size else np.zeros(0)
    op = operating_threshold(model, data, idx, threshold_target, scores=p)
    val = evaluate(model, data, idx, max_fpr=max_fpr, min_lead_s=min_lead_s,
                   threshold=op.threshold, scores=p)
    val["operating_threshold"] = op.to_dict()
    return val


# --------------------------------------------------------------------------- promotion


def score(metrics: dict[str, Any] | None, prefix: str = "") -> tuple[float, float]:
    """``(PR-AUC, recall_at_fpr)`` of ``metrics`` for ranking; ``nan``/missing → −∞.

    ``score({"pr_auc": 0.4, "recall_at_fpr": None})`` → ``(0.4, -inf)``; with
    ``prefix="val_"`` the keys are ``val_pr_auc`` and ``val_recall_at_fpr``.
    """

    def get(key: str) -> float:
        v = (metrics or {}).get(prefix + key)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return -math.inf
        return v if math.isfinite(v) else -math.inf

    return get("pr_auc"), get("recall_at_fpr")


def _num(v: Any) -> Any:
    """JSON-safe number: ``nan``/``±inf`` → ``None``; numpy scalars → Python."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def jsonable(obj: Any) -> Any:
    """``obj`` with every number JSON-safe (:func:`_num`), recursively through dicts,
    lists and tuples (tuples become lists); other values as they are."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return _num(obj)


def flat_metrics(val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """The registry's metrics: the test split's under their own names (``pr_auc``,
    ``recall_at_fpr``, ``brier``, …: the held-out numbers ``prescale models`` shows)
    and the validation split's as ``val_<name>`` (what promotion compares).
    JSON-safe: ``nan``/``inf`` → ``None``."""
    out = {k: _num(v) for k, v in test.items()}
    out.update({f"val_{k}": _num(v) for k, v in val.items()})
    return out


def _open_registry(registry: Any) -> Any:
    if isinstance(registry, (str, os.PathLike)):
        from prescale.app.store.registry import ModelRegistry

        return ModelRegistry(os.fspath(registry))
    return registry


def registry_app(app: str | None) -> str:
    """The registry's app name: ``None`` (all apps) → ``"_global"``; ``""`` is refused."""
    if app == "":
        raise ValueError("app must not be empty: name an app, or None for every app (_global)")
    if app is not None and not isinstance(app, str):
        raise ValueError(f"app must be a str or None, got {app!r}")
    return GLOBAL_APP if app is None else app


@dataclass(frozen=True)
class Promotion:
    """How a trained model is judged and what promotion does (:mod:`app.models.gate`).

    ``margin_ap`` / ``confidence`` / ``reps``: the gate; ``threshold_target``: how the
    operating threshold is chosen on validation (:data:`DEFAULT_THRESHOLD_TARGET`);
    ``thresholds_path``: the threshold store whose app (or default, for ``_global``)
    threshold starts at a promoted model's operating threshold (``None``: left alone).
    """

    margin_ap: float = DEFAULT_MARGIN_AP
    confidence: float = DEFAULT_CONFIDENCE
    reps: int = DEFAULT_REPS
    threshold_target: dict[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_THRESHOLD_TARGET))
    thresholds_path: str | None = None
    threshold_config: Any = None

    @classmethod
    def from_settings(cls, s: Any, *, seed_thresholds: bool = True) -> Promotion:
        """From a :class:`app.settings.Settings` (the threshold store in its data dir)."""
        from prescale.app.core.thresholds import ThresholdConfig
        from prescale.app.store.thresholds_store import FILE

        m, t = s.models, s.thresholds
        return cls(
            margin_ap=m.gate_margin_ap,
            threshold_target={"target": m.threshold_target,
                              "cost_false_positive": t.cost_false_positive,
                              "cost_miss": t.cost_miss,
                              "min_precision": m.threshold_min_precision},
            thresholds_path=(os.fspath(Path(s.data_dir).resolve() / FILE)
                             if seed_thresholds else None),
            threshold_config=ThresholdConfig.from_settings(t),
        )


def _heuristic_reference(data: TrainingData, idx: np.ndarray) -> Reference:
    """The trend heuristic on the rows ``idx``; a note when it cannot rank them."""
    h = make_model("heuristic", **model_params(data, "heuristic", None))
    x = data.X[idx]
    ok = h.rankable(x)
    note = ""
    if idx.size and not ok.any():
        n = data.X[idx, F["n_samples"]]
        note = (f"the heuristic cannot rank these windows: all {idx.size} have at most "
                f"{int(np.nanmax(n)) if n.size else 0} samples, fewer than its "
                f"min_samples {h.params['min_samples']}; compared as a constant score "
                "(its AP is the base rate)")
    elif idx.size and not ok.all():
        note = (f"the heuristic ranks {int(ok.sum())} of {idx.size} windows (the others have "
                f"fewer than {h.params['min_samples']} samples and score 0)")
    return Reference("heuristic", scores=h.predict_proba(x), note=note)


def unseen_rows(current: Any, data: TrainingData, idx: np.ndarray) -> np.ndarray:
    """``bool`` mask over ``idx``: the rows the ``current`` version did not train on —
    windows ending after its training data (``training["until_s"]``), or of a group
    (job, app, container) it did not train on (``training["trained_groups"]``, kept for
    a split by group). Example: trained until t = 100 on jobs {a, b}; rows (t 50, job c),
    (t 150, job a), (t 50, job a) → True, True, False."""
    tr = current.training or {}
    ts = data.ts_s[idx]
    until = tr.get("until_s")
    out = np.zeros(idx.size, dtype=bool) if until is None else ts > float(until)
    groups = tr.get("trained_groups")
    key = tr.get("trained_group_key")
    if groups is not None and key in data.meta.columns:
        out |= ~np.isin(data.meta[key].to_numpy()[idx].astype(str), np.asarray(groups, str))
    return out


def _current_reference(registry: Any, current: Any, data: TrainingData,
                       idx: np.ndarray) -> Reference:
    """The model serving now, re-scored on the rows of ``idx`` it did not train on (rows
    it trained on would flatter it); when those hold no failure, its registered AP."""
    name = f"current model {current.version_id} ({current.kind})"
    registered = (current.metrics or {}).get("val_pr_auc", (current.metrics or {}).get("pr_auc"))
    unseen = unseen_rows(current, data, idx)
    if not data.y[idx][unseen].any():
        return Reference(name, registered_ap=registered, note=(
            f"its training data covers every validation window with a failure "
            f"({int(unseen.sum())} of {idx.size} windows are new to it, none failing): "
            "compared by its registered validation AP"))
    try:
        model = registry.load(current)
        if model.input == "window":
            x = data.windows[idx] if data.windows is not None else None
            if x is None:
                raise ValueError("it reads the raw window, which this data does not keep")
        else:
            missing = [f for f in current.features if f not in F]
            if missing:
                raise ValueError(f"it reads features this version does not have: {missing[:3]}")
            x = data.X[idx][:, [F[f] for f in current.features]]
        scores = model.predict_proba(x, groups=data.groups(idx))
        return Reference(name, scores=np.asarray(scores, dtype=np.float64),
                         rows=None if unseen.all() else unseen)
    except Exception as exc:  # noqa: BLE001 - any reason it cannot be re-scored is reported
        return Reference(name, registered_ap=registered,
                         note=f"not re-scored on this data: {type(exc).__name__}: {exc}")


def refit_with_threshold(
    data: TrainingData, kind: str, params: dict[str, Any] | None, seed: int,
    val: dict[str, Any], threshold_target: dict[str, Any] | None = None,
) -> tuple[FailureModel, np.ndarray, dict[str, Any], float]:
    """``(model, fit rows, operating threshold dict, threshold)``: ``kind`` refitted on the
    training and validation rows, its threshold chosen on its own out-of-fold
    probabilities over them (cross-fitted calibration), else kept from ``val`` (the
    judged model's validation). What :func:`register_model` registers; the
    cross-validation (:mod:`tuning.cv`) and ``scripts/eval_models.py`` do the same."""
    fit_idx = np.r_[data.train_idx, data.val_idx]
    model = fit_model(data, kind, params, seed, idx=fit_idx)
    oof = model.take_out_of_fold() if hasattr(model, "take_out_of_fold") else None
    if oof is None:
        op = {**(val.get("operating_threshold") or {}),
              "chosen_on": "validation scores of the judged model"}
        return model, fit_idx, op, float(val["threshold"])
    t = {**DEFAULT_THRESHOLD_TARGET, **(threshold_target or {})}
    chosen = choose_threshold(
        data.y[fit_idx], oof, target=t["target"],
        cost_false_positive=float(t["cost_false_positive"]),
        cost_miss=float(t["cost_miss"]), min_precision=float(t["min_precision"]))
    op = {**chosen.to_dict(), "chosen_on": "out-of-fold probabilities of the registered "
          "model over its training and validation rows"}
    return model, fit_idx, op, chosen.threshold


def single_feature_baseline(data: TrainingData, choose_idx: np.ndarray,
                            score_idx: np.ndarray) -> dict[str, Any]:
    """The best single feature (and direction) chosen by AP on the rows ``choose_idx``,
    and its AP and ROC-AUC on ``score_idx``: what a learned model has to beat."""
    if choose_idx.size == 0 or not data.y[choose_idx].any() or score_idx.size == 0:
        return {"feature": None, "direction": None, "pr_auc": None, "roc_auc": None}
    rule = mx.best_single_feature_rule(data.X[choose_idx], data.y[choose_idx], data.features)
    sign = 1.0 if rule.direction == "high" else -1.0
    col = data.X[score_idx, rule.index]
    scores = np.where(np.isnan(col), -np.inf, sign * col)
    y = data.y[score_idx]
    return {"feature": rule.feature, "direction": rule.direction,
            "pr_auc": mx.pr_auc(y, scores), "roc_auc": mx.roc_auc(y, scores)}


def evaluate_version(registry: Any, app: str, source: Any, *, tier: str = "memory",
                     version_id: str | None = None, bins: int = 10) -> dict[str, Any]:
    """Score a registered model on another trace or history (``prescale models evaluate``).

    The version (``version_id``, else the current one of ``(app, tier)``) is loaded and
    every window of ``source`` (a history store or a trace, :func:`build_training_data`
    with ``split="none"`` and the version's own data parameters: horizon, window,
    stride) is scored: AP, ROC-AUC, base rate, precision / recall / alarms at the
    version's stored operating threshold, Brier, the reliability curve, the trend
    heuristic, and the best single feature chosen on these same windows (so an upper
    bound for any one feature). ``ValueError`` names a missing version or feature.
    """
    reg = _open_registry(registry)
    version = reg.get(app, tier, version_id) if version_id else reg.current(app, tier)
    if version is None:
        raise ValueError(f"app {app!r} has no current model of tier {tier!r}; see `prescale "
                         "models`, or name a version")
    model = reg.load(version)
    p = dict(version.training.get("data") or {})
    data = build_training_data(
        source, tier=version.tier, horizon_s=float(p.get("horizon_s") or 30.0),
        window_steps=int(p.get("window_steps") or 60),
        recent_steps=int(p.get("recent_steps") or 10), stride=int(p.get("stride") or 1),
        min_present=int(p.get("min_present") or 2), split="none",
        include_windows=model.input == "window")
    missing = [f for f in version.features if f not in F]
    if missing and model.input == "features":
        raise ValueError(f"{version.app}/{version.version_id} reads features this version of "
                         f"prescale does not compute: {missing[:5]}")
    idx = data.test_idx
    x = (data.windows[idx] if model.input == "window"
         else data.X[idx][:, [F[f] for f in version.features]])
    scores = np.asarray(model.predict_proba(x, groups=data.groups(idx)), dtype=np.float64)
    thr = (version.metrics or {}).get("threshold")
    threshold = math.inf if thr is None else float(thr)
    out = evaluate(model, data, idx, threshold=threshold, scores=scores)
    rel = mx.reliability(data.y[idx], scores, bins=bins) if idx.size else None
    heur = make_model("heuristic", **model_params(data, "heuristic", None))
    hp = heur.predict_proba(data.X[idx])
    y = data.y[idx]
    return jsonable({
        "app": version.app, "tier": version.tier, "version_id": version.version_id,
        "kind": version.kind, "status": version.status, "threshold": thr,
        "windows": data.summary()["test"], "params": data.params, "metrics": out,
        "reliability": None if rel is None else {
            "edges": list(rel.edges), "count": list(rel.count),
            "mean_predicted": list(rel.mean_predicted), "observed": list(rel.observed),
            "ece": rel.ece},
        "heuristic": {"pr_auc": mx.pr_auc(y, hp) if y.size else None,
                      "roc_auc": mx.roc_auc(y, hp) if y.size else None,
                      "rankable": float(np.mean(heur.rankable(data.X[idx]))) if y.size
                      else None},
        "best_single_feature": single_feature_baseline(data, idx, idx),
    })


def nothing_to_learn(data: TrainingData) -> dict[str, Any] | None:
    """The "nothing learned" answer when the training or validation split has no
    positive window (no model is fitted or registered), else ``None``. The reason counts
    the failures so the user sees why, e.g. "0 positive windows of tier memory in
    400,759 training windows (0 failure events): nothing to learn from"."""
    tier = data.params["tier"]
    n_train, n_val = int(data.y[data.train_idx].sum()), int(data.y[data.val_idx].sum())
    if n_train and n_val:
        return None
    n_events = data.params.get("failure_events")
    if not n_train and n_events:
        step = data.params.get("median_step_s")
        why = (f"no positive window of tier {tier} among the {data.train_idx.size:,} training "
               f"windows ({int(data.y.sum()):,} in all {data.n:,}), though the data has "
               f"{n_events:,} failure events of that tier: none falls within the horizon "
               f"({data.params['horizon_s']:g} s) after a window's end"
               + (f" (samples are {step:g} s apart)" if step else "")
               + ": nothing to learn from; train with a longer horizon (--horizon, "
               "predictor.horizon_s)")
    elif not n_train:
        why = (f"no positive window of tier {tier} among the {data.train_idx.size:,} training "
               f"windows ({int(data.y.sum()):,} in all {data.n:,}): nothing to learn from. "
               "A trace without failure events has no labels: derive them with `prescale "
               "replay --derive-failures`, or collect failures first")
    else:
        why = (f"no positive window of tier {tier} among the {data.val_idx.size:,} validation "
               "windows: a model cannot be judged; use more history, a longer horizon or "
               "another split")
    return {"app": registry_app(data.params["app"]), "tier": tier, "kind": None,
            "version_id": None, "promoted": False, "status": "nothing learned",
            "learned": False, "reason": why, "current_version_id": None,
            "data": data.summary()}


def register_model(
    registry: Any,
    model: FailureModel,
    data: TrainingData,
    *,
    val: dict[str, Any],
    training: dict[str, Any],
    promote_if_better: bool = True,
    promotion: Promotion | None = None,
    val_scores: np.ndarray | None = None,
    refit: tuple[str, dict[str, Any] | None, int] | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
) -> dict[str, Any]:
    """Judge ``model`` (fitted on the training split) with the gate
    (:mod:`app.models.gate`) and register it, or what ``refit()`` returns.

    ``refit = (kind, params, seed)`` (when given) fits the same kind and parameters on
    the training *and* validation rows once the gate has judged: every labelled row is
    used (with few positives, the 20 % of validation rows are worth 0.1 AP on Google
    2011, docs/BENCHMARKS.md). The gate's numbers are those of the judged model on the
    held-out validation rows. The operating threshold is then chosen on the refitted
    model's own out-of-fold probabilities over all those rows (its cross-fitted
    calibration, :mod:`app.models.base`) — the scale it will serve on, from every
    positive — else on the judged model's validation scores. The test figures are
    those of the model registered.

    On the validation rows the candidate must beat the model serving now and the trend
    heuristic (AP, by ``promotion.margin_ap`` with the bootstrap interval above 0). When
    nothing could be learned (no positive in the training or validation split, or a
    validation AP that is not a number) nothing is registered (``status``
    ``"nothing learned"``, ``version_id`` None). Otherwise the model is registered with
    the gate's numbers (``training["gate"]``) and its operating threshold (metric
    ``threshold``, chosen on validation), as ``promoted`` (current) or ``candidate``;
    a promoted model's threshold seeds the app's adaptive threshold
    (``promotion.thresholds_path``).
    """
    from prescale.app.store.thresholds_store import seed_threshold

    promotion = promotion or Promotion()
    app = registry_app(data.params["app"])
    tier = data.params["tier"]
    current = registry.current(app, tier)
    idx = data.val_idx
    p = data.predict(model, idx) if val_scores is None else val_scores
    refs = []
    if current is not None:
        refs.append(_current_reference(registry, current, data, idx))
    if model.kind != "heuristic":
        refs.append(_heuristic_reference(data, idx))
    result = judge(data.y[idx], p, refs, data.resample_groups(idx),
                   n_train_positive=int(data.y[data.train_idx].sum()),
                   margin_ap=promotion.margin_ap, confidence=promotion.confidence,
                   reps=promotion.reps, seed=int(data.params.get("split_seed") or 0))
    gate = result.to_dict()
    base = {
        "app": app, "tier": tier, "kind": model.kind,
        "current_version_id": None if current is None else current.version_id,
        "val": jsonable(val), "test": None, "data": data.summary(), "gate": gate,
        "learned": result.learned,
    }
    if not result.learned:
        return {**base, "version_id": None, "promoted": False, "status": "nothing learned",
                "reason": result.reason}
    promote = bool(promote_if_better and result.promote)
    why = result.reason
    if result.promote and not promote_if_better:
        why = f"{why}; but promote_if_better is off"
    fit_idx = data.train_idx
    op = val.get("operating_threshold") or {}
    threshold = float(val["threshold"])
    if refit is not None:
        model, fit_idx, op, threshold = refit_with_threshold(
            data, refit[0], refit[1], refit[2], val, promotion.threshold_target)
    test = evaluate(model, data, data.test_idx, max_fpr=max_fpr, min_lead_s=min_lead_s,
                    threshold=threshold)
    base["test"] = jsonable(test)
    base["test_best_single_feature"] = jsonable(
        single_feature_baseline(data, fit_idx, data.test_idx))
    ts = data.ts_s[fit_idx]
    info = {
        **training,
        "fitted_on": ("training and validation rows (refitted after the gate judged the "
                      "model fitted on the training rows)" if refit is not None
                      else "training rows"),
        "since_s": float(ts.min()),
        "until_s": float(ts.max()),
        "rows": int(fit_idx.size),
        "positives": int(data.y[fit_idx].sum()),
        "kind": model.kind,
        "params": {k: _num(v) for k, v in model.params.items()},
        "data_hash": data.data_hash,
        "data": data.params,
        "splits": data.summary(),
        "fit_info": {k: _num(v) for k, v in model.fit_info.items()},
        "gate": gate,
        "operating_threshold": op,
    }
    if data.params.get("split") == "group":  # what a later gate must not re-score it on
        key = data.params.get("group_key") or "app"
        trained = np.unique(data.meta[key].to_numpy()[fit_idx].astype(str))
        if trained.size <= MAX_TRAINED_GROUPS:
            info.update(trained_group_key=key, trained_groups=trained.tolist())
    metrics = flat_metrics({k: v for k, v in val.items() if k != "operating_threshold"}, test)
    version = registry.register(
        model, app=app, tier=tier, features=list(data.features),
        metrics=metrics, training=info, promote=promote,
    )
    out = {**base, "version_id": version.version_id, "promoted": promote,
           "status": "promoted" if promote else "candidate", "reason": why}
    thr = op.get("threshold")
    if promote and promotion.thresholds_path and thr is not None:
        if tier in ("memory", "cpu"):
            seeded, msg = seed_threshold(promotion.thresholds_path, tier=tier, value=float(thr),
                                         app=None if app == GLOBAL_APP else app,
                                         config=promotion.threshold_config)
            out["threshold_seeded"] = msg
        else:
            out["threshold_seeded"] = (f"not seeded: the live thresholds have no tier "
                                       f"{tier!r} (memory and cpu only)")
    return out


def train_and_register(
    store: HistoryStore | str | os.PathLike[str],
    registry: Any,
    *,
    app: str | None = None,
    kind: str = "hist_gradient_boosting",
    tier: str = "memory",
    params: dict[str, Any] | None = None,
    seed: int = 0,
    horizon_s: float = 30.0,
    window_steps: int = 60,
    recent_steps: int = 10,
    stride: int = 1,
    min_present: int = 2,
    since_s: float | None = None,
    until_s: float | None = None,
    split: str = "auto",
    group_key: str = "app",
    split_seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    promote_if_better: bool = True,
    data: TrainingData | None = None,
    promotion: Promotion | None = None,
    refit: bool = True,
) -> dict[str, Any]:
    """Train one ``kind`` for ``app`` (``None``: all apps → ``"_global"``) and register it.

    ``store`` is a :class:`HistoryStore` or its path, or a trace
    (:func:`build_training_data`); ``registry`` a ``ModelRegistry`` or its root path.
    The model is fitted on the training split, its operating threshold chosen on
    validation (``promotion.threshold_target``), scored on validation and test at that
    threshold, and judged by the gate (:func:`register_model`): registered with its
    metrics (``val_*`` and the test split's), the gate's numbers, features, data hash
    and parameters, and promoted only if it beats the current model and the heuristic;
    otherwise it stays a candidate, or is not registered at all when nothing could be
    learned, and ``reason`` says why in words. ``data`` reuses a :class:`TrainingData`
    (its parameters win over the data arguments).

    Returns ``{"app", "tier", "kind", "version_id", "promoted", "status", "reason",
    "learned", "gate", "current_version_id", "val", "test", "data", "elapsed_s"}``,
    JSON-safe (``nan`` → ``None``): ``json.dumps(out, allow_nan=False)`` works.
    """
    t0 = time.perf_counter()
    registry_app(app)
    model_class(kind)  # unknown kind: fail before reading anything
    _check_fpr(max_fpr, min_lead_s)
    reg = _open_registry(registry)
    if data is None:
        data = build_training_data(
            store, app=app, tier=tier, horizon_s=horizon_s, window_steps=window_steps,
            recent_steps=recent_steps, stride=stride, min_present=min_present,
            since_s=since_s, until_s=until_s, split=split, group_key=group_key,
            split_seed=split_seed, max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
            include_windows=model_class(kind).input == "window",
        )
    promotion = promotion or Promotion()
    nothing = nothing_to_learn(data)
    if nothing is not None:
        return jsonable({**nothing, "kind": kind,
                         "elapsed_s": round(time.perf_counter() - t0, 3)})
    model, val = train_model(data, kind, params, seed, max_fpr=max_fpr, min_lead_s=min_lead_s,
                             threshold_target=promotion.threshold_target)
    out = register_model(
        reg, model, data, val=val,
        training={"method": "train", "seed": seed},
        promote_if_better=promote_if_better, promotion=promotion,
        refit=(kind, params, seed) if refit else None, max_fpr=max_fpr, min_lead_s=min_lead_s,
    )
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return jsonable(out)


# --------------------------------------------------------------------------- tuning


@contextlib.contextmanager
def _ray_session(
    num_cpus: int | None, object_store_memory: int | None, log_to_driver: bool
) -> Iterator[bool]:
    """Use the running Ray, or start a local one (no dashboard) and stop it afterwards."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield False
        return
    kwargs: dict[str, Any] = {
        "address": "local",  # a new local Ray, never one that happens to run on the host
        "num_cpus": num_cpus or os.cpu_count() or 1,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": log_to_driver,
    }
    if object_store_memory is not None:
        kwargs["object_store_memory"] = object_store_memory
    ray.init(**kwargs)
    try:
        yield True
    finally:
        ray.shutdown()


#: The Ray session of :func:`tune_and_register`, for callers that run several (the CLI's
#: ``retrain``): the running Ray, or a local one for the block.
ray_session = _ray_session


@contextlib.contextmanager
def _quiet_tune(verbose: int) -> Iterator[None]:
    """No warnings about checkpoint snapshots (one per step is by design) and, with
    ``verbose = 0``, Tune's legacy output engine, which is silent at 0 (the new one
    still prints its experiment table)."""
    env = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    if verbose == 0:
        env["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tune_and_register(
    store: HistoryStore | str | os.PathLike[str],
    registry: Any,
    *,
    app: str | None = None,
    tier: str = "memory",
    trials: int = 8,
    storage_path: str | os.PathLike[str] | None = None,
    kinds: Sequence[str] = DEFAULT_TUNE_KINDS,
    seed: int = 0,
    horizon_s: float = 30.0,
    window_steps: int = 60,
    recent_steps: int = 10,
    stride: int = 1,
    min_present: int = 2,
    since_s: float | None = None,
    until_s: float | None = None,
    split: str = "auto",
    group_key: str = "app",
    split_seed: int = 0,
    max_train_rows: int | None = DEFAULT_TUNE_MAX_TRAIN_ROWS,
    max_eval_rows: int | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    num_cpus: int | None = None,
    max_concurrent_trials: int | None = None,
    n_steps: int = 3,
    time_budget_s: float | None = None,
    reuse_actors: bool = True,
    object_store_memory: int | None = None,
    progress: bool = False,
    verbose: int = 0,
    name: str | None = None,
    promote_if_better: bool = True,
    data: TrainingData | None = None,
    promotion: Promotion | None = None,
    refit: bool = True,
    trial_nice: int = 0,
) -> dict[str, Any]:
    """Search model kinds and hyperparameters with Ray Tune; register the best.

    1. :func:`build_training_data` once in the driver (by default at most
       ``max_train_rows = 20 000`` training rows, a uniform sample, which keeps 8
       trials within minutes on 2 cores); the data goes to the object store once
       (``tune.with_parameters``).
    2. The heuristic baseline (when ``"heuristic"`` is in ``kinds``) is scored in the
       driver, not as a trial (:mod:`tuning.space` says why).
    3. ``Tuner`` over :func:`tuning.space.search_space` (the learned kinds of
       ``kinds``; ``"lstm"`` only if asked for, and with torch) with ``trials``
       samples, one CPU per trial, at most ``max_concurrent_trials`` (default: the
       CPUs Ray has) at once, :class:`~ray.tune.schedulers.ASHAScheduler` on
       ``val_pr_auc`` (max) over the ``n_steps`` growing fits of each trial
       (:mod:`tuning.trainable`), so poor trials stop early. A trial that fails is
       recorded (``errored``, with its error) and the search goes on.
    4. The best contender by validation (PR-AUC, then recall@FPR) — each trial's last
       report, stopped trials included, and the baseline — is taken as is (a trial's
       model from its checkpoint: no refit, it is the very model that was scored),
       scored on the test split and registered; promoted only if it beats the
       current model (:func:`compare`).

    Ray: uses the running Ray, else starts one with ``num_cpus`` (default: every
    core), no dashboard, and stops it at the end. ``storage_path`` (default
    ``./.prescale/tune``) keeps Tune's results under ``name``. ``progress`` shows a
    rich progress bar (trials done, best score); ``verbose`` is Tune's own output
    (0 = silent); ``trial_nice`` (> 0) runs the trials at that CPU priority (``nice``),
    below the control loop's. Data whose training or validation split has no positive returns the
    "nothing learned" answer of :func:`nothing_to_learn` before Ray starts (nothing to
    rank the trials by). ``data`` reuses a :class:`TrainingData` (its parameters win
    over the data arguments).

    Measured on the 2-core dev machine while other sessions kept its load average at
    7–9 (so an idle machine does better), ``trials = 8``, Ray started by the call:

    - Google 2011 (6,153 windows, one per task; ``tier="any"``, ``horizon_s=86400``,
      ``window_steps=2``, ``split="group"`` by job, ``split_seed=17``): 50 s (data
      2.6 s, Tune with Ray start-up 45 s; best: boosting, test PR-AUC 0.106 against a
      base rate of 0.014); 42 s with ``kinds=("random_forest", "heuristic")``.
    - Bitbrains-derived (50 VMs, 413k samples; OOM kills derived from a limit of 1.3 ×
      the early median usage; ``horizon_s=1800``, ``window_steps=12``, ``stride=2``,
      20,000 training rows): 82 s (data 3.2 s, Tune 76 s; test PR-AUC 0.727 against
      a base rate of 0.251); 107 s without actor reuse.

    Returns what :func:`train_and_register` returns plus ``"tune": {"trials",
    "completed", "errored", "best_trial", "best_config", "experiment_path",
    "max_concurrent_trials", "leaderboard", "data_s", "tune_s"}``; the leaderboard
    lists every contender, best first.
    """
    from prescale.tuning.space import has_baseline, search_space, tuned_kinds

    t0 = time.perf_counter()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an int ≥ 1, got {trials!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an int ≥ 1, got {n_steps!r}")
    if verbose not in (0, 1, 2, 3):
        raise ValueError(f"verbose must be 0, 1, 2 or 3, got {verbose!r}")
    _check_fpr(max_fpr, min_lead_s)
    registry_app(app)
    space = search_space(kinds, seed=seed, max_fpr=max_fpr, min_lead_s=min_lead_s,
                         n_steps=n_steps)
    space["nice"] = int(trial_nice)
    reg = _open_registry(registry)
    if data is None:
        data = build_training_data(
            store, app=app, tier=tier, horizon_s=horizon_s, window_steps=window_steps,
            recent_steps=recent_steps, stride=stride, min_present=min_present,
            since_s=since_s, until_s=until_s, split=split, group_key=group_key,
            split_seed=split_seed, max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
            include_windows="lstm" in tuned_kinds(kinds),
        )
    promotion = promotion or Promotion()
    nothing = nothing_to_learn(data)
    if nothing is not None:  # before Ray starts: no trial could be ranked
        return jsonable({**nothing, "elapsed_s": round(time.perf_counter() - t0, 3)})
    t_data = time.perf_counter() - t0

    contenders: list[tuple[tuple[float, float], dict[str, Any], Any]] = []
    if has_baseline(kinds):
        t_b = time.perf_counter()
        baseline, b_val = train_model(data, "heuristic", None, seed, max_fpr=max_fpr,
                                      min_lead_s=min_lead_s,
                                      threshold_target=promotion.threshold_target)
        row = {"trial_id": "baseline", "kind": "heuristic", "params": {}, "steps": 1,
               "val_pr_auc": _num(b_val["pr_auc"]),
               "val_recall_at_fpr": _num(b_val["recall_at_fpr"]),
               "time_s": round(time.perf_counter() - t_b, 2)}
        contenders.append((score(b_val), row, baseline))

    storage = os.path.abspath(os.fspath(storage_path or os.path.join(".prescale", "tune")))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = name or f"tune-{registry_app(data.params['app'])}-{data.params['tier']}-{stamp}"
    run_name = run_name.replace("/", "_")
    errors: list[dict[str, Any]] = []
    with _ray_session(num_cpus, object_store_memory, verbose > 0), _quiet_tune(verbose):
        concurrent, grid = _run_tuner(
            data, space, trials=trials, n_steps=n_steps, seed=seed,
            max_concurrent_trials=max_concurrent_trials, time_budget_s=time_budget_s,
            reuse_actors=reuse_actors, storage=storage, run_name=run_name,
            progress=progress, verbose=verbose,
        )
        t_tune = time.perf_counter() - t0 - t_data
        for res in grid:
            row = _trial_row(res)
            if "error" in row:
                errors.append(row)
            else:
                contenders.append((score(row, "val_"), row, res))
        experiment_path = grid.experiment_path
        if not contenders:
            raise RuntimeError(
                f"no Tune trial produced a model: {[e['error'] for e in errors[:3]]}"
            )
        contenders.sort(key=lambda c: c[0], reverse=True)
        _, best_row, best = contenders[0]
        model = best if isinstance(best, FailureModel) else _checkpoint_model(best)

    val = validate(model, data, max_fpr=max_fpr, min_lead_s=min_lead_s,
                   threshold_target=promotion.threshold_target)
    # the trial's parameters, with the default (cross-fitted) calibration of a full fit
    best_kind = best_row["kind"]
    best_params = {k: v for k, v in model.params.items() if k != "calibration_folds"}
    out = register_model(
        reg, model, data, val=val,
        training={
            "method": "tune", "seed": seed, "trials": trials,
            "best_trial": best_row["trial_id"], "experiment_path": experiment_path,
        },
        promote_if_better=promote_if_better, promotion=promotion,
        refit=(best_kind, best_params, seed) if refit and model.trainable else None,
        max_fpr=max_fpr, min_lead_s=min_lead_s,
    )
    out["tune"] = {
        "trials": trials,
        "completed": sum(1 for c in contenders if c[1]["trial_id"] != "baseline"),
        "errored": len(errors),
        "best_trial": best_row["trial_id"],
        "best_config": {"kind": best_row["kind"], "params": best_row["params"]},
        "experiment_path": experiment_path,
        "max_concurrent_trials": concurrent,
        "leaderboard": [c[1] for c in contenders] + errors,
        "data_s": round(t_data, 3),
        "tune_s": round(t_tune, 3),
    }
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return jsonable(out)


def _run_tuner(
    data: TrainingData,
    space: dict[str, Any],
    *,
    trials: int,
    n_steps: int,
    seed: int,
    max_concurrent_trials: int | None,
    time_budget_s: float | None,
    reuse_actors: bool,
    storage: str,
    run_name: str,
    progress: bool,
    verbose: int,
) -> tuple[int, Any]:
    """Run the Tuner (Ray is up); ``(max concurrent trials, ResultGrid)``."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from prescale.tuning.trainable import METRIC, RichProgressCallback, trainable

    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    concurrent = max_concurrent_trials or max(1, min(trials, cpus))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=trials,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=n_steps, grace_period=1,
                reduction_factor=2,
            ),
            # the concurrency limit goes here: TuneConfig.max_concurrent_trials is
            # ignored when a search algorithm instance is given
            search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=concurrent),
            time_budget_s=time_budget_s,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=storage,
            verbose=verbose,
            callbacks=[RichProgressCallback(trials)] if progress else [],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return concurrent, tuner.fit()


def _trial_row(res: Any) -> dict[str, Any]:
    """One leaderboard row of a Tune result (``error`` set when it has no model)."""
    from prescale.tuning.trainable import METRIC, config_kind_params

    m = res.metrics or {}
    kind, params = config_kind_params(res.config) if res.config else (None, {})
    row: dict[str, Any] = {"trial_id": m.get("trial_id") or getattr(res, "path", None),
                           "kind": kind, "params": params}
    if res.error is not None or not m or res.checkpoint is None:
        row["error"] = str(res.error)[-300:] if res.error is not None else "no result"
        return row
    row.update(
        steps=m.get("training_iteration"),
        val_pr_auc=_num(m.get(METRIC)),
        val_recall_at_fpr=_num(m.get("val_recall_at_fpr")),
        time_s=_num(round(float(m.get("time_total_s", float("nan"))), 2)),
    )
    return row


def _checkpoint_model(res: Any) -> FailureModel:
    """The model in a Tune result's (last) checkpoint."""
    from prescale.tuning.trainable import MODEL_FILE

    with tempfile.TemporaryDirectory() as tmp:
        res.checkpoint.to_directory(tmp)
        return load_model(Path(tmp, MODEL_FILE).read_bytes())
