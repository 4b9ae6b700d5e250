"""Link actuator: raise or lower a container's receive bandwidth limit live (a TBF on
the host side of its veth, ``tc qdisc replace dev <dev> root tbf rate …``).

An I/O edge over :mod:`app.edges.netlimit`, configured with ``{container: host-side
interface}`` (the same mapping as :class:`~app.telemetry.links.LinkSource`). One
:class:`~app.core.actions.ScalingAction` of tier ``network`` and kind ``resize``, whose
``new_limit`` is the receive limit in **bytes per second**, rounded to a whole number
of bytes/s (the kernel keeps no fraction) and set as 8 × that many bits, with a burst
of ``max(⌈rate × 10 ms⌉, 16 KiB, one frame)`` (:func:`~app.edges.netlimit.burst_for`). Worked
example: ``new_limit`` 4_000_000.4 → 4_000_000 bytes/s → ``tc qdisc replace dev
veth-web root tbf rate 32000000bit burst 40000 latency 50ms``; the result's
``new_limit`` is the rate ``tc -j qdisc show`` reads back (4_000_000).

Before anything runs, the action and the link are checked, and nothing is changed
when a check fails:

* a tier other than ``network``, a kind other than ``resize``, or a bad value (not
  finite, ≤ 0, below :data:`~app.edges.netlimit.MIN_RATE_BYTES_PER_S`) raises
  :class:`~app.actuators.base.InvalidActionError`;
* a container with no configured link is ``DENIED``: prescale acts only on the links
  it was told about;
* an interface that does not exist (the container is gone, or not yet started), or a
  root qdisc that is another tool's traffic control (htb, netem…) is ``FAILED`` with
  the reason (a container may start again, so a retry may succeed).

Setting the rate already in force runs no change (``APPLIED``, old == new; the rate
was read with one ``tc -j qdisc show``). A ``tc`` that fails is ``FAILED`` with what it
said and the rate read back afterwards. Idempotent by ``action_id``
(:class:`~app.actuators.base.IdempotentActuator`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from prescale.app.actuators.base import (
    IdempotentActuator,
    InvalidActionError,
    check_tier_resize,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.netlimit import (
    DEFAULT_TIMEOUT_S,
    MIN_RATE_BYTES_PER_S,
    NetLimitError,
    check_links,
    interface_exists,
    kept_rate_bytes_per_s,
    read_rate_limit,
    set_rate_limit,
)


def check_link_action(action: ScalingAction) -> None:
    """What a link can never do, refused before anything runs
    (:class:`InvalidActionError`): a tier other than network, a kind other than resize,
    a rate below :data:`~app.edges.netlimit.MIN_RATE_BYTES_PER_S`. Example: a memory
    resize → "a link actuator resizes only the network tier, not memory"."""
    check_tier_resize(action, Tier.NETWORK, "a link actuator", "a link")
    value = action.new_limit
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and 0 < value < MIN_RATE_BYTES_PER_S):
        raise InvalidActionError(
            f"action {action.action_id}: new_limit of a link is a rate in bytes/s of at "
            f"least {MIN_RATE_BYTES_PER_S}, got {value!r}")


class LinkActuator(IdempotentActuator):
    """Sets the configured containers' receive bandwidth limits.

    Example::

        actuator = LinkActuator({"web": "veth-web"})
        actuator.apply(ScalingAction("web/network@1", 1.0, "web", Tier.NETWORK, 1e6,
                                     4e6, 0.9, 0.5, 30.0, 3.9e6, "link saturating"))
        # → APPLIED, old 1_000_000, new 4_000_000 bytes/s (read back with tc)
    """

    kind = "link"

    def __init__(self, links: Mapping[str, str], timeout_s: float = DEFAULT_TIMEOUT_S
                 ) -> None:
        super().__init__()
        #: container name → host-side interface of its veth pair
        self.links: dict[str, str] = check_links(links)
        self.timeout_s = float(timeout_s)
        #: how many times tc was started for a read or a change: one per read of the
        #: rate in force (``tc -j qdisc show``) and one per change (``tc qdisc
        #: replace``, with the reads :func:`~app.edges.netlimit.set_rate_limit` makes
        #: around it); 0 more after an action refused, denied or remembered
        self.tc_runs = 0
        #: how many changes were tried (:func:`~app.edges.netlimit.set_rate_limit` called)
        self.changes = 0

    def apply(self, action: ScalingAction) -> ActionResult:
        if isinstance(action, ScalingAction):
            check_link_action(action)
        return super().apply(action)

    def _apply(self, action: ScalingAction) -> ActionResult:
        name = action.container
        dev = self.links.get(name)
        if dev is None:
            return make_result(action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                               f"no link is configured for container {name!r}: prescale "
                               "does not act on it")
        if not interface_exists(dev):
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"link of {name!r} ({dev}): no such network interface")
        try:
            self.tc_runs += 1
            old_rate = read_rate_limit(dev, timeout_s=self.timeout_s)
        except (NetLimitError, ValueError) as exc:  # ValueError: the interface just went
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan,
                               f"link of {name!r} ({dev}): {exc}")
        target = kept_rate_bytes_per_s(action.new_limit)
        if target == old_rate:
            return make_result(action, ResultStatus.APPLIED, old_rate, old_rate,
                               f"already the receive limit of {dev}: nothing run")
        self.tc_runs += 1
        self.changes += 1
        try:
            new_rate = set_rate_limit(dev, target, timeout_s=self.timeout_s)
        except (NetLimitError, ValueError) as exc:  # ValueError: it changed since the checks
            return make_result(action, ResultStatus.FAILED, old_rate, self._read_back(dev),
                               f"link of {name!r} ({dev}): {exc}")
        return make_result(action, ResultStatus.APPLIED, old_rate, new_rate,
                           f"TBF on {dev} set to {fmt_limit(target)} bytes/s "
                           f"(rate {8 * target}bit) and read back")

    def _read_back(self, dev: str) -> float:
        self.tc_runs += 1
        try:
            return read_rate_limit(dev, timeout_s=self.timeout_s)
        except (NetLimitError, ValueError):
            return math.nan


__all__ = ["LinkActuator", "check_link_action"]
