"""The contract every actuator keeps, and the idempotency they share.

An actuator turns one granted :class:`~app.core.actions.ScalingAction` into a change
of the world (a cgroup limit, a Ray placement group, a Serve deployment) and reports
what really changed, read back after the change, as an
:class:`~app.core.actions.ActionResult`:

* ``APPLIED``: the change was made and read back; ``new_limit`` is the read-back value.
* ``DRY_RUN``: recommend mode; nothing was touched (``new_limit == old_limit``).
* ``DENIED``: the actuator refused (e.g. a Serve deployment the operator did not list);
  nothing was touched. Never retried.
* ``FAILED``: it tried and the change did not happen (or only partly, said in
  ``reason``); ``new_limit`` is what was read back afterwards, ``nan`` if unreadable.

Transient trouble (a Ray call that timed out, a controller that restarted) may raise:
use actuators through :class:`~app.actuators.retry.RetryingActuator`, which retries
and, when it gives up, turns the last error into a ``FAILED`` result.

Bad input (an action that can never be applied: a non-finite limit, a fractional
replica count, a kind the actuator does not handle) raises
:class:`InvalidActionError` (a ``ValueError``) before anything is touched; it is never
retried.

Idempotency by ``action_id``
----------------------------
:class:`IdempotentActuator` remembers every result that is not ``FAILED``: applying
the same action again returns the first result object without acting. A ``FAILED``
result is not remembered, so a retry of the same action (see
:mod:`app.actuators.retry`) acts again; actuators are written so that acting again
on a half-done change converges (they read the current state first). Applying a
*different* action under an id already used raises :class:`InvalidActionError`.
At most ``remembered`` ids are kept (oldest forgotten first). Calls to one actuator
are serialised by a lock, so two threads never move the same workload at once.
"""

from __future__ import annotations

import math
import numbers
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier


class InvalidActionError(ValueError):
    """An action that can never be applied; raised before anything is touched."""


@runtime_checkable
class Actuator(Protocol):
    #: short name of the actuator kind, e.g. "cgroup", "ray_placement_group", "serve".
    kind: str

    def apply(self, action: ScalingAction) -> ActionResult:
        """Apply ``action`` once (by ``action_id``); report what really changed."""
        ...


def check_action(action: ScalingAction) -> None:
    """Checks what every actuator needs; raises :class:`InvalidActionError`.

    * ``action_id`` is a non-empty string;
    * ``new_limit`` is a finite number; for ``RESIZE`` it is positive; for
      ``SCALE_OUT`` it is a whole number of replicas ≥ 1 (``2.0`` is fine, ``2.5`` is not).
    """
    if not isinstance(action, ScalingAction):
        raise InvalidActionError(f"expected a ScalingAction, got {type(action).__name__}")
    if not isinstance(action.action_id, str) or not action.action_id:
        raise InvalidActionError(f"action_id must be a non-empty string, got {action.action_id!r}")
    value = action.new_limit
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidActionError(
            f"action {action.action_id}: new_limit must be a finite number, got {value!r}"
        )
    if action.kind is ActionKind.SCALE_OUT:
        if value != int(value) or value < 1:
            raise InvalidActionError(
                f"action {action.action_id}: new_limit of a scale_out is a replica count, "
                f"a whole number ≥ 1, got {value!r}"
            )
    elif value <= 0:
        raise InvalidActionError(
            f"action {action.action_id}: new_limit of a resize must be positive, got {value!r}"
        )


def check_tier_resize(action: ScalingAction, tier: Tier, actuator: str, thing: str) -> None:
    """An actuator that only resizes ``tier`` refuses anything else before acting
    (:class:`InvalidActionError`). Example: ``check_tier_resize(a, Tier.DISK, "a volume
    actuator", "a volume")`` for a memory resize → "action a1: a volume actuator resizes
    only the disk tier, not memory"; for a scale-out of the disk → "action a1: a volume
    cannot scale_out (only resize)"."""
    if action.tier is not tier:
        raise InvalidActionError(
            f"action {action.action_id}: {actuator} resizes only the {tier.value} tier, "
            f"not {getattr(action.tier, 'value', action.tier)}")
    if action.kind is not ActionKind.RESIZE:
        raise InvalidActionError(
            f"action {action.action_id}: {thing} cannot "
            f"{getattr(action.kind, 'value', action.kind)} (only resize)")


def fmt_limit(value: float) -> str:
    """A limit as text: whole numbers exactly (``134217728``), others to 6 digits
    (``0.25``), ``nan``/``inf`` as such."""
    if isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def make_result(
    action: ScalingAction, status: ResultStatus, old_limit: float, new_limit: float, reason: str
) -> ActionResult:
    """An :class:`ActionResult` for ``action`` (id, container and tier copied over)."""
    return ActionResult(
        action.action_id, action.container, action.tier, status,
        float(old_limit), float(new_limit), reason,
    )


class IdempotentActuator(ABC):
    """Base of the actuators here: validation, idempotency by ``action_id``, a lock.

    Subclasses implement :meth:`_apply`, which may assume ``check_action`` passed.
    """

    kind: str = "abstract"
    remembered: int = 10_000

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._done: OrderedDict[str, tuple[ScalingAction, ActionResult]] = OrderedDict()
        #: how many times :meth:`_apply` really ran (a remembered id does not count)
        self.acted = 0

    def apply(self, action: ScalingAction) -> ActionResult:
        check_action(action)
        with self._lock:
            done = self._done.get(action.action_id)
            if done is not None:
                first_action, first_result = done
                if first_action != action:
                    raise InvalidActionError(
                        f"action id {action.action_id!r} was already applied to a different "
                        f"action ({first_action.container} {first_action.tier.value} "
                        f"→ {first_action.new_limit}); ids must be unique"
                    )
                return first_result
            self.acted += 1
            result = self._apply(action)
            if result.action_id != action.action_id:
                raise AssertionError(
                    f"{type(self).__name__} returned the result of {result.action_id!r} "
                    f"for action {action.action_id!r}"
                )
            if result.status is not ResultStatus.FAILED:
                self._done[action.action_id] = (action, result)
                while len(self._done) > self.remembered:
                    self._done.popitem(last=False)
            return result

    def result_for(self, action_id: str) -> ActionResult | None:
        """The remembered result of ``action_id``, if any."""
        with self._lock:
            done = self._done.get(action_id)
            return None if done is None else done[1]

    @abstractmethod
    def _apply(self, action: ScalingAction) -> ActionResult:
        """Act once and read back. Raise only for bad input or transient trouble."""


__all__ = [
    "Actuator",
    "IdempotentActuator",
    "InvalidActionError",
    "check_action",
    "fmt_limit",
    "make_result",
]
