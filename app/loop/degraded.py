"""Degraded mode: the loop goes on protecting when its state cannot be written.

A full or read-only disk under ``data_dir`` (or the history store) makes every durable
write fail: the decision log, the in-flight intent, the checkpoint, the thresholds, the
status. The rule "no action without a durable record" then used to stop the loop, and
the workloads it protected were OOM-killed unlogged. Protecting the workload comes
first, so a tick whose writes fail goes on **degraded**:

- **scale-ups still happen** (the ones that prevent a kill), without a durable intent
  (a coordinator restarted meanwhile cannot re-send them; the next run reconciles none);
- **scale-downs stop** (idle reclaims and cost scale-downs are deferred: they only save
  money, and without a record they could not be explained or undone);
- **records are buffered** in memory, at most ``max_records`` (the oldest are dropped
  and counted beyond that), and flushed, oldest first, as soon as a write succeeds;
- the thresholds do not learn (their file cannot be written); the checkpoint and the
  status are retried every tick (the status also goes to a copy in RAM,
  ``/dev/shm``, that ``prescale status`` reads);
- ``up``, ``prescale status`` and the ``prescale_degraded`` metric say DEGRADED with
  the reason until a tick writes everything again.

Worked example: at t = 100 s the decision log's append raises ``OSError(28, "No space
left on device")``: :meth:`DegradedMode.failed` records ``"decision log: [Errno 28] No
space left on device"`` (since 100 s), the tick's 12 records are buffered, its one
scale-down is deferred and its scale-up applied. At t = 160 s the disk has room again:
the buffered records are appended first, every write of the tick succeeds, and
:meth:`DegradedMode.end_tick` reports the recovery (60 s degraded, 12 records flushed,
0 dropped).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from prescale.app.core.actions import ActionKind, PoolVerdict, ScalingAction, Verdict
from prescale.app.core.contention import ArbitrationResult

MAX_RECORDS = 50_000


def is_scale_down(a: ScalingAction) -> bool:
    """A resize to a lower limit (idle, revert, reclaim); a scale-out never is."""
    return a.kind is ActionKind.RESIZE and a.new_limit < a.old_limit


def hold_back_scale_downs(arb: ArbitrationResult, asks: Sequence[ScalingAction],
                          why: str) -> ArbitrationResult:
    """``arb`` with every granted scale-down deferred (``why``), no reclaims, and the
    grants that fit only thanks to a reclaim deferred too."""
    by_id = {a.action_id: a for a in asks}
    held = {i for i, a in by_id.items() if is_scale_down(a)} | set(arb.reclaim_dependent)
    verdicts = [PoolVerdict(v.action_id, Verdict.DEFERRED, f"degraded: {why}")
                if v.action_id in held and v.verdict is Verdict.GRANTED else v
                for v in arb.verdicts]
    return replace(arb, verdicts=verdicts, reclaims=[], reclaim_dependent=[])


class DegradedMode:
    """What failed to be written this tick and since when; the records waiting."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self.buffer: deque[Mapping[str, Any]] = deque()
        self.dropped = 0
        self.flushed = 0
        self.since_s: float | None = None
        self.reasons: dict[str, str] = {}  # writer → error, of the last tick that failed
        self._this_tick: dict[str, str] = {}

    @property
    def active(self) -> bool:
        return self.since_s is not None

    @property
    def reason(self) -> str:
        return "; ".join(f"{w}: {e}" for w, e in self.reasons.items())

    def failed(self, writer: str, exc: BaseException, now_s: float) -> None:
        """A write of ``writer`` failed (``OSError``): degraded from now on."""
        self._this_tick[writer] = str(exc) or type(exc).__name__
        self.reasons = {**self.reasons, **self._this_tick}
        if self.since_s is None:
            self.since_s = now_s

    def hold(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Keep records that could not be written (bounded: the oldest go first)."""
        self.buffer.extend(records)
        while len(self.buffer) > self.max_records:
            self.buffer.popleft()
            self.dropped += 1

    def take(self) -> list[Mapping[str, Any]]:
        """The buffered records (written by the caller first thing; held again if that
        fails)."""
        out = list(self.buffer)
        self.buffer.clear()
        return out

    def end_tick(self, now_s: float) -> dict[str, Any] | None:
        """Close the tick: if nothing failed in it and nothing waits, the degraded
        period is over — returns ``{"degraded_s", "flushed", "dropped"}`` then (once)."""
        failed, self._this_tick = self._this_tick, {}
        if failed:
            self.reasons = failed
            return None
        if self.since_s is None or self.buffer:
            return None
        out = {"degraded_s": now_s - self.since_s, "flushed": self.flushed,
               "dropped": self.dropped}
        self.since_s, self.reasons, self.flushed, self.dropped = None, {}, 0, 0
        return out

    def status(self) -> dict[str, Any] | None:
        if self.since_s is None:
            return None
        return {"reason": self.reason, "since_s": self.since_s,
                "buffered_records": len(self.buffer), "dropped_records": self.dropped}
