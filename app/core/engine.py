"""The engine: one tick's decision path as pure code, shared by the live coordinator,
the evaluator (``prescale evaluate``) and the tick benchmark (``prescale bench tick``).

:meth:`Engine.plan` takes a :class:`Snapshot` (the window of every container, the
events since the last tick, the tick's own ``now_s``) and the threshold book, and runs

    window → features → heuristic predictor → each app's model (where one is given)
    → thresholds (per-container override, else app, owner, default)
    → outcome judgements (needed / false positive / miss) → policy + guards

returning a :class:`Plan`: the features, the prediction, the thresholds used, the
judgements (for the caller to learn from: ``ThresholdBook.learn`` or the durable
``ThresholdStore.learn``), the lead-time outcomes and the decisions with their asks.

The caller then arbitrates the asks (:func:`app.core.contention.arbitrate` over a
:class:`~app.core.pool.Pool`), applies the granted ones, and hands the results back to
:meth:`Engine.settle`, which records the scale-ups for outcome tracking and integrates
the resource-hours saved. The engine reads no clock and touches no file: everything it
remembers between ticks is in :class:`EngineState`, which is JSON-serialisable.

Worked example (``tests/unit/test_engine.py``): one container whose memory grows
8 MiB per 5 s step (1.6 MiB/s) towards a 256 MiB limit; threshold 0.3, horizon 60 s,
margin 0.25. At 160 MiB the trend reaches 160 + 1.6·60 = 256 MiB at the horizon,
p_fail ≥ 0.3, so ``plan`` proposes a pre-emptive memory RESIZE to max(forecast, limit)
× 1.25 = 320 MiB, 60 s before the limit; ``settle`` with that action APPLIED makes the
outcome tracker judge it *needed* once usage passes the old 256 MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from prescale.app.core.actions import (
    ActionKind,
    ActionResult,
    Decision,
    ResultStatus,
    ScalingAction,
)
from prescale.app.core.contention import ReclaimCandidate
from prescale.app.core.cost import SavingsLedger, accumulate_savings, reclaim_candidates
from prescale.app.core.features import F, compute_features, rate_trend, usage_trend
from prescale.app.core.gc_pause import gc_paused
from prescale.app.core.guards import escalate_denied
from prescale.app.core.oom import OomState, grew_steadily
from prescale.app.core.outcomes import (
    Judgement,
    Outcome,
    OutcomeConfig,
    OutcomeTracker,
    failure_tier,
)
from prescale.app.core.peaks import BUCKETS, PeakTracker
from prescale.app.core.policy import PolicyConfig, PolicyInput, PolicyState, decide
from prescale.app.core.policy_types import key_of, replicas_key
from prescale.app.core.predictor import Prediction, TrendExhaustionPredictor
from prescale.app.core.sample import Event, EventKind, M, Tier
from prescale.app.core.tenants import Tenancy, tenant_of
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.core.workloads import Workload, held_back

#: the tiers a tick may predict: memory and CPU always, the disk when a container of the
#: snapshot has a volume (a finite ``disk_limit_bytes``: :meth:`Engine.predict`), the
#: network when one has a receive bandwidth limit (``net_rx_limit_bytes_per_s``), block
#: I/O when one has a write bandwidth limit (``io_write_limit_bytes_per_s``)
TIERS = (Tier.MEMORY, Tier.CPU, Tier.DISK, Tier.NETWORK, Tier.IO)
_ALL_COLUMNS = list(range(len(F)))  # every feature, in the order compute_features gives


def _predict_read_only(model: FailureModelLike, x: np.ndarray) -> np.ndarray:
    """``model.predict_proba(x)`` with ``x`` read-only during the call: the engine hands a
    model its own feature matrix (or the window) without a copy, and a model that wrote
    into it would change what the policy reads next; such a model fails with numpy's
    "assignment destination is read-only" instead. ``x``'s flag is restored after."""
    was = x.flags.writeable
    x.flags.writeable = False
    try:
        return model.predict_proba(x)
    finally:
        if was:
            x.flags.writeable = True


class FailureModelLike(Protocol):
    input: str  # "features" or "window"

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class AppModel:
    """A learned model serving one app: ``label`` for the log, the model, and the
    feature names it was trained on (ignored when ``model.input == "window"``)."""

    label: str
    model: FailureModelLike
    features: tuple[str, ...] = ()


#: app → its model (its own, else a global one), or None for the heuristic alone
ModelLookup = Callable[[str], AppModel | None]


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine is configured with. The field defaults (and those of the
    types it holds) are prescale's defaults: the settings groups
    (``app/settings_decisions.py``) read them rather than repeating them, and
    :meth:`from_settings` is the one way from settings to the engine's config
    (:mod:`app.core.config`)."""

    predictor: TrendExhaustionPredictor = field(default_factory=TrendExhaustionPredictor)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    #: rows of the window in its "recent" part (recent slope, throttling)
    recent_steps: int = 10
    #: fixed per-container thresholds (``thresholds.per_app``); win over the book
    fixed_thresholds: Mapping[str, float] = field(default_factory=dict)
    #: container or app → tenant (owner): :func:`app.core.tenants.tenant_of`
    tenants: Mapping[str, str] = field(default_factory=dict)
    #: the tier the learned models predict
    model_tier: Tier = Tier.MEMORY

    @property
    def lead_time_expire_s(self) -> float:
        """Lead-time checks expire after this long without a crossing
        (``outcome.lead_time_expire_s``)."""
        return float(self.outcome.lead_time_expire_s)

    @classmethod
    def from_settings(cls, s: Any) -> EngineConfig:
        """From a :class:`app.settings.Settings` (duck-typed, so the core stays free of it):
        each part through its own type's ``from_settings``."""
        p, t = s.predictor, s.thresholds
        policy = PolicyConfig.from_settings(s.policy, s.cost, s.oom)
        workloads = tuple(Workload.from_settings(w) for w in getattr(s, "workloads", ()))
        if workloads:
            policy = replace(policy, guards=replace(policy.guards, workloads=workloads))
        return cls(
            predictor=TrendExhaustionPredictor.from_settings(p),
            policy=policy,
            outcome=OutcomeConfig.from_settings(t, p),
            recent_steps=p.recent_steps,
            fixed_thresholds=dict(t.per_app),
            tenants=dict(s.contention.tenants),
            model_tier=Tier(s.models.tier),
        )


#: the long peak (``cost.long_peak_s``) is kept in this many buckets
PEAK_BUCKETS = BUCKETS


@dataclass
class EngineState:
    """Everything the engine remembers between ticks (checkpointed by its host)."""

    policy: PolicyState = field(default_factory=PolicyState)
    #: judgements of scale-ups and misses, and lead times (:mod:`app.core.outcomes`)
    outcomes: OutcomeTracker = field(default_factory=OutcomeTracker)
    savings: SavingsLedger = field(default_factory=SavingsLedger)
    #: long-horizon usage peaks (what an idle scale-down or a reclaim under contention
    #: keeps); None = off
    peaks: PeakTracker | None = None
    #: the OOM response: kills in the loop window, stabilisation floors, flags
    oom: OomState = field(default_factory=OomState)
    #: the highest limits over the long peak's span (what an OOM bump restores)
    limit_peaks: PeakTracker | None = None
    #: replicated containers only: the long peak of their total usage over all replicas
    #: (per-replica usage × replicas: what a scale-in must still serve)
    demand_peaks: PeakTracker | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"policy_state": self.policy.to_dict(), "outcomes": self.outcomes.to_dict(),
                "savings": self.savings.to_dict(),
                "peaks": self.peaks.to_dict() if self.peaks is not None else None,
                "limit_peaks": (self.limit_peaks.to_dict() if self.limit_peaks is not None
                                else None),
                "demand_peaks": (self.demand_peaks.to_dict() if self.demand_peaks is not None
                                 else None),
                "oom": self.oom.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], config: EngineConfig) -> EngineState:
        """Inverse of :meth:`to_dict`. Also reads a checkpoint from before the outcome
        and lead-time trackers were one: its top-level ``pending`` list holds the open
        lead-time checks."""
        st = cls.fresh(config)
        if d.get("policy_state"):
            st.policy = PolicyState.from_dict(d["policy_state"])
        if d.get("outcomes"):
            st.outcomes = OutcomeTracker.from_dict(d["outcomes"], config.outcome)
        if d.get("pending"):  # an older checkpoint's lead-time checks
            st.outcomes.load_lead_list(d["pending"])
        if d.get("savings"):
            st.savings = SavingsLedger.from_dict(d["savings"])
        if d.get("peaks") and st.peaks is not None:
            saved = PeakTracker.from_dict(d["peaks"])
            if (saved.bucket_s, saved.buckets) == (st.peaks.bucket_s, st.peaks.buckets):
                st.peaks = saved  # a changed long_peak_s starts afresh
        for name in ("limit_peaks", "demand_peaks"):
            mine = getattr(st, name)
            if d.get(name) and mine is not None:
                saved = PeakTracker.from_dict(d[name])
                if (saved.bucket_s, saved.buckets) == (mine.bucket_s, mine.buckets):
                    setattr(st, name, saved)
        if d.get("oom"):
            st.oom = OomState.from_dict(d["oom"])
        return st

    @classmethod
    def fresh(cls, config: EngineConfig) -> EngineState:
        span = config.policy.cost.long_peak_s
        return cls(outcomes=OutcomeTracker(config.outcome),
                   peaks=PeakTracker(span / PEAK_BUCKETS, PEAK_BUCKETS) if span > 0 else None,
                   limit_peaks=(PeakTracker(span / PEAK_BUCKETS, PEAK_BUCKETS) if span > 0
                                else None),
                   demand_peaks=(PeakTracker(span / PEAK_BUCKETS, PEAK_BUCKETS) if span > 0
                                 else None))


@dataclass(frozen=True)
class Snapshot:
    """One tick's input: ``window`` is ``[N, W, M]`` in the order of ``names``."""

    now_s: float
    names: Sequence[str]
    apps: Sequence[str]
    window: np.ndarray
    events: Sequence[Event] = ()
    #: containers that scale horizontally → their replica count (others: not replicated)
    replicas: Mapping[str, int] = field(default_factory=dict)
    #: containers whose source knows labels (Docker's) → their labels
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.apps) != n:
            raise ValueError(f"Snapshot.apps has {len(self.apps)} entries for {n} names")
        if self.window.ndim != 3 or self.window.shape[0] != n:
            raise ValueError(f"Snapshot.window has shape {self.window.shape}, "
                             f"expected ({n}, W, M)")


@dataclass
class Plan:
    """One tick's result. ``decisions`` holds the decisions anything downstream reads
    (``decide(..., sparse=True)``): every one with an action or that had one proposed
    (blocked by a guard), every one with ``p_fail >= threshold`` and every one of a tier
    low enough to be an idle candidate, in the policy's order. The rest of the
    container-tiers (below the threshold, nothing to do) get no :class:`Decision`;
    their p_fail and threshold are in ``prediction`` and ``thresholds``."""

    now_s: float
    names: list[str]
    apps: list[str]
    features: np.ndarray
    prediction: Prediction
    thresholds: dict[Tier, np.ndarray]
    judgements: list[Judgement]
    lead_outcomes: list[Outcome]
    decisions: list[Decision]
    asks: list[ScalingAction]
    model_of: dict[str, str]
    #: idle containers the pool may shrink if this tick's increases contend
    #: (:func:`app.core.cost.reclaim_candidates`; only computed when an ask increases)
    reclaim: list[ReclaimCandidate] = field(default_factory=list)
    #: containers OOM-killed since the last tick → their kills within the loop window
    oom_kills: dict[str, int] = field(default_factory=dict)
    #: containers in a kill loop this tick → why they need the operator
    flagged: dict[str, str] = field(default_factory=dict)
    #: what the containers' workload policies say when tenants contend (their tenant and
    #: risk weight), for the arbitration
    tenancy: Tenancy = field(default_factory=Tenancy)

    def usage(self, tier: Tier) -> np.ndarray:
        col = "memory_usage_last_bytes" if tier is Tier.MEMORY else "cpu_usage_cores_last"
        return self.features[:, F[col]]


class _ByName(Mapping[str, float]):
    """A column of this tick's readings as container → value, looked up on demand: the
    outcome tracker reads a few (its open scale-ups'), so no dict of every container is
    built (at 10,000 containers that was ~30,000 entries a tick). Rows where ``where`` is
    False have no value; a name that repeats reads its last row with one (as a dict
    built row by row would). Values are Python floats, as ``tolist`` gives them.

    >>> u = _ByName(["a", "b", "a"], np.array([1.0, 2.0, 3.0]), where=np.array([1, 1, 0]))
    >>> u.get("a"), u["b"], u.get("c"), list(u)
    (1.0, 2.0, None, ['a', 'b'])
    """

    def __init__(self, names: Sequence[str], values: np.ndarray,
                 where: np.ndarray | None = None) -> None:
        self._names, self._values, self._where = names, values, where
        self._row: dict[str, int] | None = None

    @property
    def row(self) -> dict[str, int]:
        if self._row is None:
            names = self._names
            self._row = ({n: i for i, n in enumerate(names)} if self._where is None else
                         {names[i]: i for i in np.flatnonzero(self._where).tolist()})
        return self._row

    def __getitem__(self, name: str) -> float:
        return float(self._values[self.row[name]])

    def __iter__(self) -> Iterator[str]:
        return iter(self.row)

    def __len__(self) -> int:
        return len(self.row)


class _ByTier(Mapping[tuple[str, Tier], float]):
    """``(container, tier)`` → reading, over one :class:`_ByName` per tier."""

    def __init__(self, by_tier: Mapping[Tier, _ByName]) -> None:
        self._by_tier = by_tier

    def __getitem__(self, key: tuple[str, Tier]) -> float:
        name, tier = key
        column = self._by_tier.get(tier)
        if column is None:
            raise KeyError(key)
        return column[name]

    def __iter__(self) -> Iterator[tuple[str, Tier]]:
        return ((n, tier) for tier, column in self._by_tier.items() for n in column)

    def __len__(self) -> int:
        return sum(len(column) for column in self._by_tier.values())


class Engine:
    """Pure decision path; ``state`` is replaced (not mutated in place) by ``decide``."""

    def __init__(self, config: EngineConfig, state: EngineState | None = None) -> None:
        self.config = config
        self.state = state or EngineState.fresh(config)
        #: the last observed tick's :meth:`_resolve_tenancy` (the owner of a judgement)
        self.tenancy = Tenancy()
        self._net: Any = None  # the last tick's network rate trend (its usage)
        self._io: Any = None  # the last tick's block-I/O write rate trend (its usage)
        self._last_inp: PolicyInput | None = None  # the last proposal's input

    def owner(self, container: str, app: str) -> str:
        """The container's tenant (:func:`app.core.tenants.tenant_of`, its workload's as of
        the last tick observed; ``""``: none)."""
        return tenant_of(self.config.tenants, container, app,
                         self.tenancy.tenants.get(container, ""))

    def _resolve_tenancy(self, snap: Snapshot) -> Tenancy:
        """What the containers' workload policies (``[[workloads]]``, ``prescale.*``
        labels) say when tenants contend: their tenant (resolved by :func:`tenant_of`)
        and risk weight. Empty when no workload names either."""
        guards = self.config.policy.guards
        if not (guards.workloads or snap.labels):
            return Tenancy()
        tenants: dict[str, str] = {}
        weights: dict[str, float] = {}
        for n, a in zip(snap.names, snap.apps, strict=True):
            w = guards.workload_of(n, a, snap.labels.get(n))
            if w is None:
                continue
            if w.tenant:
                tenants[n] = tenant_of(self.config.tenants, n, a, w.tenant)
            if w.weight is not None:
                weights[n] = w.weight
        return Tenancy(tenants, weights)

    def thresholds(self, book: ThresholdBook, names: Sequence[str], apps: Sequence[str],
                   labels: Mapping[str, Mapping[str, str]] | None = None
                   ) -> dict[Tier, np.ndarray]:
        """Per tier, each container's threshold: its fixed override, else its workload's
        threshold, else the book's value for its app and owner (app → owner → default)."""
        fixed = self.config.fixed_thresholds
        tenants = self.config.tenants
        guards = self.config.policy.guards
        own = self.tenancy.tenants
        pinned: list[tuple[int, float]] = []
        if fixed or guards.workloads or labels:
            for i, (n, a) in enumerate(zip(names, apps, strict=True)):
                if n in fixed:
                    pinned.append((i, fixed[n]))
                elif guards.workloads or labels:
                    w = guards.workload_of(n, a, (labels or {}).get(n))
                    if w is not None and w.threshold is not None:
                        pinned.append((i, w.threshold))
        # One book lookup per distinct (app, owner) and tier, broadcast to its rows: each
        # row's code is its key's number, in the order the keys are first met.
        keys: dict[tuple[str, str | None], int] = {}
        number = keys.setdefault  # (len(keys) is read before a new key goes in)
        if tenants or own:
            rows = [number((a or n, tenant_of(tenants, n, a, own.get(n, "")) or None),
                           len(keys)) for n, a in zip(names, apps, strict=True)]
        else:
            by_app: dict[str, int] = {}
            rows = [by_app.setdefault(a or n, len(by_app))
                    for n, a in zip(names, apps, strict=True)]
            keys = {(app, None): code for app, code in by_app.items()}
        codes = np.array(rows, dtype=np.intp)
        out: dict[Tier, np.ndarray] = {}
        for tier in TIERS:
            values = np.array([book.value(tier, app=app, owner=owner) for app, owner in keys],
                              dtype=float)
            col = values[codes] if len(codes) else np.zeros(0)
            for i, v in pinned:
                col[i] = v
            out[tier] = col
        return out

    def predict(self, snap: Snapshot, models: ModelLookup | None = None
                ) -> tuple[np.ndarray, Prediction, dict[str, str]]:
        """Features, the heuristic's prediction, then each app's model over its rows."""
        feats = compute_features(snap.window, recent_steps=self.config.recent_steps)
        pred = self.config.predictor.predict(feats)
        if len(snap.names) and np.isfinite(snap.window[:, -1, M["disk_limit_bytes"]]).any():
            pred.tiers[Tier.DISK] = self.config.predictor.predict_trend(usage_trend(
                snap.window, "disk_used_bytes", "disk_limit_bytes",
                recent_steps=self.config.recent_steps))
        if len(snap.names) and np.isfinite(
                snap.window[:, -1, M["net_rx_limit_bytes_per_s"]]).any():
            self._net = rate_trend(snap.window, "net_rx_bytes_total", "net_rx_limit_bytes_per_s")
            pred.tiers[Tier.NETWORK] = self.config.predictor.predict_rate(self._net)
        if len(snap.names) and np.isfinite(
                snap.window[:, -1, M["io_write_limit_bytes_per_s"]]).any():
            self._io = rate_trend(snap.window, "io_limited_write_bytes_total",
                                  "io_write_limit_bytes_per_s")
            pred.tiers[Tier.IO] = self.config.predictor.predict_rate(self._io)
        model_of: dict[str, str] = {}
        if models is None or not len(snap.names):
            return feats, pred, model_of
        p_fail = pred.tiers[self.config.model_tier].p_fail
        by_app: dict[str, list[int]] = {}
        for i, app in enumerate(snap.apps):
            by_app.setdefault(app, []).append(i)
        # One predict_proba per distinct model (and input), over the rows of every app it
        # serves, in row order: a global model serving 20 apps is one call, not 20. The
        # models score each row on its own, so the probabilities are those of per-app calls.
        by_model: dict[tuple[int, str, tuple[str, ...]], tuple[AppModel, list[int]]] = {}
        for app, idx in by_app.items():
            m = models(app)
            if m is None:
                continue
            key = (id(m.model), m.model.input,
                   () if m.model.input == "window" else tuple(m.features))
            by_model.setdefault(key, (m, []))[1].extend(idx)
            label, names = m.label, snap.names
            model_of.update({names[i]: label for i in idx})
        n = len(snap.names)
        for m, idx in by_model.values():
            # one model over every row (the common case): no copy of the window or of
            # the features; else its rows, in row order, and its columns
            every = len(idx) == n
            rows = slice(None) if every else np.sort(np.asarray(idx, dtype=np.intp))
            if m.model.input == "window":
                x = snap.window if every else snap.window[rows]
            else:
                cols = [F[name] for name in m.features]
                x = feats if every and cols == _ALL_COLUMNS else feats[rows][:, cols]
            p_fail[rows] = _predict_read_only(m.model, x)
        return feats, pred, model_of

    def plan(self, snap: Snapshot, book: ThresholdBook, *, models: ModelLookup | None = None,
             decide_actions: bool = True) -> Plan:
        """One tick up to the asks (see the module docstring): :meth:`observe`, then
        :meth:`propose`. ``decide_actions=False`` (mode ``off``) observes, predicts and
        judges but proposes nothing."""
        plan = self.observe(snap, book, models=models)
        if decide_actions:
            self.propose(plan, snap)
        return plan

    def observe(self, snap: Snapshot, book: ThresholdBook, *,
                models: ModelLookup | None = None) -> Plan:
        """Features, prediction, thresholds and the outcome judgements (which advance the
        outcome tracker: a host that learns from them should checkpoint before acting)."""
        with gc_paused():
            return self._observe(snap, book, models)

    def _observe(self, snap: Snapshot, book: ThresholdBook,
                 models: ModelLookup | None) -> Plan:
        names, apps = list(snap.names), list(snap.apps)
        self.tenancy = self._resolve_tenancy(snap)
        feats, pred, model_of = self.predict(snap, models)
        thr = self.thresholds(book, names, apps, snap.labels)
        judgements, lead = self._judge(snap, feats, pred, thr)
        killed: dict[str, int] = {}
        for e in snap.events:
            if e.kind is EventKind.OOM_KILL:
                killed[e.container] = killed.get(e.container, 0) + 1
        oom = self.state.oom
        oom_kills = oom.record_kills(snap.now_s, killed, self.config.policy.oom) if killed else {}
        runaways = self._runaways(snap, feats, names, oom_kills) if (oom_kills or oom.suspects
                                                                    ) else []
        if self.state.peaks is not None:
            usage = self._peak_usage(feats)
            if oom_kills:  # a kill says the demand reached at least the limit
                pos = {n: i for i, n in enumerate(names)}
                mem = usage[Tier.MEMORY].copy()
                for c in oom_kills:
                    i = pos.get(c)
                    if i is not None:
                        mem[i] = np.fmax(mem[i], feats[i, F["memory_limit_bytes"]])
                usage[Tier.MEMORY] = mem
            self.state.peaks.observe(snap.now_s, names, usage)
            if snap.replicas and self.state.demand_peaks is not None:
                self._observe_demand(snap, names, usage)
        if self.state.limit_peaks is not None:
            lim = {Tier.MEMORY: feats[:, F["memory_limit_bytes"]],
                   Tier.CPU: feats[:, F["cpu_quota_cores"]]}
            self.state.limit_peaks.observe(
                snap.now_s, names, {t: np.where(np.isfinite(v), v, np.nan)
                                    for t, v in lim.items()})
        for c, used, limit in runaways:  # its old peaks were a leak's, not a need
            if self.state.peaks is not None:
                self.state.peaks.restart(c, Tier.MEMORY, used)
            if self.state.limit_peaks is not None:
                self.state.limit_peaks.restart(c, Tier.MEMORY, limit)
        return Plan(snap.now_s, names, apps, feats, pred, thr, judgements, lead, [], [],
                    model_of, oom_kills=oom_kills,
                    flagged={c: oom.flagged[c] for c, _, _ in runaways}, tenancy=self.tenancy)

    def _runaways(self, snap: Snapshot, feats: np.ndarray, names: list[str],
                  oom_kills: Mapping[str, int]) -> list[tuple[str, float, float]]:
        """The runaway detector (:mod:`app.core.oom`): suspect this tick's kills after
        steady growth, confirm or clear earlier suspects; returns the runaways confirmed
        now as (container, usage, limit)."""
        oom = self.state.oom
        pos = {n: i for i, n in enumerate(names)}
        out = []
        for c in list(oom.suspects):
            i = pos.get(c)
            if i is None or c in oom_kills:
                continue
            used = float(feats[i, F["memory_usage_last_bytes"]])
            if oom.confirm(c, used):
                out.append((c, used, float(feats[i, F["memory_limit_bytes"]])))
        col = M["memory_usage_bytes"]
        for c in oom_kills:
            i = pos.get(c)
            if i is None:
                continue
            limit = float(feats[i, F["memory_limit_bytes"]])
            before = snap.window[i, :-1, col]  # the last reading is after the kill
            if grew_steadily(before.tolist(), limit):
                oom.suspect(c, limit)
            else:
                oom.suspects.pop(c, None)
        return out

    def propose(self, plan: Plan, snap: Snapshot) -> Plan:
        """Policy and guards over an observed plan: fills ``decisions`` and ``asks`` (and
        advances the policy state: cooldowns, hysteresis)."""
        with gc_paused():
            return self._propose(plan, snap)

    def _propose(self, plan: Plan, snap: Snapshot) -> Plan:
        names, apps, feats, thr = plan.names, plan.apps, plan.features, plan.thresholds
        if not names:
            return plan
        usage = {Tier.MEMORY: feats[:, F["memory_usage_last_bytes"]],
                 Tier.CPU: feats[:, F["cpu_usage_cores_last"]]}
        disk = plan.prediction.tiers.get(Tier.DISK)
        if disk is not None:  # the volume's used bytes, as of the last sample
            usage[Tier.DISK] = snap.window[:, -1, M["disk_used_bytes"]]
        if Tier.NETWORK in plan.prediction.tiers:  # the last receive rate
            usage[Tier.NETWORK] = self._net.last
        if Tier.IO in plan.prediction.tiers:  # the last write rate to the limited devices
            usage[Tier.IO] = self._io.last
        reps = snap.replicas
        oom = self.state.oom
        raised = self.state.policy.raised_from
        if raised:  # a pre-emptive raise that usage reached (or a kill) was needed
            pos = {n: i for i, n in enumerate(names)}
            for key in list(raised):
                c, _, t = key.rpartition("/")
                i = pos.get(c)
                if i is None or c in plan.oom_kills or (
                        t in ("memory", "cpu") and usage[Tier(t)][i] >= raised[key]):
                    del raised[key]
        long_peak = self._long_peak(plan)
        inp = PolicyInput(snap.now_s, names, plan.prediction, thr[Tier.MEMORY], apps=apps,
                          labels=[snap.labels.get(n, {}) for n in names] if snap.labels
                          else None,
                          tier_thresholds=thr, usage=usage, peak_usage=long_peak,
                          replicated=np.array([n in reps for n in names]) if reps else None,
                          replicas=np.array([reps.get(n, 1) for n in names], dtype=float)
                          if reps else None,
                          floor={Tier.MEMORY: np.asarray(oom.floors(snap.now_s, names))}
                          if oom.floor else None,
                          oom_kills=np.array([plan.oom_kills.get(n, 0) for n in names])
                          if plan.oom_kills else None,
                          limit_peak=self._limit_peak(plan) if plan.oom_kills else None,
                          demand_peak=self._demand_peak(names) if reps else None)
        before = self.state.policy
        plan.decisions, self.state.policy = decide(inp, self.config.policy, self.state.policy,
                                                   sparse=True)
        self._last_inp = inp  # for escalate(), after the pool's answer
        if plan.oom_kills:
            loop = self.config.policy.oom.loop_kills
            for d in plan.decisions:
                if (d.tier is Tier.MEMORY and plan.oom_kills.get(d.container, 0) >= loop):
                    plan.flagged[d.container] = oom.flagged[d.container] = d.reason
        app_of = dict(zip(names, apps, strict=True))
        guards = self.config.policy.guards
        if guards.workloads or snap.labels:  # a workload in off/recommend mode, a tier it
            # does not control, or labels that do not parse
            lab = snap.labels
            of = [guards.workload_of(d.container, app_of.get(d.container, ""),
                                     lab.get(d.container)) if d.action is not None else None
                  for d in plan.decisions]
            held = [self._hold(d, w) if d.action is not None else d
                    for d, w in zip(plan.decisions, of, strict=True)]
            for d, h, w in zip(plan.decisions, held, of, strict=True):
                if d.action is not None and h.action is None:  # held: no cooldown started
                    self._unrecord(d.action, before)
                    if w is not None and w.mode == "recommend" and not w.problems:
                        self._recommended(d.action, app_of.get(d.container, ""))
            plan.decisions = held
        # the policy already names the app (PolicyInput.apps): no copy needed
        app_get = app_of.get
        asks = [a if a.app == app_get(d.container, "") else replace(
                    a, app=app_get(d.container, ""))
                for d in plan.decisions if (a := d.action) is not None]
        plan.asks = asks
        if any(a.new_limit > a.old_limit or a.kind is ActionKind.SCALE_OUT for a in asks):
            plan.reclaim = reclaim_candidates(
                inp, self.config.policy.cost, self.config.policy.guards, self.state.policy,
                long_peak=long_peak)
            if guards.workloads or snap.labels:  # a held-back workload is not shrunk either
                plan.reclaim = [r for r in plan.reclaim if not self._holds(
                    guards.workload_of(r.container, app_of.get(r.container, ""),
                                       snap.labels.get(r.container)), r.tier)]
        return plan

    def escalate(self, denied: Sequence[tuple[ScalingAction, str]]
                 ) -> tuple[list[ScalingAction], list[str]]:
        """The scale-outs for this tick's vertical asks the pool denied (``(ask, why)``):
        :func:`app.core.guards.escalate_denied` over the tick's policy input; a workload
        held back (off, recommend, a tier it does not control) is not escalated either.
        Returns them (with their app) and why the others were not."""
        inp = self._last_inp
        if inp is None or not denied:
            return [], []
        guards = self.config.policy.guards
        if guards.workloads or inp.labels:
            pos = {n: i for i, n in enumerate(inp.containers)}
            denied = [(a, why) for a, why in denied if a.container in pos and not self._holds(
                guards.workload_of(a.container, a.app, inp.labels_of(pos[a.container])),
                a.tier)]
        out, notes, self.state.policy = escalate_denied(inp, denied, guards, self.state.policy)
        return out, notes

    @staticmethod
    def _hold(d: Decision, w: Any) -> Decision:
        """The decision with its action held back by workload ``w`` (if it is), the
        proposed change kept in the reason: "workload shop is in recommend mode: memory
        268435456 → 402653184 not applied"."""
        why = held_back(w, d.action)
        return d if why is None else replace(d, action=None, reason=f"{d.reason}; {why}")

    def _recommended(self, a: ScalingAction, app: str) -> None:
        """A scale-up a workload in recommend mode held back is judged as a recommendation
        of the global recommend mode is (:meth:`settle` of a dry run): the outcome tracker
        learns whether it was needed (a false positive makes the app's threshold less
        eager, as a miss makes it more), and a memory one gets its lead time. Held, it
        starts no cooldown, so it is proposed again every tick: one is tracked at a time
        per container and tier (while the last one's judgement is open). Without this, a
        recommend-mode workload's thresholds saw its misses and never its false
        positives, and only ever grew more eager. Example: ``shop`` in recommend mode,
        memory 256 → 384 MiB proposed at t = 100 and again at 101…: one recommendation,
        t = 100, judged at 100 + H."""
        if a.kind is not ActionKind.RESIZE or not a.new_limit > a.old_limit:
            return
        outcomes = self.state.outcomes
        if outcomes.recommending(a.container, a.tier):
            return
        if a.app != app:
            a = replace(a, app=app)
        outcomes.scale_up(a, owner=self.owner(a.container, app), applied=False)

    def _unrecord(self, a: ScalingAction, before: PolicyState) -> None:
        """Undo what the guards recorded for an action a workload held back (its cooldown
        and direction go back to ``before``): nothing was applied nor asked, so nothing
        starts a cooldown or a hold."""
        key = (replicas_key(a.container) if a.kind is ActionKind.SCALE_OUT
               else key_of(a.container, a.tier))
        st = self.state.policy
        for now, then in ((st.last_action_s, before.last_action_s),
                          (st.last_direction, before.last_direction)):
            if key in then:
                now[key] = then[key]
            else:
                now.pop(key, None)

    @staticmethod
    def _holds(w: Any, tier: Tier) -> bool:
        return w is not None and (bool(w.problems) or w.mode in ("off", "recommend") or (
            w.controlled is not None and tier.value not in w.controlled))

    @staticmethod
    def _peak_usage(feats: np.ndarray) -> dict[Tier, np.ndarray]:
        """What one tick adds to the long peaks: the window's highest memory usage and
        the last CPU rate."""
        return {Tier.MEMORY: feats[:, F["memory_usage_max_bytes"]],
                Tier.CPU: feats[:, F["cpu_usage_cores_last"]]}

    def _observe_demand(self, snap: Snapshot, names: Sequence[str],
                        usage: Mapping[Tier, np.ndarray]) -> None:
        """Fold the replicated containers' total usage (per replica × replicas) into
        :attr:`EngineState.demand_peaks`. Example: 3 replicas at 0.4 cores → 1.2."""
        reps = snap.replicas
        idx = [i for i, n in enumerate(names) if n in reps]
        count = np.array([reps[names[i]] for i in idx], dtype=float)
        self.state.demand_peaks.observe(
            snap.now_s, [names[i] for i in idx], {t: u[idx] * count for t, u in usage.items()})

    def _demand_peak(self, names: Sequence[str]) -> dict[Tier, np.ndarray] | None:
        """Per tier ``[N]`` (``names`` order): the long peak of the total usage of each
        replicated container (nan for the others, or when not kept)."""
        dp = self.state.demand_peaks
        if dp is None or not dp.names:
            return None
        pos = {n: i for i, n in enumerate(names)}
        rows = [(pos[n], j) for j, n in enumerate(dp.names) if n in pos]
        out = {}
        for t in (Tier.MEMORY, Tier.CPU):
            col = np.full(len(names), np.nan)
            peak = dp.peak(t)
            for i, j in rows:
                col[i] = peak[j]
            out[t] = col
        return out

    def _long_peak(self, plan: Plan) -> dict[Tier, np.ndarray]:
        """Per tier ``[N]`` (plan order): the long peak, else (tracking off, or another
        container order) this window's."""
        peaks = self.state.peaks
        if peaks is not None and peaks.names == plan.names:
            return {t: peaks.peak(t) for t in (Tier.MEMORY, Tier.CPU)}
        return self._peak_usage(plan.features)

    def _limit_peak(self, plan: Plan) -> dict[Tier, np.ndarray] | None:
        """Per tier ``[N]``: the highest limit over the long peak's span (None: not kept,
        or another container order)."""
        lp = self.state.limit_peaks
        if lp is None or lp.names != plan.names:
            return None
        return {t: lp.peak(t) for t in (Tier.MEMORY, Tier.CPU)}

    def _judge(self, snap: Snapshot, feats: np.ndarray, pred: Prediction,
               thr: dict[Tier, np.ndarray]) -> tuple[list[Judgement], list[Outcome]]:
        """Judge past scale-ups (needed / false positive) and failures (miss); close the
        lead-time checks this tick's readings settle."""
        st = self.state
        ooms: dict[str, float] = {}
        judgements: list[Judgement] = []
        for e in snap.events:
            if e.kind is EventKind.OOM_KILL:
                ooms[e.container] = ooms.get(e.container, 0) + 1
            tier = failure_tier(e.kind)
            if tier is not None:
                judgements += st.outcomes.failure(
                    e.container, tier, e.ts_s, app=e.app or e.container,
                    owner=self.owner(e.container, e.app), detail=e.detail)
        usage_bytes = _ByName(snap.names, feats[:, F["memory_usage_last_bytes"]])
        reach = {Tier.MEMORY: usage_bytes,
                 Tier.CPU: _ByName(snap.names, feats[:, F["cpu_usage_cores_last"]])}
        if Tier.DISK in pred.tiers:  # a disk scale-up was needed if usage reached its old size
            reach[Tier.DISK] = _ByName(snap.names, snap.window[:, -1, M["disk_used_bytes"]],
                                       where=np.isfinite(pred.tiers[Tier.DISK].limit))
        st.outcomes.decisions(snap.names, snap.now_s,
                              [(tier, pred.tiers[tier].p_fail, thr[tier]) for tier in TIERS
                               if tier in pred.tiers])
        judgements += st.outcomes.observe(snap.now_s, _ByTier(reach))
        lead = st.outcomes.observe_lead_times(snap.now_s, usage_bytes, ooms)
        return judgements, lead

    def settle(self, now_s: float, results: Sequence[tuple[ScalingAction, ActionResult]],
               live: Sequence[str]) -> None:
        """After acting: track applied (or recommended) scale-ups for outcome judgement and
        lead time, and integrate the resource-hours saved by applied scale-downs."""
        st = self.state
        for a, r in results:
            if (a.cause == "oom" and a.kind is ActionKind.RESIZE
                    and r.status is not ResultStatus.FAILED):
                # what the pool granted of the bump (the old limit if denied) holds
                st.oom.settle(now_s, a.container, float(r.new_limit), self.config.policy.oom)
            if r.status not in (ResultStatus.APPLIED, ResultStatus.DRY_RUN):
                continue
            applied = r.status is ResultStatus.APPLIED
            if applied and a.kind is ActionKind.RESIZE:
                key = f"{a.container}/{a.tier}"
                raised = st.policy.raised_from
                if r.new_limit > r.old_limit and a.cause == "forecast":
                    raised.setdefault(key, float(r.old_limit))
                elif key in raised and (a.cause == "oom" or r.new_limit <= raised[key]):
                    del raised[key]
            if a.kind is ActionKind.RESIZE and a.new_limit > a.old_limit:
                st.outcomes.scale_up(a, owner=self.owner(a.container, a.app), applied=applied)
        st.savings = accumulate_savings(
            st.savings, now_s, [r for _, r in results if r.status is ResultStatus.APPLIED],
            live=live)
        if st.oom.kills or st.oom.floor or st.oom.flagged:
            st.oom.forget(live)


__all__ = ["AppModel", "Engine", "EngineConfig", "EngineState", "ModelLookup", "Plan",
           "Snapshot", "TIERS"]
