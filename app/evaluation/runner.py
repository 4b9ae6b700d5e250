"""The closed loop of ``prescale evaluate``: one scenario, one policy, a simulated clock.

Every step k (time ``t0 + k·Δ``) the runner

1. decides what the demand does against the limits in force (the scenario module's
   formulas): OOM kills, restarts, throttling, latency breaches, a full disk;
2. writes one :class:`~app.core.sample.Sample` per container — what a kernel would
   report: memory usage capped at the limit, cumulative CPU seconds and throttled
   periods, the OOM-kill counter, the key block's latency — into a
   :class:`~app.core.ring.RingBuffer`, and the failure events;
3. asks the policy for its scaling actions (prescale: the real
   :class:`~app.core.engine.Engine` — features, predictor, thresholds (learning from
   every judgement), outcome tracking, policy and guards — on a
   :class:`~app.core.engine.Snapshot` of the ring buffer, in mode ``auto``; a baseline:
   :mod:`app.evaluation.baselines`);
4. arbitrates them over the scenario's :class:`~app.core.pool.Pool` with
   :func:`~app.core.contention.arbitrate` (every policy; prescale also hands it the
   idle containers it may shrink under contention, ``Plan.reclaim``, as the live
   coordinator does), applies the reclaims and the granted asks (they take effect from
   step k + 1) and settles them with the engine.

Two physical delays apply to every policy alike:

- a replica added by a scale-out serves from step k + max(1, ⌈replica_startup_s / Δ⌉)
  (the scenario's ``replica_startup_s``, default 30 s: scheduled, started, ready);
  until then the ready replicas share the load, while the new one already holds its
  request (allocated, not used). A scale-down removes starting replicas first.
  Worked example: Δ = 15 s, 30 s start-up, 1 → 2 replicas granted at step 10 → the
  load is split over 1 replica through step 11 and over 2 from step 12;
- a baseline with ``restarts_on_update`` (the VPA in ``Recreate`` mode) evicts: a
  container with an applied update is re-created, down for
  max(1, ⌈replica_startup_s / Δ⌉) steps from k + 1, then restarts with age 0 — a
  *disruption* (``RunRecord.evicted``; its down steps in ``down_evicted``, not in the
  failure-minutes). A container evicted while it is down after an OOM kill stays down
  at least as long, and those steps stay failure-minutes.

Nothing here reads a clock or a file. The result is a :class:`RunRecord` of arrays
``[N, T]`` (demand, limits, replicas, failures) and the list of applied actions, from
which :mod:`app.evaluation.metrics` computes the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction, Verdict
from prescale.app.core.contention import ContentionConfig, ReclaimCandidate, arbitrate
from prescale.app.core.engine import Engine, EngineConfig, Snapshot
from prescale.app.core.labels import memory_exhausted
from prescale.app.core.pool import ZERO, Capacity, Pool
from prescale.app.core.ring import FleetRing
from prescale.app.core.sample import Event, EventKind, M, Sample, Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.evaluation.baselines import (
    BASELINES,
    HPA,
    VPA,
    VPA_VARIANTS,
    Baseline,
    Bounds,
    FailureRateReactive,
    Observation,
    Static,
)
from prescale.app.evaluation.scenarios import Scenario

PRESCALE_POLICIES = ("preemptive_buffer", "proportional", "multi_tier")
POLICIES = (*BASELINES, *PRESCALE_POLICIES)
CFS_PERIOD_S = 0.1


@dataclass
class AppliedAction:
    step: int
    ts_s: float
    container: int
    tier: str  # "memory" | "cpu" | "replicas"
    old: float
    new: float
    preemptive: bool


@dataclass
class RunRecord:
    scenario: str
    policy: str
    step_s: float
    t0_s: float
    names: list[str]
    memory_demand_bytes: np.ndarray  # [N, T] per replica (nan while down)
    memory_limit_bytes: np.ndarray
    cpu_demand_cores: np.ndarray
    cpu_quota_cores: np.ndarray
    replicas: np.ndarray
    down: np.ndarray  # bool: not running (restarting after an OOM kill)
    oom_kill: np.ndarray  # bool
    timeout: np.ndarray  # bool: latency above target this step
    disk_full: np.ndarray  # bool
    replicas_ready: np.ndarray | None = None  # [N, T] serving (None: = replicas)
    evicted: np.ndarray | None = None  # bool: re-created by the policy at this step
    down_evicted: np.ndarray | None = None  # bool: down because of an eviction
    #: [N, T] memory demand per replica whether or not the container is up (nan outside
    #: its life): what the Autopilot/VPA-style violation compares with the limit
    memory_want_bytes: np.ndarray | None = None
    alive: np.ndarray | None = None  # [N, T] bool: the container exists (None: always)
    actions: list[AppliedAction] = field(default_factory=list)
    asks: int = 0
    reclaims: int = 0  # idle containers shrunk under contention (also in ``actions``)
    denied: int = 0
    deferred: int = 0
    threshold_final: dict[str, float] = field(default_factory=dict)


class PrescalePolicy:
    """The real engine, as the live coordinator drives it (mode auto)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.engine = Engine(EngineConfig.from_settings(settings))
        self.book = ThresholdBook(ThresholdConfig.from_settings(settings.thresholds))
        self.name = settings.policy.kind
        self.reclaim: list[ReclaimCandidate] = []  # the last plan's idle candidates

    def decide(self, obs: Observation) -> list[ScalingAction]:
        plan = self.engine.plan(Snapshot(obs.now_s, obs.names, obs.apps, obs.window,
                                         obs.events), self.book, decide_actions=True)
        for j in plan.judgements:
            self.book.learn(j)
        self.reclaim = plan.reclaim
        return plan.asks

    def settle(self, obs: Observation, results: list[tuple[ScalingAction, ActionResult]]
               ) -> None:
        self.engine.settle(obs.now_s, results, obs.names)


def _merge(into: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``into`` updated with ``over``, nested mappings merged key by key."""
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v
    return into


def prescale_settings(scenario: Scenario, kind: str, extra: dict[str, Any] | None = None,
                      base: Any = None) -> Any:
    """The :class:`~app.settings.Settings` prescale runs with in ``scenario``: ``base``
    (the user's settings: file + ``PRESCALE_*`` env; default: the defaults + env), then
    the scenario's own overrides (tick = step, horizon, bounds, tenants: how the
    simulated world is built, the same for every user), ``extra``, ``policy.kind``."""
    from prescale.app.settings import Settings  # settings is not an I/O layer; imported lazily

    merged = (base if base is not None else Settings()).model_dump()
    _merge(merged, scenario.settings)
    _merge(merged, extra or {})
    merged["policy"]["kind"] = kind
    return Settings.model_validate(merged)


def make_policy(name: str, scenario: Scenario, extra: dict[str, Any] | None = None,
                base_settings: Any = None) -> Baseline | PrescalePolicy:
    bounds = Bounds(memory_max_bytes=scenario.memory_max_bytes,
                    cpu_max_cores=scenario.cpu_max_cores)
    if name in PRESCALE_POLICIES:
        return PrescalePolicy(prescale_settings(scenario, name, extra, base_settings))
    makers: dict[str, Callable[[], Baseline]] = {
        "static": Static, "reactive": lambda: FailureRateReactive(bounds),
        "hpa": lambda: HPA(bounds)}
    for vname, cfg in VPA_VARIANTS.items():
        makers[vname] = lambda cfg=cfg, vname=vname: VPA(bounds, cfg, name=vname)
    if name not in makers:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return makers[name]()


def _sample_row_template() -> np.ndarray:
    """A sample row with every metric the simulator does not set at its default."""
    return np.array(Sample(container="", ts_s=0.0).row(), dtype=float)


_COLS = ("ts_s", "memory_usage_bytes", "memory_working_set_bytes", "memory_limit_bytes",
         "oom_kills_total", "cpu_usage_s_total", "cpu_quota_cores", "cpu_periods_total",
         "cpu_throttled_periods_total", "block_latency_s")


def run(scenario: Scenario, policy_name: str, *, extra_settings: dict[str, Any] | None = None,
        window_steps: int = 60, base_settings: Any = None,
        progress: Callable[[int], None] | None = None) -> RunRecord:
    """Run ``scenario`` under one policy (see the module docstring). ``base_settings``:
    the user's :class:`~app.settings.Settings` (file + env) under the scenario's own
    overrides (prescale policies only). ``progress(k)`` is called every 100 steps."""
    s = scenario
    policy = make_policy(policy_name, s, extra_settings, base_settings)
    if isinstance(policy, PrescalePolicy):
        window_steps = policy.settings.loop.window_steps
    n, t, dt = s.n, s.steps, s.step_s
    names, apps = list(s.names), list(s.apps)
    pos = {c: i for i, c in enumerate(names)}
    mem_lim = s.memory_limit_bytes.astype(float).copy()
    cpu_q = s.cpu_quota_cores.astype(float).copy()
    reps = np.ones(n, dtype=int)  # replicas in the spec (ready + starting)
    ready = np.ones(n, dtype=int)  # replicas serving
    starting: list[list[int]] = [[] for _ in range(n)]  # per container: ready-at steps
    startup_steps = max(1, int(np.ceil(s.replica_startup_s / dt - 1e-9)))
    evict_cause = np.zeros(n, dtype=bool)
    restarts_on_update = bool(getattr(policy, "restarts_on_update", False))
    age = np.zeros(n, dtype=int)
    down_left = np.zeros(n, dtype=int)
    oom_total = np.zeros(n)
    cpu_s_total = np.zeros(n)
    periods_total = np.zeros(n)
    throttled_total = np.zeros(n)
    disk_was_full = np.zeros(n, dtype=bool)
    idx = np.arange(n)
    every = s.alive is None
    was_alive = np.zeros(n, dtype=bool)
    rec = RunRecord(
        s.name, policy_name, dt, s.t0_s, names,
        memory_demand_bytes=np.full((n, t), np.nan), memory_limit_bytes=np.full((n, t), np.nan),
        cpu_demand_cores=np.full((n, t), np.nan), cpu_quota_cores=np.full((n, t), np.nan),
        replicas=np.ones((n, t), dtype=int), down=np.zeros((n, t), dtype=bool),
        oom_kill=np.zeros((n, t), dtype=bool), timeout=np.zeros((n, t), dtype=bool),
        disk_full=np.zeros((n, t), dtype=bool), replicas_ready=np.ones((n, t), dtype=int),
        evicted=np.zeros((n, t), dtype=bool), down_evicted=np.zeros((n, t), dtype=bool),
        memory_want_bytes=np.full((n, t), np.nan),
        alive=np.ones((n, t), dtype=bool) if every else s.alive.copy())
    ring = FleetRing(n, window_steps)
    row = np.tile(_sample_row_template(), (n, 1))
    col = [M[c] for c in _COLS]
    pool = Pool(Capacity(s.pool_memory_bytes, s.pool_cpu_cores), reserve=ZERO)
    tenants = {c: ten for c, ten in zip(names, s.tenants, strict=True) if ten}
    contention = ContentionConfig(  # prescale's setting; the baselines' asks alike
        partial_grants=bool(policy.settings.contention.partial_grants)
        if isinstance(policy, PrescalePolicy) else True)
    has_latency = s.latency_base_s is not None

    def _scale(i: int, new: int, ready_at: int) -> None:
        """Set container i's spec replicas to ``new``: added ones serve from step
        ``ready_at``; removed ones are the starting ones first, then ready ones."""
        if new > reps[i]:
            starting[i].extend([ready_at] * (new - int(reps[i])))
        else:
            drop = int(reps[i]) - new
            while drop and starting[i]:
                starting[i].pop()
                drop -= 1
            ready[i] -= drop
        reps[i] = new
    for k in range(t):
        if progress is not None and k % 100 == 0:
            progress(k)
        now = s.t0_s + k * dt
        alive = np.ones(n, dtype=bool) if every else s.alive[:, k]
        born = alive & ~was_alive
        if born.any():  # a container starts existing: fresh, with its starting limit
            rows_born = np.flatnonzero(born)
            ring.reset(rows_born)
            age[born] = 0
            down_left[born] = 0
        for i in np.flatnonzero(was_alive & ~alive):  # it is gone: out of the pool
            pool.forget(names[i])
        was_alive = alive
        live = np.flatnonzero(alive)
        rec.memory_limit_bytes[live, k] = mem_lim[live]
        rec.cpu_quota_cores[live, k] = cpu_q[live]
        for i in live:  # replicas whose start-up ends now begin to serve
            if starting[i] and starting[i][0] <= k:
                ready[i] += sum(1 for r in starting[i] if r <= k)
                starting[i] = [r for r in starting[i] if r > k]
        rec.replicas[:, k] = reps
        rec.replicas_ready[:, k] = ready
        events: list[Event] = []
        # -- what the demand does against the limits in force --------------------
        was_down = (down_left > 0) & alive
        down_left[was_down] -= 1
        restarted = was_down & (down_left == 0)
        age[restarted] = 0
        up = ~was_down & alive
        rec.down[:, k] = was_down
        rec.down_evicted[:, k] = was_down & evict_cause
        evict_cause[restarted] = False
        growth = s.growth_bytes[idx, np.minimum(age, t - 1)]
        mem = s.fixed_bytes[:, k] + growth + s.load_bytes[:, k] / ready
        cpu = s.cpu_cores[:, k] / ready
        killed = up & memory_exhausted(mem, mem_lim)  # the one label definition
        rec.memory_want_bytes[live, k] = mem[live]
        rec.memory_demand_bytes[up, k] = mem[up]
        rec.cpu_demand_cores[up, k] = cpu[up]
        rec.oom_kill[:, k] = killed
        mem_read = np.where(killed, s.fixed_bytes[:, k], np.minimum(mem, mem_lim))
        mem_read = np.where(up, mem_read, 0.0)
        cpu_used = np.where(up, np.minimum(cpu, cpu_q), 0.0)
        throttled = up & (cpu > cpu_q)
        lat = np.full(n, np.nan)
        if has_latency:
            rho = np.where(up, cpu / cpu_q, 0.0)
            lat = np.where(up, s.latency_base_s / (1 - np.minimum(rho, 0.99)), np.nan)
            breach = up & (lat > s.latency_target_s)
            rec.timeout[:, k] = breach
        if s.disk_bytes is not None:
            full = alive & (s.disk_bytes[:, k] >= s.disk_capacity_bytes)
            rec.disk_full[:, k] = full
        for i in np.flatnonzero(killed):
            oom_total[i] += 1
            events.append(Event(names[i], now, EventKind.OOM_KILL,
                                "simulated: demand reached the memory limit", apps[i]))
            events.append(Event(names[i], now, EventKind.RESTART, "after oom_kill", apps[i]))
        for i in np.flatnonzero(rec.timeout[:, k]):
            events.append(Event(names[i], now, EventKind.TIMEOUT,
                                f"latency {lat[i]:.3f} s > target", apps[i]))
        if s.disk_bytes is not None:
            for i in np.flatnonzero(rec.disk_full[:, k] & ~disk_was_full):
                events.append(Event(names[i], now, EventKind.DISK_FULL, "simulated", apps[i]))
            disk_was_full = rec.disk_full[:, k].copy()
        down_left[killed] = s.restart_steps
        age[killed] = 0
        age[up & ~killed] += 1
        # -- the samples a kernel would show ----------------------------------------
        cpu_s_total += cpu_used * dt
        periods_total += np.where(up, dt / CFS_PERIOD_S, 0.0)
        throttled_total += np.where(throttled, dt / CFS_PERIOD_S, 0.0)
        row[:, col] = np.column_stack([
            np.full(n, now), mem_read, mem_read, mem_lim, oom_total, cpu_s_total, cpu_q,
            periods_total, throttled_total, lat])
        sel: np.ndarray | slice = slice(None) if len(live) == n else live
        ring.push(k, sel, row[sel])
        if len(live) == n:
            obs = Observation(
                now_s=now, step_s=dt, names=names, apps=apps, window=ring.window(),
                events=events, memory_usage_bytes=mem_read, cpu_usage_cores=cpu_used,
                memory_limit_bytes=mem_lim.copy(), cpu_quota_cores=cpu_q.copy(),
                replicas=reps.copy(), up=up & ~killed, age_s=age * dt,
                replicas_ready=ready.copy())
        else:
            obs = Observation(
                now_s=now, step_s=dt, names=[names[i] for i in live],
                apps=[apps[i] for i in live], window=ring.window(live), events=events,
                memory_usage_bytes=mem_read[live], cpu_usage_cores=cpu_used[live],
                memory_limit_bytes=mem_lim[live], cpu_quota_cores=cpu_q[live],
                replicas=reps[live], up=(up & ~killed)[live], age_s=age[live] * dt,
                replicas_ready=ready[live])
        # -- decide, arbitrate, apply, settle -----------------------------------------
        asks = policy.decide(obs)
        if not asks:
            continue
        rec.asks += len(asks)
        for i in live:
            c = names[i]
            pool.observe(c, Tier.MEMORY, float(mem_lim[i]), replicas=int(reps[i]))
            pool.observe(c, Tier.CPU, float(cpu_q[i]), replicas=int(reps[i]))
        arb = arbitrate(asks, pool, idle=getattr(policy, "reclaim", []), tenants=tenants,
                        weights={}, now_s=now, tenant_weights={}, config=contention,
                        commit=True)
        verdicts = {v.action_id: v for v in arb.verdicts}
        results = []
        for a in arb.reclaims:  # idle containers shrunk for this tick's increases
            i = pos[a.container]
            lim = mem_lim if a.tier is Tier.MEMORY else cpu_q
            old = float(lim[i])
            lim[i] = a.new_limit
            rec.actions.append(AppliedAction(k, now, i, a.tier.value, old, float(a.new_limit),
                                             False))
            rec.reclaims += 1
            results.append((a, ActionResult(a.action_id, a.container, a.tier,
                                            ResultStatus.APPLIED, old, a.new_limit,
                                            arb.explanations.get(a.action_id, ""))))
        for a in asks:
            v = verdicts[a.action_id]
            i = pos[a.container]
            if v.verdict is Verdict.GRANTED:
                new = a.new_limit if v.granted_limit is None else v.granted_limit  # partial
                if a.kind is ActionKind.SCALE_OUT:
                    old = float(reps[i])
                    _scale(i, int(new), k + startup_steps)
                    tier = "replicas"
                elif a.tier is Tier.MEMORY:
                    old = float(mem_lim[i])
                    mem_lim[i] = new
                    tier = "memory"
                else:
                    old = float(cpu_q[i])
                    cpu_q[i] = new
                    tier = "cpu"
                rec.actions.append(AppliedAction(k, now, i, tier, old, float(new),
                                                 a.preemptive))
                results.append((a, ActionResult(a.action_id, a.container, a.tier,
                                                ResultStatus.APPLIED, old, new, v.reason)))
            else:
                status = (ResultStatus.DEFERRED if v.verdict is Verdict.DEFERRED
                          else ResultStatus.DENIED)
                rec.denied += status is ResultStatus.DENIED
                rec.deferred += status is ResultStatus.DEFERRED
                results.append((a, ActionResult(a.action_id, a.container, a.tier, status,
                                                a.old_limit, a.old_limit, v.reason)))
        if restarts_on_update:
            for i in {pos[a.container] for a, r in results
                      if r.status is ResultStatus.APPLIED}:
                rec.evicted[i, k] = True
                if down_left[i] == 0:  # a running container: down for the re-creation
                    evict_cause[i] = True
                # one already down after an OOM kill stays down (as a failure) at least
                # until its new pod is up
                down_left[i] = max(int(down_left[i]), startup_steps)
                age[i] = 0
        policy.settle(obs, results)
    if isinstance(policy, PrescalePolicy):
        rec.threshold_final = {
            tier.value: float(np.mean(policy.engine.thresholds(policy.book, names, apps)[tier]))
            for tier in (Tier.MEMORY, Tier.CPU)}
    return rec


def check_policies(names: list[str]) -> list[str]:
    """The policy names, each validated; raises ValueError naming an unknown one."""
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown policy {', '.join(map(repr, bad))}; known: "
                         f"{', '.join(POLICIES)}")
    if not names:
        raise ValueError(f"no policy given; known: {', '.join(POLICIES)}")
    return names


__all__ = ["POLICIES", "PRESCALE_POLICIES", "AppliedAction", "PrescalePolicy", "RunRecord",
           "check_policies", "make_policy", "prescale_settings", "run"]
