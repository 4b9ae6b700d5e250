"""Scale-in: remove a replica from a horizontally scaled container whose replicas idle.

A replicated container (:attr:`PolicyInput.replicated`; its usage and limits are *per
replica*, as the Serve source and the evaluation world report them) with n replicas is
*idle* on a tick when every tier of :data:`~app.core.cost.SCALED_DOWN` that can be
judged (a finite limit L > 0 and a known usage u) is low by the idle scale-down's own
test (:func:`~app.core.cost.is_low`: u < ``idle_usage_fraction`` × L and p_fail ≤
``idle_p_fail_max``), and at least one can be judged. A run of idle ticks is kept in
:attr:`PolicyState.low_since_s` under ``"c/replicas"``. Once the run has lasted
``cost.scale_in_after_s`` and the last replica action of the container is at least
``cost.step_interval_s`` old, one replica is removed, n → n − 1, if for every judged
tier:

(a) **the load stays low**: u × n / (n − 1) < ``idle_usage_fraction`` × L — the
    replicas left take over the removed one's share, and stay idle, so the next tick
    does not scale straight back out;
(b) **the long peak still fits**: (n − 1) × L ≥ D × (1 + m), with D the long peak of
    the *total* usage over all replicas (:attr:`PolicyInput.demand_peak`: the highest
    per-replica usage × replicas in the last ``cost.long_peak_s``; where unknown, u × n)
    and m the tier's ``peak_margin_fraction`` — the same long-peak safety as the
    vertical scale-down, counted in replicas;

and n − 1 ≥ the container's ``min_replicas`` (container > workload > app > global, the
user's own HPA-like floor), which the guards enforce on every replica change
(:func:`app.core.guards.guard`).

Worked example: 4 replicas, CPU limit 1.0 core each, 0.2 cores used per replica (0.8
in all), the long peak of the total 2.4 cores, m = 0.2, idle fraction 0.5, idle for
900 s: (a) 0.8 / 3 = 0.27 < 0.5 ✓; (b) 3 × 1.0 = 3.0 ≥ 2.4 × 1.2 = 2.88 ✓ → 4 → 3.
Ten minutes later at 3 replicas (0.27 each): (a) 0.8 / 2 = 0.4 < 0.5 ✓; (b) 2 × 1.0
= 2.0 < 2.88 ✗ → held at 3, "the long peak 2.40 cores × 1.20 needs 3 replicas".

The scale-in is a ``SCALE_OUT`` action whose ``new_limit`` (replicas) is below its
``old_limit``, ``cause = "idle"``. In the tick that scales a container in, its vertical
scale-downs wait (each would be judged on a reading the other changes).
"""

from __future__ import annotations

import math

import numpy as np

from prescale.app.core.actions import ActionKind, Decision, ScalingAction
from prescale.app.core.cost import SCALED_DOWN, CostConfig, is_low
from prescale.app.core.guards import scale_out_action_id
from prescale.app.core.policy_types import PolicyInput, PolicyState, fmt, replicas_key
from prescale.app.core.sample import Tier


def replicas_needed(total_usage: float, long_peak: float, limit: float, margin: float,
                    idle_fraction: float) -> int:
    """The fewest replicas that keep one tier safe: the load stays low (a) and the long
    peak fits (b) (module docstring). ``total_usage`` is u × n, ``long_peak`` D (nan:
    unknown, u × n is used).

    Worked example: total 0.8 cores, long peak 2.4, limit 1.0 per replica, margin 0.2,
    idle fraction 0.5 → (a) needs > 0.8 / 0.5 = 1.6 → 2 replicas; (b) 2.88 / 1.0 → 3
    → 3."""
    peak = long_peak if math.isfinite(long_peak) else total_usage
    peak = max(peak, total_usage)
    low = math.floor(total_usage / (idle_fraction * limit)) + 1  # strictly below
    fits = math.ceil(peak * (1 + margin) / limit - 1e-9)
    return max(1, low, fits)


def propose_scale_ins(inp: PolicyInput, cfg: CostConfig, state: PolicyState,
                      prev_low_since: dict[str, float]) -> list[Decision]:
    """One decision per replicated container with more than one replica: a scale-in
    (unguarded: the guards check ``min_replicas`` and the hold) or why not. Updates
    ``state.low_since_s`` in place with the ``"c/replicas"`` idle runs (read from
    ``prev_low_since``, the state before this tick's cost pass)."""
    if inp.replicated is None or not cfg.enabled:
        return []
    now = inp.now_s
    tiers = [t for t in SCALED_DOWN if t in inp.prediction.tiers]
    judged: dict[Tier, np.ndarray] = {}
    lows: dict[Tier, np.ndarray] = {}
    for t in tiers:
        tp = inp.prediction.tiers[t]
        u = inp.usage.get(t) if inp.usage else None
        if u is None:
            continue
        judged[t] = np.isfinite(tp.limit) & (tp.limit > 0) & np.isfinite(u)
        lows[t] = is_low(tp.limit, u, tp.p_fail, cfg)
    out: list[Decision] = []
    for i in np.flatnonzero(inp.replicated).tolist():
        name = inp.containers[i]
        n = inp.replicas_of(i)
        mine = [t for t in judged if judged[t][i]]
        if n <= 1 or not mine:
            continue
        tier = Tier.CPU if Tier.CPU in mine else mine[0]
        tp = inp.prediction.tiers[tier]
        key = replicas_key(name)
        p = float(tp.p_fail[i])
        action = None
        busy = [t for t in mine if not lows[t][i]]
        if busy:
            t = busy[0]
            reason = (f"scale-in: not idle: {t} usage {fmt(t, inp.usage_of(t, i))} per replica "
                      f"of {fmt(t, float(inp.prediction.tiers[t].limit[i]))}, p_fail "
                      f"{float(inp.prediction.tiers[t].p_fail[i]):.2f}")
        else:
            since = prev_low_since.get(key, now)
            state.low_since_s[key] = since
            action, reason = _scale_in(inp, cfg, state, i, n, mine, tier, now - since, p)
        out.append(Decision(now, name, tier, p, inp.threshold_of(tier, i),
                            float(tp.time_to_limit_s[i]), float(tp.forecast[i]),
                            float(tp.limit[i]), action, reason))
    return out


def _scale_in(inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, n: float,
              tiers: list[Tier], tier: Tier, idle_for_s: float, p: float
              ) -> tuple[ScalingAction | None, str]:
    """``tier``: the one the decision is filed under (CPU when judged)."""
    name, now = inp.containers[i], inp.now_s
    if idle_for_s < cfg.scale_in_after_s:
        return None, (f"scale-in: replicas idle for {idle_for_s:.0f} s of "
                      f"{cfg.scale_in_after_s:g} s")
    last = state.last_action_s.get(replicas_key(name))
    if last is not None and now - last < cfg.step_interval_s:
        return None, (f"scale-in: replicas idle; next step in "
                      f"{cfg.step_interval_s - (now - last):.0f} s")
    need, why = 1, ""
    for t in tiers:
        tp = inp.prediction.tiers[t]
        limit, u = float(tp.limit[i]), inp.usage_of(t, i)
        dp = inp.demand_peak_of(t, i)
        margin = cfg.peak_margin_for(t)
        k = replicas_needed(u * n, dp, limit, margin, cfg.idle_usage_fraction)
        if k > need:
            peak = max(dp if math.isfinite(dp) else 0.0, u * n)
            need, why = k, (f"the long peak {fmt(t, peak)} × {1 + margin:.2f} and the load "
                            f"{fmt(t, u * n)} need {k} replicas of {fmt(t, limit)}")
    if need >= n:
        return None, f"scale-in: replicas idle, but {why}"
    tp = inp.prediction.tiers[tier]
    reason = (f"scale-in: replicas idle for {idle_for_s:.0f} s: replicas {n:g} → {n - 1:g} "
              f"(never below the long peak's need, {need})")
    return ScalingAction(
        action_id=scale_out_action_id(name, now), now_s=now, container=name, tier=tier,
        old_limit=n, new_limit=n - 1, p_fail=p, threshold=inp.threshold_of(tier, i),
        time_to_limit_s=float(tp.time_to_limit_s[i]), forecast=float(tp.forecast[i]),
        reason=reason, kind=ActionKind.SCALE_OUT, app=inp.app_of(i), preemptive=False,
        cause="idle"), reason
