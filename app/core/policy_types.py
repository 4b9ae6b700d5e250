"""The snapshot every policy decides on, the state it carries between ticks, and units.

:class:`PolicyInput` is one tick's typed snapshot (it carries its own ``now_s``);
:class:`PolicyState` is everything a policy and its guards remember between ticks
(JSON-serialisable with :meth:`PolicyState.to_dict` / :meth:`PolicyState.from_dict`,
so the coordinator can checkpoint it). Both are validated on construction: a bad
snapshot raises :class:`ValueError` naming the field and changes nothing.

Per-tier mappings are keyed by :class:`~app.core.sample.Tier` (a ``StrEnum``, so
``"memory"`` and ``Tier.MEMORY`` are the same key); every array in them has one
entry per container, in the order of ``containers``.

Units: memory in bytes, CPU in cores; other tiers (disk, network), when a predictor
provides them, in whatever unit their limit is expressed in. Memory limits are
rounded up to a 4 KiB page, CPU quotas up to 0.01 core, other tiers not at all
(:func:`round_up`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from prescale.app.core.predictor import Prediction
from prescale.app.core.sample import Tier

PAGE_BYTES = 4096
CPU_UNIT_CORES = 0.01
# The tiers as plain strings (``Tier`` is a ``StrEnum``: equal, same hash), for the
# per-action helpers below: reading ``Tier.MEMORY`` goes through the enum's descriptor
# (~0.5 µs), a module constant does not. Same results.
_PAGED = frozenset({str(Tier.MEMORY), str(Tier.DISK)})
_RATES = frozenset({str(Tier.NETWORK), str(Tier.IO)})
_CPU = str(Tier.CPU)


def round_up(tier: str, value: float) -> float:
    """Round a limit up to the tier's unit: 4 KiB for memory and disk, 0.01 core for CPU.

    Worked example: memory 1001 B → 4096 B; CPU 0.375 cores → 0.38; CPU 0.38 → 0.38
    (a value already on the grid, up to float noise of 1e-9, is kept).
    """
    if not math.isfinite(value) or abs(value) > 1e300:  # beyond any grid: keep as is
        return float(value)
    if tier in _PAGED:
        return float(math.ceil(value / PAGE_BYTES - 1e-9) * PAGE_BYTES)
    if tier == _CPU:
        return math.ceil(value * 100 - 1e-9) / 100
    return float(value)


def round_up_array(tier: str, values: Any) -> np.ndarray:
    """:func:`round_up` of every value (a new float64 array), with the same float bits.

    Worked example: memory [1001, 4096, -5, nan] → [4096, 4096, 0, nan] (``math.ceil``
    gives an int, whose 0 has no sign: ``+ 0.0`` turns the −0.0 of ``np.ceil`` into
    0.0); CPU [0.375, 0.38] → [0.38, 0.38].
    """
    v = np.array(values, dtype=np.float64)
    if tier in _PAGED:
        with np.errstate(all="ignore"):
            grid = (np.ceil(v / PAGE_BYTES - 1e-9) + 0.0) * PAGE_BYTES
    elif tier == _CPU:
        with np.errstate(all="ignore"):
            grid = (np.ceil(v * 100 - 1e-9) + 0.0) / 100
    else:
        return v
    off_grid = ~np.isfinite(v) | (np.abs(v) > 1e300)  # beyond any grid: kept as is
    return np.where(off_grid, v, grid)


def fmt(tier: str, value: float) -> str:
    """A limit for humans: ``"128.0 MiB"`` (memory, disk), ``"0.38 cores"``, ``"1.50
    MiB/s"`` (network, block I/O), ``"3"`` (other tiers)."""
    if tier in _PAGED:
        return f"{value / 2**20:.1f} MiB"
    if tier in _RATES:
        return f"{value / 2**20:.2f} MiB/s"
    if tier == _CPU:
        return f"{value:.2f} cores"
    return f"{value:.4g}"


def format_each(spec: str, values: Any) -> list[str]:
    """``[spec % v for v in values]`` in one ``%`` operation. For a float, ``"%.2f" % v``
    is ``f"{v:.2f}"`` (the same C routine, also for nan, inf and -0.0):
    ``format_each("%.1f", [1.25, 2.0])`` → ``["1.2", "2.0"]``."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return []
    return ("\0".join(repeat(spec, len(v))) % tuple(v.tolist())).split("\0")


def fmt_all(tier: str, values: Any) -> list[str]:
    """:func:`fmt` of every value, the same text: ``fmt_all("memory", [2**27])`` →
    ``["128.0 MiB"]`` (the division by 2**20 done on the whole array: the same float),
    formatted in one ``%`` operation (:func:`format_each`)."""
    v = np.asarray(values, dtype=np.float64)
    if tier in _PAGED:
        return format_each("%.1f MiB", v / 2**20)
    if tier in _RATES:
        return format_each("%.2f MiB/s", v / 2**20)
    if tier == _CPU:
        return format_each("%.2f cores", v)
    return [f"{x:.4g}" for x in v.tolist()]


def key_of(container: str, tier: str) -> str:
    """State key of one container and tier: ``"web-1/memory"``."""
    return f"{container}/{tier}"


def replicas_key(container: str) -> str:
    """State key of a container's horizontal scaling: ``"web-1/replicas"``."""
    return f"{container}/replicas"


def _vector(name: str, value: Any, n: int, dtype: type = np.float64) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(
            f"PolicyInput.{name} has shape {arr.shape}, expected ({n},) (one per container)"
        )
    return arr


def _tier_vectors(name: str, value: Mapping[Any, Any] | None, n: int) -> dict[Tier, np.ndarray]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"PolicyInput.{name} must be a mapping tier → array, got {type(value)}")
    return {k: _vector(f"{name}[{k}]", v, n) for k, v in value.items()}


@dataclass(frozen=True)
class PolicyInput:
    """One tick's snapshot for N containers (``containers`` order everywhere).

    Required (what the spine already fills):

    - ``now_s``: the tick's time (seconds, the snapshot's clock; finite);
    - ``containers``: N distinct names;
    - ``prediction``: per-tier p_fail, time to limit, forecast at the horizon, limit;
    - ``thresholds``: ``[N]`` p_fail at which a container is acted on.

    Optional (default: not known; each policy or guard says what it does without it):

    - ``apps``: ``[N]`` application of each container (per-app bounds); ``""`` = none;
    - ``labels``: ``[N]`` each container's labels (``[[workloads]]`` matched by label);
    - ``usage``: tier → ``[N]`` current usage (bytes / cores; ``nan`` = unknown).
      Needed by *proportional*, by the memory safety floor and by cost; without it
      memory is never lowered;
    - ``peak_usage``: tier → ``[N]`` observed peak usage over a long window (e.g. 24 h
      from the history store); cost never goes below it × (1 + margin);
    - ``tier_thresholds``: tier → ``[N]`` per-tier threshold (*multi-tier*; default
      ``thresholds``);
    - ``replicated``: ``[N]`` bool, the container is one replica of a horizontally
      scalable service (escalation vertical → horizontal allowed);
    - ``replicas``: ``[N]`` its current replica count (default 1);
    - ``headroom_on_node``: tier → ``[N]`` how much more of the tier the container's
      node can still give it (bytes / cores; ``nan`` or absent = unknown, not checked);
    - ``pool_free``: tier → free capacity of the pool (bytes / cores);
    - ``floor``: tier → ``[N]`` the lowest limit a decrease may set now (the OOM
      stabilisation floor: :mod:`app.core.oom`; 0 = none);
    - ``oom_kills``: ``[N]`` for a container OOM-killed since the last tick, its kills
      within the OOM loop window (this one included); 0 for the others;
    - ``limit_peak``: tier → ``[N]`` the highest limit the container had over the long
      peak's span (``cost.long_peak_s``; nan = unknown): what an OOM bump restores
      after a scale-down that proved too deep;
    - ``demand_peak``: tier → ``[N]`` the highest *total* usage over all replicas
      (per-replica usage × replicas) over the long peak's span (nan = unknown): what a
      scale-in must still serve (:mod:`app.core.scale_in`).
    """

    now_s: float
    containers: Sequence[str]
    prediction: Prediction
    thresholds: np.ndarray
    apps: Sequence[str] | None = None
    labels: Sequence[Mapping[str, str]] | None = None
    usage: Mapping[Tier, np.ndarray] | None = None
    peak_usage: Mapping[Tier, np.ndarray] | None = None
    tier_thresholds: Mapping[Tier, np.ndarray] | None = None
    replicated: np.ndarray | None = None
    replicas: np.ndarray | None = None
    headroom_on_node: Mapping[Tier, np.ndarray] | None = None
    pool_free: Mapping[Tier, float] | None = None
    floor: Mapping[Tier, np.ndarray] | None = None
    oom_kills: np.ndarray | None = None
    limit_peak: Mapping[Tier, np.ndarray] | None = None
    demand_peak: Mapping[Tier, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.now_s, (int, float, np.floating)) or not math.isfinite(self.now_s):
            raise ValueError(f"PolicyInput.now_s must be a finite number, got {self.now_s!r}")
        names = list(self.containers)
        n = len(names)
        if len(set(names)) != n:
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"PolicyInput.containers has duplicate names: {dup}")
        set_ = object.__setattr__
        set_(self, "containers", names)
        thr = _vector("thresholds", self.thresholds, n)
        if np.any(np.isnan(thr)):
            raise ValueError("PolicyInput.thresholds contains nan")
        set_(self, "thresholds", thr)
        for tier, tp in self.prediction.tiers.items():
            for part in ("p_fail", "time_to_limit_s", "forecast", "limit"):
                _vector(f"prediction.tiers[{tier}].{part}", getattr(tp, part), n)
        if self.apps is not None:
            apps = [str(a) for a in self.apps]
            if len(apps) != n:
                raise ValueError(f"PolicyInput.apps has {len(apps)} entries, expected {n}")
            set_(self, "apps", apps)
        for name in ("usage", "peak_usage", "tier_thresholds", "headroom_on_node", "floor",
                     "limit_peak", "demand_peak"):
            set_(self, name, _tier_vectors(name, getattr(self, name), n))
        if self.replicated is not None:
            set_(self, "replicated", _vector("replicated", self.replicated, n, bool))
        if self.oom_kills is not None:
            kills = _vector("oom_kills", self.oom_kills, n, np.int64)
            if np.any(kills < 0):
                raise ValueError("PolicyInput.oom_kills has a negative count")
            set_(self, "oom_kills", kills)
        if self.replicas is not None:
            reps = _vector("replicas", self.replicas, n)
            if np.any(reps < 0):
                raise ValueError("PolicyInput.replicas has a negative count")
            set_(self, "replicas", reps)
        if self.pool_free is not None:
            free = {}
            for k, v in dict(self.pool_free).items():
                if not isinstance(v, (int, float, np.floating, np.integer)):
                    raise ValueError(f"PolicyInput.pool_free[{k}] must be a number, got {v!r}")
                free[k] = float(v)
            set_(self, "pool_free", free)

    # -- lookups used by policies and guards --------------------------------------
    def app_of(self, i: int) -> str:
        return self.apps[i] if self.apps is not None else ""

    def labels_of(self, i: int) -> Mapping[str, str] | None:
        return self.labels[i] if self.labels is not None else None

    def usage_of(self, tier: str, i: int) -> float:
        arr = self.usage.get(tier) if self.usage else None
        return float(arr[i]) if arr is not None else math.nan

    def peak_of(self, tier: str, i: int) -> float:
        arr = self.peak_usage.get(tier) if self.peak_usage else None
        return float(arr[i]) if arr is not None else math.nan

    def demand_peak_of(self, tier: str, i: int) -> float:
        """The long peak of the total usage over all replicas (nan: unknown)."""
        arr = self.demand_peak.get(tier) if self.demand_peak else None
        return float(arr[i]) if arr is not None else math.nan

    def floor_of(self, tier: str, i: int) -> float:
        """The lowest limit a decrease may set (0: no floor)."""
        arr = self.floor.get(tier) if self.floor else None
        return float(arr[i]) if arr is not None else 0.0

    def limit_peak_of(self, tier: str, i: int) -> float:
        """The highest limit over the long peak's span (nan: unknown)."""
        arr = self.limit_peak.get(tier) if self.limit_peak else None
        return float(arr[i]) if arr is not None else math.nan

    def kills_of(self, i: int) -> int:
        """OOM kills within the loop window if killed since the last tick, else 0."""
        return int(self.oom_kills[i]) if self.oom_kills is not None else 0

    def threshold_of(self, tier: str, i: int) -> float:
        arr = self.tier_thresholds.get(tier) if self.tier_thresholds else None
        return float(arr[i]) if arr is not None else float(self.thresholds[i])

    def is_replicated(self, i: int) -> bool:
        return bool(self.replicated[i]) if self.replicated is not None else False

    def replicas_of(self, i: int) -> float:
        if self.replicas is None or not math.isfinite(self.replicas[i]):
            return 1.0
        return float(self.replicas[i])

    def room_of(self, tier: str, i: int) -> tuple[float, str]:
        """How much more of ``tier`` container i can get (``inf`` = unknown), and where
        the tightest limit is (``"node"`` or ``"pool"``)."""
        room, where = math.inf, ""
        arr = self.headroom_on_node.get(tier) if self.headroom_on_node else None
        if arr is not None and not math.isnan(arr[i]):
            room, where = float(arr[i]), "node"
        free = self.pool_free.get(tier, math.nan) if self.pool_free else math.nan
        if not math.isnan(free) and free < room:
            room, where = free, "pool"
        return room, where


@dataclass(frozen=True)
class PolicyState:
    """What policies and guards remember between ticks, keyed ``"container/tier"``
    (``"container/replicas"`` for scale-outs):

    - ``last_action_s``: time of the last action (cooldown, hysteresis, cost cadence);
    - ``last_direction``: +1 (up) or −1 (down) of that action (hysteresis);
    - ``low_since_s``: cost: start of the current run of low usage and low p_fail;
    - ``low_peak``: cost: highest usage seen during that run;
    - ``raised_from``: the limit before a pre-emptive scale-up (the first of a chain)
      that usage has not reached yet: cost reverts to it once the tier is low again
      (:mod:`app.core.cost`, "Revert"); dropped when usage reaches it or a kill comes.

    The first positional field stays ``last_action_s`` (the spine's checkpoint).
    """

    last_action_s: dict[str, float] = field(default_factory=dict)
    last_direction: dict[str, int] = field(default_factory=dict)
    low_since_s: dict[str, float] = field(default_factory=dict)
    low_peak: dict[str, float] = field(default_factory=dict)
    raised_from: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {
            "last_action_s": dict(self.last_action_s),
            "last_direction": dict(self.last_direction),
            "low_since_s": dict(self.low_since_s),
            "low_peak": dict(self.low_peak),
            "raised_from": dict(self.raised_from),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyState:
        """Inverse of :meth:`to_dict`; missing parts (an older checkpoint) are empty.
        Raises :class:`ValueError` naming the part that is malformed."""
        out: dict[str, dict[str, Any]] = {}
        for part in ("last_action_s", "last_direction", "low_since_s", "low_peak",
                     "raised_from"):
            raw = data.get(part, {})
            if not isinstance(raw, Mapping):
                raise ValueError(f"PolicyState.{part} must be a mapping, got {type(raw).__name__}")
            conv = int if part == "last_direction" else float
            try:
                out[part] = {str(k): conv(v) for k, v in raw.items()}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"PolicyState.{part} has a non-numeric value: {exc}") from exc
        if any(v not in (-1, 1) for v in out["last_direction"].values()):
            raise ValueError("PolicyState.last_direction values must be +1 or -1")
        return cls(**out)
