"""What became of a previous run's in-flight actions (:func:`reconcile`).

A run killed outright mid-tick (``kill -9`` of ``prescale up`` and its Ray) leaves
``inflight.json``: the actions it was applying, written before the first was applied.
Its actuators' memory of applied action ids died with it, so re-sending them is not
safe (they may be minutes old). Instead the next run compares each action with the
limit the kernel holds now, as its first tick observes it, and logs one action record
per action, so that no limit change that reached the kernel goes unrecorded:

- the limit now is the action's new limit (within 1 %) → ``applied``: it reached the
  kernel before the kill;
- it is still the old limit → ``failed``: it did not;
- anything else, or the container is not seen, or the action is not a resize →
  ``failed`` with what is known ("the kernel holds 300 MiB, neither 256 nor 512").

Worked example: the intent of run ``up-1`` holds ``web`` memory 256 → 512 MiB and
``db`` memory 1 → 2 GiB; the first tick of ``up-2`` sees ``web`` at 512 MiB and ``db``
at 1 GiB → ``web`` applied ("reached the kernel before run up-1 was killed"), ``db``
failed ("did not reach the kernel before run up-1 was killed").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    ResultStatus,
    ScalingAction,
    Verdict,
)
from prescale.app.loop import records as rec

REL_TOL = 0.01


def _same(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=REL_TOL)


def outcome(a: ScalingAction, now_limit: float | None, run_id: str) -> ActionResult:
    """One action of run ``run_id``'s intent against the limit in force now."""
    killed = f"run {run_id} was killed mid-tick"
    if a.kind is not ActionKind.RESIZE:
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                            a.old_limit, a.old_limit,
                            f"{killed}; a {a.kind.value} cannot be checked afterwards")
    if now_limit is None or math.isnan(now_limit):
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                            a.old_limit, a.old_limit,
                            f"{killed}; the container is not seen now: outcome unknown")
    if _same(now_limit, a.new_limit):
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.APPLIED,
                            a.old_limit, now_limit,
                            f"reached the kernel before {killed}")
    if _same(now_limit, a.old_limit):
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                            a.old_limit, now_limit,
                            f"did not reach the kernel before {killed}")
    return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                        a.old_limit, now_limit,
                        f"{killed}; the kernel holds {now_limit:g}, neither the old "
                        f"{a.old_limit:g} nor the new {a.new_limit:g}")


def reconcile(intent: Mapping[str, Any], actions: list[ScalingAction],
              limits_now: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """One action record per action of a previous run's ``intent`` (its ``run_id`` and
    ``apps``), against ``limits_now`` (``{container: {tier: limit}}``); stamped with the
    time each was decided."""
    apps = intent.get("apps") or {}
    run_id = str(intent.get("run_id") or "?")
    out = []
    for a in actions:
        r = outcome(a, limits_now.get(a.container, {}).get(a.tier.value), run_id)
        out.append(rec.to_dict(rec.ActionRecord.of(
            a, r, "in flight when the run stopped; reconciled at start-up",
            apps.get(a.container, ""), Verdict.GRANTED)))
    return out
