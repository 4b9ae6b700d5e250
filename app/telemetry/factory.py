"""Build the telemetry sources a monitor polls from the settings."""

from __future__ import annotations

from app.settings import Settings
from app.telemetry.base import Source
from app.telemetry.cgroup import CgroupSource
from app.telemetry.process import ProcessTarget, ProcessTreeSource
from app.telemetry.prometheus import PrometheusSource
from app.telemetry.timings import TimingsSource


def build_sources(settings: Settings) -> list[Source]:
    """Every source the settings switch on: cgroups (when roots are configured), process
    trees, application timings, Ray workers, Prometheus."""
    sources: list[Source] = []
    if settings.cgroup.roots or settings.cgroup.watch:
        sources.append(CgroupSource(settings.cgroup))
    if settings.sources.processes:
        sources.append(ProcessTreeSource([
            ProcessTarget(name=p.name, pid=p.pid, match=p.match, app=p.app)
            for p in settings.sources.processes
        ]))
    if settings.sources.timings_spool is not None:
        sources.append(TimingsSource(settings.sources.timings_spool,
                                     timeouts_s=dict(settings.sources.block_timeouts_s)))
    if settings.sources.ray_workers:
        from app.telemetry.ray_workers import RayWorkersSource  # needs a connected Ray

        sources.append(RayWorkersSource())
    if settings.sources.prometheus_url:
        sources.append(PrometheusSource(settings.sources.prometheus_url,
                                        selector=settings.sources.prometheus_selector))
    return sources
