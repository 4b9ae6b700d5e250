"""Resource pool: capacity per node, allocations per container, a warm reserve and
reservations that expire. Never overcommits.

Per node and tier (memory in bytes, CPU in cores) the pool holds::

    capacity ─ system reserve (never granted)   = grantable
    grantable ─ warm reserve                     = what non-pre-emptive asks may use
    grants (per container) + live reservations  ≤ grantable          (hard invariant)

- A **grant** is the limit of one container (per replica; a container with ``r``
  replicas allocates ``r × limit``). Unlimited limits (``inf``) are not grants of the
  pool and count as 0. A container lives on one node (``placement``).
- The **warm reserve** is capacity held back for pre-emptive scale-ups: a
  pre-emptive ask may use all of ``grantable``; any other ask only
  ``grantable − warm``.
- A **reservation** holds ``amount`` of a tier on a node for a container until
  ``until_s`` (for example the new bundle of a placement group that is being moved).
  It counts as allocated until :meth:`Pool.expire` releases it (the pool reads no
  clock) or the container's next granted scale-up of that tier consumes it (the
  reservation's amount is available to that ask).
- An ask changes one container's limit of one tier (``ActionKind.RESIZE``) or its
  replica count (``ActionKind.SCALE_OUT``: every tier grows by Δreplicas × the
  per-replica limit). Decreases are always granted. An increase is granted only if it
  fits; :meth:`Pool.request` serves decreases first, then pre-emptive asks, each
  group by ``p_fail`` (highest first).
- **Spill**: a container's replicas live on its node, except those a scale-out placed on
  another node because its own had no room (``spilled``: container → {node: replicas};
  the roomiest node that fits them all is chosen). A resize then needs room on every
  node that holds a replica; a scale-in removes spilled replicas first.

Worked example (one node): capacity 8 GiB, reserve 2 GiB → grantable 6 GiB. Grants:
a = 4 GiB, b = 1 GiB (free 1 GiB). Ask: b 1 GiB → 2.5 GiB (Δ +1.5 GiB) → denied,
"needs 1.5 GiB, 1 GiB free". Ask: b 1 GiB → 1.5 GiB (Δ +0.5 GiB) → granted, free
0.5 GiB.

Worked example (warm reserve): as above with a warm reserve of 1 GiB and grants
a = 4 GiB, b = 0.5 GiB (free 1.5 GiB). A non-pre-emptive ask of +1 GiB for b is
denied (only 0.5 GiB free outside the warm reserve); a pre-emptive one is granted
(1.5 GiB free, 0.5 GiB left).

Worked example (spill): nodes a and b, 4 GiB grantable each; ``web`` on a with 3
replicas of 1 GiB (a: 1 GiB free) and ``db`` on b with 1 GiB (b: 3 GiB free). Ask: web
3 → 5 replicas (+2 GiB) → a has 1 GiB → placed on b: granted "…on node b (spilled: node
a has 1.0 GiB free)"; ``spilled = {"web": {"b": 2}}``, b has 1 GiB free. A resize of web
to 1.5 GiB now needs +1.5 GiB on a and +1 GiB on b: denied on a. Web 5 → 4 replicas
releases one of b's.

Worked example (reservation): same pool without warm reserve, a = 4 GiB, b = 1 GiB
(free 1 GiB). ``reserve("c", memory, 0.75 GiB, until_s=130)`` → free 0.25 GiB. An ask
of +0.5 GiB by b is now denied (0.25 GiB free); c's first ask, a limit of 0.5 GiB,
is granted (c's own 0.75 GiB reservation is available to it) and consumes the
reservation → free 6 − (4 + 1 + 0.5) = 0.5 GiB. Had c never asked, ``expire(130)``
would have released the reservation (free back to 1 GiB).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from prescale.app.core.actions import ActionKind, PoolVerdict, ScalingAction, Verdict
from prescale.app.core.sample import Tier

_ALL = "\x00all"  # key of the all-nodes total (no node has this name)
_EPS = 1e-9  # relative tolerance: 1.5 − 1.41 must still fit an ask of 0.09
DEFAULT_NODE = "local"  # the node of a pool built from one Capacity


@dataclass(frozen=True)
class Capacity:
    memory_bytes: float
    cpu_cores: float

    def of(self, tier: Tier) -> float:
        return self.memory_bytes if tier is Tier.MEMORY else self.cpu_cores

    def to_dict(self) -> dict[str, float]:
        return {"memory_bytes": self.memory_bytes, "cpu_cores": self.cpu_cores}


ZERO = Capacity(0.0, 0.0)

#: The tiers the pool shares out of a node's capacity: memory and CPU. A container's
#: disk (its own volume's size) is not drawn from a shared capacity here: an ask for it
#: always fits the pool (:meth:`Pool.fit`), its guards and bounds still apply.
POOLED: tuple[Tier, ...] = (Tier.MEMORY, Tier.CPU)


@dataclass(frozen=True)
class Reservation:
    """``amount`` of ``tier`` held on ``node`` for ``container`` until ``until_s``."""

    container: str
    tier: Tier
    node: str
    amount: float
    until_s: float
    preemptive: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier"] = self.tier.value
        return d


@dataclass(frozen=True)
class Fit:
    """Whether an ask fits, and the numbers: the node, the allocation change per tier
    (``needs``; replicas × per-replica change) and the room each tier had before it."""

    ok: bool
    node: str
    needs: dict[Tier, float]
    room: dict[Tier, float]
    short_tier: Tier | None = None  # the first tier that does not fit
    error: str = ""  # an invalid ask (nothing to do with room)
    spill_from: str | None = None  # a scale-out placed off the container's own node (its name)

    @property
    def increase(self) -> bool:
        return any(v > 0 for v in self.needs.values())


def _fmt(tier: Tier, value: float) -> str:
    if tier in (Tier.MEMORY, Tier.DISK):
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.2f} cores"


def _per_node(
    value: Capacity | Mapping[str, Capacity] | None, nodes: Mapping[str, Capacity], what: str
) -> dict[str, Capacity]:
    if value is None:
        return {n: ZERO for n in nodes}
    if isinstance(value, Capacity):
        return {n: value for n in nodes}
    got = dict(value)
    if set(got) != set(nodes):
        raise ValueError(
            f"pool: {what} must name the same nodes as capacity "
            f"(capacity: {sorted(nodes)}, {what}: {sorted(got)})"
        )
    return got


class Pool:
    """See the module docstring. ``Pool(Capacity(...), Capacity(...))`` is one node
    named :data:`DEFAULT_NODE`; ``Pool({"n1": Capacity(...), ...}, reserve, warm)``
    several (``reserve``/``warm``: one Capacity for every node, or one per node)."""

    def __init__(
        self,
        capacity: Capacity | Mapping[str, Capacity],
        reserve: Capacity | Mapping[str, Capacity] | None = None,
        warm: Capacity | Mapping[str, Capacity] | None = None,
    ) -> None:
        nodes = {DEFAULT_NODE: capacity} if isinstance(capacity, Capacity) else dict(capacity)
        if not nodes:
            raise ValueError("pool: capacity names no node")
        reserves = _per_node(reserve, nodes, "reserve")
        warms = _per_node(warm, nodes, "warm")
        for node in nodes:
            for tier in POOLED:
                cap, res, w = nodes[node].of(tier), reserves[node].of(tier), warms[node].of(tier)
                if not (math.isfinite(cap) and cap > 0) or not (math.isfinite(res) and res >= 0):
                    raise ValueError(
                        f"pool: capacity must be > 0 and reserve >= 0 ({tier.value}"
                        f"{'' if len(nodes) == 1 else ' on node ' + node}: "
                        f"capacity {cap!r}, reserve {res!r})"
                    )
                if not (math.isfinite(w) and w >= 0):
                    raise ValueError(f"pool: warm reserve must be >= 0 ({tier.value}: {w!r})")
        self.nodes: dict[str, Capacity] = nodes
        self.reserves: dict[str, Capacity] = reserves
        self.warm: dict[str, Capacity] = warms
        self.grants: dict[Tier, dict[str, float]] = {t: {} for t in Tier}
        self.placement: dict[str, str] = {}  # container → node (multi-node pools)
        self.replicas: dict[str, int] = {}  # container → replicas, when not 1
        #: container → {node: its replicas there}, off its own node (module docstring)
        self.spilled: dict[str, dict[str, int]] = {}
        self.reservations: dict[tuple[str, Tier], Reservation] = {}
        # granted totals per (tier, node) and (tier, _ALL): built on first use, then kept
        # up to date by every change of one container (_changing), so that a tick's asks
        # cost O(1) each, not O(containers); None = rebuild (nodes changed, assign)
        self._totals: dict[tuple[Tier, str | None], float] | None = None

    # -- totals (compatible with the single-node pool) -------------------------------
    @property
    def capacity(self) -> Capacity:
        return Capacity(sum(c.memory_bytes for c in self.nodes.values()),
                        sum(c.cpu_cores for c in self.nodes.values()))

    @property
    def reserve_capacity(self) -> Capacity:
        """The system reserve (never granted), summed over nodes."""
        return Capacity(sum(c.memory_bytes for c in self.reserves.values()),
                        sum(c.cpu_cores for c in self.reserves.values()))

    # -- per node --------------------------------------------------------------------
    def _nodes(self, node: str | None) -> list[str]:
        if node is None:
            return list(self.nodes)
        if node not in self.nodes:
            raise ValueError(f"pool: unknown node {node!r} (nodes: {sorted(self.nodes)})")
        return [node]

    def node_of(self, container: str) -> str | None:
        """The node a container is on; ``None`` if not placed in a multi-node pool."""
        if container in self.placement:
            return self.placement[container]
        return next(iter(self.nodes)) if len(self.nodes) == 1 else None

    def allocation(self, container: str, tier: Tier) -> float:
        """What the container holds of ``tier``: replicas × limit (0 if unlimited/unknown)."""
        v = self.grants[tier].get(container)
        if v is None or not math.isfinite(v):
            return 0.0
        return v * self.replicas.get(container, 1)

    def grantable(self, tier: Tier, node: str | None = None) -> float:
        return sum(max(self.nodes[n].of(tier) - self.reserves[n].of(tier), 0.0)
                   for n in self._nodes(node))

    def granted(self, tier: Tier, node: str | None = None) -> float:
        """Σ allocation of the containers on ``node`` (of all containers when None)."""
        self._nodes(node)
        if self._totals is None:
            self._totals = self._build_totals()
        return self._totals.get((tier, _ALL if node is None else node), 0.0)

    def shares(self, container: str) -> list[tuple[str | None, int]]:
        """Where the container's replicas are: ``[(its node, replicas there), (a node it
        spilled to, replicas there), …]``. Example: 5 replicas, 2 spilled to b →
        ``[("a", 3), ("b", 2)]``."""
        total = self.replicas.get(container, 1)
        away = self.spilled.get(container)
        if not away:
            return [(self.node_of(container), total)]
        return [(self.node_of(container), total - sum(away.values())), *away.items()]

    def _contrib(self, container: str) -> list[tuple[Tier, str | None, float]]:
        out = []
        for t in POOLED:
            v = self.grants[t].get(container)
            if v is None:
                continue
            per = v if math.isfinite(v) else 0.0
            out += [(t, n, per * k) for n, k in self.shares(container)]
        return out

    def _build_totals(self) -> dict[tuple[Tier, str | None], float]:
        tot: dict[tuple[Tier, str | None], float] = {}
        for c in {c for t in POOLED for c in self.grants[t]}:
            for t, n, a in self._contrib(c):
                tot[(t, n)] = tot.get((t, n), 0.0) + a
                tot[(t, _ALL)] = tot.get((t, _ALL), 0.0) + a
        return tot

    @contextmanager
    def _changing(self, container: str) -> Iterator[None]:
        """Wrap one container's change of grants, placement or replicas: moves its
        contribution in the totals from before to after."""
        before = self._contrib(container) if self._totals is not None else None
        yield
        tot = self._totals
        if tot is None or before is None:
            return
        for t, n, a in before:
            tot[(t, n)] -= a
            tot[(t, _ALL)] -= a
        for t, n, a in self._contrib(container):
            tot[(t, n)] = tot.get((t, n), 0.0) + a
            tot[(t, _ALL)] = tot.get((t, _ALL), 0.0) + a

    def reserved(self, tier: Tier, node: str | None = None,
                 exclude: tuple[str, Tier] | None = None) -> float:
        names = set(self._nodes(node))
        return sum(r.amount for k, r in self.reservations.items()
                   if r.tier is tier and r.node in names and k != exclude)

    def warm_reserve(self, tier: Tier, node: str | None = None) -> float:
        return sum(self.warm[n].of(tier) for n in self._nodes(node))

    def free(self, tier: Tier, node: str | None = None, *, preemptive: bool = True) -> float:
        """grantable − granted − reserved (− warm for a non-pre-emptive ask); summed over
        nodes when ``node`` is None. Negative when observed limits exceed capacity."""
        return sum(self._room(n, tier, preemptive) for n in self._nodes(node))

    def _room(self, node: str, tier: Tier, preemptive: bool,
              exclude: tuple[str, Tier] | None = None) -> float:
        room = self.grantable(tier, node) - self.granted(tier, node)
        room -= self.reserved(tier, node, exclude)
        if not preemptive:
            room -= self.warm[node].of(tier)
        return room

    def _tol(self, tier: Tier, node: str) -> float:
        return _EPS * max(self.grantable(tier, node), 1.0)

    # -- observing reality -----------------------------------------------------------
    def observe(self, container: str, tier: Tier, limit: float, node: str | None = None,
                replicas: int | None = None) -> None:
        """Record a limit the container already has (seen in a sample), without asking.

        May exceed capacity (limits set outside prescale); then no increase is granted
        on that node until enough is released. A tier not :data:`POOLED` is ignored."""
        if tier not in POOLED:
            return
        where = node if node is not None else self.node_of(container)
        if where is None:
            raise ValueError(
                f"pool: container {container!r} is not placed; name its node "
                f"(nodes: {sorted(self.nodes)})")
        self._nodes(where)
        with self._changing(container):
            self.grants[tier][container] = float(limit)
            if len(self.nodes) > 1 or node is not None:
                self.placement[container] = where
            if replicas is not None:
                self._set_replicas(container, replicas)

    def _set_replicas(self, container: str, replicas: int) -> None:
        """Set the replica count. Fewer than before: the spilled replicas go first (and
        the container's own node always keeps one)."""
        fewer = self.replicas.get(container, 1) - int(replicas)
        if fewer > 0 and container in self.spilled:
            self._drop_spilled(container, fewer)
        if replicas == 1:
            self.replicas.pop(container, None)
        else:
            self.replicas[container] = int(replicas)
        away = self.spilled.get(container)
        if away:
            self._drop_spilled(container, sum(away.values()) - (int(replicas) - 1))

    def _drop_spilled(self, container: str, count: int) -> None:
        """Forget up to ``count`` of the container's spilled replicas, the smallest
        groups first (changes no replica count)."""
        away = self.spilled.get(container, {})
        for node in sorted(away, key=lambda n: (away[n], n)):
            if count <= 0:
                break
            take = min(count, away[node])
            away[node] -= take
            count -= take
            if away[node] == 0:
                del away[node]
        if not away:
            self.spilled.pop(container, None)

    def forget(self, container: str) -> None:
        """The container is gone: drop its grants, placement and reservations."""
        with self._changing(container):
            for tier in POOLED:
                self.grants[tier].pop(container, None)
                self.reservations.pop((container, tier), None)
            self.placement.pop(container, None)
            self.replicas.pop(container, None)
            self.spilled.pop(container, None)

    def release(self, container: str, tier: Tier) -> None:
        """Drop the container's grant and reservation of one tier."""
        with self._changing(container):
            self.grants[tier].pop(container, None)
        self.reservations.pop((container, tier), None)

    # -- reservations ----------------------------------------------------------------
    def reserve(self, container: str, tier: Tier, amount: float, until_s: float, *,
                node: str | None = None, preemptive: bool = False) -> PoolVerdict:
        """Hold ``amount`` of ``tier`` for ``container`` until ``until_s`` (replacing its
        previous reservation of that tier). Denied, changing nothing, if it does not fit
        (a non-pre-emptive reservation may not use the warm reserve)."""
        if not (isinstance(amount, int | float) and math.isfinite(amount) and amount > 0):
            raise ValueError(f"pool: reservation amount must be a finite number > 0, "
                             f"got {amount!r}")
        if not (isinstance(until_s, int | float) and math.isfinite(until_s)):
            raise ValueError(f"pool: reservation until_s must be a finite time, got {until_s!r}")
        where = node or self.node_of(container) or self._roomiest(tier, preemptive)
        self._nodes(where)
        key = (container, tier)
        aid = f"reserve:{container}/{tier.value}"
        room = self._room(where, tier, preemptive, exclude=key)
        if amount > room + self._tol(tier, where):
            return PoolVerdict(aid, Verdict.DENIED,
                               f"pool: reservation needs {_fmt(tier, amount)}, "
                               f"{_fmt(tier, max(room, 0.0))} free{self._on(where)}")
        self.reservations[key] = Reservation(container, tier, where, float(amount),
                                             float(until_s), preemptive)
        return PoolVerdict(aid, Verdict.GRANTED,
                           f"pool: reserved {_fmt(tier, amount)} until {until_s:g}"
                           f"{self._on(where)}, {_fmt(tier, room - amount)} left")

    def expire(self, now_s: float) -> list[Reservation]:
        """Release the reservations whose ``until_s <= now_s``; returns them."""
        gone = [r for r in self.reservations.values() if r.until_s <= now_s]
        for r in gone:
            del self.reservations[(r.container, r.tier)]
        return gone

    # -- asks ------------------------------------------------------------------------
    def _on(self, node: str) -> str:
        return "" if len(self.nodes) == 1 else f" on node {node}"

    def _roomiest(self, tier: Tier, preemptive: bool) -> str:
        return max(sorted(self.nodes), key=lambda n: self._room(n, tier, preemptive))

    def fit(self, ask: ScalingAction) -> Fit:
        """Would ``ask`` fit now? Changes nothing.

        RESIZE: need = replicas × (new − current) of the ask's tier; a container the
        pool does not know (or unlimited) holds 0, so its need is its whole new
        allocation. SCALE_OUT (limits are replica counts): every tier with a known
        per-replica limit needs Δreplicas × that limit. A container's own reservation
        of a tier is available to it."""
        c = ask.container
        node = self.node_of(c)
        if node is None:
            res = [r.node for r in self.reservations.values() if r.container == c]
            node = res[0] if res else self._roomiest(ask.tier, ask.preemptive)
        new = ask.new_limit
        needs: dict[Tier, float] = {}
        if not (isinstance(new, int | float) and math.isfinite(new) and new >= 0) or (
            ask.kind is ActionKind.RESIZE and new <= 0
        ):
            return Fit(False, node, {}, {}, None, f"invalid new limit {new!r}")
        if ask.kind is ActionKind.RESIZE and ask.tier not in POOLED:
            return Fit(True, node, {}, {})  # not drawn from the node's capacity
        if ask.kind is ActionKind.SCALE_OUT:
            if new != int(new):
                return Fit(False, node, {}, {}, None, f"invalid replica count {new!r}")
            known = c in self.grants[ask.tier] or c in self.replicas
            cur = self.replicas.get(c, 1) if known else ask.old_limit
            cur = cur if isinstance(cur, int | float) and math.isfinite(cur) else 1
            per = self.grants[ask.tier].get(c)
            if per is None or not math.isfinite(per):
                return Fit(False, node, {}, {}, None,
                           f"scale_out of {c}: per-replica {ask.tier.value} limit unknown")
            for tier in POOLED:
                p = self.grants[tier].get(c)
                if p is not None and math.isfinite(p):
                    needs[tier] = (new - cur) * p
        else:
            cur = self.grants[ask.tier].get(c, 0.0)
            cur = cur if math.isfinite(cur) else 0.0
            (_, here), *away = self.shares(c)
            for other, k in away:  # every replica grows, wherever it is
                need = (new - cur) * k
                r = self._room(other, ask.tier, ask.preemptive, exclude=(c, ask.tier))
                if need > r + self._tol(ask.tier, other):
                    return Fit(False, other, {ask.tier: need}, {ask.tier: r}, ask.tier)
            needs[ask.tier] = (new - cur) * here
        room, short = self._rooms(node, needs, c, ask.preemptive)
        if short is None:
            return Fit(True, node, needs, room)
        if ask.kind is ActionKind.SCALE_OUT and len(self.nodes) > 1:
            # the new replicas go to the roomiest other node that takes them all
            others = sorted((n for n in self.nodes if n != node),
                            key=lambda n: (-self._room(n, short, ask.preemptive), n))
            for other in others:
                there, missing = self._rooms(other, needs, c, ask.preemptive)
                if missing is None:
                    return Fit(True, other, needs, there, spill_from=node)
        return Fit(False, node, needs, room, short)

    def _rooms(self, node: str, needs: Mapping[Tier, float], c: str, preemptive: bool
               ) -> tuple[dict[Tier, float], Tier | None]:
        """The room of each tier ``needs`` grows on ``node``, and the first tier whose
        need does not fit there (None: all fit)."""
        room: dict[Tier, float] = {}
        for tier, need in needs.items():
            if need <= 0:
                continue
            room[tier] = self._room(node, tier, preemptive, exclude=(c, tier))
            if need > room[tier] + self._tol(tier, node):
                return room, tier
        return room, None

    def grant_one(self, ask: ScalingAction) -> PoolVerdict:
        """Check one ask and, if it fits, record it (a granted increase consumes the
        container's reservations of the tiers it grows). The verdict names the numbers."""
        f = self.fit(ask)
        aid = ask.action_id
        if f.error:
            return PoolVerdict(aid, Verdict.DENIED, f.error)
        if not f.ok:
            t = f.short_tier
            assert t is not None
            warm = self.warm[f.node].of(t)
            note = (f" ({_fmt(t, warm)} warm reserve held for pre-emptive asks)"
                    if warm > 0 and not ask.preemptive else "")
            if ask.kind is ActionKind.SCALE_OUT and len(self.nodes) > 1:
                note += "; no other node has room for the new replicas either"
            return PoolVerdict(
                aid, Verdict.DENIED,
                f"pool: needs {_fmt(t, f.needs[t])}, {_fmt(t, max(f.room[t], 0.0))} free "
                f"of {_fmt(t, self.grantable(t, f.node))} grantable{self._on(f.node)}{note}")
        c = ask.container
        away = self.spilled.get(c)
        where = f.node  # where the allocation changes: a scale-in's first spilled replicas
        if ask.kind is ActionKind.SCALE_OUT and away and f.needs and not f.increase:
            where = min(away, key=lambda n: (away[n], n))
        with self._changing(c):
            if ask.kind is ActionKind.SCALE_OUT:
                change = int(ask.new_limit) - self.replicas.get(c, 1)
                if f.spill_from is not None:
                    away = self.spilled.setdefault(c, {})
                    away[f.node] = away.get(f.node, 0) + change
                    self.placement[c] = f.spill_from
                self._set_replicas(c, int(ask.new_limit))
            elif ask.tier in POOLED:
                self.grants[ask.tier][c] = float(ask.new_limit)
            if len(self.nodes) > 1 and f.spill_from is None and not (
                    ask.kind is ActionKind.RESIZE and c in self.spilled):
                self.placement[c] = f.node
        for tier, need in f.needs.items():
            mine = self.reservations.get((c, tier))
            if need > 0 and mine is not None and mine.node == f.node:
                del self.reservations[(c, tier)]  # consumed by the scale-up it was held for
        if ask.tier not in POOLED and ask.kind is ActionKind.RESIZE:
            return PoolVerdict(aid, Verdict.GRANTED, f"pool: {ask.tier.value} is not pooled "
                               "(the container's own volume; no node capacity is shared)")
        if not f.increase:  # a scale-in frees every tier, a resize its own
            freed = [_fmt(t, -n) for t, n in f.needs.items() if n < 0]
            return PoolVerdict(aid, Verdict.GRANTED,
                               f"pool: released {' and '.join(freed)}{self._on(where)}"
                               if freed else "pool: no change")
        parts = [f"{_fmt(t, n)}, {_fmt(t, f.room[t] - n)} left"
                 for t, n in f.needs.items() if n > 0]
        spill = ""
        if f.spill_from is not None:
            home = f.spill_from
            spill = " (spilled: node {} has {} free)".format(home, "; ".join(
                _fmt(t, max(self._room(home, t, ask.preemptive), 0.0))
                for t, n in f.needs.items() if n > 0))
        return PoolVerdict(aid, Verdict.GRANTED,
                           f"pool: granted {'; '.join(parts)}{self._on(f.node)}{spill}")

    @staticmethod
    def order(asks: list[ScalingAction]) -> list[ScalingAction]:
        """Serving order: decreases, then pre-emptive asks, then the rest; each by
        ``p_fail`` (highest first), then action id."""
        def key(a: ScalingAction) -> tuple[int, float, str]:
            p = a.p_fail if math.isfinite(a.p_fail) else 0.0
            down = a.new_limit <= a.old_limit if math.isfinite(a.new_limit) else False
            return (0 if down else 1 if a.preemptive else 2, -p, a.action_id)
        return sorted(asks, key=key)

    def request(self, asks: list[ScalingAction], commit: bool = True) -> list[PoolVerdict]:
        """Grant or deny each ask in :meth:`order`. Denials name the shortfall.

        With ``commit=False`` (recommend mode) the verdicts are computed on a copy and
        the pool is left as it was. Verdicts come back in the order of ``asks``.
        """
        work = self.copy()
        out = {a.action_id: work.grant_one(a) for a in self.order(asks)}
        if commit:
            self.assign(work)
        return [out[a.action_id] for a in asks]

    # -- nodes come and go ------------------------------------------------------------
    def set_node(self, node: str, capacity: Capacity, reserve: Capacity,
                 warm: Capacity | None = None) -> None:
        """Add a node, or update its capacity (a node's monitor reports its host totals).

        Worked example: a pool of node "a" (8 GiB, reserve 2 GiB) gains "b" (4 GiB, reserve
        1 GiB) → grantable memory 6 + 3 = 9 GiB; grants on "a" are untouched."""
        for tier in POOLED:
            cap, res = capacity.of(tier), reserve.of(tier)
            if not (math.isfinite(cap) and cap > 0) or not (math.isfinite(res) and res >= 0):
                raise ValueError(f"pool: node {node!r}: capacity must be > 0 and reserve >= 0 "
                                 f"({tier.value}: capacity {cap!r}, reserve {res!r})")
        self._totals = None  # an unplaced container's node may change with the node count
        self.nodes[node] = capacity
        self.reserves[node] = reserve
        self.warm[node] = warm or ZERO

    def drop_node(self, node: str) -> list[str]:
        """The node is gone: forget it and its containers; returns those containers.
        The last node cannot be dropped (a pool has at least one)."""
        if node not in self.nodes:
            return []
        if len(self.nodes) == 1:
            raise ValueError(f"pool: cannot drop {node!r}, the last node")
        gone = sorted(c for c, n in self.placement.items() if n == node)
        for c in gone:
            self.forget(c)
        for c in [c for c, away in self.spilled.items() if node in away]:
            lost = self.spilled[c].pop(node)  # the replicas it had there are gone
            if not self.spilled[c]:
                del self.spilled[c]
            left = max(1, self.replicas.get(c, 1) - lost)
            if left == 1:
                self.replicas.pop(c, None)
            else:
                self.replicas[c] = left
        for key in [k for k, r in self.reservations.items() if r.node == node]:
            del self.reservations[key]
        del self.nodes[node], self.reserves[node], self.warm[node]
        self._totals = None
        return gone

    # -- state -----------------------------------------------------------------------
    def copy(self) -> Pool:
        new = Pool.__new__(Pool)
        new.nodes = dict(self.nodes)
        new.reserves = dict(self.reserves)
        new.warm = dict(self.warm)
        new.assign(self)
        new._totals = dict(self._totals) if self._totals is not None else None
        return new

    def assign(self, other: Pool) -> None:
        """Take ``other``'s allocations (grants, placement, replicas, reservations)."""
        self._totals = None
        self.grants = {t: dict(other.grants[t]) for t in Tier}
        self.placement = dict(other.placement)
        self.replicas = dict(other.replicas)
        self.spilled = {c: dict(away) for c, away in other.spilled.items()}
        self.reservations = dict(other.reservations)

    def check_invariant(self) -> list[str]:
        """Nodes/tiers where pool-made allocations exceed grantable (empty: none)."""
        bad = []
        for node in self.nodes:
            for tier in POOLED:
                used = self.granted(tier, node) + self.reserved(tier, node)
                if used > self.grantable(tier, node) + self._tol(tier, node):
                    bad.append(f"{node}/{tier.value}: {used!r} > {self.grantable(tier, node)!r}")
        return bad

    def to_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity.to_dict(),
            "reserve": self.reserve_capacity.to_dict(),
            "nodes": {n: {"capacity": self.nodes[n].to_dict(),
                          "reserve": self.reserves[n].to_dict(),
                          "warm": self.warm[n].to_dict()} for n in self.nodes},
            "grants": {t.value: {k: (v if math.isfinite(v) else None) for k, v in g.items()}
                       for t, g in self.grants.items()},
            "placement": dict(self.placement),
            "replicas": dict(self.replicas),
            "spilled": {c: dict(away) for c, away in self.spilled.items()},
            "reservations": [r.to_dict() for r in self.reservations.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pool:
        """Inverse of :meth:`to_dict`; also reads the spine's single-node format
        (``capacity``/``reserve``/``grants`` only). A malformed dict raises
        ``ValueError`` naming the field."""
        try:
            if "nodes" in data:
                nodes = data["nodes"]
                pool = cls({n: Capacity(**v["capacity"]) for n, v in nodes.items()},
                           {n: Capacity(**v["reserve"]) for n, v in nodes.items()},
                           {n: Capacity(**v.get("warm", ZERO.to_dict()))
                            for n, v in nodes.items()})
            else:
                pool = cls(Capacity(**data["capacity"]), Capacity(**data["reserve"]))
            for t in POOLED:
                for k, v in data.get("grants", {}).get(t.value, {}).items():
                    pool.grants[t][k] = math.inf if v is None else float(v)
            for c, n in data.get("placement", {}).items():
                pool._nodes(n)
                pool.placement[c] = n
            for c, r in data.get("replicas", {}).items():
                pool._set_replicas(c, int(r))
            for c, away in data.get("spilled", {}).items():
                for n, k in away.items():
                    pool._nodes(n)
                    pool.spilled.setdefault(c, {})[n] = int(k)
                pool._set_replicas(c, pool.replicas.get(c, 1))  # at most replicas - 1
            for r in data.get("reservations", []):
                res = Reservation(r["container"], Tier(r["tier"]), r["node"], float(r["amount"]),
                                  float(r["until_s"]), bool(r.get("preemptive", False)))
                pool._nodes(res.node)
                pool.reservations[(res.container, res.tier)] = res
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"pool: malformed checkpoint ({type(exc).__name__}: {exc})") from exc
        return pool
