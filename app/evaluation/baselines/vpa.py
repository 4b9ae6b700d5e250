"""The Kubernetes Vertical Pod Autoscaler as a baseline of ``prescale evaluate``,
implemented from its published description.

:class:`VPA` — the Kubernetes Vertical Pod Autoscaler recommender and updater
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import EventKind, Tier
from prescale.app.evaluation.baselines.base import MIB, Baseline, Bounds, Observation, resize

DAY_S = 86_400.0


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
