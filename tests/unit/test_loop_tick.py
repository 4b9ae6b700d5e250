"""The tick (app/loop/tick.py) over in-memory ports: one write per state file per tick, a
resumed intent applies nothing twice, and /v1/recommend decides what the loop decides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.engine import EngineConfig
from prescale.app.core.sample import M, Tier
from prescale.app.loop import records as rec
from prescale.app.loop.tick import Tick
from prescale.app.settings import Settings
from tests.loop_ports import MiB, leak_window, mem_ports, shard


def _settings(kind: str = "preemptive_buffer", **kw) -> Settings:
    return Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                    policy={"cooldown_s": 0.0, "kind": kind}, **kw)


def _tick(ports, s: Settings | None = None, run_id: str = "r") -> Tick:
    s = s or _settings()
    return Tick(EngineConfig.from_settings(s), ports, run_id=run_id, mode=s.mode.value,
                window_steps=12, now=lambda: 0.0)


def test_a_tick_that_applies_writes_each_state_file_once_and_logs_before_acting():
    ports = mem_ports()
    ports.telemetry.next = [shard(leak_window())]
    summary = _tick(ports).run_once()
    assert summary["actions"] == ["applied"]
    assert ports.checkpoint.saves == 1  # coordinator.json
    assert ports.journal.intent_writes == 1 and ports.journal.intent is None  # cleared
    assert ports.allocator.confirms == 1  # pool.json
    assert ports.thresholds.learns == 1  # thresholds.json (one locked write)
    assert ports.journal.status_writes == 1
    kinds = [r["kind"] for r in ports.journal.records]
    assert kinds.index("decision") < kinds.index("action")  # the decision is logged first
    (action,) = [r for r in ports.journal.records if r["kind"] == "action"]
    assert action["result"] == "applied" and action["new_limit"] > 256 * MiB
    for r in ports.journal.records:  # every record is one of the typed kinds
        assert rec.to_dict(rec.parse(r)) == {k: r[k] for k in rec.to_dict(rec.parse(r))}


def test_a_quiet_tick_writes_no_intent():
    ports = mem_ports()
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0))]
    summary = _tick(ports).run_once()
    assert summary["actions"] == [] and ports.journal.intent_writes == 0
    assert ports.checkpoint.saves == 1 and ports.allocator.confirms == 1


def test_a_crash_after_the_intent_resumes_with_the_same_ids_and_applies_nothing_twice():
    ports = mem_ports()
    ports.telemetry.next = [shard(leak_window())]
    t = _tick(ports)

    class Boom(Exception):
        pass

    real_apply = ports.actuation.apply

    def apply_then_crash(actions, routes, local):
        real_apply(actions, routes, local)
        raise Boom("killed after the actuator applied, before the results were logged")

    ports.actuation.apply = apply_then_crash
    with pytest.raises(Boom):
        t.run_once()
    intent = ports.journal.intent
    assert intent is not None and len(intent["actions"]) == 1
    ids = [a["action_id"] for a in intent["actions"]]
    assert ports.actuation.calls == 1
    # a restarted coordinator: a new Tick over the same (durable) ports
    ports.actuation.apply = real_apply
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0, t0=1_700_000_060.0))]
    t2 = _tick(ports)
    t2.run_once()
    assert ports.actuation.calls == 1  # re-sent by id, not applied again
    resumed = [r for r in ports.journal.records if r["kind"] == "action"
               and "resumed after a coordinator restart" in r["reason"]]
    assert [r["action_id"] for r in resumed] == ids
    assert ports.journal.intent is None
    # the cooldowns the resumed action started are in the engine state it resumed with
    assert any(k.startswith("w/memory") for k in t2.engine.state.policy.last_action_s)


def test_recommend_gives_the_loops_action_for_the_same_window_settings_and_thresholds():
    from prescale.app.api_models import PredictRequest
    from prescale.app.serve_app import PredictionService
    from prescale.app.serve_jobs import window_of

    for kind in ("preemptive_buffer", "proportional", "multi_tier"):
        s = _settings(kind, models={"enabled": False})
        ports = mem_ports()
        w = leak_window()
        ports.telemetry.next = [shard(w)]
        t = _tick(ports, s)
        t.run_once()
        loop = [(r["tier"], r["requested_limit"]) for r in ports.journal.records
                if r["kind"] == "action"]
        svc = PredictionService(s)
        cols = ("ts_s", "memory_usage_bytes", "memory_working_set_bytes",
                "memory_limit_bytes", "cpu_usage_s_total", "cpu_quota_cores")
        series = {"containers": [{"name": "w", "app": "app", "series": {
            c: [float(v) for v in w[0][:, M[c]]] for c in cols}}],
            "now_s": float(w[0, -1, M["ts_s"]])}
        req = PredictRequest.model_validate(series)
        job = window_of(req)
        out = svc.recommend_response(job, svc.predict_jobs([job])[0])
        (row,) = out["recommendations"]
        api = [(d["action"]["tier"], d["action"]["new_limit"]) for d in row["decisions"]
               if d["action"] is not None]
        assert loop and api == loop, (kind, loop, api)
        assert out["policy"] == kind


def test_parse_refuses_an_unknown_kind_and_a_missing_field():
    with pytest.raises(ValueError, match="unknown kind 'nope'"):
        rec.parse({"kind": "nope"})
    with pytest.raises(ValueError, match="without 'reason'"):
        rec.parse({"kind": "event", "ts_s": 1.0, "container": "c", "app": "", "event": "x"})
    r = rec.parse({"kind": "decision", "ts_s": 1.0, "container": "c", "app": "a",
                   "tier": "memory", "p_fail": 0.5, "threshold": 0.5, "time_to_limit_s": None,
                   "forecast": None, "old_limit": None, "new_limit": None, "action_id": None,
                   "reason": "r", "run_id": "x", "mode": "auto"})
    assert r.old_limit == math.inf and math.isnan(r.forecast) and r.new_limit is None
    assert np.isfinite(r.ts_s) and Tier(r.tier) is Tier.MEMORY


def test_a_killed_runs_intent_is_reconciled_against_the_kernel_and_logged():
    """inflight.json of run "up-1" (killed outright mid-tick): w's 256 → 512 MiB reached
    the kernel, v's did not; the first tick of the next run logs both, then clears it."""
    from prescale.app.core.actions import ScalingAction

    def resize(name: str, action_id: str) -> dict:
        return ScalingAction(action_id, 1_699_999_990.0, name, Tier.MEMORY, 256 * MiB,
                             512 * MiB, 0.9, 0.5, 20.0, 400 * MiB, "forecast above").to_dict()

    ports = mem_ports()
    ports.journal.intent = {"run_id": "up-1", "now_s": 1_699_999_990.0, "tick": 7,
                            "actions": [resize("w", "w/memory@7"), resize("v", "v/memory@7")],
                            "routes": {}, "apps": {"w": "shop", "v": "shop"}}
    w = leak_window(per_step_mib=0.0, limit_mib=512)  # the kernel holds the new limit
    v = leak_window(per_step_mib=0.0, limit_mib=256)  # still the old one
    ports.telemetry.next = [shard(np.concatenate([w, v]), names=("w", "v"))]
    _tick(ports, run_id="up-2").run_once()
    assert ports.journal.intent is None  # reconciled, then cleared
    got = {r["container"]: r for r in ports.journal.records
           if r["kind"] == "action" and r["action_id"].endswith("@7")}
    assert got["w"]["result"] == "applied" and got["w"]["new_limit"] == 512 * MiB
    assert "reached the kernel before run up-1 was killed" in got["w"]["reason"]
    assert got["v"]["result"] == "failed" and got["v"]["new_limit"] == 256 * MiB
    assert "did not reach the kernel" in got["v"]["reason"]
    assert got["w"]["app"] == "shop"


def test_a_full_disk_degrades_the_tick_instead_of_stopping_protection():
    """The journal raises ENOSPC: the leaker's scale-up is still applied, the records
    wait in memory, the summary says DEGRADED with the reason; when the disk is back the
    waiting records are written first and the recovery is logged."""
    ports = mem_ports()
    t = _tick(ports)
    ports.journal.full = True
    ports.telemetry.next = [shard(leak_window())]
    summary = t.run_once()
    assert summary["actions"] == ["applied"]  # protected anyway
    assert ports.journal.records == [] and ports.journal.intent_writes == 0
    assert "decision log: [Errno 28] No space left on device" in summary["degraded"]["reason"]
    waiting = summary["degraded"]["buffered_records"]
    assert waiting >= 3  # the decision, the action, the degraded event
    ports.journal.full = False
    ports.telemetry.next = [shard(leak_window(per_step_mib=0.0, t0=1_700_000_060.0))]
    summary = t.run_once()
    assert summary["degraded"] is None
    kinds = [(r["kind"], r.get("event")) for r in ports.journal.records]
    assert ("event", "degraded") in kinds and ("event", "degraded_over") in kinds
    assert [r["result"] for r in ports.journal.records if r["kind"] == "action"] == ["applied"]
    (over,) = [r for r in ports.journal.records if r.get("event") == "degraded_over"]
    assert f"{waiting} buffered records written, 0 dropped" in over["reason"]


def test_degraded_holds_back_scale_downs_and_what_needs_their_room():
    from prescale.app.core.actions import PoolVerdict, ScalingAction, Verdict
    from prescale.app.core.contention import ArbitrationResult
    from prescale.app.loop.degraded import hold_back_scale_downs

    def act(name: str, old: float, new: float) -> ScalingAction:
        return ScalingAction(f"{name}@1", 0.0, name, Tier.MEMORY, old, new, 0.9, 0.5, 1.0,
                             new, "test")

    up, down, needs = act("up", 1.0, 2.0), act("down", 2.0, 1.0), act("needs", 1.0, 3.0)
    reclaim = act("idle", 4.0, 2.0)
    arb = ArbitrationResult([PoolVerdict(a.action_id, Verdict.GRANTED, "ok")
                             for a in (up, down, needs)], [reclaim], {},
                            reclaim_dependent=[needs.action_id])
    held = hold_back_scale_downs(arb, [up, down, needs], "decision log: disk full")
    assert [v.verdict for v in held.verdicts] == [Verdict.GRANTED, Verdict.DEFERRED,
                                                  Verdict.DEFERRED]
    assert held.verdicts[1].reason == "degraded: decision log: disk full"
    assert held.reclaims == [] and held.granted([up, down, needs]) == [up]
