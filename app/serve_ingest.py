"""``/v1/samples``: what to store of a request, and what to drop and why (pure)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prescale.app.api_models import (
    SamplesRequest,
)
from prescale.app.core.sample import Event, EventKind, Sample
from prescale.app.core.validation import EPOCH_2000_S, Validator
from prescale.app.loop import records as rec

_MAX_FUTURE_S = 300.0


@dataclass
class IngestPlan:
    samples: list[Sample]
    records: list[dict[str, Any]]
    events: list[Event]
    dropped: Counter


def plan_ingest(
    req: SamplesRequest,
    now_s: float,
    *,
    block_timeouts_s: Mapping[str, float],
    app_ok: Callable[[str], bool] = lambda _a: True,
    max_future_s: float = _MAX_FUTURE_S,
) -> IngestPlan:
    """What to store of ``req``, and what to drop and why.

    Samples go through :class:`~app.core.validation.Validator` (its reasons: bad
    timestamp, negative or absurd value, no data, timestamp not increasing): each
    container's samples are taken in ``ts_s`` order, the k-th sample of every
    container forming the k-th validated batch, so a repeated ``ts_s`` is dropped as
    ``timestamp_not_increasing``. A sample whose app cannot be stored → ``bad_app``.
    Timings become ``timing`` records; a bad one is dropped as
    ``timing:bad_duration`` (not finite or < 0) or ``timing:bad_timestamp``; one that
    reports a timeout or ran longer than ``block_timeouts_s[block]`` also gives a
    ``timeout`` event.

    Worked example: samples a@100 (t = 1.7e9 + 100) twice, b with memory −1; a timing
    with duration −1 → 1 sample stored; dropped {"timestamp_not_increasing": 1,
    "negative:memory_usage_bytes": 1, "timing:bad_duration": 1}.
    """
    from prescale.app.telemetry.timings import TimingRecord, is_timeout

    dropped: Counter = Counter()
    samples = []
    for s in req.samples:
        if not app_ok(s.app):
            dropped["bad_app"] += 1
            continue
        samples.append(Sample(s.container, *s.row(), app=s.app))
    samples.sort(key=lambda s: (math.isnan(s.ts_s), 0.0 if math.isnan(s.ts_s) else s.ts_s))
    rounds: list[list[Sample]] = []
    seen: Counter = Counter()
    for s in samples:
        k = seen[s.container]
        seen[s.container] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(s)
    validator = Validator(max_future_s=max_future_s)
    kept = [s for r in rounds for s in validator.filter(r, now_s)]
    dropped.update(validator.dropped)

    records: list[dict[str, Any]] = []
    events: list[Event] = []
    for t in req.timings:
        ts = now_s if t.ts_s is None else float(t.ts_s)
        if not (math.isfinite(t.duration_s) and t.duration_s >= 0):
            dropped["timing:bad_duration"] += 1
            continue
        if not (math.isfinite(ts) and EPOCH_2000_S <= ts <= now_s + max_future_s):
            dropped["timing:bad_timestamp"] += 1
            continue
        if not app_ok(t.app):
            dropped["timing:bad_app"] += 1
            continue
        records.append(rec.to_dict(rec.TimingRecord(ts, t.container, t.app, t.block,
                                                     float(t.duration_s), t.ok, t.timeout,
                                                     t.error)))
        why = is_timeout(TimingRecord(t.container, t.block, float(t.duration_s), t.ok,
                                      t.timeout, ts, t.app), block_timeouts_s)
        if why is not None:
            events.append(Event(t.container, ts, EventKind.TIMEOUT, why, t.app))
    return IngestPlan(kept, records, events, dropped)
