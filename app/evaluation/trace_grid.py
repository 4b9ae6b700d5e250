"""A real trace's samples as a scenario on a common grid (pure: arrays in, a
:class:`~app.evaluation.scenarios.Scenario` out). The rules — real samples, lifetimes,
the starting limit, the pool sized from the trace — are :func:`from_samples`'s; the
files are read by :mod:`app.evaluation.traces`."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from prescale.app.evaluation.scenarios import GIB, Scenario, _settings, _zeros

#: a trace's pool holds at least this × each container's peak usage (rule 4)
POOL_PEAK_FACTOR = 1.2


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders digits by value: ``vm-2`` before ``vm-10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _starting_limit(usage: np.ndarray, provisioned: np.ndarray) -> float:
    """The limit a container starts with (:func:`from_samples`, rule 3): the provisioned
    value of its first real sample whose provisioned value covers that sample's usage,
    else its largest provisioned value; nan if it has none. Worked example (a VM's boot
    record): usage 15, 16.7, 8 GiB under provisioned 0.29, 19.44, 19.46 GiB → 19.44 GiB."""
    ok = np.isfinite(provisioned) & (provisioned > 0)
    if not ok.any():
        return math.nan
    covers = np.flatnonzero(ok & (provisioned >= np.nan_to_num(usage, nan=0.0)))
    return float(provisioned[covers[0]] if len(covers) else provisioned[ok].max())


def from_samples(name: str, description: str, container: np.ndarray, ts_s: np.ndarray,
                 memory_bytes: np.ndarray, memory_limit_bytes: np.ndarray,
                 cpu_cores: np.ndarray, cpu_quota_cores: np.ndarray, *, source: str,
                 max_containers: int | None = None, max_steps: int | None = None,
                 horizon_steps: int = 6) -> Scenario:
    """A real trace's samples (one row each, any order) as a scenario on a common grid.

    The rules (``Scenario.trace_info`` states them with the numbers of the trace):

    1. **Real samples.** A row is a real sample when its memory usage is finite and,
       if the trace records provisioned memory at all, its provisioned memory is finite
       and > 0 (the readers turn a provisioned 0 — a VM not yet, or no longer, running —
       into nan). Containers: every one with a real sample, in natural order
       (``vm-2`` before ``vm-10``); the first ``max_containers`` if a cap is asked for.
    2. **Grid and lifetimes.** Δ = the median time between two real samples of a
       container; the grid runs from the earliest real sample to the latest (the first
       ``max_steps`` steps if a cap is asked for). A container *exists* on the steps k
       with first ≤ t_k < last + Δ (first, last: its first and last real sample); its
       value at t_k is its last real sample at or before t_k. Outside its life it has
       no demand, no limit and no place in the pool (``Scenario.alive``).
    3. **Starting limit.** The provisioned value in force when the container starts
       running: that of its first real sample whose provisioned value covers the
       sample's usage (a boot record that provisions less than the VM already uses is
       skipped), else its largest provisioned value; a trace without provisioned values:
       1.2 × its first usage (memory), max(1.2 × its peak, 0.1) cores (CPU).
    4. **Pool.** The summed provisioned capacity: Σ over containers of max(largest
       provisioned value, starting limit, :data:`POOL_PEAK_FACTOR` × peak usage), memory
       and CPU. The last term matters for a trace whose limits are its requests (Google
       2011): without it the pool would hold exactly the first limits and deny every
       policy every increase.

    The trace's usage is the demand (``fixed``; a trace does not reset on a restart).
    Worked example: samples of ``a`` at 0, 300, 600 with memory 1, 2, 3 and of ``b`` at
    150, 450 with 5, 6 → Δ = 300; grid 0, 300, 600 → a: 1, 2, 3 (alive at every step);
    b: alive from 300 (150 ≤ 300) to 600 (600 < 450 + 300): –, 5, 6.
    """
    container = np.asarray(container, dtype=object)
    has_limits = bool(np.any(np.isfinite(memory_limit_bytes) & (memory_limit_bytes > 0)))
    real = np.isfinite(memory_bytes)
    if has_limits:
        real &= np.isfinite(memory_limit_bytes) & (memory_limit_bytes > 0)
    all_names = sorted(set(container[real].tolist()), key=natural_key)
    if not all_names:
        raise ValueError(f"trace {source}: no container with a real sample (finite memory "
                         "usage" + (" and provisioned memory > 0)" if has_limits else ")"))
    names = all_names[:max_containers] if max_containers else all_names
    order = np.lexsort((ts_s, container))
    rows: dict[str, np.ndarray] = {}
    c_sorted = container[order]
    bounds = np.flatnonzero(np.r_[True, c_sorted[1:] != c_sorted[:-1], True])
    wanted = set(names)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        c = c_sorted[a]
        if c in wanted:
            r = order[a:b]
            rows[c] = r[real[r]]
    gaps = np.concatenate([np.diff(ts_s[r]) for r in rows.values()] or [[]])
    gaps = gaps[gaps > 0]
    step = float(np.median(gaps)) if len(gaps) else 300.0
    t_start = min(float(ts_s[r[0]]) for r in rows.values())
    t_end = max(float(ts_s[r[-1]]) for r in rows.values())
    t_full = int((t_end - t_start) // step) + 1
    t = max(1, min(max_steps, t_full)) if max_steps else t_full
    grid = t_start + np.arange(t) * step
    n = len(names)
    mem, cpu = np.zeros((n, t)), np.zeros((n, t))
    alive = np.zeros((n, t), dtype=bool)
    lim_m, lim_c = np.zeros(n), np.zeros(n)
    prov_m, prov_c = np.zeros(n), np.zeros(n)
    for i, c in enumerate(names):
        r = rows[c]
        ts = ts_s[r]
        alive[i] = (grid >= ts[0]) & (grid < ts[-1] + step)
        idx = np.clip(np.searchsorted(ts, grid, side="right") - 1, 0, len(r) - 1)
        mem[i] = np.where(alive[i], memory_bytes[r][idx], 0.0)
        cc = np.maximum(np.nan_to_num(cpu_cores[r], nan=0.0), 0.0)
        cpu[i] = np.where(alive[i], cc[idx], 0.0)
        m0 = _starting_limit(memory_bytes[r], memory_limit_bytes[r])
        lim_m[i] = m0 if math.isfinite(m0) else 1.2 * float(memory_bytes[r][0])
        c0 = _starting_limit(cc, cpu_quota_cores[r])
        lim_c[i] = c0 if math.isfinite(c0) else max(1.2 * float(cc.max()), 0.1)
        pm = memory_limit_bytes[r][np.isfinite(memory_limit_bytes[r])]
        pc = cpu_quota_cores[r][np.isfinite(cpu_quota_cores[r])]
        prov_m[i] = max(float(pm.max()) if len(pm) else 0.0, lim_m[i],
                        POOL_PEAK_FACTOR * float(np.nanmax(memory_bytes[r])))
        prov_c[i] = max(float(pc.max()) if len(pc) else 0.0, lim_c[i],
                        POOL_PEAK_FACTOR * float(cc.max()))
    live = alive.any(axis=1)
    if not live.all():  # a container whose life starts after the capped grid
        keep = np.flatnonzero(live)
        names = [names[i] for i in keep]
        mem, cpu, alive = mem[keep], cpu[keep], alive[keep]
        lim_m, lim_c, prov_m, prov_c = lim_m[keep], lim_c[keep], prov_m[keep], prov_c[keep]
        n = len(names)
    pool_m, pool_c = float(prov_m.sum()), float(prov_c.sum())
    horizon = horizon_steps * step
    mem_max = max(float(prov_m.max()) * 2, 16 * GIB)
    cpu_max = max(float(prov_c.max()) * 2, 16.0)
    info = {
        "containers_in_trace": len(all_names), "steps_in_trace": t_full,
        "max_containers": max_containers, "max_steps": max_steps,
        "capped": bool((max_containers and len(all_names) > n) or t < t_full),
        "alive_container_steps": int(alive.sum()),
        "pool_memory_bytes": pool_m, "pool_cpu_cores": pool_c,
        "pool_rule": "the trace's summed provisioned capacity (per container: max(largest "
                     f"provisioned value, starting limit, {POOL_PEAK_FACTOR:g} × peak usage))",
        "lifetime_rule": "a container exists from its first to its last real sample "
                         "(finite usage" + (", provisioned memory > 0)" if has_limits else ")"),
        "limit_rule": "starting limit = the provisioned value of the first real sample "
                      "that covers its usage (else the largest provisioned value)"
                      if has_limits else "starting limit = 1.2 × the first usage "
                      "(the trace has no provisioned values)",
    }
    return Scenario(
        name=name, description=description, step_s=step, names=tuple(names),
        apps=(name,) * n, tenants=("",) * n, memory_limit_bytes=lim_m, cpu_quota_cores=lim_c,
        fixed_bytes=mem, growth_bytes=_zeros(n, t), load_bytes=_zeros(n, t), cpu_cores=cpu,
        horizon_s=horizon, pool_memory_bytes=pool_m, pool_cpu_cores=pool_c, alive=alive,
        settings=_settings(step, horizon, policy={
            "memory_max_bytes": int(mem_max), "cpu_max_cores": float(cpu_max)}),
        memory_max_bytes=mem_max, cpu_max_cores=cpu_max,
        ground_truth="no failure labels: a failure is usage crossing the limit the policy "
        "set (memory → OOM kill, CPU → throttling, a violation)", source=source,
        t0_s=float(t_start), trace_info=info)
