"""Ray's state-API records of one node as containers: the fields the Ray workers source
uses (:class:`ActorRecord`, :class:`TaskRecord`, parsed and checked), each actor's or
task's container id, and its memory and CPU reservations as limits. Pure: tested on
captured state-API output, without Ray.

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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Actor states in which the actor has a worker process we can read.
ALIVE = "ALIVE"
DEAD = "DEAD"


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
