"""A tmpfs inside a container's own mount namespace (``docker run --tmpfs /data:size=64m``):
how full it is and resizing it live, from the host.

An I/O edge beside :mod:`app.edges.tmpfs` (the host-path volumes), for the volume source
and actuator. Such a mount is not in this process's mountinfo; it is reached through the
container's first process ``pid`` (the Engine's ``State.Pid``,
:class:`~app.edges.docker_engine.DockerPids`):

* **Is it one**: ``/proc/<pid>/mountinfo`` (the container's own view) lists a ``tmpfs``
  whose mount point is ``path`` itself — the path as the container sees it, absolute and
  normalised (:func:`~app.edges.tmpfs.container_path_problem`).
* **How full**: ``statvfs`` of ``/proc/<pid>/root/<path>``. Every component on the way is
  checked not to be a symbolic link (an absolute link inside the container would resolve
  against *this* host's root) and the directory opened is checked to be the device the
  container's mountinfo lists for it, so the numbers are that tmpfs's, never the host's.
* **Resize**: ``nsenter -t <pid> -m -p mount -o remount,<its options>,size=<bytes>
  <path>`` (util-linux ``nsenter`` on the host; the ``mount`` run is the **container's
  own**: entering a mount namespace also enters its root, so the image must have one,
  busybox's or util-linux's; its PID namespace is entered too, as ``mount`` reads
  ``/proc/self/…`` and the container's ``/proc`` knows only its own processes). The
  mount's own options (``nosuid,nodev,noexec``…) are passed again so that no ``mount``
  drops them. Then read back as above. The same checks as on the host run first
  (:func:`~app.edges.tmpfs.remount_size`): a read-only view, a tmpfs without a
  limit, a size below what is in use are refused before anything runs.

Errors: :class:`~app.edges.tmpfs.VolumeError` when the container's files cannot be read
(its process is gone) or ``nsenter``/``mount`` fails;
:class:`~app.edges.tmpfs.NotTmpfsMountError` (a ``ValueError``) when ``path`` is not a
tmpfs mount point in the container, with why and without the path (the caller names it).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from prescale.app.edges.command import run_tool
from prescale.app.edges.tmpfs import (
    DEFAULT_TIMEOUT_S,
    Mount,
    NotTmpfsMountError,
    VolumeError,
    check_size,
    not_mount_point_problem,
    read_mounts,
    read_only_problem,
    resize_target_bytes,
)

PROC = Path("/proc")


def _container_mounts(pid: int, proc: Path) -> list[Mount]:
    return read_mounts(proc / str(pid) / "mountinfo")


def _open_in_root(pid: int, path: str, proc: Path) -> int:
    """A directory fd of ``path`` inside the root of ``pid``, no symbolic link followed.
    :class:`NotTmpfsMountError` saying why not ("does not exist", "has a symbolic link in
    its path inside the container (/var/run)", "is not a directory")."""
    here = str(proc / str(pid) / "root")
    seen = ""
    for part in path.strip("/").split("/"):
        here, seen = f"{here}/{part}", f"{seen}/{part}"
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            raise NotTmpfsMountError("does not exist") from None
        if stat.S_ISLNK(st.st_mode):
            raise NotTmpfsMountError(f"has a symbolic link in its path inside the container "
                                     f"({seen}): give the mount point itself")
        if not stat.S_ISDIR(st.st_mode):
            raise NotTmpfsMountError("is not a directory")
    return os.open(here, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def read_container_tmpfs(pid: int, path: str, proc: Path = PROC
                         ) -> tuple[Mount, float, float]:
    """``(mount, used_bytes, size_bytes)`` of the tmpfs mounted at ``path`` inside the
    mount namespace of process ``pid``.

    Worked example: a container started with ``--tmpfs /data:size=24m`` holding 3 MiB,
    its first process 4242 → ``/proc/4242/mountinfo`` lists ``… /data rw,nosuid,nodev,
    noexec,relatime - tmpfs tmpfs rw,size=24576k`` and ``statvfs`` of
    ``/proc/4242/root/data`` gives used 3_145_728, size 25_165_824. A tmpfs without a
    limit gives ``(nan, inf)`` as :func:`~app.edges.tmpfs.volume_usage`.

    Raises :class:`NotTmpfsMountError` with why when ``path`` is not a tmpfs mount point
    there (e.g. "is not a mount point (a directory on the overlay at /)"),
    :class:`VolumeError` when the process's files cannot be read (it is gone).
    """
    try:
        mounts = _container_mounts(pid, proc)
    except VolumeError as exc:
        raise VolumeError(f"cannot read the mounts of process {pid}: {exc}") from None
    try:
        fd = _open_in_root(pid, path, proc)
    except NotTmpfsMountError:
        raise
    except OSError as exc:
        raise VolumeError(f"cannot open {path} in the root of process {pid}: "
                          f"{exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        here = [m for m in mounts if m.mount_point == path]
        if not here:
            raise NotTmpfsMountError(not_mount_point_problem(path, mounts))
        dev = (os.major(st.st_dev), os.minor(st.st_dev))
        mount = next((m for m in reversed(here) if (m.major, m.minor) == dev), None)
        if mount is None:
            raise NotTmpfsMountError(
                f"is not what the container's mountinfo lists there (device {dev[0]}:{dev[1]}, "
                f"listed {here[-1].major}:{here[-1].minor}): it changed while read")
        if mount.fstype != "tmpfs":
            raise NotTmpfsMountError(f"is a mount point of type {mount.fstype}, not tmpfs")
        sv = os.fstatvfs(fd)
    except OSError as exc:
        raise VolumeError(f"cannot read {path} in the root of process {pid}: "
                          f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if sv.f_blocks == 0:
        return mount, math.nan, math.inf
    frsize = sv.f_frsize or sv.f_bsize
    return mount, float((sv.f_blocks - sv.f_bfree) * frsize), float(sv.f_blocks * frsize)


def remount_container_size(pid: int, path: str, size_bytes: float, where: str,
                           timeout_s: float = DEFAULT_TIMEOUT_S, proc: Path = PROC) -> float:
    """Resize the tmpfs at ``path`` inside the mount namespace of ``pid`` live; its size
    read back (bytes). ``where`` names it in messages (``docker:/data of 'web'``).

    Worked example (4096-byte pages): ``--tmpfs /data:size=24m`` in the container whose
    first process is 4242, ``size_bytes=30_000_000`` → ⌈30_000_000 / 4096⌉ = 7325 pages →
    ``nsenter -t 4242 -m -p mount -o remount,rw,nosuid,nodev,noexec,relatime,size=30003200
    /data`` → returns 30_003_200.

    Checked first, nothing run when a check fails (``ValueError`` naming ``where``): the
    size is finite and > 0; ``path`` is a tmpfs mount point there; the remount would not
    make it read-only for its writers; it has a size limit; the new size is not below
    what is in use. ``nsenter`` missing, failing (the process gone, no ``mount`` in the
    container) or too slow raises :class:`VolumeError` naming ``where``.
    """
    check_size(where, size_bytes)
    try:
        mount, used_bytes, current_bytes = read_container_tmpfs(pid, path, proc)
    except NotTmpfsMountError as exc:
        raise NotTmpfsMountError(f"{where} is not a tmpfs mount point: {exc}") from None
    problem = read_only_problem(mount)
    if problem is not None:
        raise ValueError(f"the tmpfs at {where} {problem}; not resized")
    target_bytes = resize_target_bytes(where, size_bytes, used_bytes, current_bytes)
    keep = [o for o in mount.options if not o.startswith("size=")]
    options = ",".join(["remount", *keep, f"size={target_bytes}"])
    try:
        run_tool(["nsenter", "-t", str(pid), "-m", "-p", "mount", "-o", options, path],
                 timeout_s=timeout_s, error=VolumeError,
                 missing=f"cannot resize the tmpfs at {where}: nsenter is not installed on "
                 "this host (util-linux)")
    except VolumeError as exc:
        hint = (" (the container has no mount command: its image needs busybox's or "
                "util-linux's)" if "failed to execute mount" in str(exc) else "")
        raise VolumeError(f"{exc}{hint}") from None
    try:
        return read_container_tmpfs(pid, path, proc)[2]
    except (VolumeError, NotTmpfsMountError) as exc:
        raise VolumeError(f"resized the tmpfs at {where} but cannot read it back: {exc}"
                          ) from None


__all__ = ["PROC", "read_container_tmpfs", "remount_container_size"]
