"""The loop's clock never steps (app/telemetry/steady_clock.py): the module's worked
example, with injected clocks."""

from __future__ import annotations

import pytest

from prescale.app.telemetry.steady_clock import SteadyClock


class Clocks:
    def __init__(self, wall: float, mono: float) -> None:
        self.wall, self.mono = wall, mono


def test_the_worked_example():
    c = Clocks(1000.0, 50.0)
    clock = SteadyClock(lambda: c.wall, lambda: c.mono, tolerance_s=2.0)
    c.mono, c.wall = 60.0, 1010.0
    assert clock() == 1010.0
    c.mono, c.wall = 70.0, 420.0  # stepped back 600 s
    assert clock() == 1020.0
    assert clock.take_jumps() == [(1020.0, -600.0)]
    c.mono, c.wall = 71.0, 421.0
    assert clock() == 1021.0 and clock.take_jumps() == []
    c.mono, c.wall = 72.0, 422.5  # NTP slewed +0.5 s: followed
    assert clock() == 1022.5
    c.mono, c.wall = 73.0, 1700.0  # the wall stepped forward (422.5 → 1700): not followed
    assert clock() == 1023.5
    assert clock.take_jumps() == [(1023.5, 1276.5)]


def test_never_backwards_even_by_drift():
    c = Clocks(1000.0, 0.0)
    clock = SteadyClock(lambda: c.wall, lambda: c.mono)
    assert clock() == 1000.0
    c.mono, c.wall = 1.0, 999.5  # slewed back 1.5 s within the tolerance
    assert clock() == 1000.0  # held, not 999.5
    c.mono, c.wall = 3.0, 1001.5
    assert clock() == 1001.5


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerance_s"):
        SteadyClock(tolerance_s=0)
