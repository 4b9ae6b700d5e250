"""Scaling policies: proportional, pre-emptive buffer, multi-tier, and idle scale-down.

Each policy is a pure function ``(inp: PolicyInput, cfg, state) -> (decisions, state)``
of one tick's snapshot (:class:`PolicyInput`, which carries ``now_s``), its config
(:class:`PolicyConfig`; the ``policy`` settings group is accepted too, and built into
one) and its state (:class:`PolicyState`). It reads no clock and touches nothing. It
returns one :class:`Decision` per container and tier, with an action or the reason
there is none. Every proposed action passes the guards of :mod:`app.core.guards`
(bounds, max step, cooldown, hysteresis, memory safety floor, escalation to a
scale-out); :func:`decide` runs the configured scale-up policy and the idle
scale-down of :mod:`app.core.cost` together, at most one action per container and
tier per tick.

A container is acted on, per tier, when its limit is finite and
``p_fail >= threshold``. The policies differ in the target limit they ask for
(memory in bytes, CPU in cores; m = ``margin_fraction``):

**preemptive_buffer** — a fixed buffer above the forecast::

    base = max(forecast, limit)          (the limit if the forecast is unknown)
    new  = base + max(m × base, buffer_abs[tier])
    CPU:  new = max(new, limit × (1 + cpu_step_fraction))

A throttled container's demand above its quota cannot be seen, so CPU grows at least
by a step. Worked example (memory): limit 128 MiB, forecast 160 MiB, p_fail 0.98 ≥ 0.5,
m = 0.25, no absolute buffer → 160 × 1.25 = 200 MiB. With ``buffer_abs`` 64 MiB:
160 + max(40, 64) = 224 MiB. CPU: quota 0.25, forecast 0.25, m = 0.25, step 0.5 →
max(0.3125, 0.375) = 0.375 → 0.38 cores.

**proportional** — grow in proportion to the predicted increase in load, so the
headroom *ratio* limit / usage is the same at the horizon as now::

    new = limit × max(forecast / usage, 1) × (1 + m)
    CPU:  new = max(new, limit × (1 + cpu_step_fraction))

Worked example (memory): limit 200 MiB, usage 100 MiB, forecast 150 MiB, m = 0.1 →
200 × 1.5 × 1.1 = 330 MiB (the buffer rule would give max(150, 200) × 1.1 =
220 MiB: a container that keeps half its limit free keeps doing so). Where usage is
unknown or ≤ 0, or the forecast unknown, that container falls back to the buffer rule
and its reason says so. It needs ``PolicyInput.usage``.

**multi_tier** — every tier (memory, CPU, and disk or network when the prediction
has them) is sized independently: its own p_fail against its own threshold
(``PolicyInput.tier_thresholds``, default the container's), its own forecast (the
predicted bottleneck), and its own rule (``multi_tier_methods``; default memory:
buffer, CPU: proportional, others: buffer) and margin (``multi_tier_margins``).
Decisions are ordered by time to limit, shortest first (unknown last), so the
guards, the pool and the coordinator see the most urgent tier of the tick first;
when several tiers of one container act, each reason names its rank ("bottleneck
1 of 2" …), and every acting decision lists how the bottleneck was judged: each tier of
the container with a limit, by time to limit, with its p_fail ("bottleneck judged over
3 tiers by time to limit: disk 12 s (p_fail 0.97), memory 40 s (p_fail 0.60), cpu never
(p_fail 0.00)"). Worked example: memory p 0.9, time to limit 12 s, CPU p 0.7, 40 s,
both above 0.5 → memory first (buffer), then CPU (proportional).

**scale_down_idle** — :mod:`app.core.cost`: idle tiers step down towards their
observed peak × (1 + margin), never memory below usage × (1 + safety margin).

:func:`target_limit` is the buffer rule, rounded and clamped to the bounds, for one
value (kept from the spine).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from itertools import repeat
from typing import Any

import numpy as np

from prescale.app.core.actions import ActionKind, Decision, ScalingAction, action_id_for
from prescale.app.core.cost import (
    SCALED_DOWN,
    CostConfig,
    _build,
    is_low,
    propose_scale_downs,
)
from prescale.app.core.guards import GuardConfig, guard, tier_map
from prescale.app.core.oom import OomConfig, bump_target
from prescale.app.core.policy_types import (
    PAGE_BYTES,
    PolicyInput,
    PolicyState,
    fmt,
    fmt_all,
    round_up,
)
from prescale.app.core.sample import Tier
from prescale.app.core.scale_in import propose_scale_ins

__all__ = [
    "KINDS",
    "PAGE_BYTES",
    "SIZING_METHODS",
    "PolicyConfig",
    "PolicyInput",
    "PolicyState",
    "decide",
    "multi_tier",
    "preemptive_buffer",
    "proportional",
    "scale_down_idle",
    "target_limit",
]

#: The scale-up policies (``policy.kind``). The one list of their names: the settings'
#: check of ``policy.kind``, the evaluator's prescale policies and the dispatch of
#: :func:`decide` (``_RAW``) are built from it.
KINDS = ("preemptive_buffer", "proportional", "multi_tier")
#: The sizing rules ``multi_tier`` may use per tier (``policy.multi_tier_methods``): those
#: of the first two kinds.
SIZING_METHODS = KINDS[:2]

#: A :class:`PolicyConfig`, or the ``policy`` settings group (built into one with
#: :meth:`PolicyConfig.from_settings`).
PolicyLike = Any


@dataclass(frozen=True)
class PolicyConfig:
    """Everything the policies need; :meth:`from_settings` builds it from settings. The
    field defaults are prescale's defaults (:mod:`app.core.config`)."""

    kind: str = "preemptive_buffer"
    margin_fraction: float = 0.25
    #: per tier, the least a pre-emptive buffer adds above the forecast (bytes / cores)
    buffer_abs: Mapping[str, float] = field(
        default_factory=lambda: {"memory": 0.0, "cpu": 0.0})
    cpu_step_fraction: float = 0.5
    multi_tier_methods: Mapping[str, str] = field(
        default_factory=lambda: {"memory": "preemptive_buffer", "cpu": "proportional"})
    multi_tier_margins: Mapping[str, float] = field(default_factory=dict)
    guards: GuardConfig = field(default_factory=GuardConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    oom: OomConfig = field(default_factory=OomConfig)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"PolicyConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("margin_fraction", "cpu_step_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"PolicyConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("buffer_abs", "multi_tier_margins"):
            for tier, v in getattr(self, name).items():
                if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                    raise ValueError(f"PolicyConfig.{name}[{tier}] must be a finite number >= 0, "
                                     f"got {v!r}")
        for tier, m in self.multi_tier_methods.items():
            if m not in SIZING_METHODS:
                raise ValueError(f"PolicyConfig.multi_tier_methods[{tier}] must be one of "
                                 f"{SIZING_METHODS}, got {m!r}")

    @classmethod
    def from_settings(cls, policy: Any, cost: Any = None, oom: Any = None) -> PolicyConfig:
        """From ``settings.policy`` (the guards too: :meth:`GuardConfig.from_settings`),
        ``settings.cost`` and ``settings.oom`` (None: the defaults of
        :class:`CostConfig` / :class:`OomConfig`), duck-typed. Every field is read from
        the settings, whose defaults are this type's (:mod:`app.core.config`)."""
        return cls(
            kind=policy.kind,
            margin_fraction=policy.margin_fraction,
            buffer_abs=tier_map(memory=float(policy.buffer_memory_bytes),
                                cpu=policy.buffer_cpu_cores),
            cpu_step_fraction=policy.cpu_step_fraction,
            multi_tier_methods=dict(policy.multi_tier_methods),
            multi_tier_margins=dict(policy.multi_tier_margins),
            guards=GuardConfig.from_settings(policy),
            cost=CostConfig() if cost is None else CostConfig.from_settings(cost),
            oom=OomConfig() if oom is None else OomConfig.from_settings(oom),
        )


def _config(cfg: PolicyLike) -> PolicyConfig:
    if isinstance(cfg, PolicyConfig):
        return cfg
    if all(hasattr(cfg, name) for name in ("kind", "margin_fraction", "memory_min_bytes")):
        return PolicyConfig.from_settings(cfg)
    raise ValueError("policy config must be a PolicyConfig or the policy settings group, "
                     f"got {type(cfg).__name__}")


# -- sizing rules -----------------------------------------------------------------------


#: the tiers whose usage is capped at the limit (CPU throttled at its quota, traffic
#: queued at its bandwidth limit, writes throttled at theirs): demand above the limit is
#: not visible, so a scale-up is at least one step of ``cpu_step_fraction``
_STEPPED = (Tier.CPU, Tier.NETWORK, Tier.IO)


def _pymax(x: np.ndarray, y: Any) -> np.ndarray:
    """``max(x, y)`` of Python, element-wise: ``y if y > x else x`` (``x`` on a tie or
    a nan, as ``max`` does)."""
    return np.where(y > x, y, x)


def _step_text(tier: str, cfg: PolicyConfig, *, full: bool) -> str:
    """The note of a stepped tier (:data:`_STEPPED`): ``"CPU step 50% (demand above the
    quota is not visible)"`` (``full``), or ``"CPU step 50%"``."""
    name = "CPU" if tier == Tier.CPU else tier
    if not full:
        return f"{name} step {cfg.cpu_step_fraction:.0%}"
    what = "quota" if tier == Tier.CPU else "limit"
    return f"{name} step {cfg.cpu_step_fraction:.0%} (demand above the {what} is not visible)"


def _buffer_targets(tier: str, limit: np.ndarray, forecast: np.ndarray, margin: float,
                    cfg: PolicyConfig) -> tuple[np.ndarray, list[str]]:
    """The buffer rule (module docstring) for every row: the targets, and how each was
    sized (``"buffer 40.0 MiB above 160.0 MiB"`` or the step's note)."""
    with np.errstate(all="ignore"):
        base = _pymax(np.where(np.isfinite(forecast), forecast, limit), limit)
        buffer = _pymax(margin * base, cfg.buffer_abs.get(tier, 0.0))
        new = base + buffer
        stepped = (np.zeros(len(limit), dtype=bool) if tier not in _STEPPED
                   else limit * (1 + cfg.cpu_step_fraction) > new)
        new = np.where(stepped, limit * (1 + cfg.cpu_step_fraction), new)
    step = _step_text(tier, cfg, full=True)
    how = [step if s else f"buffer {b} above {a}" for s, b, a in
           zip(stepped.tolist(), fmt_all(tier, buffer), fmt_all(tier, base), strict=True)]
    return new, how


def _proportional_targets(tier: str, limit: np.ndarray, forecast: np.ndarray,
                          usage: np.ndarray, margin: float, cfg: PolicyConfig
                          ) -> tuple[np.ndarray, list[str]]:
    """The proportional rule (module docstring) for every row, the buffer rule where
    usage (≤ 0 or unknown) or the forecast is unknown: the targets and how each was
    sized."""
    known = np.isfinite(usage) & (usage > 0) & np.isfinite(forecast)
    unknown = np.flatnonzero(~known)
    new, buffer_how = _buffer_targets(tier, limit[unknown], forecast[unknown], margin, cfg)
    how = iter(buffer_how)  # in the order of ``unknown``
    with np.errstate(all="ignore"):
        ratio = _pymax(forecast / usage, 1.0)
        prop = limit * ratio * (1 + margin)
        stepped = (np.zeros(len(limit), dtype=bool) if tier not in _STEPPED
                   else limit * (1 + cfg.cpu_step_fraction) > prop)
        prop = np.where(stepped, limit * (1 + cfg.cpu_step_fraction), prop)
    step = f"; {_step_text(tier, cfg, full=False)}"
    whys = [f"load × {r:.2f} (usage {u} → {f}), margin {margin:.0%}{step if s else ''}"
            if k else f"usage or forecast unknown: fell back to the buffer rule, {next(how)}"
            for k, r, u, f, s in zip(known.tolist(), ratio.tolist(), fmt_all(tier, usage),
                                     fmt_all(tier, forecast), stepped.tolist(), strict=True)]
    prop[unknown] = new
    return prop, whys


def _buffer_target(tier: str, limit: float, forecast: float, margin: float,
                   cfg: PolicyConfig) -> tuple[float, str]:
    """:func:`_buffer_targets` of one value."""
    new, how = _buffer_targets(tier, np.array([float(limit)]), np.array([float(forecast)]),
                               margin, cfg)
    return float(new[0]), how[0]


def target_limit(tier: Tier, limit: float, forecast: float,
                 cfg: PolicyLike) -> float:
    """The buffer rule for one value, rounded up and clamped to the tier's global
    bounds (kept from the spine). Worked example: CPU quota 0.25, forecast 0.25,
    margin 0.25, step 0.5 → 0.38 cores."""
    c = _config(cfg)
    new, _ = _buffer_target(tier, limit, forecast, c.margin_fraction, c)
    lo = c.guards.min_limit.get(tier, 0.0)
    hi = c.guards.max_limit.get(tier, math.inf)
    return min(max(round_up(tier, new), lo), hi)


#: ``size(inp, tier, idx, limit, forecast)``: the targets of the rows ``idx`` of one tier
#: (their limits and forecasts given), and how each was sized
Sizer = Callable[[PolicyInput, Tier, np.ndarray, np.ndarray, np.ndarray],
                 tuple[np.ndarray, list[str]]]


Rows = Mapping[Tier, Any] | None
_RESIZE = ActionKind.RESIZE  # read once (an enum member's lookup is not free)
#: (container, tier) → the decision that takes the place of the policy's own where that
#: one has no action (:func:`decide`: the cost pass's scale-downs)
Instead = Mapping[tuple[str, Tier], Decision] | None


def _column(values: Any, idx: np.ndarray) -> np.ndarray:
    return np.asarray(values)[idx].astype(np.float64)


def _propose(inp: PolicyInput, size: Sizer, *, per_tier_threshold: bool,
             rows: Rows = None, instead: Instead = None) -> list[Decision]:
    """One unguarded decision per tier and container; ``size`` gives the targets and how
    they were sized, column-wise for the rows that act (a finite limit and ``p_fail >=
    threshold``). ``rows`` (tier → ascending container indices) limits the decisions to
    those rows, in the same order. A decision without an action is ``instead[(container,
    tier)]`` where there is one (and is not built)."""
    decisions: list[Decision] = []
    names, now = inp.containers, inp.now_s
    horizon = f"{inp.prediction.horizon_s:g}"
    for tier, tp in inp.prediction.tiers.items():
        idx = np.arange(len(names)) if rows is None else np.asarray(rows[tier], dtype=np.intp)
        p, limit = _column(tp.p_fail, idx), _column(tp.limit, idx)
        forecast, ttl = _column(tp.forecast, idx), _column(tp.time_to_limit_s, idx)
        thr = (_tier_threshold(inp, tier) if per_tier_threshold else inp.thresholds)[idx]
        with np.errstate(invalid="ignore"):
            acts = np.isfinite(limit) & (p >= thr)
        at = np.flatnonzero(acts)
        new, how = size(inp, tier, idx[at], limit[at], forecast[at])
        grows, new = (new > limit[at]).tolist(), new.tolist()
        forecast_text, limit_text = fmt_all(tier, forecast[at]), fmt_all(tier, limit[at])
        id_tail = action_id_for("", tier, now)  # "/memory@1700000000123"
        rows_l, p_l, thr_l, limit_l = idx.tolist(), p.tolist(), thr.tolist(), limit.tolist()
        forecast_l, ttl_l = forecast.tolist(), ttl.tolist()
        out: list[Decision | None] = [None] * len(rows_l)
        # the acting rows (positions ``at`` of ``idx``): their reasons, and, for those that
        # grow, the action and its decision, built column-wise (:func:`_build`)
        at_l = at.tolist()
        said = [f"p_fail {p_l[q]:.2f} >= {thr_l[q]:.2f}: forecast {forecast_text[j]} at "
                f"horizon {horizon} s vs limit {limit_text[j]}; {how[j]}"
                for j, q in enumerate(at_l)]
        up = [j for j, g in enumerate(grows) if g]
        if up:
            pos = [at_l[j] for j in up]
            who = [names[rows_l[q]] for q in pos]
            ps, ts = [p_l[q] for q in pos], [thr_l[q] for q in pos]
            ls, fs, tts = [limit_l[q] for q in pos], [forecast_l[q] for q in pos], \
                [ttl_l[q] for q in pos]
            why = [said[j] for j in up]
            actions = _build(
                ScalingAction, len(pos), action_id=[f"{c}{id_tail}" for c in who],
                now_s=repeat(now), container=who, tier=repeat(tier), old_limit=ls,
                new_limit=[new[j] for j in up], p_fail=ps, threshold=ts, time_to_limit_s=tts,
                forecast=fs, reason=why, kind=repeat(_RESIZE),
                app=[inp.app_of(rows_l[q]) for q in pos], preemptive=repeat(True),
                cause=repeat("forecast"))
            built = _build(Decision, len(pos), now_s=repeat(now), container=who,
                           tier=repeat(tier), p_fail=ps, threshold=ts, time_to_limit_s=tts,
                           forecast=fs, limit=ls, action=actions, reason=why)
            for q, d in zip(pos, built, strict=True):
                out[q] = d
        # an acting row that does not grow says so (then, as any other row, it takes the
        # decision ``instead`` when there is one)
        reason_of = {at_l[j]: f"{said[j]}: no growth asked" for j, g in enumerate(grows)
                     if not g}
        for q, d in enumerate(out):
            if d is not None:
                continue
            i = rows_l[q]
            name = names[i]
            other = instead.get((name, tier)) if instead else None
            if other is not None:
                out[q] = other
                continue
            li, pi, ti = limit_l[q], p_l[q], thr_l[q]
            reason = reason_of.get(q)
            if reason is None:
                reason = ("no limit set: nothing to protect" if not math.isfinite(li) else
                          f"p_fail {pi:.2f} < threshold {ti:.2f}")
            out[q] = Decision(now, name, tier, pi, ti, ttl_l[q], forecast_l[q], li, None,
                              reason)
        decisions += out  # type: ignore[arg-type]  (every row filled)
    return decisions


def _raw_buffer(inp: PolicyInput, cfg: PolicyConfig, rows: Rows = None,
                instead: Instead = None) -> list[Decision]:
    return _propose(
        inp, lambda _i, tier, idx, lim, f: _buffer_targets(tier, lim, f, cfg.margin_fraction,
                                                           cfg),
        per_tier_threshold=False, rows=rows, instead=instead)


def _usage(inp: PolicyInput, tier: Tier, idx: np.ndarray) -> np.ndarray:
    """``inp.usage_of(tier, i)`` for the rows ``idx``."""
    arr = inp.usage.get(tier) if inp.usage else None
    return np.full(len(idx), math.nan) if arr is None else _column(arr, idx)


def _raw_proportional(inp: PolicyInput, cfg: PolicyConfig, rows: Rows = None,
                      instead: Instead = None) -> list[Decision]:
    if not inp.usage:
        raise ValueError("the proportional policy needs PolicyInput.usage "
                         "(current usage per tier, bytes / cores)")
    return _propose(
        inp, lambda _i, tier, idx, lim, f: _proportional_targets(
            tier, lim, f, _usage(inp, tier, idx), cfg.margin_fraction, cfg),
        per_tier_threshold=False, rows=rows, instead=instead)


def _raw_multi_tier(inp: PolicyInput, cfg: PolicyConfig, rows: Rows = None,
                    instead: Instead = None) -> list[Decision]:
    """``instead`` is not used here: the ranking by time to limit reads every decision
    of the policy's own (:func:`decide` puts the others in afterwards)."""
    def size(_inp: PolicyInput, tier: Tier, idx: np.ndarray, lim: np.ndarray, f: np.ndarray
             ) -> tuple[np.ndarray, list[str]]:
        method = cfg.multi_tier_methods.get(tier, "preemptive_buffer")
        margin = cfg.multi_tier_margins.get(tier, cfg.margin_fraction)
        if method == "proportional":
            new, how = _proportional_targets(tier, lim, f, _usage(inp, tier, idx), margin, cfg)
        else:
            new, how = _buffer_targets(tier, lim, f, margin, cfg)
        return new, [f"{tier} tier ({method}): {h}" for h in how]

    decisions = _propose(inp, size, per_tier_threshold=True, rows=rows)
    order = sorted(range(len(decisions)), key=lambda k: _urgency(decisions[k]))
    decisions = [decisions[k] for k in order]
    acting: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.action is not None:
            acting.setdefault(d.container, []).append(d)
    ranked: dict[tuple[str, str], str] = {}
    for name, ds in acting.items():
        if len(ds) > 1:
            first = ds[0]
            for r, d in enumerate(ds, 1):
                ranked[(name, d.tier)] = (
                    f"bottleneck {r} of {len(ds)} by time to limit "
                    f"({first.tier} {_ttl(first.time_to_limit_s)} first)")
    pos = {n: i for i, n in enumerate(inp.containers)}
    out = []
    for d in decisions:
        note = ranked.get((d.container, d.tier))
        if d.action is not None:
            judged = _tiers_by_urgency(inp, pos[d.container])
            reason = f"{d.reason}; {note}; {judged}" if note else f"{d.reason}; {judged}"
            d = Decision(d.now_s, d.container, d.tier, d.p_fail, d.threshold, d.time_to_limit_s,
                         d.forecast, d.limit, _with_reason(d.action, reason), reason)
        out.append(d)
    return out


def _tiers_by_urgency(inp: PolicyInput, i: int) -> str:
    """How multi_tier judged container ``i``'s bottleneck: every tier of the prediction
    with a limit, by time to limit (unknown last), with its p_fail. Example: "bottleneck
    judged over 3 tiers by time to limit: disk 12 s (p_fail 0.97), memory 40 s (p_fail
    0.60), cpu never (p_fail 0.00)"."""
    rows = []
    for tier, tp in inp.prediction.tiers.items():
        if not math.isfinite(float(tp.limit[i])):
            continue
        ttl = float(tp.time_to_limit_s[i])
        rows.append(((1, 0.0) if math.isnan(ttl) else (0, ttl), tier, ttl,
                     float(tp.p_fail[i])))
    rows.sort(key=lambda r: r[0])
    parts = [f"{t} {'never' if ttl == math.inf else _ttl(ttl)} (p_fail {p:.2f})"
             for _, t, ttl, p in rows]
    return f"bottleneck judged over {len(rows)} tiers by time to limit: {', '.join(parts)}"


def _urgency(d: Decision) -> tuple[int, float]:
    ttl = d.time_to_limit_s
    return (1, 0.0) if math.isnan(ttl) else (0, ttl)


def _ttl(ttl: float) -> str:
    return "unknown" if math.isnan(ttl) else f"{ttl:.0f} s"


def _with_reason(a: ScalingAction, reason: str) -> ScalingAction:
    return replace(a, reason=reason)


#: the raw (unguarded) proposals of each kind, in the order of KINDS
_RAW: dict[str, Callable[..., list[Decision]]] = dict(
    zip(KINDS, (_raw_buffer, _raw_proportional, _raw_multi_tier), strict=True))


def _with_oom_bumps(inp: PolicyInput, cfg: PolicyConfig, raw: list[Decision]
                    ) -> list[Decision]:
    """The answer to this tick's OOM kills (:mod:`app.core.oom`): for every killed
    container a memory bump (a scale-out for a replicated one in a kill loop), put
    first and replacing the policy's own memory decision — whose target it keeps if
    that is higher. Unguarded, like every raw decision."""
    mem = inp.prediction.tiers.get(Tier.MEMORY)
    if mem is None or inp.oom_kills is None:
        return raw
    killed = np.flatnonzero(inp.oom_kills > 0)
    if not len(killed):
        return raw
    own = {d.container: d for d in raw if d.tier == Tier.MEMORY and d.action is not None}
    bumps: list[Decision] = []
    names = inp.containers
    for i in killed:
        name, limit = names[i], float(mem.limit[i])
        if not math.isfinite(limit):
            continue
        k = inp.kills_of(i)
        new, how = bump_target(cfg.oom, limit, inp.peak_of(Tier.MEMORY, i),
                               float(mem.forecast[i]), k, inp.limit_peak_of(Tier.MEMORY, i))
        mine = own.get(name)
        if mine is not None and mine.action is not None and mine.action.new_limit > new:
            new, how = mine.action.new_limit, f"the policy's own target ({mine.reason})"
        loop = k >= cfg.oom.loop_kills
        kind = ActionKind.RESIZE
        reason = (f"OOM kill ({k} within {cfg.oom.loop_window_s:g} s) at limit "
                  f"{fmt(Tier.MEMORY, limit)}: bump to {fmt(Tier.MEMORY, new)} ({how})")
        if loop:
            reason += f"; kill loop: {k} OOM kills within {cfg.oom.loop_window_s:g} s"
            if inp.is_replicated(i):
                kind = ActionKind.SCALE_OUT
                reason += ": scale out"
        p, thr = float(mem.p_fail[i]), inp.threshold_of(Tier.MEMORY, i)
        ttl, forecast = float(mem.time_to_limit_s[i]), float(mem.forecast[i])
        action = ScalingAction(
            action_id=action_id_for(name, Tier.MEMORY, inp.now_s), now_s=inp.now_s,
            container=name, tier=Tier.MEMORY, old_limit=limit, new_limit=new, p_fail=p,
            threshold=thr, time_to_limit_s=ttl, forecast=forecast, reason=reason, kind=kind,
            app=inp.app_of(i), preemptive=False, cause="oom")
        bumps.append(Decision(inp.now_s, name, Tier.MEMORY, p, thr, ttl, forecast, limit,
                              action, reason))
    done = {d.container for d in bumps}
    return bumps + [d for d in raw if not (d.tier == Tier.MEMORY and d.container in done)]


# -- the policies -------------------------------------------------------------------------


def preemptive_buffer(
    inp: PolicyInput, cfg: PolicyLike, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """The buffer rule (module docstring), guarded."""
    c = _config(cfg)
    return guard(inp, _raw_buffer(inp, c), c.guards, state)


def proportional(
    inp: PolicyInput, cfg: PolicyLike, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """The proportional rule (module docstring), guarded. Needs ``inp.usage``."""
    c = _config(cfg)
    return guard(inp, _raw_proportional(inp, c), c.guards, state)


def multi_tier(
    inp: PolicyInput, cfg: PolicyLike, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """Every tier sized by its own rule, most urgent first (module docstring), guarded."""
    c = _config(cfg)
    return guard(inp, _raw_multi_tier(inp, c), c.guards, state)


def scale_down_idle(
    inp: PolicyInput, cfg: PolicyLike, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """Idle scale-down (:mod:`app.core.cost`), guarded. Needs ``inp.usage``."""
    c = _config(cfg)
    raw, state = propose_scale_downs(inp, c.cost, state)
    return guard(inp, raw, c.guards, state)


def _low_tiers(inp: PolicyInput, cost: CostConfig) -> dict[Tier, np.ndarray]:
    """Per tier of the prediction, ``bool[N]``: the containers *low* in that tier
    (:func:`app.core.cost.is_low`; all False where usage is not known, and in the tiers
    not :data:`SCALED_DOWN`). Example: limit
    1 GiB, usage 100 MiB, p_fail 0.01 → low; usage unknown, or p_fail nan, or usage
    600 MiB with the default fraction 0.5 → not low."""
    n = len(inp.containers)
    usage = inp.usage or {}
    out: dict[Tier, np.ndarray] = {}
    for tier, tp in inp.prediction.tiers.items():
        u = usage.get(tier) if tier in SCALED_DOWN else None
        out[tier] = (np.zeros(n, dtype=bool) if u is None
                     else is_low(tp.limit, u, tp.p_fail, cost))
    return out


def _low_rows(inp: PolicyInput, cost: CostConfig) -> np.ndarray:
    """``bool[N]``: the containers that are low (:func:`_low_tiers`) in at least one tier."""
    low = np.zeros(len(inp.containers), dtype=bool)
    for tier_low in _low_tiers(inp, cost).values():
        low |= tier_low
    return low


def _read_rows(inp: PolicyInput, cfg: PolicyConfig, low: Mapping[Tier, np.ndarray]
               ) -> dict[Tier, np.ndarray]:
    """Per tier, the ascending indices of the containers whose decision ``decide(...,
    sparse=True)`` keeps: ``p_fail >= threshold`` (the threshold the policy compares
    with: the tier's own for multi_tier, else ``inp.thresholds``) or low in that tier.
    Every proposed action is among them: a scale-up needs ``p_fail >= threshold``, an
    idle scale-down a low tier."""
    with np.errstate(invalid="ignore"):
        return {
            tier: np.flatnonzero(
                (np.asarray(tp.p_fail, dtype=np.float64)
                 >= (_tier_threshold(inp, tier) if cfg.kind == "multi_tier"
                     else inp.thresholds))
                | low[tier]).tolist()
            for tier, tp in inp.prediction.tiers.items()
        }


def _tier_threshold(inp: PolicyInput, tier: Tier) -> np.ndarray:
    """``inp.threshold_of(tier, i)`` for every i."""
    arr = inp.tier_thresholds.get(tier) if inp.tier_thresholds else None
    return np.asarray(arr if arr is not None else inp.thresholds, dtype=np.float64)


def _rows(inp: PolicyInput, idx: np.ndarray) -> PolicyInput:
    """``inp`` restricted to the containers ``idx`` (in that order): every per-container
    array (also inside mappings and the prediction) is indexed, the rest is kept."""
    n = len(inp.containers)

    def pick(v: Any) -> Any:
        if isinstance(v, np.ndarray) and v.shape[:1] == (n,):
            return v[idx]
        if isinstance(v, Mapping):
            return {k: pick(x) for k, x in v.items()}
        return v

    pred = inp.prediction
    tiers = {t: replace(tp, **{f.name: np.asarray(getattr(tp, f.name))[idx]
                               for f in fields(tp)})
             for t, tp in pred.tiers.items()}
    changes: dict[str, Any] = {
        f.name: pick(getattr(inp, f.name)) for f in fields(inp)
        if f.name not in ("now_s", "containers", "prediction", "apps", "labels")}
    names = inp.containers
    return replace(inp, containers=[names[i] for i in idx], prediction=replace(pred, tiers=tiers),
                   apps=None if inp.apps is None else [inp.apps[i] for i in idx],
                   labels=None if inp.labels is None else [inp.labels[i] for i in idx],
                   **changes)


def _kinds(inp: PolicyInput, cfg: PolicyConfig) -> list[str] | None:
    """Each container's scale-up policy kind: its workload's (``[[workloads]]``
    ``policy``, a ``prescale.policy`` label), else ``cfg.kind``. ``None`` when every
    container has ``cfg.kind`` (no workload names another)."""
    g = cfg.guards
    if not (g.workloads or inp.labels):
        return None
    kinds = []
    for i, name in enumerate(inp.containers):
        w = g.workload_of(name, inp.app_of(i), inp.labels_of(i))
        kinds.append(w.kind if w is not None and w.kind is not None else cfg.kind)
    return None if all(k == cfg.kind for k in kinds) else kinds


def _raw_by_kind(inp: PolicyInput, c: PolicyConfig, low_tiers: Mapping[Tier, np.ndarray],
                 sparse: bool, instead: Instead = None) -> list[Decision]:
    """The unguarded scale-up decisions, each container by its own kind (:func:`_kinds`):
    one group per kind, the global kind's first, then in the order of :data:`KINDS`;
    within a group, that kind's order. Worked example: global ``preemptive_buffer``,
    workload ``db`` with ``policy = "proportional"`` → the containers of ``db`` are sized
    by load × ratio × (1 + margin), after the others' buffer decisions. ``instead``: as
    in :func:`_propose`."""
    kinds = _kinds(inp, c)
    if kinds is None:
        return _RAW[c.kind](inp, c, _read_rows(inp, c, low_tiers) if sparse else None,
                            instead)
    raw: list[Decision] = []
    arr = np.array(kinds)
    for kind in (c.kind, *[k for k in KINDS if k != c.kind]):
        idx = np.flatnonzero(arr == kind)
        if not len(idx):
            continue
        sub, ck = _rows(inp, idx), replace(c, kind=kind)
        rows = (_read_rows(sub, ck, {t: m[idx] for t, m in low_tiers.items()})
                if sparse else None)
        raw += _RAW[kind](sub, ck, rows, instead)
    return raw


def _with_scale_ins(raw: list[Decision], ins: list[Decision]) -> list[Decision]:
    """``raw`` with each acting scale-in (:mod:`app.core.scale_in`) in place of its
    container's decision of that tier (appended if it has none), and that container's
    vertical scale-downs of this tick held: each would be judged on a reading the other
    changes."""
    acting = {d.container: d for d in ins if d.action is not None}
    if not acting:
        return raw
    out, placed = [], set()
    for d in raw:
        s = acting.get(d.container)
        if s is not None and d.tier is s.tier and (d.action is None or d.action.cause == "idle"):
            out.append(s)
            placed.add(d.container)
        elif s is not None and d.action is not None and d.action.cause == "idle":
            out.append(replace(d, action=None, reason=f"{d.reason}; held: a replica is "
                               "removed this tick"))
        else:
            out.append(d)
    return out + [s for c, s in acting.items() if c not in placed]


def decide(
    inp: PolicyInput, cfg: PolicyLike, state: PolicyState, *,
    sparse: bool = False,
) -> tuple[list[Decision], PolicyState]:
    """One tick of the engine: the scale-up policy ``cfg.kind`` (a workload's own kind
    for its containers: :func:`_raw_by_kind`), then (if
    ``cfg.cost.enabled``) the idle scale-down for every container and tier that the
    scale-up policy leaves alone, then the guards over all of it. One decision per
    container and tier, in the scale-up policy's order.

    ``sparse=True`` (the engine's tick) returns only the decisions anything downstream
    reads: those with ``p_fail >= threshold`` and those of a tier that is low (idle
    candidates) — so every decision that has or had an action, and every one the
    coordinator logs. It is exactly the full list filtered, in the same order, and the
    state is the same; the others (below the threshold, nothing to do: most of a
    fleet) are never built. Example: of 200,000 container-tiers at 100k containers,
    about 70,000 are kept."""
    c = _config(cfg)
    low_tiers = _low_tiers(inp, c.cost) if (sparse or c.cost.enabled) else {}
    if state.raised_from and c.cost.enabled:  # raises the cost pass may revert
        pos = {n: i for i, n in enumerate(inp.containers)}
        low_tiers = {t: m.copy() for t, m in low_tiers.items()}
        for key in state.raised_from:
            name, _, tier = key.rpartition("/")
            i = pos.get(name)
            if i is not None and tier in low_tiers:
                low_tiers[Tier(tier)][i] = True
    by_key: dict[tuple[str, Tier], Decision] = {}
    if c.cost.enabled:
        # Only the scale-down *actions* are used here, and only a container that is low
        # in some tier can get one or start a low run: the others are left out of the
        # cost pass (whose one-decision-per-container output is dropped below). The cost
        # pass reads nothing of the scale-up's: it runs first, so that the scale-up
        # builds no decision that a scale-down replaces (``instead``).
        low = np.zeros(len(inp.containers), dtype=bool)
        for tier_low in low_tiers.values():
            low |= tier_low
        prev_low = state.low_since_s
        downs, state = propose_scale_downs(
            inp if low.all() else _rows(inp, np.flatnonzero(low)), c.cost, state,
            acting_only=True)
        by_key = {(d.container, d.tier): d for d in downs}  # (each has an action)
    raw = _raw_by_kind(inp, c, low_tiers, sparse, by_key)
    if c.cost.enabled:
        raw = [by_key.get((d.container, d.tier), d) if d.action is None else d for d in raw]
        if inp.replicated is not None:
            raw = _with_scale_ins(raw, propose_scale_ins(inp, c.cost, state, prev_low))
    if c.oom.enabled:
        raw = _with_oom_bumps(inp, c, raw)
    return guard(inp, raw, c.guards, state)
