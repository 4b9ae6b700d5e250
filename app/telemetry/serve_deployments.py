"""Ray Serve deployments as containers: one per deployment, ``"<app>/<deployment>"``.

The Serve actuator (:mod:`app.actuators.serve`) scales a deployment (replicas) and
resizes its replicas (``ray_actor_options``); so that the loop can decide on a
deployment, this source reports one sample per deployment, *per replica*: what one
replica uses and may use.

- ``memory_usage_bytes`` / ``memory_working_set_bytes``: the largest RSS of its running
  replicas (the replica closest to an OOM kill is the one that matters);
- ``cpu_usage_s_total``: a counter whose rate is the mean CPU of one replica: each poll
  adds Δ(sum of the replicas' CPU seconds, :class:`CumulativeSum`) / replicas;
- ``memory_limit_bytes``: the ``memory`` actor option (``inf`` if none);
  ``cpu_quota_cores``: ``num_cpus`` (a Ray reservation, not enforced: usage may exceed);
- :attr:`SourceBatch.replicas`: the running replica count, which marks the container as
  horizontally scalable for the policy's escalation to ``SCALE_OUT``.

Worked example: two replicas using 0.8 and 0.4 cores over a 1 s poll → Δsum = 1.2 s →
the counter grows by 0.6 s: 0.6 cores per replica; RSS 120 MiB and 90 MiB → 120 MiB.

Replicas are read with psutil, so only those on this host are counted: a deployment
whose replicas span nodes is reported by each node's monitor for its own replicas, and
the coordinator merges those rows into one container (``actors.coordinator.merge_shards``:
the replicas summed, the most loaded node's window). Identity comes from Serve's own details
(:func:`app.edges.serve_instance.serve_details`, the data behind ``serve status``) — no
dashboard needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil

from prescale.app.core.sample import Sample, SourceBatch
from prescale.app.edges.serve_instance import (
    app_opted_in,
    missing_apps,
    serve_container,
    serve_details,
)
from prescale.app.telemetry.process_counters import CumulativeSum, read_rss_cpu

NAN = math.nan


class ServeDeploymentSource:
    kind = "serve"

    def __init__(self, node_id: str | None = None,
                 details: Callable[[], Any] = serve_details,
                 clock: Callable[[], float] = time.time,
                 apps: Iterable[str] | None = None) -> None:
        """``apps``: only these applications (``"*"``: all; ``None``: all)."""
        self.node_id = node_id
        self.apps = None if apps is None else tuple(apps)
        self._details = details
        self._clock = clock
        self._sums: dict[str, CumulativeSum] = {}
        self._last_sum: dict[str, float] = {}
        self._per_replica_s: dict[str, float] = {}
        self._procs: dict[int, psutil.Process] = {}

    def _read(self, pid: int) -> tuple[float, float]:
        """(rss bytes, cpu seconds) of one replica process; nan if unreadable."""
        try:
            return read_rss_cpu(self._procs, pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return NAN, NAN

    def poll(self) -> SourceBatch:
        try:
            details = self._details()
        except Exception as exc:  # noqa: BLE001 - Serve not running: nothing to watch
            return SourceBatch(errors={"_serve": f"{type(exc).__name__}: {exc}"})
        now = self._clock()
        samples, replicas = [], {}
        errors: dict[str, str] = {}
        if self.apps is not None:  # a typo'd or not yet deployed opted-in app: say so
            why = missing_apps(self.apps, details.applications)
            if why is not None:
                errors["_serve_apps"] = why
        for app_name, app in details.applications.items():
            if self.apps is not None and not app_opted_in(app_name, self.apps):
                continue
            for dep_name, dep in app.deployments.items():
                name = serve_container(app_name, dep_name)
                running = [r for r in dep.replicas
                           if str(getattr(r.state, "value", r.state)) == "RUNNING" and r.pid
                           and (self.node_id is None or r.node_id == self.node_id)]
                if not running:
                    continue
                reads = {r.replica_id: self._read(int(r.pid)) for r in running}
                total = self._sums.setdefault(name, CumulativeSum()).update(
                    {k: v[1] for k, v in reads.items()})
                last = self._last_sum.get(name, total)
                self._last_sum[name] = total
                acc = self._per_replica_s.get(name, 0.0)
                if math.isfinite(total) and math.isfinite(last):
                    acc += (total - last) / len(running)
                self._per_replica_s[name] = acc
                rss = [v[0] for v in reads.values() if math.isfinite(v[0])]
                opts = dep.deployment_config.ray_actor_options
                if hasattr(opts, "model_dump"):
                    opts = opts.model_dump(exclude_none=True)
                opts = dict(opts or {})
                mem_limit = float(opts["memory"]) if opts.get("memory") else math.inf
                cpu = float(opts["num_cpus"]) if opts.get("num_cpus") else math.inf
                samples.append(Sample(
                    name, now, memory_usage_bytes=max(rss) if rss else NAN,
                    memory_working_set_bytes=max(rss) if rss else NAN,
                    memory_limit_bytes=mem_limit, cpu_usage_s_total=acc,
                    cpu_quota_cores=cpu, app=f"serve:{app_name}"))
                replicas[name] = len(running)
        return SourceBatch(samples, replicas=replicas, errors=errors)

    def close(self) -> None:
        self._procs.clear()
