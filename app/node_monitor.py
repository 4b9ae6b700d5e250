"""One node's monitor without Ray (:class:`Monitor`): samples the node's containers into
a ring buffer and applies actions; :class:`actors.monitor.MonitorActor` is it as a Ray
actor.

The sources (:mod:`app.telemetry`, built from the settings by
:func:`app.telemetry.factory.build_sources`) read the containers, stamped by one
:class:`~app.telemetry.steady_clock.SteadyClock`; the validator
(:mod:`app.core.validation`) counts and drops bad samples, the ring buffer
(:mod:`app.core.ring`) keeps the last ``window_steps`` samples, the cgroup actuator
(:mod:`app.actuators.cgroup`) writes limits, the Docker actuator
(:mod:`app.actuators.docker`) resizes the containers the Docker source watches.
``collect()`` returns the window of all containers as one array, so the coordinator
makes one call per tick, not one per container. A source that fails as a whole is
reported as ``errors["_source:<kind>"]`` and the others go on.

Restart: the ring buffer is not checkpointed (it refills within one window); applied
action ids are remembered so a retried call does not apply an action twice, and
cgroup writes set absolute values, so even a replay after a restart is harmless.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from prescale.app.actuators.base import InvalidActionError
from prescale.app.actuators.cgroup import CgroupActuator
from prescale.app.actuators.docker import DockerActuator
from prescale.app.actuators.netlimit import LinkActuator
from prescale.app.actuators.retry import RetryingActuator, RetryPolicy
from prescale.app.actuators.volume import VolumeActuator
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.ring import RingBuffer
from prescale.app.core.sample import Event, EventKind, Sample, Tier, merge_sources
from prescale.app.core.validation import Validator
from prescale.app.edges.cgroupfs import CgroupError
from prescale.app.settings import Settings
from prescale.app.store.history import HistoryStore
from prescale.app.telemetry.base import Source
from prescale.app.telemetry.cgroup import CgroupSource
from prescale.app.telemetry.docker import DockerSource
from prescale.app.telemetry.factory import build_sources
from prescale.app.telemetry.host import host_capacity
from prescale.app.telemetry.links import LinkSource
from prescale.app.telemetry.steady_clock import SteadyClock
from prescale.app.telemetry.volumes import VolumeSource

_REMEMBERED_ACTIONS = 10_000


class Monitor:
    """The monitor's logic without Ray (the actor below is this class, remote)."""

    def __init__(self, settings: Settings, sources: list[Source] | None = None,
                 node_id: str = "local", clock: SteadyClock | None = None) -> None:
        self.settings = settings
        self.node_id = node_id
        self.capacity = host_capacity(settings).to_dict()
        self.clock = clock or SteadyClock()  # the loop's time: never steps
        self.sources = (build_sources(settings, node_id, self.clock) if sources is None
                        else sources)
        self.cgroups = next((s for s in self.sources if isinstance(s, CgroupSource)), None)
        self.actuator = CgroupActuator(settings.cgroup)
        # Docker containers are resized through the Engine of the source that watches them
        self.docker = next((s for s in self.sources if isinstance(s, DockerSource)), None)
        self.docker_actuator = (None if self.docker is None else DockerActuator(
            self.docker.host, label=str(self.docker.selector), timeout_s=self.docker.timeout_s))
        # a container's disk tier: its volume, grown by remounting (app/actuators/volume.py)
        volumes = next((s for s in self.sources if isinstance(s, VolumeSource)), None)
        self.volume_actuator = (None if volumes is None else VolumeActuator(
            volumes.volumes, docker_pids=volumes.docker_pids))
        # a container's network tier: the TBF on its veth (app/actuators/netlimit.py)
        links = next((s for s in self.sources if isinstance(s, LinkSource)), None)
        self.link_actuator = None if links is None else LinkActuator(links.links)
        self.ring = RingBuffer(settings.loop.window_steps)
        self.validator = Validator()
        self.store = (HistoryStore(settings.history_uri(),
                                   flush_interval_s=settings.history.flush_interval_s)
                      if settings.history.enabled else None)
        self.applied: OrderedDict[str, ActionResult] = OrderedDict()
        # a write the kernel refused (e.g. EBUSY: usage above the new memory limit for a
        # moment) is tried again shortly; then it fails loudly (logged, FAILED result)
        self._retry = RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2,
                                  max_total_s=1.0)

    def collect(self) -> dict[str, Any]:
        """Sample every container once; return the window ``[N, W, M]`` and what happened."""
        per_source: list[list[Sample]] = []
        events: list[Event] = []
        errors: dict[str, str] = {}
        replicas: dict[str, int] = {}
        for source in self.sources:
            try:
                batch = source.poll()
            except Exception as exc:  # noqa: BLE001 - one broken source must not stop the rest
                errors[f"_source:{source.kind}"] = f"{type(exc).__name__}: {exc}"
                continue
            per_source.append(batch.samples)
            events += batch.events
            errors.update(batch.errors)
            replicas.update(batch.replicas)
        samples = merge_sources(per_source) if per_source else []
        seen: dict[str, str] = {}
        now_s = self.clock()
        events += [Event(f"_clock:{self.node_id}", at_s, EventKind.CLOCK_JUMP,
                         f"the wall clock stepped {step_s:+.1f} s; prescale's time follows "
                         f"the monotonic clock (timestamps are off by the step until "
                         f"restart)") for at_s, step_s in self.clock.take_jumps()]
        kept = self.validator.filter(samples, now_s=now_s)
        for s in kept:
            self.ring.push(s)
            seen[s.container] = s.app
        if self.store is not None:
            try:
                self.store.append_samples(kept)
                self.store.append_events(events)
                self.store.maybe_flush()
            except (OSError, ValueError) as exc:
                errors["_history"] = f"{type(exc).__name__}: {exc}"
        present = {s.container for s in samples} | set(errors)
        for gone in set(self.ring.names()) - present:
            self.ring.forget(gone)
            self.validator.forget(gone)
        names, window = self.ring.window(sorted(seen))
        return {
            "node": self.node_id,
            "capacity": self.capacity,
            "replicas": {n: replicas[n] for n in names if n in replicas},
            # labels of the containers whose source knows them (Docker's): [[workloads]]
            "labels": {n: lab for src in self.sources if hasattr(src, "labels_of")
                       for n in names if (lab := src.labels_of(n))},
            "now_s": now_s,
            "names": names,
            "apps": [seen[n] for n in names],
            "window": window,
            "errors": errors,
            "events": events,
            "dropped": dict(self.validator.dropped),
        }

    def apply(self, actions: list[ScalingAction]) -> list[ActionResult]:
        """Apply each action once (by ``action_id``); report what the kernel really set."""
        results = []
        by_name = {c.name: c for c in self.cgroups.containers()} if self.cgroups else {}
        writes = RetryingActuator(_Writes(self._apply_one, by_name), self._retry)
        for a in actions:
            if a.action_id in self.applied:
                results.append(self.applied[a.action_id])
                continue
            results.append(writes.apply(a))
            self.applied[a.action_id] = results[-1]
            while len(self.applied) > _REMEMBERED_ACTIONS:
                self.applied.popitem(last=False)
        return results

    def _apply_one(self, a: ScalingAction, by_name: dict) -> ActionResult:
        if a.kind is not ActionKind.RESIZE:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit,
                                f"a cgroup cannot {a.kind.value}: refused, nothing changed")
        if a.tier in (Tier.DISK, Tier.NETWORK):
            actuator, setting = ((self.volume_actuator, "sources.volumes") if a.tier is Tier.DISK
                                 else (self.link_actuator, "sources.links"))
            if actuator is None:
                return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                    a.old_limit, a.old_limit,
                                    f"no {a.tier.value} source on this node ({setting}): "
                                    "refused, nothing changed")
            try:
                return actuator.apply(a)
            except (InvalidActionError, ValueError) as exc:
                return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                    a.old_limit, a.old_limit, f"refused, nothing changed: {exc}")
        if self.docker is not None and self.docker.watches(a.container):
            try:
                return self.docker_actuator.apply(a)
            except InvalidActionError as exc:
                return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                    a.old_limit, a.old_limit, f"refused, nothing changed: {exc}")
        owner = next((s for s in self.sources if getattr(s, "owns", None) is not None
                      and s.owns(a.container)), None)
        if owner is not None:
            return owner.apply(a)
        container = by_name.get(a.container)
        if container is None:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit,
                                "no cgroup of that name under the roots (gone, or not a cgroup)")
        try:
            if a.tier is Tier.MEMORY:
                r = self.actuator.set_memory_limit(container, int(a.new_limit))
            elif a.tier is Tier.IO:  # blkio.throttle.write_bps_device / io.max wbps
                r = self.actuator.set_io_write_limit(container, float(a.new_limit))
            else:
                r = self.actuator.set_cpu_quota(container, float(a.new_limit))
        except (CgroupError, ValueError, OSError) as exc:
            return ActionResult(a.action_id, a.container, a.tier, ResultStatus.FAILED,
                                a.old_limit, a.old_limit, f"actuator: {exc}")
        status = ResultStatus.APPLIED if r.ok else ResultStatus.FAILED
        reason = "limit written and read back" if r.ok else f"kernel refused: {r.error}"
        return ActionResult(a.action_id, a.container, a.tier, status, r.old, r.new, reason)

    def executions(self) -> dict[str, int]:
        """How many times each action id was really executed by a simulated source."""
        out: dict[str, int] = {}
        for s in self.sources:
            out.update(getattr(s, "executions", {}))
        return out

    def close(self) -> None:
        """Flush the history buffer (called on a clean shutdown)."""
        if self.store is not None:
            self.store.close()


class _Writes:
    """This call's cgroups (read once per ``apply``) bound to the monitor's write of one
    action, as an actuator that :class:`RetryingActuator` can wrap."""

    kind = "cgroup"

    def __init__(self, apply_one, by_name: dict) -> None:
        self.apply_one, self.by_name = apply_one, by_name

    def apply(self, action: ScalingAction) -> ActionResult:
        return self.apply_one(action, self.by_name)
