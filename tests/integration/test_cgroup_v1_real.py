"""The cgroup source and actuator against real cgroup v1 hierarchies (root only).

Test cgroups are created only beneath this process's own cgroup of each controller
(memory, cpu, cpuacct, blkio), named ``prescale-test-<pid>-<random>``; processes are
only ever moved into them (a child writes its own pid), and everything is killed and
removed by fixture finalizers, children before parents.
"""

from __future__ import annotations

import math
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prescale.app.actuators.cgroup import CgroupActuator
from prescale.app.edges.cgroupfs import CgroupContainer, CgroupNotFoundError, OutsideRootsError
from prescale.app.settings import CgroupSettings
from prescale.app.telemetry.cgroup import CgroupSource
from tests.cgroup_support import remove_cgroups
from tests.worker_protocol import ok

pytestmark = pytest.mark.cgroup

MiB = 2**20
CONTROLLERS = ("memory", "cpu", "cpuacct", "blkio")
REQUIRED = ("memory", "cpu", "cpuacct")

# A worker that obeys one command per stdin line and answers "ok" when done.
WORKER = r"""
import sys, time
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "alloc":  # MiB, every page touched (bytes * n is a memset)
        held.append(b"\x01" * (int(arg) * 1048576))
    elif cmd == "burn":  # spin for this many seconds of wall time (however throttled)
        end = time.monotonic() + float(arg)
        while time.monotonic() < end:
            pass
    elif cmd == "spin":  # spin until this many seconds of CPU time were used
        end = time.process_time() + float(arg)
        while time.process_time() < end:
            pass
    elif cmd == "io":  # write MiB to a file, fsync, drop it from the cache, read it back
        import os
        mib, path = arg.split(" ", 1)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, b"x" * (int(mib) * 1048576))
        os.fsync(fd)
        os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 1048576):
            pass
        os.close(fd)
    print("ok", flush=True)
"""


def _v1_mounts() -> dict[str, tuple[Path, str]]:
    """controller → (mount point, root of the mount within the hierarchy)."""
    mounts: dict[str, tuple[Path, str]] = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fstype, _source, superopts = right.split()[:3]
            if fstype != "cgroup":
                continue
            fields = left.split()
            for opt in superopts.split(","):
                if opt in CONTROLLERS:
                    mounts[opt] = (Path(fields[4]), fields[3])
    return mounts


def _own_cgroup_dirs() -> dict[str, Path]:
    """controller → this process's own v1 cgroup directory."""
    mounts = _v1_mounts()
    own: dict[str, Path] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                if c not in mounts:
                    continue
                mnt, mroot = mounts[c]
                rel = os.path.relpath(path, mroot)
                if rel.startswith(".."):
                    continue
                own[c] = (mnt / rel).resolve()
    return own


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    try:
        own = _own_cgroup_dirs()
    except OSError as exc:
        return f"cannot read this process's cgroups: {exc}"
    missing = [c for c in REQUIRED if c not in own]
    if missing:
        return f"no cgroup v1 hierarchy for {', '.join(missing)} (v2-only host?)"
    if not (own["memory"] / "memory.limit_in_bytes").is_file():
        return f"{own['memory']} is not a cgroup v1 memory directory"
    for c in REQUIRED:
        if not os.access(own[c], os.W_OK):
            return f"own {c} cgroup {own[c]} is not writable"
    return None


_REASON = _skip_reason()
if _REASON is not None:
    pytest.skip(f"real cgroup v1 tests skipped: {_REASON}", allow_module_level=True)


class Tree:
    """Test cgroups and processes; :meth:`cleanup` removes everything it made."""

    def __init__(self) -> None:
        tag = f"prescale-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.own = _own_cgroup_dirs()
        self.controllers = [c for c in CONTROLLERS if c in self.own]
        self.created: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.roots = {c: self.mkdir(self.own[c] / tag) for c in self.controllers}
        self.settings = CgroupSettings(roots=list(self.roots.values()))

    def mkdir(self, path: Path) -> Path:
        path.mkdir()
        self.created.append(path)
        return path

    def container(self, name: str) -> dict[str, Path]:
        return {c: self.mkdir(root / name) for c, root in self.roots.items()}

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        """A worker that first moves itself into ``name`` of every controller."""
        enter = "; ".join(
            f"echo $$ > {shlex.quote(str(root / name / 'cgroup.procs'))}"
            for root in self.roots.values()
        )
        cmd = f"{enter} && exec {shlex.quote(sys.executable)} -I -c {shlex.quote(WORKER)}"
        proc = subprocess.Popen(
            ["sh", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        remove_cgroups(reversed(self.created))  # children before parents


@pytest.fixture
def tree() -> Iterator[Tree]:
    t = Tree()
    try:
        yield t
    finally:
        t.cleanup()


def read(path: Path) -> str:
    return path.read_text()


# --------------------------------------------------------------------------- tests


def test_discovers_real_v1_container_and_reports_vanished(tree: Tree) -> None:
    dirs = tree.container("box")
    gone = tree.container("gone")
    source = CgroupSource(tree.settings)
    containers = {c.name: c for c in source.containers()}
    assert sorted(containers) == ["box", "gone"]
    box = containers["box"]
    assert box.version == "v1"
    assert box.dirs == dirs
    assert set(box.dirs) >= set(REQUIRED)

    s = source.sample(box)
    assert s.memory_limit_bytes == math.inf  # v1 shows 2^63 − 4096
    assert s.cpu_quota_cores == math.inf  # cfs_quota_us = -1
    assert s.oom_kills_total == 0
    assert s.cpu_periods_total == 0

    for path in gone.values():
        path.rmdir()
    with pytest.raises(CgroupNotFoundError):
        source.sample(containers["gone"])
    samples, errors = CgroupSource(
        tree.settings.model_copy(update={"watch": ["box", "gone"]})
    ).sample_all()
    assert [x.container for x in samples] == ["box"]
    assert set(errors) == {"gone"}


def test_memory_usage_and_cpu_usage_of_a_real_process(tree: Tree) -> None:
    tree.container("box")
    source = CgroupSource(tree.settings)
    [box] = source.containers()
    worker = tree.spawn("box")
    assert ok(worker, "alloc 30")
    s0 = source.sample(box)
    assert s0.memory_usage_bytes >= 30 * MiB
    assert s0.memory_working_set_bytes >= 30 * MiB  # anonymous memory is never "inactive_file"
    assert s0.memory_working_set_bytes <= s0.memory_usage_bytes
    assert ok(worker, "spin 0.3")
    s1 = source.sample(box)
    assert s1.cpu_usage_s_total - s0.cpu_usage_s_total >= 0.29
    assert s1.ts_s >= s0.ts_s
    if "blkio" in box.dirs:  # NaN: this kernel accounts only devices with a throttle rule
        assert not s1.io_write_bytes_total < 0


def test_block_io_bytes(tree: Tree, tmp_path: Path) -> None:
    if "blkio" not in tree.roots:
        pytest.skip("no cgroup v1 blkio hierarchy")
    dirs = tree.container("box")
    st = os.stat(tmp_path)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    # A rule far above any real rate makes the kernel account this device's I/O.
    try:
        for rule in ("read_bps_device", "write_bps_device"):
            (dirs["blkio"] / f"blkio.throttle.{rule}").write_text(f"{device} {2**40}")
    except OSError as exc:
        pytest.skip(f"cannot set a blkio throttle rule on {device} ({tmp_path}): {exc}")
    source = CgroupSource(tree.settings)
    [box] = source.containers()
    worker = tree.spawn("box")
    assert ok(worker, f"io 4 {tmp_path / 'io.bin'}")
    s = source.sample(box)
    assert s.io_write_bytes_total >= 4 * MiB
    assert s.io_read_bytes_total >= 4 * MiB


def test_memory_limit_set_read_back_and_refused_below_usage(tree: Tree) -> None:
    dirs = tree.container("box")
    source = CgroupSource(tree.settings)
    act = CgroupActuator(tree.settings)
    [box] = source.containers()
    limit_file = dirs["memory"] / "memory.limit_in_bytes"
    memsw_file = dirs["memory"] / "memory.memsw.limit_in_bytes"
    worker = tree.spawn("box")
    assert ok(worker, "alloc 30")

    r = act.set_memory_limit(box, 64 * MiB)
    assert (r.ok, r.old, r.new, r.error) == (True, math.inf, 64 * MiB, "")
    assert int(read(limit_file)) == 64 * MiB
    assert source.sample(box).memory_limit_bytes == 64 * MiB

    again = act.set_memory_limit(box, 64 * MiB)
    assert (again.ok, again.old, again.new) == (True, 64 * MiB, 64 * MiB)

    # The kernel cannot reclaim anonymous memory without swap: EBUSY, nothing changes.
    refused = act.set_memory_limit(box, 8 * MiB)
    assert not refused.ok
    assert "EBUSY" in refused.error
    assert refused.new == 64 * MiB
    assert int(read(limit_file)) == 64 * MiB

    if memsw_file.exists():  # swap accounting: memsw must stay ≥ memory
        memsw_file.write_text(str(64 * MiB))
        up = act.set_memory_limit(box, 96 * MiB)
        assert (up.ok, up.new) == (True, 96 * MiB), up.error
        assert int(read(memsw_file)) == 96 * MiB
        down = act.set_memory_limit(box, 48 * MiB)
        assert (down.ok, down.new, down.error) == (True, 48 * MiB, "")
        assert int(read(memsw_file)) == 48 * MiB


def test_cpu_quota_throttles_a_busy_process(tree: Tree) -> None:
    dirs = tree.container("box")
    source = CgroupSource(tree.settings)
    act = CgroupActuator(tree.settings)
    [box] = source.containers()
    worker = tree.spawn("box")
    assert ok(worker, "burn 0.01")  # started and inside

    r = act.set_cpu_quota(box, 0.2)
    assert (r.ok, r.old, r.new) == (True, math.inf, 0.2)
    assert int(read(dirs["cpu"] / "cpu.cfs_quota_us")) == 20000
    assert int(read(dirs["cpu"] / "cpu.cfs_period_us")) == 100000

    s0 = source.sample(box)
    assert s0.cpu_quota_cores == 0.2
    assert ok(worker, "burn 0.6")
    s1 = source.sample(box)
    assert s1.cpu_throttled_periods_total - s0.cpu_throttled_periods_total >= 3
    assert s1.cpu_throttled_s_total > s0.cpu_throttled_s_total
    assert s1.cpu_periods_total > s0.cpu_periods_total
    # 0.6 s of wall time at 0.2 cores is at most ~0.12 s of CPU (+ one period of slack).
    assert s1.cpu_usage_s_total - s0.cpu_usage_s_total < 0.3


@pytest.mark.slow
def test_real_oom_kill_is_counted(tree: Tree) -> None:
    tree.container("oomer")
    source = CgroupSource(tree.settings)
    act = CgroupActuator(tree.settings)
    [box] = source.containers()
    assert act.set_memory_limit(box, 40 * MiB).ok
    worker = tree.spawn("oomer")
    assert ok(worker, "burn 0.01")  # started and inside
    before = source.sample(box)
    assert before.oom_kills_total == 0

    assert not ok(worker, "alloc 100")  # killed before it can answer
    assert worker.wait(timeout=10) == -signal.SIGKILL
    after = source.sample(box)
    assert after.oom_kills_total == 1
    assert after.memory_failcnt_total > 0


def test_refuses_outside_roots_and_missing_cgroups(tree: Tree) -> None:
    dirs = tree.container("box")
    outside = tree.mkdir(tree.roots["memory"].parent / (tree.roots["memory"].name + "-outside"))
    act = CgroupActuator(tree.settings)
    [box] = CgroupSource(tree.settings).containers()

    def files() -> dict[str, str]:
        return {
            "outside": read(outside / "memory.limit_in_bytes"),
            "box": read(dirs["memory"] / "memory.limit_in_bytes"),
            "quota": read(dirs["cpu"] / "cpu.cfs_quota_us"),
        }

    before = files()
    escapes = [
        CgroupContainer("outside", "v1", {"memory": outside}),
        CgroupContainer("box", "v1", {"memory": dirs["memory"] / ".." / ".." / outside.name}),
        CgroupContainer("root", "v1", {"memory": tree.roots["memory"]}),
        CgroupContainer("box", "v1", {**box.dirs, "cpuacct": outside}),
    ]
    for container in escapes:
        with pytest.raises(OutsideRootsError):
            act.set_memory_limit(container, 64 * MiB)
    ghost = CgroupContainer("ghost", "v1", {"memory": tree.roots["memory"] / "ghost"})
    with pytest.raises(CgroupNotFoundError):
        act.set_memory_limit(ghost, 64 * MiB)
    ghost_cpu = CgroupContainer("ghost", "v1", {"cpu": tree.roots["cpu"] / "ghost"})
    with pytest.raises(CgroupNotFoundError):
        act.set_cpu_quota(ghost_cpu, 0.5)
    assert files() == before
    assert not (tree.roots["memory"] / "ghost").exists()
    assert not (tree.roots["cpu"] / "ghost").exists()
