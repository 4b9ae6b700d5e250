"""Trace replay: play a :class:`~app.telemetry.trace_data.TraceData` back.

This is an I/O edge (the clock). The traces are read by :mod:`app.telemetry.bitbrains`,
:mod:`app.telemetry.google2011` and :mod:`app.telemetry.csv_trace`.

:class:`ReplaySource` plays a :class:`TraceData` as a telemetry source; and
:func:`replay_into` writes one into a history store as fast as it can.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from prescale.app.core.sample import SourceBatch
from prescale.app.telemetry.trace_data import TraceData, iter_events, iter_samples

# --------------------------------------------------------------------------- replay


class ReplaySource:
    """A :class:`~app.telemetry.base.Source` that plays a trace on a simulated clock.

    Simulated time = ``start_s + (clock() − t0) × speed``, where ``t0`` is the clock
    at the first :meth:`poll` (the replay starts when it is first polled, not when
    it is built). ``start_s`` defaults to the trace's first timestamp; rows before it
    are never delivered. Each poll returns the rows with ``ts`` in
    ``(previous simulated time, current simulated time]`` (the first poll:
    ``[start_s, current]``). ``speed=inf`` delivers everything left on the next poll.

    Worked example (fake clock, speed 60, trace at 0, 300, 600 s): poll at clock 100
    → t0 = 100, sim = 0 → the rows at 0; poll at clock 105 → sim = 300 → the rows at
    300; poll at clock 106 → sim = 360 → nothing; poll at clock 110 → sim = 600 →
    the rows at 600; :attr:`done`.

    :meth:`advance` (and :meth:`step`) move the simulated time explicitly without
    reading the clock (tests, benchmarks); the next :meth:`poll` carries on from
    there at ``speed``. Time never goes back: a clock that does is ignored, and
    ``advance`` to an earlier time is a ``ValueError``.
    """

    kind = "replay"

    def __init__(
        self,
        trace: TraceData,
        *,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        start_s: float | None = None,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not speed > 0:
            raise ValueError(f"speed must be a number > 0 (inf: as fast as possible), "
                             f"got {speed!r}")
        if start_s is not None and not (isinstance(start_s, int | float)
                                        and math.isfinite(start_s)):
            raise ValueError(f"start_s must be a finite number of seconds, got {start_s!r}")
        self.trace = trace
        self.speed = float(speed)
        self._clock = clock
        self._samples = trace.samples
        self._events = trace.events
        self._s_ts = trace.samples["ts_s"].to_numpy(np.float64)
        self._e_ts = trace.events["ts_s"].to_numpy(np.float64)
        if np.any(np.diff(self._s_ts) < 0) or np.any(np.diff(self._e_ts) < 0):
            raise ValueError(f"trace {trace.source!r}: samples and events must be sorted by "
                             "ts_s (use the readers, or sort_values('ts_s'))")
        if start_s is None:
            firsts = [a[0] for a in (self._s_ts, self._e_ts) if a.size]
            start_s = float(min(firsts)) if firsts else 0.0
        self.start_s = float(start_s)
        self._s_pos = int(np.searchsorted(self._s_ts, self.start_s, "left"))
        self._e_pos = int(np.searchsorted(self._e_ts, self.start_s, "left"))
        self._position_s = self.start_s
        self._base_s = self.start_s  # simulated time at clock t0
        self._t0: float | None = None
        self._closed = False

    @property
    def position_s(self) -> float:
        """The simulated time delivered up to (inclusive)."""
        return self._position_s

    @property
    def done(self) -> bool:
        """Every row at or after ``start_s`` was delivered (or the source is closed)."""
        return self._closed or (self._s_pos >= self._s_ts.size and self._e_pos >= self._e_ts.size)

    @property
    def remaining(self) -> int:
        """Sample and event rows not delivered yet."""
        if self._closed:
            return 0
        return int(self._s_ts.size - self._s_pos + self._e_ts.size - self._e_pos)

    def poll(self) -> SourceBatch:
        """The rows up to the current simulated time (see the class docstring)."""
        if self._closed:
            return SourceBatch()
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        if math.isinf(self.speed):
            to_s = math.inf
        else:
            to_s = self._base_s + (now - self._t0) * self.speed
        return self._batch(*self._take(max(to_s, self._position_s)))

    def advance(self, to_s: float) -> SourceBatch:
        """The rows with ts in (position, to_s], without reading the clock."""
        return self._batch(*self.advance_frames(to_s))

    def step(self, dt_s: float) -> SourceBatch:
        """:meth:`advance` by ``dt_s`` simulated seconds (≥ 0)."""
        if isinstance(dt_s, bool) or not isinstance(dt_s, int | float) or not dt_s >= 0:
            raise ValueError(f"dt_s must be a number >= 0, got {dt_s!r}")
        return self.advance(self._position_s + dt_s)

    def advance_frames(self, to_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Like :meth:`advance`, but the rows as (samples, events) DataFrame slices."""
        if isinstance(to_s, bool) or not isinstance(to_s, int | float) or math.isnan(to_s):
            raise ValueError(f"to_s must be a number of seconds, got {to_s!r}")
        if to_s < self._position_s:
            raise ValueError(f"cannot advance back in time: to_s={to_s} is before the "
                             f"replay position {self._position_s}")
        if self._closed:
            return self._samples.iloc[0:0], self._events.iloc[0:0]
        frames = self._take(float(to_s))
        self._base_s, self._t0 = float(to_s), None  # the next poll() re-anchors the clock
        return frames

    def close(self) -> None:
        self._closed = True

    def _take(self, to_s: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        s_end = int(np.searchsorted(self._s_ts, to_s, "right"))
        e_end = int(np.searchsorted(self._e_ts, to_s, "right"))
        s = self._samples.iloc[self._s_pos:s_end]
        e = self._events.iloc[self._e_pos:e_end]
        self._s_pos, self._e_pos = max(self._s_pos, s_end), max(self._e_pos, e_end)
        self._position_s = to_s
        return s, e

    @staticmethod
    def _batch(samples: pd.DataFrame, events: pd.DataFrame) -> SourceBatch:
        return SourceBatch(samples=list(iter_samples(samples)), events=list(iter_events(events)))


def replay_into(
    trace: TraceData,
    sink: Any,
    *,
    batch_rows: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write every sample and event of ``trace`` into ``sink``, ``batch_rows`` at a time.

    ``sink`` is a history store: ``append_samples(iterable of Sample)``,
    ``append_events(iterable of Event)`` and ``flush()``. When it has
    ``append_sample_frame(df)`` (or ``append_event_frame(df)``), slices of the
    DataFrame are passed instead and no Sample objects are built. ``progress(done,
    total)`` is called after each batch (rows = samples + events). ``flush()`` is
    called once at the end. Returns ``{"samples": n, "events": m, "batches": k}``.

    The sink is checked before anything is written: a missing method is a
    ``TypeError`` naming it.
    """
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be an int >= 1, got {batch_rows!r}")
    sample_frame = getattr(sink, "append_sample_frame", None)
    event_frame = getattr(sink, "append_event_frame", None)
    missing = [m for m, alt in (("append_samples", sample_frame), ("append_events", event_frame),
                                ("flush", None))
               if alt is None and not callable(getattr(sink, m, None))]
    if missing:
        raise TypeError(f"sink {type(sink).__name__} lacks method(s) {missing}")
    samples, events = trace.samples, trace.events
    total = len(samples) + len(events)
    done = batches = 0
    for frame, use_frame, use_objects, to_objects in (
        (samples, sample_frame, getattr(sink, "append_samples", None), iter_samples),
        (events, event_frame, getattr(sink, "append_events", None), iter_events),
    ):
        for lo in range(0, len(frame), batch_rows):
            part = frame.iloc[lo:lo + batch_rows]
            if use_frame is not None:
                use_frame(part)
            else:
                use_objects(list(to_objects(part)))
            done += len(part)
            batches += 1
            if progress is not None:
                progress(done, total)
    sink.flush()
    return {"samples": len(samples), "events": len(events), "batches": batches}
