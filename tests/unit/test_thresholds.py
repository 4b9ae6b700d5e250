"""Thresholds per owner and app, outcome tracking, the update rule and the durable store."""

from __future__ import annotations

import json
import math
import multiprocessing as mp

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prescale.app.core.actions import ActionKind, ScalingAction
from prescale.app.core.outcomes import (
    Judgement,
    OutcomeConfig,
    OutcomeKind,
    OutcomeTracker,
    failure_tier,
)
from prescale.app.core.sample import EventKind, Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.store import jsonfile
from prescale.app.store import thresholds_store as store

MiB = 2**20
M = Tier.MEMORY


def up(c, t, old, new, *, p=0.8, thr=0.5, app="web", tier=M, kind=ActionKind.RESIZE):
    return ScalingAction(f"{c}/{tier.value}@{t}", t, c, tier, old, new, p, thr, 20.0, new, "",
                         kind, app)


def judgement(kind, *, app="web", owner="", blames=True, tier=M, t_s=0.0):
    return Judgement(kind, "web-1", app, owner, tier, t_s, t_s, None, 0.5, 0.5, blames, True,
                     "r")


# -- lookup and set --------------------------------------------------------------------
def test_lookup_worked_example():
    b = ThresholdBook()
    b.set(M, owner="team-a", min=0.3)
    b.set(M, app="web", owner="team-a", value=0.6)
    t = b.lookup(M, app="web")
    assert (t.value, t.min, t.max, t.sensitivity) == (0.6, 0.3, 0.95, 0.02)
    assert t.source == {"value": "app:web", "min": "owner:team-a", "max": "config",
                        "sensitivity": "config"}
    assert b.lookup(M, app="batch", owner="team-a").value == 0.5
    assert b.lookup(M, app="batch", owner="team-a").min == 0.3
    assert b.lookup(Tier.CPU, app="web").source["min"] == "config"  # per tier
    b.set(M, owner="team-a", min=0.7)
    assert b.lookup(M, app="web").value == 0.7  # clipped into the owner's new bounds
    assert b.value(M) == 0.5 and b.value("cpu", owner="nobody") == 0.5


def test_set_rejects_bad_input_naming_it_and_changes_nothing():
    b = ThresholdBook()
    b.set(M, app="web", value=0.6, min=0.4, max=0.8)
    b.set(M, owner="team-x", min=0.4)
    before = b.to_dict()
    cases = [
        (dict(app="web", value=1.5), "threshold value must be a number in [0, 1], got 1.5"),
        (dict(app="web", value=math.nan), "threshold value must be a number in [0, 1], got nan"),
        (dict(app="web", value=True), "threshold value must be a number in [0, 1], got True"),
        (dict(app="web", value=0.3),
         "threshold value 0.3 is outside [0.4, 0.8] for app:web/memory"),
        (dict(app="web", min=0.9), "threshold min 0.9 (app:web) is above max 0.8 (app:web) "
                                   "for app:web/memory"),
        (dict(app="web", sensitivity=0.7), "threshold sensitivity must be a number in [0, 0.5]"),
        (dict(app="", value=0.5), "threshold app must be a non-empty name, got ''"),
        (dict(app="web"), "give at least one of value, min, max, sensitivity"),
        (dict(max=0.3, min=0.4), "threshold min 0.4 (default) is above max 0.3 (default) for "
                                 "default/memory"),
        # the default's max under an owner's own min: refused, naming the owner
        (dict(max=0.3), "threshold bounds for default/memory would leave owner:team-x with min "
                        "0.4 (owner:team-x) above max 0.3 (default)"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")
                           .replace("(", r"\(").replace(")", r"\)")):
            b.set(M, **kwargs)
        assert b.to_dict() == before, kwargs
    with pytest.raises(ValueError, match="threshold tier must be one of"):
        b.set("gpu", value=0.5)
    # lowering the owner's max under an app's own min is refused, naming the app
    b.set(M, app="api", owner="team-b", min=0.5)
    with pytest.raises(ValueError, match=r"would leave app:api with min 0.5 \(app:api\) above "
                                         r"max 0.45 \(owner:team-b\)"):
        b.set(M, owner="team-b", max=0.45)
    b.set(M, app="api", min=0.2)
    assert b.set(M, owner="team-b", max=0.45).max == 0.45


def test_bounds_clip_a_stored_value_not_given():
    b = ThresholdBook()
    b.set(M, app="web", value=0.6)
    t = b.set(M, app="web", max=0.55)
    assert t.value == 0.55 and b.to_dict()["apps"]["web"]["memory"]["value"] == 0.55


# -- update rule -----------------------------------------------------------------------
def test_update_rule_worked_example():
    b = ThresholdBook(ThresholdConfig(default_sensitivity=0.02, cost_false_positive=1,
                                      cost_miss=4))
    steps = [b.learn(judgement(OutcomeKind.FALSE_POSITIVE)) for _ in range(3)]
    assert [s.new for s in steps] == [0.505, 0.51, 0.515]
    a = b.learn(judgement(OutcomeKind.MISS))
    assert (a.old, a.new) == (0.515, 0.495)
    assert a.reason.startswith("web/memory: miss → more eager (−0.02 × 4/4): threshold "
                               "0.5150 → 0.4950 [0.05, 0.95]")
    assert b.learn(judgement(OutcomeKind.NEEDED)).new == 0.495
    flagged = b.learn(judgement(OutcomeKind.MISS, blames=False))
    assert flagged.new == 0.495 and "flagged" in flagged.reason
    t = b.lookup(M, app="web")
    assert t.learned and t.source["value"] == "app:web"
    assert b.lookup(M, app="other").value == 0.5  # per app
    assert b.rates("web", M) == {"n": 6, "needed": 1, "false_positive": 3, "miss": 2,
                                 "false_positive_rate": 0.5, "miss_rate": 1 / 3,
                                 "totals": {"needed": 1, "false_positive": 3, "miss": 2}}


def test_bounds_and_pinned_thresholds_hold():
    b = ThresholdBook()
    b.set(M, app="web", value=0.94, max=0.95)
    for _ in range(50):
        b.learn(judgement(OutcomeKind.FALSE_POSITIVE))
    a = b.learn(judgement(OutcomeKind.FALSE_POSITIVE))
    assert a.new == 0.95 and "already at the max bound" in a.reason
    b.set(M, app="pinned", value=0.3, sensitivity=0)
    for _ in range(5):
        b.learn(judgement(OutcomeKind.MISS, app="pinned"))
    assert b.value(M, app="pinned") == 0.3


def test_learning_records_the_owner_and_owner_bounds_apply():
    b = ThresholdBook()
    b.set(M, owner="team-a", min=0.45)
    for _ in range(10):
        b.learn(judgement(OutcomeKind.MISS, owner="team-a"))
    assert b.app_owner == {"web": "team-a"}
    assert b.value(M, app="web") == 0.45


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("learn"), st.sampled_from(list(OutcomeKind)), st.booleans(),
              st.sampled_from(["web", "api"]), st.sampled_from(list(Tier))),
    st.tuples(st.just("set"), st.sampled_from(["app", "owner", "default"]),
              st.floats(0, 1), st.floats(0, 1), st.sampled_from(list(Tier))),
), max_size=60))
def test_thresholds_stay_within_bounds(ops):
    b = ThresholdBook(ThresholdConfig(default_sensitivity=0.1))
    b.set(M, app="web", owner="team", value=0.5)
    for op in ops:
        if op[0] == "learn":
            _, kind, blames, app, tier = op
            j = Judgement(kind, "c", app, "team", tier, 0, 0, None, 0.5, 0.5, blames, True, "")
            a = b.learn(j)
            t = b.lookup(tier, app=app)
            assert t.min <= a.new <= t.max and a.new == t.value
        else:
            _, scope, lo, hi, tier = op
            lo, hi = sorted((lo, hi))
            kw = {"app": "web"} if scope == "app" else {"owner": "team"} if scope == "owner" else {}
            try:
                b.set(tier, min=lo, max=hi, **kw)
            except ValueError as exc:
                assert "above max" in str(exc)
        for app in ("web", "api", "x"):
            for tier in Tier:
                t = b.lookup(tier, app=app)
                assert t.min <= t.value <= t.max
        assert ThresholdBook.from_dict(json.loads(jsonfile.dumps(b.to_dict()))).to_dict() == \
            b.to_dict()


# -- outcome tracker -------------------------------------------------------------------
def test_outcome_tracker_worked_example():
    tr = OutcomeTracker(OutcomeConfig(horizon_s=60))
    tr.scale_up(up("web-1", 100.0, 128 * MiB, 192 * MiB), owner="team-a")
    assert tr.observe(110.0, {("web-1", M): 120 * MiB}) == []
    [j] = tr.observe(130.0, {("web-1", M): 129 * MiB})
    assert (j.kind, j.t_s, j.judged_s, j.owner) == (OutcomeKind.NEEDED, 100.0, 130.0, "team-a")
    assert j.reason == ("needed: scale-up web-1/memory@100.0 (p_fail 0.80 ≥ threshold 0.50): "
                        "usage 1.35266e+08 reached 1 × the old limit 1.34218e+08 30 s after the "
                        "scale-up")
    tr.scale_up(up("web-1", 200.0, 128 * MiB, 192 * MiB))
    assert tr.observe(260.0, {("web-1", M): 100 * MiB}) == []  # exactly H: not yet
    [j] = tr.observe(261.0, {("web-1", M): 100 * MiB})
    assert (j.kind, j.judged_s) == (OutcomeKind.FALSE_POSITIVE, 261.0)
    assert "no failure within 60 s" in j.reason
    # web-2: scaled up at 200, killed at 300 (> 60 s later) → a miss
    tr.scale_up(up("web-2", 200.0, 128 * MiB, 192 * MiB))
    tr.observe(261.0, {("web-2", M): 10 * MiB})
    tr.decision("web-2", M, 290.0, 0.7, 0.5)
    [j] = tr.failure("web-2", M, 300.0, app="web", detail="oom_kill")
    assert (j.kind, j.blames_threshold, j.p_fail, j.threshold) == (OutcomeKind.MISS, False,
                                                                   0.7, 0.5)
    assert "flagged, but not scaled" in j.reason
    tr.decision("web-3", M, 295.0, 0.2, 0.5)
    [j] = tr.failure("web-3", M, 300.0, app="web")
    assert (j.kind, j.blames_threshold, j.p_fail) == (OutcomeKind.MISS, True, 0.2)
    assert j.reason == "failure with no scale-up in the 60 s before it; highest p_fail 0.20 < " \
                       "threshold 0.50"


def test_a_failure_after_a_scale_up_makes_it_needed_and_is_no_miss():
    tr = OutcomeTracker(OutcomeConfig(horizon_s=60))
    tr.scale_up(up("w", 100.0, 1.0, 1.5, tier=Tier.CPU))
    assert tr.observe(120.0, {("w", Tier.CPU): 0.85}) == []  # 0.85 < 0.9 × 1.0
    [j] = tr.failure("w", Tier.CPU, 140.0, detail="timeout")
    assert j.kind is OutcomeKind.NEEDED and "failure (timeout) 40 s after the scale-up" in j.reason
    assert tr.failure("w", Tier.CPU, 150.0) == []  # still within H of the scale-up
    [j] = tr.failure("w", Tier.CPU, 161.0)
    assert j.kind is OutcomeKind.MISS and j.app == "w" and math.isnan(j.p_fail)
    tr.scale_up(up("w", 200.0, 1.0, 1.5, tier=Tier.CPU))
    [j] = tr.observe(201.0, {("w", Tier.CPU): 0.9})  # reached 0.9 × the old quota
    assert j.kind is OutcomeKind.NEEDED
    assert not tr.scale_up(up("w", 300.0, 2.0, 1.0))  # a decrease is not judged


def test_scale_out_is_judged_by_failures_only_and_state_round_trips():
    tr = OutcomeTracker(OutcomeConfig(horizon_s=30))
    tr.scale_up(up("svc", 0.0, 2, 3, kind=ActionKind.SCALE_OUT), applied=False)
    tr.decision("svc", M, 1.0, 0.9, 0.5)
    assert tr.observe(5.0, {("svc", M): 100.0}) == []  # usage vs replica counts: ignored
    saved = json.loads(jsonfile.dumps(tr.to_dict()))
    back = OutcomeTracker.from_dict(saved, OutcomeConfig(horizon_s=30))
    assert back.to_dict() == tr.to_dict()
    [j] = back.failure("svc", M, 10.0)
    assert j.kind is OutcomeKind.NEEDED and not j.applied and "recommended only" in j.reason
    assert Judgement.from_dict(json.loads(jsonfile.dumps(j.to_dict()))) == j
    with pytest.raises(ValueError, match="outcome tracker: malformed state"):
        OutcomeTracker.from_dict({"pending": [{"tier": "memory"}]})
    with pytest.raises(ValueError, match="horizon_s must be a finite number > 0"):
        OutcomeConfig(horizon_s=0)


def test_failure_tiers():
    assert failure_tier(EventKind.OOM_KILL) is Tier.MEMORY
    assert failure_tier("timeout") is Tier.CPU
    assert failure_tier(EventKind.EXIT_NONZERO) is None


# -- durable store ---------------------------------------------------------------------
def test_store_set_get_list_on_a_real_file(tmp_path):
    path = tmp_path / "thresholds.json"
    assert store.get_thresholds(path)["thresholds"]["memory"]["value"] == 0.5
    r = store.set_threshold(path, app="web", owner="team-a", tier="memory", value=0.6,
                            min=0.2, sensitivity=0.05)
    assert r == {"scope": "app:web", "tier": "memory", "threshold": {
        "value": 0.6, "min": 0.2, "max": 0.95, "sensitivity": 0.05, "learned": False,
        "source": {"value": "app:web", "min": "app:web", "max": "config",
                   "sensitivity": "app:web"}}}
    store.set_threshold(path, owner="team-a", tier="cpu", value=0.7)
    got = store.get_thresholds(path, app="web")
    assert got["owner"] == "team-a"
    assert got["thresholds"]["cpu"]["value"] == 0.7
    assert got["thresholds"]["memory"]["recent"]["n"] == 0
    listed = store.list_thresholds(path)
    assert listed["set"]["apps"] == {"web": {"memory": {"value": 0.6, "min": 0.2,
                                                         "sensitivity": 0.05,
                                                         "learned": False}}}
    assert listed["set"]["owners"] == {"team-a": {"cpu": {"value": 0.7, "learned": False}}}
    assert listed["apps"]["web"]["cpu"]["source"]["value"] == "owner:team-a"
    assert json.loads(json.dumps(listed)) == listed
    raw = path.read_bytes()
    with pytest.raises(ValueError, match="threshold value 0.1 is outside"):
        store.set_threshold(path, app="web", tier="memory", value=0.1, min=0.3)
    assert path.read_bytes() == raw
    adj = store.learn(path, [judgement(OutcomeKind.FALSE_POSITIVE, owner="team-a")])
    assert [(a.old, a.new) for a in adj] == [(0.6, 0.6125)]
    assert store.get_thresholds(path, app="web")["thresholds"]["memory"]["learned"] is True


def test_store_reports_a_corrupt_file_and_the_cached_reader_reloads(tmp_path):
    path = tmp_path / "thresholds.json"
    reader = store.ThresholdStore(path, ThresholdConfig(default_p_fail=0.4))
    assert reader.book().value(M) == 0.4
    store.set_threshold(path, app="web", tier="memory", value=0.66,
                        config=ThresholdConfig(default_p_fail=0.4))
    assert reader.book().value(M, app="web") == 0.66
    path.write_text('{"apps": {"web": {"memory": {"value": 7}}}}')
    with pytest.raises(ValueError, match=r"thresholds.json: threshold app:web/memory.value "
                                         r"must be a number in \[0, 1\], got 7"):
        reader.book()
    path.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON"):
        store.list_thresholds(path)


def _writer(path: str, prefix: str, n: int) -> None:
    for i in range(n):
        store.set_threshold(path, app=f"{prefix}{i}", tier="memory", value=0.5 + i / 100)


def test_learning_is_idempotent(tmp_path):
    """A judgement learned twice (a loop restarted mid-tick judges it again) moves the
    threshold once, also through the store's file."""
    fp = judgement(OutcomeKind.FALSE_POSITIVE, t_s=5.0)
    b = ThresholdBook()
    assert len(b.learn_new([fp, fp])) == 1
    v = b.lookup(M, app="web").value
    assert b.learn_new([fp]) == [] and b.lookup(M, app="web").value == v
    path = tmp_path / "thresholds.json"
    assert len(store.learn(path, [fp])) == 1
    assert store.learn(path, [fp]) == []
    assert store.learn(path, [judgement(OutcomeKind.FALSE_POSITIVE, t_s=6.0)]) != []


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "thresholds.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), p, 15)) for p in ("a", "b", "c")]
    for p in procs:
        p.start()
    store.learn(path, [judgement(OutcomeKind.MISS, app="z", t_s=float(i)) for i in range(20)])
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    apps = store.list_thresholds(path)["set"]["apps"]
    assert len(apps) == 46
    assert apps["b14"]["memory"]["value"] == 0.64
    assert store.get_thresholds(path, app="z")["thresholds"]["memory"]["recent"]["miss"] == 20
