"""Synthetic fleets with known failures, for the training tests (a history store or a
trace: :class:`app.telemetry.trace_data.TraceData`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prescale.app.core.sample import METRICS
from prescale.app.telemetry.trace_data import (
    EVENT_COLUMNS,
    METRIC_DEFAULTS,
    SAMPLE_COLUMNS,
    TraceData,
)

MIB = 2**20
STEP_S = 5.0
N_STEPS = 1440  # 2 hours
T0_S = 1_700_000_000.0
LIMIT_BYTES = 512 * MIB
BASE_BYTES = 128 * MIB
#: (idle steps after a restart, steps to fill from base to limit) of the leakers
LEAKS = ((60, 120), (30, 80), (90, 150), (45, 100))
N_CONTAINERS = 12  # leak, sawtooth, steady, leak, … → 4 leakers
DATA_KW = {"horizon_s": 60.0, "window_steps": 12, "recent_steps": 4, "stride": 3}
WEAK_RF = {"n_estimators": 1, "max_depth": 1, "max_features": 1}  # a stump on 1 feature


def synthetic_fleet(n_containers: int = N_CONTAINERS, seed: int = 0) -> TraceData:
    """Containers with known failures, steps of 5 s from T0_S.

    Container i runs ``("leak", "sawtooth", "steady")[i % 3]``, app ``("web",
    "batch")[i % 2]``. With pos_k = k mod P (k = step):

    - leak (the j-th leaker, ``(idle, fill) = LEAKS[j % 4]``, P = idle + fill): true
      usage ``u = base + (limit − base)·max(0, pos − idle)/fill``; it reaches the limit
      when pos wraps to 0: an ``oom_kill`` at every step k ≥ 1 with pos_k = 0, after
      which usage restarts at base. So a leaker has ``(N_STEPS − 1) // P`` kills.
    - sawtooth (fill 100 + 10·i steps): climbs from base to 0.85·limit, then back to
      base; never killed.
    - steady: base.

    Readings add N(0, 2 MiB) noise (seeded); CPU is 0.2 cores.
    """
    rng = np.random.default_rng(seed)
    k = np.arange(N_STEPS)
    ts = T0_S + k * STEP_S
    frames, events = [], []
    n_leak = 0
    for i in range(n_containers):
        scenario = ("leak", "sawtooth", "steady")[i % 3]
        app = ("web", "batch")[i % 2]
        name = f"{app}-{scenario}-{i:02d}"
        if scenario == "leak":
            idle, fill = LEAKS[n_leak % len(LEAKS)]
            n_leak += 1
            pos = k % (idle + fill)
            u = BASE_BYTES + (LIMIT_BYTES - BASE_BYTES) * np.maximum(0, pos - idle) / fill
            kills = np.flatnonzero((pos == 0) & (k >= 1))
            events += [(name, app, ts[j], "oom_kill", "synthetic leak") for j in kills]
            oom = np.cumsum(np.isin(k, kills))
        elif scenario == "sawtooth":
            fill = 100 + 10 * i
            u = BASE_BYTES + (0.85 * LIMIT_BYTES - BASE_BYTES) * (k % fill) / fill
            oom = np.zeros(N_STEPS)
        else:
            u = np.full(N_STEPS, float(BASE_BYTES))
            oom = np.zeros(N_STEPS)
        mem = np.maximum(u + rng.normal(0.0, 2 * MIB, N_STEPS), 0.0)
        frames.append(pd.DataFrame({
            "container": name, "app": app, "ts_s": ts,
            "memory_usage_bytes": mem, "memory_working_set_bytes": mem,
            "memory_limit_bytes": float(LIMIT_BYTES), "oom_kills_total": oom.astype(float),
            "cpu_usage_s_total": 0.2 * STEP_S * k, "cpu_quota_cores": 1.0,
        }))
    samples = pd.concat(frames, ignore_index=True)
    for m in METRICS:
        if m not in samples.columns:
            samples[m] = METRIC_DEFAULTS[m]
    samples = samples.loc[:, list(SAMPLE_COLUMNS)].sort_values(
        ["ts_s", "container"], kind="stable").reset_index(drop=True)
    return TraceData(samples, pd.DataFrame(events, columns=list(EVENT_COLUMNS)), {}, "synthetic")


def warning_fleet(seed: int = 0) -> TraceData:
    """:func:`synthetic_fleet` plus 6 containers whose kills no memory trend announces.

    Each "surge" container (app ``web`` or ``batch``) holds its memory at a quarter of
    the limit; every ``P = 90 + 15·j`` steps its CPU rate jumps from 0.2 to 0.9 cores for
    8 steps (40 s) and at the end of the surge it is OOM-killed (a spike no 5-s reading
    shows). The trend heuristic cannot see these failures coming; a learned model can
    (the CPU surge), so it should beat the heuristic — and the heuristic still catches
    the leaks.
    """
    base = synthetic_fleet(seed=seed)
    rng = np.random.default_rng(seed + 1)
    k = np.arange(N_STEPS)
    ts = T0_S + k * STEP_S
    frames, events = [base.samples], [base.events]
    for j in range(6):
        app = ("web", "batch")[j % 2]
        name = f"{app}-surge-{j:02d}"
        period = 90 + 15 * j
        pos = k % period
        surge = pos >= period - 8
        rate = np.where(surge, 0.9, 0.2)
        kills = np.flatnonzero((pos == period - 1) & (k >= 1))
        mem = np.maximum(LIMIT_BYTES / 4 + rng.normal(0.0, 2 * MIB, N_STEPS), 0.0)
        frame = pd.DataFrame({
            "container": name, "app": app, "ts_s": ts,
            "memory_usage_bytes": mem, "memory_working_set_bytes": mem,
            "memory_limit_bytes": float(LIMIT_BYTES),
            "oom_kills_total": np.cumsum(np.isin(k, kills)).astype(float),
            "cpu_usage_s_total": np.cumsum(rate * STEP_S), "cpu_quota_cores": 1.0,
        })
        for m in METRICS:
            if m not in frame.columns:
                frame[m] = METRIC_DEFAULTS[m]
        frames.append(frame.loc[:, list(SAMPLE_COLUMNS)])
        events.append(pd.DataFrame([(name, app, ts[i], "oom_kill", "synthetic surge")
                                    for i in kills], columns=list(EVENT_COLUMNS)))
    samples = pd.concat(frames, ignore_index=True).sort_values(
        ["ts_s", "container"], kind="stable").reset_index(drop=True)
    return TraceData(samples, pd.concat(events, ignore_index=True), {}, "synthetic+surges")


def expected_kills(n_containers: int = N_CONTAINERS) -> int:
    n_leak = len(range(0, n_containers, 3))
    return sum((N_STEPS - 1) // sum(LEAKS[j % len(LEAKS)]) for j in range(n_leak))
