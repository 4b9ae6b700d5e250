"""Compaction of the history store: merge each partition's small files into one,
crash-safely. :class:`HistoryCompaction` is a part of :class:`app.store.history.HistoryStore`
(its base class), using the store's partition listing and file primitives.

*Compaction never loses or duplicates rows, even if killed at any point.* The
compacted file carries, in its Parquet key-value metadata (``prescale.replaces``), the
names of the files it replaces; readers skip every file named there by a compacted file
that exists; the replaced files are deleted only after the compacted file is in place;
the next compaction deletes any leftovers first. On a local filesystem one compaction
runs at a time (an ``flock`` on ``<root>/.compact.lock``); on other filesystems run one
compactor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from prescale.app.store.history_layout import (
    COMPACT_PREFIX,
    REPLACES_KEY,
    SCHEMAS,
    TABLE_KEY,
    TABLES,
    TMP_PREFIX,
    conform,
    day_expired,
    is_data_file,
    live_files,
)

LOCK_NAME = ".compact.lock"
#: Compaction buffers about this much (in memory) per row group it writes.
ROW_GROUP_BYTES = 64 * 2**20


class HistoryCompaction:
    """:meth:`compact` and :meth:`apply_retention` (the store's upkeep) for
    :class:`app.store.history.HistoryStore`, which provides what they use: ``_fs``,
    ``_local``, ``_root``, ``_clock``, ``_dirs``, ``_partitions``, ``_list``,
    ``_replaces``, ``readable``, ``_delete``, ``_fsync_dir`` and ``_publish``."""

    def compact(
        self,
        *,
        min_files: int = 4,
        small_file_bytes: int = 64 * 2**20,
        tmp_max_age_s: float = 3600.0,
    ) -> dict[str, int]:
        """Merge the small files of each partition into one, crash-safely (module doc).

        Per partition: delete hidden temp files older than ``tmp_max_age_s`` (by mtime,
        wall clock) and files left over from an interrupted compaction; then, if at
        least ``min_files`` live files are smaller than ``small_file_bytes``, write one
        ``compact-`` file holding all their rows (its metadata names them), and delete
        them. Returns counts: ``partitions`` (compacted), ``files_merged``,
        ``rows_merged``, ``leftovers_removed``, ``temp_files_removed``.
        """
        if isinstance(min_files, bool) or not isinstance(min_files, int) or min_files < 2:
            raise ValueError(f"min_files must be an int >= 2, got {min_files!r}")
        stats = dict(
            partitions=0, files_merged=0, rows_merged=0, leftovers_removed=0, temp_files_removed=0
        )
        with self._compact_lock():
            for table in TABLES:
                for pdir in self._partitions(table, None, None, None):
                    self._compact_partition(
                        table, pdir, min_files, small_file_bytes, tmp_max_age_s, stats
                    )
        return stats

    def _compact_partition(
        self,
        table: str,
        pdir: str,
        min_files: int,
        small_file_bytes: int,
        tmp_max_age_s: float,
        stats: dict[str, int],
    ) -> None:
        infos = [i for i in self._list(pdir) if i.type == pafs.FileType.File]
        now = time.time()
        for i in infos:
            if i.base_name.startswith(TMP_PREFIX) and (
                i.mtime is None or now - i.mtime.timestamp() >= tmp_max_age_s
            ):
                self._delete(i.path)
                stats["temp_files_removed"] += 1
        data = {i.base_name: i for i in infos if is_data_file(i.base_name)}
        replaces = {n: self._replaces(data[n].path) for n in data if n.startswith(COMPACT_PREFIX)}
        live = set(live_files(data, replaces))
        leftovers = sorted(set(data) - live)
        for n in leftovers:
            self._delete(data[n].path)
        if leftovers:
            self._fsync_dir(pdir)
        stats["leftovers_removed"] += len(leftovers)
        small = sorted(n for n in live if data[n].size < small_file_bytes)
        small = [n for n in small if data[n].path in self.readable([data[n].path])]
        if len(small) < min_files:
            return
        schema = SCHEMAS[table].with_metadata(
            {REPLACES_KEY: json.dumps(small).encode(), TABLE_KEY: table.encode()}
        )
        rows = 0

        def write(sink: Any) -> None:
            nonlocal rows
            pending: list[pa.Table] = []
            pending_bytes = 0
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                for n in small:
                    with self._fs.open_input_file(data[n].path) as fh:
                        t = conform(pq.ParquetFile(fh).read(), schema)
                    rows += t.num_rows
                    pending.append(t)
                    pending_bytes += t.nbytes
                    if pending_bytes >= ROW_GROUP_BYTES:  # bounded memory, sane row groups
                        writer.write_table(pa.concat_tables(pending))
                        pending, pending_bytes = [], 0
                if pending:
                    writer.write_table(pa.concat_tables(pending))

        self._publish(pdir, COMPACT_PREFIX, write)
        for n in small:
            self._delete(data[n].path)
        self._fsync_dir(pdir)
        stats["partitions"] += 1
        stats["files_merged"] += len(small)
        stats["rows_merged"] += rows

    def apply_retention(self, *, max_age_s: float, now_s: float | None = None) -> int:
        """Delete whole day partitions whose day ended at or before ``now_s - max_age_s``
        (see :func:`~app.store.history_layout.day_expired`) in every table; returns the
        files removed."""
        if isinstance(max_age_s, bool) or not isinstance(max_age_s, int | float) or not (
            math.isfinite(max_age_s) and max_age_s >= 0
        ):
            raise ValueError(f"max_age_s must be a finite number >= 0, got {max_age_s!r}")
        now = self._clock() if now_s is None else now_s
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValueError(f"now_s must be a finite number, got {now!r}")
        cutoff = now - max_age_s
        removed = 0
        for table in TABLES:
            for pdir in self._partitions(table, None, None, None):
                if not day_expired(pdir.rsplit("/day=", 1)[1], cutoff):
                    continue
                try:
                    files = self._fs.get_file_info(pafs.FileSelector(pdir, recursive=True))
                    removed += sum(1 for i in files if i.type == pafs.FileType.File)
                    self._fs.delete_dir(pdir)
                except FileNotFoundError:
                    pass
                self._dirs.discard(pdir)
        return removed

    def upkeep(self, *, min_files: int, retention_s: float, now_s: float) -> None:
        """The store's periodic upkeep: :meth:`compact` (``min_files``), then
        :meth:`apply_retention` (``retention_s``) — what the live loop and the API's
        ingestion both run."""
        self.compact(min_files=min_files)
        self.apply_retention(max_age_s=retention_s, now_s=now_s)

    @contextlib.contextmanager
    def _compact_lock(self) -> Iterator[None]:
        if not self._local:
            yield
            return
        import fcntl

        fd = os.open(os.path.join(self._root, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
