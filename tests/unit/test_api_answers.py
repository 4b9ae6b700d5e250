"""Issue 19, the prediction API's answers without Ray: numbers are numbers or null
(never "inf"), a reason where the heuristic cannot judge (app.serve_jobs
no_forecast_reasons) and the request examples of the OpenAPI document
(app.api_examples) valid for their models. The HTTP side (every example posted to a
real Serve, /docs offline) is tests/integration/test_serve_api.py."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest

from prescale.app.api_examples import PREDICT_EXAMPLES, SAMPLES_EXAMPLES, T0_S
from prescale.app.api_models import PredictRequest, SamplesRequest, out_number
from prescale.app.core.predictor import TrendExhaustionPredictor
from prescale.app.core.sample import Tier
from prescale.app.serve_jobs import (
    _out_list,
    no_forecast_reasons,
    predict_jobs,
    prediction_json,
    window_of,
)
from prescale.app.settings import load_settings

MiB = 2**20
SHORT = "2 samples: a trend needs at least 5 (predictor.min_samples), so p_fail 0 is no forecast"


@pytest.fixture(scope="module")
def cfg():
    return load_settings(None, data_dir=tempfile.mkdtemp()).predictor


def _predict(cfg, containers: list[dict], lookup=None):
    predictor = TrendExhaustionPredictor.from_settings(cfg)
    job = window_of(PredictRequest.model_validate({"containers": containers}))
    res = predict_jobs([job], predictor, recent_steps=cfg.recent_steps,
                       model_tier=Tier.MEMORY, lookup=lookup)[0]
    return job, res


_NAMES = iter(range(10**6))


def _series(n: int, **cols) -> dict:
    """A container of ``n`` samples 5 s apart (a new name each call)."""
    return {"name": f"c{next(_NAMES)}", "series": {"ts_s": [T0_S + 5 * i for i in range(n)],
                                                   **cols}}


def test_numbers_that_are_not_finite_are_null_never_strings():
    assert out_number(1.5) == 1.5
    assert out_number(math.inf) is None and out_number(-math.inf) is None
    assert out_number(math.nan) is None
    assert _out_list(np.array([1.5, math.inf, math.nan, -math.inf])) == [1.5, None, None, None]
    assert _out_list(np.array([1.0, 2.0])) == [1.0, 2.0]


def test_limit_and_time_to_limit_say_which_null_is_infinite(cfg):
    flat = _series(12, memory_usage_bytes=[64 * MiB] * 12)  # no limits given: unlimited
    job, res = _predict(cfg, [flat])
    tiers = prediction_json(job, res, cfg.min_samples)[0]["tiers"]
    mem, cpu = tiers["memory"], tiers["cpu"]
    assert (mem["limit"], mem["unlimited"]) == (None, True)
    assert (mem["time_to_limit_s"], mem["never_reaches_limit"]) == (None, True)
    assert mem["p_fail"] == 0.0 and mem["reason"] is None  # unlimited: judged, not unknown
    assert (cpu["limit"], cpu["unlimited"]) == (None, True)
    unknown = _series(12, memory_usage_bytes=[64 * MiB] * 12, memory_limit_bytes=[None] * 12)
    job, res = _predict(cfg, [unknown])
    mem = prediction_json(job, res, cfg.min_samples)[0]["tiers"]["memory"]
    assert (mem["limit"], mem["unlimited"]) == (None, False)  # null, not unlimited: unknown
    assert (mem["time_to_limit_s"], mem["never_reaches_limit"]) == (None, False)


def test_reasons_where_the_heuristic_cannot_judge(cfg):
    limit = [512.0 * MiB] * 12
    quota = [0.5] * 12
    containers = [
        # 2 samples, heading above the limit (44 + 0.8·30 = 68 MiB): short for every tier
        _series(2, memory_usage_bytes=[40 * MiB, 44 * MiB], memory_limit_bytes=[64 * MiB] * 2),
        # 12 samples, memory read once: no slope
        _series(12, memory_usage_bytes=[None] * 11 + [500 * MiB], memory_limit_bytes=limit),
        # 12 samples, the limit never known (null in every sample)
        _series(12, memory_usage_bytes=[100 * MiB] * 12, memory_limit_bytes=[None] * 12),
        # 12 samples, CPU counter read twice (one rate, no trend) under a quota
        _series(12, cpu_usage_s_total=[None] * 10 + [1.0, 3.0], cpu_quota_cores=quota),
        # 12 samples, CPU never read under a quota
        _series(12, memory_usage_bytes=[100 * MiB] * 12, cpu_quota_cores=quota),
    ]
    job, res = _predict(cfg, containers)
    why = no_forecast_reasons(res, cfg.min_samples)
    mem, cpu = why[Tier.MEMORY], why[Tier.CPU]
    assert mem[0] == cpu[0] == SHORT
    assert mem[1] == ("fewer than 2 memory_usage_bytes readings at distinct times: a trend "
                      "needs 2, so p_fail 0 is no forecast")
    assert mem[2] == ("memory_limit_bytes unknown (null): p_fail needs the limit, so p_fail 0 "
                      "is no forecast")
    assert cpu[3] == ("fewer than 3 cpu_usage_s_total readings: a CPU trend needs 3 (2 rates), "
                      "so p_fail is only the measured throttled fraction")
    assert cpu[4] == ("fewer than 2 cpu_usage_s_total readings: a CPU trend needs 3 (2 rates), "
                      "so p_fail is only the measured throttled fraction")
    # judged: CPU unlimited where no quota was given; memory unlimited in the CPU rows
    assert cpu[1] is cpu[2] is None and mem[3] is mem[4] is None
    answer = prediction_json(job, res, cfg.min_samples)
    first = answer[0]["tiers"]["memory"]
    assert first["forecast"] > first["limit"] and first["p_fail"] == 0.0  # said, not silent
    assert (first["reason"], first["note"], first["forecast_ready"]) == (SHORT, SHORT, False)
    # without min_samples (the answers of callers that do not give it): no short reason
    assert no_forecast_reasons(res, None)[Tier.MEMORY][0] is None


def test_a_registered_model_judges_its_tier_so_no_reason(cfg):
    class Always:
        input = "features"

        def predict_proba(self, x):
            return np.full(len(x), 0.25)

    class Version:
        app, version_id, kind = "web", "v0001", "const"
        features = ["memory_usage_last_bytes"]

    young = _series(2, memory_usage_bytes=[40 * MiB, 44 * MiB], memory_limit_bytes=[128 * MiB] * 2)
    job, res = _predict(cfg, [young], lookup=lambda app: (Version, Always()))
    why = no_forecast_reasons(res, cfg.min_samples)
    assert why[Tier.MEMORY] == [None]  # the model's p_fail 0.25 is its judgement
    assert why[Tier.CPU] == [SHORT]  # the heuristic still serves CPU


def test_request_examples_are_valid_requests():
    assert set(PREDICT_EXAMPLES) == {"leaking", "idle", "cpu_bound", "too_few_samples",
                                     "features"}
    for name, ex in PREDICT_EXAMPLES.items():
        assert ex["summary"] and ex["description"], name
        PredictRequest.model_validate(ex["value"])
    for ex in SAMPLES_EXAMPLES.values():
        SamplesRequest.model_validate(ex["value"])
    # the features example is the leaking window's row: the same answer
    leak = window_of(PredictRequest.model_validate(PREDICT_EXAMPLES["leaking"]["value"]))
    rows = window_of(PredictRequest.model_validate(PREDICT_EXAMPLES["features"]["value"]))
    cfg = load_settings(None, data_dir=tempfile.mkdtemp()).predictor
    predictor = TrendExhaustionPredictor.from_settings(cfg)
    a, b = predict_jobs([leak, rows], predictor, recent_steps=cfg.recent_steps,
                        model_tier=Tier.MEMORY)
    assert prediction_json(leak, a, 5) == prediction_json(rows, b, 5)
    mem = prediction_json(leak, a, 5)[0]["tiers"]["memory"]
    # the worked example of app/api_examples.py: 490 MiB + 2 MiB/s, limit 512 MiB
    assert mem["forecast"] == 550 * MiB and mem["time_to_limit_s"] == 11.0
    z = (550 - 512) / (0.02 * 512)
    assert mem["p_fail"] == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-12)
