"""tmpfs volumes, for real: size-limited tmpfs mounts made under ``tmp_path`` (root),
real writers filling them to ENOSPC, the volume source and actuator over ``statvfs`` and
``mount -o remount,size=…``. Every mount is lazily unmounted at teardown.

1. ``volume_usage`` matches what was written; mount points are found in mountinfo
   (also one whose name has a space, escaped ``\\040`` there).
2. The source: one sample per volume, one ``disk_full`` event per full episode.
3. The actuator: grows a volume live under an open file, idempotent by id, refuses a
   shrink below usage, a non-disk tier, and a container it was not told about.
4. A writer at 1 MiB / 0.1 s gets a real ENOSPC; after a remount it goes on.
5. A missing path and a plain directory are errors naming the path; the other volume
   still gives its sample.
"""

from __future__ import annotations

import errno
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prescale.app.actuators.base import InvalidActionError
from prescale.app.actuators.volume import VolumeActuator
from prescale.app.core.actions import ActionKind, ResultStatus, ScalingAction
from prescale.app.core.sample import EventKind, Tier
from prescale.app.edges.tmpfs import (
    NotTmpfsMountError,
    is_tmpfs_mount,
    mount_at,
    page_size_bytes,
    remount_size,
    volume_usage,
)
from prescale.app.telemetry.volumes import VolumeSource

MiB = 2**20
PAGE = page_size_bytes()


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount tmpfs volumes"
    for tool in ("mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux)"
    return None


_why = _skip_reason()
pytestmark = [pytest.mark.skipif(_why is not None, reason=_why or "")]


@pytest.fixture
def make_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``make_tmpfs("web", size="8m")``: a fresh tmpfs mounted at ``tmp_path/web``;
    every one is unmounted (``umount -l``) at teardown, whatever happened."""
    mounted: list[Path] = []

    def make(name: str, size: str = "8m") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(point)], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    try:
        yield make
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=10,
                           check=False)


def _fill(path: Path, chunk_bytes: int = MiB) -> int:
    """Write to ``path`` until the kernel says ENOSPC; the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, b"\0" * chunk_bytes)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
    finally:
        os.close(fd)


def _write(path: Path, n_bytes: int) -> None:
    with open(path, "wb") as fh:
        fh.write(b"x" * n_bytes)


def _action(aid: str, container: str, new_bytes: float, tier: Tier = Tier.DISK,
            old_bytes: float = 8 * MiB, kind: ActionKind = ActionKind.RESIZE
            ) -> ScalingAction:
    return ScalingAction(aid, time.time(), container, tier, old_bytes, new_bytes, 0.9, 0.5,
                         30.0, new_bytes, "test", kind=kind)


# --------------------------------------------------------------------------- 1. edge


def test_usage_matches_what_was_written(make_tmpfs, tmp_path):
    vol = make_tmpfs("web", "8m")
    _write(vol / "f", 3 * MiB)
    used, size = volume_usage(vol)
    assert size == 8 * MiB
    assert abs(used - 3 * MiB) <= 4 * PAGE
    assert is_tmpfs_mount(vol)
    assert not is_tmpfs_mount(tmp_path)  # a plain directory
    assert not is_tmpfs_mount(vol / "f")  # a file on the tmpfs
    assert not is_tmpfs_mount(tmp_path / "nowhere")
    spaced = make_tmpfs("a b", "1m")  # "a\040b" in mountinfo
    assert is_tmpfs_mount(spaced) and mount_at(spaced).mount_point == str(spaced)
    assert is_tmpfs_mount(tmp_path / "x" / ".." / "web")  # resolved first


def test_remount_refuses_bad_input_before_running_anything(make_tmpfs, tmp_path):
    vol = make_tmpfs("web", "8m")
    _write(vol / "f", 5 * MiB)
    for bad in (math.nan, math.inf, 0, -1.0):
        with pytest.raises(ValueError, match=f"size of the tmpfs at {vol} must be a finite"):
            remount_size(vol, bad)
    with pytest.raises(NotTmpfsMountError, match=f"{tmp_path} is not a tmpfs mount point: "
                       "is not a mount point"):
        remount_size(tmp_path, 16 * MiB)
    with pytest.raises(ValueError, match=f"cannot shrink the tmpfs at {vol} to 4194304 bytes"):
        remount_size(vol, 4 * MiB)
    assert volume_usage(vol)[1] == 8 * MiB
    # rounded up to whole pages, read back
    assert remount_size(vol, 10 * MiB + 1) == 10 * MiB + PAGE


def test_source_reports_one_disk_full_per_episode(make_tmpfs):
    vol = make_tmpfs("web", "8m")
    other = make_tmpfs("db", "4m")
    _write(other / "f", 1 * MiB)
    ticks = iter(range(100, 200))
    source = VolumeSource({"web": str(vol), "db": str(other)}, clock=lambda: next(ticks))
    assert source.watches("web") and not source.watches("api")

    batch = source.poll()
    by_name = {s.container: s for s in batch.samples}
    assert set(by_name) == {"web", "db"} and not batch.events and not batch.errors
    assert by_name["web"].disk_limit_bytes == 8 * MiB and by_name["web"].disk_used_bytes < PAGE
    assert by_name["db"].disk_limit_bytes == 4 * MiB
    assert math.isnan(by_name["web"].memory_usage_bytes)  # other sources fill the rest

    _fill(vol / "big")
    batch = source.poll()
    web = next(s for s in batch.samples if s.container == "web")
    assert web.disk_limit_bytes - web.disk_used_bytes < PAGE
    assert [(e.container, e.kind, e.ts_s) for e in batch.events] == [
        ("web", EventKind.DISK_FULL, web.ts_s)]
    assert f"tmpfs at {vol} is full" in batch.events[0].detail
    assert source.poll().events == []  # still full: the same episode

    (vol / "big").unlink()
    assert source.poll().events == []  # room again: re-armed
    _fill(vol / "big2")
    assert [e.kind for e in source.poll().events] == [EventKind.DISK_FULL]
    source.close()


def test_missing_and_plain_paths_are_errors_the_others_go_on(make_tmpfs, tmp_path):
    vol = make_tmpfs("web", "8m")
    plain = tmp_path / "plain"
    plain.mkdir()
    inner = vol / "sub"  # a directory on the tmpfs, not its mount point
    inner.mkdir()
    missing = tmp_path / "missing"
    source = VolumeSource({"web": str(vol), "gone": str(missing), "plain": str(plain),
                           "inner": str(inner)})
    for _ in range(2):  # at every poll while it lasts
        batch = source.poll()
        assert [s.container for s in batch.samples] == ["web"]
        assert batch.errors["gone"] == f"volume of 'gone' at {missing}: does not exist"
        assert batch.errors["plain"].startswith(
            f"volume of 'plain' at {plain}: is not a mount point (a directory on the ")
        assert batch.errors["inner"] == (f"volume of 'inner' at {inner}: is not a mount "
                                         f"point (a directory on the tmpfs at {vol})")
    with pytest.raises(ValueError, match="the path of 'x' must be absolute"):
        VolumeSource({"x": "relative/dir"})


# --------------------------------------------------------------------------- 3. actuator


def test_actuator_grows_live_idempotent_and_refuses(make_tmpfs):
    vol = make_tmpfs("web", "8m")
    act = VolumeActuator({"web": str(vol)})
    with open(vol / "log", "wb") as fh:  # held open across the resize
        fh.write(b"x" * 6 * MiB)
        fh.flush()
        grow = _action("web/disk@1", "web", 16 * MiB)
        result = act.apply(grow)
        assert result.status is ResultStatus.APPLIED, result.reason
        assert (result.old_limit, result.new_limit) == (8 * MiB, 16 * MiB)
        assert volume_usage(vol)[1] == 16 * MiB
        fh.write(b"y" * 6 * MiB)  # 12 MiB: more than the old size
        fh.flush()
        os.fsync(fh.fileno())
    assert (vol / "log").stat().st_size == 12 * MiB

    remounts, acted = act.remounts, act.acted
    assert act.apply(grow) is result  # the same id: the first result, nothing run
    assert (act.remounts, act.acted) == (remounts, acted)

    same = act.apply(_action("web/disk@2", "web", 16 * MiB - 100))  # rounds up to 16 MiB
    assert same.status is ResultStatus.APPLIED and same.old_limit == same.new_limit == 16 * MiB
    assert "nothing run" in same.reason and act.remounts == remounts

    shrink = act.apply(_action("web/disk@3", "web", 4 * MiB, old_bytes=16 * MiB))
    assert shrink.status is ResultStatus.FAILED
    assert shrink.reason == (f"volume of 'web' at {vol}: cannot shrink it to 4194304 bytes, "
                             f"{volume_usage(vol)[0]:.0f} bytes are in use")
    assert act.remounts == remounts and volume_usage(vol)[1] == 16 * MiB

    with pytest.raises(InvalidActionError, match="resizes only the disk tier, not memory"):
        act.apply(_action("web/memory@4", "web", 4 * MiB, tier=Tier.MEMORY))
    with pytest.raises(InvalidActionError, match="a volume cannot scale_out"):
        act.apply(_action("web/disk@5", "web", 2, kind=ActionKind.SCALE_OUT))
    with pytest.raises(InvalidActionError, match="new_limit must be a finite number"):
        act.apply(_action("web/disk@6", "web", math.nan))
    assert act.remounts == remounts and volume_usage(vol)[1] == 16 * MiB

    denied = act.apply(_action("api/disk@7", "api", 32 * MiB))
    assert denied.status is ResultStatus.DENIED
    assert denied.reason == ("no volume is configured for container 'api': prescale does "
                             "not act on it")

    shrunk = act.apply(_action("web/disk@8", "web", 14 * MiB, old_bytes=16 * MiB))
    assert shrunk.status is ResultStatus.APPLIED and shrunk.new_limit == 14 * MiB


def test_actuator_fails_on_a_path_that_is_not_a_volume(tmp_path):
    act = VolumeActuator({"web": str(tmp_path / "missing")})
    result = act.apply(_action("web/disk@1", "web", 16 * MiB))
    assert result.status is ResultStatus.FAILED
    assert result.reason == f"volume of 'web' at {tmp_path / 'missing'}: does not exist"
    assert act.remounts == 0


# --------------------------------------------------------------------------- 4. a writer

WRITER = r"""
import errno, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
chunk = b"w" * (1 << 20)
while True:
    try:
        os.write(fd, chunk)
        print("ok", os.fstat(fd).st_size, flush=True)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print("ENOSPC", os.fstat(fd).st_size, flush=True)
    time.sleep(0.1)
"""


def test_writer_gets_enospc_then_room_after_a_remount(make_tmpfs):
    vol = make_tmpfs("web", "8m")
    source = VolumeSource({"web": str(vol)})
    act = VolumeActuator({"web": str(vol)})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(vol / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()

    def next_line(deadline_s: float) -> str:
        try:
            return lines.get(timeout=max(0.01, deadline_s - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the writer said nothing in time (exit code "
                                 f"{proc.poll()})") from None

    try:
        deadline = time.monotonic() + 5.0
        while not (line := next_line(deadline)).startswith("ENOSPC"):
            pass
        assert int(line.split()[1]) <= 8 * MiB
        full = source.poll()
        assert [e.kind for e in full.events] == [EventKind.DISK_FULL]

        result = act.apply(_action("web/disk@1", "web", 32 * MiB))
        assert result.status is ResultStatus.APPLIED and result.new_limit == 32 * MiB

        deadline = time.monotonic() + 5.0
        while True:  # the same writer goes on past the old size
            line = next_line(deadline)
            if line.startswith("ok") and int(line.split()[1]) >= 10 * MiB:
                break
        assert proc.poll() is None
        after = source.poll()
        assert after.events == [] and after.samples[0].disk_limit_bytes == 32 * MiB
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
