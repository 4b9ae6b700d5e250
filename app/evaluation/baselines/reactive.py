"""The two simplest baselines of ``prescale evaluate``.

- :class:`Static` — the limits the user configured; never acts.
- :class:`FailureRateReactive` — grow a container's limit after a share of its recent
  executions failed: "retry with more resources", as in Nextflow's
  ``errorStrategy 'retry'`` with ``memory { 2.GB * task.attempt }`` (Nextflow docs,
  "Dynamic computing resources"). An execution of memory is one run of the container
  (it ends in an OOM kill or goes on); of CPU, one control interval (failed if a
  request timed out). When at least ``min_failures`` of the last ``window`` executions
  failed and they are at least ``share`` of them, the limit grows × ``factor`` and the
  record is cleared. Worked example: window 10, share 0.5, factor 1.5; the CPU ticks
  0 0 0 0 0 1 1 1 1 1 → 5/10 = 0.5 → quota 1.0 → 1.5 cores.
"""

from __future__ import annotations

from collections import deque

from prescale.app.core.actions import ScalingAction
from prescale.app.core.sample import EventKind, Tier
from prescale.app.evaluation.baselines.base import Baseline, Bounds, Observation, resize


class Static(Baseline):
    """The limits the user configured, never changed."""

    name = "static"

    def decide(self, obs: Observation) -> list[ScalingAction]:
        return []


class FailureRateReactive(Baseline):
    """Grow after a share of recent executions failed (module docstring)."""

    name = "reactive"

    def __init__(self, bounds: Bounds, window: int = 10, share: float = 0.5,
                 min_failures: int = 1, factor: float = 1.5) -> None:
        self.bounds, self.window, self.share = bounds, window, share
        self.min_failures, self.factor = min_failures, factor
        self.record: dict[tuple[str, Tier], deque[int]] = {}

    def _rec(self, name: str, tier: Tier) -> deque[int]:
        return self.record.setdefault((name, tier), deque(maxlen=self.window))

    def should_grow(self, outcomes: deque[int]) -> bool:
        failed = sum(outcomes)
        return (failed >= self.min_failures and len(outcomes) > 0
                and failed / len(outcomes) >= self.share)

    def decide(self, obs: Observation) -> list[ScalingAction]:
        ooms = {e.container for e in obs.events if e.kind is EventKind.OOM_KILL}
        timeouts = {e.container for e in obs.events if e.kind is EventKind.TIMEOUT}
        asks = []
        for i, name in enumerate(obs.names):
            if name in ooms:
                self._rec(name, Tier.MEMORY).append(1)
            self._rec(name, Tier.CPU).append(1 if name in timeouts else 0)
            for tier, limit in ((Tier.MEMORY, obs.memory_limit_bytes[i]),
                                (Tier.CPU, obs.cpu_quota_cores[i])):
                rec = self._rec(name, tier)
                if self.should_grow(rec):
                    new = self.bounds.clamp(tier, limit * self.factor)
                    rec.clear()
                    if new > limit:
                        asks.append(resize(obs.now_s, name, obs.apps[i], tier, limit, new,
                                           f"{self.name}: failure share reached "
                                           f"{self.share:.0%}: × {self.factor}"))
        return asks

