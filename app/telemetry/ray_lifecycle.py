"""What happened to a Ray node's actors and tasks between two polls, as events: the
kind of a death, a worker exit or a task failure, and the diff of the actors (deaths,
restarts) and tasks (ended, retried). Pure: tested on captured state-API output, without
Ray.

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
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prescale.app.core.sample import Event, EventKind
from prescale.app.telemetry.ray_records import DEAD, ActorRecord, TaskRecord, class_label

#: Longest event detail kept (Ray's messages run to kilobytes).
MAX_DETAIL_CHARS = 400
_EXIT_TYPE_RE = re.compile(r"Worker exit type: ([A-Z_]+)")
_OWNER_EXIT_TYPE_RE = re.compile(r"Owner worker exit type: ([A-Z_]+)")
_EXIT_CODE_RE = re.compile(r"exit code (-?\d+)")


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
