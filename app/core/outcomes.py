"""Lead-time tracking: when would the old limit have been crossed?

After a scale-up of memory from ``old_limit`` at ``t_action``, the container keeps
running under the new limit. The first later sample whose usage reaches
``old_limit`` is the moment it would have failed without the action; the lead
time is that moment minus ``t_action``. A pending action that sees no crossing
within ``expire_after_s`` is closed as ``not_crossed`` (a possible false positive,
judged properly by the outcome tracker of the decision-core issue). An OOM kill
while pending closes it as ``failed``.

Worked example: action at t = 100 s raising 128 MiB → 200 MiB; samples at 101..118 s
stay below 128 MiB, the sample at 119 s reads 129 MiB → outcome ``crossed``,
lead time 19 s.

A recommendation that was not applied (recommend mode) is tracked too: its old
limit is still the real one, so the container is OOM-killed when usage reaches it;
that outcome is ``failed`` with the lead time from the recommendation to the kill,
the time an operator following it would have had.

CPU actions have no such crossing (usage cannot exceed a quota), so only memory
actions are tracked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prescale.app.core.actions import ScalingAction
from prescale.app.core.sample import Tier


@dataclass(frozen=True)
class Pending:
    action_id: str
    container: str
    t_action_s: float
    old_limit_bytes: float
    applied: bool = True


@dataclass(frozen=True)
class Outcome:
    action_id: str
    container: str
    outcome: str  # crossed | failed | not_crossed | gone
    t_action_s: float
    t_outcome_s: float
    lead_time_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeadTimeTracker:
    def __init__(self, expire_after_s: float) -> None:
        self.expire_after_s = expire_after_s
        self.pending: list[Pending] = []

    def track(self, action: ScalingAction, applied: bool = True) -> None:
        if action.tier is Tier.MEMORY:
            self.pending.append(
                Pending(action.action_id, action.container, action.now_s, action.old_limit,
                        applied)
            )

    def observe(
        self,
        now_s: float,
        usage_bytes: dict[str, float],
        oom_kills_delta: dict[str, float],
    ) -> list[Outcome]:
        """Close the pending actions this tick's readings settle; keep the rest."""
        out: list[Outcome] = []
        keep: list[Pending] = []
        for p in self.pending:
            usage = usage_bytes.get(p.container)
            if oom_kills_delta.get(p.container, 0) > 0:
                lead = None if p.applied else now_s - p.t_action_s
                out.append(Outcome(p.action_id, p.container, "failed", p.t_action_s, now_s, lead))
            elif usage is not None and usage >= p.old_limit_bytes:
                out.append(
                    Outcome(p.action_id, p.container, "crossed", p.t_action_s, now_s,
                            now_s - p.t_action_s)
                )
            elif usage is None:
                out.append(Outcome(p.action_id, p.container, "gone", p.t_action_s, now_s, None))
            elif now_s - p.t_action_s > self.expire_after_s:
                out.append(
                    Outcome(p.action_id, p.container, "not_crossed", p.t_action_s, now_s, None)
                )
            else:
                keep.append(p)
        self.pending = keep
        return out

    def to_list(self) -> list[dict[str, Any]]:
        # by hand: dataclasses.asdict deep-copies and costs ~15 µs per item per checkpoint
        return [{"action_id": p.action_id, "container": p.container,
                 "t_action_s": p.t_action_s, "old_limit_bytes": p.old_limit_bytes,
                 "applied": p.applied} for p in self.pending]

    def load(self, items: list[dict[str, Any]]) -> None:
        self.pending = [Pending(**d) for d in items]
