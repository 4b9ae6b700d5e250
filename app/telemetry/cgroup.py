"""cgroup v1/v2 source: find containers under the configured roots and read their files.

This is an I/O edge (no Ray). The file formats are parsed by small pure helpers
(:func:`parse_kv_lines`, :func:`parse_v1_limit`, :func:`parse_v2_max`,
:func:`parse_cpu_max`, :func:`parse_io_stat`, :func:`parse_blkio_service_bytes`)
so they can be tested on plain strings.

Layout
------
* **v1**: one hierarchy per controller, e.g. ``/sys/fs/cgroup/memory/prescale`` and
  ``/sys/fs/cgroup/cpu/prescale``. The child directory ``leaker`` of the memory root
  and the child ``leaker`` of the cpu root are *one* container named ``leaker`` whose
  :attr:`CgroupContainer.dirs` is ``{"memory": ..., "cpu": ...}``. Co-mounted
  hierarchies (``cpu,cpuacct``) simply give the same directory under two keys.
* **v2**: one unified hierarchy; a container has a single directory under key
  ``"unified"``.

What a directory is, is decided by the files in it (see :func:`detect_cgroup`).

Safety: every directory is resolved (symlinks, ``..``) and must lie strictly beneath
one of ``cgroup.roots`` (:func:`check_under_roots`); a root itself is never a
container.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from prescale.app.core.sample import Sample, SourceBatch, events_between
from prescale.app.settings import CgroupSettings, CgroupVersion

#: cgroup v1 reports "no limit" as a huge page-aligned number
#: (``9223372036854771712`` = 2^63 − 4096 on x86-64); anything at or above this is inf.
V1_UNLIMITED_THRESHOLD = 2**62

#: The v1 controllers prescale reads, and the file that marks a directory as one.
V1_MARKERS: dict[str, str] = {
    "memory": "memory.limit_in_bytes",
    "cpu": "cpu.cfs_quota_us",
    "cpuacct": "cpuacct.usage",
    "blkio": "blkio.throttle.io_service_bytes",
}
#: The file that marks a directory as a cgroup v2 directory.
V2_MARKER = "cgroup.controllers"
#: Key of a v2 container's single directory in :attr:`CgroupContainer.dirs`.
UNIFIED = "unified"

Version = Literal["v1", "v2"]
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


# --------------------------------------------------------------------------- pure parsers


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
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if ":" not in parts[0]:
            raise ValueError(f"expected 'MAJ:MIN key=value ...', got {line!r}")
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"expected key=value in {line!r}, got {item!r}")
            try:
                out[key] = out.get(key, 0) + int(value)
            except ValueError:
                raise ValueError(f"expected an integer in {line!r}, got {item!r}") from None
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
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[0] == "Total":
            continue
        if len(parts) != 3 or ":" not in parts[0]:
            raise ValueError(f"expected 'MAJ:MIN Op bytes', got {line!r}")
        _, op, value = parts
        try:
            out[op] = out.get(op, 0) + int(value)
        except ValueError:
            raise ValueError(f"expected an integer in {line!r}") from None
    return out


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


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CgroupError(
            f"cgroup.watch: {name!r} is not a plain directory name "
            "(containers are the child directories of the roots)"
        )


def _existing_roots(roots: Sequence[Path]) -> list[Path]:
    resolved = []
    for root in roots:
        real = _realpath(root)
        if not real.exists():
            raise CgroupNotFoundError(f"cgroup root {root} does not exist")
        if not real.is_dir():
            raise CgroupNotFoundError(f"cgroup root {root} is not a directory")
        resolved.append(real)
    return resolved


def _discover(settings: CgroupSettings) -> tuple[list[CgroupContainer], dict[str, CgroupError]]:
    """Containers found, and ``{name: error}`` for watched names that are missing and
    for names whose directories contradict each other (v1 and v2, a controller twice)."""
    for name in settings.watch:
        _check_name(name)
    roots = _existing_roots(settings.roots)
    wanted = None if settings.version == CgroupVersion.AUTO else settings.version.value
    watched = set(settings.watch)

    names: set[str] = set(watched)
    if settings.discover:
        for root in roots:
            try:
                with os.scandir(root) as it:
                    names.update(e.name for e in it if e.is_dir(follow_symlinks=True))
            except FileNotFoundError:
                raise CgroupNotFoundError(f"cgroup root {root} vanished") from None

    containers: list[CgroupContainer] = []
    problems: dict[str, CgroupError] = {}
    for name in sorted(names):
        dirs: dict[str, Path] = {}
        versions: set[Version] = set()
        conflict = ""
        skipped: list[str] = []
        for root in roots:
            candidate = root / name
            if not candidate.is_dir():
                continue
            try:
                real = check_under_roots(candidate, roots)
            except OutsideRootsError:
                if name in watched:
                    raise
                continue  # a symlink out of the roots is not a container
            version, controllers = detect_cgroup(real)
            if version is None:
                skipped.append(f"{candidate} has no cgroup controller files")
                continue
            if wanted is not None and version != wanted:
                skipped.append(f"{candidate} is cgroup {version}, but cgroup.version = {wanted}")
                continue
            versions.add(version)
            for controller in sorted(controllers):
                if controller in dirs and dirs[controller] != real:
                    conflict = (
                        f"container {name!r}: {controller} found twice, "
                        f"under {dirs[controller]} and {real}; roots must not overlap"
                    )
                dirs[controller] = real
        if len(versions) > 1:
            conflict = (
                f"container {name!r} has both cgroup v1 and v2 directories "
                f"({', '.join(str(p) for p in dirs.values())}); set cgroup.version"
            )
        if conflict:
            problems[name] = CgroupError(conflict)
        elif dirs:
            containers.append(CgroupContainer(name, versions.pop(), dirs))
        elif name in watched:
            why = "; ".join(skipped) if skipped else "no such directory"
            shown = ", ".join(str(r) for r in settings.roots)
            problems[name] = CgroupNotFoundError(
                f"watched container {name!r} not found under cgroup roots ({shown}): {why}"
            )
    return containers, problems


def discover(settings: CgroupSettings) -> list[CgroupContainer]:
    """The containers under ``settings.roots``, sorted by name.

    With ``discover`` every direct child directory of every root (that is a cgroup of
    the configured version) is a container; every name in ``watch`` is one too. A name's
    directories are gathered across all roots. Raises :class:`CgroupNotFoundError` for
    a root that is missing or not a directory and for a watched name found under no
    root; :class:`OutsideRootsError` for a watched name that escapes the roots;
    :class:`CgroupError` for a name with both v1 and v2 directories (set
    ``cgroup.version``) or with one controller under two roots.
    """
    containers, problems = _discover(settings)
    if problems:
        first = next(iter(problems.values()))
        raise type(first)("; ".join(str(e) for e in problems.values()))
    return containers


# --------------------------------------------------------------------------- reading


def _read(directory: Path, filename: str) -> str | None:
    """The file's text, or None when the file does not exist in an existing directory.

    Raises :class:`CgroupNotFoundError` when the directory itself is gone (the cgroup
    was removed) and :class:`CgroupError` for any other OS error.
    """
    path = directory / filename
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError):
        if not directory.is_dir():
            raise CgroupNotFoundError(f"cgroup {directory} no longer exists") from None
        return None
    except OSError as exc:
        if exc.errno == errno.ENODEV:  # a removed cgroup's open file
            raise CgroupNotFoundError(f"cgroup {directory} no longer exists") from None
        raise CgroupError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parsed(directory: Path, filename: str, parser: Callable[[str], _T]) -> _T | None:
    text = _read(directory, filename)
    if text is None:
        return None
    try:
        return parser(text)
    except ValueError as exc:
        raise CgroupError(f"malformed {directory / filename}: {exc}") from None


def _num(value: float | int | None, scale: float = 1.0) -> float:
    return math.nan if value is None else float(value) * scale


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


def _pressure(d: Path) -> dict[str, float]:
    """PSI readings of a v2 cgroup, where the kernel exposes them (else nan)."""
    values: dict[str, float] = {}
    for resource, wanted in (("cpu", ("some",)), ("memory", ("some", "full")), ("io", ("some",))):
        psi = _parsed(d, f"{resource}.pressure", parse_pressure) or {}
        for kind in wanted:
            values[f"{resource}_pressure_{kind}_s_total"] = _num(psi.get(kind))
    return values


class CgroupSource:
    """Reads :class:`Sample` s of the containers under ``settings.roots``.

    Example::

        source = CgroupSource(settings.cgroup)
        samples, errors = source.sample_all()   # errors: {"leaker": "cgroup ... no longer exists"}
    """

    kind = "cgroup"

    def __init__(self, settings: CgroupSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._last: dict[str, Sample] = {}

    def poll(self) -> SourceBatch:
        """:meth:`sample_all` plus the OOM-kill events implied by the kernel's counters
        since the previous poll (see :func:`app.core.sample.events_between`)."""
        samples, errors = self.sample_all()
        events = [e for s in samples for e in events_between(self._last.get(s.container), s)]
        self._last = {s.container: s for s in samples}
        return SourceBatch(samples, events, errors)

    def close(self) -> None:
        self._last = {}

    def containers(self) -> list[CgroupContainer]:
        """Re-discovers the containers (a directory listing per root; cheap)."""
        return discover(self.settings)

    def sample(self, container: CgroupContainer) -> Sample:
        """Reads one container. A missing optional file leaves its fields NaN.

        Raises :class:`CgroupNotFoundError` when the cgroup vanished,
        :class:`OutsideRootsError` for a directory outside the roots and
        :class:`CgroupError` for an unreadable or malformed file.
        """
        dirs = {k: check_under_roots(p, self.settings.roots) for k, p in container.dirs.items()}
        for path in dirs.values():
            if not path.is_dir():
                raise CgroupNotFoundError(f"cgroup {path} of {container.name!r} no longer exists")
        ts = float(self.clock())
        if container.version == "v2":
            if UNIFIED not in dirs:
                raise CgroupError(f"v2 container {container.name!r} has no 'unified' directory")
            return self._sample_v2(container.name, ts, dirs[UNIFIED])
        return self._sample_v1(container.name, ts, dirs)

    def sample_all(self) -> tuple[list[Sample], dict[str, str]]:
        """Samples of every container, and ``{name: error}`` for those that failed.

        A container that vanished (also a watched name whose directory is gone) or
        whose directories contradict each other is reported in the errors, not raised.
        A missing root still raises :class:`CgroupNotFoundError`.
        """
        containers, problems = _discover(self.settings)
        errors = {name: str(exc) for name, exc in problems.items()}
        samples: list[Sample] = []
        for container in containers:
            try:
                samples.append(self.sample(container))
            except (CgroupError, OSError) as exc:
                errors[container.name] = str(exc)
        return samples, dict(sorted(errors.items()))

    # -- v1

    @staticmethod
    def _sample_v1(name: str, ts: float, dirs: dict[str, Path]) -> Sample:
        values: dict[str, float] = {}
        mem = dirs.get("memory")
        if mem is not None:
            usage = _num(_parsed(mem, "memory.usage_in_bytes", parse_int))
            stat = _parsed(mem, "memory.stat", parse_kv_lines)
            inactive = None
            if stat is not None:
                inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
            oom = _parsed(mem, "memory.oom_control", parse_kv_lines)
            limit = _parsed(mem, "memory.limit_in_bytes", parse_v1_limit)
            values.update(
                memory_usage_bytes=usage,
                memory_working_set_bytes=(
                    math.nan if inactive is None else working_set_bytes(usage, inactive)
                ),
                memory_limit_bytes=_num(limit),
                memory_failcnt_total=_num(_parsed(mem, "memory.failcnt", parse_int)),
                oom_kills_total=_num(None if oom is None else oom.get("oom_kill")),
            )
        else:
            values.update(memory_limit_bytes=math.nan)
        cpu = dirs.get("cpu")
        if cpu is not None:
            quota = _parsed(cpu, "cpu.cfs_quota_us", parse_int)
            period = _parsed(cpu, "cpu.cfs_period_us", parse_int)
            stat = _parsed(cpu, "cpu.stat", parse_kv_lines) or {}
            if quota is None or (quota >= 0 and period is None):
                cores = math.nan
            else:
                cores = cfs_quota_cores(quota, period or 1)
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
            values.update(cpu_usage_s_total=_num(_parsed(acct, "cpuacct.usage", parse_int), 1e-9))
        blkio = dirs.get("blkio")
        if blkio is not None:
            # The recursive file includes nested cgroups, like memory.usage_in_bytes and
            # cpuacct.usage do; older kernels only have the flat one.
            ops = _parsed(
                blkio, "blkio.throttle.io_service_bytes_recursive", parse_blkio_service_bytes
            )
            if ops is None:
                ops = _parsed(blkio, "blkio.throttle.io_service_bytes", parse_blkio_service_bytes)
            # No per-device line at all means "nothing accounted", not "no I/O": recent
            # kernels (seen on 6.18) only count I/O to devices that have a throttle rule
            # in this cgroup, so 0 would be a lie; leave NaN.
            if ops:
                values.update(
                    io_read_bytes_total=float(ops.get("Read", 0)),
                    io_write_bytes_total=float(ops.get("Write", 0)),
                )
        return Sample(container=name, ts_s=ts, app=name, **values)

    # -- v2

    @staticmethod
    def _sample_v2(name: str, ts: float, d: Path) -> Sample:
        usage = _num(_parsed(d, "memory.current", parse_int))
        mstat = _parsed(d, "memory.stat", parse_kv_lines)
        inactive = None if mstat is None else mstat.get("inactive_file")
        events = _parsed(d, "memory.events", parse_kv_lines)
        cstat = _parsed(d, "cpu.stat", parse_kv_lines) or {}
        io = _parsed(d, "io.stat", parse_io_stat)
        return Sample(
            container=name,
            ts_s=ts,
            app=name,
            memory_usage_bytes=usage,
            memory_working_set_bytes=(
                math.nan if inactive is None else working_set_bytes(usage, inactive)
            ),
            memory_limit_bytes=_num(_parsed(d, "memory.max", parse_v2_max)),
            memory_failcnt_total=_num(None if events is None else events.get("max")),
            oom_kills_total=_num(None if events is None else events.get("oom_kill")),
            cpu_usage_s_total=_num(cstat.get("usage_usec"), 1e-6),
            cpu_quota_cores=_num(_parsed(d, "cpu.max", parse_cpu_max)),
            cpu_periods_total=_num(cstat.get("nr_periods")),
            cpu_throttled_periods_total=_num(cstat.get("nr_throttled")),
            cpu_throttled_s_total=_num(cstat.get("throttled_usec"), 1e-6),
            io_read_bytes_total=_num(None if io is None else io.get("rbytes", 0)),
            io_write_bytes_total=_num(None if io is None else io.get("wbytes", 0)),
            **_pressure(d),
        )
