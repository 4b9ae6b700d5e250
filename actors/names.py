"""Names of the Ray actors, so every layer finds them the same way."""

MONITOR = "prescale-monitor"  # prefix: one monitor per node, ``prescale-monitor:<node>``
POOL = "prescale-pool"
COORDINATOR = "prescale-coordinator"
WORKLOADS = "prescale-workloads"  # the Ray workload actuators (placement groups, Serve)


def monitor(node_id: str) -> str:
    """``monitor("8f3a…")`` → ``"prescale-monitor:8f3a…"`` (the full Ray node id)."""
    return f"{MONITOR}:{node_id}"


def is_monitor(name: str) -> bool:
    return name.startswith(MONITOR + ":")


def node_of_monitor(name: str) -> str:
    return name.split(":", 1)[1]
