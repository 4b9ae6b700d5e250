"""The one settings root: TOML file + ``PRESCALE_*`` environment variables.

Precedence (highest first): explicit overrides passed to :func:`load_settings`,
environment variables (``PRESCALE_POLICY__MARGIN_FRACTION=0.3``; nested groups are
separated by ``__``), the TOML file (``configs/local.toml`` by default), then the
defaults below. Sizes in bytes accept units: ``"128MiB"``, ``"2GB"``.

Settings are passed in, never read from a global.

The defaults of everything the decision path uses (``predictor``, ``thresholds``,
``policy``, ``cost``, ``oom``, ``contention``, ``models.tier``) are not written here:
each ``Field`` default reads the core config field it feeds (:func:`default_of`), so
there is one source of defaults, the pure core's config types; the core builds its
configs from these settings with one ``from_settings`` per type
(``EngineConfig.from_settings`` composes them). Why that way round: ``app/core/config.py``.
"""

from __future__ import annotations

import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from prescale.app.core.config import default_of
from prescale.app.core.contention import ContentionConfig
from prescale.app.core.cost import CostConfig
from prescale.app.core.engine import EngineConfig
from prescale.app.core.guards import GuardConfig
from prescale.app.core.oom import OomConfig
from prescale.app.core.policy import KINDS, SIZING_METHODS, PolicyConfig
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.thresholds import ThresholdConfig

#: The file read when no ``--config`` is given: ``configs/local.toml`` of the checkout, or
#: ``prescale/configs/local.toml`` of an installed package (the same relative place).
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "local.toml"
#: Cluster mode's default settings file (``python -m prescale.actors.controller``).
CLUSTER_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("cluster.toml")

PositiveSeconds = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _tier_default(cls: type, name: str, tier: str) -> Any:
    """``default_of(cls, name)[tier]`` (None when the tier has no entry)."""
    return default_of(cls, name).get(tier)


def _bytes_default(value: float | None) -> ByteSize | None:
    return None if value is None else ByteSize(int(value))


class Mode(StrEnum):
    """As in the Kubernetes VPA."""

    OFF = "off"  # observe only: sample and predict, decide nothing
    RECOMMEND = "recommend"  # decide and log, touch nothing
    AUTO = "auto"  # decide, log and apply


class CgroupVersion(StrEnum):
    AUTO = "auto"
    V1 = "v1"
    V2 = "v2"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoopSettings(_Group):
    interval_s: PositiveSeconds = Field(
        1.0, le=3600, description="Seconds between two ticks of the control loop."
    )
    window_steps: int = Field(
        60, ge=3, le=100_000, description="Samples kept per container in the monitor's ring buffer."
    )
    collect_timeout_s: PositiveSeconds = Field(
        2.0, le=600, description="How long a tick waits for each monitor's window; the "
        "containers of a slower (or dead) monitor are 'unknown' this tick, the rest go on."
    )


class CgroupSettings(_Group):
    version: CgroupVersion = Field(
        CgroupVersion.AUTO, description="cgroup version of the watched containers (auto: detect)."
    )
    roots: list[Path] = Field(
        default_factory=list,
        description=(
            "Absolute cgroup directories prescale may read and act on, e.g. "
            "/sys/fs/cgroup/memory/prescale and /sys/fs/cgroup/cpu/prescale on v1. "
            "Anything outside them is refused."
        ),
    )
    discover: bool = Field(
        True, description="Watch every direct child directory of the roots as a container."
    )
    watch: list[str] = Field(
        default_factory=list,
        description="Container names (child directory names under the roots) to watch explicitly.",
    )

    @model_validator(mode="after")
    def _absolute_roots(self) -> Self:
        for root in self.roots:
            if not root.is_absolute():
                raise ValueError(f"cgroup.roots: {str(root)!r} is not an absolute path")
        return self


class PredictorSettings(_Group):
    horizon_s: PositiveSeconds = Field(
        default_of(TrendExhaustionPredictor, "horizon_s"), le=86_400,
        description="Predict failures this many seconds ahead."
    )
    min_samples: int = Field(
        default_of(TrendExhaustionPredictor, "min_samples"), ge=2, le=10_000,
        description="Samples a container needs before it is predicted."
    )
    recent_steps: int = Field(
        default_of(EngineConfig, "recent_steps"), ge=2, le=10_000,
        description="Steps in the 'recent' part of the window (recent slope)."
    )
    sigma_floor_fraction: Fraction = Field(
        default_of(TrendExhaustionPredictor, "sigma_floor_fraction"),
        description="Floor of the forecast's standard deviation, as a fraction of the limit.",
    )
    cpu_busy_fraction: Fraction = Field(
        default_of(TrendExhaustionPredictor, "cpu_busy_fraction"),
        description="CPU usage at this fraction of the quota counts as starved."
    )


class ThresholdSettings(_Group):
    p_fail: Fraction = Field(
        default_of(ThresholdConfig, "default_p_fail"),
        description="Act when the failure probability within the horizon reaches this."
    )
    per_app: dict[str, Fraction] = Field(
        default_factory=dict, description="Per-container overrides of p_fail, by container name."
    )
    min_p_fail: Fraction = Field(default_of(ThresholdConfig, "default_min"),
                                 description="Lowest threshold learning may reach.")
    max_p_fail: Fraction = Field(default_of(ThresholdConfig, "default_max"),
                                 description="Highest threshold learning may reach.")
    sensitivity: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default_of(ThresholdConfig, "default_sensitivity"),
        description="Threshold step per judged outcome of the costlier kind (0: fixed)."
    )
    cost_false_positive: Annotated[float, Field(gt=0, le=1000)] = Field(
        default_of(ThresholdConfig, "cost_false_positive"),
        description="Relative cost of an unneeded scale-up."
    )
    cost_miss: Annotated[float, Field(gt=0, le=1000)] = Field(
        default_of(ThresholdConfig, "cost_miss"),
        description="Relative cost of a failure nobody scaled up for."
    )
    window: int = Field(
        default_of(ThresholdConfig, "window"), ge=1, le=100_000,
        description="Judged outcomes per app and tier kept for the rates."
    )
    outcome_horizon_s: PositiveSeconds | None = Field(
        None, description="H for judging outcomes (default: predictor.horizon_s)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_p_fail <= self.p_fail <= self.max_p_fail:
            raise ValueError(
                "thresholds: need min_p_fail <= p_fail <= max_p_fail, got "
                f"{self.min_p_fail} / {self.p_fail} / {self.max_p_fail}"
            )
        return self


class BoundsOverride(_Group):
    memory_min_bytes: ByteSize | None = Field(None, description="Lowest memory limit.")
    memory_max_bytes: ByteSize | None = Field(None, description="Highest memory limit.")
    cpu_min_cores: Annotated[float, Field(ge=0, le=1024)] | None = Field(
        None, description="Lowest CPU quota.")
    cpu_max_cores: Annotated[float, Field(gt=0, le=4096)] | None = Field(
        None, description="Highest CPU quota.")
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="Most replicas of a replicated container.")


class PolicySettings(_Group):
    kind: str = Field(
        default_of(PolicyConfig, "kind"),
        pattern=f"^({'|'.join(KINDS)})$",
        description=f"Scale-up policy: {', '.join(KINDS[:-1])} or {KINDS[-1]}.",
    )
    buffer_memory_bytes: ByteSize = Field(
        _bytes_default(_tier_default(PolicyConfig, "buffer_abs", "memory")),
        description="preemptive_buffer: at least this many bytes above the forecast.")
    buffer_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        _tier_default(PolicyConfig, "buffer_abs", "cpu"),
        description="preemptive_buffer: at least this many cores above the forecast.")
    multi_tier_methods: dict[str, Literal[SIZING_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: dict(default_of(PolicyConfig, "multi_tier_methods")),
        description="multi_tier: sizing rule per tier.")
    multi_tier_margins: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: dict(default_of(PolicyConfig, "multi_tier_margins")),
        description="multi_tier: margin per tier (default margin_fraction).")
    max_step_fraction: Annotated[float, Field(gt=0, le=100)] = Field(
        default_of(GuardConfig, "max_step_fraction"),
        description="One action changes a limit by at most this fraction of it.")
    max_step_memory_bytes: ByteSize | None = Field(
        _bytes_default(_tier_default(GuardConfig, "max_step_abs", "memory")),
        description="...and by at most this many bytes (empty: no cap).")
    max_step_cpu_cores: Annotated[float, Field(gt=0, le=1024)] | None = Field(
        _tier_default(GuardConfig, "max_step_abs", "cpu"),
        description="...and by at most this many cores (empty: no cap).")
    tier_cooldown_s: dict[str, Annotated[float, Field(ge=0, le=86_400)]] = Field(
        default_factory=lambda: dict(default_of(GuardConfig, "tier_cooldown_s")),
        description="Per-tier cooldown overrides (default cooldown_s).")
    hold_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "hold_s"),
        description="No action reverses the previous one's direction within this time.")
    urgent_p_fail: Fraction | None = Field(
        default_of(GuardConfig, "urgent_p_fail"),
        description="A scale-up at this p_fail or above is not held back by hold_s.")
    dead_band_fraction: Fraction = Field(
        default_of(GuardConfig, "dead_band_fraction"),
        description="Changes smaller than this fraction of the limit are not made.")
    safety_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(GuardConfig, "safety_margin_fraction"),
        description="Memory is never set below current usage × (1 + this).")
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default_of(GuardConfig, "max_replicas"),
        description="A replicated container that cannot grow scales out up to this many.")
    scale_out_cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "scale_out_cooldown_s"),
        description="Seconds between two scale-outs of the same container.")
    app_bounds: dict[str, BoundsOverride] = Field(
        default_factory=dict, description="Per-app min/max limits and max_replicas.")
    container_bounds: dict[str, BoundsOverride] = Field(
        default_factory=dict, description="Per-container overrides (win over app_bounds).")
    margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(PolicyConfig, "margin_fraction"),
        description="New limit = forecast usage at the horizon × (1 + margin)."
    )
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "cooldown_s"),
        description="Seconds between two actions on the same container and tier."
    )
    memory_min_bytes: ByteSize = Field(
        _bytes_default(_tier_default(GuardConfig, "min_limit", "memory")),
        description="Lowest memory limit.")
    memory_max_bytes: ByteSize = Field(
        _bytes_default(_tier_default(GuardConfig, "max_limit", "memory")),
        description="Highest memory limit.")
    cpu_min_cores: Annotated[float, Field(gt=0, le=1024)] = Field(
        _tier_default(GuardConfig, "min_limit", "cpu"), description="Lowest quota.")
    cpu_max_cores: Annotated[float, Field(gt=0, le=1024)] = Field(
        _tier_default(GuardConfig, "max_limit", "cpu"), description="Highest quota.")
    cpu_step_fraction: Annotated[float, Field(gt=0, le=10)] = Field(
        default_of(PolicyConfig, "cpu_step_fraction"),
        description="A throttled container's quota grows by this fraction per action."
    )

    @model_validator(mode="after")
    def _ordered_bounds(self) -> Self:
        if self.memory_min_bytes > self.memory_max_bytes:
            raise ValueError("policy.memory_min_bytes is above policy.memory_max_bytes")
        if self.cpu_min_cores > self.cpu_max_cores:
            raise ValueError("policy.cpu_min_cores is above policy.cpu_max_cores")
        return self


class CostSettings(_Group):
    enabled: bool = Field(default_of(CostConfig, "enabled"),
                          description="Scale idle containers down (cost saving).")
    idle_usage_fraction: Fraction = Field(
        default_of(CostConfig, "idle_usage_fraction"),
        description="A tier is low while usage < this fraction of its limit.")
    idle_after_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "idle_after_s"),
        description="Low (and low p_fail) for this long = idle: 3 days, so that a "
        "container's daily peaks are seen before it is ever scaled down (docs/BENCHMARKS.md: "
        "kills against GiB·h).")
    idle_p_fail_max: Fraction = Field(default_of(CostConfig, "idle_p_fail_max"),
                                      description="Idle only while p_fail is at most this.")
    peak_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(CostConfig, "peak_margin_fraction"),
        description="An idle scale-down never goes below the long peak × (1 + this): "
        "room for the peak to double.")
    step_down_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default_of(CostConfig, "step_down_fraction"),
        description="One scale-down lowers a limit by at most this fraction.")
    step_interval_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(CostConfig, "step_interval_s"),
        description="Seconds between two scale-downs of the same container and tier.")
    reclaim_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(CostConfig, "reclaim_margin_fraction"),
        description="Under contention an idle tier may be shrunk to its long peak × (1 "
        "+ this): thinner than peak_margin_fraction, because another container needs the "
        "room now.")
    tier_idle_after_s: dict[Literal["memory", "cpu"],
                            Annotated[float, Field(ge=0, le=2_592_000)]] = Field(
        default_factory=lambda: default_of(CostConfig, "tier_idle_after_s"),
        description="Per-tier idle_after_s: a CPU "
        "quota set too low throttles, a memory limit set too low kills, so CPU may be "
        "scaled down sooner.")
    tier_peak_margin_fraction: dict[Literal["memory", "cpu"],
                                    Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: default_of(CostConfig, "tier_peak_margin_fraction"),
        description="Per-tier peak_margin_fraction.")
    revert_after_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "revert_after_s"),
        description="A pre-emptive scale-up that usage never reached is reverted "
        "(to the limit before it, or the long peak × (1 + reclaim margin) if higher) once it "
        "is this old and p_fail is at most idle_p_fail_max.")
    reclaim_after_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(CostConfig, "reclaim_after_s"),
        description="Under contention, a tier low (and low p_fail) for this long may "
        "be shrunk at once to its long peak × (1 + reclaim margin) for others' scale-ups.")
    long_peak_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "long_peak_s"),
        validation_alias=AliasChoices("long_peak_s", "reclaim_peak_s"),
        description="The long peak: the highest usage in this long (6 buckets; 0 = the "
        "feature window only). An idle scale-down and a reclaim never go below it × (1 + "
        "peak margin). Old name: reclaim_peak_s.")


class OomSettings(_Group):
    """The answer to an OOM kill (app/core/oom.py)."""

    enabled: bool = Field(default_of(OomConfig, "enabled"),
                          description="Bump a container's memory after an OOM kill.")
    min_bump_bytes: ByteSize = Field(
        _bytes_default(default_of(OomConfig, "min_bump_bytes")),
        description="A bump adds at least this (the VPA's OOMMinBumpUp).")
    bump_ratio: Annotated[float, Field(ge=1, le=10)] = Field(
        default_of(OomConfig, "bump_ratio"),
        description="A bump is at least the limit × this^k, k = kills within the loop "
        "window (the VPA's OOMBumpUpRatio, compounding).")
    margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(OomConfig, "margin_fraction"),
        description="A bump is at least the window's forecast × (1 + this).")
    stabilise_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(OomConfig, "stabilise_s"),
        description="The limit a bump reached is a floor for this long: no "
        "scale-down or reclaim goes below it.")
    loop_kills: Annotated[int, Field(ge=1, le=1000)] = Field(
        default_of(OomConfig, "loop_kills"),
        description="This many kills within loop_window_s is a kill loop: a larger step, "
        "a scale-out if replicated, the operator flagged.")
    loop_window_s: Annotated[float, Field(gt=0, le=2_592_000)] = Field(
        default_of(OomConfig, "loop_window_s"), description="The kill-loop window.")
    loop_ratio: Annotated[float, Field(ge=1, le=100)] = Field(
        default_of(OomConfig, "loop_ratio"),
        description="In a kill loop a bump is at least the limit × this.")


class PoolSettings(_Group):
    reserve_memory_bytes: ByteSize = Field(
        ByteSize(2 * 2**30), description="Host memory never granted to containers."
    )
    reserve_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        0.5, description="Host CPU never granted to containers."
    )
    capacity_memory_bytes: ByteSize | None = Field(
        None, description="Override the host's memory total (default: read from the host)."
    )
    capacity_cpu_cores: Annotated[float, Field(gt=0, le=4096)] | None = Field(
        None, description="Override the host's CPU count (default: read from the host)."
    )
    warm_memory_bytes: ByteSize = Field(
        ByteSize(0), description="Memory held back for pre-emptive scale-ups only."
    )
    warm_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        0.0, description="CPU held back for pre-emptive scale-ups only."
    )


class ContentionSettings(_Group):
    risk_band: Annotated[float, Field(gt=0, le=10)] = Field(
        default_of(ContentionConfig, "risk_band"),
        description="Width of a risk band (risk = p_fail × app weight); DRF decides within."
    )
    defer_factor: Annotated[float, Field(gt=0, le=100)] = Field(
        default_of(ContentionConfig, "defer_factor"),
        description="Deferred (not denied) if need ≤ factor × (free + others' reservations)."
    )
    app_weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Risk weight per app (default 1)."
    )
    tenants: dict[str, str] = Field(
        default_factory=dict, description="Container (or app) → tenant (owner): a "
        "container's own entry wins over its app's (app/core/tenants.py)."
    )
    tenant_weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="DRF weight per tenant (default 1)."
    )
    partial_grants: bool = Field(
        default_of(ContentionConfig, "partial_grants"),
        description="Grant an increase in part (what is free) when that still covers "
        "the container's forecast.")


class HistorySettings(_Group):
    enabled: bool = Field(True, description="Store samples, events and decisions (Parquet).")
    uri: str | None = Field(
        None,
        description=(
            "Where the history lives: a directory or a pyarrow filesystem URI "
            "(file://, s3://, gs://, hdfs://); empty = <data_dir>/history."
        ),
    )
    flush_interval_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        5.0, description="Samples are buffered at most this long (lost on a hard crash)."
    )
    retention_days: Annotated[float, Field(gt=0, le=36_500)] = Field(
        30.0, description="Day partitions older than this are deleted."
    )
    compact_min_files: Annotated[int, Field(ge=2, le=100_000)] = Field(
        8, description="A partition with at least this many files is compacted into one."
    )


class ProcessTargetSettings(_Group):
    name: str = Field(..., min_length=1, description="Container name of this process tree.")
    pid: Annotated[int, Field(gt=0)] | None = Field(None, description="Root process id.")
    match: str | None = Field(
        None, description="Regex on the command line (followed across restarts)."
    )
    app: str = Field("", description="Application the process belongs to.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.pid is None) == (self.match is None):
            raise ValueError(f"sources.processes[{self.name}]: give exactly one of pid or match")
        return self


class SourceSettings(_Group):
    processes: list[ProcessTargetSettings] = Field(
        default_factory=list, description="Process trees to watch as containers (psutil)."
    )
    prometheus_url: str | None = Field(
        None, description="Prometheus base URL to read cAdvisor metrics from (empty: off)."
    )
    prometheus_selector: str = Field(
        "", description="Label matchers added to every Prometheus query, e.g. namespace=\"web\"."
    )
    ray_workers: bool = Field(False, description="Watch the Ray actors on this node.")
    serve_deployments: bool = Field(
        False, description="Watch the Ray Serve deployments on this node, one container "
        "'<app>/<deployment>' each, sized per replica (app/telemetry/serve_deployments.py)."
    )
    managed_actors: bool = Field(
        False, description="Watch the Ray actors prescale manages in placement groups "
        "(registered with the workload actuators), one container per managed actor."
    )
    simulated: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        0, description="Simulated containers per monitor (tests, benchmarks; "
        "app/telemetry/simulated.py): half leak memory, half are steady."
    )
    simulated_leak_bytes_per_s: ByteSize = Field(
        ByteSize(2 * 2**20), description="How fast the simulated leaking containers grow."
    )
    timings_spool: Path | None = Field(
        None, description="Spool file that applications' timed() blocks report to (empty: off)."
    )
    block_timeouts_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Per key-code-block timeout: a slower call is a timeout."
    )


class ModelSettings(_Group):
    enabled: bool = Field(
        True, description="Use registered per-app models where they exist (else the heuristic)."
    )
    registry_dir: Path | None = Field(
        None, description="Model registry directory; empty = <data_dir>/models."
    )
    tier: str = Field(default_of(EngineConfig, "model_tier").value, pattern="^(memory|cpu)$",
                      description="Tier the models predict.")
    retrain_interval_s: Annotated[float, Field(gt=0)] = Field(
        7 * 86_400.0, description="`prescale retrain` retrains a model at least this often."
    )
    min_live_precision: Fraction = Field(
        0.5, description="Retrain early when live precision (judged outcomes) drops below."
    )
    min_live_recall: Fraction = Field(
        0.5, description="Retrain early when live recall (judged outcomes) drops below."
    )
    live_window_n: int = Field(50, ge=1, le=100_000, description="Outcomes the live rates cover.")
    gate_margin_ap: Annotated[float, Field(ge=0, le=1)] = Field(
        0.01, description="A trained model becomes current only if its validation AP beats "
        "the current model's and the heuristic's by at least this, with the 95% bootstrap "
        "interval of the gain above 0 (app/models/gate.py).")
    threshold_target: str = Field(
        "balance", pattern="^(balance|cost|precision)$",
        description="How a model's operating threshold is chosen on held-out data "
        "(app/models/operating_threshold.py): balance (where thresholds.cost_false_positive "
        "× FP reaches thresholds.cost_miss × FN: where the adaptive threshold settles), cost "
        "(the least c_fp·FP + c_miss·FN) or precision (the most recall at "
        "models.threshold_min_precision). A promoted model's threshold is where its app's "
        "adaptive threshold starts.")
    threshold_min_precision: Fraction = Field(
        0.5, description="threshold_target = precision: the precision to keep.")
    retrain_live: bool = Field(
        True, description="The control loop schedules retraining (weekly, or on live "
        "precision/recall drift) as a background Ray task running Ray Tune.")
    retrain_trials: int = Field(
        4, ge=1, le=1000, description="Ray Tune trials per scheduled retraining.")
    retrain_check_interval_s: Annotated[float, Field(gt=0)] = Field(
        60.0, description="How often the loop checks whether a retraining is due.")


class ApiSettings(_Group):
    token: SecretStr | None = Field(
        None, description="Bearer token the prediction API requires (all but /healthz)."
    )
    max_body_bytes: ByteSize = Field(
        ByteSize(8 * 2**20), description="Largest request body; larger ones get 413."
    )
    max_containers: int = Field(
        10_000, ge=1, le=1_000_000, description="Most containers per prediction request."
    )
    max_samples: int = Field(
        200_000, ge=1, le=100_000_000, description="Most samples per request."
    )
    model_poll_interval_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        5.0, description="Serve replicas re-read the model registry at most this often."
    )


class RaySettings(_Group):
    address: str | None = Field(
        None, description="Ray cluster address; empty starts an embedded single-node Ray."
    )
    namespace: str = Field("prescale", min_length=1, description="Ray namespace of the actors.")
    num_cpus: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="CPUs of the embedded Ray (default: all)."
    )
    metrics_export_port: Annotated[int, Field(ge=1024, le=65535)] | None = Field(
        None, description="Port of the embedded Ray's metrics endpoint, which Prometheus "
        "scrapes (configs/prometheus/prometheus.yml); empty: a random port. On a cluster, "
        "`ray start --metrics-export-port` sets it per node."
    )
    detached: bool = Field(
        False, description="Run the pool manager and coordinator as detached actors that "
        "outlive the driver (cluster mode: `python -m prescale.actors.controller`)."
    )


class DemoSettings(_Group):
    duration_s: PositiveSeconds = Field(60.0, le=3600, description="Length of `prescale demo`.")
    leak_rate_bytes_per_s: ByteSize = Field(
        ByteSize(4 * 2**20), description="How fast the demo's leaker grows."
    )
    leak_cap_bytes: ByteSize = Field(
        ByteSize(400 * 2**20), description="The leaker stops growing here."
    )
    leaker_limit_bytes: ByteSize = Field(ByteSize(128 * 2**20), description="Leaker's first limit.")
    steady_bytes: ByteSize = Field(ByteSize(48 * 2**20), description="Steady service's memory.")
    steady_limit_bytes: ByteSize = Field(ByteSize(128 * 2**20), description="Its limit.")
    hog_limit_bytes: ByteSize = Field(ByteSize(64 * 2**20), description="CPU hog's memory limit.")
    cpu_quota_cores: Annotated[float, Field(gt=0, le=64)] = Field(
        0.25, description="First CPU quota of each demo container."
    )


class Settings(BaseSettings):
    """Root of prescale's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PRESCALE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mode: Mode = Field(
        Mode.RECOMMEND,
        description="off: observe only; recommend: decide and log, touch nothing; auto: apply.",
    )
    data_dir: Path = Field(
        Path(".prescale"),
        description="Decision log, status and checkpoints (relative paths: to the working dir).",
    )
    loop: LoopSettings = LoopSettings()
    cgroup: CgroupSettings = CgroupSettings()
    predictor: PredictorSettings = PredictorSettings()
    thresholds: ThresholdSettings = ThresholdSettings()
    policy: PolicySettings = PolicySettings()
    cost: CostSettings = CostSettings()
    oom: OomSettings = OomSettings()
    pool: PoolSettings = PoolSettings()
    contention: ContentionSettings = ContentionSettings()
    history: HistorySettings = HistorySettings()
    sources: SourceSettings = SourceSettings()
    models: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()
    ray: RaySettings = RaySettings()
    demo: DemoSettings = DemoSettings()

    def registry_dir(self) -> Path:
        """``models.registry_dir``, or ``<data_dir>/models`` (absolute) when it is empty."""
        return Path(self.models.registry_dir or Path(self.data_dir).resolve() / "models")

    def history_uri(self) -> str:
        """``history.uri``, or ``<data_dir>/history`` (absolute) when it is empty."""
        return self.history.uri or str(Path(self.data_dir).resolve() / "history")


def reference_markdown() -> str:
    """The configuration reference as a Markdown table, generated from the fields above."""
    rows = ["| key | default | description |", "| --- | --- | --- |"]
    defaults = Settings.model_construct().model_dump(mode="json")

    def walk(model: type[BaseModel], prefix: str, values: dict[str, Any]) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.", values[name])
                continue
            desc = (info.description or "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | `{json.dumps(values[name])}` | {desc} |")

    walk(Settings, "", defaults)
    return "\n".join(rows) + "\n"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and field."""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {field}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file at ``path`` (default :data:`DEFAULT_CONFIG_PATH`, shipped with
    the package) plus env. With no ``path`` and no default file, the built-in defaults
    plus env.

    Raises :class:`ConfigError` naming the file and field on any problem.
    """
    if path is None and not DEFAULT_CONFIG_PATH.is_file():
        try:
            return Settings.model_validate(Settings(**overrides).model_dump())
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, "PRESCALE_* env")) from exc
    toml_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not toml_path.is_file():
        raise ConfigError(f"config file not found: {toml_path}")
    try:
        with toml_path.open("rb") as fh:
            tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from exc

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
            )

    try:
        loaded = _FromFile(**overrides)
        # Re-validate as the plain root so the result pickles without the local class.
        return Settings.model_validate(loaded.model_dump())
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, f"{toml_path} + PRESCALE_* env")) from exc
