"""tmpfs volumes as the writable space of containers: how full each is, and when it
filled up.

An I/O edge over :mod:`app.edges.tmpfs`. Configured with ``{container: mount path}``
(the path as this process sees it). Each poll reads ``/proc/self/mountinfo`` once and,
per volume:

1. **Check**: the path, resolved, must be the mount point of a tmpfs. When it is not
   (missing, a plain directory, another file system), ``errors[container]`` says why,
   e.g. ``"volume of 'web' at /srv/web: does not exist"`` or ``"volume of 'web' at
   /srv/web: is not a mount point (a directory on the ext4 at /)"`` — at **every** poll
   while it lasts (the monitor keeps a container that is reported, and the fault stays
   in view); the other volumes go on.
2. **Sample**: ``Sample(container, ts_s=clock(), disk_used_bytes=…,
   disk_limit_bytes=…)`` from ``statvfs`` (:func:`~app.edges.tmpfs.volume_usage`);
   every other field is left at its default (``nan``/``inf``): the monitor merges it
   with the samples other sources give for the same container
   (:func:`~app.core.sample.merge_sources`).
3. **Full**: the volume is full when its free space, ``size − used``, is below one page
   (no write of even one byte can get a new page: ENOSPC). One ``disk_full`` event per
   episode: at the first poll that sees it full; none while it stays full; re-armed at
   the first poll that sees at least one page free again (freed, or grown by the
   actuator). Worked example (4096-byte pages): an 8 MiB volume (8_388_608) with
   8_388_608 used → free 0 < 4096 → full, one event; next poll still full → none; a file
   deleted, 5_242_880 used → free 3_145_728 → re-armed; full again → one more event.

A tmpfs mounted without a limit (``size=0``) gives a sample with ``disk_limit_bytes``
``inf`` and ``disk_used_bytes`` ``nan`` (the kernel does not count it), and an error
at every poll saying it cannot be resized.

Only ENOSPC from running out of bytes is seen; a tmpfs out of inodes (``nr_inodes``)
also refuses writes, and is not reported here.

Worked example: ``VolumeSource({"web": "/srv/web"})`` over an 8 MiB tmpfs with 3 MiB
written → one sample ``web``, ``disk_used_bytes`` 3_145_728, ``disk_limit_bytes``
8_388_608, no events, no errors.

**Inside a Docker container** (``{"web": "docker:/data"}``: the ``--tmpfs /data`` of the
container the Docker source watches as ``web``): the container's first process is asked
of the Engine at every poll (:class:`~app.edges.docker_engine.DockerPids`), and the
tmpfs is read through it (:func:`~app.edges.container_tmpfs.read_container_tmpfs`: its
``/proc/<pid>/mountinfo``, ``statvfs`` of ``/proc/<pid>/root/data``). A container that
is stopped, removed or unreachable is an error naming it and the path at every poll
while it lasts, e.g. ``"volume of 'web' at docker:/data: docker container 'web' is not
running (exited, exit code 0)"``; one that restarted (another PID) is read from its new
process on, with one error saying so (its tmpfs is a new one, back at its first size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch
from prescale.app.edges.container_tmpfs import read_container_tmpfs
from prescale.app.edges.docker_engine import DockerEngineError, DockerPids
from prescale.app.edges.tmpfs import (
    NotTmpfsMountError,
    VolumeError,
    check_docker_volumes_served,
    check_volumes,
    docker_volume_path,
    page_size_bytes,
    read_mounts,
    read_volume,
)


class VolumeSource:
    """Samples of tmpfs volumes and their ``disk_full`` events.

    Example::

        source = VolumeSource({"web": "/srv/web", "db": "/srv/db"})
        batch = source.poll()    # two samples with disk_used_bytes / disk_limit_bytes
        source.watches("web")    # True: the monitor routes disk resizes to the volume actuator
    """

    kind = "volumes"

    def __init__(self, volumes: Mapping[str, str], clock: Callable[[], float] = time.time,
                 docker_pids: DockerPids | None = None) -> None:
        #: container name → mount path of its writable volume, as configured
        self.volumes: dict[str, str] = check_volumes(volumes)
        check_docker_volumes_served(self.volumes, docker_pids)
        #: where the Docker containers' first processes are asked (docker: volumes)
        self.docker_pids = docker_pids
        self.clock = clock
        self.page_bytes = page_size_bytes()
        #: containers whose volume was full at the last poll that read it
        self._full: set[str] = set()

    def watches(self, name: str) -> bool:
        """Whether ``name`` has a volume here (its disk resizes go to the volume actuator)."""
        return name in self.volumes

    def poll(self) -> SourceBatch:
        """One sample per readable volume, a ``disk_full`` event per new full episode,
        and ``errors[container]`` for each volume that is not a readable tmpfs mount
        point. Raises :class:`~app.edges.tmpfs.VolumeError` only when mountinfo itself
        cannot be read."""
        mounts = read_mounts()
        batch = SourceBatch()
        for name, path in self.volumes.items():
            inside = docker_volume_path(path)
            if inside is None:
                problem, used_bytes, size_bytes = read_volume(path, mounts)
            else:
                problem, used_bytes, size_bytes = self._read_in_docker(name, inside, batch)
            if problem is not None:
                batch.errors[name] = f"volume of {name!r} at {path}: {problem}"
                continue
            ts = float(self.clock())
            batch.samples.append(Sample(container=name, ts_s=ts, disk_used_bytes=used_bytes,
                                        disk_limit_bytes=size_bytes))
            if math.isinf(size_bytes):
                batch.errors[name] = (f"volume of {name!r} at {path}: the tmpfs has no size "
                                      "limit (size=0): its usage is not counted and it cannot "
                                      "be resized")
                continue
            free_bytes = size_bytes - used_bytes
            if free_bytes < self.page_bytes:
                if name not in self._full:
                    self._full.add(name)
                    batch.events.append(Event(
                        name, ts, EventKind.DISK_FULL,
                        f"tmpfs at {path} is full: {used_bytes:.0f} of {size_bytes:.0f} bytes "
                        f"used, {free_bytes:.0f} free (less than one page of "
                        f"{self.page_bytes} bytes)"))
            else:
                self._full.discard(name)
        return batch

    def _read_in_docker(self, name: str, inside: str, batch: SourceBatch
                        ) -> tuple[str | None, float, float]:
        """``(problem, used, size)`` of the tmpfs at ``inside`` in Docker container
        ``name``; a restart (another PID than at the last read) is said once in
        ``batch.errors``, and the new one read."""
        assert self.docker_pids is not None
        try:
            pid = self.docker_pids.pid_of(name)
        except DockerEngineError as exc:
            return str(exc), math.nan, math.nan
        try:
            _mount, used_bytes, size_bytes = read_container_tmpfs(pid, inside)
        except NotTmpfsMountError as exc:
            return f"{exc} (in docker container {name!r}, pid {pid})", math.nan, math.nan
        except VolumeError as exc:
            return (f"docker container {name!r} stopped or restarted while read: {exc}",
                    math.nan, math.nan)
        before = self.docker_pids.seen.get(name)
        self.docker_pids.seen[name] = pid
        if before is not None and before != pid:
            self._full.discard(name)
            batch.errors[name] = (f"volume of {name!r} at docker:{inside}: docker container "
                                  f"{name!r} restarted (pid {before} → {pid}): its tmpfs is a "
                                  "new one, read from now on")
        return None, used_bytes, size_bytes

    def close(self) -> None:
        """Forgets which volumes were full; closes the Engine client (docker: volumes)."""
        self._full.clear()
        if self.docker_pids is not None:
            self.docker_pids.close()


__all__ = ["VolumeSource"]
