"""Figures of one run (:class:`~app.evaluation.runner.RunRecord`), all from ground truth.

With Δ the step, per container i and step k (``alloc`` = limit × replicas, counting
replicas still starting; ``used`` = min(demand, limit) × ready replicas, 0 while down):

- **failures**: OOM kills + latency breaches (each run of consecutive steps above the
  target is one) + disk-full episodes;
- **failure_minutes**: (steps down after an OOM kill + steps above the latency target
  + steps with the disk full) × Δ / 60;
- **disruptions**: restarts the policy itself caused (evictions of the VPA's
  ``Recreate`` mode), and **disruption_minutes**: the steps down after them × Δ / 60 —
  not failures, but the container does not serve meanwhile;
- **violations**: container-steps where the demand is at or above the limit
  (memory ≥ limit, CPU > quota: throttling) — a violation of CPU is not a failure
  unless it breaks a latency target;
- **slack** per tier: Σ(alloc − used) / Σ alloc over every container-step;
- **resource-hours**: Σ alloc × Δ / 3600 (GiB·h of memory, core·h of CPU);
- **actions**: applied changes (resizes up and down, replica changes);
- **lead time** of a scale-up at step a from limit L_old: (k − a)·Δ for the first
  step k > a where the demand reached L_old (memory ≥, CPU >) within ``4 H``; the
  median over the scale-ups whose demand did reach it;
- **false-positive rate**: scale-ups whose demand did *not* reach the old limit within
  H, over all scale-ups (H = the scenario's horizon).

A container outside its life (a trace's VM before its first or after its last real
sample: ``RunRecord.alive``) counts nowhere: no allocation, no demand, no violation.

**The Autopilot / VPA figures for memory** (:func:`memory_figures`; Rzadca et al.,
"Autopilot", EuroSys 2020, §5; the VPA's evaluation), beside the richer ones above:

- a *violation* is a container-step, after a warm-up of :data:`WARMUP_S` from the
  container's start, where its memory demand (per replica, whether it is up or
  restarting) is above the limit in force: ``demand > limit``;
- the *violation rate* is violations / container-steps after the warm-up;
- the *slack* is Σ(limit − demand) / Σ limit over the non-violating steps after the
  warm-up (per replica × replicas);
- *limit changes* are the applied memory resizes.

Worked example (:func:`memory_figures`): Δ = 300 s, warm-up 3600 s (12 steps), one
container alive for 14 steps with limit 100 and demand 50 except 120 at step 13 →
steps 12 and 13 count; one violation (120 > 100), rate 1/2; slack over step 12:
(100 − 50)/100 = 0.5.

Worked example (:func:`tests.unit.test_evaluation` has it): one container, Δ = 60 s,
limit 100 for 4 steps, demand 50, 60, 70, 80, a scale-up to 200 at step 0 and demand
110 at step 2 → alloc 100, 200, 200, 200 (700), used 50, 60, 70, 80 (260) → slack
440/700 = 0.629; memory GiB·h = 700 × 60 / 3600 / 2^30; lead time of the scale-up:
demand 110 ≥ 100 at step 2 → 120 s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prescale.app.evaluation.runner import RunRecord

GIB = 2.0**30
#: the Autopilot/VPA figures count from this long after a container starts
WARMUP_S = 3600.0


def _episodes(flags: np.ndarray) -> int:
    """Runs of consecutive True per row, summed. Worked example: 0 1 1 0 1 → 2."""
    if flags.size == 0:
        return 0
    f = flags.astype(int)
    starts = np.diff(np.concatenate([np.zeros((f.shape[0], 1), dtype=int), f], axis=1), axis=1)
    return int((starts == 1).sum())


def slack(alloc: np.ndarray, used: np.ndarray) -> float:
    """Σ(alloc − used) / Σ alloc (nan without allocation). Worked example: alloc 100,
    200; used 50, 60 → 190 / 300 = 0.633."""
    total = float(np.nansum(alloc))
    return float(np.nansum(alloc - used) / total) if total > 0 else math.nan


def lead_times(rec: RunRecord, horizon_s: float) -> tuple[list[float], int, int]:
    """(lead times of the scale-ups whose demand reached the old limit within 4 H,
    scale-ups, scale-ups not needed within H)."""
    leads: list[float] = []
    ups = fps = 0
    t = rec.memory_demand_bytes.shape[1]
    for a in rec.actions:
        if a.tier not in ("memory", "cpu") or not a.new > a.old:
            continue
        ups += 1
        demand = (rec.memory_demand_bytes if a.tier == "memory" else rec.cpu_demand_cores)
        d = demand[a.container, a.step + 1:]
        reached = (d >= a.old) if a.tier == "memory" else (d > a.old)
        hit = np.flatnonzero(np.nan_to_num(reached, nan=0).astype(bool))
        within_h = int(math.floor(horizon_s / rec.step_s + 1e-9))
        first = int(hit[0]) + 1 if len(hit) else None
        if first is None or first > within_h:
            fps += 1
        if first is not None and first * rec.step_s <= 4 * horizon_s and first + a.step < t:
            leads.append(first * rec.step_s)
    return leads, ups, fps


def _ages(alive: np.ndarray) -> np.ndarray:
    """Steps since each container started existing (−1 outside its life). Worked
    example: alive 0 1 1 0 1 → −1 0 1 −1 0."""
    out = np.full(alive.shape, -1, dtype=np.int64)
    run = np.zeros(alive.shape[0], dtype=np.int64)
    for k in range(alive.shape[1]):
        run = np.where(alive[:, k], run + 1, 0)
        out[:, k] = run - 1
    return out


def memory_figures(rec: RunRecord, warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """The Autopilot / VPA figures for memory (module docstring)."""
    alive = rec.alive if rec.alive is not None else np.ones_like(rec.down)
    want = rec.memory_want_bytes if rec.memory_want_bytes is not None \
        else rec.memory_demand_bytes
    warm = int(math.ceil(warmup_s / rec.step_s - 1e-9))
    counted = alive & (_ages(alive) >= warm) & np.isfinite(want)
    limit = rec.memory_limit_bytes
    with np.errstate(invalid="ignore"):
        viol = counted & (want > limit)
    ok = counted & ~viol
    reps = rec.replicas.astype(float)
    ready = reps if rec.replicas_ready is None else rec.replicas_ready.astype(float)
    alloc = np.where(ok, limit * reps, 0.0)
    used = np.where(ok, want * ready, 0.0)
    steps = int(counted.sum())
    return {
        "mem_violations": int(viol.sum()),
        "mem_violation_rate": round(float(viol.sum()) / steps, 6) if steps else None,
        "mem_slack": round(float((alloc - used).sum() / alloc.sum()), 4)
        if alloc.sum() > 0 else None,
        "mem_limit_changes": sum(1 for a in rec.actions if a.tier == "memory"),
        "counted_steps": steps,
        "warmup_s": warmup_s,
    }


def figures(rec: RunRecord, horizon_s: float) -> dict[str, Any]:
    """The figures of one run (module docstring)."""
    reps = rec.replicas.astype(float)
    ready = reps if rec.replicas_ready is None else rec.replicas_ready.astype(float)
    down = rec.down
    evicted = (np.zeros_like(down) if rec.evicted is None else rec.evicted)
    down_ev = (np.zeros_like(down) if rec.down_evicted is None else rec.down_evicted)
    mem_d = np.nan_to_num(rec.memory_demand_bytes, nan=0.0)
    cpu_d = np.nan_to_num(rec.cpu_demand_cores, nan=0.0)
    mem_alloc = rec.memory_limit_bytes * reps
    cpu_alloc = rec.cpu_quota_cores * reps
    mem_used = np.where(down, 0.0, np.minimum(mem_d, rec.memory_limit_bytes)) * ready
    cpu_used = np.where(down, 0.0, np.minimum(cpu_d, rec.cpu_quota_cores)) * ready
    dt = rec.step_s
    ooms = int(rec.oom_kill.sum())
    timeouts = _episodes(rec.timeout)
    disk = _episodes(rec.disk_full)
    fail_steps = int((down & ~down_ev).sum() + rec.timeout.sum() + rec.disk_full.sum())
    viol_mem = int(((rec.memory_demand_bytes >= rec.memory_limit_bytes) & ~down).sum())
    viol_cpu = int(((rec.cpu_demand_cores > rec.cpu_quota_cores * (1 + 1e-9)) & ~down).sum())
    leads, ups, fps = lead_times(rec, horizon_s)
    return {
        "failures": ooms + timeouts + disk,
        "oom_kills": ooms,
        "timeouts": timeouts,
        "disk_full": disk,
        "failure_minutes": round(fail_steps * dt / 60.0, 2),
        "disruptions": int(evicted.sum()),
        "disruption_minutes": round(float(down_ev.sum()) * dt / 60.0, 2),
        "violations": viol_mem + viol_cpu + int(rec.disk_full.sum()),
        "violations_memory": viol_mem,
        "violations_cpu": viol_cpu,
        "slack_memory": round(slack(mem_alloc, mem_used), 4),
        "slack_cpu": round(slack(cpu_alloc, cpu_used), 4),
        "memory_gib_hours": round(float(np.nansum(mem_alloc)) * dt / 3600 / GIB, 3),
        "cpu_core_hours": round(float(np.nansum(cpu_alloc)) * dt / 3600, 3),
        "actions": len(rec.actions),
        "scale_ups": ups,
        "median_lead_time_s": float(np.median(leads)) if leads else None,
        "false_positive_rate": round(fps / ups, 4) if ups else None,
        "asks_denied": rec.denied,
        "asks_deferred": rec.deferred,
        **memory_figures(rec),
    }
