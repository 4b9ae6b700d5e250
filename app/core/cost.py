"""Cost: scale idle containers down, gradually and safely, and count what it saves.

**Idle.** Per container and tier (independently: a CPU-idle cache may still need its
memory), a *low* tick is one where the limit L is finite, usage u is known,
u < ``idle_usage_fraction`` × L and p_fail ≤ ``idle_p_fail_max``. A run of
consecutive low ticks starts at ``low_since_s`` (kept in :class:`PolicyState`, with
the run's highest usage ``low_peak``); any other tick ends it. The tier is *idle*
once the run has lasted ``idle_after_s``.

**Step down.** An idle tier whose last action was at least ``step_interval_s`` ago
gets the target::

    P = max(run peak, input peak_usage (when known), u)
    T = ⌈max(P × (1 + peak_margin_fraction), L × (1 − step_down_fraction))⌉

and a scale-down is proposed if T < L. The guards (:mod:`app.core.guards`) then
apply as to any action; for memory they never go below ⌈u × (1 + safety margin)⌉
(the hard invariant).

Worked example: L = 1 GiB, u = 100 MiB, input peak 300 MiB, run peak 120 MiB,
peak margin 0.2, step 0.1, low for 3600 s ≥ idle_after 3600 s, p_fail 0.01 ≤ 0.05 →
P = 300 MiB, T = max(360 MiB, 921.6 MiB) = 921.6 MiB (page-rounded) → one step of
10 %; repeated every ``step_interval_s`` while the tier stays idle, the limit
converges to 360 MiB — or stops earlier when u reaches ``idle_usage_fraction`` of it.

**Reclaim under contention.** When a tick's scale-ups need more than the pool has
free, :func:`app.core.contention.arbitrate` shrinks idle containers first. The
candidates come from :func:`reclaim_candidates`: every container and tier that is low
(as above) and has been low for at least ``reclaim_after_s`` — much shorter than
``idle_after_s``: this only happens when another container needs the room now. Each
gets a floor it may be shrunk to *at once* (not in 10 % steps)::

    P = max(run peak, long peak (when known), u)
    floor = ⌈max(P × (1 + reclaim_margin_fraction), memory: u × (1 + safety margin), lo, H)⌉

with ``lo`` the tier's lower bound (container > app > global), H the OOM
stabilisation floor (``PolicyInput.floor``, :mod:`app.core.oom`) and the long peak the
highest usage in the last ``long_peak_s`` (the engine keeps it:
:class:`app.core.peaks.PeakTracker`, and folds in the window's maximum). Worked
example: limit 1600 MiB, u = 180 MiB, the long peak 614 MiB (an hourly burst), run peak 200 MiB,
reclaim margin 0.2, safety margin 0.1, lo 32 MiB, low for 600 s ≥ 300 s →
P = 614 MiB, floor = max(736.8, 198, 32) = 736.8 MiB (page-rounded): up to 863 MiB
can go to a container that needs it, and the next burst still fits.

**Savings.** :class:`SavingsLedger` is a pure accumulator over ticks: per
container and tier it holds the reduction R (how far below its pre-scale-down value
the limit is now: a decrease adds old − new; an increase takes new − old back, down
to 0), and per tier the integral Σ R × Δt, reported in bytes·h and core·h
(:meth:`SavingsLedger.saved_hours`). Worked example in :func:`accumulate_savings`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from prescale.app.core.actions import ActionKind, Decision, ScalingAction, action_id_for
from prescale.app.core.contention import ReclaimCandidate
from prescale.app.core.guards import GuardConfig
from prescale.app.core.policy_types import PolicyInput, PolicyState, fmt, key_of, round_up
from prescale.app.core.sample import Tier

#: the tiers an idle container is scaled down in: what it holds of a node (memory, CPU).
#: A volume's size or a link's rate limit reserves nothing of the node here, and
#: shrinking them only brings ENOSPC or queueing nearer: they only grow.
SCALED_DOWN = (Tier.MEMORY, Tier.CPU)


@dataclass(frozen=True)
class CostConfig:
    """Scale-down of idle containers (module docstring). The field defaults are
    prescale's defaults (``cost.*`` in the settings read them: :mod:`app.core.config`)."""

    enabled: bool = True
    idle_usage_fraction: float = 0.5
    idle_after_s: float = 259_200.0
    idle_p_fail_max: float = 0.05
    peak_margin_fraction: float = 1.0
    step_down_fraction: float = 0.1
    step_interval_s: float = 600.0
    reclaim_after_s: float = 300.0
    long_peak_s: float = 604_800.0
    reclaim_margin_fraction: float = 0.2
    revert_after_s: float = 900.0
    #: replicas idle this long are scaled in, one at a time (:mod:`app.core.scale_in`)
    scale_in_after_s: float = 900.0
    #: per-tier overrides of ``idle_after_s`` and ``peak_margin_fraction`` (a CPU quota
    #: set too low throttles; a memory limit set too low kills)
    tier_idle_after_s: Mapping[str, float] = field(default_factory=lambda: {"cpu": 3600.0})
    tier_peak_margin_fraction: Mapping[str, float] = field(
        default_factory=lambda: {"cpu": 0.2})

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("idle_usage_fraction", 0.0, 1.0),
            ("idle_p_fail_max", 0.0, 1.0),
            ("step_down_fraction", 0.0, 1.0),
            ("peak_margin_fraction", 0.0, 10.0),
            ("reclaim_margin_fraction", 0.0, 10.0),
            ("idle_after_s", 0.0, math.inf),
            ("step_interval_s", 0.0, math.inf),
            ("reclaim_after_s", 0.0, math.inf),
            ("revert_after_s", 0.0, math.inf),
            ("scale_in_after_s", 0.0, math.inf),
            ("long_peak_s", 0.0, math.inf),
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi and not math.isinf(v)):
                raise ValueError(f"CostConfig.{name} must be a finite number in [{lo}, {hi}], "
                                 f"got {v!r}")
        for name, hi in (("tier_idle_after_s", math.inf), ("tier_peak_margin_fraction", 10.0)):
            for tier, v in getattr(self, name).items():
                if not (isinstance(v, (int, float)) and 0 <= v <= hi and math.isfinite(v)):
                    raise ValueError(f"CostConfig.{name}[{tier}] must be a finite number in "
                                     f"[0, {hi}], got {v!r}")
        if self.step_down_fraction == 0:
            raise ValueError("CostConfig.step_down_fraction must be > 0")

    @classmethod
    def from_settings(cls, cost: Any) -> CostConfig:
        """From ``settings.cost`` (duck-typed): every field, by the same name."""
        return cls(**{f.name: getattr(cost, f.name) for f in fields(cls)})

    def idle_after_for(self, tier: str) -> float:
        """``tier_idle_after_s[tier]``, else ``idle_after_s``."""
        return _tier_get(self.tier_idle_after_s, tier, self.idle_after_s)

    def peak_margin_for(self, tier: str) -> float:
        """``tier_peak_margin_fraction[tier]``, else ``peak_margin_fraction``."""
        return _tier_get(self.tier_peak_margin_fraction, tier, self.peak_margin_fraction)


def _tier_get(m: Mapping[str, float], tier: str, default: float) -> float:
    if not m:  # no per-tier override: skip the lookup
        return float(default)
    if isinstance(tier, str):  # a Tier (a StrEnum: same hash and equality as its value)
        return float(m.get(tier, default))
    return float(m.get(str(getattr(tier, "value", tier)), default))


def is_low(limit: Any, usage: Any, p_fail: Any, cfg: CostConfig) -> np.ndarray:
    """The *low* test (module docstring, "Idle"), elementwise over arrays (or numbers):
    the limit is finite and > 0, usage is known, ``p_fail <= idle_p_fail_max`` and
    ``usage < idle_usage_fraction × limit``. The one definition the idle scale-down
    (:func:`propose_scale_downs`), the reclaim under contention
    (:func:`reclaim_candidates`) and the policy's sparse tick use.

    Worked example (defaults 0.5 and 0.05): limit 1 GiB, usage 100 MiB, p_fail 0.01 →
    low; usage 600 MiB (≥ 512 MiB), or p_fail 0.1 or nan, or usage nan, or limit inf
    → not low."""
    limit = np.asarray(limit, dtype=np.float64)
    usage = np.asarray(usage, dtype=np.float64)
    p = np.asarray(p_fail, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(limit) & (limit > 0) & np.isfinite(usage)
                & (p <= cfg.idle_p_fail_max) & (usage < cfg.idle_usage_fraction * limit))


def _tier_usage(inp: PolicyInput, tier: Tier) -> np.ndarray:
    """``[N]`` usage of ``tier`` (nan where, or when, it is not known)."""
    u = inp.usage.get(tier) if inp.usage else None
    return np.full(len(inp.containers), np.nan) if u is None else u


def propose_scale_downs(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """One decision per container and tier of ``inp.prediction``: a scale-down of the
    idle ones (unguarded: pass the result through :func:`app.core.guards.guard`), and
    the state with the low-usage runs updated. Runs of containers not in the snapshot
    are dropped.
    """
    now = inp.now_s
    low_since: dict[str, float] = {}
    low_peak: dict[str, float] = {}
    decisions: list[Decision] = []
    for tier, tp in inp.prediction.tiers.items():
        if tier not in SCALED_DOWN:
            continue
        tier_text = f"{tier}"  # key_of(name, tier), with the tier formatted once
        lows = is_low(tp.limit, _tier_usage(inp, tier), tp.p_fail, cfg).tolist()
        for i, name in enumerate(inp.containers):
            key = f"{name}/{tier_text}"
            p = float(tp.p_fail[i])
            limit = float(tp.limit[i])
            usage = inp.usage_of(tier, i)
            action = None
            if not (math.isfinite(limit) and limit > 0):
                reason = "cost: no limit set: nothing to scale down"
            elif not math.isfinite(usage):
                reason = "cost: usage unknown"
            elif not p <= cfg.idle_p_fail_max:
                reason = f"cost: not idle: p_fail {p:.2f} > {cfg.idle_p_fail_max:.2f}"
            else:
                low = lows[i]
                if low:
                    since = state.low_since_s.get(key, now)
                    run_peak = max(state.low_peak.get(key, usage), usage)
                    low_since[key], low_peak[key] = since, run_peak
                action, reason = _revert(inp, cfg, state, i, tier, limit, usage, p, key)
                if action is None and low:
                    action, reason = _step_down(inp, cfg, state, i, tier, limit, usage, p,
                                                now - since, run_peak, key)
                elif action is None:
                    reason = (f"cost: not idle: usage {fmt(tier, usage)} is {usage / limit:.0%} "
                              f"of the limit (>= {cfg.idle_usage_fraction:.0%})")
            decisions.append(Decision(
                now, name, tier, p, inp.threshold_of(tier, i), float(tp.time_to_limit_s[i]),
                float(tp.forecast[i]), limit, action, reason,
            ))
    new_state = PolicyState(
        last_action_s=dict(state.last_action_s),
        last_direction=dict(state.last_direction),
        low_since_s=low_since,
        low_peak=low_peak,
        raised_from=dict(state.raised_from),
    )
    return decisions, new_state


def _revert(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, tier: Tier,
    limit: float, usage: float, p: float, key: str,
) -> tuple[ScalingAction | None, str]:
    """Undo a pre-emptive raise that was not needed (module docstring, "Revert")."""
    base = state.raised_from.get(key)
    if base is None or not base < limit:
        return None, ""
    last = state.last_action_s.get(key)
    if last is not None and inp.now_s - last < cfg.revert_after_s:
        return None, (f"cost: raised from {fmt(tier, base)} {inp.now_s - last:.0f} s ago; "
                      f"reverted if still not needed after {cfg.revert_after_s:g} s")
    peak_in = inp.peak_of(tier, i)
    peak = max(usage, peak_in if math.isfinite(peak_in) else 0.0)
    target = round_up(tier, max(base, peak * (1 + cfg.reclaim_margin_fraction)))
    if not target < limit:
        return None, (f"cost: raised from {fmt(tier, base)}, but the long peak "
                      f"{fmt(tier, peak)} × {1 + cfg.reclaim_margin_fraction:.2f} needs it")
    return _down_action(
        inp, i, tier, limit, target, p,
        f"cost: revert: the pre-emptive raise from {fmt(tier, base)} was not needed (usage "
        f"{fmt(tier, usage)} never reached it, p_fail {p:.2f}): back to {fmt(tier, target)} "
        f"(never below the long peak {fmt(tier, peak)} × "
        f"{1 + cfg.reclaim_margin_fraction:.2f})")


def _step_down(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, tier: Tier,
    limit: float, usage: float, p: float, idle_for_s: float, run_peak: float,
    key: str | None = None,
) -> tuple[ScalingAction | None, str]:
    name, now = inp.containers[i], inp.now_s
    key = key_of(name, tier) if key is None else key
    low = (f"usage {fmt(tier, usage)} < {cfg.idle_usage_fraction:.0%} of limit "
           f"{fmt(tier, limit)}, p_fail {p:.2f} <= {cfg.idle_p_fail_max:.2f}")
    idle_after = cfg.idle_after_for(tier)
    if idle_for_s < idle_after:
        return None, f"cost: low for {idle_for_s:.0f} s of {idle_after:g} s ({low})"
    last = state.last_action_s.get(key)
    if last is not None and now - last < cfg.step_interval_s:
        wait = cfg.step_interval_s - (now - last)
        return None, f"cost: idle ({low}); next step down in {wait:.0f} s"
    peak_in = inp.peak_of(tier, i)
    peak = max(run_peak, usage, peak_in if math.isfinite(peak_in) else 0.0)
    margin = cfg.peak_margin_for(tier)
    keep = peak * (1 + margin)
    target = round_up(tier, max(keep, limit * (1 - cfg.step_down_fraction)))
    if target >= limit:
        return None, (f"cost: idle ({low}) but the limit is at peak {fmt(tier, peak)} × "
                      f"{1 + margin:.2f}")
    reason = (f"cost: idle for {idle_for_s:.0f} s ({low}): step down to {fmt(tier, target)} "
              f"(at most {cfg.step_down_fraction:.0%}; never below peak {fmt(tier, peak)} × "
              f"{1 + margin:.2f})")
    return _down_action(inp, i, tier, limit, target, p, reason)


def _down_action(inp: PolicyInput, i: int, tier: Tier, limit: float, target: float, p: float,
                 reason: str) -> tuple[ScalingAction, str]:
    tp = inp.prediction.tiers[tier]
    name, now = inp.containers[i], inp.now_s
    action = ScalingAction(
        action_id=action_id_for(name, tier, now),
        now_s=now,
        container=name,
        tier=tier,
        old_limit=limit,
        new_limit=target,
        p_fail=p,
        threshold=inp.threshold_of(tier, i),
        time_to_limit_s=float(tp.time_to_limit_s[i]),
        forecast=float(tp.forecast[i]),
        reason=reason,
        kind=ActionKind.RESIZE,
        app=inp.app_of(i),
        preemptive=False,
        cause="idle",
    )
    return action, reason


def reclaim_candidates(
    inp: PolicyInput, cfg: CostConfig, guards: GuardConfig, state: PolicyState, *,
    long_peak: Mapping[Tier, np.ndarray] | None = None,
) -> list[ReclaimCandidate]:
    """The containers and tiers that may be shrunk to serve others under contention
    (module docstring, "Reclaim"): low now, low for at least ``cfg.reclaim_after_s``
    according to ``state`` (the state :func:`propose_scale_downs` returned this tick),
    and a floor below the limit. ``long_peak``: tier → ``[N]`` highest usage in the
    last ``cfg.long_peak_s`` (nan = unknown). Empty when ``cfg.enabled`` is false
    (the low runs are only kept by the cost pass)."""
    if not cfg.enabled:
        return []
    out: list[ReclaimCandidate] = []
    now = inp.now_s
    pos = {name: i for i, name in enumerate(inp.containers)}
    for tier, tp in inp.prediction.tiers.items():
        if tier not in SCALED_DOWN:
            continue
        tier_text = f"{tier}"
        peaks = (long_peak or {}).get(tier)
        lows: list[bool] | None = None
        for key, since in state.low_since_s.items():
            name, _, t = key.rpartition("/")
            if t != tier_text or now - since < cfg.reclaim_after_s:
                continue
            i = pos.get(name)
            if i is None:
                continue
            if lows is None:
                lows = is_low(tp.limit, _tier_usage(inp, tier), tp.p_fail, cfg).tolist()
            if not lows[i]:
                continue  # not low this tick (the run is kept only while it is)
            limit, usage = float(tp.limit[i]), inp.usage_of(tier, i)
            peak = max(state.low_peak.get(key, usage), usage)
            if peaks is not None and math.isfinite(float(peaks[i])):
                peak = max(peak, float(peaks[i]))
            app = inp.app_of(i)
            lo, _ = guards.bounds_for(name, app, tier_text, inp.labels_of(i))
            safety = guards.floor_for(tier_text, usage)
            floor = round_up(tier, max(peak * (1 + cfg.reclaim_margin_fraction),
                                       safety if math.isfinite(safety) else math.inf, lo,
                                       inp.floor_of(tier_text, i)))
            if floor < limit:
                out.append(ReclaimCandidate(name, tier, limit, floor, app))
    return out


# -- resource-hours saved -------------------------------------------------------------


@dataclass(frozen=True)
class SavingsLedger:
    """Accumulated savings (module docstring). ``reduction``: ``"container/tier"`` →
    current limit reduction (bytes / cores); ``saved_s``: tier → Σ reduction × seconds
    (byte·s / core·s); ``last_s``: the time integrated up to (None before the first
    tick)."""

    last_s: float | None = None
    reduction: Mapping[str, float] = field(default_factory=dict)
    saved_s: Mapping[str, float] = field(default_factory=dict)

    def saved_hours(self) -> dict[str, float]:
        """Per tier: bytes·h for memory, core·h for CPU."""
        return {tier: v / 3600.0 for tier, v in self.saved_s.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"last_s": self.last_s, "reduction": dict(self.reduction),
                "saved_s": dict(self.saved_s)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SavingsLedger:
        try:
            last = data.get("last_s")
            return cls(
                last_s=None if last is None else float(last),
                reduction={str(k): float(v) for k, v in data.get("reduction", {}).items()},
                saved_s={str(k): float(v) for k, v in data.get("saved_s", {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"SavingsLedger: malformed checkpoint: {exc}") from exc


def accumulate_savings(
    ledger: SavingsLedger,
    now_s: float,
    changes: Iterable[Any] = (),
    live: Iterable[str] | None = None,
) -> SavingsLedger:
    """Integrate the current reductions from ``ledger.last_s`` to ``now_s``, then apply
    the limit ``changes`` made at ``now_s``.

    ``changes``: objects with ``container``, ``tier``, ``old_limit``, ``new_limit``
    (an applied :class:`~app.core.actions.ActionResult` — the real limits — or a
    :class:`ScalingAction` for what recommend mode would have saved); those with a
    ``kind`` other than ``RESIZE`` and non-finite limits are skipped. ``live``: when
    given, reductions of containers not in it are dropped *before* integrating (a
    container that is gone saves nothing).

    Worked example (memory): t = 0, 1 GiB → 768 MiB (R = 256 MiB); t = 1800 s: +256 MiB
    × 0.5 h = 128 MiB·h, then 768 → 512 MiB (R = 512 MiB); t = 3600 s: +512 MiB × 0.5 h
    = 256 MiB·h → 384 MiB·h in all. A scale-up 512 → 640 MiB at 3600 s leaves
    R = 384 MiB.

    A ``now_s`` earlier than ``last_s`` (the wall clock was stepped back between two
    runs: within a run the loop's clock never steps) integrates nothing and restarts the
    interval at ``now_s``: savings are never negative, and the loop never stops over a
    clock. Example: last_s 1000, now_s 400, R = 256 MiB → nothing added, last_s = 400.

    Raises :class:`ValueError` if ``now_s`` is not finite.
    """
    if not math.isfinite(now_s):
        raise ValueError(f"accumulate_savings: now_s must be finite, got {now_s!r}")
    reduction = dict(ledger.reduction)
    if live is not None:
        alive = set(live)
        reduction = {k: v for k, v in reduction.items() if k.rsplit("/", 1)[0] in alive}
    saved = dict(ledger.saved_s)
    dt = 0.0 if ledger.last_s is None else max(now_s - ledger.last_s, 0.0)
    for key, r in reduction.items():
        tier = key.rsplit("/", 1)[1]
        saved[tier] = saved.get(tier, 0.0) + r * dt
    for ch in changes:
        if getattr(ch, "kind", ActionKind.RESIZE) is not ActionKind.RESIZE:
            continue
        old, new = float(ch.old_limit), float(ch.new_limit)
        if not (math.isfinite(old) and math.isfinite(new)) or old == new:
            continue
        tier = str(getattr(ch.tier, "value", ch.tier))
        key = key_of(ch.container, tier)
        r = reduction.get(key, 0.0) + (old - new)
        reduction[key] = max(r, 0.0)
        saved.setdefault(tier, 0.0)
    reduction = {k: v for k, v in reduction.items() if v > 0}
    return SavingsLedger(last_s=float(now_s), reduction=reduction, saved_s=saved)
