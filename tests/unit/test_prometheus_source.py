"""The pure parts of the Prometheus source: PromQL, response parsing, ids, units, events.

The response bodies below were recorded from Prometheus 2.42 (Debian) answering the
queries of :func:`build_queries` over the fake exporter of
tests/integration/test_prometheus_real.py.
"""

from __future__ import annotations

import math
import re

import pytest
from pydantic import ValidationError

from prescale.app.core.sample import EventKind, Sample
from prescale.app.telemetry.prometheus import PrometheusSource, check_url
from prescale.app.telemetry.prometheus_mapping import PromMapping, build_queries, parse_matchers
from prescale.app.telemetry.prometheus_results import (
    KsmState,
    PrometheusError,
    assemble,
    container_id,
    cpu_quota_cores,
    ksm_events,
    memory_limit_bytes,
    parse_vector,
    pod_key,
)

SELECTOR = 'namespace=~"web|batch"'
TS = 1795902794.291
_T = "1795902794.291"


def _body(result: str) -> str:
    return '{"status":"success","data":{"resultType":"vector","result":[' + result + "]}}"


def _row(labels: str, value: str) -> str:
    return '{"metric":{' + labels + '},"value":[' + _T + ',"' + value + '"]}'


APP = '"container":"app","namespace":"web","pod":"api-0"'
SIDECAR = '"container":"sidecar","namespace":"web","pod":"api-0"'
WORKER = '"container":"worker","namespace":"batch","pod":"job-1"'

RECORDED = {
    "memory_working_set_bytes": _body(",".join([
        _row(APP, "104857600"), _row(SIDECAR, "8388608"), _row(WORKER, "536870912")])),
    "cpu_usage_s_total": _body(",".join([
        _row(APP, "12.5"), _row(SIDECAR, "1.5"), _row(WORKER, "150")])),
    "memory_limit_bytes": _body(",".join([
        _row(APP, "268435456"), _row(SIDECAR, "0"), _row(WORKER, "1073741824")])),
    "cpu_quota_us": _body(",".join([_row(APP, "50000"), _row(WORKER, "200000")])),
    "net_rx_bytes_total": _body(",".join([
        _row('"namespace":"batch","pod":"job-1"', "10000"),
        _row('"namespace":"web","pod":"api-0"', "50000")])),
    "restarts_total": _body(",".join([_row(APP, "2"), _row(WORKER, "0")])),
    "last_terminated_reason": _body(""),
    "pod_app": _body(",".join([
        _row('"label_app":"api","namespace":"web","pod":"api-0"', "1"),
        _row('"namespace":"batch","pod":"job-1"', "1")])),
}
RECORDED_ERROR = ('{"status":"error","errorType":"bad_data","error":"invalid parameter '
                  '\\"query\\": 1:9: parse error: unclosed left parenthesis"}')
RECORDED_MATRIX = ('{"status":"success","data":{"resultType":"matrix","result":[{"metric":'
                   '{"__name__":"up","instance":"127.0.0.1:44243","job":"fake"},"values":'
                   '[[1795902794.117,"1"]]}]}}')
RECORDED_SCALAR = '{"status":"success","data":{"resultType":"scalar","result":[1795902794.352,"+Inf"]}}'  # noqa: E501
RECORDED_NAN = ('{"status":"success","data":{"resultType":"vector","result":'
                '[{"metric":{},"value":[1795902794.355,"NaN"]}]}}')


# --------------------------------------------------------------------------- matchers


@pytest.mark.parametrize(("text", "want"), [
    ("", ()),
    ("  ", ()),
    ('namespace="web"', ('namespace="web"',)),
    ('{namespace="web", pod=~"api-.*"}', ('namespace="web"', 'pod=~"api-.*"')),
    ('job != "x" ,', ('job!="x"',)),
    (r'a!~"q\"uote",b=`raw`', (r'a!~"q\"uote"', "b=`raw`")),
])
def test_parse_matchers(text, want):
    assert parse_matchers(text) == want


@pytest.mark.parametrize("text", [
    "namespace=web", 'container_memory{pod="a"}', 'pod="a" job="b"', 'pod="a', "{}x", "=\"a\"",
])
def test_a_bad_selector_is_refused_with_its_text(text):
    with pytest.raises(ValueError, match="selector"):
        parse_matchers(text)


# --------------------------------------------------------------------------- PromQL


def test_default_queries_one_per_metric_with_the_selector():
    got = {q.key: (q.scope, q.promql) for q in build_queries(PromMapping(), SELECTOR)}
    c = 'container!="", container!="POD", namespace=~"web|batch"'
    by = "namespace, pod, container"
    assert got == {
        "memory_working_set_bytes":
            ("container", f"sum by ({by}) (container_memory_working_set_bytes{{{c}}})"),
        "memory_usage_bytes":
            ("container", f"sum by ({by}) (container_memory_usage_bytes{{{c}}})"),
        "memory_failcnt_total": ("container", f"sum by ({by}) (container_memory_failcnt{{{c}}})"),
        "oom_kills_total": ("container", f"sum by ({by}) (container_oom_events_total{{{c}}})"),
        "cpu_usage_s_total":
            ("container", f"sum by ({by}) (container_cpu_usage_seconds_total{{{c}}})"),
        "cpu_periods_total":
            ("container", f"sum by ({by}) (container_cpu_cfs_periods_total{{{c}}})"),
        "cpu_throttled_periods_total":
            ("container", f"sum by ({by}) (container_cpu_cfs_throttled_periods_total{{{c}}})"),
        "cpu_throttled_s_total":
            ("container", f"sum by ({by}) (container_cpu_cfs_throttled_seconds_total{{{c}}})"),
        "io_read_bytes_total":
            ("container", f"sum by ({by}) (container_fs_reads_bytes_total{{{c}}})"),
        "io_write_bytes_total":
            ("container", f"sum by ({by}) (container_fs_writes_bytes_total{{{c}}})"),
        "memory_limit_bytes":
            ("container", f"max by ({by}) (container_spec_memory_limit_bytes{{{c}}})"),
        "cpu_quota_us": ("container", f"max by ({by}) (container_spec_cpu_quota{{{c}}})"),
        "cpu_period_us": ("container", f"max by ({by}) (container_spec_cpu_period{{{c}}})"),
        "net_rx_bytes_total": ("pod", (
            "max by (namespace, pod) (sum by (namespace, pod, container) "
            '(container_network_receive_bytes_total{container=~"|POD", namespace=~"web|batch"}))'
        )),
        "net_tx_bytes_total": ("pod", (
            "max by (namespace, pod) (sum by (namespace, pod, container) "
            '(container_network_transmit_bytes_total{container=~"|POD", namespace=~"web|batch"}))'
        )),
        "restarts_total": ("ksm", (
            "max by (namespace, pod, container) "
            '(kube_pod_container_status_restarts_total{namespace=~"web|batch"})')),
        "last_terminated_reason": ("ksm", (
            "max by (namespace, pod, container) (kube_pod_container_status_last_terminated_reason"
            '{reason="OOMKilled", namespace=~"web|batch"})')),
        "pod_app": ("pod_app",
                    'max by (namespace, pod, label_app) (kube_pod_labels{namespace=~"web|batch"})'),
    }


def test_queries_follow_a_remapped_exporter():
    mapping = PromMapping(
        memory_working_set_bytes="docker_ws_bytes", memory_usage_bytes="",
        pod_labels=(), container_label="name", container_matchers='name!=""',
        app_label="image", pod_app_label="", network_scope="container",
        restarts_total="", last_terminated_reason="",
    )
    got = {q.key: q.promql for q in build_queries(mapping)}
    assert "memory_usage_bytes" not in got and "restarts_total" not in got
    assert "pod_app" not in got
    assert got["memory_working_set_bytes"] == 'sum by (name, image) (docker_ws_bytes{name!=""})'
    assert got["net_rx_bytes_total"] == (
        'sum by (name, image) (container_network_receive_bytes_total{name!=""})')
    assert got["memory_limit_bytes"] == (
        'max by (name, image) (container_spec_memory_limit_bytes{name!=""})')


def test_mapping_refuses_bad_names():
    with pytest.raises(ValidationError, match="not a Prometheus metric name"):
        PromMapping(memory_usage_bytes="container memory")
    with pytest.raises(ValidationError, match="not a Prometheus label name"):
        PromMapping(container_label="container-name")
    with pytest.raises(ValidationError, match="not a Prometheus label name"):
        PromMapping(pod_labels=("namespace", "pod.name"))
    with pytest.raises(ValidationError, match="matchers"):
        PromMapping(container_matchers="container!=POD")
    with pytest.raises(ValidationError, match="extra"):
        PromMapping(memory_bytes="x")


# --------------------------------------------------------------------------- parsing


def test_parse_a_recorded_vector():
    assert parse_vector(RECORDED["memory_limit_bytes"]) == [
        ({"container": "app", "namespace": "web", "pod": "api-0"}, 268435456.0),
        ({"container": "sidecar", "namespace": "web", "pod": "api-0"}, 0.0),
        ({"container": "worker", "namespace": "batch", "pod": "job-1"}, 1073741824.0),
    ]
    assert parse_vector(RECORDED["last_terminated_reason"]) == []
    [(labels, value)] = parse_vector(RECORDED_NAN.encode())
    assert labels == {} and math.isnan(value)
    assert parse_vector(_body(_row('"a":"b"', "+Inf"))) == [({"a": "b"}, math.inf)]
    assert parse_vector(_body(_row('"a":"b"', "-Inf"))) == [({"a": "b"}, -math.inf)]


@pytest.mark.parametrize(("body", "message"), [
    (RECORDED_ERROR, "Prometheus error for 'q': bad_data: invalid parameter"),
    (RECORDED_MATRIX, r"response for 'q' is not an instant vector \(resultType='matrix'\)"),
    (RECORDED_SCALAR, r"not an instant vector \(resultType='scalar'\)"),
    ("<html>502</html>", "response for 'q' is not JSON: '<html>502</html>'"),
    (b"\xff\xfe", "is not JSON"),
    ("[1, 2]", "response for 'q' is not a JSON object"),
    (_body('{"metric":{},"value":[1]}'), "malformed vector element for 'q'"),
    (_body('{"metric":{},"value":[1,"x"]}'), "malformed vector element"),
    (_body('{"metric":[],"value":[1,"1"]}'), "malformed vector element"),
])
def test_parse_refuses_what_is_not_a_vector(body, message):
    with pytest.raises(PrometheusError, match=message):
        parse_vector(body, "q")


# --------------------------------------------------------------------------- ids and units


def test_container_id_from_labels():
    m = PromMapping()
    labels = {"namespace": "web", "pod": "api-1", "container": "app", "id": "/kubepods/x"}
    assert container_id(labels, m) == "web/api-1/app"
    assert pod_key(labels, m) == ("web", "api-1")
    assert container_id({"pod": "api-1", "container": "app"}, m) == "/api-1/app"
    assert container_id({"namespace": "web", "pod": "api-1", "container": ""}, m) is None
    assert container_id({"namespace": "web", "pod": "api-1"}, m) is None
    docker = PromMapping(pod_labels=(), container_label="name")
    assert container_id({"name": "redis", "image": "redis:7"}, docker) == "redis"


@pytest.mark.parametrize(("value", "want"), [
    (134217728, 134217728.0), (1, 1.0), (0, math.inf), (9223372036854771712, math.inf),
    (2**62, math.inf), (2**62 - 1, float(2**62 - 1)),
])
def test_memory_limit_zero_or_huge_is_unlimited(value, want):
    assert memory_limit_bytes(value) == want


def test_memory_limit_nan_stays_unknown():
    assert math.isnan(memory_limit_bytes(math.nan))


@pytest.mark.parametrize(("quota", "period", "want"), [
    (25_000, 100_000, 0.25), (150_000, 50_000, 3.0), (50_000, None, 0.5),
    (50_000, math.nan, 0.5), (None, 100_000, math.inf), (-1, 100_000, math.inf),
    (0, 100_000, math.inf), (math.nan, 100_000, math.inf),
])
def test_cpu_quota_cores(quota, period, want):
    assert cpu_quota_cores(quota, period) == want


# --------------------------------------------------------------------------- events


def K(restarts: float, oom: bool) -> KsmState:  # noqa: N802
    return KsmState(restarts, oom)


@pytest.mark.parametrize(("prev", "cur", "want"), [
    (None, K(3, True), []),
    (K(2, False), K(3, True), [EventKind.OOM_KILL]),
    (K(2, True), K(3, True), [EventKind.OOM_KILL]),
    (K(2, False), K(3, False), [EventKind.RESTART]),
    (K(2, False), K(4, True), [EventKind.RESTART, EventKind.OOM_KILL]),
    (K(3, False), K(3, True), [EventKind.OOM_KILL]),
    (K(3, True), K(3, True), []),
    (K(3, True), K(3, False), []),
    (K(5, False), K(1, False), [EventKind.RESTART]),
    (K(5, False), K(0, False), []),
    (K(math.nan, False), K(2, False), []),
    (K(2, False), K(math.nan, True), [EventKind.OOM_KILL]),
])
def test_ksm_events(prev, cur, want):
    assert [kind for kind, _ in ksm_events(prev, cur)] == want


def test_ksm_event_details_name_the_counter():
    assert ksm_events(K(2, False), K(4, True)) == [
        (EventKind.RESTART,
         "kube-state-metrics: restart (restarts_total 2 -> 4; reason of this one not seen)"),
        (EventKind.OOM_KILL,
         "kube-state-metrics: restarted, last terminated reason OOMKilled (restarts_total 2 -> 4)"),
    ]


# --------------------------------------------------------------------------- assemble


def test_assemble_recorded_results():
    results = {k: parse_vector(body) for k, body in RECORDED.items()}
    samples, ksm = assemble(results, PromMapping(), TS)
    inf = math.inf
    want = [
        Sample("batch/job-1/worker", TS, memory_working_set_bytes=536870912,
               memory_limit_bytes=1073741824, cpu_usage_s_total=150, cpu_quota_cores=2.0,
               net_rx_bytes_total=10000, app="worker"),
        Sample("web/api-0/app", TS, memory_working_set_bytes=104857600,
               memory_limit_bytes=268435456, cpu_usage_s_total=12.5, cpu_quota_cores=0.5,
               net_rx_bytes_total=50000, app="api"),
        Sample("web/api-0/sidecar", TS, memory_working_set_bytes=8388608,
               memory_limit_bytes=inf, cpu_usage_s_total=1.5, cpu_quota_cores=inf,
               net_rx_bytes_total=50000, app="api"),
    ]
    assert [s.container for s in samples] == [w.container for w in want]
    for got, exp in zip(samples, want, strict=True):
        for name in Sample.__dataclass_fields__:
            g, e = getattr(got, name), getattr(exp, name)
            assert g == e or (g != g and e != e), (got.container, name, g, e)
    assert math.isnan(samples[0].memory_usage_bytes) and math.isnan(samples[0].net_tx_bytes_total)
    assert ksm == {
        "batch/job-1/worker": KsmState(0, False, "worker"),
        "web/api-0/app": KsmState(2, False, "api"),
    }


def test_assemble_limit_absent_is_unknown_and_oom_flag_read():
    results = {
        "memory_working_set_bytes": [({"namespace": "n", "pod": "p", "container": "c"}, 5.0)],
        "restarts_total": [({"namespace": "n", "pod": "p", "container": "c"}, 1.0)],
        "last_terminated_reason": [({"namespace": "n", "pod": "p", "container": "c"}, 1.0)],
    }
    [s], ksm = assemble(results, PromMapping(), 10.0)
    assert s.container == "n/p/c" and s.ts_s == 10.0 and s.app == "c"
    assert math.isnan(s.memory_limit_bytes) and s.cpu_quota_cores == math.inf
    assert ksm == {"n/p/c": KsmState(1.0, True, "c")}


def test_assemble_network_per_container_when_remapped():
    m = PromMapping(pod_labels=(), container_label="name", network_scope="container",
                    app_label="name")
    results = {
        "memory_usage_bytes": [({"name": "redis"}, 7.0)],
        "net_tx_bytes_total": [({"name": "redis"}, 99.0), ({"name": "other"}, 1.0)],
    }
    samples, _ = assemble(results, m, 1.0)
    assert [s.container for s in samples] == ["other", "redis"]
    assert math.isnan(samples[0].memory_usage_bytes) and samples[0].net_tx_bytes_total == 1.0
    assert (samples[1].memory_usage_bytes, samples[1].net_tx_bytes_total) == (7.0, 99.0)
    assert [s.app for s in samples] == ["other", "redis"]


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(("url", "want"), [
    ("http://prom:9090/", "http://prom:9090"),
    ("https://h/prometheus", "https://h/prometheus"),
    ("  http://127.0.0.1:9090  ", "http://127.0.0.1:9090"),
])
def test_check_url(url, want):
    assert check_url(url) == want


@pytest.mark.parametrize("url", [
    "prom:9090", "ftp://h", "", "http://", "http://h:notaport", "http://h:9090/?x=1",
])
def test_a_bad_url_is_refused_by_name(url):
    with pytest.raises(ValueError, match=re.escape(f"Prometheus URL {url!r} is not valid")):
        PrometheusSource(url)


def test_bad_selector_or_timeout_refused_at_construction():
    with pytest.raises(ValueError, match="selector 'namespace=web'"):
        PrometheusSource("http://h:9090", selector="namespace=web")
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        PrometheusSource("http://h:9090", timeout_s=0)
    source = PrometheusSource("http://h:9090", selector='{namespace="web"}')
    assert source.kind == "prometheus" and source.selector == 'namespace="web"'
    source.close()
