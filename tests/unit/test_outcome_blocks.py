"""The outcome tracker's decisions kept as one array block per tick (app/core/outcomes.py)
give what one record per container, tier and tick gave: each test keeps the previous
implementation as a reference and compares.

- :class:`PerKey` is the tracker with its previous storage (a list of records per
  ``(container, tier)``, verbatim in behaviour); the same operations on it and on the
  tracker give the same judgements, the same checkpoint (``to_dict``, as JSON, key order
  included) and the same ``seen``, after every tick's :meth:`observe` (where the old
  storage had dropped what is older than H too), across restarts from a checkpoint;
- ``Engine._judge`` (readings looked up on demand) equals the version that built a dict
  of every container's readings;
- a checkpoint written by the old storage (``seen`` per key, an empty list included)
  loads, and round-trips.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_policies_property import FAST

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.engine import Engine, EngineConfig, Snapshot, _ByName, _ByTier
from prescale.app.core.features import FEATURES, F
from prescale.app.core.outcomes import OutcomeConfig, OutcomeTracker, _Seen, failure_tier
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.sample import METRICS, Event, EventKind, M, Tier

TIERS = (Tier.MEMORY, Tier.CPU, Tier.DISK, Tier.NETWORK, Tier.IO)
NAMES = ["a", "b", "c", "d", "e"]
P = st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, math.nan])


class PerKey(OutcomeTracker):
    """The tracker with the storage it had before the tick blocks: one list of
    :class:`_Seen` per ``(container, tier)`` (``decision`` appends and drops that key's
    records older than H from the front, ``observe`` drops every older record and the
    keys left with none)."""

    def __init__(self, config: OutcomeConfig | None = None) -> None:
        super().__init__(config)
        self.per_key: dict[tuple[str, Tier], list[_Seen]] = {}

    def decision(self, container, tier, now_s, p_fail, threshold):
        seen = self.per_key.setdefault((container, tier), [])
        seen.append(_Seen(float(now_s), float(p_fail), float(threshold)))
        cut = now_s - self.config.horizon_s
        while seen and seen[0].t_s < cut:
            seen.pop(0)

    def decisions(self, containers, now_s, by_tier):
        columns = [(tier, np.asarray(p, dtype=np.float64).tolist(),
                    np.asarray(thr, dtype=np.float64).tolist()) for tier, p, thr in by_tier]
        for i, container in enumerate(containers):
            for tier, ps, thrs in columns:
                self.decision(container, tier, now_s, ps[i], thrs[i])

    def _prune_seen(self, cut):
        for k in list(self.per_key):
            self.per_key[k] = [s for s in self.per_key[k] if s.t_s >= cut]
            if not self.per_key[k]:
                del self.per_key[k]

    def _records(self, key):
        return list(self.per_key.get(key, []))

    def _seen_lists(self):
        return {k: [list(s) for s in v] for k, v in self.per_key.items()}

    def forget(self, container):
        super().forget(container)
        for k in [k for k in self.per_key if k[0] == container]:
            del self.per_key[k]


def view(tr: OutcomeTracker) -> dict:
    """The checkpoint with the decisions within H in their per-key form (``seen``), the
    form both storages can be compared in (the tracker writes ``seen_blocks``)."""
    d = tr.to_dict()
    d.pop("seen_blocks", None)
    d["seen"] = [[c, t.value, [list(s) for s in v]] for (c, t), v in tr.seen.items()]
    return d


def as_json(tr: OutcomeTracker) -> str:
    return json.dumps(view(tr))


def restart(tr: OutcomeTracker) -> OutcomeTracker:
    """The tracker as a restart from its checkpoint (written and read as JSON) has it."""
    back = OutcomeTracker.from_dict(json.loads(json.dumps(tr.to_dict())), tr.config)
    assert as_json(back) == as_json(tr)
    return back


def up(container, t, tier=Tier.MEMORY, old=100.0, kind=ActionKind.RESIZE):
    return ScalingAction(f"{container}/{tier}@{t:g}", t, container, tier, old, 2 * old, 0.8,
                         0.5, 10.0, old, "", kind=kind)


@FAST
@given(data=st.data())
def test_tick_blocks_equal_one_record_per_container_and_tier(data):
    cfg = OutcomeConfig(horizon_s=10.0)
    new, ref = OutcomeTracker(cfg), PerKey(cfg)
    now = 100.0
    for _ in range(data.draw(st.integers(1, 8))):
        now += data.draw(st.sampled_from([0.0, 1.0, 3.0, 6.0, 10.0, 11.0, 25.0]))
        # a fleet that changes: containers come, go, change order, or repeat
        fleet = data.draw(st.sampled_from(["same", "same", "other", "repeat"]))
        if fleet == "same":
            names = NAMES[:4]
        elif fleet == "other":
            names = data.draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
        else:
            names = data.draw(st.lists(st.sampled_from(NAMES), max_size=5))
        tiers = data.draw(st.sampled_from([TIERS[:2], TIERS[:2], TIERS[:3], (Tier.CPU,),
                                           (Tier.DISK, Tier.MEMORY), ()]))
        cols = [(t, np.array([data.draw(P) for _ in names]),
                 np.array([data.draw(P) for _ in names])) for t in tiers]
        if data.draw(st.booleans()):
            for tr in (new, ref):
                tr.decisions(names, now, cols)
        else:  # one call per container and tier
            for i, c in enumerate(names):
                for t, p, thr in cols:
                    for tr in (new, ref):
                        tr.decision(c, t, now, float(p[i]), float(thr[i]))
        if data.draw(st.integers(0, 3)) == 0:
            c, t = data.draw(st.sampled_from(NAMES)), data.draw(st.sampled_from(TIERS[:3]))
            for tr in (new, ref):
                tr.scale_up(up(c, now, t))
        usage = {(c, t): data.draw(st.sampled_from([10.0, 100.0, 500.0]))
                 for c in NAMES for t in TIERS[:3] if data.draw(st.booleans())}
        got, want = new.observe(now, usage), ref.observe(now, usage)
        assert repr(got) == repr(want)
        assert as_json(new) == as_json(ref)
        assert repr(new.seen) == repr(ref.per_key)
        # failures (a miss reads the decisions of the H before it), at times up to 2 H back
        for _ in range(data.draw(st.integers(0, 3))):
            c, t = data.draw(st.sampled_from(NAMES)), data.draw(st.sampled_from(TIERS[:3]))
            when = now - data.draw(st.sampled_from([0.0, 2.0, 10.0, 15.0]))
            got = new.failure(c, t, when, app="x", detail="oom_kill")
            want = ref.failure(c, t, when, app="x", detail="oom_kill")
            assert repr(got) == repr(want)
        if data.draw(st.integers(0, 4)) == 0:
            c = data.draw(st.sampled_from(NAMES))
            for tr in (new, ref):
                tr.forget(c)
            assert as_json(new) == as_json(ref)
        if data.draw(st.integers(0, 3)) == 0:  # a restart from the checkpoint
            new = restart(new)
            assert as_json(new) == as_json(ref)


def test_a_miss_reads_the_blocks_of_its_horizon_flagged_or_not():
    """The worked example of the module docstring through the blocks: web-2 flagged at
    290 s (p_fail 0.7 ≥ 0.5) then killed at 300 s does not blame the threshold; web-3
    (0.2 < 0.5) does; a decision more than H before the failure is not read."""
    tr = OutcomeTracker(OutcomeConfig(horizon_s=60.0))
    tr.decisions(["web-2", "web-3"], 200.0, [(Tier.MEMORY, [0.9, 0.9], [0.5, 0.5])])
    tr.decisions(["web-2", "web-3"], 290.0, [(Tier.MEMORY, [0.7, 0.2], [0.5, 0.5])])
    [j2] = tr.failure("web-2", Tier.MEMORY, 300.0)
    [j3] = tr.failure("web-3", Tier.MEMORY, 300.0)
    assert (j2.blames_threshold, j2.p_fail) == (False, 0.7)
    assert (j3.blames_threshold, j3.p_fail, j3.threshold) == (True, 0.2, 0.5)
    tr.observe(300.0, {})
    assert list(tr.seen) == [("web-2", Tier.MEMORY), ("web-3", Tier.MEMORY)]
    assert tr.seen[("web-2", Tier.MEMORY)] == [_Seen(290.0, 0.7, 0.5)]  # 200 s: > H ago


def test_a_key_seen_again_after_losing_all_its_decisions_goes_last():
    tr = OutcomeTracker(OutcomeConfig(horizon_s=10.0))
    tr.decisions(["a", "b"], 0.0, [(Tier.MEMORY, [0.1, 0.2], [0.5, 0.5])])
    tr.decisions(["b"], 5.0, [(Tier.MEMORY, [0.3], [0.5])])
    tr.observe(12.0, {})  # a's only decision (0 s) is older than H: a is forgotten
    assert list(tr.seen) == [("b", Tier.MEMORY)]
    tr.decisions(["a", "b"], 13.0, [(Tier.MEMORY, [0.4, 0.5], [0.5, 0.5])])
    assert list(tr.seen) == [("b", Tier.MEMORY), ("a", Tier.MEMORY)]
    tr.observe(16.0, {})  # b's decision at 5 s goes, its one at 13 s stays
    assert [len(v) for v in tr.seen.values()] == [1, 1]


def test_an_old_checkpoint_loads_expires_and_round_trips():
    """A checkpoint the per-key storage wrote (an empty list too, which it could read)
    loads as it was; its records expire like the blocks' and a key keeps its place while
    it has any."""
    old = PerKey(OutcomeConfig(horizon_s=10.0))
    old.decisions(["a", "b"], 0.0, [(Tier.MEMORY, [0.1, math.nan], [0.5, 0.5]),
                                    (Tier.CPU, [0.6, 0.2], [0.5, 0.5])])
    old.decision("b", Tier.MEMORY, 4.0, 0.9, 0.5)
    saved = json.loads(json.dumps(view(old)))  # the per-key checkpoint form
    saved["seen"].append(["z", "memory", []])
    assert saved["seen"][0] == ["a", "memory", [[0.0, 0.1, 0.5]]]
    tr = OutcomeTracker.from_dict(saved, old.config)
    assert json.loads(as_json(tr)) == json.loads(json.dumps(saved))  # nan reads back
    first, second = tr.seen[("b", Tier.MEMORY)]
    assert math.isnan(first.p_fail) and second == _Seen(4.0, 0.9, 0.5)
    ref = PerKey(old.config)  # what the old from_dict read: every key, the empty one too
    ref.per_key = {(c, Tier(t)): [_Seen(*s) for s in v] for c, t, v in saved["seen"]}
    for tracker in (tr, ref):
        tracker.decisions(["b", "a"], 11.0, [(Tier.MEMORY, [0.3, 0.4], [0.5, 0.5])])
        tracker.observe(11.0, {})
    assert as_json(tr) == as_json(ref)
    assert [k for k in tr.seen] == [("a", Tier.MEMORY), ("b", Tier.MEMORY)]  # z: empty
    [miss] = tr.failure("b", Tier.MEMORY, 12.0)
    assert (miss.p_fail, miss.blames_threshold) == (0.9, False)  # the restored 4 s one
    assert as_json(restart(tr)) == as_json(tr)


def test_forget_drops_a_container_from_every_block():
    tr = OutcomeTracker(OutcomeConfig(horizon_s=30.0))
    for t in (1.0, 2.0):
        tr.decisions(["a", "b", "c"], t, [(Tier.MEMORY, [0.1, 0.2, 0.3], [0.5] * 3)])
    tr.forget("b")
    assert list(tr.seen) == [("a", Tier.MEMORY), ("c", Tier.MEMORY)]
    assert tr.seen[("c", Tier.MEMORY)] == [_Seen(1.0, 0.3, 0.5), _Seen(2.0, 0.3, 0.5)]
    assert tr._ticks[0].names is tr._ticks[1].names  # still one fleet
    [miss] = tr.failure("b", Tier.MEMORY, 3.0)
    assert math.isnan(miss.p_fail)


# -- Engine._judge: readings looked up on demand -------------------------------------------


def reference_judge(engine, snap, feats, pred, thr):
    """``Engine._judge`` before its readings were looked up on demand, verbatim."""
    st = engine.state
    ooms: dict[str, float] = {}
    judgements = []
    for e in snap.events:
        if e.kind is EventKind.OOM_KILL:
            ooms[e.container] = ooms.get(e.container, 0) + 1
        tier = failure_tier(e.kind)
        if tier is not None:
            judgements += st.outcomes.failure(
                e.container, tier, e.ts_s, app=e.app or e.container,
                owner=engine.owner(e.container, e.app), detail=e.detail)
    mem = feats[:, F["memory_usage_last_bytes"]].tolist()
    cpu = feats[:, F["cpu_usage_cores_last"]].tolist()
    reach = {}
    usage_bytes = {}
    for n, m, c in zip(snap.names, mem, cpu, strict=True):
        reach[(n, Tier.MEMORY)] = usage_bytes[n] = m
        reach[(n, Tier.CPU)] = c
    if Tier.DISK in pred.tiers:
        used = snap.window[:, -1, M["disk_used_bytes"]].tolist()
        for n, d, u in zip(snap.names, pred.tiers[Tier.DISK].limit.tolist(), used,
                           strict=True):
            if math.isfinite(d):
                reach[(n, Tier.DISK)] = u
    st.outcomes.decisions(snap.names, snap.now_s,
                          [(tier, pred.tiers[tier].p_fail, thr[tier]) for tier in TIERS
                           if tier in pred.tiers])
    judgements += st.outcomes.observe(snap.now_s, reach)
    lead = st.outcomes.observe_lead_times(snap.now_s, usage_bytes, ooms)
    return judgements, lead


@FAST
@given(data=st.data())
def test_judge_equals_the_version_with_a_dict_of_every_reading(data):
    cfg = EngineConfig(outcome=OutcomeConfig(horizon_s=10.0, lead_time_expire_s=20.0))
    new, ref = Engine(cfg), Engine(cfg)
    ref.state.outcomes = PerKey(cfg.outcome)
    now = 1000.0
    level = st.sampled_from([50.0, 99.0, 100.0, 150.0, math.nan])
    for _ in range(data.draw(st.integers(1, 6))):
        now += data.draw(st.sampled_from([1.0, 5.0, 11.0]))
        names = data.draw(st.lists(st.sampled_from(NAMES[:4]), min_size=1, max_size=5))
        n = len(names)
        feats = np.zeros((n, len(FEATURES)))
        feats[:, F["memory_usage_last_bytes"]] = [data.draw(level) for _ in names]
        feats[:, F["cpu_usage_cores_last"]] = [data.draw(level) for _ in names]
        window = np.zeros((n, 2, len(METRICS)))
        window[:, -1, M["disk_used_bytes"]] = [data.draw(level) for _ in names]
        tiers = {}
        for tier in data.draw(st.sampled_from([TIERS[:2], TIERS[:3]])):
            limits = np.array([data.draw(st.sampled_from([100.0, math.inf, math.nan]))
                               for _ in names])
            p = np.array([data.draw(P) for _ in names])
            tiers[tier] = TierPrediction(p, np.full(n, 5.0), limits, limits)
        pred = Prediction(10.0, "test", tiers)
        thr = {t: np.full(n, 0.5) for t in TIERS}
        events = [Event(data.draw(st.sampled_from(NAMES[:4])), now - 0.5, kind, app="x",
                        detail="test")
                  for kind in data.draw(st.lists(st.sampled_from(
                      [EventKind.OOM_KILL, EventKind.TIMEOUT, EventKind.DISK_FULL]),
                      max_size=2))]
        snap = Snapshot(now, names, ["x"] * n, window, events)
        got = new._judge(snap, feats, pred, thr)
        want = reference_judge(ref, snap, feats, pred, thr)
        assert repr(got) == repr(want)
        assert as_json(new.state.outcomes) == as_json(ref.state.outcomes)
        for _ in range(data.draw(st.integers(0, 2))):  # scale-ups, memory ones lead-timed
            c = data.draw(st.sampled_from(NAMES[:4]))
            t = data.draw(st.sampled_from(TIERS[:3]))
            applied = data.draw(st.booleans())
            for e in (new, ref):
                e.state.outcomes.scale_up(up(c, now, t), applied=applied)


def test_by_name_reads_what_a_dict_built_row_by_row_holds():
    names = ["a", "b", "a", "c"]
    values = np.array([1.0, 2.0, 3.0, 4.0])
    where = np.array([True, True, False, False])
    whole = dict(zip(names, values.tolist(), strict=True))  # a → 3.0: the last row
    finite = {n: v for n, v, ok in zip(names, values.tolist(), where, strict=True) if ok}
    assert dict(_ByName(names, values)) == whole == {"a": 3.0, "b": 2.0, "c": 4.0}
    assert dict(_ByName(names, values, where=where)) == finite == {"a": 1.0, "b": 2.0}
    u = _ByName(names, values, where=where)
    assert (u.get("c"), u.get("zz"), len(u), type(u["a"])) == (None, None, 2, float)
    by_tier = _ByTier({Tier.MEMORY: _ByName(names, values), Tier.DISK: u})
    assert dict(by_tier) == {**{(n, Tier.MEMORY): v for n, v in whole.items()},
                             **{(n, Tier.DISK): v for n, v in finite.items()}}
    assert by_tier.get(("a", Tier.CPU)) is None and len(by_tier) == 5


def test_checkpoint_holds_the_blocks_exactly():
    """The checkpoint writes each tick's arrays once (base64 of float64: nan and every
    bit kept), each fleet once, and no per-decision triple; the module's worked example."""
    tr = OutcomeTracker(OutcomeConfig(horizon_s=30.0))
    tr.decisions(["a", "b"], 5.0, [(Tier.MEMORY, [0.25, math.nan], [0.5, 0.5])])
    blocks = json.loads(json.dumps(tr.to_dict()))["seen_blocks"]
    assert blocks["fleets"] == [["a", "b"]]
    assert blocks["ticks"] == [{"t_s": 5.0, "fleet": 0, "tiers": ["memory"],
                                "p_fail": "AAAAAAAA0D8AAAAAAAD4fw==",
                                "threshold": "AAAAAAAA4D8AAAAAAADgPw=="}]
    assert blocks["keys"] == [["a", "memory"], ["b", "memory"]]
    rng = np.random.default_rng(0)
    for t in (6.0, 7.0):  # the same fleet: written once
        tr.decisions(["a", "b"], t, [(Tier.MEMORY, rng.random(2), rng.random(2)),
                                     (Tier.CPU, rng.random(2), [0.5, 0.5])])
    tr.decisions(["b", "c"], 8.0, [(Tier.CPU, [0.1 + 0.2, 1e-300], [0.5, 0.5])])
    saved = tr.to_dict()
    assert "seen" not in saved and len(saved["seen_blocks"]["fleets"]) == 2
    back = OutcomeTracker.from_dict(json.loads(json.dumps(saved)), tr.config)
    assert repr(back.seen) == repr(tr.seen)  # bit for bit (repr: nan == nan)
    assert back.seen[("c", Tier.CPU)] == [_Seen(8.0, 1e-300, 0.5)]
    assert back.seen[("b", Tier.CPU)][-1].p_fail == 0.1 + 0.2  # 0.30000000000000004
    assert [n for n, t in back.seen] == ["a", "b", "a", "b", "c"]  # order first seen
    assert json.dumps(back.to_dict()) == json.dumps(saved)
    # a restored tracker goes on as the one it was saved from
    for x in (tr, back):
        x.decisions(["b", "c"], 38.5, [(Tier.CPU, [0.9, 0.2], [0.5, 0.5])])
        x.observe(38.5, {})  # H = 30 s: every earlier tick goes
    assert as_json(back) == as_json(tr)
    assert [k for k in back.seen] == [("b", Tier.CPU), ("c", Tier.CPU)]


@pytest.mark.parametrize("change, says", [
    (lambda b: b["ticks"][0].update(p_fail="AAAA"), "p_fail holds 3 bytes, not 8 × 1 tiers"),
    (lambda b: b["ticks"][0].update(fleet=1), "fleet 1 is not one of the 1 fleets"),
    (lambda b: b["ticks"][0].update(fleet=-1), "fleet -1 is not one of the 1 fleets"),
    (lambda b: b["ticks"][0].update(threshold="not base64!"), "malformed state"),
    (lambda b: b["ticks"][0].update(tiers=["ram"]), "'ram' is not a valid Tier"),
    (lambda b: b["fleets"].__setitem__(0, ["a", 3]), "a fleet must be a list of container"),
    (lambda b: b.pop("ticks"), "malformed state ('ticks')"),
])
def test_a_malformed_block_checkpoint_is_refused_by_name(change, says):
    tr = OutcomeTracker(OutcomeConfig(horizon_s=30.0))
    tr.decisions(["a", "b"], 5.0, [(Tier.MEMORY, [0.25, math.nan], [0.5, 0.5])])
    saved = json.loads(json.dumps(tr.to_dict()))
    change(saved["seen_blocks"])
    with pytest.raises(ValueError, match="outcome tracker: malformed state") as info:
        OutcomeTracker.from_dict(saved, tr.config)
    assert says in str(info.value)
