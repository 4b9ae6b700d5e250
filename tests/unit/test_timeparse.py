"""Durations and times as users type them, and times as people read them
(app/timeparse.py)."""

from __future__ import annotations

import time

import pytest

from prescale.app.timeparse import format_time, parse_duration_s, parse_time_s


@pytest.mark.parametrize("text, seconds", [
    ("1h30m", 5400.0), ("90s", 90.0), ("2d", 172_800.0), ("1.5h", 5400.0), ("500ms", 0.5),
    ("1w2d", 777_600.0), ("1h 30m", 5400.0), (" 2h ", 7200.0), ("45", 45.0), (45, 45.0),
    ("1d2h3m4s", 93_784.0), (".5m", 30.0),
])
def test_durations(text, seconds):
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text, why", [
    ("30m1h", "largest first"), ("1h1h", "largest first"), ("-5s", "expected seconds"),
    ("5x", "expected seconds"), ("", "expected seconds"), ("h", "expected seconds"),
    ("1h30", "expected seconds"), ("inf", "expected seconds"), (-1, "expected seconds"),
])
def test_bad_durations_name_the_field(text, why):
    with pytest.raises(ValueError) as exc:
        parse_duration_s(text, field="--stale-after")
    assert str(exc.value).startswith(f"--stale-after: {text!r} is not a duration")
    assert why in str(exc.value)


def test_points_in_time_worked_examples():
    assert parse_time_s("2h", 10_000) == 2800.0
    assert parse_time_s("1h30m", 10_000) == 4600.0
    assert parse_time_s("90s", 10_000) == 9910.0
    assert parse_time_s("now", 10_000) == 10_000.0
    assert parse_time_s("1795856400", 0) == 1_795_856_400.0
    assert parse_time_s("2026-11-28T10:00:00+01:00", 0) == 1_795_856_400.0
    assert parse_time_s("2026-11-28T09:00:00", 0) == 1_795_856_400.0  # no zone: UTC


@pytest.mark.parametrize("text, says", [("3600", "a bare number is epoch seconds"),
                                        ("yesterday", "use a duration before now")])
def test_bad_times_say_what_is_accepted(text, says):
    with pytest.raises(ValueError, match=says):
        parse_time_s(text, 10_000)


@pytest.fixture
def zone(monkeypatch):
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()
    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_times_are_iso_8601_with_their_zone(zone):
    zone("UTC")
    assert format_time(1_795_860_903) == "2026-11-28T10:15:03+00:00"
    zone("Europe/Paris")
    assert format_time(1_795_860_903) == "2026-11-28T11:15:03+01:00"
    assert format_time(None) == "-" and format_time(float("nan")) == "-"
    assert format_time(True) == "-"
