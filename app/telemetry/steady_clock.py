"""The loop's time: wall-clock seconds that never step (:class:`SteadyClock`).

Samples, validation and the tick's ``now_s`` are stamped with epoch seconds, but an
operator or a bad NTP server can step the wall clock back or forward by minutes. A
step back made every new sample look older than the last one (all dropped as stale),
stopped the savings ledger ("now is before the last tick") and so stopped protection
until the clock caught up. The loop's clock therefore follows the **monotonic** clock,
anchored to the wall clock when it starts: it follows the wall clock's slow drift
(NTP slewing, within ``tolerance_s`` per reading) but not a step, which it reports
once (:meth:`SteadyClock.take_jumps`) and keeps out of every duration: a cooldown, a
lead time, a savings interval. Timestamps are then off by the step until the loop is
restarted (which re-anchors). Never backwards, even by drift.

Worked example (``tolerance_s`` 2): anchored at wall 1000.0, monotonic 50.0 (offset
950). At monotonic 60, wall 1010 → 1010.0. The wall clock is stepped back 600 s: at
monotonic 70, wall 420 → 1020.0, and one jump (1020.0, −600.0) is reported. At
monotonic 71, wall 421 → 1021.0, nothing more: the step is known. At monotonic 72,
wall 422.5 (NTP slewed +0.5 s) → 1022.5.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """Call it for the loop's time in epoch seconds (see the module doc)."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic, tolerance_s: float = 2.0) -> None:
        if not tolerance_s > 0:
            raise ValueError(f"tolerance_s must be > 0, got {tolerance_s!r}")
        self._wall, self._mono = wall, mono
        self.tolerance_s = float(tolerance_s)
        self.offset_s = wall() - mono()  # loop time = monotonic + offset
        self.stepped_s = 0.0  # wall − loop time, from the steps not followed
        self.last_s = -float("inf")
        self._jumps: list[tuple[float, float]] = []

    def __call__(self) -> float:
        m, w = self._mono(), self._wall()
        loop = m + self.offset_s
        step = w - loop - self.stepped_s
        if abs(step) > self.tolerance_s:
            self.stepped_s += step  # a step: known from now on, never followed
            self._jumps.append((loop, step))
        else:
            self.offset_s += step  # slow drift: followed
            loop += step
        self.last_s = max(loop, self.last_s)
        return self.last_s

    def take_jumps(self) -> list[tuple[float, float]]:
        """The steps seen since the last call: ``(loop time, seconds stepped)``."""
        out, self._jumps = self._jumps, []
        return out
