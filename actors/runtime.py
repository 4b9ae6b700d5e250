"""Start Ray and the actors, and drive the loop at a fixed interval.

Used by ``prescale up`` and ``prescale demo`` (local single-node mode). The driver
only paces the loop: each tick is one ``run_once()`` call on the coordinator. A
coordinator crash costs that tick: Ray restarts the actor, it reloads its
checkpoint, and the next tick goes on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from prescale.actors import names
from prescale.actors.coordinator import CoordinatorActor
from prescale.actors.monitor import MonitorActor
from prescale.actors.pool import PoolManagerActor
from prescale.actors.ready import wait_ready
from prescale.actors.workloads import WorkloadActuatorActor
from prescale.app.settings import Settings

log = logging.getLogger("prescale")


@dataclass
class Handles:
    monitor: Any  # the monitor of the driver's node
    pool: Any
    coordinator: Any
    monitors: dict[str, Any] = field(default_factory=dict)  # node id → its monitor
    workloads: Any = None  # the workload actuators, when the settings need them
    owns_workloads: bool = False  # started here (stopped with the others), not reused


def init_ray(settings: Settings, *, quiet: bool = False) -> None:
    """Connect to ``settings.ray.address`` or start an embedded single-node Ray."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "namespace": settings.ray.namespace,
        "log_to_driver": not quiet,
        "logging_level": logging.WARNING,
    }
    if settings.ray.address:
        ray.init(address=settings.ray.address, **kwargs)
    else:
        # the Ray workers source reads the state API, which is served by the dashboard
        dashboard = settings.sources.ray_workers
        if settings.ray.metrics_export_port is not None:
            kwargs["_metrics_export_port"] = settings.ray.metrics_export_port
        # address="local": always a new embedded Ray, never a `ray start` cluster that
        # happens to run on this host (ray.init() would silently join that one)
        ray.init(address="local", num_cpus=settings.ray.num_cpus, include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", **kwargs)


def _lifetime(settings: Settings) -> dict[str, Any]:
    return {"lifetime": "detached"} if settings.ray.detached else {}


def alive_nodes() -> list[str]:
    """Node ids of the live Ray nodes that can run a monitor."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def start_monitors(settings: Settings) -> dict[str, Any]:
    """One monitor per live node, pinned to it (hard node affinity), named after it;
    an existing one is reused (a restarted controller takes over its monitors)."""
    ns = settings.ray.namespace
    out = {}
    for node in alive_nodes():
        out[node] = MonitorActor.options(
            name=names.monitor(node), namespace=ns, get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            **_lifetime(settings)).remote(settings)
    return out


def start_workloads(settings: Settings, near: Any = None) -> tuple[Any | None, bool]:
    """The workload actuators actor (:data:`actors.names.WORKLOADS`) when the settings
    opt Serve applications in (``sources.serve_apps``), else ``None``; and whether it
    was started here. An existing one of that name is reused and left running (one a
    library user started keeps its managed actors and its own opt-in list)."""
    if not settings.sources.serve_apps:
        return None, False
    try:
        return ray.get_actor(names.WORKLOADS, namespace=settings.ray.namespace), False
    except ValueError:
        pass
    opts: dict[str, Any] = {"scheduling_strategy": near} if near is not None else {}
    # Started for the user's Serve apps alone, it owns nothing a restart could lose (their
    # config is read back from the cluster), so Ray restarts it like the loop's other
    # actors; one a library user starts for managed actors keeps max_restarts=0.
    return WorkloadActuatorActor.options(
        name=names.WORKLOADS, namespace=settings.ray.namespace, get_if_exists=True,
        max_restarts=-1, max_task_retries=0, **opts, **_lifetime(settings),
    ).remote(serve_apps=list(settings.sources.serve_apps),
             serve_dashboard_url=settings.sources.serve_dashboard_url), True


def start_actors(settings: Settings, run_id: str) -> Handles:
    """The monitors (one per node), the pool manager, the coordinator and, when the
    settings need them, the workload actuators; existing actors of the same names are
    reused (``get_if_exists``)."""
    ns = settings.ray.namespace
    monitors = start_monitors(settings)
    here = ray.get_runtime_context().get_node_id()
    # beside the driver (the head node for a Ray job), where their checkpoints are
    near = NodeAffinitySchedulingStrategy(here, soft=True)
    # beside the driver too: the dashboard (the Serve REST API) may listen on loopback
    workloads, owns_workloads = start_workloads(settings, near)
    pool = PoolManagerActor.options(name=names.POOL, namespace=ns, get_if_exists=True,
                                    scheduling_strategy=near,
                                    **_lifetime(settings)).remote(settings)
    coordinator = CoordinatorActor.options(
        name=names.COORDINATOR, namespace=ns, get_if_exists=True, scheduling_strategy=near,
        **_lifetime(settings),
    ).remote(settings, run_id)
    ray.get([coordinator.ping.remote(), pool.snapshot.remote()]
            + [m.__ray_ready__.remote() for m in monitors.values()]
            + ([workloads.__ray_ready__.remote()] if workloads is not None else []))
    return Handles(monitors.get(here) or next(iter(monitors.values())), pool, coordinator,
                   monitors, workloads, owns_workloads)


def named_monitors(settings: Settings) -> dict[str, Any]:
    """Every monitor of the namespace, by node id (including ones this driver did not
    start)."""
    ns = settings.ray.namespace
    out = {}
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a.get("namespace") == ns and names.is_monitor(a["name"]):
            try:
                out[names.node_of_monitor(a["name"])] = ray.get_actor(a["name"], namespace=ns)
            except ValueError:
                continue
    return out


def close_loop(handles: Handles) -> None:
    """The loop stops: the coordinator logs the closing rows of the held decisions'
    episodes still open (:meth:`app.loop.tick.Tick.close`; a second call logs nothing)."""
    try:
        ray.get(handles.coordinator.close.remote(), timeout=10)
    except Exception as exc:  # noqa: BLE001 - a dead coordinator has nothing to close
        log.warning("the coordinator did not close its open episodes: %s", exc)


def stop_actors(handles: Handles, settings: Settings | None = None) -> None:
    """Close the loop (:func:`close_loop`), flush the monitors' history buffers, then
    stop the actors (every monitor of the namespace when ``settings`` is given)."""
    close_loop(handles)
    monitors = dict(handles.monitors or {"local": handles.monitor})
    if settings is not None:
        monitors.update(named_monitors(settings))
    for node, m in monitors.items():
        try:
            ray.get(m.close.remote(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - a dead monitor has nothing left to flush
            log.warning("monitor of node %s did not flush its history buffer: %s", node, exc)
    extra = [handles.workloads] if handles.owns_workloads else []
    for h in (handles.coordinator, handles.pool, *monitors.values(), *extra):
        try:
            ray.kill(h, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass


def run_loop(
    handles: Handles,
    settings: Settings,
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    on_tick: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Tick every ``loop.interval_s`` until ``duration_s`` passed or ``stop`` is set.

    Returns the number of ticks that completed.
    """
    stop = stop or threading.Event()
    interval = settings.loop.interval_s
    start = time.monotonic()
    ticks = 0
    next_at = start
    while not stop.is_set():
        if duration_s is not None and time.monotonic() - start >= duration_s:
            break
        try:
            summary = ray.get(handles.coordinator.run_once.remote())
            ticks += 1
            if on_tick:
                on_tick(summary)
        except (RayActorError, RayTaskError) as exc:
            log.warning("tick failed (%s); the coordinator restarts from its checkpoint",
                        type(exc).__name__)
            wait_ready(handles.coordinator, timeout_s=max(30.0, interval))
        next_at += interval
        delay = next_at - time.monotonic()
        if delay < 0:  # a slow tick: skip the missed slots instead of bursting
            next_at = time.monotonic()
            delay = 0
        stop.wait(delay)
    return ticks
