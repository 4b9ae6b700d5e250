"""The contract every telemetry and actuation port of the tick keeps (app/loop/ports.py),
checked the same way for each implementation: the simulated world's (unit tests), the
live loop's over Ray (integration tests)."""

from __future__ import annotations

import math

from prescale.app.core.actions import ResultStatus, ScalingAction
from prescale.app.core.sample import METRICS
from prescale.app.loop.shard import Shard


def check_telemetry(t, window_steps: int) -> list[Shard]:
    """collect() gives typed shards of the right shape, the nodes that did not answer
    with a reason, and only nodes it calls live."""
    shards, unknown = t.collect()
    assert isinstance(unknown, dict) and all(isinstance(v, str) and v for v in unknown.values())
    for sh in shards:
        assert isinstance(sh, Shard)
        n = len(sh.names)
        assert sh.window.shape == (n, window_steps, len(METRICS)), sh.window.shape
        assert len(set(sh.names)) == n and len(sh.apps) == n
        assert math.isfinite(sh.now_s)
        assert set(sh.replicas) <= set(sh.names)
    assert {sh.node for sh in shards} <= t.live_nodes()
    return shards


def check_actuation(a, actions: list[ScalingAction], node_of: dict[str, str],
                    ghost: ScalingAction) -> None:
    """Every action gets a route and a result; applying again by the same ids changes
    nothing and returns the same results; an action with no route fails, loudly (a
    FAILED result, never an exception)."""
    routes = a.routes(actions, node_of)
    assert set(routes) == {x.action_id for x in actions}
    first = a.apply(actions, routes, {})
    assert set(first) == {x.action_id for x in actions}
    for x in actions:
        r = first[x.action_id]
        assert r.action_id == x.action_id and r.container == x.container
        assert r.status in (ResultStatus.APPLIED, ResultStatus.FAILED), r
    again = a.apply(actions, routes, {})
    for x in actions:
        r1, r2 = first[x.action_id], again[x.action_id]
        assert (r2.status, r2.new_limit) == (r1.status, r1.new_limit), (r1, r2)
    bad = a.apply([ghost], {ghost.action_id: ""}, {})
    assert bad[ghost.action_id].status is ResultStatus.FAILED
