import json
import math

import pytest

from prescale.app.core.actions import ActionKind, ScalingAction, Verdict
from prescale.app.core.pool import Capacity, Pool
from prescale.app.core.sample import Tier
from prescale.app.store import jsonfile

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


# -- nodes, warm reserve, reservations, replicas ---------------------------------------
def test_warm_reserve_worked_example():
    p = Pool(Capacity(8 * GiB, 4), Capacity(2 * GiB, 1), warm=Capacity(1 * GiB, 0))
    p.observe("a", Tier.MEMORY, 4 * GiB)
    p.observe("b", Tier.MEMORY, 0.5 * GiB)
    assert p.free(Tier.MEMORY) == 1.5 * GiB
    assert p.free(Tier.MEMORY, preemptive=False) == 0.5 * GiB
    reactive = ScalingAction("r", 0.0, "b", Tier.MEMORY, 0.5 * GiB, 1.5 * GiB, 0.99, 0.5, 10.0,
                             0.0, "", preemptive=False)
    [v] = p.request([reactive])
    assert v.verdict is Verdict.DENIED
    assert "needs 1024.0 MiB, 512.0 MiB free" in v.reason
    assert "1024.0 MiB warm reserve held for pre-emptive asks" in v.reason
    [v] = p.request([ask("b", 0.5 * GiB, 1.5 * GiB, p=0.6)])
    assert v.verdict is Verdict.GRANTED
    assert v.reason == "pool: granted 1024.0 MiB, 512.0 MiB left"


def test_preemptive_served_before_a_riskier_reactive_ask():
    p = pool()  # 1 GiB free
    reactive = ScalingAction("r", 0.0, "a", Tier.MEMORY, 4 * GiB, 4.75 * GiB, 0.99, 0.5, 10.0,
                             0.0, "", preemptive=False)
    pre = ask("b", GiB, 1.75 * GiB, p=0.6, aid="p")
    v_r, v_p = p.request([reactive, pre])
    assert (v_r.verdict, v_p.verdict) == (Verdict.DENIED, Verdict.GRANTED)


def test_decreases_are_served_first_and_free_room_for_others():
    p = pool()  # 1 GiB free
    up = ask("b", GiB, 2.5 * GiB, p=0.99, aid="up")
    down = ask("a", 4 * GiB, 3 * GiB, p=0.0, aid="down")
    v_up, v_down = p.request([up, down])
    assert (v_up.verdict, v_down.verdict) == (Verdict.GRANTED, Verdict.GRANTED)
    assert v_down.reason == "pool: released 1024.0 MiB"
    assert p.free(Tier.MEMORY) == 0.5 * GiB


def test_reservation_worked_example_and_expiry():
    p = Pool(Capacity(8 * GiB, 4), Capacity(2 * GiB, 1))
    p.observe("a", Tier.MEMORY, 4 * GiB)
    p.observe("b", Tier.MEMORY, 1 * GiB)
    v = p.reserve("c", Tier.MEMORY, 0.75 * GiB, until_s=130.0)
    assert v.verdict is Verdict.GRANTED
    assert v.reason == "pool: reserved 768.0 MiB until 130, 256.0 MiB left"
    assert p.free(Tier.MEMORY) == 0.25 * GiB
    [v] = p.request([ask("b", GiB, 1.5 * GiB)])
    assert v.verdict is Verdict.DENIED and "256.0 MiB free" in v.reason
    q = Pool.from_dict(p.to_dict())
    [v] = p.request([ask("c", 0.0, 0.5 * GiB)])
    assert v.verdict is Verdict.GRANTED
    assert p.reservations == {} and p.free(Tier.MEMORY) == 0.5 * GiB
    assert q.expire(129.9) == [] and q.free(Tier.MEMORY) == 0.25 * GiB
    [gone] = q.expire(130.0)
    assert (gone.container, gone.amount) == ("c", 0.75 * GiB)
    assert q.free(Tier.MEMORY) == 1 * GiB


def test_reservation_that_does_not_fit_changes_nothing_and_bad_input_raises():
    p = pool()
    before = p.to_dict()
    v = p.reserve("c", Tier.MEMORY, 2 * GiB, until_s=10.0)
    assert v.verdict is Verdict.DENIED
    assert v.reason == "pool: reservation needs 2048.0 MiB, 1024.0 MiB free"
    with pytest.raises(ValueError, match="amount must be a finite number > 0, got nan"):
        p.reserve("c", Tier.MEMORY, math.nan, until_s=10.0)
    with pytest.raises(ValueError, match="until_s must be a finite time"):
        p.reserve("c", Tier.MEMORY, 1.0, until_s=math.inf)
    assert p.to_dict() == before


def test_nodes_are_separate_and_a_new_container_goes_where_there_is_room():
    p = Pool({"n1": Capacity(4 * GiB, 2), "n2": Capacity(4 * GiB, 2)}, Capacity(GiB, 0))
    p.observe("a", Tier.MEMORY, 2.5 * GiB, node="n1")
    p.observe("b", Tier.MEMORY, 1 * GiB, node="n2")
    assert (p.free(Tier.MEMORY, "n1"), p.free(Tier.MEMORY, "n2")) == (0.5 * GiB, 2 * GiB)
    [v] = p.request([ask("a", 2.5 * GiB, 3.5 * GiB)])  # 3 GiB free in total, not on n1
    assert v.verdict is Verdict.DENIED
    assert v.reason == ("pool: needs 1024.0 MiB, 512.0 MiB free of 3072.0 MiB grantable "
                        "on node n1")
    [v] = p.request([ask("c", 0, 1.5 * GiB)])
    assert v.verdict is Verdict.GRANTED and p.placement["c"] == "n2"
    assert v.reason == "pool: granted 1536.0 MiB, 512.0 MiB left on node n2"
    with pytest.raises(ValueError, match="container 'd' is not placed; name its node"):
        p.observe("d", Tier.MEMORY, GiB)
    with pytest.raises(ValueError, match="unknown node 'n3'"):
        p.observe("d", Tier.MEMORY, GiB, node="n3")
    with pytest.raises(ValueError, match="reserve must name the same nodes"):
        Pool({"n1": Capacity(1, 1)}, {"n2": Capacity(0, 0)})


def test_scale_out_needs_every_tier_per_replica():
    p = Pool(Capacity(8 * GiB, 4), Capacity(0, 0))
    p.observe("svc", Tier.MEMORY, 1 * GiB, replicas=2)
    p.observe("svc", Tier.CPU, 1.0)
    assert p.granted(Tier.MEMORY) == 2 * GiB and p.granted(Tier.CPU) == 2.0
    out = ScalingAction("s", 0.0, "svc", Tier.CPU, 2, 4, 0.9, 0.5, 10.0, 0.0, "",
                        kind=ActionKind.SCALE_OUT)
    [v] = p.request([out])
    assert v.verdict is Verdict.GRANTED
    assert v.reason == "pool: granted 2048.0 MiB, 4096.0 MiB left; 2.00 cores, 0.00 cores left"
    assert p.granted(Tier.MEMORY) == 4 * GiB and p.granted(Tier.CPU) == 4.0
    more = ScalingAction("s2", 0.0, "svc", Tier.CPU, 4, 5, 0.9, 0.5, 10.0, 0.0, "",
                         kind=ActionKind.SCALE_OUT)
    [v] = p.request([more])
    assert v.verdict is Verdict.DENIED and "needs 1.00 cores, 0.00 cores free" in v.reason
    # a resize of a replicated container counts every replica
    [v] = p.request([ask("svc", GiB, 1.5 * GiB)])
    assert v.verdict is Verdict.GRANTED and p.granted(Tier.MEMORY) == 6 * GiB


def test_round_trip_of_everything_and_the_spine_format():
    p = Pool({"n1": Capacity(4 * GiB, 2), "n2": Capacity(8 * GiB, 4)},
             {"n1": Capacity(GiB, 0.5), "n2": Capacity(2 * GiB, 1)}, warm=Capacity(GiB, 0))
    p.observe("a", Tier.MEMORY, 2 * GiB, node="n1", replicas=3)
    p.observe("u", Tier.CPU, math.inf, node="n2")
    p.reserve("b", Tier.CPU, 0.5, until_s=99.0, node="n2", preemptive=True)
    d = p.to_dict()
    assert Pool.from_dict(json.loads(jsonfile.dumps(d))).to_dict() == d
    spine = {"capacity": {"memory_bytes": 8 * GiB, "cpu_cores": 4},
             "reserve": {"memory_bytes": 2 * GiB, "cpu_cores": 1},
             "grants": {"memory": {"a": 4 * GiB, "u": None}, "cpu": {}}}
    q = Pool.from_dict(spine)
    assert q.free(Tier.MEMORY) == 2 * GiB and q.grants[Tier.MEMORY]["u"] == math.inf
    with pytest.raises(ValueError, match="malformed checkpoint"):
        Pool.from_dict({"capacity": {"memory_bytes": 1}})
