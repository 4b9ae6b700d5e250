"""The ports of the tick: what :func:`app.loop.tick.Tick.run_once` needs from the world.

Each is a small protocol; the live loop implements them over Ray actors and files
(:mod:`actors.coordinator`), the evaluator over its simulated world
(:mod:`app.evaluation.world`). A contract test (``tests/unit/test_loop_contract.py``)
runs every implementation through the same checks.

- :class:`Telemetry` — collect one shard per node that answers, and say which nodes did
  not (and why) and which are gone for good.
- :class:`Allocator` — the pool: observe the limits in force, arbitrate the tick's asks
  (reclaiming from idle containers first), confirm what was really set, drop nodes.
- :class:`Actuation` — route each action to its actuator and apply it; every actuator
  is idempotent by action id, and reports what it really set (FAILED, never an
  exception, when a target is gone).
- :class:`Journal` — the decision log (durable before acting), the tick's intent (the
  actions about to be applied, so that a restart re-sends them with the same ids) and
  the status snapshot.
- :class:`Checkpoint` — what must survive a restart, as one JSON-able dict.
- :class:`Thresholds` — the adaptive thresholds: read, and learn from judgements.

State that cannot be read (a corrupt checkpoint, intent or thresholds file) is never a
reason to stop protecting: the tick asks the port to ``discard`` it (set it aside,
start afresh) and logs the port's line as a ``state_quarantined`` event. An allocator
may have such lines of its own (``take_notices()``, optional: its checkpoint is read
where it lives).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prescale.app.core.actions import ActionResult, ScalingAction
from prescale.app.core.contention import ArbitrationResult, ReclaimCandidate
from prescale.app.core.tenants import Tenancy
from prescale.app.core.thresholds import Adjustment, ThresholdBook
from prescale.app.loop.shard import Shard


class Telemetry(Protocol):
    def collect(self) -> tuple[list[Shard], dict[str, str]]:
        """The shards of the nodes that answered, and ``{node: why}`` for those that did
        not (slow, failed) this tick."""

    def live_nodes(self) -> set[str]:
        """The nodes whose monitors exist (a node not here left the cluster)."""


class Allocator(Protocol):
    def prepare(self) -> None:
        """Called first in every tick: wait for the allocator if it is restarting."""

    def observe(self, limits: Mapping[str, Mapping[str, float]], now_s: float,
                nodes: Mapping[str, Mapping[str, float]], node_of: Mapping[str, str],
                replicas: Mapping[str, int]) -> None: ...

    def arbitrate(self, asks: Sequence[ScalingAction], idle: Sequence[ReclaimCandidate],
                  now_s: float, commit: bool, tenancy: Tenancy | None = None
                  ) -> ArbitrationResult:
        """:func:`app.core.contention.arbitrate` over the allocator's pool; ``tenancy``:
        what the containers' workload policies say (tenant, risk weight)."""

    def confirm(self, applied: Sequence[tuple[str, str, float]]) -> None:
        """``(container, tier, limit really set)`` of the tick's applied actions."""

    def drop_nodes(self, nodes: Sequence[str]) -> None: ...


class Actuation(Protocol):
    def routes(self, actions: Sequence[ScalingAction],
               node_of: Mapping[str, str]) -> dict[str, str]:
        """``{action_id: target}`` ("" = no route: the action will fail)."""

    def apply(self, actions: Sequence[ScalingAction], routes: Mapping[str, str],
              local: Mapping[str, str]) -> dict[str, ActionResult]:
        """Apply each action at its target (``local``: qualified name → the name the
        target knows the container by); a result for every action, by id."""


class Journal(Protocol):
    #: False for a world that never restarts (the evaluator's): no intent, no status
    durable: bool

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Durable when it returns (the decision log)."""

    def write_intent(self, intent: Mapping[str, Any]) -> None: ...

    def read_intent(self) -> Mapping[str, Any] | None: ...

    def clear_intent(self) -> None: ...

    def discard_intent(self, why: str) -> str:
        """The intent cannot be read or used (``why``): set it aside, start without
        it; returns the line to log (what, where it went, what now)."""

    def write_status(self, status: Mapping[str, Any]) -> None: ...


class Checkpoint(Protocol):
    #: False: nothing to save (the evaluator's world never restarts)
    enabled: bool

    def load(self) -> Mapping[str, Any] | None: ...

    def save(self, state: Mapping[str, Any]) -> None: ...

    def discard(self, why: str) -> str:
        """The checkpoint cannot be read or used: set it aside (the loop starts afresh);
        returns the line to log."""


class Thresholds(Protocol):
    def book(self) -> ThresholdBook: ...

    def learn(self, judgements: Iterable[Any]) -> list[Adjustment]: ...

    def discard(self, why: str) -> str:
        """The stored thresholds cannot be read: set them aside and go on with the last
        good book (or the configured defaults); returns the line to log."""


__all__ = ["Actuation", "Allocator", "Checkpoint", "Journal", "Telemetry", "Thresholds"]
