"""Arbitration of one tick's asks under contention: reclaim, then risk and fairness.

:func:`arbitrate` takes the asks of a tick, the :class:`~app.core.pool.Pool`, the idle
containers the policy side found (:class:`ReclaimCandidate`: current limit and the
floor it may shrink to — the floor already includes usage plus margin), which tenant
owns each container (by container, else by its app: :func:`app.core.tenants.tenant_of`,
the rule the engine's thresholds use too) and a risk weight per app. It decides, in
this order:

1. **Decreases** (and invalid asks) first: they only free capacity.
2. **Reclaim**: for each node and tier where the increases that could ever fit
   need more than is free, shrink idle containers of that node and tier towards
   their floor — largest slack first, the last one only as far as needed — until the
   shortfall is covered or the idle slack is used up. Containers asking in this tick
   are never reclaimed. Nothing is reclaimed without contention.
3. **Grant** in this order:
   a. pre-emptive asks before the rest (the pool's rule);
   b. by *risk band*: ``risk = p_fail × weight(app)``, ``band = ⌊risk / risk_band⌋``,
      highest band first — the asks most likely to fail soon come first;
   c. within a band, by **weighted dominant resource fairness** (DRF): the tenant with
      the lowest weighted dominant share is served next, one ask at a time, its
      riskiest ask first; shares are recomputed after every grant;
   d. ties: action id.
   The pool checks each ask (:meth:`Pool.grant_one`), so nothing is ever granted
   beyond ``capacity − reserve`` (nor, for a non-pre-emptive ask, into the warm
   reserve).
4. A vertical increase that does not fit whole is **granted in part** when what is free
   still covers the container's forecast: new limit N' = old + room / replicas
   (rounded down to a page, or 0.01 core), granted if N' ≥ the ask's ``forecast``
   (the usage predicted at the horizon) and N' > old — the failure is still
   prevented, only the buffer above the forecast is cut (``partial_grants``; the
   verdict carries ``granted_limit``). Worked example: old 512 MiB, asked 1024 MiB,
   forecast 700 MiB, 511 MiB free → granted 1023 MiB; with 150 MiB free → 662 MiB <
   700 MiB: not granted (below).
5. An ask that does not fit is **DEFERRED** when it may fit soon —
   ``need ≤ defer_factor × (free + reservations held by others on its node)`` — and
   **DENIED** otherwise, or when its new allocation exceeds all the node could ever
   grant it (the coordinator may then escalate to a new replica elsewhere).

Every verdict's reason is its explanation and names the numbers: the amount, what
was free, the risk and its factors, the tenant's share and the order served.

Dominant share (DRF, Ghodsi et al. 2011): a tenant's share of a tier is its
allocation over the pool's grantable total of that tier; its dominant share is the
largest of those, divided by the tenant's weight.
Worked example: grantable 16 GiB and 8 cores. Tenant A holds 4 GiB and 1 core →
shares 0.25 and 0.125 → dominant share 0.25 (memory). Tenant B holds 2 GiB and 3
cores → 0.125, 0.375 → 0.375 (CPU). Tenant C (weight 2) holds 8 GiB and 2 cores →
max(0.5, 0.25) / 2 = 0.25, tied with A (ties: tenant name). Asks in one band are
served A, then (after A's grant raises its share, say to 0.3) C at 0.25, then A at
0.3, then B at 0.375.

Worked example (whole tick): grantable 6 GiB, 5.5 GiB granted (free 0.5 GiB); idle
container ``i`` holds 2 GiB with floor 1.25 GiB. Asks (all pre-emptive): x +1 GiB
(p_fail 0.95, tenant T1), y +0.5 GiB (p_fail 0.58, T2), z +1 GiB (p_fail 0.55, T3).
Demand 2.5 GiB, free 0.5 GiB → shortfall 2 GiB; ``i`` can give 0.75 GiB → reclaimed
2 GiB → 1.25 GiB (free 1.25 GiB). x (band 9) is served first → granted (0.25 GiB
left). y and z share band 5; T2 and T3 hold equal shares → T2 (name) first: y needs
0.5 GiB, 0.25 GiB free → deferred (0.5 ≤ 2 × 0.25); z needs 1 GiB > 2 × 0.25 →
denied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prescale.app.core.actions import ActionKind, PoolVerdict, ScalingAction, Verdict, action_id_for
from prescale.app.core.pool import POOLED, Fit, Pool, _fmt
from prescale.app.core.sample import Tier
from prescale.app.core.tenants import Tenancy, tenant_of

PAGE_BYTES = 4096


@dataclass(frozen=True)
class ReclaimCandidate:
    """An idle container's ``limit`` of ``tier`` and the ``floor`` it may shrink to
    (already including usage plus margin; computed by the policy side)."""

    container: str
    tier: Tier
    limit: float
    floor: float
    app: str = ""


@dataclass(frozen=True)
class ContentionConfig:
    risk_band: float = 0.1  # width of a risk band (risk = p_fail × app weight)
    defer_factor: float = 2.0  # deferred if need ≤ factor × (free + others' reservations)
    default_weight: float = 1.0  # weight of an app or tenant not in the weights
    unassigned_tenant: str = "(none)"  # tenant of a container not in ``tenants``
    partial_grants: bool = True  # grant an increase in part when that covers the forecast

    def __post_init__(self) -> None:
        for name in ("risk_band", "defer_factor", "default_weight"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"contention.{name} must be a finite number > 0, got {v!r}")

    @classmethod
    def from_settings(cls, c: Any) -> ContentionConfig:
        """From ``settings.contention`` (duck-typed). Its ``app_weights``, ``tenants`` and
        ``tenant_weights`` are :func:`arbitrate`'s own arguments."""
        return cls(risk_band=c.risk_band, defer_factor=c.defer_factor,
                   partial_grants=c.partial_grants)


@dataclass(frozen=True)
class ArbitrationResult:
    verdicts: list[PoolVerdict]  # one per ask, in the order of the asks
    reclaims: list[ScalingAction]  # scale-downs of idle containers: apply these first
    explanations: dict[str, str]  # action id (asks and reclaims) → why
    summary: list[str] = field(default_factory=list)  # the tick's story, in order
    order: list[str] = field(default_factory=list)  # action ids in the order served
    reclaim_dependent: list[str] = field(default_factory=list)
    # granted asks that fit only thanks to the reclaims: drop them if a reclaim fails

    def verdict(self, action_id: str) -> PoolVerdict:
        return next(v for v in self.verdicts if v.action_id == action_id)

    def granted(self, asks: list[ScalingAction]) -> list[ScalingAction]:
        """The granted asks, in order, each with the limit really granted (a partial
        grant's ``granted_limit`` replaces the ask's ``new_limit``)."""
        verdicts = {v.action_id: v for v in self.verdicts}
        out = []
        for a in asks:
            v = verdicts[a.action_id]
            if v.verdict is Verdict.GRANTED:
                out.append(a if v.granted_limit is None
                           else replace(a, new_limit=v.granted_limit))
        return out


def _weight(table: Mapping[str, float] | None, key: str, default: float, what: str) -> float:
    w = (table or {}).get(key, default)
    if not (isinstance(w, int | float) and math.isfinite(w) and w > 0):
        raise ValueError(f"contention: weight of {what} {key!r} must be a finite number > 0, "
                         f"got {w!r}")
    return float(w)


def _round_up(tier: Tier, value: float) -> float:
    if tier is Tier.MEMORY:
        return float(math.ceil(value / PAGE_BYTES) * PAGE_BYTES)
    return math.ceil(value * 100 - 1e-9) / 100


def _round_down(tier: Tier, value: float) -> float:
    if tier is Tier.MEMORY:
        return float(math.floor(value / PAGE_BYTES) * PAGE_BYTES)
    return math.floor(value * 100 + 1e-9) / 100


def _partial(ask: ScalingAction, f: Fit, work: Pool, t: Tier) -> ScalingAction | None:
    """The ask cut to what is free on its node when that still covers its forecast
    (module docstring, step 4); None otherwise. Only a single-tier RESIZE up."""
    if ask.kind is not ActionKind.RESIZE or t is not ask.tier or set(
            n for n, v in f.needs.items() if v > 0) != {t}:
        return None
    if not (math.isfinite(ask.forecast) and math.isfinite(ask.old_limit)):
        return None
    reps = work.replicas.get(ask.container, 1)
    cur = work.grants[t].get(ask.container, ask.old_limit)
    if not math.isfinite(cur):
        return None
    room = max(f.room[t], 0.0)
    new = _round_down(t, cur + room / reps)
    if not (new > cur and new >= ask.forecast and new < ask.new_limit):
        return None
    cut = replace(ask, new_limit=new)
    return cut if work.fit(cut).ok else None


def _risk(ask: ScalingAction, weights: Mapping[str, float], cfg: ContentionConfig,
          own: Mapping[str, float] | None = None) -> tuple[float, float, float]:
    """``(p_fail × weight, p_fail, weight)``; the weight is the container's own (its
    workload's, ``own``), else its app's, else the default. Example: p_fail 0.6, app
    weight 2 → risk 1.2; the same ask of a container whose workload has weight 0.5 →
    0.3."""
    p = ask.p_fail if math.isfinite(ask.p_fail) else 0.0
    w = (own or {}).get(ask.container)
    if w is None:
        w = _weight(weights, ask.app, cfg.default_weight, "app")
    return p * w, p, w


def arbitrate(
    asks: list[ScalingAction],
    pool: Pool,
    *,
    idle: list[ReclaimCandidate],
    tenants: Mapping[str, str],
    weights: Mapping[str, float],
    now_s: float,
    tenant_weights: Mapping[str, float] | None = None,
    config: ContentionConfig | None = None,
    commit: bool = True,
    apps: Mapping[str, str] | None = None,
    tenancy: Tenancy | None = None,
) -> ArbitrationResult:
    """Decide every ask of one tick; see the module docstring. With ``commit`` the
    pool takes the reclaims and grants, otherwise it is left as it was. Raises
    ``ValueError`` (changing nothing) for a weight that is not a finite number > 0.

    ``tenants``: container or app → tenant, resolved by :func:`app.core.tenants.tenant_of`
    (a container of no tenant is ``config.unassigned_tenant``). ``apps``: container →
    app, for the containers the pool holds; those not in it (or all, when it is None)
    take the app of their ask or reclaim candidate, else none — so a tenant keyed by
    app is found for every container that asks or may be reclaimed, and for the rest
    of the pool's containers when ``apps`` names them. ``tenancy``: what the containers'
    workload policies say (their tenant, which beats an app's entry in ``tenants``, and
    their risk weight, which replaces their app's in ``weights``)."""
    cfg = config or ContentionConfig()
    if tenancy:
        tenants = {**tenants, **tenancy.tenants}
    app_of = {**{c.container: c.app for c in idle if c.app},
              **{a.container: a.app for a in asks if a.app}, **(apps or {})}
    for app in weights:
        _weight(weights, app, cfg.default_weight, "app")
    for t in tenant_weights or {}:
        _weight(tenant_weights, t, cfg.default_weight, "tenant")
    work = pool.copy()
    out: dict[str, PoolVerdict] = {}
    expl: dict[str, str] = {}
    summary: list[str] = []
    order: list[str] = []

    def owner(c: str) -> str:
        return tenant_of(tenants, c, app_of.get(c, "")) or cfg.unassigned_tenant

    # 1. invalid asks and decreases
    ups: list[ScalingAction] = []
    for ask in asks:
        f = work.fit(ask)
        if f.error:
            out[ask.action_id] = PoolVerdict(ask.action_id, Verdict.DENIED, f"denied: {f.error}")
        elif not f.increase:
            v = work.grant_one(ask)
            first = ("not drawn from a shared capacity" if ask.tier not in POOLED
                     else "a decrease, served first")
            out[ask.action_id] = PoolVerdict(ask.action_id, v.verdict,
                                             f"granted: {first}; {v.reason}")
            order.append(ask.action_id)
        else:
            ups.append(ask)

    # 2. shortfall per (node, tier), then reclaim. "Containers asking in this tick are
    # never reclaimed": an increase holds every pooled tier of its container, a decrease
    # its own tier (its own step down was granted above; a reclaim of the same limit
    # would be applied before it and then undone by it, the pool counting the reclaim).
    asking = ({(a.container, t) for a in ups for t in POOLED}
              | {(a.container, a.tier) for a in asks
                 if a.action_id in out and out[a.action_id].verdict is Verdict.GRANTED})
    slack: dict[tuple[str, Tier], list[tuple[float, ReclaimCandidate, float, int]]] = {}
    for cand in idle:
        if (cand.container, cand.tier) in asking:
            continue
        node = work.node_of(cand.container)
        cur = work.grants[cand.tier].get(cand.container)
        floor = cand.floor
        if node is None or cur is None or not math.isfinite(cur):
            summary.append(f"reclaim: skipped {cand.container}/{cand.tier.value} "
                           f"(no finite limit granted by the pool)")
            continue
        if not (math.isfinite(floor) and floor >= 0):
            summary.append(f"reclaim: skipped {cand.container}/{cand.tier.value} "
                           f"(invalid floor {floor!r})")
            continue
        r = work.replicas.get(cand.container, 1)
        s = (cur - _round_up(cand.tier, floor)) * r
        if s > 0:
            slack.setdefault((node, cand.tier), []).append((s, cand, cur, r))
    # per (node, tier): (need, pre-emptive) of each increase, and the askers' own
    # reservations (available to them, so part of their room)
    demand: dict[tuple[str, Tier], list[tuple[float, bool]]] = {}
    own: dict[tuple[str, Tier], float] = {}
    for ask in ups:
        f = work.fit(ask)
        for t, need in f.needs.items():
            if need > 0:
                demand.setdefault((f.node, t), []).append((need, ask.preemptive))
                mine = work.reservations.get((ask.container, t))
                if mine is not None and mine.node == f.node:
                    own[(f.node, t)] = own.get((f.node, t), 0.0) + mine.amount
    reclaims: list[ScalingAction] = []
    reclaimed: dict[tuple[str, Tier], float] = {}
    for (node, t), needs in sorted(demand.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        room = work.free(t, node) + own.get((node, t), 0.0)
        warm = work.warm[node].of(t)
        avail = sum(s for s, *_ in slack.get((node, t), []))
        pre = non = 0.0
        for need, is_pre in needs:  # only asks that could fit at all create demand
            limit = room + avail - (0.0 if is_pre else warm)
            if need <= limit + 1e-9 * max(abs(limit), 1.0):
                pre, non = (pre + need, non) if is_pre else (pre, non + need)
        short = max(0.0, pre - room, (pre + non - (room - warm)) if non > 0 else 0.0)
        summary.append(
            f"{node}/{t.value}: increases need {_fmt(t, pre + non)} "
            f"({_fmt(t, pre)} pre-emptive), {_fmt(t, max(room, 0.0))} free "
            f"({_fmt(t, warm)} warm reserve) → "
            + (f"contention, short {_fmt(t, short)}" if short > 0 else "no contention"))
        if short <= 0:
            continue
        got = 0.0
        for s, cand, cur, r in sorted(slack.get((node, t), []),
                                      key=lambda x: (-x[0], x[1].container)):
            if got >= short:
                break
            take = min(s, short - got)
            new = _round_up(t, max(cur - take / r, cand.floor))
            freed = (cur - new) * r
            if freed <= 0:
                continue
            aid = action_id_for(cand.container, t, now_s) + "/reclaim"
            why = (f"reclaim: {cand.container} idle, {t.value} {_fmt(t, cur)} → {_fmt(t, new)} "
                   f"(floor {_fmt(t, cand.floor)}) frees {_fmt(t, freed)} on node {node} "
                   f"for asks short of {_fmt(t, short)}")
            act = ScalingAction(aid, now_s, cand.container, t, cur, new, 0.0, math.nan,
                                math.inf, cand.floor, why, ActionKind.RESIZE, cand.app,
                                preemptive=False, cause="reclaim")
            v = work.grant_one(act)
            assert v.verdict is Verdict.GRANTED, v.reason  # a decrease always fits
            reclaims.append(act)
            expl[aid] = why
            summary.append(why)
            got += freed
        reclaimed[(node, t)] = got
        if got < short:
            summary.append(f"{node}/{t.value}: idle containers gave {_fmt(t, got)} of "
                           f"{_fmt(t, short)}; the rest of the asks compete")

    # 3. grant by class, risk band, DRF, risk
    total = {t: work.grantable(t) for t in POOLED}
    alloc: dict[str, dict[Tier, float]] = {}
    for t in POOLED:
        for c in work.grants[t]:
            alloc.setdefault(owner(c), {tt: 0.0 for tt in POOLED})[t] += work.allocation(c, t)

    def share(tenant: str) -> float:
        a = alloc.get(tenant, {})
        dom = max((a.get(t, 0.0) / total[t] for t in POOLED if total[t] > 0), default=0.0)
        return dom / _weight(tenant_weights, tenant, cfg.default_weight, "tenant")

    risk = {a.action_id: _risk(a, weights, cfg, tenancy.weights if tenancy else None)
            for a in ups}
    groups: dict[tuple[int, int], list[ScalingAction]] = {}
    for a in ups:
        band = int(math.floor(risk[a.action_id][0] / cfg.risk_band + 1e-9))
        groups.setdefault((0 if a.preemptive else 1, -band), []).append(a)
    dependent: list[str] = []
    for (cls, negband), members in sorted(groups.items()):
        pending: dict[str, list[ScalingAction]] = {}
        for a in sorted(members, key=lambda a: (-risk[a.action_id][0], a.action_id)):
            pending.setdefault(owner(a.container), []).append(a)
        while pending:
            n_tenants = len(pending)
            tenant = min(pending, key=lambda t: (share(t), t))
            sh = share(tenant)
            ask = pending[tenant].pop(0)
            if not pending[tenant]:
                del pending[tenant]
            r, p, w = risk[ask.action_id]
            why = (f"{'pre-emptive' if cls == 0 else 'not pre-emptive'}, risk {r:.2f} "
                   f"(p_fail {p:.2f} × weight {w:g}, band {-negband}), tenant {tenant} "
                   f"share {sh:.3f}"
                   + (f" (lowest of {n_tenants} tenants in band)" if n_tenants > 1 else ""))
            f = work.fit(ask)
            order.append(ask.action_id)
            pos = len(order)
            if f.ok:
                v = work.grant_one(ask)
                for t, need in f.needs.items():
                    if need > 0:
                        alloc.setdefault(tenant, {tt: 0.0 for tt in POOLED})[t] += need
                dep = any(need > f.room[t] - reclaimed.get((f.node, t), 0.0)
                          + 1e-9 * max(total[t], 1.0)
                          for t, need in f.needs.items() if need > 0)
                if dep:
                    dependent.append(ask.action_id)
                reason = (f"granted #{pos}: {v.reason.removeprefix('pool: granted ')}; {why}"
                          + ("; uses reclaimed idle capacity (apply the reclaims first)"
                             if dep else ""))
                out[ask.action_id] = PoolVerdict(ask.action_id, Verdict.GRANTED, reason)
                continue
            t = f.short_tier
            assert t is not None
            part = _partial(ask, f, work, t) if cfg.partial_grants else None
            if part is not None:
                before = work.allocation(ask.container, t)
                v = work.grant_one(part)
                assert v.verdict is Verdict.GRANTED, v.reason  # sized to the room
                gained = work.allocation(ask.container, t) - before
                alloc.setdefault(tenant, {tt: 0.0 for tt in POOLED})[t] += max(gained, 0.0)
                if f.needs[t] > 0 and reclaimed.get((f.node, t), 0.0) > 0:
                    dependent.append(ask.action_id)
                reason = (f"granted in part #{pos}: {_fmt(t, part.new_limit)} of the "
                          f"{_fmt(t, ask.new_limit)} asked ({_fmt(t, max(f.room[t], 0.0))} free "
                          f"on node {f.node}; covers the forecast {_fmt(t, ask.forecast)}); "
                          f"{why}")
                out[ask.action_id] = PoolVerdict(ask.action_id, Verdict.GRANTED, reason,
                                                 granted_limit=part.new_limit)
                continue
            need, room = f.needs[t], max(f.room[t], 0.0)
            warm = 0.0 if ask.preemptive else work.warm[f.node].of(t)
            ceiling = work.grantable(t, f.node) - warm
            holds = work.allocation(ask.container, t) + need
            others = work.reserved(t, f.node, exclude=(ask.container, t))
            where = f"{t.value} on node {f.node}"
            if holds > ceiling + 1e-9 * max(ceiling, 1.0):
                verdict = Verdict.DENIED
                because = (f"would hold {_fmt(t, holds)}, more than the "
                           f"{_fmt(t, ceiling)} the node can grant"
                           + (" outside the warm reserve" if warm > 0 else ""))
            elif need <= cfg.defer_factor * (room + others):
                verdict = Verdict.DEFERRED
                because = (f"may fit later: need ≤ {cfg.defer_factor:g} × (free "
                           f"{_fmt(t, room)} + reserved by others {_fmt(t, others)})")
            else:
                verdict = Verdict.DENIED
                because = (f"need > {cfg.defer_factor:g} × (free {_fmt(t, room)} + "
                           f"reserved by others {_fmt(t, others)}): not expected to fit soon")
            reason = (f"{verdict.value} #{pos}: needs {_fmt(t, need)} {where}, "
                      f"{_fmt(t, room)} free after {pos - 1} earlier decisions; {because}; {why}")
            out[ask.action_id] = PoolVerdict(ask.action_id, verdict, reason)

    for a in asks:
        expl[a.action_id] = out[a.action_id].reason
    if commit:
        pool.assign(work)
    return ArbitrationResult([out[a.action_id] for a in asks], reclaims, expl, summary, order,
                             dependent)
