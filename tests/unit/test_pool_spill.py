"""Replicas spilled to another node (app/core/pool.py, "Spill"): the module's worked
example, step by step, and a checkpoint round trip that keeps where the replicas are."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.app.core.actions import ActionKind, ScalingAction, Verdict
from prescale.app.core.pool import ZERO, Capacity, Pool
from prescale.app.core.sample import Tier

GiB = 2**30


def _ask(c, old, new, *, kind=ActionKind.SCALE_OUT, tier=Tier.MEMORY, i=0):
    return ScalingAction(f"{c}/{kind.value}@{i}", float(i), c, tier, old, new, 0.9, 0.5, 10.0,
                         0.0, "", kind=kind)


def _pool():
    p = Pool({"a": Capacity(4 * GiB, 4.0), "b": Capacity(4 * GiB, 4.0)}, reserve=ZERO)
    p.observe("web", Tier.MEMORY, 1 * GiB, node="a", replicas=3)
    p.observe("db", Tier.MEMORY, 1 * GiB, node="b")
    return p


def test_the_worked_example_spills_resizes_everywhere_and_scales_in_the_spill_first():
    p = _pool()
    assert p.free(Tier.MEMORY, "a") == 1 * GiB and p.free(Tier.MEMORY, "b") == 3 * GiB
    [v] = p.request([_ask("web", 3, 5)])
    assert v.verdict is Verdict.GRANTED
    assert v.reason == ("pool: granted 2048.0 MiB, 1024.0 MiB left on node b "
                        "(spilled: node a has 1024.0 MiB free)")
    assert p.spilled == {"web": {"b": 2}} and p.replicas["web"] == 5
    assert p.node_of("web") == "a" and p.shares("web") == [("a", 3), ("b", 2)]
    assert p.free(Tier.MEMORY, "a") == 1 * GiB and p.free(Tier.MEMORY, "b") == 1 * GiB
    # a resize needs room wherever a replica is: +1.5 GiB on a, +1 GiB on b
    [v] = p.request([_ask("web", 1 * GiB, 1.5 * GiB, kind=ActionKind.RESIZE, i=1)])
    assert v.verdict is Verdict.DENIED and "on node a" in v.reason
    [v] = p.request([_ask("web", 1 * GiB, 1.25 * GiB, kind=ActionKind.RESIZE, i=2)])
    assert v.verdict is Verdict.GRANTED  # +0.75 GiB on a, +0.5 GiB on b
    assert p.free(Tier.MEMORY, "b") == 0.5 * GiB and p.check_invariant() == []
    # scale-in: the spilled replicas go first, the node's own keep the container
    [v] = p.request([_ask("web", 5, 4, i=3)])
    assert v.verdict is Verdict.GRANTED and p.spilled == {"web": {"b": 1}}
    p.observe("web", Tier.MEMORY, 1.25 * GiB, node="a", replicas=3)  # seen: 3 in all
    assert p.spilled == {} and p.shares("web") == [("a", 3)]
    assert p.free(Tier.MEMORY, "b") == 3 * GiB


def test_no_room_anywhere_is_denied_and_says_so():
    p = _pool()
    [v] = p.request([_ask("web", 3, 7)])  # +4 GiB: a has 1, b has 3
    assert v.verdict is Verdict.DENIED
    assert v.reason.endswith("no other node has room for the new replicas either")
    assert p.spilled == {} and p.replicas["web"] == 3


def test_spilled_replicas_survive_a_checkpoint_and_go_with_their_node():
    p = _pool()
    p.request([_ask("web", 3, 5)])
    q = Pool.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q.spilled == {"web": {"b": 2}} and q.free(Tier.MEMORY, "b") == 1 * GiB
    assert q.drop_node("b") == ["db"]  # db lived on b; web loses the replicas it had there
    assert q.spilled == {} and q.replicas["web"] == 3 and q.check_invariant() == []


_step = st.one_of(
    st.tuples(st.just("scale"), st.sampled_from(["web", "db"]), st.integers(1, 9)),
    st.tuples(st.just("resize"), st.sampled_from(["web", "db"]), st.floats(0.1, 2.0)),
    st.tuples(st.just("seen"), st.sampled_from(["web", "db"]), st.integers(1, 9)))


@settings(max_examples=200, deadline=None)
@given(st.floats(0.1, 1.5), st.integers(1, 4), st.lists(_step, max_size=25))
def test_property_spills_never_overcommit_and_the_totals_follow_the_replicas(g, r, steps):
    """Scale-outs, scale-ins, resizes and observed replica counts on two nodes: no node
    is ever granted beyond its capacity, the kept totals equal grant × the replicas on
    each node, and a container's own node always keeps at least one replica."""
    p = Pool({"a": Capacity(4 * GiB, 4.0), "b": Capacity(4 * GiB, 4.0)}, reserve=ZERO)
    p.observe("web", Tier.MEMORY, g * GiB, node="a", replicas=min(r, int(4 / g)) or 1)
    p.observe("db", Tier.MEMORY, 0.5 * GiB, node="b")
    spilled = False
    for i, (kind, c, x) in enumerate(steps):
        if kind == "scale":
            p.request([_ask(c, p.replicas.get(c, 1), x, i=i)])
        elif kind == "resize":
            p.request([_ask(c, p.grants[Tier.MEMORY][c], x * GiB, kind=ActionKind.RESIZE, i=i)])
        elif x <= p.replicas.get(c, 1):  # fewer seen (more may exceed capacity: allowed)
            p.observe(c, Tier.MEMORY, p.grants[Tier.MEMORY][c], replicas=x)
        spilled |= bool(p.spilled)
        assert p.check_invariant() == []
        for node in ("a", "b"):
            fresh = sum(p.grants[Tier.MEMORY][c] * k for c in ("web", "db")
                        for n, k in p.shares(c) if n == node)
            assert p.granted(Tier.MEMORY, node) == pytest.approx(fresh, rel=1e-12)
        for c in ("web", "db"):
            (home, here), *away = p.shares(c)
            assert home == {"web": "a", "db": "b"}[c] and here >= 1
            assert all(k > 0 and n != home for n, k in away)
