"""tmpfs volumes on disk: which paths are tmpfs mount points, how full they are, and
resizing one live (``mount -o remount,size=…``).

An I/O edge shared by the volume source (:mod:`app.telemetry.volumes`) and the volume
actuator (:mod:`app.actuators.volume`). A container's writable space is a size-limited
tmpfs mounted at a path this process can see (its own mount namespace: a Kubernetes
``emptyDir`` with ``medium: Memory`` and a ``sizeLimit`` on the node, a tmpfs bind-
mounted into a container, or ``mount -t tmpfs -o size=64m tmpfs /srv/web``).

* **Is it one**: a path is a volume when, resolved (symlinks, ``..``), it is itself
  the mount point of a ``tmpfs`` in ``/proc/self/mountinfo`` (:func:`mount_at`,
  :func:`is_tmpfs_mount`). A directory that merely lies *on* a tmpfs is not one: its
  size is its parent mount's, shared with everything else on it.
* **How full**: :func:`volume_usage` from ``statvfs`` (what ``df`` shows).
* **Resize**: :func:`remount_size` runs ``mount -o remount,size=<bytes> <path>``; tmpfs
  changes its size in place, the files and the processes that hold them open keep
  going. The kernel refuses a size below what is in use (``mount`` then says only "bad
  option"), and cannot put a limit on a tmpfs mounted without one (``size=0``): both
  are refused here first, with the reason, before anything runs.
* **Read-only views**: ``mount -o remount`` passes the mount's own ``ro`` on to the
  file system. Through a read-only view of a read-write tmpfs (``mount --bind`` then
  ``remount,bind,ro``) a resize makes the tmpfs itself read-only, for its writers too
  (measured: ``mount`` succeeds and says nothing, their next write fails with EROFS;
  with a file open for writing the kernel refuses instead, "mount point is busy").
  That is refused here first (:func:`read_only_problem`). (A read-write mount of a
  tmpfs already read-only is resized and turns read-only itself: nothing that could
  write before cannot now.)

Errors: :class:`VolumeError` when ``mount`` fails or mountinfo cannot be read;
:class:`NotTmpfsMountError` (a :class:`ValueError`) when a path is not a tmpfs mount
point. Every message names the path.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prescale.app.edges.command import run_tool

#: where this process's mounts are listed
PROC_MOUNTINFO = Path("/proc/self/mountinfo")
#: how long ``mount -o remount`` may take before it is given up on
DEFAULT_TIMEOUT_S = 10.0


class VolumeError(RuntimeError):
    """A volume could not be read or resized (``mount`` failed, mountinfo unreadable);
    the message names the path and what ``mount`` said."""


class NotTmpfsMountError(ValueError):
    """A path that is not the mount point of a tmpfs (missing, a plain directory, a
    mount of another type); the message names the path and what it is instead."""


# --------------------------------------------------------------------------- mountinfo


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where (``mount_point``, unescaped), which
    device (``major:minor``, as ``st_dev`` of a file on it), which part of the file
    system (``root``), its type and source; whether this mount is read-only
    (``read_only``: ``ro`` in its mount options) and whether the file system itself is
    (``super_read_only``: ``ro`` in its super options)."""

    mount_point: str
    major: int
    minor: int
    root: str
    fstype: str
    source: str
    read_only: bool = field(default=False, compare=False)
    super_read_only: bool = field(default=False, compare=False)
    #: this mount's own options, as listed (``rw,nosuid,nodev,noexec,relatime``)
    options: tuple[str, ...] = field(default=(), compare=False)


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal.
    Example: ``/srv/a\\040b`` → ``/srv/a b``."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount in ``/proc/self/mountinfo`` text, in the order listed.

    Fields: id parent major:minor root mount-point options [optional tags…] ``-`` fstype
    source super-options. The optional tags vary in number, so the type is read after
    the ``" - "`` separator, never by position. Example::

        45 27 0:40 / /srv/a\\040b rw,relatime shared:7 - tmpfs tmpfs rw,size=8192k

    → ``Mount("/srv/a b", 0, 40, "/", "tmpfs", "tmpfs")``, ``read_only`` and
    ``super_read_only`` False (``rw`` in both options). Lines that do not parse are
    skipped.
    """
    out: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 6 or len(rf) < 2:
            continue
        major, colon, minor = lf[2].partition(":")
        if not colon or not major.isdigit() or not minor.isdigit():
            continue
        out.append(Mount(_unescape(lf[4]), int(major), int(minor), _unescape(lf[3]),
                         rf[0], _unescape(rf[1]), "ro" in lf[5].split(","),
                         len(rf) > 2 and "ro" in rf[2].split(","),
                         tuple(o for o in lf[5].split(",") if o)))
    return out


def read_mounts(mountinfo: Path = PROC_MOUNTINFO) -> list[Mount]:
    """The mounts of this process's mount namespace; :class:`VolumeError` naming the
    file when it cannot be read."""
    try:
        return parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError as exc:
        raise VolumeError(f"cannot read {mountinfo}: {exc.strerror or exc}") from None


def mount_at(path: str | os.PathLike[str], mounts: Sequence[Mount] | None = None
             ) -> Mount | None:
    """The mount whose mount point is ``path`` itself (resolved), or None.

    When several are stacked on that point, the one visible there is the one whose
    device is the path's ``st_dev``; if none matches, the last listed (mountinfo lists
    in mount order, so the last one is on top). ``mounts``: a list already read (a
    caller checking many paths reads mountinfo once); default: read it now. A path that
    does not exist has no mount (None).
    """
    resolved = os.path.realpath(os.fspath(path))
    try:
        dev = os.stat(resolved).st_dev
    except OSError:
        return None
    if mounts is None:
        mounts = read_mounts()
    here = [m for m in mounts if m.mount_point == resolved]
    if not here:
        return None
    for m in reversed(here):
        if (m.major, m.minor) == (os.major(dev), os.minor(dev)):
            return m
    return here[-1]


def tmpfs_problem(path: str | os.PathLike[str], mounts: Sequence[Mount] | None = None
                  ) -> str | None:
    """Why ``path`` is not a tmpfs mount point, without the path (the caller names it),
    or None when it is one. Examples: ``"does not exist"``, ``"is not a directory"``,
    ``"is not a mount point (a directory on the ext4 at /)"``, ``"is a mount point of
    type ext4, not tmpfs"``."""
    p = os.fspath(path)
    resolved = os.path.realpath(p)
    if not os.path.exists(resolved):
        return "does not exist"
    if not os.path.isdir(resolved):
        return "is not a directory"
    if mounts is None:
        mounts = read_mounts()
    m = mount_at(resolved, mounts)
    if m is None:
        return not_mount_point_problem(resolved, mounts)
    if m.fstype != "tmpfs":
        return f"is a mount point of type {m.fstype}, not tmpfs"
    return None


def not_mount_point_problem(resolved: str, mounts: Sequence[Mount]) -> str:
    """What ``resolved``, a directory that is no mount point in ``mounts``, is: the
    mount it lies on, when one is listed. Example: ``/srv/web`` on the root's ext4 →
    ``"is not a mount point (a directory on the ext4 at /)"``."""
    under = _mount_containing(resolved, mounts)
    where = f" (a directory on the {under.fstype} at {under.mount_point})" if under else ""
    return f"is not a mount point{where}"


def _mount_containing(resolved: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount a (non-mount-point) path lies on: the longest mount point above it."""
    best: Mount | None = None
    for m in mounts:
        mp = m.mount_point.rstrip("/") + "/"
        if (resolved + "/").startswith(mp) and (best is None
                                               or len(m.mount_point) >= len(best.mount_point)):
            best = m
    return best


def read_only_problem(mount: Mount) -> str | None:
    """Why a remount through ``mount`` would make its file system read-only for its
    writers, or None when it would not (``mount -o remount`` passes the mount's own
    ``ro`` on to the file system). Example: a read-only bind mount of a read-write
    tmpfs → ``"is a read-only view of a read-write tmpfs: a remount from here would
    make the tmpfs read-only for its writers too"``; both read-write, or both
    read-only → None."""
    if mount.read_only and not mount.super_read_only:
        return ("is a read-only view of a read-write tmpfs: a remount from here would make "
                "the tmpfs read-only for its writers too")
    return None


def is_tmpfs_mount(path: str | os.PathLike[str], mounts: Sequence[Mount] | None = None
                   ) -> bool:
    """Whether ``path`` (resolved) is itself the mount point of a tmpfs."""
    return tmpfs_problem(path, mounts) is None


def check_tmpfs_mount(path: str | os.PathLike[str], mounts: Sequence[Mount] | None = None
                      ) -> str:
    """``path`` resolved, when it is a tmpfs mount point; else
    :class:`NotTmpfsMountError`, e.g. ``"/srv/web is not a tmpfs mount point: does not
    exist"``."""
    problem = tmpfs_problem(path, mounts)
    if problem is not None:
        raise NotTmpfsMountError(f"{os.fspath(path)} is not a tmpfs mount point: {problem}")
    return os.path.realpath(os.fspath(path))


# --------------------------------------------------------------------------- sizes


#: how a volume inside a Docker container's mount namespace is written in
#: ``sources.volumes``: ``docker:/data`` is the tmpfs at ``/data`` in the container watched
#: (by the Docker source) under the same name
DOCKER_PREFIX = "docker:"


def docker_volume_path(spec: str) -> str | None:
    """The path inside the container of a ``docker:<path>`` volume, or None for a host
    path. Example: ``"docker:/data"`` → ``"/data"``; ``"/srv/web"`` → None."""
    return spec[len(DOCKER_PREFIX):] if spec.startswith(DOCKER_PREFIX) else None


def container_path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a mount point inside a container, or None: it must be
    absolute and written normalised (no ``..``, ``.``, ``//`` or trailing ``/``), and
    not ``/`` itself. Example: ``"data"`` → "must be absolute"; ``"/data/../etc"`` →
    "must be written normalised (/etc)"."""
    if not path.startswith("/"):
        return "must be absolute"
    normal = os.path.normpath(path)
    if path != normal or path.startswith("//"):
        return f"must be written normalised ({normal})"
    if path == "/":
        return "must not be the container's root"
    return None


def check_volumes(volumes: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """``sources.volumes`` checked: container name (non-empty) → an absolute host path,
    or ``docker:<absolute path inside the container>`` (:data:`DOCKER_PREFIX`).
    ``ValueError`` naming the container otherwise, e.g. "volumes: the path of 'x' must be
    absolute, got 'relative/dir'", "volumes: the path of 'web' inside its Docker
    container, 'docker:data', must be absolute"."""
    checked: dict[str, str] = {}
    for name, path in dict(volumes).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"volumes: a container name must be a non-empty string, "
                             f"got {name!r}")
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise ValueError(f"volumes: the path of {name!r} must be a non-empty path, "
                             f"got {path!r}")
        text = os.fspath(path)
        inside = docker_volume_path(text) if isinstance(text, str) else None
        if inside is not None:
            problem = container_path_problem(inside)
            if problem is not None:
                raise ValueError(f"volumes: the path of {name!r} inside its Docker "
                                 f"container, {text!r}, {problem} (e.g. docker:/data)")
        elif not os.path.isabs(text):
            raise ValueError(f"volumes: the path of {name!r} must be absolute (a host path) "
                             f"or docker:<absolute path inside its Docker container>, "
                             f"got {text!r}")
        checked[name] = text
    return checked


def check_docker_volumes_served(volumes: Mapping[str, str], docker_pids: object | None
                                ) -> None:
    """A ``docker:<path>`` volume is reached through its container's first process, so
    it needs the Docker source's :class:`~app.edges.docker_engine.DockerPids`
    (``docker_pids``). ``ValueError`` naming those volumes when it is None, e.g.
    "volumes: 'web' live in a Docker container (docker:<path>): that needs the Docker
    source (sources.docker = true)"."""
    in_docker = [n for n, p in volumes.items() if docker_volume_path(p) is not None]
    if in_docker and docker_pids is None:
        raise ValueError(f"volumes: {', '.join(map(repr, in_docker))} live in a Docker "
                         "container (docker:<path>): that needs the Docker source "
                         "(sources.docker = true)")


def page_size_bytes() -> int:
    """The kernel's page size (tmpfs sizes are whole pages): 4096 on x86-64."""
    return int(os.sysconf("SC_PAGE_SIZE"))


def round_up_to_page(size_bytes: float, page_bytes: int) -> int:
    """``size_bytes`` rounded up to a whole number of pages.

    Worked example (4096-byte pages): 10_000 → ⌈10_000 / 4096⌉ = 3 pages → 12_288;
    8_388_608 (8 MiB, already whole pages) → 8_388_608.
    """
    return int(math.ceil(size_bytes / page_bytes)) * int(page_bytes)


def volume_usage(path: str | os.PathLike[str]) -> tuple[float, float]:
    """``(used_bytes, size_bytes)`` of the file system at ``path``, from ``statvfs``.

    ``size = f_blocks × f_frsize``, ``used = (f_blocks − f_bfree) × f_frsize``.
    Worked example: an 8 MiB tmpfs with 3 MiB written (4096-byte pages): f_blocks 2048,
    f_bfree 1280, f_frsize 4096 → size 2048 × 4096 = 8_388_608, used (2048 − 1280) ×
    4096 = 3_145_728.

    A tmpfs mounted without a limit (``size=0``) reports no blocks: ``(nan, inf)`` (its
    usage is not counted by the kernel). Does not check that ``path`` is a tmpfs mount
    point (:func:`check_tmpfs_mount` does); raises :class:`OSError` when it cannot be
    read.
    """
    st = os.statvfs(os.fspath(path))
    if st.f_blocks == 0:
        return math.nan, math.inf
    frsize = st.f_frsize or st.f_bsize
    return float((st.f_blocks - st.f_bfree) * frsize), float(st.f_blocks * frsize)


def read_volume(path: str | os.PathLike[str], mounts: Sequence[Mount] | None = None
                ) -> tuple[str | None, float, float]:
    """``(problem, used_bytes, size_bytes)`` of the volume at ``path``: ``problem`` None
    and :func:`volume_usage`'s numbers when it is a tmpfs mount point that can be read;
    else why not, without the path (:func:`tmpfs_problem`'s words, or ``"cannot read it:
    <strerror>"``), and ``nan, nan``. ``mounts``: as for :func:`tmpfs_problem`. Example:
    an 8 MiB tmpfs at ``/srv/web`` with 3 MiB written → ``(None, 3_145_728,
    8_388_608)``; a plain directory → ``("is not a mount point (a directory on the ext4
    at /)", nan, nan)``."""
    problem = tmpfs_problem(path, mounts)
    if problem is not None:
        return problem, math.nan, math.nan
    try:
        used_bytes, size_bytes = volume_usage(path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}", math.nan, math.nan
    return None, used_bytes, size_bytes


def check_size(path: str | os.PathLike[str], size_bytes: float) -> None:
    """``size_bytes`` is a finite number > 0; else :class:`ValueError` naming the path
    and the value."""
    if (isinstance(size_bytes, bool) or not isinstance(size_bytes, numbers.Real)
            or not math.isfinite(size_bytes) or size_bytes <= 0):
        raise ValueError(f"size of the tmpfs at {os.fspath(path)} must be a finite number "
                         f"of bytes > 0, got {size_bytes!r}")


def resize_target_bytes(where: str, size_bytes: float, used_bytes: float,
                        current_bytes: float) -> int:
    """The size a tmpfs now ``current_bytes`` big with ``used_bytes`` in use is remounted
    with for ``size_bytes``: rounded up to whole pages (:func:`round_up_to_page`).
    ``ValueError`` naming ``where`` when the tmpfs has no size limit (``inf``: mounted
    with ``size=0``, which cannot be limited later) or that size is below the bytes in
    use. Worked example (4096-byte pages): 16_000_000 for an 8 MiB tmpfs with 3 MiB used
    → 16_003_072; 1_000_000 for it → "cannot shrink the tmpfs at /srv/web to 1003520
    bytes: 3145728 bytes are in use (…)"."""
    if math.isinf(current_bytes):
        raise ValueError(f"the tmpfs at {where} has no size limit (mounted with size=0); "
                         "the kernel cannot limit it afterwards")
    target_bytes = round_up_to_page(size_bytes, page_size_bytes())
    if target_bytes < used_bytes:
        raise ValueError(f"cannot shrink the tmpfs at {where} to {target_bytes} bytes: "
                         f"{used_bytes:.0f} bytes are in use (a tmpfs cannot be made smaller "
                         "than its contents)")
    return target_bytes


def remount_size(path: str | os.PathLike[str], size_bytes: float,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Resize the tmpfs mounted at ``path`` live; return its size read back (bytes).

    The size is rounded **up** to whole pages (:func:`round_up_to_page`) and set with
    ``mount -o remount,size=<bytes> <path>`` (list arguments, ``timeout_s``), then read
    back with ``statvfs``. Worked example (4096-byte pages): an 8 MiB tmpfs at
    ``/srv/web`` with 3 MiB used, ``size_bytes=16_000_000`` → ⌈16_000_000 / 4096⌉ =
    3907 pages → ``mount -o remount,size=16003072 /srv/web`` → returns 16_003_072.

    Checked before anything runs (:class:`ValueError` naming the path, nothing
    changed): the size is finite and > 0; the path is a tmpfs mount point
    (:class:`NotTmpfsMountError`); the remount would not make the tmpfs read-only
    (:func:`read_only_problem`: e.g. "the tmpfs at /srv/web is a read-only view of a
    read-write tmpfs: …; not resized"); the tmpfs has a size limit now (one
    mounted with ``size=0`` cannot be limited later); the new size is not below the
    bytes in use.
    ``mount`` failing, not found or not finishing in time raises :class:`VolumeError`
    naming the path and what ``mount`` said.
    """
    check_size(path, size_bytes)
    mounts = read_mounts()
    where = check_tmpfs_mount(path, mounts)
    mount = mount_at(where, mounts)
    problem = None if mount is None else read_only_problem(mount)
    if problem is not None:
        raise ValueError(f"the tmpfs at {where} {problem}; not resized")
    try:
        used_bytes, current_bytes = volume_usage(where)
    except OSError as exc:
        raise VolumeError(f"cannot read the tmpfs at {where}: {exc.strerror or exc}") from None
    target_bytes = resize_target_bytes(where, size_bytes, used_bytes, current_bytes)
    run_tool(["mount", "-o", f"remount,size={target_bytes}", where], timeout_s=timeout_s,
             error=VolumeError, missing=f"cannot resize the tmpfs at {where}: the mount "
             "command is not installed (util-linux)")
    try:
        return volume_usage(where)[1]
    except OSError as exc:
        raise VolumeError(f"resized the tmpfs at {where} but cannot read it back: "
                          f"{exc.strerror or exc}") from None


__all__ = [
    "DOCKER_PREFIX",
    "check_docker_volumes_served",
    "check_volumes",
    "container_path_problem",
    "docker_volume_path",
    "DEFAULT_TIMEOUT_S",
    "PROC_MOUNTINFO",
    "Mount",
    "NotTmpfsMountError",
    "VolumeError",
    "check_size",
    "check_tmpfs_mount",
    "is_tmpfs_mount",
    "mount_at",
    "not_mount_point_problem",
    "page_size_bytes",
    "parse_mountinfo",
    "read_mounts",
    "read_only_problem",
    "read_volume",
    "remount_size",
    "resize_target_bytes",
    "round_up_to_page",
    "tmpfs_problem",
    "volume_usage",
]
