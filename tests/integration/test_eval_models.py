"""The model evaluation script, run as a user runs it (``--quick --json``), on the real
shared traces (Google 2011, Bitbrains) and the simulated fleet.

The real-trace checks skip, naming the path, when ``../shared/data`` (or
``$PRESCALE_TRACE_DIR``) lacks the traces; the simulated fleet always runs. The pure
helpers of the script (failure-level lead times) are checked on hand-made frames with
worked numbers; the failure derivation is app.learning.limit_failures'
(tests/unit/test_labels_and_peers.py).
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
import pytest

from prescale.app.core.features import FEATURES
from prescale.app.telemetry.trace_data import (
    BITBRAINS_RND_FILE,
    GOOGLE2011_EVENTS_FILE,
    GOOGLE2011_USAGE_FILE,
    TRACE_DIR_ENV,
    find_trace_dir,
)
from prescale.scripts.eval_models.config import default_kinds
from prescale.scripts.eval_models.fleets import failure_level
from prescale.scripts.eval_models.report import render

REPO = Path(__file__).resolve().parents[2]
TRACES = find_trace_dir()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prescale.scripts.eval_models", *args],
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
    for kind, m in f["models"].items():
        assert m["tp"] + m["fn"] == f["n_test_positive"]
        assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == f["n_test"]
        assert m["recall"] == pytest.approx(m["tp"] / f["n_test_positive"])
        if m["tp"] + m["fp"]:
            assert m["precision"] == pytest.approx(m["tp"] / (m["tp"] + m["fp"]))
        assert _in_unit(m["pr_auc"]) and _in_unit(m["brier"]) and _in_unit(m["roc_auc"])
        assert m["pr_auc_lo"] <= m["pr_auc_hi"] and _in_unit(m["pr_auc_lo"])
        if kind != "heuristic":  # the paired difference from the heuristic has an interval
            assert m["minus_heuristic_lo"] <= m["minus_heuristic_hi"]
        assert m["threshold"] is None or 0 <= m["threshold"] <= 1
        assert m["failures_caught"] <= m["failures"]
        if m["tp"]:
            assert 0 < m["median_lead_s"] <= f["horizon_s"]
            assert m["median_lead_s"] <= m["median_first_warning_s"] <= f["horizon_s"]


def test_quick_run_structure_and_timings(quick):
    """The report's structure, and its timings recorded (printed, not asserted: how long
    a run takes is a benchmark's business, and a loaded machine must not fail a test)."""
    report, elapsed = quick
    print(f"\nquick eval_models run: {elapsed:.1f} s; {report['timings_s']}")
    assert report["config"]["quick"] is True
    assert report["kinds"] == list(default_kinds())
    assert {"google2011", "sim", "bitbrains", "all", "cpu_all"} <= set(report["timings_s"])
    assert all(v > 0 for v in report["timings_s"].values())
    md = render(report)  # the Markdown view of the same report (nan → None in JSON)
    assert "### Google 2011" in md and "### Replay fleets" in md and "### Timings (s)" in md


def test_quick_sim_fleet(quick):
    report, _ = quick
    sim = report["fleets"]["sim"]
    # the quick fleet is deterministic: 24 containers × 480 steps, seed 0
    assert (sim["samples"], sim["containers"], sim["failures"]) == (11520, 24, 52)
    assert (sim["windows"], sim["n_test"], sim["n_test_positive"]) == (5706, 1726, 118)
    assert sim["test_positive_per_app"] == {"sim-leak": 81, "sim-burst": 31, "sim-creep": 6}
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
    assert g["params"]["split"] == "group" and g["folds"] == 5 and g["repeats"] == 1
    learned = [k for k in report["kinds"] if k != "heuristic"]
    assert set(g["models"]) == set(learned)
    for m in g["models"].values():
        assert len(m["folds"]) == 5
        # whole jobs per fold, positives in every fold, every task held out once
        assert sum(f["n_test"] for f in m["folds"]) == 6153
        assert all(f["n_test_positive"] > 0 for f in m["folds"])
        for f in m["folds"]:
            for score in (f["model"], f["usage_rule"], f["rule"], f["heuristic"]):
                assert _in_unit(score["pr_auc"]) and _in_unit(score["roc_auc"])
            # 2 samples per task: the heuristic cannot rank (a constant: ROC-AUC 0.5)
            assert f["heuristic"]["rankable"] == 0 and f["heuristic"]["roc_auc"] == 0.5
        s = m["summary"]
        assert s["model"]["pr_auc"]["n"] == 5
        assert s["model_minus_usage_rule_ap"]["mean"] == pytest.approx(
            np.mean([f["model"]["pr_auc"] - f["usage_rule"]["pr_auc"] for f in m["folds"]]))
        assert sum(m["pooled_reliability"]["count"]) == 6153


def test_quick_bitbrains(quick):
    report, _ = quick
    b = report["fleets"]["bitbrains"]
    if "skipped" in b:
        pytest.skip(b["skipped"])
    d = b["derivation"]
    # the first 8 VMs (vm-1 … vm-8) of the shared file
    assert (d["containers"], d["rows"], d["oom_kills"]) == (8, 66068, 4419)
    assert d["containers_without_limit"] == []
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


def test_failure_level_worked_example():
    # container a: windows at 0, 10, 20 → failure at 30; container b: one failure missed
    y = np.array([1, 1, 1, 1, 0])
    p = np.array([0.2, 0.6, 0.9, 0.1, 0.9])
    lead = np.array([30.0, 20.0, 10.0, 5.0, math.nan])
    containers = np.array(["a", "a", "a", "b", "b"], dtype=object)
    ts = np.array([0.0, 10.0, 20.0, 95.0, 200.0])
    got = failure_level(y, p, lead, containers, ts, threshold=0.5)
    assert got == {"failures": 2, "caught": 1, "caught_fraction": 0.5,
                   "median_first_warning_s": 20.0}


