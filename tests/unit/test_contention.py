"""Arbitration under contention: reclaim first, then risk and DRF; every verdict explained."""

from __future__ import annotations

import math
import re

import pytest

from prescale.app.core.actions import ScalingAction, Verdict
from prescale.app.core.contention import ArbitrationResult, ReclaimCandidate, arbitrate
from prescale.app.core.pool import Capacity, Pool
from prescale.app.core.sample import Tier

GiB = 2**30
MiB = 2**20


def ask(c, old, new, p, *, app="", tier=Tier.MEMORY, pre=True):
    return ScalingAction(f"{c}/{tier.value}@100000", 100.0, c, tier, old, new, p, 0.5, 30.0,
                         new, "", app=app, preemptive=pre)


def worked_example_pool():
    p = Pool(Capacity(8 * GiB, 4), Capacity(2 * GiB, 0.5))
    for c, limit in [("i", 2 * GiB), ("x", 1 * GiB), ("y", 1 * GiB), ("z", 1 * GiB),
                     ("o", 0.5 * GiB)]:
        p.observe(c, Tier.MEMORY, limit)
    return p


def test_module_docstring_worked_example():
    p = worked_example_pool()
    asks = [ask("x", GiB, 2 * GiB, 0.95), ask("y", GiB, 1.5 * GiB, 0.58),
            ask("z", GiB, 2 * GiB, 0.55)]
    r = arbitrate(asks, p, idle=[ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, 1.25 * GiB)],
                  tenants={"x": "T1", "o": "T1", "y": "T2", "z": "T3", "i": "T4"}, weights={},
                  now_s=100.0)
    [rec] = r.reclaims
    assert (rec.container, rec.old_limit, rec.new_limit) == ("i", 2 * GiB, 1.25 * GiB)
    assert not rec.preemptive and rec.action_id == "i/memory@100000/reclaim"
    assert [v.verdict for v in r.verdicts] == [Verdict.GRANTED, Verdict.DEFERRED, Verdict.DENIED]
    assert r.order == ["x/memory@100000", "y/memory@100000", "z/memory@100000"]
    x, y, z = (v.reason for v in r.verdicts)
    assert x == ("granted #1: 1024.0 MiB, 256.0 MiB left; pre-emptive, risk 0.95 (p_fail 0.95 "
                 "× weight 1, band 9), tenant T1 share 0.250; uses reclaimed idle capacity "
                 "(apply the reclaims first)")
    assert y.startswith("deferred #2: needs 512.0 MiB memory on node local, 256.0 MiB free "
                        "after 1 earlier decisions; may fit later: need ≤ 2 × (free 256.0 MiB")
    assert "tenant T2 share 0.167 (lowest of 2 tenants in band)" in y
    assert z.startswith("denied #3: needs 1024.0 MiB memory on node local, 256.0 MiB free")
    assert "not expected to fit soon" in z and "tenant T3 share 0.167" in z
    assert r.summary[0] == ("local/memory: increases need 2560.0 MiB (2560.0 MiB pre-emptive), "
                            "512.0 MiB free (0.0 MiB warm reserve) → contention, short 2048.0 MiB")
    assert r.reclaim_dependent == ["x/memory@100000"]
    # committed: the reclaim and x's grant
    assert p.grants[Tier.MEMORY]["i"] == 1.25 * GiB and p.grants[Tier.MEMORY]["x"] == 2 * GiB
    assert p.free(Tier.MEMORY) == 0.25 * GiB


def three_tenants():
    """16 GiB / 8 cores grantable (reserve 2 GiB / 1 core). Three tenants, 13.5 GiB
    granted, 2.5 GiB free; idle: acme's batch-1 (3 GiB, floor 1.5 GiB) and
    initech's cron (2 GiB, floor 1.75 GiB) → 1.75 GiB reclaimable. Asks: 6.5 GiB."""
    p = Pool(Capacity(18 * GiB, 9), Capacity(2 * GiB, 1))
    limits = {"api-1": 2, "api-2": 2, "batch-1": 3,  # acme
              "web-1": 2.5, "web-2": 1,  # globex
              "cron": 2, "etl": 1}  # initech
    for c, g in limits.items():
        p.observe(c, Tier.MEMORY, g * GiB)
        p.observe(c, Tier.CPU, 0.5)
    tenants = {c: "acme" for c in ("api-1", "api-2", "batch-1")}
    tenants |= {"web-1": "globex", "web-2": "globex", "cron": "initech", "etl": "initech"}
    idle = [ReclaimCandidate("batch-1", Tier.MEMORY, 3 * GiB, 1.5 * GiB, app="batch"),
            ReclaimCandidate("cron", Tier.MEMORY, 2 * GiB, 1.75 * GiB, app="cron"),
            ReclaimCandidate("api-2", Tier.CPU, 0.5, 0.25, app="api")]  # other tier: untouched
    asks = [
        ask("api-1", 2 * GiB, 4 * GiB, 0.70, app="api"),  # acme      +2    risk 0.70 × 1
        ask("web-1", 2.5 * GiB, 3.5 * GiB, 0.60, app="web"),  # globex +1    risk 0.60 × 1.5
        ask("web-2", 1 * GiB, 2 * GiB, 0.50, app="web"),  # globex     +1    risk 0.50 × 1.5
        ask("etl", 1 * GiB, 2.5 * GiB, 0.72, app="etl"),  # initech    +1.5  risk 0.72 × 1
        ask("api-2", 2 * GiB, 3 * GiB, 0.71, app="api"),  # acme      +1    risk 0.71 × 1
    ]
    weights = {"web": 1.5}
    return p, asks, idle, tenants, weights


def run_three_tenants(commit=True) -> tuple[Pool, ArbitrationResult, Pool]:
    p, asks, idle, tenants, weights = three_tenants()
    before = p.copy()
    r = arbitrate(asks, p, idle=idle, tenants=tenants, weights=weights, now_s=100.0,
                  commit=commit)
    return p, r, before


def test_three_tenants_no_overcommit():
    p, r, before = run_three_tenants()
    assert before.free(Tier.MEMORY) == 2.5 * GiB
    asked = 2 + 1 + 1 + 1.5 + 1
    assert asked * GiB > before.free(Tier.MEMORY) + 1.75 * GiB  # asks exceed free + idle
    assert p.check_invariant() == []
    assert p.granted(Tier.MEMORY) <= p.grantable(Tier.MEMORY) == 16 * GiB
    assert p.granted(Tier.CPU) <= p.grantable(Tier.CPU)
    granted = [v for v in r.verdicts if v.verdict is Verdict.GRANTED]
    grown = sum(a.new_limit - a.old_limit for a, v in zip(three_tenants()[1], r.verdicts,
                                                          strict=True)
                if v.verdict is Verdict.GRANTED)
    assert p.granted(Tier.MEMORY) == 13.5 * GiB - 1.75 * GiB + grown
    assert len(granted) == 3 and p.free(Tier.MEMORY) == 0.75 * GiB


def test_three_tenants_riskiest_first_then_fair():
    _, r, _ = run_three_tenants()
    # risk: web-1 0.90 (0.6 × 1.5), web-2 0.75, etl 0.72, api-2 0.71, api-1 0.70
    assert r.order[0] == "web-1/memory@100000"
    assert r.verdict("web-1/memory@100000").verdict is Verdict.GRANTED
    assert "risk 0.90 (p_fail 0.60 × weight 1.5, band 9)" in r.verdict("web-1/memory@100000").reason
    # band 7: globex, initech and acme compete; DRF serves the lowest dominant share first.
    # after reclaim: acme 2+2+1.5 = 5.5 GiB (0.344), globex 3.5+1 = 4.5 (0.281),
    # initech 1.75+1 = 2.75 GiB (0.172) → initech (etl), then globex (web-2, 0.281),
    # then acme (api-2 before api-1: riskier)
    assert r.order[1:] == ["etl/memory@100000", "web-2/memory@100000", "api-2/memory@100000",
                           "api-1/memory@100000"]
    assert "tenant initech share 0.172 (lowest of 3 tenants in band)" in r.explanations[
        "etl/memory@100000"]
    assert [r.verdict(a).verdict for a in r.order] == [
        Verdict.GRANTED, Verdict.GRANTED, Verdict.GRANTED, Verdict.DEFERRED, Verdict.DENIED]


def test_three_tenants_every_cut_is_explained_with_numbers():
    _, r, _ = run_three_tenants()
    assert set(r.explanations) == {v.action_id for v in r.verdicts} | {
        a.action_id for a in r.reclaims}
    for v in r.verdicts:
        assert r.explanations[v.action_id] == v.reason
        assert re.search(r"\d+\.\d MiB", v.reason), v.reason
        assert "risk" in v.reason and "tenant" in v.reason and "share" in v.reason
        if v.verdict is not Verdict.GRANTED:
            assert re.match(rf"{v.verdict.value} #\d: needs \d+\.\d MiB memory on node local, "
                            r"\d+\.\d MiB free after \d earlier decisions; ", v.reason), v.reason
    assert r.verdict("api-2/memory@100000").reason.startswith(
        "deferred #4: needs 1024.0 MiB memory on node local, 768.0 MiB free after 3 earlier "
        "decisions; may fit later: need ≤ 2 × (free 768.0 MiB + reserved by others 0.0 MiB)")
    assert r.verdict("api-1/memory@100000").reason.startswith(
        "denied #5: needs 2048.0 MiB memory on node local, 768.0 MiB free after 4 earlier "
        "decisions; need > 2 × (free 768.0 MiB + reserved by others 0.0 MiB): not expected "
        "to fit soon; pre-emptive, risk 0.70 (p_fail 0.70 × weight 1, band 7), tenant acme")


def test_three_tenants_idle_capacity_is_reclaimed_before_any_cut():
    p, r, _ = run_three_tenants()
    assert any(v.verdict is not Verdict.GRANTED for v in r.verdicts)
    # every idle memory container was shrunk to its floor before anyone was cut
    assert {(a.container, a.old_limit, a.new_limit) for a in r.reclaims} == {
        ("batch-1", 3 * GiB, 1.5 * GiB), ("cron", 2 * GiB, 1.75 * GiB)}
    assert p.grants[Tier.MEMORY]["batch-1"] == 1.5 * GiB
    assert p.grants[Tier.MEMORY]["cron"] == 1.75 * GiB
    assert p.grants[Tier.CPU]["api-2"] == 0.5  # no CPU contention: nothing reclaimed there
    assert all("reclaim: " in r.explanations[a.action_id] and "idle" in a.reason
               for a in r.reclaims)
    assert r.explanations["batch-1/memory@100000/reclaim"] == (
        "reclaim: batch-1 idle, memory 3072.0 MiB → 1536.0 MiB (floor 1536.0 MiB) frees "
        "1536.0 MiB on node local for asks short of 4096.0 MiB")


def test_recommend_mode_leaves_the_pool_unchanged():
    p, r, before = run_three_tenants(commit=False)
    assert p.to_dict() == before.to_dict()
    assert len(r.reclaims) == 2


def test_no_contention_reclaims_nothing_and_grants_all():
    p = worked_example_pool()
    r = arbitrate([ask("x", GiB, 1.25 * GiB, 0.9), ask("y", GiB, 1.25 * GiB, 0.6)], p,
                  idle=[ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, 1 * GiB)], tenants={},
                  weights={}, now_s=100.0)
    assert r.reclaims == [] and r.reclaim_dependent == []
    assert [v.verdict for v in r.verdicts] == [Verdict.GRANTED, Verdict.GRANTED]
    assert r.summary == ["local/memory: increases need 512.0 MiB (512.0 MiB pre-emptive), "
                         "512.0 MiB free (0.0 MiB warm reserve) → no contention"]
    assert "tenant (none)" in r.verdicts[0].reason


def test_reclaim_only_as_far_as_needed_and_decreases_first():
    p = worked_example_pool()  # 0.5 GiB free
    r = arbitrate([ask("x", GiB, 2 * GiB, 0.9), ask("o", 0.5 * GiB, 0.25 * GiB, 0.0)], p,
                  idle=[ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, 0.5 * GiB)], tenants={},
                  weights={}, now_s=100.0)
    # the decrease frees 0.25 GiB first; the reclaim covers the remaining 0.25 GiB only
    [rec] = r.reclaims
    assert rec.new_limit == 1.75 * GiB
    assert r.order == ["o/memory@100000", "x/memory@100000"]
    assert [v.verdict for v in r.verdicts] == [Verdict.GRANTED, Verdict.GRANTED]
    assert r.verdicts[1].reason == "granted: a decrease, served first; pool: released 256.0 MiB"
    assert p.free(Tier.MEMORY) == 0.0 and p.check_invariant() == []


def test_a_container_stepping_down_this_tick_is_not_also_reclaimed():
    """"Containers asking in this tick are never reclaimed", decreases included: idle
    ``i`` steps itself down 2048 → 1792 MiB and is a reclaim candidate too. Reclaiming
    it as well (1792 → 1280 MiB) gave two actions on one limit: the loop applies
    reclaims first, so its own step down then set 1792 MiB again while the pool counted
    1280 MiB: 512 MiB handed to ``x`` that ``i`` still held."""
    mib = GiB // 1024
    p = worked_example_pool()  # 512 MiB free
    asks = [ask("x", GiB, 2 * GiB, 0.9), ask("i", 2 * GiB, 1792 * mib, 0.0)]
    r = arbitrate(asks, p, idle=[ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, 512 * mib)],
                  tenants={}, weights={}, now_s=100.0)
    assert r.reclaims == []
    assert [(a.container, a.new_limit) for a in r.granted(asks)] == [("i", 1792 * mib)]
    assert r.verdicts[0].verdict is not Verdict.GRANTED  # 768 MiB free < 1024 MiB needed
    assert p.grants[Tier.MEMORY]["i"] == 1792 * mib and p.check_invariant() == []
    # with another idle container that is not asking, that one gives the 256 MiB short
    p = worked_example_pool()
    r = arbitrate(asks, p, idle=[ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, 512 * mib),
                                 ReclaimCandidate("y", Tier.MEMORY, GiB, 256 * mib)],
                  tenants={}, weights={}, now_s=100.0)
    assert [(a.container, a.new_limit) for a in r.reclaims] == [("y", 768 * mib)]
    assert r.verdicts[0].verdict is Verdict.GRANTED
    assert p.grants[Tier.MEMORY]["i"] == 1792 * mib and p.check_invariant() == []


def test_preemptive_before_reactive_and_warm_reserve():
    p = Pool(Capacity(8 * GiB, 4), Capacity(2 * GiB, 0.5), warm=Capacity(1 * GiB, 0))
    p.observe("a", Tier.MEMORY, 3 * GiB)
    p.observe("b", Tier.MEMORY, 1 * GiB)  # 2 GiB free, 1 GiB of it warm
    reactive = ask("a", 3 * GiB, 4 * GiB, 0.99, pre=False)
    pre = ask("b", 1 * GiB, 2 * GiB, 0.40)
    r = arbitrate([reactive, pre], p, idle=[], tenants={}, weights={}, now_s=100.0)
    assert r.order == [pre.action_id, reactive.action_id]
    assert r.verdicts[1].verdict is Verdict.GRANTED
    assert r.verdicts[0].verdict is Verdict.DENIED
    assert r.verdicts[0].reason.startswith("denied #2: needs 1024.0 MiB memory on node local, "
                                           "0.0 MiB free")


def test_an_ask_beyond_what_the_node_can_ever_grant_is_denied_and_says_so():
    p = worked_example_pool()
    r = arbitrate([ask("x", GiB, 7 * GiB, 0.99)], p, idle=[], tenants={}, weights={},
                  now_s=100.0)
    [v] = r.verdicts
    assert v.verdict is Verdict.DENIED
    assert "would hold 7168.0 MiB, more than the 6144.0 MiB the node can grant" in v.reason


def test_deferred_when_capacity_held_by_a_reservation_may_come_back():
    p = worked_example_pool()  # 0.5 GiB free
    p.reserve("n", Tier.MEMORY, 0.5 * GiB, until_s=120.0)  # 0 free; back at 120 s
    r = arbitrate([ask("x", GiB, 2 * GiB, 0.99)], p, idle=[], tenants={}, weights={},
                  now_s=100.0)
    [v] = r.verdicts
    assert v.verdict is Verdict.DEFERRED
    assert "may fit later: need ≤ 2 × (free 0.0 MiB + reserved by others 512.0 MiB)" in v.reason


def test_drf_with_tenant_weights_and_both_tiers():
    """Equal risk: the tenant with the lowest weighted dominant share goes first.
    grantable 16 GiB / 8 cores; A holds 4 GiB + 1 core (dominant 0.25, memory),
    B 2 GiB + 3 cores (0.375, CPU), C (weight 2) 8 GiB + 2 cores (0.5 / 2 = 0.25)."""
    p = Pool(Capacity(16 * GiB, 8), Capacity(0, 0))
    for c, m, cpu in [("a", 4, 1), ("b", 2, 3), ("c", 8, 2)]:
        p.observe(c, Tier.MEMORY, m * GiB)
        p.observe(c, Tier.CPU, cpu)
    asks = [ask(c, p.grants[Tier.CPU][c], p.grants[Tier.CPU][c] + 0.25, 0.5, tier=Tier.CPU)
            for c in ("b", "c", "a")]
    r = arbitrate(asks, p, idle=[], tenants={"a": "A", "b": "B", "c": "C"}, weights={},
                  tenant_weights={"C": 2}, now_s=100.0)
    # A 0.25 (tie with C, name first) → A at 1.25 cores: max(0.25, 0.156) = 0.25 still,
    # C 0.25 → served, then B 0.375
    assert [a.split("/")[0] for a in r.order] == ["a", "c", "b"]
    assert "tenant A share 0.250 (lowest of 3 tenants in band)" in r.verdict(r.order[0]).reason
    assert "tenant B share 0.375" in r.verdict(r.order[2]).reason


def test_multi_node_reclaims_only_on_the_node_in_contention():
    p = Pool({"n1": Capacity(4 * GiB, 2), "n2": Capacity(4 * GiB, 2)}, Capacity(0, 0))
    p.observe("a", Tier.MEMORY, 3.5 * GiB, node="n1")
    p.observe("idle1", Tier.MEMORY, 0.5 * GiB, node="n1")
    p.observe("idle2", Tier.MEMORY, 2 * GiB, node="n2")
    idle = [ReclaimCandidate("idle1", Tier.MEMORY, 0.5 * GiB, 0.25 * GiB),
            ReclaimCandidate("idle2", Tier.MEMORY, 2 * GiB, 0.25 * GiB)]
    r = arbitrate([ask("a", 3.5 * GiB, 3.75 * GiB, 0.9)], p, idle=idle, tenants={},
                  weights={}, now_s=100.0)
    assert [(a.container, a.new_limit) for a in r.reclaims] == [("idle1", 0.25 * GiB)]
    assert r.verdicts[0].verdict is Verdict.GRANTED
    assert r.verdicts[0].reason.startswith("granted #1: 256.0 MiB, 0.0 MiB left on node n1")


def test_bad_weights_raise_and_change_nothing_and_bad_asks_are_denied():
    p = worked_example_pool()
    before = p.to_dict()
    with pytest.raises(ValueError, match="weight of app 'web' must be a finite number > 0, "
                                         "got -1"):
        arbitrate([ask("x", GiB, 2 * GiB, 0.9)], p, idle=[], tenants={}, weights={"web": -1},
                  now_s=100.0)
    with pytest.raises(ValueError, match="weight of tenant 'T' must be a finite number > 0"):
        arbitrate([], p, idle=[], tenants={}, weights={}, tenant_weights={"T": math.inf},
                  now_s=100.0)
    assert p.to_dict() == before
    r = arbitrate([ask("x", GiB, math.nan, 0.9)], p, idle=[
        ReclaimCandidate("i", Tier.MEMORY, 2 * GiB, math.nan)], tenants={}, weights={},
        now_s=100.0)
    assert r.verdicts[0].verdict is Verdict.DENIED
    assert r.verdicts[0].reason == "denied: invalid new limit nan"


def _partial_pool(free_mib: float) -> Pool:
    """grantable 4 GiB; ``x`` holds 512 MiB, ``big`` the rest but ``free_mib``."""
    p = Pool(Capacity(4 * GiB, 4), Capacity(0, 0))
    p.observe("x", Tier.MEMORY, 512 * MiB)
    p.observe("big", Tier.MEMORY, 4 * GiB - 512 * MiB - free_mib * MiB)
    return p


def _forecast_ask(forecast_mib: float) -> ScalingAction:
    return ScalingAction("x/memory@100000", 100.0, "x", Tier.MEMORY, 512 * MiB, 1024 * MiB,
                         0.95, 0.5, 30.0, forecast_mib * MiB, "", preemptive=True)


def test_partial_grant_worked_example_covers_the_forecast():
    # the module docstring: old 512 MiB, asked 1024 MiB, forecast 700 MiB, 511 MiB free
    p = _partial_pool(511)
    a = _forecast_ask(700)
    r = arbitrate([a], p, idle=[], tenants={}, weights={}, now_s=100.0)
    [v] = r.verdicts
    assert v.verdict is Verdict.GRANTED and v.granted_limit == 1023 * MiB
    assert v.reason.startswith("granted in part #1: 1023.0 MiB of the 1024.0 MiB asked "
                               "(511.0 MiB free on node local; covers the forecast 700.0 MiB)")
    [g] = r.granted([a])
    assert g.new_limit == 1023 * MiB and g.action_id == a.action_id
    assert p.grants[Tier.MEMORY]["x"] == 1023 * MiB and p.free(Tier.MEMORY) == 0


def test_no_partial_grant_below_the_forecast_or_when_switched_off():
    from prescale.app.core.contention import ContentionConfig

    p = _partial_pool(150)  # 512 + 150 = 662 MiB < forecast 700 MiB
    r = arbitrate([_forecast_ask(700)], p, idle=[], tenants={}, weights={}, now_s=100.0)
    [v] = r.verdicts
    assert v.verdict is not Verdict.GRANTED and v.granted_limit is None
    assert r.granted([_forecast_ask(700)]) == [] and p.grants[Tier.MEMORY]["x"] == 512 * MiB
    p = _partial_pool(511)
    r = arbitrate([_forecast_ask(700)], p, idle=[], tenants={}, weights={}, now_s=100.0,
                  config=ContentionConfig(partial_grants=False))
    assert r.verdicts[0].verdict is not Verdict.GRANTED


def test_partial_grants_never_overcommit_whatever_the_order():
    # three asks of 512 MiB more on 700 MiB free, forecasts just above their limits
    p = Pool(Capacity(4 * GiB, 4), Capacity(0, 0))
    asks = []
    for c in ("a", "b", "c"):
        p.observe(c, Tier.MEMORY, 512 * MiB)
        asks.append(ScalingAction(f"{c}/memory@100000", 100.0, c, Tier.MEMORY, 512 * MiB,
                                  1024 * MiB, 0.9, 0.5, 30.0, 600 * MiB, "", preemptive=True))
    p.observe("big", Tier.MEMORY, 4 * GiB - 3 * 512 * MiB - 700 * MiB)
    r = arbitrate(asks, p, idle=[], tenants={}, weights={}, now_s=100.0)
    got = {g.container: g.new_limit for g in r.granted(asks)}
    assert got["a"] == 1024 * MiB  # whole: 700 MiB free
    assert got["b"] == 512 * MiB + 188 * MiB  # in part: the 188 MiB left cover 600 MiB
    assert "c" not in got  # nothing left
    assert p.free(Tier.MEMORY) >= 0 and sum(p.grants[Tier.MEMORY].values()) <= 4 * GiB
