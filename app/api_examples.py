"""Request examples of the prediction API, as the OpenAPI document shows them (Swagger
UI's "Examples" list of each request body): every one is a request that gets a useful
answer, and ``tests/integration/test_serve_api.py`` posts each one to a real Serve and
checks that answer.

Windows (``/v1/predict`` and ``/v1/recommend``), sampled every 5 s from
:data:`T0_S` (2026-01-01T00:00:00Z), default settings (horizon H = 30 s,
``min_samples`` 5, σ floor f = 2 % of the limit, CPU busy at β = 90 % of the quota):

``leaking`` (samples form)
    Memory 380 MiB + 10 MiB per sample (2 MiB/s) for 12 samples under a 512 MiB limit,
    CPU steady at 0.5 of 2 cores. Memory: last u = 490 MiB, forecast u + 2·30 = 550 MiB,
    σ = max(0, 0.02·512) = 10.24 MiB, p_fail = Φ((550 − 512)/10.24) = Φ(3.71) ≈ 0.9999,
    time to limit 22 MiB / 2 MiB/s = 11 s. CPU: p_fail ≈ 0 (0.5 of a busy line at 1.8
    cores, σ floor 0.04). ``/v1/recommend``: a preemptive memory resize 512 → 687.5 MiB
    (the buffer policy's 550 × 1.25).
``idle`` (samples form)
    Memory flat at 64 MiB of 512 MiB, CPU 0.025 of 1 core: p_fail 0 on both tiers
    (z = (64 − 512)/10.24 ≈ −44), the limit never reached; ``/v1/recommend``: nothing
    to do.
``cpu_bound`` (series form)
    CPU rate 0.35 + 0.01 cores per step, up to 0.46 of a 0.5-core quota (busy line
    β·Q = 0.45), 20 % of the CFS periods throttled; memory flat at 200 MiB of 1 GiB.
    CPU: forecast 0.46 + 0.002·30 = 0.52 cores, σ = the 11 rates' std = 0.01·√10 =
    0.0316, p_fail = Φ((0.52 − 0.45)/0.0316) = Φ(2.21) ≈ 0.9866 (above the throttled
    fraction 0.2), time to limit 0 (already at the busy line); ``/v1/recommend``: the
    quota 0.5 → 0.75 cores (the CPU step of 50 %).
``too_few_samples`` (series form)
    2 samples (40 → 44 MiB in 1 s of 128 MiB): the heuristic needs
    ``predictor.min_samples`` = 5 for a trend, so p_fail is 0 and each tier's
    ``reason`` says so (``forecast_ready`` false) although the 2 points head above the
    limit.
``features`` (precomputed feature rows)
    The ``leaking`` window as :func:`~app.core.features.compute_features` makes it:
    the same memory p_fail ≈ 0.9999.

``/v1/samples``: ``samples`` (three readings of one container, all stored) and
``timings`` (two calls of a key code block, one of them a timeout: 2 timings and 1
timeout event stored).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from prescale.app.api_models import LIMIT_METRICS
from prescale.app.core.engine import EngineConfig
from prescale.app.core.features import FEATURES, compute_features
from prescale.app.core.sample import METRICS

#: First sample of every example window (s): 2026-01-01T00:00:00Z.
T0_S = 1767225600.0
STEP_S = 5.0
MiB = 2**20
GiB = 2**30
_N = 12


def _leaking_samples() -> list[dict[str, float]]:
    return [{"ts_s": T0_S + STEP_S * i,
             "memory_usage_bytes": 380 * MiB + 10 * MiB * i,
             "memory_limit_bytes": 512 * MiB,
             "cpu_usage_s_total": 1000.0 + 0.5 * STEP_S * i,
             "cpu_quota_cores": 2.0} for i in range(_N)]


def _idle_samples() -> list[dict[str, float]]:
    return [{"ts_s": T0_S + STEP_S * i,
             "memory_usage_bytes": 64 * MiB,
             "memory_limit_bytes": 512 * MiB,
             "cpu_usage_s_total": 50.0 + 0.025 * STEP_S * i,
             "cpu_quota_cores": 1.0} for i in range(_N)]


def _cpu_bound_series() -> dict[str, list[float]]:
    rates = [0.35 + 0.01 * i for i in range(1, _N)]  # cores over each 5 s step
    usage = [2000.0]
    for r in rates:
        usage.append(round(usage[-1] + r * STEP_S, 6))
    periods = [10_000.0 + 50.0 * i for i in range(_N)]  # 100 ms CFS periods
    throttled = [1_000.0 + 10.0 * i for i in range(_N)]  # 10 of 50 per step: 20 %
    return {"ts_s": [T0_S + STEP_S * i for i in range(_N)],
            "cpu_usage_s_total": usage,
            "cpu_quota_cores": [0.5] * _N,
            "cpu_periods_total": periods,
            "cpu_throttled_periods_total": throttled,
            "memory_usage_bytes": [200.0 * MiB] * _N,
            "memory_limit_bytes": [1.0 * GiB] * _N}


def _features_of(samples: list[dict[str, float]]) -> list[float | str | None]:
    """One feature row of a window, as JSON: ``nan`` → null, ``±inf`` → ``"inf"`` /
    ``"-inf"`` (feature rows in requests take those strings)."""
    window = np.full((1, len(samples), len(METRICS)), np.nan)
    for i, s in enumerate(samples):
        for m, v in s.items():
            window[0, i, METRICS.index(m)] = v
    for m in LIMIT_METRICS:
        if m not in samples[0]:  # omitted limit: unlimited, as in a request
            window[0, :, METRICS.index(m)] = math.inf
    row = compute_features(window, recent_steps=EngineConfig().recent_steps)[0]
    return [None if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf
                                         else float(v)) for v in row]


def _window_examples() -> dict[str, dict[str, Any]]:
    return {
        "leaking": {
            "summary": "A memory leak: p_fail ≈ 1, a scale-up (samples form)",
            "description": "12 samples 5 s apart: memory +2 MiB/s, 490 of 512 MiB at the "
            "end; forecast in 30 s: 550 MiB → memory p_fail ≈ 0.9999, time to limit "
            "11 s. /v1/recommend: a preemptive memory resize 512 → 687.5 MiB.",
            "value": {"containers": [{"name": "cart-7f9c", "app": "checkout",
                                      "samples": _leaking_samples()}]},
        },
        "idle": {
            "summary": "An idle container: p_fail ≈ 0, nothing to do (samples form)",
            "description": "Memory flat at 64 of 512 MiB, CPU 0.025 of 1 core: p_fail ≈ 0 "
            "on both tiers, the limit is never reached; /v1/recommend: no action.",
            "value": {"containers": [{"name": "cron-2b41", "app": "batch",
                                      "samples": _idle_samples()}]},
        },
        "cpu_bound": {
            "summary": "CPU near its quota and throttled: a CPU scale-up (series form)",
            "description": "One list per metric: the CPU rate rises to 0.46 of a "
            "0.5-core quota, 20 % of the CFS periods throttled → CPU p_fail ≈ 0.99; "
            "/v1/recommend: the quota 0.5 → 0.75 cores.",
            "value": {"containers": [{"name": "encoder-0", "app": "media",
                                      "series": _cpu_bound_series()}]},
        },
        "too_few_samples": {
            "summary": "2 samples: no forecast yet, and the reason (series form)",
            "description": "A container just started: 2 samples are fewer than "
            "predictor.min_samples (5), so p_fail is 0 and each tier's reason says it "
            "is no forecast (forecast_ready false).",
            "value": {"containers": [{"name": "web-1", "app": "frontend", "series": {
                "ts_s": [T0_S, T0_S + 1.0],
                "memory_usage_bytes": [40 * MiB, 44 * MiB],
                "memory_limit_bytes": [128 * MiB, 128 * MiB]}}]},
        },
        "features": {
            "summary": "Precomputed feature rows (the leaking container's)",
            "description": f"One row of the {len(FEATURES)} features of "
            "app.core.features.FEATURES, in that order (null = not available): the "
            "leaking example's window, featurised → the same memory p_fail ≈ 0.9999.",
            "value": {"features": [_features_of(_leaking_samples())],
                      "names": ["cart-7f9c"], "apps": ["checkout"]},
        },
    }


def _samples_examples() -> dict[str, dict[str, Any]]:
    return {
        "samples": {
            "summary": "Three readings of one container",
            "description": "Stored in the history store (accepted.samples = 3).",
            "value": {"samples": [
                {"container": "cart-7f9c", "app": "checkout", "ts_s": T0_S + STEP_S * i,
                 "memory_usage_bytes": 380 * MiB + 10 * MiB * i,
                 "memory_limit_bytes": 512 * MiB,
                 "cpu_usage_s_total": 1000.0 + 0.5 * STEP_S * i, "cpu_quota_cores": 2.0}
                for i in range(3)]},
        },
        "timings": {
            "summary": "Two calls of a key code block, one of them a timeout",
            "description": "Stored as timing records (accepted.timings = 2); the one that "
            "reports a timeout also gives a timeout event (accepted.events = 1). ts_s "
            "omitted: the server's time.",
            "value": {"timings": [
                {"container": "cart-7f9c", "app": "checkout", "block": "pay",
                 "duration_s": 0.12, "ok": True},
                {"container": "cart-7f9c", "app": "checkout", "block": "pay",
                 "duration_s": 30.0, "ok": False, "timeout": True,
                 "error": "TimeoutError: payment gateway"}]},
        },
    }


#: ``openapi_examples`` of the request body of ``/v1/predict`` and ``/v1/recommend``.
PREDICT_EXAMPLES: dict[str, dict[str, Any]] = _window_examples()
#: ``openapi_examples`` of the request body of ``/v1/samples``.
SAMPLES_EXAMPLES: dict[str, dict[str, Any]] = _samples_examples()

__all__ = ["PREDICT_EXAMPLES", "SAMPLES_EXAMPLES", "T0_S"]
