"""Prometheus metrics of the coordinator and of the Serve app, through ``ray.util.metrics``.

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
never below 1 s): :meth:`CoordinatorMetrics.record_tick` sets every gauge on every
tick, so the series of a container that is no longer watched disappear by themselves
~20 s after it goes. A loop slower than two report intervals
(``loop.interval_s`` > 20 s) needs a larger ``RAY_metrics_report_interval_ms``.
Counters and histograms are cumulative per worker: after a coordinator restart a new
series (new ``WorkerId``) starts from zero, so dashboards use ``rate``/``increase``
summed over ``WorkerId``, and ``max``/``min`` over it for gauges. Ray 2.60's agent
rebuilds a histogram from its bucket counts using each bucket's midpoint, so a
histogram's ``_sum`` (and a mean from ``_sum``/``_count``) is approximate; ``_count``
and ``_bucket`` are exact, and quantiles are as good as the buckets.

**Prediction quality** over a rolling window of ``window_s`` seconds (1 h by default)
of outcome time, per tier, from the outcomes of each tick. ``outcome_source`` says
which kind the coordinator passes (one kind only, so nothing is counted twice):

- ``"judgements"`` (the default): :class:`app.core.outcome_tracker.Judgement` dicts
  (``kind`` = ``needed`` | ``false_positive`` | ``miss``, with their ``tier`` and
  ``judged_s``), taken as they are;
- ``"lead_time"``: :class:`app.core.outcomes.Outcome` dicts: ``crossed`` and ``failed``
  mean the scale-up was **needed** (usage reached the old limit, or the container was
  OOM-killed while the action was pending: the prediction was right either way);
  ``not_crossed`` is a **false positive**; ``gone`` is not judged. These are memory
  outcomes. A **miss** is an ``oom_kill`` event in the tick's records of a container
  that has no ``failed`` outcome in the same tick (a failure nobody scaled up for).

``precision = needed / (needed + false_positive)`` and
``recall = needed / (needed + miss)``; a tier with nothing to divide by gets no value
(the series is absent rather than a made-up 0 or 1). Worked example: in the window,
3 needed, 1 false positive, 2 misses → precision 3/4 = 0.75, recall 3/5 = 0.6.
The same outcomes are also counted in ``prescale_prediction_outcomes_total``, from
which Grafana can compute the ratios over any range.

Layout: :class:`MetricsBook` is the pure part (no Ray, no clock, no I/O: it turns one
tick's plain dicts into a :class:`TickUpdate` and keeps the state across ticks);
:class:`CoordinatorMetrics` and :class:`ServeMetrics` are the thin shells that write
the updates into ``ray.util.metrics``; :class:`MetricsMiddleware` feeds
:class:`ServeMetrics` from any ASGI app (FastAPI). Cost: ≈ 36 ms per tick for 1000
watched containers inside a Ray actor, measured on a busy 2-core machine (load ≈ 9).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
OUTCOME_SOURCES = ("judgements", "lead_time")
#: Lead-time outcome (app.core.outcomes) → judgement; ``gone`` is not judged.
LEAD_TIME_OUTCOME = {"crossed": "needed", "failed": "needed", "not_crossed": "false_positive"}
_VALUE_FIELDS = tuple(m for m in METRICS if m != "ts_s")
DROP_REASONS = frozenset(
    ("bad_timestamp", "unknown_container", "duplicate_in_batch", "timestamp_not_increasing",
     "no_data")
    + tuple(f"{p}:{f}" for p in ("negative", "absurd") for f in _VALUE_FIELDS)
)
_P_FAIL_KEYS = tuple((t.value, f"p_fail_{t.value}") for t in Tier)
MODEL_ERROR_EVENT = "model_error"  # event records of refused model versions
#: The pool's verdict implied by an action's result when the record does not carry it.
VERDICT_OF_RESULT = {"applied": "granted", "dry_run": "granted", "failed": "granted",
                     "denied": "denied", "deferred": "deferred"}


# --------------------------------------------------------------------------- pure helpers


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


def counter_deltas(previous: Mapping[str, float], current: Mapping[str, float]
                   ) -> dict[str, float]:
    """Increments of cumulative counts since the previous reading.

    A count below its previous value means the counting process restarted (the
    monitor actor): the whole current count is new. Worked example: previous
    ``{no_data: 3, bad_timestamp: 5}``, current ``{no_data: 5, bad_timestamp: 2,
    duplicate_in_batch: 1}`` → ``{no_data: 2, bad_timestamp: 2, duplicate_in_batch: 1}``.
    """
    out: dict[str, float] = {}
    for key, value in current.items():
        prev = previous.get(key, 0.0)
        delta = value - prev if value >= prev else value
        if delta > 0:
            out[key] = delta
    return out


def quality_rates(counts: Mapping[str, int]) -> tuple[float | None, float | None]:
    """``(precision, recall)`` from counts of needed / false_positive / miss; ``None``
    where the denominator is 0. Example: needed 3, false_positive 1, miss 2 →
    ``(0.75, 0.6)``."""
    needed = counts.get("needed", 0)
    fp = counts.get("false_positive", 0)
    miss = counts.get("miss", 0)
    precision = needed / (needed + fp) if needed + fp else None
    recall = needed / (needed + miss) if needed + miss else None
    return precision, recall


def _number(d: Mapping[str, Any], key: str, where: str) -> float | None:
    """``d[key]`` as a finite float; ``None`` when missing, null, inf or nan. A value
    that is not a number raises ``ValueError`` naming ``where`` and ``key``."""
    v = d.get(key)
    if type(v) is float:  # the common case, fast
        return v if math.isfinite(v) else None
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{where}.{key} must be a number, got {v!r}")
    v = float(v)
    return v if math.isfinite(v) else None


def _require(d: Any, key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(d).__name__}")
    if key not in d:
        raise ValueError(f"{where} has no {key!r}")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ValueError(f"{where}.{key} has the wrong type: {v!r}")
    return v


# --------------------------------------------------------------------------- the pure book


class Point(NamedTuple):
    """One value of one series: ``name`` as registered (without ``ray_``); ``labels``
    sorted by label name."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.labels)


def _point(name: str, value: float, **labels: str) -> Point:
    return Point(name, tuple(sorted(labels.items())), float(value))


@dataclass
class TickUpdate:
    """What one tick writes: gauges to set, counters to increment, histogram
    observations."""

    gauges: list[Point] = field(default_factory=list)
    counters: list[Point] = field(default_factory=list)
    histograms: list[Point] = field(default_factory=list)

    def get(self, name: str, **labels: str) -> float | None:
        """The value of series ``name{labels}`` in this update (counters: the increment;
        histograms: the sum of the observations), or ``None``."""
        key = tuple(sorted(labels.items()))
        found = [p.value for p in self.gauges + self.counters + self.histograms
                 if p.name == name and p.labels == key]
        return sum(found) if found else None


class MetricsBook:
    """Turns one tick's plain dicts into a :class:`TickUpdate`; keeps what must carry
    over between ticks (label slots, the outcome window, the last drop counts, the last
    thresholds). Pure: no Ray, no clock — time is the tick's ``summary["now_s"]``.

    Bad input raises ``ValueError`` naming the field and leaves the book unchanged.
    """

    def __init__(self, max_containers: int = 1000, max_apps: int = 1000,
                 window_s: float = 3600.0, max_window_outcomes: int = 100_000,
                 outcome_source: str = "judgements") -> None:
        if outcome_source not in OUTCOME_SOURCES:
            raise ValueError(f"outcome_source must be one of {OUTCOME_SOURCES}, "
                             f"got {outcome_source!r}")
        for name, v in (("max_containers", max_containers), ("max_apps", max_apps),
                        ("max_window_outcomes", max_window_outcomes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0, got {window_s!r}")
        self.max_containers = max_containers
        self.max_apps = max_apps
        self.window_s = float(window_s)
        self.containers: frozenset[str] = frozenset()
        self.apps: frozenset[str] = frozenset()
        self.thresholds: dict[tuple[str, str], float] = {}  # (app, tier) → threshold
        self.dropped: dict[str, float] = {}  # last cumulative drop counts by raw reason
        self.window: deque[tuple[float, str, str]] = deque(maxlen=max_window_outcomes)
        self.outcome_source = outcome_source

    # -- checkpoint (optional: the window survives a coordinator restart) ----------------
    def state(self) -> dict[str, Any]:
        return {"window": [list(w) for w in self.window]}

    def restore(self, state: Mapping[str, Any]) -> None:
        window = [(float(t), str(tier), str(o)) for t, tier, o in state.get("window", [])]
        self.window.clear()
        self.window.extend(window)

    # -- one tick ---------------------------------------------------------------------------
    def plan(self, summary: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]],
             outcomes: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
             ) -> TickUpdate:
        """The metric updates of one tick.

        ``summary``: ``run_once``'s summary with ``now_s`` and ``tick_s`` (required), and
        optionally ``dropped`` (the monitor's cumulative drop counts by reason) and
        ``thresholds`` (``{app: {tier: threshold}}``; ``""`` is the default app).
        ``status_rows``: the rows of ``status.json`` (``name``, ``p_fail_<tier>``,
        ``memory_usage_bytes``, ``memory_limit_bytes``, ``memory_time_to_limit_s``).
        ``outcomes``: this tick's judgements (or lead-time outcomes, see
        ``outcome_source``).
        ``records``: this tick's decision / action / event records (records of kind
        ``outcome`` here are ignored: outcomes are read from ``outcomes`` only).
        """
        if not isinstance(summary, Mapping):
            raise ValueError(f"summary must be a dict, got {type(summary).__name__}")
        now_s = _number(summary, "now_s", "summary")
        tick_s = _number(summary, "tick_s", "summary")
        if now_s is None:
            raise ValueError("summary.now_s must be a finite number")
        if tick_s is None or tick_s < 0:
            raise ValueError(f"summary.tick_s must be a finite number >= 0, "
                             f"got {summary.get('tick_s')!r}")
        up = TickUpdate()
        up.histograms.append(_point(TICK, tick_s))

        containers = self._container_gauges(status_rows, up)
        counts, thresholds = self._records(records)
        thresholds = self._summary_thresholds(summary, thresholds)
        apps = self._threshold_gauges(thresholds, up)
        new_outcomes = self._outcomes(outcomes, records, now_s)
        dropped = self._dropped(summary, up)
        for name, labels, n in counts:
            up.counters.append(_point(name, n, **labels))

        # commit: nothing above changed the book
        self.containers, self.apps, self.thresholds = containers, apps, thresholds
        self.dropped = dropped
        for t_s, tier, kind in new_outcomes:
            self.window.append((t_s, tier, kind))
            up.counters.append(_point(OUTCOMES, 1, tier=tier, outcome=kind))
        self._quality_gauges(now_s, up)
        up.counters = _merge(up.counters)
        return up

    def _container_gauges(self, rows: Sequence[Mapping[str, Any]], up: TickUpdate
                          ) -> frozenset[str]:
        if not isinstance(rows, Sequence):
            raise ValueError(f"status_rows must be a list, got {type(rows).__name__}")
        names = [_require(r, "name", f"status_rows[{i}]") for i, r in enumerate(rows)]
        slots = assign_slots(names, self.containers, self.max_containers)
        other_p: dict[str, float] = {}
        other_headroom: float | None = None
        other_ttl: float | None = None
        gauges = up.gauges
        for i, (name, row) in enumerate(zip(names, rows, strict=True)):
            where = f"status_rows[{i}]"
            label = name if name in slots else OTHER
            for tier, key in _P_FAIL_KEYS:
                p = _number(row, key, where)
                if p is None:
                    continue
                if label == OTHER:
                    other_p[tier] = max(p, other_p.get(tier, -math.inf))
                else:
                    gauges.append(Point(P_FAIL, (("container", name), ("tier", tier)), p))
            usage = _number(row, "memory_usage_bytes", where)
            limit = _number(row, "memory_limit_bytes", where)
            ttl = _number(row, "memory_time_to_limit_s", where)
            headroom = limit - usage if usage is not None and limit is not None else None
            if label == OTHER:
                if headroom is not None:
                    other_headroom = headroom if other_headroom is None else min(
                        other_headroom, headroom)
                if ttl is not None:
                    other_ttl = ttl if other_ttl is None else min(other_ttl, ttl)
                continue
            if headroom is not None:
                gauges.append(Point(HEADROOM, (("container", name),), headroom))
            if ttl is not None:
                gauges.append(Point(TIME_TO_LIMIT, (("container", name),), ttl))
        for tier, p in other_p.items():
            up.gauges.append(_point(P_FAIL, p, container=OTHER, tier=tier))
        if other_headroom is not None:
            up.gauges.append(_point(HEADROOM, other_headroom, container=OTHER))
        if other_ttl is not None:
            up.gauges.append(_point(TIME_TO_LIMIT, other_ttl, container=OTHER))
        up.gauges.append(_point(WATCHED, len(rows)))
        return slots

    def _records(self, records: Sequence[Mapping[str, Any]]):
        if not isinstance(records, Sequence):
            raise ValueError(f"records must be a list, got {type(records).__name__}")
        counts: list[tuple[str, dict[str, str], float]] = []
        thresholds = dict(self.thresholds)
        for i, rec in enumerate(records):
            where = f"records[{i}]"
            kind = _require(rec, "kind", where)
            if kind in ("decision", "action"):
                tier = _require(rec, "tier", where)
                thr = _number(rec, "threshold", where)
                if thr is not None:
                    thresholds[(str(rec.get("app") or ""), tier)] = thr
            if kind == "action":
                result = _require(rec, "result", where)
                verdict = rec.get("verdict") or VERDICT_OF_RESULT.get(result, OTHER)
                counts.append((ACTIONS, {
                    "kind": enum_label(rec.get("action_kind", ActionKind.RESIZE.value),
                                       ACTION_KINDS),
                    "tier": enum_label(tier, TIERS),
                    "verdict": enum_label(verdict, VERDICTS),
                    "result": enum_label(result, RESULTS),
                }, 1.0))
            elif kind == "event":
                event = _require(rec, "event", where)
                if event == MODEL_ERROR_EVENT:
                    counts.append((MODEL_ERRORS, {}, 1.0))
                else:
                    counts.append((EVENTS, {"event": enum_label(event, EVENT_KINDS)}, 1.0))
        return counts, thresholds

    @staticmethod
    def _summary_thresholds(summary: Mapping[str, Any], thresholds: dict) -> dict:
        given = summary.get("thresholds")
        if given is None:
            return thresholds
        if not isinstance(given, Mapping):
            raise ValueError("summary.thresholds must be {app: {tier: threshold}}")
        out: dict[tuple[str, str], float] = {}
        for app, tiers in given.items():
            if not isinstance(tiers, Mapping):
                raise ValueError(f"summary.thresholds[{app!r}] must be {{tier: threshold}}")
            for tier in tiers:
                v = _number(tiers, tier, f"summary.thresholds[{app!r}]")
                if v is not None:
                    out[(str(app), str(tier))] = v
        return out

    def _threshold_gauges(self, thresholds: dict[tuple[str, str], float], up: TickUpdate
                          ) -> frozenset[str]:
        apps = [a or DEFAULT_APP for a, _ in sorted(thresholds)]
        slots = assign_slots(apps, self.apps, self.max_apps)
        merged: dict[tuple[str, str], float] = {}
        for (app, tier), v in thresholds.items():
            label = app or DEFAULT_APP
            key = (label if label in slots else OTHER, enum_label(tier, TIERS))
            merged[key] = min(v, merged.get(key, math.inf))
        for (app, tier), v in sorted(merged.items()):
            up.gauges.append(_point(THRESHOLD, v, app=app, tier=tier))
        return slots

    def _outcomes(self, outcomes: Sequence[Mapping[str, Any]],
                  records: Sequence[Mapping[str, Any]], now_s: float
                  ) -> list[tuple[float, str, str]]:
        if not isinstance(outcomes, Sequence):
            raise ValueError(f"outcomes must be a list, got {type(outcomes).__name__}")
        new: list[tuple[float, str, str]] = []
        failed: set[str] = set()
        judgements = self.outcome_source == "judgements"
        for i, o in enumerate(outcomes):
            where = f"outcomes[{i}]"
            if not isinstance(o, Mapping):
                raise ValueError(f"{where} must be a dict, got {type(o).__name__}")
            if judgements:
                kind = o.get("kind")
                if kind not in OUTCOME_KINDS:
                    raise ValueError(f"{where} is not a judgement: kind must be one of "
                                     f"{OUTCOME_KINDS}, got {kind!r} (outcome_source="
                                     f"'judgements')")
                tier = enum_label(_require(o, "tier", where), TIERS)
                t_s = _number(o, "judged_s", where)
            else:
                raw = _require(o, "outcome", where)
                if raw == "failed":
                    failed.add(str(o.get("container")))
                kind, tier = LEAD_TIME_OUTCOME.get(raw), Tier.MEMORY.value
                t_s = _number(o, "t_outcome_s", where)
            if kind is not None:
                new.append((now_s if t_s is None else t_s, tier, kind))
        if not judgements:  # misses: OOM kills that no failed outcome explains
            for i, rec in enumerate(records):
                if (rec.get("kind") == "event" and rec.get("event") == EventKind.OOM_KILL.value
                        and str(rec.get("container")) not in failed):
                    t_s = _number(rec, "ts_s", f"records[{i}]")
                    new.append((now_s if t_s is None else t_s, Tier.MEMORY.value, "miss"))
        return new

    def _dropped(self, summary: Mapping[str, Any], up: TickUpdate) -> dict[str, float]:
        given = summary.get("dropped")
        if given is None:
            return dict(self.dropped)
        if not isinstance(given, Mapping):
            raise ValueError("summary.dropped must be {reason: count}")
        current: dict[str, float] = {}
        for reason in given:
            v = _number(given, reason, "summary.dropped")
            if v is None or v < 0:
                raise ValueError(f"summary.dropped[{reason!r}] must be a count >= 0, "
                                 f"got {given[reason]!r}")
            current[str(reason)] = v
        for reason, delta in counter_deltas(self.dropped, current).items():
            up.counters.append(_point(DROPPED, delta, reason=enum_label(reason, DROP_REASONS)))
        return current

    def _quality_gauges(self, now_s: float, up: TickUpdate) -> None:
        while self.window and self.window[0][0] < now_s - self.window_s:
            self.window.popleft()
        counts: dict[str, dict[str, int]] = {}
        for t_s, tier, kind in self.window:
            if t_s >= now_s - self.window_s:  # (out-of-order times: count only the window)
                c = counts.setdefault(tier, {})
                c[kind] = c.get(kind, 0) + 1
        for tier, c in sorted(counts.items()):
            precision, recall = quality_rates(c)
            if precision is not None:
                up.gauges.append(_point(PRECISION, precision, tier=tier))
            if recall is not None:
                up.gauges.append(_point(RECALL, recall, tier=tier))


def _merge(points: list[Point]) -> list[Point]:
    """Counter increments of the same series added up (one ``inc`` per series)."""
    total: dict[tuple[str, tuple], float] = {}
    for p in points:
        total[(p.name, p.labels)] = total.get((p.name, p.labels), 0.0) + p.value
    return [Point(n, labels, v) for (n, labels), v in total.items()]


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


# --------------------------------------------------------------------------- Ray shells


def _ray_metrics(specs: Iterable[MetricSpec], module: Any) -> dict[str, Any]:
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


class CoordinatorMetrics:
    """The coordinator's metrics: create it inside the coordinator actor and call
    :meth:`record_tick` once per tick. See the module docstring for the exported names,
    the labels and the freshness rule."""

    def __init__(self, max_containers: int = 1000, max_apps: int = 1000,
                 window_s: float = 3600.0, outcome_source: str = "judgements") -> None:
        from ray.util import metrics as ray_metrics

        self.book = MetricsBook(max_containers=max_containers, max_apps=max_apps,
                                window_s=window_s, outcome_source=outcome_source)
        self._metrics = _ray_metrics(COORDINATOR_METRICS, ray_metrics)

    def record_tick(self, summary: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]],
                    outcomes: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
                    ) -> TickUpdate:
        """Write one tick's metrics (see :meth:`MetricsBook.plan` for the inputs) and
        return what was written. Bad input raises ``ValueError`` and writes nothing."""
        up = self.book.plan(summary, status_rows, outcomes, records)
        for p in up.gauges:
            self._metrics[p.name].set(p.value, tags=p.tags)
        for p in up.counters:
            if p.value > 0:
                self._metrics[p.name].inc(p.value, tags=p.tags)
        for p in up.histograms:
            self._metrics[p.name].observe(p.value, tags=p.tags)
        return up


class ServeMetrics:
    """Request count and latency of the Serve app, by route and status code.

    Create one per replica with the routes the app serves and call :meth:`observe` once
    per request — or wrap the ASGI app in :class:`MetricsMiddleware`, which does it::

        api.add_middleware(MetricsMiddleware, metrics=ServeMetrics(ROUTES))

    Inside a replica, ``ray.serve.metrics`` adds the ``deployment``, ``replica`` and
    ``application`` labels.
    """

    def __init__(self, routes: Iterable[str]) -> None:
        from ray.serve import metrics as serve_metrics

        self.routes = frozenset(routes)
        if not self.routes or not all(isinstance(r, str) and r.startswith("/")
                                      for r in self.routes):
            raise ValueError(f"routes must be paths starting with '/', got {sorted(self.routes)}")
        self._metrics = _ray_metrics(SERVE_METRICS, serve_metrics)

    def observe(self, route: str, status_code: int, duration_s: float) -> None:
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)
                and duration_s >= 0):
            raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
        tags = {"route": route_label(route, self.routes), "code": code_label(status_code)}
        self._metrics[SERVE_REQUESTS].inc(1.0, tags=tags)
        self._metrics[SERVE_LATENCY].observe(float(duration_s), tags=tags)


class MetricsMiddleware:
    """ASGI middleware: one :meth:`ServeMetrics.observe` per HTTP request, with the
    path (``root_path`` removed) as the route, the status code the app sent (500 when it
    raised before sending one) and the seconds from the request to the end of the
    response. Add it last (outermost), so that requests refused by other middleware
    (401, 413) are counted too."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_and_watch(message: dict) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 500))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            path, root = scope.get("path", ""), scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            self.metrics.observe(path or "/", status, time.perf_counter() - t0)
