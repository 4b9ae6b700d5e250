"""`prescale events` reads the decision log as typed records (app/loop/records.py, the
one schema) and renders every kind."""

from __future__ import annotations

import math

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
                       "1,024.0 MiB", "-", "forecast above")
    action = rec.ActionRecord(0.0, "web/cpu@1", "resize", "granted", "web", "shop", "cpu",
                              0.9, 0.5, 10.0, 1.0, 2.0, 2.0, "applied", "granted")
    assert event_row(stored(action))[1:] == ("action", "web", "cpu", "0.90", "0.50", "10.0",
                                             "1.00", "2.00", "applied", "granted")
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


def test_time_column_says_dash_without_a_time():
    assert fmt_time(None) == "-" and fmt_time(math.nan) == "-"
    assert len(fmt_time(0.0)) == 8
