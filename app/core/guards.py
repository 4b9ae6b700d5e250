"""Guards: the rules every proposed action of every policy passes through.

:func:`guard` takes the decisions a policy proposes (each :class:`Decision` whose
``action`` is the policy's *unguarded* wish) and returns them with every action
kept, changed, turned into a scale-out, or blocked; each guard that changes or blocks
an action appends why to the reason (``"…; max step: +1024.0 MiB"`` /
``"…; blocked: in cooldown (5.0 s left)"``). It is pure: a function of the snapshot,
the config and the state, returning decisions and the new state. Decisions are
processed in order, so a policy lists its most urgent first.

Per action on container c, tier t (key ``"c/t"``), with old limit L, the policy's
target T, direction d = sign(T − L), in this order:

1. **Cooldown**: blocked if the last action on ``c/t`` was less than
   ``cooldown_s`` (or ``tier_cooldown_s[t]``) ago — except the answer to an OOM
   kill (``cause == "oom"``, :mod:`app.core.oom`): after a kill, waiting only lets
   the next one happen.
2. **Hysteresis (hold)**: blocked if the last action on ``c/t`` went the other way
   and was less than ``hold_s`` ago. Exception: a scale-up whose p_fail is at least
   ``urgent_p_fail`` (None: no exception), or an OOM bump — a hold meant against
   flapping never stops a scale-up that prevents an imminent failure; the reason
   says so.
3. **Bounds** [lo, hi] of the tier: the most specific of container, workload, app and
   global wins, field by field (``container_bounds`` > the container's ``[[workloads]]``
   entry (:mod:`app.core.workloads`) > ``app_bounds`` > ``min/max_limit``).
   lo > hi (conflicting overrides) blocks.
4. **Sizing**, with the step S = min(``max_step_fraction`` × L, ``max_step_abs[t]``)
   and, for memory, the safety floor F = ⌈usage × (1 + ``safety_margin_fraction``)⌉
   (page-rounded):

   - up (d = +1): if L ≥ hi the container cannot grow → step 6.
     N = min(⌈T⌉, hi, L + S), then N = max(N, min(F, hi)) (the floor wins over the
     step), then N = max(N, lo) (bounds win over the step);
   - down (d = −1): memory with unknown usage is never lowered (blocked).
     N = max(⌈T⌉, L − S, lo, F, H) with H the OOM stabilisation floor
     (``PolicyInput.floor``: the limit an OOM bump reached, held for
     ``oom.stabilise_s``); blocked if N > hi (lowering it to the max would
     undercut the floor or the policy's own target, e.g. cost's peak + margin:
     a limit above its max is left to the operator), N ≤ 0, or N ≥ L.

   So every proposed limit is within [lo, hi]; a memory decrease is never below F,
   an increase never below min(F, hi); |N − L| ≤ S unless N is lo, or F (memory).
5. **Dead band**: blocked if |N − L| < ``dead_band_fraction`` × L.
6. **Escalation vertical → horizontal**: an increase that cannot happen — L ≥ hi,
   or N − L exceeds the room the input reports (``headroom_on_node`` for the
   container, ``pool_free`` for the tier, whichever is smaller) — becomes, for a
   container with ``replicated`` set, a ``SCALE_OUT`` to replicas + 1 (key
   ``"c/replicas"``; its own ``scale_out_cooldown_s``; bounded by ``max_replicas``;
   at most one per container per tick). Not replicated: at the max it is blocked;
   when it does not fit, it is kept and the reason says the pool decides. The pool's
   own denial of a vertical ask (its node is full) escalates the same way, in the same
   tick (:func:`escalate_denied`).
7. **Scale-in** (a ``SCALE_OUT`` to fewer replicas, proposed by
   :mod:`app.core.scale_in`): never below ``min_replicas`` (container > workload > app
   > global); not within ``hold_s`` of a scale-out, nor within ``scale_out_cooldown_s``
   of any replica change (:func:`_scale_in`).

A passed resize records ``last_action_s[c/t] = now`` and ``last_direction[c/t] = d``.

Worked example (memory, step fraction 0.5, safety margin 0.1, bounds [32 MiB,
2 GiB]): L = 512 MiB, T = 1200 MiB, usage 500 MiB → ⌈T⌉ = 1200 MiB, L + S = 768 MiB
→ N = 768 MiB (max step); F = 550 MiB < 768 → N = 768 MiB, reason
"…; max step: +256.0 MiB (50% of the limit)". At L = 1024 MiB and the same usage, a
target of 300 MiB gives S = 512 MiB and N = max(300, 1024 − 512, 32, 550) = 550 MiB
("…; safety floor: usage 500.0 MiB × 1.10"); at L = 512 MiB it is blocked (550 ≥ 512:
"cannot lower").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prescale.app.core.actions import ActionKind, Decision, ScalingAction
from prescale.app.core.policy_types import (
    PolicyInput,
    PolicyState,
    fmt,
    replicas_key,
    round_up,
    round_up_array,
)
from prescale.app.core.sample import Tier

MiB = 2**20
GiB = 2**30


def tier_map(**values: Any) -> dict[str, float]:
    """Tier → value as floats, the tiers whose value is None left out. Example:
    ``tier_map(memory=ByteSize(512), cpu=None)`` → ``{"memory": 512.0}``."""
    return {k: float(v) for k, v in values.items() if v is not None}


def _check_tier_map(name: str, m: Mapping[str, float], *, positive: bool = False) -> None:
    for tier, v in m.items():
        ok = isinstance(v, (int, float)) and not math.isnan(v) and (v > 0 if positive else v >= 0)
        if not ok:
            raise ValueError(f"{name}[{tier}] must be a number {'>' if positive else '>='} 0, "
                             f"got {v!r}")


@dataclass(frozen=True)
class Bounds:
    """A per-app or per-container override: tier → lowest / highest limit, and the
    lowest / highest replica count. Absent fields fall back to the next less specific
    level."""

    min_limit: Mapping[str, float] = field(default_factory=dict)
    max_limit: Mapping[str, float] = field(default_factory=dict)
    max_replicas: int | None = None
    min_replicas: int | None = None

    def __post_init__(self) -> None:
        _check_tier_map("Bounds.min_limit", self.min_limit)
        _check_tier_map("Bounds.max_limit", self.max_limit, positive=True)
        for tier, lo in self.min_limit.items():
            hi = self.max_limit.get(tier)
            if hi is not None and lo > hi:
                raise ValueError(f"Bounds: min_limit[{tier}] {lo} is above max_limit[{tier}] {hi}")
        if self.max_replicas is not None and self.max_replicas < 1:
            raise ValueError(f"Bounds.max_replicas must be >= 1, got {self.max_replicas}")
        if self.min_replicas is not None and self.min_replicas < 1:
            raise ValueError(f"Bounds.min_replicas must be >= 1, got {self.min_replicas}")
        if (self.min_replicas is not None and self.max_replicas is not None
                and self.min_replicas > self.max_replicas):
            raise ValueError(f"Bounds: min_replicas {self.min_replicas} is above "
                             f"max_replicas {self.max_replicas}")

    @classmethod
    def from_settings(cls, entry: Any) -> Bounds:
        """A settings entry (``policy.app_bounds[…]`` / ``policy.container_bounds[…]``,
        a model or a dict) with ``memory_min_bytes``, ``memory_max_bytes``,
        ``cpu_min_cores``, ``cpu_max_cores``, ``min_replicas``, ``max_replicas`` (each
        optional)."""
        def val(name: str) -> Any:
            return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)

        return cls(
            min_limit=tier_map(memory=val("memory_min_bytes"), cpu=val("cpu_min_cores")),
            max_limit=tier_map(memory=val("memory_max_bytes"), cpu=val("cpu_max_cores")),
            max_replicas=val("max_replicas"),
            min_replicas=val("min_replicas"),
        )


@dataclass(frozen=True)
class GuardConfig:
    """Guard settings (see the module docstring for what each does).

    Tier mappings are keyed by tier name (``"memory"``, ``"cpu"``, …); a tier with
    no entry has no bound (lo 0, hi inf), no absolute step cap and the default
    cooldown.
    """

    min_limit: Mapping[str, float] = field(
        default_factory=lambda: {"memory": 32 * MiB, "cpu": 0.1})
    max_limit: Mapping[str, float] = field(
        default_factory=lambda: {"memory": 2 * GiB, "cpu": 1.0})
    app_bounds: Mapping[str, Bounds] = field(default_factory=dict)
    container_bounds: Mapping[str, Bounds] = field(default_factory=dict)
    #: ``[[workloads]]`` (:class:`app.core.workloads.Workload`): their bounds sit between
    #: the container's and the app's
    workloads: tuple[Any, ...] = ()
    max_step_fraction: float = 1.0
    max_step_abs: Mapping[str, float] = field(default_factory=dict)
    cooldown_s: float = 10.0
    tier_cooldown_s: Mapping[str, float] = field(default_factory=dict)
    hold_s: float = 300.0
    urgent_p_fail: float | None = 0.9
    dead_band_fraction: float = 0.02
    safety_margin_fraction: float = 0.1
    max_replicas: int = 10
    min_replicas: int = 1
    scale_out_cooldown_s: float = 60.0

    def __post_init__(self) -> None:
        Bounds(self.min_limit, self.max_limit)  # same checks
        for name, b in (*self.app_bounds.items(), *self.container_bounds.items()):
            if not isinstance(b, Bounds):
                raise ValueError(f"GuardConfig bounds for {name!r} must be a Bounds, got {b!r}")
        for fname in ("max_step_fraction",):
            v = getattr(self, fname)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"GuardConfig.{fname} must be a finite number > 0, got {v!r}")
        _check_tier_map("GuardConfig.max_step_abs", self.max_step_abs, positive=True)
        _check_tier_map("GuardConfig.tier_cooldown_s", self.tier_cooldown_s)
        for fname in ("cooldown_s", "hold_s", "dead_band_fraction", "safety_margin_fraction",
                      "scale_out_cooldown_s"):
            v = getattr(self, fname)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"GuardConfig.{fname} must be a finite number >= 0, got {v!r}")
        if self.urgent_p_fail is not None and not (0 <= self.urgent_p_fail <= 1):
            raise ValueError(f"GuardConfig.urgent_p_fail must be in [0, 1] or None, "
                             f"got {self.urgent_p_fail!r}")
        if self.max_replicas < 1:
            raise ValueError(f"GuardConfig.max_replicas must be >= 1, got {self.max_replicas}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"GuardConfig.min_replicas must be in [1, max_replicas "
                             f"{self.max_replicas}], got {self.min_replicas}")

    @classmethod
    def from_settings(cls, policy: Any) -> GuardConfig:
        """From ``settings.policy`` (duck-typed): the global bounds, the per-app and
        per-container bounds (:meth:`Bounds.from_settings`), steps, cooldowns, hold,
        dead band, safety margin and scale-out limits."""
        def bounds(entries: Mapping[str, Any]) -> dict[str, Bounds]:
            return {name: Bounds.from_settings(e) for name, e in entries.items()}

        return cls(
            min_limit={"memory": float(policy.memory_min_bytes), "cpu": policy.cpu_min_cores},
            max_limit={"memory": float(policy.memory_max_bytes), "cpu": policy.cpu_max_cores},
            app_bounds=bounds(policy.app_bounds),
            container_bounds=bounds(policy.container_bounds),
            max_step_fraction=policy.max_step_fraction,
            max_step_abs=tier_map(memory=policy.max_step_memory_bytes,
                                  cpu=policy.max_step_cpu_cores),
            cooldown_s=policy.cooldown_s,
            tier_cooldown_s={k: float(v) for k, v in policy.tier_cooldown_s.items()},
            hold_s=policy.hold_s,
            urgent_p_fail=policy.urgent_p_fail,
            dead_band_fraction=policy.dead_band_fraction,
            safety_margin_fraction=policy.safety_margin_fraction,
            max_replicas=policy.max_replicas,
            min_replicas=policy.min_replicas,
            scale_out_cooldown_s=policy.scale_out_cooldown_s,
        )

    # -- effective values -----------------------------------------------------------
    def workload_of(self, container: str, app: str,
                    labels: Mapping[str, str] | None = None) -> Any:
        """The container's :class:`~app.core.workloads.Workload` (its ``[[workloads]]``
        entry with its own ``prescale.*`` labels laid over it), or ``None``."""
        if not self.workloads and not labels:
            return None
        from prescale.app.core.workloads import select  # (workloads imports Bounds)

        return select(self.workloads, container, app, labels)

    def _levels(self, container: str, app: str,
                labels: Mapping[str, str] | None = None) -> list[Bounds | None]:
        w = self.workload_of(container, app, labels)
        return [self.container_bounds.get(container), w.bounds if w is not None else None,
                self.app_bounds.get(app)]

    def bounds_for(self, container: str, app: str, tier: str,
                   labels: Mapping[str, str] | None = None) -> tuple[float, float]:
        """[lo, hi] of ``tier`` for a container: container > workload > app > global, per
        field."""
        lo = self.min_limit.get(tier, 0.0)
        hi = self.max_limit.get(tier, math.inf)
        if not (labels or self.workloads or self.container_bounds or self.app_bounds):
            return float(lo), float(hi)  # no level below the global one (the usual case)
        levels = self._levels(container, app, labels)
        for b in reversed([x for x in levels if x is not None]):  # app, then container
            lo = b.min_limit.get(tier, lo)
            hi = b.max_limit.get(tier, hi)
        return float(lo), float(hi)

    def max_replicas_for(self, container: str, app: str,
                         labels: Mapping[str, str] | None = None) -> int:
        for b in self._levels(container, app, labels):
            if b is not None and b.max_replicas is not None:
                return b.max_replicas
        return self.max_replicas

    def min_replicas_for(self, container: str, app: str,
                         labels: Mapping[str, str] | None = None) -> int:
        """The fewest replicas a scale-in may leave: container > workload > app > global
        (the user's own HPA-like floor; a scale-in never goes below it)."""
        for b in self._levels(container, app, labels):
            if b is not None and b.min_replicas is not None:
                return b.min_replicas
        return self.min_replicas

    def cooldown_for(self, tier: str) -> float:
        return float(self.tier_cooldown_s.get(tier, self.cooldown_s))

    def step_for(self, tier: str, limit: float) -> float:
        """S = min(max_step_fraction × limit, max_step_abs[tier])."""
        return min(self.max_step_fraction * limit, self.max_step_abs.get(tier, math.inf))

    def floor_for(self, tier: str, usage: float) -> float:
        """Memory safety floor ⌈usage × (1 + safety_margin)⌉ (nan: usage unknown);
        0 for other tiers (no floor)."""
        if tier != _MEMORY:
            return 0.0
        if not math.isfinite(usage):
            return math.nan
        return round_up(tier, max(usage, 0.0) * (1 + self.safety_margin_fraction))

    def floors_for(self, tier: str, usage: np.ndarray) -> np.ndarray:
        """:meth:`floor_for` of every usage (float64 ``[n]``), the same float bits:
        ``max`` as ``np.where``, :func:`round_up` as :func:`round_up_array`. Example
        (memory, safety margin 0.1): usage [100 MiB, nan, -5] → [110 MiB rounded up to
        a page, nan, 0.0]; any other tier → zeros."""
        usage = np.asarray(usage, dtype=np.float64)
        if tier != _MEMORY:
            return np.zeros(len(usage))
        margin = 1 + self.safety_margin_fraction
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(usage),
                            round_up_array(tier, _pymax(usage, 0.0) * margin), math.nan)

    def has_levels(self, labels: Any = None) -> bool:
        """Whether a level below the global bounds may apply (labels, workloads, container
        or app bounds): without one, :meth:`bounds_for` is the global pair for every
        container."""
        return bool(labels or self.workloads or self.container_bounds or self.app_bounds)


_MEMORY = str(Tier.MEMORY)  # a plain-string constant: no enum descriptor per call
_SCALE_OUT = ActionKind.SCALE_OUT  # (the member itself: compared with ``is``)


def scale_out_action_id(container: str, now_s: float) -> str:
    """``"web-1/replicas@1700000000123"`` (distinct from any resize of the same tick)."""
    return f"{container}/replicas@{round(now_s * 1000)}"


class _Blocked(Exception):
    """An action is blocked; the message is the reason."""


@dataclass
class _Tick:
    inp: PolicyInput
    cfg: GuardConfig
    last: dict[str, float]
    direction: dict[str, int]
    scaled_out: set[str]


def guard(
    inp: PolicyInput, decisions: Sequence[Decision], cfg: GuardConfig, state: PolicyState
) -> tuple[list[Decision], PolicyState]:
    """Apply every guard to every proposed action (module docstring), in order.

    Decisions without an action pass unchanged. A decision for a container that is
    not in ``inp.containers`` raises :class:`ValueError`.

    Two passes: steps 3–6 of every resize depend only on its row (limits, target,
    bounds, usage, room), so they are computed column-wise first (:func:`_size`);
    then, in order, each decision gets what depends on the state and on the actions
    before it (cooldown, hold, scale-outs) and its reason. A resize that passes with
    nothing changed is returned as it came (the same object: equal field for field).
    """
    index = {name: i for i, name in enumerate(inp.containers)}
    t = _Tick(inp, cfg, dict(state.last_action_s), dict(state.last_direction), set())
    sized = _size(inp, decisions, cfg, index)
    k = 0  # the row of ``sized`` of the next resize
    out: list[Decision] = []
    # The common resize (it passes steps 3-6 with no note, and its key has no earlier
    # action: no cooldown nor hold to check) is done here inline, as _resize does it.
    codes, bits, keys, dirs, news = sized.code, sized.notes, sized.key, sized.d, sized.new
    last, direction, now = t.last, t.direction, inp.now_s
    for d in decisions:
        a = d.action
        if a is None:
            out.append(d)
            continue
        i = index.get(d.container)
        if i is None:
            raise ValueError(
                f"decision for {d.container!r}, which is not in PolicyInput.containers")
        if a.kind is not _SCALE_OUT and not codes[k] and not bits[k] and keys[k] not in last:
            key = keys[k]
            last[key] = now
            direction[key] = dirs[k]
            new = news[k]
            k += 1
            if new == a.new_limit and new != 0 and type(a.new_limit) is float:
                action = a  # nothing changed (a zero is rebuilt: -0.0 == 0.0)
            else:
                action = _with_limit(a, new, a.reason)
            if action is a and d.reason == a.reason:
                out.append(d)
            else:
                out.append(_decision_with(d, action, action.reason))
            continue
        try:
            if a.kind is _SCALE_OUT and a.new_limit < a.old_limit:
                action = _scale_in(t, i, a)
            elif a.kind is _SCALE_OUT:
                action = _scale_out(t, i, a, a.reason, "scale-out proposed")
            else:
                k += 1
                action = _resize(t, i, a, sized, k - 1)
        except _Blocked as why:
            out.append(_decision_with(d, None, f"{d.reason}; blocked: {why}"))
            continue
        if action is a and d.reason == a.reason:
            out.append(d)  # = _decision_with(d, a, a.reason): nothing to change
        else:
            out.append(_decision_with(d, action, action.reason))
    new_state = replace(state, last_action_s=t.last, last_direction=t.direction)
    return out, new_state


def escalate_denied(
    inp: PolicyInput, denied: Sequence[tuple[ScalingAction, str]], cfg: GuardConfig,
    state: PolicyState,
) -> tuple[list[ScalingAction], list[str], PolicyState]:
    """Vertical asks the pool denied (they do not fit their node now) → scale-outs, for
    the containers with replicas (step 6 of the module docstring, after the pool's
    answer rather than before it): replicas + 1, within the container's
    ``max_replicas`` and its scale-out cooldown, at most one per container. Returns the
    scale-outs, why each other denied increase was not escalated, and the new state.

    Worked example: ``web`` (2 replicas, max 4) asks memory 512 → 768 MiB and the pool
    has 100 MiB free on its node: denied → a scale-out 2 → 3 replicas, reason "…; denied
    by the pool (…): the vertical ask does not fit its node: scale out: replicas 2 → 3".
    At 4 replicas: not escalated, "web: at max_replicas 4"."""
    index = {name: i for i, name in enumerate(inp.containers)}
    t = _Tick(inp, cfg, dict(state.last_action_s), dict(state.last_direction), set())
    out: list[ScalingAction] = []
    notes: list[str] = []
    for a, why in denied:
        i = index.get(a.container)
        if (a.kind is not ActionKind.RESIZE or not a.new_limit > a.old_limit or i is None
                or not inp.is_replicated(i)):
            continue
        try:
            fit = "the vertical ask does not fit its node"
            out.append(_scale_out(t, i, a, f"{a.reason}; denied by the pool ({why}): {fit}: "
                                           "scale out", fit))
        except _Blocked as exc:
            notes.append(f"{a.container}: not escalated to a scale-out: {exc}")
    return out, notes, replace(state, last_action_s=t.last, last_direction=t.direction)


# What :func:`_size` found for a resize (``_Sized.code``): 0 = it passes (notes aside);
# the others block it or escalate it, each the first check that fails, in the order of
# the module docstring. The first two are checked before the cooldown and the hold.
_PASS, _NOT_FINITE, _SAME = 0, 1, 2
_CONFLICT, _AT_MAX, _BELOW_UNIT = 3, 4, 5  # bounds; up
_BLIND, _ABOVE_MAX, _NOT_POSITIVE, _CANNOT_LOWER = 6, 7, 8, 9  # down
_DEAD_BAND, _NO_ROOM = 10, 11  # both; up, replicated (escalates)
# The notes of a resize that passes (``_Sized.notes``, bits), in the order they are
# written: up: clamped, step, floor, min; down: step, min, floor, held; last, room.
_CLAMPED, _STEP, _FLOOR, _MIN, _HELD, _ROOM = 1, 2, 4, 8, 16, 32


@dataclass
class _Sized:
    """Steps 3–6 for every resize of a :func:`guard` call, column-wise (row k: its k-th
    resize): ``code`` (list of ints, above), ``new`` (list of floats, N), ``notes``
    (list of ints, bits), ``d`` (direction) and ``key`` (state key), plus, as arrays,
    every value the reasons quote."""

    code: list[int]
    new: list[float]
    notes: list[int]
    d: list[int]
    key: list[str]  # the state key, "c/t"
    cols: dict[str, np.ndarray]


def _pymin(x: np.ndarray, y: Any) -> np.ndarray:
    """``min(x, y)`` of Python, element-wise: ``y if y < x else x`` (the first on a tie
    or a nan, as ``min`` does; ``np.minimum`` would give nan and pick a signed zero
    its own way)."""
    return np.where(y < x, y, x)


def _pymax(x: np.ndarray, y: Any) -> np.ndarray:
    """``max(x, y)`` of Python, element-wise: ``y if y > x else x``."""
    return np.where(y > x, y, x)


def _size(inp: PolicyInput, decisions: Sequence[Decision], cfg: GuardConfig,
          index: Mapping[str, int]) -> _Sized:
    """Steps 3–6 of the module docstring (bounds, sizing, dead band, room) for every
    resize among ``decisions``, column-wise per tier. Pure: nothing here depends on the
    state or on another decision (the cooldown, the hold and the escalation's scale-out
    do, and are :func:`_resize`'s). The resizes after a decision for an unknown
    container are left out (:func:`guard` raises there)."""
    resizes = [(index.get(d.container), a.container, a.tier, a.old_limit, a.new_limit)
               for d in decisions if (a := d.action) is not None and a.kind is not _SCALE_OUT]
    columns = [list(c) for c in zip(*resizes, strict=True)] or [[] for _ in range(5)]
    n = columns[0].index(None) if None in columns[0] else len(resizes)
    rows, names, tiers, old, target = (c[:n] for c in columns)
    cols = {"old": np.array(old, dtype=np.float64), "target": np.array(target, dtype=np.float64)}
    for name in ("lo", "hi", "step", "usage", "floor", "held", "stepped", "band", "room"):
        cols[name] = np.zeros(n)
    cols["pool"] = np.zeros(n, dtype=bool)  # the room quoted is the pool's, not the node's
    code, new, notes = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=np.int64)
    d = np.zeros(n, dtype=np.int64)
    group_of: dict[str, int] = {}  # tier → its group: the tiers in the order first seen
    group = np.array([group_of.setdefault(t, len(group_of)) for t in tiers], dtype=np.int64)
    at_rows = np.array(rows, dtype=np.int64)
    with np.errstate(all="ignore"):
        for tier, g in group_of.items():
            at = np.flatnonzero(group == g)
            code[at], new[at], notes[at], d[at] = _size_tier(
                inp, cfg, tier, at, at_rows[at], names, cols)
    text = {t: f"{t}" for t in group_of}  # key_of(container, tier): "web-1/memory"
    keys = [f"{c}/{text[t]}" for c, t in zip(names, tiers, strict=True)]
    return _Sized(code.tolist(), new.tolist(), notes.tolist(), d.tolist(), keys, cols)


def _size_tier(inp: PolicyInput, cfg: GuardConfig, tier: str, at: np.ndarray, rows: np.ndarray,
               names: list[str], cols: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_size` for the resizes ``at`` (rows ``rows`` of ``inp``; ``names``: the
    containers of every resize) of one tier: their
    codes, N, notes and directions; the values the reasons quote go into ``cols[…][at]``.
    Each line is the scalar rule of the module docstring on whole columns, in its order;
    ``code`` keeps the first check that fails. Worked example (memory, bounds [32 MiB,
    2 GiB], step fraction 1): old 512 MiB, target 3 GiB → clamped to 2 GiB, then the step
    (512 MiB) → N = 1 GiB, notes ``_CLAMPED | _STEP``."""
    old, target = cols["old"][at], cols["target"][at]
    code = np.where(~(np.isfinite(old) & np.isfinite(target)), _NOT_FINITE, _PASS)
    d = np.where(target > old, 1, np.where(target < old, -1, 0))
    code = np.where((code == _PASS) & (d == 0), _SAME, code)
    up = d > 0

    def fail(cond: np.ndarray, why: int) -> None:  # the first failed check wins
        nonlocal code
        code = np.where((code == _PASS) & cond, why, code)

    # 3. bounds: one global pair unless some level below it is configured
    if not (inp.labels or cfg.workloads or cfg.container_bounds or cfg.app_bounds):
        lo, hi = (np.full(len(at), v) for v in cfg.bounds_for("", "", tier))
    else:
        lo, hi = np.array([cfg.bounds_for(names[k], inp.app_of(i), tier, inp.labels_of(i))
                           for k, i in zip(at.tolist(), rows.tolist(), strict=True)]
                          ).reshape(len(at), 2).T
    fail(lo > hi, _CONFLICT)
    step = _pymin(cfg.max_step_fraction * old, cfg.max_step_abs.get(tier, math.inf))
    usage_arr = inp.usage.get(tier) if inp.usage else None
    usage = np.full(len(at), math.nan) if usage_arr is None else usage_arr[rows].astype(float)
    floor = cfg.floors_for(tier, usage)  # cfg.floor_for, column-wise
    floor_arr = inp.floor.get(tier) if inp.floor else None
    held = np.zeros(len(at)) if floor_arr is None else floor_arr[rows].astype(float)

    # 4. sizing, up: every row computed, only the rows going up kept
    fail(up & (old >= hi), _AT_MAX)
    new_up = _pymin(round_up_array(tier, _pymin(target, hi)), hi)
    clamped = target > hi
    step_up = new_up - old > step
    new_up = np.where(step_up, old + step, new_up)
    floor_hi = _pymin(floor, hi)
    floor_up = ~np.isnan(floor) & (new_up < floor_hi)
    new_up = np.where(floor_up, floor_hi, new_up)
    min_up = new_up < lo
    new_up = np.where(min_up, lo, new_up)
    fail(up & (new_up <= old), _BELOW_UNIT)
    # 4. sizing, down
    fail(~up & np.isnan(floor), _BLIND)
    new_dn = round_up_array(tier, target)
    step_dn = old - new_dn > step
    new_dn = np.where(step_dn, round_up_array(tier, old - step), new_dn)
    stepped = np.where(up, step, old - new_dn)  # the step the note quotes
    min_dn = new_dn < lo
    new_dn = np.where(min_dn, lo, new_dn)
    floor_dn = new_dn < floor
    new_dn = np.where(floor_dn, floor, new_dn)
    held_dn = new_dn < held
    new_dn = np.where(held_dn, round_up_array(tier, held), new_dn)
    fail(~up & (new_dn > hi), _ABOVE_MAX)
    fail(~up & (new_dn <= 0), _NOT_POSITIVE)
    fail(~up & (new_dn >= old), _CANNOT_LOWER)
    new = np.where(up, new_up, new_dn)
    # 5. dead band
    band = cfg.dead_band_fraction * old
    fail(np.abs(new - old) < band, _DEAD_BAND)
    # 6. room on the node / in the pool (inp.room_of, column-wise)
    node_arr = inp.headroom_on_node.get(tier) if inp.headroom_on_node else None
    node = np.full(len(at), math.nan) if node_arr is None else node_arr[rows].astype(float)
    room = np.where(np.isnan(node), math.inf, node)
    free = inp.pool_free.get(tier, math.nan) if inp.pool_free else math.nan
    pool = free < room  # (False where free is nan: unknown)
    room = np.where(pool, free, room)
    no_room = up & (new - old > room)
    replicated = (np.zeros(len(at), dtype=bool) if inp.replicated is None
                  else inp.replicated[rows])
    fail(no_room & replicated, _NO_ROOM)

    notes = (np.where(up, clamped * _CLAMPED | step_up * _STEP | floor_up * _FLOOR
                      | min_up * _MIN,
                      step_dn * _STEP | min_dn * _MIN | floor_dn * _FLOOR | held_dn * _HELD)
             | no_room * _ROOM)
    for name, v in (("lo", lo), ("hi", hi), ("step", step), ("usage", usage), ("floor", floor),
                    ("held", held), ("stepped", stepped), ("band", band), ("room", room),
                    ("pool", pool)):
        cols[name][at] = v
    return code, new, notes, d


def _resize(t: _Tick, i: int, a: ScalingAction, sized: _Sized, k: int) -> ScalingAction:
    """The k-th resize of the tick: its checks that depend on the state (1. cooldown,
    2. hold) and on the actions before it (6. the escalation's scale-out), and its
    reason; steps 3–6 come from :func:`_size`. Raises :class:`_Blocked`."""
    code = sized.code[k]
    if code and code <= _SAME:  # (_NOT_FINITE, _SAME: checked before the cooldown)
        raise _Blocked(_blocked_text(t.cfg, a.tier, sized, k))
    key, d = sized.key[k], sized.d[k]
    last = t.last.get(key)
    notes = [] if last is None else _held_back(t, a, key, d, last)
    if code:
        tier = a.tier
        if code == _AT_MAX:
            why = f"at the maximum limit {fmt(tier, _col(sized, 'hi', k))}"
            return _escalate(t, i, a, why, notes)
        if code == _NO_ROOM:
            notes += _notes(t.cfg, tier, sized, k)
            return _escalate(t, i, a, _room_text(tier, sized, k), notes)
        raise _Blocked(_blocked_text(t.cfg, tier, sized, k))

    t.last[key] = t.inp.now_s
    t.direction[key] = d
    new = sized.new[k]
    if sized.notes[k]:
        notes += _notes(t.cfg, a.tier, sized, k)
    if not notes:
        if new == a.new_limit and new != 0 and type(a.new_limit) is float:
            return a  # nothing changed (a zero is rebuilt: -0.0 == 0.0)
        reason = a.reason
    else:
        reason = "; ".join([a.reason, *notes])
    return _with_limit(a, new, reason)


def _with_limit(a: ScalingAction, new: float, reason: str) -> ScalingAction:
    """``replace(a, new_limit=new, reason=reason)``, without ``replace``'s overhead."""
    return ScalingAction(a.action_id, a.now_s, a.container, a.tier, a.old_limit, new,
                         a.p_fail, a.threshold, a.time_to_limit_s, a.forecast, reason, a.kind,
                         a.app, a.preemptive, a.cause)


def _held_back(t: _Tick, a: ScalingAction, key: str, d: int, last: float) -> list[str]:
    """Steps 1 (cooldown) and 2 (hold) for a resize in direction ``d`` whose key was last
    acted on at ``last``: raises :class:`_Blocked`, or returns the note of a hold
    overridden (``[]`` if none)."""
    cfg, now = t.cfg, t.inp.now_s
    oom = a.cause == "oom"  # the answer to a kill: never held back by time
    # 1. cooldown
    if not oom and now - last < cfg.cooldown_for(a.tier):
        left = cfg.cooldown_for(a.tier) - (now - last)
        raise _Blocked(f"in cooldown ({left:.1f} s left)")
    # 2. hysteresis hold
    if t.direction.get(key) == -d and now - last < cfg.hold_s:
        age = now - last
        prev = "down" if d > 0 else "up"
        urgent = oom or (cfg.urgent_p_fail is not None and d > 0
                         and a.p_fail >= cfg.urgent_p_fail)
        if not urgent:
            raise _Blocked(f"would reverse the last action ({prev} {age:.0f} s ago) within "
                           f"the hold of {cfg.hold_s:g} s")
        return [f"hold overridden: p_fail {a.p_fail:.2f} >= urgent {cfg.urgent_p_fail:.2f} "
                f"(last action {prev} {age:.0f} s ago)"]
    return []


def _col(sized: _Sized, name: str, k: int) -> float:
    return float(sized.cols[name][k])


def _notes(cfg: GuardConfig, tier: str, sized: _Sized, k: int) -> list[str]:
    """What steps 3–6 changed in the k-th resize (:data:`_CLAMPED` …), in their order."""
    bits, up = sized.notes[k], sized.d[k] > 0
    # each note formatted only when its bit is set (the same texts, in the same order)
    order = (_CLAMPED, _STEP, _FLOOR, _MIN) if up else (_STEP, _MIN, _FLOOR, _HELD)
    notes = [_note(cfg, tier, sized, k, bit, up) for bit in order if bits & bit]
    if bits & _ROOM and sized.code[k] == _PASS:
        notes.append(f"{_room_text(tier, sized, k)}; not replicated: left to the pool")
    return notes


def _note(cfg: GuardConfig, tier: str, sized: _Sized, k: int, bit: int, up: bool) -> str:
    """The text of one note bit of the k-th resize (:func:`_notes`). Example (memory,
    bit ``_STEP``, up, stepped 512 MiB, max step fraction 1): "max step: +512.0 MiB (100%
    of the limit)"."""
    if bit == _CLAMPED:
        return f"clamped to max {fmt(tier, _col(sized, 'hi', k))}"
    if bit == _STEP:
        return (f"max step: {'+' if up else '-'}{fmt(tier, _col(sized, 'stepped', k))} "
                f"({_step_desc(cfg, tier)})")
    if bit == _FLOOR:
        margin = 1 + cfg.safety_margin_fraction
        return f"safety floor: usage {fmt(tier, _col(sized, 'usage', k))} × {margin:.2f}"
    if bit == _MIN:
        return f"raised to min {fmt(tier, _col(sized, 'lo', k))}"
    assert bit == _HELD, bit
    return (f"held at {fmt(tier, _col(sized, 'held', k))}: raised for an OOM kill, within "
            "its stabilisation window")


def _room_text(tier: str, sized: _Sized, k: int) -> str:
    where = "pool" if sized.cols["pool"][k] else "node"
    grow = sized.new[k] - _col(sized, "old", k)
    return f"needs +{fmt(tier, grow)}, {where} has {fmt(tier, max(_col(sized, 'room', k), 0))} free"


def _blocked_text(cfg: GuardConfig, tier: str, sized: _Sized, k: int) -> str:
    """Why the k-th resize is blocked (its code)."""
    code, new = sized.code[k], sized.new[k]
    old, target = _col(sized, "old", k), _col(sized, "target", k)
    lo, hi = _col(sized, "lo", k), _col(sized, "hi", k)
    if code == _NOT_FINITE:
        return f"limit {old!r} or target {target!r} is not finite"
    if code == _SAME:
        return "target equals the current limit"
    if code == _CONFLICT:
        return f"conflicting bounds: min {fmt(tier, lo)} > max {fmt(tier, hi)}"
    if code == _BELOW_UNIT:
        return f"increase to {fmt(tier, target)} is below one rounding unit"
    if code == _BLIND:
        return "memory usage unknown: memory is never lowered blind"
    if code == _ABOVE_MAX:
        what = "safety floor" if new == _col(sized, "floor", k) else "target"
        return (f"{what} {fmt(tier, new)} is above the max {fmt(tier, hi)}: "
                f"a limit outside its bounds is left to the operator")
    if code == _NOT_POSITIVE:
        return "a limit of 0 or less is never set"
    if code == _CANNOT_LOWER:
        held = _col(sized, "held", k)
        why = ("an OOM kill's stabilisation floor" if new == round_up(tier, held) and held
               else "floor/min/usage + margin")
        return f"cannot lower: {fmt(tier, new)} ({why}) >= limit {fmt(tier, old)}"
    assert code == _DEAD_BAND, code
    return (f"change {fmt(tier, abs(new - old))} below the dead band "
            f"{fmt(tier, _col(sized, 'band', k))} ({cfg.dead_band_fraction:.0%})")


def _decision_with(d: Decision, action: ScalingAction | None, reason: str) -> Decision:
    """``replace(d, action=action, reason=reason)``, without ``replace``'s overhead
    (about 3 µs of 4 per call, once per proposed action)."""
    return Decision(d.now_s, d.container, d.tier, d.p_fail, d.threshold, d.time_to_limit_s,
                    d.forecast, d.limit, action, reason)


def _step_desc(cfg: GuardConfig, tier: str) -> str:
    cap = cfg.max_step_abs.get(tier)
    frac = f"{cfg.max_step_fraction:.0%} of the limit"
    return frac if cap is None else f"{frac}, at most {fmt(tier, cap)}"


def _escalate(t: _Tick, i: int, a: ScalingAction, why: str, notes: list[str]) -> ScalingAction:
    """The container cannot grow (``why``): scale out if it is replicated, else block."""
    if not t.inp.is_replicated(i):
        raise _Blocked(f"{why}; not replicated: cannot scale out")
    return _scale_out(t, i, a, "; ".join([a.reason, *notes, f"{why}: scale out"]), why)


def _scale_out(t: _Tick, i: int, a: ScalingAction, reason: str, why: str) -> ScalingAction:
    cfg, inp, now, c = t.cfg, t.inp, t.inp.now_s, a.container
    if not inp.is_replicated(i):
        raise _Blocked("scale-out proposed for a container that is not replicated")
    if c in t.scaled_out:
        raise _Blocked("a scale-out of this container is already proposed this tick")
    rkey = replicas_key(c)
    n = inp.replicas_of(i)
    cap = cfg.max_replicas_for(c, inp.app_of(i), inp.labels_of(i))
    if n >= cap:
        raise _Blocked(f"{why}; at max_replicas {cap}")
    if rkey in t.last and now - t.last[rkey] < cfg.scale_out_cooldown_s:
        left = cfg.scale_out_cooldown_s - (now - t.last[rkey])
        raise _Blocked(f"scale-out in cooldown ({left:.1f} s left)")
    t.last[rkey] = now
    t.direction[rkey] = 1
    t.scaled_out.add(c)
    return replace(
        a,
        action_id=scale_out_action_id(c, now),
        kind=ActionKind.SCALE_OUT,
        old_limit=n,
        new_limit=n + 1,
        reason=f"{reason}: replicas {n:g} → {n + 1:g}",
    )


def _scale_in(t: _Tick, i: int, a: ScalingAction) -> ScalingAction:
    """A proposed scale-in (:mod:`app.core.scale_in`), checked: the container is
    replicated, its replicas stay at or above its ``min_replicas`` (container > workload
    > app > global), and it does not reverse a scale-out within ``hold_s`` nor come within
    ``scale_out_cooldown_s`` of the last replica change.

    Worked example: ``web`` at 2 replicas, min_replicas 2 → blocked "at min_replicas 2";
    at 3, scaled out 100 s ago with hold_s 300 → blocked "would reverse the last
    scale-out (100 s ago) within the hold of 300 s"."""
    cfg, inp, now, c = t.cfg, t.inp, t.inp.now_s, a.container
    if not inp.is_replicated(i):
        raise _Blocked("scale-in proposed for a container that is not replicated")
    if c in t.scaled_out:
        raise _Blocked("a replica change of this container is already proposed this tick")
    n = inp.replicas_of(i)
    new = float(a.new_limit)
    lo = cfg.min_replicas_for(c, inp.app_of(i), inp.labels_of(i))
    if not (math.isfinite(new) and new == int(new) and new >= 1):
        raise _Blocked(f"invalid replica count {new!r}")
    if new < lo:
        raise _Blocked(f"replicas {n:g}: at min_replicas {lo}")
    rkey = replicas_key(c)
    if rkey in t.last:
        age = now - t.last[rkey]
        if t.direction.get(rkey) == 1 and age < cfg.hold_s:
            raise _Blocked(f"would reverse the last scale-out ({age:.0f} s ago) within the "
                           f"hold of {cfg.hold_s:g} s")
        if age < cfg.scale_out_cooldown_s:
            raise _Blocked(f"replicas changed {age:.0f} s ago (scale_out_cooldown_s "
                           f"{cfg.scale_out_cooldown_s:g})")
    t.last[rkey] = now
    t.direction[rkey] = -1
    t.scaled_out.add(c)
    return replace(a, old_limit=n)
