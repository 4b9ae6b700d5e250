"""A policy per workload: which containers it covers and what it changes there.

A :class:`Workload` is one ``[[workloads]]`` entry of the settings, like a Kubernetes
VPA object. Its fields:

- **match**: a container-name glob (``fnmatch``: ``web-*``), labels (every one must be
  on the container: Docker's labels), an app — one or several (then all must match);
- **mode**: ``off`` (observe only), ``recommend`` (decide and log, never act) or
  ``auto``. A workload can hold prescale back, not push it further: under a global
  ``recommend`` or ``off`` nothing acts anyway;
- **controlled**: the tiers it may change (``None``: all);
- **bounds**: its min / max limits per tier and its ``min_replicas`` / ``max_replicas``;
- **threshold**: a fixed p_fail threshold for its containers (all tiers), instead of
  the adaptive one (``thresholds.per_app`` of a container still wins);
- **policy**: the scale-up policy kind of its containers (``preemptive_buffer``,
  ``proportional``, ``multi_tier``) instead of the global ``policy.kind``;
- **tenant** and **weight**: the owner its containers count for when tenants contend
  (:func:`app.core.tenants.tenant_of`: a container's own ``contention.tenants`` entry >
  the workload's tenant > the app's entry) and their risk weight (instead of
  ``contention.app_weights`` of their app).

**Docker labels are a policy too.** A container's own ``prescale.*`` labels
(:data:`LABELS`: ``prescale.mode=recommend``, ``prescale.memory.max=2Gi``,
``prescale.cpu.max=1500m``, ``prescale.policy=proportional``, ``prescale.tenant=team-a``,
…) make a policy of that one container. It is laid over the ``[[workloads]]`` entry the
container matches, field by field (what the labels name wins, the rest comes from the
entry), so an operator's file sets the defaults and a container's labels the
exceptions. A label value that does not parse is never guessed at: the container is
held back (as in ``recommend`` mode) with the label named in every decision's reason,
until the label is fixed. A ``prescale.*`` label close to a policy label
(``prescale.memroy.max``) is named as a likely typo and ignored; other ``prescale.*``
labels are the user's own (a ``[[workloads]]`` entry may match them).

**Which workload a container gets.** The most specific match wins: a name match beats
a label match, which beats an app-only match; among equals the first in the file. Its
bounds sit between the per-container bounds and the per-app ones, field by field:

    policy.container_bounds[c]  >  the workload  >  policy.app_bounds[app]  >  global

A container no workload matches is governed by the global settings alone.

Worked example: workloads ``shop`` (app ``shop``, memory max 4 GiB, recommend) and
``web`` (container ``web-*``, cpu max 2 cores), in that order.

- ``web-1`` of app ``shop`` → ``web``: a name match is more specific than ``shop``'s app
  match. It gets cpu max 2 and the global mode. Its memory max is the global one,
  because ``web`` sets none and the app's bounds, not ``shop``'s, come next.
- ``db-1`` of app ``shop`` → ``shop``: memory max 4 GiB, and its scale-ups are held
  back: "workload shop is in recommend mode: memory 256.0 MiB → 384.0 MiB not
  applied".
- ``cache-1`` of app ``cache`` → none: the global settings.
- a Docker container ``db-2`` of app ``shop`` with labels ``prescale.memory.max=8Gi``
  and ``prescale.tenant=team-db`` → ``shop`` with its labels laid over it (named
  ``shop+labels``): memory max 8 GiB (the label), recommend mode (from ``shop``), tenant
  ``team-db``.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prescale.app.core.actions import ScalingAction
from prescale.app.core.guards import Bounds
from prescale.app.core.policy import KINDS
from prescale.app.core.policy_types import fmt
from prescale.app.core.quantity import parse_bytes, parse_cores

MODES = ("off", "recommend", "auto")
TIERS = ("memory", "cpu", "disk", "network", "io")
#: the prefix of a container's policy labels
PREFIX = "prescale."
#: the policy labels a container may carry, and what each holds
LABELS = {
    "prescale.mode": "off | recommend | auto",
    "prescale.policy": " | ".join(KINDS),
    "prescale.controlled": "the tiers prescale may change, comma-separated (memory,cpu)",
    "prescale.memory.min": "lowest memory limit (512Mi, 2Gi, 2G)",
    "prescale.memory.max": "highest memory limit",
    "prescale.cpu.min": "lowest CPU limit (0.5, 500m)",
    "prescale.cpu.max": "highest CPU limit",
    "prescale.max-replicas": "highest replica count (an integer >= 1)",
    "prescale.min-replicas": "lowest replica count a scale-in leaves (an integer >= 1)",
    "prescale.threshold": "a fixed p_fail threshold in (0, 1]",
    "prescale.tenant": "the tenant (owner) the container counts for",
    "prescale.weight": "its risk weight when tenants contend (a number > 0)",
}
#: ``prescale.*`` labels with another use (the watch selector, the app name)
OTHER_LABELS = frozenset({"prescale.enable", "prescale.app"})


@dataclass(frozen=True)
class Workload:
    name: str
    container: str | None = None  # fnmatch glob on the container name
    app: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # all must match
    mode: str | None = None  # None: the global mode
    controlled: frozenset[str] | None = None  # tiers it may change; None: all
    bounds: Bounds = field(default_factory=Bounds)
    threshold: float | None = None  # a fixed p_fail threshold for its containers, all tiers
    kind: str | None = None  # the scale-up policy kind (None: the global policy.kind)
    tenant: str | None = None  # the owner its containers count for (None: contention.tenants)
    weight: float | None = None  # their risk weight (None: contention.app_weights)
    #: why its containers are held back whatever the mode (a label that does not parse)
    problems: tuple[str, ...] = ()
    #: what was ignored (an unknown ``prescale.*`` label): named, holds nothing back
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("workload: name must not be empty")
        if self.container is None and self.app is None and not self.labels:
            raise ValueError(f"workload {self.name!r}: give a container glob, labels, an app "
                             "or several")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"workload {self.name!r}: policy must be one of {KINDS}, "
                             f"got {self.kind!r}")
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"workload {self.name!r}: weight must be a finite number > 0, "
                             f"got {self.weight!r}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"workload {self.name!r}: threshold must be in (0, 1], "
                             f"got {self.threshold!r}")
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"workload {self.name!r}: mode must be one of {MODES}, "
                             f"got {self.mode!r}")

    @property
    def specificity(self) -> int:
        """3: matches by container name; 2: by labels; 1: by app only."""
        return 3 if self.container is not None else 2 if self.labels else 1

    def matches(self, container: str, app: str,
                labels: Mapping[str, str] | None = None) -> bool:
        """Every criterion it has holds: the name glob, each label (the container's
        labels, e.g. Docker's), the app."""
        if self.container is not None and not fnmatch.fnmatchcase(container, self.container):
            return False
        if self.labels and any((labels or {}).get(k) != v for k, v in self.labels.items()):
            return False
        return self.app is None or self.app == app

    def describe_match(self) -> str:
        parts = ([f"container {self.container}"] if self.container is not None else []) + (
            [f"labels {','.join(f'{k}={v}' for k, v in sorted(self.labels.items()))}"]
            if self.labels else []) + ([f"app {self.app}"] if self.app is not None else [])
        return " and ".join(parts)

    @classmethod
    def from_settings(cls, entry: Any) -> Workload:
        """From a ``[[workloads]]`` settings entry (duck-typed)."""
        tiers = getattr(entry, "controlled", None)
        return cls(name=entry.name, container=entry.container, app=entry.app,
                   labels=dict(getattr(entry, "labels", None) or {}),
                   mode=None if entry.mode is None else str(getattr(entry.mode, "value",
                                                                     entry.mode)),
                   controlled=None if tiers is None else frozenset(str(t) for t in tiers),
                   bounds=Bounds.from_settings(entry),
                   threshold=getattr(entry, "threshold", None),
                   kind=getattr(entry, "policy", None),
                   tenant=getattr(entry, "tenant", None) or None,
                   weight=getattr(entry, "weight", None))

    def under(self, base: Workload | None) -> Workload:
        """This (a container's label policy) laid over ``base`` (the ``[[workloads]]``
        entry it matches), field by field: what this one sets wins. Example: labels
        setting memory max 8 GiB over ``shop`` (recommend, memory max 4 GiB, cpu max 2)
        → ``shop+labels``: recommend, memory max 8 GiB, cpu max 2."""
        if base is None:
            return self
        b, o = base.bounds, self.bounds
        bounds = Bounds({**b.min_limit, **o.min_limit}, {**b.max_limit, **o.max_limit},
                        o.max_replicas if o.max_replicas is not None else b.max_replicas,
                        o.min_replicas if o.min_replicas is not None else b.min_replicas)
        pick = {f: getattr(self, f) if getattr(self, f) is not None else getattr(base, f)
                for f in ("mode", "controlled", "threshold", "kind", "tenant", "weight")}
        try:
            return replace(base, name=f"{base.name}+labels", bounds=bounds,
                           problems=base.problems + self.problems,
                           ignored=base.ignored + self.ignored, **pick)
        except ValueError as exc:  # e.g. the label's min above the entry's max
            return replace(base, name=f"{base.name}+labels", ignored=self.ignored,
                           problems=(*base.problems, *self.problems,
                                     f"labels over workload {base.name}: {exc}"))


def from_labels(container: str, labels: Mapping[str, str] | None) -> Workload | None:
    """The policy a container's own ``prescale.*`` labels make (:data:`LABELS`), or
    ``None`` when it carries none. A value that does not parse is recorded in
    ``problems`` (the container is held back) and the rest still apply; an unknown
    ``prescale.*`` key is a problem that holds nothing back. Example: ``{"prescale.mode":
    "recommend", "prescale.memory.max": "2Gi"}`` → mode recommend, memory max
    2147483648.0; ``{"prescale.memory.max": "2Q"}`` → held back: "label
    prescale.memory.max='2Q': '2Q' is not a size: …"; ``{"prescale.tier": "batch"}`` →
    ``None`` (the user's own label, no policy)."""
    if not labels:
        return None
    own = tuple(sorted((k, v) for k, v in labels.items()
                       if k.startswith(PREFIX) and k not in OTHER_LABELS))
    return _from_label_items(container, own) if own else None


@functools.lru_cache(maxsize=4096)
def _from_label_items(container: str, items: tuple[tuple[str, str], ...]) -> Workload | None:
    values: dict[str, Any] = {}
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    problems: list[str] = []
    unknown: list[str] = []

    def bad(key: str, value: str, why: str) -> None:
        problems.append(f"label {key}={value!r}: {why}")

    for key, raw in items:
        value = raw.strip()
        try:
            if key == "prescale.mode":
                if value not in MODES:
                    raise ValueError(f"expected one of {', '.join(MODES)}")
                values["mode"] = value
            elif key == "prescale.policy":
                if value not in KINDS:
                    raise ValueError(f"expected one of {', '.join(KINDS)}")
                values["kind"] = value
            elif key == "prescale.controlled":
                tiers = [t.strip() for t in value.split(",") if t.strip()]
                wrong = [t for t in tiers if t not in TIERS]
                if wrong:
                    raise ValueError(f"unknown tier {', '.join(wrong)}; tiers: "
                                     f"{', '.join(TIERS)}")
                values["controlled"] = frozenset(tiers)
            elif key in ("prescale.memory.min", "prescale.memory.max"):
                (lo if key.endswith("min") else hi)["memory"] = parse_bytes(value)
            elif key in ("prescale.cpu.min", "prescale.cpu.max"):
                (lo if key.endswith("min") else hi)["cpu"] = parse_cores(value)
            elif key in ("prescale.max-replicas", "prescale.min-replicas"):
                if not value.isdigit() or int(value) < 1:
                    raise ValueError("expected an integer >= 1")
                values[key.removeprefix("prescale.").replace("-", "_")] = int(value)
            elif key == "prescale.threshold":
                t = float(value)
                if not 0 < t <= 1:
                    raise ValueError("expected a number in (0, 1]")
                values["threshold"] = t
            elif key == "prescale.tenant":
                if not value:
                    raise ValueError("expected a tenant name")
                values["tenant"] = value
            elif key == "prescale.weight":
                wt = float(value)
                if not (math.isfinite(wt) and wt > 0):
                    raise ValueError("expected a finite number > 0")
                values["weight"] = wt
            else:
                unknown.append(key)
        except ValueError as exc:
            bad(key, raw, str(exc))
    for tier in TIERS:
        if tier in lo and tier in hi and lo[tier] > hi[tier]:
            problems.append(f"labels prescale.{tier}.min above prescale.{tier}.max")
            lo.pop(tier), hi.pop(tier)
    # a key close to a known one is named as a likely typo (not held back for, nor taken
    # as policy); others are the user's own labels (a [[workloads]] entry may match them)
    ignored = tuple(f"label {k} is not a policy label: ignored (did you mean {near[0]}?)"
                    for k in unknown if (near := difflib.get_close_matches(k, LABELS, 1, 0.85)))
    reps = (values.pop("max_replicas", None), values.pop("min_replicas", None))
    if reps[0] is not None and reps[1] is not None and reps[1] > reps[0]:
        problems.append("label prescale.min-replicas above prescale.max-replicas")
        reps = (None, None)
    if not (values or lo or hi or problems or ignored or reps != (None, None)):
        return None
    return Workload(name=f"labels of {container}", container=container,
                    bounds=Bounds(lo, hi, *reps), **values,
                    problems=tuple(problems), ignored=ignored)


def label_problems(container: str, labels: Mapping[str, str] | None) -> tuple[str, ...]:
    """What is wrong with a container's ``prescale.*`` labels (for the Docker source to
    report when it finds the container): the values that hold it back, then the unknown
    labels ignored. ``()``: nothing."""
    w = from_labels(container, labels)
    return () if w is None else (*w.problems, *w.ignored)


def select(workloads: Sequence[Workload], container: str, app: str,
           labels: Mapping[str, str] | None = None) -> Workload | None:
    """The workload of a container: the most specific ``[[workloads]]`` match (the first
    among equals), with the container's own label policy (:func:`from_labels`) laid
    over it."""
    best: Workload | None = None
    for w in workloads:
        if w.matches(container, app, labels) and (
                best is None or w.specificity > best.specificity):
            best = w
    own = from_labels(container, labels) if labels else None
    return best if own is None else own.under(best)


def held_back(w: Workload | None, action: ScalingAction) -> str | None:
    """Why ``w`` keeps ``action`` from being applied (``None``: it does not)."""
    if w is None:
        return None
    tier = action.tier.value
    if w.problems:
        return (f"{w.name}: {'; '.join(w.problems)}: {tier} {fmt(tier, action.old_limit)}"
                f" → {fmt(tier, action.new_limit)} not applied until the label is fixed")
    if w.mode in ("off", "recommend"):
        return (f"workload {w.name} is in {w.mode} mode: {tier} {fmt(tier, action.old_limit)}"
                f" → {fmt(tier, action.new_limit)} not applied")
    if w.controlled is not None and tier not in w.controlled:
        return (f"workload {w.name} does not control {tier} (controls "
                f"{', '.join(sorted(w.controlled)) or 'nothing'}): not applied")
    return None


def bound_sources(guards: Any, container: str, app: str, tier: str,
                  labels: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Where a container's ``[lo, hi]`` of ``tier`` come from (``guards`` a
    :class:`~app.core.guards.GuardConfig`): ``"container"``, ``"workload <name>"``,
    ``"app"`` or ``"global"``, field by field, as :meth:`GuardConfig.bounds_for` resolves
    them."""
    w = guards.workload_of(container, app, labels)
    levels = [("container", guards.container_bounds.get(container)),
              (f"workload {w.name}" if w is not None else "", w.bounds if w else None),
              ("app", guards.app_bounds.get(app))]
    out = []
    for attr in ("min_limit", "max_limit"):
        src = "global"
        for label, b in levels:
            if b is not None and tier in getattr(b, attr):
                src = label
                break
        out.append(src)
    return out[0], out[1]


def recommendation(usage: float, forecast: float, lo: float, hi: float, margin: float,
                   safety: float) -> tuple[float, float, float]:
    """A standing recommendation for one tier, as ``kubectl describe vpa`` shows one:
    ``(lower, target, upper)``, each within ``[lo, hi]``.

    - lower = usage × (1 + safety): below it the container is short now;
    - target = max(forecast, usage) × (1 + margin): what the horizon needs, with the
      policy's margin (what a scale-up would set);
    - upper = hi: the most prescale may set here.

    Worked example: usage 200 MiB, forecast 300 MiB, bounds [32 MiB, 2 GiB], margin 0.2,
    safety 0.1 → lower 220 MiB, target 360 MiB, upper 2 GiB. Unknown usage or forecast
    (nan) gives nan for what needs it."""
    def clamp(x: float) -> float:
        return x if x != x else min(max(x, lo), hi)  # nan stays nan

    base = forecast if not usage == usage or forecast >= usage else usage
    return clamp(usage * (1 + safety)), clamp(base * (1 + margin)), hi


__all__ = ["LABELS", "MODES", "Workload", "bound_sources", "from_labels", "held_back",
           "label_problems", "recommendation", "select"]
