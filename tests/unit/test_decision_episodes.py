"""The decision log records a held-back decision once per episode (app/loop/episodes.py),
through the real tick over in-memory ports: the first tick of a run of the same
container/tier/why-not, and a closing row with the count; a workload held back starts
no cooldown; recommend mode's rows carry what would have been set."""

from __future__ import annotations

import pytest

from prescale.app.core.engine import EngineConfig
from prescale.app.loop import records as rec
from prescale.app.loop.episodes import why_not
from prescale.app.loop.tick import Tick
from prescale.app.settings import Settings
from tests.loop_ports import leak_window, mem_ports, shard

T0 = 1_700_000_000.0
NOW0 = T0 + 55.0  # the first tick's now_s: the last sample of leak_window(t0=T0)


def _tick(ports, mode: str = "auto", **kw) -> Tick:
    s = Settings(mode=mode, predictor={"horizon_s": 60.0, "min_samples": 5},
                 policy={"cooldown_s": 10.0}, **kw)
    return Tick(EngineConfig.from_settings(s), ports, run_id="r", mode=mode,
                window_steps=12, now=lambda: 0.0)


def _run(t: Tick, ports, ks, **window) -> None:
    """One tick a second: tick k sees the leak's window shifted by k seconds."""
    for k in ks:
        ports.telemetry.next = [shard(leak_window(t0=T0 + k, **window))]
        t.run_once()


def _decisions(ports) -> list[dict]:
    return [r for r in ports.journal.records if r["kind"] == "decision"]


def test_why_not_is_the_blocking_part_numbers_aside():
    assert why_not("p_fail 0.97 >= 0.50: forecast 140 MiB; buffer 2 MiB; blocked: in "
                   "cooldown (9.0 s left)") == "blocked: in cooldown (# s left)"
    assert why_not("p_fail 0.97 >= 0.50: …; workload w is in recommend mode: memory "
                   "256.0 MiB → 320.0 MiB not applied") == (
        "workload w is in recommend mode: memory # MiB → # MiB not applied")
    assert why_not("a; blocked: in cooldown (1.0 s left)") == why_not(
        "b; blocked: in cooldown (8.5 s left)")


def test_a_cooldown_is_logged_once_per_episode_and_every_tick_is_counted():
    """The module docstring's worked example, through the real tick: an action at 0,
    10 and 20 (cooldown 10 s); in between, one row at the start of the cooldown and one
    closing row with the count; the held decision of tick 21 is a one-tick episode."""
    ports = mem_ports()
    t = _tick(ports)
    _run(t, ports, range(22))
    assert t.close() == []  # the last episode lasted one tick: its first row said it all
    rows = [(r["ts_s"] - NOW0, r["action_id"] is not None, r["repeats"], r["episode_s"])
            for r in _decisions(ports)]
    assert rows == [(0, True, 0, None), (1, False, 0, NOW0 + 1), (9, False, 7, NOW0 + 1),
                    (10, True, 0, None), (11, False, 0, NOW0 + 11), (19, False, 7, NOW0 + 11),
                    (20, True, 0, None), (21, False, 0, NOW0 + 21)]
    # honest counts: 22 ticks, one decision each (before episodes: 22 rows)
    assert sum(1 + r["repeats"] for r in _decisions(ports)) == 22
    held = [r["reason"] for r in _decisions(ports) if r["action_id"] is None]
    assert held[0].endswith("; blocked: in cooldown (9.0 s left)")
    assert held[1].endswith("; blocked: in cooldown (1.0 s left) (held 9 ticks, 8 s since "
                            f"{rec_time(NOW0 + 1)}; 7 not logged); ended: an action was "
                            "proposed")
    assert len([r for r in ports.journal.records if r["kind"] == "action"]) == 3
    for r in ports.journal.records:  # the rows are records of the one typed schema
        assert rec.to_dict(rec.parse(r)) == {k: r[k] for k in rec.to_dict(rec.parse(r))}


def rec_time(ts_s: float) -> str:
    from prescale.app.timeparse import format_time

    return format_time(ts_s)


def test_a_held_back_workload_starts_no_cooldown_and_its_episode_ends_when_p_fail_falls():
    """A workload in recommend mode under a global auto: its decision is held back every
    tick for the same reason (never "in cooldown": held back, nothing was asked, so no
    cooldown starts), logged once; the episode closes when p_fail falls."""
    ports = mem_ports()
    t = _tick(ports, workloads=[{"name": "w", "container": "w", "mode": "recommend"}])
    _run(t, ports, range(5))
    assert "w/memory" not in t.engine.state.policy.last_action_s
    assert "w/memory" not in t.engine.state.policy.last_direction
    _run(t, ports, [5], per_step_mib=0.0)  # flat: p_fail below the threshold
    rows = _decisions(ports)
    assert [(r["ts_s"] - NOW0, r["repeats"]) for r in rows] == [(0, 0), (4, 3)]
    assert all("workload w is in recommend mode" in r["reason"] for r in rows)
    assert not any("cooldown" in r["reason"] for r in rows)
    assert rows[1]["reason"].endswith("ended: p_fail fell below the threshold")
    assert [r for r in ports.journal.records if r["kind"] == "action"] == []


def test_an_episode_ends_when_its_container_is_not_reported():
    ports = mem_ports()
    t = _tick(ports)
    _run(t, ports, range(4))  # action at 0, held at 1, 2, 3
    ports.telemetry.next = [shard(leak_window(t0=T0 + 4, per_step_mib=0.0), names=("x",))]
    t.run_once()
    last = _decisions(ports)[-1]
    assert (last["ts_s"] - NOW0, last["repeats"]) == (3, 1)
    assert last["reason"].endswith("ended: the container was not reported")


def test_recommend_mode_dry_runs_carry_the_recommended_limit_and_the_cooldown_says_so():
    """Recommend mode: the action row of a dry run says what would have been set (not
    new = old), so does the status; the cooldown after it is kept (a standing
    recommendation is repeated once per cooldown, so the outcome tracker judges it at
    auto mode's pace) and the log says "recommended earlier", not "blocked"."""
    ports = mem_ports()
    t = _tick(ports, mode="recommend")
    _run(t, ports, range(12))
    actions = [r for r in ports.journal.records if r["kind"] == "action"]
    assert [a["ts_s"] - NOW0 for a in actions] == [0, 10]  # once per cooldown
    for a in actions:
        assert a["result"] == "dry_run"
        assert a["new_limit"] == a["requested_limit"] > a["old_limit"]
    decided = [r for r in _decisions(ports) if r["action_id"] is not None]
    assert [d["new_limit"] for d in decided] == [a["new_limit"] for a in actions]
    (row,) = ports.journal.status["containers"]
    assert row["last_action"]["new_limit"] == actions[-1]["new_limit"]
    held = [r["reason"] for r in _decisions(ports) if r["action_id"] is None]
    assert len(held) == 3  # first at 1, closing at 9, first at 11
    assert all("recommended earlier (not applied: recommend mode): recommended again "
               "after the cooldown" in h and "blocked" not in h for h in held)
    assert ports.actuation.calls == 0


def test_an_open_episode_survives_a_restart(tmp_path):
    """The episodes are checkpointed (the live loop's JSON file: inf/nan come back as
    null): a restarted loop neither logs the first row again nor loses the count."""
    from prescale.app.store.loop_files import FileCheckpoint

    ports = mem_ports()
    ports.checkpoint = FileCheckpoint(tmp_path / "coordinator.json")
    _run(_tick(ports), ports, range(10))  # action at 0, held from 1 to 9
    t2 = _tick(ports)  # a new coordinator over the same (durable) ports
    _run(t2, ports, [10])  # the action at 10 closes the episode read back from the file
    rows = [(r["ts_s"] - NOW0, r["repeats"]) for r in _decisions(ports)]
    assert rows == [(0, 0), (1, 0), (9, 7), (10, 0)]
    for r in _decisions(ports):
        rec.parse(r)


def test_the_loop_stopping_closes_the_open_episodes_once():
    ports = mem_ports()
    t = _tick(ports)
    _run(t, ports, range(5))
    (row,) = t.close()
    assert (row["ts_s"] - NOW0, row["repeats"]) == (4, 2)
    assert row["reason"].endswith("ended: the loop stopped") and row in ports.journal.records
    assert t.close() == [] and ports.checkpoint.state["episodes"] == []


def test_a_decision_record_of_an_older_log_parses_without_the_episode_fields():
    ports = mem_ports()
    _run(_tick(ports), ports, range(1))
    old = {k: v for k, v in _decisions(ports)[0].items() if k not in ("episode_s", "repeats")}
    r = rec.parse(old)
    assert (r.episode_s, r.repeats) == (None, 0)
    with pytest.raises(ValueError, match="without 'reason'"):
        rec.parse({k: v for k, v in old.items() if k != "reason"})
