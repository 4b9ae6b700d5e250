"""ProcessTreeSource against real processes: memory growth, a grandchild in the tree,
a CPU counter that survives a child's exit, kills and exit codes, a restarted service
followed by its command line, a private network namespace, and (as root with cgroup v1)
a real OOM kill under a real memory limit. Pure helpers are checked on worked examples.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from prescale.app.core.sample import EventKind, Sample, SourceBatch
from prescale.app.edges.cgroup_layout import (
    V1_MOUNT,
    CgroupMount,
    cgroup_dir,
    locate_cgroup,
    parse_mountinfo,
)
from prescale.app.edges.cgroupfs import own_cgroup_paths
from prescale.app.telemetry.process import ProcessTreeSource
from prescale.app.telemetry.process_counters import CumulativeSum, net_totals, parse_net_dev
from prescale.app.telemetry.process_exit import (
    KILLED_DETAIL,
    classify_exit,
    parse_zombie_exit_status,
)
from prescale.app.telemetry.process_target import ProcessTarget
from tests.cgroup_support import remove_cgroups, v1_unavailable_reason
from tests.worker_protocol import command

MiB = 2**20

# One command per stdin line; answers "ok[ extra]" when done.
WORKER = r"""
import os, socket, subprocess, sys, threading, time
held, kids = [], []
GRANDCHILD = '''
import sys, time
mib, delay = int(sys.argv[1]), float(sys.argv[2])
end = time.process_time() + 0.3
while time.process_time() < end:   # burn 0.3 s of CPU
    pass
print("ok", flush=True)
time.sleep(delay)
held = b"\x01" * (mib * 1048576)   # then allocate (touching every page)
time.sleep(120)
'''
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    extra = ""
    if cmd == "alloc":
        held.append(b"\x01" * (int(arg) * 1048576))
    elif cmd == "spin":
        end = time.process_time() + float(arg)
        while time.process_time() < end:
            pass
    elif cmd == "spawn":  # "spawn MiB delay": a grandchild that burns CPU, waits, allocates
        mib, delay = arg.split()
        kid = subprocess.Popen([sys.executable, "-I", "-c", GRANDCHILD, mib, delay],
                               stdout=subprocess.PIPE)
        kid.stdout.readline()
        threading.Thread(target=kid.wait, daemon=True).start()  # reap it when it dies
        kids.append(kid)
        extra = f" {kid.pid}"
    elif cmd == "killkids":
        for kid in kids:
            kid.kill()
            kid.wait()
    elif cmd == "send":  # "send N": N UDP datagrams of 1000 bytes to 10.9.9.2:9
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(int(arg)):
            s.sendto(b"x" * 1000, ("10.9.9.2", 9))
        s.close()
    print("ok" + extra, flush=True)
"""


class Procs:
    """Processes started by a test (each in its own session); all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def worker(self, prefix: list[str] | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-I", "-c", WORKER]
        return self.start(
            (prefix or []) + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the grandchildren too
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.cleanup()


def one(batch: SourceBatch, name: str) -> Sample:
    [s] = [x for x in batch.samples if x.container == name]
    return s


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` no longer exists (reaped), or is a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} still running after {timeout} s")


# --------------------------------------------------------------------------- pure helpers


def test_cumulative_sum_worked_example() -> None:
    s = CumulativeSum()
    assert math.isnan(s.update({}))
    assert s.update({"a": 1.0, "b": 2.0}) == 3.0
    assert s.update({"a": 1.5}) == 3.5  # b left: its 2.0 stays
    assert s.update({"a": math.nan, "c": 0.5}) == 4.0  # a unreadable: its 1.5 stands in
    assert s.update({"c": 0.25}) == 4.0  # never backwards (c cannot shrink)
    assert s.update({}) == 4.0


def test_parse_net_dev_and_totals() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
        " errs drop fifo colls carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1"
        "    0    0    0     0       0          0\n"
        "  eth0:    5000      40    0    0    0     0          0         0     7000      50"
        "    0    0    0     0       0          0\n"
    )
    ifaces = parse_net_dev(text)
    assert ifaces == {"lo": (100, 100), "eth0": (5000, 7000)}
    assert net_totals({**ifaces, "eth1": (1, 2)}) == (5001.0, 7002.0)
    assert net_totals({"lo": (100, 100)}) == (0.0, 0.0)
    with pytest.raises(ValueError, match="expected 16 counters"):
        parse_net_dev("eth0: 1 2 3\n")


def test_mountinfo_cgroup_dir_and_locate() -> None:
    text = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 /sub /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw\n"
    )
    mounts = parse_mountinfo(text)
    assert mounts == [
        CgroupMount(Path("/sys/fs/cgroup/cpu"), "/", "v1", frozenset({"cpu"})),
        CgroupMount(Path("/sys/fs/cgroup/memory"), "/", "v1", frozenset({"memory"})),
        CgroupMount(Path("/sys/fs/cgroup/uni fied"), "/sub", "v2", frozenset()),
    ]
    mem, v2 = mounts[1], mounts[2]
    assert cgroup_dir(mem, "/a/b") == Path("/sys/fs/cgroup/memory/a/b")
    assert cgroup_dir(mem, "/") == Path("/sys/fs/cgroup/memory")
    assert cgroup_dir(v2, "/sub/x") == Path("/sys/fs/cgroup/uni fied/x")
    assert cgroup_dir(v2, "/other") is None
    assert locate_cgroup({"memory": "/a", "unified": "/sub/x"}, mounts, "memory") == (
        "v1", Path("/sys/fs/cgroup/memory/a"), Path("/sys/fs/cgroup/memory"))
    assert locate_cgroup({"unified": "/sub/x"}, mounts[2:], "memory") == (
        "v2", Path("/sys/fs/cgroup/uni fied/x"), Path("/sys/fs/cgroup/uni fied"))
    assert locate_cgroup({"unified": "/elsewhere"}, mounts[2:], "memory") == "hidden"
    assert locate_cgroup({"memory": "/a"}, [], "memory") is None


def test_classify_exit_worked_examples() -> None:
    assert classify_exit(0) == (EventKind.SUCCESS, "exit code 0")
    assert classify_exit(3) == (EventKind.EXIT_NONZERO, "exit code 3")
    assert classify_exit(3, 1) == (EventKind.EXIT_NONZERO, "exit code 3")
    assert classify_exit(-9) == (EventKind.KILLED, KILLED_DETAIL)
    assert classify_exit(-9, 1) == (
        EventKind.OOM_KILL, "SIGKILL; memory cgroup oom_kill counter +1")
    assert classify_exit(-15, 2) == (EventKind.KILLED, "SIGTERM")
    assert classify_exit(-200) == (EventKind.KILLED, "signal 200")
    assert classify_exit(None, 1, "not our child") == (
        EventKind.OOM_KILL,
        "exit code unknown; memory cgroup oom_kill counter +1 (not our child)")
    assert classify_exit(None, 0) is None


def test_parse_zombie_exit_status() -> None:
    tail = " ".join(["0"] * 45)  # fields 7..51
    zombie = f"42 (a) b) Z 1 42 42 {tail} 768"
    assert parse_zombie_exit_status(zombie) == 3
    assert parse_zombie_exit_status(zombie[:-3] + "9") == -9
    assert parse_zombie_exit_status(zombie.replace(") Z ", ") S ")) is None
    assert parse_zombie_exit_status("garbage") is None


def test_target_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="'a': give exactly one of pid or match"):
        ProcessTarget("a")
    with pytest.raises(ValueError, match="give exactly one of pid or match"):
        ProcessTarget("a", pid=1, match="x")
    with pytest.raises(ValueError, match=r"bad regex in match '\(unclosed'"):
        ProcessTarget("a", match="(unclosed")
    with pytest.raises(ValueError, match="pid must be a positive integer, got 0"):
        ProcessTarget("a", pid=0)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        ProcessTarget("", pid=1)
    with pytest.raises(ValueError, match="two process targets are named 'a'"):
        ProcessTreeSource([ProcessTarget("a", pid=1), ProcessTarget("a", pid=2)])


# --------------------------------------------------------------------------- real processes


def test_tree_memory_grandchild_and_monotone_cpu(procs: Procs) -> None:
    child = procs.worker()
    source = ProcessTreeSource([ProcessTarget("box", popen=child, app="svc")])
    assert command(child, "spin 0.01") == ""
    s0 = one(source.poll(), "box")
    assert (s0.app, s0.memory_limit_bytes > 0, math.isnan(s0.net_rx_bytes_total)) == (
        "svc", True, True)  # we share the test's network namespace: no network counters
    assert source.last_info()["box"]["netns"] == "shared"

    assert command(child, "alloc 40") == ""
    s1 = one(source.poll(), "box")
    assert s1.memory_usage_bytes - s0.memory_usage_bytes >= 40 * MiB
    assert s1.memory_working_set_bytes - s0.memory_working_set_bytes >= 40 * MiB
    assert s1.memory_working_set_bytes <= s1.memory_usage_bytes

    grandchild = int(command(child, "spawn 8 0") or 0)  # burns 0.3 s CPU, holds 8 MiB
    time.sleep(0.2)
    s2 = one(source.poll(), "box")
    info = source.last_info()["box"]
    assert info["pids"] == sorted([child.pid, grandchild])
    assert info["root_pid"] == child.pid and info["processes"] == 2
    assert info["open_files"] >= 3  # at least the child's stdin, stdout, stderr
    assert s2.memory_usage_bytes - s1.memory_usage_bytes >= 8 * MiB
    assert s2.cpu_usage_s_total - s1.cpu_usage_s_total >= 0.27  # the grandchild's burn

    assert command(child, "killkids") == ""  # the grandchild exits and is reaped
    s3 = one(source.poll(), "box")
    assert source.last_info()["box"]["pids"] == [child.pid]
    assert s3.cpu_usage_s_total >= s2.cpu_usage_s_total  # its 0.3 s are kept
    assert command(child, "spin 0.3") == ""
    s4 = one(source.poll(), "box")
    assert s4.cpu_usage_s_total - s3.cpu_usage_s_total >= 0.27  # 10 ms ticks
    assert s4.ts_s > s3.ts_s

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    batches = [source.poll() for _ in range(3)]
    events = [e for b in batches for e in b.events]
    assert [(e.container, e.kind, e.detail, e.app) for e in events] == [
        ("box", EventKind.KILLED, f"pid {child.pid}: {KILLED_DETAIL}", "svc")
    ]
    assert all(b.samples == [] for b in batches)
    assert batches[-1].errors == {"box": f"process {child.pid} exited ({KILLED_DETAIL})"}


def test_exit_codes_of_our_children(procs: Procs) -> None:
    py = [sys.executable, "-I", "-c"]
    three = procs.start(py + ["import sys; sys.exit(3)"])
    zero = procs.start(py + ["pass"])
    term = procs.start(py + ["import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    alive = procs.start(py + ["import time; time.sleep(60)"])
    source = ProcessTreeSource([
        ProcessTarget("three", popen=three),
        ProcessTarget("zero", popen=zero),
        ProcessTarget("term", popen=term),
        ProcessTarget("alive", popen=alive),
    ])
    for p in (three, zero, term):
        wait_gone(p.pid)
    events = [e for _ in range(3) for e in source.poll().events]
    assert sorted((e.container, e.kind, e.detail) for e in events) == [
        ("term", EventKind.KILLED, f"pid {term.pid}: SIGTERM"),
        ("three", EventKind.EXIT_NONZERO, f"pid {three.pid}: exit code 3"),
        ("zero", EventKind.SUCCESS, f"pid {zero.pid}: exit code 0"),
    ]
    assert (three.returncode, zero.returncode, term.returncode) == (3, 0, -signal.SIGTERM)
    last = source.poll()
    assert [s.container for s in last.samples] == ["alive"]
    assert sorted(last.errors) == ["term", "three", "zero"]


def test_exit_of_a_process_that_is_not_our_child(procs: Procs) -> None:
    py = [sys.executable, "-I", "-c"]
    # Not passed as popen: to the source these are strangers. The first stays a zombie
    # (nobody reaps it yet), so the kernel still holds its exit status.
    zombie = procs.start(py + ["import sys, time; time.sleep(0.3); sys.exit(3)"])
    reaped = procs.start(py + ["import sys, time; time.sleep(0.3); sys.exit(3)"])
    source = ProcessTreeSource([
        ProcessTarget("zombie", pid=zombie.pid), ProcessTarget("reaped", pid=reaped.pid)])
    first = source.poll()
    assert sorted(s.container for s in first.samples) == ["reaped", "zombie"]
    wait_gone(zombie.pid)
    reaped.wait(timeout=10)  # reaped before the source looks: the exit code is gone
    events = [e for _ in range(2) for e in source.poll().events]
    assert [(e.container, e.kind, e.detail) for e in events] == [
        ("zombie", EventKind.EXIT_NONZERO,
         f"pid {zombie.pid}: exit code 3 (read from the zombie's /proc stat)")
    ]
    errors = source.poll().errors
    assert errors["reaped"] == (
        f"process {reaped.pid} exited (exit code unknown: not our child; no failure event)")
    gone = ProcessTreeSource([ProcessTarget("ghost", pid=4_000_000)]).poll()
    assert (gone.samples, gone.errors) == ([], {"ghost": "no running process with pid 4000000"})


def test_match_target_follows_a_restarted_service(procs: Procs) -> None:
    token = f"prescale-svc-{secrets.token_hex(6)}"
    argv = [sys.executable, "-I", "-c", "import sys, time; time.sleep(120)", token]
    source = ProcessTreeSource([ProcessTarget("svc", match=rf"time\.sleep\(120\) {token}$")])
    none = source.poll()
    assert none.errors == {"svc": f"no running process matches 'time\\\\.sleep\\\\(120\\\\) "
                                  f"{token}$'"}
    first = procs.start(argv)
    time.sleep(0.1)
    b1 = source.poll()
    assert (one(b1, "svc").container, source.last_info()["svc"]["root_pid"]) == (
        "svc", first.pid)
    first.kill()
    first.wait(timeout=10)
    b2 = source.poll()
    assert (b2.samples, b2.events) == ([], [])  # exit code unknown (not given as popen)
    assert b2.errors["svc"].startswith(
        f"process {first.pid} exited (exit code unknown: not our child; no failure event); "
        "no running process matches")
    second = procs.start(argv)
    time.sleep(0.1)
    b3 = source.poll()
    assert [(e.kind, e.detail) for e in b3.events] == [
        (EventKind.RESTART, f"pid {first.pid} → pid {second.pid} (matched "
                            f"'time\\\\.sleep\\\\(120\\\\) {token}$')")
    ]
    assert source.last_info()["svc"]["root_pid"] == second.pid
    assert one(b3, "svc").cpu_usage_s_total >= one(b1, "svc").cpu_usage_s_total
    b4 = source.poll()
    assert (b4.events, b4.errors, len(b4.samples)) == ([], {}, 1)


NETNS_SETUP = (
    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && "
    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && "
    "ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up && "
    "ip addr add 10.9.9.1/24 dev v0 && "
    "ip neigh add 10.9.9.2 lladdr 02:00:00:00:00:02 dev v0 && exec \"$@\""
)


def test_network_counters_of_a_private_namespace(procs: Procs) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root, unshare and ip to make a network namespace")
    child = procs.worker(["unshare", "-n", "sh", "-c", NETNS_SETUP, "sh"])
    if command(child, "spin 0.01") is None:
        pytest.skip(f"could not set up a veth pair in a new network namespace "
                    f"(exit {child.wait(timeout=10)})")
    source = ProcessTreeSource([ProcessTarget("net", popen=child)])
    s0 = one(source.poll(), "net")
    assert source.last_info()["net"]["netns"] == "own"
    assert command(child, "send 5") == ""
    time.sleep(0.1)
    s1 = one(source.poll(), "net")
    # 5 × (1000 payload + 8 UDP + 20 IPv4 + 14 Ethernet) out of v0 and into v1; lo ignored.
    assert s1.net_tx_bytes_total - s0.net_tx_bytes_total == 5 * 1042
    assert s1.net_rx_bytes_total - s0.net_rx_bytes_total == 5 * 1042


# --------------------------------------------------------------------------- real OOM kill


def _own_v1_dir(controller: str) -> Path:
    return V1_MOUNT / controller / own_cgroup_paths()[controller].lstrip("/")


@pytest.fixture
def cgroups() -> Iterator[dict[str, Path]]:
    reason = v1_unavailable_reason()
    if reason is not None:
        pytest.skip(f"real cgroup v1 test skipped: {reason}")
    tag = f"prescale-proc-test-{os.getpid()}-{secrets.token_hex(4)}"
    made: dict[str, Path] = {}
    try:
        for c in ("memory", "cpu"):
            made[c] = _own_v1_dir(c) / tag
            made[c].mkdir()
        yield made
    finally:
        remove_cgroups(made.values())


@pytest.mark.cgroup
@pytest.mark.slow
def test_real_oom_kills_in_a_memory_cgroup(procs: Procs, cgroups: dict[str, Path]) -> None:
    (cgroups["memory"] / "memory.limit_in_bytes").write_text(str(48 * MiB))
    (cgroups["cpu"] / "cpu.cfs_period_us").write_text("100000")
    (cgroups["cpu"] / "cpu.cfs_quota_us").write_text("50000")
    enter = " && ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in cgroups.values())
    child = procs.worker(["sh", "-c", f'{enter} && exec "$@"', "sh"])
    assert command(child, "spin 0.01") == ""
    source = ProcessTreeSource([ProcessTarget("oomer", popen=child)])
    s0 = one(source.poll(), "oomer")
    assert (s0.memory_limit_bytes, s0.cpu_quota_cores) == (48 * MiB, 0.5)
    assert source.last_info()["oomer"]["memory_cgroup"] == str(cgroups["memory"].resolve())

    # A grandchild that allocates 100 MiB under the 48 MiB limit is OOM-killed; the
    # child lives on.
    grandchild = int(command(child, "spawn 100 0.5") or 0)
    b1 = source.poll()
    assert grandchild in source.last_info()["oomer"]["pids"]
    assert b1.events == []
    wait_gone(grandchild)
    time.sleep(0.1)  # the child's thread reaps it
    b2 = source.poll()
    assert [(e.kind, e.detail) for e in b2.events] == [
        (EventKind.OOM_KILL,
         f"memory cgroup {cgroups['memory'].resolve()} oom_kill counter +1 while pid(s) "
         f"{grandchild} of the tree vanished")
    ]
    assert child.poll() is None

    # Now the child itself.
    assert command(child, "alloc 100") is None  # killed before it can answer
    assert child.wait(timeout=10) == -signal.SIGKILL
    events = [e for _ in range(2) for e in source.poll().events]
    assert [(e.kind, e.detail) for e in events] == [
        (EventKind.OOM_KILL, f"pid {child.pid}: SIGKILL; memory cgroup oom_kill counter +1")
    ]
