"""Outcomes of scale-ups: was each one needed, which failures were missed, and how much
warning each scale-up gave (its lead time).

One tracker, :class:`OutcomeTracker`, is told of every scale-up (:meth:`~OutcomeTracker.
scale_up`), of what the predictor said each tick (:meth:`~OutcomeTracker.decisions`),
of failures (:meth:`~OutcomeTracker.failure`) and of usage (:meth:`~OutcomeTracker.
observe`, :meth:`~OutcomeTracker.observe_lead_times`). It returns two things, each
from the same scale-up record:

**Judgements** (:class:`Judgement`; they move the thresholds), per container and tier,
with the horizon ``H`` (``horizon_s``):

- a scale-up at ``t`` is **needed** if, within ``(t, t + H]``, usage reaches
  ``reach_fraction × old limit`` (it would have failed without the action; memory:
  ``1.0``, CPU: ``0.9`` of the old quota, the predictor's starvation level) or a
  failure of that tier follows;
- it is a **false positive** if neither happens: it is judged at the first
  observation after ``t + H``;
- a failure at ``t`` with no scale-up of that container and tier in ``[t − H, t]``
  is a **miss**. A miss *blames the threshold* unless the predictor had flagged it
  (a decision with ``p_fail ≥ threshold`` in ``[t − H, t]``): then the threshold was
  right and the pool, a cooldown or a bound stopped the scale-up.

Scale-ups that were only recommended (recommend mode: the loop's, or a workload's that
held its scale-up back, :meth:`app.core.engine.Engine._recommended`) are judged the same
way: the judgement is about the prediction. SCALE_OUT actions (limits are replica counts) are
judged by failures only.

Worked example (H = 60 s, memory): scale-up of ``web-1`` 128 → 192 MiB at t = 100.
Usage 120 MiB at 110 s, 129 MiB at 130 s → *needed* at 130 s (reached the old limit
after 30 s). A second scale-up at 200 s sees usage stay at 100 MiB → *false
positive*, judged at the first observation after 260 s. An OOM kill of ``web-2`` at
300 s, whose last scale-up was at 200 s (> 60 s before) → *miss*; if ``web-2``'s
p_fail had been 0.7 ≥ threshold 0.5 at 290 s, the miss does not blame the threshold.

**Lead-time outcomes** (:class:`Outcome`; logged and reported): when would the old
limit have been crossed? After a memory scale-up from ``old_limit`` at ``t_action``
the container keeps running under the new limit. The first later reading whose usage
reaches ``old_limit`` is the moment it would have failed without the action; the lead
time is that moment minus ``t_action`` (``crossed``). A scale-up that sees no crossing
within ``lead_time_expire_s`` (4 × H by default: longer than the judgement, so a
crossing after H still gets its lead time) is closed as ``not_crossed``; an OOM kill
while it is open closes it as ``failed``; a container absent from a tick's readings
closes it as ``gone``. A recommendation that was not applied (recommend mode) is
tracked too: its old limit is still the real one, so the container is OOM-killed when
usage reaches it; that outcome is ``failed`` with the lead time from the
recommendation to the kill, the time an operator following it would have had. CPU
scale-ups have no such crossing (usage cannot exceed a quota), so only memory
resizes get a lead time.

Worked example (lead time): action at t = 100 s raising 128 MiB → 200 MiB; readings
at 101..118 s stay below 128 MiB, the reading at 119 s is 129 MiB → ``crossed``, lead
time 19 s. As a judgement (:data:`LEAD_TIME_JUDGEMENT`) ``crossed`` and ``failed``
mean the scale-up was needed, ``not_crossed`` a false positive; ``gone`` is not
judged.

The tracker is pure: the caller feeds it actions, decisions, usage and failures with
their own timestamps, in time order. Its state is JSON-serialisable
(:meth:`OutcomeTracker.to_dict`).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.config import default_of
from prescale.app.core.gc_pause import gc_paused
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.sample import EventKind, Tier

#: a lead-time check stays open this many judgement horizons (``lead_time_expire_s``)
LEAD_TIME_HORIZONS = 4


class OutcomeKind(StrEnum):
    NEEDED = "needed"
    FALSE_POSITIVE = "false_positive"
    MISS = "miss"


#: A lead-time outcome read as a judgement: the prediction was right when usage
#: crossed the old limit or the container was OOM-killed while the check was open;
#: ``not_crossed`` is a false positive; ``gone`` is not judged (absent).
LEAD_TIME_JUDGEMENT: dict[str, str] = {
    "crossed": OutcomeKind.NEEDED.value,
    "failed": OutcomeKind.NEEDED.value,
    "not_crossed": OutcomeKind.FALSE_POSITIVE.value,
}


def failure_tier(kind: EventKind | str) -> Tier | None:
    """The tier a failure event is attributed to: an OOM kill is memory, a timeout is
    CPU starvation (disk when a disk tier exists); others are not attributable."""
    k = EventKind(kind)
    if k is EventKind.OOM_KILL:
        return Tier.MEMORY
    if k is EventKind.TIMEOUT:
        return Tier.CPU
    if k is EventKind.DISK_FULL:
        return getattr(Tier, "DISK", None)
    return None


@dataclass(frozen=True)
class OutcomeConfig:
    """``horizon_s``: H, the window in which a scale-up must prove needed (default: the
    predictor's horizon); ``memory_reach_fraction`` / ``cpu_reach_fraction``: usage ≥
    this × the old limit makes it needed (CPU: the predictor's starvation level);
    ``lead_time_expire_s``: a lead-time check closes as ``not_crossed`` after this long
    (None: ``LEAD_TIME_HORIZONS`` × ``horizon_s``)."""

    horizon_s: float = default_of(TrendExhaustionPredictor, "horizon_s")
    memory_reach_fraction: float = 1.0
    cpu_reach_fraction: float = default_of(TrendExhaustionPredictor, "cpu_busy_fraction")
    lead_time_expire_s: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.horizon_s, int | float) and math.isfinite(self.horizon_s)
                and self.horizon_s > 0):
            raise ValueError(f"outcomes.horizon_s must be a finite number > 0, "
                             f"got {self.horizon_s!r}")
        for name in ("memory_reach_fraction", "cpu_reach_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 < v <= 1):
                raise ValueError(f"outcomes.{name} must be in (0, 1], got {v!r}")
        if self.lead_time_expire_s is None:
            object.__setattr__(self, "lead_time_expire_s",
                               LEAD_TIME_HORIZONS * float(self.horizon_s))
        v = self.lead_time_expire_s
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"outcomes.lead_time_expire_s must be a finite number > 0, "
                             f"got {v!r}")

    @classmethod
    def from_settings(cls, thresholds: Any, predictor: Any) -> OutcomeConfig:
        """From ``settings.thresholds`` and ``settings.predictor`` (duck-typed): H is
        ``thresholds.outcome_horizon_s``, else ``predictor.horizon_s``; the CPU reach is
        ``predictor.cpu_busy_fraction``; lead-time checks expire after
        ``LEAD_TIME_HORIZONS`` × ``predictor.horizon_s``."""
        return cls(horizon_s=thresholds.outcome_horizon_s or predictor.horizon_s,
                   cpu_reach_fraction=predictor.cpu_busy_fraction,
                   lead_time_expire_s=LEAD_TIME_HORIZONS * predictor.horizon_s)

    def reach(self, tier: Tier) -> float:
        return self.cpu_reach_fraction if tier is Tier.CPU else self.memory_reach_fraction


@dataclass(frozen=True)
class Judgement:
    kind: OutcomeKind
    container: str
    app: str  # the app it learns under (the container's name when it has no app)
    owner: str
    tier: Tier
    t_s: float  # the scale-up's time (needed / false positive) or the failure's (miss)
    judged_s: float
    action_id: str | None  # None for a miss
    p_fail: float  # at the scale-up; for a miss the highest seen in [t − H, t] (nan: none)
    threshold: float  # in effect at the scale-up / at that decision (nan: unknown)
    blames_threshold: bool  # a miss the predictor had flagged does not
    applied: bool  # the scale-up was applied (False: recommend mode); True for a miss
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["tier"] = self.tier.value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Judgement:
        return cls(**{**d, "kind": OutcomeKind(d["kind"]), "tier": Tier(d["tier"])})


@dataclass(frozen=True)
class Outcome:
    """A closed lead-time check (module docstring)."""

    action_id: str
    container: str
    outcome: str  # crossed | failed | not_crossed | gone
    t_action_s: float
    t_outcome_s: float
    lead_time_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def judgement(self) -> str | None:
        """This outcome as a judgement kind (:data:`LEAD_TIME_JUDGEMENT`; None: gone)."""
        return LEAD_TIME_JUDGEMENT.get(self.outcome)


@dataclass(frozen=True)
class _Up:
    """One scale-up, as long as its judgement or its lead-time check is open."""

    action_id: str
    container: str
    app: str
    owner: str
    tier: Tier
    t_s: float
    old_limit: float
    p_fail: float
    threshold: float
    applied: bool
    by_usage: bool  # RESIZE: judged by usage too; SCALE_OUT: by failures only


class _Seen(NamedTuple):
    """One decision the tracker remembers, as :meth:`OutcomeTracker.failure` reads it
    (and as a checkpoint restored from JSON holds it until it expires)."""

    t_s: float
    p_fail: float
    threshold: float


class _Tick(NamedTuple):
    """The decisions of one :meth:`OutcomeTracker.decisions` call, as arrays: container
    ``names[i]``'s decision for ``tiers[k]`` at ``t_s`` was ``p_fail[k, i]`` against
    ``threshold[k, i]``. ``row``: name → its row (the last if a name repeats; then
    ``repeats`` is True and a lookup scans ``names``). Consecutive ticks over the same
    containers share ``names`` and ``row`` (one dict per fleet, not per tick)."""

    t_s: float
    names: tuple[str, ...]
    row: dict[str, int]
    repeats: bool
    tiers: tuple[Tier, ...]
    p_fail: np.ndarray  # float64[len(tiers), len(names)]
    threshold: np.ndarray  # float64[len(tiers), len(names)]

    def rows_of(self, container: str) -> list[int]:
        if self.repeats:
            return [i for i, n in enumerate(self.names) if n == container]
        i = self.row.get(container)
        return [] if i is None else [i]

    def has(self, key: tuple[str, Tier]) -> bool:
        return key[1] in self.tiers and key[0] in self.row


Key = tuple[str, Tier]


class OutcomeTracker:
    """See the module docstring. ``pending``: the scale-ups being judged; ``lead_pending``:
    the memory resizes whose lead-time check is open (the same records, each closing on
    its own clock).

    The decisions of the last H (what a miss reads) are kept one :class:`_Tick` per
    :meth:`decisions` call, as arrays, and dropped a whole tick at a time: a tick of
    10,000 containers adds two arrays, not 20,000 records. Their per-(container, tier)
    view, :attr:`seen`, is what the checkpoint holds: :meth:`to_dict` writes it in the
    order the keys were first seen (a key that loses all its decisions is forgotten
    and, seen again, goes last), :meth:`from_dict` reads it back (into ``_restored``,
    which expires like the rest)."""

    def __init__(self, config: OutcomeConfig | None = None) -> None:
        self.config = config or OutcomeConfig()
        self.pending: list[_Up] = []
        self.lead_pending: list[_Up] = []
        self.ups: dict[Key, list[float]] = {}  # scale-up times within H, per container/tier
        self.owners: dict[str, str] = {}  # container → owner, as last told
        #: decisions within H: one record block per decisions() call, oldest first
        self._ticks: list[_Tick] = []
        #: decisions within H read from a checkpoint, per container/tier (they come
        #: before any tick's: the tracker was restored before it was told of those)
        self._restored: dict[Key, list[_Seen]] = {}
        #: every (container, tier) with a decision within H, in the order first seen
        self._keys: dict[Key, None] = {}

    # -- inputs ----------------------------------------------------------------------
    def scale_up(self, action: ScalingAction, *, owner: str = "", applied: bool = True) -> bool:
        """Start judging a scale-up, and for a memory resize its lead-time check
        (ignored, returning False, if it is not an increase)."""
        if not (action.new_limit > action.old_limit):
            return False
        if owner:
            self.owners[action.container] = owner
        resize = action.kind is ActionKind.RESIZE
        up = _Up(action.action_id, action.container, action.app or action.container,
                 owner or self.owners.get(action.container, ""), action.tier,
                 float(action.now_s), float(action.old_limit), float(action.p_fail),
                 float(action.threshold), applied, resize)
        self.pending.append(up)
        self.ups.setdefault((action.container, action.tier), []).append(up.t_s)
        if resize and action.tier is Tier.MEMORY:
            self.lead_pending.append(up)
        return True

    def recommending(self, container: str, tier: Tier) -> bool:
        """Whether a recommendation (a scale-up not applied) of ``container``'s ``tier``
        is still being judged."""
        return any(u.container == container and u.tier is tier and not u.applied
                   for u in self.pending)

    def decision(self, container: str, tier: Tier, now_s: float, p_fail: float,
                 threshold: float) -> None:
        """Remember what the predictor said (lets a miss know whether it was flagged):
        :meth:`decisions` for one container and tier."""
        self.decisions([container], now_s, [(tier, [float(p_fail)], [float(threshold)])])

    def decisions(self, containers: Sequence[str], now_s: float,
                  by_tier: Sequence[tuple[Tier, Any, Any]]) -> None:
        """Remember what the predictor said for every container and tier of one tick:
        ``by_tier`` is ``(tier, p_fail[N], threshold[N])`` per tier (copied). The same
        state as calling :meth:`decision` for each container, and for each tier of it in
        the order given (so also the same key order). :meth:`observe` drops those
        older than H."""
        names = tuple(containers)
        if not names:
            return
        tiers = tuple(tier for tier, _, _ in by_tier)
        last = self._ticks[-1] if self._ticks else None
        if last is not None and (last.names is names or last.names == names):
            names, row, repeats = last.names, last.row, last.repeats  # the same fleet
        else:
            row = {n: i for i, n in enumerate(names)}
            repeats = len(row) < len(names)
        shape = (len(tiers), len(names))
        p = np.array([p for _, p, _ in by_tier], dtype=np.float64).reshape(shape)
        thr = np.array([thr for _, _, thr in by_tier], dtype=np.float64).reshape(shape)
        self._ticks.append(_Tick(float(now_s), names, row, repeats, tiers, p, thr))
        # the keys first seen now, in the order decision() would have seen them: only a
        # container the last tick did not have (or a tier it did not) can be one
        if last is not None and last.tiers == tiers:
            if last.names is names:
                return
            new: Sequence[str] = [n for n in names if n not in last.row]
        else:
            new = names
        keys = self._keys
        for n in new:
            for tier in tiers:
                if (n, tier) not in keys:
                    keys[(n, tier)] = None

    def failure(self, container: str, tier: Tier, t_s: float, *, app: str = "",
                owner: str = "", detail: str = "") -> list[Judgement]:
        """A failure of ``container``'s ``tier`` at ``t_s``: closes its pending scale-ups
        of the last H as needed, or is itself a miss."""
        h = self.config.horizon_s
        if owner:
            self.owners[container] = owner
        owner = owner or self.owners.get(container, "")
        what = f"failure ({detail})" if detail else "failure"
        out: list[Judgement] = []
        keep: list[_Up] = []
        for up in self.pending:
            if up.container == container and up.tier is tier and up.t_s <= t_s <= up.t_s + h:
                out.append(self._judge(up, OutcomeKind.NEEDED, t_s,
                                       f"{what} {t_s - up.t_s:g} s after the scale-up"))
            else:
                keep.append(up)
        self.pending = keep
        times = [t for t in self.ups.get((container, tier), []) if t_s - h <= t <= t_s]
        if times:
            return out
        seen = [s for s in self._records((container, tier)) if t_s - h <= s.t_s <= t_s]
        best = max(seen, key=lambda s: s.p_fail if math.isfinite(s.p_fail) else -1.0,
                   default=None)
        flagged = [s for s in seen if s.p_fail >= s.threshold]
        p = best.p_fail if best else math.nan
        thr = (flagged[-1] if flagged else best).threshold if best else math.nan
        if flagged:
            why = (f"{what} with no scale-up in the {h:g} s before it; p_fail "
                   f"{flagged[-1].p_fail:.2f} ≥ threshold {flagged[-1].threshold:.2f} at "
                   f"t={flagged[-1].t_s:g} (flagged, but not scaled: pool, cooldown or bound)")
        elif best:
            why = (f"{what} with no scale-up in the {h:g} s before it; highest p_fail "
                   f"{p:.2f} < threshold {thr:.2f}")
        else:
            why = f"{what} with no scale-up in the {h:g} s before it"
        out.append(Judgement(OutcomeKind.MISS, container, app or container, owner, tier, t_s,
                             t_s, None, p, thr, not flagged, True, why))
        return out

    def observe(self, now_s: float, usage: Mapping[Key, float]) -> list[Judgement]:
        """This tick's usage per ``(container, tier)`` (bytes / cores): closes the pending
        scale-ups whose old limit it reaches (needed) or whose H has passed (false
        positive)."""
        h = self.config.horizon_s
        out: list[Judgement] = []
        keep: list[_Up] = []
        for up in self.pending:
            u = usage.get((up.container, up.tier))
            level = self.config.reach(up.tier) * up.old_limit
            if up.by_usage and u is not None and now_s >= up.t_s and u >= level:
                out.append(self._judge(up, OutcomeKind.NEEDED, now_s,
                                       f"usage {u:.6g} reached {self.config.reach(up.tier):g} × "
                                       f"the old limit {up.old_limit:.6g} "
                                       f"{now_s - up.t_s:g} s after the scale-up"))
            elif now_s - up.t_s > h:
                out.append(self._judge(up, OutcomeKind.FALSE_POSITIVE, now_s,
                                       f"no usage at {self.config.reach(up.tier):g} × the old "
                                       f"limit {up.old_limit:.6g} and no failure within "
                                       f"{h:g} s of the scale-up"))
            else:
                keep.append(up)
        self.pending = keep
        self._prune(now_s)
        return out

    def observe_lead_times(self, now_s: float, usage_bytes: Mapping[str, float],
                           oom_kills: Mapping[str, float]) -> list[Outcome]:
        """Close the lead-time checks this tick's readings settle (module docstring):
        ``usage_bytes``: container → memory usage this tick (absent: gone);
        ``oom_kills``: container → OOM kills since the last tick. Keeps the rest."""
        expire = self.config.lead_time_expire_s
        out: list[Outcome] = []
        keep: list[_Up] = []
        for p in self.lead_pending:
            usage = usage_bytes.get(p.container)
            if oom_kills.get(p.container, 0) > 0:
                lead = None if p.applied else now_s - p.t_s
                out.append(Outcome(p.action_id, p.container, "failed", p.t_s, now_s, lead))
            elif usage is not None and usage >= p.old_limit:
                out.append(Outcome(p.action_id, p.container, "crossed", p.t_s, now_s,
                                   now_s - p.t_s))
            elif usage is None:
                out.append(Outcome(p.action_id, p.container, "gone", p.t_s, now_s, None))
            elif now_s - p.t_s > expire:
                out.append(Outcome(p.action_id, p.container, "not_crossed", p.t_s, now_s,
                                   None))
            else:
                keep.append(p)
        self.lead_pending = keep
        return out

    def forget(self, container: str) -> None:
        """The container is gone: stop judging it (no judgement, no lead time)."""
        self.pending = [u for u in self.pending if u.container != container]
        self.lead_pending = [u for u in self.lead_pending if u.container != container]
        for d in (self.ups, self._restored, self._keys):
            for k in [k for k in d if k[0] == container]:
                del d[k]
        without: dict[int, tuple[tuple[str, ...], dict[str, int], bool, np.ndarray]] = {}
        for j, tick in enumerate(self._ticks):
            if container not in tick.row:
                continue
            names = tick.names
            if id(names) not in without:  # ticks sharing a fleet share its copy too
                keep = np.array([n != container for n in names], dtype=bool)
                kept = tuple(n for n in names if n != container)
                row = {n: i for i, n in enumerate(kept)}
                without[id(names)] = (kept, row, len(row) < len(kept), keep)
            kept, row, repeats, keep = without[id(names)]
            self._ticks[j] = tick._replace(names=kept, row=row, repeats=repeats,
                                           p_fail=tick.p_fail[:, keep],
                                           threshold=tick.threshold[:, keep])
        self.owners.pop(container, None)

    # -- internals -------------------------------------------------------------------
    def _judge(self, up: _Up, kind: OutcomeKind, now_s: float, why: str) -> Judgement:
        label = "needed" if kind is OutcomeKind.NEEDED else "false positive"
        reason = (f"{label}: scale-up {up.action_id} (p_fail {up.p_fail:.2f} ≥ threshold "
                  f"{up.threshold:.2f}"
                  + ("" if up.applied else ", recommended only") + f"): {why}")
        return Judgement(kind, up.container, up.app, up.owner, up.tier, up.t_s, now_s,
                         up.action_id, up.p_fail, up.threshold, False, up.applied, reason)

    def _prune(self, now_s: float) -> None:
        cut = now_s - self.config.horizon_s
        for k in list(self.ups):
            self.ups[k] = [t for t in self.ups[k] if t >= cut]
            if not self.ups[k]:
                del self.ups[k]
        self._prune_seen(cut)

    def _prune_seen(self, cut: float) -> None:
        """Drop the decisions before ``cut`` (whole ticks), and forget the keys left
        with none."""
        ticks = self._ticks
        gone = [tick for tick in ticks if tick.t_s < cut]
        if gone:
            self._ticks = ticks = [tick for tick in ticks if tick.t_s >= cut]
        restored, keys = self._restored, self._keys
        emptied: list[Key] = []
        for k, v in restored.items():  # a restored checkpoint's, for H after it
            restored[k] = v = [s for s in v if s.t_s >= cut]
            if not v:
                emptied.append(k)
        for k in emptied:
            del restored[k]
            if not any(tick.has(k) for tick in ticks):
                del keys[k]
        # the keys that may have lost their last decision: those of the dropped ticks
        # over another fleet or tiers than every kept tick's (usually none)
        kept = {(id(tick.names), tick.tiers) for tick in ticks}
        for tick in gone:
            if (id(tick.names), tick.tiers) in kept:
                continue
            kept.add((id(tick.names), tick.tiers))  # (its keys are done now)
            for tier in tick.tiers:
                left: Sequence[str] = tick.names  # those no kept tick has (newest first)
                for other in reversed(ticks):
                    if not left:
                        break
                    if tier in other.tiers:
                        left = [n for n in left if n not in other.row]
                for n in left:
                    if (n, tier) not in restored:
                        keys.pop((n, tier), None)

    def _records(self, key: Key) -> list[_Seen]:
        """``key``'s decisions within H, oldest first (in the order they were told)."""
        out = list(self._restored.get(key, ()))
        container, tier = key
        for tick in self._ticks:
            if tier in tick.tiers and container in tick.row:
                k = tick.tiers.index(tier)
                out.extend(_Seen(tick.t_s, float(tick.p_fail[k, i]),
                                 float(tick.threshold[k, i])) for i in tick.rows_of(container))
        return out

    def _seen_lists(self) -> dict[Key, list[list[float]]]:
        """Every key's decisions within H, oldest first, each a ``[t_s, p_fail,
        threshold]`` list, keys in :attr:`_keys` order. Consecutive ticks over the same
        fleet are turned into lists together: one ``tolist`` of a ``[tiers, N, ticks,
        3]`` array. The cyclic garbage collector is off meanwhile (these lists make no
        cycle): at 10,000 containers they are 600,000, and its collections while they
        were made cost more than making them (measured: to_dict 694 ms with it on)."""
        with gc_paused():
            return self._build_seen_lists()

    def _build_seen_lists(self) -> dict[Key, list[list[float]]]:
        restored = self._restored
        out = {k: [list(s) for s in restored[k]] if k in restored else [] for k in self._keys}
        ticks, j = self._ticks, 0
        while j < len(ticks):
            first = ticks[j]
            run = [first]
            # (a name repeated within a tick: its rows' records go tick by tick, so such
            # ticks are not batched: a batch gives them row by row)
            while (not first.repeats and j + len(run) < len(ticks)
                   and ticks[j + len(run)].names is first.names
                   and ticks[j + len(run)].tiers == first.tiers):
                run.append(ticks[j + len(run)])
            j += len(run)
            p = np.stack([tick.p_fail for tick in run], axis=-1)  # [tiers, N, ticks]
            t = np.broadcast_to(np.array([tick.t_s for tick in run]), p.shape)
            thr = np.stack([tick.threshold for tick in run], axis=-1)
            if not p.size:
                continue
            records = np.stack([t, p, thr], axis=-1).tolist()  # [tiers][N][ticks][3]
            for n, tier_records in zip(first.names, zip(*records, strict=True), strict=True):
                for tier, recs in zip(first.tiers, tier_records, strict=True):
                    out[(n, tier)].extend(recs)
        return out

    @property
    def seen(self) -> dict[Key, list[_Seen]]:
        """The decisions within H per ``(container, tier)``, oldest first, keys in the
        order first seen (a copy, built on demand: the form a checkpoint holds)."""
        return {k: [_Seen(*s) for s in v] for k, v in self._seen_lists().items()}

    # -- state -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data: ``pending``, ``ups``, ``seen_blocks`` (the
        decisions within H, :meth:`_seen_blocks`), ``owners`` (the judgements) and
        ``lead_pending`` (the open lead-time checks). A checkpoint of the per-key form
        (``seen``) still loads (:meth:`from_dict`)."""
        return {
            # by hand, not dataclasses.asdict (a deep copy: ~15 µs per item per checkpoint)
            "pending": [{"action_id": u.action_id, "container": u.container, "app": u.app,
                         "owner": u.owner, "tier": u.tier.value, "t_s": u.t_s,
                         "old_limit": u.old_limit, "p_fail": u.p_fail,
                         "threshold": u.threshold, "applied": u.applied,
                         "by_usage": u.by_usage} for u in self.pending],
            "ups": [[c, t.value, v] for (c, t), v in self.ups.items()],
            "seen_blocks": self._seen_blocks(),
            "owners": dict(self.owners),
            "lead_pending": self.lead_list(),
        }

    def _seen_blocks(self) -> dict[str, Any]:
        """The decisions within H as the tracker holds them, for a checkpoint: ``keys``
        (every ``[container, tier]``, in the order first seen), ``restored`` (what a
        per-key checkpoint gave, ``[container, tier, [[t_s, p_fail, threshold], …]]``),
        ``fleets`` (each distinct container list once) and ``ticks`` (``t_s``, its
        ``fleet``, ``tiers``, and ``p_fail``/``threshold`` as the base64 of their
        little-endian float64 bytes, ``[tiers, containers]`` row-major: exact, nan
        included). The per-key form (``seen``, one JSON triple per decision) was
        600,000 triples at 10,000 containers (H = 30 ticks): 25 MiB, ~0.56 s of CPU to
        write and ~1.5 s to read back; this form writes the same state in ~13 MiB of
        base64 with no per-decision Python object.

        E.g. one tick at t = 5 s of containers a, b with memory p_fail [0.25, nan] and
        threshold [0.5, 0.5] gives ``fleets = [["a", "b"]]`` and a tick ``{"t_s": 5.0,
        "fleet": 0, "tiers": ["memory"], "p_fail": "AAAAAAAA0D8AAAAAAAD4fw==", …}``
        (0.25 = ``00 00 00 00 00 00 d0 3f``, then numpy's nan)."""
        fleets: dict[int, int] = {}
        names: list[list[str]] = []
        ticks = []
        for tick in self._ticks:
            f = fleets.get(id(tick.names))
            if f is None:
                f = fleets[id(tick.names)] = len(names)
                names.append(list(tick.names))
            ticks.append({"t_s": tick.t_s, "fleet": f, "tiers": [t.value for t in tick.tiers],
                          "p_fail": _b64(tick.p_fail), "threshold": _b64(tick.threshold)})
        return {"keys": [[c, t.value] for c, t in self._keys],
                "restored": [[c, t.value, [list(s) for s in v]]
                             for (c, t), v in self._restored.items()],
                "fleets": names, "ticks": ticks}

    def _load_seen_blocks(self, blocks: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_seen_blocks` (into a fresh tracker). Raises ``KeyError``,
        ``TypeError`` or ``ValueError`` on a malformed form (:meth:`from_dict` names it)."""
        def num(x: Any) -> float:
            return math.nan if x is None else float(x)
        fleets = []
        for names in blocks["fleets"]:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("seen_blocks: a fleet must be a list of container names")
            fleet = tuple(names)
            row = {n: i for i, n in enumerate(fleet)}
            fleets.append((fleet, row, len(row) < len(fleet)))
        for d in blocks["ticks"]:
            f = int(d["fleet"])
            if not 0 <= f < len(fleets):
                raise ValueError(f"seen_blocks: a tick's fleet {f} is not one of the "
                                 f"{len(fleets)} fleets")
            fleet, row, repeats = fleets[f]
            tiers = tuple(Tier(t) for t in d["tiers"])
            shape = (len(tiers), len(fleet))
            p, thr = (_unb64(d[k], shape, k) for k in ("p_fail", "threshold"))
            self._ticks.append(_Tick(float(d["t_s"]), fleet, row, repeats, tiers, p, thr))
        for c, t, v in blocks["restored"]:
            self._restored[(str(c), Tier(t))] = [_Seen(float(a), num(b), num(e))
                                                 for a, b, e in v]
        for c, t in blocks["keys"]:
            self._keys[(str(c), Tier(t))] = None

    def lead_list(self) -> list[dict[str, Any]]:
        """The open lead-time checks, in the checkpoint's form (``action_id``,
        ``container``, ``t_action_s``, ``old_limit_bytes``, ``applied``)."""
        return [{"action_id": p.action_id, "container": p.container,
                 "t_action_s": p.t_s, "old_limit_bytes": p.old_limit,
                 "applied": p.applied} for p in self.lead_pending]

    def load_lead_list(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Replace the open lead-time checks by ``items`` (:meth:`lead_list`'s form; also
        the top-level ``pending`` list of a checkpoint from before the two trackers were
        one). Raises :class:`ValueError` naming what is malformed."""
        lead = []
        try:
            for d in items:
                unknown = set(d) - {"action_id", "container", "t_action_s",
                                    "old_limit_bytes", "applied"}
                if unknown:
                    raise ValueError(f"unknown field(s) {sorted(unknown)}")
                lead.append(_Up(str(d["action_id"]), str(d["container"]), "", "", Tier.MEMORY,
                                float(d["t_action_s"]), float(d["old_limit_bytes"]), math.nan,
                                math.nan, bool(d.get("applied", True)), True))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"outcome tracker: malformed lead-time check ({exc})") from exc
        self.lead_pending = lead

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: OutcomeConfig | None = None
                  ) -> OutcomeTracker:
        """Inverse of :meth:`to_dict` (``None`` from JSON is read back as nan)."""
        def num(x: Any) -> float:
            return math.nan if x is None else float(x)
        tr = cls(config)
        try:
            for u in data.get("pending", []):
                up = _Up(**{**u, "tier": Tier(u["tier"])})
                tr.pending.append(replace(up, p_fail=num(up.p_fail),
                                          threshold=num(up.threshold)))
            for c, t, v in data.get("ups", []):
                tr.ups[(c, Tier(t))] = [float(x) for x in v]
            for c, t, v in data.get("seen", []):  # the per-key form of older checkpoints
                key = (c, Tier(t))
                tr._restored[key] = [_Seen(float(a), num(b), num(d)) for a, b, d in v]
                tr._keys[key] = None
            if data.get("seen_blocks"):
                tr._load_seen_blocks(data["seen_blocks"])
            tr.owners = dict(data.get("owners", {}))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ValueError(f"outcome tracker: malformed state ({exc})") from exc
        tr.load_lead_list(data.get("lead_pending", []))
        return tr


def _b64(a: np.ndarray) -> str:
    """``a``'s float64 values as base64 of their little-endian bytes (row-major)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f8").tobytes()).decode("ascii")


def _unb64(text: str, shape: tuple[int, int], what: str) -> np.ndarray:
    """Inverse of :func:`_b64`: a writable ``float64[shape]``; a ``ValueError`` naming
    ``what`` if ``text`` is not base64 of exactly that many values."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 8 * shape[0] * shape[1]:
        raise ValueError(f"seen_blocks: {what} holds {len(raw)} bytes, "
                         f"not 8 × {shape[0]} tiers × {shape[1]} containers")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)


__all__ = ["LEAD_TIME_HORIZONS", "LEAD_TIME_JUDGEMENT", "Judgement", "Outcome", "OutcomeConfig",
           "OutcomeKind", "OutcomeTracker", "failure_tier"]
