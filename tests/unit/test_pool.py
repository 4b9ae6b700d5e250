import math

import pytest

from app.core.actions import ScalingAction, Verdict
from app.core.pool import Capacity, Pool
from app.core.sample import Tier

GiB = 2**30


def ask(name, old, new, p=0.9, tier=Tier.MEMORY, aid=None):
    return ScalingAction(aid or f"{name}/{tier.value}@{new}", 0.0, name, tier, old, new, p, 0.5,
                         10.0, new, "")


def pool():
    p = Pool(Capacity(8 * GiB, 4), Capacity(2 * GiB, 1))
    p.observe("a", Tier.MEMORY, 4 * GiB)
    p.observe("b", Tier.MEMORY, 1 * GiB)
    p.observe("u", Tier.MEMORY, math.inf)  # unlimited: not a grant
    return p


def test_worked_example():
    p = pool()
    assert p.free(Tier.MEMORY) == 1 * GiB
    [v] = p.request([ask("b", GiB, 2.5 * GiB)])
    assert v.verdict is Verdict.DENIED
    assert "needs 1536.0 MiB, 1024.0 MiB free" in v.reason
    [v] = p.request([ask("b", GiB, 1.5 * GiB)])
    assert v.verdict is Verdict.GRANTED
    assert p.free(Tier.MEMORY) == 0.5 * GiB


def test_highest_risk_first_and_never_overcommit():
    p = pool()
    low = ask("a", 4 * GiB, 4.75 * GiB, p=0.6, aid="low")
    high = ask("b", GiB, 1.75 * GiB, p=0.99, aid="high")
    v_low, v_high = p.request([low, high])
    assert v_high.verdict is Verdict.GRANTED
    assert v_low.verdict is Verdict.DENIED
    assert p.granted(Tier.MEMORY) <= p.grantable(Tier.MEMORY)


def test_no_commit_leaves_pool_unchanged_and_round_trip():
    p = pool()
    before = p.to_dict()
    [v] = p.request([ask("b", GiB, 1.5 * GiB)], commit=False)
    assert v.verdict is Verdict.GRANTED
    assert p.to_dict() == before
    q = Pool.from_dict(before)
    assert q.grants[Tier.MEMORY]["u"] == math.inf
    assert q.free(Tier.MEMORY) == p.free(Tier.MEMORY)


def test_bad_capacity_and_bad_ask():
    with pytest.raises(ValueError):
        Pool(Capacity(0, 1), Capacity(0, 0))
    [v] = pool().request([ask("b", GiB, math.nan)])
    assert v.verdict is Verdict.DENIED


def test_float_rounding_does_not_deny_an_exact_fit():
    p = Pool(Capacity(1, 2.0), Capacity(0, 0.5))
    for name, cores in (("a", 0.25), ("b", 0.25), ("c", 0.91)):
        p.observe(name, Tier.CPU, cores)
    [v] = p.request([ask("c", 0.91, 1.0, tier=Tier.CPU)])
    assert v.verdict is Verdict.GRANTED
