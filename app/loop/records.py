"""The decision log's records: one schema, typed.

Every record has ``kind``, ``ts_s``, ``container`` and ``app`` (the store adds
``run_id`` and ``mode``). :func:`to_dict` gives the dict the history store keeps (JSON,
``inf``/``nan`` kept); :func:`parse` turns a stored dict back into its record, for
every reader (``prescale events``, the demo, the metrics). The kinds:

- :class:`DecisionRecord` — one container and tier in one tick: p_fail, threshold,
  predicted time to limit, forecast, current limit, the proposed new limit and why; a
  decision held back tick after tick for the same reason is logged once per episode
  (its first tick, and its last with the count: ``episode_s``, ``repeats``;
  :mod:`app.loop.episodes`);
- :class:`ActionRecord` — what became of a proposed action: the pool's verdict, the
  result (applied / dry_run / denied / deferred / failed), the limits really set (a
  dry run: ``new_limit`` is what would have been set; nothing was);
- :class:`EventRecord` — something that happened (an OOM kill, a model refused, a
  kill loop that needs the operator, …);
- :class:`JudgementRecord` — a scale-up judged needed / false positive, or a miss;
- :class:`ThresholdRecord` — a threshold a judgement moved;
- :class:`OutcomeRecord` — a scale-up's lead time (or that it failed / did not cross);
- :class:`TimingRecord` — how long a key code block took (``/v1/samples``).

Worked example: ``to_dict(EventRecord(12.0, "web", "shop", "oom_kill", "kernel"))`` →
``{"kind": "event", "ts_s": 12.0, "container": "web", "app": "shop", "event":
"oom_kill", "reason": "kernel"}``, and :func:`parse` of that dict gives the record back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

from prescale.app.core.actions import (
    ActionResult,
    Decision,
    ResultStatus,
    ScalingAction,
    Verdict,
)


@dataclass(frozen=True)
class DecisionRecord:
    """``episode_s``: for a decision held back (no action), when its episode began
    (None: a decision with an action, or a log older than episodes); ``repeats``: the
    decisions of that episode between the previous row and this one that were not
    logged (:mod:`app.loop.episodes`): ``1 + repeats`` summed over the rows is the
    number of ticks."""

    KIND: ClassVar[str] = "decision"
    ts_s: float
    container: str
    app: str
    tier: str
    p_fail: float
    threshold: float
    time_to_limit_s: float
    forecast: float
    old_limit: float
    new_limit: float | None
    action_id: str | None
    reason: str
    episode_s: float | None = None
    repeats: int = 0

    @classmethod
    def of(cls, d: Decision, app: str) -> DecisionRecord:
        a = d.action
        return cls(d.now_s, d.container, app, d.tier.value, d.p_fail, d.threshold,
                   d.time_to_limit_s, d.forecast, d.limit, a.new_limit if a else None,
                   a.action_id if a else None, d.reason)


@dataclass(frozen=True)
class ActionRecord:
    KIND: ClassVar[str] = "action"
    ts_s: float
    action_id: str
    action_kind: str
    verdict: str | None
    container: str
    app: str
    tier: str
    p_fail: float
    threshold: float
    time_to_limit_s: float
    old_limit: float
    requested_limit: float
    new_limit: float
    result: str
    reason: str

    @classmethod
    def of(cls, a: ScalingAction, r: ActionResult, verdict_reason: str, app: str,
           verdict: Verdict | None = None) -> ActionRecord:
        # a reclaim's verdict is its own reason: said once
        reason = "; ".join(x for x in (a.reason, "" if verdict_reason == a.reason
                                       else verdict_reason, r.reason) if x)
        # a dry run set nothing: its row says what it would have set
        new = a.new_limit if r.status is ResultStatus.DRY_RUN else r.new_limit
        return cls(a.now_s, a.action_id, a.kind.value,
                   verdict.value if verdict is not None else None, a.container, app,
                   a.tier.value, a.p_fail, a.threshold, a.time_to_limit_s, r.old_limit,
                   a.new_limit, new, r.status.value, reason)


@dataclass(frozen=True)
class EventRecord:
    KIND: ClassVar[str] = "event"
    ts_s: float
    container: str
    app: str
    event: str
    reason: str


@dataclass(frozen=True)
class JudgementRecord:
    """A :class:`~app.core.outcome_tracker.Judgement` as logged: its fields, ``app`` the
    container's app, ``judgement`` its kind."""

    KIND: ClassVar[str] = "judgement"
    ts_s: float
    container: str
    app: str
    judgement: str
    owner: str
    tier: str
    t_s: float
    judged_s: float
    action_id: str | None
    p_fail: float
    threshold: float
    blames_threshold: bool
    applied: bool
    reason: str

    @classmethod
    def of(cls, j: Any, ts_s: float, app: str) -> JudgementRecord:
        d = j.to_dict()
        return cls(ts_s, j.container, app, d["kind"], d["owner"], d["tier"], d["t_s"],
                   d["judged_s"], d["action_id"], d["p_fail"], d["threshold"],
                   d["blames_threshold"], d["applied"], d["reason"])


@dataclass(frozen=True)
class ThresholdRecord:
    """An :class:`~app.core.thresholds.Adjustment` as logged (``container`` = ``app`` =
    the app it moved, ``adjustment`` the judgement's kind)."""

    KIND: ClassVar[str] = "threshold"
    ts_s: float
    container: str
    app: str
    adjustment: str
    owner: str
    tier: str
    old: float
    new: float
    reason: str

    @classmethod
    def of(cls, a: Any, ts_s: float) -> ThresholdRecord:
        d = a.to_dict()
        return cls(ts_s, a.app, a.app, d["kind"], d["owner"], d["tier"], d["old"], d["new"],
                   d["reason"])


@dataclass(frozen=True)
class OutcomeRecord:
    """A lead-time :class:`~app.core.outcomes.Outcome` as logged."""

    KIND: ClassVar[str] = "outcome"
    ts_s: float
    container: str
    app: str
    action_id: str
    outcome: str
    t_action_s: float
    t_outcome_s: float
    lead_time_s: float | None

    @classmethod
    def of(cls, o: Any, ts_s: float, app: str) -> OutcomeRecord:
        d = o.to_dict()
        return cls(ts_s, d["container"], app, d["action_id"], d["outcome"], d["t_action_s"],
                   d["t_outcome_s"], d["lead_time_s"])


@dataclass(frozen=True)
class TimingRecord:
    """How long one key code block of a container took (``/v1/samples`` timings)."""

    KIND: ClassVar[str] = "timing"
    ts_s: float
    container: str
    app: str
    block: str
    duration_s: float
    ok: bool
    timeout: bool
    error: str | None


Record = (DecisionRecord | ActionRecord | EventRecord | JudgementRecord | ThresholdRecord
          | OutcomeRecord | TimingRecord)
KINDS: dict[str, type] = {c.KIND: c for c in (DecisionRecord, ActionRecord, EventRecord,
                                               JudgementRecord, ThresholdRecord,
                                               OutcomeRecord, TimingRecord)}


def to_dict(rec: Record) -> dict[str, Any]:
    """The stored form: ``kind`` and every field."""
    return {"kind": rec.KIND, **asdict(rec)}


_NUMERIC_NONE = {"old_limit": math.inf, "time_to_limit_s": math.inf}


def parse(d: Mapping[str, Any]) -> Record:
    """A stored record back (extra keys such as ``run_id`` and ``mode`` are ignored).
    ``None`` where a number belongs (JSON wrote ``inf``/``nan`` as null in older logs)
    becomes inf for limits and times to limit, nan otherwise. Raises ValueError naming
    the kind or the missing field."""
    kind = d.get("kind")
    cls = KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"record of unknown kind {kind!r}; known: {', '.join(KINDS)}")
    values = {}
    for f in fields(cls):
        if f.name not in d:
            if f.default is not MISSING:  # a field added later: older logs lack it
                continue
            raise ValueError(f"{kind} record without {f.name!r}")
        v = d[f.name]
        if v is None and f.type in ("float",):
            v = _NUMERIC_NONE.get(f.name, math.nan)
        values[f.name] = v
    return cls(**values)


__all__ = ["KINDS", "ActionRecord", "DecisionRecord", "EventRecord", "JudgementRecord",
           "OutcomeRecord", "Record", "ThresholdRecord", "TimingRecord", "parse", "to_dict"]
