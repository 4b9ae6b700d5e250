"""One source of defaults (app/core/config.py): every core config built from the default
settings equals the core type's own default, field by field. A settings default that
drifts from the core's (``recent_steps`` was 10 in the settings and 6 in EngineConfig)
fails here, naming the field."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pytest

from prescale.app.core.config import default_of
from prescale.app.core.contention import ContentionConfig
from prescale.app.core.cost import CostConfig
from prescale.app.core.engine import EngineConfig
from prescale.app.core.guards import Bounds, GuardConfig
from prescale.app.core.oom import OomConfig
from prescale.app.core.outcomes import OutcomeConfig
from prescale.app.core.policy import KINDS, PolicyConfig
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.thresholds import ThresholdConfig
from prescale.app.models.heuristic import HeuristicModel
from prescale.app.settings import Settings


def defaults() -> Settings:
    """The built-in defaults (no file, no PRESCALE_* environment)."""
    return Settings.model_construct()


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """The paths at which ``a`` and ``b`` differ (dataclasses and mappings walked)."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        return [d for f in dataclasses.fields(a)
                for d in diff(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")]
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(set(a) | set(b), key=str)
        return [d for k in keys for d in diff(a.get(k, "<absent>"), b.get(k, "<absent>"),
                                              f"{path}[{k}]")]
    same = a == b or (isinstance(a, float) and isinstance(b, float)
                      and math.isnan(a) and math.isnan(b))
    return [] if same else [f"{path}: {a!r} != {b!r}"]


def test_the_diff_names_a_drifted_field():
    """The check below can fail: a drifted default is reported with its path."""
    drifted = dataclasses.replace(EngineConfig(), recent_steps=6)
    assert diff(drifted, EngineConfig()) == [".recent_steps: 6 != 10"]
    cost = dataclasses.replace(CostConfig(), tier_idle_after_s={"cpu": 60.0})
    policy = dataclasses.replace(PolicyConfig(), cost=cost)
    assert diff(policy, PolicyConfig()) == [".cost.tier_idle_after_s[cpu]: 60.0 != 3600.0"]


@pytest.mark.parametrize("built, core", [
    (lambda s: EngineConfig.from_settings(s), EngineConfig),
    (lambda s: TrendExhaustionPredictor.from_settings(s.predictor), TrendExhaustionPredictor),
    (lambda s: PolicyConfig.from_settings(s.policy, s.cost, s.oom), PolicyConfig),
    (lambda s: GuardConfig.from_settings(s.policy), GuardConfig),
    (lambda s: CostConfig.from_settings(s.cost), CostConfig),
    (lambda s: OomConfig.from_settings(s.oom), OomConfig),
    (lambda s: OutcomeConfig.from_settings(s.thresholds, s.predictor), OutcomeConfig),
    (lambda s: ThresholdConfig.from_settings(s.thresholds), ThresholdConfig),
    (lambda s: ContentionConfig.from_settings(s.contention), ContentionConfig),
], ids=lambda x: getattr(x, "__name__", ""))
def test_settings_defaults_are_the_core_defaults(built, core):
    assert diff(built(defaults()), core()) == []


def test_every_settings_field_reaches_the_core():
    """A non-default value of each mapped settings field changes the built config (so no
    settings field is silently ignored by from_settings)."""
    s = defaults()
    base = EngineConfig.from_settings(s)
    changed = {
        "predictor": {"horizon_s": 60.0, "min_samples": 7, "recent_steps": 4,
                      "sigma_floor_fraction": 0.05, "cpu_busy_fraction": 0.8},
        "thresholds": {"per_app": {"c": 0.3}, "outcome_horizon_s": 90.0},
        "policy": {"kind": "multi_tier", "buffer_memory_bytes": 2**20, "buffer_cpu_cores": 0.5,
                   "multi_tier_methods": {"cpu": "preemptive_buffer"},
                   "multi_tier_margins": {"cpu": 0.5}, "max_step_fraction": 0.5,
                   "max_step_memory_bytes": 2**20, "max_step_cpu_cores": 0.5,
                   "tier_cooldown_s": {"cpu": 5.0}, "hold_s": 1.0, "urgent_p_fail": None,
                   "dead_band_fraction": 0.1, "safety_margin_fraction": 0.3,
                   "max_replicas": 3, "min_replicas": 2, "scale_out_cooldown_s": 1.0,
                   "app_bounds": {"web": {"max_replicas": 2}},
                   "container_bounds": {"c": {"cpu_max_cores": 2.0}}, "margin_fraction": 0.5,
                   "cooldown_s": 1.0, "memory_min_bytes": 2**20, "memory_max_bytes": 2**32,
                   "cpu_min_cores": 0.2, "cpu_max_cores": 2.0, "cpu_step_fraction": 0.1},
        "cost": {f.name: v for f, v in zip(dataclasses.fields(CostConfig), (
            False, 0.4, 7.0, 0.1, 0.5, 0.2, 7.0, 7.0, 7.0, 0.5, 7.0, 7.0, {"cpu": 7.0},
            {"cpu": 0.5}), strict=True)},
        "oom": {f.name: v for f, v in zip(dataclasses.fields(OomConfig), (
            False, 2**20, 1.5, 0.5, 7.0, 2, 7.0, 3.0), strict=True)},
        "contention": {"tenants": {"c": "t"}},
        "models": {"tier": "cpu"},
    }
    for group, fields in changed.items():
        for name, value in fields.items():
            s2 = Settings.model_validate({**s.model_dump(), group: {
                **getattr(s, group).model_dump(), name: value}})
            assert diff(EngineConfig.from_settings(s2), base), f"{group}.{name} is ignored"
    for name, value in (("risk_band", 0.3), ("defer_factor", 3.0), ("partial_grants", False)):
        c = s.contention.model_copy(update={name: value})
        assert ContentionConfig.from_settings(c) != ContentionConfig(), name
    for name, value in (("p_fail", 0.4), ("min_p_fail", 0.1), ("max_p_fail", 0.9),
                        ("sensitivity", 0.1), ("cost_false_positive", 2.0), ("cost_miss", 2.0),
                        ("window", 5)):
        t = s.thresholds.model_copy(update={name: value})
        assert ThresholdConfig.from_settings(t) != ThresholdConfig(), name


def test_bounds_and_policy_kinds_come_from_one_place():
    s = Settings(policy={"app_bounds": {"web": {"memory_max_bytes": "512MiB"}}})
    g = GuardConfig.from_settings(s.policy)
    assert g.app_bounds == {"web": Bounds(max_limit={"memory": 512.0 * 2**20})}
    assert Settings.model_fields["policy"].annotation.model_fields["kind"].description == (
        "Scale-up policy: preemptive_buffer, proportional or multi_tier.")
    for kind in KINDS:
        assert Settings(policy={"kind": kind}).policy.kind == kind
    with pytest.raises(ValueError, match="policy.kind"):
        Settings(policy={"kind": "reactive"})


def test_the_heuristic_model_defaults_are_the_predictor_defaults():
    p = HeuristicModel.DEFAULTS
    assert TrendExhaustionPredictor(**{k: v for k, v in p.items() if k != "tier"}) == \
        TrendExhaustionPredictor()


def test_default_of_worked_example():
    assert default_of(CostConfig, "idle_after_s") == 259_200.0
    a, b = default_of(CostConfig, "tier_idle_after_s"), default_of(CostConfig,
                                                                   "tier_idle_after_s")
    assert a == {"cpu": 3600.0} and a is not b
    with pytest.raises(ValueError, match="CostConfig has no field 'idle_s'"):
        default_of(CostConfig, "idle_s")
    with pytest.raises(ValueError, match="ScalingAction.action_id has no default"):
        from prescale.app.core.actions import ScalingAction
        default_of(ScalingAction, "action_id")


def test_the_default_peak_tracker_spans_the_default_long_peak():
    from prescale.app.core.peaks import PeakTracker

    p = PeakTracker()
    assert p.bucket_s * p.buckets == CostConfig().long_peak_s == 7 * 86_400
