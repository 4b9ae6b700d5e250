"""`prescale demo`: real workloads in real cgroups, the real loop, a measured summary.

1. Creates ``prescale-demo-<pid>`` beneath this process's own cgroup in each v1
   controller (memory, cpu, cpuacct, blkio), with one child per workload: ``leaker``
   (grows until its limit), ``steady`` (a constant working set) and ``cpuhog``.
2. Starts the workloads from ``scripts/workloads`` inside them.
3. Runs the control loop (embedded Ray + actors) with ``cgroup.roots`` set to the
   demo directories, for ``--duration`` seconds, in the chosen mode.
4. Stops everything, reads the kernel's counters (``memory.oom_control`` oom_kill,
   final limits) and the decision log of this run, removes the cgroups, and
   reports per container: OOM kills, actions, lead times, final limits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroupfs import own_cgroup_paths
from prescale.app.loop.records import ActionRecord, DecisionRecord, OutcomeRecord
from prescale.app.settings import Mode, Settings
from prescale.app.store.decision_log import read_records
from prescale.app.store.history import HistoryStore
from prescale.app.store.run_lock import LockHeld, RunLock

CONTROLLERS = ("memory", "cpu", "cpuacct", "blkio")
REQUIRED = ("memory", "cpu", "cpuacct")
WORKLOADS = ("leaker", "steady", "cpuhog")


class DemoError(Exception):
    """The demo cannot run on this machine; the message says why."""


@dataclass
class DemoTree:
    """The demo's cgroup directories: one parent per controller, one child per workload."""

    parents: dict[str, Path]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def child(self, controller: str, name: str) -> Path:
        return self.parents[controller] / name


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def create_tree(tag: str) -> DemoTree:
    own = own_cgroup_paths()
    parents: dict[str, Path] = {}
    for ctl in CONTROLLERS:
        base = lay.V1_MOUNT / ctl
        if ctl not in own or not base.is_dir():
            if ctl in REQUIRED:
                raise DemoError(
                    f"cgroup v1 controller {ctl!r} is not mounted at {base}; the demo needs "
                    f"writable v1 memory, cpu and cpuacct controllers"
                )
            continue
        parent = base / own[ctl].lstrip("/") / f"prescale-demo-{tag}"
        try:
            parent.mkdir()
            for name in WORKLOADS:
                (parent / name).mkdir()
        except OSError as exc:
            for p in parents.values():
                _remove_dir_tree(p)
            _remove_dir_tree(parent)
            raise DemoError(f"cannot create demo cgroup under {parent.parent}: {exc}") from exc
        parents[ctl] = parent
    return DemoTree(parents)


def _remove_dir_tree(parent: Path) -> None:
    if not parent.exists():
        return
    for child in sorted(parent.iterdir()):
        if child.is_dir():
            _rmdir_retry(child)
    _rmdir_retry(parent)


def _rmdir_retry(path: Path) -> None:
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)  # tasks still exiting
    path.rmdir()


def remove_tree(tree: DemoTree) -> None:
    for proc in tree.procs.values():
        _stop(proc)
    for parent in tree.parents.values():
        _remove_dir_tree(parent)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the demo dies, even by a signal or an
    abort that skips the demo's clean-up (Linux PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_workloads(tree: DemoTree, s: Settings) -> None:
    d = s.demo
    limits = {
        "leaker": int(d.leaker_limit_bytes),
        "steady": int(d.steady_limit_bytes),
        "cpuhog": int(d.hog_limit_bytes),
    }
    args = {
        "leaker": ["--rate-bytes-per-s", str(int(d.leak_rate_bytes_per_s)),
                   "--cap-bytes", str(int(d.leak_cap_bytes))],
        "steady": ["--bytes", str(int(d.steady_bytes))],
        "cpuhog": [],
    }
    for name in WORKLOADS:
        mem = tree.child("memory", name)
        _write(mem / lay.V1_MEMORY_LIMIT, lay.format_memory_limit(limits[name]))
        cpu = tree.child("cpu", name)
        period_us = int((cpu / lay.V1_CPU_PERIOD).read_text())
        _write(cpu / lay.V1_CPU_QUOTA, str(int(d.cpu_quota_cores * period_us)))
        procs_args: list[str] = []
        for ctl in tree.parents:
            procs_args += ["--cgroup-procs", str(tree.child(ctl, name) / lay.CGROUP_PROCS)]
        tree.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"prescale.scripts.workloads.{name}", *procs_args, *args[name]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parent.parent,
            preexec_fn=_die_with_parent,
        )
    # wait until every workload has joined its memory cgroup
    deadline = time.monotonic() + 15
    for name in WORKLOADS:
        procs_file = tree.child("memory", name) / lay.CGROUP_PROCS
        while not procs_file.read_text().strip():
            if tree.procs[name].poll() is not None or time.monotonic() > deadline:
                raise DemoError(f"workload {name} did not start (exit {tree.procs[name].poll()})")
            time.sleep(0.05)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _oom_kills(mem_dir: Path) -> int:
    count = lay.parse_oom_kills((mem_dir / lay.V1_OOM_CONTROL).read_text())
    if count is None:
        raise DemoError(f"{mem_dir}/{lay.V1_OOM_CONTROL} has no oom_kill counter (kernel too old)")
    return count


def summarise(tree: DemoTree, s: Settings, run_id: str, ticks: int, wall_s: float) -> dict:
    log = list(read_records(HistoryStore(s.history_uri()), run_id=run_id))
    containers = []
    for name in WORKLOADS:
        mem = tree.child("memory", name)
        cpu = tree.child("cpu", name)
        quota = _read_int(cpu / lay.V1_CPU_QUOTA)
        period = _read_int(cpu / lay.V1_CPU_PERIOD)
        actions = [
            {k: getattr(r, k) for k in ("action_id", "ts_s", "tier", "p_fail",
                                        "time_to_limit_s", "old_limit", "requested_limit",
                                        "new_limit", "result")}
            for r in log if isinstance(r, ActionRecord) and r.container == name
        ]
        outcomes = [r for r in log if isinstance(r, OutcomeRecord) and r.container == name]
        proc = tree.procs[name]
        containers.append({
            "name": name,
            "oom_kills": _oom_kills(mem),
            "exit_code": proc.poll(),
            "actions": actions,
            "scale_ups": sum(1 for a in actions if a["result"] == "applied"),
            "lead_times_s": [round(o.lead_time_s, 2) for o in outcomes
                             if o.lead_time_s is not None],
            "outcomes": [o.outcome for o in outcomes],
            "decisions": sum(1 for r in log
                             if isinstance(r, DecisionRecord) and r.container == name),
            "final_limit_bytes": _read_int(mem / lay.V1_MEMORY_LIMIT),
            "peak_usage_bytes": _read_int(mem / lay.V1_MEMORY_MAX_USAGE),
            "final_cpu_quota_cores": (None if quota is None or quota < 0 or not period
                                      else round(quota / period, 3)),
        })
    return {
        "run_id": run_id,
        "mode": s.mode.value,
        "duration_s": s.demo.duration_s,
        "wall_s": round(wall_s, 1),
        "ticks": ticks,
        "data_dir": str(s.data_dir),
        "containers": containers,
    }


def run_demo(settings: Settings, *, quiet: bool = True) -> dict[str, Any]:
    """Run the whole demo and return the summary. Cleans up whatever happens."""
    from prescale.actors import runtime  # Ray only when the demo really runs

    if os.geteuid() != 0:
        raise DemoError("the demo creates cgroups and must run as root")
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tree = create_tree(tag)
    run_id = f"demo-{settings.mode.value}-{tag}"
    handles = None
    lock = RunLock(Path(settings.data_dir).resolve(), "prescale demo")
    try:
        s = settings.model_copy(update={
            "cgroup": settings.cgroup.model_copy(
                update={"roots": list(tree.parents.values()), "discover": True, "watch": []}),
            "data_dir": Path(settings.data_dir).resolve(),
        })
        try:
            lock.acquire()
        except LockHeld as exc:
            raise DemoError(str(exc)) from None
        start_workloads(tree, s)
        runtime.init_ray(s, quiet=quiet)
        handles = runtime.start_actors(s, run_id)
        t0 = time.monotonic()
        ticks = runtime.run_loop(handles, s, duration_s=s.demo.duration_s)
        wall = time.monotonic() - t0
        summary = summarise(tree, s, run_id, ticks, wall)
        if s.mode is Mode.OFF:
            summary["note"] = "mode off: observed only, no decisions"
        return summary
    finally:
        if handles is not None:
            runtime.stop_actors(handles)
        remove_tree(tree)
        lock.release()
