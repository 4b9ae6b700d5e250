"""What every baseline of ``prescale evaluate`` shares: the observation it sees, the
bounds it keeps to, the resize ask it returns and the :class:`Baseline` interface.

Every baseline sees the same :class:`Observation` as prescale (usage is what a kernel
would report: capped at the limit) and returns :class:`~app.core.actions.ScalingAction`
asks that go through the same pool and contention code; it never reads the demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prescale.app.core.actions import ActionResult, ScalingAction, action_id_for
from prescale.app.core.policy_types import round_up
from prescale.app.core.sample import Event, Tier

MIB = 2.0**20


@dataclass
class Observation:
    """What every policy sees at a tick (per replica; usage capped at the limit)."""

    now_s: float
    step_s: float
    names: list[str]
    apps: list[str]
    window: np.ndarray  # [N, W, M] from the ring buffer
    events: list[Event]  # since the last tick
    memory_usage_bytes: np.ndarray  # [N] (0 while the container is down)
    cpu_usage_cores: np.ndarray
    memory_limit_bytes: np.ndarray
    cpu_quota_cores: np.ndarray
    replicas: np.ndarray
    up: np.ndarray  # [N] bool: running
    age_s: np.ndarray  # [N] seconds since the container (re)started
    replicas_ready: np.ndarray | None = None  # [N] replicas serving (None: all of them)


@dataclass(frozen=True)
class Bounds:
    memory_min_bytes: float = 32 * MIB
    memory_max_bytes: float = 16 * 2.0**30
    cpu_min_cores: float = 0.1
    cpu_max_cores: float = 16.0
    max_replicas: int = 10

    def clamp(self, tier: Tier, v: float) -> float:
        lo, hi = ((self.memory_min_bytes, self.memory_max_bytes) if tier is Tier.MEMORY
                  else (self.cpu_min_cores, self.cpu_max_cores))
        return min(max(round_up(tier, v), lo), hi)


def resize(now_s: float, name: str, app: str, tier: Tier, old: float, new: float,
           reason: str, p_fail: float = 1.0) -> ScalingAction:
    """A non-pre-emptive resize ask of a baseline."""
    return ScalingAction(
        action_id=action_id_for(name, tier, now_s), now_s=now_s, container=name, tier=tier,
        old_limit=float(old), new_limit=float(new), p_fail=p_fail, threshold=0.0,
        time_to_limit_s=math.nan, forecast=math.nan, reason=reason, app=app,
        preemptive=False, cause="baseline")


class Baseline:
    name = "baseline"

    def decide(self, obs: Observation) -> list[ScalingAction]:
        raise NotImplementedError

    def settle(self, obs: Observation, results: list[tuple[ScalingAction, ActionResult]]
               ) -> None:
        return None
