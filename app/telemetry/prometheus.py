"""Prometheus source: container samples and restart/OOM events from the query API.

This is an I/O edge. It reads what cAdvisor (built into the kubelet) and
kube-state-metrics export, through a Prometheus server's HTTP API
(``GET <url>/api/v1/query``, instant queries), so prescale can watch containers it
cannot see on its own host. Everything but the HTTP calls is pure and tested on
recorded JSON bodies: the mapping and the PromQL (:mod:`app.telemetry.prometheus_mapping`:
:func:`build_queries`), and the answers (:mod:`app.telemetry.prometheus_results`:
:func:`parse_vector`, :func:`container_id`, :func:`memory_limit_bytes`,
:func:`cpu_quota_cores`, :func:`assemble` and :func:`ksm_events`).

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
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

import requests

from prescale.app.core.sample import Event, Sample, SourceBatch, events_between
from prescale.app.telemetry.prometheus_mapping import PromMapping, build_queries, parse_matchers
from prescale.app.telemetry.prometheus_results import (
    KsmState,
    PrometheusError,
    Row,
    assemble,
    ksm_events,
    parse_vector,
)

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
