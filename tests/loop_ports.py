"""In-memory ports for the tick (:mod:`app.loop.ports`), counting their writes: what the
unit tests of the tick and the ports' contract test drive it with. Every part of the
tick is real; only the world around it is a few lists."""

from __future__ import annotations

from typing import Any

import numpy as np

from prescale.app.core.actions import ActionResult, ResultStatus
from prescale.app.core.contention import ContentionConfig, arbitrate
from prescale.app.core.pool import ZERO, Capacity, Pool
from prescale.app.core.sample import METRICS, Sample, Tier
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.loop.shard import Shard
from prescale.app.loop.tick import Ports

MiB = 2**20


def leak_window(steps: int = 12, *, start_mib: float = 100, per_step_mib: float = 8,
                limit_mib: float = 256, t0: float = 1_700_000_000.0, step_s: float = 5.0
                ) -> np.ndarray:
    """One container's window ``[1, steps, M]``: memory rising ``per_step_mib`` a step."""
    rows = []
    for k in range(steps):
        u = (start_mib + per_step_mib * k) * MiB
        rows.append(Sample("w", t0 + step_s * k, memory_usage_bytes=u,
                           memory_working_set_bytes=u, memory_limit_bytes=limit_mib * MiB,
                           cpu_usage_s_total=0.05 * k, cpu_quota_cores=1.0).row())
    return np.array(rows, dtype=float)[None]


class MemTelemetry:
    def __init__(self) -> None:
        self.next: list[Shard] = []
        self.unknown: dict[str, str] = {}
        self.nodes = {"n1"}

    def collect(self):
        return list(self.next), dict(self.unknown)

    def live_nodes(self):
        return set(self.nodes)


class MemAllocator:
    def __init__(self, memory_bytes: float = 64 * 2**30, cpu_cores: float = 64.0) -> None:
        self.pool = Pool(Capacity(memory_bytes, cpu_cores), reserve=ZERO)
        self.confirms = 0
        self.dropped: list[str] = []

    def prepare(self) -> None:
        return None

    def observe(self, limits, now_s, nodes, node_of, replicas) -> None:
        for c, by_tier in limits.items():
            for t, v in by_tier.items():
                self.pool.observe(c, Tier(t), v)

    def arbitrate(self, asks, idle, now_s, commit, tenancy=None):
        return arbitrate(list(asks), self.pool, idle=list(idle), tenants={}, weights={},
                         now_s=now_s, tenant_weights={}, config=ContentionConfig(),
                         commit=commit, tenancy=tenancy)

    def confirm(self, applied) -> None:
        self.confirms += 1
        for c, t, v in applied:
            self.pool.observe(c, Tier(t), v)

    def drop_nodes(self, nodes) -> None:
        self.dropped += list(nodes)


class MemActuation:
    """Applies by remembering; idempotent by action id (as every actuator is)."""

    def __init__(self) -> None:
        self.limits: dict[tuple[str, str], float] = {}
        self.done: dict[str, ActionResult] = {}
        self.calls = 0

    def routes(self, actions, node_of):
        return {a.action_id: "n1" if node_of.get(a.container) else "" for a in actions}

    def apply(self, actions, routes, local):
        out = {}
        for a in actions:
            if a.action_id in self.done:
                out[a.action_id] = self.done[a.action_id]
                continue
            if not routes.get(a.action_id):
                out[a.action_id] = ActionResult(a.action_id, a.container, a.tier,
                                                ResultStatus.FAILED, a.old_limit, a.old_limit,
                                                "no route")
                continue
            self.calls += 1
            self.limits[(a.container, a.tier.value)] = a.new_limit
            r = ActionResult(a.action_id, a.container, a.tier, ResultStatus.APPLIED,
                             a.old_limit, a.new_limit, "ok")
            self.done[a.action_id] = out[a.action_id] = r
        return out


class MemJournal:
    durable = True

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.intent: dict[str, Any] | None = None
        self.intent_writes = 0
        self.status: dict[str, Any] | None = None
        self.status_writes = 0
        self.full = False  # True: every write raises ENOSPC, as a full disk does

    def _disk(self) -> None:
        if self.full:
            raise OSError(28, "No space left on device")

    def append(self, records) -> None:
        self._disk()
        self.records += [dict(r) for r in records]

    def write_intent(self, intent) -> None:
        self._disk()
        self.intent_writes += 1
        self.intent = dict(intent)

    def read_intent(self):
        return self.intent

    def clear_intent(self) -> None:
        self.intent = None

    def discard_intent(self, why: str) -> str:
        self.intent = None
        return f"intent set aside: {why}"

    def write_status(self, status) -> None:
        self._disk()
        self.status_writes += 1
        self.status = dict(status)


class MemCheckpoint:
    enabled = True

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.saves = 0

    def load(self):
        return self.state

    def save(self, state) -> None:
        self.saves += 1
        self.state = dict(state)

    def discard(self, why: str) -> str:
        self.state = None
        return f"checkpoint set aside: {why}"


class MemThresholds:
    def __init__(self, book: ThresholdBook | None = None) -> None:
        self._book = book or ThresholdBook()
        self.learns = 0

    def book(self):
        return self._book

    def learn(self, judgements):
        self.learns += 1
        return self._book.learn_new(judgements)

    def discard(self, why: str) -> str:
        self._book = ThresholdBook()
        return f"thresholds set aside: {why}"


class MonitorTelemetry:
    """The telemetry port over one real :class:`~app.node_monitor.Monitor` (no Ray)."""

    def __init__(self, monitor) -> None:
        self.monitor = monitor

    def collect(self):
        return [Shard.from_dict(self.monitor.collect())], {}

    def live_nodes(self):
        return {self.monitor.node_id}


class MonitorActuation:
    """The actuation port over the same monitor; keeps every result."""

    def __init__(self, monitor) -> None:
        self.monitor, self.results = monitor, []

    def routes(self, actions, node_of):
        return {a.action_id: node_of.get(a.container, "") for a in actions}

    def apply(self, actions, routes, local):
        results = self.monitor.apply(list(actions))
        self.results += results
        return {r.action_id: r for r in results}


def monitor_tick(settings, run_id: str):
    """A tick over one real monitor (its sources and actuators from ``settings``) with
    in-memory pool, journal, checkpoint and thresholds: ``(tick, actuation, journal)``."""
    from prescale.app.core.engine import EngineConfig
    from prescale.app.loop.tick import Tick
    from prescale.app.node_monitor import Monitor

    monitor = Monitor(settings)
    actuation, journal = MonitorActuation(monitor), MemJournal()
    ports = Ports(telemetry=MonitorTelemetry(monitor), allocator=MemAllocator(),
                  actuation=actuation, journal=journal, checkpoint=MemCheckpoint(),
                  thresholds=MemThresholds())
    tick = Tick(EngineConfig.from_settings(settings), ports, run_id=run_id, mode="auto",
                window_steps=settings.loop.window_steps)
    return tick, actuation, journal


def mem_ports() -> Ports:
    return Ports(telemetry=MemTelemetry(), allocator=MemAllocator(),
                 actuation=MemActuation(), journal=MemJournal(), checkpoint=MemCheckpoint(),
                 thresholds=MemThresholds())


def shard(window: np.ndarray, names=("w",), node: str = "n1", events=(),
          replicas=None) -> Shard:
    return Shard(node, float(np.nanmax(window[:, :, 0])), list(names), ["app"] * len(names),
                 window, list(events), capacity={"memory_bytes": 64.0 * 2**30,
                                                 "cpu_cores": 64.0},
                 replicas=dict(replicas or {}))


assert len(METRICS) > 0
