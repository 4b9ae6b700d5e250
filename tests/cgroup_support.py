"""Shared checks for tests that need root and writable cgroup v1 controllers, and the
teardown of the cgroups they make."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from prescale.app.edges.cgroup_layout import CGROUP_PROCS, V1_MOUNT
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


def remove_cgroups(paths: Iterable[Path], timeout_s: float = 10.0) -> None:
    """Remove the cgroup directories ``paths``, in the order given (children before
    parents): each one's remaining processes are SIGKILLed and the rmdir retried every
    50 ms (the kernel lets a cgroup go only once its last process is gone) for up to
    ``timeout_s``, then the :class:`OSError` is raised. A path already gone is skipped."""
    for path in paths:
        deadline = time.monotonic() + timeout_s
        while path.exists():
            try:
                for pid in (path / CGROUP_PROCS).read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
