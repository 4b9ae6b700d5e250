from prescale.app.core.actions import ScalingAction
from prescale.app.core.outcomes import LeadTimeTracker
from prescale.app.core.sample import Event, EventKind, Sample, Tier, events_between
from prescale.app.edges.cgroup_layout import parse_proc_cgroup
from prescale.app.store.decision_log import DecisionLog, read_log
from prescale.app.store.history import HistoryStore

MiB = 2**20


def action(t, old, tier=Tier.MEMORY):
    return ScalingAction(f"x@{t}", t, "x", tier, old, old * 2, 0.9, 0.5, 20, old, "")


def test_lead_time_worked_example():
    tr = LeadTimeTracker(expire_after_s=100)
    tr.track(action(100.0, 128 * MiB))
    tr.track(action(100.0, 1.0, tier=Tier.CPU))  # cpu is not tracked
    for t in range(101, 119):
        assert tr.observe(float(t), {"x": 120 * MiB}, {}) == []
    [o] = tr.observe(119.0, {"x": 129 * MiB}, {})
    assert (o.outcome, o.lead_time_s) == ("crossed", 19.0)
    assert tr.pending == []


def test_a_recommendation_not_applied_gets_the_lead_time_to_the_kill():
    tr = LeadTimeTracker(expire_after_s=100)
    tr.track(action(100.0, 128 * MiB), applied=False)
    assert tr.observe(110.0, {"x": 120 * MiB}, {}) == []
    [o] = tr.observe(117.0, {"x": 1 * MiB}, {"x": 1})
    assert (o.outcome, o.lead_time_s) == ("failed", 17.0)


def test_failed_expired_gone_and_round_trip():
    tr = LeadTimeTracker(expire_after_s=10)
    tr.track(action(0.0, 100.0))
    saved = tr.to_list()
    [o] = tr.observe(1.0, {"x": 50.0}, {"x": 1})
    assert o.outcome == "failed"
    tr.load(saved)
    [o] = tr.observe(11.0, {"x": 50.0}, {})
    assert o.outcome == "not_crossed"
    tr.load(saved)
    [o] = tr.observe(1.0, {}, {})
    assert o.outcome == "gone"


def test_events_from_oom_counter():
    a = Sample("x", 1.0, oom_kills_total=1)
    b = Sample("x", 2.0, oom_kills_total=3)
    assert events_between(a, b) == [Event("x", 2.0, EventKind.OOM_KILL,
                                          "kernel memory.oom_control oom_kill")] * 2
    assert events_between(None, b) == []
    assert events_between(b, a) == []  # counter reset: no event


def test_decision_log_round_trip_in_the_history_store(tmp_path):
    store = HistoryStore(tmp_path)
    log = DecisionLog(store, run_id="r1", mode="auto")
    log.append([{"kind": "decision", "ts_s": 2e9, "container": "a", "app": "web",
                 "p_fail": float("inf")}])
    log.append([{"kind": "action", "ts_s": 2e9 + 1, "container": "b", "new_limit": 5.0}])
    log.append([])
    # a second process (a fresh store object) reads what was made durable
    recs = list(read_log(HistoryStore(tmp_path)))
    assert [r["kind"] for r in recs] == ["decision", "action"]
    assert recs[0]["p_fail"] == float("inf") and recs[0]["run_id"] == "r1"
    assert recs[0]["mode"] == "auto" and recs[0]["app"] == "web"
    assert [r["container"] for r in read_log(store, kinds={"action"})] == ["b"]
    assert list(read_log(store, run_id="other")) == []


def test_parse_proc_cgroup():
    assert parse_proc_cgroup("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x\n") == {
        "memory": "/a/b", "cpu": "/", "cpuacct": "/", "unified": "/x"}
