"""The cgroup file layout, v1 and v2: file names, how each file reads and is written.

Pure (no file I/O): text in, values out, so every format is tested on plain strings.
:mod:`app.edges.cgroupfs` reads the files; the cgroup source
(:mod:`app.telemetry.cgroup`), the process-tree source's limits
(:mod:`app.telemetry.process`), the cgroup actuator (:mod:`app.actuators.cgroup`) and
the demo all take the names and formats from here.

Layout
------
* **v1**: one hierarchy per controller, mounted by convention at
  ``/sys/fs/cgroup/<controller>`` (:data:`V1_MOUNT`), e.g.
  ``/sys/fs/cgroup/memory/prescale/leaker`` and ``/sys/fs/cgroup/cpu/prescale/leaker``.
  prescale reads the controllers of :data:`V1_MARKERS`; a directory is a controller's
  cgroup when its marker file is there. Co-mounted hierarchies (``cpu,cpuacct``) give
  one directory for two controllers.
* **v2**: one unified hierarchy; a cgroup is one directory, marked by
  ``cgroup.controllers`` (:data:`V2_MARKER`), kept under the key ``"unified"``
  (:data:`UNIFIED`) wherever directories are kept per controller.

Files (what prescale reads or writes; v1 | v2):

=================== ======================================= ==========================
quantity            v1                                      v2
=================== ======================================= ==========================
memory limit        ``memory.limit_in_bytes`` (≥ 2^62: none) ``memory.max`` (``max``)
swap + memory limit ``memory.memsw.limit_in_bytes``         —
memory usage        ``memory.usage_in_bytes``               ``memory.current``
limit hits          ``memory.failcnt``                      ``memory.events`` ``max``
OOM kills           ``memory.oom_control`` ``oom_kill``     ``memory.events`` ``oom_kill``
CPU quota           ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` ``cpu.max``
CPU usage           ``cpuacct.usage`` (ns)                  ``cpu.stat`` ``usage_usec``
throttling          ``cpu.stat`` (ns)                       ``cpu.stat`` (µs)
block I/O           ``blkio.throttle.io_service_bytes[_recursive]`` ``io.stat``
write bandwidth     ``blkio.throttle.write_bps_device``     ``io.max`` ``wbps=``
pressure (PSI)      —                                       ``<cpu|memory|io>.pressure``
=================== ======================================= ==========================

Where a process's cgroup is: ``/proc/<pid>/cgroup`` (:func:`parse_proc_cgroup`) gives
its path per hierarchy, ``/proc/self/mountinfo`` (:func:`parse_mountinfo`) where each
hierarchy is mounted; :func:`locate_cgroup` joins the two.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Version = Literal["v1", "v2"]

#: Where the v1 hierarchies are mounted by convention (one directory per controller).
V1_MOUNT = Path("/sys/fs/cgroup")

#: cgroup v1 reports "no limit" as a huge page-aligned number
#: (``9223372036854771712`` = 2^63 − 4096 on x86-64); anything at or above this is inf.
V1_UNLIMITED_THRESHOLD = 2**62

#: The kernel's smallest CFS quota (1 ms), v1 and v2.
MIN_QUOTA_US = 1000

# -- v1 files
V1_MEMORY_LIMIT = "memory.limit_in_bytes"
V1_MEMSW_LIMIT = "memory.memsw.limit_in_bytes"
V1_MEMORY_USAGE = "memory.usage_in_bytes"
V1_MEMORY_MAX_USAGE = "memory.max_usage_in_bytes"
V1_MEMORY_FAILCNT = "memory.failcnt"
V1_OOM_CONTROL = "memory.oom_control"
V1_CPU_QUOTA = "cpu.cfs_quota_us"
V1_CPU_PERIOD = "cpu.cfs_period_us"
V1_CPUACCT_USAGE = "cpuacct.usage"
V1_BLKIO_BYTES = "blkio.throttle.io_service_bytes"
V1_BLKIO_BYTES_RECURSIVE = "blkio.throttle.io_service_bytes_recursive"
V1_BLKIO_WRITE_BPS = "blkio.throttle.write_bps_device"
# -- v2 files
V2_MEMORY_MAX = "memory.max"
V2_MEMORY_CURRENT = "memory.current"
V2_MEMORY_EVENTS = "memory.events"
V2_CPU_MAX = "cpu.max"
V2_IO_STAT = "io.stat"
V2_IO_MAX = "io.max"
# -- both
MEMORY_STAT = "memory.stat"
CPU_STAT = "cpu.stat"
CGROUP_PROCS = "cgroup.procs"

#: The v1 controllers prescale reads, and the file that marks a directory as one.
V1_MARKERS: dict[str, str] = {
    "memory": V1_MEMORY_LIMIT,
    "cpu": V1_CPU_QUOTA,
    "cpuacct": V1_CPUACCT_USAGE,
    "blkio": V1_BLKIO_BYTES,
}
#: The file that marks a directory as a cgroup v2 directory.
V2_MARKER = "cgroup.controllers"
#: Key of a v2 cgroup's single directory where directories are kept per controller.
UNIFIED = "unified"

#: The v1 controllers ``/proc/self/mountinfo`` may name (others are mount options).
V1_CONTROLLERS = frozenset({
    "memory", "cpu", "cpuacct", "blkio", "pids", "cpuset", "devices", "freezer", "net_cls",
    "net_prio", "perf_event", "hugetlb", "rdma", "misc",
})

#: A block device number as the kernel prints it: ``MAJ:MIN``.
_DEVICE = re.compile(r"\d+:\d+")


# --------------------------------------------------------------------------- per version


def controller_key(version: Version, controller: str) -> str:
    """The key of the directory holding ``controller``'s files: the controller on v1,
    ``"unified"`` on v2. Example: ``("v1", "cpu")`` → ``"cpu"``; ``("v2", "cpu")`` →
    ``"unified"``."""
    return UNIFIED if version == "v2" else controller


def memory_limit_file(version: Version) -> str:
    """``"memory.limit_in_bytes"`` (v1) or ``"memory.max"`` (v2)."""
    return V1_MEMORY_LIMIT if version == "v1" else V2_MEMORY_MAX


def parse_memory_limit(version: Version, text: str) -> float:
    """The memory limit file's bytes, inf for none (:func:`parse_v1_limit`,
    :func:`parse_v2_max`)."""
    return parse_v1_limit(text) if version == "v1" else parse_v2_max(text)


def format_memory_limit(limit_bytes: int) -> str:
    """What to write for a memory limit, v1 and v2: ``67108864`` → ``"67108864"``."""
    return str(int(limit_bytes))


def oom_events_file(version: Version) -> str:
    """The file with the ``oom_kill`` counter: ``"memory.oom_control"`` (v1) or
    ``"memory.events"`` (v2)."""
    return V1_OOM_CONTROL if version == "v1" else V2_MEMORY_EVENTS


def quota_us_for_cores(cores: float, period_us: int) -> int:
    """The CFS quota that gives ``cores`` CPUs per ``period_us``, at least the kernel's
    1000 µs minimum. Example: 0.2 cores, period 100000 → 20000; 0.001 cores → 1000."""
    return max(MIN_QUOTA_US, round(cores * period_us))


def format_cpu_quota(version: Version, quota_us: int, period_us: int) -> str:
    """What to write for a CFS quota: v1 ``cpu.cfs_quota_us`` takes the quota alone
    (``"20000"``), v2 ``cpu.max`` the pair (``"20000 100000"``)."""
    return f"{quota_us} {period_us}" if version == "v2" else str(quota_us)


def parse_oom_kills(text: str) -> int | None:
    """The ``oom_kill`` counter of ``memory.oom_control`` (v1) or ``memory.events``
    (v2); None on kernels without it. Example: ``"oom_kill_disable 0\nunder_oom 0\n
    oom_kill 2"`` → 2."""
    return parse_kv_lines(text).get("oom_kill")


def pressure_file(resource: str) -> str:
    """The v2 PSI file of ``resource``: ``"memory"`` → ``"memory.pressure"``."""
    return f"{resource}.pressure"


# --------------------------------------------------------------------------- parsers


def parse_int(text: str) -> int:
    """A file holding one integer, e.g. ``"6782976\\n"`` → ``6782976``."""
    value = text.strip()
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def parse_kv_lines(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).

    Example: ``"nr_periods 10\\nnr_throttled 3\\n"`` → ``{"nr_periods": 10,
    "nr_throttled": 3}``. Blank lines are skipped; any other malformed line raises
    :class:`ValueError`.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ValueError(f"expected 'key value', got {line!r}")
        key, value = parts
        try:
            out[key] = int(value)
        except ValueError:
            raise ValueError(f"expected an integer value in {line!r}") from None
    return out


def parse_v1_limit(text: str) -> float:
    """v1 ``memory.limit_in_bytes``: bytes, or inf when ≥ 2^62 (the kernel's "no limit").

    Example: ``"67108864"`` → ``67108864.0``; ``"9223372036854771712"`` → ``inf``.
    """
    value = parse_int(text)
    return math.inf if value >= V1_UNLIMITED_THRESHOLD else float(value)


def parse_v2_max(text: str) -> float:
    """v2 ``memory.max``-style file: ``"max"`` → inf, else the integer."""
    value = text.strip()
    if value == "max":
        return math.inf
    return float(parse_int(value))


def parse_cpu_max_fields(text: str) -> tuple[int | None, int]:
    """v2 ``cpu.max`` as ``(quota_us or None for "max", period_us)``.

    Example: ``"50000 100000"`` → ``(50000, 100000)``; ``"max 100000"`` → ``(None, 100000)``.
    """
    parts = text.split()
    if len(parts) != 2:
        raise ValueError(f"expected '<quota|max> <period>', got {text.strip()!r}")
    quota_s, period_s = parts
    try:
        period = int(period_s)
        quota = None if quota_s == "max" else int(quota_s)
    except ValueError:
        raise ValueError(f"expected '<quota|max> <period>', got {text.strip()!r}") from None
    if period <= 0:
        raise ValueError(f"cpu period must be positive, got {text.strip()!r}")
    return quota, period


def parse_cpu_max(text: str) -> float:
    """v2 ``cpu.max`` as cores: ``"max 100000"`` → inf; ``"50000 100000"`` → 0.5."""
    quota, period = parse_cpu_max_fields(text)
    return math.inf if quota is None else quota / period


def cfs_quota_cores(quota_us: int, period_us: int) -> float:
    """v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` as cores.

    Example: quota 20000, period 100000 → 0.2 cores; quota −1 → inf (no limit).
    """
    if quota_us < 0:
        return math.inf
    if period_us <= 0:
        raise ValueError(f"cpu.cfs_period_us must be positive, got {period_us}")
    return quota_us / period_us


def working_set_bytes(usage_bytes: float, inactive_file_bytes: float) -> float:
    """cAdvisor's working set: usage − inactive file cache, floored at 0.

    Example: usage 100 MiB, inactive_file 30 MiB → 70 MiB; usage 10, inactive 20 → 0.
    """
    return max(0.0, usage_bytes - inactive_file_bytes)


def parse_io_stat(text: str) -> dict[str, int]:
    """v2 ``io.stat``, each key summed over devices.

    Example::

        8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
        8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021

    → ``{"rbytes": 91889664, "wbytes": 613781504, "rios": 9142, ...}``. An empty file
    (no I/O yet) → ``{}``.
    """
    out: dict[str, int] = {}
    for _, fields in _io_stat_lines(text, _has_colon):
        _add_into(out, fields)
    return out


def parse_blkio_service_bytes(text: str) -> dict[str, int]:
    """v1 ``blkio.throttle.io_service_bytes``, each operation summed over devices.

    Example::

        8:0 Read 4096
        8:0 Write 8192
        8:0 Total 12288
        8:16 Read 100
        Total 12388

    → ``{"Read": 4196, "Write": 8192, "Total": 12388}`` (the per-device lines summed;
    the last, device-less ``Total`` line is ignored). Only ``Total 0`` → ``{}``: no
    device was accounted (on recent kernels only devices with a throttle rule in the
    cgroup are), which :class:`CgroupSource` reports as NaN rather than 0.
    """
    out: dict[str, int] = {}
    for _, op, value in _blkio_service_lines(text, _has_colon):
        out[op] = out.get(op, 0) + value
    return out


def parse_blkio_service_bytes_per_device(text: str) -> dict[str, dict[str, int]]:
    """v1 ``blkio.throttle.io_service_bytes[_recursive]``, per device: what
    :func:`parse_blkio_service_bytes` sums, kept apart.

    Example::

        7:0 Read 0
        7:0 Write 1048576
        7:0 Total 1048576
        254:0 Read 20480
        254:0 Write 0
        254:0 Total 20480
        Total 1069056

    → ``{"7:0": {"Read": 0, "Write": 1048576, "Total": 1048576}, "254:0": {"Read": 20480,
    "Write": 0, "Total": 20480}}`` (the device-less ``Total`` line is ignored); only
    ``Total 0`` → ``{}``. A malformed line raises :class:`ValueError` naming it.
    """
    out: dict[str, dict[str, int]] = {}
    for device, op, value in _blkio_service_lines(text, _is_device):
        ops = out.setdefault(device, {})
        ops[op] = ops.get(op, 0) + value
    return out


def parse_io_stat_per_device(text: str) -> dict[str, dict[str, int]]:
    """v2 ``io.stat``, per device: what :func:`parse_io_stat` sums, kept apart.

    Example: ``"8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353\n8:0 rbytes=0
    wbytes=4096 rios=0 wios=1"`` → ``{"8:16": {"rbytes": 1459200, "wbytes": 314773504,
    "rios": 192, "wios": 353}, "8:0": {"rbytes": 0, "wbytes": 4096, "rios": 0, "wios": 1}}``;
    an empty file → ``{}``. A malformed line raises :class:`ValueError` naming it.
    """
    out: dict[str, dict[str, int]] = {}
    for device, fields in _io_stat_lines(text, _is_device):
        _add_into(out.setdefault(device, {}), fields)
    return out


# The per-line parsing the four parsers above share. The summing ones check the device
# field only for a colon (:func:`_has_colon`, as they always have); the per-device ones
# want ``MAJ:MIN`` (:func:`_is_device`).


def _has_colon(field: str) -> bool:
    return ":" in field


def _is_device(field: str) -> bool:
    return _DEVICE.fullmatch(field) is not None


def _add_into(totals: dict[str, int], values: Mapping[str, int]) -> None:
    """Add ``values`` into ``totals`` key by key (a new key keeps its first-seen place)."""
    for key, value in values.items():
        totals[key] = totals.get(key, 0) + value


def _io_stat_lines(text: str, device_ok: Callable[[str], bool],
                   ) -> Iterator[tuple[str, dict[str, int]]]:
    """Each non-blank line of v2 ``io.stat``: ``(device, {key: value})`` (a key repeated
    on the line summed). :class:`ValueError` naming the first malformed line."""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if not device_ok(parts[0]):
            raise ValueError(f"expected 'MAJ:MIN key=value ...', got {line!r}")
        fields: dict[str, int] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected key=value in {line!r}, got {item!r}")
            try:
                fields[key] = fields.get(key, 0) + int(value)
            except ValueError:
                raise ValueError(f"expected an integer in {line!r}, got {item!r}") from None
        yield parts[0], fields


def _blkio_service_lines(text: str, device_ok: Callable[[str], bool],
                         ) -> Iterator[tuple[str, str, int]]:
    """Each per-device line of v1 ``blkio.throttle.io_service_bytes[_recursive]``:
    ``(device, op, bytes)``; the device-less ``Total`` line skipped. :class:`ValueError`
    naming the first malformed line."""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[0] == "Total":
            continue
        if len(parts) != 3 or not device_ok(parts[0]):
            raise ValueError(f"expected 'MAJ:MIN Op bytes', got {line!r}")
        device, op, value = parts
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"expected an integer in {line!r}") from None
        yield device, op, n


# --------------------------------------------------------------------------- write bandwidth
# A container's block-I/O write limit is per device: v1 ``blkio.throttle.write_bps_device``
# (one ``MAJ:MIN bytes`` line per device with a rule; writing ``MAJ:MIN 0`` removes it),
# v2 ``io.max`` (``MAJ:MIN rbps=… wbps=… riops=… wiops=…``, ``max`` = none; writing
# ``MAJ:MIN wbps=N`` changes only the write bandwidth). Only direct I/O is throttled on
# v1: buffered writeback is not attributed to the cgroup.


def parse_blkio_write_bps(text: str) -> dict[str, int]:
    """v1 ``blkio.throttle.write_bps_device``: ``{device: bytes/s}``.

    Example: ``"7:0 1048576\n8:0 3145728\n"`` → ``{"7:0": 1048576, "8:0": 3145728}``;
    an empty file (no rule) → ``{}``. A malformed line raises :class:`ValueError`
    naming it.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not _DEVICE.fullmatch(parts[0]) or not parts[1].isdigit():
            raise ValueError(f"expected 'MAJ:MIN bytes_per_s', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def format_blkio_write_bps(device: str, bytes_per_s: int) -> str:
    """One v1 ``blkio.throttle.write_bps_device`` line: ``("7:0", 1048576)`` →
    ``"7:0 1048576"``."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"expected a device 'MAJ:MIN', got {device!r}")
    return f"{device} {int(bytes_per_s)}"


def parse_io_max_wbps(text: str) -> dict[str, float]:
    """v2 ``io.max``: ``{device: write bytes/s}``, inf for ``wbps=max``.

    Example: ``"7:0 rbps=max wbps=1048576 riops=max wiops=max\n8:0 rbps=2097152
    wbps=max riops=max wiops=120\n"`` → ``{"7:0": 1048576.0, "8:0": inf}``; an empty
    file (no rule) → ``{}``. A line without ``wbps=`` gives inf (no write limit). A
    malformed line raises :class:`ValueError` naming it.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if not _DEVICE.fullmatch(parts[0]):
            raise ValueError(f"expected 'MAJ:MIN key=value ...', got {line!r}")
        wbps = math.inf
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep or not (value == "max" or value.isdigit()):
                raise ValueError(f"expected key=<integer|max> in {line!r}, got {item!r}")
            if key == "wbps":
                wbps = math.inf if value == "max" else float(value)
        out[parts[0]] = wbps
    return out


def format_io_max_wbps(device: str, bytes_per_s: int) -> str:
    """A v2 ``io.max`` line setting only the write bandwidth: ``("7:0", 1048576)`` →
    ``"7:0 wbps=1048576"`` (the device's other limits are kept by the kernel)."""
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"expected a device 'MAJ:MIN', got {device!r}")
    return f"{device} wbps={int(bytes_per_s)}"


def write_limit_file(version: Version) -> str:
    """The file with a cgroup's write bandwidth limits: ``"blkio.throttle.write_bps_device"``
    (v1) or ``"io.max"`` (v2)."""
    return V1_BLKIO_WRITE_BPS if version == "v1" else V2_IO_MAX


def parse_write_limits(version: Version, text: str) -> dict[str, int]:
    """The devices that have a write limit and their limits in bytes/s, v1 or v2 (a v2
    ``wbps=max`` device is left out). Example: v2 ``"7:0 rbps=max wbps=1048576 riops=max
    wiops=max\n8:0 rbps=max wbps=max riops=120 wiops=max"`` → ``{"7:0": 1048576}``."""
    if version == "v1":
        return {d: v for d, v in parse_blkio_write_bps(text).items() if v > 0}
    return {d: int(v) for d, v in parse_io_max_wbps(text).items() if math.isfinite(v)}


def format_write_limit(version: Version, device: str, bytes_per_s: int) -> str:
    """What to write for one device's write limit: v1 ``"7:0 1048576"``, v2
    ``"7:0 wbps=1048576"``."""
    if version == "v1":
        return format_blkio_write_bps(device, bytes_per_s)
    return format_io_max_wbps(device, bytes_per_s)


def spread_write_limit(current: Mapping[str, int], total_bytes_per_s: float) -> dict[str, int]:
    """A new total write limit spread over the devices that have one, in proportion to
    their current limits, each rounded to whole bytes/s (at least 1: 0 would remove the
    rule).

    Example: ``{"7:0": 1 MiB/s, "8:0": 3 MiB/s}``, total 8 MiB/s → ``{"7:0": 2 MiB/s,
    "8:0": 6 MiB/s}``; one device → the whole total. No device → ``{}`` (nothing to
    spread over: prescale never invents a limit).
    """
    if not math.isfinite(total_bytes_per_s) or total_bytes_per_s <= 0:
        raise ValueError(f"total write limit must be positive and finite, "
                         f"got {total_bytes_per_s!r}")
    now = sum(current.values())
    if now <= 0:
        return {}
    return {d: max(1, round(total_bytes_per_s * v / now)) for d, v in current.items()}


def parse_pressure(text: str) -> dict[str, float]:
    """PSI file text → ``{"some": s, "full": s}``: the cumulative stall time in seconds.

    Example: ``"some avg10=0.00 avg60=0.00 avg300=0.00 total=253981\nfull avg10=0.00
    avg60=0.00 avg300=0.00 total=65862"`` → ``{"some": 0.253981, "full": 0.065862}``
    (``total`` is in microseconds). Raises ``ValueError`` on a malformed line.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        kind, _, rest = line.partition(" ")
        pairs = [f.split("=", 1) for f in rest.split()]
        fields = {p[0]: p[1] for p in pairs if len(p) == 2}
        if kind not in ("some", "full") or "total" not in fields or len(fields) != len(pairs):
            raise ValueError(f"not a PSI line: {line!r}")
        out[kind] = int(fields["total"]) * 1e-6
    return out


# --------------------------------------------------------------------------- mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``{controller: path}`` from ``/proc/<pid>/cgroup`` text; v2's entry is ``"unified"``.

    Example: ``"4:memory:/a/b\\n1:cpu,cpuacct:/\\n0::/x"`` →
    ``{"memory": "/a/b", "cpu": "/", "cpuacct": "/", "unified": "/x"}``.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            out["unified"] = path
            continue
        for c in controllers.split(","):
            out[c] = path
    return out


def _unescape_mount(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class CgroupMount:
    """One mounted cgroup hierarchy: where (``mount_point``), which part of the
    hierarchy (``root``), which version and (v1) which controllers."""

    mount_point: Path
    root: str
    version: Version
    controllers: frozenset[str]


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup mounts in ``/proc/self/mountinfo`` text.

    Example line (fields: id parent dev root mount-point options [tags] - fstype
    source super-options)::

        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory

    → ``CgroupMount(Path("/sys/fs/cgroup/memory"), "/", "v1", {"memory"})``; an
    ``fstype`` of ``cgroup2`` gives ``version="v2"`` and no controllers.
    """
    mounts: list[CgroupMount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lfields, rfields = left.split(), right.split()
        if len(lfields) < 5 or len(rfields) < 3:
            continue
        fstype, superopts = rfields[0], rfields[2]
        root, point = _unescape_mount(lfields[3]), Path(_unescape_mount(lfields[4]))
        if fstype == "cgroup":
            ctrls = frozenset(o for o in superopts.split(",") if o in V1_CONTROLLERS)
            mounts.append(CgroupMount(point, root, "v1", ctrls))
        elif fstype == "cgroup2":
            mounts.append(CgroupMount(point, root, "v2", frozenset()))
    return mounts


def cgroup_dir(mount: CgroupMount, cgroup_path: str) -> Path | None:
    """The directory of hierarchy path ``cgroup_path`` under ``mount``, or None when the
    mount does not show that part of the hierarchy.

    Example: mount ``/sys/fs/cgroup/memory`` of root ``/``, path ``/a/b`` →
    ``/sys/fs/cgroup/memory/a/b``; mount of root ``/a``, path ``/x`` → None.
    """
    rel = posixpath.relpath(cgroup_path, mount.root)
    if rel == ".." or rel.startswith("../"):
        return None
    return mount.mount_point if rel == "." else mount.mount_point / rel


def locate_cgroup(
    proc_cgroup: Mapping[str, str], mounts: list[CgroupMount], controller: str
) -> tuple[Version, Path, Path] | None | Literal["hidden"]:
    """Where ``controller`` of a process lives: ``(version, its directory, the mount
    point)``; ``None`` when no hierarchy has that controller (then nothing limits it);
    ``"hidden"`` when it does but the process's cgroup is not visible from here.

    A v1 hierarchy with the controller wins; otherwise the v2 (unified) hierarchy.
    ``proc_cgroup`` is :func:`parse_proc_cgroup` of ``/proc/<pid>/cgroup``.

    Example: ``{"memory": "/a"}`` with a v1 memory mount at ``/sys/fs/cgroup/memory``
    (root ``/``) → ``("v1", /sys/fs/cgroup/memory/a, /sys/fs/cgroup/memory)``.
    """
    for mount in mounts:
        if mount.version == "v1" and controller in mount.controllers:
            path = proc_cgroup.get(controller)
            if path is None:
                return None
            d = cgroup_dir(mount, path)
            return "hidden" if d is None else ("v1", d, mount.mount_point)
    if "unified" in proc_cgroup:
        for mount in mounts:
            if mount.version == "v2":
                d = cgroup_dir(mount, proc_cgroup["unified"])
                return "hidden" if d is None else ("v2", d, mount.mount_point)
    return None


def wide_root_reason(root: Path, mount_points: Sequence[Path],
                     own_dirs: Sequence[Path]) -> str | None:
    """Why ``root`` is too wide to be a cgroup root prescale acts under, or ``None``.

    A root must be written normalised (no ``..`` or ``.`` parts: a root ending in
    ``/../..`` walks up to a sibling), must not be a cgroup hierarchy's
    mount point or hold one (it would watch every cgroup on the host: docker's,
    systemd's, …), and must not contain prescale's own cgroup (it would act on itself).

    Example: ``/sys/fs/cgroup/memory`` with that mount point → "is the mount point of a
    cgroup hierarchy …"; ``/sys/fs/cgroup/memory/apps/../..`` → "is not normalised
    (it means /sys/fs/cgroup)"; ``/sys/fs/cgroup/memory/apps`` → None.
    """
    text = str(root)
    norm = posixpath.normpath(text)
    if text != norm or text.startswith("//"):
        return f"is not normalised (it means {norm})"
    for mp in mount_points:
        if root == mp:
            return "is the mount point of a cgroup hierarchy: every cgroup on the host"
        if root in mp.parents:
            return f"holds the cgroup hierarchy mounted at {mp}: every cgroup on the host"
    for own in own_dirs:
        if own == root or root in own.parents:
            return f"contains prescale's own cgroup {own}"
    return None
