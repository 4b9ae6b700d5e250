"""Baselines for ``prescale evaluate``, implemented from their published descriptions.

Every baseline sees the same :class:`Observation` as prescale (usage is what a kernel
would report: capped at the limit) and returns :class:`~app.core.actions.ScalingAction`
asks that go through the same pool and contention code; it never reads the demand.

- :class:`Static` — the limits the user configured; never acts.
- :class:`FailureRateReactive` — grow a container's limit after a share of its recent
  executions failed: "retry with more resources", as in Nextflow's
  ``errorStrategy 'retry'`` with ``memory { 2.GB * task.attempt }`` (Nextflow docs,
  "Dynamic computing resources"). An execution of memory is one run of the container
  (it ends in an OOM kill or goes on); of CPU, one control interval (failed if a
  request timed out). When at least ``min_failures`` of the last ``window`` executions
  failed and they are at least ``share`` of them, the limit grows × ``factor`` and the
  record is cleared. Worked example: window 10, share 0.5, factor 1.5; the CPU ticks
  0 0 0 0 0 1 1 1 1 1 → 5/10 = 0.5 → quota 1.0 → 1.5 cores.
- :class:`VPA` — the Kubernetes Vertical Pod Autoscaler recommender and updater
  (kubernetes/autoscaler, ``vertical-pod-autoscaler/pkg/recommender/logic/recommender.go``
  and ``.../model/aggregations_config.go``, ``.../util/histogram.go``):

  * decaying histograms, half-life 24 h (``DefaultMemoryHistogramDecayHalfLife``,
    ``DefaultCPUHistogramDecayHalfLife``), exponential buckets growing 5 %
    (``DefaultHistogramBucketSizeGrowth`` 0.05), first bucket 0.01 core / 1e7 bytes,
    up to 1000 cores / 1e12 bytes;
  * CPU samples weighted by max(request, 0.1) (``minSampleWeight``); memory: one
    sample per 24 h aggregation window, its *peak* (``DefaultMemoryAggregationInterval``);
  * target = p90 (``target-cpu-percentile``, ``target-memory-percentile``) × (1 + 0.15)
    (``recommendation-margin-fraction``); lower bound p50, upper bound p95, with the
    same margin and the confidence multipliers (1 + 1/days)^+1 (upper) and
    (1 + 0.001/days)^−2 (lower), days = min(lifespan, samples / 1440);
  * minimums 25 millicores (``pod-recommendation-min-cpu-millicores``) and 250 MiB
    (``pod-recommendation-min-memory-mb``);
  * an OOM kill adds a memory sample of max(used + 100 MiB, 1.2 × used)
    (``OOMMinBumpUp``, ``OOMBumpUpRatio``), used = max(usage, request);
  * the updater runs every 60 s (``updater-interval`` 1m) and applies the target when
    the current value is outside [lower, upper], or differs by more than 10 % and the
    container has lived 12 h (``podLifetimeUpdateThreshold``).

  Simplifications, said plainly: the limit is the request (ratio 1, as with
  Guaranteed QoS); the update is in place (VPA's ``InPlaceOrRecreate`` mode), not by
  eviction, so an update does not restart the container; one sample per step counts as
  step_s / 60 of the recommender's per-minute samples.
- :class:`HPA` — a utilisation-target horizontal autoscaler after the Kubernetes HPA
  (kubernetes.io, "Horizontal Pod Autoscaling", algorithm details)::

      desired = ceil(current × utilisation / target)    (the max over CPU and memory)
      no change while |utilisation / target − 1| ≤ tolerance (0.1)
      scale-up at most max(2 × current, current + 4) per 15 s period
      scale-down: the highest recommendation of the last 300 s (stabilisation window)

  Utilisation is usage / request per replica (request = the limit). Worked example:
  3 replicas at 90 % CPU, target 60 % → ratio 1.5 > 1.1 → ceil(3 × 1.5) = 5.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from app.core.actions import ActionKind, ActionResult, ScalingAction, action_id_for
from app.core.policy_types import round_up
from app.core.sample import Event, EventKind, Tier

MIB = 2.0**20
DAY_S = 86_400.0


@dataclass
class Observation:
    """What every policy sees at a tick (per replica; usage capped at the limit)."""

    now_s: float
    step_s: float
    names: list[str]
    apps: list[str]
    window: np.ndarray  # [N, W, M] from the ring buffer
    events: list[Event]  # since the last tick
    memory_usage_bytes: np.ndarray  # [N] (0 while the container is down)
    cpu_usage_cores: np.ndarray
    memory_limit_bytes: np.ndarray
    cpu_quota_cores: np.ndarray
    replicas: np.ndarray
    up: np.ndarray  # [N] bool: running
    age_s: np.ndarray  # [N] seconds since the container (re)started


@dataclass(frozen=True)
class Bounds:
    memory_min_bytes: float = 32 * MIB
    memory_max_bytes: float = 16 * 2.0**30
    cpu_min_cores: float = 0.1
    cpu_max_cores: float = 16.0
    max_replicas: int = 10

    def clamp(self, tier: Tier, v: float) -> float:
        lo, hi = ((self.memory_min_bytes, self.memory_max_bytes) if tier is Tier.MEMORY
                  else (self.cpu_min_cores, self.cpu_max_cores))
        return min(max(round_up(tier, v), lo), hi)


def resize(now_s: float, name: str, app: str, tier: Tier, old: float, new: float,
           reason: str, p_fail: float = 1.0) -> ScalingAction:
    """A non-pre-emptive resize ask of a baseline."""
    return ScalingAction(
        action_id=action_id_for(name, tier, now_s), now_s=now_s, container=name, tier=tier,
        old_limit=float(old), new_limit=float(new), p_fail=p_fail, threshold=0.0,
        time_to_limit_s=math.nan, forecast=math.nan, reason=reason, app=app,
        preemptive=False)


class Baseline:
    name = "baseline"

    def decide(self, obs: Observation) -> list[ScalingAction]:
        raise NotImplementedError

    def settle(self, obs: Observation, results: list[tuple[ScalingAction, ActionResult]]
               ) -> None:
        return None


class Static(Baseline):
    """The limits the user configured, never changed."""

    name = "static"

    def decide(self, obs: Observation) -> list[ScalingAction]:
        return []


class FailureRateReactive(Baseline):
    """Grow after a share of recent executions failed (module docstring)."""

    name = "reactive"

    def __init__(self, bounds: Bounds, window: int = 10, share: float = 0.5,
                 min_failures: int = 1, factor: float = 1.5) -> None:
        self.bounds, self.window, self.share = bounds, window, share
        self.min_failures, self.factor = min_failures, factor
        self.record: dict[tuple[str, Tier], deque[int]] = {}

    def _rec(self, name: str, tier: Tier) -> deque[int]:
        return self.record.setdefault((name, tier), deque(maxlen=self.window))

    def should_grow(self, outcomes: deque[int]) -> bool:
        failed = sum(outcomes)
        return (failed >= self.min_failures and len(outcomes) > 0
                and failed / len(outcomes) >= self.share)

    def decide(self, obs: Observation) -> list[ScalingAction]:
        ooms = {e.container for e in obs.events if e.kind is EventKind.OOM_KILL}
        timeouts = {e.container for e in obs.events if e.kind is EventKind.TIMEOUT}
        asks = []
        for i, name in enumerate(obs.names):
            if name in ooms:
                self._rec(name, Tier.MEMORY).append(1)
            self._rec(name, Tier.CPU).append(1 if name in timeouts else 0)
            for tier, limit in ((Tier.MEMORY, obs.memory_limit_bytes[i]),
                                (Tier.CPU, obs.cpu_quota_cores[i])):
                rec = self._rec(name, tier)
                if self.should_grow(rec):
                    new = self.bounds.clamp(tier, limit * self.factor)
                    rec.clear()
                    if new > limit:
                        asks.append(resize(obs.now_s, name, obs.apps[i], tier, limit, new,
                                           f"{self.name}: failure share reached "
                                           f"{self.share:.0%}: × {self.factor}"))
        return asks


# --------------------------------------------------------------------------- VPA


class DecayingHistogram:
    """VPA's exponential-bucket histogram with exponentially decaying sample weights.

    Bucket i starts at ``first × (ratio^i − 1) / (ratio − 1)``; a value v ≥ first falls
    in bucket ⌊log(v(ratio − 1)/first + 1) / log ratio⌋. A sample at time t weighs
    ``w × 2^((t − t_ref) / half_life)``. ``percentile(p)`` is the *end* of the first
    bucket where the cumulative weight reaches p × total (VPA's ``Percentile``).

    Worked example (memory options: first 1e7 B, ratio 1.05): 100 MB falls in bucket
    ⌊log(1e8 × 0.05 / 1e7 + 1) / log 1.05⌋ = ⌊log 1.5 / log 1.05⌋ = 8, which starts
    at 1e7 × (1.05^8 − 1)/0.05 = 95.49 MB and ends at 1e7 × (1.05^9 − 1)/0.05 =
    110.27 MB → the p90 of one 100 MB sample is 110.27 MB. Decay: a sample 24 h later
    weighs 2 × an equal earlier one; with 1 × 100 MB at t=0 and 1 × 200 MB at t=24 h the
    total is 3 and p50 (threshold 1.5) is reached in the 200 MB bucket.
    """

    def __init__(self, first_bucket: float, max_value: float, ratio: float = 1.05,
                 half_life_s: float = DAY_S, t_ref_s: float = 0.0) -> None:
        self.first, self.ratio, self.half_life_s = first_bucket, ratio, half_life_s
        self.n = int(math.ceil(math.log(max_value * (ratio - 1) / first_bucket + 1)
                               / math.log(ratio))) + 1
        self.weights = np.zeros(self.n)
        self.t_ref_s = t_ref_s

    def bucket(self, v: float) -> int:
        if v < self.first:
            return 0
        b = int(math.log(v * (self.ratio - 1) / self.first + 1) / math.log(self.ratio))
        return min(b, self.n - 1)

    def bucket_start(self, b: int) -> float:
        return self.first * (self.ratio**b - 1) / (self.ratio - 1)

    def _factor(self, ts_s: float) -> float:
        return 2.0 ** ((ts_s - self.t_ref_s) / self.half_life_s)

    def add(self, v: float, weight: float, ts_s: float) -> None:
        self.weights[self.bucket(v)] += weight * self._factor(ts_s)

    def subtract(self, v: float, weight: float, ts_s: float) -> None:
        b = self.bucket(v)
        self.weights[b] = max(self.weights[b] - weight * self._factor(ts_s), 0.0)

    @property
    def total(self) -> float:
        return float(self.weights.sum())

    def percentile(self, p: float) -> float:
        total = self.total
        if total <= 0:
            return 0.0
        cum = np.cumsum(self.weights)
        b = int(np.searchsorted(cum, p * total - 1e-12 * total))
        b = min(b, self.n - 1)
        return self.bucket_start(b + 1) if b < self.n - 1 else self.bucket_start(b)


def oom_bump_bytes(used_bytes: float, min_bump_bytes: float = 100 * MIB,
                   ratio: float = 1.2) -> float:
    """VPA's memory sample after an OOM kill: max(used + 100 MiB, 1.2 × used).
    Worked example: 256 MiB → max(356, 307.2) = 356 MiB; 1 GiB → max(1124, 1228.8) MiB."""
    return max(used_bytes + min_bump_bytes, used_bytes * ratio)


def confidence_multiplier(multiplier: float, exponent: float, days: float) -> float:
    """(1 + multiplier / days)^exponent; days 0 → inf (exponent > 0) or 0 (< 0).
    Worked example: upper (1, +1): 12 h → 3, 24 h → 2; lower (0.001, −2): 5 min (days
    1/288) → (1 + 0.288)^−2 = 0.603."""
    if days <= 0:
        return math.inf if exponent > 0 else 0.0
    return (1 + multiplier / days) ** exponent


@dataclass
class VPAContainerState:
    cpu: DecayingHistogram
    memory: DecayingHistogram
    first_s: float
    last_s: float = 0.0
    samples: float = 0.0
    window_start_s: float = -math.inf
    window_peak: float = 0.0

    def add_memory_peak(self, v: float, ts_s: float, window_s: float = DAY_S) -> None:
        """One sample per aggregation window: its peak (a higher value replaces it)."""
        if ts_s >= self.window_start_s + window_s:
            self.window_start_s = self.first_s + math.floor((ts_s - self.first_s) / window_s
                                                            ) * window_s
            self.window_peak = 0.0
        if v > self.window_peak:
            if self.window_peak > 0:
                self.memory.subtract(self.window_peak, 1.0, self.window_start_s)
            self.memory.add(v, 1.0, self.window_start_s)
            self.window_peak = v

    def days(self) -> float:
        return min((self.last_s - self.first_s) / DAY_S, self.samples / (60 * 24))


@dataclass(frozen=True)
class VPAConfig:
    target_percentile: float = 0.9
    lower_percentile: float = 0.5
    upper_percentile: float = 0.95
    margin_fraction: float = 0.15
    min_cpu_cores: float = 0.025
    min_memory_bytes: float = 250 * MIB
    half_life_s: float = DAY_S
    updater_interval_s: float = 60.0
    min_change_fraction: float = 0.1
    lifetime_threshold_s: float = 12 * 3600.0
    cpu_min_sample_weight: float = 0.1


@dataclass
class Recommendation:
    target: float
    lower: float
    upper: float


class VPA(Baseline):
    """The VPA recommender + updater (module docstring)."""

    name = "vpa"

    def __init__(self, bounds: Bounds, config: VPAConfig | None = None) -> None:
        self.bounds = bounds
        self.cfg = config or VPAConfig()
        self.state: dict[str, VPAContainerState] = {}
        self.next_update_s = -math.inf

    def _state(self, name: str, now_s: float) -> VPAContainerState:
        st = self.state.get(name)
        if st is None:
            h = self.cfg.half_life_s
            st = VPAContainerState(DecayingHistogram(0.01, 1000.0, half_life_s=h, t_ref_s=now_s),
                                   DecayingHistogram(1e7, 1e12, half_life_s=h, t_ref_s=now_s),
                                   first_s=now_s)
            self.state[name] = st
        return st

    def observe(self, obs: Observation) -> None:
        """Feed this step's samples and OOM kills to the recommender."""
        ooms = {}
        for e in obs.events:
            if e.kind is EventKind.OOM_KILL:
                ooms[e.container] = e
        for i, name in enumerate(obs.names):
            st = self._state(name, obs.now_s)
            if obs.up[i]:
                w = max(float(obs.cpu_quota_cores[i]), self.cfg.cpu_min_sample_weight)
                st.cpu.add(float(obs.cpu_usage_cores[i]), w, obs.now_s)
                st.add_memory_peak(float(obs.memory_usage_bytes[i]), obs.now_s)
                st.samples += obs.step_s / 60.0
                st.last_s = obs.now_s
            if name in ooms:
                used = max(float(obs.memory_limit_bytes[i]), float(obs.memory_usage_bytes[i]))
                st.add_memory_peak(oom_bump_bytes(used), obs.now_s)

    def recommend(self, name: str, tier: Tier) -> Recommendation:
        st = self.state[name]
        c = self.cfg
        hist, lo_min = ((st.memory, c.min_memory_bytes) if tier is Tier.MEMORY
                        else (st.cpu, c.min_cpu_cores))
        m = 1 + c.margin_fraction
        days = st.days()
        target = max(hist.percentile(c.target_percentile) * m, lo_min)
        lower = max(hist.percentile(c.lower_percentile) * m
                    * confidence_multiplier(0.001, -2.0, days), lo_min)
        upper = max(hist.percentile(c.upper_percentile) * m
                    * confidence_multiplier(1.0, 1.0, days), lo_min)
        return Recommendation(target, lower, upper)

    def decide(self, obs: Observation) -> list[ScalingAction]:
        self.observe(obs)
        if obs.now_s < self.next_update_s:
            return []
        self.next_update_s = obs.now_s + self.cfg.updater_interval_s - 1e-9
        asks = []
        for i, name in enumerate(obs.names):
            for tier, cur in ((Tier.MEMORY, float(obs.memory_limit_bytes[i])),
                              (Tier.CPU, float(obs.cpu_quota_cores[i]))):
                rec = self.recommend(name, tier)
                target = self.bounds.clamp(tier, rec.target)
                outside = cur < rec.lower or cur > rec.upper
                long_lived = obs.age_s[i] >= self.cfg.lifetime_threshold_s
                change = abs(target - cur) / cur if cur > 0 else math.inf
                if (outside or (long_lived and change > self.cfg.min_change_fraction)) \
                        and abs(target - cur) > 1e-9 * max(cur, 1.0):
                    why = ("outside [lower, upper]" if outside else "changed > 10 % after 12 h")
                    asks.append(resize(obs.now_s, name, obs.apps[i], tier, cur, target,
                                       f"vpa: target {target:.4g} ({why})"))
        return asks


# --------------------------------------------------------------------------- HPA


def hpa_desired(current: int, utilisation: float, target: float, tolerance: float = 0.1
                ) -> int:
    """ceil(current × utilisation / target), unchanged within the tolerance.
    Worked example: (3, 0.9, 0.6) → 5; (3, 0.63, 0.6) → 3 (ratio 1.05 ≤ 1.1);
    (4, 0.2, 0.6) → 2."""
    ratio = utilisation / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(1, int(math.ceil(current * ratio - 1e-9)))


@dataclass
class HPAConfig:
    target_cpu_utilisation: float = 0.7
    target_memory_utilisation: float = 0.7
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    downscale_stabilisation_s: float = 300.0
    min_replicas: int = 1


class HPA(Baseline):
    """Utilisation-target horizontal autoscaler (module docstring)."""

    name = "hpa"

    def __init__(self, bounds: Bounds, config: HPAConfig | None = None) -> None:
        self.bounds = bounds
        self.cfg = config or HPAConfig()
        self.history: dict[str, list[tuple[float, int]]] = {}
        self.next_sync_s = -math.inf

    def decide(self, obs: Observation) -> list[ScalingAction]:
        if obs.now_s < self.next_sync_s:
            return []
        self.next_sync_s = obs.now_s + self.cfg.sync_period_s - 1e-9
        c = self.cfg
        asks = []
        for i, name in enumerate(obs.names):
            if not obs.up[i]:
                continue
            cur = int(obs.replicas[i])
            cpu_u = obs.cpu_usage_cores[i] / obs.cpu_quota_cores[i]
            mem_u = obs.memory_usage_bytes[i] / obs.memory_limit_bytes[i]
            want = max(hpa_desired(cur, cpu_u, c.target_cpu_utilisation, c.tolerance),
                       hpa_desired(cur, mem_u, c.target_memory_utilisation, c.tolerance))
            hist = self.history.setdefault(name, [])
            hist.append((obs.now_s, want))
            hist[:] = [(t, r) for t, r in hist if t > obs.now_s - c.downscale_stabilisation_s]
            if want < cur:  # scale-down: the highest recommendation in the window
                want = max(r for _, r in hist)
            else:  # scale-up rate limit: 100 % or 4 pods per period, whichever is more
                want = min(want, max(2 * cur, cur + 4))
            want = min(max(want, c.min_replicas), self.bounds.max_replicas)
            if want != cur:
                a = resize(obs.now_s, name, obs.apps[i], Tier.CPU, cur, want,
                           f"hpa: cpu {cpu_u:.0%} memory {mem_u:.0%} → {want} replicas")
                from dataclasses import replace
                asks.append(replace(a, kind=ActionKind.SCALE_OUT,
                                    action_id=f"{name}/replicas@{round(obs.now_s * 1000)}"))
        return asks


BASELINES = ("static", "reactive", "vpa", "hpa")
