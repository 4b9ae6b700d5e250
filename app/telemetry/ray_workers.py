"""Ray workers source: the actors (and optionally the running tasks) of one Ray node as
containers.

This is an I/O edge. Identity and lifecycle come from Ray's state API
(:mod:`ray.util.state`), usage from :mod:`psutil` on each worker's pid. The mapping of
state-API records to containers and events is done by small pure functions
(:func:`parse_actor`, :func:`assign_container_ids`, :func:`classify_actor_death`,
:func:`classify_worker_exit`, :func:`classify_task_failure`, :func:`diff_actors`, ...)
that are tested on captured state-API output, without Ray.

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

Containers
----------
* Actor: its ``name`` if it has one (named actors keep their container across a
  re-creation under the same name, like a pod name), else
  ``f"{class_name}:{actor_id[:8]}"``.
  Two *live* actors with the same name (different namespaces) both get
  ``f"{name}:{actor_id[:8]}"``. ``app`` = the actor's class name (Ray's ``class_name``,
  less the ``<locals>`` path of a class defined in a function, :func:`class_label`).
* Task (``include_tasks=True``; running ``NORMAL_TASK`` only; actor methods run in
  their actor's container): ``f"{func_or_class_name}:{task_id[:8]}"``, the same across
  retries. ``app`` = the entrypoint of the task's job (``list_jobs``), else
  ``f"job:{job_id}"``.

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

Events
------
Each actor death is reported once, at the poll that first sees the actor ``DEAD``
(actors already dead when the source is created are history: no event). The kind comes
from the structured ``death_cause`` (never from keywords in the message: Ray's message
for a SIGKILL mentions "OOM killer" and "memory"):

==========================================================  ==================================
``death_cause``                                             event
==========================================================  ==================================
``oom_context`` (Ray's memory monitor killed the worker)    ``oom_kill``
``creation_task_failure_context`` (``__init__`` raised)     ``exit_nonzero``
``runtime_env_failed_context``                              ``exit_nonzero``
``actor_unschedulable_context`` / ``never_started``          none (it never ran)
``actor_died_error_context`` reason ``WORKER_DIED``          by worker exit type, below
reason ``RAY_KILL`` (``ray.kill``)                          ``success`` (intended)
reason ``OUT_OF_SCOPE`` / ``REF_DELETED``                   ``success`` (handle released)
reason ``OWNER_DIED``, owner exited normally                ``success`` (its job ended)
reason ``OWNER_DIED``, owner crashed                        ``killed``
reason ``NODE_DIED`` / unknown / no death cause              ``killed``
==========================================================  ==================================

Worker exit types (also used for the death behind a restart): ``NODE_OUT_OF_MEMORY`` →
``oom_kill``; ``SYSTEM_ERROR`` with "exit code N", N ≠ 0 (``sys.exit(N)``) →
``exit_nonzero``; other ``SYSTEM_ERROR`` ("connection error code 2. End of file": SIGKILL,
SIGSEGV, ``os._exit``, the *kernel* OOM killer — Ray cannot tell them apart; the cgroup
source sees kernel OOM kills) → ``killed``; ``USER_ERROR`` → ``exit_nonzero``;
``INTENDED_USER_EXIT`` (``exit_actor()``, ``sys.exit(0)``) / ``INTENDED_SYSTEM_EXIT`` →
``success``.

Restarts: every increase of ``num_restarts`` gives one ``restart`` event. When the pid
the actor had at the previous poll is found among the dead workers (one ``list_workers``
call), the death behind the restart is reported too, once, as its failure kind
(``oom_kill`` / ``killed`` / ``exit_nonzero``) before the ``restart`` event: an OOM-killed
actor that Ray restarts is still an OOM kill.

Tasks: a task seen running that stops running is looked up among the node's ``FAILED``
tasks; a failure gives ``oom_kill`` (``OUT_OF_MEMORY``), ``killed`` (``WORKER_DIED``,
``NODE_DIED``, ``LOCAL_RAYLET_DIED``, ``OWNER_DIED``), ``success`` (``TASK_CANCELLED``:
intended) or ``exit_nonzero`` (anything else, e.g. ``TASK_EXECUTION_EXCEPTION``). Task
events reach Ray's state API up to ≈ 1 s late, so an ended task is looked up for
``task_grace_s``; a task not reported FAILED by then is taken as finished and produces
no event. A task running again with a higher ``attempt_number`` gives ``restart``.

Errors: a container whose pid cannot be read goes into ``errors[container]``; a failed
state-API call goes into ``errors[STATE_API_ERROR_KEY]`` (the poll then returns no
samples and changes no state, so no event is lost).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch

#: ``errors`` key for a failed state-API call (not a container).
STATE_API_ERROR_KEY = "ray-state-api"
#: Most records one state-API call returns (Ray's own cap, ``RAY_MAX_LIMIT_FROM_API_SERVER``).
STATE_API_LIMIT = 10_000
#: Longest event detail kept (Ray's messages run to kilobytes).
MAX_DETAIL_CHARS = 400
#: Actor states in which the actor has a worker process we can read.
ALIVE = "ALIVE"
DEAD = "DEAD"
_NODE_ID_RE = re.compile(r"^[0-9a-f]{56}$")
_EXIT_TYPE_RE = re.compile(r"Worker exit type: ([A-Z_]+)")
_OWNER_EXIT_TYPE_RE = re.compile(r"Owner worker exit type: ([A-Z_]+)")
_EXIT_CODE_RE = re.compile(r"exit code (-?\d+)")


class RaySourceError(Exception):
    """The source cannot watch the node (Ray not connected, no state API, bad node id)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ActorRecord:
    """The fields of one ``ray.util.state`` ``ActorState`` the source uses."""

    actor_id: str
    class_name: str
    state: str
    name: str = ""
    pid: int = 0
    num_restarts: int = 0
    job_id: str = ""
    required_resources: dict[str, float] = field(default_factory=dict, hash=False)
    death_cause: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class TaskRecord:
    """The fields of one ``ray.util.state`` ``TaskState`` the source uses."""

    task_id: str
    attempt_number: int
    func_name: str
    state: str
    job_id: str = ""
    worker_pid: int = 0
    required_resources: dict[str, float] = field(default_factory=dict, hash=False)
    error_type: str = ""
    error_message: str = ""


def as_dict(obj: Any) -> dict[str, Any]:
    """A state-API record (``ActorState`` dataclass, or already a dict) as a plain dict."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if callable(getattr(obj, "model_dump", None)):  # JobState (a pydantic model)
        return dict(obj.model_dump())
    if callable(getattr(obj, "asdict", None)):  # the other ray.util.state schemas
        return dict(obj.asdict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"expected a state-API record or a dict, got {type(obj).__name__}")


def _req_str(d: Mapping[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _opt_int(d: Mapping[str, Any], key: str, what: str) -> int:
    value = d.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: field {key!r} must be a non-negative integer, got {value!r}")
    return value


def _resources(d: Mapping[str, Any], what: str) -> dict[str, float]:
    value = d.get("required_resources") or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: field 'required_resources' must be a dict, got {value!r}")
    out: dict[str, float] = {}
    for key, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise ValueError(f"{what}: resource {key!r} must be a number, got {amount!r}")
        out[str(key)] = float(amount)
    return out


def parse_actor(raw: Any) -> ActorRecord:
    """An ``ActorState`` (or its dict) → :class:`ActorRecord`; :class:`ValueError` naming
    the field if malformed.

    Example: ``{"actor_id": "23f9d457a25afc9027bf609d01000000", "class_name": "A",
    "state": "ALIVE", "name": "", "pid": 15353, "num_restarts": 0,
    "required_resources": {"CPU": 0.25}, ...}`` → ``ActorRecord("23f9…", "A", "ALIVE",
    pid=15353, required_resources={"CPU": 0.25})``.
    """
    d = as_dict(raw)
    actor_id = _req_str(d, "actor_id", "actor")
    what = f"actor {actor_id}"
    name = d.get("name") or ""
    if not isinstance(name, str):
        raise ValueError(f"{what}: field 'name' must be a string, got {name!r}")
    death = d.get("death_cause")
    if death is not None and not isinstance(death, Mapping):
        raise ValueError(f"{what}: field 'death_cause' must be a dict, got {death!r}")
    return ActorRecord(
        actor_id=actor_id,
        class_name=_req_str(d, "class_name", what),
        state=_req_str(d, "state", what),
        name=name,
        pid=_opt_int(d, "pid", what),
        num_restarts=_opt_int(d, "num_restarts", what),
        job_id=str(d.get("job_id") or ""),
        required_resources=_resources(d, what),
        death_cause=dict(death) if death is not None else None,
    )


def parse_task(raw: Any) -> TaskRecord:
    """A ``TaskState`` (or its dict) → :class:`TaskRecord`; :class:`ValueError` if malformed.

    Example: ``{"task_id": "3af70994bb3459ffffff…01000000", "attempt_number": 0,
    "func_or_class_name": "sleeper", "state": "RUNNING", "worker_pid": 22226,
    "required_resources": {"CPU": 0.5}, ...}`` → ``TaskRecord("3af7…", 0, "sleeper",
    "RUNNING", worker_pid=22226, required_resources={"CPU": 0.5})``.
    """
    d = as_dict(raw)
    task_id = _req_str(d, "task_id", "task")
    what = f"task {task_id}"
    func = d.get("func_or_class_name") or d.get("name")
    if not isinstance(func, str) or not func:
        raise ValueError(f"{what}: needs 'func_or_class_name' or 'name', got {func!r}")
    return TaskRecord(
        task_id=task_id,
        attempt_number=_opt_int(d, "attempt_number", what),
        func_name=func,
        state=_req_str(d, "state", what),
        job_id=str(d.get("job_id") or ""),
        worker_pid=_opt_int(d, "worker_pid", what),
        required_resources=_resources(d, what),
        error_type=str(d.get("error_type") or ""),
        error_message=str(d.get("error_message") or ""),
    )


# --------------------------------------------------------------------------- identity


def class_label(class_name: str) -> str:
    """Ray's ``class_name`` without a function's ``<locals>`` path (a class defined in a
    function is reported by its qualname).

    Example: ``"make.<locals>.Hog"`` → ``"Hog"``; ``"ServeReplica:app:Model"`` and
    ``"Outer.Inner"`` are kept.
    """
    return class_name.rpartition("<locals>.")[2] or class_name


def actor_container_id(actor: ActorRecord) -> str:
    """``name`` if the actor has one, else ``f"{class_label(class_name)}:{actor_id[:8]}"``.

    Example: ``ActorRecord("b5dfe642ab3feb65bc9d75a901000000", "A", "ALIVE")`` →
    ``"A:b5dfe642"``; with ``name="victim"`` → ``"victim"``.
    """
    return actor.name or f"{class_label(actor.class_name)}:{actor.actor_id[:8]}"


def assign_container_ids(actors: Iterable[ActorRecord]) -> dict[str, str]:
    """``{actor_id: container}`` for a node's actors; a name held by two or more *live*
    (not ``DEAD``) actors becomes ``f"{name}:{actor_id[:8]}"`` for each of them.

    Example: live ``"w"`` (id ``aaaa…``) and live ``"w"`` (id ``bbbb…``, another
    namespace) → ``"w:aaaaaaaa"`` and ``"w:bbbbbbbb"``; a dead ``"w"`` next to one live
    ``"w"`` → both ``"w"`` (the live one is its successor).
    """
    actors = list(actors)
    live_names: dict[str, int] = {}
    for a in actors:
        if a.name and a.state != DEAD:
            live_names[a.name] = live_names.get(a.name, 0) + 1
    out: dict[str, str] = {}
    for a in actors:
        if a.name and live_names.get(a.name, 0) > 1 and a.state != DEAD:
            out[a.actor_id] = f"{a.name}:{a.actor_id[:8]}"
        else:
            out[a.actor_id] = actor_container_id(a)
    return out


def task_container_id(task: TaskRecord) -> str:
    """``f"{func_or_class_name}:{task_id[:8]}"``, e.g. ``"sleeper:3af70994"``."""
    return f"{task.func_name}:{task.task_id[:8]}"


def memory_limit_bytes(required_resources: Mapping[str, float]) -> float:
    """The ``memory`` resource the actor asked for, in bytes (Ray ≥ 2 counts it in
    bytes), else ``inf``.

    Example: ``{"memory": 104857600.0, "CPU": 0.25}`` → ``104857600.0``;
    ``{"CPU": 0.25}`` → ``inf``; ``{"memory": 0}`` → ``inf``.
    """
    value = float(required_resources.get("memory", 0.0))
    return value if value > 0 else math.inf


def cpu_quota_cores(required_resources: Mapping[str, float]) -> float:
    """The ``CPU`` resource (``num_cpus``) the actor holds, else ``inf``.

    Example: ``{"CPU": 0.25}`` → ``0.25``; ``{}`` (an actor's default ``num_cpus=0``)
    → ``inf``.
    """
    value = float(required_resources.get("CPU", 0.0))
    return value if value > 0 else math.inf


# --------------------------------------------------------------------------- classification


def _short(text: str) -> str:
    """The first two non-empty lines, joined by `` | ``, at most :data:`MAX_DETAIL_CHARS`."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    out = " | ".join(lines[:2])
    return out if len(out) <= MAX_DETAIL_CHARS else out[: MAX_DETAIL_CHARS - 1] + "…"


def exit_code(detail: str) -> int | None:
    """The exit code Ray wrote into a worker's exit detail, if any.

    Example: ``"Worker exits unexpectedly. Worker exits with an exit code 1."`` → ``1``;
    ``"Worker unexpectedly exits with a connection error code 2. End of file."`` → ``None``
    (a *connection* error code is not an exit code).
    """
    m = _EXIT_CODE_RE.search(detail or "")
    return int(m.group(1)) if m else None


def classify_worker_exit(exit_type: str | None, exit_detail: str | None) -> EventKind | None:
    """The event kind for a worker's exit (``WorkerState.exit_type``/``exit_detail``).

    Examples: ``("NODE_OUT_OF_MEMORY", …)`` → ``oom_kill``; ``("SYSTEM_ERROR", "…
    connection error code 2. End of file …")`` (SIGKILL) → ``killed``;
    ``("SYSTEM_ERROR", "Worker exits unexpectedly. Worker exits with an exit code 1.")``
    → ``exit_nonzero``; ``("USER_ERROR", …)`` → ``exit_nonzero``;
    ``("INTENDED_USER_EXIT", "… exit code 0. exit_actor() is called.")`` → ``success``;
    ``("INTENDED_SYSTEM_EXIT", …)`` → ``success``; ``(None, None)`` → ``killed``.
    """
    code = exit_code(exit_detail or "")
    if exit_type == "NODE_OUT_OF_MEMORY":
        return EventKind.OOM_KILL
    if exit_type == "USER_ERROR":
        return EventKind.EXIT_NONZERO
    if exit_type in ("INTENDED_USER_EXIT", "INTENDED_SYSTEM_EXIT"):
        return EventKind.EXIT_NONZERO if code not in (None, 0) else EventKind.SUCCESS
    if exit_type == "SYSTEM_ERROR" and code not in (None, 0):
        return EventKind.EXIT_NONZERO
    return EventKind.KILLED


def classify_actor_death(death_cause: Mapping[str, Any] | None) -> tuple[EventKind | None, str]:
    """``(kind, detail)`` for a ``DEAD`` actor's ``death_cause``; kind ``None`` when the
    actor never ran (no event). The table in the module docstring is the full mapping.

    Examples (shapes captured from Ray 2.60): ``{"oom_context": {"error_message": "1
    worker(s) were killed due to the node running low on memory. …", "fail_immediately":
    False}}`` → ``oom_kill``; ``{"actor_died_error_context": {"reason": "RAY_KILL", …}}``
    → ``success``; ``{"actor_died_error_context": {"reason": "WORKER_DIED",
    "error_message": "… Worker exit type: SYSTEM_ERROR Worker exit detail: Worker
    unexpectedly exits with a connection error code 2. End of file. …"}}`` → ``killed``.
    """
    if not death_cause:
        return EventKind.KILLED, "dead without a death cause"
    if "oom_context" in death_cause:
        msg = (death_cause["oom_context"] or {}).get("error_message", "")
        return EventKind.OOM_KILL, _short("Ray memory monitor: " + msg)
    if "creation_task_failure_context" in death_cause:
        ctx = death_cause["creation_task_failure_context"] or {}
        text = ctx.get("formatted_exception_string", "")
        last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:] or ["?"]
        return EventKind.EXIT_NONZERO, f"__init__ raised: {last[0]}"[:MAX_DETAIL_CHARS]
    if "runtime_env_failed_context" in death_cause:
        msg = (death_cause["runtime_env_failed_context"] or {}).get("error_message", "")
        return EventKind.EXIT_NONZERO, _short("runtime_env setup failed: " + msg)
    if "actor_unschedulable_context" in death_cause:
        msg = (death_cause["actor_unschedulable_context"] or {}).get("error_message", "")
        return None, _short("never scheduled: " + msg)
    ctx = death_cause.get("actor_died_error_context")
    if not isinstance(ctx, Mapping):
        return EventKind.KILLED, f"unknown death cause {sorted(death_cause)}"
    reason = ctx.get("reason") or "UNSPECIFIED"
    msg = ctx.get("error_message") or ""
    if ctx.get("never_started"):
        return None, f"{reason} before it started"
    if reason == "RAY_KILL":
        return EventKind.SUCCESS, "ray.kill"
    if reason in ("OUT_OF_SCOPE", "REF_DELETED"):
        return EventKind.SUCCESS, f"{reason}: all references to the actor were removed"
    if reason == "OWNER_DIED":
        m = _OWNER_EXIT_TYPE_RE.search(msg)
        owner_exit = m.group(1) if m else "unknown"
        if owner_exit in ("INTENDED_USER_EXIT", "INTENDED_SYSTEM_EXIT"):
            return EventKind.SUCCESS, f"owner exited ({owner_exit})"
        return EventKind.KILLED, f"owner died ({owner_exit})"
    if reason == "WORKER_DIED":
        m = _EXIT_TYPE_RE.search(msg)
        exit_type = m.group(1) if m else None
        _, _, detail = msg.partition("Worker exit detail: ")
        kind = classify_worker_exit(exit_type, detail)
        return kind, _short(f"{exit_type or 'unknown exit type'}: {detail or msg}")
    return EventKind.KILLED, _short(f"{reason}: {msg}")


def classify_task_failure(error_type: str | None, error_message: str | None) -> EventKind:
    """The event kind for a ``FAILED`` task's ``error_type``.

    Examples: ``"OUT_OF_MEMORY"`` → ``oom_kill``; ``"WORKER_DIED"`` (SIGKILL of its
    worker) → ``killed``; ``"TASK_EXECUTION_EXCEPTION"`` → ``exit_nonzero``;
    ``"TASK_CANCELLED"`` → ``success`` (``ray.cancel`` is intended).
    """
    if error_type == "OUT_OF_MEMORY":
        return EventKind.OOM_KILL
    if error_type in ("WORKER_DIED", "NODE_DIED", "LOCAL_RAYLET_DIED", "OWNER_DIED"):
        return EventKind.KILLED
    if error_type == "TASK_CANCELLED":
        return EventKind.SUCCESS
    return EventKind.EXIT_NONZERO


# --------------------------------------------------------------------------- lifecycle diff


@dataclass(frozen=True)
class ActorSeen:
    """What the source remembers of an actor between polls."""

    state: str
    num_restarts: int
    pid: int


@dataclass(frozen=True)
class Restart:
    """``count`` restarts of an actor since the last poll; ``prev_pid`` = its pid then."""

    actor_id: str
    container: str
    app: str
    count: int
    prev_pid: int


def diff_actors(
    seen: Mapping[str, ActorSeen],
    actors: Iterable[ActorRecord],
    containers: Mapping[str, str],
    ts_s: float,
) -> tuple[list[Event], list[Restart], dict[str, ActorSeen]]:
    """Death events and restarts since the previous poll, and the new memory.

    ``seen`` is the previous poll's memory (empty ``ActorSeen`` for none). An actor is
    reported dead when it is ``DEAD`` now and was not ``DEAD`` in ``seen`` (an actor
    never seen before that is already ``DEAD`` died since the last poll, so it is
    reported too; the constructor primes ``seen`` with the actors dead at start so that
    history is not). Restarts are ``num_restarts − seen.num_restarts`` (0 for a new
    actor).

    Worked example: ``seen = {"a1": ActorSeen("ALIVE", 0, 100)}``, now ``a1`` is ALIVE
    with ``num_restarts=1`` and pid 200, and ``a2`` (new) is DEAD with reason
    ``RAY_KILL`` → events ``[success(a2)]``, restarts ``[Restart("a1", …, count=1,
    prev_pid=100)]``, memory ``{"a1": ActorSeen("ALIVE", 1, 200), "a2": ActorSeen("DEAD",
    0, …)}``. Actors Ray no longer lists are forgotten.
    """
    events: list[Event] = []
    restarts: list[Restart] = []
    memory: dict[str, ActorSeen] = {}
    for a in actors:
        prev = seen.get(a.actor_id)
        container = containers[a.actor_id]
        prev_restarts = prev.num_restarts if prev is not None else 0
        if a.num_restarts > prev_restarts:
            restarts.append(Restart(a.actor_id, container, class_label(a.class_name),
                                    a.num_restarts - prev_restarts,
                                    prev.pid if prev is not None else 0))
        if a.state == DEAD and (prev is None or prev.state != DEAD):
            kind, detail = classify_actor_death(a.death_cause)
            if kind is not None:
                events.append(Event(container, ts_s, kind, detail, class_label(a.class_name)))
        pid = a.pid if a.pid else (prev.pid if prev is not None else 0)
        memory[a.actor_id] = ActorSeen(a.state, max(a.num_restarts, prev_restarts), pid)
    return events, restarts, memory


def restart_events(
    restart: Restart, ts_s: float, dead_workers: Mapping[int, Mapping[str, Any]]
) -> list[Event]:
    """Events for ``restart.count`` restarts: the failure behind them when the previous
    pid is among ``dead_workers`` (``{pid: WorkerState dict}``) and it was a failure,
    then one ``restart`` event per restart.

    Example: prev pid 15458 dead with ``exit_type="SYSTEM_ERROR"``, ``"… connection
    error code 2. End of file …"``, count 1 → ``[killed, restart]``; pid not found →
    ``[restart]``.
    """
    events: list[Event] = []
    cause = "cause unknown"
    worker = dead_workers.get(restart.prev_pid) if restart.prev_pid else None
    if worker is not None:
        exit_type = worker.get("exit_type")
        exit_detail = worker.get("exit_detail") or ""
        kind = classify_worker_exit(exit_type, exit_detail)
        cause = f"{kind.value}: " + _short(f"{exit_type}: {exit_detail}")
        if kind in (EventKind.OOM_KILL, EventKind.KILLED, EventKind.EXIT_NONZERO):
            events.append(Event(restart.container, ts_s, kind,
                                _short(f"pid {restart.prev_pid} {exit_type}: {exit_detail}"),
                                restart.app))
    for _ in range(restart.count):
        events.append(Event(restart.container, ts_s, EventKind.RESTART,
                            f"restarted by Ray after {cause}"[:MAX_DETAIL_CHARS], restart.app))
    return events


def dead_workers_by_pid(workers: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """``{pid: worker}`` over dead workers, the latest (``end_time_ms``) when a pid was
    reused. Example: two dead records of pid 7 ending at 1000 and 2000 ms → the second.
    """
    out: dict[int, Mapping[str, Any]] = {}
    for w in workers:
        if w.get("is_alive"):
            continue
        pid = w.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            continue
        prev = out.get(pid)
        if prev is None or (w.get("end_time_ms") or 0) >= (prev.get("end_time_ms") or 0):
            out[pid] = w
    return out


@dataclass(frozen=True)
class TaskSeen:
    """A task the source saw running; ``ended_at_s`` = when it was first seen no longer
    running (``None`` while it runs)."""

    record: TaskRecord
    container: str
    app: str
    ended_at_s: float | None = None


def resolve_ended_tasks(
    ended: Mapping[str, TaskSeen],
    failed: Mapping[tuple[str, int], TaskRecord],
    ts_s: float,
    grace_s: float,
) -> tuple[list[Event], dict[str, TaskSeen]]:
    """Events for tasks that stopped running, and those still waiting for Ray to report.

    ``failed`` holds the node's ``FAILED`` task attempts by ``(task_id,
    attempt_number)``. A task found there gives its failure event; one not found is
    kept (with ``ended_at_s`` set) until ``grace_s`` has passed since it was first seen
    ended, then dropped as finished (no event).

    Worked example (grace 3 s): task ``t1`` attempt 0 seen ending at ts 10 and not in
    ``failed`` → no event, ``{"t1": …ended_at_s=10}``; at ts 11 it is in ``failed`` with
    ``WORKER_DIED`` → ``[killed]``, ``{}``; had it not been, at ts 13 → ``[]``, ``{}``.
    """
    events: list[Event] = []
    pending: dict[str, TaskSeen] = {}
    for tid, s in ended.items():
        f = failed.get((tid, s.record.attempt_number))
        if f is not None:
            kind = classify_task_failure(f.error_type, f.error_message)
            events.append(Event(s.container, ts_s, kind,
                                _short(f"{f.error_type}: {f.error_message}"), s.app))
            continue
        ended_at = s.ended_at_s if s.ended_at_s is not None else ts_s
        if ts_s - ended_at < grace_s:
            pending[tid] = dataclasses.replace(s, ended_at_s=ended_at)
    return events, pending


def task_restart_events(task: TaskRecord, container: str, app: str,
                        last_attempt: int | None, ts_s: float) -> list[Event]:
    """One ``restart`` per attempt since ``last_attempt`` (none for a task not seen before).

    Example: last attempt 0, now attempt 2 → two ``restart`` events; ``None`` → ``[]``.
    """
    if last_attempt is None or task.attempt_number <= last_attempt:
        return []
    return [Event(container, ts_s, EventKind.RESTART,
                  f"retried by Ray (attempt {task.attempt_number})", app)
            for _ in range(task.attempt_number - last_attempt)]


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
        the previous poll (see the module docstring)."""
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
