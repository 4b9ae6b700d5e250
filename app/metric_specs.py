"""What prescale exports to Prometheus: every metric's name, type and labels, and the
rules that keep label values bounded. Pure (no Ray): the Ray shells that register these
specs are :class:`actors.metrics.CoordinatorMetrics` and
:class:`app.serve_metrics.ServeMetrics`; what one tick writes is
:class:`app.metrics_book.MetricsBook`'s.

Metrics recorded with ``ray.util.metrics`` inside an actor or a Serve replica are
exported by each node's Ray metrics agent on the port given to
``ray.init(_metrics_export_port=...)`` / ``ray start --metrics-export-port``, with the
prefix ``ray_`` and Ray's own labels (``Component``, ``NodeAddress``, ``SessionName``,
``Version``, ``WorkerId``). A ``prometheus_client`` registry in an actor never reaches
that endpoint. :data:`EXPORTED_NAMES` is the list of every series name Prometheus sees
(the single source of truth the Grafana dashboard is checked against).

Exported names (``ray_`` + the name registered here; a histogram also yields
``_bucket``/``_sum``/``_count``):

=============================================== ========= ===========================
name                                            type      labels
=============================================== ========= ===========================
``ray_prescale_p_fail``                         gauge     container, tier
``ray_prescale_memory_headroom_bytes``          gauge     container
``ray_prescale_memory_time_to_limit_seconds``   gauge     container
``ray_prescale_watched_containers``             gauge     (none)
``ray_prescale_p_fail_threshold``               gauge     app, tier
``ray_prescale_actions_total``                  counter   kind, tier, verdict, result
``ray_prescale_container_events_total``         counter   event
``ray_prescale_tick_duration_seconds``          histogram (none)
``ray_prescale_prediction_precision``           gauge     tier
``ray_prescale_prediction_recall``              gauge     tier
``ray_prescale_prediction_outcomes_total``      counter   tier, outcome
``ray_prescale_dropped_samples_total``          counter   reason
``ray_prescale_model_reload_errors_total``      counter   (none)
``ray_prescale_degraded``                       gauge     (none)
``ray_prescale_serve_requests_total``           counter   route, code
``ray_prescale_serve_request_duration_seconds`` histogram route, code
=============================================== ========= ===========================

**Bounded label cardinality.** ``tier``, ``kind``, ``verdict``, ``result``, ``event``,
``outcome`` and ``reason`` are fixed enums (:class:`~app.core.sample.Tier`,
:class:`~app.core.actions.ActionKind`, :class:`~app.core.actions.Verdict`,
:class:`~app.core.actions.ResultStatus`, :class:`~app.core.sample.EventKind`, the
three outcome kinds, the validation reasons of :mod:`app.core.validation`); any other
value is counted under ``_other``. ``container`` labels exist only for watched
containers (the status rows of the tick) and at most ``max_containers`` of them (1000
by default): a container keeps its label as long as it is watched, new ones take
free slots in the order of the rows, and the rest are folded into
``container="_other"``, which carries the worst case among them (the highest p_fail
per tier, the lowest headroom and time to limit). ``app`` labels of thresholds are
capped the same way (``max_apps``; ``_other`` carries the lowest threshold, the most
eager). Serve ``route`` labels are the routes the app declares, anything else
``_other``; ``code`` is the HTTP status code (100–599, else ``_other``).

**Freshness.** Ray 2.60's metrics agent drops a gauge series that was not set again
within two report intervals (``RAY_metrics_report_interval_ms``, 10 s by default,
never below 1 s): :meth:`actors.metrics.CoordinatorMetrics.record_tick` sets every
gauge on every tick, so the series of a container that is no longer watched disappear
by themselves ~20 s after it goes. A loop slower than two report intervals
(``loop.interval_s`` > 20 s) needs a larger ``RAY_metrics_report_interval_ms``.
Counters and histograms are cumulative per worker: after a coordinator restart a new
series (new ``WorkerId``) starts from zero, so dashboards use ``rate``/``increase``
summed over ``WorkerId``, and ``max``/``min`` over it for gauges. Ray 2.60's agent
rebuilds a histogram from its bucket counts using each bucket's midpoint, so a
histogram's ``_sum`` (and a mean from ``_sum``/``_count``) is approximate; ``_count``
and ``_bucket`` are exact, and quantiles are as good as the buckets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from prescale.app.core.actions import ActionKind, ResultStatus, Verdict
from prescale.app.core.sample import METRICS, EventKind, Tier

PREFIX = "ray_"  # what Ray's metrics agent puts in front of every application metric
OTHER = "_other"
DEFAULT_APP = "_default"  # label of the threshold of containers without an app

TICK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     5.0, 10.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric as registered with ``ray.util.metrics`` (``name``) and as exported
    (``exported`` = ``ray_`` + name; a histogram's series are ``series``)."""

    name: str
    type: str  # counter | gauge | histogram
    description: str
    labels: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> str:
        return PREFIX + self.name

    @property
    def series(self) -> tuple[str, ...]:
        if self.type == "histogram":
            return tuple(self.exported + s for s in ("_bucket", "_sum", "_count"))
        return (self.exported,)


P_FAIL = "prescale_p_fail"
HEADROOM = "prescale_memory_headroom_bytes"
TIME_TO_LIMIT = "prescale_memory_time_to_limit_seconds"
WATCHED = "prescale_watched_containers"
THRESHOLD = "prescale_p_fail_threshold"
ACTIONS = "prescale_actions_total"
EVENTS = "prescale_container_events_total"
TICK = "prescale_tick_duration_seconds"
PRECISION = "prescale_prediction_precision"
RECALL = "prescale_prediction_recall"
OUTCOMES = "prescale_prediction_outcomes_total"
DROPPED = "prescale_dropped_samples_total"
MODEL_ERRORS = "prescale_model_reload_errors_total"
DEGRADED = "prescale_degraded"
SERVE_REQUESTS = "prescale_serve_requests_total"
SERVE_LATENCY = "prescale_serve_request_duration_seconds"

COORDINATOR_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(P_FAIL, "gauge", "Predicted probability that the container fails (runs out "
               "of the tier's resource) within the predictor's horizon.", ("container", "tier")),
    MetricSpec(HEADROOM, "gauge", "Memory limit minus memory usage, in bytes (containers "
               "with a finite limit).", ("container",)),
    MetricSpec(TIME_TO_LIMIT, "gauge", "Forecast seconds until memory usage reaches the "
               "limit (absent when usage is not heading for it).", ("container",)),
    MetricSpec(WATCHED, "gauge", "Containers watched in the last tick."),
    MetricSpec(THRESHOLD, "gauge", "p_fail threshold in effect, per app and tier (act when "
               "p_fail reaches it).", ("app", "tier")),
    MetricSpec(ACTIONS, "counter", "Scaling actions by kind, tier, pool verdict and result.",
               ("kind", "tier", "verdict", "result")),
    MetricSpec(EVENTS, "counter", "Container events seen (oom_kill, exit_nonzero, timeout, "
               "...).", ("event",)),
    MetricSpec(TICK, "histogram", "Duration of one control-loop tick, in seconds.",
               (), TICK_BUCKETS_S),
    MetricSpec(PRECISION, "gauge", "Share of judged scale-ups that were needed, over the "
               "rolling window: needed / (needed + false_positive).", ("tier",)),
    MetricSpec(RECALL, "gauge", "Share of failures that were predicted, over the rolling "
               "window: needed / (needed + miss).", ("tier",)),
    MetricSpec(OUTCOMES, "counter", "Judged predictions: needed, false_positive, miss.",
               ("tier", "outcome")),
    MetricSpec(DROPPED, "counter", "Samples dropped by validation, by reason.", ("reason",)),
    MetricSpec(MODEL_ERRORS, "counter", "Model versions refused when (re)loading from the "
               "registry (the previous version keeps serving)."),
    MetricSpec(DEGRADED, "gauge", "1 while the loop's writes fail (full or read-only disk): "
               "scale-ups go on, scale-downs stop, records are buffered; 0 otherwise."),
)
SERVE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(SERVE_REQUESTS, "counter", "HTTP requests to the prescale Serve app, by route "
               "and status code.", ("route", "code")),
    MetricSpec(SERVE_LATENCY, "histogram", "Latency of HTTP requests to the prescale Serve "
               "app, in seconds, by route and status code.", ("route", "code"),
               REQUEST_BUCKETS_S),
)
SPECS: dict[str, MetricSpec] = {m.name: m for m in COORDINATOR_METRICS + SERVE_METRICS}
#: Every series name Prometheus scrapes from prescale (the dashboard may use only these).
EXPORTED_NAMES: tuple[str, ...] = tuple(s for m in SPECS.values() for s in m.series)
#: The labels of each exported series name (Ray adds Component, NodeAddress, SessionName,
#: Version and WorkerId to all of them; a histogram's ``_bucket`` adds ``le``).
EXPORTED_LABELS: dict[str, tuple[str, ...]] = {
    s: m.labels + (("le",) if s.endswith("_bucket") and m.type == "histogram" else ())
    for m in SPECS.values() for s in m.series
}
RAY_LABELS = ("Component", "NodeAddress", "SessionName", "Version", "WorkerId")

TIERS = frozenset(t.value for t in Tier)
ACTION_KINDS = frozenset(k.value for k in ActionKind)
VERDICTS = frozenset(v.value for v in Verdict)
RESULTS = frozenset(r.value for r in ResultStatus)
EVENT_KINDS = frozenset(e.value for e in EventKind)
OUTCOME_KINDS = ("needed", "false_positive", "miss")
_VALUE_FIELDS = tuple(m for m in METRICS if m != "ts_s")
DROP_REASONS = frozenset(
    ("bad_timestamp", "unknown_container", "duplicate_in_batch", "timestamp_not_increasing",
     "no_data")
    + tuple(f"{p}:{f}" for p in ("negative", "absurd") for f in _VALUE_FIELDS)
)


# --------------------------------------------------------------------------- labels


def enum_label(value: Any, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``"_other"``.

    Example: ``enum_label("memory", {"memory", "cpu"})`` → ``"memory"``;
    ``enum_label("gpu", {"memory", "cpu"})`` → ``"_other"``."""
    return value if isinstance(value, str) and value in allowed else OTHER


def assign_slots(current: Iterable[str], labelled: Collection[str], cap: int) -> frozenset[str]:
    """The names that get their own label value this tick: those of ``labelled`` still
    in ``current``, then new ones in the order of ``current``, at most ``cap`` in all.

    Stable: a name keeps its label while it is present, so series do not churn.
    Worked example: ``labelled = {a, b}``, ``current = [b, c, d]``, ``cap = 2`` →
    ``{b, c}`` (``a`` is gone, ``c`` takes the free slot, ``d`` goes to ``_other``).
    """
    order = list(dict.fromkeys(current))
    keep = [n for n in order if n in labelled][:cap]
    kept = set(keep)
    for n in order:
        if len(keep) >= cap:
            break
        if n not in kept:
            keep.append(n)
            kept.add(n)
    return frozenset(keep)


def route_label(route: str, routes: Collection[str]) -> str:
    """The route label: one of the app's declared ``routes``, else ``_other`` (a
    scanner probing random paths must not create series)."""
    return route if route in routes else OTHER


def code_label(status_code: Any) -> str:
    """``"200"`` for 200; ``_other`` for anything that is not an HTTP status code."""
    if isinstance(status_code, int) and not isinstance(status_code, bool) \
            and 100 <= status_code <= 599:
        return str(status_code)
    return OTHER


# --------------------------------------------------------------------------- registration


def register_metrics(specs: Iterable[MetricSpec], module: Any) -> dict[str, Any]:
    """``{name: metric}``: each spec made with ``module``'s Counter / Gauge / Histogram —
    ``ray.util.metrics`` in an actor, ``ray.serve.metrics`` in a Serve replica (the
    caller imports it: this module does not import Ray)."""
    made: dict[str, Any] = {}
    for m in specs:
        if m.type == "counter":
            made[m.name] = module.Counter(m.name, m.description, tag_keys=m.labels)
        elif m.type == "gauge":
            made[m.name] = module.Gauge(m.name, m.description, tag_keys=m.labels)
        else:
            made[m.name] = module.Histogram(m.name, m.description,
                                            boundaries=list(m.boundaries), tag_keys=m.labels)
    return made

