"""prescale evaluate: baselines' formulas, metrics, scenario ground truth, the CLI."""

from __future__ import annotations

import json
import math
from collections import deque

import numpy as np
import pytest
from typer.testing import CliRunner

from prescale.app.core.sample import Tier
from prescale.app.evaluation import metrics, report, runner, scenarios, trace_grid
from prescale.app.evaluation.baselines import VPA, VPA_VARIANTS, Bounds, FailureRateReactive
from prescale.app.evaluation.baselines.hpa import hpa_desired, hpa_scale_up_limit
from prescale.app.evaluation.baselines.vpa import (
    DecayingHistogram,
    VPAConfig,
    confidence_multiplier,
    oom_bump_bytes,
    vpa_update_allowed,
)
from prescale.app.evaluation.runner import AppliedAction, RunRecord

MIB = 2.0**20


# -- baselines ---------------------------------------------------------------------------


def test_vpa_histogram_bucket_and_percentile() -> None:
    h = DecayingHistogram(1e7, 1e12)
    assert h.bucket(1e8) == 8
    assert h.bucket_start(8) == pytest.approx(1e7 * (1.05**8 - 1) / 0.05)  # 95.49 MB
    h.add(1e8, 1.0, 0.0)
    assert h.percentile(0.9) == pytest.approx(1e7 * (1.05**9 - 1) / 0.05)  # 110.27 MB
    assert h.percentile(0.9) == pytest.approx(110.27e6, rel=1e-3)


def test_vpa_histogram_decay_half_life() -> None:
    h = DecayingHistogram(1e7, 1e12, half_life_s=86_400.0)
    h.add(100e6, 1.0, 0.0)
    h.add(200e6, 1.0, 86_400.0)  # a day later: weighs 2
    assert h.total == pytest.approx(3.0)
    assert h.percentile(0.5) == pytest.approx(h.bucket_start(h.bucket(200e6) + 1))
    assert h.percentile(0.3) == pytest.approx(h.bucket_start(h.bucket(100e6) + 1))
    h.subtract(200e6, 1.0, 86_400.0)
    assert h.total == pytest.approx(1.0)


def test_vpa_oom_bump_and_confidence() -> None:
    assert oom_bump_bytes(256 * MIB) == pytest.approx(356 * MIB)
    assert oom_bump_bytes(1024 * MIB) == pytest.approx(1.2 * 1024 * MIB)
    assert confidence_multiplier(1.0, 1.0, 0.5) == pytest.approx(3.0)
    assert confidence_multiplier(1.0, 1.0, 1.0) == pytest.approx(2.0)
    assert confidence_multiplier(0.001, -2.0, 1 / 288) == pytest.approx(0.603, abs=1e-3)
    assert confidence_multiplier(1.0, 1.0, 0.0) == math.inf


def test_hpa_replica_formula_and_tolerance() -> None:
    assert hpa_desired(3, 0.9, 0.6) == 5
    assert hpa_desired(3, 0.63, 0.6) == 3  # within the 0.1 tolerance
    assert hpa_desired(4, 0.2, 0.6) == 2


def test_hpa_starting_pods_count_as_idle_on_scale_up() -> None:
    # 2 in the spec, 1 ready at 100 % of a 50 % target: r = 2, r' = 2 × 1/2 = 1 → wait
    assert hpa_desired(2, 1.0, 0.5, starting=1) == 2
    assert hpa_desired(2, 1.0, 0.5) == 4  # the same usage with both ready
    assert hpa_desired(2, 0.9, 0.3, starting=1) == 3  # r = 3, r' = 1.5 → ceil(3)
    assert hpa_desired(3, 0.2, 0.6, starting=1) == 1  # scale-down: ceil(1/3 × 2 ready)


def test_hpa_default_scale_up_policy() -> None:
    assert [hpa_scale_up_limit(c) for c in (1, 3, 10)] == [5, 7, 20]


def test_vpa_updater_rule_worked_examples() -> None:
    cfg = VPAConfig()
    h = 3600.0
    assert not vpa_update_allowed(False, False, 11 * h, 0.5, cfg)  # young, in range
    assert vpa_update_allowed(False, False, 13 * h, 0.5, cfg)  # 12 h and ≥ 10 %
    assert not vpa_update_allowed(False, False, 13 * h, 0.05, cfg)
    assert vpa_update_allowed(True, False, 60.0, 0.01, cfg)  # outside [lower, upper]
    assert vpa_update_allowed(False, True, 60.0, 0.2, cfg)  # OOM soon after start
    assert not vpa_update_allowed(False, True, 60.0, 0.0, cfg)  # ... but nothing changes


def test_vpa_min_replicas_gate_by_mode() -> None:
    b = Bounds()
    assert not VPA(b).group_updatable(1) and VPA(b).group_updatable(2)  # defaults
    assert VPA(b, VPA_VARIANTS["vpa_evict"]).group_updatable(1)
    assert VPA(b, VPA_VARIANTS["vpa_inplace"]).group_updatable(1)
    # InPlaceOrRecreate keeps the replica check unless the skip flag is set
    assert not VPA(b, VPAConfig(update_mode="InPlaceOrRecreate")).group_updatable(1)
    assert VPA(b).restarts_on_update and not VPA(b, VPA_VARIANTS["vpa_inplace"]
                                                  ).restarts_on_update
    with pytest.raises(ValueError, match="update_mode"):
        VPAConfig(update_mode="Auto-ish")


def _one_leak() -> scenarios.Scenario:
    return scenarios.leak(n=1, hours=3.0)


def test_vpa_default_never_updates_a_single_replica_leak() -> None:
    """--min-replicas 2: the updater skips a 1-replica pod; an OOM kill restarts the
    container inside the same pod, so the admission controller never runs either:
    the limit stays the user's, and the kills are the static ground truth."""
    s = _one_leak()
    rec = runner.run(s, "vpa")
    static = runner.run(s, "static")
    assert rec.actions == []
    assert (rec.memory_limit_bytes == s.memory_limit_bytes[0]).all()
    assert rec.oom_kill.tolist() == static.oom_kill.tolist() and rec.oom_kill.sum() > 0


def test_vpa_inplace_resizes_before_the_first_kill_without_restart() -> None:
    s = _one_leak()
    first_kill = int(np.flatnonzero(runner.run(s, "static").oom_kill[0])[0])
    rec = runner.run(s, "vpa_inplace")
    ups = [a.step for a in rec.actions if a.tier == "memory" and a.new > a.old]
    assert ups and ups[0] < first_kill
    assert rec.oom_kill.sum() == 0 and rec.evicted.sum() == 0
    f = metrics.figures(rec, s.horizon_s)
    assert f["disruptions"] == 0 and f["failures"] == 0


def test_vpa_evict_restarts_the_leak_and_counts_a_disruption() -> None:
    s = _one_leak()
    rec = runner.run(s, "vpa_evict")
    (steps,) = np.nonzero(rec.evicted[0])
    assert len(steps) > 0 and rec.oom_kill.sum() == 0
    k = int(steps[0])
    down = max(1, math.ceil(s.replica_startup_s / s.step_s))  # 30 s / 60 s → 1 step
    assert rec.down[0, k + 1] and rec.down_evicted[0, k + 1]
    # back up with age 0: the leak starts again from its base, under the new limit
    base = float(s.fixed_bytes[0, 0])
    assert rec.memory_demand_bytes[0, k + 1 + down] == pytest.approx(base)
    assert rec.memory_demand_bytes[0, k] > base
    assert rec.memory_limit_bytes[0, k + 1] > rec.memory_limit_bytes[0, k]
    f = metrics.figures(rec, s.horizon_s)
    assert f["disruptions"] == len(steps) and f["failures"] == 0
    assert f["failure_minutes"] == 0
    assert f["disruption_minutes"] == len(steps) * down * s.step_s / 60


def test_hpa_new_replica_serves_only_after_the_startup_delay() -> None:
    """A burst at step 5 (usage 450 of 512 MiB, 88 % > 70 % × 1.1): the HPA reads it one
    metrics resolution (15 s) later, at step 6, and asks for 2 replicas; the second
    one is in the spec from step 7 but serves from step 6 + 30 s / 15 s = 8: through
    step 7 the one ready replica carries the whole load."""
    t, mib = 20, scenarios.MIB
    load = np.zeros((1, t))
    load[0, 5:] = 350 * mib
    s = scenarios.Scenario(
        name="step", description="", step_s=15.0, names=("c",), apps=("c",), tenants=("",),
        memory_limit_bytes=np.array([512 * mib]), cpu_quota_cores=np.array([1.0]),
        fixed_bytes=np.full((1, t), 100 * mib), growth_bytes=np.zeros((1, t)),
        load_bytes=load, cpu_cores=np.full((1, t), 0.1))
    rec = runner.run(s, "hpa")
    (first,) = [a for a in rec.actions if a.tier == "replicas"][:1]
    assert first.step == 6 and (first.old, first.new) == (1, 2)
    assert rec.replicas[0, 7] == 2 and rec.replicas_ready[0, 7] == 1
    assert rec.memory_demand_bytes[0, 7] == pytest.approx(450 * mib)
    assert rec.replicas_ready[0, 8] == 2
    assert rec.memory_demand_bytes[0, 8] == pytest.approx((100 + 175) * mib)
    f = metrics.figures(rec, s.horizon_s)  # the starting replica is allocated, not used
    assert rec.replicas[0].max() == 2  # the new pod's missing metric counts as 0 %
    used = (100 * 5 + 450 * 3 + 2 * 275 * 12) * mib  # steps 0-4, 5-7 (1 ready), 8-19
    alloc = 512 * mib * (7 + 2 * 13)  # 1 replica through step 6, 2 from step 7
    assert f["slack_memory"] == pytest.approx((alloc - used) / alloc, abs=1e-4)


def test_failure_rate_reactive_share() -> None:
    r = FailureRateReactive(Bounds(), window=10, share=0.5)
    assert r.should_grow(deque([0] * 5 + [1] * 5))
    assert not r.should_grow(deque([0] * 6 + [1] * 4))
    assert Bounds().clamp(Tier.CPU, 1.0 * 1.5) == 1.5


# -- metrics -----------------------------------------------------------------------------


def _tiny_record() -> RunRecord:
    n, t = 1, 4
    rec = RunRecord(
        "tiny", "x", 60.0, 0.0, ["c"],
        memory_demand_bytes=np.array([[50.0, 60.0, 110.0, 80.0]]),
        memory_limit_bytes=np.array([[100.0, 200.0, 200.0, 200.0]]),
        cpu_demand_cores=np.full((n, t), 0.1), cpu_quota_cores=np.ones((n, t)),
        replicas=np.ones((n, t), dtype=int), down=np.zeros((n, t), dtype=bool),
        oom_kill=np.zeros((n, t), dtype=bool), timeout=np.zeros((n, t), dtype=bool),
        disk_full=np.zeros((n, t), dtype=bool))
    rec.actions.append(AppliedAction(0, 0.0, 0, "memory", 100.0, 200.0, True))
    return rec


def test_metrics_slack_lead_time_and_fp() -> None:
    rec = _tiny_record()
    f = metrics.figures(rec, horizon_s=180.0)
    # alloc 100+200+200+200 = 700, used 50+60+110+80 = 300
    assert f["slack_memory"] == pytest.approx(400 / 700, abs=1e-4)
    assert f["median_lead_time_s"] == 120.0  # demand 110 ≥ old limit 100 at step 2
    assert f["false_positive_rate"] == 0.0
    assert f["memory_gib_hours"] == pytest.approx(round(700 * 60 / 3600 / 2**30, 3))
    f2 = metrics.figures(rec, horizon_s=60.0)  # reached after H → not needed within H
    assert f2["false_positive_rate"] == 1.0
    assert metrics.slack(np.array([100.0, 200.0]), np.array([50.0, 60.0])) == pytest.approx(
        190 / 300)


def test_metrics_failure_minutes_and_episodes() -> None:
    rec = _tiny_record()
    rec.down[0, 1] = True
    rec.oom_kill[0, 0] = True
    rec.timeout[0] = [False, True, True, False]
    f = metrics.figures(rec, 180.0)
    assert f["oom_kills"] == 1 and f["timeouts"] == 1 and f["failures"] == 2
    assert f["failure_minutes"] == 3.0  # 1 step down + 2 steps above the latency target
    assert metrics._episodes(np.array([[0, 1, 1, 0, 1]], dtype=bool)) == 2


# -- scenario ground truth ---------------------------------------------------------------


def test_leak_first_kill_formula() -> None:
    assert scenarios.first_kill_step(512 * MIB, 200 * MIB, 10.4 * MIB) == 30
    assert scenarios.static_kill_steps(512 * MIB, 200 * MIB, 10.4 * MIB, 1, 100) == [30, 62, 94]


def test_leak_under_static_fails_at_the_computed_steps() -> None:
    s = scenarios.leak(n=3, hours=3.0)
    rec = runner.run(s, "static")
    for i in range(s.n):
        g = float(s.growth_bytes[i, 1])
        want = scenarios.static_kill_steps(float(s.memory_limit_bytes[i]),
                                           float(s.fixed_bytes[i, 0]), g, s.restart_steps,
                                           s.steps)
        assert np.flatnonzero(rec.oom_kill[i]).tolist() == want


def test_burst_load_shape() -> None:
    assert scenarios.burst_load(10, 60.0, 3.0, [0.0], every_s=3600, ramp_s=180,
                                hold_s=120).tolist()[:9] == [1, 2, 3, 3, 3, 3, 2, 1, 0]


def test_from_samples_grid() -> None:
    s = trace_grid.from_samples(
        "t", "t", np.array(["a", "a", "a", "b", "b"], dtype=object),
        np.array([0.0, 300, 600, 150, 450]), np.array([1.0, 2, 3, 5, 6]),
        np.full(5, 10.0), np.zeros(5), np.full(5, 1.0), max_containers=10, max_steps=10,
        source="test")
    assert s.step_s == 300.0
    assert s.fixed_bytes.tolist() == [[1, 2, 3], [0, 5, 6]]  # b exists from its first sample
    assert s.alive.tolist() == [[True, True, True], [False, True, True]]


def test_prescale_runs_the_engine_and_beats_static_on_a_leak() -> None:
    s = scenarios.leak(n=2, hours=3.0)
    f_static = metrics.figures(runner.run(s, "static"), s.horizon_s)
    f_pb = metrics.figures(runner.run(s, "preemptive_buffer"), s.horizon_s)
    assert f_static["failures"] > 0
    assert f_pb["failures"] < f_static["failures"]
    assert f_pb["scale_ups"] > 0 and f_pb["median_lead_time_s"] > 0


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        runner.check_policies(["static", "nope"])
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        report.scenario_names("nope")


# -- the command -------------------------------------------------------------------------


def test_cli_evaluate_leak_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from prescale.app.cli import app

    short = scenarios.leak(n=3, hours=3.0)
    monkeypatch.setitem(scenarios.SYNTHETIC, "leak", lambda: short)
    res = CliRunner().invoke(app, ["evaluate", "--scenario", "leak", "--policies",
                                   "static,vpa,preemptive_buffer", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    (sc,) = out["scenarios"]
    assert sc["name"] == "leak" and set(sc["policies"]) == {"static", "vpa",
                                                            "preemptive_buffer"}
    truth = sum(len(scenarios.static_kill_steps(
        float(short.memory_limit_bytes[i]), float(short.fixed_bytes[i, 0]),
        float(short.growth_bytes[i, 1]), short.restart_steps, short.steps))
        for i in range(short.n))
    st = sc["policies"]["static"]
    assert st["failures"] == st["oom_kills"] == truth
    assert st["failure_minutes"] == truth * short.restart_steps * short.step_s / 60
    assert st["actions"] == 0 and st["slack_memory"] > 0
    for f in sc["policies"].values():
        assert set(report.COLUMNS) <= set(f)
        assert 0 <= f["slack_memory"] <= 1
    assert out["wall_s"] >= 0


def test_cli_evaluate_bad_input_exits_2(tmp_path) -> None:
    from prescale.app.cli import app

    r = CliRunner()
    assert r.invoke(app, ["evaluate", "--scenario", "nope"]).exit_code == 2
    assert r.invoke(app, ["evaluate", "--scenario", "leak", "--policies", "x"]).exit_code == 2
    res = r.invoke(app, ["evaluate", "--trace", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2


def test_generic_trace_file_and_report(tmp_path) -> None:
    ts = np.arange(0, 40) * 60.0
    rows = ["container,ts_s,memory_usage_bytes,memory_limit_bytes"]
    for c in ("a", "b"):
        for i, t in enumerate(ts):
            rows.append(f"{c},{t + 1.7e9},{(100 + 5 * i) * MIB},{256 * MIB}")
    p = tmp_path / "t.csv"
    p.write_text("\n".join(rows))
    from prescale.app.evaluation import traces

    s = traces.from_file(p)
    assert s.n == 2 and s.steps == 40 and s.memory_limit_bytes[0] == 256 * MIB
    res = report.evaluate([s], ["static", "preemptive_buffer"], keep_records=True)
    files = report.write_report(res, tmp_path / "out")
    assert {f.name for f in files} == {"trace.png", "summary.png", "report.md"}
    assert res["scenarios"][0]["policies"]["static"]["failures"] > 0


def test_tenants_reclaiming_idle_capacity_spares_the_bystanders() -> None:
    """The pool cannot hold every leak. With reclaim (the default), the idle bursty
    services give memory above their long peak × 1.2 to whoever is about to fail, the
    pool is never overcommitted, and only the leaking tenant's containers are killed —
    fewer failures than the same engine that never reclaims (reclaim_after_s beyond
    the run)."""
    s = scenarios.tenants()
    with_r = runner.run(s, "proportional")
    without = runner.run(s, "proportional",
                         extra_settings={"cost": {"reclaim_after_s": 86_400.0}})
    assert with_r.reclaims > 0 and without.reclaims == 0
    allocated = (with_r.memory_limit_bytes * with_r.replicas).sum(axis=0)
    assert allocated.max() <= s.pool_memory_bytes + 1
    killed = {with_r.names[i] for i in np.flatnonzero(with_r.oom_kill.any(axis=1))}
    assert killed and all(n.startswith("a-leak") for n in killed), killed
    assert with_r.oom_kill.sum() < without.oom_kill.sum()
    for a in with_r.actions:  # a reclaim never cuts below what the container used
        if a.new < a.old and a.tier == "memory":
            used = with_r.memory_demand_bytes[a.container, a.step]
            assert not used >= a.new, (with_r.names[a.container], a)


def test_eval_seeds_script_runs_variants_and_refuses_bad_ones() -> None:
    from prescale.scripts import eval_seeds

    assert eval_seeds._seeds("1-3") == [1, 2, 3] and eval_seeds._seeds("4,9") == [4, 9]
    [on, off] = eval_seeds.run("tenants", [7], ["proportional", "proportional:no_reclaim"])
    assert on["policy"] == "proportional" and len(on["failures"]) == 1
    assert on["total"] < off["total"]  # seed 7: reclaiming spares the bystanders
    with pytest.raises(SystemExit, match="bad policy 'static:no_reclaim'"):
        eval_seeds.run("tenants", [7], ["static:no_reclaim"])
    with pytest.raises(SystemExit, match="bad policy 'proportional:typo'"):
        eval_seeds.run("tenants", [7], ["proportional:typo"])


def test_the_horizontal_variant_scales_out_and_in_within_the_scenarios_limits() -> None:
    """The fair fight with the HPA (docs/BENCHMARKS.md): per-replica limits held at the
    scenario's, so prescale's asks above them become scale-outs; with a 30-minute long
    peak (this test's setting, not a default) idle replicas are also scaled in, in the
    simulated world, and nothing fails."""
    from collections import Counter

    from prescale.app.evaluation.runner import run
    from prescale.app.evaluation.scenarios import burst, scaled
    from prescale.scripts.eval_seeds import _horizontal

    assert _horizontal(burst()) == {"policy": {"app_bounds": {"burst": {
        "memory_max_bytes": 512.0 * 2**20, "cpu_max_cores": 1.0}}}}
    s = scaled(burst(), 0.5)
    extra = {**_horizontal(s), "cost": {"long_peak_s": 1800.0}}
    rec = run(s, "preemptive_buffer", extra_settings=extra)
    kinds = Counter((a.tier, "up" if a.new > a.old else "down") for a in rec.actions)
    assert kinds[("replicas", "up")] > 0 and kinds[("replicas", "down")] > 0
    assert kinds[("memory", "up")] == 0  # never above the scenario's 512 MiB
    assert metrics.figures(rec, s.horizon_s)["failures"] == 0
    assert rec.replicas.min() >= 1


# -- the harness rules on hand-made traces (issue 12) ----------------------------------------

GIB_ = 2.0**30


def _bitbrains_like(tmp_path):
    """Three VMs, 300 s steps, in the Bitbrains format (provisioned 0 = not running):
    vm-1 runs all 10 steps at 1 GiB of 4 GiB; vm-2 is off until step 4, whose record is a
    boot record (provisioned 0.29 GiB while it already uses 15 GiB), then runs at 19.44
    GiB provisioned; vm-10 runs steps 0-5 only, then is off (provisioned 0)."""
    head = ("vm_id,Timestamp [ms],CPU cores,CPU capacity provisioned [MHZ],CPU usage [MHZ],"
            "CPU usage [%],Memory capacity provisioned [KB],Memory usage [KB],"
            "Disk read throughput [KB/s],Disk write throughput [KB/s],"
            "Network received throughput [KB/s],Network transmitted throughput [KB/s]")
    kib = 2**20  # KiB per GiB
    rows = [head]
    for k in range(10):
        t = 1_372_636_800 + 300 * k
        rows.append(f"1,{t},2,5000,1000,20,{4 * kib},{1 * kib},0,0,0,0")
        if k < 4:
            rows.append(f"2,{t},0,0,0,0,0,0,0,0,0,0")
        elif k == 4:
            rows.append(f"2,{t},8,20000,1000,5,{int(0.29 * kib)},{15 * kib},0,0,0,0")
        else:
            rows.append(f"2,{t},8,20000,1000,5,{int(19.44 * kib)},{16 * kib},0,0,0,0")
        if k <= 5:
            rows.append(f"10,{t},1,2500,500,20,{2 * kib},{int(2.5 * kib)},0,0,0,0")
        else:
            rows.append(f"10,{t},0,0,0,0,0,0,0,0,0,0")
    p = tmp_path / "bb.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def test_trace_lifetimes_starting_limits_and_pool(tmp_path) -> None:
    from prescale.app.evaluation import traces

    s = traces.from_file(_bitbrains_like(tmp_path))
    assert s.names == ("vm-1", "vm-2", "vm-10")  # natural order
    assert s.steps == 10 and s.step_s == 300.0
    # lifetimes: from the first to the last real sample (provisioned > 0)
    assert s.alive.tolist() == [[True] * 10, [False] * 4 + [True] * 6,
                                [True] * 6 + [False] * 4]
    # starting limits: vm-2 skips its boot record (0.29 GiB under 15 GiB of usage);
    # vm-10 never has a provisioned value that covers its usage: its largest (2 GiB)
    assert s.memory_limit_bytes.tolist() == pytest.approx(
        [4 * GIB_, int(19.44 * 2**20) * 1024, 2 * GIB_])
    # pool: Σ max(largest provisioned, starting limit, 1.2 × peak usage)
    want = 4 * GIB_ + int(19.44 * 2**20) * 1024 + 1.2 * 2.5 * GIB_
    assert s.pool_memory_bytes == pytest.approx(want)
    assert s.trace_info["capped"] is False and s.trace_info["containers_in_trace"] == 3


def test_a_container_outside_its_life_counts_nowhere(tmp_path) -> None:
    from prescale.app.evaluation import traces

    s = traces.from_file(_bitbrains_like(tmp_path))
    rec = runner.run(s, "static")
    assert np.isnan(rec.memory_limit_bytes[1, :4]).all()  # vm-2 not yet there
    assert np.isnan(rec.memory_limit_bytes[2, 6:]).all()  # vm-10 gone
    # vm-10 uses 2.5 GiB under 2 GiB from its first step: killed at every restart
    assert rec.oom_kill[2].tolist() == [True, False, True, False, True, False] + [False] * 4
    assert not rec.oom_kill[:2].any()
    f = metrics.figures(rec, s.horizon_s)
    # memory GiB·h: only while alive: 4 × 10 + 19.44 × 6 + 2 × 6 steps of 5 min
    assert f["memory_gib_hours"] == pytest.approx(
        (4 * 10 + int(19.44 * 2**20) * 1024 / GIB_ * 6 + 2 * 6) * 300 / 3600, rel=1e-4)


def test_no_silent_cap(tmp_path) -> None:
    p = _bitbrains_like(tmp_path)
    whole = report.evaluate([report.build_scenario("trace", str(p))], ["static"])
    lines = report.header_lines(whole["scenarios"][0])
    assert lines[0] == "whole trace: 3 of 3 containers, 10 of 10 steps"
    capped = report.evaluate([report.build_scenario("trace", str(p), max_steps=4,
                                                    max_containers=2)], ["static"])
    e = capped["scenarios"][0]
    # vm-2 starts at step 4: outside a 4-step grid, so only vm-1 is left of the first two
    assert e["containers"] == 1 and e["steps"] == 4
    assert e["trace_info"]["capped"] is True
    assert report.header_lines(e)[0] == (
        "CAPPED (--max-containers 2, --max-steps 4): 1 of 3 containers, 4 of 10 steps")
    assert "pool:" in report.text_table(capped)


def test_memory_figures_worked_example() -> None:
    """metrics module docstring: Δ 300 s, warm-up 1 h (12 steps), one container alive
    for 14 steps at limit 100 with demand 50, except 120 at step 13."""
    n_t = 14
    demand = np.full((1, n_t), 50.0)
    demand[0, 13] = 120.0
    rec = runner.RunRecord(
        "t", "static", 300.0, 0.0, ["a"], memory_demand_bytes=demand.copy(),
        memory_limit_bytes=np.full((1, n_t), 100.0), cpu_demand_cores=np.zeros((1, n_t)),
        cpu_quota_cores=np.ones((1, n_t)), replicas=np.ones((1, n_t), dtype=int),
        down=np.zeros((1, n_t), dtype=bool), oom_kill=np.zeros((1, n_t), dtype=bool),
        timeout=np.zeros((1, n_t), dtype=bool), disk_full=np.zeros((1, n_t), dtype=bool),
        memory_want_bytes=demand)
    m = metrics.memory_figures(rec)
    assert (m["mem_violations"], m["mem_violation_rate"], m["mem_slack"]) == (1, 0.5, 0.5)
    assert m["counted_steps"] == 2


def test_config_and_pool_options_are_used_and_reported(tmp_path) -> None:
    from prescale.app.cli import app

    cfg = tmp_path / "p.toml"
    cfg.write_text("[cost]\nidle_after_s = 7200.0\n")
    short = scenarios.scaled(scenarios.tenants(), 0.25)
    import prescale.app.evaluation.scenarios as sc

    old = sc.SYNTHETIC["tenants"]
    sc.SYNTHETIC["tenants"] = lambda: short
    try:
        res = CliRunner().invoke(app, ["evaluate", "--scenario", "tenants", "--policies",
                                       "static,preemptive_buffer", "-c", str(cfg),
                                       "--pool-memory", "4GiB", "--jobs", "1", "--json"])
    finally:
        sc.SYNTHETIC["tenants"] = old
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["settings_changed"] == {"cost.idle_after_s": 7200.0}
    (e,) = out["scenarios"]
    assert e["pool"]["memory_bytes"] == 4 * GIB_ and "--pool-memory" in e["pool"]["rule"]
    assert e["policies"]["preemptive_buffer"]["asks_denied"] > 0
    res = CliRunner().invoke(app, ["evaluate", "--scenario", "leak", "--pool-memory", "lots"])
    assert res.exit_code == 2 and "--pool-memory" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--scenario", "leak", "--max-steps", "5"])
    assert res.exit_code == 2 and "--trace only" in res.output


def test_parallel_runs_give_the_same_figures() -> None:
    short = scenarios.leak(n=2, hours=2.0)
    one = report.evaluate([short], ["static", "preemptive_buffer"], jobs=1)
    two = report.evaluate([short], ["static", "preemptive_buffer"], jobs=2)
    strip = [{p: {k: v for k, v in f.items() if k != "run_s"}
              for p, f in r["scenarios"][0]["policies"].items()} for r in (one, two)]
    assert strip[0] == strip[1]


def test_a_replicated_service_at_its_maximum_is_scaled_out_in_evaluate() -> None:
    """The simulated world tells prescale which containers are replicas of a service
    (``Scenario.replicated``), as the live loop does: a bursting service whose memory is
    already at its maximum is scaled out, and the new replica shares the load once it is
    ready (30 s)."""
    s = scenarios.scaled(scenarios.burst(), 0.5)
    rec = runner.run(s, "preemptive_buffer",
                     extra_settings={"policy": {"memory_max_bytes": 512 * MIB}})
    outs = [a for a in rec.actions if a.tier == "replicas"]
    assert outs and all(a.new == a.old + 1 for a in outs)
    i = outs[0].container
    assert rec.replicas[i].max() >= 2
    k = outs[0].step
    assert rec.replicas_ready[i, k + 1] == 1 and rec.replicas_ready[i, k + 2] == 2  # Δ 15 s
    unreplicated = scenarios.Scenario(**{**s.__dict__, "replicated": None})
    rec2 = runner.run(unreplicated, "preemptive_buffer",
                      extra_settings={"policy": {"memory_max_bytes": 512 * MIB}})
    assert not [a for a in rec2.actions if a.tier == "replicas"]
