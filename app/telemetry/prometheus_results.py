"""A Prometheus query answer → samples and kube-state-metrics events: parsing an
``/api/v1/query`` body (:func:`parse_vector`), the unit conversions of cAdvisor's limit and
CFS quota, :func:`assemble` and :func:`ksm_events`. Pure: tested on recorded JSON bodies.

Network
-------
cAdvisor reports network counters per *pod* (how they are queried:
:mod:`app.telemetry.prometheus_mapping`). Each container of the pod is given the
**pod's** counters: its ``net_*`` fields are the traffic of its pod, not its own share
(which cAdvisor cannot know), so summing ``net_*`` over the containers of one pod
counts the pod's traffic once per container.

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
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prescale.app.core.sample import EventKind, Sample
from prescale.app.telemetry.prometheus_mapping import (
    NET_FIELDS,
    SPEC_FIELDS,
    SUMMED_FIELDS,
    PromMapping,
)

#: cAdvisor's ``container_spec_memory_limit_bytes`` is 0 for "no limit"; a raw cgroup
#: v1 "no limit" (2^63 − 4096) is also treated as unlimited (same threshold as cgroup.py).
UNLIMITED_BYTES_THRESHOLD = 2**62
#: The kernel's default CFS period (100 ms), used when a quota comes without a period.
DEFAULT_CFS_PERIOD_US = 100_000.0


# --------------------------------------------------------------------------- errors


class PrometheusError(Exception):
    """A query could not be answered; the message names the query and the cause."""



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
