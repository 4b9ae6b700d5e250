"""Pure parts of issue 15 item 8: window and feature bounds (app.api_models), the p_fail
guard (app.serve_jobs), strict JSON (app.serve_http) and the proxy's body deadline
(app.serve_proxy), without Ray."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from prescale.app.api_models import N_FEATURES, check_feature_rows, window_rows
from prescale.app.serve_http import NonJSONNumber, strict_json
from prescale.app.serve_proxy import BodyDeadline, direct_ingress_env, proxy_env


def test_window_values_bounded_and_inf_only_for_limits():
    ok = window_rows(None, {"ts_s": [2.0, 1.0], "memory_limit_bytes": [math.inf, 5.0]})
    assert ok[:, 0].tolist() == [1.0, 2.0]
    with pytest.raises(
        ValueError,
        match=r"series.memory_usage_bytes\[0\] must be finite and "
        r"≤ 1e\+18, got 1e\+308",
    ):
        window_rows(None, {"ts_s": [1.0], "memory_usage_bytes": [1e308]})
    with pytest.raises(ValueError, match=r'got inf \("inf" is for the limits only\)'):
        window_rows(None, {"ts_s": [1.0], "cpu_usage_s_total": [math.inf]})
    with pytest.raises(ValueError, match=r"series.ts_s\[0\] must be ≤ 1e\+11"):
        window_rows(None, {"ts_s": [1e308]})


def test_feature_rows_n_samples_and_magnitudes():
    row = [20.0] + [0.0] * (N_FEATURES - 1)
    assert check_feature_rows([row]).shape == (1, N_FEATURES)
    assert check_feature_rows([[20.0] + [math.inf] * (N_FEATURES - 1)]).shape == (1, N_FEATURES)
    with pytest.raises(ValueError, match=r"features\[0\]\[0\] \(n_samples\) must be a finite"):
        check_feature_rows([[None] + row[1:]])
    with pytest.raises(ValueError, match=r"features\[1\]\[2\] \(memory_limit_bytes\)"):
        check_feature_rows([row, row[:2] + [-1e300] + row[3:]])


def test_strict_json_turns_non_json_constants_into_a_marker():
    body = strict_json(b'{"a": NaN, "b": [Infinity, -Infinity], "c": 1e309, "d": null}')
    assert isinstance(body["a"], NonJSONNumber) and repr(body["a"]) == "NaN"
    assert [repr(x) for x in body["b"]] == ["Infinity", "-Infinity"]
    assert body["c"] == math.inf and body["d"] is None  # a literal overflow is inf


def test_a_nan_p_fail_is_refused_naming_the_container():
    from prescale.app.core.predictor import Prediction, TierPrediction
    from prescale.app.core.sample import Tier
    from prescale.app.serve_jobs import Job, _check_finite

    def tp(p):
        a = np.asarray(p, dtype=float)
        return TierPrediction(a, a, a, a)

    jobs = [Job(["a"], [""]), Job(["b", "c"], ["", ""])]
    good = Prediction(30.0, "h", {Tier.MEMORY: tp([0.1, 0.2, 0.3])})
    _check_finite(jobs, np.array([0, 1, 3]), good)
    bad = Prediction(30.0, "h", {Tier.MEMORY: tp([0.1, 0.2, math.nan])})
    with pytest.raises(ValueError, match=r"containers\[1\] \('c'\): the memory p_fail"):
        _check_finite(jobs, np.array([0, 1, 3]), bad)


def _run(guard: BodyDeadline, headers, messages, delay_s=0.0):
    sent, seen = [], []

    async def inner(scope, receive, send):
        while messages:
            msg = await receive()
            seen.append(msg)
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})

    guard.app = inner
    queue = list(messages)

    async def receive():
        await asyncio.sleep(delay_s)
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "headers": headers}
    asyncio.run(guard(scope, receive, send))
    return sent, seen


def test_body_deadline_buffers_in_time_and_refuses_late_or_large():
    guard = BodyDeadline(None, body_timeout_s=0.3, max_body_bytes=10)
    parts = [
        {"type": "http.request", "body": b"12", "more_body": True},
        {"type": "http.request", "body": b"34", "more_body": False},
    ]
    sent, seen = _run(guard, [(b"content-length", b"4")], parts, delay_s=0.05)
    assert sent[0]["status"] == 200 and b"".join(m["body"] for m in seen) == b"1234"
    slow = [{"type": "http.request", "body": b"1", "more_body": True}] * 20
    sent, seen = _run(guard, [(b"content-length", b"9")], slow, delay_s=0.1)
    assert sent[0]["status"] == 408 and not seen
    assert "body_timeout_s = 0.3 s" in json.loads(sent[1]["body"])["detail"]
    sent, _ = _run(guard, [(b"content-length", b"11")], parts)
    assert sent[0]["status"] == 413
    sent, _ = _run(
        guard,
        [(b"transfer-encoding", b"chunked")],
        [{"type": "http.request", "body": b"x" * 11, "more_body": True}],
    )
    assert sent[0]["status"] == 413
    sent, seen = _run(guard, [], [])  # no body: passed through untouched
    assert sent[0]["status"] == 200


def test_proxy_env_names_the_callback():
    env = proxy_env(body_timeout_s=2)
    assert env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == (
        "prescale.app.serve_proxy:proxy_middlewares"
    )
    assert env["PRESCALE_BODY_TIMEOUT_S"] == "2"


def test_direct_ingress_env_gives_the_port_range_and_refuses_a_bad_port():
    env = direct_ingress_env(30000)
    assert env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert (env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"],
            env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]) == ("30000", "30100")
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"
    for bad in (80, 65500):
        with pytest.raises(ValueError, match=f"direct ingress port {bad}"):
            direct_ingress_env(bad)
