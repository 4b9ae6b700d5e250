"""`prescale events` reads the decision log as typed records (app/loop/records.py, the
one schema) and renders every kind."""

from __future__ import annotations

import math
import time

from prescale.app.cli.observe import event_row, fmt_time
from prescale.app.loop import records as rec

MIB = 2**20


def stored(r: rec.Record) -> rec.Record:
    """Through the stored form and back, as `events` reads it."""
    return rec.parse({**rec.to_dict(r), "run_id": "r1", "mode": "auto"})


def test_every_kind_renders_its_columns():
    decision = rec.DecisionRecord(0.0, "web", "shop", "memory", 0.8, 0.5, 42.0, 900 * MIB,
                                  512 * MIB, 1024 * MIB, "web/memory@1", "forecast above")
    row = event_row(stored(decision))
    assert row[1:] == ("decision", "web", "memory", "0.80", "0.50", "42.0", "512.0 MiB",
                       "1.00 GiB", "-", "forecast above")
    action = rec.ActionRecord(0.0, "web/cpu@1", "resize", "granted", "web", "shop", "cpu",
                              0.9, 0.5, 10.0, 1.0, 2.0, 2.0, "applied", "granted")
    assert event_row(stored(action))[1:] == ("action", "web", "cpu", "0.90", "0.50", "10.0",
                                             "1.00 cores", "2.00 cores", "applied", "granted")
    # a negligible p_fail reads as a bound, not as 2.36e-213
    tiny = rec.DecisionRecord(0.0, "web", "shop", "memory", 2.36e-213, 0.5, 42.0, 900 * MIB,
                              512 * MIB, 1024 * MIB, "web/memory@1", "x")
    assert event_row(stored(tiny))[4] == "<0.001"
    # each tier in its own unit: a disk limit in bytes, an I/O limit in bytes/s
    disk = rec.DecisionRecord(0.0, "web", "shop", "disk", 0.8, 0.5, 42.0, 0.0, 256 * MIB,
                              512 * MIB, "web/disk@1", "x")
    assert event_row(stored(disk))[7:9] == ("256.0 MiB", "512.0 MiB")
    io = rec.DecisionRecord(0.0, "web", "shop", "io", 0.8, 0.5, 42.0, 0.0, MIB, 2 * MIB,
                            "web/io@1", "x")
    assert event_row(stored(io))[7:9] == ("1.0 MiB/s", "2.0 MiB/s")
    event = rec.EventRecord(0.0, "web", "shop", "oom_kill", "kernel")
    assert event_row(stored(event))[1:] == ("event", "web", "-", "-", "-", "-", "-", "-",
                                            "oom_kill", "kernel")
    outcome = rec.OutcomeRecord(0.0, "web", "shop", "web/memory@1", "crossed", 0.0, 23.0, 23.0)
    assert event_row(stored(outcome))[6] == "23.0"  # the lead time in the ttl column
    assert event_row(stored(outcome))[9] == "crossed"
    # an unlimited old limit (stored as inf, or as null by an older JSON writer)
    unlimited = rec.parse({**rec.to_dict(decision), "old_limit": None, "new_limit": None})
    assert unlimited.old_limit == math.inf
    assert event_row(unlimited)[7:9] == ("unlimited", "-")


def test_time_column_is_iso_8601_with_its_zone(monkeypatch):
    assert fmt_time(None) == "-" and fmt_time(math.nan) == "-"
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        decision = rec.DecisionRecord(1_795_860_903.0, "web", "shop", "memory", 0.8, 0.5, 42.0,
                                      900 * MIB, 512 * MIB, 1024 * MIB, "web/memory@1", "x")
        assert event_row(stored(decision))[0] == "2026-11-28T10:15:03+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
