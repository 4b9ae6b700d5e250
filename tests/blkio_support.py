"""Shared pieces of the real cgroup v1 blkio tests (root): this process's own blkio
cgroup, why the tests cannot run here, a test root beneath it, a loop device on a sparse
image, and stopping the direct-I/O writers. Removing the cgroups is
:func:`tests.cgroup_support.remove_cgroups`."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroupfs import own_cgroup_paths


def own_blkio() -> Path | str:
    """This process's own v1 blkio cgroup directory, or why there is none."""
    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = lay.parse_mountinfo(fh.read())
        place = lay.locate_cgroup(own_cgroup_paths(), mounts, "blkio")
    except OSError as exc:
        return f"cannot read this process's cgroups: {exc}"
    if not isinstance(place, tuple) or place[0] != "v1":
        return "no cgroup v1 blkio hierarchy (v2-only host?)"
    return place[1]


def blkio_unavailable_reason(tools: Iterable[str]) -> str | None:
    """Why the real blkio tests cannot run here (not root, one of ``tools`` missing, no
    writable v1 blkio cgroup with blk-throttle), or ``None`` if they can."""
    if os.geteuid() != 0:
        return "needs root to create cgroups and loop devices"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    own = own_blkio()
    if isinstance(own, str):
        return own
    if not (own / lay.V1_BLKIO_WRITE_BPS).is_file():
        return f"{own} has no {lay.V1_BLKIO_WRITE_BPS} (blk-throttle not built in)"
    if not os.access(own, os.W_OK):
        return f"own blkio cgroup {own} is not writable"
    return None


def blkio_test_marks(tools: Iterable[str]) -> list[pytest.MarkDecorator]:
    """A real blkio test module's ``pytestmark``: ``cgroup``, and skipped with
    :func:`blkio_unavailable_reason` when the tests cannot run here."""
    why = blkio_unavailable_reason(tools)
    return [pytest.mark.cgroup, pytest.mark.skipif(why is not None, reason=why or "")]


def make_test_root(prefix: str) -> Path:
    """A new cgroup ``<prefix>-<pid>-<random>`` beneath our own blkio cgroup (the caller
    removes it)."""
    own = own_blkio()
    assert isinstance(own, Path)
    root = own / f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
    root.mkdir()
    return root


@contextmanager
def loop_device(image: Path, size_bytes: int) -> Iterator[tuple[Path, str]]:
    """A loop device on a new sparse ``image`` of ``size_bytes``: ``(/dev/loopN,
    "MAJ:MIN")``; detached and the image deleted on exit. Skips the test when no loop
    device can be attached."""
    with open(image, "wb") as fh:
        fh.truncate(size_bytes)
    done = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True,
                          text=True, timeout=10)
    if done.returncode != 0:
        image.unlink()
        pytest.skip(f"cannot attach a loop device here: {done.stderr.strip()}")
    dev = Path(done.stdout.strip())
    try:
        rdev = os.stat(dev).st_rdev
        yield dev, f"{os.major(rdev)}:{os.minor(rdev)}"
    finally:
        subprocess.run(["losetup", "-d", str(dev)], capture_output=True, timeout=10,
                       check=False)
        image.unlink(missing_ok=True)


def stop_writers(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """Kill the writers still running, reap them and close their stderr pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)  # a throttled direct write finishes first
        if proc.stderr is not None:
            proc.stderr.close()
