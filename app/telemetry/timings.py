"""Application-reported timings of key code blocks: the spool that :mod:`app.client`
writes, read as a telemetry source.

Each line of the spool is one call of a timed block (format in :mod:`app.client`)::

    {"v":1,"ts_s":1767225600.5,"container":"web-1","block":"checkout",
     "duration_s":0.25,"ok":true,"timeout":false,"app":"shop","pid":4242}

Per container, a poll gives one :class:`~app.core.sample.Sample` with

* ``block_calls_total`` / ``block_failures_total``: calls and failed calls (``"ok":
  false``) seen since the source started (cumulative; they start at 0 for the spool
  content present when the source starts, which is read too);
* ``block_latency_s``: the mean ``duration_s`` of the calls read in *this* poll, over
  all blocks of the container; ``nan`` when there were none.

The other fields are ``nan`` (this source knows no memory or CPU; the limits too are
``nan``, "not known", not ``inf``, "unlimited"). A container keeps getting a sample
every poll once it has been seen. ``app`` is the ``app`` of its latest record, else
the container's name.

A call is a ``timeout`` :class:`~app.core.sample.Event` (at the record's ``ts_s``)
when its record says ``"timeout": true`` or its duration exceeds
``timeouts_s[block]``. A timeout is not by itself a failure: ``block_failures_total``
counts ``"ok": false`` only.

Worked example: one poll reads, for container ``web``, ``checkout`` 0.5 s ok,
``checkout`` 1.0 s failed, ``search`` 3.0 s ok, with ``timeouts_s={"search": 2.0}``
→ calls 3, failures 1, latency (0.5 + 1.0 + 3.0) / 3 = 1.5 s, one ``timeout`` event
("block 'search' took 3.000 s > timeout 2.0 s"). Next poll with no new line → calls 3,
failures 1, latency nan.

Reading the spool (:class:`SpoolReader`): from the offset of the previous poll to the
end, at most ``max_read_bytes`` per poll.

* A last line without its newline yet (a write in progress) is kept back until the
  newline arrives.
* Truncation in place (``copytruncate``): the file is shorter than our offset → read
  again from 0. Lines written between our last read and the truncation are lost, and
  a file truncated *and* refilled past our offset before a poll cannot be told from
  growth (the first line read may then be a fragment: counted ``not_json``).
* Rotation (the path now names another file, or none): the old file is read to its
  end first, then the new one from 0; an unterminated last line of the old file is
  counted ``torn``.
* A line longer than ``max_line_bytes`` is dropped (``too_long``) without being held
  in memory.

Malformed lines are counted in :attr:`TimingsSource.dropped` by reason (see
:func:`parse_record`) and skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch

NAN = math.nan
#: Longest line accepted (the client writes fewer than 4096 bytes).
MAX_LINE_BYTES = 64 * 1024
#: Most bytes read from the spool in one poll (the rest is read next time).
MAX_READ_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------- pure


@dataclass(frozen=True, slots=True)
class TimingRecord:
    """One call of a timed block, as parsed from a spool line."""

    container: str
    block: str
    duration_s: float
    ok: bool
    timeout: bool = False
    ts_s: float = NAN  # nan: the line had none (the poll's time is used for events)
    app: str = ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return value if math.isfinite(value) else None


def parse_record(line: bytes) -> TimingRecord | str:
    """One spool line (without its newline) → a :class:`TimingRecord`, or the reason it
    is malformed:

    ``empty``, ``not_utf8``, ``not_json``, ``not_object``, ``unknown_version`` (``v``
    present and not 1), ``bad_container`` / ``bad_block`` (missing, not a string or
    empty), ``bad_duration`` (missing, not a finite number ≥ 0), ``bad_ok`` (missing
    or not a boolean), ``bad_timeout`` (present and not a boolean), ``bad_ts``
    (present and not a finite number), ``bad_app`` (present and not a string).

    Example: ``b'{"container":"web","block":"a","duration_s":0.5,"ok":true}'`` →
    ``TimingRecord("web", "a", 0.5, True)``; ``b'{"container":"web"'`` →
    ``"not_json"``; ``b'{"container":"web","block":"a","duration_s":-1,"ok":true}'``
    → ``"bad_duration"``.
    """
    if not line.strip():
        return "empty"
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        obj = json.loads(text)
    except ValueError:  # also NaN/Infinity literals are accepted by json; checked below
        return "not_json"
    if not isinstance(obj, dict):
        return "not_object"
    if "v" in obj and obj["v"] != 1:
        return "unknown_version"
    container, block = obj.get("container"), obj.get("block")
    if not isinstance(container, str) or not container.strip():
        return "bad_container"
    if not isinstance(block, str) or not block.strip():
        return "bad_block"
    duration = _number(obj.get("duration_s"))
    if duration is None or duration < 0:
        return "bad_duration"
    ok = obj.get("ok")
    if not isinstance(ok, bool):
        return "bad_ok"
    timeout = obj.get("timeout", False)
    if not isinstance(timeout, bool):
        return "bad_timeout"
    ts: float | None = NAN
    if "ts_s" in obj:
        ts = _number(obj["ts_s"])
        if ts is None:
            return "bad_ts"
    app = obj.get("app", "")
    if not isinstance(app, str):
        return "bad_app"
    return TimingRecord(container, block, duration, ok, timeout, ts, app)


def is_timeout(record: TimingRecord, timeouts_s: Mapping[str, float]) -> str | None:
    """Why ``record`` is a timeout, or None.

    Examples (``timeouts_s={"search": 2.0}``): ``search`` 3.0 s → "block 'search'
    took 3.000 s > timeout 2.0 s"; ``search`` 2.0 s → None (not *more* than the
    timeout); any block with ``timeout=True`` after 0.1 s → "block 'x' reported a
    timeout after 0.100 s".
    """
    if record.timeout:
        return f"block {record.block!r} reported a timeout after {record.duration_s:.3f} s"
    limit = timeouts_s.get(record.block)
    if limit is not None and record.duration_s > limit:
        return f"block {record.block!r} took {record.duration_s:.3f} s > timeout {limit} s"
    return None


@dataclass
class BlockTotals:
    """Per container: cumulative calls and failures, and this poll's durations."""

    calls: int = 0
    failures: int = 0
    poll_calls: int = 0
    poll_duration_s: float = 0.0
    app: str = ""

    @property
    def poll_latency_s(self) -> float:
        """Mean duration of this poll's calls; nan when there were none.
        Example: durations 0.5, 1.0, 3.0 → 1.5."""
        return self.poll_duration_s / self.poll_calls if self.poll_calls else NAN


def accumulate(
    totals: dict[str, BlockTotals],
    records: Iterable[TimingRecord],
    timeouts_s: Mapping[str, float],
    now_s: float,
) -> list[Event]:
    """Add one poll's ``records`` to ``totals`` (this poll's part is reset first) and
    return the timeout events (at the record's ``ts_s``, else ``now_s``).
    See the module's worked example."""
    for t in totals.values():
        t.poll_calls, t.poll_duration_s = 0, 0.0
    events: list[Event] = []
    for r in records:
        t = totals.setdefault(r.container, BlockTotals())
        t.calls += 1
        t.failures += 0 if r.ok else 1
        t.poll_calls += 1
        t.poll_duration_s += r.duration_s
        if r.app:
            t.app = r.app
        why = is_timeout(r, timeouts_s)
        if why is not None:
            ts = r.ts_s if math.isfinite(r.ts_s) else now_s
            events.append(Event(r.container, ts, EventKind.TIMEOUT, why, r.app or r.container))
    return events


# --------------------------------------------------------------------------- reading


class SpoolReader:
    """Reads the complete new lines of an append-only file across polls (see the
    module doc for torn lines, truncation and rotation)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_read_bytes: int = MAX_READ_BYTES,
    ) -> None:
        self.path = Path(path)
        self.max_line_bytes = max_line_bytes
        self.max_read_bytes = max_read_bytes
        self.truncations = 0
        self.rotations = 0
        self._fd: int | None = None
        self._id: tuple[int, int] | None = None
        self._pos = 0
        self._partial = b""
        self._skipping = False  # inside a too-long line: drop up to the next newline

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._id, self._pos, self._partial, self._skipping = None, None, 0, b"", False

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        self._fd, self._id, self._pos = fd, (st.st_dev, st.st_ino), 0
        self._partial, self._skipping = b"", False
        return True

    def read_lines(self, dropped: Counter[str]) -> list[bytes]:
        """The complete lines written since the previous call (without newlines);
        lines dropped while reading are counted in ``dropped``."""
        lines: list[bytes] = []
        budget = self.max_read_bytes
        if self._fd is None and not self._open():
            return lines
        budget = self._drain(lines, dropped, budget)
        try:
            st = os.stat(self.path)
            now_id: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now_id = None
        if now_id != self._id and budget > 0:
            budget = self._drain(lines, dropped, budget)  # what was written before the switch
            if budget > 0:
                if self._partial or self._skipping:
                    dropped["torn"] += 1
                self.close()
                self.rotations += 1
                if now_id is not None and self._open():
                    self._drain(lines, dropped, budget)
        return lines

    def _drain(self, lines: list[bytes], dropped: Counter[str], budget: int) -> int:
        assert self._fd is not None
        if os.fstat(self._fd).st_size < self._pos:  # truncated in place
            self.truncations += 1
            if self._partial or self._skipping:
                dropped["truncated"] += 1
            self._pos, self._partial, self._skipping = 0, b"", False
        while budget > 0:
            chunk = os.pread(self._fd, min(_CHUNK, budget), self._pos)
            if not chunk:
                break
            self._pos += len(chunk)
            budget -= len(chunk)
            parts = (self._partial + chunk).split(b"\n")
            self._partial = parts.pop()
            for i, part in enumerate(parts):
                if i == 0 and self._skipping:
                    self._skipping = False  # the tail of a too-long line (counted already)
                    continue
                if len(part) > self.max_line_bytes:
                    dropped["too_long"] += 1
                else:
                    lines.append(part)
            if len(self._partial) > self.max_line_bytes:
                if not self._skipping:
                    dropped["too_long"] += 1
                self._partial, self._skipping = b"", True
        return budget


# --------------------------------------------------------------------------- source


class TimingsSource:
    """Samples of key-code-block timings from the client's spool (module doc).

    Example::

        source = TimingsSource("/var/run/prescale/timings.jsonl",
                               timeouts_s={"checkout": 2.0})
        batch = source.poll()
        source.dropped   # Counter({"not_json": 1})
    """

    kind = "timings"

    def __init__(
        self,
        spool_path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        timeouts_s: Mapping[str, float] | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_read_bytes: int = MAX_READ_BYTES,
    ) -> None:
        path = Path(spool_path)
        if path.is_dir():
            raise ValueError(f"timings spool {path} is a directory, not a file")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"timings spool directory {path.parent} does not exist")
        checked: dict[str, float] = {}
        for block, limit in (timeouts_s or {}).items():
            if not isinstance(block, str) or not block:
                raise ValueError(
                    f"timeouts_s: block names must be non-empty strings, got {block!r}"
                )
            if isinstance(limit, bool) or not isinstance(limit, int | float) or not (
                math.isfinite(limit) and limit > 0
            ):
                raise ValueError(f"timeouts_s[{block!r}] must be a number > 0, got {limit!r}")
            checked[block] = float(limit)
        for what, value in (("max_line_bytes", max_line_bytes), ("max_read_bytes", max_read_bytes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        self.spool_path = path
        self.clock = clock
        self.timeouts_s = checked
        self.dropped: Counter[str] = Counter()
        self.reader = SpoolReader(path, max_line_bytes=max_line_bytes,
                                  max_read_bytes=max_read_bytes)
        self._totals: dict[str, BlockTotals] = {}

    def poll(self) -> SourceBatch:
        """New lines since the previous poll → one sample per container ever seen, and
        the timeout events. A spool that exists but cannot be read (permissions) raises
        :class:`OSError` naming it: that is the source's misconfiguration, not a
        container's (a spool that does not exist yet is simply empty)."""
        try:
            lines = self.reader.read_lines(self.dropped)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot read timings spool {self.spool_path}: "
                          f"{exc.strerror or exc}") from exc
        records: list[TimingRecord] = []
        for line in lines:
            parsed = parse_record(line)
            if isinstance(parsed, str):
                self.dropped[parsed] += 1
            else:
                records.append(parsed)
        now = float(self.clock())
        events = accumulate(self._totals, records, self.timeouts_s, now)
        samples = [
            Sample(
                container=name,
                ts_s=now,
                memory_limit_bytes=NAN,
                cpu_quota_cores=NAN,
                block_calls_total=float(t.calls),
                block_failures_total=float(t.failures),
                block_latency_s=t.poll_latency_s,
                app=t.app or name,
            )
            for name, t in sorted(self._totals.items())
        ]
        return SourceBatch(samples, events, {})

    def close(self) -> None:
        self.reader.close()
