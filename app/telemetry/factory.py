"""Build the telemetry sources a monitor polls from the settings."""

from __future__ import annotations

import time
from collections.abc import Callable

from prescale.app.settings import Settings
from prescale.app.telemetry.base import Source
from prescale.app.telemetry.cgroup import CgroupSource
from prescale.app.telemetry.docker import DockerSource
from prescale.app.telemetry.process import ProcessTreeSource
from prescale.app.telemetry.process_target import ProcessTarget
from prescale.app.telemetry.prometheus import PrometheusSource
from prescale.app.telemetry.simulated import SimulatedSource
from prescale.app.telemetry.timings import TimingsSource


def build_sources(settings: Settings, node: str = "local",
                  clock: Callable[[], float] = time.time) -> list[Source]:
    """Every source the settings switch on: cgroups (when roots are configured), Docker
    containers, process trees, application timings, Ray workers, Prometheus, simulated
    containers (named after ``node``, so that every node's monitor has its own).
    ``clock`` stamps their samples (the monitor's
    :class:`~app.telemetry.steady_clock.SteadyClock`)."""
    sources: list[Source] = []
    if settings.cgroup.roots or settings.cgroup.watch:
        sources.append(CgroupSource(settings.cgroup, clock=clock))
    if settings.sources.volumes:
        from prescale.app.edges.docker_engine import DockerPids
        from prescale.app.edges.tmpfs import docker_volume_path
        from prescale.app.telemetry.volumes import VolumeSource

        volumes = dict(settings.sources.volumes)
        # docker:<path> volumes: the containers' first processes, from the Docker source's
        # daemon (shared with the volume actuator through the source)
        pids = (DockerPids(settings.sources.docker_host, label=settings.sources.docker_label,
                           timeout_s=settings.sources.docker_timeout_s)
                if any(docker_volume_path(p) is not None for p in volumes.values()) else None)
        sources.append(VolumeSource(volumes, clock=clock, docker_pids=pids))
    if settings.sources.links:
        from prescale.app.telemetry.links import LinkSource

        sources.append(LinkSource(dict(settings.sources.links), clock=clock))
    if settings.sources.docker:
        sources.append(DockerSource(settings.sources.docker_host,
                                    label=settings.sources.docker_label, clock=clock,
                                    timeout_s=settings.sources.docker_timeout_s))
    if settings.sources.processes:
        sources.append(ProcessTreeSource([
            ProcessTarget(name=p.name, pid=p.pid, match=p.match, app=p.app)
            for p in settings.sources.processes
        ], clock=clock))
    if settings.sources.timings_spool is not None:
        sources.append(TimingsSource(settings.sources.timings_spool, clock=clock,
                                     timeouts_s=dict(settings.sources.block_timeouts_s)))
    if settings.sources.ray_workers:
        from prescale.app.telemetry.ray_workers import RayWorkersSource  # needs a connected Ray

        sources.append(RayWorkersSource(clock=clock))
    if settings.sources.prometheus_url:
        # its clock is the query's evaluation time on the server: the wall clock
        sources.append(PrometheusSource(settings.sources.prometheus_url,
                                        selector=settings.sources.prometheus_selector))
    if settings.sources.serve_deployments or settings.sources.serve_apps:
        from prescale.app.telemetry.serve_deployments import ServeDeploymentSource

        # serve_deployments watches every deployment; serve_apps only the opted-in apps
        sources.append(ServeDeploymentSource(
            node_id=None if node == "local" else node, clock=clock,
            apps=None if settings.sources.serve_deployments else settings.sources.serve_apps))
    if settings.sources.simulated:
        sources.append(SimulatedSource(
            settings.sources.simulated, prefix=f"sim-{node[:8]}", clock=clock,
            leak_bytes_per_s=float(settings.sources.simulated_leak_bytes_per_s)))
    return sources
