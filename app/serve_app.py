"""The prediction API on Ray Serve: ``/v1/predict``, ``/v1/recommend``, ``/v1/samples``,
``/v1/models``, ``/healthz`` and the OpenAPI document (``/openapi.json``, ``/docs``).

Layers, from pure to I/O:

- pure functions (no I/O, no Ray), :mod:`app.serve_jobs`: request → window array
  (``window_of``), batched prediction (``predict_jobs``), JSON rendering, request
  limits (``oversize_reason``); :mod:`app.serve_ingest`: ingestion planning
  (``plan_ingest``);
- :class:`PredictionService`: the same pipeline as the coordinator (features →
  :class:`~app.core.predictor.TrendExhaustionPredictor` → the app's registered model
  via :class:`~app.store.model_cache.ModelCache`; ``/v1/recommend``: the engine's own
  decide path, :meth:`~app.core.engine.Engine.propose`, with the configured policy and
  the loop's learned thresholds), plus the model registry and the history store;
  usable in-process without Ray (benchmarks);
- :mod:`app.serve_http`: ``build_api``, the FastAPI app around a service, with
  ``RequestGuard`` (token and body size, checked before the body is read);
- :class:`PrescaleAPI`: the Serve deployment (FastAPI ingress built per replica,
  ``@serve.batch`` over the predict path, ``reconfigure(user_config)``);
- :func:`build_app` (the ``import_path`` of ``configs/serve.yaml``),
  :func:`app_from_settings` and :func:`run_serve` (``prescale serve``).

Bodies: JSON or an Apache Arrow IPC stream, validated as a whole where it can be
(:mod:`app.serve_bodies`, :mod:`app.serve_http`); :meth:`PredictionService.answer` is
the replica's handling of one body without HTTP (benchmarks).

Batching: a ``/v1/predict`` or ``/v1/recommend`` request that finds the replica idle (no
prediction waiting or running) and has at most :data:`DIRECT_MAX_SAMPLES` samples is
predicted at once, with no batching wait. Every other request is one item of a
``@serve.batch`` call (up to ``max_batch_size`` requests, waiting at most
``batch_wait_timeout_s`` for the batch to fill), computed in the replica's prediction
thread so that the replica keeps reading requests meanwhile; those that arrive during
one batch form the next. A batch is featurised with one
:func:`~app.core.features.compute_features` call per window length and predicted with
one predictor call; each app's model is called once per batch. Worked example: 3
requests with 1, 100 and 1 containers whose windows all have 20 samples, arriving
while another batch runs → one ``compute_features`` over ``[102, 20, M]`` and one
``predict`` over ``[102, F]``; one request of 1 container × 30 samples to an idle
replica → predicted at once, no wait.

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

Slow clients: Serve's proxy reads each whole body before routing it, within
``body_timeout_s`` (else 408; :mod:`app.serve_proxy`), so a client dribbling a body
holds no replica slot; ``prescale serve`` installs this in the proxy.

Limits (``user_config``): a body above ``max_body_bytes`` (``Content-Length``, or the
bytes read so far when the body is chunked) → 413 before parsing; more than
``max_containers`` containers or ``max_samples`` samples per request (for windows:
containers × the longest window, the size of the padded array) → 413 before any
computation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException
from ray import serve

from prescale.app.api_models import (
    API_VERSION,
    ARROW_STREAM,
    JSON_TYPE,
    PredictRequest,
    SamplesRequest,
    ServeUserConfig,
)
from prescale.app.core import features
from prescale.app.core.gc_pause import gc_paused
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.sample import Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.serve_bodies import (
    BodyError,
    arrow_bytes,
    arrow_job,
    json_job,
    predictions_table,
)
from prescale.app.serve_http import (
    build_api,
    is_json,
    media_type,
    strict_json,
    token_of,
    wants_arrow,
)
from prescale.app.serve_ingest import plan_ingest
from prescale.app.serve_jobs import (
    Job,
    JobResult,
    oversize_reason,
    predict_jobs,
    prediction_json,
    recommend_json,
    size_reason,
    window_of,
)
from prescale.app.serve_proxy import (
    PROXY_MAX_BODY_BYTES,
    direct_ingress_env,
    http_options,
    proxy_env,
)
from prescale.app.settings import Settings, load_settings

log = logging.getLogger("prescale.serve")

APP_NAME = "prescale"
DEPLOYMENT_NAME = "PrescaleAPI"
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
_KEEP_ERRORS = 20
#: A request of at most this many samples (containers × the longest window) that finds
#: the replica idle is predicted at once on the event loop (≈ 1 ms), without batching.
DIRECT_MAX_SAMPLES = 2_000


# ============================================================================ the service


#: history upkeep of the API's writes: every this many /v1/samples requests or seconds
UPKEEP_INGESTS = 200
UPKEEP_S = 600.0


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
        self._ingests_since_upkeep = 0
        self._last_upkeep_s = clock()
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
        from prescale.app.store.model_cache import ModelCache
        from prescale.app.store.registry import ModelRegistry

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

    # -- bodies -----------------------------------------------------------------------
    def job_of_body(self, body: bytes, content_type: str | None) -> Job | None:
        """The job of a prediction body by the array paths (:mod:`app.serve_bodies`): an
        Arrow stream, or a JSON ``containers`` body whose values orjson and the
        vectorised checks prove valid; then the request limits (``BodyError`` 413).
        ``BodyError`` 400/422 for a bad Arrow body. None: the pydantic models must read
        it (a JSON body with an error or a form the array path does not take, a
        ``features`` body, or a body that is neither JSON nor Arrow)."""
        if media_type(content_type) == ARROW_STREAM:
            return arrow_job(body, max_containers=self.config.max_containers,
                             max_samples=self.config.max_samples,
                             max_bytes=self.config.max_body_bytes)
        if not is_json(content_type):
            return None
        job = json_job(body)
        if job is not None:
            total = int(np.isfinite(job.window[:, :, 0]).sum())
            why = size_reason(len(job), total, job.window.shape[1],
                              max_containers=self.config.max_containers,
                              max_samples=self.config.max_samples)
            if why is not None:
                raise BodyError(413, why)
        return job

    def answer_bytes(self, path: str, job: Job, res: JobResult, *,
                     arrow: bool = False) -> tuple[bytes, str]:
        """The answer of ``path`` (``/v1/predict`` or ``/v1/recommend``) and its media
        type: JSON (orjson), or for ``/v1/predict`` with ``arrow`` an Arrow stream of
        :func:`~app.serve_bodies.predictions_table`."""
        if path == "/v1/recommend":
            return orjson.dumps(self.recommend_response(job, res)), JSON_TYPE
        if arrow:
            return arrow_bytes(predictions_table(job, res, self.predictor.min_samples,
                                                 self.revision())), ARROW_STREAM
        with gc_paused():  # ~4 dicts per container, freed once serialised
            return orjson.dumps(self.predict_response(job, res)), JSON_TYPE

    def answer(self, path: str, body: bytes, content_type: str | None = JSON_TYPE,
               accept: str | None = None) -> tuple[int, bytes, str]:
        """One body handled as the replica handles it, without HTTP, Serve or batching:
        ``(status, answer, media type)`` (benchmarks, tests). Error answers are brief
        here; the HTTP API words them fully."""
        try:
            job = self.job_of_body(body, content_type)
            if job is None:
                req = PredictRequest.model_validate(strict_json(body))
                why = self.check(req)
                if why is not None:
                    return 413, orjson.dumps({"detail": why}), JSON_TYPE
                job = window_of(req)
            res = self.predict_jobs([job])[0]
        except BodyError as exc:
            return exc.status, orjson.dumps(exc.payload()), JSON_TYPE
        except ValueError as exc:  # pydantic's ValidationError, bad JSON, cannot predict
            return 422, orjson.dumps({"detail": str(exc)}), JSON_TYPE
        out, media = self.answer_bytes(path, job, res, arrow=wants_arrow(accept))
        return 200, out, media

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
        from prescale.app.store.history import HistoryStore
        from prescale.app.store.history_layout import app_dir_name

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
            self._upkeep(store)
        return {"api_version": API_VERSION,
                "accepted": {"samples": len(plan.samples), "timings": len(plan.records),
                             "events": len(plan.events)},
                "dropped": dict(sorted(plan.dropped.items()))}

    def _upkeep(self, store) -> None:
        """Compaction and retention of the history store the API writes into, every
        ``UPKEEP_INGESTS`` requests or ``UPKEEP_S`` seconds (whichever comes first): each
        /v1/samples request writes a few small Parquet files, and serve mode may run
        without the loop that compacts them. Local stores only (their compaction takes a
        file lock, so a loop on the same store cannot collide with it). A failure is
        logged and retried next time, never the request's."""
        self._ingests_since_upkeep += 1
        now = self.clock()
        if (self._ingests_since_upkeep < UPKEEP_INGESTS and now - self._last_upkeep_s < UPKEEP_S
                or "://" in str(self._store_uri)):
            return
        self._ingests_since_upkeep, self._last_upkeep_s = 0, now
        h = self.settings.history
        try:
            store.upkeep(min_files=h.compact_min_files, retention_s=h.retention_days * 86_400,
                         now_s=now)
        except Exception:  # noqa: BLE001 - logged, retried at the next upkeep
            log.exception("history upkeep (compaction, retention) of %s failed",
                          self._store_uri)

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
        #: predictions waiting for or inside a batch (0: the replica is idle)
        self._pending = 0
        #: one thread computes the batches in turn, while the event loop reads requests
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prescale-predict")
        features.prepare()  # compiled while the replica starts, not on the first request

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

    def _predict_all(self, jobs: list[Job]) -> list[Any]:
        """Results of ``jobs``, or for a job that cannot be predicted its exception."""
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

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, jobs: list[Job]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(
            self._compute, self._predict_all, jobs)

    async def _predict_one(self, job: Job) -> JobResult:
        idle = self._pending == 0
        if idle and len(job) * _width(job) <= DIRECT_MAX_SAMPLES:
            res = self._predict_all([job])[0]  # idle and small: at once, on the loop
        else:
            self._pending += 1
            try:
                if idle:  # nothing to wait for: straight to the prediction thread
                    res = (await asyncio.get_running_loop().run_in_executor(
                        self._compute, self._predict_all, [job]))[0]
                else:
                    res = await self._predict_batch(job)
            finally:
                self._pending -= 1
        if isinstance(res, Exception):
            raise HTTPException(422, detail=f"cannot predict: {type(res).__name__}: {res}")
        return res

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.service, self._predict_one,
                         health=lambda: {"replica": _replica_id()})

    def __del__(self) -> None:
        try:
            self._compute.shutdown(wait=False)
            self.service.close()
        except Exception:  # noqa: BLE001 - shutting down
            pass


def _width(job: Job) -> int:
    """Samples per container of a job's padded window (1 for feature rows)."""
    return 1 if job.window is None else job.window.shape[1]


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

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        if not settings.ray.address:  # an embedded Ray: Serve's proxy will bind host:port
            _check_port(host, port)
            # the proxy reads whole bodies before routing (app.serve_proxy); it inherits
            # this environment. A cluster's `ray start` needs the same variables.
            limit = max(PROXY_MAX_BODY_BYTES, settings.api.max_body_bytes)
            for key, value in proxy_env(max_body_bytes=limit).items():
                os.environ.setdefault(key, value)
            if settings.api.direct_ingress_port is not None:
                # not checked here: a replica that cannot bind a port of the range takes
                # the next one (Ray retries), and the URLs are printed once it serves
                os.environ.update(direct_ingress_env(settings.api.direct_ingress_port))
        elif settings.api.direct_ingress_port is not None:
            log.warning("api.direct_ingress_port: on a Ray cluster it is the environment "
                        "of `ray start` that turns direct ingress on (app.serve_proxy."
                        "direct_ingress_env); this setting only applies to an embedded Ray")
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
        serve.start(http_options=http_options(host, port))
        serve.run(app_from_settings(settings, user_config), name=APP_NAME, route_prefix="/")
        if not blocking:
            return url
        print(f"prescale API at {url} (OpenAPI: {url}/docs); Ctrl-C to stop", flush=True)
        if settings.api.direct_ingress_port is not None:
            print("replicas serving HTTP themselves (direct ingress): "
                  + ", ".join(replica_urls(host)), flush=True)
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


def replica_urls(host: str = "127.0.0.1", app: str = APP_NAME,
                 timeout_s: float = 60.0) -> list[str]:
    """The URLs of ``app``'s replicas that serve HTTP themselves (Serve's direct ingress,
    ``api.direct_ingress_port``), as the controller lists them, on the ``host`` Serve
    listens on; waits up to ``timeout_s`` for the first. Empty when direct ingress is off
    (the controller then lists the proxies, and so it does for an app with no running
    replica: its targets are proxy actors, not ``SERVE_REPLICA::`` ones)."""
    import ray

    controller = serve.context._get_global_client()._controller
    deadline = time.monotonic() + timeout_s
    while True:
        groups = ray.get(controller.get_target_groups.remote(app))
        urls = sorted(f"http://{host}:{t.port}" for g in groups
                      if g.app_name == app and str(g.protocol).upper().endswith("HTTP")
                      for t in g.targets if "REPLICA" in t.name)  # not the proxies
        if urls or time.monotonic() > deadline:
            return urls
        time.sleep(0.2)


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


__all__ = ["APP_NAME", "DEPLOYMENT_NAME", "PredictionService", "PrescaleAPI",
           "app_from_settings", "build_app", "default_user_config", "replica_urls", "run_serve"]
