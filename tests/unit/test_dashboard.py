"""The Grafana dashboard queries only metrics that prescale exports (app/metric_specs.py is
the single source of truth), the example Prometheus config is valid, and the metric
values behind the dashboard are computed as documented (MetricsBook, pure: no Ray)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prescale.app import metric_specs as m
from prescale.app import metrics_book as mb
from prescale.app.core.outcomes import Judgement, OutcomeKind
from prescale.app.core.sample import Tier
from prescale.app.loop import records as rec
from tests.prom_support import promql_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "configs" / "grafana" / "prescale.json"
PROM_CONFIG = ROOT / "configs" / "prometheus" / "prometheus.yml"


def test_promql_names_parses_what_the_dashboard_uses():
    assert promql_names(
        'sum by (tier) (increase(ray_a_total{outcome=~"x|y", tier!="z"}[$__range])) '
        "/ on (tier) group_left max without (WorkerId) (ray_b)"
    ) == ({"ray_a_total", "ray_b"}, {"tier", "outcome", "WorkerId"})
    assert promql_names("histogram_quantile(0.99, sum by (le) (rate(ray_h_bucket[5m])))") == (
        {"ray_h_bucket"}, {"le"})
    assert promql_names("topk(10, max by (container, tier) (ray_p))") == (
        {"ray_p"}, {"container", "tier"})
    assert promql_names("(ray_c unless ray_c offset 10m) or increase(ray_c[1h30m])") == (
        {"ray_c"}, set())


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def _expressions(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    return [(f"panel {p['title']!r} target {t['refId']}", t["expr"])
            for p in _panels(dash) for t in p.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_exported():
    dash = _dashboard()
    exprs = _expressions(dash)
    assert len(exprs) >= 20
    allowed_labels = set(m.RAY_LABELS) | {"job", "instance"}
    for where, expr in exprs:
        names, labels = promql_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - set(m.EXPORTED_NAMES)
        assert not unknown, f"{where}: {sorted(unknown)} not exported by app/metric_specs.py"
        known = allowed_labels.union(*(m.EXPORTED_LABELS[n] for n in names))
        assert labels <= known, f"{where}: unknown labels {sorted(labels - known)} in {expr!r}"
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)",
                                     var["query"]["query"]).groups()
        assert metric in m.EXPORTED_NAMES and label in m.EXPORTED_LABELS[metric]


def test_the_dashboard_shows_every_exported_metric():
    used = set().union(*(promql_names(e)[0] for _, e in _expressions(_dashboard())))
    unused = [s.name for s in m.SPECS.values() if not set(s.series) & used]
    assert unused == []


def test_dashboard_is_importable_grafana_json():
    dash = _dashboard()
    assert dash["uid"] == "prescale" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in dash["panels"] if p["type"] == "row"}
    assert titles == {"Risk", "Actions and verdicts", "Thresholds", "Prediction quality",
                      "Control loop", "Serve API"}
    for p in _panels(dash):
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, p["title"]


def test_exported_names_follow_prometheus_naming():
    assert len(m.EXPORTED_NAMES) == len(set(m.EXPORTED_NAMES))
    for spec in m.SPECS.values():
        assert spec.exported == "ray_" + spec.name
        assert spec.name.startswith("prescale_")
        assert (spec.type == "counter") == spec.name.endswith("_total"), spec.name
        if spec.type == "histogram":
            assert spec.name.endswith("_seconds") and spec.boundaries
            assert list(spec.boundaries) == sorted(spec.boundaries)
        assert not spec.name.endswith("_s") and not spec.name.endswith("_ms")
    assert "ray_prescale_tick_duration_seconds_bucket" in m.EXPORTED_NAMES
    assert m.EXPORTED_LABELS["ray_prescale_actions_total"] == (
        "kind", "tier", "verdict", "result")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not on PATH (Debian package 'prometheus')")
    return path


def test_prometheus_config_is_valid(tmp_path):
    promtool = _promtool()
    ok = subprocess.run([promtool, "check", "config", str(PROM_CONFIG)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the commented service-discovery alternative is valid too, once swapped in
    text = PROM_CONFIG.read_text()
    static_job = text[text.index("  - job_name: ray\n"):text.index("  # Alternative")]
    alternative = "\n".join(
        line.replace("  # ", "  ", 1) for line in text[text.index("  # - job_name"):]
        .splitlines())
    swapped = tmp_path / "prometheus.yml"
    shutil.copy(PROM_CONFIG.parent / "alerts.yml", tmp_path)  # its rule_files
    swapped.write_text(text.replace(static_job, "").split("  # Alternative")[0] + alternative
                       + "\n")
    assert "file_sd_configs" in swapped.read_text()
    ok = subprocess.run([promtool, "check", "config", str(swapped)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr + swapped.read_text()


# --------------------------------------------------------------------------- the values


def _row(name, p_mem=0.1, p_cpu=0.0, usage=100.0, limit=128.0, ttl=None):
    return {"name": name, "p_fail_memory": p_mem, "p_fail_cpu": p_cpu,
            "memory_usage_bytes": usage, "memory_limit_bytes": limit,
            "memory_time_to_limit_s": ttl}


def test_assign_slots_is_stable_and_capped():
    assert m.assign_slots(["b", "c", "d"], {"a", "b"}, 2) == {"b", "c"}
    assert m.assign_slots(["a", "b", "c"], set(), 5) == {"a", "b", "c"}
    assert m.assign_slots(["z", "a"], {"a"}, 1) == {"a"}  # a keeps its slot before z


def test_counter_deltas_and_quality_rates_worked_examples():
    assert mb.counter_deltas({"no_data": 3, "bad_timestamp": 5},
                            {"no_data": 5, "bad_timestamp": 2, "duplicate_in_batch": 1}) == {
        "no_data": 2, "bad_timestamp": 2, "duplicate_in_batch": 1}
    assert mb.quality_rates({"needed": 3, "false_positive": 1, "miss": 2}) == (0.75, 0.6)
    assert mb.quality_rates({"miss": 2}) == (None, 0.0)
    assert mb.quality_rates({}) == (None, None)


def test_container_gauges_fold_beyond_the_cap_into_other():
    book = mb.MetricsBook(max_containers=2)
    rows = [_row("a", 0.9, 0.2, 100, 128, 12.0), _row("b", 0.1), _row("c", 0.7, 0.3, 10, 64),
            _row("d", 0.2, 0.6, 50, 60, 4.0), _row("e", None, None, 5, None)]
    up = book.plan({"now_s": 1000.0, "tick_s": 0.02}, rows, [], [])
    assert up.get(m.P_FAIL, container="a", tier="memory") == 0.9
    assert up.get(m.HEADROOM, container="a") == 28
    assert up.get(m.TIME_TO_LIMIT, container="a") == 12.0
    assert up.get(m.P_FAIL, container="c", tier="memory") is None
    assert up.get(m.P_FAIL, container="_other", tier="memory") == 0.7  # max of c, d
    assert up.get(m.P_FAIL, container="_other", tier="cpu") == 0.6
    assert up.get(m.HEADROOM, container="_other") == 10  # min of 54 (c), 10 (d); e: no limit
    assert up.get(m.TIME_TO_LIMIT, container="_other") == 4.0
    assert up.get(m.WATCHED) == 5
    assert up.get(m.TICK) == 0.02
    labels = {dict(p.labels).get("container") for p in up.gauges} - {None}
    assert labels == {"a", "b", "_other"}
    # "a" leaves: "c" takes its slot; "b" keeps its own
    up = book.plan({"now_s": 1001.0, "tick_s": 0.02}, rows[1:], [], [])
    assert book.containers == {"b", "c"}
    assert up.get(m.P_FAIL, container="c", tier="memory") == 0.7
    assert up.get(m.P_FAIL, container="_other", tier="memory") == 0.2


def action(container: str, app: str, tier: str, threshold: float, result: str,
           verdict: str | None, kind: str = "resize") -> rec.ActionRecord:
    """An action record as the tick logs it (only the fields the book reads vary)."""
    return rec.ActionRecord(10.0, f"{container}/{tier}@1", kind, verdict, container, app,
                            tier, 0.7, threshold, 30.0, 2.0, 3.0, 3.0, result, "test")


def event(container: str, name: str, ts_s: float = 10.0) -> dict:
    """An event record as the history store keeps it (a dict of the one schema)."""
    return rec.to_dict(rec.EventRecord(ts_s, container, "", name, "test"))


def test_actions_events_and_thresholds_from_records():
    book = mb.MetricsBook(max_apps=1, outcome_source="lead_time")
    records = [
        rec.DecisionRecord(10.0, "a", "web", "memory", 0.7, 0.4, 30.0, 3.0, 2.0, None, None,
                           "test"),
        action("a", "web", "memory", 0.4, "applied", "granted"),
        action("b", "", "cpu", 0.5, "denied", None),  # no verdict: implied by the result
        action("b", "", "cpu", 0.5, "denied", "denied", kind="scale_out"),
        rec.to_dict(action("c", "x", "gpu", 0.3, "exploded", None)),  # a stored dict
        event("a", "oom_kill"),
        event("_models", "model_error"),
        event("a", "mystery"),
        rec.OutcomeRecord(10.0, "a", "web", "a/memory@1", "crossed", 0.0, 10.0, 10.0),
    ]
    up = book.plan({"now_s": 10.0, "tick_s": 0.1}, [], [], records)
    assert up.get(m.ACTIONS, kind="resize", tier="memory", verdict="granted",
                  result="applied") == 1
    assert up.get(m.ACTIONS, kind="resize", tier="cpu", verdict="denied", result="denied") == 1
    assert up.get(m.ACTIONS, kind="scale_out", tier="cpu", verdict="denied",
                  result="denied") == 1
    assert up.get(m.ACTIONS, kind="resize", tier="_other", verdict="_other",
                  result="_other") == 1
    assert up.get(m.EVENTS, event="oom_kill") == 1
    assert up.get(m.EVENTS, event="_other") == 1
    assert up.get(m.MODEL_ERRORS) == 1
    # apps capped at 1: "_default" (sorted first) keeps its label, the rest fold into
    # _other with the lowest threshold per tier
    assert up.get(m.THRESHOLD, app="_default", tier="cpu") == 0.5
    assert up.get(m.THRESHOLD, app="_other", tier="memory") == 0.4
    assert up.get(m.THRESHOLD, app="_other", tier="_other") == 0.3
    # the oom_kill of "a" with no failed outcome is a miss
    assert up.get(m.OUTCOMES, tier="memory", outcome="miss") == 1
    assert up.get(m.RECALL, tier="memory") == 0.0
    assert up.get(m.PRECISION, tier="memory") is None
    # thresholds given in the summary replace what the records said
    up = book.plan({"now_s": 11.0, "tick_s": 0.1,
                    "thresholds": {"": {"memory": 0.5, "cpu": 0.6}}}, [], [], [])
    assert [(p.tags, p.value) for p in up.gauges if p.name == m.THRESHOLD] == [
        ({"app": "_default", "tier": "cpu"}, 0.6), ({"app": "_default", "tier": "memory"}, 0.5)]


def judgement(kind: str, tier: str, judged_s: float, container: str = "c") -> dict:
    """A real :class:`Judgement` of the outcome tracker, as the coordinator passes it."""
    return Judgement(OutcomeKind(kind), container, "web", "", Tier(tier), judged_s - 5,
                     judged_s, None if kind == "miss" else f"{container}/{tier}@1", 0.7, 0.5,
                     kind == "miss", True, "test").to_dict()


def test_precision_recall_over_the_rolling_window_of_judgements():
    book = mb.MetricsBook(window_s=100.0)
    up = book.plan({"now_s": 50.0, "tick_s": 0.1}, [], [
        judgement("needed", "memory", 10.0), judgement("needed", "memory", 50.0),
        judgement("needed", "memory", 50.0), judgement("false_positive", "memory", 50.0),
        judgement("miss", "memory", 50.0), judgement("miss", "memory", 50.0),
        judgement("needed", "cpu", 50.0), judgement("false_positive", "cpu", 50.0),
    ], [event("z", "oom_kill", 50.0)])
    # memory: needed 3, false positive 1, miss 2 → 0.75, 0.6 (the docstring's example);
    # the oom_kill event is not a miss of its own: the tracker judges failures
    assert up.get(m.PRECISION, tier="memory") == 0.75
    assert up.get(m.RECALL, tier="memory") == 0.6
    assert up.get(m.PRECISION, tier="cpu") == 0.5 and up.get(m.RECALL, tier="cpu") == 1.0
    assert up.get(m.OUTCOMES, tier="memory", outcome="needed") == 3
    assert up.get(m.OUTCOMES, tier="memory", outcome="miss") == 2
    # at 115 s the judgement of 10 s has left the window: needed 2, fp 1, miss 2
    up = book.plan({"now_s": 115.0, "tick_s": 0.1}, [], [], [])
    assert up.get(m.PRECISION, tier="memory") == pytest.approx(2 / 3)
    assert up.get(m.RECALL, tier="memory") == 0.5
    assert up.get(m.OUTCOMES, tier="memory", outcome="needed") is None  # nothing new
    # a checkpointed window survives a restart
    again = mb.MetricsBook(window_s=100.0)
    again.restore(json.loads(json.dumps(book.state())))
    up = again.plan({"now_s": 116.0, "tick_s": 0.1}, [], [], [])
    assert up.get(m.PRECISION, tier="memory") == pytest.approx(2 / 3)
    # past the window nothing is left to divide: no value at all (not 0, not 1)
    up = book.plan({"now_s": 1000.0, "tick_s": 0.1}, [], [], [])
    assert up.get(m.PRECISION, tier="memory") is None and up.get(m.RECALL, tier="memory") is None


def test_precision_recall_from_lead_time_outcomes_and_oom_events():
    book = mb.MetricsBook(window_s=100.0, outcome_source="lead_time")
    lead = [{"action_id": "a1", "container": "a", "outcome": "crossed", "t_action_s": 0,
             "t_outcome_s": 10.0, "lead_time_s": 10.0},
            {"action_id": "b1", "container": "b", "outcome": "failed", "t_action_s": 0,
             "t_outcome_s": 50.0, "lead_time_s": None},
            {"action_id": "c1", "container": "c", "outcome": "not_crossed", "t_action_s": 0,
             "t_outcome_s": 50.0, "lead_time_s": None},
            {"action_id": "d1", "container": "d", "outcome": "gone", "t_action_s": 0,
             "t_outcome_s": 50.0, "lead_time_s": None}]
    events = [event(c, "oom_kill", 50.0) for c in "bef"]
    up = book.plan({"now_s": 50.0, "tick_s": 0.1}, [], lead, events)
    # needed 2 (crossed, failed), false positive 1, misses 2 (e, f; b's kill is its outcome)
    assert up.get(m.PRECISION, tier="memory") == pytest.approx(2 / 3)
    assert up.get(m.RECALL, tier="memory") == 0.5
    assert up.get(m.OUTCOMES, tier="memory", outcome="needed") == 2
    assert up.get(m.OUTCOMES, tier="memory", outcome="false_positive") == 1
    assert up.get(m.OUTCOMES, tier="memory", outcome="miss") == 2
    with pytest.raises(ValueError, match=r"outcomes\[0\] has no 'outcome'"):
        book.plan({"now_s": 51.0, "tick_s": 0.1}, [], [judgement("needed", "cpu", 51.0)], [])
    with pytest.raises(ValueError, match="outcome_source"):
        mb.MetricsBook(outcome_source="both")


def test_dropped_counts_become_increments_by_bounded_reason():
    book = mb.MetricsBook()
    up = book.plan({"now_s": 1.0, "tick_s": 0.1, "dropped": {"no_data": 2}}, [], [], [])
    assert up.get(m.DROPPED, reason="no_data") == 2
    up = book.plan({"now_s": 2.0, "tick_s": 0.1, "dropped": {
        "no_data": 3, "negative:memory_usage_bytes": 1, "weird": 4, "odd": 1}}, [], [], [])
    assert up.get(m.DROPPED, reason="no_data") == 1
    assert up.get(m.DROPPED, reason="negative:memory_usage_bytes") == 1
    assert up.get(m.DROPPED, reason="_other") == 5
    up = book.plan({"now_s": 3.0, "tick_s": 0.1, "dropped": {
        "no_data": 3, "negative:memory_usage_bytes": 1, "weird": 4, "odd": 1}}, [], [], [])
    assert up.counters == []


@pytest.mark.parametrize("summary, rows, outcomes, records, message", [
    ({"tick_s": 0.1}, [], [], [], "summary.now_s"),
    ({"now_s": 1.0, "tick_s": -1}, [], [], [], "summary.tick_s"),
    ({"now_s": 1.0, "tick_s": 0.1}, [{"p_fail_memory": 0.5}], [], [], "status_rows[0] has no"),
    ({"now_s": 1.0, "tick_s": 0.1}, [{"name": "a", "p_fail_memory": "high"}], [], [],
     "status_rows[0].p_fail_memory must be a number"),
    ({"now_s": 1.0, "tick_s": 0.1}, [], [], [{"kind": "action", "tier": "memory"}],
     "records[0]: action record without 'ts_s'"),
    ({"now_s": 1.0, "tick_s": 0.1}, [], [], [event("a", "oom_kill"), {"kind": "vote"}],
     "records[1]: record of unknown kind 'vote'"),
    ({"now_s": 1.0, "tick_s": 0.1}, [], [], "oom_kill", "records must be a list"),
    ({"now_s": 1.0, "tick_s": 0.1}, [], [{"container": "a", "outcome": "crossed"}], [],
     "outcomes[0] is not a judgement"),
    ({"now_s": 1.0, "tick_s": 0.1, "dropped": {"no_data": -1}}, [], [], [],
     "summary.dropped['no_data']"),
])
def test_bad_input_names_the_field_and_changes_nothing(summary, rows, outcomes, records,
                                                       message):
    book = mb.MetricsBook(max_containers=1)
    book.plan({"now_s": 0.5, "tick_s": 0.1, "dropped": {"no_data": 1}}, [_row("keep")],
              [judgement("needed", "memory", 0.5, "keep")], [])
    before = (book.containers, dict(book.dropped), list(book.window), dict(book.thresholds))
    with pytest.raises(ValueError, match=re.escape(message)):
        book.plan(summary, rows, outcomes, records)
    assert (book.containers, dict(book.dropped), list(book.window),
            dict(book.thresholds)) == before


def test_serve_labels_are_bounded():
    assert m.route_label("/v1/predict", {"/v1/predict"}) == "/v1/predict"
    assert m.route_label("/wp-admin.php", {"/v1/predict"}) == "_other"
    assert [m.code_label(c) for c in (200, 422, 99, 600, "200", True)] == [
        "200", "422", "_other", "_other", "_other", "_other"]


def test_the_documented_table_is_the_declared_metrics():
    rows = re.findall(r"^``(ray_\w+)``\s+(\w+)\s+(.+)$", m.__doc__, flags=re.M)
    documented = {n: (t, () if lab == "(none)" else tuple(lab.split(", "))) for n, t, lab in rows}
    assert documented == {s.exported: (s.type, s.labels) for s in m.SPECS.values()}
