"""One tick of the control loop, over typed ports (:mod:`app.loop.ports`), free of Ray.

:meth:`Tick.run_once` reads as the loop itself::

    resume    a tick that was cut short (its intent is in the journal): re-send its
              actions with the same ids, log what they did, settle them
    collect   every node's shard (a slow or failed node's containers are "unknown"
              this tick; a node gone for good is dropped from the pool)
    merge     one snapshot (app/loop/shard.py)
    observe   features → predictor → models → thresholds → judgements (the engine)
    decide    policy + guards → asks (not in mode off)
    arbitrate the allocator: capacity per node, contention, reclaims from idle ones
    log       events, judgements, thresholds, decisions — durable before acting (a
              decision held back tick after tick: once per episode, app/loop/episodes.py)
    intent    the actions about to be applied, with the engine state they start
    act       each granted action to its actuator (auto mode; recommend: dry run)
    settle    outcome tracking, savings; then the results are logged
    record    the checkpoint, the status snapshot, the summary

**One write per state file per tick.** The checkpoint is saved once, at the end; the
intent (written only when there are actions to apply) carries the engine state the
actions start, so a restart that resumes them also resumes that state; the allocator
persists once, when the tick confirms what was set; thresholds learn idempotently
(:meth:`~app.core.thresholds.ThresholdBook.learn_new`), so judging again after a
restart never moves a threshold twice.

**What a crash costs** (any port may raise): the engine state goes back to the last
checkpoint, as a restart would; decisions logged before the crash stay logged; actions
in a written intent are re-sent by id (never applied twice); actions without one were
not applied.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    ResultStatus,
    ScalingAction,
    Verdict,
)
from prescale.app.core.contention import ArbitrationResult
from prescale.app.core.engine import Engine, EngineConfig, EngineState, ModelLookup, Plan
from prescale.app.core.predictor import Prediction
from prescale.app.core.sample import METRICS, Tier
from prescale.app.core.thresholds import Adjustment, ThresholdBook
from prescale.app.loop import records as rec
from prescale.app.loop.degraded import DegradedMode, hold_back_scale_downs
from prescale.app.loop.episodes import Episodes
from prescale.app.loop.ports import (
    Actuation,
    Allocator,
    Checkpoint,
    Journal,
    Telemetry,
    Thresholds,
)
from prescale.app.loop.reconcile import reconcile
from prescale.app.loop.shard import Merged, merge_shards
from prescale.app.loop.status import status_rows, unknown_rows

log = logging.getLogger("prescale.loop")

#: what an unreadable or unusable piece of state raises while it is parsed
UNUSABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError)
STATE = "_state"  #: the container of ``state_quarantined`` events
QUARANTINED = "state_quarantined"
DEGRADED = "degraded"  #: event: writes fail, the loop protects without records
RECOVERED = "degraded_over"


def unusable(exc: BaseException) -> str:
    """What was wrong, in words: ``ValueError('x')`` → ``x``, ``KeyError('tick')`` →
    ``'tick' is missing``."""
    if isinstance(exc, KeyError):
        return f"{exc.args[0]!r} is missing" if exc.args else "a key is missing"
    return str(exc) or type(exc).__name__


#: an unknown container is dropped from the status after this long unseen
UNKNOWN_FORGET_S = 600.0
NOT_REPORTED = "not reported by its monitor"


class TickHooks:
    """What a host adds around the tick (the live loop: model registry, retraining,
    metrics, history upkeep). Every method is optional; the defaults do nothing."""

    def models(self, records: list[dict[str, Any]], now_s: float) -> ModelLookup | None:
        """The engine's model lookup for this tick (may append ``model_error`` events)."""
        return None

    def after_settle(self, judgements: list[dict[str, Any]], now_s: float
                     ) -> list[dict[str, Any]]:
        """This tick's judgements (with apps); records to log with the results."""
        return []

    def state(self) -> dict[str, Any]:
        """Extra parts of the checkpoint."""
        return {}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Read back what :meth:`state` saved."""

    def after_tick(self, summary: dict[str, Any], rows: list[dict[str, Any]],
                   judgements: list[dict[str, Any]], records: list[dict[str, Any]],
                   plan: Plan, apps: Mapping[str, str]) -> None:
        """Export metrics (a failure here is the host's to report)."""

    def upkeep(self, now_s: float) -> None:
        """Periodic maintenance (history compaction)."""


@dataclass
class Ports:
    telemetry: Telemetry
    allocator: Allocator
    actuation: Actuation
    journal: Journal
    checkpoint: Checkpoint
    thresholds: Thresholds
    hooks: TickHooks = field(default_factory=TickHooks)


class Laps:
    """Stage timer of a tick: ``lap("plan")`` records the time since the previous lap."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.last = clock()
        self.stages: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = self.clock()
        self.stages[stage] = now - self.last
        self.last = now


class Tick:
    """The loop's state between ticks and :meth:`run_once`. ``mode``: ``off`` |
    ``recommend`` | ``auto``; ``window_steps``: the monitors' window length."""

    def __init__(self, engine_config: EngineConfig, ports: Ports, *, run_id: str, mode: str,
                 window_steps: int, now: Callable[[], float] = time.time) -> None:
        self.engine_config = engine_config
        self.ports = ports
        self.run_id = run_id
        self.mode = mode
        self.window_steps = window_steps
        self.now = now  # only when no shard says what time it is
        self.engine = Engine(engine_config)
        self.tick = 0
        #: every container seen: node, app, last time seen, and whether it is unknown now
        self.seen: dict[str, dict[str, Any]] = {}
        self.last_action: dict[str, dict[str, Any]] = {}
        self.judgements: list[dict[str, Any]] = []  # this tick's, for the hooks
        #: decisions held back tick after tick, logged once per episode
        self.episodes = Episodes()
        #: lines about state that was set aside, logged with the next tick's records
        self.notices: list[str] = []
        #: writes that fail (a full or read-only disk): the loop goes on, degraded
        self.degraded = DegradedMode()
        self._degraded_before = False
        #: a previous run's in-flight intent (and its actions), reconciled next tick
        self.foreign_intent: tuple[Mapping[str, Any], list[ScalingAction]] | None = None
        self.restore()

    # -- persistence -------------------------------------------------------------
    def restore(self) -> None:
        """The state of the last checkpoint (or a fresh one). A checkpoint that cannot be
        read or used is set aside by its port and the loop starts afresh (logged)."""
        self.engine = Engine(self.engine_config)
        self.episodes = Episodes()
        try:
            saved = self.ports.checkpoint.load()
            if not saved or saved.get("run_id") != self.run_id:
                return
            state = EngineState.from_dict(saved, self.engine_config)
            last_action = dict(saved.get("last_action", {}))
            tick = int(saved["tick"])
            seen = dict(saved.get("seen", {}))
            episodes = Episodes()
            episodes.load(saved.get("episodes", []))
            self.ports.hooks.restore(saved)
        except UNUSABLE as exc:
            self.notices.append(self.ports.checkpoint.discard(unusable(exc)))
            return
        self.engine.state = state
        self.last_action, self.tick, self.seen = last_action, tick, seen
        self.episodes = episodes

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tick": self.tick, **self.engine.state.to_dict(),
                "last_action": self.last_action, "seen": self.seen,
                "episodes": self.episodes.to_list(), **self.ports.hooks.state()}

    def close(self) -> list[dict[str, Any]]:
        """The loop stops: the closing rows of the episodes still open (held decisions,
        :mod:`app.loop.episodes`) are logged, and the checkpoint says they are closed.
        Returns the rows."""
        rows = self.episodes.close()
        if rows:
            now_s = max(r["ts_s"] for r in rows)
            if self._append(rows, now_s) and getattr(self.ports.checkpoint, "enabled", True):
                self._write("checkpoint", self.ports.checkpoint.save, self.state(),
                            now_s=now_s)
        return rows

    # -- the tick --------------------------------------------------------------------
    def run_once(self) -> dict[str, Any]:
        try:
            return self._run_once()
        except Exception:
            self.restore()  # as if restarted: the engine state of the last good tick
            raise

    def _run_once(self) -> dict[str, Any]:
        p = self.ports
        lap = Laps()
        t0 = lap.last
        p.allocator.prepare()
        self.resume()  # a tick cut short: finish it first
        shards, unknown = p.telemetry.collect()
        lap("gather")
        merged = merge_shards(shards, (self.window_steps, len(METRICS)), now_s=self.now())
        snap = merged.snapshot
        apps = dict(zip(snap.names, snap.apps, strict=True))
        lost = self._mark_seen(merged, unknown)
        records: list[dict[str, Any]] = [rec.to_dict(rec.EventRecord(
            e.ts_s, e.container, e.app, e.kind.value, e.detail)) for e in snap.events]
        plan = self.engine.observe(  # featurise, predict, judge
            snap, self._book(), models=p.hooks.models(records, snap.now_s))
        records += self._judgement_records(plan, apps)  # thresholds learn from them
        notices = self._take_notices()
        records += [rec.to_dict(rec.EventRecord(snap.now_s, STATE, "", QUARANTINED, n))
                    for n in notices]
        if self.mode != "off":
            self.engine.propose(plan, snap)  # decide
        lap("plan")
        limits_now = _limits(plan.names, plan.prediction)
        p.allocator.observe(limits_now, snap.now_s, merged.nodes,
                            {n: r[0] for n, r in merged.route.items()}, dict(snap.replicas))
        if self.foreign_intent is not None:  # before this tick's own intent replaces it
            intent, actions = self.foreign_intent
            if self._append(reconcile(intent, actions, limits_now), snap.now_s):  # durable,
                self._write("in-flight intent", p.journal.clear_intent, now_s=snap.now_s)
            self.foreign_intent = None
        records += self._decision_records(plan, apps)  # held ones: once per episode
        # a kill loop or a runaway (app/core/oom.py): the operator should look
        records += [rec.to_dict(rec.EventRecord(snap.now_s, c, apps.get(c, ""),
                                                "operator_attention", why))
                    for c, why in plan.flagged.items()]
        tick_records: list[dict[str, Any]] = []
        results: list[ActionResult] = []
        reclaimed: list[tuple[ScalingAction, ActionResult]] = []
        applied: list[tuple[str, str, float]] = []
        if plan.asks:
            commit = self.mode == "auto"
            arb = p.allocator.arbitrate(plan.asks, plan.reclaim, snap.now_s, commit,
                                        tenancy=plan.tenancy)
            arb = self._escalate(plan, arb, snap.now_s, commit)
            lap("arbitrate")
            tick_records += records
            durable = self._append(records, snap.now_s)  # durable before acting
            if not durable or self.degraded.active:  # protect first: scale-ups only
                arb = hold_back_scale_downs(arb, plan.asks, self.degraded.reason)
            routes, local = self._write_intent(plan, arb, merged, commit)  # the intent
            lap("log")
            results, records, reclaimed, applied = self._act(plan.asks, arb, commit, routes,
                                                             local, apps)  # apply
            lap("act")
        self.engine.settle(snap.now_s, reclaimed + list(zip(plan.asks, results, strict=True)),
                           live=plan.names)
        p.allocator.confirm(applied)  # what was really set (the pool's one write)
        extra = p.hooks.after_settle(self.judgements_app(apps), snap.now_s)
        tick_records += records + extra
        self._append(records + extra, snap.now_s)  # record
        self.tick += 1
        if getattr(p.checkpoint, "enabled", True):
            self._write("checkpoint", p.checkpoint.save, self.state(), now_s=snap.now_s)
        if plan.asks and self._intent_written:
            self._write("in-flight intent", p.journal.clear_intent, now_s=snap.now_s)
        p.hooks.upkeep(snap.now_s)
        lap("record")
        rows: list[dict[str, Any]] = []
        if getattr(p.journal, "durable", True):
            rows = status_rows(plan, self.seen, self.last_action, snap.replicas, snap.labels)
            self._write("status", p.journal.write_status, {
                "ts_s": plan.now_s, "run_id": self.run_id, "mode": self.mode,
                "tick": self.tick, "tick_s": lap.clock() - t0, "model": plan.prediction.model,
                "horizon_s": plan.prediction.horizon_s,
                "saved_resource_hours": self.engine.state.savings.saved_hours(),
                "errors": merged.errors, "dropped": merged.dropped, "nodes": merged.nodes,
                "unknown_nodes": unknown, "degraded": self.degraded.status(),
                "containers": rows + unknown_rows(self.seen, self.last_action)},
                now_s=snap.now_s)
        degraded = self._end_degraded_tick(snap.now_s)
        lap("status")
        summary = {
            "tick": self.tick,
            "now_s": snap.now_s,
            "containers": len(plan.names),
            "monitors": len(shards),
            "unknown": sorted(unknown),
            "lost_containers": lost,
            "decisions": len(plan.asks),
            "actions": [r.status.value for r in results],
            "errors": merged.errors,
            "tick_s": lap.clock() - t0,
            "stages_s": lap.stages,
            "dropped": merged.dropped,
            "notices": notices,
            "degraded": degraded,
        }
        p.hooks.after_tick(summary, rows, self.judgements, tick_records, plan, apps)
        return summary

    def _escalate(self, plan: Plan, arb: ArbitrationResult, now_s: float, commit: bool
                  ) -> ArbitrationResult:
        """Vertical asks the pool denied become scale-outs where the container has
        replicas (:meth:`Engine.escalate`), arbitrated in turn and added to the tick's
        asks; why the others were not is in the arbitration's summary."""
        verdicts = {v.action_id: v for v in arb.verdicts}
        denied = [(a, verdicts[a.action_id].reason) for a in plan.asks
                  if verdicts[a.action_id].verdict is Verdict.DENIED]
        if not denied:
            return arb
        outs, notes = self.engine.escalate(denied)
        if not outs:
            return replace(arb, summary=arb.summary + notes) if notes else arb
        more = self.ports.allocator.arbitrate(outs, [], now_s, commit, tenancy=plan.tenancy)
        plan.asks = plan.asks + outs
        return replace(arb, verdicts=arb.verdicts + more.verdicts,
                       explanations={**arb.explanations, **more.explanations},
                       summary=arb.summary + notes + [
                           f"escalated: {a.container} {a.tier.value} ask denied → scale-out "
                           f"{a.old_limit:g} → {a.new_limit:g} replicas" for a in outs
                       ] + more.summary,
                       order=arb.order + more.order)

    # -- seen, unknown, lost --------------------------------------------------------
    def _mark_seen(self, merged: Merged, unknown: Mapping[str, str]) -> list[str]:
        """Track every container's node. Containers of a node that did not answer are
        *unknown* (kept, with their grants); those of a node gone for good (its monitor
        is gone) are unknown too, and the allocator drops the node. Returns the
        containers that became unknown this tick."""
        snap = merged.snapshot
        for n, app in zip(snap.names, snap.apps, strict=True):
            self.seen[n] = {"node": merged.route[n][0], "app": app, "last_s": snap.now_s,
                            "unknown": None}
        live_nodes = self.ports.telemetry.live_nodes()
        newly, dead_nodes = [], set()
        for n, info in list(self.seen.items()):
            if info["last_s"] == snap.now_s:
                continue
            node = info["node"]
            why = (unknown.get(node) or
                   ("node left the cluster (its monitor is gone)" if node not in live_nodes
                    else NOT_REPORTED))
            if node not in live_nodes:
                dead_nodes.add(node)
            if why == NOT_REPORTED:
                del self.seen[n]  # its monitor answered without it: it is gone
                continue
            if info["unknown"] is None:
                newly.append(n)
            info["unknown"] = why
            if snap.now_s - info["last_s"] > UNKNOWN_FORGET_S:
                del self.seen[n]
        if dead_nodes:
            self.ports.allocator.drop_nodes(sorted(dead_nodes))
        return sorted(newly)

    # -- judgements ------------------------------------------------------------------
    # -- state that cannot be read ------------------------------------------------------
    def _book(self) -> ThresholdBook:
        """The thresholds; an unreadable store is set aside (logged) and read again."""
        try:
            return self.ports.thresholds.book()
        except UNUSABLE as exc:
            self.notices.append(self.ports.thresholds.discard(unusable(exc)))
            return self.ports.thresholds.book()

    def _learn(self, judgements: Sequence[Any], now_s: float) -> list[Adjustment]:
        try:
            return self.ports.thresholds.learn(judgements)
        except OSError as exc:  # cannot be written: not learned (degraded)
            self.degraded.failed("thresholds", exc, now_s)
            return []
        except UNUSABLE as exc:
            self.notices.append(self.ports.thresholds.discard(unusable(exc)))
            return self.ports.thresholds.learn(judgements)

    # -- writes that fail: degraded mode (app/loop/degraded.py) ---------------------------
    def _write(self, writer: str, fn: Callable[..., Any], *args: Any, now_s: float) -> bool:
        """``fn(*args)``; an ``OSError`` (full or read-only disk) makes the tick degraded
        instead of stopping it. Returns whether it was written."""
        try:
            fn(*args)
            return True
        except OSError as exc:
            self.degraded.failed(writer, exc, now_s)
            return False

    def _append(self, records: Sequence[Mapping[str, Any]], now_s: float) -> bool:
        """Append to the decision log, after what waits from degraded ticks; on failure
        keep them all (bounded) for the next tick. Returns whether they are durable."""
        waiting = self.degraded.take()
        batch = [*waiting, *records]
        if not batch:
            return True
        try:
            self.ports.journal.append(batch)
        except OSError as exc:
            self.degraded.failed("decision log", exc, now_s)
            self.degraded.hold(batch)
            return False
        self.degraded.flushed += len(waiting)
        return True

    def _end_degraded_tick(self, now_s: float) -> dict[str, Any] | None:
        """The degraded state after this tick (``None``: all written); a recovery is
        logged once (durably: it is the first record that goes through)."""
        was = self._degraded_before
        reason = self.degraded.reason
        over = self.degraded.end_tick(now_s)
        if over is not None:
            line = (f"recovered after {over['degraded_s']:.0f} s: {over['flushed']} buffered "
                    f"records written, {over['dropped']} dropped")
            log.warning("degraded mode over: %s", line)
            self._append([rec.to_dict(rec.EventRecord(now_s, STATE, "", RECOVERED, line))],
                         now_s)
        elif self.degraded.active and not was:  # logged when the records can be written
            log.error("DEGRADED: %s", reason)
            self.degraded.hold([rec.to_dict(rec.EventRecord(
                now_s, STATE, "", DEGRADED, f"{reason}; scale-ups go on, scale-downs stop, "
                f"records are buffered until the disk is back"))])
        self._degraded_before = self.degraded.active
        return self.degraded.status()

    def _take_notices(self) -> list[str]:
        """This tick's lines about state set aside (the allocator's too)."""
        take = getattr(self.ports.allocator, "take_notices", None)
        notices, self.notices = self.notices + (list(take()) if take else []), []
        for n in notices:
            log.error("state set aside: %s", n)
        return notices

    def _judgement_records(self, plan: Plan, apps: Mapping[str, str]) -> list[dict[str, Any]]:
        """Judgements move their app's threshold (durably, idempotently); lead-time
        outcomes."""
        self.judgements = [j.to_dict() for j in plan.judgements]
        now_s = plan.now_s
        out = [rec.to_dict(rec.JudgementRecord.of(j, now_s, apps.get(j.container, "")))
               for j in plan.judgements]
        out += [rec.to_dict(rec.ThresholdRecord.of(a, now_s))
                for a in self._learn(plan.judgements, now_s)]
        out += [rec.to_dict(rec.OutcomeRecord.of(o, now_s, apps.get(o.container, "")))
                for o in plan.lead_outcomes]
        return out

    def _decision_records(self, plan: Plan, apps: Mapping[str, str]) -> list[dict[str, Any]]:
        """The decisions to log: each one with an action, and those held back (p_fail ≥
        threshold, no action) once per episode (:class:`~app.loop.episodes.Episodes`).
        In recommend mode a cooldown follows a recommendation, not a change: the reason
        says so (:func:`recommended_earlier`)."""
        out = [rec.to_dict(rec.DecisionRecord.of(d, apps.get(d.container, "")))
               for d in plan.decisions if d.action is not None or d.p_fail >= d.threshold]
        if self.mode == "recommend":
            for r in out:
                if r["action_id"] is None and "in cooldown" in r["reason"]:
                    r["reason"] = recommended_earlier(r["reason"])
        return self.episodes.filter(out, plan.names)

    def judgements_app(self, apps: Mapping[str, str]) -> list[dict[str, Any]]:
        """This tick's judgements with their containers' apps."""
        return [{**j, "app": apps.get(j.get("container", ""), j.get("app") or "")}
                for j in self.judgements]

    # -- intent, acting ----------------------------------------------------------------
    _intent_written = False

    def _write_intent(self, plan: Plan, arb: ArbitrationResult, merged: Merged,
                      commit: bool) -> tuple[dict[str, str], dict[str, str]]:
        """The actions about to be applied, with the engine state they start (cooldowns),
        durable before any is applied. Returns the actions' routes and the names their
        actuators know them by."""
        todo = (list(arb.reclaims) + arb.granted(plan.asks)) if commit else []
        route = merged.route
        routes = self.ports.actuation.routes(
            todo, {a.container: (route.get(a.container) or
                                 (self.seen.get(a.container, {}).get("node") or "",))[0]
                   for a in todo})
        # qualified names (seen on two nodes) → the name their monitor knows
        local = {a.container: route[a.container][1] for a in todo
                 if a.container in route and route[a.container][1] != a.container}
        self._intent_written = bool(todo) and getattr(self.ports.journal, "durable", True)
        if self._intent_written:  # not durable (degraded): the scale-ups go ahead anyway
            write = self.ports.journal.write_intent
            self._intent_written = self._write("in-flight intent", write, {
                "run_id": self.run_id, "now_s": plan.now_s, "tick": self.tick,
                "state": self.state(), "actions": [a.to_dict() for a in todo],
                "routes": routes, "local": local,
                "apps": dict(zip(plan.names, plan.apps, strict=True))}, now_s=plan.now_s)
        return routes, local

    def resume(self) -> None:
        """Finish a tick that was cut short: restore the engine state its actions started,
        re-send them with the same ids (an actuator that applied one returns what it
        did then), log the results, settle them, checkpoint. The intent of another run
        (one killed outright) is kept for :func:`~app.loop.reconcile.reconcile` against
        the limits the next tick observes."""
        p = self.ports
        try:
            saved = p.journal.read_intent()
            if not saved:
                return
            if saved.get("run_id") != self.run_id:  # a run killed mid-tick: reconcile it
                if self.foreign_intent is None:
                    self.foreign_intent = (saved, [action_from_dict(d)
                                                   for d in saved["actions"]])
                return
            state = (EngineState.from_dict(saved["state"], self.engine_config)
                     if saved.get("state") else None)
            actions = [action_from_dict(d) for d in saved["actions"]]
            routes, local, apps = saved["routes"], saved.get("local", {}), saved["apps"]
            now_s = float(saved["now_s"])
        except UNUSABLE as exc:
            self.notices.append(p.journal.discard_intent(
                f"{unusable(exc)}: the actions it held were not re-sent (their results "
                f"are unknown; see the containers' limits and `prescale events`)"))
            return
        if state is not None:
            self.engine.state = state
            self.last_action = dict(saved["state"].get("last_action", self.last_action))
            self.seen = dict(saved["state"].get("seen", self.seen))
        results = p.actuation.apply(actions, routes, local)
        out = [rec.to_dict(rec.ActionRecord.of(a, results[a.action_id],
                                               "resumed after a coordinator restart",
                                               apps.get(a.container, ""),
                                               Verdict.GRANTED)) for a in actions]
        self.engine.settle(now_s, [(a, results[a.action_id]) for a in actions],
                           live=list(apps))
        p.allocator.confirm(confirmed(actions, results))
        if self._append(out, now_s):
            self._write("checkpoint", p.checkpoint.save, self.state(), now_s=now_s)
            self._write("in-flight intent", p.journal.clear_intent, now_s=now_s)

    def _act(self, asks: Sequence[ScalingAction], arb: ArbitrationResult, commit: bool,
             routes: Mapping[str, str], local: Mapping[str, str], apps: Mapping[str, str]):
        """Apply what the allocator granted (reclaims from idle containers first), in auto
        mode; turn every verdict into a result and a logged action with its explanation.
        Returns the asks' results (in order), the records, the reclaims with theirs, and
        what was really set (for the allocator)."""
        act = self.ports.actuation
        verdicts = {v.action_id: v for v in arb.verdicts}
        applied: dict[str, ActionResult] = {}
        out: list[dict[str, Any]] = []
        dropped: set[str] = set()
        reclaimed: list[tuple[ScalingAction, ActionResult]] = []
        confirmed_: list[tuple[str, str, float]] = []
        if commit and arb.reclaims:
            got = act.apply(list(arb.reclaims), routes, local)
            for a in arb.reclaims:
                r = got[a.action_id]
                reclaimed.append((a, r))
                out.append(rec.to_dict(rec.ActionRecord.of(
                    a, r, arb.explanations.get(a.action_id, ""), apps.get(a.container, ""),
                    Verdict.GRANTED)))
                if r.status is not ResultStatus.APPLIED:
                    dropped.update(arb.reclaim_dependent)
            confirmed_ += confirmed(arb.reclaims, got)
        granted = [a for a in arb.granted(asks) if a.action_id not in dropped]
        if commit and granted:
            applied = act.apply(granted, routes, local)
        results = []
        for a in asks:
            v = verdicts[a.action_id]
            why = arb.explanations.get(a.action_id, v.reason)
            r = applied.get(a.action_id)
            if r is None:
                if a.action_id in dropped:
                    status, note = ResultStatus.DEFERRED, "its reclaim failed"
                elif v.verdict is Verdict.GRANTED:
                    status, note = ResultStatus.DRY_RUN, "recommend mode: nothing touched"
                elif v.verdict is Verdict.DEFERRED:
                    status, note = ResultStatus.DEFERRED, "not applied"
                else:
                    status, note = ResultStatus.DENIED, "not applied"
                r = ActionResult(a.action_id, a.container, a.tier, status, a.old_limit,
                                 a.old_limit, note)
            results.append(r)
            out.append(rec.to_dict(rec.ActionRecord.of(a, r, why, apps.get(a.container, ""),
                                                       v.verdict)))
            self.last_action[a.container] = {
                "ts_s": a.now_s, "tier": a.tier.value, "old_limit": r.old_limit,
                # a dry run: what it would have set (nothing was)
                "new_limit": a.new_limit if r.status is ResultStatus.DRY_RUN else r.new_limit,
                "requested_limit": a.new_limit, "result": r.status.value,
            }
        confirmed_ += confirmed(asks, applied)
        return results, out, reclaimed, confirmed_


_COOLDOWN = re.compile(r"; blocked: (scale-out )?in cooldown \(([^)]*) left\)")


def recommended_earlier(reason: str) -> str:
    """In recommend mode the cooldown a guard names started with a recommendation (a dry
    run: nothing was changed): it is kept, so that a standing recommendation is repeated
    once per cooldown as an applied action would be, and the outcome tracker judges it
    (and the thresholds learn from it) at the same pace as in auto mode. Only the words
    change. Example: ``"…; blocked: in cooldown (6.0 s left)"`` → ``"…; recommended
    earlier (not applied: recommend mode): recommended again after the cooldown (6.0 s
    left)"``."""
    return _COOLDOWN.sub(lambda m: f"; {m[1] or ''}recommended earlier (not applied: "
                                   f"recommend mode): recommended again after the cooldown "
                                   f"({m[2]} left)", reason)


def _limits(containers: Sequence[str], pred: Prediction) -> dict[str, dict[str, float]]:
    return {n: {t.value: float(pred.tiers[t].limit[i]) for t in pred.tiers}
            for i, n in enumerate(containers)}


def confirmed(actions: Sequence[ScalingAction], results: Mapping[str, ActionResult]
              ) -> list[tuple[str, str, float]]:
    """(container, tier, limit really set) of the applied ones, for the allocator."""
    return [(a.container, a.tier.value, results[a.action_id].new_limit) for a in actions
            if a.action_id in results and results[a.action_id].status is ResultStatus.APPLIED]


def action_from_dict(d: Mapping[str, Any]) -> ScalingAction:
    """Back from JSON, where inf and nan were written as null (unlimited, no estimate)."""
    import math

    fix = {k: (math.inf if k in ("old_limit", "time_to_limit_s") else math.nan)
           for k, v in d.items() if v is None}
    return ScalingAction(**{**d, **fix, "tier": Tier(d["tier"]),
                            "kind": ActionKind(d["kind"])})


__all__ = ["Laps", "Ports", "Tick", "TickHooks", "action_from_dict", "confirmed"]
