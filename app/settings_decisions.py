"""The settings groups that configure decisions: the loop's pace, the predictor, the
thresholds, the scale-up policy and its bounds, cost (scale-down), the OOM answer, the
host pool and contention between containers.

Their defaults are not written here: each ``Field`` default reads the core config field
it feeds (:func:`default_of`), so there is one source of defaults, the pure core's config
types; the core builds its configs from these settings with one ``from_settings`` per type
(``EngineConfig.from_settings`` composes them). Why that way round: ``app/core/config.py``.
(``loop`` and ``pool`` are the exception: their defaults are written here.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, ByteSize, Field, model_validator

from prescale.app.core.config import default_of
from prescale.app.core.contention import ContentionConfig
from prescale.app.core.cost import CostConfig
from prescale.app.core.engine import EngineConfig
from prescale.app.core.guards import GuardConfig
from prescale.app.core.oom import OomConfig
from prescale.app.core.policy import KINDS, SIZING_METHODS, PolicyConfig
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.thresholds import ThresholdConfig
from prescale.app.settings_base import Bytes, Fraction, Group, KubeCores, PositiveSeconds


def _tier_default(cls: type, name: str, tier: str) -> Any:
    """``default_of(cls, name)[tier]`` (None when the tier has no entry)."""
    return default_of(cls, name).get(tier)


def _bytes_default(value: float | None) -> ByteSize | None:
    return None if value is None else ByteSize(int(value))


class LoopSettings(Group):
    interval_s: PositiveSeconds = Field(
        1.0, le=3600, description="Seconds between two ticks of the control loop."
    )
    window_steps: int = Field(
        60, ge=3, le=100_000, description="Samples kept per container in the monitor's ring buffer."
    )
    collect_timeout_s: PositiveSeconds = Field(
        2.0,
        le=600,
        description="How long a tick waits for each monitor's window; the "
        "containers of a slower (or dead) monitor are 'unknown' this tick, the rest go on.",
    )


class PredictorSettings(Group):
    horizon_s: PositiveSeconds = Field(
        default_of(TrendExhaustionPredictor, "horizon_s"),
        le=86_400,
        description="Predict failures this many seconds ahead.",
    )
    min_samples: int = Field(
        default_of(TrendExhaustionPredictor, "min_samples"),
        ge=2,
        le=10_000,
        description="Samples a container needs before it is predicted.",
    )
    recent_steps: int = Field(
        default_of(EngineConfig, "recent_steps"),
        ge=2,
        le=10_000,
        description="Steps in the 'recent' part of the window (recent slope).",
    )
    sigma_floor_fraction: Fraction = Field(
        default_of(TrendExhaustionPredictor, "sigma_floor_fraction"),
        description="Floor of the forecast's standard deviation, as a fraction of the limit.",
    )
    cpu_busy_fraction: Fraction = Field(
        default_of(TrendExhaustionPredictor, "cpu_busy_fraction"),
        description="CPU usage at this fraction of the quota counts as starved.",
    )


class ThresholdSettings(Group):
    p_fail: Fraction = Field(
        default_of(ThresholdConfig, "default_p_fail"),
        description="Act when the failure probability within the horizon reaches this.",
    )
    per_app: dict[str, Fraction] = Field(
        default_factory=dict, description="Per-container overrides of p_fail, by container name."
    )
    min_p_fail: Fraction = Field(
        default_of(ThresholdConfig, "default_min"),
        description="Lowest threshold learning may reach.",
    )
    max_p_fail: Fraction = Field(
        default_of(ThresholdConfig, "default_max"),
        description="Highest threshold learning may reach.",
    )
    sensitivity: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default_of(ThresholdConfig, "default_sensitivity"),
        description="Threshold step per judged outcome of the costlier kind (0: fixed).",
    )
    cost_false_positive: Annotated[float, Field(gt=0, le=1000)] = Field(
        default_of(ThresholdConfig, "cost_false_positive"),
        description="Relative cost of an unneeded scale-up.",
    )
    cost_miss: Annotated[float, Field(gt=0, le=1000)] = Field(
        default_of(ThresholdConfig, "cost_miss"),
        description="Relative cost of a failure nobody scaled up for.",
    )
    window: int = Field(
        default_of(ThresholdConfig, "window"),
        ge=1,
        le=100_000,
        description="Judged outcomes per app and tier kept for the rates.",
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


class BoundsOverride(Group):
    memory_min_bytes: Bytes | None = Field(None, description="Lowest memory limit.")
    memory_max_bytes: Bytes | None = Field(None, description="Highest memory limit.")
    cpu_min_cores: Annotated[float, Field(ge=0, le=1024), KubeCores] | None = Field(
        None, description="Lowest CPU quota (cores, or 500m)."
    )
    cpu_max_cores: Annotated[float, Field(gt=0, le=4096), KubeCores] | None = Field(
        None, description="Highest CPU quota (cores, or 500m)."
    )
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="Most replicas of a replicated container."
    )
    min_replicas: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="Fewest replicas an idle replicated container is scaled in to."
    )

    @model_validator(mode="after")
    def _replicas_in_order(self) -> Self:
        if (self.min_replicas is not None and self.max_replicas is not None
                and self.min_replicas > self.max_replicas):
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas "
                             f"{self.max_replicas}")
        return self


class PolicySettings(Group):
    kind: str = Field(
        default_of(PolicyConfig, "kind"),
        pattern=f"^({'|'.join(KINDS)})$",
        description=f"Scale-up policy: {', '.join(KINDS[:-1])} or {KINDS[-1]}.",
    )
    buffer_memory_bytes: Bytes = Field(
        _bytes_default(_tier_default(PolicyConfig, "buffer_abs", "memory")),
        description="preemptive_buffer: at least this many bytes above the forecast.",
    )
    buffer_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        _tier_default(PolicyConfig, "buffer_abs", "cpu"),
        description="preemptive_buffer: at least this many cores above the forecast.",
    )
    multi_tier_methods: dict[str, Literal[SIZING_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: dict(default_of(PolicyConfig, "multi_tier_methods")),
        description="multi_tier: sizing rule per tier.",
    )
    multi_tier_margins: dict[str, Annotated[float, Field(ge=0, le=10)]] = Field(
        default_factory=lambda: dict(default_of(PolicyConfig, "multi_tier_margins")),
        description="multi_tier: margin per tier (default margin_fraction).",
    )
    max_step_fraction: Annotated[float, Field(gt=0, le=100)] = Field(
        default_of(GuardConfig, "max_step_fraction"),
        description="One action changes a limit by at most this fraction of it.",
    )
    max_step_memory_bytes: Bytes | None = Field(
        _bytes_default(_tier_default(GuardConfig, "max_step_abs", "memory")),
        description="...and by at most this many bytes (empty: no cap).",
    )
    max_step_cpu_cores: Annotated[float, Field(gt=0, le=1024)] | None = Field(
        _tier_default(GuardConfig, "max_step_abs", "cpu"),
        description="...and by at most this many cores (empty: no cap).",
    )
    tier_cooldown_s: dict[str, Annotated[float, Field(ge=0, le=86_400)]] = Field(
        default_factory=lambda: dict(default_of(GuardConfig, "tier_cooldown_s")),
        description="Per-tier cooldown overrides (default cooldown_s).",
    )
    hold_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "hold_s"),
        description="No action reverses the previous one's direction within this time.",
    )
    urgent_p_fail: Fraction | None = Field(
        default_of(GuardConfig, "urgent_p_fail"),
        description="A scale-up at this p_fail or above is not held back by hold_s.",
    )
    dead_band_fraction: Fraction = Field(
        default_of(GuardConfig, "dead_band_fraction"),
        description="Changes smaller than this fraction of the limit are not made.",
    )
    safety_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(GuardConfig, "safety_margin_fraction"),
        description="Memory is never set below current usage × (1 + this).",
    )
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default_of(GuardConfig, "max_replicas"),
        description="A replicated container that cannot grow scales out up to this many.",
    )
    min_replicas: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default_of(GuardConfig, "min_replicas"),
        description="Idle replicas are scaled in down to this many, never fewer.",
    )
    scale_out_cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "scale_out_cooldown_s"),
        description="Seconds between two scale-outs of the same container.",
    )
    app_bounds: dict[str, BoundsOverride] = Field(
        default_factory=dict, description="Per-app min/max limits and max_replicas."
    )
    container_bounds: dict[str, BoundsOverride] = Field(
        default_factory=dict, description="Per-container overrides (win over app_bounds)."
    )
    margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(PolicyConfig, "margin_fraction"),
        description="New limit = forecast usage at the horizon × (1 + margin).",
    )
    cooldown_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(GuardConfig, "cooldown_s"),
        description="Seconds between two actions on the same container and tier.",
    )
    memory_min_bytes: Bytes = Field(
        _bytes_default(_tier_default(GuardConfig, "min_limit", "memory")),
        description="Lowest memory limit.",
    )
    memory_max_bytes: Bytes = Field(
        _bytes_default(_tier_default(GuardConfig, "max_limit", "memory")),
        description="Highest memory limit.",
    )
    cpu_min_cores: Annotated[float, Field(gt=0, le=1024)] = Field(
        _tier_default(GuardConfig, "min_limit", "cpu"), description="Lowest quota."
    )
    cpu_max_cores: Annotated[float, Field(gt=0, le=1024)] = Field(
        _tier_default(GuardConfig, "max_limit", "cpu"), description="Highest quota."
    )
    cpu_step_fraction: Annotated[float, Field(gt=0, le=10)] = Field(
        default_of(PolicyConfig, "cpu_step_fraction"),
        description="A throttled container's quota grows by this fraction per action.",
    )

    @model_validator(mode="after")
    def _ordered_bounds(self) -> Self:
        if self.memory_min_bytes > self.memory_max_bytes:
            raise ValueError("policy.memory_min_bytes is above policy.memory_max_bytes")
        if self.cpu_min_cores > self.cpu_max_cores:
            raise ValueError("policy.cpu_min_cores is above policy.cpu_max_cores")
        return self


class CostSettings(Group):
    enabled: bool = Field(
        default_of(CostConfig, "enabled"), description="Scale idle containers down (cost saving)."
    )
    idle_usage_fraction: Fraction = Field(
        default_of(CostConfig, "idle_usage_fraction"),
        description="A tier is low while usage < this fraction of its limit.",
    )
    idle_after_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "idle_after_s"),
        description="Low (and low p_fail) for this long = idle: 3 days, so that a "
        "container's daily peaks are seen before it is ever scaled down (docs/BENCHMARKS.md: "
        "kills against GiB·h).",
    )
    idle_p_fail_max: Fraction = Field(
        default_of(CostConfig, "idle_p_fail_max"),
        description="Idle only while p_fail is at most this.",
    )
    peak_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(CostConfig, "peak_margin_fraction"),
        description="An idle scale-down never goes below the long peak × (1 + this): "
        "room for the peak to double.",
    )
    step_down_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        default_of(CostConfig, "step_down_fraction"),
        description="One scale-down lowers a limit by at most this fraction.",
    )
    step_interval_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(CostConfig, "step_interval_s"),
        description="Seconds between two scale-downs of the same container and tier.",
    )
    reclaim_margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(CostConfig, "reclaim_margin_fraction"),
        description="Under contention an idle tier may be shrunk to its long peak × (1 "
        "+ this): thinner than peak_margin_fraction, because another container needs the "
        "room now.",
    )
    tier_idle_after_s: dict[
        Literal["memory", "cpu"], Annotated[float, Field(ge=0, le=2_592_000)]
    ] = Field(
        default_factory=lambda: default_of(CostConfig, "tier_idle_after_s"),
        description="Per-tier idle_after_s: a CPU "
        "quota set too low throttles, a memory limit set too low kills, so CPU may be "
        "scaled down sooner.",
    )
    tier_peak_margin_fraction: dict[
        Literal["memory", "cpu"], Annotated[float, Field(ge=0, le=10)]
    ] = Field(
        default_factory=lambda: default_of(CostConfig, "tier_peak_margin_fraction"),
        description="Per-tier peak_margin_fraction.",
    )
    revert_after_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "revert_after_s"),
        description="A pre-emptive scale-up that usage never reached is reverted "
        "(to the limit before it, or the long peak × (1 + reclaim margin) if higher) once it "
        "is this old and p_fail is at most idle_p_fail_max; held while the predictor's "
        "forecast × (1 + reclaim margin) is above that target.",
    )
    scale_in_after_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "scale_in_after_s"),
        description="The replicas of a replicated container idle this long are scaled in, "
        "one per step_interval_s, never below policy.min_replicas nor below what the long "
        "peak of their total usage needs (app/core/scale_in.py).",
    )
    reclaim_after_s: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default_of(CostConfig, "reclaim_after_s"),
        description="Under contention, a tier low (and low p_fail) for this long may "
        "be shrunk at once to its long peak × (1 + reclaim margin) for others' scale-ups.",
    )
    long_peak_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(CostConfig, "long_peak_s"),
        validation_alias=AliasChoices("long_peak_s", "reclaim_peak_s"),
        description="The long peak: the highest usage in this long (6 buckets; 0 = the "
        "feature window only). An idle scale-down and a reclaim never go below it × (1 + "
        "peak margin). Old name: reclaim_peak_s.",
    )


class OomSettings(Group):
    """The answer to an OOM kill (app/core/oom.py)."""

    enabled: bool = Field(
        default_of(OomConfig, "enabled"), description="Bump a container's memory after an OOM kill."
    )
    min_bump_bytes: Bytes = Field(
        _bytes_default(default_of(OomConfig, "min_bump_bytes")),
        description="A bump adds at least this (the VPA's OOMMinBumpUp).",
    )
    bump_ratio: Annotated[float, Field(ge=1, le=10)] = Field(
        default_of(OomConfig, "bump_ratio"),
        description="A bump is at least the limit × this^k, k = kills within the loop "
        "window (the VPA's OOMBumpUpRatio, compounding).",
    )
    margin_fraction: Annotated[float, Field(ge=0, le=10)] = Field(
        default_of(OomConfig, "margin_fraction"),
        description="A bump is at least the window's forecast × (1 + this).",
    )
    stabilise_s: Annotated[float, Field(ge=0, le=2_592_000)] = Field(
        default_of(OomConfig, "stabilise_s"),
        description="The limit a bump reached is a floor for this long: no "
        "scale-down or reclaim goes below it.",
    )
    loop_kills: Annotated[int, Field(ge=1, le=1000)] = Field(
        default_of(OomConfig, "loop_kills"),
        description="This many kills within loop_window_s is a kill loop: a larger step, "
        "a scale-out if replicated, the operator flagged.",
    )
    loop_window_s: Annotated[float, Field(gt=0, le=2_592_000)] = Field(
        default_of(OomConfig, "loop_window_s"), description="The kill-loop window."
    )
    loop_ratio: Annotated[float, Field(ge=1, le=100)] = Field(
        default_of(OomConfig, "loop_ratio"),
        description="In a kill loop a bump is at least the limit × this.",
    )


class PoolSettings(Group):
    reserve_memory_bytes: Bytes = Field(
        ByteSize(2 * 2**30), description="Host memory never granted to containers."
    )
    reserve_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        0.5, description="Host CPU never granted to containers."
    )
    capacity_memory_bytes: Bytes | None = Field(
        None, description="Override the host's memory total (default: read from the host)."
    )
    capacity_cpu_cores: Annotated[float, Field(gt=0, le=4096)] | None = Field(
        None, description="Override the host's CPU count (default: read from the host)."
    )
    warm_memory_bytes: Bytes = Field(
        ByteSize(0), description="Memory held back for pre-emptive scale-ups only."
    )
    warm_cpu_cores: Annotated[float, Field(ge=0, le=1024)] = Field(
        0.0, description="CPU held back for pre-emptive scale-ups only."
    )


class ContentionSettings(Group):
    risk_band: Annotated[float, Field(gt=0, le=10)] = Field(
        default_of(ContentionConfig, "risk_band"),
        description="Width of a risk band (risk = p_fail × app weight); DRF decides within.",
    )
    defer_factor: Annotated[float, Field(gt=0, le=100)] = Field(
        default_of(ContentionConfig, "defer_factor"),
        description="Deferred (not denied) if need ≤ factor × (free + others' reservations).",
    )
    app_weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Risk weight per app (default 1)."
    )
    tenants: dict[str, str] = Field(
        default_factory=dict,
        description="Container (or app) → tenant (owner): a "
        "container's own entry wins over its workload's tenant, which wins over its "
        "app's (app/core/tenants.py).",
    )
    tenant_weights: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="DRF weight per tenant (default 1)."
    )
    partial_grants: bool = Field(
        default_of(ContentionConfig, "partial_grants"),
        description="Grant an increase in part (what is free) when that still covers "
        "the container's forecast.",
    )
