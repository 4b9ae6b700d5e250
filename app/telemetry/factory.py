"""Build the telemetry sources a monitor polls from the settings."""

from __future__ import annotations

from app.settings import Settings
from app.telemetry.base import Source
from app.telemetry.cgroup import CgroupSource
from app.telemetry.prometheus import PrometheusSource


def build_sources(settings: Settings) -> list[Source]:
    """The cgroup source when roots are configured (the others come with their settings)."""
    sources: list[Source] = []
    if settings.cgroup.roots or settings.cgroup.watch:
        sources.append(CgroupSource(settings.cgroup))
    if settings.sources.ray_workers:
        from app.telemetry.ray_workers import RayWorkersSource  # needs a connected Ray

        sources.append(RayWorkersSource())
    if settings.sources.prometheus_url:
        sources.append(PrometheusSource(settings.sources.prometheus_url,
                                        selector=settings.sources.prometheus_selector))
    return sources
