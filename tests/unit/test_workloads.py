"""A policy per workload (app/core/workloads.py): which workload a container gets, the
precedence of its bounds (container > workload > app > global), what a workload holds
back in the live tick, and `prescale describe` on a real tick's status."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prescale.app.core.engine import EngineConfig
from prescale.app.core.workloads import bound_sources, recommendation
from prescale.app.loop.tick import Tick
from prescale.app.settings import ConfigError, Settings, load_settings
from tests.loop_ports import MiB, leak_window, mem_ports, shard

GiB = 1024 * MiB
PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]

WORKLOADS = [
    {"name": "shop", "app": "shop", "mode": "recommend", "memory_max_bytes": 4 * GiB},
    {"name": "web", "container": "web-*", "cpu_max_cores": 2.0},
    {"name": "canary", "container": "web-canary-*", "app": "shop", "memory_max_bytes": GiB},
]
POLICY = {"memory_max_bytes": 8 * GiB, "app_bounds": {"shop": {"memory_min_bytes": 64 * MiB}},
          "container_bounds": {"web-9": {"memory_max_bytes": 512 * MiB}}}


def guards():
    return EngineConfig.from_settings(
        Settings(workloads=WORKLOADS, policy=POLICY)).policy.guards


@pytest.mark.parametrize("container, app, workload, memory, sources", [
    # the name match beats the app match; bounds: workload > app > global, per field
    ("web-1", "shop", "web", (64 * MiB, 8 * GiB), ("app", "global")),
    # two name matches: the first in the file wins (web, not the later canary)
    ("web-canary-1", "shop", "web", (64 * MiB, 8 * GiB), ("app", "global")),
    ("db-1", "shop", "shop", (64 * MiB, 4 * GiB), ("app", "workload shop")),
    ("web-9", "shop", "web", (64 * MiB, 512 * MiB), ("app", "container")),
    ("cache-1", "cache", None, (32 * MiB, 8 * GiB), ("global", "global")),
])
def test_which_workload_and_whose_bounds(container, app, workload, memory, sources):
    g = guards()
    w = g.workload_of(container, app)
    assert (w.name if w else None) == workload
    assert g.bounds_for(container, app, "memory") == memory
    assert bound_sources(g, container, app, "memory") == sources


def test_canary_alone_wins_over_the_app_match():
    wl = [WORKLOADS[0], WORKLOADS[2]]  # no generic web-*: the canary glob is the most specific
    g = EngineConfig.from_settings(Settings(workloads=wl, policy=POLICY)).policy.guards
    assert g.workload_of("web-canary-1", "shop").name == "canary"
    assert g.bounds_for("web-canary-1", "shop", "memory") == (64 * MiB, GiB)
    assert g.workload_of("web-canary-1", "other") is None  # container and app must both match


def test_bad_workloads_are_refused_naming_the_field(tmp_path):
    for body, needle in [
        ('[[workloads]]\nname = "x"\n', "give container (a glob), labels, app or several"),
        ('[[workloads]]\nname = "x"\napp = "a"\nmode = "sometimes"\n', "workloads.0.mode"),
        ('[[workloads]]\nname = "x"\napp = "a"\n[[workloads]]\nname = "x"\napp = "b"\n',
         "names must be unique, repeated: x"),
        ('[[workloads]]\nname = "x"\napp = "a"\nmemory_min_bytes = "2GiB"\n'
         'memory_max_bytes = "1GiB"\n', "memory min 2147483648 is above max 1073741824"),
    ]:
        cfg = tmp_path / "c.toml"
        cfg.write_text(body)
        with pytest.raises(ConfigError, match=re.escape(needle)):
            load_settings(cfg)


def _tick(ports, workloads) -> Tick:
    s = Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                 policy={"cooldown_s": 0.0}, workloads=workloads)
    return Tick(EngineConfig.from_settings(s), ports, run_id="r", mode="auto",
                window_steps=12, now=lambda: 0.0)


@pytest.mark.parametrize("workload, applied, reason", [
    ({"name": "w", "container": "w"}, True, None),
    ({"name": "w", "container": "w", "mode": "recommend"}, False,
     "workload w is in recommend mode: memory 256.0 MiB → "),
    ({"name": "w", "app": "app", "mode": "off"}, False, "workload w is in off mode"),
    ({"name": "w", "container": "w", "controlled": ["cpu"]}, False,
     "workload w does not control memory (controls cpu): not applied"),
])
def test_the_tick_obeys_the_containers_workload(workload, applied, reason):
    ports = mem_ports()
    ports.telemetry.next = [shard(leak_window())]  # w of app "app", leaking to its limit
    summary = _tick(ports, [workload]).run_once()
    assert summary["actions"] == (["applied"] if applied else [])
    decisions = [r for r in ports.journal.records if r["kind"] == "decision"]
    assert decisions, "the decision is logged either way"
    if reason:
        assert reason in decisions[0]["reason"] and decisions[0]["new_limit"] is None


@pytest.mark.parametrize("workload, tracked", [
    ({"name": "w", "container": "w", "mode": "recommend"}, 1),
    ({"name": "w", "app": "app", "mode": "off"}, 0),
    ({"name": "w", "container": "w", "controlled": ["cpu"]}, 0),
])
def test_a_recommend_mode_workloads_scale_up_is_judged_as_a_recommendation(workload, tracked):
    """Held back by its workload's recommend mode, a scale-up is still judged (as the
    global recommend mode's dry runs are): one open recommendation per container and
    tier, not one per tick; off mode and an uncontrolled tier recommend nothing."""
    ports = mem_ports()
    tick = _tick(ports, [workload])
    for k in range(3):  # the same leak, three ticks: proposed (and held) each time
        ports.telemetry.next = [shard(leak_window(t0=1_700_000_000.0 + k))]
        tick.run_once()
    ups = [(u.container, u.tier.value, u.applied, u.old_limit)
           for u in tick.engine.state.outcomes.pending]
    assert ups == [("w", "memory", False, 256 * MiB)] * tracked
    lead = tick.engine.state.outcomes.lead_pending
    assert [(u.container, u.applied) for u in lead] == [("w", False)] * tracked
    assert not [r for r in ports.journal.records if r["kind"] == "action"]


def test_a_workloads_max_caps_the_scale_up():
    ports = mem_ports()
    ports.telemetry.next = [shard(leak_window())]
    _tick(ports, [{"name": "w", "container": "w", "memory_max_bytes": 300 * MiB}]).run_once()
    (action,) = [r for r in ports.journal.records if r["kind"] == "action"]
    assert action["new_limit"] == 300 * MiB  # would have been more without the workload


def test_recommendation_worked_example():
    lower, target, upper = recommendation(200 * MiB, 300 * MiB, 32 * MiB, 2 * GiB, 0.2, 0.1)
    assert (lower, target, upper) == pytest.approx((220 * MiB, 360 * MiB, 2 * GiB))
    assert recommendation(200.0, 100.0, 0.0, 1e9, 0.5, 0.0)[1] == 300.0  # usage above forecast
    assert math.isnan(recommendation(math.nan, math.nan, 0, 1, 0.1, 0.1)[0])


def test_policies_and_describe_on_a_real_ticks_status(tmp_path):
    """One real tick writes status.json through the loop's own file journal; then the CLI
    as a user runs it. The container carries Docker-style policy labels (one a typo),
    laid over the [[workloads]] entry it matches."""
    from prescale.app.store.decision_log import DecisionLog
    from prescale.app.store.history import HistoryStore
    from prescale.app.store.loop_files import FileJournal

    wl = [{"name": "guarded", "app": "app", "mode": "recommend", "memory_max_bytes": "1Gi",
           "policy": "proportional", "weight": 2}]
    labels = {"prescale.enable": "true", "prescale.memory.max": "768Mi",
              "prescale.tenant": "team-w", "prescale.cpu.mx": "1"}
    ports = mem_ports()
    ports.journal = FileJournal(tmp_path, DecisionLog(HistoryStore(str(tmp_path / "h")), "r"))
    sh = shard(leak_window())
    ports.telemetry.next = [type(sh)(**{**sh.__dict__, "labels": {"w": labels}})]
    _tick(ports, wl).run_once()
    cfg = tmp_path / "c.toml"
    cfg.write_text('mode = "auto"\n[[workloads]]\nname = "guarded"\napp = "app"\n'
                   'mode = "recommend"\nmemory_max_bytes = "1Gi"\npolicy = "proportional"\n'
                   'weight = 2\n')
    env = {**os.environ, "PRESCALE_DATA_DIR": str(tmp_path)}

    def run(*args):
        return subprocess.run([PRESCALE, *args, "-c", str(cfg)], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=60)

    p = run("policies", "--json")
    assert p.returncode == 0, p.stderr
    typo = "label prescale.cpu.mx is not a policy label: ignored (did you mean prescale.cpu.max?)"
    common = {"matches": "app app", "mode": "recommend", "controlled": "all",
              "policy": "proportional", "weight": 2.0}
    assert json.loads(p.stdout)["workloads"] == [
        {"name": "guarded", **common, "tenant": None, "problems": [], "governs": []},
        {"name": "guarded+labels", **common, "tenant": "team-w", "problems": [typo],
         "governs": ["w"]}]
    p = run("policies")  # the table names the typo
    assert p.returncode == 0 and "guarded+labels: " + typo in " ".join(p.stdout.split())
    p = run("describe", "w", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert (d["workload"], d["mode"], d["app"]) == ("guarded+labels", "recommend", "app")
    assert (d["policy"], d["tenant"], d["weight"], d["problems"]) == (
        "proportional", "team-w", 2.0, [typo])
    mem = d["tiers"]["memory"]
    assert mem["bounds"] == [32 * MiB, 768 * MiB]
    assert mem["bounds_from"] == ["global", "workload guarded+labels"]
    assert mem["lower"] <= mem["target"] <= mem["upper"] == 768 * MiB
    margin = EngineConfig.from_settings(load_settings(cfg)).policy.margin_fraction
    assert mem["target"] == pytest.approx(
        min(max(mem["forecast"], mem["usage"]) * (1 + margin), 768 * MiB))
    assert "recommend mode: nothing is applied" in mem["reason"]
    p = run("describe", "w")  # the table a user reads
    assert p.returncode == 0 and "workload guarded+labels (app app)" in p.stdout
    assert "lower bound" in p.stdout and "upper bound" in p.stdout
    assert "Scale-up:  proportional" in p.stdout and "team-w (risk weight 2)" in p.stdout
    p = run("describe", "nobody")
    assert p.returncode == 1
    assert "no container 'nobody' in the last tick (containers: w)" in p.stderr
    from prescale.app.store.decision_log import read_log

    (dec,) = read_log(HistoryStore(str(tmp_path / "h")), kinds={"decision"})
    assert "workload guarded+labels is in recommend mode" in dec["reason"]


def test_a_workloads_threshold_pins_its_containers():
    """p_fail of the leaker is ~1: a workload threshold above it keeps it from acting."""
    from prescale.app.core.engine import Engine
    from prescale.app.core.thresholds import ThresholdBook

    cfg = EngineConfig.from_settings(Settings(workloads=[
        {"name": "calm", "container": "w-*", "threshold": 0.95},
        {"name": "pinned", "container": "x-*", "threshold": 0.3}],
        thresholds={"per_app": {"x-1": 0.8}}))
    thr = Engine(cfg).thresholds(ThresholdBook(), ["w-1", "x-1", "x-2", "y"], ["a"] * 4)
    assert list(thr["memory"]) == [0.95, 0.8, 0.3, ThresholdBook().value("memory")]


def test_labels_match_through_the_loop_and_rank_between_name_and_app():
    """A Docker-labelled container (its labels travel in the shard) gets the label
    workload over the app one; a name glob still beats both."""
    wl = [{"name": "by-app", "app": "app", "mode": "auto"},
          {"name": "by-label", "labels": {"prescale.tier": "batch"}, "mode": "recommend"},
          {"name": "by-name", "container": "x*", "mode": "auto"}]
    g = EngineConfig.from_settings(Settings(workloads=wl)).policy.guards
    batch = {"prescale.tier": "batch", "prescale.enable": "true"}
    assert g.workload_of("w", "app", batch).name == "by-label"
    assert g.workload_of("w", "app", {"prescale.tier": "web"}).name == "by-app"
    assert g.workload_of("x1", "app", batch).name == "by-name"
    assert g.workload_of("w", "app", batch).describe_match() == "labels prescale.tier=batch"
    ports = mem_ports()
    sh = shard(leak_window())
    ports.telemetry.next = [type(sh)(**{**sh.__dict__, "labels": {"w": batch}})]
    summary = _tick(ports, wl).run_once()
    assert summary["actions"] == []  # held back by the label's recommend mode
    (d,) = [r for r in ports.journal.records if r["kind"] == "decision"]
    assert "workload by-label is in recommend mode" in d["reason"]
