"""Process-tree source: a "container" is a root process and all its descendants (psutil).

This is an I/O edge. The parsing and arithmetic live in small pure helpers that are
tested on plain values: the counters (:mod:`app.telemetry.process_counters`:
:class:`CumulativeSum`, :func:`parse_net_dev`) and how a root process ended
(:mod:`app.telemetry.process_exit`: :func:`classify_exit`, with the events this source
reports); what it watches is a :class:`~app.telemetry.process_target.ProcessTarget`.
Where a process's cgroup is and how its files read is :mod:`app.edges.cgroup_layout` and
:mod:`app.edges.cgroupfs`.

What one :class:`~app.core.sample.Sample` of a target holds
-------------------------------------------------------------
The tree is the root process plus every process whose parent chain leads to it, as
seen in one scan of ``/proc`` per poll. Each process is read inside ``oneshot()``.

``memory_usage_bytes``
    Σ RSS. Pages shared between processes (libraries, copy-on-write after ``fork``)
    are counted once per process, so this over-counts a forking tree — as ``ps`` does.
``memory_working_set_bytes``
    Σ (RSS − shared) = Σ RssAnon: the anonymous memory that cannot be dropped without
    swap (``shared`` in ``/proc/<pid>/statm`` is RssFile + RssShmem). Chosen over USS
    because USS needs ``/proc/<pid>/smaps`` (tens of ms per big process); RSS − shared
    comes from the ``statm`` read we already do.
``memory_limit_bytes``
    The memory limit of the root process's cgroup: the smallest ``memory.limit_in_bytes``
    (v1) or ``memory.max`` (v2) on the path from its cgroup up to the hierarchy's mount
    point (a parent's limit bounds its children). ``inf`` when no memory controller is
    mounted or no directory on the path has a limit; ``nan`` when the cgroup is not
    visible from here (another cgroup namespace) or not readable. ``RLIMIT_AS`` /
    ``RLIMIT_DATA`` are *not* used: they bound virtual size, which is not comparable
    to RSS (a JVM or Go program maps far more than it touches).
``cpu_quota_cores``
    Likewise the tightest CFS quota on the cgroup path (``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` on v1, ``cpu.max`` on v2); ``inf`` when there is none.
``cpu_usage_s_total``
    Σ (user + system) of the live processes plus the last value seen of every process
    that has left the tree (exited, or re-parented away), so the counter never goes
    backwards (see :class:`CumulativeSum`). The CPU a process used between the last
    poll and its exit is not seen. ``children_user``/``children_system`` are not added
    (they would count a reaped child twice). The counter carries on across a restart
    of a ``match`` target: the container is the service, not one pid.
``io_read_bytes_total`` / ``io_write_bytes_total``
    Σ ``read_bytes`` / ``write_bytes`` of ``/proc/<pid>/io`` (what reached the block
    layer, not the page cache), cumulative in the same way; ``nan`` when no process of
    the tree may be read (``/proc/<pid>/io`` needs ptrace rights).
``net_rx_bytes_total`` / ``net_tx_bytes_total``
    psutil has no per-process network counters. When the root process is in a network
    namespace of its own (``/proc/<pid>/ns/net`` differs from ours), the namespace's
    interfaces *are* the container's: the sum over ``/proc/<pid>/net/dev`` without
    ``lo``. Otherwise (it shares our namespace, so the counters would be the whole
    host's) they are ``nan``.
``oom_kills_total``, ``memory_failcnt_total``, throttling
    ``nan``: a process tree does not own its cgroup (it may share it with others), so
    the cgroup's counters are not the container's. OOM kills are reported as events.

:meth:`ProcessTreeSource.last_info` gives per container what a Sample has no field
for: ``open_files`` (Σ open file descriptors, sockets and pipes included, as
``RLIMIT_NOFILE`` counts them), ``nofile_limit``, the pids, the cgroup and namespace.

A process that vanishes or is denied mid-read never makes :meth:`poll` raise: it
drops out of the sum (its counters are kept), and a target whose root cannot be read
gets an ``errors`` entry.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch
from prescale.app.edges.cgroup_layout import (
    CgroupMount,
    Version,
    locate_cgroup,
    parse_mountinfo,
    parse_proc_cgroup,
)
from prescale.app.edges.cgroupfs import (
    cpu_quota_cores_at,
    memory_limit_at,
    oom_kills_at,
    tightest_on_path,
)
from prescale.app.telemetry.process_counters import CumulativeSum, net_totals, parse_net_dev
from prescale.app.telemetry.process_exit import classify_exit, parse_zombie_exit_status
from prescale.app.telemetry.process_target import ProcessTarget

NAN = math.nan
INF = math.inf


# --------------------------------------------------------------------------- I/O helpers


def _try(read: Callable[[], Any]) -> Any:
    """``read()``, or None when access is denied (a vanished process still raises)."""
    try:
        return read()
    except psutil.AccessDenied:
        return None


# --------------------------------------------------------------------------- state


ProcKey = tuple[int, float]  # (pid, create_time): a pid can be reused, the pair cannot


@dataclass
class _CgroupPlace:
    memory: tuple[Version, Path, Path] | None | Literal["hidden"]
    cpu: tuple[Version, Path, Path] | None | Literal["hidden"]


@dataclass
class _State:
    root: psutil.Process | None = None
    root_key: ProcKey | None = None
    ended: bool = False  # the current root ended and was reported
    gone_note: str = ""  # why there is no sample (errors entry while no root runs)
    cpu: CumulativeSum = field(default_factory=CumulativeSum)
    io_read: CumulativeSum = field(default_factory=CumulativeSum)
    io_write: CumulativeSum = field(default_factory=CumulativeSum)
    net_rx: CumulativeSum = field(default_factory=CumulativeSum)
    net_tx: CumulativeSum = field(default_factory=CumulativeSum)
    tree: set[ProcKey] = field(default_factory=set)
    oom_place: tuple[Version, Path] | None = None
    oom_last: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- source


class ProcessTreeSource:
    """Samples of process trees, and the events of their root processes (module doc).

    Example::

        source = ProcessTreeSource([ProcessTarget("web", match=r"gunicorn: master"),
                                    ProcessTarget("job", popen=subprocess.Popen([...]))])
        batch = source.poll()       # samples, events (killed, exit_nonzero, ...), errors
        source.last_info()["web"]   # {"open_files": 42, "pids": [...], ...}
    """

    kind = "process"

    def __init__(
        self, targets: list[ProcessTarget], *, clock: Callable[[], float] = time.time
    ) -> None:
        seen: set[str] = set()
        for t in targets:
            if not isinstance(t, ProcessTarget):
                raise ValueError(f"targets must be ProcessTarget objects, got {t!r}")
            if t.name in seen:
                raise ValueError(f"two process targets are named {t.name!r}")
            seen.add(t.name)
        self.targets = list(targets)
        self.clock = clock
        self._regex = {t.name: re.compile(t.match) for t in targets if t.match is not None}
        self._states = {t.name: _State() for t in targets}
        self._mounts: list[CgroupMount] | None = None
        self._scan: list[tuple[float, int, str]] | None = None
        try:
            self._own_netns: str | None = os.readlink("/proc/self/ns/net")
        except OSError:
            self._own_netns = None

    # -- Source protocol

    def poll(self) -> SourceBatch:
        """One sample per target whose root runs; exit/restart/OOM events since the last
        poll; ``errors[name]`` for a target with no (readable) root process."""
        batch = SourceBatch()
        children = self._children_map()
        self._scan = None  # command lines: read lazily, at most once per poll
        for target in self.targets:
            state = self._states[target.name]
            try:
                self._poll_one(target, state, children, batch)
            except (psutil.Error, OSError, ValueError) as exc:
                batch.errors[target.name] = f"{type(exc).__name__}: {exc}"
        return batch

    def close(self) -> None:
        self._states = {t.name: _State() for t in self.targets}

    def last_info(self) -> dict[str, dict[str, Any]]:
        """Per container, what the last successful poll saw beyond a Sample:
        ``root_pid``, ``pids`` (sorted), ``processes``, ``open_files`` (Σ open file
        descriptors), ``nofile_limit`` (the root's soft ``RLIMIT_NOFILE``; inf =
        unlimited), ``memory_cgroup`` (directory or None), ``netns`` ("own", "shared"
        or "unknown") and ``unreadable`` (processes whose memory could not be read)."""
        return {name: dict(s.info) for name, s in self._states.items() if s.info}

    # -- one target

    def _poll_one(
        self,
        target: ProcessTarget,
        state: _State,
        children: dict[int, list[psutil.Process]],
        batch: SourceBatch,
    ) -> None:
        name, app = target.name, target.app or target.name

        # 1. Did the root end since the previous poll?
        if not state.ended:
            ended, code, how = self._root_ended(target, state)
            if ended:
                state.ended = True
                self._report_end(target, state, code, how, batch)

        # 2. Find a (new) root when there is none.
        if state.root is None or state.ended:
            if target.match is not None:
                if self._scan is None:
                    self._scan = self._cmdlines()  # once per poll, for all match targets
                found = self._resolve(self._regex[name], self._scan)
                if found is None:
                    batch.errors[name] = (state.gone_note + "; " if state.gone_note else "") + (
                        f"no running process matches {target.match!r}"
                    )
                    return
                key = (found.pid, found.create_time())
                if state.root_key is not None and key != state.root_key:
                    batch.events.append(Event(
                        name, float(self.clock()), EventKind.RESTART,
                        f"pid {state.root_key[0]} → pid {found.pid} (matched {target.match!r})",
                        app,
                    ))
                self._adopt(state, found, key)
            elif state.ended:
                batch.errors[name] = state.gone_note
                return
            else:
                assert target.pid is not None
                try:
                    proc = psutil.Process(target.pid)
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.ZombieProcess(target.pid)
                except psutil.NoSuchProcess:
                    batch.errors[name] = f"no running process with pid {target.pid}"
                    return
                self._adopt(state, proc, (proc.pid, proc.create_time()))

        # 3. Read the tree.
        self._sample(target, state, children, batch)

    @staticmethod
    def _adopt(state: _State, proc: psutil.Process, key: ProcKey) -> None:
        state.root, state.root_key, state.ended, state.gone_note = proc, key, False, ""
        state.oom_place, state.oom_last = None, None

    def _root_ended(self, target: ProcessTarget, state: _State) -> tuple[bool, int | None, str]:
        """``(ended, return code or None, how the code is known)``."""
        if target.popen is not None:
            code = target.popen.poll()
            if code is not None:
                return True, code, ""
            return False, None, ""
        root = state.root
        if root is None:
            return False, None, ""
        try:
            if not root.is_running():
                return True, None, "not our child"
            if root.status() != psutil.STATUS_ZOMBIE:
                return False, None, ""
        except psutil.NoSuchProcess:
            return True, None, "not our child"
        try:
            stat = Path(f"/proc/{root.pid}/stat").read_text()
        except OSError:
            return True, None, "not our child"
        code = parse_zombie_exit_status(stat)
        return True, code, "read from the zombie's /proc stat" if code is not None else (
            "not our child")

    def _report_end(
        self, target: ProcessTarget, state: _State, code: int | None, how: str, batch: SourceBatch
    ) -> None:
        name, app = target.name, target.app or target.name
        pid = state.root_key[0] if state.root_key else target.pid
        delta = self._oom_delta(state)
        verdict = classify_exit(code, delta, how)
        if verdict is not None:
            kind, detail = verdict
            batch.events.append(Event(name, float(self.clock()), kind, f"pid {pid}: {detail}",
                                      app))
        if code is None:
            state.gone_note = (
                f"process {pid} exited (exit code unknown: not our child"
                + ("; reported as oom_kill" if verdict else "; no failure event") + ")"
            )
        else:
            state.gone_note = f"process {pid} exited ({verdict[1] if verdict else code})"
        state.tree = set()

    def _oom_delta(self, state: _State) -> int:
        """Rise of the root's memory cgroup oom_kill counter since the previous poll."""
        if state.oom_place is None or state.oom_last is None:
            return 0
        try:
            now = oom_kills_at(*state.oom_place)
        except (OSError, ValueError):
            return 0
        if now is None:
            return 0
        delta = now - state.oom_last
        state.oom_last = now
        return max(0, delta)

    # -- process table

    @staticmethod
    def _children_map() -> dict[int, list[psutil.Process]]:
        out: dict[int, list[psutil.Process]] = {}
        for p in psutil.process_iter(["ppid"]):
            ppid = p.info.get("ppid")
            if ppid is not None:
                out.setdefault(ppid, []).append(p)
        return out

    @staticmethod
    def _cmdlines() -> list[tuple[float, int, str]]:
        """``(create_time, pid, command line)`` of every other live process, oldest first."""
        me = os.getpid()
        out = []
        for p in psutil.process_iter(["cmdline", "create_time", "status"]):
            info = p.info
            if p.pid == me or info.get("status") == psutil.STATUS_ZOMBIE:
                continue
            cmd = info.get("cmdline")
            if not cmd or info.get("create_time") is None:
                continue
            out.append((info["create_time"], p.pid, " ".join(cmd)))
        out.sort()
        return out

    @staticmethod
    def _resolve(
        regex: re.Pattern[str], cmdlines: list[tuple[float, int, str]]
    ) -> psutil.Process | None:
        for _, pid, cmd in cmdlines:
            if regex.search(cmd):
                try:
                    proc = psutil.Process(pid)
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        return proc
                except psutil.NoSuchProcess:
                    continue
        return None

    # -- sampling

    def _sample(
        self,
        target: ProcessTarget,
        state: _State,
        children: dict[int, list[psutil.Process]],
        batch: SourceBatch,
    ) -> None:
        name, app = target.name, target.app or target.name
        root = state.root
        assert root is not None and state.root_key is not None
        procs = [root]
        seen = {root.pid}
        i = 0
        while i < len(procs):
            for child in children.get(procs[i].pid, ()):
                if child.pid not in seen:
                    seen.add(child.pid)
                    procs.append(child)
            i += 1

        ts = float(self.clock())
        cpu: dict[ProcKey, float] = {}
        rd: dict[ProcKey, float] = {}
        wr: dict[ProcKey, float] = {}
        rss = anon = 0.0
        mem_read = unreadable = fds = 0
        pids: list[int] = []
        for p in procs:
            try:
                key: ProcKey = (p.pid, p.create_time())
                with p.oneshot():
                    times = _try(p.cpu_times)
                    mem = _try(p.memory_info)
                    io = _try(p.io_counters)
                    nfd = _try(p.num_fds)
            except psutil.NoSuchProcess:  # also a zombie that can no longer be read
                if p is root:
                    raise
                continue
            pids.append(p.pid)
            cpu[key] = NAN if times is None else times.user + times.system
            rd[key] = NAN if io is None else float(io.read_bytes)
            wr[key] = NAN if io is None else float(io.write_bytes)
            if mem is None:
                unreadable += 1
            else:
                mem_read += 1
                rss += mem.rss
                anon += max(0, mem.rss - mem.shared)
            fds += nfd or 0

        # OOM kills of descendants that vanished since the previous poll.
        keys: set[ProcKey] = set(cpu)
        place = self._cgroup_place(root.pid)
        self._track_oom(target, state, place, keys, ts, batch)
        state.tree = keys

        limit = self._limit(place.memory, memory_limit_at)
        quota = self._limit(place.cpu, cpu_quota_cores_at)
        rx, tx, netns = self._net(root.pid)
        sample = Sample(
            container=name,
            ts_s=ts,
            memory_usage_bytes=float(rss) if mem_read else NAN,
            memory_working_set_bytes=float(anon) if mem_read else NAN,
            memory_limit_bytes=limit,
            cpu_usage_s_total=state.cpu.update(cpu),
            cpu_quota_cores=quota,
            io_read_bytes_total=state.io_read.update(rd),
            io_write_bytes_total=state.io_write.update(wr),
            net_rx_bytes_total=state.net_rx.update(rx),
            net_tx_bytes_total=state.net_tx.update(tx),
            app=app,
        )
        batch.samples.append(sample)
        nofile = _try(lambda: root.rlimit(psutil.RLIMIT_NOFILE))
        state.info = {
            "root_pid": root.pid,
            "pids": sorted(pids),
            "processes": len(pids),
            "open_files": fds,
            "nofile_limit": (
                NAN if nofile is None
                else INF if nofile[0] == psutil.RLIM_INFINITY else float(nofile[0])
            ),
            "memory_cgroup": (
                str(place.memory[1]) if isinstance(place.memory, tuple) else None
            ),
            "netns": netns,
            "unreadable": unreadable,
        }

    def _track_oom(
        self,
        target: ProcessTarget,
        state: _State,
        place: _CgroupPlace,
        keys: set[ProcKey],
        ts: float,
        batch: SourceBatch,
    ) -> None:
        mem = place.memory
        where = (mem[0], mem[1]) if isinstance(mem, tuple) else None
        count = None
        if where is not None:
            try:
                count = oom_kills_at(*where)
            except (OSError, ValueError):
                count = None
        if where != state.oom_place or count is None or state.oom_last is None:
            state.oom_place, state.oom_last = where, count  # new baseline
            return
        delta = count - state.oom_last
        state.oom_last = count
        vanished = sorted(k[0] for k in state.tree - keys if k != state.root_key)
        if delta > 0 and vanished:
            shown = ", ".join(str(p) for p in vanished)
            for _ in range(min(delta, len(vanished))):
                batch.events.append(Event(
                    target.name, ts, EventKind.OOM_KILL,
                    f"memory cgroup {where[1]} oom_kill counter +{delta} while pid(s) {shown} "
                    "of the tree vanished",
                    target.app or target.name,
                ))

    def _cgroup_place(self, pid: int) -> _CgroupPlace:
        if self._mounts is None:
            try:
                self._mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
            except OSError:
                self._mounts = []
        try:
            own = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
        except OSError:
            return _CgroupPlace("hidden", "hidden")
        return _CgroupPlace(
            locate_cgroup(own, self._mounts, "memory"), locate_cgroup(own, self._mounts, "cpu")
        )

    @staticmethod
    def _limit(
        place: tuple[Version, Path, Path] | None | Literal["hidden"],
        read_at: Callable[[Version, Path], float | None],
    ) -> float:
        if place is None:
            return INF  # no such controller: nothing limits the process
        if place == "hidden":
            return NAN
        version, d, top = place
        try:
            return tightest_on_path(d, top, lambda p: read_at(version, p))
        except (OSError, ValueError):
            return NAN

    def _net(self, pid: int) -> tuple[dict[Hashable, float], dict[Hashable, float], str]:
        """Per network namespace ``{netns: rx}``, ``{netns: tx}`` (empty when the root
        shares our namespace) and "own" / "shared" / "unknown"."""
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            return {}, {}, "unknown"
        if self._own_netns is None:
            return {}, {}, "unknown"
        if ns == self._own_netns:
            return {}, {}, "shared"
        try:
            rx, tx = net_totals(parse_net_dev(Path(f"/proc/{pid}/net/dev").read_text()))
        except (OSError, ValueError):
            return {ns: NAN}, {ns: NAN}, "own"
        return {ns: rx}, {ns: tx}, "own"
