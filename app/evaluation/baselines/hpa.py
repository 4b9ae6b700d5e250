"""The Kubernetes Horizontal Pod Autoscaler as a baseline of ``prescale evaluate``,
implemented from its published description.

:class:`HPA` — the Kubernetes HPA (kubernetes.io, "Horizontal Pod Autoscaling",
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

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.evaluation.baselines.base import Baseline, Bounds, Observation, resize


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

