"""MonitorActor: one node's :class:`app.node_monitor.Monitor` as a restartable Ray actor.

One per node (pinned to it, named ``prescale-monitor:<node id>``, :mod:`actors.names`);
``collect()`` also reports the node id and the node's host capacity (or, for Ray
workloads, what Ray schedules on the node), which the pool manager uses as that node's
capacity. Adds the managed-actor source, which asks the workload actuators actor.
"""

from __future__ import annotations

from typing import Any

import ray

from prescale.actors import names as actor_names
from prescale.app.node_monitor import Monitor
from prescale.app.settings import Settings
from prescale.app.telemetry.managed_actors import ManagedActorSource


def _workloads_lister(namespace: str):
    """The managed actors the workload actuators actor runs (none while it is absent)."""

    def lister() -> list[dict[str, Any]]:
        try:
            h = ray.get_actor(actor_names.WORKLOADS, namespace=namespace)
        except ValueError:
            return []
        return ray.get(h.describe.remote(), timeout=10)

    return lister


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class MonitorActor(Monitor):
    """One per node: :class:`Monitor` as a restartable Ray actor."""

    def __init__(self, settings: Settings, node_id: str | None = None) -> None:
        # node_id: this node's (default); another id only for benchmarks that run several
        # monitors (shards) on one node
        node = node_id or ray.get_runtime_context().get_node_id()
        super().__init__(settings, node_id=node)
        if settings.sources.managed_actors:
            self.sources.append(ManagedActorSource(
                _workloads_lister(settings.ray.namespace), node_id=node, clock=self.clock))
        if (settings.sources.ray_workers or settings.sources.serve_deployments
                or settings.sources.serve_apps or settings.sources.managed_actors):
            # Ray workloads are bounded by what Ray schedules on this node, not the host
            res = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node), {})
            if res.get("CPU") and res.get("memory"):
                self.capacity = {"memory_bytes": float(res["memory"]),
                                 "cpu_cores": float(res["CPU"])}
