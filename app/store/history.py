"""Durable history: samples, failure events and decision records as Parquet.

One directory tree per table (``samples``, ``events``, ``records``), partitioned by app
and UTC day; the layout, file names and columns are :mod:`app.store.history_layout`'s,
compaction is :mod:`app.store.history_compaction`'s.

Guarantees:

1. *No partial file is ever visible.* Every file is written under a hidden temporary
   name (``.tmp-…``), fsynced (local filesystem), then renamed to its final name and
   the directory fsynced. A crash during a write leaves at most a hidden temp file,
   which every reader ignores and :meth:`HistoryStore.compact` deletes once it is
   older than ``tmp_max_age_s``. On a non-local filesystem (S3, GCS, …) there is no
   fsync and the rename is a copy + delete: a file still appears whole or not at all
   (an object store publishes an object only when its upload completes), a crash
   between the copy and the delete leaves a hidden temp object (ignored, later
   cleaned), and durability is whatever the store promises once it acknowledged the
   upload.
2. *Durability.* :meth:`~HistoryStore.append_events` and
   :meth:`~HistoryStore.append_records` write and fsync one file per partition
   (app, day) before returning. Samples are buffered in memory and written by
   :meth:`~HistoryStore.flush`, which :meth:`~HistoryStore.maybe_flush` calls once
   ``flush_interval_s`` has passed since the last flush and :meth:`~HistoryStore.close`
   calls at the end: with ``maybe_flush`` called every tick, a hard crash loses at
   most the samples of one flush interval (plus one tick). Each partition's rows of
   one call or flush appear atomically; a call whose rows span several partitions
   may, after a crash, be visible in some of them only (each one whole).
3. *Compaction never loses or duplicates rows, even if killed at any point*
   (:mod:`app.store.history_compaction` says how).
4. *Reading while another process writes or compacts works*: files appear
   atomically, and a read that races with a deletion (compaction, retention)
   re-lists the partition and tries again. Retention deletes an expired day's files
   one by one, so a read racing with it may see that day partly.
5. *Reads prune partitions*: only the directories of the requested app and of the
   days overlapping ``[since_s, until_s)`` are listed and opened. Results are
   pandas DataFrames with the columns of :mod:`app.store.history_layout` in that
   order, sorted by ``(container, ts_s)``; a file written before a metric was added
   reads with that column ``nan``.

External readers (pyarrow datasets, ``ray.data.read_parquet``) can read a table
directory with hive partitioning; to avoid seeing a compaction's rows twice
(between the compacted file's rename and the deletion of the files it replaces, or
after a killed compaction until the next one) pass them
:meth:`HistoryStore.files` with :attr:`HistoryStore.filesystem`.
"""

from __future__ import annotations

import contextlib
import json
import math
import operator
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from prescale.app.core.sample import METRICS, Event, EventKind, Sample
from prescale.app.store.durable import atomic_file, fsync_dir, makedirs_durable
from prescale.app.store.history_compaction import HistoryCompaction
from prescale.app.store.history_layout import (
    COMPACT_PREFIX,
    EVENTS_SCHEMA,
    PART_PREFIX,
    RECORDS_SCHEMA,
    REPLACES_KEY,
    SAMPLES_SCHEMA,
    SCHEMAS,
    TABLE_KEY,
    TABLES,
    TMP_PREFIX,
    app_dir_name,
    app_from_dir_name,
    check_ts,
    day_in_range,
    is_data_file,
    live_files,
    record_row,
    split_by_partition,
    type_ok,
)

if TYPE_CHECKING:  # pandas is imported lazily: writers do not need it
    import pandas

_READ_ATTEMPTS = 8
_SAMPLE_FIELDS = ("container", "app", *METRICS)
_sample_values = operator.attrgetter(*_SAMPLE_FIELDS)
_EVENT_KINDS = frozenset(k.value for k in EventKind)


class HistoryStore(HistoryCompaction):
    """Append-only Parquet history, partitioned by app and UTC day (see module doc).

    ``uri`` is a local directory path, or a pyarrow filesystem URI (``file:///…``,
    ``s3://…``, ``mock://`` in tests); with ``filesystem`` given, ``uri`` is a path
    inside it. ``clock`` (seconds) drives :meth:`maybe_flush` and the default ``now_s``
    of :meth:`apply_retention`. Many processes may write and read one store at once;
    one instance is not thread-safe (use one per thread, or a lock).
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        flush_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        if not (isinstance(flush_interval_s, int | float) and flush_interval_s >= 0
                and math.isfinite(flush_interval_s)):
            raise ValueError(
                f"flush_interval_s must be a finite number >= 0, got {flush_interval_s!r}"
            )
        if filesystem is not None:
            fs, root = filesystem, os.fspath(uri)
        elif isinstance(uri, os.PathLike) or "://" not in str(uri):
            fs, root = pafs.LocalFileSystem(), os.path.abspath(os.fspath(uri))
        else:
            try:
                fs, root = pafs.FileSystem.from_uri(str(uri))
            except (pa.ArrowInvalid, ValueError, OSError) as exc:
                raise ValueError(f"history uri {uri!r}: {exc}") from None
        self._fs: pafs.FileSystem = fs
        self._local = isinstance(fs, pafs.LocalFileSystem)
        self._root = root.rstrip("/") if root not in ("", "/") else root
        self.flush_interval_s = float(flush_interval_s)
        self._clock = clock
        self._last_flush_s = clock()
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._dirs: set[str] = set()
        #: data files that cannot be read (corrupt, truncated): path → why. Reads and
        #: compaction pass them over (they stay where they are, for the operator).
        self.unreadable: dict[str, str] = {}
        info = fs.get_file_info(self._root) if self._root else None
        if info is not None and info.type == pafs.FileType.File:
            raise ValueError(f"history uri {uri!r}: {self._root} is a file, not a directory")
        if self._root:
            fs.create_dir(self._root, recursive=True)

    # -- properties --------------------------------------------------------

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._fs

    @property
    def root(self) -> str:
        return self._root

    @property
    def buffered(self) -> int:
        """Samples in the memory buffer, not yet written."""
        return self._buffered

    # -- writing -----------------------------------------------------------

    def append_samples(self, samples: Iterable[Sample]) -> int:
        """Buffer ``samples`` in memory (no I/O); returns how many were accepted.

        The owner calls :meth:`maybe_flush` every tick (and :meth:`close` at the end):
        that is what bounds the loss on a crash to one flush interval.

        The whole batch is validated first: a sample that is not a :class:`Sample`, a
        non-str container, a metric that is not a number, a ``ts_s`` that is not finite
        or an app that cannot be stored raises ``ValueError`` naming it, and nothing
        of the batch is buffered.
        """
        samples = list(samples)
        if not samples:
            return 0
        for i, s in enumerate(samples):
            if not isinstance(s, Sample):
                raise ValueError(f"samples[{i}]: must be a Sample, got {type(s).__name__}")
        rows = [_sample_values(s) for s in samples]
        cols = list(zip(*rows, strict=True))
        arrays = []
        for f, col in zip(SAMPLES_SCHEMA, cols, strict=True):
            if not all(type_ok(t, f.type) for t in set(map(type, col))):
                i = next(i for i, v in enumerate(col) if not type_ok(type(v), f.type))
                want = "a str" if f.type == pa.string() else "a number (nan when unknown)"
                raise ValueError(
                    f"samples[{i}] (container {rows[i][0]!r}): {f.name} must be {want}, "
                    f"got {col[i]!r}"
                )
            if f.name == "app":
                for a in set(col):
                    app_dir_name(a)
            try:
                arrays.append(pa.array(col, type=f.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeError) as exc:
                raise ValueError(f"samples: {f.name}: {exc}") from None
        ts = arrays[2].to_numpy(zero_copy_only=False)
        check_ts(ts, "samples", lambda i: f"container {rows[i][0]!r}")
        self._buffer.append(pa.Table.from_arrays(arrays, schema=SAMPLES_SCHEMA))
        self._buffered += len(samples)
        return len(samples)

    def maybe_flush(self) -> int:
        """:meth:`flush` if ``flush_interval_s`` has passed since the last flush, else 0.

        Example: interval 5 s, last flush at t=100: at t=104.9 → 0 (nothing written);
        at t=105.0 → every buffered row written.
        """
        if self._clock() - self._last_flush_s >= self.flush_interval_s:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Write every buffered sample now (one file per partition); rows written.

        If a write fails, the partitions already written leave the buffer and the rest
        stay buffered for the next flush (no row is written twice).
        """
        if self._buffer:
            parts = split_by_partition(pa.concat_tables(self._buffer))
            for k, (app_dir, day, table) in enumerate(parts):
                try:
                    self._write_file("samples", app_dir, day, table)
                except BaseException:
                    self._buffer = [t for _, _, t in parts[k:]]
                    self._buffered = sum(t.num_rows for t in self._buffer)
                    raise
        written, self._buffer, self._buffered = self._buffered, [], 0
        self._last_flush_s = self._clock()
        return written

    def append_events(self, events: Iterable[Event]) -> int:
        """Write ``events`` durably (fsynced) before returning; rows written.

        An item that is not an :class:`Event`, or has a bad container, time, kind,
        detail or app, raises ``ValueError`` naming it; nothing is written then.
        """
        events = list(events)
        if not events:
            return 0
        rows = []
        for i, e in enumerate(events):
            if not isinstance(e, Event):
                raise ValueError(f"events[{i}]: must be an Event, got {type(e).__name__}")
            kind = e.kind.value if isinstance(e.kind, EventKind) else e.kind
            if kind not in _EVENT_KINDS:
                raise ValueError(
                    f"events[{i}] (container {e.container!r}): kind must be one of "
                    f"{sorted(_EVENT_KINDS)}, got {e.kind!r}"
                )
            for name in ("container", "detail", "app"):
                if not isinstance(getattr(e, name), str):
                    raise ValueError(
                        f"events[{i}]: {name} must be a str, got {getattr(e, name)!r}"
                    )
            if isinstance(e.ts_s, bool) or not isinstance(e.ts_s, int | float):
                raise ValueError(
                    f"events[{i}] (container {e.container!r}): ts_s must be a number, "
                    f"got {e.ts_s!r}"
                )
            app_dir_name(e.app)
            rows.append((e.container, e.app, float(e.ts_s), kind, e.detail))
        ts = np.array([r[2] for r in rows], dtype=np.float64)
        check_ts(ts, "events", lambda i: f"container {rows[i][0]!r}")
        return self._write_rows("events", EVENTS_SCHEMA, rows)

    def append_records(self, records: list[dict[str, Any]]) -> int:
        """Write decision/action/outcome records durably before returning; rows written.

        Each record needs ``kind`` (non-empty str), ``ts_s`` (finite number) and
        ``container`` (str); ``app`` (str) is optional. A bad record raises
        ``ValueError`` naming its index and field; nothing is written then.
        """
        rows = [record_row(i, r) for i, r in enumerate(records)]
        if not rows:
            return 0
        return self._write_rows("records", RECORDS_SCHEMA, rows)

    def _write_rows(self, table_name: str, schema: pa.Schema, rows: list[tuple]) -> int:
        cols = list(zip(*rows, strict=True))
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(cols, schema, strict=True)], schema=schema
        )
        for app_dir, day, part in split_by_partition(table):
            self._write_file(table_name, app_dir, day, part)
        return len(rows)

    def close(self) -> None:
        """Flush the buffered samples."""
        self.flush()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------

    def read_samples(
        self,
        *,
        app: str | None = None,
        container: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> pandas.DataFrame:
        """Samples with ``since_s <= ts_s < until_s`` (``None`` = unbounded), of ``app``
        (``""`` = the unknown app; ``None`` = all) and ``container``; columns
        ``container, app, *METRICS``; sorted by ``(container, ts_s)``. Buffered samples
        not yet flushed are not included."""
        return self._read("samples", app, container, since_s, until_s, None)

    def read_events(
        self,
        *,
        app: str | None = None,
        container: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> pandas.DataFrame:
        """Events, filtered as :meth:`read_samples`; columns ``container, app, ts_s, kind,
        detail``."""
        return self._read("events", app, container, since_s, until_s, None)

    def read_records(
        self,
        *,
        app: str | None = None,
        container: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        kinds: set[str] | None = None,
    ) -> pandas.DataFrame:
        """Records, filtered as :meth:`read_samples` and by ``kinds``; columns ``kind,
        ts_s, container, app, json`` (``json.loads`` of ``json`` is the record)."""
        return self._read("records", app, container, since_s, until_s, kinds)

    def read_record_dicts(self, **filters: Any) -> list[dict[str, Any]]:
        """The records of :meth:`read_records` as dicts, in its order."""
        return [json.loads(t) for t in self.read_records(**filters)["json"]]

    def apps(self) -> list[str]:
        """Every app with data in any table, sorted (``""`` is the unknown app)."""
        found: set[str] = set()
        for table in TABLES:
            for info in self._list(self._join(table)):
                if info.type == pafs.FileType.Directory:
                    app = app_from_dir_name(info.base_name)
                    if app is not None:
                        found.add(app)
        return sorted(found)

    def files(
        self,
        table: str,
        *,
        app: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> list[str]:
        """Paths (in :attr:`filesystem`) of the live data files of ``table`` whose
        partitions match the filters: hand these to Ray Data or pyarrow."""
        self._check_filters(table, app, since_s, until_s)
        for _ in range(_READ_ATTEMPTS):
            try:
                return self._files(table, app, since_s, until_s)
            except FileNotFoundError:
                continue
        return self._files(table, app, since_s, until_s)

    def _check_filters(
        self, table: str, app: str | None, since_s: float | None, until_s: float | None
    ) -> None:
        if table not in SCHEMAS:
            raise ValueError(f"table must be one of {list(TABLES)}, got {table!r}")
        if app is not None:
            app_dir_name(app)
        for name, v in (("since_s", since_s), ("until_s", until_s)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or math.isnan(v)):
                raise ValueError(f"{name} must be a number or None, got {v!r}")
        if since_s is not None and until_s is not None and since_s > until_s:
            raise ValueError(f"since_s ({since_s}) is after until_s ({until_s})")

    def _partitions(
        self, table: str, app: str | None, since_s: float | None, until_s: float | None
    ) -> list[str]:
        tdir = self._join(table)
        if app is not None:
            app_dirs = [self._join(table, app_dir_name(app))]
        else:
            app_dirs = [
                i.path for i in self._list(tdir)
                if i.type == pafs.FileType.Directory and i.base_name.startswith("app=")
            ]
        out = []
        for adir in sorted(app_dirs):
            for info in self._list(adir):
                name = info.base_name
                if info.type != pafs.FileType.Directory or not name.startswith("day="):
                    continue
                try:
                    if day_in_range(name[4:], since_s, until_s):
                        out.append(info.path)
                except ValueError:  # not a day directory of ours
                    continue
        return sorted(out)

    def _live(self, pdir: str) -> list[str]:
        """Live data file paths of one partition (raises FileNotFoundError on a race)."""
        names = [i.base_name for i in self._list(pdir)
                 if i.type == pafs.FileType.File and is_data_file(i.base_name)]
        replaces = {n: self._replaces(f"{pdir}/{n}") for n in names
                    if n.startswith(COMPACT_PREFIX)}
        return [f"{pdir}/{n}" for n in live_files(names, replaces)]

    def _replaces(self, path: str) -> list[str]:
        """The files a compacted file replaces (none when it cannot be read: it is then
        in :attr:`unreadable`, and the files it would replace stay live)."""
        if path in self.unreadable:
            return []
        try:
            with self._fs.open_input_file(path) as fh:
                meta = pq.read_metadata(fh).metadata or {}
            return json.loads(meta.get(REPLACES_KEY, b"[]"))
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            self.unreadable[path] = str(exc)
            return []

    def readable(self, paths: list[str]) -> list[str]:
        """``paths`` without the unreadable ones; a file not checked before has its
        Parquet footer read once (cheap) and, if that fails, joins :attr:`unreadable`.

        Example: of ``[a, b]`` where ``b`` holds 64 random bytes, ``[a]`` is returned
        and ``unreadable == {b: "… Parquet magic bytes not found …"}``."""
        out = []
        for path in paths:
            if path in self.unreadable:
                continue
            try:
                with self._fs.open_input_file(path) as fh:
                    pq.read_metadata(fh)
            except FileNotFoundError:
                raise
            except (pa.ArrowInvalid, OSError, ValueError) as exc:
                self.unreadable[path] = str(exc)
                continue
            out.append(path)
        return out

    def _files(
        self, table: str, app: str | None, since_s: float | None, until_s: float | None
    ) -> list[str]:
        return [p for d in self._partitions(table, app, since_s, until_s) for p in self._live(d)]

    def _read(
        self,
        table: str,
        app: str | None,
        container: str | None,
        since_s: float | None,
        until_s: float | None,
        kinds: set[str] | None,
    ) -> pandas.DataFrame:
        self._check_filters(table, app, since_s, until_s)
        if container is not None and not isinstance(container, str):
            raise ValueError(f"container must be a str or None, got {container!r}")
        if kinds is not None:
            kinds = set(kinds)
            if not all(isinstance(k, str) for k in kinds):
                raise ValueError(f"kinds must be a set of str, got {kinds!r}")
        schema = SCHEMAS[table]
        expr = None
        conds = []
        if app is not None:
            conds.append(pc.field("app") == app)
        if container is not None:
            conds.append(pc.field("container") == container)
        if since_s is not None:
            conds.append(pc.field("ts_s") >= float(since_s))
        if until_s is not None:
            conds.append(pc.field("ts_s") < float(until_s))
        if kinds is not None:
            conds.append(pc.field("kind").isin(sorted(kinds)))
        for c in conds:
            expr = c if expr is None else expr & c
        last_exc: Exception | None = None
        for _ in range(_READ_ATTEMPTS):
            try:
                paths = [p for p in self._files(table, app, since_s, until_s)
                         if p not in self.unreadable]
                if not paths:
                    result = schema.empty_table()
                else:
                    dataset = ds.dataset(paths, schema=schema, format="parquet",
                                         filesystem=self._fs)
                    result = dataset.to_table(filter=expr)
                break
            except FileNotFoundError as exc:  # a file vanished (compaction, retention)
                last_exc = exc
                time.sleep(0.01)
            except (pa.ArrowInvalid, OSError) as exc:  # a corrupt file: pass it over
                known = len(self.unreadable)
                try:
                    self.readable(paths)
                except FileNotFoundError as gone:
                    last_exc = gone
                    continue
                if len(self.unreadable) == known:
                    raise  # not a file of ours that is corrupt
                last_exc = exc
        else:
            raise RuntimeError(
                f"history {table}: files kept vanishing while reading "
                f"({_READ_ATTEMPTS} attempts): {last_exc}"
            )
        df = result.to_pandas()
        return df.sort_values(["container", "ts_s"], kind="stable", ignore_index=True)

    # -- maintenance -------------------------------------------------------

    # -- file primitives ---------------------------------------------------

    def _join(self, *parts: str) -> str:
        return "/".join(p for p in (self._root, *parts) if p)

    def _list(self, path: str) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))

    def _delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.delete_file(path)

    def _ensure_dir(self, path: str) -> None:
        if not self._local:
            if path not in self._dirs:
                self._fs.create_dir(path, recursive=True)
                self._dirs.add(path)
            return
        makedirs_durable(path)

    def _fsync_dir(self, path: str) -> None:
        if self._local:  # a non-local filesystem has no directory to fsync
            fsync_dir(path, missing_ok=True)

    def _write_file(self, table_name: str, app_dir: str, day: str, table: pa.Table) -> None:
        pdir = self._join(table_name, app_dir, f"day={day}")
        schema = SCHEMAS[table_name].with_metadata({TABLE_KEY: table_name.encode()})
        table = table.replace_schema_metadata(schema.metadata)
        self._publish(pdir, PART_PREFIX,
                      lambda sink: pq.write_table(table, sink, compression="zstd"))

    def _publish(self, pdir: str, prefix: str, write: Callable[[Any], None]) -> str:
        """Write a file via ``write(sink)`` under a hidden temp name, fsync, rename."""
        self._ensure_dir(pdir)
        name = f"{prefix}{time.time_ns():016x}-{uuid.uuid4().hex[:12]}.parquet"
        tmp, final = f"{pdir}/{TMP_PREFIX}{name}", f"{pdir}/{name}"
        try:
            if self._local:
                with atomic_file(final, tmp=tmp) as fh:
                    write(fh)
            else:
                with self._fs.open_output_stream(tmp) as out:
                    write(out)
                self._fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete(tmp)
            raise
        return final
