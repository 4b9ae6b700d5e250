"""Managed Ray actors as containers: the actors prescale runs in placement groups.

A managed actor (:class:`app.actuators.ray_pg.ManagedActor`) is moved to a new actor in
a new group on every resize, so neither its Ray actor id nor its pid is stable; its
*name* is. Identity comes from the owner of the managed actors (``lister()``: the
workload actuators' ``describe()``, one call per poll), usage from psutil on the pid of
the current generation:

- ``memory_usage_bytes`` / ``memory_working_set_bytes``: its RSS;
- ``memory_limit_bytes``: the bundle's ``memory`` (a Ray reservation, not enforced:
  the engine treats it as the limit to stay under); ``cpu_quota_cores``: the bundle's
  ``CPU``;
- ``cpu_usage_s_total``: CPU seconds, continued across moves (:class:`CumulativeSum`
  keyed by pid, so a new generation does not reset the counter).

Worked example: ``{"name": "cache", "pid": 4242, "node_id": "n1", "cpu_cores": 0.5,
"memory_bytes": 268435456}`` with RSS 180 MiB → one sample ``cache`` with usage
180 MiB against a 256 MiB limit and a 0.5-core quota.

Only actors on ``node_id`` (this monitor's node) are read, since psutil sees only this
host. ``app`` is the managed actor's class name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil

from prescale.app.core.sample import Sample, SourceBatch
from prescale.app.telemetry.process_counters import CumulativeSum, read_rss_cpu

NAN = math.nan


class ManagedActorSource:
    kind = "managed_actor"

    def __init__(self, lister: Callable[[], Sequence[Mapping[str, Any]]],
                 node_id: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.lister = lister
        self.node_id = node_id
        self.clock = clock
        self._cpu: dict[str, CumulativeSum] = {}
        self._procs: dict[int, psutil.Process] = {}

    def poll(self) -> SourceBatch:
        try:
            actors = list(self.lister())
        except Exception as exc:  # noqa: BLE001 - no owner (yet): nothing to watch
            return SourceBatch(errors={"_managed_actors": f"{type(exc).__name__}: {exc}"})
        now = self.clock()
        samples, errors = [], {}
        for a in actors:
            if self.node_id is not None and a.get("node_id") != self.node_id:
                continue
            name, pid = a["name"], a.get("pid")
            try:
                rss, cpu_s = read_rss_cpu(self._procs, pid)
            except (psutil.Error, TypeError, ValueError) as exc:
                errors[name] = f"pid {pid}: {type(exc).__name__}: {exc}"
                continue
            total = self._cpu.setdefault(name, CumulativeSum()).update({pid: cpu_s})
            samples.append(Sample(
                name, now, memory_usage_bytes=rss, memory_working_set_bytes=rss,
                memory_limit_bytes=float(a["memory_bytes"]), cpu_usage_s_total=total,
                cpu_quota_cores=float(a["cpu_cores"]), app=a.get("app", "")))
        live = {a.get("pid") for a in actors}
        for pid in [p for p in self._procs if p not in live]:
            del self._procs[pid]
        return SourceBatch(samples, errors=errors)

    def close(self) -> None:
        self._procs.clear()
