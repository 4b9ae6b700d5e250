"""`prescale bench tick`: well-formed figures on a small fleet, exit 2 on bad input.

Nothing here is timed: performance is measured by the benchmark (docs/BENCHMARKS.md),
never asserted by a test. Only the shape and the arithmetic of the report are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prescale.app.core.features import FEATURES
from prescale.app.core.sample import METRICS, M
from prescale.scripts.bench_tick import main, make_fleet, parse_containers

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
STAGES = ("features", "prediction", "decision")
MIB = 1 << 20


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PRESCALE, "bench", "tick", *args], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ), timeout=120)


def test_small_fleet_gives_well_formed_figures():
    p = run("--containers", "200,400", "--repeats", "1", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert [r["containers"] for r in res["results"]] == [200, 400]
    assert res["window_steps"] >= 3 and res["metrics"] == len(METRICS)
    for r in res["results"]:
        n = r["containers"]
        assert r["window_shape"] == [n, res["window_steps"], len(METRICS)]
        assert r["ratio"] > 0 and r["ratio_heuristic"] > 0 and r["ratio_cpu"] > 0
        floor = r["floor"]
        assert floor["floor_ms"]["median"] == pytest.approx(
            floor["read_ms"]["median"] + floor["predict_ms"]["median"], abs=0.01)
        assert r["ratio"] == pytest.approx(
            r["learned"]["ms"]["total"] / floor["floor_ms"]["median"], rel=0.01, abs=0.01)
        for mode in ("heuristic", "learned"):
            ms = r[mode]["ms"]
            assert all(ms[k] >= 0 for k in ms), ms
            assert sum(ms[s] for s in STAGES) == pytest.approx(ms["total"], rel=0.02, abs=0.05)
            parts = ms["thresholds"] + ms["policy"] + ms["judge_other"]
            assert parts == pytest.approx(ms["decision"], rel=0.02, abs=0.05)
            spread = r[mode]["spread_ms"]["total"]
            assert spread["min"] <= spread["median"] <= spread["max"]
            # the fleet gives the policy real work: pre-emptive scale-ups and idle scale-downs
            assert r[mode]["scale_up"] > 0 and r[mode]["scale_down"] > 0
        assert r["heuristic"]["ms"]["model"] == 0 < r["learned"]["ms"]["model"]
        # the tick's own memory: it builds at least the feature matrix (N × features
        # float64), and the ratio is the larger mode's peak over the window's MiB
        peaks = [r[mode]["tick_peak_mib"] for mode in ("heuristic", "learned")]
        assert min(peaks) * MIB >= n * len(FEATURES) * 8 * 0.99
        assert r["tick_peak_per_window"] == pytest.approx(
            max(peaks) / r["window_mib"], abs=0.01)


def test_bad_input_exits_2_with_a_message():
    p = run("--containers", "abc")
    assert p.returncode == 2
    assert "--containers: 'abc' is not a whole number" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("bad, says", [
    (["--containers", "0"], "--containers: 0 is out of range"),
    (["--containers", "100,"], "--containers: '' is not a whole number"),
    (["--containers", "100", "--repeats", "0"], "--repeats: '0' must be a whole number"),
    (["--containers", "100", "--config", "/nonexistent.toml"], "/nonexistent.toml"),
])
def test_bad_input_returns_2_before_any_work(bad, says, capsys):
    assert main(bad) == 2  # the same main() the command calls, in-process
    out = capsys.readouterr()
    assert says in out.err and out.out == ""


def test_parse_containers():
    assert parse_containers("1000, 10_000,100000") == [1000, 10000, 100000]
    with pytest.raises(ValueError, match="out of range"):
        parse_containers("-5")


def test_fleet_is_seeded_and_well_formed():
    a = make_fleet(300, 20, now_s=1e9, interval_s=1.0, horizon_s=30.0, seed=3)
    b = make_fleet(300, 20, now_s=1e9, interval_s=1.0, horizon_s=30.0, seed=3)
    assert np.array_equal(a.window, b.window, equal_nan=True)
    assert a.window.shape == (300, 20, len(METRICS))
    ts = a.window[:, :, M["ts_s"]]
    assert np.nanmax(ts) == 1e9
    assert 0 < a.fails.sum() < (a.kind == "leak").sum() + 1
    assert set(a.kind) == {"steady", "leak", "idle", "cpu_hog", "young", "unlimited"}
