"""Prediction jobs of the HTTP API (pure: no I/O, no Ray): a request as a window array
(:func:`window_of`), request limits (:func:`oversize_reason`), batched prediction
(:func:`predict_jobs`: one ``compute_features`` per window length, one predictor call,
each app's model once per batch), the JSON of ``/v1/predict`` (:func:`prediction_json`)
and of ``/v1/recommend`` (:func:`recommend_json`: the engine's own decide path).

Worked example (batching): 3 requests with 1, 100 and 1 containers whose windows all
have 20 samples → one ``compute_features`` over ``[102, 20, M]`` and one ``predict``
over ``[102, F]``; with a fourth of 1,000 containers (≥ ``STACK_MAX_CONTAINERS``) →
its own ``compute_features`` over ``[1000, 20, M]``, still one ``predict`` over
``[1102, F]``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prescale.app.api_models import (
    PredictRequest,
    out_number,
)
from prescale.app.core.engine import Engine, EngineConfig, Plan, Snapshot
from prescale.app.core.features import FEATURES, F, compute_features
from prescale.app.core.predictor import Prediction, TierPrediction, TrendExhaustionPredictor
from prescale.app.core.sample import METRICS, Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.settings import Settings

log = logging.getLogger('prescale.serve')

@dataclass
class Job:
    """One prediction request, as arrays. Either ``window`` ``[N, W, M]`` or
    ``features`` ``[N, F]`` is set; ``latest_ts_s`` is the newest sample (nan if none)."""

    names: list[str]
    apps: list[str]
    window: np.ndarray | None = None
    features: np.ndarray | None = None
    latest_ts_s: float = math.nan
    now_s: float | None = None

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class JobResult:
    """The prediction of one job: per tier arrays for its rows, the feature rows, and
    what produced each row's p_fail of the model tier (label, version id or None)."""

    prediction: Prediction
    features: np.ndarray
    model_of: list[tuple[str, str | None]]
    model_tier: Tier


def window_of(req: PredictRequest) -> Job:
    """The job of a request: windows right-aligned in one ``[N, W, M]`` array (``W`` =
    the longest window; shorter windows are padded at the start with all-``nan`` rows,
    which :func:`compute_features` treats as absent), each sorted by ``ts_s``.

    Worked example: containers a (3 samples) and b (1 sample) → shape ``[2, 3, M]``;
    b's row 2 holds its sample, its rows 0 and 1 are ``nan``.
    """
    if req.features is not None:
        feats = np.array(req.features, dtype=np.float64).reshape(  # None → nan
            len(req.features), len(FEATURES))
        n = feats.shape[0]
        names = list(req.names) if req.names is not None else [f"row-{i}" for i in range(n)]
        apps = list(req.apps) if req.apps is not None else [""] * n
        return Job(names, apps, features=feats, now_s=req.now_s)
    containers = req.containers or []
    width = max(c.rows().shape[0] for c in containers)
    window = np.full((len(containers), width, len(METRICS)), np.nan)
    for i, c in enumerate(containers):
        rows = c.rows()
        window[i, width - rows.shape[0]:] = rows
    latest = float(np.nanmax(window[:, -1, 0])) if containers else math.nan
    return Job([c.name for c in containers], [c.app for c in containers], window=window,
               latest_ts_s=latest, now_s=req.now_s)


def oversize_reason(req: PredictRequest, *, max_containers: int, max_samples: int) -> str | None:
    """Why ``req`` is too large to serve (413), or None.

    Worked example (max_samples 1000): 10 containers whose longest window has 200
    samples → 2000 padded samples → "containers × longest window = 10 × 200 = 2000
    samples is above max_samples = 1000".
    """
    n = req.n_containers()
    if req.containers is None:
        return size_reason(n, 0, 0, max_containers=max_containers, max_samples=max_samples)
    lengths = [c.rows().shape[0] for c in req.containers]
    return size_reason(n, sum(lengths), max(lengths, default=0),
                       max_containers=max_containers, max_samples=max_samples)


def size_reason(n: int, total: int, width: int, *, max_containers: int,
                max_samples: int) -> str | None:
    """Why ``n`` containers with ``total`` samples, the longest window ``width`` long,
    are too many for one request (413), or None; the words of :func:`oversize_reason`,
    for every body format."""
    if n > max_containers:
        return f"{n} containers in one request is above max_containers = {max_containers}"
    if total > max_samples:
        return f"{total} samples in one request is above max_samples = {max_samples}"
    if n * width > max_samples:
        return (f"containers × longest window = {n} × {width} = {n * width} samples "
                f"is above max_samples = {max_samples}")
    return None


ModelLookup = Callable[[str], "tuple[Any, Any] | None"]
#: A job with at least this many containers is featurised alone rather than stacked with
#: the other jobs of its batch: it is a long vectorised pass by itself, and stacking
#: would copy its window (and lose the layout of app.serve_bodies.windows).
STACK_MAX_CONTAINERS = 256


def predict_jobs(
    jobs: Sequence[Job],
    predictor: TrendExhaustionPredictor,
    *,
    recent_steps: int,
    model_tier: Tier,
    lookup: ModelLookup | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[JobResult]:
    """Predict every job of a batch at once (see the module doc).

    ``lookup(app)`` gives the ``(ModelVersion, FailureModel)`` serving ``app`` (its own
    or the global one) or None; where it gives one, that model's probability replaces
    the heuristic's p_fail of ``model_tier`` for the app's rows (time to limit,
    forecast and limit stay the heuristic's, as in the coordinator). A model that
    needs the raw window is skipped for jobs given as features; a model that fails
    leaves the heuristic in place and reports through ``on_error``.
    """
    if not jobs:
        return []
    sizes = [len(j) for j in jobs]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    total = int(starts[-1])
    feats = np.empty((total, len(FEATURES)))
    # featurise: one vectorised pass per window length over the small jobs; a job of
    # STACK_MAX_CONTAINERS or more is a pass of its own (no copy into a stack)
    by_width: dict[Any, list[int]] = {}
    for k, j in enumerate(jobs):
        if j.features is not None:
            feats[starts[k]:starts[k + 1]] = j.features
        elif len(j) >= STACK_MAX_CONTAINERS:
            by_width[("alone", k)] = [k]
        else:
            by_width.setdefault(j.window.shape[1], []).append(k)
    for ks in by_width.values():
        windows = [jobs[k].window for k in ks]
        stacked = np.concatenate(windows) if len(windows) > 1 else windows[0]
        out = compute_features(stacked, recent_steps=recent_steps)
        pos = 0
        for k in ks:
            feats[starts[k]:starts[k + 1]] = out[pos:pos + sizes[k]]
            pos += sizes[k]
    pred = predictor.predict(feats)
    model_of: list[tuple[str, str | None]] = [(pred.model, None)] * total
    if lookup is not None:
        _apply_models(jobs, starts, feats, pred, model_tier, lookup, model_of, on_error)
    _check_finite(jobs, starts, pred)
    results = []
    for k in range(len(jobs)):
        sl = slice(starts[k], starts[k + 1])
        tiers = {
            t: TierPrediction(tp.p_fail[sl], tp.time_to_limit_s[sl], tp.forecast[sl], tp.limit[sl])
            for t, tp in pred.tiers.items()
        }
        results.append(JobResult(Prediction(pred.horizon_s, pred.model, tiers), feats[sl],
                                 model_of[sl], model_tier))
    return results


def _check_finite(jobs: Sequence[Job], starts: np.ndarray, pred: Prediction) -> None:
    """``ValueError`` naming the first container whose p_fail is not a number (inputs
    within the request limits whose arithmetic still overflows, e.g. a rate over a
    5e-324 s step): JSON has no ``nan``, and a made-up probability would be worse."""
    for tier, tp in pred.tiers.items():
        bad = ~np.isfinite(tp.p_fail)
        if bad.any():
            row = int(np.argmax(bad))
            k = int(np.searchsorted(starts, row, side="right")) - 1
            job = jobs[k]
            what = "features" if job.features is not None else "containers"
            i = row - int(starts[k])
            raise ValueError(
                f"{what}[{i}] ({job.names[i]!r}): the {tier.value} p_fail is not a number; "
                "its values overflow floating-point arithmetic (e.g. huge values over "
                "tiny time steps): send values in their real units")


def _apply_models(jobs, starts, feats, pred, tier, lookup, model_of, on_error) -> None:
    rows_of: dict[str, list[int]] = {}
    for k, j in enumerate(jobs):
        for i, app in enumerate(j.apps):
            rows_of.setdefault(app, []).append(int(starts[k]) + i)
    job_of_row = np.repeat(np.arange(len(jobs)), [len(j) for j in jobs])
    p_fail = pred.tiers[tier].p_fail
    for app, rows in rows_of.items():
        found = lookup(app)
        if found is None:
            continue
        version, model = found
        label = f"{version.app}/{version.version_id} ({version.kind})"
        try:
            if model.input == "window":
                # the raw window: only rows given as windows, one call per window length
                groups: dict[int, list[int]] = {}
                for r in rows:
                    j = jobs[job_of_row[r]]
                    if j.window is not None:
                        groups.setdefault(j.window.shape[1], []).append(r)
                for rs in groups.values():
                    x = np.stack([jobs[job_of_row[r]].window[r - starts[job_of_row[r]]]
                                  for r in rs])
                    p_fail[rs] = _checked_proba(model.predict_proba(x), len(rs))
                    for r in rs:
                        model_of[r] = (label, version.version_id)
                continue
            cols = [F[name] for name in version.features]
            idx = np.array(rows)
            p_fail[idx] = _checked_proba(model.predict_proba(feats[idx][:, cols]), len(rows))
            for r in rows:
                model_of[r] = (label, version.version_id)
        except Exception as exc:  # noqa: BLE001 - a bad model never fails the request
            if on_error is not None:
                on_error(f"{label}: predict failed for app {app!r}, heuristic used: "
                         f"{type(exc).__name__}: {exc}")


def _checked_proba(p: Any, n: int) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,) or not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"predict_proba returned shape {arr.shape} / values outside [0, 1]")
    return arr


def _out_list(values: np.ndarray) -> list[float | None]:
    """:func:`out_number` of every value, as a list: finite values as they are, every
    other one ``None`` (vectorised: only the values that are not finite are looked at
    one by one). Worked example: ``[1.5, inf, nan]`` → ``[1.5, None, None]``."""
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if finite.all():
        return values.tolist()
    out = values.astype(object)
    out[~finite] = None
    return out.tolist()


#: Usage metric and limit metric of the heuristic's tiers (for the words of a reason).
_REASON_METRICS = {Tier.MEMORY: ("memory_usage_bytes", "memory_limit_bytes"),
                   Tier.CPU: ("cpu_usage_s_total", "cpu_quota_cores")}


def no_forecast_reasons(res: JobResult, min_samples: int | None
                        ) -> dict[Tier, list[str | None]]:
    """Per tier, for each container, why its p_fail is no forecast — the heuristic
    (:class:`~app.core.predictor.TrendExhaustionPredictor`) serves that tier and cannot
    judge it — or None (p_fail is a forecast). A tier served by a registered model is
    never given a reason (the model judged). The heuristic cannot judge, first match:

    1. fewer present samples than ``min_samples`` (it gives p_fail 0 then);
    2. the limit is unknown (``nan``: ``null`` in every sample of the window, or a
       ``null`` feature);
    3. a finite limit but no forecast (``nan``): memory needs 2 ``memory_usage_bytes`` readings
       at distinct times for a slope; CPU needs 3 ``cpu_usage_s_total`` readings (2
       rates) for the slope of its rate.

    An unlimited tier (limit ``inf``) with enough samples is judged: nothing to run out
    of, p_fail 0. Vectorised: text is built only for the containers that get one.

    Worked examples (``min_samples`` 5): a container with 2 samples → memory and CPU
    ``"2 samples: a trend needs at least 5 (predictor.min_samples), so p_fail 0 is no
    forecast"``; 12 samples with memory usage in one of them under a 512 MiB limit →
    memory ``"fewer than 2 memory_usage_bytes readings at distinct times: a trend
    needs 2, so p_fail 0 is no forecast"``; 12 samples, CPU quota 1 core, two
    ``cpu_usage_s_total`` readings → CPU ``"fewer than 3 cpu_usage_s_total readings: a
    CPU trend needs 3 (2 rates), so p_fail is only the measured throttled fraction"``.
    """
    feats = res.features
    n = feats.shape[0]
    n_samples = feats[:, F["n_samples"]]
    short = (n_samples < min_samples if min_samples is not None
             else np.zeros(n, dtype=bool))
    served = np.array([v is not None for _, v in res.model_of], dtype=bool)
    out: dict[Tier, list[str | None]] = {}
    for tier, tp in res.prediction.tiers.items():
        reasons: list[str | None] = [None] * n
        own = served if tier == res.model_tier else np.zeros(n, dtype=bool)
        usage, limit_name = _REASON_METRICS.get(tier, (f"{tier.value} usage",
                                                       f"{tier.value} limit"))
        unknown_limit = np.isnan(tp.limit)
        no_forecast = np.isfinite(tp.limit) & np.isnan(tp.forecast)
        flagged = ~own & (short | unknown_limit | no_forecast)
        if not flagged.any():
            out[tier] = reasons
            continue
        tail = ("so p_fail is only the measured throttled fraction" if tier == Tier.CPU
                else "so p_fail 0 is no forecast")
        for i in np.flatnonzero(flagged).tolist():
            if short[i]:
                k = int(n_samples[i])
                reasons[i] = (f"{k} sample{'' if k == 1 else 's'}: a trend needs at least "
                              f"{min_samples} (predictor.min_samples), so p_fail 0 is no "
                              "forecast")
            elif unknown_limit[i]:
                reasons[i] = f"{limit_name} unknown (null): p_fail needs the limit, {tail}"
            elif tier == Tier.CPU:
                few = 2 if np.isnan(feats[i, F["cpu_usage_cores_last"]]) else 3
                reasons[i] = (f"fewer than {few} {usage} readings: a CPU trend needs 3 "
                              f"(2 rates), {tail}")
            else:
                reasons[i] = (f"fewer than 2 {usage} readings at distinct times: a trend "
                              f"needs 2, {tail}")
        out[tier] = reasons
    return out


def tier_labels(res: JobResult, tier: Tier) -> tuple[list[str], list[str | None]]:
    """What produced each container's p_fail of ``tier``: labels (a registered model's,
    else the heuristic's name) and registry version ids (None: the heuristic)."""
    if tier == res.model_tier:
        return [label for label, _ in res.model_of], [v for _, v in res.model_of]
    n = res.features.shape[0]
    return [res.prediction.model] * n, [None] * n


def prediction_json(job: Job, res: JobResult, min_samples: int | None = None
                    ) -> list[dict[str, Any]]:
    """The ``predictions`` of a response (numbers as :func:`out_number`: a number or
    null, with ``unlimited`` / ``never_reaches_limit`` saying which null is ``inf``).
    With ``min_samples`` (the heuristic's), a tier the heuristic cannot judge carries
    its ``reason`` (:func:`no_forecast_reasons`; ``forecast_ready`` false, ``note`` the
    same text). Built column by column (one ``tolist`` per tier and quantity), then
    zipped into one object per container and tier."""
    n_samples = res.features[:, F["n_samples"]]
    counts = n_samples.astype(np.int64).tolist()
    reasons = no_forecast_reasons(res, min_samples)
    per_tier = []
    for tier, tp in res.prediction.tiers.items():
        labels, versions = tier_labels(res, tier)
        why = reasons[tier]
        columns = zip(tp.p_fail.astype(np.float64).tolist(), _out_list(tp.time_to_limit_s),
                      np.isposinf(tp.time_to_limit_s).tolist(), _out_list(tp.forecast),
                      _out_list(tp.limit), np.isposinf(tp.limit).tolist(), labels, versions,
                      why, strict=True)
        per_tier.append((tier.value, [
            {"p_fail": p, "time_to_limit_s": ttl, "never_reaches_limit": never,
             "forecast": fc, "limit": lim, "unlimited": unlimited, "model": lab,
             "model_version": ver, "forecast_ready": r is None, "reason": r, "note": r}
            for p, ttl, never, fc, lim, unlimited, lab, ver, r in columns]))
    return [{"name": name, "app": app, "n_samples": count,
             "tiers": {t: rows[i] for t, rows in per_tier}}
            for i, (name, app, count) in enumerate(zip(job.names, job.apps, counts,
                                                       strict=True))]


def recommend_json(
    job: Job, res: JobResult, settings: Settings, now_s: float,
    book: ThresholdBook | None = None,
) -> list[dict[str, Any]]:
    """What the live loop's engine would decide for each container of ``job`` on its
    first tick (fresh state: no cooldowns, no history): the same thresholds (``book``,
    the loop's learned ones when readable), the same policy (``policy.kind``), guards,
    cost pass and OOM answer, through :meth:`Engine.propose`. Nothing is applied or
    remembered. One entry per container and tier: the decision, or p_fail below the
    threshold with nothing to do; a tier with no action whose p_fail is no forecast
    (:func:`no_forecast_reasons`) says so after its reason: ``"p_fail 0.00 < threshold
    0.50: nothing to do (no forecast: 2 samples: a trend needs at least 5
    (predictor.min_samples), so p_fail 0 is no forecast)"``."""
    engine = Engine(EngineConfig.from_settings(settings))
    book = book if book is not None else ThresholdBook(
        ThresholdConfig.from_settings(settings.thresholds))
    names, apps = list(job.names), list(job.apps)
    thr = engine.thresholds(book, names, apps)
    plan = Plan(now_s, names, apps, res.features, res.prediction, thr, [], [], [], [], {})
    engine.propose(plan, Snapshot(now_s, names, apps,
                                  np.empty((len(names), 0, len(METRICS)))))
    decided = {(d.container, d.tier): d for d in plan.decisions}
    no_forecast = no_forecast_reasons(res, settings.predictor.min_samples)
    by_container: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for tier, tp in res.prediction.tiers.items():
        for i, n in enumerate(names):
            d = decided.get((n, tier))
            a = d.action if d is not None else None
            by_container[n].append({
                "tier": tier.value,
                "p_fail": float(tp.p_fail[i]),
                "threshold": float(thr[tier][i]),
                "action": None if a is None else {
                    "action_id": a.action_id, "kind": a.kind.value, "tier": a.tier.value,
                    "old_limit": out_number(a.old_limit),
                    "new_limit": out_number(a.new_limit), "preemptive": a.preemptive,
                },
                "reason": (d.reason if d is not None else (
                    f"p_fail {float(tp.p_fail[i]):.2f} < threshold {float(thr[tier][i]):.2f}"
                    ": nothing to do")) + (
                    "" if a is not None or no_forecast[tier][i] is None
                    else f" (no forecast: {no_forecast[tier][i]})"),
            })
    preds = prediction_json(job, res, settings.predictor.min_samples)
    for p in preds:
        p["decisions"] = by_container[p["name"]]
    return preds
