"""The model evaluation script, run as a user runs it (``--quick --json``), on the real
shared traces (Google 2011, Bitbrains) and the simulated fleet.

The real-trace checks skip, naming the path, when ``../shared/data`` (or
``$PRESCALE_TRACE_DIR``) lacks the traces; the simulated fleet always runs. The pure
helpers of the script (the Bitbrains failure derivation, failure-level lead times, the
split by job) are checked on hand-made frames with worked numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.core.features import FEATURES
from app.telemetry.replay import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    TRACE_DIR_ENV,
    find_trace_dir,
)
from scripts.eval_models import (
    default_kinds,
    derive_bitbrains_failures,
    failure_level,
    fill_empty_columns,
    render,
    split_by_job,
)

REPO = Path(__file__).resolve().parents[2]
TRACES = find_trace_dir()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.eval_models", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def quick():
    started = time.perf_counter()
    proc = _run("--quick", "--json")
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), elapsed


def _in_unit(x) -> bool:
    return x is not None and 0.0 <= x <= 1.0


def _check_fleet(f: dict, kinds: list[str]) -> None:
    assert f["n_test"] > 0 and f["n_test_positive"] > 0
    assert f["base_rate"] == pytest.approx(f["n_test_positive"] / f["n_test"])
    assert f["n_train"] + f["n_test"] <= f["windows"]  # the gap of H drops a few
    assert f["rule"]["feature"] in FEATURES and f["rule"]["direction"] in ("high", "low")
    assert _in_unit(f["rule"]["pr_auc"])
    assert set(f["models"]) == set(kinds)
    for m in f["models"].values():
        assert m["tp"] + m["fn"] == f["n_test_positive"]
        assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == f["n_test"]
        assert m["recall"] == pytest.approx(m["tp"] / f["n_test_positive"])
        if m["tp"] + m["fp"]:
            assert m["precision"] == pytest.approx(m["tp"] / (m["tp"] + m["fp"]))
        assert _in_unit(m["pr_auc"]) and _in_unit(m["brier"])
        assert m["pr_auc_lo"] <= m["pr_auc_hi"] and _in_unit(m["pr_auc_lo"])
        assert m["failures_caught"] <= m["failures"]
        if m["tp"]:
            assert 0 < m["median_lead_s"] <= f["horizon_s"]
            assert m["median_lead_s"] <= m["median_first_warning_s"] <= f["horizon_s"]


def test_quick_run_structure_and_timing(quick):
    report, elapsed = quick
    assert elapsed < 90
    assert report["config"]["quick"] is True
    assert report["kinds"] == list(default_kinds())
    assert {"google2011", "sim", "bitbrains", "all", "cpu_all"} <= set(report["timings_s"])
    assert report["timings_s"]["all"] < 90
    md = render(report)  # the Markdown view of the same report (nan → None in JSON)
    assert "### Google 2011" in md and "### Replay fleets" in md and "### Timings (s)" in md


def test_quick_sim_fleet(quick):
    report, _ = quick
    sim = report["fleets"]["sim"]
    # the quick fleet is deterministic: 24 containers × 480 steps, seed 0
    assert (sim["samples"], sim["containers"], sim["failures"]) == (11520, 24, 52)
    assert (sim["windows"], sim["n_test"], sim["n_test_positive"]) == (5712, 1728, 120)
    assert sim["test_positive_per_app"] == {"sim-leak": 81, "sim-burst": 31, "sim-creep": 8}
    _check_fleet(sim, report["kinds"])
    heur = sim["models"]["heuristic"]
    assert heur["recall_per_app"]["sim-leak"] > 0.5
    assert heur["pr_auc"] > 3 * sim["base_rate"]
    # a sudden burst gives at most ~2 readings of warning among 15 positive windows
    assert heur["recall_per_app"]["sim-burst"] < 0.3


def test_quick_google(quick):
    report, _ = quick
    g = report["google2011"]
    if "skipped" in g:
        pytest.skip(g["skipped"])
    assert (g["n_tasks"], g["n_jobs"], g["n_positive"], g["positive_jobs"]) == (6153, 299, 67, 37)
    assert g["horizon_s"] == 54928.0
    assert len(g["per_seed"]) == g["seeds"] == 3
    for r in g["per_seed"]:
        assert r["n_train"] + r["n_test"] == 6153
        assert r["base_rate"] == pytest.approx(r["n_test_positive"] / r["n_test"])
        for m in [r["rule"], *r["models"].values()]:
            if r["n_test_positive"]:
                assert _in_unit(m["pr_auc"])
            else:
                assert m["pr_auc"] is None  # nan: no positive to rank
    s = g["summary"]
    assert s["base_rate"]["mean"] == pytest.approx(np.mean([r["base_rate"]
                                                            for r in g["per_seed"]]))
    assert set(s["models"]) == set(report["kinds"])
    for m in s["models"].values():
        assert _in_unit(m["pr_auc"]["mean"])


def test_quick_bitbrains(quick):
    report, _ = quick
    b = report["fleets"]["bitbrains"]
    if "skipped" in b:
        pytest.skip(b["skipped"])
    d = b["derivation"]
    # the first 8 VMs (vm-1 … vm-8) of the shared file
    assert (d["vms"], d["rows"], d["oom_kills"]) == (8, 66068, 4419)
    assert d["vms_without_limit"] == []
    assert b["failures"] == d["oom_kills"]
    _check_fleet(b, report["kinds"])


def test_missing_traces_are_skipped_not_failed(tmp_path):
    proc = _run("--quick", "--json", "--kinds", "heuristic",
                env={TRACE_DIR_ENV: str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert str(tmp_path / GOOGLE2011_USAGE_FILE) in report["google2011"]["skipped"]
    assert str(tmp_path / BITBRAINS_RND_FILE) in report["fleets"]["bitbrains"]["skipped"]
    assert report["fleets"]["sim"]["models"]["heuristic"]["recall_per_app"]["sim-leak"] > 0.5
    assert "Skipped: Google 2011 trace not found" in render(report)


def test_unknown_kind_exits_2():
    proc = _run("--quick", "--kinds", "random_forest,oracle")
    assert proc.returncode == 2
    assert "unknown model kinds ['oracle']" in proc.stderr
    assert proc.stdout == ""


def test_traces_present_here():
    """Where the shared data is mounted, the evaluation above ran on it (not skipped)."""
    if not (TRACES / GOOGLE2011_EVENTS_FILE).is_file():
        pytest.skip(f"real traces absent under {TRACES} (set {TRACE_DIR_ENV})")
    assert (TRACES / BITBRAINS_RND_FILE).is_file()


# --------------------------------------------------------------------------- pure helpers


def _vm(usage: list[float], name: str = "vm-1") -> pd.DataFrame:
    u = np.array(usage, dtype=np.float64)
    return pd.DataFrame({
        "container": name, "app": "bitbrains-rnd", "ts_s": 300.0 * np.arange(u.size),
        "memory_usage_bytes": u, "memory_working_set_bytes": u,
        "memory_limit_bytes": 8e9, "oom_kills_total": math.nan,
    })


def test_derive_bitbrains_worked_example():
    samples, events, info = derive_bitbrains_failures(
        _vm([100, 0, 140, 130, 170, 150, 120, 160]), limit_multiple=1.2, first_fraction=0.5,
        min_first_readings=1)
    # first 4 rows: 100, (0 = missing), 140, 130 → median 130 → L = 156
    assert (samples["memory_limit_bytes"] == 156.0).all()
    assert samples["memory_usage_bytes"].isna().tolist() == [False, True] + [False] * 6
    assert samples["oom_kills_total"].tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert samples["running"].tolist() == [True, False, True, True, False, True, True, False]
    assert events["ts_s"].tolist() == [1200.0, 2100.0]
    assert set(events["kind"]) == {"oom_kill"}
    assert (info["oom_kills"], info["rows_above_limit"], info["missing_readings"]) == (2, 2, 1)


def test_derive_bitbrains_staying_above_is_one_kill_and_vm_without_limit_is_left_out():
    df = pd.concat([
        _vm([100, 100, 200, 0, 210, 90, 200], "vm-1"),  # 200, (missing), 210: one excursion
        _vm([0, 0, 0, 0, 50, 60, 70], "vm-2"),  # no valid reading in its first part
    ], ignore_index=True)
    samples, events, info = derive_bitbrains_failures(df, limit_multiple=1.5,
                                                      first_fraction=0.3,
                                                      min_first_readings=1)
    # vm-1: first ⌈0.3·7⌉ = 3 rows 100, 100, 200 → median 100 → L = 150
    assert info["vms"] == 1 and info["vms_without_limit"] == ["vm-2"]
    assert events["ts_s"].tolist() == [600.0, 1800.0]  # rows 2 and 6; row 4 continues row 2
    assert samples["oom_kills_total"].tolist() == [0, 0, 1, 1, 1, 1, 2]


def test_derive_bitbrains_bad_arguments():
    with pytest.raises(ValueError, match="limit_multiple must be"):
        derive_bitbrains_failures(_vm([1, 2]), limit_multiple=0.0, first_fraction=0.5)
    with pytest.raises(ValueError, match="first_fraction must be in"):
        derive_bitbrains_failures(_vm([1, 2]), limit_multiple=1.3, first_fraction=1.5)


def test_failure_level_worked_example():
    # container a: windows at 0, 10, 20 → failure at 30; container b: one failure missed
    y = np.array([1, 1, 1, 1, 0])
    p = np.array([0.2, 0.6, 0.9, 0.1, 0.9])
    lead = np.array([30.0, 20.0, 10.0, 5.0, math.nan])
    containers = np.array(["a", "a", "a", "b", "b"], dtype=object)
    ts = np.array([0.0, 10.0, 20.0, 95.0, 200.0])
    got = failure_level(y, p, lead, containers, ts)
    assert got == {"failures": 2, "caught": 1, "caught_fraction": 0.5,
                   "median_first_warning_s": 20.0}


def test_fill_empty_columns():
    X = np.array([[1.0, math.nan, 3.0], [2.0, math.nan, math.nan], [5.0, 7.0, math.nan]])
    out = fill_empty_columns(X, np.array([0, 1]))
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]  # all nan on the train rows
    assert np.isnan(out[1, 2]) and out[0, 2] == 3.0  # partly nan: left alone
    assert np.isnan(X[0, 1])  # a copy


def test_split_by_job_keeps_jobs_whole():
    meta = pd.DataFrame({"app": [f"job-{i % 20}" for i in range(200)] + ["job-big"] * 800,
                         "ts_end_s": 0.0})
    for seed in range(5):
        train, test = split_by_job(meta, seed)
        assert sorted(np.r_[train, test].tolist()) == list(range(1000))
        tr, te = set(meta["app"].iloc[train]), set(meta["app"].iloc[test])
        assert not tr & te
        # 21 jobs, one row each: middles 0.5 … 20.5 against the cut 0.7 × 21 = 14.7 →
        # 15 jobs train, 6 test, whatever their task counts (job-big holds 800 of 1000)
        assert (len(tr), len(te)) == (15, 6)
