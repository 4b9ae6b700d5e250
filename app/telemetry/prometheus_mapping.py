"""Which Prometheus metrics feed a :class:`~app.core.sample.Sample`, and the PromQL of
one poll (:class:`PromMapping`, :func:`build_queries`). Pure: no HTTP here.

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

With ``network_scope="container"`` (e.g. a plain Docker cAdvisor, where each container
has its own namespace) network is queried like every other metric.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCHER = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"""
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*"""
)



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
