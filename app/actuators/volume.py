"""Volume actuator: grow or shrink a container's tmpfs volume live
(``mount -o remount,size=<bytes> <path>``).

An I/O edge over :mod:`app.edges.tmpfs`, configured with ``{container: mount path}``
(the same mapping as :class:`~app.telemetry.volumes.VolumeSource`). One
:class:`~app.core.actions.ScalingAction` of tier ``disk`` and kind ``resize``, whose
``new_limit`` is the volume's size in bytes, rounded **up** to whole pages. Worked
example (4096-byte pages): ``new_limit`` 16_000_000 → ⌈16_000_000 / 4096⌉ = 3907 pages
→ ``size=16003072``; the result's ``new_limit`` is what ``statvfs`` reads back.

Before anything runs, the action and the volume are checked, and nothing is changed
when a check fails:

* a tier other than ``disk``, a kind other than ``resize``, or a bad value (not finite,
  ≤ 0) raises :class:`~app.actuators.base.InvalidActionError`;
* a container with no configured volume is ``DENIED``: prescale acts only on the
  volumes it was told about;
* a path that is not a tmpfs mount point (missing, unmounted, another file system), a
  tmpfs mounted without a limit, or a size below the bytes in use now is ``FAILED``
  with the reason (usage may drop and a volume may be mounted again, so a retry may
  succeed); so is a path that is a read-only view of a read-write tmpfs, where a
  remount would make the tmpfs read-only for its writers
  (:func:`~app.edges.tmpfs.read_only_problem`).

A volume inside a Docker container (``docker:/data``) is checked the same way through
the container's first process, asked of the Engine now
(:class:`~app.edges.docker_engine.DockerPids`), and resized with ``nsenter -t <pid> -m
-p mount -o remount,…,size=<bytes> /data``
(:func:`~app.edges.container_tmpfs.remount_container_size`).
A container not running (stopped, removed, unreachable) or restarted since its volume
was last read (another PID than the source saw: the action was decided on a tmpfs that
no longer exists) is ``FAILED`` naming the container and the path, nothing run.

Writing the size already in force runs nothing (``APPLIED``, old == new). A ``mount``
that fails is ``FAILED`` with what it said and the size read back afterwards.
Idempotent by ``action_id`` (:class:`~app.actuators.base.IdempotentActuator`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prescale.app.actuators.base import (
    IdempotentActuator,
    check_tier_resize,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.container_tmpfs import read_container_tmpfs, remount_container_size
from prescale.app.edges.docker_engine import DockerEngineError, DockerPids
from prescale.app.edges.tmpfs import (
    DEFAULT_TIMEOUT_S,
    NotTmpfsMountError,
    VolumeError,
    check_docker_volumes_served,
    check_volumes,
    docker_volume_path,
    page_size_bytes,
    read_volume,
    remount_size,
    round_up_to_page,
    volume_usage,
)


def check_volume_action(action: ScalingAction) -> None:
    """What a volume can never do, refused before anything runs
    (:class:`InvalidActionError`): a tier other than disk, a kind other than resize.
    Example: a memory resize → "a volume actuator resizes only the disk tier, not
    memory"."""
    check_tier_resize(action, Tier.DISK, "a volume actuator", "a volume")


def _target_bytes(action: ScalingAction, where: str, used_bytes: float, old_bytes: float
                  ) -> int | ActionResult:
    """The size (bytes, whole pages) the volume of ``action.container`` at ``where``, now
    ``old_bytes`` with ``used_bytes`` in use, is remounted with; or the result that ends
    the action before anything runs: FAILED for a tmpfs with no size limit or a size
    below the bytes in use, APPLIED (nothing run) for the size already in force."""
    name = action.container
    if math.isinf(old_bytes):
        return make_result(action, ResultStatus.FAILED, old_bytes, old_bytes,
                           f"volume of {name!r} at {where}: the tmpfs has no size limit "
                           "(size=0); the kernel cannot limit it afterwards")
    target_bytes = round_up_to_page(action.new_limit, page_size_bytes())
    if target_bytes == old_bytes:
        return make_result(action, ResultStatus.APPLIED, old_bytes, old_bytes,
                           f"already the size of the tmpfs at {where}: nothing run")
    if target_bytes < used_bytes:
        return make_result(action, ResultStatus.FAILED, old_bytes, old_bytes,
                           f"volume of {name!r} at {where}: cannot shrink it to "
                           f"{fmt_limit(target_bytes)} bytes, {fmt_limit(used_bytes)} "
                           "bytes are in use")
    return target_bytes


class VolumeActuator(IdempotentActuator):
    """Resizes the configured containers' tmpfs volumes.

    Example::

        actuator = VolumeActuator({"web": "/srv/web"})
        actuator.apply(ScalingAction("web/disk@1", 1.0, "web", Tier.DISK, 8388608,
                                     16777216, 0.9, 0.5, 30.0, 8388608, "predicted ENOSPC"))
        # → APPLIED, old 8 MiB, new 16 MiB (read back with statvfs)
    """

    kind = "volume"

    def __init__(self, volumes: Mapping[str, str], timeout_s: float = DEFAULT_TIMEOUT_S,
                 docker_pids: DockerPids | None = None) -> None:
        super().__init__()
        #: container name → mount path of its writable volume
        self.volumes: dict[str, str] = check_volumes(volumes)
        check_docker_volumes_served(self.volumes, docker_pids)
        #: the Docker containers' first processes (shared with the volume source)
        self.docker_pids = docker_pids
        self.timeout_s = float(timeout_s)
        #: how many remounts were tried (``mount -o remount`` run, or refused by
        #: :func:`~app.edges.tmpfs.remount_size`'s own checks after the volume changed)
        self.remounts = 0

    def apply(self, action: ScalingAction) -> ActionResult:
        if isinstance(action, ScalingAction):
            check_volume_action(action)
        return super().apply(action)

    def _apply(self, action: ScalingAction) -> ActionResult:
        name = action.container
        path = self.volumes.get(name)
        if path is None:
            return make_result(action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                               f"no volume is configured for container {name!r}: prescale "
                               "does not act on it")
        inside = docker_volume_path(path)
        if inside is not None:
            return self._apply_in_docker(action, inside)
        problem, used_bytes, old_bytes = read_volume(path)
        if problem is not None:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"volume of {name!r} at {path}: {problem}")
        target_bytes = _target_bytes(action, path, used_bytes, old_bytes)
        if isinstance(target_bytes, ActionResult):
            return target_bytes
        self.remounts += 1
        try:
            new_bytes = remount_size(path, target_bytes, timeout_s=self.timeout_s)
        except (VolumeError, ValueError) as exc:  # ValueError: it changed since the checks
            return make_result(action, ResultStatus.FAILED, old_bytes, self._read_back(path),
                               f"volume of {name!r}: {exc}")
        return make_result(action, ResultStatus.APPLIED, old_bytes, new_bytes,
                           f"tmpfs at {path} remounted with size={target_bytes} and read back")

    def _apply_in_docker(self, action: ScalingAction, inside: str) -> ActionResult:
        """The same steps for the tmpfs at ``inside`` in Docker container ``name``."""
        name, where = action.container, f"docker:{inside}"
        assert self.docker_pids is not None
        try:
            pid = self.docker_pids.pid_of(name)
        except DockerEngineError as exc:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"volume of {name!r} at {where}: {exc}; not resized")
        seen = self.docker_pids.seen.get(name)
        if seen is not None and seen != pid:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"volume of {name!r} at {where}: docker container {name!r} "
                               f"restarted since its volume was last read (pid {seen} → "
                               f"{pid}): not resized; the next poll reads its new tmpfs")
        try:
            _mount, used_bytes, old_bytes = read_container_tmpfs(pid, inside)
        except (NotTmpfsMountError, VolumeError) as exc:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"volume of {name!r} at {where} (docker container {name!r}, "
                               f"pid {pid}): {exc}")
        target_bytes = _target_bytes(action, where, used_bytes, old_bytes)
        if isinstance(target_bytes, ActionResult):
            return target_bytes
        self.remounts += 1
        label = f"{where} of docker container {name!r}"
        try:
            new_bytes = remount_container_size(pid, inside, target_bytes, label,
                                               timeout_s=self.timeout_s)
        except (VolumeError, ValueError) as exc:
            try:
                back = read_container_tmpfs(pid, inside)[2]
            except (NotTmpfsMountError, VolumeError):
                back = math.nan
            return make_result(action, ResultStatus.FAILED, old_bytes, back,
                               f"volume of {name!r}: {exc}")
        return make_result(action, ResultStatus.APPLIED, old_bytes, new_bytes,
                           f"tmpfs at {where} in docker container {name!r} (pid {pid}) "
                           f"remounted with size={target_bytes} and read back")

    @staticmethod
    def _read_back(path: str) -> float:
        try:
            return volume_usage(path)[1]
        except OSError:
            return math.nan


__all__ = ["VolumeActuator", "check_volume_action"]
