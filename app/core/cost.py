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

**Revert.** A pre-emptive raise that usage never reached (``raised_from``, kept in
:class:`PolicyState`: the limit B before it) is undone, before any step down, once the
tier's limit and usage are known, p_fail ≤ ``idle_p_fail_max``, B < L and the last
action was at least ``revert_after_s`` ago — low or not::

    m = reclaim_margin_fraction
    T = ⌈max(B, max(u, input peak_usage (when known)) × (1 + m))⌉

and a scale-down to T is proposed if T < L — unless the predictor's own forecast F
(``TierPrediction.forecast``: the usage expected at now + horizon) says T would be
needed again within the horizon::

    held  if  F is known and ⌈F × (1 + m)⌉ > T

A held revert is not made smaller instead (a partial revert on a ramp is raised again
a few ticks later: more actions, not fewer); it is tried again every tick, and goes
ahead as above once the forecast no longer exceeds T (the ramp has levelled off) —
unless usage has reached B meanwhile: then the raise was needed, and the engine drops
it from ``raised_from`` (only the idle step-down may lower the limit after that).
The decision's reason then says it was held (:func:`_revert`). A flat usage (F = u)
never holds a revert: ⌈u × (1 + m)⌉ ≤ T. Worked example: L = 1 GiB raised from
B = 256 MiB 1000 s ago (≥ 900 s), u = 100 MiB, input peak 300 MiB, margin 0.2,
F = 100 MiB → T = max(256 MiB, 360 MiB) = 360 MiB; ⌈120 MiB⌉ ≤ 360 MiB → reverted to
360 MiB. Held (a CPU ramp): L = 1.5 cores raised from B = 1.0 900 s ago,
u = 0.965 = input peak, F = 1.086 cores at +900 s → T = ⌈max(1.0, 1.158)⌉ = 1.16;
⌈1.086 × 1.2⌉ = 1.31 > 1.16 → held (reverting to 1.16 would be raised again
within the horizon: the predictor's busy line for 1.16 cores is 0.9 × 1.16 = 1.04 < F,
with the default ``cpu_busy_fraction`` 0.9).

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import partial
from itertools import repeat
from typing import Any, TypeVar

import numpy as np

from prescale.app.core.actions import ActionKind, Decision, ScalingAction, action_id_for
from prescale.app.core.contention import ReclaimCandidate
from prescale.app.core.guards import GuardConfig
from prescale.app.core.policy_types import (
    PolicyInput,
    PolicyState,
    fmt,
    fmt_all,
    format_each,
    key_of,
    round_up,
    round_up_array,
)
from prescale.app.core.predictor import TierPrediction
from prescale.app.core.sample import Tier

#: the tiers an idle container is scaled down in: what it holds of a node (memory, CPU).
#: A volume's size or a link's rate limit reserves nothing of the node here, and
#: shrinking them only brings ENOSPC or queueing nearer: they only grow.
SCALED_DOWN = (Tier.MEMORY, Tier.CPU)

_T = TypeVar("_T")


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
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, *, acting_only: bool = False,
) -> tuple[list[Decision], PolicyState]:
    """One decision per container and tier of ``inp.prediction``: a scale-down of the
    idle ones (unguarded: pass the result through :func:`app.core.guards.guard`), and
    the state with the low-usage runs updated. Runs of containers not in the snapshot
    are dropped. Each tier is decided column-wise (:func:`_tier_scale_downs`).

    ``acting_only=True`` (what :func:`app.core.policy.decide` reads): only the decisions
    with a scale-down, the same objects in the same order as the full list filtered; the
    others (and their reasons) are not built. The state is the same either way.
    """
    low_since: dict[str, float] = {}
    low_peak: dict[str, float] = {}
    decisions: list[Decision] = []
    for tier, tp in inp.prediction.tiers.items():
        if tier in SCALED_DOWN:
            decisions += _tier_scale_downs(inp, cfg, state, tier, tp, low_since, low_peak,
                                           acting_only)
    new_state = PolicyState(
        last_action_s=dict(state.last_action_s),
        last_direction=dict(state.last_direction),
        low_since_s=low_since,
        low_peak=low_peak,
        raised_from=dict(state.raised_from),
    )
    return decisions, new_state


_NO_LIMIT = "cost: no limit set: nothing to scale down"
_UNKNOWN = "cost: usage unknown"


def _tier_scale_downs(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, tier: Tier, tp: TierPrediction,
    low_since: dict[str, float], low_peak: dict[str, float], acting_only: bool = False,
) -> list[Decision]:
    """The decisions of one tier, in container order (``acting_only``: those with an
    action); the tier's low runs are added to ``low_since`` / ``low_peak``. Each row
    takes the first branch that applies:

    1. no limit (not finite, or ≤ 0): "no limit set";
    2. usage unknown;
    3. ``p_fail > idle_p_fail_max`` (or nan): "not idle: p_fail …";
    4. a pre-emptive raise to revert, due now (:func:`_revert`; row by row: rare); a
       revert held by the forecast gives its reason when 5 to 9 give no action;
    5. not low (usage ≥ ``idle_usage_fraction`` × limit): "not idle: usage …";
    6. low for less than ``idle_after``: "low for …";
    7. idle, stepped down less than ``step_interval_s`` ago: "next step down in …";
    8. idle, but the target T (module docstring) is not below the limit: "at peak …";
    9. idle: a scale-down to T.

    Each branch is a mask over all rows and its numbers (run peak, P, T) are computed
    for all its rows at once, with the float operations of one row at a time: Python's
    ``max(a, b)`` is ``np.where(b > a, b, a)`` (``a`` kept on ties and nan, as Python
    does), :func:`round_up` is :func:`round_up_array`. Python runs per row only to read
    the state, to format a reason and to fill the objects (column by column:
    :func:`_build`)."""
    names, now = inp.containers, inp.now_s
    n = len(names)
    tier_text = f"{tier}"  # a StrEnum formats as its value: formatted once
    limit = np.asarray(tp.limit, dtype=np.float64)
    usage = np.asarray(_tier_usage(inp, tier), dtype=np.float64)
    p = np.asarray(tp.p_fail, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        has_limit = np.isfinite(limit) & (limit > 0)
        known = has_limit & np.isfinite(usage)
        calm = known & (p <= cfg.idle_p_fail_max)
    low = is_low(limit, usage, p, cfg)  # the calm rows with usage < fraction × limit
    limits, usages, ps = limit.tolist(), usage.tolist(), p.tolist()
    p_max, frac = f"{cfg.idle_p_fail_max:.2f}", f"{cfg.idle_usage_fraction:.0%}"

    reasons: list[str] = [_NO_LIMIT] * n  # branch 1
    actions: list[ScalingAction | None] = [None] * n
    if not acting_only:  # (branches 1 to 3 and 5 have no action)
        _put(reasons, np.flatnonzero(has_limit & ~known).tolist(), repeat(_UNKNOWN))
        hot = np.flatnonzero(known & ~calm)
        _put(reasons, hot.tolist(), [f"cost: not idle: p_fail {q} > {p_max}"
                                     for q in _texts(p[hot], _TWO_PLACES)])
        rows = np.flatnonzero(calm & ~low).tolist()
        _put(reasons, rows, [f"cost: not idle: usage {fmt(tier_text, usages[i])} is "
                             f"{usages[i] / limits[i]:.0%} of the limit (>= {frac})"
                             for i in rows])

    idx = np.flatnonzero(low)  # branches 6 to 9
    if len(idx):
        acting, low_reasons, low_actions = _low_rows(inp, cfg, state, tier, tp, idx,
                                                     low_since, low_peak, acting_only)
        _put(reasons, acting if acting_only else idx.tolist(), low_reasons)
        _put(actions, acting, low_actions)

    if state.raised_from:  # branch 4, before 5 to 9: a revert due wins
        suffix, raised = key_of("", tier_text), state.raised_from
        for i in np.flatnonzero(calm).tolist():
            key = f"{names[i]}{suffix}"
            if key in raised:
                action, reason, held = _revert(inp, cfg, state, i, tier, limits[i],
                                               usages[i], ps[i], key)
                if action is not None:  # (without one, branches 5 to 9 give the reason,
                    actions[i], reasons[i] = action, reason
                elif held and actions[i] is None:  # but not why the raise was kept)
                    reasons[i] = reason

    thr = _tier_threshold(inp, tier)
    ttl = np.asarray(tp.time_to_limit_s, dtype=np.float64)
    forecast = np.asarray(tp.forecast, dtype=np.float64)
    if acting_only:  # the rows with an action, in row order
        at = [i for i, a in enumerate(actions) if a is not None]
        pick = np.array(at, dtype=np.intp)
        return _build(
            Decision, len(at), now_s=repeat(now), container=[names[i] for i in at],
            tier=repeat(tier), p_fail=[ps[i] for i in at], threshold=thr[pick].tolist(),
            time_to_limit_s=ttl[pick].tolist(), forecast=forecast[pick].tolist(),
            limit=[limits[i] for i in at], action=[actions[i] for i in at],
            reason=[reasons[i] for i in at])
    return _build(
        Decision, n, now_s=repeat(now), container=names, tier=repeat(tier), p_fail=ps,
        threshold=thr.tolist(), time_to_limit_s=ttl.tolist(), forecast=forecast.tolist(),
        limit=limits, action=actions, reason=reasons)


def _low_rows(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, tier: Tier, tp: TierPrediction,
    idx: np.ndarray, low_since: dict[str, float], low_peak: dict[str, float],
    acting_only: bool = False,
) -> tuple[list[int], list[str], list[ScalingAction]]:
    """Branches 6 to 9 of :func:`_tier_scale_downs` for the low rows ``idx`` (ascending):
    their runs go into ``low_since`` / ``low_peak``. Returns the rows that get a
    scale-down, every row's reason (in the order of ``idx``; ``acting_only``: those of
    the rows that get one, in their order) and the scale-downs."""
    names, now = inp.containers, inp.now_s
    tier_text = f"{tier}"
    rows = idx.tolist()
    suffix = key_of("", tier_text)
    keys = [f"{names[i]}{suffix}" for i in rows]
    usage = np.asarray(_tier_usage(inp, tier), dtype=np.float64)[idx]
    # (map over the dicts' own get: no Python frame per row)
    since = list(map(state.low_since_s.get, keys, repeat(now)))  # get(key, now)
    # the run's peak, kept as the state had it (an int stays an int): max(peak, usage)
    usages = usage.tolist()
    run_peak = list(map(max, map(state.low_peak.get, keys, usages), usages))
    low_since.update(zip(keys, since, strict=True))
    low_peak.update(zip(keys, run_peak, strict=True))

    limit = np.asarray(tp.limit, dtype=np.float64)[idx]
    idle_for = now - np.array(since, dtype=np.float64)
    idle_after = cfg.idle_after_for(tier)
    young = idle_for < idle_after  # branch 6
    last = list(map(state.last_action_s.get, keys, repeat(math.nan)))
    since_last = now - np.array(last, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # nan: never acted on, not waiting
        waiting = ~young & (since_last < cfg.step_interval_s)  # branch 7
    peak_in = inp.peak_usage.get(tier) if inp.peak_usage else None
    peak_in = np.zeros(len(rows)) if peak_in is None else np.asarray(peak_in, np.float64)[idx]
    peak_in = np.where(np.isfinite(peak_in), peak_in, 0.0)
    peak = np.array(run_peak, dtype=np.float64)  # P = max(run peak, u, input peak)
    peak = np.where(usage > peak, usage, peak)
    peak = np.where(peak_in > peak, peak_in, peak)
    margin = cfg.peak_margin_for(tier)
    keep = peak * (1 + margin)
    stepped = limit * (1 - cfg.step_down_fraction)
    target = round_up_array(tier_text, np.where(stepped > keep, stepped, keep))
    due = ~young & ~waiting
    with np.errstate(invalid="ignore"):
        at_peak = due & (target >= limit)  # branch 8
    down = due & ~at_peak  # branch 9 (also a nan target, as one row at a time)

    # the reasons: each number formatted as one row at a time formats it (fmt, :.2f, …);
    # usage and peaks seldom repeat, the others often (_texts formats each value once)
    p = np.asarray(tp.p_fail, dtype=np.float64)[idx]
    p_max, frac = f"{cfg.idle_p_fail_max:.2f}", f"{cfg.idle_usage_fraction:.0%}"
    as_limit = partial(fmt_all, tier_text)
    times = f"{1 + margin:.2f}"
    # acting_only: only the rows stepped down get a reason (the others' are not read)
    shown = np.flatnonzero(down) if acting_only else slice(None)
    low_shown = [f"usage {u} < {frac} of limit {lim}, p_fail {q} <= {p_max}"
                 for u, lim, q in zip(as_limit(usage[shown]), _texts(limit[shown], as_limit),
                                      _texts(p[shown], _TWO_PLACES), strict=True)]
    reasons: list[str] = [""] * len(rows)
    if acting_only:
        low = [""] * len(rows)
        _put(low, shown.tolist(), low_shown)
    else:
        low = low_shown
        pos = np.flatnonzero(young).tolist()
        after = f"{idle_after:g}"
        _put(reasons, pos, [f"cost: low for {t} s of {after} s ({low[j]})"
                            for j, t in zip(pos, _texts(idle_for[pos], _NO_PLACES),
                                            strict=True)])
        pos = np.flatnonzero(waiting).tolist()
        wait = cfg.step_interval_s - since_last[pos]
        _put(reasons, pos, [f"cost: idle ({low[j]}); next step down in {w} s"
                            for j, w in zip(pos, _texts(wait, _NO_PLACES), strict=True)])
        pos = np.flatnonzero(at_peak).tolist()
        _put(reasons, pos, [f"cost: idle ({low[j]}) but the limit is at peak {pk} × {times}"
                            for j, pk in zip(pos, as_limit(peak[pos]), strict=True)])
    pos = np.flatnonzero(down).tolist()
    at_most = f"{cfg.step_down_fraction:.0%}"
    down_reasons = [
        f"cost: idle for {t} s ({low[j]}): step down to {to} (at most {at_most}; never "
        f"below peak {pk} × {times})"
        for j, t, to, pk in zip(pos, _texts(idle_for[pos], _NO_PLACES),
                                _texts(target[pos], as_limit), as_limit(peak[pos]),
                                strict=True)]
    acting = idx[pos]
    if acting_only:
        reasons = down_reasons
    else:
        _put(reasons, pos, down_reasons)
    return acting.tolist(), reasons, _down_actions(
        inp, tier, acting, limit[pos].tolist(), target[pos].tolist(), down_reasons)


def _down_actions(inp: PolicyInput, tier: Tier, rows: np.ndarray, limits: list[float],
                  targets: list[float], reasons: list[str]) -> list[ScalingAction]:
    """:func:`_down_action` for each of ``rows`` (the same actions), built column-wise."""
    tp = inp.prediction.tiers[tier]
    names, now = inp.containers, inp.now_s
    id_suffix = action_id_for("", tier, now)  # "/memory@1700000000123"
    picked = rows.tolist()
    who = list(map(names.__getitem__, picked))
    return _build(
        ScalingAction, len(who), action_id=[f"{c}{id_suffix}" for c in who],
        now_s=repeat(now), container=who, tier=repeat(tier), old_limit=limits,
        new_limit=targets, p_fail=np.asarray(tp.p_fail, dtype=np.float64)[rows].tolist(),
        threshold=_tier_threshold(inp, tier)[rows].tolist(),
        time_to_limit_s=np.asarray(tp.time_to_limit_s, dtype=np.float64)[rows].tolist(),
        forecast=np.asarray(tp.forecast, dtype=np.float64)[rows].tolist(), reason=reasons,
        kind=repeat(ActionKind.RESIZE),
        app=repeat("") if inp.apps is None else list(map(inp.apps.__getitem__, picked)),
        preemptive=repeat(False), cause=repeat("idle"))


def _tier_threshold(inp: PolicyInput, tier: Tier) -> np.ndarray:
    """``[N]`` :meth:`PolicyInput.threshold_of` of ``tier`` for every container."""
    arr = inp.tier_thresholds.get(tier) if inp.tier_thresholds else None
    return np.asarray(inp.thresholds if arr is None else arr, dtype=np.float64)


def _put(out: list[Any], rows: Iterable[int], values: Iterable[Any]) -> None:
    """``out[i] = v`` for each row i and its value v (``values`` may be a repeat)."""
    for i, v in zip(rows, values, strict=False):
        out[i] = v


def _texts(values: np.ndarray, texts_of: Callable[[np.ndarray], list[str]]) -> list[str]:
    """``texts_of(values)`` (one text per value), each distinct value formatted once
    (limits, targets, run starts, p_fail 0 or 1 repeat across a fleet). Distinct by
    their bits: -0.0 and 0.0 are formatted apart. Example:
    ``_texts(np.array([1.0, 0.5, 1.0]), _TWO_PLACES)`` → ``["1.00", "0.50", "1.00"]``,
    formatting 0.5 and 1.0."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    distinct, inverse = np.unique(bits, return_inverse=True)
    texts = texts_of(distinct.view(np.float64))
    return list(map(texts.__getitem__, inverse.tolist()))


_TWO_PLACES = partial(format_each, "%.2f")  # f"{v:.2f}" of each
_NO_PLACES = partial(format_each, "%.0f")


def _build(cls: type[_T], n: int, **columns: Iterable[Any]) -> list[_T]:
    """``[cls(**{f: columns[f][i] for each field f}) for i in range(n)]`` — the same
    objects — for a dataclass without ``__post_init__`` (ScalingAction, Decision,
    ReclaimCandidate), built column by column: ``n`` × ``object.__new__``, then each field
    set over the whole column in C (its slot's ``__set__``, else
    ``object.__setattr__``), as the generated ``__init__`` sets them, without its Python
    frame per object (half the time for a ScalingAction). Every field is given: a
    missing one raises KeyError (test_cost checks the three classes). A constant column
    is ``itertools.repeat(value)``."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__: build it with its __init__")
    objs = list(map(object.__new__, repeat(cls, n)))
    slots = getattr(cls, "__slots__", ())
    for f in fields(cls):  # type: ignore[arg-type]
        column = columns.pop(f.name)
        if isinstance(column, list) and len(column) != n:
            raise ValueError(f"{cls.__name__}.{f.name}: {len(column)} values for {n} objects")
        if f.name in slots:
            setting = map(getattr(cls, f.name).__set__, objs, column)
        else:
            setting = map(object.__setattr__, objs, repeat(f.name), column)
        deque(setting, maxlen=0)  # runs the map to its end, keeping nothing
    if columns:
        raise TypeError(f"{cls.__name__} has no field {sorted(columns)}")
    return objs


def _revert(
    inp: PolicyInput, cfg: CostConfig, state: PolicyState, i: int, tier: Tier,
    limit: float, usage: float, p: float, key: str,
) -> tuple[ScalingAction | None, str, bool]:
    """Undo a pre-emptive raise that was not needed (module docstring, "Revert"): the
    action (or None), its reason, and whether the forecast held it. Without an action
    the reason is only used when held: otherwise the row's later branches give it.

    Held example (CPU): raised 1.00 → 1.50 cores, u = 0.965, forecast 1.086 at +900 s →
    "cost: revert held: usage 0.96 cores is forecast to reach 1.09 cores within 900 s;
    × 1.20 that needs 1.31 cores, above the revert target 1.16 cores: the pre-emptive
    raise from 1.00 cores is kept"."""
    base = state.raised_from.get(key)
    if base is None or not base < limit:
        return None, "", False
    last = state.last_action_s.get(key)
    if last is not None and inp.now_s - last < cfg.revert_after_s:
        return None, (f"cost: raised from {fmt(tier, base)} {inp.now_s - last:.0f} s ago; "
                      f"reverted if still not needed after {cfg.revert_after_s:g} s"), False
    peak_in = inp.peak_of(tier, i)
    peak = max(usage, peak_in if math.isfinite(peak_in) else 0.0)
    target = round_up(tier, max(base, peak * (1 + cfg.reclaim_margin_fraction)))
    if not target < limit:
        return None, (f"cost: raised from {fmt(tier, base)}, but the long peak "
                      f"{fmt(tier, peak)} × {1 + cfg.reclaim_margin_fraction:.2f} needs it"
                      ), False
    forecast = float(inp.prediction.tiers[tier].forecast[i])
    need = round_up(tier, forecast * (1 + cfg.reclaim_margin_fraction))
    if math.isfinite(forecast) and need > target:
        return None, (
            f"cost: revert held: usage {fmt(tier, usage)} is forecast to reach "
            f"{fmt(tier, forecast)} within {inp.prediction.horizon_s:g} s; × "
            f"{1 + cfg.reclaim_margin_fraction:.2f} that needs {fmt(tier, need)}, above the "
            f"revert target {fmt(tier, target)}: the pre-emptive raise from "
            f"{fmt(tier, base)} is kept"), True
    action, reason = _down_action(
        inp, i, tier, limit, target, p,
        f"cost: revert: the pre-emptive raise from {fmt(tier, base)} was not needed (usage "
        f"{fmt(tier, usage)} never reached it, p_fail {p:.2f}): back to {fmt(tier, target)} "
        f"(never below the long peak {fmt(tier, peak)} × "
        f"{1 + cfg.reclaim_margin_fraction:.2f})")
    return action, reason, False


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
    (the low runs are only kept by the cost pass). Per tier, in the order of
    ``state.low_since_s``.

    Column-wise, as the cost pass: the runs are matched to the rows low now by their
    key (built per row; no key of the state is parsed), and the floors of a tier are
    computed for all its candidates at once (``max`` as ``np.where``, :func:`round_up`
    as :func:`round_up_array`); the guards' bounds and safety floor are asked per row."""
    if not cfg.enabled:
        return []
    out: list[ReclaimCandidate] = []
    now, names, runs = inp.now_s, inp.containers, state.low_since_s
    keys: list[str] | None = None  # the runs' keys, listed once
    for tier, tp in inp.prediction.tiers.items():
        if tier not in SCALED_DOWN or not runs:
            continue
        tier_text = f"{tier}"
        usage = np.asarray(_tier_usage(inp, tier), dtype=np.float64)
        suffix = key_of("", tier_text)
        row_of = {f"{names[i]}{suffix}": i for i in
                  np.flatnonzero(is_low(tp.limit, usage, tp.p_fail, cfg)).tolist()}
        # the runs of the rows low now (the run is kept only while it is), in state order
        row = np.fromiter(map(row_of.get, runs, repeat(-1)), dtype=np.intp, count=len(runs))
        since = np.fromiter(runs.values(), dtype=np.float64, count=len(runs))
        with np.errstate(invalid="ignore"):  # a nan start is not "too recent"
            pick = np.flatnonzero((row >= 0) & ~(now - since < cfg.reclaim_after_s))
        if not len(pick):
            continue
        keys = list(runs) if keys is None else keys
        idx = row[pick]
        rows, keys_now = idx.tolist(), [keys[j] for j in pick.tolist()]
        limit, usage = np.asarray(tp.limit, dtype=np.float64)[idx], usage[idx]
        # P = max(run peak, u, long peak when known)
        peak = np.array(list(map(state.low_peak.get, keys_now, usage.tolist())),
                        dtype=np.float64)  # get(key, usage)
        peak = np.where(usage > peak, usage, peak)
        peaks = (long_peak or {}).get(tier)
        if peaks is not None:
            longest = np.asarray(peaks, dtype=np.float64)[idx]
            peak = np.where(np.isfinite(longest) & (longest > peak), longest, peak)
        who = list(map(names.__getitem__, rows))
        apps = [""] * len(rows) if inp.apps is None else list(map(inp.apps.__getitem__, rows))
        labels = repeat(None) if inp.labels is None else list(map(inp.labels.__getitem__, rows))
        if guards.has_levels(inp.labels):
            bounds = list(map(guards.bounds_for, who, apps, repeat(tier_text), labels))
            lo = np.array([b[0] for b in bounds], dtype=np.float64)  # of (lo, hi)
        else:  # the global pair for every row
            lo = np.full(len(rows), guards.bounds_for("", "", tier_text)[0])
        safety = guards.floors_for(tier_text, usage)  # floor_for of each row
        held = inp.floor.get(tier_text) if inp.floor else None
        held = np.zeros(len(rows)) if held is None else np.asarray(held, np.float64)[idx]
        # floor = ⌈max(P × (1 + margin), safety (inf when not finite), lo, H)⌉
        floor = peak * (1 + cfg.reclaim_margin_fraction)
        for bound in (np.where(np.isfinite(safety), safety, np.inf), lo, held):
            floor = np.where(bound > floor, bound, floor)
        floor = round_up_array(tier_text, floor)
        with np.errstate(invalid="ignore"):
            room = np.flatnonzero(floor < limit).tolist()
        out += _build(ReclaimCandidate, len(room), container=[who[j] for j in room],
                      tier=repeat(tier), limit=limit[room].tolist(),
                      floor=floor[room].tolist(), app=[apps[j] for j in room])
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
