"""A policy per workload: which containers it covers and what it changes there.

A :class:`Workload` is one ``[[workloads]]`` entry of the settings, like a Kubernetes
VPA object. Its fields:

- **match**: a container-name glob (``fnmatch``: ``web-*``), labels (every one must be
  on the container: Docker's labels), an app — one or several (then all must match);
- **mode**: ``off`` (observe only), ``recommend`` (decide and log, never act) or
  ``auto``. A workload can hold prescale back, not push it further: under a global
  ``recommend`` or ``off`` nothing acts anyway;
- **controlled**: the tiers it may change (``None``: all);
- **bounds**: its min / max limits per tier and ``max_replicas``;
- **threshold**: a fixed p_fail threshold for its containers (all tiers), instead of
  the adaptive one (``thresholds.per_app`` of a container still wins).

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
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prescale.app.core.actions import ScalingAction
from prescale.app.core.guards import Bounds

MODES = ("off", "recommend", "auto")


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

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("workload: name must not be empty")
        if self.container is None and self.app is None and not self.labels:
            raise ValueError(f"workload {self.name!r}: give a container glob, labels, an app "
                             "or several")
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
                   threshold=getattr(entry, "threshold", None))


def select(workloads: Sequence[Workload], container: str, app: str,
           labels: Mapping[str, str] | None = None) -> Workload | None:
    """The workload of a container: the most specific match, the first among equals."""
    best: Workload | None = None
    for w in workloads:
        if w.matches(container, app, labels) and (
                best is None or w.specificity > best.specificity):
            best = w
    return best


def held_back(w: Workload | None, action: ScalingAction) -> str | None:
    """Why ``w`` keeps ``action`` from being applied (``None``: it does not)."""
    if w is None:
        return None
    tier = action.tier.value
    if w.mode in ("off", "recommend"):
        return (f"workload {w.name} is in {w.mode} mode: {tier} {_amount(tier, action.old_limit)}"
                f" → {_amount(tier, action.new_limit)} not applied")
    if w.controlled is not None and tier not in w.controlled:
        return (f"workload {w.name} does not control {tier} (controls "
                f"{', '.join(sorted(w.controlled)) or 'nothing'}): not applied")
    return None


def _amount(tier: str, x: float) -> str:
    """``256.0 MiB`` for memory, ``1.50 cores`` for CPU, the number otherwise."""
    if tier == "memory":
        return f"{x / 2**20:.1f} MiB"
    return f"{x:.2f} cores" if tier == "cpu" else f"{x:g}"


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


__all__ = ["MODES", "Workload", "bound_sources", "held_back", "recommendation", "select"]
