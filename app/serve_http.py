"""The HTTP layer of the prediction API: the token check (:func:`token_of`,
:func:`bearer_ok`), :class:`RequestGuard` (token and body size, checked before the body is
read) and :func:`build_api`, the FastAPI app around a
:class:`~app.serve_app.PredictionService`.

``/v1/predict`` and ``/v1/recommend`` take a body in two forms (:class:`PredictRoute`):
JSON (``application/json``: :class:`~app.api_models.PredictRequest`) or an Apache Arrow
IPC stream (``application/vnd.apache.arrow.stream``: one row per sample, columns in
:mod:`app.serve_bodies`). An Arrow body, and a JSON ``containers`` body that orjson reads
straight into arrays, are validated as a whole (:mod:`app.serve_bodies`); any other JSON
body — and every JSON body with an error — goes through the pydantic models, so the
answers and the error messages of JSON bodies are those of the models. ``/v1/predict``
answers JSON, or an Arrow table (one row per container) when the ``Accept`` header
names the Arrow stream type; ``/v1/recommend`` answers JSON only (406 when ``Accept``
refuses it). Worked example: the same windows as JSON ``series`` and as an Arrow table
give the same JSON answer, number for number.

JSON bodies are parsed as strict JSON (:class:`StrictJSONRoute`): Python's ``json`` accepts
``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON; here each becomes a value no
field accepts, so the answer is 422 naming the field (``body.containers[0].samples[3].
memory_usage_bytes: must be a finite number, got NaN …``), never a 500 or a ``nan`` in
the response. Every status an operation can answer is in the OpenAPI document
(:data:`ERROR_RESPONSES`).

Documentation: every JSON request body has named examples that get a useful answer
(:mod:`app.api_examples`); ``/docs`` (Swagger UI) and ``/redoc`` load their scripts and
styles from the app itself (:func:`add_local_docs`), so they work offline.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from prescale.app.api_examples import PREDICT_EXAMPLES, SAMPLES_EXAMPLES
from prescale.app.api_models import (
    API_VERSION,
    ARROW_STREAM,
    JSON_TYPE,
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
    RecommendResponse,
    SamplesRequest,
    SamplesResponse,
    ServeUserConfig,
)
from prescale.app.serve_bodies import BodyError
from prescale.app.serve_jobs import Job, JobResult, window_of

if TYPE_CHECKING:
    from prescale.app.serve_app import PredictionService

from prescale.app.settings import Settings

TOKEN_ENV = "PRESCALE_API_TOKEN"
#: Routes that never need the token.
OPEN_PATHS = frozenset({"/healthz"})


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


class NonJSONNumber:
    """What ``NaN``, ``Infinity`` or ``-Infinity`` in a body parses to: no field accepts
    it, so validation names the field (:func:`_validation_error` words the message)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return self.token


def strict_json(body: bytes) -> Any:
    """``json.loads`` without the non-JSON constants (see :class:`NonJSONNumber`)."""
    return json.loads(body, parse_constant=NonJSONNumber)


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by :func:`strict_json`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Any:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


#: The array path of a prediction route: ``(route path, request)`` → its answer, or
#: None when the pydantic models must answer (set by :func:`build_api`).
FastPath = Callable[[str, Request], Any]


def _replayed(request: Request, body: bytes) -> Request:
    """A request whose body (already read) is given again to whoever reads it next."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await request.receive()

    return Request(request.scope, receive)


def predict_route_class(fast: FastPath) -> type[APIRoute]:
    """The route class of ``/v1/predict`` and ``/v1/recommend``: ``fast`` first (Arrow
    bodies, JSON read into arrays); where it gives None, the route as FastAPI built it
    (strict JSON, the pydantic models, their 4xx answers)."""

    class PredictRoute(StrictJSONRoute):
        def get_route_handler(self) -> Callable:
            slow = super().get_route_handler()
            path = self.path

            async def handler(request: Request) -> Any:
                answer = await fast(path, request)
                if answer is not None:
                    return answer
                return await slow(_replayed(request, await request.body()))

            return handler

    return PredictRoute


def media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` → ``"application/json"``; None → ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """True when FastAPI parses such a body as JSON: no Content-Type, ``application/json``
    or ``application/<anything>+json``."""
    media = media_type(content_type)
    return (not content_type or media == JSON_TYPE
            or (media.startswith("application/") and media.endswith("+json")))


def wants_arrow(accept: str | None) -> bool:
    """True when the ``Accept`` header names the Arrow stream type (then ``/v1/predict``
    answers Arrow): ``"application/vnd.apache.arrow.stream"`` → True; ``"*/*"``, none
    or ``"application/json"`` → False."""
    return ARROW_STREAM in (accept or "").lower()


def refuses_json(accept: str | None) -> bool:
    """True when ``Accept`` is given and names neither JSON nor a wildcard that covers
    it: ``"application/vnd.apache.arrow.stream"`` → True; ``"*/*"`` → False."""
    if not accept:
        return False
    media = [media_type(part) for part in accept.split(",")]
    return not any(m in (JSON_TYPE, "application/*", "*/*", "*") for m in media)


#: Error answers every operation may give (the 422 of each route is its own).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON, or not a "
          "readable Arrow IPC stream, or its Content-Length is not an "
          "integer."},
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token (when a "
          "token is configured; never on /healthz)."},
    408: {"model": ErrorResponse, "description": "The body did not arrive within "
          "body_timeout_s (Serve's proxy, app.serve_proxy), or the request took longer "
          "than request_timeout_s."},
    413: {"model": ErrorResponse, "description": "Body above max_body_bytes (for a "
          "compressed Arrow stream: what its buffers declare uncompressed), or more "
          "containers / samples than max_containers / max_samples."},
    415: {"model": ErrorResponse, "description": "The body is not sent as JSON "
          "(Content-Type: application/json) or, on /v1/predict and /v1/recommend, as an "
          f"Arrow IPC stream (Content-Type: {ARROW_STREAM})."},
    422: {"model": ErrorResponse, "description": "A field is missing or wrong (each named "
          "in detail[].field and message; for an Arrow body the column, its first bad row "
          "and that row's container), or the values cannot be predicted."},
}
_GET_RESPONSES = {k: v for k, v in ERROR_RESPONSES.items() if k in (401, 408, 422)}
_RECOMMEND_RESPONSES = {**ERROR_RESPONSES, 406: {
    "model": ErrorResponse, "description": "The Accept header refuses JSON, the only "
    "answer of /v1/recommend."}}

_ARROW_BODY_DOC = (
    "An Apache Arrow IPC stream (its buffers uncompressed, or LZ4 frame / ZSTD "
    "compressed up to max_body_bytes uncompressed), one row per sample: `container` (string, "
    "required), `app` (string, optional, one per container), `ts_s` (number, required) "
    "and any metric of the JSON samples (any integer or floating column; null or NaN = "
    "not available, inf only in the limits; an absent column is the JSON default). "
    "Schema metadata `now_s` is the JSON body's now_s. Validated column by column; a 422 "
    "names each bad column with its first bad row and container.")
#: The Arrow request body (and, for /v1/predict, answer) in the OpenAPI document.
PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {"content": {ARROW_STREAM: {"schema": {
        "type": "string", "format": "binary", "description": _ARROW_BODY_DOC}}}},
    "responses": {"200": {"content": {ARROW_STREAM: {"schema": {
        "type": "string", "format": "binary",
        "description": "With `Accept: application/vnd.apache.arrow.stream`: one row per "
        "container, columns name, app, n_samples and, per tier, the JSON answer's fields "
        "<tier>.p_fail, .time_to_limit_s, .never_reaches_limit, .forecast, .limit, "
        ".unlimited (numbers that are not finite are null, as in JSON), .model, "
        ".model_version, .forecast_ready, .reason, .note; schema metadata api_version, "
        "horizon_s, model_revision."}}}}},
}
RECOMMEND_OPENAPI: dict[str, Any] = {"requestBody": PREDICT_OPENAPI["requestBody"]}


#: Where the app serves the Swagger UI and ReDoc assets: the copies the
#: ``fastapi-offline`` package ships (its ``static`` folder: swagger-ui-bundle.js,
#: swagger-ui.css, redoc.standalone.js, favicon.png), so /docs and /redoc work offline.
DOCS_ASSETS_PATH = "/docs/assets"
DOCS_ASSETS_PACKAGE = ("fastapi_offline", "static")
#: Swagger UI settings besides FastAPI's defaults: no online validator badge (it would
#: load an image from validator.swagger.io), the request body examples expanded.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None, "tryItOutEnabled": True,
                                         "displayRequestDuration": True}


def add_local_docs(api: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc"
                   ) -> None:
    """``docs_url`` (Swagger UI) and ``redoc_url`` (ReDoc) whose scripts, stylesheet and
    icon the app serves itself under :data:`DOCS_ASSETS_PATH` — FastAPI's documented way
    ("Custom Docs UI Static Assets": ``get_swagger_ui_html`` with local
    ``swagger_js_url`` / ``swagger_css_url``) — so the pages load without any CDN.
    ``api`` must be built with ``docs_url=None, redoc_url=None``. URLs carry the
    request's ``root_path`` (an app behind a route prefix). Worked example: GET
    ``/docs`` → HTML loading ``/docs/assets/swagger-ui-bundle.js`` and
    ``/docs/assets/swagger-ui.css``, which answer 200 (JavaScript, CSS) from the app."""
    api.mount(DOCS_ASSETS_PATH, StaticFiles(packages=[DOCS_ASSETS_PACKAGE]),
              name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @api.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request) + DOCS_ASSETS_PATH
        return get_swagger_ui_html(
            openapi_url=root(request) + str(api.openapi_url), title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{base}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS)

    @api.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request) + DOCS_ASSETS_PATH
        return get_redoc_html(
            openapi_url=root(request) + str(api.openapi_url), title=f"{api.title} - ReDoc",
            redoc_js_url=f"{base}/redoc.standalone.js", redoc_favicon_url=f"{base}/favicon.png",
            with_google_fonts=False)


def json_answer(body: Any, status: int = 200) -> Response:
    """A JSON answer serialised by orjson (the values of ``JSONResponse``'s, faster)."""
    return Response(orjson.dumps(body), status_code=status, media_type=JSON_TYPE)


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


def _message(e: dict[str, Any]) -> str:
    bad = e.get("input")
    if isinstance(bad, NonJSONNumber):
        return (f"must be a finite number, got {bad.token} (not JSON: use null for 'not "
                "available', \"inf\" for an unlimited limit)")
    return str(e.get("msg", ""))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field; 400 when the body is not JSON; 415 when the body is not
    sent as JSON (``Content-Type: application/json``), which FastAPI then does not
    parse. Errors in the query string or path are 422 whatever the Content-Type."""
    ctype = request.headers.get("content-type", "")
    body_error = any((e.get("loc") or ("",))[0] == "body" for e in exc.errors())
    if body_error and "json" not in ctype.lower():
        arrow = (f" (or, to /v1/predict and /v1/recommend, an Arrow IPC stream with "
                 f"'Content-Type: {ARROW_STREAM}')")
        return JSONResponse(
            {"detail": f"unsupported Content-Type {ctype or '(none)'!r}: send the body as "
                       f"JSON with 'Content-Type: application/json'{arrow}",
             "message": "the request body must be JSON (Content-Type: application/json)"
                        + arrow},
            status_code=415)
    errors = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        errors.append({"loc": loc, "field": field_path(loc), "msg": _message(e),
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


#: The description at the top of /docs and /redoc (Markdown), for the API's users.
API_DESCRIPTION = """\
Predicts, per container and resource tier (memory, CPU), the probability of failing
within the horizon (`p_fail`), the time until usage reaches the limit and the usage
forecast. `/v1/recommend` adds what the configured policy would do (nothing is applied);
`/v1/samples` stores samples and timings in the history store.

- **Bodies**: JSON windows (`containers`, each as `samples`, one object per reading, or
  `series`, one list per metric), precomputed `features` rows, or on `/v1/predict` and
  `/v1/recommend` an Apache Arrow IPC stream (`application/vnd.apache.arrow.stream`, one
  row per sample). Every JSON body has runnable examples: pick one and *Execute*.
- **Numbers**: units are in the field names (`_bytes`, `_s`, `_cores`). Answers hold
  numbers or `null`, never strings: `limit: null` with `unlimited: true` is no limit,
  `time_to_limit_s: null` with `never_reaches_limit: true` is never; another `null` is
  unknown. In requests `null` is *not available*, an omitted limit is unlimited, and
  `"inf"` is still taken for a limit.
- **No forecast**: where the trend heuristic cannot judge a tier (fewer samples than
  `predictor.min_samples`, too few usage readings for a trend, an unknown limit), that
  tier's `reason` says so and `forecast_ready` is false: its `p_fail` is no forecast.
- **Errors**: a bad field → 422 naming it (`message`), a body too large → 413; with a
  token configured, `Authorization: Bearer <token>` on every route but `/healthz`.
"""
Predictor = Callable[[Job], Any]  # an awaitable giving the Job's JobResult
#: The JSON body of /v1/predict and /v1/recommend, with its request examples
#: (:mod:`app.api_examples`) in the OpenAPI document.
PredictBody = Annotated[PredictRequest, Body(openapi_examples=PREDICT_EXAMPLES)]


def build_api(service: PredictionService, predict: Callable[[Job], Any] | None = None,
              *, health: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """The FastAPI app around ``service``. ``predict(job)`` is an awaitable that gives
    the job's :class:`JobResult` (the Serve deployment passes its ``@serve.batch``
    method; default: the service, unbatched)."""

    async def _direct(job: Job) -> JobResult:
        try:
            return service.predict_jobs([job])[0]
        except ValueError as exc:  # values that cannot be predicted (serve_jobs)
            raise HTTPException(422, detail=f"cannot predict: {exc}") from None

    run = predict or _direct
    api = FastAPI(
        title="prescale prediction API",
        version=API_VERSION,
        description=API_DESCRIPTION,
        docs_url=None, redoc_url=None,  # add_local_docs: no CDN
    )
    add_local_docs(api)
    api.router.route_class = StrictJSONRoute
    api.add_middleware(RequestGuard,
                       state=lambda: (service.token, service.config.max_body_bytes))
    api.add_exception_handler(RequestValidationError, _validation_error)

    def _answer(path: str, request: Request, job: Job, res: JobResult) -> Response:
        body, media = service.answer_bytes(path, job, res,
                                           arrow=wants_arrow(request.headers.get("accept")))
        return Response(body, media_type=media)

    def _not_acceptable(path: str, request: Request) -> Response | None:
        if path == "/v1/recommend" and refuses_json(request.headers.get("accept")):
            return json_answer({"detail": "/v1/recommend answers application/json only "
                                f"(Accept: {request.headers.get('accept')!r})"}, 406)
        return None

    async def fast(path: str, request: Request) -> Response | None:
        refused = _not_acceptable(path, request)
        if refused is not None:
            return refused
        body = await request.body()
        try:
            job = service.job_of_body(body, request.headers.get("content-type"))
        except BodyError as exc:
            return json_answer(exc.payload(), exc.status)
        if job is None:
            return None
        return _answer(path, request, job, await run(job))

    async def _job(req: PredictRequest) -> tuple[Job, JobResult]:
        why = service.check(req)
        if why is not None:
            raise HTTPException(413, detail=why)
        job = window_of(req)
        return job, await run(job)

    route_class = predict_route_class(fast)

    async def predict_route(req: PredictBody, request: Request) -> Response:
        job, res = await _job(req)
        return _answer("/v1/predict", request, job, res)

    async def recommend_route(req: PredictBody, request: Request) -> Response:
        job, res = await _job(req)
        return _answer("/v1/recommend", request, job, res)

    api.router.add_api_route(
        "/v1/predict", predict_route, methods=["POST"], response_model=PredictResponse,
        responses=ERROR_RESPONSES, openapi_extra=PREDICT_OPENAPI,
        route_class_override=route_class,
        summary="p_fail per tier, time to limit, forecast, model, per container (JSON or "
        "Arrow, either way)")
    api.router.add_api_route(
        "/v1/recommend", recommend_route, methods=["POST"], response_model=RecommendResponse,
        responses=_RECOMMEND_RESPONSES, openapi_extra=RECOMMEND_OPENAPI,
        route_class_override=route_class,
        summary="the prediction plus what the configured policy would do (no effect)")

    @api.post("/v1/samples", response_model=SamplesResponse, responses=ERROR_RESPONSES,
              summary="store samples and key-code-block timings (validated)")
    def samples_route(req: Annotated[SamplesRequest, Body(openapi_examples=SAMPLES_EXAMPLES)]
                      ) -> JSONResponse:
        n = len(req.samples) + len(req.timings)
        if n > service.config.max_samples:
            raise HTTPException(413, detail=f"{n} samples and timings in one request is "
                                f"above max_samples = {service.config.max_samples}")
        return JSONResponse(service.ingest(req))

    @api.get("/v1/models", response_model=ModelsResponse, responses=_GET_RESPONSES,
             summary="the model registry")
    def models_route(app: str | None = Query(None, max_length=256),
                     tier: str | None = Query(None, pattern="^(memory|cpu)$")) -> JSONResponse:
        return JSONResponse(service.models_listing(app, tier))

    @api.get("/healthz", response_model=HealthResponse,
             responses={408: ERROR_RESPONSES[408]}, summary="liveness (no token)")
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
         "/openapi.json", "/docs", "/redoc"]))
    return api
