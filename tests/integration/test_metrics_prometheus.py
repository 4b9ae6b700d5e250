"""prescale's metrics end to end: a real Ray actor records them with
actors/metrics.py (ray.util.metrics), Ray's metrics agent exports them on the metrics
export port, a real Prometheus server scrapes that port every second, and PromQL
returns exactly the values the ticks imply; every query of the Grafana dashboard
returns data; and the same server evaluates configs/prometheus/alerts.yml (a copy whose
``for:`` are 1 s and whose stale-loop window is 6 s): the scripted misses fire
PrescaleMissedFailure at once, DEGRADED fires PrescaleDegraded, stopping the loop fires
PrescaleLoopStale, each seen in ``/api/v1/alerts`` over HTTP.

Skipped without a ``prometheus`` binary (a failure when CI=true); see tests/prom_support.py.
Ray reports metrics to its agent every ``RAY_metrics_report_interval_ms`` (10 s by
default, floored at 1 s); the test sets 500 ms before ``ray.init``.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

import pytest
import requests
import yaml

from prescale.app import metric_specs as m
from prescale.app.core.outcomes import Judgement, OutcomeKind
from prescale.app.core.sample import Tier
from prescale.app.loop import records as rec
from tests.prom_support import PromServer, free_port, prometheus_binary, running_prometheus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MiB = 2**20
T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "configs" / "grafana" / "prescale.json"
ALERTS = ROOT / "configs" / "prometheus" / "alerts.yml"
NAN, INF = math.nan, math.inf


def _exporter_class():
    """The actor, defined here so that Ray ships it by value (the coordinator's
    shape: it owns the metric objects and is called once per tick)."""
    import ray

    @ray.remote(num_cpus=0)
    class Exporter:
        def __init__(self) -> None:
            from prescale.actors.metrics import CoordinatorMetrics
            from prescale.app.serve_metrics import ServeMetrics

            self.metrics = CoordinatorMetrics(max_containers=3, window_s=600.0)
            self.serve = ServeMetrics(["/v1/predict", "/healthz", "/v1/models"])

        def tick(self, summary, rows, outcomes, records) -> int:
            return len(self.metrics.record_tick(summary, rows, outcomes, records).gauges)

        def request(self, route: str, code: int, duration_s: float) -> None:
            self.serve.observe(route, code, duration_s)

        def asgi_request(self, path: str, code: int | None) -> str:
            """One request through MetricsMiddleware around a real ASGI app that answers
            ``code`` (``None``: raises before answering)."""
            import asyncio

            from prescale.app.serve_metrics import MetricsMiddleware

            async def app(scope, receive, send):
                if code is None:
                    raise RuntimeError("boom")
                await send({"type": "http.response.start", "status": code, "headers": []})
                await send({"type": "http.response.body", "body": b"{}"})

            sent = []

            async def send(message):
                sent.append(message["type"])

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            scope = {"type": "http", "path": "/api" + path, "root_path": "/api",
                     "method": "GET"}
            try:
                asyncio.run(MetricsMiddleware(app, self.serve)(scope, receive, send))
            except RuntimeError as exc:
                return str(exc)
            return ",".join(sent)

    return Exporter


@pytest.fixture(scope="module")
def metrics_port():
    prometheus_binary()  # skip (or fail in CI) before paying for Ray
    import ray

    saved = os.environ.get("RAY_metrics_report_interval_ms")
    os.environ["RAY_metrics_report_interval_ms"] = "500"
    port = free_port()
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, _metrics_export_port=port,
                 object_store_memory=150 * MiB, namespace="prescale-metrics-test",
                 log_to_driver=False)
        yield port
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_metrics_report_interval_ms", None)
        else:
            os.environ["RAY_metrics_report_interval_ms"] = saved


# --------------------------------------------------------------------------- the ticks


def row(name, usage_mib, limit_mib, p_mem, p_cpu, ttl, cpu=(0.05, 0.25)):
    """A status row as ``Coordinator._write_status`` builds it (before JSON)."""
    return {"name": name, "memory_usage_bytes": usage_mib * MiB,
            "memory_limit_bytes": limit_mib * MiB, "cpu_usage_cores": cpu[0],
            "cpu_quota_cores": cpu[1], "p_fail_memory": p_mem, "p_fail_cpu": p_cpu,
            "memory_time_to_limit_s": ttl, "model": "trend-exhaustion/v1", "samples": 60,
            "last_action": None}


ROWS = [
    row("a-leaker", 100, 128, 0.93, 0.0, 12.5),
    row("b-steady", 48, 128, 0.001, 0.0, INF),
    row("c-hog", 3, INF, NAN, 0.61, INF, cpu=(0.249, 0.25)),
    row("d-extra", 60, 64, 0.7, 0.1, 30.0),
    row("e-extra", 20, 256, 0.2, 0.4, INF),
]
THRESHOLDS = {"": {"memory": 0.5, "cpu": 0.5}, "web": {"memory": 0.4, "cpu": 0.5}}


def action(ts, container, tier, result, verdict=None, kind="resize", app="web"):
    """An action record as the tick logs it (app/loop/records.py), as stored; without a
    verdict the book implies it from the result."""
    return rec.to_dict(rec.ActionRecord(
        ts, f"{container}/{tier}@{ts * 1000:.0f}", kind, verdict, container, app, tier, 0.9,
        0.4, 12.0, 128 * MiB, 160 * MiB, 160 * MiB, result, "test"))


def judged(ts, container, kind, tier="memory"):
    """A judgement of the outcome tracker (app/core/outcomes.py), as a dict."""
    return Judgement(OutcomeKind(kind), container, "web", "", Tier(tier), ts - 20, ts,
                     None if kind == "miss" else f"{container}/{tier}@x", 0.9, 0.4,
                     kind == "miss", True, "test").to_dict()


def event(ts, container, what, app="web", reason="test"):
    return rec.to_dict(rec.EventRecord(ts, container, app, what, reason))


def summary(tick, tick_s, dropped):
    return {"tick": tick, "now_s": T0 + tick, "containers": len(ROWS), "decisions": 0,
            "actions": [], "errors": {}, "tick_s": tick_s, "dropped": dropped,
            "thresholds": THRESHOLDS}


SCRIPT = [  # (summary, outcomes, records) of three ticks
    (summary(1, 0.02, {"no_data": 2}), [], [
        rec.to_dict(rec.DecisionRecord(T0 + 1, "a-leaker", "web", "memory", 0.93, 0.4, 12.0,
                                       150 * MiB, 128 * MiB, 160 * MiB, None, "test")),
        action(T0 + 1, "a-leaker", "memory", "applied", verdict="granted"),
        action(T0 + 1, "c-hog", "cpu", "applied", app=""),
    ]),
    (summary(2, 0.3, {"no_data": 3, "negative:memory_usage_bytes": 1}),
     [judged(T0 + 2, "a-leaker", "needed")], [
        action(T0 + 2, "b-steady", "memory", "denied", verdict="denied"),
        event(T0 + 2, "_models", "model_error", app="", reason="web/v4: checksum mismatch"),
    ]),
    (summary(3, 0.04, {"no_data": 3, "negative:memory_usage_bytes": 1, "weird": 2}),
     [judged(T0 + 3, "a-leaker", "needed"), judged(T0 + 3, "e-extra", "needed"),
      judged(T0 + 3, "d-extra", "false_positive"), judged(T0 + 3, "b-steady", "miss"),
      judged(T0 + 3, "d-extra", "miss"), judged(T0 + 3, "c-hog", "needed", "cpu"),
      judged(T0 + 3, "c-hog", "false_positive", "cpu")], [
        action(T0 + 3, "a-leaker", "memory", "dry_run", verdict="granted", kind="scale_out"),
        event(T0 + 3, "e-extra", "oom_kill"),
        event(T0 + 3, "b-steady", "oom_kill"),
        event(T0 + 3, "d-extra", "oom_kill"),
    ]),
]
REQUESTS = [("/v1/predict", 200, 0.004), ("/v1/predict", 200, 0.012), ("/healthz", 200, 0.001),
            ("/wp-login.php", 404, 0.002), ("/v1/predict", 500, 0.3)]
IDLE_TICK_S = 0.01

EXPECTED = {
    "max by (container, tier) (ray_prescale_p_fail)": {
        ("a-leaker", "memory"): 0.93, ("a-leaker", "cpu"): 0.0,
        ("b-steady", "memory"): 0.001, ("b-steady", "cpu"): 0.0, ("c-hog", "cpu"): 0.61,
        ("_other", "memory"): 0.7, ("_other", "cpu"): 0.4},  # worst of d-extra, e-extra
    "min by (container) (ray_prescale_memory_headroom_bytes)": {
        ("a-leaker",): 28 * MiB, ("b-steady",): 80 * MiB, ("_other",): 4 * MiB},
    "min by (container) (ray_prescale_memory_time_to_limit_seconds)": {
        ("a-leaker",): 12.5, ("_other",): 30.0},
    "max(ray_prescale_watched_containers)": {(): 5},
    "max by (app, tier) (ray_prescale_p_fail_threshold)": {
        ("_default", "memory"): 0.5, ("_default", "cpu"): 0.5, ("web", "memory"): 0.4,
        ("web", "cpu"): 0.5},
    "sum by (kind, tier, verdict, result) (ray_prescale_actions_total)": {
        ("resize", "memory", "granted", "applied"): 1, ("resize", "cpu", "granted", "applied"): 1,
        ("resize", "memory", "denied", "denied"): 1,
        ("scale_out", "memory", "granted", "dry_run"): 1},
    "sum by (event) (ray_prescale_container_events_total)": {("oom_kill",): 3},
    # memory: needed 3, false positive 1, miss 2; cpu: needed 1, false positive 1
    "max by (tier) (ray_prescale_prediction_precision)": {("memory",): 0.75, ("cpu",): 0.5},
    "max by (tier) (ray_prescale_prediction_recall)": {("memory",): 0.6, ("cpu",): 1.0},
    "sum by (tier, outcome) (ray_prescale_prediction_outcomes_total)": {
        ("memory", "needed"): 3, ("memory", "false_positive"): 1, ("memory", "miss"): 2,
        ("cpu", "needed"): 1, ("cpu", "false_positive"): 1},
    "sum by (reason) (ray_prescale_dropped_samples_total)": {
        ("no_data",): 3, ("negative:memory_usage_bytes",): 1, ("_other",): 2},
    "sum(ray_prescale_model_reload_errors_total)": {(): 1},
    # REQUESTS, then three through MetricsMiddleware: /v1/models 200, an unknown path 404
    # and /v1/models raising (500)
    "sum by (route, code) (ray_prescale_serve_requests_total)": {
        ("/v1/predict", "200"): 2, ("/healthz", "200"): 1, ("_other", "404"): 2,
        ("/v1/predict", "500"): 1, ("/v1/models", "200"): 1, ("/v1/models", "500"): 1},
    "sum by (route, code) (ray_prescale_serve_request_duration_seconds_count)": {
        ("/v1/predict", "200"): 2, ("/healthz", "200"): 1, ("_other", "404"): 2,
        ("/v1/predict", "500"): 1, ("/v1/models", "200"): 1, ("/v1/models", "500"): 1},
    # latency buckets of REQUESTS (0.004 s, 0.012 s, 0.001 s; 0.3 s for the 500)
    'sum by (route, code) (ray_prescale_serve_request_duration_seconds_bucket'
    '{le="0.005", route=~"/v1/predict|/healthz"})': {
        ("/v1/predict", "200"): 1, ("/v1/predict", "500"): 0, ("/healthz", "200"): 1},
    'sum by (route, code) (ray_prescale_serve_request_duration_seconds_bucket'
    '{le="0.5", route=~"/v1/predict|/healthz"})': {
        ("/v1/predict", "200"): 2, ("/v1/predict", "500"): 1, ("/healthz", "200"): 1},
    # scripted ticks 0.02 s, 0.3 s, 0.04 s; every idle tick 0.01 s (in the 0.01 bucket).
    # (_sum is not checked: Ray 2.60's agent rebuilds it from bucket midpoints.)
    "sum(ray_prescale_tick_duration_seconds_count) "
    '- sum(ray_prescale_tick_duration_seconds_bucket{le="0.01"})': {(): 3},
    'sum(ray_prescale_tick_duration_seconds_bucket{le="0.05"}) '
    '- sum(ray_prescale_tick_duration_seconds_bucket{le="0.01"})': {(): 2},
    'sum(ray_prescale_tick_duration_seconds_bucket{le="+Inf"}) '
    '- sum(ray_prescale_tick_duration_seconds_bucket{le="0.25"})': {(): 1},
}


def vector(prom: PromServer, promql: str) -> dict[tuple[str, ...], float]:
    """An instant query's result keyed by the values of its ``by (...)`` labels."""
    found = re.search(r"\bby \(([^)]*)\)", promql)
    keys = [k.strip() for k in found.group(1).split(",")] if found else []
    return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1])
            for r in prom.query(promql)}


def mismatches(prom: PromServer, expected: dict) -> dict:
    out = {}
    for promql, want in expected.items():
        got = vector(prom, promql)
        close = got.keys() == want.keys() and all(
            math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-9) for k in want)
        if not close:
            out[promql] = {"got": got, "want": want}
    return out


def show(diff: dict) -> str:
    return "\n".join(f"{q}\n  got  {d['got']}\n  want {d['want']}" for q, d in diff.items())


class Idler:
    """Keeps ticking in the background (no records: only the gauges and the tick
    histogram change), as the coordinator does between events; Ray drops gauges that
    are not set again within two report intervals. ``degraded``: the summary's
    degraded state (``None``: writes succeed)."""

    def __init__(self, exporter, first_tick: int) -> None:
        self.exporter, self.tick, self.rows = exporter, first_tick, list(ROWS)
        self.degraded: dict | None = None
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import ray

        last = SCRIPT[-1][0]["dropped"]
        while not self.stop.is_set():
            try:
                ray.get(self.exporter.tick.remote(
                    {**summary(self.tick, IDLE_TICK_S, last), "degraded": self.degraded},
                    self.rows, [], []))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return
            self.tick += 1
            self.stop.wait(0.3)

    def __enter__(self) -> Idler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


#: The loop-stale window of the copy: one tick every ~0.3 s here, a report every 0.5 s
STALE_WINDOW = "6s"


def fast_alerts(directory: Path) -> Path:
    """A test-only copy of alerts.yml: the same expressions, labels and annotations,
    every ``for:`` 1 s (0 stays 0) and PrescaleLoopStale's 2-minute window 6 s."""
    doc = yaml.safe_load(ALERTS.read_text())
    for rule in doc["groups"][0]["rules"]:
        if rule["for"] not in ("0", "0s", "0m"):
            rule["for"] = "1s"
        if rule["alert"] == "PrescaleLoopStale":
            assert rule["expr"].count("[2m]") == 1, rule["expr"]
            rule["expr"] = rule["expr"].replace("[2m]", f"[{STALE_WINDOW}]")
    path = directory / "alerts.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def active_alerts(prom: PromServer) -> dict[tuple[str, str], str]:
    """``{(alertname, tier or ""): state}`` of every pending or firing alert."""
    return {(a["labels"]["alertname"], a["labels"].get("tier", "")): a["state"]
            for a in prom.alerts()}


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for top in dash["panels"] for p in [top, *top.get("panels", [])]]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def as_prometheus_sees_it(expr: str) -> str:
    """Grafana's variables replaced as Grafana would for a 5-minute range."""
    return (expr.replace("$__rate_interval", "10s").replace("$__range", "5m")
            .replace("$container", ".*"))


def test_prometheus_scrapes_prescale_metrics_and_the_dashboard_queries_return_data(
        metrics_port, tmp_path):
    import ray

    exporter = _exporter_class().remote()
    for s, outcomes, records in SCRIPT:
        assert ray.get(exporter.tick.remote(s, ROWS, outcomes, records)) > 0
    for route, code, duration_s in REQUESTS:
        ray.get(exporter.request.remote(route, code, duration_s))
    assert ray.get(exporter.asgi_request.remote("/v1/models", 200)) == (
        "http.response.start,http.response.body")
    assert ray.get(exporter.asgi_request.remote("/no/such/path", 404)) != "boom"
    assert ray.get(exporter.asgi_request.remote("/v1/models", None)) == "boom"

    target = f"127.0.0.1:{metrics_port}"
    with running_prometheus([target], interval_s=1.0, rule_files=[fast_alerts(tmp_path)]
                            ) as prom, \
            Idler(exporter, first_tick=len(SCRIPT) + 1) as idler:
        prom.wait_for(lambda: prom.query('up{job="fake"} == 1'), timeout_s=30,
                      what=f"Prometheus scraping Ray's metrics port {target}")
        try:
            prom.wait_for(lambda: not mismatches(prom, EXPECTED), timeout_s=40,
                          what="every prescale metric with its expected value")
        except AssertionError:
            pytest.fail("PromQL results differ:\n" + show(mismatches(prom, EXPECTED)))
        # alerts.yml on these metrics: the 2 memory misses (b-steady, d-extra; a counter
        # series born at 2) fire PrescaleMissedFailure at once; nothing else is active:
        # no failed action, 4 judged scale-ups (< 10), not DEGRADED, the loop ticking
        missed = prom.wait_for(lambda: prom.active("PrescaleMissedFailure"), timeout_s=10,
                               what="PrescaleMissedFailure firing")
        assert [(a["labels"]["tier"], a["labels"]["severity"], float(a["value"]))
                for a in missed] == [("memory", "warning", 2.0)]
        assert missed[0]["annotations"]["summary"] == (
            "prescale missed 2 memory failure(s) in the last 15 minutes (memory: OOM kills)")
        assert active_alerts(prom) == {("PrescaleMissedFailure", "memory"): "firing"}
        # the names Prometheus knows are exactly the ones app/metric_specs.py declares
        names = requests.get(f"{prom.url}/api/v1/label/__name__/values", timeout=5).json()
        ours = {n for n in names["data"] if n.startswith("ray_prescale_")}
        assert ours == set(m.EXPORTED_NAMES)

        # every query of the Grafana dashboard returns data (rates need two scrapes)
        def empty_queries() -> list[str]:
            return [f"{title}: {expr}" for title, expr in dashboard_queries()
                    if not prom.query(as_prometheus_sees_it(expr))]

        try:
            prom.wait_for(lambda: not empty_queries(), timeout_s=20,
                          what="data for every dashboard query")
        except AssertionError:
            pytest.fail("dashboard queries without data:\n" + "\n".join(empty_queries()))
        p99 = prom.query(as_prometheus_sees_it(
            "histogram_quantile(0.99, sum by (le) "
            "(rate(ray_prescale_tick_duration_seconds_bucket[$__rate_interval])))"))
        assert float(p99[0]["value"][1]) <= 0.01  # only idle ticks (0.01 s) in the last 10 s

        # a container that is no longer watched loses its series; its slot is reused
        idler.rows = [r for r in ROWS if r["name"] != "c-hog"]
        after = {
            "max by (container, tier) (ray_prescale_p_fail)": {
                ("a-leaker", "memory"): 0.93, ("a-leaker", "cpu"): 0.0,
                ("b-steady", "memory"): 0.001, ("b-steady", "cpu"): 0.0,
                ("d-extra", "memory"): 0.7, ("d-extra", "cpu"): 0.1,
                ("_other", "memory"): 0.2, ("_other", "cpu"): 0.4},
            "max(ray_prescale_watched_containers)": {(): 4},
        }
        try:
            prom.wait_for(lambda: not mismatches(prom, after), timeout_s=20,
                          what="c-hog's series gone and d-extra labelled")
        except AssertionError:
            pytest.fail("after c-hog left:\n" + show(mismatches(prom, after)))

        # DEGRADED (a full disk under data_dir): ray_prescale_degraded 1, PrescaleDegraded
        idler.degraded = {"reason": "status: [Errno 28] No space left on device",
                          "since_s": T0, "buffered_records": 3, "dropped_records": 0}
        degraded = prom.wait_for(lambda: prom.active("PrescaleDegraded"), timeout_s=15,
                                 what="PrescaleDegraded firing")
        assert degraded[0]["labels"]["severity"] == "warning"
        assert "ray_prescale_degraded is 1" in degraded[0]["annotations"]["description"]
        assert ("PrescaleLoopStale", "") not in active_alerts(prom)

        # the loop stops: no tick for the window -> PrescaleLoopStale; the gauges vanish
        # (Ray drops them), so PrescaleDegraded resolves
        idler.stop.set()
        idler.thread.join(timeout=10)
        stale = prom.wait_for(lambda: prom.active("PrescaleLoopStale"), timeout_s=20,
                              what="PrescaleLoopStale firing after the loop stopped")
        assert stale[0]["labels"]["severity"] == "critical"
        assert "ray_prescale_tick_duration_seconds_count" in stale[0]["annotations"][
            "description"]
        # Ray still exports the tick count (it stopped growing): the rule's
        # increase() == 0 fired, not its absent()
        assert prom.query("ray_prescale_tick_duration_seconds_count")
        prom.wait_for(lambda: ("PrescaleDegraded", "") not in active_alerts(prom),
                      timeout_s=10, what="PrescaleDegraded resolved once the gauge is gone")
        assert idler.errors == []
