"""RetrainPolicy and live_rates: the worked examples of tuning/schedule.py, edge cases
and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.tuning.schedule import DAY_S, WEEK_S, RetrainPolicy, live_rates

POLICY = RetrainPolicy(interval_s=WEEK_S, min_precision=0.5, min_recall=0.5, window_n=50)


def test_defaults_are_weekly():
    p = RetrainPolicy()
    assert p.interval_s == 604_800.0 == 7 * DAY_S
    assert p.outcomes_needed == p.window_n == 50
    assert p.next_due_s(1000.0) == 605_800.0
    assert p.next_due_s(None) == -math.inf


def test_never_trained_is_due():
    assert POLICY.due(1e9, None, math.nan, math.nan, 0) == (True, "never trained")


def test_periodic_exactly_at_the_interval():
    assert POLICY.due(604_800.0, 0.0, 0.9, 0.9, 60) == (
        True, "periodic: 7.0 days since the last training (interval 7.0 days)"
    )
    # one second earlier it is not due (and the healthy rates say so)
    due, reason = POLICY.due(604_799.0, 0.0, 0.9, 0.9, 60)
    assert not due
    assert reason == (
        "not due: next periodic retrain in 0.0 days; live precision 0.900 ≥ 0.500, "
        "live recall 0.900 ≥ 0.500 over the last 50 outcomes"
    )


def test_periodic_wins_over_drift():
    due, reason = POLICY.due(10 * DAY_S, 0.0, 0.1, 0.1, 60)
    assert due and reason.startswith("periodic: 10.0 days")


def test_drift_on_precision():
    assert POLICY.due(DAY_S, 0.0, 0.3, 0.9, 60) == (
        True, "drift: live precision 0.300 < floor 0.500 over the last 50 outcomes"
    )


def test_drift_on_recall():
    assert POLICY.due(DAY_S, 0.0, 0.9, 0.49, 50) == (
        True, "drift: live recall 0.490 < floor 0.500 over the last 50 outcomes"
    )


def test_too_few_outcomes_never_judge_drift():
    assert POLICY.due(DAY_S, 0.0, 0.3, 0.0, 20) == (
        False,
        "not due: next periodic retrain in 6.0 days; too few outcomes to judge drift (20 < 50)",
    )


def test_min_outcomes_below_the_window():
    p = RetrainPolicy(min_precision=0.5, min_recall=0.5, window_n=200, min_outcomes=20)
    assert p.due(DAY_S, 0.0, 0.3, 0.9, 20) == (
        True, "drift: live precision 0.300 < floor 0.500 over the last 20 outcomes"
    )
    assert p.due(DAY_S, 0.0, 0.3, 0.9, 19)[0] is False


def test_healthy_not_due():
    assert POLICY.due(DAY_S, 0.0, 0.8, 0.7, 60) == (
        False,
        "not due: next periodic retrain in 6.0 days; live precision 0.800 ≥ 0.500, "
        "live recall 0.700 ≥ 0.500 over the last 50 outcomes",
    )


def test_unknown_rates_never_trigger():
    due, reason = POLICY.due(DAY_S, 0.0, math.nan, math.nan, 80)
    assert not due
    assert reason.endswith("live precision unknown, live recall unknown over the last 50 outcomes")


def test_floor_zero_switches_the_check_off():
    p = RetrainPolicy(min_precision=0.0, min_recall=0.5, window_n=10)
    assert p.due(DAY_S, 0.0, 0.0, 0.9, 10)[0] is False
    assert p.due(DAY_S, 0.0, 0.0, 0.4, 10)[0] is True


def test_custom_interval():
    p = RetrainPolicy(interval_s=3600.0)
    assert p.due(3600.0, 0.0, 1.0, 1.0, 0) == (
        True, "periodic: 0.0 days since the last training (interval 0.0 days)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 0}, "interval_s must be > 0"),
        ({"interval_s": math.inf}, "interval_s must be a finite number"),
        ({"interval_s": "7d"}, "interval_s must be a number"),
        ({"min_precision": 1.5}, "min_precision must be in [0, 1]"),
        ({"min_recall": math.nan}, "min_recall must be in [0, 1], got nan"),
        ({"window_n": 0}, "window_n must be an int ≥ 1"),
        ({"window_n": 10, "min_outcomes": 11}, "min_outcomes (11) cannot exceed window_n (10)"),
        ({"min_outcomes": 0}, "min_outcomes must be an int ≥ 1"),
    ],
)
def test_bad_policy_is_refused(kwargs, message):
    with pytest.raises(ValueError) as exc:
        RetrainPolicy(**kwargs)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((math.nan, 0.0, 0.5, 0.5, 10), "now_s must be a finite number"),
        ((100.0, 200.0, 0.5, 0.5, 10), "last_trained_s (200.0) is after now_s (100.0)"),
        ((100.0, 0.0, 1.2, 0.5, 10), "live_precision must be in [0, 1]"),
        ((100.0, 0.0, 0.5, -0.1, 10), "live_recall must be in [0, 1]"),
        ((100.0, 0.0, 0.5, 0.5, -1), "n_outcomes must be an int ≥ 0"),
        ((100.0, 0.0, 0.5, 0.5, 2.0), "n_outcomes must be an int ≥ 0"),
        ((100.0, math.inf, 0.5, 0.5, 1), "last_trained_s must be a finite number"),
    ],
)
def test_bad_due_input_is_refused(args, message):
    with pytest.raises(ValueError) as exc:
        POLICY.due(*args)
    assert message in str(exc.value)


def test_live_rates_worked_example():
    alarmed = [True, True, False, True, False]
    failed = [True, False, True, True, False]
    assert live_rates(alarmed, failed, 4) == (0.5, 0.5, 4)
    # the whole history: TP 2, FP 1, FN 1
    p, r, n = live_rates(alarmed, failed, 100)
    assert (p, r, n) == (2 / 3, 2 / 3, 5)


def test_live_rates_zero_over_zero_is_nan_and_numpy_bools_work():
    p, r, n = live_rates(np.array([False, False]), np.array([False, False]), 10)
    assert math.isnan(p) and math.isnan(r) and n == 2
    assert live_rates([], [], 5)[2] == 0


def test_live_rates_feed_the_policy():
    # 40 correct alarms, 20 false alarms, no miss → precision 2/3 ≥ 0.5, recall 1
    alarmed = [True] * 60
    failed = [True] * 40 + [False] * 20
    p, r, n = live_rates(alarmed, failed, 50)  # last 50: 30 TP, 20 FP
    assert (p, r, n) == (0.6, 1.0, 50)
    assert POLICY.due(DAY_S, 0.0, p, r, n)[0] is False
    p, r, n = live_rates(alarmed, [True] * 30 + [False] * 30, 50)  # last 50: 20 TP, 30 FP
    assert (p, r, n) == (0.4, 1.0, 50)
    assert POLICY.due(DAY_S, 0.0, p, r, n) == (
        True, "drift: live precision 0.400 < floor 0.500 over the last 50 outcomes"
    )


@pytest.mark.parametrize(
    ("alarmed", "failed", "window", "message"),
    [
        ([True], [True, False], 5, "alarmed (1) and failed (2) must have the same length"),
        ([1], [True], 5, "alarmed must hold booleans, found 1"),
        ([True], [True], 0, "window_n must be an int ≥ 1"),
    ],
)
def test_live_rates_bad_input(alarmed, failed, window, message):
    with pytest.raises(ValueError) as exc:
        live_rates(alarmed, failed, window)
    assert message in str(exc.value)
