"""Pre-emptive buffer policy: raise a limit so the forecast usage fits with a margin.

A pure function of one tick's snapshot (:class:`PolicyInput`), its settings and its
own state (:class:`PolicyState`, the time of each container's last action per
tier, for the cooldown). It reads no clock and touches nothing.

Rules, per container and tier (memory in bytes, CPU in cores):

1. Act only when ``p_fail >= threshold`` and the limit is finite.
2. Target: ``new = max(forecast, limit) × (1 + margin_fraction)``; for CPU at least
   ``limit × (1 + cpu_step_fraction)`` (a throttled container's demand above its
   quota cannot be seen, so it grows by a step).
3. Clamp to ``[min, max]`` of the tier; memory is rounded up to a 4 KiB page,
   CPU to 0.01 core.
4. No action if the clamped target is not above the current limit (at the max
   bound) or if the last action on this container and tier was less than
   ``cooldown_s`` ago.

Worked example (memory): limit 128 MiB, forecast at the horizon 160 MiB,
p_fail 0.98 ≥ 0.5, margin 0.25 → new = 160 × 1.25 = 200 MiB (within [32 MiB, 2 GiB]).
Worked example (CPU): quota 0.25 cores, throttled, forecast 0.25, margin 0.25,
step 0.5 → new = max(0.25 × 1.25, 0.25 × 1.5) = 0.375 → 0.38 cores.

The policy never lowers a limit; scaling idle containers down is a separate
policy (issue "The decision core").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from app.core.actions import Decision, ScalingAction, action_id_for
from app.core.predictor import Prediction
from app.core.sample import Tier
from app.settings import PolicySettings

PAGE_BYTES = 4096


@dataclass(frozen=True)
class PolicyInput:
    now_s: float
    containers: list[str]
    prediction: Prediction
    thresholds: np.ndarray  # [N] p_fail threshold per container


@dataclass(frozen=True)
class PolicyState:
    """Last action time per ``"container/tier"``; JSON-serialisable via ``last_action_s``."""

    last_action_s: dict[str, float] = field(default_factory=dict)


def _bounds(tier: Tier, cfg: PolicySettings) -> tuple[float, float]:
    if tier is Tier.MEMORY:
        return float(cfg.memory_min_bytes), float(cfg.memory_max_bytes)
    return cfg.cpu_min_cores, cfg.cpu_max_cores


def _round(tier: Tier, value: float) -> float:
    if tier is Tier.MEMORY:
        return float(math.ceil(value / PAGE_BYTES) * PAGE_BYTES)
    return math.ceil(value * 100 - 1e-9) / 100


def target_limit(tier: Tier, limit: float, forecast: float, cfg: PolicySettings) -> float:
    """Rules 2–3 of the module docstring: the limit the policy would set (unclamped for
    the current limit; clamped to the tier's bounds)."""
    base = max(forecast if math.isfinite(forecast) else limit, limit)
    new = base * (1 + cfg.margin_fraction)
    if tier is Tier.CPU:
        new = max(new, limit * (1 + cfg.cpu_step_fraction))
    lo, hi = _bounds(tier, cfg)
    return min(max(_round(tier, new), lo), hi)


def preemptive_buffer(
    inp: PolicyInput, cfg: PolicySettings, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """Decide every container and tier of one tick. Returns decisions and the new state."""
    decisions: list[Decision] = []
    last = dict(state.last_action_s)
    for tier, tp in inp.prediction.tiers.items():
        for i, name in enumerate(inp.containers):
            p = float(tp.p_fail[i])
            thr = float(inp.thresholds[i])
            limit = float(tp.limit[i])
            forecast = float(tp.forecast[i])
            ttl = float(tp.time_to_limit_s[i])
            key = f"{name}/{tier.value}"
            action = None
            if not math.isfinite(limit):
                reason = "no limit set: nothing to protect"
            elif p < thr:
                reason = f"p_fail {p:.2f} < threshold {thr:.2f}"
            elif key in last and inp.now_s - last[key] < cfg.cooldown_s:
                left = cfg.cooldown_s - (inp.now_s - last[key])
                reason = f"p_fail {p:.2f} >= {thr:.2f} but in cooldown ({left:.1f} s left)"
            else:
                new = target_limit(tier, limit, forecast, cfg)
                if new <= limit:
                    reason = f"p_fail {p:.2f} >= {thr:.2f} but limit is at the policy maximum"
                else:
                    reason = (
                        f"p_fail {p:.2f} >= {thr:.2f}: forecast {forecast:.4g} at horizon "
                        f"{inp.prediction.horizon_s:g} s vs limit {limit:.4g}; "
                        f"buffer {cfg.margin_fraction:.0%}"
                    )
                    action = ScalingAction(
                        action_id=action_id_for(name, tier, inp.now_s),
                        now_s=inp.now_s,
                        container=name,
                        tier=tier,
                        old_limit=limit,
                        new_limit=new,
                        p_fail=p,
                        threshold=thr,
                        time_to_limit_s=ttl,
                        forecast=forecast,
                        reason=reason,
                    )
                    last[key] = inp.now_s
            decisions.append(
                Decision(inp.now_s, name, tier, p, thr, ttl, forecast, limit, action, reason)
            )
    return decisions, PolicyState(last)
