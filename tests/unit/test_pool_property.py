"""Property tests of the pool: never overcommit, and a checkpoint round trip keeps it all.

Random sequences of asks (resize and scale-out, pre-emptive or not, up and down),
releases, reservations and expiries on a two-node pool with a system reserve and a
warm reserve. After every step the allocations are summed here, from the pool's raw
dicts (not with the pool's own accounting), and compared with capacity − reserve.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prescale.app.core.actions import ActionKind, ScalingAction, Verdict
from prescale.app.core.pool import Capacity, Pool
from prescale.app.core.sample import Tier
from prescale.app.store import jsonfile

GiB = 2**30
NODES = {"n1": Capacity(8 * GiB, 4.0), "n2": Capacity(4 * GiB, 2.0)}
RESERVE = {"n1": Capacity(1 * GiB, 0.5), "n2": Capacity(0.5 * GiB, 0.25)}
WARM = Capacity(1 * GiB, 0.5)
CONTAINERS = ["a", "b", "c", "d", "e"]

container = st.sampled_from(CONTAINERS)
tier = st.sampled_from(list(Tier))
fraction = st.floats(0.01, 1.2, allow_nan=False)  # of a node's capacity: may not fit

resize = st.tuples(st.just("ask"), container, tier, fraction, st.booleans(),
                   st.floats(0, 1, allow_nan=False))
scale_out = st.tuples(st.just("scale_out"), container, st.sampled_from([Tier.MEMORY, Tier.CPU]),
                      st.integers(0, 6), st.booleans())
release = st.tuples(st.just("release"), container, tier)
forget = st.tuples(st.just("forget"), container)
reserve = st.tuples(st.just("reserve"), container, tier, fraction, st.integers(0, 100),
                    st.booleans(), st.sampled_from([None, "n1", "n2"]))
expire = st.tuples(st.just("expire"), st.integers(0, 100))
ops = st.lists(st.one_of(resize, resize, scale_out, scale_out, release, forget, reserve, expire),
               max_size=40)


def scale(t: Tier) -> float:
    return 4 * GiB if t is Tier.MEMORY else 2.0


def replicas_on(p: Pool, c: str, node: str) -> int:
    """From the raw dicts: the replicas of ``c`` on ``node`` (its own node holds those
    not spilled elsewhere; at least one)."""
    away = p.spilled.get(c, {})
    assert all(k > 0 for k in away.values()) and sum(away.values()) < p.replicas.get(c, 1) + (
        0 if away else 1)
    if p.node_of(c) == node:
        return p.replicas.get(c, 1) - sum(away.values())
    return away.get(node, 0)


def pool_used(p: Pool, node: str, t: Tier) -> float:
    """Grants × replicas of the containers on ``node`` + live reservations there."""
    used = 0.0
    for c, limit in p.grants[t].items():
        if math.isfinite(limit) and (p.placement.get(c) is not None or c in p.spilled):
            used += limit * replicas_on(p, c, node)
    used += sum(r.amount for r in p.reservations.values() if r.node == node and r.tier is t)
    return used


def assert_totals_match_the_raw_dicts(p: Pool) -> None:
    """The pool's incrementally kept granted totals equal a fresh sum (to float noise)."""
    for t in Tier:
        for node in p.nodes:
            fresh = sum(limit * replicas_on(p, c, node) for c, limit in p.grants[t].items()
                        if math.isfinite(limit))
            assert p.granted(t, node) == pytest.approx(fresh, rel=1e-12, abs=1e-6)
        everything = sum(limit * p.replicas.get(c, 1) for c, limit in p.grants[t].items()
                         if math.isfinite(limit))
        assert p.granted(t) == pytest.approx(everything, rel=1e-12, abs=1e-6)


def assert_no_overcommit(p: Pool) -> None:
    assert_totals_match_the_raw_dicts(p)
    for node, cap in NODES.items():
        for t in Tier:
            limit = cap.of(t) - RESERVE[node].of(t)
            assert pool_used(p, node, t) <= limit * (1 + 1e-9), (node, t)
    assert p.check_invariant() == []


def apply(p: Pool, op: tuple, i: int) -> None:
    kind = op[0]
    if kind == "ask":
        _, c, t, frac, pre, pf = op
        old = p.grants[t].get(c, 0.0)
        a = ScalingAction(f"{c}/{t.value}@{i}", float(i), c, t, old, frac * scale(t), pf, 0.5,
                          10.0, 0.0, "", preemptive=pre)
        [v] = p.request([a])
        assert v.verdict in (Verdict.GRANTED, Verdict.DENIED) and v.reason
    elif kind == "scale_out":
        _, c, t, n, pre = op
        a = ScalingAction(f"{c}/so@{i}", float(i), c, t, p.replicas.get(c, 1), n, 0.9, 0.5,
                          10.0, 0.0, "", kind=ActionKind.SCALE_OUT, preemptive=pre)
        p.request([a])
    elif kind == "release":
        p.release(op[1], op[2])
    elif kind == "forget":
        p.forget(op[1])
    elif kind == "reserve":
        _, c, t, frac, until, pre, node = op
        if node is not None and p.placement.get(c, node) != node:
            node = None
        p.reserve(c, t, frac * scale(t), float(until), node=node, preemptive=pre)
    elif kind == "expire":
        gone = p.expire(float(op[1]))
        assert all(r.until_s <= op[1] for r in gone)
        assert all(r.until_s > op[1] for r in p.reservations.values())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_never_overcommit_and_round_trip(sequence):
    p = Pool(NODES, RESERVE, WARM)
    for i, op in enumerate(sequence):
        apply(p, op, i)
        assert_no_overcommit(p)
    d = p.to_dict()
    q = Pool.from_dict(json.loads(jsonfile.dumps(d)))
    assert q.to_dict() == d
    for node in NODES:
        for t in Tier:
            assert q.free(t, node) == pytest.approx(p.free(t, node), rel=1e-12, abs=1e-9)
            assert q.free(t, node, preemptive=False) == pytest.approx(
                p.free(t, node, preemptive=False), rel=1e-12, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(ops, st.lists(st.tuples(container, tier, fraction, st.booleans()), min_size=1,
                     max_size=8))
def test_non_preemptive_asks_never_reach_into_the_warm_reserve(sequence, asks):
    """Whatever came before, a granted non-pre-emptive increase leaves at least the
    warm reserve free on its node."""
    p = Pool(NODES, RESERVE, WARM)
    for i, op in enumerate(sequence):
        apply(p, op, i)
    batch = [ScalingAction(f"{c}/{t.value}@x{i}", 0.0, c, t, p.grants[t].get(c, 0.0),
                           frac * scale(t), 0.5, 0.5, 10.0, 0.0, "", preemptive=pre)
             for i, (c, t, frac, pre) in enumerate(asks)]
    batch = [a for a in batch if a.new_limit > a.old_limit]
    for a in Pool.order(batch):
        before = p.copy()
        grows = p.fit(a).increase
        v = p.grant_one(a)
        if v.verdict is Verdict.GRANTED and grows and not a.preemptive:
            node = p.placement[a.container]
            t = a.tier
            room = NODES[node].of(t) - RESERVE[node].of(t) - pool_used(p, node, t)
            assert room >= WARM.of(t) - 1e-9 * scale(t), (v.reason, before.to_dict())
        assert_no_overcommit(p)


def test_property_helper_can_fail():
    """The independent sum sees an overcommit the pool did not make (an observed limit)."""
    p = Pool(NODES, RESERVE, WARM)
    p.observe("a", Tier.MEMORY, 7.5 * GiB, node="n1")
    assert pool_used(p, "n1", Tier.MEMORY) == 7.5 * GiB
    assert p.check_invariant() == ["n1/memory: 8053063680.0 > 7516192768"]


@settings(max_examples=200, deadline=None)
@given(ops, st.lists(st.tuples(container, tier, fraction, fraction, st.booleans(),
                               st.floats(0, 1, allow_nan=False)), min_size=1, max_size=8))
def test_arbitration_with_partial_grants_never_overcommits(sequence, asks):
    """Whatever came before, one tick's arbitration (partial grants on) leaves every node
    within capacity − reserve, and a partial grant lies in [forecast, asked) above the
    old limit."""
    from prescale.app.core.contention import arbitrate

    p = Pool(NODES, RESERVE, WARM)
    for i, op in enumerate(sequence):
        apply(p, op, i)
    batch = []
    for i, (c, t, frac, fc, pre, prob) in enumerate(asks):
        old = p.grants[t].get(c, 0.0)
        batch.append(ScalingAction(f"{c}/{t.value}@x{i}", 0.0, c, t, old, frac * scale(t),
                                   prob, 0.5, 10.0, fc * scale(t), "", preemptive=pre))
    batch = list({a.container: a for a in batch if a.new_limit > a.old_limit}.values())
    r = arbitrate(batch, p, idle=[], tenants={}, weights={}, now_s=1.0)
    assert_no_overcommit(p)
    for a, v in zip(batch, r.verdicts, strict=True):
        if v.granted_limit is not None:
            assert v.verdict is Verdict.GRANTED
            assert a.forecast <= v.granted_limit < a.new_limit and v.granted_limit > a.old_limit
            assert p.grants[a.tier][a.container] == v.granted_limit
