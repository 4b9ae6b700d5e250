"""cgroup v1/v2 source: find containers under the configured roots and read their files.

This is an I/O edge (no Ray). The file layout and formats are
:mod:`app.edges.cgroup_layout`'s; reading a cgroup's files into quantities, the
container type and the roots check are :mod:`app.edges.cgroupfs`'s, which the cgroup
actuator shares. Here: which containers there are (:func:`discover`) and their samples
and OOM-kill events (:class:`CgroupSource`).

Containers
----------
* **v1**: one hierarchy per controller, e.g. ``/sys/fs/cgroup/memory/prescale`` and
  ``/sys/fs/cgroup/cpu/prescale``. The child directory ``leaker`` of the memory root
  and the child ``leaker`` of the cpu root are *one* container named ``leaker`` whose
  :attr:`~app.edges.cgroupfs.CgroupContainer.dirs` is ``{"memory": ..., "cpu": ...}``.
  Co-mounted hierarchies (``cpu,cpuacct``) simply give the same directory under two
  keys.
* **v2**: one unified hierarchy; a container has a single directory under key
  ``"unified"``.

What a directory is, is decided by the files in it
(:func:`~app.edges.cgroupfs.detect_cgroup`).

Safety: every directory is resolved (symlinks, ``..``) and must lie strictly beneath
one of ``cgroup.roots`` (:func:`~app.edges.cgroupfs.check_under_roots`); a root itself
is never a container.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prescale.app.core.sample import Sample, SourceBatch, events_between
from prescale.app.edges.cgroup_layout import UNIFIED, Version
from prescale.app.edges.cgroupfs import (
    CgroupContainer,
    CgroupError,
    CgroupNotFoundError,
    OutsideRootsError,
    check_under_roots,
    detect_cgroup,
    read_v1_quantities,
    read_v2_quantities,
    resolve_roots,
    wide_root_problems,
)
from prescale.app.settings import CgroupSettings, CgroupVersion

# --------------------------------------------------------------------------- discovery


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CgroupError(
            f"cgroup.watch: {name!r} is not a plain directory name "
            "(containers are the child directories of the roots)"
        )


def check_roots(settings: CgroupSettings) -> None:
    """Refuse roots that are too wide (:func:`app.edges.cgroup_layout.wide_root_reason`)
    unless ``cgroup.allow_wide_roots``: :class:`CgroupError` naming each and why. The
    host's mounts and prescale's own cgroup are read once per process and set of roots
    (discovery runs every poll; they do not change under a running loop)."""
    if settings.allow_wide_roots or not settings.roots:
        return
    problems = _wide_root_problems(tuple(settings.roots))
    if problems:
        raise CgroupError("cgroup.roots: " + "; ".join(problems)
                          + " (set cgroup.allow_wide_roots = true to accept)")


@functools.lru_cache(maxsize=16)
def _wide_root_problems(roots: tuple[Path, ...]) -> tuple[str, ...]:
    return tuple(wide_root_problems(roots))


def _existing_roots(roots: Sequence[Path]) -> list[Path]:
    resolved = []
    for root, real in zip(roots, resolve_roots(roots), strict=True):
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
    check_roots(settings)
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


# --------------------------------------------------------------------------- the source


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
            values = read_v2_quantities(dirs[UNIFIED])
        else:
            values = read_v1_quantities(dirs)
        return Sample(container=container.name, ts_s=ts, app=container.name, **values)

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
