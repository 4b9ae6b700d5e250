"""PrometheusSource against a real Prometheus server scraping a fake cAdvisor /
kube-state-metrics exporter (an http.server on 127.0.0.1) with known values.

Skipped without a ``prometheus`` binary (a failure when CI=true); see tests/prom_support.py.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import astuple, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prescale.app.core.sample import EventKind, Sample
from prescale.app.telemetry.base import Source
from prescale.app.telemetry.prometheus import PrometheusSource
from prescale.app.telemetry.prometheus_mapping import PromMapping
from prescale.app.telemetry.prometheus_results import PrometheusError
from tests.prom_support import MetricsExporter, free_port, running_prometheus, series

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
WEB_APP = {"namespace": "web", "pod": "api-0", "container": "app"}
WEB_SIDECAR = {"namespace": "web", "pod": "api-0", "container": "sidecar"}
WEB_POD = {"namespace": "web", "pod": "api-0", "container": ""}
WEB_PAUSE = {"namespace": "web", "pod": "api-0", "container": "POD"}
JOB = {"namespace": "batch", "pod": "job-1", "container": "worker"}
JOB_POD = {"namespace": "batch", "pod": "job-1", "container": ""}
JOB_PAUSE = {"namespace": "batch", "pod": "job-1", "container": "POD"}
NOISE = {"namespace": "other", "pod": "x-0", "container": "noise"}

# counters that grow on every scrape: series → step
CPU_APP = series("container_cpu_usage_seconds_total", cpu="total", **WEB_APP)
PERIODS_APP = series("container_cpu_cfs_periods_total", **WEB_APP)
THR_P_APP = series("container_cpu_cfs_throttled_periods_total", **WEB_APP)
THR_S_APP = series("container_cpu_cfs_throttled_seconds_total", **WEB_APP)
READS_SDA = series("container_fs_reads_bytes_total", device="/dev/sda", **WEB_APP)
READS_SDB = series("container_fs_reads_bytes_total", device="/dev/sdb", **WEB_APP)
WRITES_APP = series("container_fs_writes_bytes_total", device="/dev/sda", **WEB_APP)
CPU_SIDECAR = series("container_cpu_usage_seconds_total", cpu="total", **WEB_SIDECAR)
CPU0_JOB = series("container_cpu_usage_seconds_total", cpu="cpu00", **JOB)
CPU1_JOB = series("container_cpu_usage_seconds_total", cpu="cpu01", **JOB)
RX_WEB = series("container_network_receive_bytes_total", interface="eth0", **WEB_POD)
TX_WEB = series("container_network_transmit_bytes_total", interface="eth0", **WEB_POD)
RX_JOB_POD = series("container_network_receive_bytes_total", interface="eth0", **JOB_POD)
RX0_JOB = series("container_network_receive_bytes_total", interface="eth0", **JOB_PAUSE)
RX1_JOB = series("container_network_receive_bytes_total", interface="eth1", **JOB_PAUSE)
TX0_JOB = series("container_network_transmit_bytes_total", interface="eth0", **JOB_PAUSE)
OOM_SIDECAR = series("container_oom_events_total", **WEB_SIDECAR)
RESTARTS_APP = series("kube_pod_container_status_restarts_total", uid="u1", **WEB_APP)
RESTARTS_JOB = series("kube_pod_container_status_restarts_total", uid="u2", **JOB)
REASON = "kube_pod_container_status_last_terminated_reason"

STEPS = {
    CPU_APP: 0.25, PERIODS_APP: 10, THR_P_APP: 1, THR_S_APP: 0.125, READS_SDA: 4096,
    WRITES_APP: 512, CPU_SIDECAR: 0.5, CPU0_JOB: 1, CPU1_JOB: 1, RX_WEB: 1000, TX_WEB: 500,
    RX_JOB_POD: 100, RX0_JOB: 100, RX1_JOB: 10, TX0_JOB: 50,
}

INITIAL = {
    # web/api-0/app: 100 MiB of 256 MiB, 0.5 cores
    series("container_memory_working_set_bytes", **WEB_APP): 100 * MiB,
    series("container_memory_usage_bytes", **WEB_APP): 120 * MiB,
    series("container_spec_memory_limit_bytes", **WEB_APP): 256 * MiB,
    series("container_spec_cpu_quota", **WEB_APP): 50_000,
    series("container_spec_cpu_period", **WEB_APP): 100_000,
    CPU_APP: 12.5, PERIODS_APP: 1000, THR_P_APP: 40, THR_S_APP: 2.5,
    series("container_memory_failcnt", **WEB_APP): 3,
    series("container_oom_events_total", **WEB_APP): 0,
    READS_SDA: 4096, READS_SDB: 1024, WRITES_APP: 8192,
    # web/api-0/sidecar: unlimited memory (0), no CPU quota series
    series("container_memory_working_set_bytes", **WEB_SIDECAR): 8 * MiB,
    series("container_memory_usage_bytes", **WEB_SIDECAR): 10 * MiB,
    series("container_spec_memory_limit_bytes", **WEB_SIDECAR): 0,
    series("container_spec_cpu_period", **WEB_SIDECAR): 100_000,
    series("container_memory_failcnt", **WEB_SIDECAR): 0,
    CPU_SIDECAR: 1.5, OOM_SIDECAR: 0,
    # the pod cgroup and the pause container of api-0: not containers
    series("container_memory_working_set_bytes", **WEB_POD): 109 * MiB,
    series("container_memory_working_set_bytes", **WEB_PAUSE): 1 * MiB,
    RX_WEB: 50_000, TX_WEB: 20_000,
    # batch/job-1/worker: 512 MiB of 1 GiB, 2 cores, per-CPU usage
    series("container_memory_working_set_bytes", **JOB): 512 * MiB,
    series("container_memory_usage_bytes", **JOB): 600_000_000,
    series("container_spec_memory_limit_bytes", **JOB): 1024 * MiB,
    series("container_spec_cpu_quota", **JOB): 200_000,
    series("container_spec_cpu_period", **JOB): 100_000,
    CPU0_JOB: 100, CPU1_JOB: 50,
    series("container_cpu_cfs_periods_total", **JOB): 5000,
    series("container_cpu_cfs_throttled_periods_total", **JOB): 0,
    series("container_cpu_cfs_throttled_seconds_total", **JOB): 0,
    series("container_memory_failcnt", **JOB): 0,
    series("container_oom_events_total", **JOB): 0,
    series("container_fs_reads_bytes_total", device="/dev/sda", **JOB): 0,
    series("container_fs_writes_bytes_total", device="/dev/sda", **JOB): 0,
    RX_JOB_POD: 7000, RX0_JOB: 7000, RX1_JOB: 3000, TX0_JOB: 2000,
    # outside the selector
    series("container_memory_working_set_bytes", **NOISE): 1,
    series("kube_pod_container_status_restarts_total", **NOISE): 9,
    # kube-state-metrics
    series("kube_pod_labels", namespace="web", pod="api-0", label_app="api"): 1,
    series("kube_pod_labels", namespace="batch", pod="job-1"): 1,
    RESTARTS_APP: 2, RESTARTS_JOB: 0,
    series(REASON, reason="Error", **WEB_APP): 1,
    # a Docker-style cAdvisor series (no pods), for the remapped source
    series("docker_ws_bytes", name="redis", image="redis:7"): 42 * MiB,
}

SELECTOR = 'namespace=~"web|batch"'


def _same(x: object, y: object) -> bool:
    return x == y or (isinstance(x, float) and isinstance(y, float)
                      and math.isnan(x) and math.isnan(y))


def same_sample(a: Sample, b: Sample) -> bool:
    """Field-by-field equality where NaN equals NaN."""
    return all(_same(x, y) for x, y in zip(astuple(a), astuple(b), strict=True))


def diff(a: Sample, b: Sample) -> dict:
    return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in fields(Sample)
            if not _same(getattr(a, f.name), getattr(b, f.name))}


def expected_samples(v: dict, ts: float) -> list[Sample]:
    """What the exporter served (``v``), as the source must report it."""
    nan = math.nan
    return [
        Sample(
            "batch/job-1/worker", ts,
            memory_usage_bytes=600_000_000, memory_working_set_bytes=512 * MiB,
            memory_limit_bytes=1024 * MiB, memory_failcnt_total=0, oom_kills_total=0,
            cpu_usage_s_total=v[CPU0_JOB] + v[CPU1_JOB], cpu_quota_cores=2.0,
            cpu_periods_total=5000, cpu_throttled_periods_total=0, cpu_throttled_s_total=0,
            io_read_bytes_total=0, io_write_bytes_total=0,
            # the pause container's eth0 + eth1 beats the pod cgroup's eth0 alone
            net_rx_bytes_total=max(v[RX0_JOB] + v[RX1_JOB], v[RX_JOB_POD]),
            net_tx_bytes_total=v[TX0_JOB], app="worker",
        ),
        Sample(
            "web/api-0/app", ts,
            memory_usage_bytes=120 * MiB, memory_working_set_bytes=100 * MiB,
            memory_limit_bytes=256 * MiB, memory_failcnt_total=3, oom_kills_total=0,
            cpu_usage_s_total=v[CPU_APP], cpu_quota_cores=0.5,
            cpu_periods_total=v[PERIODS_APP], cpu_throttled_periods_total=v[THR_P_APP],
            cpu_throttled_s_total=v[THR_S_APP],
            io_read_bytes_total=v[READS_SDA] + v[READS_SDB], io_write_bytes_total=v[WRITES_APP],
            net_rx_bytes_total=v[RX_WEB], net_tx_bytes_total=v[TX_WEB], app="api",
        ),
        Sample(
            "web/api-0/sidecar", ts,
            memory_usage_bytes=10 * MiB, memory_working_set_bytes=8 * MiB,
            memory_limit_bytes=math.inf, memory_failcnt_total=0, oom_kills_total=v[OOM_SIDECAR],
            cpu_usage_s_total=v[CPU_SIDECAR], cpu_quota_cores=math.inf,
            cpu_periods_total=nan, cpu_throttled_periods_total=nan, cpu_throttled_s_total=nan,
            io_read_bytes_total=nan, io_write_bytes_total=nan,
            # the pod's network, shared by both containers of api-0
            net_rx_bytes_total=v[RX_WEB], net_tx_bytes_total=v[TX_WEB], app="api",
        ),
    ]


def assert_samples(got: list[Sample], want: list[Sample]) -> None:
    assert [s.container for s in got] == [s.container for s in want]
    for g, w in zip(got, want, strict=True):
        assert same_sample(g, w), f"{g.container}: (got, want) differ in {diff(g, w)}"


def test_reads_cadvisor_and_kube_state_metrics_back_through_the_query_api():
    with MetricsExporter(INITIAL, STEPS) as exporter, \
            running_prometheus([exporter.target]) as prom:
        source = PrometheusSource(prom.url, selector=SELECTOR, timeout_s=5)
        assert isinstance(source, Source) and source.kind == "prometheus"

        # 1. while the counters grow: each value is one the exporter served
        prom.wait_for(lambda: len(prom.query(
            f'container_cpu_usage_seconds_total{{pod="api-0",container="app"}} > {12.5 + 0.25}'
        )) == 1, what="two scrapes of the fake exporter")
        first = source.poll()
        assert first.errors == {} and first.events == []
        served = list(exporter.served)
        by_name = {s.container: s for s in first.samples}
        assert set(by_name) == {"batch/job-1/worker", "web/api-0/app", "web/api-0/sidecar"}
        app1 = by_name["web/api-0/app"]
        assert app1.cpu_usage_s_total in {v[CPU_APP] for v in served}
        assert app1.io_read_bytes_total in {v[READS_SDA] + v[READS_SDB] for v in served}
        assert app1.net_rx_bytes_total in {v[RX_WEB] for v in served}
        assert by_name["batch/job-1/worker"].cpu_usage_s_total in {
            v[CPU0_JOB] + v[CPU1_JOB] for v in served}

        # 2. counters stopped (after one more scrape): every field equals what is served
        n = len(exporter.served)
        prom.wait_for(lambda: len(exporter.served) > n, what="one more scrape")
        frozen = exporter.freeze()
        prom.wait_for(lambda: [float(r["value"][1]) for r in prom.query(
            'container_network_receive_bytes_total{pod="api-0"}')] == [frozen[RX_WEB]],
            what="the frozen values in Prometheus")
        t0 = time.time()
        second = source.poll()
        assert second.errors == {} and second.events == []
        ts = second.samples[0].ts_s
        assert t0 <= ts <= time.time()
        assert_samples(second.samples, expected_samples(frozen, ts))
        assert app1.cpu_usage_s_total < frozen[CPU_APP]

        # 3. an OOM kill (kube-state-metrics), a plain restart, and an OOM kill that only
        #    cAdvisor's counter shows (the sidecar has no kube-state-metrics series)
        exporter.update({
            RESTARTS_APP: 3,
            series(REASON, reason="Error", **WEB_APP): None,
            series(REASON, reason="OOMKilled", **WEB_APP): 1,
            RESTARTS_JOB: 1,
            series(REASON, reason="Error", **JOB): 1,
            OOM_SIDECAR: 1,
        })
        prom.wait_for(lambda: len(prom.query(
            "kube_pod_container_status_restarts_total == 3 and on() "
            "kube_pod_container_status_restarts_total{pod=\"job-1\"} == 1 and on() "
            "container_oom_events_total{container=\"sidecar\"} == 1")) == 1,
            what="the restarts in Prometheus")
        third = source.poll()
        assert third.errors == {}
        ts = third.samples[0].ts_s
        assert [(e.container, e.ts_s, e.kind, e.detail, e.app) for e in third.events] == [
            ("batch/job-1/worker", ts, EventKind.RESTART,
             "kube-state-metrics: restarted (restarts_total 0 -> 1)", "worker"),
            ("web/api-0/app", ts, EventKind.OOM_KILL,
             "kube-state-metrics: restarted, last terminated reason OOMKilled "
             "(restarts_total 2 -> 3)", "api"),
            ("web/api-0/sidecar", ts, EventKind.OOM_KILL,
             "cAdvisor container_oom_events_total rose", "api"),
        ]
        assert_samples(third.samples, expected_samples({**frozen, OOM_SIDECAR: 1}, ts))

        # 4. nothing new: no events again
        fourth = source.poll()
        assert fourth.errors == {} and fourth.events == []

        # a remapped source: Docker-style series named by `name`, no pods, no KSM
        docker = PrometheusSource(prom.url, mapping=PromMapping(
            memory_working_set_bytes="docker_ws_bytes", pod_labels=(), container_label="name",
            container_matchers='name!=""', app_label="image", pod_app_label="",
        ))
        batch = docker.poll()
        assert batch.errors == {}
        assert [(s.container, s.memory_working_set_bytes, s.app) for s in batch.samples] == [
            ("redis", 42 * MiB, "redis:7")]

        # a query Prometheus rejects: its own error, named
        with pytest.raises(PrometheusError, match=r"HTTP 400 .*bad_data"):
            source.query("sum by (")
        # a selector that matches nothing: an empty batch, not an error
        empty = PrometheusSource(prom.url, selector='namespace="nope"').poll()
        assert (empty.samples, empty.events, empty.errors) == ([], [], {})
        source.close()
        docker.close()


# --------------------------------------------------------------------------- bad servers


class _Scripted:
    """An HTTP server on 127.0.0.1 that answers every request with one fixed response."""

    def __init__(self, status: int, body: bytes, delay_s: float = 0.0):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                time.sleep(delay_s)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> _Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


PROM_400 = (b'{"status":"error","errorType":"bad_data","error":"invalid parameter '
            b'\\"query\\": 1:8: parse error: unexpected end of input"}')


@pytest.mark.parametrize(
    ("status", "body", "delay_s", "message"),
    [
        (200, b"<html>not prometheus</html>", 0, r"is not JSON: '<html>not prometheus"),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', 0,
         r"is not an instant vector \(resultType='matrix'\)"),
        (400, PROM_400, 0, r"HTTP 400 from .*/api/v1/query: Prometheus error for .*: bad_data: "
                           r"invalid parameter"),
        (502, b"Bad Gateway", 0, r"HTTP 502 from .*/api/v1/query for 'sum by .*: 'Bad Gateway'$"),
        (200, b"{}", 1.0, r"timed out after 0.3 s for 'sum by"),
    ],
    ids=["not-json", "not-vector", "prometheus-error", "http-502", "timeout"],
)
def test_a_bad_answer_is_an_error_in_the_batch_not_a_crash(status, body, delay_s, message):
    with _Scripted(status, body, delay_s) as server:
        source = PrometheusSource(server.url, timeout_s=0.3)
        batch = source.poll()
        source.close()
    assert batch.samples == [] and batch.events == []
    assert list(batch.errors) == ["_source"]
    assert re.search(message, batch.errors["_source"]), batch.errors["_source"]


def test_an_unreachable_server_is_an_error_in_the_batch():
    port = free_port()  # nothing listens there
    source = PrometheusSource(f"http://127.0.0.1:{port}", timeout_s=1)
    batch = source.poll()
    assert batch.samples == [] and batch.events == []
    assert batch.errors["_source"].startswith(
        f"cannot reach http://127.0.0.1:{port}/api/v1/query for 'sum by (namespace, pod, "
        "container) (container_memory_working_set_bytes{container!=\"\", container!=\"POD\"})'")
