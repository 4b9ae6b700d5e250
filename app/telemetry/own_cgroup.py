"""Where this process sits in the cgroup hierarchies (``/proc/self/cgroup``)."""

from __future__ import annotations

from pathlib import Path

V1_MOUNT = Path("/sys/fs/cgroup")


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``{controller: path}`` from ``/proc/<pid>/cgroup`` text; v2's entry is ``"unified"``.

    Example: ``"4:memory:/a/b\\n1:cpu,cpuacct:/\\n0::/x"`` →
    ``{"memory": "/a/b", "cpu": "/", "cpuacct": "/", "unified": "/x"}``.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out["unified"] = path
            continue
        for c in controllers.split(","):
            out[c] = path
    return out


def own_cgroup_paths(proc_file: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    return parse_proc_cgroup(proc_file.read_text())
