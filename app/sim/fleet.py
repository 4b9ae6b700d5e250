"""A simulated fleet with ground-truth failures (pure, seeded numpy; no I/O, no clock).

:func:`simulate_fleet` returns a :class:`SimFleet`: a ``samples`` frame shaped like
:attr:`app.telemetry.trace_data.TraceData.samples` (columns ``container``, ``app``,
``ts_s`` and every metric of :data:`~app.core.sample.METRICS`, sorted by ``ts_s``
then ``container``), an ``events`` frame (``container``, ``app``, ``ts_s``, ``kind``,
``detail``; sorted the same way) that *is* the ground truth, and a ``containers``
frame with every container's drawn parameters, so each reading can be recomputed
from the formulas below.

Time and names
    Step k = 0 … T−1 is at ``ts_k = start_s + k·Δ`` (Δ = ``step_s``). Container i
    (0-based) runs scenario ``scenarios[i % len(scenarios)]`` (round robin); it is
    named ``sim-<i>-<scenario>`` (i zero-padded to ≥ 3 digits, so names sort like i)
    and its ``app`` is ``sim-<scenario>``.

Per-container parameters (drawn with ``numpy.random.default_rng(seed)``, each as one
vector of N values, in this order, for *every* container whatever its scenario, so
the draws of container i do not depend on the scenario mix):

1. ``limit_bytes`` L: one of 256, 512, 1024 MiB;
2. baseline b = β·L, β ~ U(0.2, 0.4);
3. ``cpu_cores`` c₀ ~ U(0.1, 0.5) (the quota Q is 1 core for everyone);
4. leak fill time ~ U(20, 90) min; 5. creep fill time ~ U(3, 8) h;
6. phase φ ~ U(0, 1); 7. plateau level p = q·L, q ~ U(0.6, 0.85);
8. plateau time constant τ ~ U(10, 60) min; 9. redeploy interval ~ U(4, 8) h;
10. diurnal amplitude A = a·L, a ~ U(0.3, 0.5);
11. burst offsets: an N × n_b matrix of U(0, 1) (n_b below).

then the reading noise: an N × T matrix of N(0, 1) for memory, then one for CPU.

Scenarios (u_k = the true memory usage at step k; a *kill* at step k means the usage
reached L in (ts_{k−1}, ts_k]: an ``oom_kill`` event at ``ts_k``, then a ``restart``
event at the same time, and the reading at step k is already the restarted
container's, back at the baseline b):

``leak`` (fails)
    Linear growth from b to L in P = max(2, ⌈fill/Δ⌉) steps, k₀ = ⌊φ·P⌋::

        pos_k = (k + k₀) mod P,   u_k = b + (L − b)·pos_k / P,   kill where pos_k = 0, k ≥ 1

    i.e. a rate of (L − b)/(P·Δ) bytes/s. Worked example: L = 1000, b = 400, P = 6,
    k₀ = 2, Δ = 10 s → u = 600, 700, 800, 900, 400, 500, … with a kill at k = 4
    (ts 40 s) and the next at k = 10; rate 600/60 = 10 B/s.
``creep`` (fails after hours)
    The same formula with the creep fill time (3–8 h).
``plateau`` (never fails)
    The working set warms up towards p < L and levels off; every redeploy
    (R = max(2, ⌈redeploy/Δ⌉) steps, k₀ = ⌊φ·R⌋) starts it again from b::

        pos_k = (k + k₀) mod R,   u_k = b + (p − b)·(1 − exp(−pos_k·Δ/τ)),
        ``restart`` event (detail "redeploy", not a failure) where pos_k = 0, k ≥ 1

    Worked example: b = 200, p = 800, τ = 600 s, Δ = 60 s, k₀ = 0 → u₁₀ = 200 +
    600·(1 − e⁻¹) = 579.27; u only approaches 800.
``diurnal`` (never fails)
    A daily cycle (D = 86400 s) below the limit (b + A ≤ 0.9·L), CPU following it::

        w_k = (1 − cos(2π·(k·Δ + φ·D)/D)) / 2 ∈ [0, 1],   u_k = b + A·w_k,
        CPU mean c̄_k = c₀·(1 + w_k)

    Worked example: b = 200, A = 400, φ = 0, Δ = 3600 s → u₆ = 200 + 400·½ = 400,
    u₁₂ = 600 (noon of the cycle), u₂₄ = 200.
``burst`` (fails suddenly)
    Steady at b; every G = max(m + 1, round(4 h/Δ)) steps a burst starts at
    s_j = j·G + ⌊v_ij·(G − m)⌋ (j = 0 … n_b − 1, n_b = ⌈T/G⌉) and ramps to the limit
    in m = max(2, ⌈180 s/Δ⌉) steps::

        u_{s_j + r} = b + (L − b)·(r + 1)/m   for r = 0 … m − 2,   kill at s_j + m − 1

    (a burst cut off by the end of the run, or one starting at k = 0's kill step,
    has no kill). Worked example: b = 400, L = 1000, m = 3, s = 10 → u₁₀ = 600,
    u₁₁ = 800, kill at k = 12 (reading 400).
``steady`` (never fails)
    u_k = b.

Readings (the samples)
    ``memory_usage_bytes`` = ``memory_working_set_bytes`` = clip(u_k + σ·L·z_k, 0, L)
    with σ = ``noise_fraction`` (z the memory noise): the noise is *reading* noise;
    kills are decided on the noise-free u, so the ground truth is exact.
    ``memory_limit_bytes`` = L; ``oom_kills_total`` = the kills at steps ≤ k;
    ``cpu_quota_cores`` = Q = 1; the CPU rate over (ts_{k−1}, ts_k] is
    c_k = clip(c̄_k + σ·Q·z'_k, 0, Q) (c̄_k = c₀ except for ``diurnal``) and the
    counter is consistent with it::

        cpu_usage_s_total_0 = 0,   cpu_usage_s_total_k = cpu_usage_s_total_{k−1} + c_k·Δ

    (worked example: c₁ = 0.2, c₂ = 0.3, Δ = 60 s → 0, 12, 30). Every other metric
    (throttling, I/O, network, PSI, failcnt) is ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prescale.app.core.sample import METRICS, EventKind

MIB = 1024.0 * 1024.0
#: Every scenario, in the round-robin order of :func:`simulate_fleet`.
SCENARIOS: tuple[str, ...] = ("leak", "plateau", "diurnal", "burst", "creep", "steady")
#: The scenarios whose containers are OOM-killed.
FAILING_SCENARIOS: tuple[str, ...] = ("leak", "burst", "creep")

LIMIT_CHOICES_BYTES: tuple[float, ...] = (256 * MIB, 512 * MIB, 1024 * MIB)
BASELINE_FRACTION = (0.2, 0.4)
CPU_CORES = (0.1, 0.5)
CPU_QUOTA_CORES = 1.0
LEAK_FILL_S = (20 * 60.0, 90 * 60.0)
CREEP_FILL_S = (3 * 3600.0, 8 * 3600.0)
PLATEAU_FRACTION = (0.6, 0.85)
PLATEAU_TAU_S = (10 * 60.0, 60 * 60.0)
REDEPLOY_S = (4 * 3600.0, 8 * 3600.0)
DIURNAL_AMPLITUDE_FRACTION = (0.3, 0.5)
DAY_S = 86400.0
BURST_EVERY_S = 4 * 3600.0
BURST_RAMP_S = 180.0
DEFAULT_START_S = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

#: Columns of :attr:`SimFleet.samples` / :attr:`SimFleet.events` (as in TraceData).
SAMPLE_COLUMNS: tuple[str, ...] = ("container", "app", *METRICS)
EVENT_COLUMNS: tuple[str, ...] = ("container", "app", "ts_s", "kind", "detail")


@dataclass(frozen=True)
class SimFleet:
    """A simulated fleet: samples, ground-truth events and each container's parameters."""

    samples: pd.DataFrame
    events: pd.DataFrame
    containers: pd.DataFrame
    step_s: float
    seed: int


# --------------------------------------------------------------------------- formulas


def fill_steps(fill_s: float, step_s: float) -> int:
    """P = max(2, ⌈fill_s/Δ⌉): the steps a leak takes from the baseline to the limit.

    ``fill_steps(3000, 60) == 50``; ``fill_steps(3001, 60) == 51``; ``fill_steps(30, 60) == 2``.
    """
    return max(2, math.ceil(fill_s / step_s - 1e-9))


def leak_path(
    k: np.ndarray, *, baseline_bytes: float, limit_bytes: float, period_steps: int,
    phase_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u, kill)`` of a ``leak`` / ``creep`` container at steps ``k`` (module doc).

    >>> u, kill = leak_path(np.arange(11), baseline_bytes=400, limit_bytes=1000,
    ...                     period_steps=6, phase_steps=2)
    >>> u.tolist()
    [600.0, 700.0, 800.0, 900.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 400.0]
    >>> np.flatnonzero(kill).tolist()
    [4, 10]
    """
    k = np.asarray(k)
    pos = (k + phase_steps) % period_steps
    u = baseline_bytes + (limit_bytes - baseline_bytes) * pos / period_steps
    return u.astype(np.float64), (pos == 0) & (k >= 1)


def plateau_path(
    k: np.ndarray, *, step_s: float, baseline_bytes: float, plateau_bytes: float,
    tau_s: float, period_steps: int, phase_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u, redeploy)`` of a ``plateau`` container (module doc; never reaches the limit)."""
    k = np.asarray(k)
    pos = (k + phase_steps) % period_steps
    u = baseline_bytes + (plateau_bytes - baseline_bytes) * (1.0 - np.exp(-pos * step_s / tau_s))
    return u.astype(np.float64), (pos == 0) & (k >= 1)


def diurnal_weight(k: np.ndarray, *, step_s: float, phase: float) -> np.ndarray:
    """w_k = (1 − cos(2π·(k·Δ + φ·D)/D))/2 (module doc): 0 at the trough, 1 at the peak."""
    k = np.asarray(k, dtype=np.float64)
    return (1.0 - np.cos(2.0 * np.pi * (k * step_s + phase * DAY_S) / DAY_S)) / 2.0


def burst_path(
    n_steps: int, *, baseline_bytes: float, limit_bytes: float, starts: Sequence[int],
    ramp_steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(u, kill)`` of a ``burst`` container over ``n_steps`` steps (module doc).

    >>> u, kill = burst_path(14, baseline_bytes=400, limit_bytes=1000, starts=[10],
    ...                      ramp_steps=3)
    >>> u[9:].tolist(), np.flatnonzero(kill).tolist()
    ([400.0, 600.0, 800.0, 400.0, 400.0], [12])
    """
    u = np.full(n_steps, float(baseline_bytes))
    kill = np.zeros(n_steps, dtype=bool)
    for s in starts:
        for r in range(ramp_steps - 1):
            if 0 <= s + r < n_steps:
                u[s + r] = baseline_bytes + (limit_bytes - baseline_bytes) * (r + 1) / ramp_steps
        end = s + ramp_steps - 1
        if 1 <= end < n_steps:
            kill[end] = True
    return u, kill


def burst_geometry(n_steps: int, step_s: float) -> tuple[int, int, int]:
    """``(G, m, n_b)``: burst spacing, ramp steps and bursts per container (module doc).

    At Δ = 60 s: G = 240, m = 3; with T = 1440, n_b = 6.
    """
    ramp = max(2, math.ceil(BURST_RAMP_S / step_s - 1e-9))
    every = max(ramp + 1, round(BURST_EVERY_S / step_s))
    return every, ramp, math.ceil(n_steps / every)


def cpu_counter(rate_cores: np.ndarray, step_s: float) -> np.ndarray:
    """Cumulative CPU seconds from per-step rates ``[..., T]``: 0, then + c_k·Δ.

    ``cpu_counter(np.array([9.0, 0.2, 0.3]), 60.0)`` → ``[0, 12, 30]`` (c₀ is unused).
    """
    rate = np.asarray(rate_cores, dtype=np.float64)
    out = np.zeros_like(rate)
    out[..., 1:] = np.cumsum(rate[..., 1:] * step_s, axis=-1)
    return out


# --------------------------------------------------------------------------- the fleet


def _check(n_containers: int, n_steps: int, step_s: float, start_s: float,
           noise_fraction: float, scenarios: Sequence[str], seed: int) -> tuple[str, ...]:
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(n_containers) or n_containers < 1:
        raise ValueError(f"n_containers must be an int ≥ 1, got {n_containers!r}")
    if not is_int(n_steps) or n_steps < 2:
        raise ValueError(f"n_steps must be an int ≥ 2, got {n_steps!r}")
    for name, v in (("step_s", step_s), ("start_s", start_s), ("noise_fraction", noise_fraction)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    if noise_fraction < 0:
        raise ValueError(f"noise_fraction must be ≥ 0, got {noise_fraction!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an int ≥ 0, got {seed!r}")
    if isinstance(scenarios, str):
        raise ValueError(f"scenarios must be a sequence of names, got the string {scenarios!r}")
    chosen = tuple(scenarios)
    if not chosen:
        raise ValueError(f"scenarios must name at least one of {list(SCENARIOS)}")
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    return chosen


def simulate_fleet(
    n_containers: int = 60,
    n_steps: int = 1440,
    step_s: float = 60.0,
    *,
    seed: int = 0,
    noise_fraction: float = 0.01,
    scenarios: Sequence[str] = SCENARIOS,
    start_s: float = DEFAULT_START_S,
) -> SimFleet:
    """N containers × T steps of Δ seconds, with their ground-truth events (module doc).

    The same arguments always give the same frames. A bad argument is a
    ``ValueError`` that names it.
    """
    chosen = _check(n_containers, n_steps, step_s, start_s, noise_fraction, scenarios, seed)
    n, t, dt = int(n_containers), int(n_steps), float(step_s)
    rng = np.random.default_rng(seed)
    limit = rng.choice(np.array(LIMIT_CHOICES_BYTES), size=n)
    baseline = rng.uniform(*BASELINE_FRACTION, size=n) * limit
    cpu0 = rng.uniform(*CPU_CORES, size=n)
    leak_fill = rng.uniform(*LEAK_FILL_S, size=n)
    creep_fill = rng.uniform(*CREEP_FILL_S, size=n)
    phase = rng.uniform(0.0, 1.0, size=n)
    plateau = rng.uniform(*PLATEAU_FRACTION, size=n) * limit
    tau = rng.uniform(*PLATEAU_TAU_S, size=n)
    redeploy = rng.uniform(*REDEPLOY_S, size=n)
    amplitude = rng.uniform(*DIURNAL_AMPLITUDE_FRACTION, size=n) * limit
    every, ramp, n_bursts = burst_geometry(t, dt)
    burst_u = rng.uniform(0.0, 1.0, size=(n, n_bursts))
    mem_z = rng.standard_normal((n, t))
    cpu_z = rng.standard_normal((n, t))

    scen = [chosen[i % len(chosen)] for i in range(n)]
    width = max(3, len(str(n - 1)))
    names = [f"sim-{i:0{width}d}-{s}" for i, s in enumerate(scen)]
    apps = [f"sim-{s}" for s in scen]

    k = np.arange(t)
    usage = np.empty((n, t))
    kills = np.zeros((n, t), dtype=bool)
    redeploys = np.zeros((n, t), dtype=bool)
    cpu_mean = np.repeat(cpu0[:, None], t, axis=1)
    period = np.zeros(n, dtype=np.int64)
    phase_steps = np.zeros(n, dtype=np.int64)
    starts: list[list[int]] = [[] for _ in range(n)]
    for i, s in enumerate(scen):
        if s in ("leak", "creep"):
            period[i] = fill_steps(leak_fill[i] if s == "leak" else creep_fill[i], dt)
            phase_steps[i] = int(phase[i] * period[i])
            usage[i], kills[i] = leak_path(
                k, baseline_bytes=baseline[i], limit_bytes=limit[i],
                period_steps=int(period[i]), phase_steps=int(phase_steps[i]))
        elif s == "plateau":
            period[i] = fill_steps(redeploy[i], dt)
            phase_steps[i] = int(phase[i] * period[i])
            usage[i], redeploys[i] = plateau_path(
                k, step_s=dt, baseline_bytes=baseline[i], plateau_bytes=plateau[i],
                tau_s=tau[i], period_steps=int(period[i]), phase_steps=int(phase_steps[i]))
        elif s == "diurnal":
            w = diurnal_weight(k, step_s=dt, phase=phase[i])
            usage[i] = baseline[i] + amplitude[i] * w
            cpu_mean[i] = cpu0[i] * (1.0 + w)
        elif s == "burst":
            starts[i] = [j * every + int(burst_u[i, j] * (every - ramp)) for j in range(n_bursts)]
            usage[i], kills[i] = burst_path(
                t, baseline_bytes=baseline[i], limit_bytes=limit[i], starts=starts[i],
                ramp_steps=ramp)
        else:  # steady
            usage[i] = baseline[i]

    reading = np.clip(usage + noise_fraction * limit[:, None] * mem_z, 0.0, limit[:, None])
    rate = np.clip(cpu_mean + noise_fraction * CPU_QUOTA_CORES * cpu_z, 0.0, CPU_QUOTA_CORES)
    ts = float(start_s) + k * dt

    # samples: time-major (ts, then container = index order, as the names sort)
    cols: dict[str, np.ndarray] = {m: np.full(n * t, np.nan) for m in METRICS}
    cols["ts_s"] = np.repeat(ts, n)
    cols["memory_usage_bytes"] = reading.T.ravel()
    cols["memory_working_set_bytes"] = reading.T.ravel()
    cols["memory_limit_bytes"] = np.repeat(limit[None, :], t, axis=0).ravel()
    cols["oom_kills_total"] = np.cumsum(kills, axis=1).T.ravel().astype(np.float64)
    cols["cpu_usage_s_total"] = cpu_counter(rate, dt).T.ravel()
    cols["cpu_quota_cores"] = np.full(n * t, CPU_QUOTA_CORES)
    samples = pd.DataFrame({
        "container": np.tile(np.array(names, dtype=object), t),
        "app": np.tile(np.array(apps, dtype=object), t),
        **{m: cols[m] for m in METRICS},
    })

    events = _events(names, apps, scen, ts, kills, redeploys)
    containers = pd.DataFrame({
        "container": names,
        "app": apps,
        "scenario": scen,
        "limit_bytes": limit,
        "baseline_bytes": baseline,
        "cpu_cores": cpu0,
        "period_steps": period,
        "phase_steps": phase_steps,
        "phase": phase,
        "plateau_bytes": plateau,
        "tau_s": tau,
        "amplitude_bytes": amplitude,
        "burst_starts": [tuple(s) for s in starts],
        "burst_ramp_steps": ramp,
        "oom_kills": kills.sum(axis=1),
    })
    return SimFleet(samples, events, containers, dt, int(seed))


def _events(names: list[str], apps: list[str], scen: list[str], ts: np.ndarray,
            kills: np.ndarray, redeploys: np.ndarray) -> pd.DataFrame:
    rows: list[tuple[float, str, int, str, str, str]] = []
    for i in range(len(names)):
        for kk in np.flatnonzero(kills[i]):
            detail = f"sim {scen[i]}: usage reached the limit"
            rows.append((ts[kk], names[i], 0, apps[i], EventKind.OOM_KILL.value, detail))
            rows.append((ts[kk], names[i], 1, apps[i], EventKind.RESTART.value,
                         "sim: restarted at baseline after oom_kill"))
        for kk in np.flatnonzero(redeploys[i]):
            rows.append((ts[kk], names[i], 1, apps[i], EventKind.RESTART.value,
                         "sim plateau: redeploy"))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return pd.DataFrame({
        "container": pd.Series([r[1] for r in rows], dtype=object),
        "app": pd.Series([r[3] for r in rows], dtype=object),
        "ts_s": np.array([r[0] for r in rows], dtype=np.float64),
        "kind": pd.Series([r[4] for r in rows], dtype=object),
        "detail": pd.Series([r[5] for r in rows], dtype=object),
    })
