"""`prescale demo`: real workloads in real cgroups, the real loop, a measured summary.

1. Creates ``prescale-demo-<pid>`` beneath this process's own cgroup in each v1
   controller (memory, cpu, cpuacct, blkio), with one child per workload: ``leaker``
   (grows until its limit), ``steady`` (a constant working set) and ``cpuhog``.
2. Starts ``steady`` and ``cpuhog`` (``scripts/workloads``) in them, then the control
   loop's actors (embedded Ray) with ``cgroup.roots`` set to the demo directories, then
   the ``leaker``: however long Ray takes to start (tens of seconds on a busy machine,
   longer than the leaker takes to reach its limit), its whole growth is under the loop,
   while the services it runs beside were already running (a start-up ramp seen by the
   loop looks like growth).
3. Runs the loop for ``--duration`` seconds, in the chosen mode, with a live view on
   stderr (:class:`LiveView`: a table redrawn every few seconds on a terminal, a few
   plain lines every few seconds otherwise; stdout stays free for ``--json``).
4. Stops everything, reads the kernel's counters (``memory.oom_control`` oom_kill,
   final limits) and the decision log of this run, removes the cgroups, and
   reports per container: OOM kills, actions, scale-ups and their lead times, final
   limits (:func:`summarise`).
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
from prescale.app.status_view import fmt_bytes, fmt_cores, fmt_last_action, fmt_p_fail
from prescale.app.store import jsonfile
from prescale.app.store.decision_log import read_records
from prescale.app.store.history import HistoryStore
from prescale.app.store.loop_files import STATUS
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


def set_first_limits(tree: DemoTree, s: Settings, names: tuple[str, ...] = WORKLOADS
                     ) -> None:
    """Each workload's first memory limit and CPU quota (``demo.*`` settings)."""
    d = s.demo
    limits = {
        "leaker": int(d.leaker_limit_bytes),
        "steady": int(d.steady_limit_bytes),
        "cpuhog": int(d.hog_limit_bytes),
    }
    for name in names:
        mem = tree.child("memory", name)
        _write(mem / lay.V1_MEMORY_LIMIT, lay.format_memory_limit(limits[name]))
        cpu = tree.child("cpu", name)
        period_us = int((cpu / lay.V1_CPU_PERIOD).read_text())
        _write(cpu / lay.V1_CPU_QUOTA, str(int(d.cpu_quota_cores * period_us)))


def start_workloads(tree: DemoTree, s: Settings, names: tuple[str, ...] = WORKLOADS, *,
                    set_limits: bool = True) -> None:
    """Start ``names`` in their cgroups (their first limits set first, unless
    ``set_limits`` is False: already set); returns once each has joined its memory
    cgroup."""
    d = s.demo
    if set_limits:
        set_first_limits(tree, s, names)
    args = {
        "leaker": ["--rate-bytes-per-s", str(int(d.leak_rate_bytes_per_s)),
                   "--cap-bytes", str(int(d.leak_cap_bytes))],
        "steady": ["--bytes", str(int(d.steady_bytes))],
        "cpuhog": [],
    }
    for name in names:
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
    for name in names:
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
    """The demo's result, per container: OOM kills, the actions, ``scale_ups`` (applied
    increases) with ``lead_times_s`` (for each applied memory scale-up whose old limit
    usage then crossed: how long before), ``recommendations`` (dry runs, recommend mode)
    with ``recommendation_lead_times_s`` (from a recommendation to the OOM kill it
    foresaw: the time an operator following it would have had), ``decisions`` (rows of
    the decision log) and ``decided_ticks`` (the ticks they stand for: a decision held
    back tick after tick is logged once per episode), final limits."""
    log = list(read_records(HistoryStore(s.history_uri()), run_id=run_id))
    containers = []
    for name in WORKLOADS:
        mem = tree.child("memory", name)
        cpu = tree.child("cpu", name)
        quota = _read_int(cpu / lay.V1_CPU_QUOTA)
        period = _read_int(cpu / lay.V1_CPU_PERIOD)
        mine = [r for r in log if r.container == name]
        acts = [r for r in mine if isinstance(r, ActionRecord)]
        actions = [
            {k: getattr(r, k) for k in ("action_id", "ts_s", "tier", "p_fail",
                                        "time_to_limit_s", "old_limit", "requested_limit",
                                        "new_limit", "result")}
            for r in acts
        ]
        ups = {r.action_id for r in acts if r.result == "applied" and r.new_limit > r.old_limit}
        dry = {r.action_id for r in acts if r.result == "dry_run"}
        outcomes = [r for r in mine if isinstance(r, OutcomeRecord)]
        decisions = [r for r in mine if isinstance(r, DecisionRecord)]
        proc = tree.procs[name]
        containers.append({
            "name": name,
            "oom_kills": _oom_kills(mem),
            "exit_code": proc.poll(),
            "actions": actions,
            "scale_ups": len(ups),
            "lead_times_s": _leads(outcomes, ups),
            "recommendations": len(dry),
            "recommendation_lead_times_s": _leads(outcomes, dry),
            "outcomes": [o.outcome for o in outcomes],
            "decisions": len(decisions),
            "decided_ticks": sum(1 + d.repeats for d in decisions),
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


def _leads(outcomes: list[OutcomeRecord], action_ids: set[str]) -> list[float]:
    """The lead times of the outcomes of ``action_ids`` (those that have one)."""
    return [round(o.lead_time_s, 2) for o in outcomes
            if o.action_id in action_ids and o.lead_time_s is not None]


class LiveView:
    """What the demo shows while it runs, on stderr (stdout stays free for ``--json``):
    each container's memory usage and limit, CPU usage and quota, p_fail per tier and
    last action, from the loop's own ``status.json`` after a tick.

    On a terminal a rich table redrawn in place every ``every_s`` seconds; otherwise
    (a pipe, a log file) one plain line per container every ``plain_every_s`` seconds,
    e.g. ``"[ 10 s] leaker  memory 52.0 MiB / 128.0 MiB  cpu 0.05 / 0.25 cores  p_fail
    memory 0.93 cpu <0.001  last: memory applied 128.0 MiB → 192.0 MiB, 3 s ago"``.
    A snapshot of another run (an old ``status.json``) or none yet shows nothing.
    """

    def __init__(self, status_path: Path, run_id: str, duration_s: float, *,
                 console: Any = None, every_s: float = 2.0, plain_every_s: float = 5.0,
                 clock: Any = time.monotonic) -> None:
        from rich.console import Console

        self.path, self.run_id, self.duration_s = status_path, run_id, duration_s
        self.console = console if console is not None else Console(stderr=True)
        self.live_mode = bool(self.console.is_terminal)
        self.every_s = every_s if self.live_mode else plain_every_s
        self.clock = clock
        self.t0 = clock()
        self.last_shown: float | None = None
        self.live: Any = None
        self.shown = 0  #: refreshes so far

    def start(self) -> None:
        if self.live_mode:
            from rich.live import Live

            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __call__(self, summary: dict[str, Any] | None = None) -> None:
        """After a tick (``runtime.run_loop``'s ``on_tick``): show, if it is time."""
        now = self.clock()
        if self.last_shown is not None and now - self.last_shown < self.every_s:
            return
        snap = jsonfile.read_newest(self.path)
        if not isinstance(snap, dict) or snap.get("run_id") != self.run_id:
            return
        self.last_shown = now
        self.shown += 1
        if self.live is not None:
            self.live.update(self.table(snap, time.time()), refresh=True)
        else:
            for line in self.lines(snap, time.time()):
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _rows(self, snap: dict[str, Any], now_s: float) -> list[tuple[str, ...]]:
        rows = []
        for c in snap.get("containers") or []:
            rows.append((
                str(c.get("name")),
                f"{fmt_bytes(c.get('memory_usage_bytes'))} / "
                f"{fmt_bytes(c.get('memory_limit_bytes'))}",
                f"{fmt_cores(c.get('cpu_usage_cores'))} / {fmt_cores(c.get('cpu_quota_cores'))}",
                fmt_p_fail(c.get("p_fail_memory")).plain,
                fmt_p_fail(c.get("p_fail_cpu")).plain,
                fmt_last_action(c.get("last_action"), now_s),
            ))
        return rows

    def _title(self, snap: dict[str, Any]) -> str:
        elapsed = self.clock() - self.t0
        return (f"prescale demo, mode {snap.get('mode', '?')}: tick {snap.get('tick', '?')}, "
                f"{elapsed:.0f} s of {self.duration_s:g} s")

    def table(self, snap: dict[str, Any], now_s: float) -> Any:
        from rich.table import Table

        t = Table(title=self._title(snap))
        for col in ("container", "memory / limit", "cpu / quota", "p_fail memory",
                    "p_fail cpu", "last action"):
            t.add_column(col)
        for row in self._rows(snap, now_s):
            t.add_row(*row)
        return t

    def lines(self, snap: dict[str, Any], now_s: float) -> list[str]:
        elapsed = f"[{self.clock() - self.t0:3.0f} s]"
        return [f"{elapsed} {name:7} memory {mem}  cpu {cpu}  p_fail memory {pm} cpu {pc}  "
                f"last: {last}" for name, mem, cpu, pm, pc, last in self._rows(snap, now_s)]


def run_demo(settings: Settings, *, quiet: bool = True, live: bool = True) -> dict[str, Any]:
    """Run the whole demo and return the summary. Cleans up whatever happens.
    ``live``: show the :class:`LiveView` on stderr while the loop runs."""
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
        set_first_limits(tree, s)  # the loop sees every limit from its first tick
        start_workloads(tree, s, ("steady", "cpuhog"))  # already running when it starts
        runtime.init_ray(s, quiet=quiet)
        handles = runtime.start_actors(s, run_id)
        # after Ray: the leak's whole growth is under the loop
        start_workloads(tree, s, ("leaker",), set_limits=False)
        t0 = time.monotonic()
        view = LiveView(Path(s.data_dir) / STATUS, run_id, s.demo.duration_s) if live else None
        try:
            if view is not None:
                view.start()
            ticks = runtime.run_loop(handles, s, duration_s=s.demo.duration_s, on_tick=view)
        finally:
            if view is not None:
                view.stop()
        wall = time.monotonic() - t0
        runtime.close_loop(handles)  # the held decisions' episodes still open are logged
        summary = summarise(tree, s, run_id, ticks, wall)
        if s.mode is Mode.OFF:
            summary["note"] = "mode off: observed only, no decisions"
        return summary
    finally:
        if handles is not None:
            runtime.stop_actors(handles)
        remove_tree(tree)
        lock.release()
