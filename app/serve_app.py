"""The prediction API on Ray Serve: ``/v1/predict``, ``/v1/recommend``, ``/v1/samples``,
``/v1/models``, ``/healthz`` and the OpenAPI document (``/openapi.json``, ``/docs``).

Layers, from pure to I/O:

- pure functions (no I/O, no Ray): request → window array (:func:`window_of`),
  batched prediction (:func:`predict_jobs`), JSON rendering, request limits
  (:func:`oversize_reason`), ingestion planning (:func:`plan_ingest`);
- :class:`PredictionService`: the same pipeline as the coordinator (features →
  :class:`~app.core.predictor.TrendExhaustionPredictor` → the app's registered model
  via :class:`~app.store.registry.ModelCache`; ``/v1/recommend``: the engine's own
  decide path, :meth:`~app.core.engine.Engine.propose`, with the configured policy and
  the loop's learned thresholds), plus the model registry and the history store;
  usable in-process without Ray (benchmarks);
- :func:`build_api`: the FastAPI app around a service, with :class:`RequestGuard`
  (token and body size, checked before the body is read);
- :class:`PrescaleAPI`: the Serve deployment (FastAPI ingress built per replica,
  ``@serve.batch`` over the predict path, ``reconfigure(user_config)``);
- :func:`build_app` (the ``import_path`` of ``configs/serve.yaml``),
  :func:`app_from_settings` and :func:`run_serve` (``prescale serve``).

Batching: every ``/v1/predict`` and ``/v1/recommend`` request is one item of a
``@serve.batch`` call (up to ``max_batch_size`` requests, waiting at most
``batch_wait_timeout_s`` for the batch to fill). A batch is featurised with one
:func:`~app.core.features.compute_features` call per window length and predicted with
one predictor call; each app's model is called once per batch. Worked example: 3
requests with 1, 100 and 1 containers whose windows all have 20 samples → one
``compute_features`` over ``[102, 20, M]`` and one ``predict`` over ``[102, F]``.

Hot reload: before a batch (and on ``/healthz`` and ``/v1/models``) the replica calls
``ModelCache.refresh`` if ``model_poll_interval_s`` has passed since the last call (one
128-byte read while nothing changed); ``reconfigure`` with a new ``user_config``
(``serve deploy``) refreshes at once. A corrupt new version is refused and the
previous one keeps serving (the refusal is listed in ``/v1/models`` ``failures`` and
``/healthz`` ``model_errors``).

Auth: when a token is configured (``user_config.api_token``, else
``settings.api.token`` if that group exists, else ``$PRESCALE_API_TOKEN``) every route
except ``/healthz`` needs ``Authorization: Bearer <token>`` (else 401, checked before
the body is read). ``/healthz`` stays open for load balancers and probes and reveals
no data beyond model counts.

Limits (``user_config``): a body above ``max_body_bytes`` (``Content-Length``, or the
bytes read so far when the body is chunked) → 413 before parsing; more than
``max_containers`` containers or ``max_samples`` samples per request (for windows:
containers × the longest window, the size of the padded array) → 413 before any
computation.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from prescale.app.api_models import (
    API_VERSION,
    HealthResponse,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    RecommendResponse,
    SamplesRequest,
    SamplesResponse,
    ServeUserConfig,
    out_number,
)
from prescale.app.core.engine import Engine, EngineConfig, Plan, Snapshot
from prescale.app.core.features import FEATURES, F, compute_features
from prescale.app.core.predictor import Prediction, TierPrediction, TrendExhaustionPredictor
from prescale.app.core.sample import METRICS, Event, EventKind, Sample, Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.core.validation import EPOCH_2000_S, Validator
from prescale.app.settings import Settings, load_settings

log = logging.getLogger("prescale.serve")

TOKEN_ENV = "PRESCALE_API_TOKEN"
APP_NAME = "prescale"
DEPLOYMENT_NAME = "PrescaleAPI"
#: Routes that never need the token.
OPEN_PATHS = frozenset({"/healthz"})
#: Replica defaults: small CPU share, many requests in flight (≥ the batch size).
REPLICA_NUM_CPUS = 0.25
MAX_ONGOING_REQUESTS = 64
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 16,
    "upscale_delay_s": 10.0,
    "downscale_delay_s": 60.0,
}
_MAX_FUTURE_S = 300.0
_KEEP_ERRORS = 20


# =============================================================================== pure part


@dataclass
class Job:
    """One prediction request, as arrays. Either ``window`` ``[N, W, M]`` or
    ``features`` ``[N, F]`` is set; ``latest_ts_s`` is the newest sample (nan if none)."""

    names: list[str]
    apps: list[str]
    window: np.ndarray | None = None
    features: np.ndarray | None = None
    latest_ts_s: float = math.nan
    now_s: float | None = None

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class JobResult:
    """The prediction of one job: per tier arrays for its rows, the feature rows, and
    what produced each row's p_fail of the model tier (label, version id or None)."""

    prediction: Prediction
    features: np.ndarray
    model_of: list[tuple[str, str | None]]
    model_tier: Tier


def window_of(req: PredictRequest) -> Job:
    """The job of a request: windows right-aligned in one ``[N, W, M]`` array (``W`` =
    the longest window; shorter windows are padded at the start with all-``nan`` rows,
    which :func:`compute_features` treats as absent), each sorted by ``ts_s``.

    Worked example: containers a (3 samples) and b (1 sample) → shape ``[2, 3, M]``;
    b's row 2 holds its sample, its rows 0 and 1 are ``nan``.
    """
    if req.features is not None:
        feats = np.array(req.features, dtype=np.float64).reshape(  # None → nan
            len(req.features), len(FEATURES))
        n = feats.shape[0]
        names = list(req.names) if req.names is not None else [f"row-{i}" for i in range(n)]
        apps = list(req.apps) if req.apps is not None else [""] * n
        return Job(names, apps, features=feats, now_s=req.now_s)
    containers = req.containers or []
    width = max(c.rows().shape[0] for c in containers)
    window = np.full((len(containers), width, len(METRICS)), np.nan)
    for i, c in enumerate(containers):
        rows = c.rows()
        window[i, width - rows.shape[0]:] = rows
    latest = float(np.nanmax(window[:, -1, 0])) if containers else math.nan
    return Job([c.name for c in containers], [c.app for c in containers], window=window,
               latest_ts_s=latest, now_s=req.now_s)


def oversize_reason(req: PredictRequest, *, max_containers: int, max_samples: int) -> str | None:
    """Why ``req`` is too large to serve (413), or None.

    Worked example (max_samples 1000): 10 containers whose longest window has 200
    samples → 2000 padded samples → "containers × longest window = 10 × 200 = 2000
    samples is above max_samples = 1000".
    """
    n = req.n_containers()
    if n > max_containers:
        return f"{n} containers in one request is above max_containers = {max_containers}"
    if req.containers is not None:
        lengths = [c.rows().shape[0] for c in req.containers]
        width = max(lengths, default=0)
        total = sum(lengths)
        if total > max_samples:
            return f"{total} samples in one request is above max_samples = {max_samples}"
        if n * width > max_samples:
            return (f"containers × longest window = {n} × {width} = {n * width} samples "
                    f"is above max_samples = {max_samples}")
    return None


ModelLookup = Callable[[str], "tuple[Any, Any] | None"]


def predict_jobs(
    jobs: Sequence[Job],
    predictor: TrendExhaustionPredictor,
    *,
    recent_steps: int,
    model_tier: Tier,
    lookup: ModelLookup | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[JobResult]:
    """Predict every job of a batch at once (see the module doc).

    ``lookup(app)`` gives the ``(ModelVersion, FailureModel)`` serving ``app`` (its own
    or the global one) or None; where it gives one, that model's probability replaces
    the heuristic's p_fail of ``model_tier`` for the app's rows (time to limit,
    forecast and limit stay the heuristic's, as in the coordinator). A model that
    needs the raw window is skipped for jobs given as features; a model that fails
    leaves the heuristic in place and reports through ``on_error``.
    """
    if not jobs:
        return []
    sizes = [len(j) for j in jobs]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    total = int(starts[-1])
    feats = np.empty((total, len(FEATURES)))
    # featurise: one vectorised pass per window length
    by_width: dict[int, list[int]] = {}
    for k, j in enumerate(jobs):
        if j.features is not None:
            feats[starts[k]:starts[k + 1]] = j.features
        else:
            by_width.setdefault(j.window.shape[1], []).append(k)
    for ks in by_width.values():
        windows = [jobs[k].window for k in ks]
        stacked = np.concatenate(windows) if len(windows) > 1 else windows[0]
        out = compute_features(stacked, recent_steps=recent_steps)
        pos = 0
        for k in ks:
            feats[starts[k]:starts[k + 1]] = out[pos:pos + sizes[k]]
            pos += sizes[k]
    pred = predictor.predict(feats)
    model_of: list[tuple[str, str | None]] = [(pred.model, None)] * total
    if lookup is not None:
        _apply_models(jobs, starts, feats, pred, model_tier, lookup, model_of, on_error)
    results = []
    for k in range(len(jobs)):
        sl = slice(starts[k], starts[k + 1])
        tiers = {
            t: TierPrediction(tp.p_fail[sl], tp.time_to_limit_s[sl], tp.forecast[sl], tp.limit[sl])
            for t, tp in pred.tiers.items()
        }
        results.append(JobResult(Prediction(pred.horizon_s, pred.model, tiers), feats[sl],
                                 model_of[sl], model_tier))
    return results


def _apply_models(jobs, starts, feats, pred, tier, lookup, model_of, on_error) -> None:
    rows_of: dict[str, list[int]] = {}
    for k, j in enumerate(jobs):
        for i, app in enumerate(j.apps):
            rows_of.setdefault(app, []).append(int(starts[k]) + i)
    job_of_row = np.repeat(np.arange(len(jobs)), [len(j) for j in jobs])
    p_fail = pred.tiers[tier].p_fail
    for app, rows in rows_of.items():
        found = lookup(app)
        if found is None:
            continue
        version, model = found
        label = f"{version.app}/{version.version_id} ({version.kind})"
        try:
            if model.input == "window":
                # the raw window: only rows given as windows, one call per window length
                groups: dict[int, list[int]] = {}
                for r in rows:
                    j = jobs[job_of_row[r]]
                    if j.window is not None:
                        groups.setdefault(j.window.shape[1], []).append(r)
                for rs in groups.values():
                    x = np.stack([jobs[job_of_row[r]].window[r - starts[job_of_row[r]]]
                                  for r in rs])
                    p_fail[rs] = _checked_proba(model.predict_proba(x), len(rs))
                    for r in rs:
                        model_of[r] = (label, version.version_id)
                continue
            cols = [F[name] for name in version.features]
            idx = np.array(rows)
            p_fail[idx] = _checked_proba(model.predict_proba(feats[idx][:, cols]), len(rows))
            for r in rows:
                model_of[r] = (label, version.version_id)
        except Exception as exc:  # noqa: BLE001 - a bad model never fails the request
            if on_error is not None:
                on_error(f"{label}: predict failed for app {app!r}, heuristic used: "
                         f"{type(exc).__name__}: {exc}")


def _checked_proba(p: Any, n: int) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,) or not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"predict_proba returned shape {arr.shape} / values outside [0, 1]")
    return arr


def prediction_json(job: Job, res: JobResult, min_samples: int | None = None
                    ) -> list[dict[str, Any]]:
    """The ``predictions`` of a response (numbers as :func:`out_number`). With
    ``min_samples`` (the heuristic's), a tier the heuristic serves for a container with
    fewer samples says so (``forecast_ready`` false and a ``note``): its p_fail 0 is not
    a forecast."""
    n_samples = res.features[:, F["n_samples"]]
    heuristic = res.prediction.model
    out = []
    for i, name in enumerate(job.names):
        tiers = {}
        for tier, tp in res.prediction.tiers.items():
            label, version = res.model_of[i] if tier == res.model_tier else (heuristic, None)
            ready = (version is not None or min_samples is None
                     or n_samples[i] >= min_samples)
            tiers[tier.value] = {
                "p_fail": float(tp.p_fail[i]),
                "time_to_limit_s": out_number(tp.time_to_limit_s[i]),
                "forecast": out_number(tp.forecast[i]),
                "limit": out_number(tp.limit[i]),
                "model": label,
                "model_version": version,
                "forecast_ready": bool(ready),
                "note": None if ready else (
                    f"{int(n_samples[i])} samples < predictor.min_samples {min_samples}: "
                    "no trend yet, so the heuristic cannot forecast (p_fail 0 is not a "
                    "forecast)"),
            }
        out.append({"name": name, "app": job.apps[i], "n_samples": int(n_samples[i]),
                    "tiers": tiers})
    return out


def recommend_json(
    job: Job, res: JobResult, settings: Settings, now_s: float,
    book: ThresholdBook | None = None,
) -> list[dict[str, Any]]:
    """What the live loop's engine would decide for each container of ``job`` on its
    first tick (fresh state: no cooldowns, no history): the same thresholds (``book``,
    the loop's learned ones when readable), the same policy (``policy.kind``), guards,
    cost pass and OOM answer, through :meth:`Engine.propose`. Nothing is applied or
    remembered. One entry per container and tier: the decision, or p_fail below the
    threshold with nothing to do."""
    engine = Engine(EngineConfig.from_settings(settings))
    book = book if book is not None else ThresholdBook(
        ThresholdConfig.from_settings(settings.thresholds))
    names, apps = list(job.names), list(job.apps)
    thr = engine.thresholds(book, names, apps)
    plan = Plan(now_s, names, apps, res.features, res.prediction, thr, [], [], [], [], {})
    engine.propose(plan, Snapshot(now_s, names, apps,
                                  np.empty((len(names), 0, len(METRICS)))))
    decided = {(d.container, d.tier): d for d in plan.decisions}
    by_container: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for tier, tp in res.prediction.tiers.items():
        for i, n in enumerate(names):
            d = decided.get((n, tier))
            a = d.action if d is not None else None
            by_container[n].append({
                "tier": tier.value,
                "p_fail": float(tp.p_fail[i]),
                "threshold": float(thr[tier][i]),
                "action": None if a is None else {
                    "action_id": a.action_id, "kind": a.kind.value, "tier": a.tier.value,
                    "old_limit": out_number(a.old_limit),
                    "new_limit": out_number(a.new_limit), "preemptive": a.preemptive,
                },
                "reason": d.reason if d is not None else (
                    f"p_fail {float(tp.p_fail[i]):.2f} < threshold {float(thr[tier][i]):.2f}"
                    ": nothing to do"),
            })
    preds = prediction_json(job, res, settings.predictor.min_samples)
    for p in preds:
        p["decisions"] = by_container[p["name"]]
    return preds


@dataclass
class IngestPlan:
    samples: list[Sample]
    records: list[dict[str, Any]]
    events: list[Event]
    dropped: Counter


def plan_ingest(
    req: SamplesRequest,
    now_s: float,
    *,
    block_timeouts_s: Mapping[str, float],
    app_ok: Callable[[str], bool] = lambda _a: True,
    max_future_s: float = _MAX_FUTURE_S,
) -> IngestPlan:
    """What to store of ``req``, and what to drop and why.

    Samples go through :class:`~app.core.validation.Validator` (its reasons: bad
    timestamp, negative or absurd value, no data, timestamp not increasing): each
    container's samples are taken in ``ts_s`` order, the k-th sample of every
    container forming the k-th validated batch, so a repeated ``ts_s`` is dropped as
    ``timestamp_not_increasing``. A sample whose app cannot be stored → ``bad_app``.
    Timings become ``timing`` records; a bad one is dropped as
    ``timing:bad_duration`` (not finite or < 0) or ``timing:bad_timestamp``; one that
    reports a timeout or ran longer than ``block_timeouts_s[block]`` also gives a
    ``timeout`` event.

    Worked example: samples a@100 (t = 1.7e9 + 100) twice, b with memory −1; a timing
    with duration −1 → 1 sample stored; dropped {"timestamp_not_increasing": 1,
    "negative:memory_usage_bytes": 1, "timing:bad_duration": 1}.
    """
    from prescale.app.telemetry.timings import TimingRecord, is_timeout

    dropped: Counter = Counter()
    samples = []
    for s in req.samples:
        if not app_ok(s.app):
            dropped["bad_app"] += 1
            continue
        samples.append(Sample(s.container, *s.row(), app=s.app))
    samples.sort(key=lambda s: (math.isnan(s.ts_s), 0.0 if math.isnan(s.ts_s) else s.ts_s))
    rounds: list[list[Sample]] = []
    seen: Counter = Counter()
    for s in samples:
        k = seen[s.container]
        seen[s.container] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(s)
    validator = Validator(max_future_s=max_future_s)
    kept = [s for r in rounds for s in validator.filter(r, now_s)]
    dropped.update(validator.dropped)

    records: list[dict[str, Any]] = []
    events: list[Event] = []
    for t in req.timings:
        ts = now_s if t.ts_s is None else float(t.ts_s)
        if not (math.isfinite(t.duration_s) and t.duration_s >= 0):
            dropped["timing:bad_duration"] += 1
            continue
        if not (math.isfinite(ts) and EPOCH_2000_S <= ts <= now_s + max_future_s):
            dropped["timing:bad_timestamp"] += 1
            continue
        if not app_ok(t.app):
            dropped["timing:bad_app"] += 1
            continue
        records.append({"kind": "timing", "ts_s": ts, "container": t.container, "app": t.app,
                        "block": t.block, "duration_s": float(t.duration_s), "ok": t.ok,
                        "timeout": t.timeout, "error": t.error})
        why = is_timeout(TimingRecord(t.container, t.block, float(t.duration_s), t.ok,
                                      t.timeout, ts, t.app), block_timeouts_s)
        if why is not None:
            events.append(Event(t.container, ts, EventKind.TIMEOUT, why, t.app))
    return IngestPlan(kept, records, events, dropped)


def field_path(loc: Sequence[Any]) -> str:
    """A pydantic error location as a path: ``("body", "containers", 0, "samples", 3,
    "ts_s")`` → ``"body.containers[0].samples[3].ts_s"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def token_of(user_config: ServeUserConfig, settings: Settings,
             environ: Mapping[str, str]) -> str | None:
    """The configured API token: ``user_config.api_token``, else ``settings.api.token``,
    else ``$PRESCALE_API_TOKEN``; empty → None (no auth)."""
    for value in (user_config.api_token, settings.api.token, environ.get(TOKEN_ENV)):
        if value is not None:
            value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            return str(value) or None
    return None


def bearer_ok(header: str | None, token: str) -> bool:
    """``"Bearer s3cret"`` against token ``s3cret`` → True; a missing header, another
    scheme or another token → False (constant-time comparison)."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


# ============================================================================ the service


class PredictionService:
    """The prediction pipeline and its stores, without Ray (see the module doc).

    ``config`` is the effective :class:`ServeUserConfig` (registry, history, limits);
    :meth:`configure` changes it in place. Thread-safe for the calls the API makes:
    the model cache and the history store each have a lock.
    """

    def __init__(self, settings: Settings, config: ServeUserConfig | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.predictor = TrendExhaustionPredictor.from_settings(settings.predictor)
        self.model_tier = Tier(settings.models.tier)
        self.clock = clock
        self._models_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._store = None
        self._store_uri: str | None = None
        self.registry = None
        self.models = None
        self._last_refresh = -math.inf
        self.model_errors: list[str] = []
        self.config = ServeUserConfig()
        self.token: str | None = None
        self._thresholds = None
        self.configure(config or default_user_config(settings))

    # -- configuration -------------------------------------------------------------
    def configure(self, config: ServeUserConfig) -> None:
        """Apply a (new) config; a changed registry directory starts a fresh cache; the
        registry is re-read at once."""
        from prescale.app.store.registry import ModelCache, ModelRegistry

        registry_dir = config.registry_dir or str(self.settings.registry_dir())
        with self._models_lock:
            if not self.settings.models.enabled:
                self.registry, self.models = None, None
            elif self.registry is None or str(self.registry.root) != registry_dir:
                self.registry, self.models = ModelRegistry(registry_dir), ModelCache()
            self._last_refresh = -math.inf
        history_uri = config.history_uri or self.settings.history_uri()
        with self._store_lock:
            if self._store is not None and history_uri != self._store_uri:
                self._store.close()
                self._store = None
            self._store_uri = history_uri
        self.config = config
        self.token = token_of(config, self.settings, os.environ)
        self.refresh_models(force=True)

    # -- models -----------------------------------------------------------------------
    def refresh_models(self, *, force: bool = False) -> None:
        """``ModelCache.refresh`` if ``model_poll_interval_s`` has passed (or ``force``)."""
        if self.models is None:
            return
        now = time.monotonic()
        if not force and now - self._last_refresh < self.config.model_poll_interval_s:
            return
        with self._models_lock:
            self._last_refresh = now
            errors = self.models.refresh(self.registry)
        for msg in errors:
            log.warning("model registry: %s", msg)
            self._error(msg)

    def _error(self, msg: str) -> None:
        self.model_errors = (self.model_errors + [msg])[-_KEEP_ERRORS:]

    def lookup(self, app: str) -> tuple[Any, Any] | None:
        if self.models is None:
            return None
        return self.models.get(app, self.model_tier.value)

    # -- prediction -------------------------------------------------------------------
    def check(self, req: PredictRequest) -> str | None:
        return oversize_reason(req, max_containers=self.config.max_containers,
                               max_samples=self.config.max_samples)

    def predict_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        self.refresh_models()
        return predict_jobs(jobs, self.predictor, recent_steps=self.settings.predictor.recent_steps,
                            model_tier=self.model_tier, lookup=self.lookup,
                            on_error=self._error)

    def predict_response(self, job: Job, res: JobResult) -> dict[str, Any]:
        return {"api_version": API_VERSION, "horizon_s": res.prediction.horizon_s,
                "model_revision": self.revision(),
                "predictions": prediction_json(job, res, self.predictor.min_samples)}

    def recommend_response(self, job: Job, res: JobResult) -> dict[str, Any]:
        now_s = job.now_s if job.now_s is not None else (
            job.latest_ts_s if math.isfinite(job.latest_ts_s) else self.clock())
        return {"api_version": API_VERSION, "horizon_s": res.prediction.horizon_s,
                "model_revision": self.revision(), "now_s": now_s,
                "policy": self.settings.policy.kind,
                "recommendations": recommend_json(job, res, self.settings, now_s,
                                                  self.thresholds_book())}

    def thresholds_book(self) -> ThresholdBook:
        """The loop's learned thresholds (``<data_dir>/thresholds.json``) when this
        replica can read them, else the configured ones."""
        from prescale.app.store.thresholds_store import FILE, ThresholdStore

        if self._thresholds is None:
            self._thresholds = ThresholdStore(
                Path(self.settings.data_dir) / FILE,
                ThresholdConfig.from_settings(self.settings.thresholds))
        try:
            return self._thresholds.book()
        except (OSError, ValueError) as exc:
            self._error(f"thresholds: {exc}; the configured ones are used")
            return ThresholdBook(ThresholdConfig.from_settings(self.settings.thresholds))

    def predict(self, req: PredictRequest) -> dict[str, Any]:
        """One request in-process, without batching (benchmarks, tests)."""
        job = window_of(req)
        return self.predict_response(job, self.predict_jobs([job])[0])

    def revision(self) -> int | None:
        return None if self.models is None else self.models.revision

    # -- models listing ---------------------------------------------------------------
    def models_listing(self, app: str | None = None, tier: str | None = None) -> dict[str, Any]:
        self.refresh_models()
        if self.registry is None:
            return {"api_version": API_VERSION, "revision": 0, "versions": [], "serving": {},
                    "failures": {}}
        rev, versions = self.registry.snapshot()
        rows = []
        for v in versions:
            if (app is None or v.app == app) and (tier is None or v.tier == tier):
                d = dataclasses.asdict(v)
                d.pop("extra", None)
                rows.append(d)
        with self._models_lock:
            serving = {f"{a}/{t}": v.version_id for (a, t), v in self.models.loaded().items()}
            failures = {f"{a}/{t}": msg for (a, t), msg in self.models.failures.items()}
        return {"api_version": API_VERSION, "revision": rev, "versions": rows,
                "serving": serving, "failures": failures}

    # -- ingestion --------------------------------------------------------------------
    def ingest(self, req: SamplesRequest) -> dict[str, Any]:
        """Validate and store samples and timings (module doc of :func:`plan_ingest`);
        written durably (flushed) before returning."""
        from prescale.app.store.history import HistoryStore, app_dir_name

        def app_ok(app: str) -> bool:
            try:
                app_dir_name(app)
            except ValueError:
                return False
            return True

        plan = plan_ingest(req, self.clock(), app_ok=app_ok,
                           block_timeouts_s=self.settings.sources.block_timeouts_s)
        with self._store_lock:
            if self._store is None:
                self._store = HistoryStore(self._store_uri,
                                           flush_interval_s=self.settings.history.flush_interval_s)
            store = self._store
            if plan.samples:
                store.append_samples(plan.samples)
                store.flush()
            store.append_records(plan.records)
            store.append_events(plan.events)
        return {"api_version": API_VERSION,
                "accepted": {"samples": len(plan.samples), "timings": len(plan.records),
                             "events": len(plan.events)},
                "dropped": dict(sorted(plan.dropped.items()))}

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None


#: Keys of ``settings.api`` that seed user_config.
_API_SETTINGS_KEYS = ("max_body_bytes", "max_containers", "max_samples", "model_poll_interval_s")


def default_user_config(settings: Settings, **overrides: Any) -> ServeUserConfig:
    """The user_config of an app built from ``settings``: absolute registry and history
    locations (resolved here, in the process that builds the app), the limits of
    ``settings.api``; then ``overrides``. The token is never copied here (it
    would show in Serve's config): replicas read it themselves (:func:`token_of`)."""
    base: dict[str, Any] = {"registry_dir": str(settings.registry_dir()),
                            "history_uri": settings.history_uri()}
    base.update({key: getattr(settings.api, key) for key in _API_SETTINGS_KEYS})
    return ServeUserConfig.model_validate({**base, **overrides})


# ============================================================================ HTTP layer


def _json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class RequestGuard:
    """ASGI middleware: the token (401) and the body size (413), both before the body
    is parsed. ``state()`` returns ``(token or None, max_body_bytes)`` at each request,
    so a reconfigure takes effect at once."""

    def __init__(self, app: Any, state: Callable[[], tuple[str | None, int]]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token, max_body = self.state()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path = _route_path(scope)
        if token is not None and path not in OPEN_PATHS and not bearer_ok(
            headers.get("authorization"), token
        ):
            why = ("missing Authorization header" if "authorization" not in headers
                   else "wrong token (expected 'Authorization: Bearer <token>')")
            await _json_response(401, {"detail": f"unauthorized: {why}"},
                                 {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _json_response(400, {"detail": f"Content-Length {length!r} is not an "
                                           "integer"})(scope, receive, send)
                return
            if n > max_body:
                await _json_response(413, {"detail": f"request body of {n} bytes is above "
                                           f"max_body_bytes = {max_body}"})(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # chunked body without Content-Length: buffer it up to the limit
        body = bytearray()
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if len(body) > max_body:
                await _json_response(413, {"detail": f"request body is above max_body_bytes = "
                                           f"{max_body} (chunked)"})(scope, receive, send)
                return
            if not msg.get("more_body", False):
                break
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _route_path(scope: dict) -> str:
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field; 400 when the body is not JSON; 415 when it is not sent as
    JSON (``Content-Type: application/json``), which FastAPI then does not parse."""
    ctype = request.headers.get("content-type", "")
    if "json" not in ctype.lower():
        return JSONResponse(
            {"detail": f"unsupported Content-Type {ctype or '(none)'!r}: send the body as "
                       "JSON with 'Content-Type: application/json'",
             "message": "the request body must be JSON (Content-Type: application/json)"},
            status_code=415)
    errors = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        errors.append({"loc": loc, "field": field_path(loc), "msg": e.get("msg", ""),
                       "type": e.get("type", "")})
    bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if bad_json:
        e = bad_json[0]
        where = e["loc"][-1] if e.get("loc") and isinstance(e["loc"][-1], int) else "?"
        why = (e.get("ctx") or {}).get("error", e.get("msg", ""))
        message = f"request body is not valid JSON (at character {where}): {why}"
        return JSONResponse({"detail": errors, "message": message}, status_code=400)
    message = "; ".join(f"{e['field']}: {e['msg']}" for e in errors[:10])
    if len(errors) > 10:
        message += f"; … and {len(errors) - 10} more"
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


Predictor = Callable[[Job], Any]  # an awaitable giving the Job's JobResult


def build_api(service: PredictionService, predict: Callable[[Job], Any] | None = None,
              *, health: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The FastAPI app around ``service``. ``predict(job)`` is an awaitable that gives
    the job's :class:`JobResult` (the Serve deployment passes its ``@serve.batch``
    method; default: the service, unbatched)."""

    async def _direct(job: Job) -> JobResult:
        return service.predict_jobs([job])[0]

    run = predict or _direct
    api = FastAPI(
        title="prescale prediction API",
        version=API_VERSION,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    api.add_middleware(RequestGuard,
                       state=lambda: (service.token, service.config.max_body_bytes))
    api.add_exception_handler(RequestValidationError, _validation_error)

    async def _job(req: PredictRequest) -> tuple[Job, JobResult]:
        why = service.check(req)
        if why is not None:
            raise HTTPException(413, detail=why)
        job = window_of(req)
        return job, await run(job)

    @api.post("/v1/predict", response_model=PredictResponse,
              summary="p_fail per tier, time to limit, forecast, model, per container")
    async def predict_route(req: PredictRequest) -> JSONResponse:
        job, res = await _job(req)
        return JSONResponse(service.predict_response(job, res))

    @api.post("/v1/recommend", response_model=RecommendResponse,
              summary="the prediction plus what the configured policy would do (no effect)")
    async def recommend_route(req: PredictRequest) -> JSONResponse:
        job, res = await _job(req)
        return JSONResponse(service.recommend_response(job, res))

    @api.post("/v1/samples", response_model=SamplesResponse,
              summary="store samples and key-code-block timings (validated)")
    def samples_route(req: SamplesRequest) -> JSONResponse:
        n = len(req.samples) + len(req.timings)
        if n > service.config.max_samples:
            raise HTTPException(413, detail=f"{n} samples and timings in one request is "
                                f"above max_samples = {service.config.max_samples}")
        return JSONResponse(service.ingest(req))

    @api.get("/v1/models", response_model=ModelsResponse, summary="the model registry")
    def models_route(app: str | None = Query(None, max_length=256),
                     tier: str | None = Query(None, pattern="^(memory|cpu)$")) -> JSONResponse:
        return JSONResponse(service.models_listing(app, tier))

    @api.get("/healthz", response_model=HealthResponse, summary="liveness (no token)")
    def healthz() -> JSONResponse:
        service.refresh_models()
        body = {
            "status": "ok", "api_version": API_VERSION, "pid": os.getpid(), "replica": "",
            "model_revision": service.revision(),
            "models_loaded": 0 if service.models is None else len(service.models.loaded()),
            "model_errors": list(service.model_errors),
            "config_revision": service.config.revision, "auth": service.token is not None,
        }
        if health is not None:
            body.update(health())
        return JSONResponse(body)

    # outermost, so 401/413 answers are counted too (ray.util.metrics: needs Ray)
    from prescale.app.serve_metrics import MetricsMiddleware, ServeMetrics

    api.add_middleware(MetricsMiddleware, metrics=ServeMetrics(
        ["/v1/predict", "/v1/recommend", "/v1/samples", "/v1/models", "/healthz",
         "/openapi.json", "/docs"]))
    return api


# ============================================================================ Ray Serve

def _replica_id() -> str:
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside a replica
        return ""


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": REPLICA_NUM_CPUS},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    autoscaling_config=AUTOSCALING,
)
@serve.ingress()
class PrescaleAPI:
    """The Serve deployment: a :class:`PredictionService` per replica, its FastAPI app
    built in the replica (``__serve_build_asgi_app__``) and ``@serve.batch`` over the
    predict path. ``user_config`` → :meth:`reconfigure` (no restart)."""

    def __init__(self, settings: Settings, user_config: dict[str, Any] | None = None) -> None:
        logging.getLogger("prescale").setLevel(logging.INFO)
        #: what the builder resolved; a user_config from the YAML is laid over it
        self._defaults = dict(user_config or {})
        self.service = PredictionService(
            settings, ServeUserConfig.model_validate(user_config) if user_config else None)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config`` (laid over the builder's defaults) without a restart;
        a bad one raises ``ValueError`` naming the field (Serve reports the deploy as
        failed)."""
        config = ServeUserConfig.model_validate({**self._defaults, **(user_config or {})})
        self.service.configure(config)
        self._predict_batch.set_max_batch_size(config.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        log.info("reconfigured: revision %s, models at revision %s", config.revision,
                 self.service.revision())

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, jobs: list[Job]) -> list[Any]:
        try:
            return self.service.predict_jobs(jobs)
        except Exception:  # noqa: BLE001 - one bad job must not fail the others
            out: list[Any] = []
            for job in jobs:
                try:
                    out.append(self.service.predict_jobs([job])[0])
                except Exception as exc:  # noqa: BLE001
                    out.append(exc)
            return out

    async def _predict_one(self, job: Job) -> JobResult:
        res = await self._predict_batch(job)
        if isinstance(res, Exception):
            raise HTTPException(422, detail=f"cannot predict: {type(res).__name__}: {res}")
        return res

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.service, self._predict_one,
                         health=lambda: {"replica": _replica_id()})

    def __del__(self) -> None:
        try:
            self.service.close()
        except Exception:  # noqa: BLE001 - shutting down
            pass


def app_from_settings(settings: Settings, user_config: Mapping[str, Any] | None = None,
                      **options: Any) -> Any:
    """The Serve application for ``settings`` (``serve.run`` it). ``user_config``
    overrides :func:`default_user_config`; ``options`` go to ``.options()`` (e.g.
    ``autoscaling_config``, ``ray_actor_options``)."""
    config = default_user_config(settings, **dict(user_config or {}))
    uc = config.model_dump(exclude_none=True)
    return PrescaleAPI.options(user_config=uc, **options).bind(settings, uc)


def _resolve(path: str | os.PathLike[str]) -> Path:
    """A config path: absolute, relative to the working dir, else to the project root."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (Path(__file__).resolve().parent.parent / p).resolve()


def build_app(args: dict[str, Any]) -> Any:
    """Application builder for ``import_path: prescale.app.serve_app:build_app`` (serve.yaml).

    ``args``: ``config`` (TOML settings file; default ``configs/local.toml``, relative
    paths are looked up in the working directory, then in the project root) and
    ``settings`` (overrides, nested like the TOML: ``{"data_dir": "/var/lib/prescale"}``).
    The deployment's ``user_config`` in the YAML overrides the defaults derived here.
    """
    args = dict(args or {})
    unknown = sorted(set(args) - {"config", "settings"})
    if unknown:
        raise ValueError(f"serve app args: unknown keys {unknown} (known: config, settings)")
    config = args.get("config")
    settings = load_settings(_resolve(config) if config else None,
                             **dict(args.get("settings") or {}))
    return app_from_settings(settings)


def run_serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
              blocking: bool = True, user_config: Mapping[str, Any] | None = None) -> str:
    """Run the API on Ray Serve (``prescale serve``): connect to ``settings.ray.address``
    or start an embedded Ray, start Serve's HTTP proxy on ``host:port``, deploy the app
    at ``/`` and return its URL. ``blocking``: serve until Ctrl-C / SIGTERM, then shut
    Serve (and an embedded Ray) down. With an embedded Ray, a port that cannot be
    bound raises :class:`RuntimeError` naming it before anything starts serving."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        if not settings.ray.address:  # an embedded Ray: Serve's proxy will bind host:port
            _check_port(host, port)
        if settings.ray.address:
            ray.init(address=settings.ray.address, namespace=settings.ray.namespace,
                     logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=settings.ray.num_cpus, include_dashboard=False,
                     namespace=settings.ray.namespace, logging_level=logging.WARNING)
        started = True
    url = f"http://{host}:{port}"
    stop = threading.Event()
    previous = None
    if blocking and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app_from_settings(settings, user_config), name=APP_NAME, route_prefix="/")
        if not blocking:
            return url
        print(f"prescale API at {url} (OpenAPI: {url}/docs); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except BaseException:
        _shutdown(started)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _shutdown(started)
    return url


def _check_port(host: str, port: int) -> None:
    """``RuntimeError`` naming ``host:port`` if it cannot be bound (in use, bad host)."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, port))
    except OSError as exc:
        raise RuntimeError(f"cannot serve on {host}:{port}: {exc.strerror or exc} "
                           "(choose another --port or stop what uses it)") from None


def _shutdown(started_ray: bool) -> None:
    import ray

    try:
        serve.shutdown()
    finally:
        if started_ray:
            ray.shutdown()


__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "Job",
    "JobResult",
    "PredictionService",
    "PrescaleAPI",
    "RequestGuard",
    "app_from_settings",
    "build_api",
    "build_app",
    "default_user_config",
    "field_path",
    "oversize_reason",
    "plan_ingest",
    "predict_jobs",
    "run_serve",
    "window_of",
]
