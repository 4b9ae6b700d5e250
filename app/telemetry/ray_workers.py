"""Ray workers source: the actors (and optionally the running tasks) of one Ray node as
containers.

This is an I/O edge. Identity and lifecycle come from Ray's state API
(:mod:`ray.util.state`), usage from :mod:`psutil` on each worker's pid. The mapping of
state-API records to containers (:mod:`app.telemetry.ray_records`: :func:`parse_actor`,
:func:`assign_container_ids`, ...) and to events (:mod:`app.telemetry.ray_lifecycle`:
:func:`classify_actor_death`, :func:`classify_worker_exit`, :func:`classify_task_failure`,
:func:`diff_actors`, ...) is done by small pure functions that are tested on captured
state-API output, without Ray.

Requirements (Ray 2.60)
-----------------------
* The state API is served by the **dashboard** over HTTP (``/api/v0/...``). With
  ``ray.init(include_dashboard=False)`` every ``ray.util.state`` call fails with
  ``ServerUnavailable``; start Ray with ``ray.init(include_dashboard=True,
  dashboard_host="127.0.0.1")`` (or ``ray start --head --include-dashboard=true``).
* The dashboard URL is resolved **once**, from the GCS of the connected Ray (never
  ``address=None``, which auto-detects "a" local Ray and picks the wrong one when
  several run on the host). Ray writes a dashboard address into the GCS even without a
  dashboard, possibly that of *another* Ray on the host (port 8265); so the source
  checks at construction that the API server knows the watched node, and refuses to
  start otherwise.
* psutil reads the pids, so the source must run on the host of the node it watches
  (a :class:`ray.cluster_utils.Cluster` on one machine is fine). A pid that is not a
  Ray worker (its name does not start with ``ray::``) is reported as an error, never
  read.

Cost per poll: one ``list_actors`` (≈ 3–10 ms against a local dashboard), plus
``list_tasks`` when ``include_tasks``; ``list_workers`` only in a poll that saw a
restart, ``list_tasks(state=FAILED)`` only while some seen task has ended, ``list_jobs``
only for a job id not seen before. Never one call per actor.

Sample fields: ``memory_usage_bytes`` = RSS; ``memory_working_set_bytes`` = RSS − shared
(RssAnon: the memory that cannot be dropped without swap; the same choice as the process
source, :mod:`app.telemetry.process`); ``cpu_usage_s_total`` = user +
system CPU seconds of the worker process; ``io_*_bytes_total`` = the process's
``read_bytes``/``write_bytes`` (storage I/O). For a task these are the counters of the
worker process, which may have run earlier tasks: use their deltas.
``memory_limit_bytes``: Ray has no per-actor memory limit, so ``inf`` unless the actor
(task) asked for the ``memory`` resource, then that reservation in bytes (Ray does not
enforce it either; it is what the scheduler set aside). ``cpu_quota_cores``: the
``CPU`` resource requirement (``num_cpus``) if > 0, else ``inf`` — a reservation,
not a CFS quota: Ray does not throttle, so usage can exceed it. Actors default to
``num_cpus=0`` while running, hence ``inf``. Other fields are NaN.

Errors: a container whose pid cannot be read goes into ``errors[container]``; a failed
state-API call goes into ``errors[STATE_API_ERROR_KEY]`` (the poll then returns no
samples and changes no state, so no event is lost).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from prescale.app.core.sample import Event, Sample, SourceBatch
from prescale.app.telemetry.ray_lifecycle import (
    ActorSeen,
    TaskSeen,
    dead_workers_by_pid,
    diff_actors,
    resolve_ended_tasks,
    restart_events,
    task_restart_events,
)
from prescale.app.telemetry.ray_records import (
    ALIVE,
    ActorRecord,
    TaskRecord,
    as_dict,
    assign_container_ids,
    class_label,
    cpu_quota_cores,
    memory_limit_bytes,
    parse_actor,
    parse_task,
    task_container_id,
)

#: ``errors`` key for a failed state-API call (not a container).
STATE_API_ERROR_KEY = "ray-state-api"
#: Most records one state-API call returns (Ray's own cap, ``RAY_MAX_LIMIT_FROM_API_SERVER``).
STATE_API_LIMIT = 10_000
_NODE_ID_RE = re.compile(r"^[0-9a-f]{56}$")


class RaySourceError(Exception):
    """The source cannot watch the node (Ray not connected, no state API, bad node id)."""


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class ProcessUsage:
    rss_bytes: float
    anon_bytes: float
    cpu_s: float
    read_bytes: float
    write_bytes: float


class RayWorkersSource:
    """The actors (and with ``include_tasks`` the running tasks) of one Ray node.

    Needs a connected Ray (``ray.init`` done, or running inside a Ray worker) whose
    dashboard runs; ``node_id`` defaults to the current node. The constructor checks
    the state API and the node (raising :class:`RaySourceError` with the reason) and
    remembers the actors already dead, so that only later deaths become events.
    ``address`` overrides the state-API URL (``http://host:port`` of the dashboard).
    """

    kind = "ray"

    def __init__(
        self,
        *,
        node_id: str | None = None,
        include_tasks: bool = False,
        clock: Callable[[], float] = time.time,
        address: str | None = None,
        timeout_s: int = 10,
        task_grace_s: float = 3.0,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RaySourceError("RayWorkersSource needs a connected Ray: call ray.init() first")
        if timeout_s < 1:
            raise ValueError(f"timeout_s must be ≥ 1 s, got {timeout_s}")
        if task_grace_s < 0:
            raise ValueError(f"task_grace_s must be ≥ 0, got {task_grace_s}")
        ctx = ray.get_runtime_context()
        if node_id is None:
            node_id = ctx.get_node_id()
        if not isinstance(node_id, str) or not _NODE_ID_RE.match(node_id):
            raise ValueError(f"node_id must be 56 lowercase hex digits, got {node_id!r}")
        self.node_id = node_id
        self.include_tasks = include_tasks
        self.clock = clock
        self.timeout_s = int(timeout_s)
        self.task_grace_s = float(task_grace_s)
        self.address = address or self._resolve_address(ctx.gcs_address)
        self._check_node()
        self._procs: dict[int, psutil.Process] = {}
        self._job_apps: dict[str, str] = {}
        self._tasks: dict[str, TaskSeen] = {}  # task_id → last seen running (or ending)
        self._task_attempts: dict[str, int] = {}
        self._seen: dict[str, ActorSeen] = {}
        for raw in self._list("actors", []):  # what exists now is history, not events
            try:
                a = parse_actor(raw)
            except (ValueError, TypeError):
                continue  # a malformed record is reported by poll()
            self._seen[a.actor_id] = ActorSeen(a.state, a.num_restarts, a.pid)

    # -- state API edge

    @staticmethod
    def _resolve_address(gcs_address: str) -> str:
        from ray.dashboard.utils import get_address_for_submission_client

        try:
            return get_address_for_submission_client(gcs_address)
        except Exception as exc:  # any failure means "no state API"
            raise RaySourceError(
                f"cannot find Ray's dashboard (state API) via GCS {gcs_address}: {exc}. "
                "Start Ray with include_dashboard=True."
            ) from exc

    def _list(self, resource: str, filters: list[tuple[str, str, Any]]) -> list[Any]:
        from ray.util import state

        fn = {"actors": state.list_actors, "workers": state.list_workers,
              "tasks": state.list_tasks, "jobs": state.list_jobs,
              "nodes": state.list_nodes}[resource]
        node_filter = [] if resource in ("jobs", "nodes") else [("node_id", "=", self.node_id)]
        # raise_on_missing_output=False: Ray 2.60 counts a filtered-out node as "missing
        # output" and raises; a real truncation (> STATE_API_LIMIT records) still warns.
        return fn(address=self.address, filters=node_filter + filters, limit=STATE_API_LIMIT,
                  timeout=self.timeout_s, detail=resource != "nodes",
                  raise_on_missing_output=False)

    def _check_node(self) -> None:
        try:
            nodes = self._list("nodes", [])
        except Exception as exc:  # ServerUnavailable, HTTP errors, ...
            raise RaySourceError(
                f"Ray state API at {self.address} is unavailable ({type(exc).__name__}: "
                f"{exc}). It is served by the dashboard: start Ray with "
                "include_dashboard=True."
            ) from exc
        nodes = [n for n in map(as_dict, nodes) if n.get("node_id") == self.node_id]
        if not nodes:
            raise RaySourceError(
                f"the Ray state API at {self.address} does not know node {self.node_id}: "
                "wrong node id, or that URL is another Ray's dashboard (this Ray was "
                "probably started with include_dashboard=False)"
            )
        node_state = nodes[0].get("state")
        if node_state != "ALIVE":
            raise RaySourceError(f"Ray node {self.node_id} is {node_state}, not ALIVE")

    # -- psutil edge

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is not None and proc.is_running():  # is_running also catches pid reuse
            return proc
        proc = psutil.Process(pid)
        name = proc.name()
        if not name.startswith("ray::"):
            raise psutil.Error(f"pid {pid} is {name!r}, not a Ray worker of this host")
        self._procs[pid] = proc
        return proc

    def _usage(self, pid: int) -> ProcessUsage:
        proc = self._process(pid)
        with proc.oneshot():
            mem = proc.memory_info()
            rss, anon = float(mem.rss), float(max(0, mem.rss - mem.shared))
            cpu = proc.cpu_times()
            try:
                io = proc.io_counters()
                read_b, write_b = float(io.read_bytes), float(io.write_bytes)
            except (psutil.AccessDenied, AttributeError):
                read_b = write_b = math.nan
        return ProcessUsage(rss, anon, float(cpu.user + cpu.system), read_b, write_b)

    def _sample(self, container: str, app: str, pid: int, resources: Mapping[str, float],
                ts: float) -> Sample:
        u = self._usage(pid)
        return Sample(
            container=container, ts_s=ts,
            memory_usage_bytes=u.rss_bytes, memory_working_set_bytes=u.anon_bytes,
            memory_limit_bytes=memory_limit_bytes(resources),
            cpu_usage_s_total=u.cpu_s, cpu_quota_cores=cpu_quota_cores(resources),
            io_read_bytes_total=u.read_bytes, io_write_bytes_total=u.write_bytes, app=app,
        )

    # -- poll

    def poll(self) -> SourceBatch:
        """One ``list_actors`` call, the samples of every live actor, and the events since
        the previous poll (see :mod:`app.telemetry.ray_lifecycle`)."""
        ts = float(self.clock())
        errors: dict[str, str] = {}
        try:
            raw_actors = self._list("actors", [])
        except Exception as exc:  # a failed call is reported, not raised
            return SourceBatch(errors={STATE_API_ERROR_KEY: f"list_actors: {exc}"})
        actors: list[ActorRecord] = []
        for raw in raw_actors:
            try:
                actors.append(parse_actor(raw))
            except (ValueError, TypeError) as exc:
                errors[f"actor:{getattr(raw, 'actor_id', '?')}"] = str(exc)
        containers = assign_container_ids(actors)
        events, restarts, memory = diff_actors(self._seen, actors, containers, ts)
        if restarts:
            dead: dict[int, Mapping[str, Any]] = {}
            try:
                workers = self._list("workers", [("is_alive", "=", "False")])
                dead = dead_workers_by_pid(as_dict(w) for w in workers)
            except Exception as exc:
                errors[STATE_API_ERROR_KEY] = f"list_workers: {exc}"
            for r in restarts:
                events.extend(restart_events(r, ts, dead))
        self._seen = memory
        samples: list[Sample] = []
        for a in actors:
            if a.state != ALIVE or a.pid <= 0:
                continue
            container = containers[a.actor_id]
            try:
                samples.append(self._sample(container, class_label(a.class_name), a.pid,
                                            a.required_resources, ts))
            except psutil.NoSuchProcess:
                errors[container] = f"actor {a.actor_id} pid {a.pid} is gone"
            except psutil.Error as exc:
                errors[container] = f"actor {a.actor_id} pid {a.pid}: {exc}"
        if self.include_tasks:
            self._poll_tasks(ts, samples, events, errors)
        live = {a.pid for a in actors if a.state == ALIVE} | {
            t.record.worker_pid for t in self._tasks.values()}
        self._procs = {pid: p for pid, p in self._procs.items() if pid in live}
        return SourceBatch(samples, events, dict(sorted(errors.items())))

    def _job_app(self, job_id: str) -> str:
        return self._job_apps.get(job_id) or f"job:{job_id}"

    def _refresh_jobs(self, job_ids: set[str], errors: dict[str, str]) -> None:
        if not job_ids - self._job_apps.keys():
            return
        try:
            jobs = [as_dict(j) for j in self._list("jobs", [])]
        except Exception as exc:
            errors[STATE_API_ERROR_KEY] = f"list_jobs: {exc}"
            return
        for j in jobs:
            if j.get("job_id") and j.get("entrypoint"):
                self._job_apps[str(j["job_id"])] = str(j["entrypoint"])
        for job_id in job_ids - self._job_apps.keys():
            self._job_apps[job_id] = f"job:{job_id}"  # a job without entrypoint: stop asking

    def _poll_tasks(self, ts: float, samples: list[Sample], events: list[Event],
                    errors: dict[str, str]) -> None:
        try:
            raw = self._list("tasks", [("type", "=", "NORMAL_TASK"), ("state", "=", "RUNNING")])
        except Exception as exc:
            errors[STATE_API_ERROR_KEY] = f"list_tasks: {exc}"
            return
        running: dict[str, TaskRecord] = {}
        for r in raw:
            try:
                t = parse_task(r)
            except (ValueError, TypeError) as exc:
                errors[f"task:{getattr(r, 'task_id', '?')}"] = str(exc)
                continue
            prev = running.get(t.task_id)
            if prev is None or t.attempt_number > prev.attempt_number:
                running[t.task_id] = t
        self._refresh_jobs({t.job_id for t in running.values()}, errors)
        # tasks that stopped running (or run again as a later attempt): one lookup of
        # the node's FAILED tasks, repeated while some are within the grace
        ended = {tid: s for tid, s in self._tasks.items()
                 if tid not in running or running[tid].attempt_number > s.record.attempt_number}
        self._tasks = {tid: s for tid, s in self._tasks.items() if tid not in ended}
        if ended:
            try:
                failed = {(t.task_id, t.attempt_number): t for t in (
                    parse_task(r) for r in self._list(
                        "tasks", [("type", "=", "NORMAL_TASK"), ("state", "=", "FAILED")]))}
            except Exception as exc:  # keep them all for the next poll
                errors[STATE_API_ERROR_KEY] = f"list_tasks(FAILED): {exc}"
                self._tasks.update(ended)
            else:
                new_events, pending = resolve_ended_tasks(ended, failed, ts, self.task_grace_s)
                events.extend(new_events)
                self._tasks.update(pending)
        for tid, t in running.items():
            container = task_container_id(t)
            app = self._job_app(t.job_id)
            events.extend(task_restart_events(t, container, app,
                                              self._task_attempts.get(tid), ts))
            self._task_attempts[tid] = t.attempt_number
            self._tasks[tid] = TaskSeen(t, container, app)
            if t.worker_pid <= 0:
                continue
            try:
                samples.append(self._sample(container, app, t.worker_pid,
                                            t.required_resources, ts))
            except psutil.NoSuchProcess:
                errors[container] = f"task {tid} pid {t.worker_pid} is gone"
            except psutil.Error as exc:
                errors[container] = f"task {tid} pid {t.worker_pid}: {exc}"
        while len(self._task_attempts) > STATE_API_LIMIT:  # bounded memory: oldest first
            self._task_attempts.pop(next(iter(self._task_attempts)))

    def close(self) -> None:
        self._procs = {}
        self._tasks = {}
        self._task_attempts = {}
