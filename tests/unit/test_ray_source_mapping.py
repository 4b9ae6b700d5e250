"""The pure mapping of Ray state-API records to containers and events, without Ray.

The dicts below are ``ray.util.state`` output captured from Ray 2.60 on this machine
(``list_actors(detail=True)``, ``list_workers(detail=True)``, ``list_tasks(detail=True)``,
as ``.asdict()``); only very long messages are cut where marked ``…``. The memory-monitor
OOM shape was captured by starting Ray with ``_system_config={"memory_usage_threshold":
0.08, "memory_monitor_refresh_ms": 100}`` and growing an actor by 64 MiB steps.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from prescale.app.core.sample import Event, EventKind
from prescale.app.telemetry.ray_lifecycle import (
    ActorSeen,
    Restart,
    TaskSeen,
    classify_actor_death,
    classify_task_failure,
    classify_worker_exit,
    dead_workers_by_pid,
    diff_actors,
    exit_code,
    resolve_ended_tasks,
    restart_events,
    task_restart_events,
)
from prescale.app.telemetry.ray_records import (
    ActorRecord,
    TaskRecord,
    actor_container_id,
    as_dict,
    assign_container_ids,
    class_label,
    cpu_quota_cores,
    memory_limit_bytes,
    parse_actor,
    parse_task,
    task_container_id,
)

NODE = "a99e00921df7ba418b3baa3106b32b5188ba8a2a0c253c6b3174d51e"
EOF_DETAIL = (
    "Worker unexpectedly exits with a connection error code 2. End of file. Some common "
    "causes include: (1) the process was killed by the OOM killer due to high memory usage, "
    "(2) ray stop --force was called, or (3) the worker crashed unexpectedly due to SIGSEGV "
    "or another unexpected error. If the process was killed by the kernel OOM killer "
    "(verifiable by checking for OOM in dmesg of the OOMing node), consider enabling "
    "resource isolation via --enable-resource-isolation to prevent node deaths by resource "
    "contention and significant loss of progress by uninformed kernel OOM killing."
)

# an actor restarted once (max_restarts=1, memory=100 MiB, num_cpus=0.25), as listed
ALIVE_RESTARTED = {
    "actor_id": "cbcce285e2de5e6c49940f2e01000000", "class_name": "A", "state": "ALIVE",
    "job_id": "01000000", "name": "phoenix", "node_id": NODE, "pid": 29656,
    "ray_namespace": "8d7091b3-f8f4-4c5b-bead-374ba5411e92", "serialized_runtime_env": "{}",
    "required_resources": {"CPU": 0.25, "memory": 104857600.0}, "death_cause": None,
    "is_detached": False, "placement_group_id": None, "repr_name": "", "num_restarts": 1,
    "num_restarts_due_to_lineage_reconstruction": 0,
    "num_restarts_due_to_node_preemption": 0, "call_site": None, "label_selector": {},
    "fallback_strategy": None,
}


def _died(reason: str, message: str, **extra) -> dict:
    ctx = {
        "error_message": message,
        "owner_id": "01000000ffffffffffffffffffffffffffffffffffffffffffffffff",
        "owner_ip_address": "192.0.2.2", "node_ip_address": "192.0.2.2", "pid": 15353,
        "name": "", "ray_namespace": "d3fc4cc9-eace-42e9-aa42-2d11fce900b2",
        "class_name": "A", "actor_id": "23f9d457a25afc9027bf609d01000000", "reason": reason,
        "never_started": False,
    }
    ctx.update(extra)
    return {"actor_died_error_context": ctx}


# os.kill(pid, SIGKILL) on the actor's worker (also os._exit(n), a segfault)
SIGKILL_CAUSE = _died(
    "WORKER_DIED",
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: " + EOF_DETAIL,
)
# ray.kill(actor)
RAY_KILL_CAUSE = _died("RAY_KILL", "The actor is dead because it was killed by `ray.kill`.")
# ray.actor.exit_actor() in a method
EXIT_ACTOR_CAUSE = _died(
    "WORKER_DIED",
    "The actor is dead because its worker process has died. Worker exit type: "
    "INTENDED_USER_EXIT Worker exit detail: Worker exits by an user request. Worker exits "
    "with an exit code 0. exit_actor() is called.",
)
# sys.exit(1) in a method
SYS_EXIT_1_CAUSE = _died(
    "WORKER_DIED",
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker exits unexpectedly. Worker exits with an exit code 1.",
)
# the last handle was dropped
OUT_OF_SCOPE_CAUSE = _died(
    "OUT_OF_SCOPE", "The actor is dead because all references to the actor were removed."
)
# its driver (job) exited normally
OWNER_EXITED_CAUSE = _died(
    "OWNER_DIED",
    "The actor is dead because its owner has died. Owner Id: "
    "02000000ffffffffffffffffffffffffffffffffffffffffffffffff Owner Ip address: 192.0.2.2 "
    "Owner worker exit type: INTENDED_USER_EXIT Worker exit detail: Owner's worker process "
    "has crashed.",
)
# __init__ raised ValueError("boom") (formatted_exception_string cut in the middle)
CREATION_FAILED_CAUSE = {
    "creation_task_failure_context": {
        "formatted_exception_string": (
            "Traceback (most recent call last):\n\n  File \"python/ray/_raylet.pyx\", line "
            "2198, in ray._raylet.execute_task\n…\nray.exceptions.ActorDiedError: The actor "
            "died because of an error raised in its creation task, \x1b[36mray::bad:Bad."
            "__init__()\x1b[39m (pid=29581, ip=192.0.2.2, actor_id=c9b498de1a146ae899bfcac80"
            "1000000, repr=<capture.Bad object at 0x7f4cfef61f10>)\n           ^^^^^^^^^\n  "
            "File \"/tmp/raysrc/capture.py\", line 14, in __init__\n    def __init__(self): "
            "raise ValueError(\"boom\")\n                        ^^^^^^^^^^^^^^^^^^^^^^^^\n"
            "ValueError: boom\n"
        ),
        "language": "PYTHON",
    }
}
# Ray's memory monitor (not the kernel) killed the actor's worker
OOM_MESSAGE = (
    "1 worker(s) were killed due to the node running low on memory. Memory on the node (IP: "
    "192.0.2.2, ID: 64e8b2f6326e391a2d55b5374061b224c9caa9ec94762388e7933e2f) was 1.90GB "
    "used / 23.54GB limit (0.080755)\nOOM kill reason: Memory usage 2024603648B exceeded "
    "threshold of 2013896960B (8.0% of 25276502016B limit)\nObject store memory usage: [- "
    "objects spillable: 0\n- bytes spillable: 0\n…\nRay killed 1 worker(s) based on the "
    "killing policy\nConsidered workers: [\nSelected to kill: (Actor(6c08692b3491fdc8e4cd73"
    "8d01000000): job ID=01000000, lease ID=000000004c59…, task name=hog:Hog.__init__, "
    "required resources={}, pid=21352, actual memory used=0.81GB, worker ID=02f48ce771b939d1"
    "6487ef0189f89dc8c16e4bf360685e0529084e41)\n]\n…"
)
OOM_CAUSE = {"oom_context": {"error_message": OOM_MESSAGE, "fail_immediately": False}}
OOM_ACTOR = {
    "actor_id": "6c08692b3491fdc8e4cd738d01000000", "class_name": "Hog", "state": "DEAD",
    "job_id": "01000000", "name": "hog", "node_id": NODE, "pid": 21352,
    "ray_namespace": "b8c954c8-1654-4daa-8314-88503ff43d0e", "serialized_runtime_env": "{}",
    "required_resources": {}, "death_cause": OOM_CAUSE, "is_detached": False,
    "placement_group_id": None, "repr_name": "", "num_restarts": 0,
    "num_restarts_due_to_lineage_reconstruction": 0,
    "num_restarts_due_to_node_preemption": 0, "call_site": None, "label_selector": {},
    "fallback_strategy": None,
}


def _worker(pid: int, exit_type: str | None, detail: str | None, *, alive=False, end_ms=0):
    return {
        "worker_id": f"{pid:056x}", "is_alive": alive, "worker_type": "WORKER",
        "exit_type": exit_type, "node_id": NODE, "ip": "192.0.2.2", "pid": pid,
        "exit_detail": detail, "worker_launch_time_ms": 1795903057871,
        "worker_launched_time_ms": 1795903058221, "start_time_ms": 1795903058244,
        "end_time_ms": end_ms, "debugger_port": None, "num_paused_threads": None,
    }


RUNNING_TASK = {
    "task_id": "3af70994bb3459ffffffffffffffffffffffffff01000000", "attempt_number": 0,
    "name": "sleeper", "state": "RUNNING", "job_id": "01000000", "actor_id": None,
    "type": "NORMAL_TASK", "func_or_class_name": "sleeper",
    "parent_task_id": "ffffffffffffffffffffffffffffffffffffffff01000000",
    "node_id": NODE, "worker_id": "e9f16325672391152ee880679ed57b8137951e8cdedae5a169ce299e",
    "worker_pid": 22226, "error_type": None, "language": "PYTHON",
    "required_resources": {"CPU": 0.5}, "placement_group_id": None, "error_message": None,
}
FAILED_TASK = dict(RUNNING_TASK, state="FAILED", error_type="WORKER_DIED",
                   error_message="RpcError: RPC error: Socket closed rpc_code: 14")


# --------------------------------------------------------------------------- parsing


def test_parse_actor_keeps_the_fields_the_source_uses():
    assert parse_actor(ALIVE_RESTARTED) == ActorRecord(
        actor_id="cbcce285e2de5e6c49940f2e01000000", class_name="A", state="ALIVE",
        name="phoenix", pid=29656, num_restarts=1, job_id="01000000",
        required_resources={"CPU": 0.25, "memory": 104857600.0}, death_cause=None,
    )
    dead = parse_actor(OOM_ACTOR)
    assert (dead.state, dead.pid, dead.death_cause) == ("DEAD", 21352, OOM_CAUSE)


@pytest.mark.parametrize(("change", "message"), [
    ({"actor_id": None}, "'actor_id' must be a non-empty string"),
    ({"class_name": ""}, "'class_name' must be a non-empty string"),
    ({"pid": "29656"}, "'pid' must be a non-negative integer"),
    ({"num_restarts": -1}, "'num_restarts' must be a non-negative integer"),
    ({"required_resources": {"CPU": "a quarter"}}, "resource 'CPU' must be a number"),
    ({"death_cause": "oom"}, "'death_cause' must be a dict"),
])
def test_parse_actor_names_the_bad_field(change, message):
    with pytest.raises(ValueError, match=message):
        parse_actor({**ALIVE_RESTARTED, **change})


def test_parse_task_and_its_container():
    t = parse_task(RUNNING_TASK)
    assert t == TaskRecord(task_id="3af70994bb3459ffffffffffffffffffffffffff01000000",
                           attempt_number=0, func_name="sleeper", state="RUNNING",
                           job_id="01000000", worker_pid=22226,
                           required_resources={"CPU": 0.5})
    assert task_container_id(t) == "sleeper:3af70994"
    with pytest.raises(ValueError, match="needs 'func_or_class_name' or 'name'"):
        parse_task({**RUNNING_TASK, "func_or_class_name": None, "name": ""})


def test_as_dict_refuses_what_is_not_a_record():
    with pytest.raises(TypeError, match="got int"):
        as_dict(3)


def test_importing_the_source_does_not_import_ray():
    code = "import sys, app.telemetry.ray_workers; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- identity


def test_container_id_is_the_name_or_class_and_id_prefix():
    anon = parse_actor({**ALIVE_RESTARTED, "name": ""})
    assert actor_container_id(anon) == "A:cbcce285"
    assert actor_container_id(parse_actor(ALIVE_RESTARTED)) == "phoenix"
    local = parse_actor({**ALIVE_RESTARTED, "name": "", "class_name": "make.<locals>.Hog"})
    assert actor_container_id(local) == "Hog:cbcce285"


@pytest.mark.parametrize(("raw", "label"), [
    ("Hog", "Hog"), ("make.<locals>.Hog", "Hog"), ("Outer.Inner", "Outer.Inner"),
    ("ServeReplica:app:Model", "ServeReplica:app:Model"),
])
def test_class_label(raw, label):
    assert class_label(raw) == label


def test_duplicate_live_names_get_the_id_prefix_and_a_dead_predecessor_does_not():
    a = ActorRecord("aaaaaaaa11", "W", "ALIVE", name="w")
    b = ActorRecord("bbbbbbbb22", "W", "ALIVE", name="w")
    old = ActorRecord("cccccccc33", "W", "DEAD", name="v")
    new = ActorRecord("dddddddd44", "W", "ALIVE", name="v")
    assert assign_container_ids([a, b, old, new]) == {
        "aaaaaaaa11": "w:aaaaaaaa", "bbbbbbbb22": "w:bbbbbbbb",
        "cccccccc33": "v", "dddddddd44": "v",
    }


def test_limits_come_from_the_resource_requests():
    assert memory_limit_bytes({"CPU": 0.25, "memory": 104857600.0}) == 104857600.0
    assert memory_limit_bytes({"CPU": 0.25}) == math.inf
    assert memory_limit_bytes({"memory": 0.0}) == math.inf
    assert cpu_quota_cores({"CPU": 0.25, "memory": 104857600.0}) == 0.25
    assert cpu_quota_cores({}) == math.inf  # an actor's default num_cpus=0


# --------------------------------------------------------------------------- classification


def test_exit_code_is_not_the_connection_error_code():
    assert exit_code("Worker exits unexpectedly. Worker exits with an exit code 1.") == 1
    assert exit_code(EOF_DETAIL) is None


@pytest.mark.parametrize(("exit_type", "detail", "kind"), [
    ("NODE_OUT_OF_MEMORY", OOM_MESSAGE, EventKind.OOM_KILL),
    ("SYSTEM_ERROR", EOF_DETAIL, EventKind.KILLED),
    ("SYSTEM_ERROR", "Worker exits unexpectedly. Worker exits with an exit code 1.",
     EventKind.EXIT_NONZERO),
    ("USER_ERROR", "Worker exits because there was an exception in the initialization "
     "method (e.g., __init__).", EventKind.EXIT_NONZERO),
    ("INTENDED_USER_EXIT", "Worker exits by an user request. Worker exits with an exit code "
     "0. exit_actor() is called.", EventKind.SUCCESS),
    ("INTENDED_USER_EXIT", "Worker force exited because its job has finished",
     EventKind.SUCCESS),
    ("INTENDED_SYSTEM_EXIT", "Worker exits because the actor is killed. The actor is dead "
     "because it was killed by `ray.kill`.", EventKind.SUCCESS),
    (None, None, EventKind.KILLED),
])
def test_classify_worker_exit(exit_type, detail, kind):
    assert classify_worker_exit(exit_type, detail) is kind


def test_a_sigkill_is_killed_although_its_message_mentions_oom_and_memory():
    assert "OOM" in SIGKILL_CAUSE["actor_died_error_context"]["error_message"]
    kind, detail = classify_actor_death(SIGKILL_CAUSE)
    assert kind is EventKind.KILLED
    assert detail == ("SYSTEM_ERROR: " + EOF_DETAIL)[:399] + "…"  # cut at 400 chars
    assert len(detail) == 400


def test_ray_memory_monitor_kill_is_an_oom_kill():
    kind, detail = classify_actor_death(OOM_CAUSE)
    assert kind is EventKind.OOM_KILL
    assert detail == (
        "Ray memory monitor: 1 worker(s) were killed due to the node running low on memory. "
        "Memory on the node (IP: 192.0.2.2, ID: 64e8b2f6326e391a2d55b5374061b224c9caa9ec9476"
        "2388e7933e2f) was 1.90GB used / 23.54GB limit (0.080755) | OOM kill reason: Memory "
        "usage 2024603648B exceeded threshold of 2013896960B (8.0% of 25276502016B limit)"
    )


@pytest.mark.parametrize(("cause", "kind", "detail"), [
    (RAY_KILL_CAUSE, EventKind.SUCCESS, "ray.kill"),
    (EXIT_ACTOR_CAUSE, EventKind.SUCCESS, "INTENDED_USER_EXIT: Worker exits by an user request."
     " Worker exits with an exit code 0. exit_actor() is called."),
    (SYS_EXIT_1_CAUSE, EventKind.EXIT_NONZERO,
     "SYSTEM_ERROR: Worker exits unexpectedly. Worker exits with an exit code 1."),
    (OUT_OF_SCOPE_CAUSE, EventKind.SUCCESS,
     "OUT_OF_SCOPE: all references to the actor were removed"),
    (OWNER_EXITED_CAUSE, EventKind.SUCCESS, "owner exited (INTENDED_USER_EXIT)"),
    (_died("OWNER_DIED", "The actor is dead because its owner has died. Owner worker exit "
           "type: SYSTEM_ERROR Worker exit detail: …"), EventKind.KILLED,
     "owner died (SYSTEM_ERROR)"),
    (CREATION_FAILED_CAUSE, EventKind.EXIT_NONZERO, "__init__ raised: ValueError: boom"),
    (_died("NODE_DIED", "The actor died because its node has died."), EventKind.KILLED,
     "NODE_DIED: The actor died because its node has died."),
    (_died("RAY_KILL", "killed before creation", never_started=True), None,
     "RAY_KILL before it started"),
    ({"actor_unschedulable_context": {"error_message": "no node fits"}}, None,
     "never scheduled: no node fits"),
    ({"runtime_env_failed_context": {"error_message": "pip failed"}}, EventKind.EXIT_NONZERO,
     "runtime_env setup failed: pip failed"),
    (None, EventKind.KILLED, "dead without a death cause"),
])
def test_classify_actor_death(cause, kind, detail):
    assert classify_actor_death(cause) == (kind, detail)


@pytest.mark.parametrize(("error_type", "kind"), [
    ("OUT_OF_MEMORY", EventKind.OOM_KILL), ("WORKER_DIED", EventKind.KILLED),
    ("NODE_DIED", EventKind.KILLED), ("TASK_EXECUTION_EXCEPTION", EventKind.EXIT_NONZERO),
    ("TASK_CANCELLED", EventKind.SUCCESS), (None, EventKind.EXIT_NONZERO),
])
def test_classify_task_failure(error_type, kind):
    assert classify_task_failure(error_type, "") is kind


# --------------------------------------------------------------------------- lifecycle


def _rec(actor_id, state, *, restarts=0, pid=100, cause=None, name=""):
    return ActorRecord(actor_id, "A", state, name=name, pid=pid, num_restarts=restarts,
                       death_cause=cause)


def test_diff_actors_worked_example():
    seen = {"a1": ActorSeen("ALIVE", 0, 100)}
    now = [_rec("a1", "ALIVE", restarts=1, pid=200), _rec("a2", "DEAD", pid=300,
                                                         cause=RAY_KILL_CAUSE)]
    containers = {"a1": "A:a1", "a2": "A:a2"}
    events, restarts, memory = diff_actors(seen, now, containers, 50.0)
    assert events == [Event("A:a2", 50.0, EventKind.SUCCESS, "ray.kill", "A")]
    assert restarts == [Restart("a1", "A:a1", "A", 1, 100)]
    assert memory == {"a1": ActorSeen("ALIVE", 1, 200), "a2": ActorSeen("DEAD", 0, 300)}


def test_a_death_is_reported_once_and_history_never():
    containers = {"a1": "A:a1", "old": "A:old"}
    dead = [_rec("a1", "DEAD", cause=SIGKILL_CAUSE), _rec("old", "DEAD", cause=OOM_CAUSE)]
    seen = {"a1": ActorSeen("ALIVE", 0, 100), "old": ActorSeen("DEAD", 0, 90)}  # old: primed
    events, _, memory = diff_actors(seen, dead, containers, 1.0)
    assert [(e.container, e.kind) for e in events] == [("A:a1", EventKind.KILLED)]
    events, _, memory = diff_actors(memory, dead, containers, 2.0)
    assert events == []
    events, _, memory = diff_actors(memory, [], containers, 3.0)  # Ray forgot them
    assert (events, memory) == ([], {})


def test_restarts_count_from_zero_for_a_new_actor_and_pid_survives_pending():
    events, restarts, memory = diff_actors({}, [_rec("n", "RESTARTING", restarts=2, pid=0)],
                                           {"n": "A:n"}, 5.0)
    assert events == [] and restarts == [Restart("n", "A:n", "A", 2, 0)]
    assert memory == {"n": ActorSeen("RESTARTING", 2, 0)}
    _, restarts, memory = diff_actors({"n": ActorSeen("ALIVE", 2, 700)},
                                      [_rec("n", "RESTARTING", restarts=3, pid=0)],
                                      {"n": "A:n"}, 6.0)
    assert restarts == [Restart("n", "A:n", "A", 1, 700)]
    assert memory == {"n": ActorSeen("RESTARTING", 3, 700)}


def test_restart_events_report_the_death_behind_the_restart():
    r = Restart("a1", "phoenix", "A", 1, 15458)
    dead = dead_workers_by_pid([_worker(15458, "SYSTEM_ERROR", EOF_DETAIL)])
    killed, restart = restart_events(r, 9.0, dead)
    assert (killed.kind, restart.kind) == (EventKind.KILLED, EventKind.RESTART)
    assert killed.detail.startswith("pid 15458 SYSTEM_ERROR: Worker unexpectedly exits")
    assert restart.detail.startswith(
        "restarted by Ray after killed: SYSTEM_ERROR: Worker unexpectedly exits")
    assert (killed.container, killed.app, killed.ts_s) == ("phoenix", "A", 9.0)

    oom = dead_workers_by_pid([_worker(15458, "NODE_OUT_OF_MEMORY", OOM_MESSAGE)])
    assert [e.kind for e in restart_events(r, 9.0, oom)] == [EventKind.OOM_KILL,
                                                             EventKind.RESTART]
    unknown = restart_events(Restart("a1", "phoenix", "A", 2, 15458), 9.0, {})
    assert [(e.kind, e.detail) for e in unknown] == [
        (EventKind.RESTART, "restarted by Ray after cause unknown")] * 2


def test_dead_workers_by_pid_keeps_the_latest_of_a_reused_pid_and_skips_live_ones():
    first = _worker(7, "SYSTEM_ERROR", EOF_DETAIL, end_ms=1000)
    second = _worker(7, "NODE_OUT_OF_MEMORY", OOM_MESSAGE, end_ms=2000)
    alive = _worker(8, None, None, alive=True)
    assert dead_workers_by_pid([second, first, alive]) == {7: second}


def test_resolve_ended_tasks_worked_example():
    t = parse_task(RUNNING_TASK)
    seen = {t.task_id: TaskSeen(t, "sleeper:3af70994", "python driver.py")}
    failed = {(t.task_id, 0): parse_task(FAILED_TASK)}
    events, pending = resolve_ended_tasks(seen, {}, 10.0, 3.0)  # not reported yet
    assert events == [] and pending[t.task_id].ended_at_s == 10.0
    events, pending2 = resolve_ended_tasks(pending, failed, 11.0, 3.0)
    assert events == [Event("sleeper:3af70994", 11.0, EventKind.KILLED,
                            "WORKER_DIED: RpcError: RPC error: Socket closed rpc_code: 14",
                            "python driver.py")]
    assert pending2 == {}
    assert resolve_ended_tasks(pending, {}, 13.0, 3.0) == ([], {})  # finished: no event


def test_task_restart_events_one_per_attempt():
    t = parse_task({**RUNNING_TASK, "attempt_number": 2})
    events = task_restart_events(t, "sleeper:3af70994", "app", 0, 4.0)
    assert [(e.kind, e.detail) for e in events] == [
        (EventKind.RESTART, "retried by Ray (attempt 2)")] * 2
    assert task_restart_events(t, "sleeper:3af70994", "app", None, 4.0) == []
    assert task_restart_events(t, "sleeper:3af70994", "app", 2, 4.0) == []
