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

**Runaway (a leak) detector.** A bump is right for a container whose *load* outgrew its
limit, wrong for a leak: it only hands a runaway more of the pool until its next kill.
:func:`grew_steadily` marks a kill as *suspect* when the memory before it rose at
≥ ``STEADY_FRACTION`` of the window's steps and by ≥ ``STEADY_GROWTH_FRACTION`` of the
limit (a burst is flat, then ramps: it fails this); :meth:`OomState.confirm` then
watches the first ``CONFIRM_SAMPLES`` readings with usage > 0 after the kill: if their
highest is at most ``RESTART_FRACTION`` × the limit at the kill, the growth was the
container's own (it resets on a restart, as a leak does) — a *runaway*: its OOM floor
is dropped, its long usage and limit peaks restart from now (so a reclaim under
contention may take back its grant) and it is flagged for the operator. A burst that is
killed restarts into the same load (usage high at once): it stays protected. Worked
example: limit 512 MiB, memory rising 200 → 500 MiB over the window, killed, then
readings 0 (down), 210, 215, 220 MiB → 220 ≤ 0.5 × 512 → runaway; a burst's 0, 480,
490, 470 MiB → not.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

MiB = 2**20
#: runaway detector (module docstring)
STEADY_FRACTION = 0.8
STEADY_GROWTH_FRACTION = 0.05
CONFIRM_SAMPLES = 3
RESTART_FRACTION = 0.5


def grew_steadily(memory_bytes: Sequence[float], limit_bytes: float) -> bool:
    """Did memory rise steadily to a kill? ``memory_bytes``: the readings before it,
    oldest first (nan = missing). True when ≥ 5 readings, at least ``STEADY_FRACTION``
    of the steps between them rise (or hold) and the rise is ≥ ``STEADY_GROWTH_FRACTION``
    of the limit. Worked example (limit 512): 200, 260, 320, 380, 440, 500 → True;
    200 × 5, 300, 450, 500 (a burst's ramp after a flat run) → 4 of 7 steps rise → False."""
    x = [v for v in memory_bytes if math.isfinite(v)]
    if len(x) < 5 or not (math.isfinite(limit_bytes) and limit_bytes > 0):
        return False
    steps = [b - a for a, b in zip(x[:-1], x[1:], strict=True)]
    rising = sum(1 for d in steps if d > 0)
    return (rising >= STEADY_FRACTION * len(steps)
            and x[-1] - x[0] >= STEADY_GROWTH_FRACTION * limit_bytes)


@dataclass(frozen=True)
class OomConfig:
    """How the engine answers an OOM kill (module docstring). The field defaults are
    prescale's defaults (``oom.*`` in the settings read them: :mod:`app.core.config`)."""

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
        """From ``settings.oom`` (duck-typed): every field, by the same name."""
        return cls(**{f.name: getattr(oom, f.name) for f in fields(cls)})


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
    #: kills that look like a leak's, awaiting the restart: (limit at the kill, readings)
    suspects: dict[str, tuple[float, list[float]]] = field(default_factory=dict)

    def suspect(self, container: str, limit_bytes: float) -> None:
        """A kill after steady growth (:func:`grew_steadily`): watch the restart."""
        self.suspects[container] = (float(limit_bytes), [])

    def confirm(self, container: str, usage_bytes: float) -> bool | None:
        """One reading of a suspect: True once it is a runaway (and then forgotten as a
        suspect, its floor dropped), False once it is not, None while undecided (down:
        usage ≤ 0, or fewer than ``CONFIRM_SAMPLES`` readings)."""
        entry = self.suspects.get(container)
        if entry is None:
            return None
        limit, seen = entry
        if math.isfinite(usage_bytes) and usage_bytes > 0:
            seen.append(float(usage_bytes))
        if len(seen) < CONFIRM_SAMPLES:
            return None
        del self.suspects[container]
        if max(seen) <= RESTART_FRACTION * limit:
            self.floor.pop(container, None)
            self.flagged[container] = (
                f"runaway: memory grew steadily to an OOM kill at {limit / MiB:.1f} MiB and "
                f"restarted at {max(seen) / MiB:.1f} MiB: a leak, not load; its grant may be "
                "reclaimed under contention")
            return True
        return False

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
        for d in (self.kills, self.floor, self.flagged, self.suspects):
            for c in [c for c in d if c not in alive]:
                del d[c]

    def to_dict(self) -> dict[str, Any]:
        return {"kills": {c: list(t) for c, t in self.kills.items()},
                "floor": {c: [b, u] for c, (b, u) in self.floor.items()},
                "flagged": dict(self.flagged),
                "suspects": {c: [lim, list(seen)] for c, (lim, seen) in self.suspects.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OomState:
        try:
            return cls(
                kills={str(c): [float(x) for x in t] for c, t in data.get("kills", {}).items()},
                floor={str(c): (float(v[0]), float(v[1]))
                       for c, v in data.get("floor", {}).items()},
                flagged={str(c): str(r) for c, r in data.get("flagged", {}).items()},
                suspects={str(c): (float(v[0]), [float(x) for x in v[1]])
                          for c, v in data.get("suspects", {}).items()})
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"OomState: malformed checkpoint: {exc}") from exc


__all__ = ["OomConfig", "OomState", "bump_target", "grew_steadily"]
