"""The simulated fleet: each scenario's formula with worked numbers, and the fleet's
samples and ground-truth events recomputed from the drawn parameters (seeded)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prescale.app.core.features import F, compute_features
from prescale.app.core.sample import METRICS, M
from prescale.app.learning.labels import events_frame
from prescale.app.sim import FAILING_SCENARIOS, SCENARIOS, simulate_fleet
from prescale.app.sim.fleet import (
    CPU_QUOTA_CORES,
    DEFAULT_START_S,
    MIB,
    SAMPLE_COLUMNS,
    burst_geometry,
    burst_path,
    cpu_counter,
    diurnal_weight,
    fill_steps,
    leak_path,
    plateau_path,
)

pytestmark = pytest.mark.filterwarnings("error")


# --------------------------------------------------------------------------- formulas


def test_fill_steps_worked_examples():
    assert fill_steps(3000.0, 60.0) == 50
    assert fill_steps(3001.0, 60.0) == 51
    assert fill_steps(30.0, 60.0) == 2  # at least one reading before the kill
    assert fill_steps(20 * 60.0, 60.0) == 20


def test_leak_worked_example():
    # L = 1000, b = 400, P = 6, k0 = 2, Δ = 10 s: rate (1000 − 400)/(6·10) = 10 B/s
    u, kill = leak_path(np.arange(11), baseline_bytes=400.0, limit_bytes=1000.0,
                        period_steps=6, phase_steps=2)
    assert u.tolist() == [600.0, 700.0, 800.0, 900.0, 400.0, 500.0, 600.0, 700.0, 800.0,
                          900.0, 400.0]
    assert np.flatnonzero(kill).tolist() == [4, 10]
    # at k = 0 a container that starts at phase 0 is not a kill (it has just started)
    _, kill0 = leak_path(np.arange(7), baseline_bytes=400.0, limit_bytes=1000.0,
                         period_steps=6, phase_steps=0)
    assert np.flatnonzero(kill0).tolist() == [6]


def test_plateau_worked_example():
    u, redeploy = plateau_path(np.arange(12), step_s=60.0, baseline_bytes=200.0,
                               plateau_bytes=800.0, tau_s=600.0, period_steps=11,
                               phase_steps=0)
    assert u[0] == 200.0
    assert u[10] == pytest.approx(200.0 + 600.0 * (1.0 - math.exp(-1.0)))  # 579.27
    assert u[10] == pytest.approx(579.2723, abs=1e-4)
    assert u[11] == 200.0  # redeployed at k = 11
    assert np.flatnonzero(redeploy).tolist() == [11]
    assert (u < 800.0).all()


def test_diurnal_worked_example():
    w = diurnal_weight(np.array([0, 6, 12, 18, 24]), step_s=3600.0, phase=0.0)
    u = 200.0 + 400.0 * w
    assert u == pytest.approx([200.0, 400.0, 600.0, 400.0, 200.0])
    # a phase of a quarter day shifts the cycle by 6 h
    assert diurnal_weight(np.array([0]), step_s=3600.0, phase=0.25) == pytest.approx([0.5])


def test_burst_worked_example():
    u, kill = burst_path(14, baseline_bytes=400.0, limit_bytes=1000.0, starts=[10],
                         ramp_steps=3)
    assert u[9:].tolist() == [400.0, 600.0, 800.0, 400.0, 400.0]
    assert np.flatnonzero(kill).tolist() == [12]
    # a burst cut off by the end of the run has its ramp but no kill
    u, kill = burst_path(12, baseline_bytes=400.0, limit_bytes=1000.0, starts=[10],
                         ramp_steps=3)
    assert u[10:].tolist() == [600.0, 800.0] and not kill.any()


def test_burst_geometry_and_cpu_counter():
    assert burst_geometry(1440, 60.0) == (240, 3, 6)
    assert burst_geometry(100, 300.0) == (48, 2, 3)  # m = max(2, ⌈180/300⌉)
    assert cpu_counter(np.array([9.0, 0.2, 0.3]), 60.0) == pytest.approx([0.0, 12.0, 30.0])


# --------------------------------------------------------------------------- the fleet


@pytest.fixture(scope="module")
def clean():
    """Noise-free: every reading is the formula."""
    return simulate_fleet(12, 600, 60.0, seed=3, noise_fraction=0.0)


@pytest.fixture(scope="module")
def noisy():
    return simulate_fleet(12, 600, 60.0, seed=3, noise_fraction=0.01)


def per_container(fleet, name: str) -> pd.DataFrame:
    return fleet.samples[fleet.samples["container"] == name].reset_index(drop=True)


def test_layout_like_trace_data(clean):
    s = clean.samples
    assert tuple(s.columns) == SAMPLE_COLUMNS
    assert len(s) == 12 * 600
    assert list(clean.events.columns) == ["container", "app", "ts_s", "kind", "detail"]
    # sorted by ts, then container; 12 containers per step
    ts = s["ts_s"].to_numpy()
    assert (np.diff(ts) >= 0).all()
    assert ts[0] == DEFAULT_START_S and ts[-1] == DEFAULT_START_S + 599 * 60.0
    first_step = s.iloc[:12]
    assert first_step["container"].tolist() == sorted(first_step["container"])
    assert first_step["container"].tolist()[:7] == [
        "sim-000-leak", "sim-001-plateau", "sim-002-diurnal", "sim-003-burst",
        "sim-004-creep", "sim-005-steady", "sim-006-leak"]
    assert first_step["app"].tolist()[:2] == ["sim-leak", "sim-plateau"]
    assert (clean.containers["scenario"].value_counts() == 2).all()
    # metrics not simulated are nan
    for m in ("memory_failcnt_total", "cpu_periods_total", "io_read_bytes_total",
              "block_latency_s", "memory_pressure_some_s_total"):
        assert s[m].isna().all()
    ev = clean.events
    assert (np.diff(ev["ts_s"].to_numpy()) >= 0).all()
    events_frame(ev)  # valid event kinds and times for the labeller


def test_every_reading_is_its_formula(clean):
    k = np.arange(600)
    for row in clean.containers.itertuples():
        got = per_container(clean, row.container)
        L, b = row.limit_bytes, row.baseline_bytes
        assert (got["memory_limit_bytes"] == L).all()
        kill = np.zeros(600, dtype=bool)
        if row.scenario in ("leak", "creep"):
            expected, kill = leak_path(k, baseline_bytes=b, limit_bytes=L,
                                       period_steps=row.period_steps,
                                       phase_steps=row.phase_steps)
        elif row.scenario == "plateau":
            expected, _ = plateau_path(k, step_s=60.0, baseline_bytes=b,
                                       plateau_bytes=row.plateau_bytes, tau_s=row.tau_s,
                                       period_steps=row.period_steps,
                                       phase_steps=row.phase_steps)
        elif row.scenario == "diurnal":
            expected = b + row.amplitude_bytes * diurnal_weight(k, step_s=60.0, phase=row.phase)
        elif row.scenario == "burst":
            expected, kill = burst_path(600, baseline_bytes=b, limit_bytes=L,
                                        starts=row.burst_starts, ramp_steps=3)
        else:
            expected = np.full(600, b)
        np.testing.assert_allclose(got["memory_usage_bytes"], expected, rtol=1e-12)
        assert (got["memory_working_set_bytes"] == got["memory_usage_bytes"]).all()
        assert got["oom_kills_total"].tolist() == np.cumsum(kill).tolist()
        assert row.oom_kills == kill.sum()
        kills_ev = clean.events[(clean.events["container"] == row.container)
                                & (clean.events["kind"] == "oom_kill")]
        assert kills_ev["ts_s"].tolist() == (DEFAULT_START_S + 60.0 * np.flatnonzero(kill)).tolist()


def test_failures_only_in_failing_scenarios(clean):
    kills = clean.events[clean.events["kind"] == "oom_kill"]
    assert set(kills["app"]) == {f"sim-{s}" for s in FAILING_SCENARIOS}
    restarts = clean.events[clean.events["kind"] == "restart"]
    # every kill is followed by a restart at the same time; plateau restarts are redeploys
    after_kill = restarts[restarts["detail"].str.contains("after oom_kill")]
    assert after_kill[["container", "ts_s"]].values.tolist() == \
        kills[["container", "ts_s"]].values.tolist()
    redeploys = restarts[restarts["detail"] == "sim plateau: redeploy"]
    assert set(redeploys["app"]) <= {"sim-plateau"}
    assert len(after_kill) + len(redeploys) == len(restarts)


def test_cpu_counter_consistent_with_rate(clean, noisy):
    for fleet in (clean, noisy):
        for row in fleet.containers.itertuples():
            got = per_container(fleet, row.container)
            total = got["cpu_usage_s_total"].to_numpy()
            assert total[0] == 0.0
            rate = np.diff(total) / 60.0
            assert (rate >= 0).all() and (rate <= CPU_QUOTA_CORES + 1e-12).all()
            assert (got["cpu_quota_cores"] == CPU_QUOTA_CORES).all()
            if fleet is clean:
                if row.scenario == "diurnal":
                    w = diurnal_weight(np.arange(1, 600), step_s=60.0, phase=row.phase)
                    np.testing.assert_allclose(rate, row.cpu_cores * (1 + w), rtol=1e-9)
                else:
                    np.testing.assert_allclose(rate, row.cpu_cores, rtol=1e-9)


def test_noise_is_reading_noise_only(clean, noisy):
    # same draws of the parameters; ground truth (events) unchanged by the noise
    pd.testing.assert_frame_equal(clean.events, noisy.events)
    pd.testing.assert_frame_equal(clean.containers, noisy.containers)
    diff = (noisy.samples["memory_usage_bytes"] - clean.samples["memory_usage_bytes"]).to_numpy()
    rel = diff / noisy.samples["memory_limit_bytes"].to_numpy()
    assert 0.009 < rel.std() < 0.011  # σ = 1 % of the limit (7200 draws)
    u = noisy.samples["memory_usage_bytes"]
    assert (u >= 0).all() and (u <= noisy.samples["memory_limit_bytes"]).all()


def test_seeded_and_pinned():
    a = simulate_fleet(6, 600, 60.0, seed=0)
    b = simulate_fleet(6, 600, 60.0, seed=0)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    pd.testing.assert_frame_equal(a.events, b.events)
    c = simulate_fleet(6, 600, 60.0, seed=1)
    assert not a.samples["memory_usage_bytes"].equals(c.samples["memory_usage_bytes"])
    # pinned draws of seed 0 (numpy's PCG64): a change in the draw order shows here
    p = a.containers
    assert p["limit_bytes"].tolist() == [1024 * MIB, 512 * MIB, 512 * MIB, 256 * MIB,
                                         256 * MIB, 256 * MIB]
    assert p["baseline_bytes"][0] == pytest.approx(218297647.503762)
    assert p["period_steps"].tolist() == [33, 295, 0, 0, 296, 0]
    assert p["phase_steps"].tolist() == [32, 202, 0, 0, 115, 0]
    assert p["burst_starts"][3] == (47, 463, 566)
    assert p["oom_kills"].tolist() == [19, 0, 0, 3, 2, 0]
    assert len(a.events) == 50
    # leak with P = 33, k0 = 32: kills at k = 1, 34, …, 595 → 19 kills
    leak_kills = a.events[(a.events["container"] == "sim-000-leak")
                          & (a.events["kind"] == "oom_kill")]["ts_s"]
    assert ((leak_kills - DEFAULT_START_S) / 60.0).tolist() == list(range(1, 600, 33))


def test_draws_do_not_depend_on_the_scenario_mix():
    mixed = simulate_fleet(6, 50, 60.0, seed=5)
    only_steady = simulate_fleet(6, 50, 60.0, seed=5, scenarios=["steady"])
    cols = ["limit_bytes", "baseline_bytes", "cpu_cores", "plateau_bytes", "tau_s"]
    pd.testing.assert_frame_equal(mixed.containers[cols], only_steady.containers[cols])
    assert set(only_steady.containers["scenario"]) == {"steady"}
    assert only_steady.events.empty
    assert list(only_steady.events.columns) == ["container", "app", "ts_s", "kind", "detail"]


def test_leak_slope_seen_by_the_features(clean):
    """Inside one leak cycle the features' OLS slope is the leak rate (L − b)/(P·Δ)."""
    row = clean.containers[clean.containers["scenario"] == "leak"].iloc[0]
    got = per_container(clean, row["container"])
    P, k0 = int(row["period_steps"]), int(row["phase_steps"])
    restart = next(k for k in range(1, 600) if (k + k0) % P == 0)
    window = got.iloc[restart : restart + 10][list(METRICS)].to_numpy()[None]
    feats = compute_features(window, recent_steps=5)
    rate = (row["limit_bytes"] - row["baseline_bytes"]) / (P * 60.0)
    assert feats[0, F["memory_slope_bytes_per_s"]] == pytest.approx(rate, rel=1e-9)
    assert feats[0, F["oom_kills_delta"]] == 0.0
    assert window[0, -1, M["oom_kills_total"]] == window[0, 0, M["oom_kills_total"]]


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"n_containers": 0}, "n_containers must be an int ≥ 1"),
        ({"n_containers": 2.5}, "n_containers must be an int ≥ 1"),
        ({"n_steps": 1}, "n_steps must be an int ≥ 2"),
        ({"step_s": 0.0}, "step_s must be > 0"),
        ({"step_s": math.inf}, "step_s must be a finite number"),
        ({"noise_fraction": -0.1}, "noise_fraction must be ≥ 0"),
        ({"seed": -1}, "seed must be an int ≥ 0"),
        ({"scenarios": ["leak", "oops"]}, r"unknown scenarios \['oops'\]"),
        ({"scenarios": "leak"}, "sequence of names, got the string"),
        ({"scenarios": []}, "at least one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        simulate_fleet(**{"n_containers": 3, "n_steps": 10, **kwargs})


def test_scenarios_constant():
    assert SCENARIOS == ("leak", "plateau", "diurnal", "burst", "creep", "steady")
    assert set(FAILING_SCENARIOS) < set(SCENARIOS)
