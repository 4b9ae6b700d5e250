"""A private Docker daemon for tests: real dockerd, real runc, real cgroups, nothing shared.

:func:`private_docker` starts ``dockerd`` (from Debian's ``docker.io``; installed by
``scripts/install_system_deps.sh``, never here) with everything of its own under one
temporary directory — data root, exec root, socket, pidfile — the ``vfs`` storage
driver, no bridge and no iptables, and the cgroupfs driver with ``--cgroup-parent``
beneath this process's own cgroup, so every container cgroup it makes lies under ours.
It imports a tiny image (``prescale-busybox:test``) from a root filesystem tarball of
the host's static busybox (no registry is needed), and on exit removes every
container, stops the daemon (by its pid), unmounts and deletes the directory, and
removes the cgroup directories it created.

:func:`engine_fixtures` gives a test module its ``engine`` (one private daemon for the
module) and an autouse fixture removing every container after each test.

:func:`skip_reason` says why this machine cannot (not root, dockerd/containerd/runc or
a static busybox missing, no writable cgroup v1 memory controller).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prescale.app.edges import cgroup_layout as lay

IMAGE = "prescale-busybox:test"
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "dd", "cat", "head", "yes", "true", "ls", "mkdir", "rm", "echo",
           "mount", "df", "ln")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def skip_reason() -> str | None:
    """Why a private dockerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to run a private dockerd"
    for tool in ("dockerd", "containerd", "runc"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (Debian: docker.io and runc; "
                    "scripts/install_system_deps.sh installs them)")
    if not BUSYBOX.is_file():
        return "no static /bin/busybox (Debian: busybox-static) to build the test image from"
    try:
        mounts = lay.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError as exc:
        return f"cannot read mountinfo: {exc}"
    if not any(m.version == "v1" and "memory" in m.controllers for m in mounts):
        return "needs a cgroup v1 memory hierarchy (the tests read memory.oom_control)"
    return None


def _own_parent() -> str:
    """The deepest cgroup path of this process that every other hierarchy's path is an
    ancestor of (so a child of it is beneath our cgroup in every hierarchy)."""
    own = lay.parse_proc_cgroup(Path("/proc/self/cgroup").read_text())
    paths = [p for k, p in own.items() if not k.startswith("name=")]
    deepest = max(paths, key=lambda p: p.rstrip("/").count("/"))
    for p in paths:
        base = p.rstrip("/")
        if base and not (deepest == base or deepest.startswith(base + "/")):
            raise RuntimeError(f"this process's cgroups do not nest ({own}); "
                               "cannot put dockerd's cgroups beneath all of them")
    return deepest.rstrip("/")


def _hierarchy_dirs(cgroup_path: str) -> list[Path]:
    """``cgroup_path``'s directory in every mounted cgroup hierarchy."""
    mounts = lay.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    out = []
    for m in mounts:
        d = lay.cgroup_dir(m, cgroup_path)
        if d is not None:
            out.append(d)
    return out


def _rootfs_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "data"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    return buf.getvalue()


@dataclass
class PrivateDocker:
    """A running private daemon: its address, SDK client, cgroup parent and log."""

    root: Path
    host: str
    cgroup_parent: str
    proc: subprocess.Popen
    api: object = None
    created_cgroups: list[Path] = field(default_factory=list)

    @property
    def log(self) -> str:
        try:
            return (self.root / "dockerd.log").read_text()[-4000:]
        except OSError:
            return ""

    def run(self, name: str, command: str, *, labels: dict[str, str] | None = None,
            mem_limit: int | None = None, cpu_quota: int | None = None,
            tmpfs_mib: int | None = None) -> str:
        """Create and start a container of the test image running ``sh -c command``."""
        hc = self.api.create_host_config(
            mem_limit=mem_limit, cpu_quota=cpu_quota, network_mode="none",
            tmpfs={"/data": f"size={tmpfs_mib}m"} if tmpfs_mib else None)
        c = self.api.create_container(IMAGE, ["sh", "-c", command], name=name,
                                      labels=labels or {}, host_config=hc)
        self.api.start(c["Id"])
        return c["Id"]

    def cgroup_dir(self, cid: str, controller: str = "memory") -> Path:
        """The container's v1 cgroup directory of ``controller`` (beneath our own)."""
        return CGROUP_ROOT / controller / self.cgroup_parent.lstrip("/") / cid

    def remove_all(self) -> None:
        for c in self.api.containers(all=True):
            with contextlib.suppress(Exception):
                self.api.remove_container(c["Id"], force=True)

    def stop_daemon(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to our dockerd (it stops its containerd), SIGKILL after ``timeout_s``."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _wait_up(d: PrivateDocker, timeout_s: float) -> None:
    import docker

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {d.proc.returncode}:\n{d.log}")
        try:
            d.api = docker.APIClient(base_url=d.host, version="auto", timeout=30)
            d.api.ping()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = str(exc)
            time.sleep(0.2)
    raise RuntimeError(f"dockerd did not answer on {d.host} within {timeout_s} s "
                       f"({last}):\n{d.log}")


def _unmount_under(root: Path) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((p for p in mounts if p.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _remove_cgroups(dirs: list[Path]) -> None:
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        if not d.is_dir():
            continue
        for child in sorted((c for c in d.rglob("*") if c.is_dir()),
                            key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def private_docker(start_timeout_s: float = 60.0) -> Iterator[PrivateDocker]:
    """A private dockerd with the test image imported; everything removed afterwards."""
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    root = Path(tempfile.mkdtemp(prefix="prescale-dk-", dir="/tmp"))
    parent = f"{_own_parent()}/prescale-docker-{secrets.token_hex(4)}"
    # every directory on the way to the parent that does not exist yet is ours to remove
    created: list[Path] = []
    for d in _hierarchy_dirs(parent):
        p = d
        while not p.exists() and p != CGROUP_ROOT:
            created.append(p)
            p = p.parent
    sock = root / "d.sock"
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--host", f"unix://{sock}", "--pidfile", str(root / "dockerd.pid"),
         "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver", "vfs",
         "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", parent],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    d = PrivateDocker(root, f"unix://{sock}", parent, proc, created_cgroups=created)
    try:
        _wait_up(d, start_timeout_s)
        d.api.import_image_from_data(_rootfs_tar(), repository=IMAGE.split(":")[0],
                                     tag=IMAGE.split(":")[1])
        yield d
    finally:
        if d.api is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                d.remove_all()
        d.stop_daemon()
        log.close()
        if d.api is not None:
            with contextlib.suppress(Exception):
                d.api.close()
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        _remove_cgroups(created)


def engine_fixtures():
    """``engine, _clean = engine_fixtures()`` at a test module's top: ``engine``
    (module scope) is one :func:`private_docker` for the module's tests; ``_clean``
    (autouse) removes every container after each test, while the daemon runs."""

    @pytest.fixture(scope="module")
    def engine():
        with private_docker() as d:
            yield d

    @pytest.fixture(autouse=True)
    def _clean(engine):
        yield
        if engine.proc.poll() is None:
            engine.remove_all()

    return engine, _clean
