"""Offline training: history store → labelled feature matrix → model → registry.

The pipeline (no Ray needed, except :func:`tune_and_register`)::

    HistoryStore.read_samples / read_events          (app, [since_s, until_s))
      → app.core.dataset.feature_matrix              (windows of W steps, every stride-th)
      → app.core.labels.label / lead_time_s          (failure of `tier` within horizon_s)
      → time_split (gap = horizon) or group_split    (train / validation / test)
      → make_model(kind, **params).fit(train)        (app.models)
      → evaluate(validation), evaluate(test)
      → ModelRegistry.register(…, promote=beats current on validation)

:func:`build_training_data` returns a :class:`TrainingData`; :func:`train_model`
fits one kind on its training split; :func:`evaluate` scores a model on any split;
:func:`train_and_register` and :func:`tune_and_register` (Ray Tune over kinds and
hyperparameters, :mod:`tuning.space`, :mod:`tuning.trainable`) end with the
registry. The CLI calls the last two with plain values (paths, ints, strings).

App grouping
    ``app="web"`` trains on the samples and events of app ``web`` only and registers
    the model under ``web``; ``app=None`` trains one model on every app of the store
    and registers it under :data:`GLOBAL_APP` (``"_global"``), the fallback for
    apps without a model of their own.

Metrics (:func:`evaluate`, all from :mod:`app.models.metrics`; ``nan`` when 0/0)
    ``pr_auc`` (average precision), ``recall_at_fpr`` (best recall with a
    false-positive rate ≤ ``max_fpr``, default 5 %, counting only the positives whose
    lead time is ≥ ``min_lead_s``: a warning too late to act on is left out),
    ``precision`` / ``recall`` at ``threshold`` (default 0.5), ``brier``,
    ``base_rate`` (the PR-AUC of a model that knows nothing), and the lead-time
    median / p10 / p90 of the true positives at ``threshold``.

Promotion (:func:`compare`)
    A new model is promoted when its validation PR-AUC is higher than the current
    model's (as registered), or equal and its ``recall_at_fpr`` is higher. A score
    that is ``nan``/missing counts as −∞. Worked example: current (0.40, 0.30), new
    (0.40, 0.35) → promoted ("val PR-AUC ties at 0.4000, recall@FPR 0.3500 > current
    0.3000"); new (0.38, 0.90) → candidate ("val PR-AUC 0.3800 ≤ current 0.4000"). With
    no current model the new one is promoted. The two scores come from each model's
    own validation period; re-scoring the current model on the new validation period
    would flatter it whenever that period lies inside its own training data.

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

from app.core.dataset import feature_matrix, window_array
from app.core.features import FEATURES, F
from app.core.labels import LABEL_TIERS, group_split, lead_time_s, time_split
from app.models import FailureModel, load_model, make_model, model_class
from app.models import metrics as mx

if TYPE_CHECKING:
    from app.store.history import HistoryStore

#: Registry app name of the model trained on every app (``app=None``).
GLOBAL_APP = "_global"
DEFAULT_MAX_FPR = 0.05
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("time", "group")
#: The model kinds :func:`tune_and_register` searches by default (lstm: on request).
DEFAULT_TUNE_KINDS = ("random_forest", "hist_gradient_boosting", "heuristic")
DEFAULT_TUNE_MAX_TRAIN_ROWS = 20_000


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

    @property
    def n(self) -> int:
        return int(self.y.size)

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
    from app.store.history import HistoryStore

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


def build_training_data(
    store: HistoryStore | str | os.PathLike[str],
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
    split: str = "time",
    group_key: str = "app",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    include_windows: bool = False,
    throttle_target_fraction: float | None = None,
) -> TrainingData:
    """Read the history of ``app`` (``None``: every app) and make a :class:`TrainingData`.

    - Samples with ``since_s ≤ ts_s < until_s``; events up to ``until_s + horizon_s``
      (a window near the end is labelled by what happened after it).
    - Windows of ``window_steps`` rows end at every ``stride``-th row of a container
      once it has ``min_present`` rows (:mod:`app.core.dataset`); features use
      ``recent_steps`` for the recent slope and throttling.
    - ``y = 1`` when a failure of ``tier`` (:data:`app.core.labels.TIER_EVENTS`;
      ``throttle_target_fraction`` adds throttling above it as a cpu failure) hits
      the window's container within ``(ts_end_s, ts_end_s + horizon_s]``.
    - ``split="time"``: :func:`~app.core.labels.time_split` with ``gap_s =
      horizon_s`` (no training label looks into the validation period);
      ``split="group"``: :func:`~app.core.labels.group_split` by ``group_key``
      (``"app"`` or ``"container"``; for traces where time order means nothing,
      e.g. Google 2011, one snapshot per task: split by job).
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
    if split == "group" and group_key not in ("app", "container"):
        raise ValueError(f"group_key must be 'app' or 'container', got {group_key!r}")
    if app is not None and not isinstance(app, str):
        raise ValueError(f"app must be a str or None, got {app!r}")
    max_train_rows = _check_optional_int("max_train_rows", max_train_rows)
    max_eval_rows = _check_optional_int("max_eval_rows", max_eval_rows)
    st = open_store(store)

    samples = st.read_samples(app=app, since_s=since_s, until_s=until_s)
    if samples.empty:
        where = "any app" if app is None else f"app {app!r}"
        raise ValueError(
            f"no samples for {where} in the history store {st.root!r} "
            f"(since_s={since_s}, until_s={until_s}); apps with data: {st.apps()}"
        )
    events_until = None if until_s is None else until_s + horizon_s
    events = st.read_events(app=app, since_s=since_s, until_s=events_until)

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
    throttled = None
    if throttle_target_fraction is not None:
        throttled = X[:, F["cpu_throttled_fraction"]]
    lead = lead_time_s(
        meta, events, tier=tier, horizon_s=horizon_s,
        throttle_target_fraction=throttle_target_fraction, throttled_fraction=throttled,
    )
    y = (~np.isnan(lead)).astype(np.int8)

    if split == "time":
        parts = time_split(meta, fractions, gap_s=horizon_s)
    else:
        parts = group_split(meta, key=group_key, fractions=fractions, seed=split_seed)
    if len(parts) != 3:
        raise ValueError(f"fractions must give 3 splits (train, val, test), got {len(parts)}")
    rng = np.random.default_rng(split_seed)
    train_idx = _subsample(parts[0], max_train_rows, rng)
    val_idx = _subsample(parts[1], max_eval_rows, rng)
    test_idx = _subsample(parts[2], max_eval_rows, rng)
    if train_idx.size == 0:
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
    }
    data_hash = _hash((X, y, train_idx, val_idx, test_idx), params)
    return TrainingData(
        X=X, y=y, lead_time_s=lead, meta=meta, features=tuple(FEATURES),
        train_idx=train_idx, val_idx=val_idx, test_idx=test_idx, params=params,
        data_hash=data_hash, windows=windows,
    )


# --------------------------------------------------------------------------- models


def model_params(data: TrainingData, kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` completed with what the data implies (the heuristic's tier and horizon).

    The heuristic predicts the ``memory`` or ``cpu`` tier (``any``/``disk`` data:
    ``memory``), looks ``horizon_s`` ahead, and needs at most ``window_steps``
    samples. Example: cpu data, horizon 60, W = 2 → ``{"tier": "cpu", "horizon_s":
    60.0, "min_samples": 2}``.
    """
    out = dict(params or {})
    if kind == "heuristic":
        tier = data.params["tier"]
        out.setdefault("tier", tier if tier in ("memory", "cpu") else "memory")
        out.setdefault("horizon_s", float(data.params["horizon_s"]))
        out.setdefault("min_samples", min(5, int(data.params["window_steps"])))
    return out


def evaluate(
    model: FailureModel,
    data: TrainingData,
    idx: np.ndarray,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Scores of ``model`` on the rows ``idx`` of ``data`` (see the module doc).

    Keys: ``n``, ``n_positive``, ``base_rate``, ``pr_auc``, ``recall_at_fpr``,
    ``fpr_threshold`` (the threshold that reaches it), ``precision``, ``recall``,
    ``brier``, ``lead_time_median_s``, ``lead_time_p10_s``, ``lead_time_p90_s``,
    and the ``max_fpr``, ``min_lead_s``, ``threshold`` used. ``nan`` where a metric
    is 0/0 (e.g. PR-AUC without positives).
    """
    _check_fpr(max_fpr, min_lead_s)
    idx = np.asarray(idx, dtype=np.int64)
    y = data.y[idx]
    nan = float("nan")
    out: dict[str, Any] = {"n": int(idx.size), "n_positive": int(y.sum())}
    if idx.size == 0:
        out.update(base_rate=nan, pr_auc=nan, recall_at_fpr=nan, fpr_threshold=nan,
                   precision=nan, recall=nan, brier=nan, lead_time_median_s=nan,
                   lead_time_p10_s=nan, lead_time_p90_s=nan)
    else:
        p = model.predict_proba(data.inputs(model, idx))
        lead = data.lead_time_s[idx]
        op = mx.operating_point(y, p, max_fpr=max_fpr, lead_time_s=lead, min_lead_s=min_lead_s)
        lt = mx.lead_time_stats(y, p, lead, threshold=threshold)
        out.update(
            base_rate=mx.base_rate(y), pr_auc=mx.pr_auc(y, p), recall_at_fpr=op.recall,
            fpr_threshold=op.threshold, precision=mx.precision(y, p, threshold=threshold),
            recall=mx.recall(y, p, threshold=threshold), brier=mx.brier_score(y, p),
            lead_time_median_s=lt.median_s, lead_time_p10_s=lt.p10_s, lead_time_p90_s=lt.p90_s,
        )
    out.update(max_fpr=float(max_fpr), min_lead_s=float(min_lead_s), threshold=float(threshold))
    return out


def train_model(
    data: TrainingData,
    kind: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    *,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
) -> tuple[FailureModel, dict[str, Any]]:
    """Fit ``make_model(kind, **params)`` on the training split; return it and its
    validation scores (:func:`evaluate`). Rows are fitted in time order (``ts_s``)."""
    _check_fpr(max_fpr, min_lead_s)
    model = make_model(kind, **model_params(data, kind, params))
    idx = data.train_idx
    model.fit(data.inputs(model, idx), data.y[idx], seed=seed, ts_s=data.ts_s[idx])
    return model, evaluate(model, data, data.val_idx, max_fpr=max_fpr, min_lead_s=min_lead_s)


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


def compare(new_val: dict[str, Any], current_val: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether validation scores ``new_val`` beat ``current_val``, and why (module doc)."""
    new = score(new_val)
    if current_val is None:
        return True, "no current model"
    cur = score(current_val)
    if new[0] == -math.inf:
        return False, "the new model has no validation PR-AUC (no positive in the validation split)"
    if new[0] > cur[0]:
        return True, f"val PR-AUC {new[0]:.4f} > current {_fmt(cur[0])}"
    if new[0] == cur[0] and new[1] > cur[1]:
        return True, (f"val PR-AUC ties at {new[0]:.4f}, recall@FPR {_fmt(new[1])} > "
                      f"current {_fmt(cur[1])}")
    if new[0] == cur[0]:
        return False, (f"val PR-AUC ties at {new[0]:.4f} and recall@FPR {_fmt(new[1])} ≤ "
                       f"current {_fmt(cur[1])}")
    return False, f"val PR-AUC {new[0]:.4f} ≤ current {_fmt(cur[0])}"


def _fmt(v: float) -> str:
    return "unknown" if v == -math.inf else f"{v:.4f}"


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
        from app.store.registry import ModelRegistry

        return ModelRegistry(os.fspath(registry))
    return registry


def registry_app(app: str | None) -> str:
    """The registry's app name: ``None`` (all apps) → ``"_global"``; ``""`` is refused."""
    if app == "":
        raise ValueError("app must not be empty: name an app, or None for every app (_global)")
    if app is not None and not isinstance(app, str):
        raise ValueError(f"app must be a str or None, got {app!r}")
    return GLOBAL_APP if app is None else app


def _current_val(registry: Any, app: str, tier: str) -> tuple[Any, dict[str, Any] | None]:
    """The current version of (app, tier) and its validation scores (``val_*``; a
    version registered without them is compared on its plain ``pr_auc`` /
    ``recall_at_fpr``)."""
    current = registry.current(app, tier)
    if current is None:
        return None, None
    m = dict(getattr(current, "metrics", None) or {})
    prefix = "val_" if "val_pr_auc" in m else ""
    return current, {"pr_auc": m.get(f"{prefix}pr_auc"),
                     "recall_at_fpr": m.get(f"{prefix}recall_at_fpr")}


def register_model(
    registry: Any,
    model: FailureModel,
    data: TrainingData,
    *,
    val: dict[str, Any],
    test: dict[str, Any],
    training: dict[str, Any],
    promote_if_better: bool = True,
) -> dict[str, Any]:
    """Register ``model``; promote it if ``promote_if_better`` and it beats the current one."""
    app = registry_app(data.params["app"])
    tier = data.params["tier"]
    current, current_val = _current_val(registry, app, tier)
    better, why = compare(val, current_val)
    promote = bool(promote_if_better and better)
    if better and not promote_if_better:
        why = f"{why}, but promote_if_better is off"
    ts = data.ts_s[data.train_idx]
    info = {
        **training,
        "since_s": float(ts.min()),
        "until_s": float(ts.max()),
        "rows": int(data.train_idx.size),
        "positives": int(data.y[data.train_idx].sum()),
        "kind": model.kind,
        "params": {k: _num(v) for k, v in model.params.items()},
        "data_hash": data.data_hash,
        "data": data.params,
        "splits": data.summary(),
        "fit_info": {k: _num(v) for k, v in model.fit_info.items()},
    }
    version = registry.register(
        model, app=app, tier=tier, features=list(data.features),
        metrics=flat_metrics(val, test), training=info, promote=promote,
    )
    return {
        "app": app,
        "tier": tier,
        "kind": model.kind,
        "version_id": version.version_id,
        "promoted": promote,
        "status": "promoted" if promote else "candidate",
        "reason": why,
        "current_version_id": None if current is None else current.version_id,
        "val": {k: _num(v) for k, v in val.items()},
        "test": {k: _num(v) for k, v in test.items()},
        "data": data.summary(),
    }


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
    split: str = "time",
    group_key: str = "app",
    split_seed: int = 0,
    max_train_rows: int | None = None,
    max_eval_rows: int | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    promote_if_better: bool = True,
    data: TrainingData | None = None,
) -> dict[str, Any]:
    """Train one ``kind`` for ``app`` (``None``: all apps → ``"_global"``) and register it.

    ``store`` is a :class:`HistoryStore` or its path; ``registry`` a
    ``ModelRegistry`` or its root path. The model is fitted on the training split,
    scored on validation and test, registered with its metrics (``val_*``,
    ``test_*``), features, data hash and parameters, and promoted only if it beats
    the current model of (app, tier) on validation (:func:`compare`); otherwise it
    stays a candidate and ``reason`` says why. ``data`` reuses a
    :class:`TrainingData` (its parameters win over the data arguments).

    Returns ``{"app", "tier", "kind", "version_id", "promoted", "status", "reason",
    "current_version_id", "val", "test", "data", "elapsed_s"}``, JSON-safe (``nan``
    → ``None``): ``json.dumps(out, allow_nan=False)`` works.
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
    model, val = train_model(data, kind, params, seed, max_fpr=max_fpr, min_lead_s=min_lead_s)
    test = evaluate(model, data, data.test_idx, max_fpr=max_fpr, min_lead_s=min_lead_s)
    out = register_model(
        reg, model, data, val=val, test=test,
        training={"method": "train", "seed": seed},
        promote_if_better=promote_if_better,
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
    split: str = "time",
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
    (0 = silent). Refuses data whose validation split has no positive (nothing to
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
    from tuning.space import has_baseline, search_space, tuned_kinds

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
    reg = _open_registry(registry)
    if data is None:
        data = build_training_data(
            store, app=app, tier=tier, horizon_s=horizon_s, window_steps=window_steps,
            recent_steps=recent_steps, stride=stride, min_present=min_present,
            since_s=since_s, until_s=until_s, split=split, group_key=group_key,
            split_seed=split_seed, max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
            include_windows="lstm" in tuned_kinds(kinds),
        )
    if int(data.y[data.val_idx].sum()) == 0:
        raise ValueError(
            f"the validation split has no positive window ({data.val_idx.size} windows): "
            "trials cannot be ranked; use more history, a longer horizon or another split"
        )
    t_data = time.perf_counter() - t0

    contenders: list[tuple[tuple[float, float], dict[str, Any], Any]] = []
    if has_baseline(kinds):
        t_b = time.perf_counter()
        baseline, b_val = train_model(data, "heuristic", None, seed, max_fpr=max_fpr,
                                      min_lead_s=min_lead_s)
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

    val = evaluate(model, data, data.val_idx, max_fpr=max_fpr, min_lead_s=min_lead_s)
    test = evaluate(model, data, data.test_idx, max_fpr=max_fpr, min_lead_s=min_lead_s)
    out = register_model(
        reg, model, data, val=val, test=test,
        training={
            "method": "tune", "seed": seed, "trials": trials,
            "best_trial": best_row["trial_id"], "experiment_path": experiment_path,
        },
        promote_if_better=promote_if_better,
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

    from tuning.trainable import METRIC, RichProgressCallback, trainable

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
    from tuning.trainable import METRIC, config_kind_params

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
    from tuning.trainable import MODEL_FILE

    with tempfile.TemporaryDirectory() as tmp:
        res.checkpoint.to_directory(tmp)
        return load_model(Path(tmp, MODEL_FILE).read_bytes())
