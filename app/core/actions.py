"""What the engine proposes and what happened to it: decisions, actions, verdicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from prescale.app.core.sample import Tier


class ActionKind(StrEnum):
    RESIZE = "resize"  # vertical: change a limit (bytes / cores); up or down
    SCALE_OUT = "scale_out"  # horizontal: change the replica count (old/new_limit = replicas)


@dataclass(frozen=True, slots=True)
class ScalingAction:
    """Change one container's limit of one tier from ``old_limit`` to ``new_limit``.

    Limits are bytes for memory and cores for CPU (replicas for ``SCALE_OUT``).
    ``action_id`` is unique and deterministic (container, tier and the tick's
    ``now_s``), so a retried action is recognised and never applied twice.
    ``preemptive`` marks a scale-up made on a prediction (served first by the pool).
    ``cause`` says why it was proposed: ``"forecast"`` (a policy, on the prediction),
    ``"oom"`` (the answer to an OOM kill: :mod:`app.core.oom`), ``"idle"`` (a cost
    scale-down), ``"reclaim"`` (shrunk under contention), ``"baseline"`` (an
    evaluation baseline).
    """

    action_id: str
    now_s: float
    container: str
    tier: Tier
    old_limit: float
    new_limit: float
    p_fail: float
    threshold: float
    time_to_limit_s: float
    forecast: float
    reason: str
    kind: ActionKind = ActionKind.RESIZE
    app: str = ""
    preemptive: bool = True
    cause: str = "forecast"

    @property
    def delta(self) -> float:
        return self.new_limit - self.old_limit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def action_id_for(container: str, tier: Tier, now_s: float) -> str:
    """``"leaker/memory@1700000000123"``: container, tier and the tick time in ms."""
    return f"{container}/{tier}@{round(now_s * 1000)}"  # a StrEnum formats as its value


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's view of one container and tier in one tick, with or without action."""

    now_s: float
    container: str
    tier: Tier
    p_fail: float
    threshold: float
    time_to_limit_s: float
    forecast: float
    limit: float
    action: ScalingAction | None
    reason: str


class Verdict(StrEnum):
    GRANTED = "granted"
    DEFERRED = "deferred"  # not now (contention); may be granted in a later tick
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class PoolVerdict:
    action_id: str
    verdict: Verdict
    reason: str
    #: a GRANTED increase granted only in part: the limit granted (None: as asked)
    granted_limit: float | None = None


class ResultStatus(StrEnum):
    APPLIED = "applied"  # the limit was written and read back
    DRY_RUN = "dry_run"  # recommend mode: decided and logged, nothing touched
    DENIED = "denied"  # the pool refused it
    DEFERRED = "deferred"  # the coordinator put it off (contention)
    FAILED = "failed"  # the actuator tried and the kernel refused or the cgroup is gone


@dataclass(frozen=True, slots=True)
class ActionResult:
    action_id: str
    container: str
    tier: Tier
    status: ResultStatus
    old_limit: float
    new_limit: float  # what the limit really is afterwards
    reason: str
