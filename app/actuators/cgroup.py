"""cgroup actuator: set a container's memory limit, CPU quota and block-I/O write limit,
v1 or v2.

An I/O edge. Every call first checks, writing nothing on failure:

1. each of the container's directories lies strictly beneath ``cgroup.roots``
   (:class:`~app.edges.cgroupfs.OutsideRootsError`);
2. the value is positive and finite (:class:`ValueError`);
3. the directory to write exists (:class:`~app.edges.cgroupfs.CgroupNotFoundError`).

After that nothing is raised: a write the kernel refuses (``EBUSY`` when a v1 memory
limit is below what the cgroup uses and cannot be reclaimed, ``EINVAL`` for an
out-of-range value) comes back as ``ok=False`` with the errno in ``error``. ``new``
is always what the file says after the write, read back — the kernel rounds memory
limits down to a whole page.

Files written (names and formats: :mod:`app.edges.cgroup_layout`)
-------------------------------------------------------------------
* v1 memory: ``memory.limit_in_bytes``. The kernel requires
  ``memory.memsw.limit_in_bytes`` ≥ ``memory.limit_in_bytes``; when a memsw limit is
  set, the swap allowance (memsw − memory) is kept: raising writes memsw first, then
  memory; lowering writes memory first, then memsw. Example: memory 64 MiB, memsw
  64 MiB, new limit 96 MiB → memsw := 96 MiB, then memory := 96 MiB.
* v1 cpu: ``cpu.cfs_quota_us`` = round(cores × ``cpu.cfs_period_us``), at least 1000
  (the kernel's minimum); the period is kept. Example: 0.2 cores, period 100000 → 20000.
* v2: ``memory.max`` (bytes) and ``cpu.max`` ``"<quota> <period>"`` (period kept).
* block-I/O write bandwidth: v1 ``blkio.throttle.write_bps_device`` (``"7:0 2097152"``),
  v2 ``io.max`` (``"7:0 wbps=2097152"``), one line per device that already has a write
  limit; the new total is spread over them in proportion to their current limits. With
  no such device the call fails (``ok=False``) and writes nothing.

Writing the value already set writes nothing and returns ``ok=True`` with
``old == new``.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prescale.app.core.sample import Tier
from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroupfs import (
    CgroupContainer,
    CgroupNotFoundError,
    check_under_roots,
)
from prescale.app.settings import CgroupSettings

_T = TypeVar("_T")

@dataclass(frozen=True)
class ActuationResult:
    """What one write did. ``new`` is read back from the file after the write."""

    container: str
    tier: Tier
    requested: float
    old: float
    new: float
    ok: bool
    error: str = ""


class _WriteError(Exception):
    pass


def _errno_text(exc: OSError, path: Path, text: str) -> str:
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return f"{code} ({reason}) writing {text!r} to {path}"


def _read(path: Path) -> str:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise _WriteError(f"{code} ({exc.strerror}) reading {path}") from None


def _write(path: Path, text: str) -> None:
    # No O_CREAT: a cgroup file that is not there is an error, never created.
    # O_NOFOLLOW: never write through a symlinked file out of the cgroup.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise _WriteError(_errno_text(exc, path, text)) from None


def _parse(path: Path, parser: Callable[[str], _T], text: str) -> _T:
    try:
        return parser(text)
    except ValueError as exc:
        raise _WriteError(f"malformed {path}: {exc}") from None


def _positive_finite(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be positive and finite, got {value!r}")
    return float(value)


class CgroupActuator:
    """Sets memory limits, CPU quotas and block-I/O write limits of containers beneath
    ``settings.roots``."""

    def __init__(self, settings: CgroupSettings) -> None:
        self.settings = settings

    # -- checks

    def _target_dir(self, container: CgroupContainer, key: str) -> Path:
        """Checks every directory of the container, then returns the one to write."""
        resolved = {k: check_under_roots(p, self.settings.roots) for k, p in container.dirs.items()}
        if key not in resolved:
            have = ", ".join(sorted(resolved)) or "none"
            raise CgroupNotFoundError(
                f"container {container.name!r} has no {key} cgroup directory (has: {have})"
            )
        return resolved[key]

    @staticmethod
    def _must_exist(container: CgroupContainer, path: Path) -> None:
        if not path.is_dir():
            raise CgroupNotFoundError(f"cgroup {path} of {container.name!r} does not exist")

    # -- memory

    def set_memory_limit(self, container: CgroupContainer, limit_bytes: int) -> ActuationResult:
        """Sets the memory limit to ``limit_bytes`` (v1 ``memory.limit_in_bytes``, v2
        ``memory.max``). See the module docstring for the order of v1 memsw writes."""
        directory = self._target_dir(container, lay.controller_key(container.version, "memory"))
        requested = _positive_finite(limit_bytes, "memory limit_bytes")
        limit = int(requested)
        if limit < 1:
            raise ValueError(f"memory limit_bytes must be at least 1, got {limit_bytes!r}")
        self._must_exist(container, directory)

        def result(old: float, new: float, ok: bool, error: str = "") -> ActuationResult:
            return ActuationResult(container.name, Tier.MEMORY, requested, old, new, ok, error)

        path = directory / lay.memory_limit_file(container.version)

        def parser(text: str) -> float:
            return lay.parse_memory_limit(container.version, text)

        try:
            old_text = _read(path)
            old = _parse(path, parser, old_text)
        except _WriteError as exc:
            return result(math.nan, math.nan, False, str(exc))
        if old == limit:
            return result(old, old, True)

        error = ""
        try:
            if container.version == "v2":
                _write(path, lay.format_memory_limit(limit))
            else:
                error = self._write_v1_memory(directory, lay.parse_int(old_text), limit)
        except _WriteError as exc:
            return result(old, self._read_back(path, parser), False, str(exc))
        return result(old, self._read_back(path, parser), True, error)

    @staticmethod
    def _write_v1_memory(directory: Path, old_limit: int, limit: int) -> str:
        """Writes a v1 memory limit, moving a set memsw limit along. Returns a warning."""
        mem = directory / lay.V1_MEMORY_LIMIT
        memsw = directory / lay.V1_MEMSW_LIMIT
        fmt = lay.format_memory_limit
        try:
            memsw_old = lay.parse_int(_read(memsw))
        except (_WriteError, ValueError):
            memsw_old = None  # no swap accounting: nothing to keep in step
        if memsw_old is None or memsw_old >= lay.V1_UNLIMITED_THRESHOLD:
            _write(mem, fmt(limit))
            return ""
        memsw_new = limit + max(0, memsw_old - old_limit)
        if memsw_new > memsw_old:  # raising: memsw first, so memsw ≥ memory holds
            _write(memsw, fmt(memsw_new))
            try:
                _write(mem, fmt(limit))
            except _WriteError:
                try:
                    _write(memsw, fmt(memsw_old))
                except _WriteError:
                    pass
                raise
            return ""
        _write(mem, fmt(limit))  # lowering: memory first
        if memsw_new != memsw_old:
            try:
                _write(memsw, fmt(memsw_new))
            except _WriteError as exc:
                return f"memory limit set; memsw limit left at {memsw_old}: {exc}"
        return ""

    # -- cpu

    def set_cpu_quota(self, container: CgroupContainer, cores: float) -> ActuationResult:
        """Sets the CFS quota to ``cores`` CPUs, keeping the period.

        Example: 0.2 cores with period 100000 µs → quota 20000 µs (v1
        ``cpu.cfs_quota_us``; v2 ``cpu.max`` ``"20000 100000"``).
        """
        directory = self._target_dir(container, lay.controller_key(container.version, "cpu"))
        requested = _positive_finite(cores, "cpu cores")
        self._must_exist(container, directory)

        def result(old: float, new: float, ok: bool, error: str = "") -> ActuationResult:
            return ActuationResult(container.name, Tier.CPU, requested, old, new, ok, error)

        if container.version == "v2":
            path = directory / lay.V2_CPU_MAX

            def read_cores() -> tuple[int | None, int, float]:
                quota, period = _parse(path, lay.parse_cpu_max_fields, _read(path))
                return quota, period, math.inf if quota is None else quota / period
        else:
            path = directory / lay.V1_CPU_QUOTA
            period_path = directory / lay.V1_CPU_PERIOD

            def read_cores() -> tuple[int | None, int, float]:
                quota = _parse(path, lay.parse_int, _read(path))
                period = _parse(period_path, lay.parse_int, _read(period_path))
                return quota, period, lay.cfs_quota_cores(quota, period)

        try:
            old_quota, period, old = read_cores()
        except (_WriteError, ValueError) as exc:
            return result(math.nan, math.nan, False, str(exc))
        quota = lay.quota_us_for_cores(requested, period)
        if old_quota == quota:
            return result(old, old, True)
        text = lay.format_cpu_quota(container.version, quota, period)
        try:
            _write(path, text)
        except _WriteError as exc:
            return result(old, self._read_back_cores(read_cores), False, str(exc))
        return result(old, self._read_back_cores(read_cores), True)

    # -- block-I/O write bandwidth

    def set_io_write_limit(self, container: CgroupContainer,
                           bytes_per_s: float) -> ActuationResult:
        """Sets the container's total block-I/O write limit to ``bytes_per_s``, spread
        over the devices that already have a write limit in proportion to their current
        limits, each rounded to whole bytes/s (v1 ``blkio.throttle.write_bps_device``,
        v2 ``io.max`` ``wbps=``; :func:`~app.edges.cgroup_layout.spread_write_limit`).

        Example: devices 7:0 at 1 MiB/s and 8:0 at 3 MiB/s, new total 8 MiB/s → 7:0 at
        2 MiB/s and 8:0 at 6 MiB/s (v1: ``"7:0 2097152"`` then ``"8:0 6291456"``);
        ``old`` 4 MiB/s, ``new`` 8 MiB/s read back.

        No device with a write limit → ``ok=False``, nothing written: prescale never
        invents a limit (which devices, which share). ``old`` and ``new`` are the totals
        (inf: no limit). A device write the kernel refuses puts back the devices already
        written (best effort) and comes back as ``ok=False`` naming the file.
        """
        directory = self._target_dir(container, lay.controller_key(container.version, "blkio"))
        requested = _positive_finite(bytes_per_s, "io write bytes_per_s")
        if round(requested) < 1:
            raise ValueError(f"io write bytes_per_s must be at least 1, got {bytes_per_s!r}")
        self._must_exist(container, directory)

        def result(old: float, new: float, ok: bool, error: str = "") -> ActuationResult:
            return ActuationResult(container.name, Tier.IO, requested, old, new, ok, error)

        path = directory / lay.write_limit_file(container.version)

        def parser(text: str) -> dict[str, int]:
            return lay.parse_write_limits(container.version, text)

        def total(text: str) -> float:
            limits = parser(text)
            return float(sum(limits.values())) if limits else math.inf

        try:
            current = _parse(path, parser, _read(path))
        except _WriteError as exc:
            return result(math.nan, math.nan, False, str(exc))
        if not current:
            return result(math.inf, math.inf, False,
                          f"no write limit to raise in {path}: no device has one "
                          "(prescale never sets a first one)")
        old = float(sum(current.values()))
        wanted = lay.spread_write_limit(current, requested)
        changes = [(dev, v) for dev, v in sorted(wanted.items()) if current[dev] != v]
        if not changes:
            return result(old, old, True)
        done: list[str] = []
        try:
            for dev, v in changes:
                _write(path, lay.format_write_limit(container.version, dev, v))
                done.append(dev)
        except _WriteError as exc:
            for dev in done:  # put back what was written: all devices or none
                try:
                    _write(path, lay.format_write_limit(container.version, dev, current[dev]))
                except _WriteError:
                    pass
            return result(old, self._read_back(path, total), False, str(exc))
        return result(old, self._read_back(path, total), True)

    # -- read back

    @staticmethod
    def _read_back(path: Path, parser: Callable[[str], float]) -> float:
        try:
            return _parse(path, parser, _read(path))
        except _WriteError:
            return math.nan

    @staticmethod
    def _read_back_cores(read_cores: Callable[[], tuple[int | None, int, float]]) -> float:
        try:
            return read_cores()[2]
        except (_WriteError, ValueError):
            return math.nan


__all__ = ["ActuationResult", "CgroupActuator"]
