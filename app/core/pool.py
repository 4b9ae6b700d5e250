"""Resource pool of one host: capacity minus a reserve, and the limits granted.

The pool knows, per container, the memory limit (bytes) and CPU quota (cores) it
has granted. An ask changes one container's grant of one tier from ``old_limit``
to ``new_limit``; it is granted only if the sum of all grants of that tier stays
within ``capacity − reserve``. Asks are served in order of ``p_fail`` (highest
first), so pre-emptive scale-ups of the containers most at risk come first.
Unlimited limits (``inf``) are not grants of the pool and count as 0.

Worked example: capacity 8 GiB, reserve 2 GiB → grantable 6 GiB. Grants: a = 4 GiB,
b = 1 GiB (free 1 GiB). Ask: b 1 GiB → 2.5 GiB (Δ +1.5 GiB) → denied, "needs
1.5 GiB, 1 GiB free". Ask: b 1 GiB → 1.5 GiB (Δ +0.5 GiB) → granted, free 0.5 GiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.core.actions import PoolVerdict, ScalingAction, Verdict
from app.core.sample import Tier

_EPS = 1e-9  # relative tolerance: 1.5 − 1.41 must still fit an ask of 0.09


@dataclass(frozen=True)
class Capacity:
    memory_bytes: float
    cpu_cores: float

    def of(self, tier: Tier) -> float:
        return self.memory_bytes if tier is Tier.MEMORY else self.cpu_cores


def _fmt(tier: Tier, value: float) -> str:
    if tier is Tier.MEMORY:
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.2f} cores"


class Pool:
    def __init__(self, capacity: Capacity, reserve: Capacity) -> None:
        for tier in Tier:
            if reserve.of(tier) < 0 or capacity.of(tier) <= 0:
                raise ValueError(f"pool: capacity must be > 0 and reserve >= 0 ({tier.value})")
        self.capacity = capacity
        self.reserve = reserve
        self.grants: dict[Tier, dict[str, float]] = {t: {} for t in Tier}

    def grantable(self, tier: Tier) -> float:
        return max(self.capacity.of(tier) - self.reserve.of(tier), 0.0)

    def granted(self, tier: Tier) -> float:
        return sum(v for v in self.grants[tier].values() if math.isfinite(v))

    def free(self, tier: Tier) -> float:
        return self.grantable(tier) - self.granted(tier)

    def observe(self, container: str, tier: Tier, limit: float) -> None:
        """Record a limit the container already has (seen in a sample), without asking."""
        self.grants[tier][container] = float(limit)

    def forget(self, container: str) -> None:
        for tier in Tier:
            self.grants[tier].pop(container, None)

    def request(self, asks: list[ScalingAction], commit: bool = True) -> list[PoolVerdict]:
        """Grant or deny each ask (highest p_fail first). Denials name the shortfall.

        With ``commit=False`` (recommend mode) the verdicts are computed on a copy and
        the pool is left as it was.
        """
        work = {t: dict(g) for t, g in self.grants.items()}
        out: dict[str, PoolVerdict] = {}
        for ask in sorted(asks, key=lambda a: (-a.p_fail, a.action_id)):
            tier = ask.tier
            current = work[tier].get(ask.container, ask.old_limit)
            current = current if math.isfinite(current) else 0.0
            need = ask.new_limit - current
            used = sum(v for v in work[tier].values() if math.isfinite(v))
            free = self.grantable(tier) - used
            if not math.isfinite(ask.new_limit) or ask.new_limit <= 0:
                out[ask.action_id] = PoolVerdict(
                    ask.action_id, Verdict.DENIED, f"invalid new limit {ask.new_limit!r}"
                )
            elif need > free + _EPS * max(self.grantable(tier), 1.0):
                out[ask.action_id] = PoolVerdict(
                    ask.action_id,
                    Verdict.DENIED,
                    f"pool: needs {_fmt(tier, need)}, {_fmt(tier, max(free, 0))} free "
                    f"of {_fmt(tier, self.grantable(tier))} grantable",
                )
            else:
                work[tier][ask.container] = ask.new_limit
                out[ask.action_id] = PoolVerdict(
                    ask.action_id,
                    Verdict.GRANTED,
                    f"pool: granted {_fmt(tier, need)}, {_fmt(tier, free - need)} left",
                )
        if commit:
            self.grants = work
        return [out[a.action_id] for a in asks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": {"memory_bytes": self.capacity.memory_bytes,
                         "cpu_cores": self.capacity.cpu_cores},
            "reserve": {"memory_bytes": self.reserve.memory_bytes,
                        "cpu_cores": self.reserve.cpu_cores},
            "grants": {t.value: {k: (v if math.isfinite(v) else None) for k, v in g.items()}
                       for t, g in self.grants.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pool:
        pool = cls(Capacity(**data["capacity"]), Capacity(**data["reserve"]))
        for t in Tier:
            for k, v in data.get("grants", {}).get(t.value, {}).items():
                pool.grants[t][k] = math.inf if v is None else float(v)
        return pool
