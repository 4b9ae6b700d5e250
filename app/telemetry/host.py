"""The host's totals (memory bytes, CPU cores): a node's capacity for the resource pool."""

from __future__ import annotations

import psutil

from prescale.app.core.pool import Capacity
from prescale.app.settings import Settings


def host_capacity(settings: Settings) -> Capacity:
    """``pool.capacity_*`` when set, else what the host has (psutil)."""
    mem = settings.pool.capacity_memory_bytes
    cpu = settings.pool.capacity_cpu_cores
    return Capacity(
        memory_bytes=float(mem if mem is not None else psutil.virtual_memory().total),
        cpu_cores=float(cpu if cpu is not None else psutil.cpu_count()),
    )
