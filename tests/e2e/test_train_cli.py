"""Training from the CLI as a new user does it, on a small Bitbrains-format trace.

The trace records no failure (as Bitbrains): replay says "0 failure events: nothing to
train on", `prescale train` promotes nothing, says why in words and exits 1, and the
heuristic keeps answering /v1/predict (the same service in-process) for a leak. With
--derive-failures the same trace has labels: train registers a model (through the gate)
and `prescale models evaluate --trace` scores it on the trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from prescale.app.telemetry.bitbrains import BB_MEM_USE, BITBRAINS_COLUMNS

PRESCALE = str(Path(sys.executable).with_name("prescale"))
REPO = Path(__file__).resolve().parents[2]
MiB = 2**20


def run(*args: str, cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PRESCALE, *args, "--config", str(cfg)], capture_output=True,
                          text=True, cwd=REPO, env=os.environ.copy(), timeout=300)


def bitbrains_like(path: Path, n_vms: int = 6, n_rows: int = 800, seed: int = 0) -> Path:
    """VMs with a daily cycle and surges that go well above their early level."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 1_372_629_804 + 300 * np.arange(n_rows)
    for vm in range(1, n_vms + 1):
        base = 1_000_000.0 * (1 + vm / 3)  # KB
        cycle = 0.15 * base * np.sin(2 * np.pi * np.arange(n_rows) / 288)
        surge = np.zeros(n_rows)
        for start in range(250 + 20 * vm, n_rows, 120):
            ramp = np.linspace(0, 0.8 * base, 12)
            surge[start:start + 12] = ramp[: max(0, min(12, n_rows - start))]
        mem = base + cycle + surge + rng.normal(0, 0.01 * base, n_rows)
        for i in range(n_rows):
            rows.append([vm, t[i], 2, 5852.0, 100.0 + 50 * (surge[i] > 0), 1.7,
                         8_218_624.0, mem[i], 10.0, 5.0, 1.0, 1.0])
    df = pd.DataFrame(rows, columns=list(BITBRAINS_COLUMNS[:5]) + ["CPU usage [%]"]
                      + list(BITBRAINS_COLUMNS[5:]))
    assert BB_MEM_USE in df.columns
    df.to_csv(path, index=False)
    return path


def config(tmp: Path, name: str) -> Path:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(f'data_dir = "{tmp / name}"\n')
    return cfg


def test_a_trace_without_failures_trains_nothing_and_the_heuristic_keeps_answering(tmp_path):
    trace = bitbrains_like(tmp_path / "vms.csv")
    cfg = config(tmp_path, "plain")
    p = run("replay", "--trace", str(trace), cfg=cfg)
    assert p.returncode == 0, p.stderr
    assert "0 failure events: nothing to train on" in p.stderr
    p = run("train", cfg=cfg)
    assert p.returncode == 1, p.stderr
    assert "nothing learned for _global/memory: no positive window of tier memory among" in (
        p.stderr.replace("\n", " "))
    assert "nothing registered" in p.stderr
    assert json.loads(run("models", "list", "-o", "json", cfg=cfg).stdout) == []
    # the heuristic still answers for an obvious leak (the prediction service in-process)
    from prescale.app.api_models import PredictRequest
    from prescale.app.serve_app import PredictionService
    from prescale.app.settings import load_settings

    t0 = time.time() - 60
    leak = {"name": "leaker", "app": "bitbrains-rnd", "samples": [
        {"ts_s": t0 + i, "memory_usage_bytes": 40 * MiB + 4 * MiB * i,
         "memory_limit_bytes": 128 * MiB} for i in range(20)]}
    svc = PredictionService(load_settings(cfg))
    mem = svc.predict(PredictRequest.model_validate({"containers": [leak]}))[
        "predictions"][0]["tiers"]["memory"]
    assert mem["p_fail"] >= 0.9 and mem["model"] == "trend-exhaustion/v1"


def test_derived_failures_train_and_evaluate_on_a_trace(tmp_path):
    trace = bitbrains_like(tmp_path / "vms.csv")
    cfg = config(tmp_path, "derived")
    p = run("train", "--trace", str(trace), "--derive-failures", "--window-steps", "12",
            "--horizon", "1800", "--json", cfg=cfg)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert "derived failures: memory limit = 1.3 × the median of each container's first 25%" \
        in p.stderr.replace("\n", " ")
    assert out["status"] in ("promoted", "candidate") and out["learned"] is True
    assert out["gate"]["comparisons"][-1]["reference"] == "heuristic"
    version = out["version_id"]
    p = run("models", "evaluate", "_global", "--trace", str(trace), "--derive-failures",
            "--version", version, "--json", cfg=cfg)
    assert p.returncode == 0, p.stderr
    ev = json.loads(p.stdout)
    assert ev["version_id"] == version and ev["metrics"]["n_positive"] > 0
    for key in ("pr_auc", "roc_auc", "base_rate"):
        assert 0 <= ev["metrics"][key] <= 1
    assert ev["threshold"] == out["test"]["threshold"]
    assert ev["best_single_feature"]["feature"] and ev["reliability"]["count"]
    # the human form names the same figures
    p = run("models", "evaluate", "_global", "--trace", str(trace), "--derive-failures",
            "--version", version, cfg=cfg)
    assert p.returncode == 0, p.stderr
    assert "best single feature" in p.stdout and "reliability" in p.stdout
