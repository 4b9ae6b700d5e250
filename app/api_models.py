"""Request and response schemas of the prediction API (``/v1``), and its deploy config.

Numbers in JSON
    JSON has no ``nan`` or ``inf``. In requests a metric may be a number, ``null``
    (not available: ``nan``) or the string ``"inf"`` (unlimited, for the two limits).
    An omitted ``memory_limit_bytes`` / ``cpu_quota_cores`` means *unlimited* (as in
    :class:`app.core.sample.Sample`); every other omitted metric is ``nan``.
    Worked example: a sample ``{"ts_s": 1.7e9, "memory_usage_bytes": 100}`` has
    ``memory_limit_bytes = inf`` and ``cpu_usage_s_total = nan``; ``{"ts_s": 1.7e9,
    "memory_limit_bytes": null}`` has an *unknown* limit (``nan``).

    Responses hold no string where a number belongs: a number is a JSON number or
    ``null``, and where ``null`` can mean two things a boolean beside it says which
    (:func:`out_number`). ``limit`` null with ``unlimited: true`` = no limit (``inf``),
    with ``unlimited: false`` = unknown; ``time_to_limit_s`` null with
    ``never_reaches_limit: true`` = never on the current trend (``inf``), else unknown;
    ``forecast`` null = unknown; an action's ``old_limit``/``new_limit`` null =
    unlimited. Worked example: a window with no ``cpu_quota_cores`` and a flat memory
    line → ``"cpu": {"limit": null, "unlimited": true, …}``, ``"memory":
    {"time_to_limit_s": null, "never_reaches_limit": true, …}``. (Until issue 19 these
    were the strings ``"inf"``/``"-inf"``; requests still take ``"inf"``.)

    Non-JSON numbers (``NaN``, ``Infinity``, ``-Infinity``, which Python's ``json`` would
    accept) are refused with 422 naming the field (see :mod:`app.serve_http`). In a
    prediction window every finite value is at most :data:`MAX_VALUE` (1e18: above any
    byte count, core count or counter a container reaches; it keeps every feature far
    from float overflow), only the two limits may be ``"inf"``, and ``ts_s`` lies in
    ``[0, MAX_TS_S]``. In feature rows a value is a number of magnitude ≤ 1e18,
    ``null`` or ``"inf"``/``"-inf"``; ``n_samples`` is a finite count ≥ 0. Worked
    example: ``{"ts_s": 1.7e9, "memory_usage_bytes": 1e308}`` → 422
    ``"samples[0].memory_usage_bytes must be finite and ≤ 1e+18, got 1e+308"``.

A request for prediction gives either ``containers`` (one window per container, as
``samples`` — one object per reading — or as ``series`` — one list per metric, the same
numbers in ~3× fewer bytes and ~5× cheaper to validate) or ``features`` (precomputed
rows in the column order of :data:`app.core.features.FEATURES`), never both. Field
errors are 422 with pydantic's ``detail`` list (each with its ``loc``) and a
``message`` naming each field: ``"body.containers[0].samples[3].ts_s: Input should be
a valid number, unable to parse string as a number"``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)

from prescale.app.core.features import FEATURES
from prescale.app.core.sample import METRICS, Sample

API_VERSION = "v1"
N_FEATURES = len(FEATURES)
MAX_NAME_CHARS = 256
#: Metrics whose omission means "unlimited" (Sample's default), not "not available".
LIMIT_METRICS = ("memory_limit_bytes", "cpu_quota_cores", "disk_limit_bytes",
                 "net_rx_limit_bytes_per_s", "io_write_limit_bytes_per_s")
_VALUE_METRICS = tuple(m for m in METRICS if m != "ts_s")


def _strict_number(v: Any) -> Any:
    """A number where a number belongs: JSON ``true``/``false`` or a numeric string is an
    error, not 1.0/0.0/0 (pydantic would coerce them): ``true`` → "must be a number, got
    a boolean"; ``"0"`` → "must be a number, got a string". The one string taken is
    ``"inf"`` (JSON has no infinity: an unlimited limit)."""
    if isinstance(v, bool):
        raise ValueError("must be a number, got a boolean")
    if isinstance(v, str) and v.strip().lower() not in ("inf", "+inf", "infinity"):
        raise ValueError('must be a number (or "inf"), got a string')
    return v


#: A number in a request: never a boolean.
Number = Annotated[float, BeforeValidator(_strict_number)]
_SAMPLE_DEFAULTS: dict[str, float] = {
    f.name: f.default for f in dataclasses.fields(Sample) if f.name in _VALUE_METRICS
}

#: Largest finite value of a window metric or a feature (magnitude); see the module doc.
MAX_VALUE = 1e18
#: Latest ``ts_s`` of a window or ``now_s`` (s; year 5138): later ones overflow time maths.
MAX_TS_S = 1e11
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
AppName = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
#: A response number: finite, or null (not finite: see the module doc for what a null
#: means in each field; never a string).
OutNumber = float | None


def out_number(x: float) -> float | None:
    """A float as the API writes it: ``1.5`` → ``1.5``; ``inf``, ``-inf``, ``nan`` →
    ``None`` (JSON has no such numbers; the field's flag — ``unlimited``,
    ``never_reaches_limit`` — says when ``None`` is ``inf``)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _metric_fields() -> dict[str, Any]:
    """Every metric of :class:`Sample` but ``ts_s``: a number, ``null`` (→ ``nan``) or
    ``"inf"``. The real defaults are Sample's (``nan``; ``inf`` for the limits); the
    JSON schema shows them as ``null`` / ``"inf"`` (JSON has no ``nan``)."""
    fields: dict[str, Any] = {}
    for m in _VALUE_METRICS:
        unlimited = m in LIMIT_METRICS
        desc = "null = not available" + ("; omitted or \"inf\" = unlimited" if unlimited else "")
        fields[m] = (Number | None, Field(
            _SAMPLE_DEFAULTS[m], description=desc,
            json_schema_extra={"default": "inf" if unlimited else None},
        ))
    return fields


class _SampleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def row(self) -> list[float]:
        """The sample as a row in :data:`METRICS` order (``null`` → ``nan``)."""
        d = self.__dict__
        return [math.nan if d[m] is None else float(d[m]) for m in METRICS]


#: One sample of a prediction window: ``ts_s`` (finite, seconds) and any metric of
#: :class:`app.core.sample.Sample` (each ≥ 0, null or "inf"; checked per window).
WindowSample = create_model(
    "WindowSample",
    __base__=_SampleBase,
    ts_s=(Number, Field(..., allow_inf_nan=False, ge=0, le=MAX_TS_S,
                       description="Unix time of the reading (s).")),
    **_metric_fields(),
)

#: A sample sent for storage: the container and app it belongs to, ``ts_s`` and any
#: metric. Values are not range-checked here: the validator of
#: :mod:`app.core.validation` counts and drops bad ones (``negative:<field>`` ...).
IngestSample = create_model(
    "IngestSample",
    __base__=_SampleBase,
    container=(Name, Field(..., description="Container the sample belongs to.")),
    app=(AppName, Field("", description="Application of the container (\"\" = unknown).")),
    ts_s=(Number, Field(..., description="Unix time of the reading (s).")),
    **_metric_fields(),
)

SeriesName = Literal[METRICS]  # type: ignore[valid-type]
_M_INDEX = {m: i for i, m in enumerate(METRICS)}
_ROW_OF = operator.itemgetter(*METRICS)
_DEFAULT_ROW = np.array([math.nan] + [_SAMPLE_DEFAULTS[m] for m in _VALUE_METRICS])
#: Columns (METRICS order) where ``inf`` is a value: the limits (unlimited).
_INF_OK = np.array([m in LIMIT_METRICS for m in METRICS])
#: Public names of the three above for the array paths (:mod:`app.serve_bodies`):
#: a metric's column in a window row, the row of a sample that gives no metric
#: (``nan``, ``inf`` for the limits; ``ts_s`` has no default) and where ``inf`` is a value.
METRIC_INDEX = _M_INDEX
DEFAULT_ROW = _DEFAULT_ROW
INF_OK = _INF_OK

#: Content types of a prediction request or answer besides ``application/json``: an
#: Apache Arrow IPC *stream* (:mod:`app.serve_bodies` has the table's columns).
JSON_TYPE = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def window_rows(
    samples: list[Any] | None, series: Mapping[str, list[float | None]] | None
) -> np.ndarray:
    """``[W, len(METRICS)]`` float rows of one container, sorted by ``ts_s``, from either
    form; ``ValueError`` naming the first bad field (``ts_s`` not finite, a metric < 0).

    Worked example: series ``{"ts_s": [2, 1], "memory_usage_bytes": [5, null]}`` →
    rows ``[1, nan, inf(limit), …]`` then ``[2, 5, inf, …]``; ``memory_usage_bytes:
    [-1]`` → ``ValueError("series.memory_usage_bytes[0] must be ≥ 0, got -1.0")``.
    """
    if series is not None:
        n = len(series["ts_s"])
        rows = np.repeat(_DEFAULT_ROW[None, :], n, axis=0)
        for m, values in series.items():
            if len(values) != n:
                raise ValueError(f"series.{m} has {len(values)} values but series.ts_s has {n}")
            rows[:, _M_INDEX[m]] = np.array(values, dtype=np.float64)  # None → nan
        where = "series.{m}[{i}]"
    else:
        values = _ROW_OF
        rows = np.array([values(s.__dict__) for s in samples or []], dtype=np.float64)
        rows = rows.reshape(len(samples or []), len(METRICS))  # None → nan
        where = "samples[{i}].{m}"
    ts = rows[:, 0]
    bad_ts = ~np.isfinite(ts)
    if bad_ts.any():
        i = int(np.argmax(bad_ts))
        raise ValueError(f"{where.format(m='ts_s', i=i)} must be a finite time, got {ts[i]}")
    with np.errstate(invalid="ignore"):
        negative = rows < 0
        late = ts > MAX_TS_S
    if negative.any():
        i, j = (int(k) for k in np.argwhere(negative)[0])
        raise ValueError(f"{where.format(m=METRICS[j], i=i)} must be ≥ 0, got {rows[i, j]}")
    if late.any():
        i = int(np.argmax(late))
        raise ValueError(f"{where.format(m='ts_s', i=i)} must be ≤ {MAX_TS_S:g} (Unix "
                         f"seconds), got {ts[i]:g}")
    with np.errstate(invalid="ignore"):
        # nan is "not available"; inf only for the limits ("unlimited")
        too_big = (rows > MAX_VALUE) & ~(np.isposinf(rows) & _INF_OK)
    if too_big.any():
        i, j = (int(k) for k in np.argwhere(too_big)[0])
        raise ValueError(f"{where.format(m=METRICS[j], i=i)} must be finite and ≤ "
                         f"{MAX_VALUE:g}, got {rows[i, j]:g}"
                         + (' ("inf" is for the limits only)' if np.isinf(rows[i, j]) else ""))
    order = np.argsort(ts, kind="stable")
    return rows[order]


class ContainerWindow(BaseModel):
    """The recent samples of one container, as ``samples`` (one object per reading) or
    ``series`` (one list per metric, all as long as ``ts_s``; ~10× cheaper to parse);
    any order (sorted by ``ts_s`` here)."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    app: AppName = ""
    samples: Annotated[list[WindowSample], Field(min_length=1)] | None = None  # type: ignore
    series: dict[SeriesName, Annotated[list[Number | None], Field(min_length=1)]] | None = Field(
        None,
        description="Columns: metric name → values (ts_s required; same length each). "
        "The request examples of /v1/predict (app.api_examples) show both forms.",
    )
    _rows: np.ndarray = PrivateAttr()

    @model_validator(mode="after")
    def _window(self) -> ContainerWindow:
        if (self.samples is None) == (self.series is None):
            raise ValueError("give exactly one of 'samples' or 'series'")
        if self.series is not None and "ts_s" not in self.series:
            raise ValueError("series.ts_s is required")
        self._rows = window_rows(self.samples, self.series)
        return self

    def rows(self) -> np.ndarray:
        """``[W, len(METRICS)]``, sorted by ``ts_s`` (see :func:`window_rows`)."""
        return self._rows


FeatureRow = Annotated[list[Number | None], Field(min_length=N_FEATURES, max_length=N_FEATURES)]
_N_SAMPLES = FEATURES.index("n_samples")
#: Most samples a feature row may claim (``n_samples``).
MAX_N_SAMPLES = 1e9


def check_feature_rows(rows: list[list[float | None]]) -> np.ndarray:
    """``[N, F]`` float array of feature rows (``null`` → ``nan``); ``ValueError`` naming
    the first bad value: ``n_samples`` not a finite count in ``[0, 1e9]``, a finite
    value of magnitude above :data:`MAX_VALUE`.

    Worked example: ``[[nan, …]]`` → ``ValueError("features[0][0] (n_samples) must be a
    finite count in [0, 1e+09], got nan")``; ``1e308`` in column 1 →
    ``"features[0][1] (memory_usage_last_bytes) must be null, \"inf\", \"-inf\" or
    a number of magnitude ≤ 1e+18, got 1e+308"``.
    """
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), N_FEATURES)  # None → nan
    n = arr[:, _N_SAMPLES]
    with np.errstate(invalid="ignore"):
        bad_n = ~np.isfinite(n) | (n < 0) | (n > MAX_N_SAMPLES)
        huge = np.isfinite(arr) & (np.abs(arr) > MAX_VALUE)
    if bad_n.any():
        i = int(np.argmax(bad_n))
        raise ValueError(f"features[{i}][{_N_SAMPLES}] (n_samples) must be a finite count "
                         f"in [0, {MAX_N_SAMPLES:g}], got {n[i]}")
    if huge.any():
        i, j = (int(k) for k in np.argwhere(huge)[0])
        raise ValueError(f"features[{i}][{j}] ({FEATURES[j]}) must be null, \"inf\", "
                         f"\"-inf\" or a number of magnitude ≤ {MAX_VALUE:g}, got {arr[i, j]:g}")
    return arr


class PredictRequest(BaseModel):
    """Either ``containers`` (windows) or ``features`` (+ optional ``names``/``apps``)."""

    model_config = ConfigDict(extra="forbid")
    containers: Annotated[list[ContainerWindow], Field(min_length=1)] | None = Field(
        None, description="Windows of samples, one per container (names unique)."
    )
    features: Annotated[list[FeatureRow], Field(min_length=1)] | None = Field(
        None,
        description=f"Precomputed feature rows, {N_FEATURES} values each, in the order of "
        f"app.core.features.FEATURES: {', '.join(FEATURES)}.",
    )
    names: list[Name] | None = Field(
        None, description="Container names of the feature rows (default row-<i>)."
    )
    apps: list[AppName] | None = Field(
        None, description="Applications of the feature rows (selects the registered model)."
    )
    now_s: Number | None = Field(
        None,
        allow_inf_nan=False,
        ge=0,
        le=MAX_TS_S,
        description="Time of the decision (recommend); default: the latest sample's ts_s, "
        "else the server's clock.",
    )

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, v: list[ContainerWindow] | None) -> list[ContainerWindow] | None:
        if v is not None:
            first: dict[str, int] = {}
            for i, c in enumerate(v):
                if c.name in first:
                    raise ValueError(
                        f"containers[{i}].name {c.name!r} repeats containers[{first[c.name]}]"
                        ".name (names must be unique)"
                    )
                first[c.name] = i
        return v

    @field_validator("features")
    @classmethod
    def _finite_features(cls, v: list[list[float | None]] | None
                         ) -> list[list[float | None]] | None:
        if v is not None:
            check_feature_rows(v)
        return v

    @field_validator("names")
    @classmethod
    def _unique_row_names(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = sorted({n for n in v if v.count(n) > 1})[:5]
            raise ValueError(f"names must be unique, repeated: {dup}")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.containers is None) == (self.features is None):
            raise ValueError(
                "give exactly one of 'containers' (windows of samples) or 'features' "
                "(precomputed rows)"
            )
        if self.features is None:
            for what in ("names", "apps"):
                if getattr(self, what) is not None:
                    raise ValueError(f"'{what}' goes with 'features'; with 'containers' "
                                     "each container has its own name and app")
        else:
            n = len(self.features)
            for what in ("names", "apps"):
                got = getattr(self, what)
                if got is not None and len(got) != n:
                    raise ValueError(
                        f"'{what}' has {len(got)} entries but 'features' has {n} rows"
                    )
        return self

    def n_containers(self) -> int:
        return len(self.containers) if self.containers is not None else len(self.features or [])


class TimingIn(BaseModel):
    """One call of a timed key code block (the record :mod:`app.client` writes)."""

    model_config = ConfigDict(extra="ignore")  # the client's spool also has "v", "pid", ...
    container: Name
    block: Name
    duration_s: Number = Field(..., description="Seconds the block took (finite, ≥ 0).")
    ok: bool = Field(..., description="False when the block raised.")
    timeout: bool = False
    ts_s: Number | None = Field(None, description="Unix time at the end (default: now).")
    app: AppName = ""
    error: str = Field("", max_length=MAX_NAME_CHARS)


class SamplesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples: list[IngestSample] = Field(default_factory=list)  # type: ignore[valid-type]
    timings: list[TimingIn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> SamplesRequest:
        if not self.samples and not self.timings:
            raise ValueError("give at least one of 'samples' or 'timings'")
        return self


# ---------------------------------------------------------------- responses


class TierOut(BaseModel):
    """One tier of one container. Numbers are JSON numbers or null, never strings (see
    the module doc). Worked example (a leak: 490 MiB, +2 MiB/s, limit 512 MiB, horizon
    30 s): ``{"p_fail": 0.9999, "time_to_limit_s": 11.0, "never_reaches_limit": false,
    "forecast": 576716800.0, "limit": 536870912.0, "unlimited": false, "reason":
    null, …}``; a container with 2 samples: ``{"p_fail": 0.0, …, "forecast_ready":
    false, "reason": "2 samples: a trend needs at least 5 (predictor.min_samples), so
    p_fail 0 is no forecast"}``."""

    p_fail: float = Field(..., description="Probability of failure within the horizon.")
    time_to_limit_s: OutNumber = Field(
        ..., description="Seconds until usage reaches the limit on the current trend; "
        "null = never (never_reaches_limit true) or unknown (false).")
    never_reaches_limit: bool = Field(
        False, description="True: on the current trend usage never reaches the limit (no "
        "upward trend, or no limit); time_to_limit_s is then null.")
    forecast: OutNumber = Field(
        ..., description="Usage expected at the horizon (bytes/cores); null = unknown.")
    limit: OutNumber = Field(
        ..., description="Current limit (bytes/cores); null = unlimited (unlimited true) "
        "or unknown (false).")
    unlimited: bool = Field(
        False, description="True: the tier has no limit (limit is then null).")
    model: str = Field(..., description="What produced p_fail: a registered model or the "
                       "heuristic trend-exhaustion/v1.")
    model_version: str | None = Field(None, description="Registry version id, if a model.")
    forecast_ready: bool = Field(
        True, description="False when p_fail is no forecast because the heuristic cannot "
        "judge the tier yet; reason then says why.")
    reason: str | None = Field(
        None, description="Why p_fail is no forecast, when the heuristic cannot judge: "
        "fewer samples than predictor.min_samples, fewer usage readings than a trend "
        "needs (memory 2, CPU 3: rates need two readings each), or an unknown limit. "
        "null: p_fail is a forecast. Example: \"2 samples: a trend needs at least 5 "
        "(predictor.min_samples), so p_fail 0 is no forecast\".")
    note: str | None = Field(None, description="The same text as reason (kept for clients "
                             "of the first v1 answers).", deprecated=True)


class ContainerPrediction(BaseModel):
    name: str
    app: str
    n_samples: int
    tiers: dict[str, TierOut]


class PredictResponse(BaseModel):
    api_version: str = API_VERSION
    horizon_s: float
    model_revision: int | None = Field(None, description="Model registry revision in use.")
    predictions: list[ContainerPrediction]


class ActionOut(BaseModel):
    action_id: str
    kind: str
    tier: str
    old_limit: OutNumber = Field(..., description="Limit before (bytes/cores); null = "
                                 "unlimited.")
    new_limit: OutNumber = Field(..., description="Limit asked (bytes/cores); null = "
                                 "unlimited.")
    preemptive: bool


class DecisionOut(BaseModel):
    tier: str
    p_fail: float
    threshold: float
    action: ActionOut | None = Field(None, description="null: the policy would do nothing.")
    reason: str


class ContainerRecommendation(ContainerPrediction):
    decisions: list[DecisionOut]


class RecommendResponse(BaseModel):
    api_version: str = API_VERSION
    horizon_s: float
    model_revision: int | None
    now_s: float
    policy: str
    recommendations: list[ContainerRecommendation]


class ErrorResponse(BaseModel):
    """An error answer: ``detail`` (a sentence, or for 400/422 one entry per field with
    its ``loc``, ``field``, ``msg`` and ``type``) and, for 400/422, a ``message`` naming
    every field."""

    detail: str | list[dict[str, Any]]
    message: str | None = None


class SamplesResponse(BaseModel):
    api_version: str = API_VERSION
    accepted: dict[str, int] = Field(..., description="samples, timings, events stored.")
    dropped: dict[str, int] = Field(..., description="Dropped items by reason.")


class ModelsResponse(BaseModel):
    api_version: str = API_VERSION
    revision: int
    versions: list[dict[str, Any]]
    serving: dict[str, str] = Field(..., description="\"app/tier\" → version id in service.")
    failures: dict[str, str] = Field(..., description="\"app/tier\" → why a version was refused.")


class HealthResponse(BaseModel):
    status: str
    api_version: str = API_VERSION
    pid: int
    replica: str
    model_revision: int | None
    models_loaded: int
    model_errors: list[str]
    config_revision: int | None
    auth: bool


# ---------------------------------------------------------------- deploy config


class ServeUserConfig(BaseModel):
    """The deployment's ``user_config`` (``reconfigure``): every key optional; what is
    not given comes from the settings the application was built with.

    Changing it with ``serve deploy`` reconfigures the running replicas in place (no
    restart); a new ``revision`` makes them re-read the model registry at once.
    """

    model_config = ConfigDict(extra="forbid")
    registry_dir: str | None = Field(None, description="Model registry directory.")
    history_uri: str | None = Field(None, description="History store for /v1/samples.")
    revision: int | None = Field(None, description="Bump to force a model reload now.")
    model_poll_interval_s: float = Field(
        5.0, ge=0, le=3600, description="Re-read the registry index at most this often (s)."
    )
    api_token: str | None = Field(
        None, description="Bearer token required on every route but /healthz (else "
        "$PRESCALE_API_TOKEN; empty: no auth)."
    )
    max_body_bytes: int = Field(8 * 2**20, ge=1024, description="Largest request body.")
    max_containers: int = Field(10_000, ge=1, description="Most containers per request.")
    max_samples: int = Field(
        200_000, ge=1,
        description="Most samples per request (for windows: containers × the longest window).",
    )
    max_batch_size: int = Field(32, ge=1, le=1024, description="Requests per inference batch.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, le=1, description="Batch fill wait (s) while other predictions wait or "
        "run; a request that finds the replica idle is predicted at once, with no wait.")
