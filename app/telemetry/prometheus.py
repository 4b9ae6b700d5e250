"""Prometheus source: container samples and restart/OOM events from the query API.

This is an I/O edge. It reads what cAdvisor (built into the kubelet) and
kube-state-metrics export, through a Prometheus server's HTTP API
(``GET <url>/api/v1/query``, instant queries), so prescale can watch containers it
cannot see on its own host. Everything but the HTTP calls is pure and tested on
recorded JSON bodies: :func:`build_queries`, :func:`parse_vector`,
:func:`container_id`, :func:`memory_limit_bytes`, :func:`cpu_quota_cores`,
:func:`assemble` and :func:`ksm_events`.

Queries
-------
One instant query per metric returns that metric for *all* containers (never one
query per container); all queries of one poll are evaluated at the same ``time``
(the poll's ``clock()``), which is also every sample's ``ts_s``. With the default
:class:`PromMapping` and ``selector='namespace="web"'`` the working-set query is::

    sum by (namespace, pod, container) (
      container_memory_working_set_bytes{container!="", container!="POD", namespace="web"})

``sum by`` adds up the series of one container that differ only in other labels
(``device`` for the fs counters, ``cpu`` for per-CPU usage, ``interface`` for
network). Spec values and kube-state-metrics series use ``max by`` instead: a limit
is not additive, and two kube-state-metrics replicas export the same counter twice.

Network
-------
cAdvisor reports network counters per *pod*: every container of a pod shares one
network namespace, whose counters appear on the pod-level cgroup (``container=""``)
and/or the sandbox ("pause") container (``container="POD"``). They are read with
``container=~"|POD"``, summed over interfaces within each of those series, and the
larger of the two is taken (they count the same namespace)::

    max by (namespace, pod) (sum by (namespace, pod, container) (
      container_network_receive_bytes_total{container=~"|POD", namespace="web"}))

Each container of the pod is then given the **pod's** counters: its ``net_*`` fields
are the traffic of its pod, not its own share (which cAdvisor cannot know), so summing
``net_*`` over the containers of one pod counts the pod's traffic once per container.
With ``network_scope="container"`` (e.g. a plain Docker cAdvisor, where each container
has its own namespace) network is queried like every other metric.

Events
------
From kube-state-metrics, per container, between two polls (:func:`ksm_events`):
``kube_pod_container_status_restarts_total`` rising by n gives n events; the last is
``oom_kill`` when ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}``
is 1, else ``restart``; the earlier ones (several restarts between two polls) are
``restart``. ``OOMKilled`` becoming 1 without a restart gives one ``oom_kill``.
Containers that kube-state-metrics does not report fall back to cAdvisor's
``container_oom_events_total`` (``Sample.oom_kills_total``) rising
(:func:`app.core.sample.events_between`); never both, so one kill is one event.

Errors
------
A bad URL, selector or mapping raises :class:`ValueError` at construction. At poll
time an unreachable server, a timeout, an HTTP error, a body that is not JSON or a
Prometheus error stops the poll: the batch has no samples and no events and
``errors["_source"]`` names the query and the cause (a partial poll would show
missing limits as "unlimited"). :meth:`PrometheusSource.poll` never raises for them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch, events_between

#: cAdvisor's ``container_spec_memory_limit_bytes`` is 0 for "no limit"; a raw cgroup
#: v1 "no limit" (2^63 − 4096) is also treated as unlimited (same threshold as cgroup.py).
UNLIMITED_BYTES_THRESHOLD = 2**62
#: The kernel's default CFS period (100 ms), used when a quota comes without a period.
DEFAULT_CFS_PERIOD_US = 100_000.0

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"""
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*"""
)


# --------------------------------------------------------------------------- errors


class PrometheusError(Exception):
    """A query could not be answered; the message names the query and the cause."""


# --------------------------------------------------------------------------- mapping


def parse_matchers(text: str, what: str = "selector") -> tuple[str, ...]:
    """A PromQL label-matcher list → its matchers, normalised; braces are optional.

    Example: ``'{namespace="web", pod=~"api-.*"}'`` → ``('namespace="web"',
    'pod=~"api-.*"')``; ``""`` → ``()``. Anything else (``'namespace=web'``, a
    metric name, an unbalanced quote) raises :class:`ValueError` naming ``what``.
    """
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out: list[str] = []
    pos = 0
    while body[pos:].strip():
        m = _MATCHER.match(body, pos)
        if m is None:
            raise ValueError(
                f"{what} {text!r} is not a list of label matchers like "
                f"'namespace=\"web\", pod=~\"api-.*\"' (bad part: {body[pos:].strip()!r})"
            )
        out.append(f"{m.group(1)}{m.group(2)}{m.group(3)}")
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"{what} {text!r}: expected ',' at {body[pos:]!r}")
            pos += 1
    return tuple(out)


class PromMapping(BaseModel):
    """Which metric feeds each :class:`~app.core.sample.Sample` field, and which labels
    name a container. The defaults are cAdvisor's and kube-state-metrics' names; a user
    with other exporters remaps them (an empty metric name disables that field: NaN).

    A container's id is its ``pod_labels`` values and its ``container_label`` value
    joined by ``/``: ``namespace="web", pod="api-1", container="app"`` → ``"web/api-1/app"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # gauges
    memory_working_set_bytes: str = "container_memory_working_set_bytes"
    memory_usage_bytes: str = "container_memory_usage_bytes"
    memory_limit_bytes: str = Field(
        "container_spec_memory_limit_bytes", description="Bytes; 0 means unlimited (inf)."
    )
    cpu_quota_us: str = Field(
        "container_spec_cpu_quota", description="CFS quota in µs per period; absent/≤0: no quota."
    )
    cpu_period_us: str = Field("container_spec_cpu_period", description="CFS period in µs.")
    # counters
    cpu_usage_s_total: str = "container_cpu_usage_seconds_total"
    cpu_periods_total: str = "container_cpu_cfs_periods_total"
    cpu_throttled_periods_total: str = "container_cpu_cfs_throttled_periods_total"
    cpu_throttled_s_total: str = "container_cpu_cfs_throttled_seconds_total"
    memory_failcnt_total: str = "container_memory_failcnt"
    oom_kills_total: str = "container_oom_events_total"
    io_read_bytes_total: str = "container_fs_reads_bytes_total"
    io_write_bytes_total: str = "container_fs_writes_bytes_total"
    net_rx_bytes_total: str = "container_network_receive_bytes_total"
    net_tx_bytes_total: str = "container_network_transmit_bytes_total"
    # kube-state-metrics
    restarts_total: str = "kube_pod_container_status_restarts_total"
    last_terminated_reason: str = "kube_pod_container_status_last_terminated_reason"
    oom_reason: str = Field("OOMKilled", description="The `reason` label value of an OOM kill.")
    pod_labels_metric: str = Field(
        "kube_pod_labels", description="kube-state-metrics' pod labels, for `pod_app_label`."
    )

    # identity
    pod_labels: tuple[str, ...] = Field(
        ("namespace", "pod"), description="Labels naming the pod (empty: no pods)."
    )
    container_label: str = "container"
    container_matchers: str = Field(
        'container!="",container!="POD"',
        description="Matchers that keep real containers (drop pod cgroups and pause).",
    )
    network_scope: Literal["pod", "container"] = "pod"
    pod_network_matchers: str = Field(
        'container=~"|POD"', description="Matchers of the series carrying a pod's network."
    )
    app_label: str = Field(
        "container", description="Series label giving the app when the pod has none."
    )
    pod_app_label: str = Field(
        "app", description="Pod label giving the app (kube_pod_labels' label_<name>; '' = off)."
    )

    @field_validator(
        "memory_working_set_bytes", "memory_usage_bytes", "memory_limit_bytes", "cpu_quota_us",
        "cpu_period_us", "cpu_usage_s_total", "cpu_periods_total", "cpu_throttled_periods_total",
        "cpu_throttled_s_total", "memory_failcnt_total", "oom_kills_total",
        "io_read_bytes_total", "io_write_bytes_total", "net_rx_bytes_total",
        "net_tx_bytes_total", "restarts_total", "last_terminated_reason", "pod_labels_metric",
    )
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if value and not _METRIC_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name")
        return value

    @field_validator("container_label", "app_label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus label name")
        return value

    @field_validator("pod_app_label")
    @classmethod
    def _optional_label(cls, value: str) -> str:
        if value and not _LABEL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus label name")
        return value

    @field_validator("pod_labels")
    @classmethod
    def _labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _LABEL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a Prometheus label name")
        return value

    @field_validator("container_matchers", "pod_network_matchers")
    @classmethod
    def _matchers(cls, value: str) -> str:
        return ",".join(parse_matchers(value, "matchers"))

    @property
    def id_labels(self) -> tuple[str, ...]:
        return (*self.pod_labels, self.container_label)


#: Sample fields read from a container-scoped cAdvisor metric, summed over other labels.
SUMMED_FIELDS: tuple[str, ...] = (
    "memory_working_set_bytes", "memory_usage_bytes", "memory_failcnt_total",
    "oom_kills_total", "cpu_usage_s_total", "cpu_periods_total",
    "cpu_throttled_periods_total", "cpu_throttled_s_total", "io_read_bytes_total",
    "io_write_bytes_total",
)
#: Spec gauges: one value per container, never added up.
SPEC_FIELDS: tuple[str, ...] = ("memory_limit_bytes", "cpu_quota_us", "cpu_period_us")
NET_FIELDS: tuple[str, ...] = ("net_rx_bytes_total", "net_tx_bytes_total")


# --------------------------------------------------------------------------- PromQL


Scope = Literal["container", "pod", "ksm", "pod_app"]


@dataclass(frozen=True)
class PromQuery:
    """One instant query: ``key`` is the mapping field it feeds, ``scope`` how its
    result rows are keyed (by container id, by pod, or by pod for the app label)."""

    key: str
    promql: str
    scope: Scope


def _selector(metric: str, *matcher_groups: Iterable[str]) -> str:
    matchers = [m for group in matcher_groups for m in group if m]
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def _by(labels: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(labels))


def build_queries(mapping: PromMapping, selector: str = "") -> list[PromQuery]:
    """The PromQL of one poll: one query per mapped metric, for all containers at once.

    Example (default mapping, ``selector='namespace="web"'``), the working set::

        sum by (namespace, pod, container) (container_memory_working_set_bytes{
            container!="", container!="POD", namespace="web"})

    the limit ``max by (namespace, pod, container) (container_spec_memory_limit_bytes{…})``,
    the OOM flag ``max by (namespace, pod, container)
    (kube_pod_container_status_last_terminated_reason{reason="OOMKilled", namespace="web"})``
    and the app ``max by (namespace, pod, label_app) (kube_pod_labels{namespace="web"})``.
    """
    sel = parse_matchers(selector)
    cont = parse_matchers(mapping.container_matchers, "container_matchers")
    by_container = _by((*mapping.id_labels, mapping.app_label))
    queries: list[PromQuery] = []
    for key in SUMMED_FIELDS + SPEC_FIELDS:
        metric = getattr(mapping, key)
        if metric:
            agg = "max" if key in SPEC_FIELDS else "sum"
            promql = f"{agg} by ({by_container}) ({_selector(metric, cont, sel)})"
            queries.append(PromQuery(key, promql, "container"))
    for key in NET_FIELDS:
        metric = getattr(mapping, key)
        if not metric:
            continue
        if mapping.network_scope == "container" or not mapping.pod_labels:
            promql = f"sum by ({by_container}) ({_selector(metric, cont, sel)})"
            queries.append(PromQuery(key, promql, "container"))
        else:
            pod_net = parse_matchers(mapping.pod_network_matchers, "pod_network_matchers")
            inner = (f"sum by ({_by(mapping.id_labels)}) "
                     f"({_selector(metric, pod_net, sel)})")
            promql = f"max by ({_by(mapping.pod_labels)}) ({inner})"
            queries.append(PromQuery(key, promql, "pod"))
    by_ksm = _by(mapping.id_labels)
    if mapping.restarts_total:
        queries.append(PromQuery(
            "restarts_total",
            f"max by ({by_ksm}) ({_selector(mapping.restarts_total, sel)})", "ksm"))
    if mapping.last_terminated_reason:
        reason = (f'reason="{_escape(mapping.oom_reason)}"',)
        queries.append(PromQuery(
            "last_terminated_reason",
            f"max by ({by_ksm}) ({_selector(mapping.last_terminated_reason, reason, sel)})",
            "ksm"))
    if mapping.pod_app_label and mapping.pod_labels_metric and mapping.pod_labels:
        label = f"label_{mapping.pod_app_label}"
        queries.append(PromQuery(
            "pod_app",
            f"max by ({_by((*mapping.pod_labels, label))}) "
            f"({_selector(mapping.pod_labels_metric, sel)})", "pod_app"))
    return queries


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# --------------------------------------------------------------------------- parsing

Row = tuple[dict[str, str], float]


def parse_vector(body: str | bytes | Mapping[str, Any], query: str = "") -> list[Row]:
    """An ``/api/v1/query`` response body → ``[(labels, value), …]``.

    Example: ``{"status": "success", "data": {"resultType": "vector", "result":
    [{"metric": {"pod": "a"}, "value": [1700000000.5, "42"]}]}}`` →
    ``[({"pod": "a"}, 42.0)]``. ``"NaN"``, ``"+Inf"`` and ``"-Inf"`` are floats too.
    A Prometheus error (``"status": "error"``), a body that is not JSON or not a
    vector raises :class:`PrometheusError` naming ``query``.
    """
    where = f" for {query!r}" if query else ""
    if isinstance(body, str | bytes):
        try:
            doc = json.loads(body)
        except ValueError:
            text = body.decode(errors="replace") if isinstance(body, bytes) else body
            raise PrometheusError(f"response{where} is not JSON: {text[:120]!r}") from None
    else:
        doc = body
    if not isinstance(doc, Mapping):
        raise PrometheusError(f"response{where} is not a JSON object")
    if doc.get("status") != "success":
        raise PrometheusError(
            f"Prometheus error{where}: {doc.get('errorType', '?')}: {doc.get('error', doc)}"
        )
    data = doc.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, Mapping) else None
        raise PrometheusError(f"response{where} is not an instant vector (resultType={kind!r})")
    rows: list[Row] = []
    for item in data.get("result") or []:
        try:
            labels = item["metric"]
            _ts, text = item["value"]
            value = float(text)
        except (KeyError, TypeError, ValueError):
            raise PrometheusError(f"malformed vector element{where}: {item!r:.200}") from None
        if not isinstance(labels, Mapping):
            raise PrometheusError(f"malformed vector element{where}: {item!r:.200}")
        rows.append(({str(k): str(v) for k, v in labels.items()}, value))
    return rows


# --------------------------------------------------------------------------- conversions


def container_id(labels: Mapping[str, str], mapping: PromMapping) -> str | None:
    """The container id of a series: its id-label values joined by ``/``.

    Example: ``{"namespace": "web", "pod": "api-1", "container": "app"}`` →
    ``"web/api-1/app"``; a missing label counts as ``""``; a series with no container
    label value (a pod or root cgroup) → ``None``.
    """
    if not labels.get(mapping.container_label):
        return None
    return "/".join(labels.get(name, "") for name in mapping.id_labels)


def pod_key(labels: Mapping[str, str], mapping: PromMapping) -> tuple[str, ...]:
    """Example: ``{"namespace": "web", "pod": "api-1", "container": "app"}`` →
    ``("web", "api-1")``."""
    return tuple(labels.get(name, "") for name in mapping.pod_labels)


def memory_limit_bytes(value: float) -> float:
    """cAdvisor's limit → bytes, inf = unlimited.

    Example: ``134217728`` → ``134217728.0``; ``0`` (cAdvisor's "no limit") → inf;
    ``9223372036854771712`` (cgroup v1's "no limit") → inf; NaN stays NaN.
    """
    if value == 0 or value >= UNLIMITED_BYTES_THRESHOLD:
        return math.inf
    return float(value)


def cpu_quota_cores(quota_us: float | None, period_us: float | None) -> float:
    """CFS quota and period (µs) → cores, inf = no quota.

    Example: quota 25000, period 100000 → 0.25 cores; quota 150000, period 50000 →
    3.0; quota absent (cAdvisor omits it when unlimited), −1 or 0 → inf; a quota
    without a period uses the kernel default 100000 µs: 50000 → 0.5.
    """
    if quota_us is None or math.isnan(quota_us) or quota_us <= 0:
        return math.inf
    if period_us is None or math.isnan(period_us) or period_us <= 0:
        period_us = DEFAULT_CFS_PERIOD_US
    return quota_us / period_us


@dataclass(frozen=True)
class KsmState:
    """kube-state-metrics' view of one container: its restart counter (NaN if absent)
    and whether its last termination was an OOM kill."""

    restarts_total: float
    oom_last: bool
    app: str = ""


def ksm_events(prev: KsmState | None, cur: KsmState) -> list[tuple[EventKind, str]]:
    """Events between two kube-state-metrics readings of one container.

    Worked examples: restarts 2 → 3 with OOMKilled = 1 → ``[oom_kill]``; 2 → 3 with
    OOMKilled = 0 → ``[restart]``; 2 → 4 with OOMKilled = 1 → ``[restart, oom_kill]``
    (only the last termination's reason is known); 3 → 3 with OOMKilled 0 → 1 →
    ``[oom_kill]``; 5 → 1 (pod recreated under the same name) → 1 restart;
    first reading (``prev is None``) → ``[]``.
    """
    if prev is None:
        return []
    delta = 0
    if not math.isnan(cur.restarts_total):
        if math.isnan(prev.restarts_total):
            delta = 0
        elif cur.restarts_total >= prev.restarts_total:
            delta = int(round(cur.restarts_total - prev.restarts_total))
        else:  # the counter was reset: a new pod with the same name
            delta = int(round(cur.restarts_total))
    seen = f"restarts_total {prev.restarts_total:g} -> {cur.restarts_total:g}"
    if delta > 0:
        earlier = [(EventKind.RESTART,
                    f"kube-state-metrics: restart ({seen}; reason of this one not seen)")
                   ] * (delta - 1)
        if cur.oom_last:
            last = (EventKind.OOM_KILL,
                    f"kube-state-metrics: restarted, last terminated reason OOMKilled ({seen})")
        else:
            last = (EventKind.RESTART, f"kube-state-metrics: restarted ({seen})")
        return [*earlier, last]
    if cur.oom_last and not prev.oom_last:
        return [(EventKind.OOM_KILL,
                 "kube-state-metrics: last terminated reason became OOMKilled")]
    return []


def assemble(
    results: Mapping[str, list[Row]], mapping: PromMapping, ts_s: float
) -> tuple[list[Sample], dict[str, KsmState]]:
    """Query results (by :attr:`PromQuery.key`) → samples and kube-state-metrics states.

    A container is every id seen in a container-scoped cAdvisor result. Fields it has
    no series for are NaN, except: no quota → ``cpu_quota_cores`` inf (see
    :func:`cpu_quota_cores`), no limit series → ``memory_limit_bytes`` NaN (unknown,
    not unlimited). Network comes from the container's pod (module docstring).
    The app is the pod's ``pod_app_label`` if kube_pod_labels has it, else the
    series' ``app_label``.

    Worked example: working set row ``{namespace: web, pod: a, container: app}`` = 100,
    limit row = 0, quota 50000, period 100000, pod ``(web, a)`` receive = 7 →
    ``Sample("web/a/app", ts, memory_working_set_bytes=100, memory_limit_bytes=inf,
    cpu_quota_cores=0.5, net_rx_bytes_total=7, app="app")``.
    """
    values: dict[str, dict[str, float]] = {}
    series_app: dict[str, str] = {}
    pod_of: dict[str, tuple[str, ...]] = {}
    pod_net: dict[str, dict[tuple[str, ...], float]] = {k: {} for k in NET_FIELDS}
    pod_app: dict[tuple[str, ...], str] = {}
    for key in SUMMED_FIELDS + SPEC_FIELDS + NET_FIELDS:
        for labels, value in results.get(key, []):
            if key in NET_FIELDS and mapping.network_scope == "pod" and mapping.pod_labels:
                pod_net[key][pod_key(labels, mapping)] = value
                continue
            cid = container_id(labels, mapping)
            if cid is None:
                continue
            values.setdefault(cid, {})[key] = value
            pod_of[cid] = pod_key(labels, mapping)
            if labels.get(mapping.app_label):
                series_app.setdefault(cid, labels[mapping.app_label])
    label = f"label_{mapping.pod_app_label}"
    for labels, _value in results.get("pod_app", []):
        if labels.get(label):
            pod_app[pod_key(labels, mapping)] = labels[label]

    def app_of(cid: str, pod: tuple[str, ...], labels: Mapping[str, str] | None = None) -> str:
        if pod in pod_app:
            return pod_app[pod]
        if cid in series_app:
            return series_app[cid]
        return (labels or {}).get(mapping.app_label, "")

    samples: list[Sample] = []
    for cid in sorted(values):
        v = values[cid]
        pod = pod_of[cid]
        fields = {k: v[k] for k in SUMMED_FIELDS if k in v}
        for k in NET_FIELDS:
            if k in v:
                fields[k] = v[k]
            elif pod in pod_net[k]:
                fields[k] = pod_net[k][pod]
        limit = v.get("memory_limit_bytes", math.nan)
        samples.append(Sample(
            container=cid,
            ts_s=ts_s,
            memory_limit_bytes=memory_limit_bytes(limit),
            cpu_quota_cores=cpu_quota_cores(v.get("cpu_quota_us"), v.get("cpu_period_us")),
            app=app_of(cid, pod),
            **fields,
        ))

    restarts: dict[str, float] = {}
    oom: dict[str, bool] = {}
    ksm_app: dict[str, str] = {}
    for key in ("restarts_total", "last_terminated_reason"):
        for labels, value in results.get(key, []):
            cid = container_id(labels, mapping)
            if cid is None:
                continue
            ksm_app[cid] = app_of(cid, pod_key(labels, mapping), labels)
            if key == "restarts_total":
                restarts[cid] = value
            else:
                oom[cid] = value >= 1
    ksm = {
        cid: KsmState(restarts.get(cid, math.nan), oom.get(cid, False), ksm_app[cid])
        for cid in sorted(ksm_app)
    }
    return samples, ksm


# --------------------------------------------------------------------------- the source


def check_url(url: str) -> str:
    """A Prometheus base URL, without a trailing ``/``.

    Example: ``"http://prom:9090/"`` → ``"http://prom:9090"``; a path prefix is kept
    (``"https://h/prometheus"``); ``"prom:9090"`` or ``"ftp://h"`` → :class:`ValueError`.
    """
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"Prometheus URL {url!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"Prometheus URL {url!r} is not valid: expected http(s)://host[:port][/prefix]"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"Prometheus URL {url!r} is not valid: no query or fragment allowed")
    return text.rstrip("/")


class PrometheusSource:
    """Samples and events of every container matching ``selector``, from a Prometheus
    server's query API (see the module docstring for the PromQL and its semantics).

    Example::

        source = PrometheusSource("http://prometheus:9090", selector='namespace="web"')
        batch = source.poll()   # batch.samples: one Sample per container, ts_s = now
        source.close()

    ``clock`` gives the evaluation time of each poll's queries (sent as ``time=``) and
    the samples' ``ts_s``; Prometheus answers with the latest value scraped at or before
    it (within its 5-minute lookback), so it must be real time. ``session`` lets a
    caller share a :class:`requests.Session` (then :meth:`close` leaves it open).
    """

    kind = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        mapping: PromMapping | None = None,
        selector: str = "",
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.url = check_url(url)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.mapping = mapping or PromMapping()
        self.selector = ",".join(parse_matchers(selector))
        self.timeout_s = float(timeout_s)
        self.clock = clock
        self.queries = build_queries(self.mapping, self.selector)
        self._own_session = session is None
        self._session = session or requests.Session()
        self._ksm: dict[str, KsmState] = {}
        self._last: dict[str, Sample] = {}

    def query(self, promql: str, at_s: float | None = None) -> list[Row]:
        """One instant query → ``[(labels, value), …]``; :class:`PrometheusError` on failure."""
        params: dict[str, str] = {"query": promql}
        if at_s is not None:
            params["time"] = f"{at_s:.3f}"
        endpoint = f"{self.url}/api/v1/query"
        try:
            resp = self._session.get(endpoint, params=params, timeout=self.timeout_s)
        except requests.Timeout:
            raise PrometheusError(
                f"{endpoint} timed out after {self.timeout_s:g} s for {promql!r}") from None
        except requests.RequestException as exc:
            raise PrometheusError(f"cannot reach {endpoint} for {promql!r}: {exc}") from None
        if resp.status_code != 200:
            try:  # Prometheus explains 400/422/503 in a JSON error body
                doc = json.loads(resp.content)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and doc.get("status") == "error":
                try:
                    parse_vector(doc, promql)
                except PrometheusError as exc:
                    raise PrometheusError(
                        f"HTTP {resp.status_code} from {endpoint}: {exc}") from None
            text = resp.content.decode(errors="replace").strip()
            raise PrometheusError(
                f"HTTP {resp.status_code} from {endpoint} for {promql!r}: {text[:120]!r}")
        return parse_vector(resp.content, promql)

    def poll(self) -> SourceBatch:
        """Every container once (all queries at one evaluation time ``clock()``), and the
        events since the previous poll. A failed query gives an empty batch with
        ``errors["_source"]``; the event state is then left as it was."""
        ts_s = float(self.clock())
        results: dict[str, list[Row]] = {}
        try:
            for q in self.queries:
                results[q.key] = self.query(q.promql, ts_s)
        except PrometheusError as exc:
            return SourceBatch(errors={"_source": str(exc)})
        samples, ksm = assemble(results, self.mapping, ts_s)
        events: list[Event] = []
        for cid, state in ksm.items():
            for kind, detail in ksm_events(self._ksm.get(cid), state):
                events.append(Event(cid, ts_s, kind, detail, state.app))
        for s in samples:
            if s.container not in ksm:  # no kube-state-metrics: cAdvisor's OOM counter
                events += [
                    replace(e, detail=f"cAdvisor {self.mapping.oom_kills_total} rose")
                    for e in events_between(self._last.get(s.container), s)
                ]
        self._ksm = ksm
        self._last = {s.container: s for s in samples}
        return SourceBatch(samples, events, {})

    def close(self) -> None:
        self._ksm = {}
        self._last = {}
        if self._own_session:
            self._session.close()
