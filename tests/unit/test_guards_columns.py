"""The column-wise guards (:func:`app.core.guards._size`) against the rule as it was
written per action before (``_reference_guard`` below, the scalar ``_resize`` kept
here verbatim as the specification): for random snapshots, configs, states and
proposals — every block, every note, duplicates, OOM answers, scale-outs mixed in —
the same decisions (every reason, every float bit) and the same state. Also
:func:`app.core.policy_types.round_up_array` against :func:`round_up`, bit for bit."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from prescale.app.core import guards as g
from prescale.app.core.actions import ActionKind, Decision, ScalingAction
from prescale.app.core.guards import Bounds, GuardConfig, guard
from prescale.app.core.policy_types import (
    PolicyInput,
    PolicyState,
    fmt,
    round_up,
    round_up_array,
)
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import Tier

MiB = 2**20
GiB = 2**30


# -- the specification: guard() and _resize() per action, as before the columns -------
def _reference_guard(inp, decisions, cfg, state):
    index = {name: i for i, name in enumerate(inp.containers)}
    t = g._Tick(inp, cfg, dict(state.last_action_s), dict(state.last_direction), set())
    out = []
    for d in decisions:
        if d.action is None:
            out.append(d)
            continue
        if d.container not in index:
            raise ValueError(
                f"decision for {d.container!r}, which is not in PolicyInput.containers")
        i = index[d.container]
        try:
            if d.action.kind is ActionKind.SCALE_OUT and d.action.new_limit < d.action.old_limit:
                action = g._scale_in(t, i, d.action)
            elif d.action.kind is ActionKind.SCALE_OUT:
                action = g._scale_out(t, i, d.action, d.action.reason, "scale-out proposed")
            else:
                action = _reference_resize(t, i, d.action)
        except g._Blocked as why:
            out.append(replace(d, action=None, reason=f"{d.reason}; blocked: {why}"))
            continue
        out.append(replace(d, action=action, reason=action.reason))
    return out, replace(state, last_action_s=t.last, last_direction=t.direction)


def _reference_resize(t, i, a):  # noqa: C901 (the scalar rule, verbatim)
    cfg, inp, now = t.cfg, t.inp, t.inp.now_s
    tier, c = a.tier, a.container
    key = f"{c}/{tier}"
    old, target = float(a.old_limit), float(a.new_limit)
    if not (math.isfinite(old) and math.isfinite(target)):
        raise g._Blocked(f"limit {old!r} or target {target!r} is not finite")
    d = 1 if target > old else -1 if target < old else 0
    if d == 0:
        raise g._Blocked("target equals the current limit")
    notes: list[str] = []
    oom = a.cause == "oom"
    if not oom and key in t.last and now - t.last[key] < cfg.cooldown_for(tier):
        left = cfg.cooldown_for(tier) - (now - t.last[key])
        raise g._Blocked(f"in cooldown ({left:.1f} s left)")
    if t.direction.get(key) == -d and key in t.last and now - t.last[key] < cfg.hold_s:
        age = now - t.last[key]
        prev = "down" if d > 0 else "up"
        urgent = oom or (cfg.urgent_p_fail is not None and d > 0
                         and a.p_fail >= cfg.urgent_p_fail)
        if not urgent:
            raise g._Blocked(f"would reverse the last action ({prev} {age:.0f} s ago) within "
                             f"the hold of {cfg.hold_s:g} s")
        notes.append(f"hold overridden: p_fail {a.p_fail:.2f} >= urgent "
                     f"{cfg.urgent_p_fail:.2f} (last action {prev} {age:.0f} s ago)")
    lo, hi = cfg.bounds_for(c, inp.app_of(i), tier, inp.labels_of(i))
    if lo > hi:
        raise g._Blocked(f"conflicting bounds: min {fmt(tier, lo)} > max {fmt(tier, hi)}")
    step = cfg.step_for(tier, old)
    usage = inp.usage_of(tier, i)
    floor = cfg.floor_for(tier, usage)
    margin = 1 + cfg.safety_margin_fraction
    if d > 0:
        if old >= hi:
            return g._escalate(t, i, a, f"at the maximum limit {fmt(tier, hi)}", notes)
        new = min(round_up(tier, min(target, hi)), hi)
        if target > hi:
            notes.append(f"clamped to max {fmt(tier, hi)}")
        if new - old > step:
            new = old + step
            notes.append(f"max step: +{fmt(tier, step)} ({g._step_desc(cfg, tier)})")
        if not math.isnan(floor) and new < min(floor, hi):
            new = min(floor, hi)
            notes.append(f"safety floor: usage {fmt(tier, usage)} × {margin:.2f}")
        if new < lo:
            new = lo
            notes.append(f"raised to min {fmt(tier, lo)}")
        if new <= old:
            raise g._Blocked(f"increase to {fmt(tier, target)} is below one rounding unit")
    else:
        if math.isnan(floor):
            raise g._Blocked("memory usage unknown: memory is never lowered blind")
        new = round_up(tier, target)
        if old - new > step:
            new = round_up(tier, old - step)
            notes.append(f"max step: -{fmt(tier, old - new)} ({g._step_desc(cfg, tier)})")
        if new < lo:
            new = lo
            notes.append(f"raised to min {fmt(tier, lo)}")
        if new < floor:
            new = floor
            notes.append(f"safety floor: usage {fmt(tier, usage)} × {margin:.2f}")
        held = inp.floor_of(tier, i)
        if new < held:
            new = round_up(tier, held)
            notes.append(f"held at {fmt(tier, held)}: raised for an OOM kill, within its "
                         "stabilisation window")
        if new > hi:
            what = "safety floor" if new == floor else "target"
            raise g._Blocked(f"{what} {fmt(tier, new)} is above the max {fmt(tier, hi)}: "
                             f"a limit outside its bounds is left to the operator")
        if new <= 0:
            raise g._Blocked("a limit of 0 or less is never set")
        if new >= old:
            why = ("an OOM kill's stabilisation floor" if new == round_up(tier, held) and held
                   else "floor/min/usage + margin")
            raise g._Blocked(f"cannot lower: {fmt(tier, new)} ({why}) >= limit {fmt(tier, old)}")
    band = cfg.dead_band_fraction * old
    if abs(new - old) < band:
        raise g._Blocked(f"change {fmt(tier, abs(new - old))} below the dead band "
                         f"{fmt(tier, band)} ({cfg.dead_band_fraction:.0%})")
    if d > 0:
        room, where = inp.room_of(tier, i)
        if new - old > room:
            why = f"needs +{fmt(tier, new - old)}, {where} has {fmt(tier, max(room, 0))} free"
            if inp.is_replicated(i):
                return g._escalate(t, i, a, why, notes)
            notes.append(f"{why}; not replicated: left to the pool")
    t.last[key] = now
    t.direction[key] = d
    return replace(a, new_limit=float(new), reason="; ".join([a.reason, *notes]))


# -- random cases -------------------------------------------------------------------------
TIERS = (Tier.MEMORY, Tier.CPU, Tier.DISK, Tier.NETWORK)
NOW = 10_000.0


def _limit(rng, tier):
    if tier == Tier.CPU:
        return float(rng.choice([0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 2.0, 0.375, 0.3800000001]))
    return float(rng.choice([16, 32, 100, 256, 512, 1000, 1024, 2048, 3000])) * MiB


def _target(rng, tier, old):
    r = rng.random()
    if r < 0.04:
        return float(rng.choice([math.nan, math.inf, -math.inf]))
    if r < 0.08:
        return old
    if r < 0.12:
        return old * (1 + 1e-10)  # below one rounding unit
    if r < 0.16:
        return old * 1.01  # in the dead band
    if r < 0.2:
        return -old
    return old * float(rng.choice([0.1, 0.3, 0.5, 0.9, 1.2, 1.5, 2, 4, 10]))


def _case(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 7))
    names = [f"c{k}" for k in range(n)]
    apps = [str(rng.choice(["", "web", "db"])) for _ in names]
    tiers = TIERS[: int(rng.integers(1, 5))]
    one = lambda: np.full(n, 0.5)  # noqa: E731
    pred = Prediction(30.0, "t", {t: TierPrediction(one(), one(), one(), one()) for t in tiers})

    def per_tier(make):
        return {t: np.array([make(t) for _ in names]) for t in tiers if rng.random() < 0.8}

    usage = per_tier(lambda t: math.nan if rng.random() < 0.15
                     else _limit(rng, t) * float(rng.choice([0.1, 0.5, 0.9, 1.5])))
    held = per_tier(lambda t: 0.0 if rng.random() < 0.6 else _limit(rng, t))
    node = per_tier(lambda t: math.nan if rng.random() < 0.3
                    else _limit(rng, t) * float(rng.choice([-0.1, 0.01, 0.5, 3])))
    pool = {t: _limit(rng, t) * float(rng.choice([0.1, 2.0, math.nan]))
            for t in tiers if rng.random() < 0.5}
    inp = PolicyInput(NOW, names, pred, np.full(n, 0.5), apps=apps,
                      labels=None if rng.random() < 0.7 else [{} for _ in names],
                      usage=usage or None, floor=held or None, headroom_on_node=node or None,
                      pool_free=pool or None, replicated=rng.random(n) < 0.5,
                      replicas=rng.integers(1, 5, n).astype(float))
    bounds = {}
    if rng.random() < 0.4:
        bounds["app_bounds"] = {"web": Bounds({"memory": 64 * MiB}, {"memory": 1 * GiB,
                                                                     "cpu": 0.5})}
    if rng.random() < 0.4:  # min above the global max: conflicting bounds
        bounds["container_bounds"] = {"c0": Bounds({"memory": 3 * GiB, "cpu": 0.2}, {}),
                                      "c1": Bounds({}, {"cpu": 4.0})}
    cfg = GuardConfig(
        max_step_fraction=float(rng.choice([0.25, 0.5, 1.0, 3.0])),
        max_step_abs={"memory": 256 * MiB, "cpu": 0.5} if rng.random() < 0.5 else {},
        cooldown_s=float(rng.choice([0.0, 10.0, 100.0])),
        tier_cooldown_s={"cpu": 30.0} if rng.random() < 0.3 else {},
        hold_s=float(rng.choice([0.0, 300.0])),
        urgent_p_fail=float(rng.choice([0.5, 0.9])) if rng.random() < 0.8 else None,
        dead_band_fraction=float(rng.choice([0.0, 0.02, 0.2])),
        safety_margin_fraction=float(rng.choice([0.0, 0.1])),
        max_replicas=int(rng.integers(1, 5)), **bounds)
    last, direction = {}, {}
    for c in names:
        for t in (*tiers, "replicas"):
            if rng.random() < 0.4:
                last[f"{c}/{t}"] = NOW - float(rng.choice([1.0, 20.0, 200.0, 1000.0]))
                direction[f"{c}/{t}"] = int(rng.choice([-1, 1]))
    decisions = []
    for _ in range(int(rng.integers(1, 3 * n + 2))):
        k = int(rng.integers(n))
        c, tier = names[k], tiers[int(rng.integers(len(tiers)))]
        old = _limit(rng, tier)
        r = rng.random()
        if r < 0.1:
            a = None
        elif r < 0.2:
            a = ScalingAction(f"{c}/replicas@1", NOW, c, tier, 2.0, float(rng.choice([1, 3])),
                              0.9, 0.5, 10.0, 0.0, "replicas", kind=ActionKind.SCALE_OUT)
        else:
            cause = str(rng.choice(["forecast", "idle", "oom"], p=[0.5, 0.4, 0.1]))
            # an int limit now and then: its float() and its bits are the guards' business
            tgt = _target(rng, tier, old)
            if tier != Tier.CPU and math.isfinite(tgt) and rng.random() < 0.1:
                tgt = int(tgt) // 4096 * 4096  # an int on the page grid: rebuilt as a float
            a = ScalingAction(f"{c}/{tier}@1", NOW, c, tier, old, tgt,
                              float(rng.choice([0.3, 0.95])), 0.5, 10.0, old, f"why {k}",
                              cause=cause)
        decisions.append(Decision(NOW, c, tier, 0.9, 0.5, 10.0, old, old, a,
                                  a.reason if a is not None else "none"))
    return inp, decisions, cfg, PolicyState(last, direction)


def _bits(x):
    return repr(x)  # dataclass reprs: every float as its repr (so -0.0 ≠ 0.0, nan shown)


def test_columns_give_the_scalar_rule_bit_for_bit_and_every_branch_is_taken():
    codes, notes = set(), 0
    for seed in range(1000):
        inp, decisions, cfg, state = _case(seed)
        try:
            want = _reference_guard(inp, decisions, cfg, state)
        except TypeError as exc:  # an OOM answer overriding a hold with urgent_p_fail None
            with pytest.raises(TypeError, match=str(exc)[:20]):
                guard(inp, decisions, cfg, state)
            continue
        got = guard(inp, decisions, cfg, state)
        assert _bits(got) == _bits(want), seed
        sized = g._size(inp, decisions, cfg, {c: i for i, c in enumerate(inp.containers)})
        codes |= set(sized.code)
        for k, bits in enumerate(sized.notes):
            notes |= bits if sized.code[k] == g._PASS else 0
    assert codes == set(range(12))  # every block / escalation of _size
    assert notes == 63  # every note, each in a resize that passes


def test_a_decision_for_an_unknown_container_raises_where_it_stands():
    inp, decisions, cfg, state = _case(1)
    stray = replace(decisions[0], container="nobody")
    with pytest.raises(ValueError, match="nobody"):
        guard(inp, [*decisions, stray, *decisions], cfg, state)


def test_round_up_array_is_round_up_bit_for_bit():
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, -1e-12, 1e-12, -0.3, -4096.0, -5000.0, 4096.0, 4096.0 * (1 + 1e-13),
               0.38, 0.375, 0.3800000001, 0.07, 1e300, -1e300, 1.0000001e300, 1e308, -1e308,
               math.inf, -math.inf, math.nan, 5e-324, 2.0**53, 2.0**53 + 2, 1e20]
    values = np.concatenate([special, rng.normal(0, 1, 2000) * 10.0 ** rng.integers(-3, 12, 2000),
                             np.round(rng.random(2000) * 300) / 100,
                             rng.integers(0, 10**6, 2000) * 4096.0])
    for tier in (*TIERS, "gpu", "memory", "cpu"):
        got = round_up_array(tier, values)
        want = np.array([round_up(tier, float(v)) for v in values])
        assert got.tobytes() == want.tobytes(), tier
    # worked example of its docstring
    assert round_up_array("memory", [1001, 4096, -5, math.nan]).tolist()[:3] == [4096, 4096, 0]
    assert math.copysign(1, round_up_array("memory", [-5])[0]) == 1.0
    assert round_up_array("cpu", [0.375, 0.38]).tolist() == [0.38, 0.38]


def test_a_resize_passed_unchanged_is_the_proposal_itself():
    inp, _, cfg, state = _case(0)
    c = inp.containers[0]
    a = ScalingAction(f"{c}/memory@1", NOW, c, Tier.MEMORY, 512.0 * MiB, 768.0 * MiB, 0.9, 0.5,
                      10.0, 0.0, "r")
    d = Decision(NOW, c, Tier.MEMORY, 0.9, 0.5, 10.0, 0.0, 512.0 * MiB, a, "r")
    (out,), _ = guard(replace(inp, usage=None, headroom_on_node=None, pool_free=None),
                      [d], GuardConfig(), PolicyState())
    assert out is d


def test_size_tier_worked_example():
    """_size_tier's docstring: memory, bounds [32 MiB, 2 GiB], step fraction 1: old
    512 MiB, target 3 GiB → clamped to 2 GiB, then the step (512 MiB) → N = 1 GiB."""
    inp, _, _, _ = _case(0)
    inp = replace(inp, usage=None, headroom_on_node=None, pool_free=None)
    c = inp.containers[0]
    a = ScalingAction(f"{c}/memory@1", NOW, c, Tier.MEMORY, 512.0 * MiB, 3.0 * GiB, 0.9, 0.5,
                      10.0, 0.0, "r")
    d = Decision(NOW, c, Tier.MEMORY, 0.9, 0.5, 10.0, 0.0, 512.0 * MiB, a, "r")
    sized = g._size(inp, [d], GuardConfig(), {c: 0})
    assert (sized.code, sized.new, sized.notes) == ([g._PASS], [1.0 * GiB],
                                                    [g._CLAMPED | g._STEP])
    (out,), _ = guard(inp, [d], GuardConfig(), PolicyState())
    assert out.action.new_limit == 1.0 * GiB
    assert out.reason == "r; clamped to max 2048.0 MiB; max step: +512.0 MiB (100% of the limit)"


def test_floors_for_is_floor_for_bit_for_bit():
    """Worked example (memory, safety margin 0.1): 100 MiB → ⌈110 MiB⌉ to a page; nan →
    nan; a negative usage → 0.0; the CPU tier has no floor (zeros)."""
    rng = np.random.default_rng(5)
    usage = np.concatenate([rng.uniform(-1, 4, 500) * GiB, rng.uniform(0, 4, 200),
                            [0.0, -0.0, math.nan, math.inf, -math.inf, 1e301, 100 * MiB]])
    for margin in (0.0, 0.1, 0.25):
        cfg = GuardConfig(safety_margin_fraction=margin)
        for tier in ("memory", "cpu", "disk"):
            got = cfg.floors_for(tier, usage)
            want = np.array([cfg.floor_for(tier, u) for u in usage.tolist()])
            assert got.view(np.int64).tolist() == want.view(np.int64).tolist(), (tier, margin)
    assert GuardConfig(safety_margin_fraction=0.1).floors_for("memory", [100 * MiB])[0] \
        == round_up("memory", 100 * MiB * 1.1)


def test_has_levels_says_when_bounds_for_is_the_global_pair():
    cfg = GuardConfig(min_limit={"memory": 64 * MiB})
    assert not cfg.has_levels(None) and not cfg.has_levels([])
    assert cfg.has_levels([{"prescale.memory.max": "1Gi"}])
    assert GuardConfig(app_bounds={"a": Bounds(min_limit={"memory": MiB})}).has_levels()
    assert cfg.bounds_for("x", "a", "memory") == (64 * MiB, cfg.max_limit["memory"])
