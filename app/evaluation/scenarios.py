"""Scenarios with ground truth for ``prescale evaluate`` (pure, seeded numpy).

A :class:`Scenario` is N containers over T steps of ``step_s`` seconds. Its *demand*
does not depend on any limit; the limit the policy under test sets decides what fails
(closed loop, :mod:`app.evaluation.runner`). Per container i, step k, with ``a`` the
steps since the container's last (re)start and ``r`` its *ready* replica count (a
replica added by a scale-out serves only ``replica_startup_s`` later, 30 s by default;
until then the ready ones carry the load)::

    memory demand (per replica)  m = fixed[i, k] + growth[i, a] + load[i, k] / r
    CPU demand (per replica)     c = cpu[i, k] / r
    disk demand                  d = disk[i, k]

- ``fixed``: what every replica holds whatever the load (runtime, caches; a trace's
  memory series);
- ``growth``: indexed by *age*, so it resets when the container restarts (a leak, a
  working set warming up);
- ``load``, ``cpu``: request-driven, shared by the replicas of a horizontally scaled
  service (diurnal load, bursts, CPU saturation).

A scenario built around request-driven load (``diurnal``, ``burst``,
``cpu_saturation``, ``idle``, and the bursty tenant of ``tenants``) marks its
containers ``replicated``: each is one replica of a horizontally scaled service, whose
``load`` and ``cpu`` the ready replicas share, so prescale may scale it out as it does
live. A leak, a working set, a disk and a VM are not replicated.

Failures (decided in the runner against the limits in force at step k):

- memory ``m ≥ memory limit`` → OOM kill; the container is down for ``restart_steps``
  steps (failure-minutes), then restarts with age 0;
- CPU ``c > quota`` → throttling (a *limit violation*); where a latency target is set
  (``latency_base_s`` finite), latency = base / (1 − min(ρ, 0.99)) with ρ = c / quota,
  and latency > target is a *timeout* failure (one per breach, minutes while it lasts);
- disk ``d ≥ disk capacity`` → disk full (one failure per episode, minutes while full).

An eviction (the VPA's ``Recreate`` mode) re-creates the container: it is down for
max(1, ⌈replica_startup_s / Δ⌉) steps, then restarts with age 0 (a leak resets) — a
*disruption*, counted apart from the failures.

Scenario catalogue (:data:`SYNTHETIC`; parameters drawn with ``default_rng(seed)``):

=============== ============================================================================
leak            growth = rate·a·Δ, rate = (L − b)/fill, fill ~ U(30, 90) min; unbounded
plateau         growth = (p − b)(1 − e^(−aΔ/τ)), p = q·L, q ~ U(0.6, 1.3): half level off
                above the limit (must grow once), half below (must not)
diurnal         load = A·w_k, w_k = (1 − cos 2π(kΔ/D + φ))/2, peak b + A ~ U(0.8, 1.2)·L;
                CPU follows w
burst           load: a ramp from 0 to P = U(0.9, 1.3)·L − b over 5 min, held 10 min,
                down over 5 min, about once an hour
creep           the leak formula with fill ~ U(3, 8) h
cpu_saturation  CPU ramps from 0.3·Q to U(1.5, 2.5)·Q over U(2, 4) h, then holds;
                latency target 10 × base (breaks at ρ > 0.9)
disk_fill       disk grows linearly to the disk capacity in U(2, 6) h (and on, 8 h in all);
                prescale's disk tier grows the volume, no baseline resizes disks
net_saturation  traffic ramps from 0.3·L to U(1.5, 2.5)·L of a 10 MiB/s receive limit over
                U(2, 4) h; a step with traffic above the limit is a timeout (it queues);
                prescale's network tier raises the limit, no baseline does
tenants         3 tenants × 3 containers (leaks, bursts, steady) in one pool of
                1.4 × the sum of the first limits
idle            long idle stretches at 0.1·L, active phases at 0.7·L (ramped over 15 min)
=============== ============================================================================

Worked example (leak ground truth, :func:`first_kill_step`): L = 512 MiB, b = 200 MiB,
rate 312 MiB / 30 min, Δ = 60 s → growth per step 10.4 MiB; the first step with
b + 10.4·a ≥ 512 is a = 30 → under a static limit the first OOM kill is at step 30;
with ``restart_steps`` 1 the next is at step 30 + 1 + 1 + 30 = 62 (period a* + d + 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIB = 2.0**20
GIB = 2.0**30
DAY_S = 86_400.0
T0_S = 1_700_000_000.0  # the simulated clock's start (a Unix time, as live samples carry)


@dataclass(frozen=True)
class Scenario:
    """N containers × T steps (arrays ``[N, T]``; ``growth`` is indexed by age)."""

    name: str
    description: str
    step_s: float
    names: tuple[str, ...]
    apps: tuple[str, ...]
    tenants: tuple[str, ...]
    memory_limit_bytes: np.ndarray  # [N] first (user-configured) limits
    cpu_quota_cores: np.ndarray  # [N]
    fixed_bytes: np.ndarray  # [N, T]
    growth_bytes: np.ndarray  # [N, T] by age
    load_bytes: np.ndarray  # [N, T]
    cpu_cores: np.ndarray  # [N, T]
    disk_bytes: np.ndarray | None = None  # [N, T]
    #: [N, T] bool: the container exists at step k (None: every container, every step)
    alive: np.ndarray | None = None
    #: [N] bool: one replica of a horizontally scaled service, which prescale may scale
    #: out (None: none is)
    replicated: np.ndarray | None = None
    disk_capacity_bytes: np.ndarray | None = None  # [N]
    #: [N, T] the rate of traffic sent to each container; above its receive limit the
    #: excess queues (a saturation step, counted as a timeout)
    net_demand_bytes_per_s: np.ndarray | None = None
    net_limit_bytes_per_s: np.ndarray | None = None  # [N] the first receive limits
    latency_base_s: np.ndarray | None = None  # [N]; nan = no latency target
    latency_target_s: np.ndarray | None = None  # [N]
    restart_steps: int = 1
    replica_startup_s: float = 30.0  # a new replica (or re-created pod) serves after this
    pool_memory_bytes: float = 256 * GIB
    pool_cpu_cores: float = 256.0
    horizon_s: float = 900.0  # prescale's horizon H here, and the H of the FP rate
    settings: Mapping[str, Any] = field(default_factory=dict)  # prescale overrides
    memory_max_bytes: float = 16 * GIB  # every policy's upper bound
    cpu_max_cores: float = 16.0
    ground_truth: str = ""
    source: str = "synthetic"
    t0_s: float = T0_S
    #: a trace scenario's rules and numbers (caps, lifetimes, pool sizing), for the report
    trace_info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, t = len(self.names), self.fixed_bytes.shape[1] if self.fixed_bytes.ndim == 2 else -1
        for what in ("fixed_bytes", "growth_bytes", "load_bytes", "cpu_cores"):
            arr = getattr(self, what)
            if arr.shape != (n, t):
                raise ValueError(f"scenario {self.name}: {what} has shape {arr.shape}, "
                                 f"expected ({n}, {t})")
        if self.alive is not None and self.alive.shape != (n, t):
            raise ValueError(f"scenario {self.name}: alive has shape {self.alive.shape}, "
                             f"expected ({n}, {t})")
        if len(self.apps) != n or len(self.tenants) != n:
            raise ValueError(f"scenario {self.name}: apps/tenants need {n} entries")
        if not (self.step_s > 0 and t > 0 and self.restart_steps >= 0
                and self.replica_startup_s >= 0):
            raise ValueError(f"scenario {self.name}: step_s > 0, T > 0, restart_steps >= 0, "
                             "replica_startup_s >= 0")

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def steps(self) -> int:
        return self.fixed_bytes.shape[1]

    @property
    def duration_s(self) -> float:
        return self.steps * self.step_s

    @property
    def failure_tiers(self) -> tuple[str, ...]:
        """The tiers in which this scenario's containers can fail (what its figures draw),
        read from the scenario's own data, in the order memory, cpu, disk, network:

        - ``"cpu"`` where a latency target is set (a CPU timeout is possible);
        - ``"disk"`` where there is a disk series (a full volume), ``"network"`` where
          there is traffic (a saturated receive limit);
        - ``"memory"`` where some container's memory demand reaches its first limit
          (an OOM kill under a static limit), and whenever no other tier can fail.

        Worked examples: ``leak`` → ("memory",) (its growth passes the 512 MiB limit);
        ``cpu_saturation`` → ("cpu",) (200 MiB under a 512 MiB limit, latency target
        set); ``disk_fill`` → ("disk",); ``net_saturation`` → ("network",); ``idle``
        → ("memory",) (nothing reaches a limit; memory by default)."""
        others = []
        if self.latency_base_s is not None and np.isfinite(self.latency_base_s).any():
            others.append("cpu")
        if self.disk_bytes is not None:
            others.append("disk")
        if self.net_demand_bytes_per_s is not None:
            others.append("network")
        m = np.nan_to_num(self.fixed_bytes + self.load_bytes)  # a trace: nan outside life
        peak = m.max(axis=1) + np.nan_to_num(self.growth_bytes).max(axis=1)
        memory = bool((peak >= self.memory_limit_bytes).any()) or not others
        return ("memory",) * memory + tuple(others)


def first_kill_step(limit_bytes: float, base_bytes: float, growth_per_step_bytes: float) -> int:
    """Age (steps) of the first OOM kill of a linear leak under a fixed limit: the first
    a with base + g·a ≥ limit. Worked example: 512, 200, 10.4 MiB → 30."""
    if base_bytes >= limit_bytes:
        return 0
    return int(math.ceil((limit_bytes - base_bytes) / growth_per_step_bytes - 1e-12))


def static_kill_steps(limit_bytes: float, base_bytes: float, growth_per_step_bytes: float,
                      restart_steps: int, n_steps: int) -> list[int]:
    """Steps of every OOM kill of a linear leak under a static limit (the ground truth):
    the first at a*, then every a* + restart_steps + 1 steps."""
    a = first_kill_step(limit_bytes, base_bytes, growth_per_step_bytes)
    period = a + restart_steps + 1
    return list(range(a, n_steps, period))


# --------------------------------------------------------------------------- builders


def _names(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i}" for i in range(n))


def _zeros(n: int, t: int) -> np.ndarray:
    return np.zeros((n, t))


def _settings(step_s: float, horizon_s: float, **extra: Any) -> dict[str, Any]:
    """prescale's settings in a scenario: the loop ticks once per step, the horizon is
    the scenario's H, the bounds are the scenario's (the same for every policy)."""
    base: dict[str, Any] = {
        "mode": "auto",
        "loop": {"interval_s": step_s, "window_steps": 60},
        "predictor": {"horizon_s": horizon_s},
        "policy": {"cooldown_s": step_s, "memory_max_bytes": int(16 * GIB),
                   "cpu_max_cores": 16.0},
    }
    for k, v in extra.items():
        if isinstance(v, dict):
            base.setdefault(k, {}).update(v)
        else:
            base[k] = v
    return base


def leak(seed: int = 0, n: int = 6, step_s: float = 60.0, hours: float = 8.0,
         fill_min: tuple[float, float] = (30.0, 90.0), name: str = "leak",
         limit_bytes: float = 512 * MIB) -> Scenario:
    """Linear leaks that reset on restart; the first kill is at :func:`first_kill_step`."""
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    base = rng.uniform(150, 250, n) * MIB
    fill_s = rng.uniform(*fill_min, n) * 60
    rate = (limit_bytes - base) / fill_s  # bytes/s
    age = np.arange(t)
    growth = rate[:, None] * age[None, :] * step_s
    horizon = 15 * 60.0 if fill_min[1] <= 120 else 60 * 60.0
    gt = "; ".join(
        f"{c}: first kill at step {first_kill_step(limit_bytes, b, r * step_s)}"
        for c, b, r in zip(_names(name, n), base, rate, strict=True))
    return Scenario(
        name=name, description=f"memory leak filling {fill_min[0]:g}-{fill_min[1]:g} min "
        f"to a {limit_bytes / MIB:.0f} MiB limit, unbounded, reset by a restart",
        step_s=step_s, names=_names(name, n), apps=(name,) * n, tenants=("",) * n,
        memory_limit_bytes=np.full(n, limit_bytes), cpu_quota_cores=np.full(n, 1.0),
        fixed_bytes=np.repeat(base[:, None], t, axis=1), growth_bytes=growth,
        load_bytes=_zeros(n, t), cpu_cores=np.full((n, t), 0.2),
        horizon_s=horizon, settings=_settings(step_s, horizon), ground_truth=gt)


def creep(seed: int = 1) -> Scenario:
    """The leak formula with a fill time of 3–8 h, 2-minute steps over 24 h."""
    s = leak(seed=seed, n=6, step_s=120.0, hours=24.0, fill_min=(180.0, 480.0), name="creep",
             limit_bytes=1 * GIB)
    return _replace(s, description="slow creep: a leak filling a 1 GiB limit in 3-8 h")


def plateau(seed: int = 2, n: int = 6, step_s: float = 60.0, hours: float = 8.0) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    limit = 512 * MIB
    base = rng.uniform(100, 200, n) * MIB
    q = np.where(np.arange(n) % 2 == 0, rng.uniform(1.05, 1.3, n), rng.uniform(0.6, 0.85, n))
    level = q * limit
    tau = rng.uniform(20, 60, n) * 60
    age = np.arange(t) * step_s
    growth = (level - base)[:, None] * (1 - np.exp(-age[None, :] / tau[:, None]))
    horizon = 15 * 60.0
    gt = ("containers 0, 2, 4 level off above the limit (they fail under a static limit); "
          "1, 3, 5 below it (any scale-up for them is not needed)")
    return Scenario(
        name="plateau", description="working set warming up and levelling off (half above "
        "the limit)", step_s=step_s, names=_names("plateau", n), apps=("plateau",) * n,
        tenants=("",) * n, memory_limit_bytes=np.full(n, limit),
        cpu_quota_cores=np.full(n, 1.0), fixed_bytes=np.repeat(base[:, None], t, axis=1),
        growth_bytes=growth, load_bytes=_zeros(n, t), cpu_cores=np.full((n, t), 0.2),
        horizon_s=horizon, settings=_settings(step_s, horizon), ground_truth=gt)


def diurnal_weight(k: np.ndarray, step_s: float, phase: float) -> np.ndarray:
    """w_k = (1 − cos 2π(kΔ/D + φ)) / 2 ∈ [0, 1] (as :func:`app.sim.fleet.diurnal_weight`).
    Worked example: Δ = 3600 s, φ = 0 → w_6 = 0.5, w_12 = 1, w_24 = 0."""
    return (1 - np.cos(2 * np.pi * (k * step_s / DAY_S + phase))) / 2


def diurnal(seed: int = 3, n: int = 6, step_s: float = 300.0, days: float = 2.0) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(days * DAY_S / step_s))
    limit = 1 * GIB
    base = rng.uniform(0.2, 0.3, n) * limit
    peak = rng.uniform(0.8, 1.2, n) * limit
    phase = rng.uniform(0, 1, n)
    w = np.stack([diurnal_weight(np.arange(t), step_s, p) for p in phase])
    load = (peak - base)[:, None] * w
    cpu = 0.2 + rng.uniform(0.6, 1.1, n)[:, None] * w  # quota 1 core
    horizon = 3600.0
    gt = "; ".join(f"diurnal-{i}: peak {p / limit:.2f} × limit"
                   for i, p in enumerate(peak))
    return Scenario(
        name="diurnal", description="daily cycle of memory and CPU load (peaks 0.8-1.2 × "
        "the limit)", step_s=step_s, names=_names("diurnal", n), apps=("diurnal",) * n,
        tenants=("",) * n, memory_limit_bytes=np.full(n, limit),
        cpu_quota_cores=np.full(n, 1.0), fixed_bytes=np.repeat(base[:, None], t, axis=1),
        growth_bytes=_zeros(n, t), load_bytes=load, cpu_cores=cpu, horizon_s=horizon,
        settings=_settings(step_s, horizon), replicated=np.ones(n, dtype=bool),
        ground_truth=gt)


def burst_load(t: int, step_s: float, peak: float, offsets: Sequence[float],
               every_s: float = 3600.0, ramp_s: float = 300.0, hold_s: float = 600.0
               ) -> np.ndarray:
    """Load of bursts starting at j·every + offset_j·(every − length): a linear ramp from
    0 to ``peak`` over ``ramp_s``, held ``hold_s``, down over ``ramp_s``. Worked example:
    Δ = 60 s, ramp 180 s, hold 120 s (length 480 s), start 0, peak 3 →
    min(up (k+1)·60/180, down (480 − 60k)/180) × 3 = 1, 2, 3, 3, 3, 3, 2, 1, 0 …"""
    out = np.zeros(t)
    length = 2 * ramp_s + hold_s
    ts = np.arange(t) * step_s
    for j, off in enumerate(offsets):
        start = j * every_s + off * max(every_s - length, 0.0)
        x = ts - start
        up = np.clip((x + step_s) / ramp_s, 0, 1)
        down = np.clip((start + length - ts) / ramp_s, 0, 1)
        out = np.maximum(out, np.where((x >= 0) & (x < length), peak * np.minimum(up, down),
                                       0.0))
    return out


def burst(seed: int = 4, n: int = 6, step_s: float = 15.0, hours: float = 6.0) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    limit = 512 * MIB
    base = rng.uniform(0.3, 0.45, n) * limit
    peak = rng.uniform(0.9, 1.3, n) * limit - base
    n_b = int(math.ceil(hours))
    offsets = rng.uniform(0, 1, (n, n_b))
    load = np.stack([burst_load(t, step_s, peak[i], offsets[i]) for i in range(n)])
    horizon = 5 * 60.0
    gt = "; ".join(f"burst-{i}: peak {(base[i] + peak[i]) / limit:.2f} × limit, "
                   f"{n_b} bursts" for i in range(n))
    return Scenario(
        name="burst", description="sudden bursts: load ramps to 0.9-1.3 × the limit in 5 min, "
        "holds 10 min, about once an hour", step_s=step_s, names=_names("burst", n),
        apps=("burst",) * n, tenants=("",) * n, memory_limit_bytes=np.full(n, limit),
        cpu_quota_cores=np.full(n, 1.0), fixed_bytes=np.repeat(base[:, None], t, axis=1),
        growth_bytes=_zeros(n, t), load_bytes=load, cpu_cores=np.full((n, t), 0.2),
        restart_steps=4, horizon_s=horizon, settings=_settings(step_s, horizon),
        replicated=np.ones(n, dtype=bool),
        ground_truth=gt)


def _ramp(start: float, top: np.ndarray, ramp_s: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """``[N, T]``: from ``start`` up to ``top[i]`` linearly over ``ramp_s[i]``, then held.
    Example: start 0.3, top 2.0, ramp 100 s, t = 0, 50, 200 → 0.3, 1.15, 2.0."""
    return start + (top - start)[:, None] * np.clip(ts[None, :] / ramp_s[:, None], 0, 1)


def cpu_saturation(seed: int = 5, n: int = 4, step_s: float = 30.0, hours: float = 6.0
                   ) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    quota = 1.0
    top = rng.uniform(1.5, 2.5, n) * quota
    ramp_s = rng.uniform(2, 4, n) * 3600
    cpu = _ramp(0.3 * quota, top, ramp_s, np.arange(t) * step_s)
    horizon = 10 * 60.0
    base_lat = np.full(n, 0.05)
    gt = "; ".join(f"cpu-{i}: demand passes 0.9 core (latency target) at "
                   f"{(0.9 - 0.3) / (top[i] - 0.3) * ramp_s[i] / 60:.0f} min"
                   for i in range(n))
    return Scenario(
        name="cpu_saturation", description="CPU demand ramping to 1.5-2.5 × the quota; "
        "latency target 10 × base (breaks at 90% utilisation)", step_s=step_s,
        names=_names("cpu", n), apps=("cpu",) * n, tenants=("",) * n,
        memory_limit_bytes=np.full(n, 512 * MIB), cpu_quota_cores=np.full(n, quota),
        fixed_bytes=np.full((n, t), 200 * MIB), growth_bytes=_zeros(n, t),
        load_bytes=_zeros(n, t), cpu_cores=cpu, latency_base_s=base_lat,
        latency_target_s=base_lat * 10, horizon_s=horizon,
        settings=_settings(step_s, horizon), replicated=np.ones(n, dtype=bool),
        ground_truth=gt)


def disk_fill(seed: int = 6, n: int = 4, step_s: float = 60.0, hours: float = 8.0) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    cap = 10 * GIB
    fill_s = rng.uniform(2, 6, n) * 3600
    disk = cap * np.arange(t)[None, :] * step_s / fill_s[:, None]
    horizon = 15 * 60.0
    gt = "; ".join(f"disk-{i}: full at step {int(math.ceil(fill_s[i] / step_s))}"
                   for i in range(n))
    return Scenario(
        name="disk_fill", description="disk filling to capacity in 2-6 h (prescale's disk "
        "tier grows the volume; no baseline resizes disks)", step_s=step_s,
        names=_names("disk", n), apps=("disk",) * n, tenants=("",) * n,
        memory_limit_bytes=np.full(n, 512 * MIB), cpu_quota_cores=np.full(n, 1.0),
        fixed_bytes=np.full((n, t), 200 * MIB), growth_bytes=_zeros(n, t),
        load_bytes=_zeros(n, t), cpu_cores=np.full((n, t), 0.2), disk_bytes=disk,
        disk_capacity_bytes=np.full(n, cap), horizon_s=horizon,
        settings=_settings(step_s, horizon), ground_truth=gt)


def net_saturation(seed: int = 8, n: int = 4, step_s: float = 30.0, hours: float = 6.0
                   ) -> Scenario:
    """Traffic to each container ramps from 0.3 L to U(1.5, 2.5) L of its 10 MiB/s receive
    limit L over U(2, 4) h, then holds: the network twin of ``cpu_saturation``."""
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    limit = 10 * MIB
    top = rng.uniform(1.5, 2.5, n) * limit
    ramp_s = rng.uniform(2, 4, n) * 3600
    demand = _ramp(0.3 * limit, top, ramp_s, np.arange(t) * step_s)
    horizon = 10 * 60.0
    gt = "; ".join(f"net-{i}: traffic passes the 10 MiB/s limit at "
                   f"{(1 - 0.3) * limit / (top[i] - 0.3 * limit) * ramp_s[i] / 60:.0f} min"
                   for i in range(n))
    return Scenario(
        name="net_saturation", description="traffic ramping to 1.5-2.5 × the receive "
        "bandwidth limit (excess queues: a timeout step)", step_s=step_s,
        names=_names("net", n), apps=("net",) * n, tenants=("",) * n,
        memory_limit_bytes=np.full(n, 512 * MIB), cpu_quota_cores=np.full(n, 1.0),
        fixed_bytes=np.full((n, t), 200 * MIB), growth_bytes=_zeros(n, t),
        load_bytes=_zeros(n, t), cpu_cores=np.full((n, t), 0.2),
        net_demand_bytes_per_s=demand, net_limit_bytes_per_s=np.full(n, float(limit)),
        horizon_s=horizon, settings=_settings(step_s, horizon), ground_truth=gt)


def tenants(seed: int = 7, step_s: float = 30.0, hours: float = 6.0) -> Scenario:
    """Tenant A: three leaks; B: three bursty services; C: three steady ones at 60%."""
    rng = np.random.default_rng(seed)
    t = int(round(hours * 3600 / step_s))
    limit = 512 * MIB
    n = 9
    names = tuple([f"a-leak-{i}" for i in range(3)] + [f"b-burst-{i}" for i in range(3)]
                  + [f"c-steady-{i}" for i in range(3)])
    ten = ("A",) * 3 + ("B",) * 3 + ("C",) * 3
    base = np.concatenate([rng.uniform(150, 250, 3) * MIB, rng.uniform(0.3, 0.4, 3) * limit,
                           np.full(3, 0.6 * limit)])
    growth = _zeros(n, t)
    fill_s = rng.uniform(60, 120, 3) * 60
    for i in range(3):
        growth[i] = (limit - base[i]) / fill_s[i] * np.arange(t) * step_s
    load = _zeros(n, t)
    for i in range(3, 6):
        load[i] = burst_load(t, step_s, rng.uniform(0.9, 1.2) * limit - base[i],
                             rng.uniform(0, 1, int(math.ceil(hours))))
    pool = 1.4 * n * limit
    horizon = 10 * 60.0
    return Scenario(
        name="tenants", description="three tenants (leaks, bursts, steady) contending for "
        f"one pool of {pool / GIB:.1f} GiB", step_s=step_s, names=names,
        apps=tuple(c.rsplit("-", 1)[0] for c in names), tenants=ten,
        memory_limit_bytes=np.full(n, limit), cpu_quota_cores=np.full(n, 1.0),
        fixed_bytes=np.repeat(base[:, None], t, axis=1), growth_bytes=growth,
        load_bytes=load, cpu_cores=np.full((n, t), 0.2), restart_steps=2,
        pool_memory_bytes=pool, pool_cpu_cores=n * 2.0, horizon_s=horizon,
        settings=_settings(step_s, horizon,
                           contention={"tenants": dict(zip(names, ten, strict=True))}),
        replicated=np.array([t == "B" for t in ten]),
        ground_truth="the pool cannot hold every leak: contention decides who grows")


def idle(seed: int = 8, n: int = 6, step_s: float = 60.0, days: float = 2.0) -> Scenario:
    rng = np.random.default_rng(seed)
    t = int(round(days * DAY_S / step_s))
    limit = 1 * GIB
    ts = np.arange(t) * step_s
    load = np.full((n, t), 0.1 * limit)
    cpu = np.full((n, t), 0.05)
    for i in range(n):
        start = rng.uniform(4, 10) * 3600
        while start < t * step_s:
            length = rng.uniform(2, 4) * 3600
            x = ts - start
            ramp = np.clip(x / 900.0, 0, 1) * np.clip((start + length - ts) / 900.0, 0, 1)
            load[i] = np.maximum(load[i], 0.1 * limit + 0.6 * limit * ramp)
            cpu[i] = np.maximum(cpu[i], 0.05 + 0.55 * ramp)
            start += length + rng.uniform(8, 16) * 3600
    horizon = 15 * 60.0
    return Scenario(
        name="idle", description="long idle stretches (0.1 × limit) between active phases "
        "(0.7 × limit, ramped over 15 min)", step_s=step_s, names=_names("idle", n),
        apps=("idle",) * n, tenants=("",) * n, memory_limit_bytes=np.full(n, limit),
        cpu_quota_cores=np.full(n, 1.0), fixed_bytes=_zeros(n, t), growth_bytes=_zeros(n, t),
        load_bytes=load, cpu_cores=cpu, horizon_s=horizon,
        settings=_settings(step_s, horizon),
        replicated=np.ones(n, dtype=bool),
        ground_truth="nothing fails under the first limits; the question is slack")


def _replace(s: Scenario, **changes: Any) -> Scenario:
    from dataclasses import replace
    return replace(s, **changes)


#: name → builder of the synthetic scenarios (each seeded; ``build(seed)``)
SYNTHETIC: dict[str, Callable[..., Scenario]] = {
    "leak": leak,
    "plateau": plateau,
    "diurnal": diurnal,
    "burst": burst,
    "creep": creep,
    "cpu_saturation": cpu_saturation,
    "disk_fill": disk_fill,
    "net_saturation": net_saturation,
    "tenants": tenants,
    "idle": idle,
}
#: the real-trace scenarios (built by :mod:`app.evaluation.traces`)
TRACES = ("bitbrains", "google2011")
ALL = (*SYNTHETIC, *TRACES)


def scaled(s: Scenario, fraction: float) -> Scenario:
    """The first ``fraction`` of a scenario's steps (a short variant for tests)."""
    t = max(2, int(s.steps * fraction))
    cut = {k: getattr(s, k)[:, :t] for k in ("fixed_bytes", "growth_bytes", "load_bytes",
                                             "cpu_cores")}
    if s.disk_bytes is not None:
        cut["disk_bytes"] = s.disk_bytes[:, :t]
    if s.net_demand_bytes_per_s is not None:
        cut["net_demand_bytes_per_s"] = s.net_demand_bytes_per_s[:, :t]
    if s.alive is not None:
        cut["alive"] = s.alive[:, :t]
    return _replace(s, **cut)
