"""Durable writes on a local filesystem: a file appears whole or not at all, and stays.

The one home of temp-file + fsync + rename in prescale (checkpoints, status snapshots,
the model registry, the history store's Parquet files all write through it):

1. the content goes to a hidden temporary file in the target's directory
   (``.<name>.<random>.tmp`` unless the caller names it, as the history store does so
   that its compaction can sweep its own leftovers);
2. the file is flushed and fsynced, then renamed over the target (``os.replace``, atomic
   within one filesystem): a reader sees the old or the new content, never a partial one;
3. the directory is fsynced, so the rename itself survives a power loss.

A failure at any step removes the temporary file and raises; the target is untouched.
A crash between 1 and 2 leaves at most the hidden temporary file behind.

Directories are created with :func:`makedirs_durable`: ``mkdir -p`` that fsyncs the
parent of every directory it creates (a new directory's entry is durable too).

Example::

    write_bytes_atomic(Path("/var/lib/prescale/pool.json"), b'{"capacity": 4}')
    with atomic_file(Path("/data/part-1.parquet")) as fh:   # a writer that streams
        pq.write_table(table, fh)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def fsync_dir(path: str | os.PathLike, *, missing_ok: bool = False) -> None:
    """fsync a directory, which makes the entries created, renamed or removed in it
    durable. ``missing_ok``: a directory that does not exist is no error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str | os.PathLike) -> None:
    """``mkdir -p path`` that fsyncs the parent of every directory it creates.

    Example: ``/d`` exists, ``makedirs_durable("/d/a/b")`` creates ``/d/a`` (fsyncs
    ``/d``), then ``/d/a/b`` (fsyncs ``/d/a``); when ``/d/a/b`` exists it does nothing.
    """
    missing = []
    p = Path(path)
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, tmp: str | os.PathLike | None = None
                ) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; on leaving the block it is
    fsynced, renamed over ``path`` and the directory fsynced (see the module doc). An
    exception in the block or in those steps removes the temporary file and propagates.

    ``tmp``: the temporary file's path (in ``path``'s directory); default a fresh
    ``.<name>.<random>.tmp``. The directory must exist (see :func:`makedirs_durable`).
    """
    path = Path(path)
    if tmp is None:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX,
                                        dir=path.parent)
        fh = os.fdopen(fd, "wb")
    else:
        tmp_name = os.fspath(tmp)
        fh = open(tmp_name, "wb")  # closed by the with below, before the rename
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically, creating its directory
    (durably) when missing."""
    path = Path(path)
    makedirs_durable(path.parent)
    with atomic_file(path) as fh:
        fh.write(data)


def remove_durable(path: str | os.PathLike) -> None:
    """Delete ``path`` if it exists and fsync its directory, so the removal is durable.
    A file that does not exist is no error (and nothing is fsynced)."""
    path = Path(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def set_aside(path: str | os.PathLike, tag: str = "corrupt") -> Path | None:
    """Rename ``path`` to ``<name>.<tag>-<UTC time>`` beside it (durably) and return the
    new path; ``None`` when there is no such file. For state that cannot be read: it is
    kept for the operator to look at, and the reader starts afresh.

    Example: ``set_aside("/d/pool.json")`` → ``/d/pool.json.corrupt-20261202T081500Z``
    (a second one in the same second gets ``-1``, ``-2``, … appended)."""
    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    fsync_dir(path.parent)
    return target
