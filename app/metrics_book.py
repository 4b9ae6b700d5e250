"""The metrics book: one tick's summary, rows, outcomes and records → the metric updates.

:class:`MetricsBook` is pure (no Ray, no clock, no I/O): it turns one tick's summary,
status rows, outcomes and records into a :class:`TickUpdate` (gauges to set, counters
to increment, histogram observations) and keeps what carries over between ticks
(label slots, the outcome window, the last drop counts and thresholds). Names, labels
and label rules: :mod:`app.metric_specs`; the Ray shell that writes the updates:
:class:`actors.metrics.CoordinatorMetrics`. Cost: ≈ 36 ms per tick for 1000
watched containers inside a Ray actor, measured on a busy 2-core machine (load ≈ 9).

**Prediction quality** over a rolling window of ``window_s`` seconds (1 h by default)
of outcome time, per tier, from the outcomes of each tick. ``outcome_source`` says
which kind the coordinator passes (one kind only, so nothing is counted twice):

- ``"judgements"`` (the default): :class:`app.core.outcomes.Judgement` dicts
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
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prescale.app.core.actions import ActionKind
from prescale.app.core.outcomes import LEAD_TIME_JUDGEMENT
from prescale.app.core.sample import EventKind, Tier
from prescale.app.loop.records import (
    KINDS,
    ActionRecord,
    DecisionRecord,
    EventRecord,
    Record,
    parse,
)
from prescale.app.metric_specs import (
    ACTION_KINDS,
    ACTIONS,
    DEFAULT_APP,
    DEGRADED,
    DROP_REASONS,
    DROPPED,
    EVENT_KINDS,
    EVENTS,
    HEADROOM,
    MODEL_ERRORS,
    OTHER,
    OUTCOME_KINDS,
    OUTCOMES,
    P_FAIL,
    PRECISION,
    RECALL,
    RESULTS,
    THRESHOLD,
    TICK,
    TIERS,
    TIME_TO_LIMIT,
    VERDICTS,
    WATCHED,
    assign_slots,
    enum_label,
)

OUTCOME_SOURCES = ("judgements", "lead_time")
RECORD_TYPES = tuple(KINDS.values())
#: Lead-time outcome → judgement (the core's reading); ``gone`` is not judged.
LEAD_TIME_OUTCOME = LEAD_TIME_JUDGEMENT
_P_FAIL_KEYS = tuple((t.value, f"p_fail_{t.value}") for t in Tier)
MODEL_ERROR_EVENT = "model_error"  # event records of refused model versions
#: The pool's verdict implied by an action's result when the record does not carry it.
VERDICT_OF_RESULT = {"applied": "granted", "dry_run": "granted", "failed": "granted",
                     "denied": "denied", "deferred": "deferred"}


# --------------------------------------------------------------------------- pure helpers


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


def typed_records(records: Any) -> list[Record]:
    """Decision-log records as typed records: a typed one is kept, a dict is read with
    :func:`app.loop.records.parse`. Raises ``ValueError`` naming the index of a record
    that is not one (``records[2]: action record without 'result'``)."""
    if not isinstance(records, Sequence) or isinstance(records, str | bytes):
        raise ValueError(f"records must be a list, got {type(records).__name__}")
    out: list[Record] = []
    for i, r in enumerate(records):
        if isinstance(r, Mapping):
            try:
                r = parse(r)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"records[{i}]: {exc}") from None
        elif not isinstance(r, RECORD_TYPES):
            raise ValueError(f"records[{i}] must be a record or a dict, "
                             f"got {type(r).__name__}")
        out.append(r)
    return out


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
             outcomes: Sequence[Mapping[str, Any]],
             records: Sequence[Mapping[str, Any] | Record]) -> TickUpdate:
        """The metric updates of one tick.

        ``summary``: ``run_once``'s summary with ``now_s`` and ``tick_s`` (required), and
        optionally ``degraded`` (the degraded state, or ``None``), ``dropped`` (the
        monitor's cumulative drop counts by reason) and
        ``thresholds`` (``{app: {tier: threshold}}``; ``""`` is the default app).
        ``status_rows``: the rows of ``status.json`` (``name``, ``p_fail_<tier>``,
        ``memory_usage_bytes``, ``memory_limit_bytes``, ``memory_time_to_limit_s``).
        ``outcomes``: this tick's judgements (or lead-time outcomes, see
        ``outcome_source``).
        ``records``: this tick's decision-log records, typed or as stored dicts (one
        schema: :mod:`app.loop.records`; a dict that is not a record raises
        ``ValueError`` naming its index and field). Decisions and actions give
        thresholds, actions and events are counted; other kinds (outcome, judgement, …)
        are ignored here: outcomes are read from ``outcomes`` only.
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
        up.gauges.append(_point(DEGRADED, 1.0 if summary.get("degraded") else 0.0))

        containers = self._container_gauges(status_rows, up)
        typed = typed_records(records)
        counts, thresholds = self._records(typed)
        thresholds = self._summary_thresholds(summary, thresholds)
        apps = self._threshold_gauges(thresholds, up)
        new_outcomes = self._outcomes(outcomes, typed, now_s)
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

    def _records(self, records: Sequence[Record]):
        """The tick's typed records → action and event counts, and the thresholds the
        decisions and actions carried."""
        counts: list[tuple[str, dict[str, str], float]] = []
        thresholds = dict(self.thresholds)
        for r in records:
            if isinstance(r, DecisionRecord | ActionRecord):
                if math.isfinite(r.threshold):
                    thresholds[(r.app or "", r.tier)] = float(r.threshold)
            if isinstance(r, ActionRecord):
                verdict = r.verdict or VERDICT_OF_RESULT.get(r.result, OTHER)
                counts.append((ACTIONS, {
                    "kind": enum_label(r.action_kind or ActionKind.RESIZE.value,
                                       ACTION_KINDS),
                    "tier": enum_label(r.tier, TIERS),
                    "verdict": enum_label(verdict, VERDICTS),
                    "result": enum_label(r.result, RESULTS),
                }, 1.0))
            elif isinstance(r, EventRecord):
                if r.event == MODEL_ERROR_EVENT:
                    counts.append((MODEL_ERRORS, {}, 1.0))
                else:
                    counts.append((EVENTS, {"event": enum_label(r.event, EVENT_KINDS)}, 1.0))
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
                  records: Sequence[Record], now_s: float
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
            for r in records:
                if (isinstance(r, EventRecord) and r.event == EventKind.OOM_KILL.value
                        and r.container not in failed):
                    t_s = r.ts_s if math.isfinite(r.ts_s) else now_s
                    new.append((t_s, Tier.MEMORY.value, "miss"))
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

