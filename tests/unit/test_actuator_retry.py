"""Retry/backoff, giving up loudly, idempotency by action id, and the dry-run actuator.

No Ray here. The retried actuator is a small scripted one (it fails a given number of
times, then applies): the thing under test is the wrapper's timing and bookkeeping, with
a fake clock whose ``sleep`` advances it, so the expected sleeps are exact.
"""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.app.actuators.base import (
    Actuator,
    IdempotentActuator,
    InvalidActionError,
    check_action,
    fmt_limit,
    make_result,
)
from prescale.app.actuators.dryrun import DryRunActuator
from prescale.app.actuators.ray_pg import Bundle, shortfall
from prescale.app.actuators.retry import RetryingActuator, RetryPolicy, backoff_delay_s
from prescale.app.actuators.serve import replicas_settled
from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    ResultStatus,
    ScalingAction,
    action_id_for,
)
from prescale.app.core.sample import Tier
from prescale.app.edges.serve_instance import serve_container, split_container

MiB = 2**20


def _action(new_limit: float = 160 * MiB, *, now_s: float = 1_700_000_000.0,
            kind: ActionKind = ActionKind.RESIZE, tier: Tier = Tier.MEMORY,
            container: str = "leaker", old_limit: float = 128 * MiB) -> ScalingAction:
    return ScalingAction(
        action_id=action_id_for(container, tier, now_s), now_s=now_s, container=container,
        tier=tier, old_limit=old_limit, new_limit=new_limit, p_fail=0.9, threshold=0.5,
        time_to_limit_s=30.0, forecast=150 * MiB, reason="test", kind=kind,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


class Draws:
    """A stand-in for random.Random: returns the given draws in turn."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


class Flaky(IdempotentActuator):
    """Fails (raises, or returns FAILED) ``failures`` times, then applies."""

    kind = "flaky"

    def __init__(self, failures: int, *, mode: str = "raise", clock: FakeClock | None = None,
                 attempt_s: float = 0.0) -> None:
        super().__init__()
        self.failures = failures
        self.mode = mode
        self.clock = clock
        self.attempt_s = attempt_s
        self.limit = 128 * MiB

    def _apply(self, action: ScalingAction) -> ActionResult:
        if self.clock is not None:
            self.clock.now_s += self.attempt_s
        if self.acted <= self.failures:
            if self.mode == "raise":
                raise RuntimeError(f"gcs timeout {self.acted}")
            return make_result(action, ResultStatus.FAILED, self.limit, self.limit,
                               f"EBUSY {self.acted}")
        old, self.limit = self.limit, action.new_limit
        return make_result(action, ResultStatus.APPLIED, old, self.limit, "written")


# -- backoff formula


def test_backoff_worked_examples_from_the_docstring():
    p = RetryPolicy()  # base 0.5 s, ×2, cap 8 s, jitter 0.2
    assert backoff_delay_s(p, 1, 0.5) == pytest.approx(0.5)
    assert backoff_delay_s(p, 3, 1.0) == pytest.approx(2.4)
    assert backoff_delay_s(p, 3, 0.0) == pytest.approx(1.6)
    assert backoff_delay_s(p, 6, 0.5) == pytest.approx(8.0)
    assert backoff_delay_s(p, 6, 1.0) == pytest.approx(8.0)  # capped after jitter
    assert backoff_delay_s(p, 5, 0.0) == pytest.approx(6.4)  # 8 × 0.8


@pytest.mark.parametrize("kwargs, field", [
    ({"max_attempts": 0}, "max_attempts"), ({"max_attempts": 2.5}, "max_attempts"),
    ({"base_delay_s": -1}, "base_delay_s"), ({"max_total_s": math.inf}, "max_total_s"),
    ({"multiplier": 0.5}, "multiplier"), ({"jitter": 1.5}, "jitter"),
])
def test_bad_policy_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**kwargs)


# -- retry loop


def test_retries_with_exponential_backoff_then_succeeds():
    clock = FakeClock()
    inner = Flaky(4)
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.5, multiplier=2, max_delay_s=3,
                         jitter=0.0, max_total_s=60)
    r = RetryingActuator(inner, policy, sleep=clock.sleep, clock=clock,
                         rng=Draws(0.5, 0.5, 0.5, 0.5))
    result = r.apply(_action())
    assert result.status is ResultStatus.APPLIED
    assert result.new_limit == 160 * MiB
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0]
    assert inner.acted == 5


def test_jitter_scales_each_sleep_by_its_draw():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, base_delay_s=1.0, multiplier=2, max_delay_s=10,
                         jitter=0.5, max_total_s=60)
    r = RetryingActuator(Flaky(3), policy, sleep=clock.sleep, clock=clock,
                         rng=Draws(0.0, 1.0, 0.25))
    assert r.apply(_action()).status is ResultStatus.APPLIED
    # 1 × (1 − 0.5), 2 × (1 + 0.5), 4 × (1 + 0.5 × (−0.5))
    assert clock.sleeps == pytest.approx([0.5, 3.0, 3.0])


def test_gives_up_after_max_attempts_with_every_attempt_in_the_reason_and_an_error_log(caplog):
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.5, jitter=0.0, max_total_s=60)
    inner = Flaky(10)
    r = RetryingActuator(inner, policy, sleep=clock.sleep, clock=clock)
    a = _action()
    with caplog.at_level(logging.WARNING, logger="prescale.app.actuators.retry"):
        result = r.apply(a)
    assert result.status is ResultStatus.FAILED
    assert result.action_id == a.action_id
    assert result.old_limit == 128 * MiB
    assert math.isnan(result.new_limit)  # every attempt raised: nothing read back
    assert result.reason == (
        "gave up after 3 attempts in 1.50 s (max_attempts=3): "
        "#1 RuntimeError: gcs timeout 1; #2 RuntimeError: gcs timeout 2; "
        "#3 RuntimeError: gcs timeout 3; last error: RuntimeError: gcs timeout 3"
    )
    assert clock.sleeps == [0.5, 1.0]
    assert inner.acted == 3
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1
    assert a.action_id in errors[0].getMessage()
    assert "gave up after 3 attempts" in errors[0].getMessage()
    assert [rec.levelno for rec in caplog.records].count(logging.WARNING) == 2


def test_failed_results_are_retried_and_the_last_read_back_is_reported():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=2, base_delay_s=1.0, jitter=0.0)
    r = RetryingActuator(Flaky(5, mode="failed"), policy, sleep=clock.sleep, clock=clock)
    result = r.apply(_action())
    assert result.status is ResultStatus.FAILED
    assert (result.old_limit, result.new_limit) == (128 * MiB, 128 * MiB)
    assert "#1 FAILED: EBUSY 1; #2 FAILED: EBUSY 2; last error: FAILED: EBUSY 2" in result.reason


def test_total_time_bounds_the_attempts():
    clock = FakeClock()
    # each attempt takes 4 s; delays 1, 2, 4: attempt 1 ends at 4 s, sleeps 1 → attempt 2
    # starts at 5 s, ends at 9 s; the next would start at 9 + 2 = 11 s > 10 s: give up.
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, multiplier=2, max_delay_s=60,
                         jitter=0.0, max_total_s=10.0)
    inner = Flaky(10, clock=clock, attempt_s=4.0)
    r = RetryingActuator(inner, policy, sleep=clock.sleep, clock=clock)
    result = r.apply(_action())
    assert result.status is ResultStatus.FAILED
    assert inner.acted == 2
    assert clock.sleeps == [1.0]
    assert "gave up after 2 attempts in 9.00 s (max_total_s=10: the next attempt would " \
           "start at 11.00 s)" in result.reason


def test_a_sleep_that_ends_exactly_at_the_bound_is_taken():
    clock = FakeClock()
    # attempt 1 ends at 4 s, the delay is 1 s: attempt 2 starts at 5 s = max_total_s (taken);
    # it ends at 9 s, and 9 + 2 > 5: give up
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, multiplier=2, jitter=0.0,
                         max_total_s=5.0)
    inner = Flaky(10, clock=clock, attempt_s=4.0)
    result = RetryingActuator(inner, policy, sleep=clock.sleep, clock=clock).apply(_action())
    assert inner.acted == 2 and clock.sleeps == [1.0]
    assert "(max_total_s=5: the next attempt would start at 11.00 s)" in result.reason


def test_one_draw_per_sleep_and_none_after_the_last_attempt():
    clock = FakeClock()
    draws = Draws(0.0, 1.0)  # exactly two: a third draw would raise IndexError
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, jitter=0.5, max_total_s=60)
    r = RetryingActuator(Flaky(10), policy, sleep=clock.sleep, clock=clock, rng=draws)
    assert r.apply(_action()).status is ResultStatus.FAILED
    assert clock.sleeps == pytest.approx([0.5, 3.0]) and draws.draws == []


def test_success_after_retries_is_logged_with_the_failed_attempts(caplog):
    clock = FakeClock()
    r = RetryingActuator(Flaky(2), RetryPolicy(jitter=0.0), sleep=clock.sleep, clock=clock)
    a = _action()
    with caplog.at_level(logging.INFO, logger="prescale.app.actuators.retry"):
        assert r.apply(a).status is ResultStatus.APPLIED
    infos = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.INFO]
    assert infos == [f"action {a.action_id}: applied after 3 attempts (#1 RuntimeError: "
                     "gcs timeout 1; #2 RuntimeError: gcs timeout 2)"]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert warnings == [
        f"action {a.action_id}: attempt 1 failed (#1 RuntimeError: gcs timeout 1); "
        "retrying in 0.50 s",
        f"action {a.action_id}: attempt 2 failed (#2 RuntimeError: gcs timeout 2); "
        "retrying in 1.00 s",
    ]


def test_the_last_failed_read_back_is_kept_when_a_later_attempt_raises():
    class FailsThenRaises(IdempotentActuator):
        kind = "mixed"

        def _apply(self, action):
            if self.acted == 1:
                return make_result(action, ResultStatus.FAILED, 100.0, 100.0, "EBUSY")
            raise RuntimeError("gone")

    clock = FakeClock()
    result = RetryingActuator(FailsThenRaises(), RetryPolicy(max_attempts=2, jitter=0.0),
                              sleep=clock.sleep, clock=clock).apply(_action())
    assert (result.old_limit, result.new_limit) == (100.0, 100.0)
    assert result.reason.endswith("#1 FAILED: EBUSY; #2 RuntimeError: gone; "
                                  "last error: RuntimeError: gone")


def test_an_interrupt_is_not_retried():
    class Interrupted(IdempotentActuator):
        kind = "interrupted"

        def _apply(self, action):
            raise KeyboardInterrupt

    clock = FakeClock()
    inner = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        RetryingActuator(inner, sleep=clock.sleep, clock=clock).apply(_action())
    assert inner.acted == 1 and clock.sleeps == []


def test_bad_input_is_not_retried():
    clock = FakeClock()
    inner = Flaky(0)
    r = RetryingActuator(inner, sleep=clock.sleep, clock=clock)
    with pytest.raises(InvalidActionError, match="new_limit must be a finite number"):
        r.apply(_action(math.nan))
    assert inner.acted == 0 and clock.sleeps == []


def test_denied_is_final_not_retried():
    class Refuser(IdempotentActuator):
        kind = "refuser"

        def _apply(self, action):
            return make_result(action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                               "refused: not listed")

    clock = FakeClock()
    inner = Refuser()
    result = RetryingActuator(inner, sleep=clock.sleep, clock=clock).apply(_action())
    assert result.status is ResultStatus.DENIED
    assert inner.acted == 1 and clock.sleeps == []


# -- idempotency


def test_same_action_id_applies_once_and_returns_the_first_result():
    inner = Flaky(0)
    a = _action()
    first = inner.apply(a)
    second = inner.apply(a)
    assert second is first
    assert inner.acted == 1
    assert inner.limit == 160 * MiB
    assert inner.result_for(a.action_id) is first
    # through the retry wrapper too
    assert RetryingActuator(inner).apply(a) is first
    assert inner.acted == 1


def test_failed_is_not_remembered_so_a_retry_acts_again():
    inner = Flaky(1, mode="failed")
    a = _action()
    assert inner.apply(a).status is ResultStatus.FAILED
    assert inner.result_for(a.action_id) is None
    assert inner.apply(a).status is ResultStatus.APPLIED
    assert inner.acted == 2


def test_a_different_action_under_a_used_id_is_refused():
    inner = DryRunActuator()
    a = _action(160 * MiB)
    inner.apply(a)
    from dataclasses import replace

    with pytest.raises(InvalidActionError, match="already applied to a different action"):
        inner.apply(replace(a, new_limit=192 * MiB))
    assert len(inner.recorded) == 1


def test_only_the_newest_ids_are_remembered():
    inner = DryRunActuator()
    inner.remembered = 2
    actions = [_action(now_s=1_700_000_000.0 + i) for i in range(3)]
    for a in actions:
        inner.apply(a)
    assert inner.result_for(actions[0].action_id) is None
    assert inner.result_for(actions[2].action_id) is not None


class Ledger(IdempotentActuator):
    """Counts real applications per id; fails the first ``fail_first[id]`` attempts."""

    kind = "ledger"

    def __init__(self) -> None:
        super().__init__()
        self.fail_first: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self.applied: dict[str, int] = {}

    def _apply(self, action: ScalingAction) -> ActionResult:
        n = self.attempts[action.action_id] = self.attempts.get(action.action_id, 0) + 1
        if n <= self.fail_first[action.action_id]:
            return make_result(action, ResultStatus.FAILED, action.old_limit, action.old_limit,
                               f"busy {n}")
        self.applied[action.action_id] = self.applied.get(action.action_id, 0) + 1
        return make_result(action, ResultStatus.APPLIED, action.old_limit, action.new_limit, "ok")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=30))
def test_property_each_action_id_changes_the_world_once(seq):
    """Whatever the order of repeats and transient failures (< max_attempts), each id is
    applied exactly once, and every repeat returns the first result object."""
    ledger = Ledger()
    clock = FakeClock()
    r = RetryingActuator(ledger, RetryPolicy(max_attempts=4, jitter=0.0, max_total_s=1e6),
                         sleep=clock.sleep, clock=clock)
    first: dict[str, ActionResult] = {}
    for i, failures in seq:
        a = _action(128 * MiB + (i + 1) * MiB, now_s=1_700_000_000.0 + i)
        ledger.fail_first.setdefault(a.action_id, failures)
        result = r.apply(a)
        assert result.status is ResultStatus.APPLIED
        assert first.setdefault(a.action_id, result) is result
    assert ledger.applied == {aid: 1 for aid in first}
    assert ledger.acted == sum(ledger.fail_first[aid] + 1 for aid in first)


@pytest.mark.parametrize("kwargs, message", [
    ({"new_limit": math.inf}, "finite number"),
    ({"new_limit": 0.0}, "must be positive"),
    ({"new_limit": -1.0}, "must be positive"),
    ({"new_limit": 2.5, "kind": ActionKind.SCALE_OUT}, "whole number ≥ 1"),
    ({"new_limit": 0.0, "kind": ActionKind.SCALE_OUT}, "whole number ≥ 1"),
])
def test_check_action_names_what_is_wrong(kwargs, message):
    with pytest.raises(InvalidActionError, match=message):
        check_action(_action(**kwargs))
    check_action(_action(2.0, kind=ActionKind.SCALE_OUT))  # a whole float is fine


# -- dry run


def test_dry_run_records_touches_nothing_and_returns_dry_run():
    d = DryRunActuator()
    assert isinstance(d, Actuator)
    a = _action(160 * MiB)
    result = d.apply(a)
    assert result.status is ResultStatus.DRY_RUN
    assert (result.old_limit, result.new_limit) == (128 * MiB, 128 * MiB)
    assert result.reason == "recommend mode: nothing touched (would set memory 134217728 → " \
                            "167772160)"
    assert d.apply(a) is result
    assert d.recorded == [a]
    out = d.apply(_action(2, kind=ActionKind.SCALE_OUT, container="echo/Echo", old_limit=1))
    assert out.reason == "recommend mode: nothing touched (would set replicas 1 → 2)"
    assert len(d.recorded) == 2


# -- pure helpers of the Ray actuators


def test_fmt_limit():
    assert fmt_limit(134217728.0) == "134217728"
    assert fmt_limit(0.25) == "0.25"
    assert fmt_limit(math.nan) == "nan"


def test_bundle_with_limit_and_ray_form():
    b = Bundle(0.25, 256 * MiB)
    assert b.with_limit(Tier.CPU, 0.5) == Bundle(0.5, 256 * MiB)
    assert b.with_limit(Tier.MEMORY, 402653184.7) == Bundle(0.25, 402653184)
    assert Bundle(0.25, 67108864).to_ray() == {"CPU": 0.25, "memory": 67108864.0}
    assert Bundle.from_ray({"CPU": 0.25, "memory": 67108864.0}) == Bundle(0.25, 67108864)
    assert b.limit(Tier.MEMORY) == 256 * MiB and b.limit(Tier.CPU) == 0.25
    with pytest.raises(ValueError, match="cpu_cores"):
        b.with_limit(Tier.CPU, 0.0)
    with pytest.raises(ValueError, match="memory_bytes"):
        Bundle(1.0, 0)
    with pytest.raises(ValueError, match="has no 'memory'"):
        Bundle.from_ray({"CPU": 1.0})


def test_shortfall_worked_example():
    available = {"CPU": 1.0, "memory": 8e9}
    need = Bundle(1.5, 2**30)
    assert shortfall(available, need) == ["CPU: 1.5 needed, 1 free"]
    assert shortfall(available, need, freed=Bundle(1.0, 2**30)) == []
    assert shortfall({"CPU": 0.5}, Bundle(0.5, 1)) == ["memory: 1 needed, 0 free"]
    assert shortfall({"CPU": 0.49995, "memory": 10}, Bundle(0.5, 1)) == []  # Ray's 1e-4 units


def test_replicas_settled_and_names():
    assert replicas_settled("HEALTHY", {"RUNNING": 2}, 2)
    assert not replicas_settled("UPSCALING", {"RUNNING": 1, "STARTING": 1}, 2)
    assert not replicas_settled("HEALTHY", {"RUNNING": 2, "STOPPING": 1}, 2)
    assert not replicas_settled("HEALTHY", {"RUNNING": 1}, 2)
    assert serve_container("echo", "Echo") == "echo/Echo"
    assert split_container("team/echo/Echo") == ("team/echo", "Echo")
    assert split_container("Echo") is None
    assert split_container("echo/") is None
