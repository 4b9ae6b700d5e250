"""What the engine proposes and what happened to it: decisions, actions, verdicts."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

from prescale.app.core.sample import Tier

_T = TypeVar("_T")


def _slot_init(cls: type[_T]) -> type[_T]:
    """Give the frozen slotted dataclass ``cls`` an ``__init__`` that sets each slot
    through its own descriptor (``cls.<field>.__set__(self, value)``) instead of
    ``object.__setattr__(self, "<field>", value)``, which looks the name up each time:
    the same signature and defaults, the same object, built in about half the time
    (tens of thousands are built per tick at 10,000 containers). Made like the
    dataclass's own ``__init__``, from source. For dataclasses whose fields have no
    ``default_factory`` and which have no ``__post_init__``."""
    assert not hasattr(cls, "__post_init__"), cls
    ns: dict[str, Any] = {}
    params, body = [], []
    for f in fields(cls):
        assert f.default_factory is MISSING, f
        if f.default is MISSING:
            params.append(f.name)
        else:
            ns[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        ns[f"_set_{f.name}"] = getattr(cls, f.name).__set__
        body.append(f"    _set_{f.name}(self, {f.name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), ns)  # noqa: S102
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"Set every field of {cls.__name__} (:func:`_slot_init`)."
    cls.__init__ = init  # type: ignore[misc]
    return cls


class ActionKind(StrEnum):
    RESIZE = "resize"  # vertical: change a limit (bytes / cores); up or down
    SCALE_OUT = "scale_out"  # horizontal: change the replica count (old/new_limit = replicas)


@_slot_init
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


@_slot_init
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
