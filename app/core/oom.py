"""The response to an OOM kill: a bump that converges, a floor that holds, a loop breaker.

A forecast can miss (a VM whose memory jumps from 1 to 19 GiB within one 5-minute
sample gives no trend to see). When the kernel then kills container c for memory at
time t (an ``oom_kill`` event), with the limit L in force, the engine answers with a
*bump* (:func:`bump_target`)::

    k     = OOM kills of c within the last ``loop_window_s`` (this one included)
    used  = max(L, the long peak usage)          the demand reached at least the limit
    N     = max(used + min_bump_bytes, used × bump_ratio^k, forecast × (1 + margin),
                R)
    loop (k ≥ loop_kills):  N = max(N, used × loop_ratio)

with R the highest limit c had over the long peak's span (``cost.long_peak_s``): a
kill after a scale-down proves the scale-down too deep, and the bump gives back what
was taken at once (capped by the bounds and the pool like any increase) instead of
climbing back in 20 % steps through more kills.

— at least the VPA's ``max(used + 100 MiB, 1.2 × used)`` (``OOMMinBumpUp``,
``OOMBumpUpRatio``), compounding while the kills go on (as Thoras and CloudPilot do),
never below what the window's trend forecasts. The bump is a memory RESIZE with
``cause == "oom"``: the guards' cooldown and hysteresis hold never block it (waiting
after a kill only lets the next one happen); bounds, the pool and partial grants
still apply (capacity-aware).

**Floor.** The limit a bump really reached (:meth:`OomState.settle`) is a floor for
``stabilise_s``: no decrease — idle scale-down, reclaim under contention — goes below
it until then (:meth:`OomState.floors`); forecasts may raise the limit above it.

**Loop breaker.** At k ≥ ``loop_kills`` kills within ``loop_window_s`` the step is
the larger one above; a replicated container is scaled out instead (one more replica
shares the load); a container that cannot grow (at its maximum) is *flagged* for the
operator (:attr:`OomState.flagged`, with the reason, in the decision log). A flag
clears when ``loop_window_s`` passes without a kill.

Worked example (L = 512 MiB, usage capped at the limit, min bump 100 MiB, ratio 1.2,
loop at 3 kills in 3600 s, loop ratio 2, no forecast): a kill at t = 0 → k = 1,
N = max(612, 614.4) = 614.4 MiB; a second at t = 600 s under 614.4 MiB → k = 2,
N = max(714.4, 614.4 × 1.44 = 884.7) = 884.7 MiB; a third at t = 1200 s under
884.7 MiB → k = 3 (a loop), N = max(984.7, 884.7 × 1.728 = 1528.8, 884.7 × 2 =
1769.5) = 1769.5 MiB, and the reason says "kill loop: 3 OOM kills within 3600 s".
With stabilise_s = 86400 the last applied bump is the floor until t = 87600 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MiB = 2**20


@dataclass(frozen=True)
class OomConfig:
    """How the engine answers an OOM kill (module docstring)."""

    enabled: bool = True
    min_bump_bytes: float = 100 * MiB
    bump_ratio: float = 1.2
    margin_fraction: float = 0.25
    stabilise_s: float = 86_400.0
    loop_kills: int = 3
    loop_window_s: float = 3600.0
    loop_ratio: float = 2.0

    def __post_init__(self) -> None:
        for name, lo in (("min_bump_bytes", 0.0), ("bump_ratio", 1.0), ("margin_fraction", 0.0),
                         ("stabilise_s", 0.0), ("loop_window_s", 0.0), ("loop_ratio", 1.0)):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= lo):
                raise ValueError(f"OomConfig.{name} must be a finite number >= {lo}, got {v!r}")
        if isinstance(self.loop_kills, bool) or not isinstance(self.loop_kills, int) \
                or self.loop_kills < 1:
            raise ValueError(f"OomConfig.loop_kills must be an int >= 1, got {self.loop_kills!r}")

    @classmethod
    def from_settings(cls, oom: Any) -> OomConfig:
        """From ``settings.oom`` (duck-typed; None: the defaults)."""
        if oom is None:
            return cls()
        return cls(**{name: getattr(oom, name) for name in cls.__dataclass_fields__
                      if getattr(oom, name, None) is not None})


def bump_target(cfg: OomConfig, limit: float, peak_usage: float, forecast: float,
                kills: int, limit_peak: float = math.nan) -> tuple[float, str]:
    """The bump N after the ``kills``-th kill in the window, and how it was sized (the
    formula of the module docstring). Worked example: 512 MiB, 1 kill → 614.4 MiB;
    the same after a scale-down from 2 GiB (``limit_peak``) → 2 GiB."""
    used = max(limit, peak_usage if math.isfinite(peak_usage) else 0.0)
    k = max(int(kills), 1)
    parts = {"VPA floor": used + cfg.min_bump_bytes,
             f"× {cfg.bump_ratio:g}^{k}": used * cfg.bump_ratio ** k}
    if math.isfinite(forecast) and forecast > 0:
        parts[f"forecast × {1 + cfg.margin_fraction:.2f}"] = forecast * (1 + cfg.margin_fraction)
    if math.isfinite(limit_peak) and limit_peak > limit:
        parts["back to its limit before a scale-down"] = limit_peak
    if k >= cfg.loop_kills:
        parts[f"kill loop × {cfg.loop_ratio:g}"] = used * cfg.loop_ratio
    how, new = max(parts.items(), key=lambda kv: kv[1])
    return new, (how if how.startswith("back") else f"{how} of {used / MiB:.1f} MiB")


@dataclass
class OomState:
    """What the OOM response remembers (JSON: :meth:`to_dict`): per container the kill
    times within the loop window, the floor and until when it holds, and the flags."""

    kills: dict[str, list[float]] = field(default_factory=dict)
    floor: dict[str, tuple[float, float]] = field(default_factory=dict)  # (bytes, until_s)
    flagged: dict[str, str] = field(default_factory=dict)

    def record_kills(self, now_s: float, killed: Mapping[str, int], cfg: OomConfig
                     ) -> dict[str, int]:
        """Fold this tick's kills (container → count) in; returns container → kills
        within the loop window (this tick's included), for the killed ones. Windows and
        flags of containers without a kill for ``loop_window_s`` are dropped."""
        horizon = now_s - cfg.loop_window_s
        for c in list(self.kills):
            kept = [t for t in self.kills[c] if t > horizon]
            if kept:
                self.kills[c] = kept
            else:
                del self.kills[c]
                self.flagged.pop(c, None)
        out = {}
        for c, n in killed.items():
            times = self.kills.setdefault(c, [])
            times.extend([now_s] * max(int(n), 1))
            out[c] = len(times)
        return out

    def settle(self, now_s: float, container: str, applied_limit: float, cfg: OomConfig
               ) -> None:
        """A bump (or what the pool granted of it) is in force: hold it as a floor."""
        if math.isfinite(applied_limit):
            prev = self.floor.get(container)
            level = applied_limit if prev is None or prev[1] <= now_s else max(prev[0],
                                                                                applied_limit)
            self.floor[container] = (float(level), now_s + cfg.stabilise_s)

    def floors(self, now_s: float, names: Iterable[str]) -> list[float]:
        """Per container of ``names``: the floor in force at ``now_s`` (0: none). Expired
        floors are dropped."""
        for c in [c for c, (_, until) in self.floor.items() if until <= now_s]:
            del self.floor[c]
        get = self.floor.get
        return [f[0] if (f := get(c)) is not None else 0.0 for c in names]

    def forget(self, live: Iterable[str]) -> None:
        """Drop what is kept for containers not in ``live``."""
        alive = set(live)
        for d in (self.kills, self.floor, self.flagged):
            for c in [c for c in d if c not in alive]:
                del d[c]

    def to_dict(self) -> dict[str, Any]:
        return {"kills": {c: list(t) for c, t in self.kills.items()},
                "floor": {c: [b, u] for c, (b, u) in self.floor.items()},
                "flagged": dict(self.flagged)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OomState:
        try:
            return cls(
                kills={str(c): [float(x) for x in t] for c, t in data.get("kills", {}).items()},
                floor={str(c): (float(v[0]), float(v[1]))
                       for c, v in data.get("floor", {}).items()},
                flagged={str(c): str(r) for c, r in data.get("flagged", {}).items()})
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"OomState: malformed checkpoint: {exc}") from exc


__all__ = ["OomConfig", "OomState", "bump_target"]
