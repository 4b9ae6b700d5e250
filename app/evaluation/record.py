"""What one run of ``prescale evaluate`` recorded: arrays ``[N, T]`` of the demand, the
limits, the replicas and the failures, and the applied actions — from which
:mod:`app.evaluation.metrics` computes every figure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AppliedAction:
    step: int
    ts_s: float
    container: int
    tier: str  # "memory" | "cpu" | "disk" | "network" | "replicas"
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
    #: the tiers in which the scenario's containers can fail
    #: (:attr:`~app.evaluation.scenarios.Scenario.failure_tiers`): what its figures draw
    failure_tiers: tuple[str, ...] = ("memory",)
    #: [N, T] what each container has written to its volume (nan outside its life; at or
    #: above the capacity: disk full), and the volume's size in force (None: no disk tier)
    disk_demand_bytes: np.ndarray | None = None
    disk_capacity_bytes: np.ndarray | None = None
    #: [N, T] the traffic sent to each container and its receive limit in force (above
    #: it the excess queues: a timeout; None: no network tier)
    net_demand_bytes_per_s: np.ndarray | None = None
    net_limit_bytes_per_s: np.ndarray | None = None
    actions: list[AppliedAction] = field(default_factory=list)
    asks: int = 0
    reclaims: int = 0  # idle containers shrunk under contention (also in ``actions``)
    denied: int = 0
    deferred: int = 0
    threshold_final: dict[str, float] = field(default_factory=dict)


__all__ = ["AppliedAction", "RunRecord"]
