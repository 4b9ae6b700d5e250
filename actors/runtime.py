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
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import names
from actors.coordinator import CoordinatorActor
from actors.monitor import MonitorActor
from actors.pool import PoolManagerActor
from app.settings import Settings

log = logging.getLogger("prescale")


@dataclass
class Handles:
    monitor: Any
    pool: Any
    coordinator: Any


def init_ray(settings: Settings, *, quiet: bool = False) -> None:
    """Connect to ``settings.ray.address`` or start an embedded single-node Ray."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
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
        ray.init(num_cpus=settings.ray.num_cpus, include_dashboard=dashboard,
                 dashboard_host="127.0.0.1", **kwargs)


def start_actors(settings: Settings, run_id: str) -> Handles:
    ns = settings.ray.namespace
    monitor = MonitorActor.options(name=names.MONITOR, namespace=ns).remote(settings)
    pool = PoolManagerActor.options(name=names.POOL, namespace=ns).remote(settings)
    coordinator = CoordinatorActor.options(name=names.COORDINATOR, namespace=ns).remote(
        settings, run_id
    )
    ray.get([coordinator.ping.remote(), pool.snapshot.remote()])
    return Handles(monitor, pool, coordinator)


def stop_actors(handles: Handles) -> None:
    """Flush the monitor's history buffer, then stop the actors."""
    try:
        ray.get(handles.monitor.close.remote(), timeout=10)
    except Exception as exc:  # noqa: BLE001 - a dead monitor has nothing left to flush
        log.warning("monitor did not flush its history buffer: %s", exc)
    for h in (handles.coordinator, handles.pool, handles.monitor):
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
        next_at += interval
        delay = next_at - time.monotonic()
        if delay < 0:  # a slow tick: skip the missed slots instead of bursting
            next_at = time.monotonic()
            delay = 0
        stop.wait(delay)
    return ticks
