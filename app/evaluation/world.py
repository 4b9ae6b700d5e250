"""The simulated world of ``prescale evaluate``: a scenario's demand against the limits in
force, step by step, and the ports (:mod:`app.loop.ports`) through which the live
loop's own tick (:class:`app.loop.tick.Tick`) acts on it.

Every step k (time ``t0 + k·Δ``), :meth:`SimWorld.begin`

1. decides what the demand does against the limits in force (the scenario module's
   formulas): OOM kills, restarts, throttling, latency breaches, a full disk;
2. writes what a kernel would report for each container — memory usage capped at the
   limit, cumulative CPU seconds and throttled periods, the OOM-kill counter, the key
   block's latency — into a :class:`~app.core.ring.FleetRing`, and the failure events;

then the policy acts: prescale through the tick (telemetry = this step's shard;
allocator = the scenario's :class:`~app.core.pool.Pool` and
:func:`~app.core.contention.arbitrate`; actuation = the limit arrays; no journal, no
checkpoint), a baseline through :meth:`SimWorld.act_on` (the same pool and
arbitration). Granted changes take effect from step k + 1.

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

A container of ``Scenario.replicated`` is one replica of a horizontally scaled service:
prescale sees its replica count (``Snapshot.replicas``), so its guards may turn an
increase that cannot happen into a scale-out, as they do live.

Nothing here reads a clock or a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction, Verdict
from prescale.app.core.contention import (
    ArbitrationResult,
    ContentionConfig,
    ReclaimCandidate,
    arbitrate,
)
from prescale.app.core.pool import ZERO, Capacity, Pool
from prescale.app.core.ring import FleetRing
from prescale.app.core.sample import Event, EventKind, M, Sample, Tier
from prescale.app.core.tenants import Tenancy
from prescale.app.core.thresholds import Adjustment, ThresholdBook
from prescale.app.evaluation.baselines import Observation
from prescale.app.evaluation.record import AppliedAction, RunRecord
from prescale.app.evaluation.scenarios import Scenario
from prescale.app.learning.labels import memory_exhausted
from prescale.app.loop.shard import Shard

CFS_PERIOD_S = 0.1
NODE = "sim"
_COLS = ("ts_s", "memory_usage_bytes", "memory_working_set_bytes", "memory_limit_bytes",
         "oom_kills_total", "cpu_usage_s_total", "cpu_quota_cores", "cpu_periods_total",
         "cpu_throttled_periods_total", "block_latency_s")


def _sample_row_template() -> np.ndarray:
    """A sample row with every metric the simulator does not set at its default."""
    return np.array(Sample(container="", ts_s=0.0).row(), dtype=float)


class SimWorld:
    """One scenario under one policy (module docstring); the result is :attr:`rec`."""

    def __init__(self, s: Scenario, policy_name: str, *, window_steps: int,
                 contention: ContentionConfig, restarts_on_update: bool = False) -> None:
        self.s = s
        n, t, dt = s.n, s.steps, s.step_s
        self.n, self.t, self.dt = n, t, dt
        self.names, self.apps = list(s.names), list(s.apps)
        self.pos = {c: i for i, c in enumerate(self.names)}
        self.mem_lim = s.memory_limit_bytes.astype(float).copy()
        self.cpu_q = s.cpu_quota_cores.astype(float).copy()
        # the disk tier: each container's volume size, which a policy may grow
        self.disk_cap = (None if s.disk_bytes is None
                         else np.asarray(s.disk_capacity_bytes, dtype=float).copy())
        # the network tier: each container's receive limit, which a policy may raise
        self.net_lim = (None if s.net_demand_bytes_per_s is None
                        else np.asarray(s.net_limit_bytes_per_s, dtype=float).copy())
        self.net_total = np.zeros(n)
        self.reps = np.ones(n, dtype=int)  # replicas in the spec (ready + starting)
        self.ready = np.ones(n, dtype=int)  # replicas serving
        self.starting: list[list[int]] = [[] for _ in range(n)]  # per container: ready-at
        self.startup_steps = max(1, int(np.ceil(s.replica_startup_s / dt - 1e-9)))
        self.evict_cause = np.zeros(n, dtype=bool)
        self.restarts_on_update = restarts_on_update
        self.age = np.zeros(n, dtype=int)
        self.down_left = np.zeros(n, dtype=int)
        self.oom_total = np.zeros(n)
        self.cpu_s_total = np.zeros(n)
        self.periods_total = np.zeros(n)
        self.throttled_total = np.zeros(n)
        self.disk_was_full = np.zeros(n, dtype=bool)
        self.every = s.alive is None
        self.was_alive = np.zeros(n, dtype=bool)
        self.rec = RunRecord(
            s.name, policy_name, dt, s.t0_s, self.names,
            memory_demand_bytes=np.full((n, t), np.nan),
            memory_limit_bytes=np.full((n, t), np.nan),
            cpu_demand_cores=np.full((n, t), np.nan), cpu_quota_cores=np.full((n, t), np.nan),
            replicas=np.ones((n, t), dtype=int), down=np.zeros((n, t), dtype=bool),
            oom_kill=np.zeros((n, t), dtype=bool), timeout=np.zeros((n, t), dtype=bool),
            disk_full=np.zeros((n, t), dtype=bool), replicas_ready=np.ones((n, t), dtype=int),
            evicted=np.zeros((n, t), dtype=bool), down_evicted=np.zeros((n, t), dtype=bool),
            memory_want_bytes=np.full((n, t), np.nan),
            alive=np.ones((n, t), dtype=bool) if self.every else s.alive.copy(),
            failure_tiers=s.failure_tiers,
            disk_demand_bytes=None if self.disk_cap is None else np.full((n, t), np.nan),
            disk_capacity_bytes=None if self.disk_cap is None else np.full((n, t), np.nan),
            net_demand_bytes_per_s=None if self.net_lim is None else np.full((n, t), np.nan),
            net_limit_bytes_per_s=None if self.net_lim is None else np.full((n, t), np.nan))
        self.ring = FleetRing(n, window_steps)
        self.row = np.tile(_sample_row_template(), (n, 1))
        self.col = [M[c] for c in _COLS]
        self.pool = Pool(Capacity(s.pool_memory_bytes, s.pool_cpu_cores), reserve=ZERO)
        self.tenants = {c: ten for c, ten in zip(self.names, s.tenants, strict=True) if ten}
        self.contention = contention
        self.replicated = (np.zeros(n, dtype=bool) if s.replicated is None
                           else np.asarray(s.replicated, dtype=bool))
        self.k, self.now = 0, s.t0_s
        self.obs: Observation | None = None
        self.live = np.arange(n)

    # -- one step of demand --------------------------------------------------------------
    def begin(self, k: int) -> Observation:
        """What the demand does at step k against the limits in force; the samples and
        events a kernel would show (module docstring). Returns what a policy sees."""
        s, n, dt, rec = self.s, self.n, self.dt, self.rec
        self.k, now = k, s.t0_s + k * s.step_s
        self.now = now
        names, apps, age, down_left, ready = (self.names, self.apps, self.age,
                                              self.down_left, self.ready)
        alive = np.ones(n, dtype=bool) if self.every else s.alive[:, k]
        born = alive & ~self.was_alive
        if born.any():  # a container starts existing: fresh, with its starting limit
            self.ring.reset(np.flatnonzero(born))
            age[born] = 0
            down_left[born] = 0
        for i in np.flatnonzero(self.was_alive & ~alive):  # it is gone: out of the pool
            self.pool.forget(names[i])
        self.was_alive = alive
        live = self.live = np.flatnonzero(alive)
        mem_lim, cpu_q = self.mem_lim, self.cpu_q
        rec.memory_limit_bytes[live, k] = mem_lim[live]
        rec.cpu_quota_cores[live, k] = cpu_q[live]
        for i in live:  # replicas whose start-up ends now begin to serve
            st = self.starting[i]
            if st and st[0] <= k:
                ready[i] += sum(1 for r in st if r <= k)
                self.starting[i] = [r for r in st if r > k]
        rec.replicas[:, k] = self.reps
        rec.replicas_ready[:, k] = ready
        events: list[Event] = []
        was_down = (down_left > 0) & alive
        down_left[was_down] -= 1
        restarted = was_down & (down_left == 0)
        age[restarted] = 0
        up = ~was_down & alive
        rec.down[:, k] = was_down
        rec.down_evicted[:, k] = was_down & self.evict_cause
        self.evict_cause[restarted] = False
        growth = s.growth_bytes[np.arange(n), np.minimum(age, self.t - 1)]
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
        if s.latency_base_s is not None:
            rho = np.where(up, cpu / cpu_q, 0.0)
            lat = np.where(up, s.latency_base_s / (1 - np.minimum(rho, 0.99)), np.nan)
            rec.timeout[:, k] = up & (lat > s.latency_target_s)
        if self.disk_cap is not None:
            rec.disk_full[:, k] = alive & (s.disk_bytes[:, k] >= self.disk_cap)
            rec.disk_demand_bytes[live, k] = s.disk_bytes[live, k]
            rec.disk_capacity_bytes[live, k] = self.disk_cap[live]
        if self.net_lim is not None:  # traffic above the receive limit queues: a timeout
            net = s.net_demand_bytes_per_s[:, k]
            rec.net_demand_bytes_per_s[up, k] = net[up]
            rec.net_limit_bytes_per_s[live, k] = self.net_lim[live]
            rec.timeout[:, k] |= up & (net > self.net_lim)
            self.net_total += np.where(up, np.minimum(net, self.net_lim), 0.0) * dt
        for i in np.flatnonzero(killed):
            self.oom_total[i] += 1
            events.append(Event(names[i], now, EventKind.OOM_KILL,
                                "simulated: demand reached the memory limit", apps[i]))
            events.append(Event(names[i], now, EventKind.RESTART, "after oom_kill", apps[i]))
        for i in np.flatnonzero(rec.timeout[:, k]):
            events.append(Event(names[i], now, EventKind.TIMEOUT,
                                f"latency {lat[i]:.3f} s > target", apps[i]))
        if s.disk_bytes is not None:
            for i in np.flatnonzero(rec.disk_full[:, k] & ~self.disk_was_full):
                events.append(Event(names[i], now, EventKind.DISK_FULL, "simulated", apps[i]))
            self.disk_was_full = rec.disk_full[:, k].copy()
        down_left[killed] = s.restart_steps
        age[killed] = 0
        age[up & ~killed] += 1
        # -- the samples a kernel would show ------------------------------------------
        self.cpu_s_total += cpu_used * dt
        self.periods_total += np.where(up, dt / CFS_PERIOD_S, 0.0)
        self.throttled_total += np.where(throttled, dt / CFS_PERIOD_S, 0.0)
        self.row[:, self.col] = np.column_stack([
            np.full(n, now), mem_read, mem_read, mem_lim, self.oom_total, self.cpu_s_total,
            cpu_q, self.periods_total, self.throttled_total, lat])
        if self.net_lim is not None:
            self.row[:, M["net_rx_bytes_total"]] = self.net_total
            self.row[:, M["net_rx_limit_bytes_per_s"]] = self.net_lim
        if self.disk_cap is not None:  # a full volume holds its size, no more
            self.row[:, M["disk_used_bytes"]] = np.minimum(s.disk_bytes[:, k], self.disk_cap)
            self.row[:, M["disk_limit_bytes"]] = self.disk_cap
        sel: np.ndarray | slice = slice(None) if len(live) == n else live
        self.ring.push(k, sel, self.row[sel])
        if len(live) == n:
            obs = Observation(
                now_s=now, step_s=dt, names=names, apps=apps, window=self.ring.window(),
                events=events, memory_usage_bytes=mem_read, cpu_usage_cores=cpu_used,
                memory_limit_bytes=mem_lim.copy(), cpu_quota_cores=cpu_q.copy(),
                replicas=self.reps.copy(), up=up & ~killed, age_s=age * dt,
                replicas_ready=ready.copy())
        else:
            obs = Observation(
                now_s=now, step_s=dt, names=[names[i] for i in live],
                apps=[apps[i] for i in live], window=self.ring.window(live), events=events,
                memory_usage_bytes=mem_read[live], cpu_usage_cores=cpu_used[live],
                memory_limit_bytes=mem_lim[live], cpu_quota_cores=cpu_q[live],
                replicas=self.reps[live], up=(up & ~killed)[live], age_s=age[live] * dt,
                replicas_ready=ready[live])
        self.obs = obs
        return obs

    # -- arbitrate and apply, for every policy --------------------------------------------
    def arbitrate(self, asks: Sequence[ScalingAction], idle: Sequence[ReclaimCandidate],
                  tenancy: Tenancy | None = None) -> ArbitrationResult:
        """The scenario's pool, refreshed with the limits in force, over this step's asks
        (counted; denied and deferred ones too)."""
        self.rec.asks += len(asks)
        for i in self.live:
            c = self.names[i]
            self.pool.observe(c, Tier.MEMORY, float(self.mem_lim[i]), replicas=int(self.reps[i]))
            self.pool.observe(c, Tier.CPU, float(self.cpu_q[i]), replicas=int(self.reps[i]))
        arb = arbitrate(list(asks), self.pool, idle=list(idle), tenants=self.tenants,
                        weights={}, now_s=self.now, tenant_weights={}, config=self.contention,
                        commit=True, tenancy=tenancy)
        asked = {a.action_id for a in asks}
        for v in arb.verdicts:
            if v.action_id in asked:
                self.rec.denied += v.verdict is Verdict.DENIED
                self.rec.deferred += v.verdict is Verdict.DEFERRED
        return arb

    def apply(self, a: ScalingAction) -> ActionResult:
        """Set one granted change (from step k + 1) and record it."""
        i, k, rec = self.pos[a.container], self.k, self.rec
        new = float(a.new_limit)
        if a.kind is ActionKind.SCALE_OUT:
            old = float(self.reps[i])
            self._scale(i, int(new), k + self.startup_steps)
            tier = "replicas"
        else:
            lim = (self.mem_lim if a.tier is Tier.MEMORY else self.disk_cap
                   if a.tier is Tier.DISK and self.disk_cap is not None else self.net_lim
                   if a.tier is Tier.NETWORK and self.net_lim is not None else self.cpu_q)
            old = float(lim[i])
            lim[i] = new
            tier = a.tier.value
        reclaim = a.cause == "reclaim"
        rec.reclaims += reclaim
        rec.actions.append(AppliedAction(k, self.now, i, tier, old, new,
                                         a.preemptive and not reclaim))
        return ActionResult(a.action_id, a.container, a.tier, ResultStatus.APPLIED, old, new,
                            "applied in the simulated world")

    def _scale(self, i: int, new: int, ready_at: int) -> None:
        """Set container i's spec replicas to ``new``: added ones serve from step
        ``ready_at``; removed ones are the starting ones first, then ready ones."""
        if new > self.reps[i]:
            self.starting[i].extend([ready_at] * (new - int(self.reps[i])))
        else:
            drop = int(self.reps[i]) - new
            while drop and self.starting[i]:
                self.starting[i].pop()
                drop -= 1
            self.ready[i] -= drop
        self.reps[i] = new

    def act_on(self, asks: Sequence[ScalingAction], arb: ArbitrationResult
               ) -> list[tuple[ScalingAction, ActionResult]]:
        """A baseline's asks after arbitration: the reclaims, then each ask granted (in
        part, if so) or not; evictions for a baseline that restarts to update."""
        verdicts = {v.action_id: v for v in arb.verdicts}
        results = [(a, self.apply(a)) for a in arb.reclaims]
        for a in asks:
            v = verdicts[a.action_id]
            if v.verdict is Verdict.GRANTED:
                new = a.new_limit if v.granted_limit is None else v.granted_limit  # partial
                g = a if new == a.new_limit else _with_limit(a, new)
                results.append((a, self.apply(g)))
            else:
                status = (ResultStatus.DEFERRED if v.verdict is Verdict.DEFERRED
                          else ResultStatus.DENIED)
                results.append((a, ActionResult(a.action_id, a.container, a.tier, status,
                                                a.old_limit, a.old_limit, v.reason)))
        if self.restarts_on_update:
            k = self.k
            for i in {self.pos[a.container] for a, r in results
                      if r.status is ResultStatus.APPLIED}:
                self.rec.evicted[i, k] = True
                if self.down_left[i] == 0:  # a running container: down for the re-creation
                    self.evict_cause[i] = True
                # one already down after an OOM kill stays down (as a failure) at least
                # until its new pod is up
                self.down_left[i] = max(int(self.down_left[i]), self.startup_steps)
                self.age[i] = 0
        return results

    # -- the ports of the tick ----------------------------------------------------------
    def ports(self, book: ThresholdBook) -> Any:
        from prescale.app.loop.tick import Ports

        return Ports(telemetry=_Telemetry(self), allocator=_Allocator(self),
                     actuation=_Actuation(self), journal=_NoJournal(),
                     checkpoint=_NoCheckpoint(), thresholds=_Thresholds(book))


def _with_limit(a: ScalingAction, new: float) -> ScalingAction:
    from dataclasses import replace

    return replace(a, new_limit=new)


class _Telemetry:
    def __init__(self, w: SimWorld) -> None:
        self.w = w

    def collect(self) -> tuple[list[Shard], dict[str, str]]:
        w, obs = self.w, self.w.obs
        assert obs is not None, "SimWorld.begin(k) first"
        reps = {w.names[i]: int(w.reps[i]) for i in w.live if w.replicated[i]}
        return [Shard(NODE, obs.now_s, obs.names, obs.apps, obs.window, obs.events,
                      replicas=reps)], {}

    def live_nodes(self) -> set[str]:
        return {NODE}


class _Allocator:
    def __init__(self, w: SimWorld) -> None:
        self.w = w

    def prepare(self) -> None:
        return None

    def observe(self, limits, now_s, nodes, node_of, replicas) -> None:
        return None  # the limits are the world's own arrays: read when arbitrating

    def arbitrate(self, asks, idle, now_s, commit, tenancy=None) -> ArbitrationResult:
        return self.w.arbitrate(asks, idle, tenancy)

    def confirm(self, applied) -> None:
        return None

    def drop_nodes(self, nodes) -> None:
        return None


class _Actuation:
    """Idempotent by action id, as every actuator is; an action routed elsewhere (or
    nowhere) fails."""

    def __init__(self, w: SimWorld) -> None:
        self.w = w
        self.done: dict[str, ActionResult] = {}

    def routes(self, actions, node_of) -> dict[str, str]:
        return {a.action_id: NODE if a.container in self.w.pos else "" for a in actions}

    def apply(self, actions, routes, local) -> dict[str, ActionResult]:
        out = {}
        for a in actions:
            r = self.done.get(a.action_id)
            if r is None:
                if routes.get(a.action_id) != NODE or a.container not in self.w.pos:
                    r = ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                     a.old_limit, a.old_limit,
                                     f"no actuator for {a.container!r} in the simulation")
                else:
                    r = self.done[a.action_id] = self.w.apply(a)
            out[a.action_id] = r
        return out


class _NoJournal:
    """The simulated world keeps no log: nothing to resume, no status to show."""

    durable = False

    def append(self, records) -> None:
        return None

    def write_intent(self, intent) -> None:
        return None

    def read_intent(self) -> Mapping[str, Any] | None:
        return None

    def clear_intent(self) -> None:
        return None

    def discard_intent(self, why: str) -> str:
        return f"intent discarded: {why}"

    def write_status(self, status) -> None:
        return None


class _NoCheckpoint:
    enabled = False

    def load(self) -> Mapping[str, Any] | None:
        return None

    def save(self, state) -> None:
        return None

    def discard(self, why: str) -> str:
        return f"checkpoint discarded: {why}"


class _Thresholds:
    def __init__(self, book: ThresholdBook) -> None:
        self._book = book

    def book(self) -> ThresholdBook:
        return self._book

    def learn(self, judgements) -> list[Adjustment]:
        return self._book.learn_new(judgements)

    def discard(self, why: str) -> str:  # in memory: never unreadable
        return f"thresholds discarded: {why}"


__all__ = ["CFS_PERIOD_S", "SimWorld"]
