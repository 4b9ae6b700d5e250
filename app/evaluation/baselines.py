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
    (``OOMMinBumpUp`` = 100 × 2^20, ``OOMBumpUpRatio``, ``recommender/model/container.go``),
    used = max(usage, request);
  * the recommender's minimum memory is per pod; with one container per pod here it is
    the container's.

  The updater (``vertical-pod-autoscaler/pkg/updater``; defaults from
  ``updater/config/config.go`` ``DefaultUpdaterConfig`` and ``docs/faq.md``):

  * runs every 60 s (``--updater-interval``);
  * per pod (``priority/update_priority_calculator.go`` ``AddPod``, see
    :func:`vpa_update_allowed`): updates when a request is outside [lower, upper]; or
    the container was OOM-killed less than 10 min after it started
    (``--evict-after-oom-threshold``) and the update changes something; or the *pod*
    has lived 12 h (``--in-recommendation-bounds-eviction-lifetime-threshold``; the
    pod's start time, which a container restart does not reset) and
    Σ_resources |request − target| / request ≥ 0.1 (``--pod-update-threshold``,
    ``priority_processor.go``). An update sets every resource to its target;
  * skips every pod of a replica group with fewer live pods than ``--min-replicas``
    (default **2**; ``restriction/pods_restriction_factory.go`` ``GetCreatorMaps``, and
    the FAQ "I get recommendations for my single pod replicaset but they are not
    applied"). The check holds in every update mode; only ``InPlaceOrRecreate`` with
    ``--in-place-skip-disruption-budget`` (beta, default false) bypasses it;
  * in the default mode (``Auto``, which means ``Recreate``) an update is an
    **eviction**. The controller re-creates the pod, and the admission controller sets
    the recommendation on it. The admission webhook sees pod CREATE only
    (``docs/components.md``). So an OOM kill, which restarts the container *inside* the
    same pod, does not apply a new recommendation. Here an eviction restarts the
    container: a leak resets. The container is down for
    max(1, ⌈replica_startup_s / Δ⌉) steps, and the restart is counted as a *disruption*,
    not a failure;
  * ``InPlaceOrRecreate`` resizes the running pod (``PATCH …/resize``), no restart.

  Three variants are reported (:data:`VPA_VARIANTS`): ``vpa``, every default (a
  single-replica container is never updated while it runs); ``vpa_evict``, Recreate
  with ``--min-replicas=1``, the FAQ's fix for single-pod workloads; and
  ``vpa_inplace``, ``InPlaceOrRecreate`` with the replica check skipped.

  Simplifications, said plainly: the limit is the request (ratio 1, as with
  Guaranteed QoS); one sample per step counts as step_s / 60 of the recommender's
  per-minute samples; an in-place resize always succeeds when the pool grants it (no
  Deferred/Infeasible resize states). A pod whose container is restarting (crash loop
  after OOM kills) is still Running, so the updater may update it.
- :class:`HPA` — the Kubernetes HPA (kubernetes.io, "Horizontal Pod Autoscaling",
  algorithm details; ``pkg/controller/podautoscaler/replica_calculator.go`` and
  ``horizontal.go`` in kubernetes/kubernetes):

  * every 15 s (``--horizontal-pod-autoscaler-sync-period``), per metric (CPU and
    memory utilisation of the request; target 70 %, a user setting),
    :func:`hpa_desired`: ceil(ready × utilisation / target), no change while
    |ratio − 1| ≤ 0.1 (``--horizontal-pod-autoscaler-tolerance``); pods still starting
    count as 0 % used on a scale-up; the max over the metrics;
  * default behaviour: scale-up stabilisation 0 s, at most max(+100 %, +4 pods) per
    15 s (:func:`hpa_scale_up_limit`); scale-down: the highest recommendation of the
    last 300 s (``--horizontal-pod-autoscaler-downscale-stabilization``), never above
    the current count;
  * it reads usage 15 s old: metrics-server's ``--metric-resolution`` in the upstream
    manifests (kubernetes/kubernetes PR 117121);
  * a new replica serves only after the scenario's ``replica_startup_s`` (default 30 s:
    scheduled, started, ready). Until then the ready replicas carry the load, and the
    new one holds its request (the runner). A replica ready for less than the metrics
    delay has no metric yet and counts as starting.

  Utilisation is usage / request per ready replica (request = the limit). Worked
  example: 3 replicas at 90 % CPU, target 60 % → ratio 1.5 > 1.1 → ceil(3 × 1.5) = 5.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    ResultStatus,
    ScalingAction,
    action_id_for,
)
from prescale.app.core.policy_types import round_up
from prescale.app.core.sample import Event, EventKind, Tier

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
    replicas_ready: np.ndarray | None = None  # [N] replicas serving (None: all of them)


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
        preemptive=False, cause="baseline")


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
        return self.percentiles((p,))[0]

    def percentiles(self, ps: tuple[float, ...]) -> list[float]:
        """:meth:`percentile` of each of ``ps``, from one cumulative sum."""
        cum = np.cumsum(self.weights)
        total = float(cum[-1])
        if total <= 0:
            return [0.0] * len(ps)
        out = []
        for p in ps:
            b = min(int(np.searchsorted(cum, p * total - 1e-12 * total)), self.n - 1)
            out.append(self.bucket_start(b + 1) if b < self.n - 1 else self.bucket_start(b))
        return out


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
    """Recommender and updater settings; every default is the VPA's (module docstring)."""

    target_percentile: float = 0.9
    lower_percentile: float = 0.5
    upper_percentile: float = 0.95
    margin_fraction: float = 0.15
    min_cpu_cores: float = 0.025
    min_memory_bytes: float = 250 * MIB
    half_life_s: float = DAY_S
    cpu_min_sample_weight: float = 0.1
    # updater (vertical-pod-autoscaler/pkg/updater/config/config.go, DefaultUpdaterConfig)
    updater_interval_s: float = 60.0  # --updater-interval
    min_change_fraction: float = 0.1  # --pod-update-threshold (DefaultUpdateThreshold)
    # --in-recommendation-bounds-eviction-lifetime-threshold (PodLifetimeUpdateThreshold)
    lifetime_threshold_s: float = 12 * 3600.0
    evict_after_oom_s: float = 600.0  # --evict-after-oom-threshold
    min_replicas: int = 2  # --min-replicas
    update_mode: str = "Recreate"  # the default "Auto" means Recreate; or "InPlaceOrRecreate"
    in_place_skip_disruption_budget: bool = False  # --in-place-skip-disruption-budget

    def __post_init__(self) -> None:
        if self.update_mode not in ("Recreate", "InPlaceOrRecreate"):
            raise ValueError(f"update_mode {self.update_mode!r}: Recreate or InPlaceOrRecreate")


@dataclass
class Recommendation:
    target: float
    lower: float
    upper: float


def vpa_update_allowed(outside: bool, quick_oom: bool, pod_age_s: float, diff: float,
                       cfg: VPAConfig) -> bool:
    """The updater's per-pod rule (``UpdatePriorityCalculator.AddPod``): update when a
    request is outside [lower, upper], or the container OOM-killed less than
    ``evict_after_oom_s`` after it started (and the update changes something), or the pod
    has lived ``lifetime_threshold_s`` and ``diff`` = Σ_resources |request − target| /
    request ≥ ``min_change_fraction``. Worked example (defaults): inside the bounds, pod
    age 11 h, diff 0.5 → no; 13 h → yes; 13 h, diff 0.05 → no; outside, age 1 min → yes."""
    if quick_oom and diff == 0:
        return False
    if outside or quick_oom:
        return True
    return pod_age_s >= cfg.lifetime_threshold_s and diff >= cfg.min_change_fraction


class VPA(Baseline):
    """The VPA recommender + updater (+ admission controller), module docstring.

    ``restarts_on_update`` tells the runner that an applied update is an eviction: the
    container restarts (a disruption) with the new requests."""

    def __init__(self, bounds: Bounds, config: VPAConfig | None = None, name: str = "vpa"
                 ) -> None:
        self.bounds = bounds
        self.cfg = config or VPAConfig()
        self.name = name
        self.state: dict[str, VPAContainerState] = {}
        self.next_update_s = -math.inf
        self.pod_start_s: dict[str, float] = {}  # pod.Status.StartTime (not reset by OOM)
        self.container_start_s: dict[str, float] = {}
        self.quick_oom: dict[str, bool] = {}  # last termination: OOM soon after start

    @property
    def restarts_on_update(self) -> bool:
        return self.cfg.update_mode == "Recreate"

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
        """Feed this step's samples and OOM kills to the recommender; track the pod's and
        the container's start (for the 12 h and quick-OOM rules)."""
        ooms = {}
        for e in obs.events:
            if e.kind is EventKind.OOM_KILL:
                ooms[e.container] = e
        for i, name in enumerate(obs.names):
            st = self._state(name, obs.now_s)
            self.pod_start_s.setdefault(name, obs.now_s)
            if obs.up[i]:
                w = max(float(obs.cpu_quota_cores[i]), self.cfg.cpu_min_sample_weight)
                st.cpu.add(float(obs.cpu_usage_cores[i]), w, obs.now_s)
                st.add_memory_peak(float(obs.memory_usage_bytes[i]), obs.now_s)
                st.samples += obs.step_s / 60.0
                st.last_s = obs.now_s
            if name in ooms:
                used = max(float(obs.memory_limit_bytes[i]), float(obs.memory_usage_bytes[i]))
                st.add_memory_peak(oom_bump_bytes(used), obs.now_s)
                lived = obs.now_s - self.container_start_s.get(name, self.pod_start_s[name])
                self.quick_oom[name] = lived < self.cfg.evict_after_oom_s
            elif obs.up[i]:
                self.container_start_s[name] = obs.now_s - float(obs.age_s[i])

    def recommend(self, name: str, tier: Tier) -> Recommendation:
        st = self.state[name]
        c = self.cfg
        hist, lo_min = ((st.memory, c.min_memory_bytes) if tier is Tier.MEMORY
                        else (st.cpu, c.min_cpu_cores))
        m = 1 + c.margin_fraction
        days = st.days()
        p_target, p_lower, p_upper = hist.percentiles(
            (c.target_percentile, c.lower_percentile, c.upper_percentile))
        target = max(p_target * m, lo_min)
        lower = max(p_lower * m * confidence_multiplier(0.001, -2.0, days), lo_min)
        upper = max(p_upper * m * confidence_multiplier(1.0, 1.0, days), lo_min)
        return Recommendation(target, lower, upper)

    def group_updatable(self, replicas: int) -> bool:
        """``GetCreatorMaps``: a replica group with fewer live pods than ``min_replicas``
        is skipped, in every mode, unless the mode is in place and
        ``in_place_skip_disruption_budget`` is set. Worked example (defaults): 1 replica →
        False; 2 → True; 1 under InPlaceOrRecreate with the skip flag → True."""
        if replicas >= self.cfg.min_replicas:
            return True
        return (self.cfg.update_mode == "InPlaceOrRecreate"
                and self.cfg.in_place_skip_disruption_budget)

    def decide(self, obs: Observation) -> list[ScalingAction]:
        self.observe(obs)
        if obs.now_s < self.next_update_s:
            return []
        self.next_update_s = obs.now_s + self.cfg.updater_interval_s - 1e-9
        how = "evict" if self.restarts_on_update else "in place"
        asks = []
        for i, name in enumerate(obs.names):
            if not self.group_updatable(int(obs.replicas[i])):
                continue
            tiers = []
            outside, diff = False, 0.0
            for tier, cur in ((Tier.MEMORY, float(obs.memory_limit_bytes[i])),
                              (Tier.CPU, float(obs.cpu_quota_cores[i]))):
                rec = self.recommend(name, tier)
                target = self.bounds.clamp(tier, rec.target)
                outside = outside or cur < rec.lower or cur > rec.upper
                diff += abs(cur - target) / max(cur, 1e-12)
                tiers.append((tier, cur, target))
            quick = self.quick_oom.get(name, False)
            age = obs.now_s - self.pod_start_s[name]
            if not vpa_update_allowed(outside, quick, age, diff, self.cfg):
                continue
            why = ("outside [lower, upper]" if outside else "OOM soon after start" if quick
                   else "changed ≥ 10 % after 12 h")
            for tier, cur, target in tiers:
                if abs(target - cur) > 1e-9 * max(cur, 1.0):
                    asks.append(resize(obs.now_s, name, obs.apps[i], tier, cur, target,
                                       f"{self.name}: {how}, target {target:.4g} ({why})"))
        return asks

    def settle(self, obs: Observation, results: list[tuple[ScalingAction, ActionResult]]
               ) -> None:
        """An applied update under Recreate is a new pod: its start time is now and it
        has no last termination state."""
        if not self.restarts_on_update:
            return
        for a, r in results:
            if r.status is ResultStatus.APPLIED:
                self.pod_start_s[a.container] = obs.now_s
                self.container_start_s[a.container] = obs.now_s
                self.quick_oom[a.container] = False


#: the VPA variants ``prescale evaluate`` reports (name → updater settings)
VPA_VARIANTS: dict[str, VPAConfig] = {
    "vpa": VPAConfig(),
    "vpa_evict": VPAConfig(min_replicas=1),
    "vpa_inplace": VPAConfig(update_mode="InPlaceOrRecreate",
                             in_place_skip_disruption_budget=True),
}


# --------------------------------------------------------------------------- HPA


def hpa_desired(current: int, utilisation: float, target: float, tolerance: float = 0.1,
                starting: int = 0) -> int:
    """The HPA's replica count for one resource metric (``ReplicaCalculator.
    GetResourceReplicas``). ``current`` is the spec's replicas, ``starting`` of them are
    not ready yet (no metrics), ``utilisation`` the mean over the ready ones.

    Without starting pods (or when the ratio r = utilisation / target is ≤ 1):
    unchanged while |r − 1| ≤ tolerance, else ceil(r × ready). With starting pods on a
    scale-up they count as 0 % used: r' = r × ready / current; unchanged if
    |r' − 1| ≤ tolerance or r' < 1, else max(current, ceil(r' × current)).

    Worked examples: (3, 0.9, 0.6) → 5; (3, 0.63, 0.6) → 3 (1.05 ≤ 1.1); (4, 0.2, 0.6)
    → 2; (2, 1.0, 0.5, starting=1): r = 2, r' = 1.0 → 2 (waits for the new pod);
    (2, 0.9, 0.3, starting=1): r = 3, r' = 1.5 → 3.
    """
    ready = current - starting
    if ready <= 0:
        return current
    ratio = utilisation / target
    if starting <= 0 or ratio <= 1.0:
        if abs(ratio - 1.0) <= tolerance:
            return current
        return max(1, int(math.ceil(ratio * ready - 1e-9)))
    new_ratio = ratio * ready / current
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return current
    return max(current, int(math.ceil(new_ratio * current - 1e-9)))


def hpa_scale_up_limit(current: int, percent: float = 100.0, pods: int = 4) -> int:
    """The default scale-up policies, selectPolicy Max: + ``percent`` % or + ``pods``
    per period. Worked example: 1 → 5; 3 → 7; 10 → 20."""
    return max(int(math.ceil(current * (1 + percent / 100.0) - 1e-9)), current + pods)


@dataclass
class HPAConfig:
    target_cpu_utilisation: float = 0.7  # a user setting (no default in autoscaling/v2)
    target_memory_utilisation: float = 0.7
    tolerance: float = 0.1  # --horizontal-pod-autoscaler-tolerance
    sync_period_s: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    downscale_stabilisation_s: float = 300.0  # behavior.scaleDown.stabilizationWindowSeconds
    scale_up_percent: float = 100.0  # behavior.scaleUp.policies (per 15 s)
    scale_up_pods: int = 4
    metrics_delay_s: float = 15.0  # metrics-server --metric-resolution (upstream manifests)
    min_replicas: int = 1


class HPA(Baseline):
    """Utilisation-target horizontal autoscaler (module docstring). It reads the usage
    of ``metrics_delay_s`` ago (metrics-server), and the runner makes a new replica
    serve only after the scenario's ``replica_startup_s``."""

    name = "hpa"

    def __init__(self, bounds: Bounds, config: HPAConfig | None = None) -> None:
        self.bounds = bounds
        self.cfg = config or HPAConfig()
        self.history: dict[str, list[tuple[float, int]]] = {}
        self.metrics: dict[str, deque[tuple[float, float, float, int]]] = {}
        self.next_sync_s = -math.inf

    def metric(self, name: str, now_s: float) -> tuple[float, float, int] | None:
        """(cpu, memory) utilisation of the newest sample at or before now − delay, and
        how many replicas were ready then (a replica ready since has no metric yet)."""
        q = self.metrics.get(name)
        cut = now_s - self.cfg.metrics_delay_s + 1e-9
        if not q:
            return None
        while len(q) > 1 and q[1][0] <= cut:
            q.popleft()
        return (q[0][1], q[0][2], q[0][3]) if q[0][0] <= cut else None

    def decide(self, obs: Observation) -> list[ScalingAction]:
        ready_all = obs.replicas if obs.replicas_ready is None else obs.replicas_ready
        for i, name in enumerate(obs.names):
            if obs.up[i]:
                self.metrics.setdefault(name, deque()).append((
                    obs.now_s, float(obs.cpu_usage_cores[i] / obs.cpu_quota_cores[i]),
                    float(obs.memory_usage_bytes[i] / obs.memory_limit_bytes[i]),
                    int(ready_all[i])))
        if obs.now_s < self.next_sync_s:
            return []
        self.next_sync_s = obs.now_s + self.cfg.sync_period_s - 1e-9
        c = self.cfg
        asks = []
        for i, name in enumerate(obs.names):
            m = self.metric(name, obs.now_s)
            if not obs.up[i] or m is None:
                continue
            cpu_u, mem_u, ready_then = m
            cur = int(obs.replicas[i])
            starting = cur - min(int(ready_all[i]), ready_then)  # no metric yet
            want = max(hpa_desired(cur, cpu_u, c.target_cpu_utilisation, c.tolerance, starting),
                       hpa_desired(cur, mem_u, c.target_memory_utilisation, c.tolerance,
                                   starting))
            hist = self.history.setdefault(name, [])
            hist.append((obs.now_s, want))
            hist[:] = [(t, r) for t, r in hist if t > obs.now_s - c.downscale_stabilisation_s]
            if want < cur:  # scale-down: the highest recommendation in the window
                want = min(cur, max(r for _, r in hist))
            else:
                want = min(want, hpa_scale_up_limit(cur, c.scale_up_percent, c.scale_up_pods))
            want = min(max(want, c.min_replicas), self.bounds.max_replicas)
            if want != cur:
                a = resize(obs.now_s, name, obs.apps[i], Tier.CPU, cur, want,
                           f"hpa: cpu {cpu_u:.0%} memory {mem_u:.0%} → {want} replicas")
                asks.append(replace(a, kind=ActionKind.SCALE_OUT,
                                    action_id=f"{name}/replicas@{round(obs.now_s * 1000)}"))
        return asks


BASELINES = ("static", "reactive", *VPA_VARIANTS, "hpa")
