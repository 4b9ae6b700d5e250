"""The recommend-mode actuator: records each action, touches nothing, returns DRY_RUN."""

from __future__ import annotations

from prescale.app.actuators.base import IdempotentActuator, fmt_limit, make_result
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction


class DryRunActuator(IdempotentActuator):
    """Keeps the actions it was given in :attr:`recorded` (each action id once).

    The result's ``new_limit`` equals ``old_limit`` (nothing changed); the limit the
    engine recommends is in the reason. Example: memory 128 MiB → 160 MiB gives
    ``DRY_RUN``, old = new = 134217728, reason ``"recommend mode: nothing touched
    (would set memory 134217728 → 167772160)"``.
    """

    kind = "dry_run"

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[ScalingAction] = []

    def _apply(self, action: ScalingAction) -> ActionResult:
        self.recorded.append(action)
        what = "replicas" if action.kind is ActionKind.SCALE_OUT else action.tier.value
        return make_result(
            action, ResultStatus.DRY_RUN, action.old_limit, action.old_limit,
            f"recommend mode: nothing touched (would set {what} "
            f"{fmt_limit(action.old_limit)} → {fmt_limit(action.new_limit)})",
        )


__all__ = ["DryRunActuator"]
