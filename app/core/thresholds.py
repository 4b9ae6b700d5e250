"""Adaptive p_fail thresholds per owner and per app, within the user's bounds.

**Lookup.** A threshold is kept per tier at three scopes: an app, an owner (team,
tenant), and the default. Each scope may set any of ``value``, ``min``, ``max`` and
``sensitivity``; a field not set is inherited field by field in the order
app → owner → default → :class:`ThresholdConfig`. The value in effect is clipped into
the bounds in effect, so the threshold used is always within ``[min, max]``. An app's
owner is the one passed to the lookup, else the one recorded for it (by
:meth:`ThresholdBook.set` with both, or by the first judged outcome that names it).

Worked example: default 0.5 in [0.05, 0.95], sensitivity 0.02; owner ``team-a`` sets
``min=0.3``; app ``web`` (owner team-a) sets ``value=0.6``. ``lookup(memory,
app="web")`` → value 0.6 (app), min 0.3 (owner:team-a), max 0.95 (config),
sensitivity 0.02 (config). App ``batch`` of team-a with nothing set → value 0.5
(config), min 0.3. If team-a then sets ``min=0.7``, ``web`` is used at 0.7 (clipped).

**Update rule** (:meth:`ThresholdBook.learn`), per app and tier, once per judged
outcome (see :mod:`app.core.outcomes`), with ``η`` the sensitivity in effect,
``c_fp``/``c_miss`` the costs of a false positive and of a miss and
``c = max(c_fp, c_miss)``::

    false positive:                 thr ← clip(thr + η·c_fp/c,   min, max)   (less eager)
    miss that blames the threshold: thr ← clip(thr − η·c_miss/c, min, max)   (more eager)
    needed, or a miss the predictor flagged (p_fail ≥ thr, stopped by pool/cooldown): no change

Worked example: η = 0.02, c_fp = 1, c_miss = 4 → a false positive raises the
threshold by 0.005, a miss lowers it by 0.02. From 0.50: three false positives →
0.515; then one miss → 0.495. At 0.95 (= max) a false positive leaves it at 0.95.

Why this rule:

- Direction: a false positive (a scale-up that was not needed) makes the system less
  eager; a miss (a failure nobody scaled up for) makes it more eager.
- It is a stochastic approximation (Robbins–Monro) of the balance point: per outcome
  the expected step is ``η/c · (c_fp·P(FP) − c_miss·P(miss))``, zero where
  ``c_fp·P(FP) = c_miss·P(miss)`` — the threshold settles where the cost-weighted
  false positives balance the cost-weighted misses, i.e. it accepts ``c_miss/c_fp``
  false positives per miss. ``P(FP)`` falls and ``P(miss)`` rises as the threshold
  rises, so from either side the drift points to that single point, and the
  residual wobble around it is of the order of ``η``.
- Bounded and explainable: one outcome moves the threshold once, by at most ``η``,
  never outside the user's ``[min, max]``; ``sensitivity = 0`` pins a threshold.
- Each outcome counts once. Applying a sliding-window average ``(FP − miss)/n`` at
  every outcome moves the threshold by the same total, only spread over the next
  ``n`` outcomes — a lag that overshoots after a regime change. The window (the
  last ``window`` judged outcomes per app and tier) is kept for the rates reported
  by :meth:`ThresholdBook.rates` and ``prescale threshold get``.
- Learning writes the app's own value (marked ``learned``). A user's ``set`` on the
  app replaces it; a later owner or default *value* does not reach an app that has
  learned its own (bounds and sensitivity still do) — :meth:`ThresholdBook.unset`
  makes it inherit again.
- Not the argmin of the empirical cost over the recent outcomes: that needs the
  p_fail of the quiet periods that produced no outcome (true negatives), which the
  outcome tracker never sees; over the observed outcomes alone it always favours
  lowering.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from prescale.app.core.outcomes import Judgement, OutcomeKind
from prescale.app.core.sample import Tier

FIELDS = ("value", "min", "max", "sensitivity")


def _fraction(name: str, x: Any, hi: float = 1.0) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not (0.0 <= x <= hi):
        raise ValueError(f"threshold {name} must be a number in [0, {hi:g}], got {x!r}")
    return float(x)


def _tier(tier: Tier | str) -> Tier:
    try:
        return Tier(tier)
    except ValueError:
        raise ValueError(f"threshold tier must be one of {[t.value for t in Tier]}, "
                         f"got {tier!r}") from None


@dataclass(frozen=True)
class ThresholdConfig:
    default_p_fail: float = 0.5  # settings.thresholds.p_fail
    default_min: float = 0.05
    default_max: float = 0.95
    default_sensitivity: float = 0.02  # η: the step of the costlier outcome kind
    cost_false_positive: float = 1.0
    cost_miss: float = 4.0
    window: int = 50  # judged outcomes kept per app and tier for the reported rates

    @classmethod
    def from_settings(cls, t: Any) -> ThresholdConfig:
        """From the ``thresholds`` settings group (app.settings.ThresholdSettings)."""
        return cls(default_p_fail=t.p_fail, default_min=t.min_p_fail, default_max=t.max_p_fail,
                   default_sensitivity=t.sensitivity, cost_false_positive=t.cost_false_positive,
                   cost_miss=t.cost_miss, window=t.window)

    def __post_init__(self) -> None:
        _fraction("default_p_fail", self.default_p_fail)
        _fraction("default_min", self.default_min)
        _fraction("default_max", self.default_max)
        _fraction("default_sensitivity", self.default_sensitivity, 0.5)
        if not self.default_min <= self.default_p_fail <= self.default_max:
            raise ValueError(f"threshold default_p_fail {self.default_p_fail} is outside "
                             f"[{self.default_min}, {self.default_max}]")
        for name in ("cost_false_positive", "cost_miss"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                    math.isfinite(v) and v > 0):
                raise ValueError(f"threshold {name} must be a finite number > 0, got {v!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"threshold window must be an integer >= 1, got {self.window!r}")


@dataclass(frozen=True)
class ThresholdSpec:
    """What one scope sets for one tier; ``None`` inherits."""

    value: float | None = None
    min: float | None = None
    max: float | None = None
    sensitivity: float | None = None
    learned: bool = False  # the value was last moved by learn(), not set by a user

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> ThresholdSpec:
        unknown = set(d) - {*FIELDS, "learned"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        vals: dict[str, Any] = {}
        for k in FIELDS:
            if d.get(k) is not None:
                vals[k] = _fraction(f"{where}.{k}", d[k], 0.5 if k == "sensitivity" else 1.0)
        return cls(**vals, learned=bool(d.get("learned", False)))


@dataclass(frozen=True)
class Threshold:
    """The threshold in effect for one tier, and which scope each field came from."""

    tier: Tier
    value: float
    min: float
    max: float
    sensitivity: float
    source: dict[str, str]  # field → "app:web" | "owner:team-a" | "default" | "config"
    learned: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier"] = self.tier.value
        return d


@dataclass(frozen=True)
class Adjustment:
    """What one judged outcome did to a threshold (``old == new``: nothing)."""

    app: str
    owner: str
    tier: Tier
    kind: OutcomeKind
    old: float
    new: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier"], d["kind"] = self.tier.value, self.kind.value
        return d


Scope = tuple[str, str]  # ("default", "") | ("owner", name) | ("app", name)


#: how many learned judgements a book remembers (:meth:`ThresholdBook.learn_new`)
LEARNED_KEEP = 10_000


def judgement_key(j: Judgement) -> str:
    """One judgement's identity: kind, container, tier, the scale-up's id (a miss: none)
    and its time. Example: ``"false_positive|web|memory|web/memory@1000|1.0"``."""
    return f"{j.kind.value}|{j.container}|{j.tier.value}|{j.action_id or ''}|{j.t_s!r}"


class ThresholdBook:
    """Thresholds per scope and tier, the recent outcomes per app and tier, and the
    learning rule. See the module docstring. JSON-serialisable (:meth:`to_dict`)."""

    def __init__(self, config: ThresholdConfig | None = None) -> None:
        self.config = config or ThresholdConfig()
        self.specs: dict[Scope, dict[Tier, ThresholdSpec]] = {}
        self.app_owner: dict[str, str] = {}
        self.recent: dict[tuple[str, Tier], deque[str]] = {}
        self.totals: dict[tuple[str, Tier], dict[str, int]] = {}
        #: keys of the judgements learned lately (:meth:`learn_new`), oldest first
        self.learned: deque[str] = deque(maxlen=LEARNED_KEEP)
        self._learned: set[str] = set()

    # -- lookup ----------------------------------------------------------------------
    def _chain(self, app: str | None, owner: str | None) -> list[tuple[str, Scope]]:
        owner = owner or (self.app_owner.get(app) if app else None)
        chain = []
        if app:
            chain.append((f"app:{app}", ("app", app)))
        if owner:
            chain.append((f"owner:{owner}", ("owner", owner)))
        chain.append(("default", ("default", "")))
        return chain

    def lookup(self, tier: Tier | str, app: str | None = None,
               owner: str | None = None) -> Threshold:
        t = _tier(tier)
        cfg = self.config
        got: dict[str, float] = {}
        source: dict[str, str] = {}
        learned = False
        for label, scope in self._chain(app, owner):
            spec = self.specs.get(scope, {}).get(t)
            if spec is None:
                continue
            for f in FIELDS:
                v = getattr(spec, f)
                if f not in got and v is not None:
                    got[f], source[f] = v, label
                    if f == "value":
                        learned = spec.learned
        base = {"value": cfg.default_p_fail, "min": cfg.default_min, "max": cfg.default_max,
                "sensitivity": cfg.default_sensitivity}
        for f in FIELDS:
            if f not in got:
                got[f], source[f] = base[f], "config"
        value = min(max(got["value"], got["min"]), got["max"])
        return Threshold(t, value, got["min"], got["max"], got["sensitivity"], source, learned)

    def value(self, tier: Tier | str, app: str | None = None, owner: str | None = None
              ) -> float:
        return self.lookup(tier, app, owner).value

    # -- user changes ----------------------------------------------------------------
    def set(self, tier: Tier | str, *, app: str | None = None, owner: str | None = None,
            value: float | None = None, min: float | None = None, max: float | None = None,
            sensitivity: float | None = None) -> Threshold:
        """Set fields of one scope: ``app`` (with ``owner`` too: also records the app's
        owner), else ``owner``, else the default. Returns the threshold now in effect
        there. A bad input raises ``ValueError`` naming it and changes nothing.

        A value left out that falls outside new bounds is clipped into them."""
        t = _tier(tier)
        for name, who in (("app", app), ("owner", owner)):
            if who is not None and (not isinstance(who, str) or not who.strip()):
                raise ValueError(f"threshold {name} must be a non-empty name, got {who!r}")
        given = {"value": value, "min": min, "max": max, "sensitivity": sensitivity}
        given = {k: _fraction(k, v, 0.5 if k == "sensitivity" else 1.0)
                 for k, v in given.items() if v is not None}
        if not given and not (app and owner):
            raise ValueError("threshold set: give at least one of value, min, max, sensitivity")
        scope: Scope = ("app", app) if app else ("owner", owner) if owner else ("default", "")
        label = f"{scope[0]}:{scope[1]}" if scope[1] else "default"
        trial = self._copy()
        if app and owner:
            trial.app_owner[app] = owner
        old = trial.specs.get(scope, {}).get(t, ThresholdSpec())
        new = replace(old, **given, learned=False if "value" in given else old.learned)
        trial.specs.setdefault(scope, {})[t] = new
        here = trial.lookup(t, app, owner if not app else None)
        if here.min > here.max:
            raise ValueError(f"threshold min {here.min:g} ({here.source['min']}) is above max "
                             f"{here.max:g} ({here.source['max']}) for {label}/{t.value}")
        if "value" in given and not here.min <= given["value"] <= here.max:
            raise ValueError(f"threshold value {given['value']:g} is outside [{here.min:g}, "
                             f"{here.max:g}] for {label}/{t.value}")
        if new.value is not None and not here.min <= new.value <= here.max:
            trial.specs[scope][t] = replace(new, value=here.value)
        for other in trial._below(scope):
            o = trial.lookup(t, *other)
            if o.min > o.max:
                who = f"app:{other[0]}" if other[0] else f"owner:{other[1]}"
                raise ValueError(f"threshold bounds for {label}/{t.value} would leave {who} "
                                 f"with min {o.min:g} ({o.source['min']}) above max "
                                 f"{o.max:g} ({o.source['max']})")
        self._take(trial)
        return self.lookup(t, app, owner if not app else None)

    def seed(self, tier: Tier | str, value: float, *, app: str | None = None
             ) -> tuple[bool, str]:
        """Start the adaptive threshold of ``app`` (``None``: the default) at a promoted
        model's operating threshold ``value``; returns ``(seeded, why)``.

        A value the user set on that scope is kept (``(False, …)``). Otherwise the
        scope's value becomes ``value``, marked learned (learning carries on from it; a
        user's ``set`` still replaces it), and the scope's ``min`` / ``max`` widen to
        include it when it lies outside the bounds in effect (a calibrated model with a
        1 % base rate can operate at 0.03, below the default min of 0.05).

        Worked example: bounds [0.05, 0.95], app ``web`` unset, ``seed(memory, 0.03,
        app="web")`` → web's value 0.03 and min 0.03; a later false positive moves it to
        0.035 as for any learned value.
        """
        t = _tier(tier)
        v = _fraction("value", value)
        scope: Scope = ("app", app) if app else ("default", "")
        label = f"app:{app}" if app else "default"
        old = self.specs.get(scope, {}).get(t, ThresholdSpec())
        if old.value is not None and not old.learned:
            return False, (f"kept the threshold {old.value:g} set on {label}/{t.value}; the "
                           f"model's operating threshold {v:.4g} is not used")
        here = self.lookup(t, app)
        new = replace(old, value=v, learned=True,
                      min=v if v < here.min else old.min, max=v if v > here.max else old.max)
        self.specs.setdefault(scope, {})[t] = new
        widened = " (bounds widened to include it)" if (v < here.min or v > here.max) else ""
        return True, f"{label}/{t.value} threshold starts at {v:.4g}{widened}"

    def unset(self, tier: Tier | str, *, app: str | None = None,
              owner: str | None = None) -> None:
        """Drop what a scope sets for a tier (it inherits again)."""
        t = _tier(tier)
        scope: Scope = ("app", app) if app else ("owner", owner) if owner else ("default", "")
        self.specs.get(scope, {}).pop(t, None)

    def _below(self, scope: Scope) -> list[tuple[str | None, str | None]]:
        """(app, owner) lookups of the scopes that inherit from ``scope``."""
        kind, name = scope
        apps = {n for (k, n) in self.specs if k == "app"} | set(self.app_owner)
        if kind == "owner":
            return [(a, name) for a in sorted(apps) if self.app_owner.get(a) == name]
        if kind == "default":
            owners = {n for (k, n) in self.specs if k == "owner"}
            return [(None, o) for o in sorted(owners)] + [(a, None) for a in sorted(apps)]
        return []

    # -- learning --------------------------------------------------------------------
    def learn(self, j: Judgement) -> Adjustment:
        """Apply the update rule of the module docstring to one judged outcome."""
        app = j.app or j.container
        owner = j.owner or None
        if owner:
            self.app_owner.setdefault(app, owner)
        key = (app, j.tier)
        win = self.recent.setdefault(key, deque(maxlen=self.config.window))
        win.append(j.kind.value)
        tot = self.totals.setdefault(key, {k.value: 0 for k in OutcomeKind})
        tot[j.kind.value] = tot.get(j.kind.value, 0) + 1
        thr = self.lookup(j.tier, app, owner)
        cfg = self.config
        c = max(cfg.cost_false_positive, cfg.cost_miss)
        if j.kind is OutcomeKind.FALSE_POSITIVE:
            delta = thr.sensitivity * cfg.cost_false_positive / c
            why = (f"false positive → less eager (+{thr.sensitivity:g} × "
                   f"{cfg.cost_false_positive:g}/{c:g})")
        elif j.kind is OutcomeKind.MISS and j.blames_threshold:
            delta = -thr.sensitivity * cfg.cost_miss / c
            why = f"miss → more eager (−{thr.sensitivity:g} × {cfg.cost_miss:g}/{c:g})"
        elif j.kind is OutcomeKind.MISS:
            delta, why = 0.0, "miss the predictor flagged (stopped by pool/cooldown): no change"
        else:
            delta, why = 0.0, "needed: no change"
        new = min(max(round(thr.value + delta, 9), thr.min), thr.max) if delta else thr.value
        if delta != 0 and new == thr.value:
            why += f", already at the {'max' if delta > 0 else 'min'} bound"
        if new != thr.value:
            scope = ("app", app)
            spec = self.specs.setdefault(scope, {}).get(j.tier, ThresholdSpec())
            self.specs[scope][j.tier] = replace(spec, value=new, learned=True)
        return Adjustment(app, j.owner, j.tier, j.kind, thr.value, new,
                          f"{app}/{j.tier.value}: {why}: threshold {thr.value:.4f} → {new:.4f} "
                          f"[{thr.min:g}, {thr.max:g}]; {j.reason}")

    def learn_new(self, judgements: Iterable[Judgement]) -> list[Adjustment]:
        """:meth:`learn` each judgement not learned before (by :func:`judgement_key`):
        learning is idempotent, so a loop that restarts mid-tick and judges the same
        scale-up or miss again does not move a threshold twice. Worked example: the same
        false positive given twice → one adjustment, the second skipped."""
        out = []
        for j in judgements:
            key = judgement_key(j)
            if key in self._learned:
                continue
            if len(self.learned) == self.learned.maxlen:
                self._learned.discard(self.learned[0])
            self.learned.append(key)
            self._learned.add(key)
            out.append(self.learn(j))
        return out

    def rates(self, app: str, tier: Tier | str) -> dict[str, Any]:
        """Counts and rates over the last ``window`` judged outcomes of an app and tier:
        ``false_positive_rate = FP / n`` and ``miss_rate = misses / n``."""
        t = _tier(tier)
        win = list(self.recent.get((app, t), []))
        n = len(win)
        counts = {k.value: win.count(k.value) for k in OutcomeKind}
        return {"n": n, **counts,
                "false_positive_rate": counts["false_positive"] / n if n else None,
                "miss_rate": counts["miss"] / n if n else None,
                "totals": dict(self.totals.get((app, t), {}))}

    # -- state -----------------------------------------------------------------------
    def _copy(self) -> ThresholdBook:
        b = ThresholdBook(self.config)
        b.specs = {s: dict(v) for s, v in self.specs.items()}
        b.app_owner = dict(self.app_owner)
        b.recent = {k: deque(v, maxlen=self.config.window) for k, v in self.recent.items()}
        b.totals = {k: dict(v) for k, v in self.totals.items()}
        return b

    def _take(self, other: ThresholdBook) -> None:
        self.specs, self.app_owner = other.specs, other.app_owner
        self.recent, self.totals = other.recent, other.totals

    def scopes(self) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
        """What each scope sets: ``{"default": {"": {tier: spec}}, "owners": {...},
        "apps": {...}}`` (plain dicts)."""
        out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            "default": {}, "owners": {}, "apps": {}}
        group = {"default": "default", "owner": "owners", "app": "apps"}
        for (kind, name), tiers in sorted(self.specs.items()):
            if tiers:
                out[group[kind]][name] = {t.value: s.to_dict() for t, s in tiers.items()}
        return out

    def to_dict(self) -> dict[str, Any]:
        s = self.scopes()
        return {
            "version": 1,
            "default": s["default"].get("", {}),
            "owners": s["owners"],
            "apps": s["apps"],
            "app_owner": dict(sorted(self.app_owner.items())),
            "recent": [[a, t.value, list(v)] for (a, t), v in sorted(self.recent.items())],
            "totals": [[a, t.value, v] for (a, t), v in sorted(self.totals.items())],
            "learned": list(self.learned),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: ThresholdConfig | None = None
                  ) -> ThresholdBook:
        """Inverse of :meth:`to_dict`; a malformed field raises ``ValueError`` naming it."""
        book = cls(config)
        if not isinstance(data, Mapping):
            raise ValueError(f"thresholds: expected an object, got {type(data).__name__}")
        if data.get("version", 1) != 1:
            raise ValueError(f"thresholds: unknown version {data.get('version')!r}")
        try:
            groups = [("default", {"": data.get("default", {})}), ("owner", data.get("owners", {})),
                      ("app", data.get("apps", {}))]
            for kind, entries in groups:
                for name, tiers in entries.items():
                    where = f"{kind}:{name}" if name else "default"
                    for tier, spec in tiers.items():
                        t = _tier(tier)
                        book.specs.setdefault((kind, name), {})[t] = ThresholdSpec.from_dict(
                            spec, f"{where}/{t.value}")
            book.app_owner = {str(a): str(o) for a, o in data.get("app_owner", {}).items()}
            for a, t, kinds in data.get("recent", []):
                for k in kinds:
                    OutcomeKind(k)
                book.recent[(a, _tier(t))] = deque(kinds, maxlen=book.config.window)
            for a, t, counts in data.get("totals", []):
                book.totals[(a, _tier(t))] = {str(k): int(v) for k, v in counts.items()}
            for key in data.get("learned", []):
                book.learned.append(str(key))
            book._learned = set(book.learned)
        except (AttributeError, TypeError) as exc:
            raise ValueError(f"thresholds: malformed ({exc})") from exc
        return book
