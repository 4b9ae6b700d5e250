"""Retries with exponential backoff and jitter, then gives up loudly.

The loop is tenacity's (``Retrying``); what to retry, the delay, the time bound and
the give-up result are this module's, as below.

:class:`RetryingActuator` wraps any :class:`~app.actuators.base.Actuator`. An attempt
*fails* when the inner actuator raises (anything but bad input) or returns
``FAILED``; ``APPLIED``, ``DRY_RUN`` and ``DENIED`` end the loop at once, and bad
input (``ValueError``/``TypeError``, e.g.
:class:`~app.actuators.base.InvalidActionError`) propagates unretried.

Backoff
-------
After failed attempt ``k`` (1-based) the wrapper sleeps

    delay_s(k) = min(max_delay_s, base_delay_s × multiplier^(k−1) × (1 + jitter × (2u − 1)))

with ``u`` drawn uniformly from [0, 1) per sleep, so the jitter scales the delay by a
factor in [1 − jitter, 1 + jitter) and the cap holds after jitter. Worked example with
the defaults (base 0.5 s, ×2, cap 8 s, jitter 0.2): k = 1, u = 0.5 → 0.5 s;
k = 3, u = 1.0 → 2.0 × 1.2 = 2.4 s; k = 3, u = 0 → 1.6 s; k = 6, u = 0.5 → min(8, 16) = 8 s.

Bounds: at most ``max_attempts`` attempts, and no attempt starts later than
``max_total_s`` after the first one started (a sleep that would cross that line is not
taken; an attempt itself is bounded by the inner actuator's own timeouts).

Giving up
---------
The wrapper returns a ``FAILED`` result whose reason lists every attempt and the last
error, e.g. ``"gave up after 3 attempts in 1.5 s (max_attempts=3): #1 RuntimeError:
gcs timeout; #2 FAILED: EBUSY ...; #3 ...; last error: ..."``, and logs the same at
ERROR level. Its ``old_limit``/``new_limit`` are those of the last ``FAILED`` result
(read back by the inner actuator), or ``action.old_limit``/``nan`` when every attempt
raised and nothing could be read back.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
)

from prescale.app.actuators.base import make_result
from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 8.0
    jitter: float = 0.2  # fraction: each delay is scaled by a factor in [1 − jitter, 1 + jitter)
    max_total_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer ≥ 1, got {self.max_attempts!r}")
        for name in ("base_delay_s", "max_delay_s", "max_total_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if not isinstance(self.multiplier, int | float) or not math.isfinite(self.multiplier) \
                or self.multiplier < 1:
            raise ValueError(f"multiplier must be a finite number ≥ 1, got {self.multiplier!r}")
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be a fraction in [0, 1], got {self.jitter!r}")


def backoff_delay_s(policy: RetryPolicy, attempt: int, u: float) -> float:
    """The sleep after failed attempt ``attempt`` (1-based) for a uniform draw ``u`` ∈ [0, 1).

    See the module docstring for the formula and worked examples.
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt!r}")
    if not 0 <= u <= 1:
        raise ValueError(f"u must be in [0, 1], got {u!r}")
    raw = policy.base_delay_s * policy.multiplier ** (attempt - 1)
    return min(policy.max_delay_s, raw * (1 + policy.jitter * (2 * u - 1)))


class RetryingActuator:
    """Wraps ``inner`` with retries; ``sleep``, ``clock`` and ``rng`` are injectable."""

    def __init__(
        self,
        inner,
        policy: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not callable(getattr(inner, "apply", None)):
            raise TypeError(f"inner must be an actuator with apply(), got {inner!r}")
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.kind = f"retry({getattr(inner, 'kind', type(inner).__name__)})"
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def apply(self, action: ScalingAction) -> ActionResult:
        p = self.policy
        start_s = self._clock()
        attempts: list[str] = []  # one line per failed attempt, for the reason
        failed: list[ActionResult] = []  # the FAILED results (read back by the inner actuator)
        why = [f"max_attempts={p.max_attempts}"]

        def record(rs: RetryCallState) -> None:  # after each attempt that failed
            outcome = rs.outcome
            assert outcome is not None
            if outcome.failed:
                exc = outcome.exception()
                attempts.append(f"#{rs.attempt_number} {type(exc).__name__}: {exc}")
            else:
                failed.append(outcome.result())
                attempts.append(f"#{rs.attempt_number} FAILED: {failed[-1].reason}")

        def delay_s(rs: RetryCallState) -> float:
            if rs.attempt_number >= p.max_attempts:
                return 0.0  # no sleep follows the last attempt: no draw
            return backoff_delay_s(p, rs.attempt_number, self._rng.random())

        def out_of_time(rs: RetryCallState) -> bool:
            next_start_s = self._clock() - start_s + rs.upcoming_sleep
            if next_start_s <= p.max_total_s:
                return False
            why[0] = (f"max_total_s={p.max_total_s:g}: the next attempt would start at "
                      f"{next_start_s:.2f} s")
            return True

        def warn(rs: RetryCallState) -> None:
            log.warning("action %s: attempt %d failed (%s); retrying in %.2f s",
                        action.action_id, rs.attempt_number, attempts[-1], rs.upcoming_sleep)

        def give_up(rs: RetryCallState) -> ActionResult:
            elapsed_s = self._clock() - start_s
            last_error = attempts[-1].split(" ", 1)[1]
            reason = (f"gave up after {len(attempts)} attempts in {elapsed_s:.2f} s "
                      f"({why[0]}): {'; '.join(attempts)}; last error: {last_error}")
            log.error("action %s (%s %s → %s) %s", action.action_id, action.container,
                      action.tier.value, action.new_limit, reason)
            if failed:
                return make_result(action, ResultStatus.FAILED, failed[-1].old_limit,
                                   failed[-1].new_limit, reason)
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan, reason)

        result = Retrying(
            retry=retry_if_exception(_transient) | retry_if_result(_failed),
            stop=stop_after_attempt(p.max_attempts) | out_of_time,
            wait=delay_s, sleep=self._sleep, after=record, before_sleep=warn,
            retry_error_callback=give_up,
        )(self.inner.apply, action)
        if attempts and result.status is not ResultStatus.FAILED:
            log.info("action %s: %s after %d attempts (%s)", action.action_id,
                     result.status.value, len(attempts) + 1, "; ".join(attempts))
        return result


def _transient(exc: BaseException) -> bool:
    """An exception worth another attempt: anything but bad input (and but a
    ``KeyboardInterrupt``/``SystemExit``, which are no ``Exception``)."""
    return isinstance(exc, Exception) and not isinstance(exc, ValueError | TypeError)


def _failed(result: ActionResult) -> bool:
    return result.status is ResultStatus.FAILED


__all__ = ["RetryPolicy", "RetryingActuator", "backoff_delay_s"]
