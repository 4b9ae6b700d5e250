"""The cgroup tree on disk: which directories are cgroups, which may be touched, and
reading a cgroup's files into named quantities (v1 and v2).

An I/O edge shared by the cgroup source (:mod:`app.telemetry.cgroup`), the
process-tree source (:mod:`app.telemetry.process`, the limits of a process's cgroup)
and the cgroup actuator (:mod:`app.actuators.cgroup`). File names and formats are
:mod:`app.edges.cgroup_layout`'s.

A **container** (:class:`CgroupContainer`) is a name and its directory per controller:
on v1 the child ``leaker`` of the memory root and the child ``leaker`` of the cpu root
are one container whose ``dirs`` is ``{"memory": ..., "cpu": ...}``; on v2 it has one
directory under ``"unified"``.

Safety: every directory is resolved (symlinks, ``..``) and must lie strictly beneath
one of ``cgroup.roots`` (:func:`check_under_roots`); a root itself is never a
container.
"""

from __future__ import annotations

import errno
import functools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroup_layout import UNIFIED, V1_MARKERS, V2_MARKER, Version

_T = TypeVar("_T")


# --------------------------------------------------------------------------- errors


class CgroupError(Exception):
    """A cgroup cannot be read or acted on; the message names the path."""


class OutsideRootsError(CgroupError):
    """A path is not strictly beneath one of the configured ``cgroup.roots``."""


class CgroupNotFoundError(CgroupError):
    """A root, a watched container or a container's directory does not exist."""


# --------------------------------------------------------------------------- container


@dataclass(frozen=True)
class CgroupContainer:
    """One container: its name and its directory per controller.

    v1: ``dirs`` has one entry per controller found among memory/cpu/cpuacct/blkio
    (key = controller name). v2: ``dirs == {"unified": path}``. Paths are resolved.
    """

    name: str
    version: Version
    dirs: dict[str, Path] = field(hash=False)


# --------------------------------------------------------------------------- paths


def _realpath(path: Path | str) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def resolve_roots(roots: Iterable[Path]) -> list[Path]:
    """The roots, resolved (symlinks and ``..`` removed); no existence check."""
    return [_realpath(root) for root in roots]


def check_under_roots(path: Path | str, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it lies strictly beneath one of ``roots`` (also resolved).

    Raises :class:`OutsideRootsError` otherwise: for a path outside every root, a
    ``..`` or symlink that escapes, and for a root itself (a root is not a container).

    Example: roots ``[/sys/fs/cgroup/memory/prescale]``:
    ``.../prescale/leaker`` → ok; ``.../prescale`` → refused;
    ``.../prescale/leaker/../../other`` → refused.
    """
    if not roots:
        raise OutsideRootsError(f"refusing {path}: no cgroup.roots are configured")
    real = _realpath(path)
    for root in resolve_roots(roots):
        if real != root and real.is_relative_to(root):
            return real
    shown = ", ".join(str(r) for r in roots)
    extra = f" (resolves to {real})" if str(real) != os.fspath(path) else ""
    raise OutsideRootsError(
        f"refusing {path}{extra}: not strictly beneath any configured cgroup root ({shown})"
    )


def detect_cgroup(path: Path) -> tuple[Version | None, frozenset[str]]:
    """Which cgroup version and controllers a directory is, by the files in it.

    v2 (``cgroup.controllers`` present) → ``("v2", {"unified"})``; v1 → ``("v1", {the
    controllers among memory/cpu/cpuacct/blkio whose marker file is present})``;
    neither → ``(None, {})``.
    """
    if (path / V2_MARKER).is_file():
        return "v2", frozenset({UNIFIED})
    found = frozenset(c for c, marker in V1_MARKERS.items() if (path / marker).is_file())
    return ("v1", found) if found else (None, frozenset())


def own_cgroup_paths(proc_file: Path = Path("/proc/self/cgroup")) -> dict[str, str]:
    """This process's cgroup path per hierarchy (:func:`~.cgroup_layout.parse_proc_cgroup`)."""
    return lay.parse_proc_cgroup(proc_file.read_text())


def wide_root_problems(roots: Iterable[Path],
                       mountinfo: Path = Path("/proc/self/mountinfo"),
                       proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[str]:
    """``"<root> <why>"`` for each root :func:`~.cgroup_layout.wide_root_reason`
    refuses, against this host's cgroup mounts and this process's own cgroups."""
    mounts = lay.parse_mountinfo(mountinfo.read_text())
    own = own_cgroup_paths(proc_cgroup)
    own_dirs = []
    for controller in ("memory", "cpu"):
        found = lay.locate_cgroup(own, mounts, controller)
        if isinstance(found, tuple):
            own_dirs.append(found[1])
    points = [m.mount_point for m in mounts]
    return [f"{root} {why}" for root in roots
            if (why := lay.wide_root_reason(Path(root), points, own_dirs)) is not None]


# --------------------------------------------------------------------------- reading


def read_text(path: Path) -> str | None:
    """The file's text, None when it (or its directory) does not exist; any other OS
    error raises."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_file(directory: Path, filename: str) -> str | None:
    """The file's text, or None when the file does not exist in an existing directory.

    Raises :class:`CgroupNotFoundError` when the directory itself is gone (the cgroup
    was removed) and :class:`CgroupError` for any other OS error.
    """
    path = directory / filename
    try:
        text = read_text(path)
    except OSError as exc:
        if exc.errno == errno.ENODEV:  # a removed cgroup's open file
            raise CgroupNotFoundError(f"cgroup {directory} no longer exists") from None
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if text is None and not directory.is_dir():
        raise CgroupNotFoundError(f"cgroup {directory} no longer exists")
    return text


def read_parsed(directory: Path, filename: str, parser: Callable[[str], _T]) -> _T | None:
    """:func:`read_file` through ``parser``; a malformed file raises :class:`CgroupError`
    naming it."""
    text = read_file(directory, filename)
    if text is None:
        return None
    try:
        return parser(text)
    except ValueError as exc:
        raise CgroupError(f"malformed {directory / filename}: {exc}") from None


def _num(value: float | int | None, scale: float = 1.0) -> float:
    return math.nan if value is None else float(value) * scale


def _pressure(d: Path) -> dict[str, float]:
    """PSI readings of a v2 cgroup, where the kernel exposes them (else nan)."""
    values: dict[str, float] = {}
    for resource, wanted in (("cpu", ("some",)), ("memory", ("some", "full")), ("io", ("some",))):
        psi = read_parsed(d, lay.pressure_file(resource), lay.parse_pressure) or {}
        for kind in wanted:
            values[f"{resource}_pressure_{kind}_s_total"] = _num(psi.get(kind))
    return values


def read_v1_quantities(dirs: Mapping[str, Path]) -> dict[str, float]:
    """A v1 container's quantities by :class:`~app.core.sample.Sample` field name, from
    its directory per controller (``memory``, ``cpu``, ``cpuacct``, ``blkio``; each
    optional). A missing file leaves its quantity NaN; a controller without a directory
    leaves its limit NaN. Errors as :func:`read_parsed`.

    Example: memory ``memory.usage_in_bytes`` 100 MiB, ``memory.stat``
    ``total_inactive_file`` 30 MiB → ``memory_usage_bytes`` 100 MiB,
    ``memory_working_set_bytes`` 70 MiB; cpu quota 20000 / period 100000 →
    ``cpu_quota_cores`` 0.2; ``cpuacct.usage`` 1.5e9 ns → ``cpu_usage_s_total`` 1.5.
    A blkio directory with write limits also gives ``io_write_limit_bytes_per_s`` and
    ``io_limited_write_bytes_total`` (:func:`_write_limit`); without, they keep
    :class:`~app.core.sample.Sample`'s defaults (inf, NaN).
    """
    values: dict[str, float] = {}
    mem = dirs.get("memory")
    if mem is not None:
        usage = _num(read_parsed(mem, lay.V1_MEMORY_USAGE, lay.parse_int))
        stat = read_parsed(mem, lay.MEMORY_STAT, lay.parse_kv_lines)
        inactive = None
        if stat is not None:
            inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
        oom = read_parsed(mem, lay.V1_OOM_CONTROL, lay.parse_kv_lines)
        limit = read_parsed(mem, lay.V1_MEMORY_LIMIT, lay.parse_v1_limit)
        values.update(
            memory_usage_bytes=usage,
            memory_working_set_bytes=(
                math.nan if inactive is None else lay.working_set_bytes(usage, inactive)
            ),
            memory_limit_bytes=_num(limit),
            memory_failcnt_total=_num(read_parsed(mem, lay.V1_MEMORY_FAILCNT, lay.parse_int)),
            oom_kills_total=_num(None if oom is None else oom.get("oom_kill")),
        )
    else:
        values.update(memory_limit_bytes=math.nan)
    cpu = dirs.get("cpu")
    if cpu is not None:
        quota = read_parsed(cpu, lay.V1_CPU_QUOTA, lay.parse_int)
        period = read_parsed(cpu, lay.V1_CPU_PERIOD, lay.parse_int)
        stat = read_parsed(cpu, lay.CPU_STAT, lay.parse_kv_lines) or {}
        if quota is None or (quota >= 0 and period is None):
            cores = math.nan
        else:
            cores = lay.cfs_quota_cores(quota, period or 1)
        values.update(
            cpu_quota_cores=cores,
            cpu_periods_total=_num(stat.get("nr_periods")),
            cpu_throttled_periods_total=_num(stat.get("nr_throttled")),
            cpu_throttled_s_total=_num(stat.get("throttled_time"), 1e-9),
        )
    else:
        values.update(cpu_quota_cores=math.nan)
    acct = dirs.get("cpuacct")
    if acct is not None:
        values.update(
            cpu_usage_s_total=_num(read_parsed(acct, lay.V1_CPUACCT_USAGE, lay.parse_int), 1e-9)
        )
    blkio = dirs.get("blkio")
    if blkio is not None:
        # The recursive file includes nested cgroups, like memory.usage_in_bytes and
        # cpuacct.usage do; older kernels only have the flat one.
        ops = read_parsed(blkio, lay.V1_BLKIO_BYTES_RECURSIVE, lay.parse_blkio_service_bytes)
        if ops is None:
            ops = read_parsed(blkio, lay.V1_BLKIO_BYTES, lay.parse_blkio_service_bytes)
        # No per-device line at all means "nothing accounted", not "no I/O": recent
        # kernels (seen on 6.18) only count I/O to devices that have a throttle rule
        # in this cgroup, so 0 would be a lie; leave NaN.
        if ops:
            values.update(
                io_read_bytes_total=float(ops.get("Read", 0)),
                io_write_bytes_total=float(ops.get("Write", 0)),
            )
        values.update(_write_limit("v1", blkio))
    return values


def _write_limit(version: Version, d: Path) -> dict[str, float]:
    """``io_write_limit_bytes_per_s`` (the write limits summed over the devices that
    have one) and ``io_limited_write_bytes_total`` (the bytes written to exactly those
    devices), or ``{}`` when no device has a write limit (Sample's defaults: inf, NaN).

    v1: ``blkio.throttle.write_bps_device`` and the per-device ``Write`` of
    ``blkio.throttle.io_service_bytes_recursive`` (the flat file on older kernels);
    v2: ``io.max`` ``wbps=`` and ``io.stat`` ``wbytes=``. A limited device without a
    line in the counters has written nothing yet (0); no counters file at all → NaN.

    Example (v1): limits ``7:0 1048576`` and ``8:0 3145728``; service bytes ``7:0 Write
    4096``, ``8:0 Write 8192``, ``254:0 Write 65536`` → limit 4194304.0 B/s, limited
    writes 12288.0 (254:0 has no limit: not counted).
    """
    limits = read_parsed(d, lay.write_limit_file(version),
                         functools.partial(lay.parse_write_limits, version))
    if not limits:
        return {}
    if version == "v1":
        per_device = read_parsed(d, lay.V1_BLKIO_BYTES_RECURSIVE,
                                 lay.parse_blkio_service_bytes_per_device)
        if per_device is None:
            per_device = read_parsed(d, lay.V1_BLKIO_BYTES,
                                     lay.parse_blkio_service_bytes_per_device)
        key = "Write"
    else:
        per_device = read_parsed(d, lay.V2_IO_STAT, lay.parse_io_stat_per_device)
        key = "wbytes"
    written = (math.nan if per_device is None
               else float(sum(per_device.get(dev, {}).get(key, 0) for dev in limits)))
    return dict(io_write_limit_bytes_per_s=float(sum(limits.values())),
                io_limited_write_bytes_total=written)


def read_v2_quantities(d: Path) -> dict[str, float]:
    """A v2 cgroup's quantities by :class:`~app.core.sample.Sample` field name, as
    :func:`read_v1_quantities` (the limit hits are ``memory.events`` ``max``; CPU and
    throttled time are µs in ``cpu.stat``; PSI stall totals where the kernel has them).

    Example: ``memory.max`` ``max`` → ``memory_limit_bytes`` inf; ``cpu.max``
    ``"50000 100000"`` → ``cpu_quota_cores`` 0.5; ``cpu.stat`` ``usage_usec 2500000``
    → ``cpu_usage_s_total`` 2.5; ``io.max`` ``7:0 … wbps=1048576 …`` →
    ``io_write_limit_bytes_per_s`` 1048576.0 and ``io_limited_write_bytes_total`` the
    ``io.stat`` ``wbytes`` of 7:0.
    """
    usage = _num(read_parsed(d, lay.V2_MEMORY_CURRENT, lay.parse_int))
    mstat = read_parsed(d, lay.MEMORY_STAT, lay.parse_kv_lines)
    inactive = None if mstat is None else mstat.get("inactive_file")
    events = read_parsed(d, lay.V2_MEMORY_EVENTS, lay.parse_kv_lines)
    cstat = read_parsed(d, lay.CPU_STAT, lay.parse_kv_lines) or {}
    io = read_parsed(d, lay.V2_IO_STAT, lay.parse_io_stat)
    return dict(
        memory_usage_bytes=usage,
        memory_working_set_bytes=(
            math.nan if inactive is None else lay.working_set_bytes(usage, inactive)
        ),
        memory_limit_bytes=_num(read_parsed(d, lay.V2_MEMORY_MAX, lay.parse_v2_max)),
        memory_failcnt_total=_num(None if events is None else events.get("max")),
        oom_kills_total=_num(None if events is None else events.get("oom_kill")),
        cpu_usage_s_total=_num(cstat.get("usage_usec"), 1e-6),
        cpu_quota_cores=_num(read_parsed(d, lay.V2_CPU_MAX, lay.parse_cpu_max)),
        cpu_periods_total=_num(cstat.get("nr_periods")),
        cpu_throttled_periods_total=_num(cstat.get("nr_throttled")),
        cpu_throttled_s_total=_num(cstat.get("throttled_usec"), 1e-6),
        io_read_bytes_total=_num(None if io is None else io.get("rbytes", 0)),
        io_write_bytes_total=_num(None if io is None else io.get("wbytes", 0)),
        **_write_limit("v2", d),
        **_pressure(d),
    )


# --------------------------------------------------------------------------- one directory's limits
# (for a process's cgroup and its ancestors: None = no such file there; other OS errors
# and malformed files raise OSError / ValueError)


def memory_limit_at(version: Version, d: Path) -> float | None:
    """The memory limit file of directory ``d`` in bytes (inf: none)."""
    text = read_text(d / lay.memory_limit_file(version))
    return None if text is None else lay.parse_memory_limit(version, text)


def cpu_quota_cores_at(version: Version, d: Path) -> float | None:
    """The CFS quota of directory ``d`` in cores (inf: none)."""
    if version == "v2":
        text = read_text(d / lay.V2_CPU_MAX)
        return None if text is None else lay.parse_cpu_max(text)
    quota, period = read_text(d / lay.V1_CPU_QUOTA), read_text(d / lay.V1_CPU_PERIOD)
    if quota is None or period is None:
        return None
    return lay.cfs_quota_cores(lay.parse_int(quota), lay.parse_int(period))


def oom_kills_at(version: Version, d: Path) -> int | None:
    """The ``oom_kill`` counter of memory cgroup ``d``."""
    text = read_text(d / lay.oom_events_file(version))
    return None if text is None else lay.parse_oom_kills(text)


def tightest_on_path(start: Path, top: Path, read_one: Callable[[Path], float | None]) -> float:
    """The smallest ``read_one(d)`` for ``d`` from ``start`` up to ``top`` (both
    included; None = no value there); ``inf`` when none has one: a parent's limit bounds
    its children. Raises FileNotFoundError when ``start`` itself is gone.

    Example: ``/m/a/b`` no limit, ``/m/a`` 1 GiB, ``/m`` 4 GiB, top ``/m`` → 1 GiB.
    """
    if not start.is_dir():
        raise FileNotFoundError(f"cgroup {start} no longer exists")
    best = math.inf
    d = start
    while True:
        value = read_one(d)
        if value is not None:
            best = min(best, value)
        if d == top or d == d.parent or not d.is_relative_to(top):
            return best
        d = d.parent
