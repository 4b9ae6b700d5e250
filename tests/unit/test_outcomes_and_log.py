from prescale.app.core.sample import Event, EventKind, Sample, events_between
from prescale.app.edges.cgroup_layout import parse_proc_cgroup
from prescale.app.store.decision_log import DecisionLog, read_log
from prescale.app.store.history import HistoryStore

MiB = 2**20


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
