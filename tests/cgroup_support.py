"""Shared checks for tests that need root and writable cgroup v1 controllers."""

from __future__ import annotations

import os
from pathlib import Path

from prescale.app.edges.cgroup_layout import V1_MOUNT
from prescale.app.edges.cgroupfs import own_cgroup_paths


def v1_unavailable_reason() -> str | None:
    """Why real-cgroup tests cannot run here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    own = own_cgroup_paths()
    for ctl in ("memory", "cpu", "cpuacct"):
        base = V1_MOUNT / ctl
        if ctl not in own or not (base / "cgroup.procs").exists():
            return f"cgroup v1 controller {ctl} is not mounted at {base}"
        if not os.access(Path(base, own[ctl].lstrip("/")), os.W_OK):
            return f"own {ctl} cgroup is not writable"
    return None
