"""The prediction API on a real Ray Serve, over real HTTP (``requests``).

One Ray (2 CPUs, no dashboard, 150 MB object store) and one Serve (HTTP proxy on a free
127.0.0.1 port) for the module, with two applications:

- ``main`` at ``/``: ``serve.run(app_from_settings(...))`` (the Python path of
  ``prescale serve``), model registry polled every 0.2 s, small request limits;
- ``secure`` at ``/secure``: deployed from ``configs/serve.yaml`` itself through the
  controller call ``serve deploy`` makes (``deploy_apps`` of the parsed config), with
  ``PRESCALE_API_TOKEN`` in its runtime_env, registry polling off (3600 s): a new model
  reaches it only by a reconfigure (a new ``user_config`` revision), which must not
  restart the replica.

Expected values are exact: the HTTP answers equal the same :class:`PredictionService`
called in-process, and the hand-computed values of the docstrings (leaker: usage 40 MiB
+ 4 MiB/s for 20 s under a 128 MiB limit → time to limit 12 MiB / 4 MiB/s = 3 s,
forecast 116 + 4 × 30 = 236 MiB, p_fail Φ(42) = 1; the buffer rule asks 236 × 1.25 =
295 MiB, which the guards may cap — with the default max step of 100 % → 256 MiB).
"""

from __future__ import annotations

import copy
import re
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from prescale.app.core.features import FEATURES, compute_features
from prescale.app.models import make_model
from prescale.app.serve_app import PredictionService, app_from_settings
from prescale.app.settings import load_settings
from prescale.app.store.history import HistoryStore
from prescale.app.store.registry import ModelRegistry

MiB = 2**20
TOKEN = "s3cret-token"
T0 = time.time() - 60.0  # windows end in the recent past (samples must not be in the future)
REPO = Path(__file__).resolve().parents[2]
TRAINING = {"since_s": 0.0, "until_s": 1.0, "rows": 20, "positives": 0, "data_hash": "test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(fn, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=10).status_code
    except requests.RequestException:
        return None


def leaker(name: str = "leaker", app: str = "web", n: int = 20) -> dict:
    return {"name": name, "app": app, "samples": [
        {"ts_s": T0 + i, "memory_usage_bytes": 40 * MiB + 4 * MiB * i,
         "memory_limit_bytes": 128 * MiB} for i in range(n)]}


def steady(name: str = "steady", app: str = "web", n: int = 20) -> dict:
    return {"name": name, "app": app, "samples": [
        {"ts_s": T0 + i, "memory_usage_bytes": 48 * MiB, "memory_limit_bytes": 128 * MiB}
        for i in range(n)]}


def _deploy_config(port: int, data_dir: Path, revision: int) -> dict:
    """configs/serve.yaml, pointed at a test data dir, the test port and /secure."""
    doc = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["http_options"] = {"host": "127.0.0.1", "port": port}
    app = doc["applications"][0]
    app["name"] = "secure"
    app["route_prefix"] = "/secure"
    app["args"]["settings"]["data_dir"] = str(data_dir)
    app["runtime_env"] = {"env_vars": {"PRESCALE_API_TOKEN": TOKEN}}
    dep = app["deployments"][0]
    dep["autoscaling_config"]["max_replicas"] = 1
    dep["user_config"].update(revision=revision, model_poll_interval_s=3600,
                              max_body_bytes=64 * 1024)
    return doc


def _apply(doc: dict) -> None:
    """What ``serve deploy`` does once the dashboard has parsed the file."""
    from ray.serve import context
    from ray.serve.schema import ServeDeploySchema

    context._get_global_client().deploy_apps(ServeDeploySchema.model_validate(doc))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    import ray
    from ray import serve

    root = tmp_path_factory.mktemp("serve_api")
    port = _free_port()
    settings = load_settings(None, data_dir=str(root / "main"),
                             sources={"block_timeouts_s": {"checkout": 0.5}})
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * MiB,
             namespace=f"test-serve-api-{uuid.uuid4().hex[:8]}", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app_from_settings(settings, {"model_poll_interval_s": 0.2,
                                               "max_containers": 50, "max_samples": 5000}),
                  name="main", route_prefix="/")
        _apply(_deploy_config(port, root / "secure", revision=1))
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _status(f"{base}/secure/healthz") == 200, 60, "the secure app")
        yield {"base": base, "port": port, "settings": settings, "root": root}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def post(api, path: str, body=None, **kw) -> requests.Response:
    return requests.post(api["base"] + path, json=body, timeout=30, **kw)


# ------------------------------------------------------------------ endpoints


def test_openapi_document_lists_every_endpoint(api):
    r = requests.get(api["base"] + "/openapi.json", timeout=10)
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert {"/v1/predict", "/v1/recommend", "/v1/samples", "/v1/models", "/healthz"} <= set(paths)
    schemas = r.json()["components"]["schemas"]
    assert "PredictRequest" in schemas and "RecommendResponse" in schemas


# ------------------------------------------------------------------ OpenAPI examples, docs

#: What each request example of the OpenAPI document must answer (app/api_examples.py's
#: worked examples), besides what every answer keeps (test below). A new example needs
#: an entry here.
EXAMPLE_ANSWERS = {
    # name: (tier that must be at risk, its p_fail, the limit /v1/recommend asks) | None
    "leaking": ("memory", 0.99990, 687.5 * MiB),
    "features": ("memory", 0.99990, 687.5 * MiB),
    "cpu_bound": ("cpu", 0.98657, 0.75),
    "idle": None,
    "too_few_samples": None,
    "samples": {"samples": 3, "timings": 0, "events": 0},
    "timings": {"samples": 0, "timings": 2, "events": 1},
}


def _request_examples(doc: dict) -> list[tuple[str, str, dict]]:
    """``(path, name, body)`` of every request example of every POST operation."""
    out = []
    for path, ops in doc["paths"].items():
        if "post" not in ops:
            continue
        examples = ops["post"]["requestBody"]["content"]["application/json"].get("examples")
        assert examples, f"POST {path} has no request example"
        out += [(path, name, ex["value"]) for name, ex in examples.items()]
    return out


def _check_tier(where: str, tier: dict) -> None:
    """What every tier of every answer keeps: p_fail a probability; numbers are numbers
    or null, a null limit / time to limit says whether it is unlimited / never; a reason
    exactly when p_fail is no forecast, and never a forecast above the limit with
    p_fail 0 and no reason."""
    assert 0.0 <= tier["p_fail"] <= 1.0, where
    for key in ("time_to_limit_s", "forecast", "limit"):
        assert tier[key] is None or isinstance(tier[key], int | float), (where, key)
    assert not tier["unlimited"] or tier["limit"] is None, where
    assert not tier["never_reaches_limit"] or tier["time_to_limit_s"] is None, where
    assert (tier["reason"] is None) == tier["forecast_ready"], where
    assert tier["note"] == tier["reason"], where
    above = (tier["forecast"] is not None and tier["limit"] is not None
             and tier["forecast"] > tier["limit"])
    assert not (above and tier["p_fail"] == 0.0 and tier["reason"] is None), (
        f"{where}: forecast {tier['forecast']} above the limit {tier['limit']} with p_fail 0 "
        "and no reason")


def test_every_openapi_request_example_gets_a_meaningful_answer(api):
    """Every example of every POST route of /openapi.json, posted as it is: 200 and the
    answer its description promises (the leaking container at risk with a scale-up, the
    idle one at rest, the too-young one with its reason, the samples stored)."""
    doc = requests.get(api["base"] + "/openapi.json", timeout=10).json()
    examples = _request_examples(doc)
    assert {path for path, _, _ in examples} == {"/v1/predict", "/v1/recommend", "/v1/samples"}
    assert {name for _, name, _ in examples} == set(EXAMPLE_ANSWERS)
    for path, name, body in examples:
        r = post(api, path, body)
        assert r.status_code == 200, (path, name, r.text)
        assert '"inf"' not in r.text and "NaN" not in r.text, (path, name)
        answer, want = r.json(), EXAMPLE_ANSWERS[name]
        if path == "/v1/samples":
            assert answer["accepted"] == want and answer["dropped"] == {}, (name, answer)
            continue
        rows = answer["predictions" if path == "/v1/predict" else "recommendations"]
        assert len(rows) == 1, (path, name)
        row = rows[0]
        for tier_name, tier in row["tiers"].items():
            _check_tier(f"{path} {name} {tier_name}", tier)
        tiers = row["tiers"]
        decisions = {d["tier"]: d for d in row.get("decisions", [])}
        if name == "too_few_samples":
            assert all(t["p_fail"] == 0.0 and t["reason"].startswith("2 samples: a trend "
                       "needs at least 5") for t in tiers.values()), tiers
            assert tiers["memory"]["forecast"] > tiers["memory"]["limit"]  # said, not silent
        elif want is None:  # idle
            assert all(t["p_fail"] < 1e-6 and t["reason"] is None for t in tiers.values())
            assert tiers["memory"]["never_reaches_limit"] is True
        else:
            tier, p_fail, new_limit = want
            assert tiers[tier]["p_fail"] == pytest.approx(p_fail, abs=1e-5), (path, name)
            assert tiers[tier]["p_fail"] >= 0.5 and tiers[tier]["reason"] is None
        if decisions:  # /v1/recommend
            acting = {t: d["action"] for t, d in decisions.items() if d["action"] is not None}
            if want is None or isinstance(want, dict):
                assert acting == {}, (name, acting)
            else:
                tier, _, new_limit = want
                assert set(acting) == {tier}, (name, acting)
                action = acting[tier]
                assert action["kind"] == "resize" and action["preemptive"] is True
                assert action["new_limit"] == pytest.approx(new_limit)
                assert action["new_limit"] > action["old_limit"]
    # the worked example of app/api_examples.py, to the byte and the second
    leak = post(api, "/v1/predict", dict(doc["paths"]["/v1/predict"]["post"]["requestBody"]
                                         ["content"]["application/json"]["examples"]
                                         ["leaking"]["value"])).json()
    mem = leak["predictions"][0]["tiers"]["memory"]
    assert (mem["time_to_limit_s"], mem["forecast"], mem["limit"]) == (
        11.0, 550 * MiB, 512 * MiB)


def _local_assets(api, page: str, prefix: str, headers=None) -> dict[str, str]:
    """The script, stylesheet and icon URLs of a docs page: each one on this host under
    ``prefix`` (no scheme, no other host), fetched: URL → content type."""
    urls = (re.findall(r'(?:src|href|spec-url)="([^"]*)"', page)
            + re.findall(r"url: '([^']*)'", page))
    assert urls, page
    assert not re.search(r"(?i)https?:|//[a-z0-9]", page), page  # nothing off-host
    types = {}
    for url in urls:
        assert url.startswith(prefix + "/"), url
        r = requests.get(api["base"] + url, timeout=10, headers=headers)
        assert r.status_code == 200, (url, r.status_code)
        assert len(r.content) > 1000, url
        types[url] = r.headers["content-type"].split(";")[0]
    return types


def test_docs_and_redoc_load_every_asset_from_the_api_itself(api):
    """/docs (Swagger UI) and /redoc over real HTTP: HTML whose scripts, stylesheet, icon
    and OpenAPI URL are all on this host and answer 200 with the right types — the pages
    work offline (no CDN)."""
    r = requests.get(api["base"] + "/docs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    types = _local_assets(api, r.text, "")
    js = [u for u in types if u.endswith("swagger-ui-bundle.js")]
    css = [u for u in types if u.endswith("swagger-ui.css")]
    assert len(js) == len(css) == 1, types
    assert types[js[0]] in ("text/javascript", "application/javascript")
    assert types[css[0]] == "text/css"
    assert types["/openapi.json"] == "application/json"
    assert "SwaggerUIBundle" in requests.get(api["base"] + js[0], timeout=10).text
    assert '"validatorUrl": null' in r.text  # no online validator badge either
    r = requests.get(api["base"] + "/redoc", timeout=10)
    assert r.status_code == 200 and "fonts.googleapis" not in r.text
    types = _local_assets(api, r.text, "")
    assert any(u.endswith("redoc.standalone.js") and t in ("text/javascript",
               "application/javascript") for u, t in types.items()), types
    # behind a route prefix (the YAML app at /secure, token on): the same, under /secure
    ok = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.get(api["base"] + "/secure/docs", timeout=10, headers=ok)
    assert r.status_code == 200, r.text
    assert "/secure/openapi.json" in _local_assets(api, r.text, "/secure", ok)
    assert requests.get(api["base"] + "/secure/docs", timeout=10).status_code == 401


def test_healthz(api):
    r = requests.get(api["base"] + "/healthz", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["auth"] is False and body["model_revision"] == 0
    assert body["replica"] and body["pid"] > 0


def test_predict_leaking_high_steady_low_and_equal_to_in_process(api):
    req = {"containers": [leaker(), steady()]}
    r = post(api, "/v1/predict", req)
    assert r.status_code == 200, r.text
    body = r.json()
    by_name = {p["name"]: p for p in body["predictions"]}
    mem = by_name["leaker"]["tiers"]["memory"]
    assert mem["p_fail"] == 1.0
    assert mem["time_to_limit_s"] == pytest.approx(3.0, rel=1e-9)
    assert mem["forecast"] == pytest.approx(236 * MiB, rel=1e-9)
    assert mem["limit"] == 128 * MiB
    assert mem["model"] == "trend-exhaustion/v1" and mem["model_version"] is None
    low = by_name["steady"]["tiers"]["memory"]
    assert low["p_fail"] < 1e-12
    assert low["time_to_limit_s"] is None and low["never_reaches_limit"] is True  # never
    cpu = by_name["steady"]["tiers"]["cpu"]
    assert cpu["limit"] is None and cpu["unlimited"] is True  # no quota given: unlimited
    assert mem["unlimited"] is False and mem["never_reaches_limit"] is False
    assert by_name["leaker"]["n_samples"] == 20
    # the same service in-process gives the same JSON, number for number
    from prescale.app.api_models import PredictRequest

    local = PredictionService(api["settings"]).predict(PredictRequest.model_validate(req))
    assert body == local
    assert mem["forecast_ready"] is True and mem["reason"] is None and mem["note"] is None
    assert '"inf"' not in r.text and "NaN" not in r.text  # numbers are numbers or null


def test_too_few_samples_for_a_trend_is_said_not_forecast_as_zero(api):
    r = post(api, "/v1/predict", {"containers": [leaker(n=2)]})
    assert r.status_code == 200, r.text
    mem = r.json()["predictions"][0]["tiers"]["memory"]
    assert mem["p_fail"] == 0.0 and mem["forecast_ready"] is False
    assert mem["forecast"] > mem["limit"]  # the 2 points head above it: said, not silent
    assert mem["reason"] == ("2 samples: a trend needs at least 5 (predictor.min_samples), "
                             "so p_fail 0 is no forecast")
    assert mem["note"] == mem["reason"]  # the first v1 answers' field, kept
    rec = post(api, "/v1/recommend", {"containers": [leaker(n=2)]}).json()
    mem = {d["tier"]: d for d in rec["recommendations"][0]["decisions"]}["memory"]
    assert mem["action"] is None and mem["reason"].endswith(
        "(no forecast: 2 samples: a trend needs at least 5 (predictor.min_samples), so "
        "p_fail 0 is no forecast)")


def test_predict_features_equals_windows(api):
    from prescale.app.api_models import PredictRequest
    from prescale.app.serve_jobs import window_of

    win = {"containers": [leaker(), steady()]}
    window = window_of(PredictRequest.model_validate(win)).window
    feats = compute_features(window, recent_steps=api["settings"].predictor.recent_steps)
    as_json = [[None if np.isnan(v) else ("inf" if np.isinf(v) else float(v)) for v in row]
               for row in feats]
    assert len(as_json[0]) == len(FEATURES) and "inf" in as_json[1]
    r = post(api, "/v1/predict", {"features": as_json, "names": ["leaker", "steady"],
                                  "apps": ["web", "web"]})
    assert r.status_code == 200, r.text
    by_features = r.json()["predictions"]
    by_windows = post(api, "/v1/predict", win).json()["predictions"]
    assert by_features == by_windows


def test_predict_series_form_equals_samples_form(api):
    win = {"containers": [leaker(), steady()]}
    cols = {"containers": [
        {"name": c["name"], "app": c["app"],
         "series": {k: [s[k] for s in reversed(c["samples"])] for k in c["samples"][0]}}
        for c in win["containers"]]}  # reversed: sorted by ts_s on arrival
    a, b = post(api, "/v1/predict", win), post(api, "/v1/predict", cols)
    assert a.status_code == b.status_code == 200, b.text
    assert a.json() == b.json()
    bad = {"containers": [{"name": "x", "series": {"ts_s": [1, 2], "memory_usage_bytes": [1]}}]}
    r = post(api, "/v1/predict", bad)
    assert r.status_code == 422
    assert "series.memory_usage_bytes has 1 values but series.ts_s has 2" in r.json()["message"]
    r = post(api, "/v1/predict", {"containers": [{"name": "x", "series": {"ts": [1]}}]})
    assert r.status_code == 422 and "body.containers[0].series.ts" in r.json()["message"]


def test_recommend_acts_on_the_leaker_only_and_has_no_side_effect(api):
    from prescale.app.api_models import PredictRequest
    from prescale.app.serve_jobs import window_of

    req = {"containers": [leaker(), steady()]}
    first = post(api, "/v1/recommend", req)
    assert first.status_code == 200, first.text
    recs = {c["name"]: c for c in first.json()["recommendations"]}
    mem = {d["tier"]: d for d in recs["leaker"]["decisions"]}["memory"]
    action = mem["action"]
    assert action is not None and action["kind"] == "resize" and action["preemptive"] is True
    assert action["action_id"] == f"leaker/memory@{round((T0 + 19) * 1000)}"
    assert action["old_limit"] == 128 * MiB
    # the buffer rule asks 236 × 1.25 = 295 MiB; the guards may cap it, never raise it
    assert "buffer 59.0 MiB above 236.0 MiB" in mem["reason"]
    assert 128 * MiB < action["new_limit"] <= 295 * MiB
    assert all(d["action"] is None for d in recs["steady"]["decisions"])
    assert first.json()["policy"] == "preemptive_buffer"
    # exactly what the configured policy gives in-process for the same snapshot
    svc = PredictionService(api["settings"])
    job = window_of(PredictRequest.model_validate(req))
    assert first.json() == svc.recommend_response(job, svc.predict_jobs([job])[0])
    # stateless: no cooldown was recorded, the same call gives the same answer
    assert post(api, "/v1/recommend", req).json() == first.json()


def test_samples_are_validated_and_land_in_the_store(api):
    now = time.time()
    body = {
        "samples": [
            {"container": "ing-1", "app": "shop", "ts_s": now - 2, "memory_usage_bytes": 1000,
             "memory_limit_bytes": "inf", "cpu_usage_s_total": 1.5},
            {"container": "ing-1", "app": "shop", "ts_s": now - 1, "memory_usage_bytes": 2000},
            {"container": "ing-1", "app": "shop", "ts_s": now - 1, "memory_usage_bytes": 3000},
            {"container": "ing-2", "app": "shop", "ts_s": now - 1, "memory_usage_bytes": -5},
            {"container": "ing-3", "app": "shop", "ts_s": 12.0, "memory_usage_bytes": 5},
        ],
        "timings": [
            {"container": "ing-1", "app": "shop", "block": "checkout", "duration_s": 0.9,
             "ok": True, "ts_s": now - 1},
            {"container": "ing-1", "app": "shop", "block": "search", "duration_s": 0.1,
             "ok": False, "ts_s": now - 1, "error": "ValueError"},
            {"container": "ing-1", "block": "search", "duration_s": -1.0, "ok": True},
        ],
    }
    r = post(api, "/v1/samples", body)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == {"samples": 2, "timings": 2, "events": 1}
    assert r.json()["dropped"] == {"bad_timestamp": 1, "negative:memory_usage_bytes": 1,
                                   "timestamp_not_increasing": 1, "timing:bad_duration": 1}
    store = HistoryStore(api["settings"].history_uri())
    df = store.read_samples(app="shop", container="ing-1")
    assert df["memory_usage_bytes"].tolist() == [1000.0, 2000.0]
    assert df["ts_s"].tolist() == [now - 2, now - 1]
    assert np.isinf(df["memory_limit_bytes"].iloc[0]) and df["cpu_usage_s_total"].iloc[0] == 1.5
    assert np.isinf(df["memory_limit_bytes"].iloc[1])  # omitted limit: unlimited
    recs = store.read_record_dicts(app="shop", kinds={"timing"})
    assert sorted((x["block"], x["duration_s"], x["ok"]) for x in recs) == [
        ("checkout", 0.9, True), ("search", 0.1, False)]
    ev = store.read_events(app="shop")
    assert ev["kind"].tolist() == ["timeout"]
    assert ev["detail"].iloc[0] == "block 'checkout' took 0.900 s > timeout 0.5 s"


def test_a_thousand_small_ingests_are_compacted_and_all_readable(api):
    """/v1/samples writes small Parquet files per request; serve mode compacts them
    (every 200 requests) instead of leaving one file per request (1,279 files after
    1,000 requests before)."""
    now = time.time() - 2_000
    session = requests.Session()
    for i in range(1_000):
        r = session.post(f"{api['base']}/v1/samples", json={"samples": [
            {"container": "u", "app": "upkeep", "ts_s": now + i, "memory_usage_bytes": i}]},
            timeout=30)
        assert r.status_code == 200, r.text
    root = Path(api["settings"].history_uri())
    files = list(root.glob("samples/app=upkeep/**/*.parquet"))
    assert len(files) <= 205, len(files)  # compacted: at most one upkeep period's files
    store = HistoryStore(str(root))
    assert store.read_samples(app="upkeep")["memory_usage_bytes"].tolist() == list(
        map(float, range(1_000)))


# ------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("body, status, needle", [
    (b'{"containers": [', 400, "not valid JSON"),
    (b'{"containers": [{"name": "a", "samples": [{"ts_s": "soon"}]}]}', 422,
     "body.containers[0].samples[0].ts_s"),
    (b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memory_usage_bytes": -1}]}]}',
     422, "body.containers[0]: Value error, samples[0].memory_usage_bytes must be ≥ 0"),
    (b'{"containers": [{"name": "a"}]}', 422,
     "body.containers[0]: Value error, give exactly one of 'samples' or 'series'"),
    (b'{"containers": [{"samples": [{"ts_s": 1}]}]}', 422, "body.containers[0].name"),
    (b'{"containers": "all"}', 422, "body.containers: Input should be a valid list"),
    (b'{"features": [[1, 2]]}', 422,
     f"body.features[0]: List should have at least {len(FEATURES)} items"),
    (b'{}', 422, "exactly one of 'containers'"),
    (b'{"containers": [{"name": "a", "samples": [{"ts_s": 1}]}], "colour": 1}', 422,
     "body.colour: Extra inputs are not permitted"),
    (b'{"containers": [{"name": "a", "samples": [{"ts_s": 1, "memry": 1}]}]}', 422,
     "body.containers[0].samples[0].memry"),
    (b'{"containers": [{"name": "a", "samples": [{"ts_s": 1}]}, '
     b'{"name": "a", "samples": [{"ts_s": 1}]}]}', 422, "containers[1].name 'a' repeats"),
])
def test_predict_rejects_bad_input_naming_the_field(api, body, status, needle):
    r = requests.post(api["base"] + "/v1/predict", data=body,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"], r.json()["message"]


def test_samples_reject_wrong_types_naming_the_field(api):
    r = post(api, "/v1/samples", {"samples": [{"container": "a", "ts_s": "x"}]})
    assert r.status_code == 422 and "body.samples[0].ts_s" in r.json()["message"]
    r = post(api, "/v1/samples", {"timings": [{"container": "a", "block": "b", "ok": "maybe",
                                               "duration_s": 1}]})
    assert r.status_code == 422 and "body.timings[0].ok" in r.json()["message"]
    r = post(api, "/v1/samples", {})
    assert r.status_code == 422 and "at least one of 'samples' or 'timings'" in r.json()["message"]


def test_body_must_be_sent_as_json(api):
    r = requests.post(api["base"] + "/v1/predict", data=b'{"features": []}', timeout=10)
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_oversized_payloads_get_413_before_parsing(api):
    big = b"[" * (9 * MiB)  # not JSON at all: a parse would give 400, the limit gives 413
    r = requests.post(api["base"] + "/v1/predict", data=big,
                      headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body of {9 * MiB} bytes is above max_body_bytes = " \
                                 f"{8 * MiB}"

    def chunks():
        for _ in range(9):
            yield b"[" * MiB

    r = requests.post(api["base"] + "/v1/predict", data=chunks(),
                      headers={"Content-Type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "(chunked)" in r.json()["detail"]
    many = {"containers": [steady(f"c{i}", n=1) for i in range(51)]}
    r = post(api, "/v1/predict", many)
    assert r.status_code == 413
    assert r.json()["detail"] == "51 containers in one request is above max_containers = 50"
    long = {"containers": [steady(f"c{i}", n=600) for i in range(10)]}
    r = post(api, "/v1/recommend", long)
    assert r.status_code == 413 and "6000 samples" in r.json()["detail"]


# ------------------------------------------------------------------ auth (configs/serve.yaml)


def test_token_required_when_configured(api):
    base = api["base"] + "/secure"
    req = {"containers": [leaker()]}
    r = requests.post(base + "/v1/predict", json=req, timeout=10)
    assert r.status_code == 401 and "missing Authorization" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = requests.post(base + "/v1/predict", json=req, timeout=10,
                      headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and "wrong token" in r.json()["detail"]
    r = requests.post(base + "/v1/predict", json=req, timeout=10,
                      headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    for path in ("/v1/models", "/openapi.json"):
        assert requests.get(base + path, timeout=10).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(base + "/v1/predict", json=req, timeout=10, headers=ok)
    assert r.status_code == 200 and r.json()["predictions"][0]["tiers"]["memory"]["p_fail"] == 1.0
    health = requests.get(base + "/healthz", timeout=10)  # open, says auth is on
    assert health.status_code == 200 and health.json()["auth"] is True
    # 401 comes before the size check; with the token the smaller limit of the YAML applies
    big = b"{" * (65 * 1024)
    r = requests.post(base + "/v1/predict", data=big, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = requests.post(base + "/v1/predict", data=big, timeout=10,
                      headers={"Content-Type": "application/json", **ok})
    assert r.status_code == 413 and "max_body_bytes = 65536" in r.json()["detail"]


# ------------------------------------------------------------------ models: hot reload


def _register(registry: ModelRegistry, label: int, *, promote: bool = True):
    """A model that always answers ``label`` (a forest fitted on one class)."""
    x = np.random.default_rng(0).random((20, 2))
    model = make_model("random_forest").fit(x, np.full(20, label))
    return registry.register(
        model, app="shop", tier="memory", promote=promote,
        features=["memory_usage_last_bytes", "memory_headroom_bytes"],
        metrics={"pr_auc": 0.5}, training={**TRAINING, "positives": 20 * label},
    )


def _memory_of(api, prefix: str = "", headers=None) -> dict:
    r = requests.post(api["base"] + prefix + "/v1/predict", timeout=10, headers=headers,
                      json={"containers": [steady(app="shop")]})
    assert r.status_code == 200, r.text
    return r.json()["predictions"][0]["tiers"]["memory"]


def test_new_model_versions_are_served_without_restart_and_corrupt_ones_refused(api):
    registry = ModelRegistry(api["settings"].registry_dir())
    pid = requests.get(api["base"] + "/healthz", timeout=10).json()["pid"]
    assert _memory_of(api)["model"] == "trend-exhaustion/v1"

    v1 = _register(registry, 1)
    mem = _wait_for(lambda: (m := _memory_of(api))["model_version"] == "v0001" and m,
                    10, "v0001 in service")
    assert mem["p_fail"] == 1.0 and mem["model"] == "shop/v0001 (random_forest)"
    assert mem["time_to_limit_s"] is None and mem["never_reaches_limit"] is True  # the
    # heuristic's, as in the coordinator; a model judged, so no reason
    assert mem["reason"] is None and mem["forecast_ready"] is True

    _register(registry, 0)
    mem = _wait_for(lambda: (m := _memory_of(api))["model_version"] == "v0002" and m,
                    10, "v0002 in service")
    assert mem["p_fail"] == 0.0

    v3 = _register(registry, 1, promote=False)  # candidate: nothing changes in service
    path = registry.root / v3.path
    data = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in data))  # same size, other bytes
    registry.promote("shop", "memory", v3.version_id)
    rev = registry.revision()
    listing = _wait_for(
        lambda: (j := requests.get(api["base"] + "/v1/models", timeout=10).json())["revision"]
        == rev and "shop/memory" in j["failures"] and j, 10, "the refusal of v0003")
    assert "cannot load v0003" in listing["failures"]["shop/memory"]
    assert "keeping v0002" in listing["failures"]["shop/memory"]
    assert listing["serving"] == {"shop/memory": "v0002"}
    assert [v["version_id"] for v in listing["versions"]] == ["v0003", "v0002", "v0001"]
    assert [v["status"] for v in listing["versions"]] == ["current", "retired", "retired"]
    mem = _memory_of(api)
    assert mem["model_version"] == "v0002" and mem["p_fail"] == 0.0  # the previous serves
    health = requests.get(api["base"] + "/healthz", timeout=10).json()
    assert health["pid"] == pid and any("v0003" in e for e in health["model_errors"])
    assert registry.current("shop", "memory").version_id == v3.version_id != v1.version_id


def test_reconfigure_picks_up_a_model_without_restart(api):
    """The YAML app polls every hour: only a new user_config revision (serve deploy)
    makes it reload, and the replica (pid, replica id) stays the same."""
    ok = {"Authorization": f"Bearer {TOKEN}"}
    base = api["base"] + "/secure"
    before = requests.get(base + "/healthz", timeout=10).json()
    assert before["config_revision"] == 1
    registry = ModelRegistry(api["root"] / "secure" / "models")
    _register(registry, 1)
    time.sleep(1.0)
    assert _memory_of(api, "/secure", ok)["model"] == "trend-exhaustion/v1"  # not polled

    _apply(_deploy_config(api["port"], api["root"] / "secure", revision=2))
    after = _wait_for(
        lambda: (h := requests.get(base + "/healthz", timeout=10).json())["config_revision"] == 2
        and h, 30, "config revision 2")
    assert (after["pid"], after["replica"]) == (before["pid"], before["replica"])
    mem = _memory_of(api, "/secure", ok)
    assert mem["model_version"] == "v0001" and mem["p_fail"] == 1.0


# ------------------------------------------------------------------ bodies: Arrow and JSON


ARROW = "application/vnd.apache.arrow.stream"


def _mixed() -> list[dict]:
    """Windows of three lengths, one sent in reverse order, nulls, an unlimited limit as
    "inf", an omitted limit (unlimited), a container too young for a trend."""
    young = {"name": "young", "app": "batch", "samples": [
        {"ts_s": T0 + 5, "memory_usage_bytes": 10 * MiB, "cpu_usage_s_total": None}]}
    cpu = {"name": "cpu-hog", "app": "web", "series": {
        "ts_s": [T0 + i for i in reversed(range(12))],
        "cpu_usage_s_total": [0.9 * i for i in reversed(range(12))],
        "cpu_quota_cores": [1.0] * 12, "memory_limit_bytes": ["inf"] * 12,
        "memory_usage_bytes": [None] + [20 * MiB] * 11}}
    return [leaker(), steady(app="shop"), young, cpu]


def test_arrow_and_json_bodies_give_identical_answers(api):
    """The same windows as an Arrow stream, JSON series, JSON samples (the client's
    encoders) and the hand-written JSON: the same /v1/predict and /v1/recommend
    answers; the Arrow answer is the JSON answer, value for value."""
    from prescale.app.serve_client import PredictClient, samples_table

    client = PredictClient(api["base"])
    containers = _mixed()
    want = post(api, "/v1/predict", {"containers": containers})
    assert want.status_code == 200, want.text
    want = want.json()
    table = samples_table(containers)
    for body in ("arrow", "series", "samples"):
        assert client.predict(table, body=body) == want, body
    for compression in (None, "zstd"):  # lz4 is the client's default
        other = PredictClient(api["base"], compression=compression)
        assert other.predict(table, body="arrow") == want, compression
    assert {p["name"]: p["tiers"]["memory"]["p_fail"] for p in want["predictions"]}[
        "leaker"] == 1.0
    from prescale.app.serve_client import predictions_from_table

    as_arrow = client.predict(table, body="arrow", answer="arrow")
    assert as_arrow.num_rows == 4 and as_arrow.column("name").to_pylist() == [
        "leaker", "steady", "young", "cpu-hog"]
    assert predictions_from_table(as_arrow) == want
    assert client.predict(table, body="series", answer="arrow") == as_arrow  # JSON in, Arrow out
    now = T0 + 30
    rec = post(api, "/v1/recommend", {"containers": containers, "now_s": now}).json()
    for body in ("arrow", "series"):
        assert client.recommend(table, body=body, now_s=now) == rec, body


def test_arrow_bad_input_is_4xx_naming_column_and_row(api):
    import pyarrow as pa

    from prescale.app.serve_client import PredictClient, arrow_body

    client = PredictClient(api["base"])
    table = pa.table({"container": ["a", "a", "b"], "ts_s": [T0, T0 + 1, T0],
                      "memory_usage_bytes": [1.0, -5.0, 2.0], "colour": [1, 2, 3]})
    r = client.post("/v1/predict", arrow_body(table), content_type=ARROW)
    assert r.status_code == 422
    assert r.json()["message"] == (
        "colour: unknown column (expected container, app, ts_s or a metric of "
        "app.core.sample.METRICS)")
    r = client.post("/v1/recommend", arrow_body(table.drop_columns(["colour"])),
                    content_type=ARROW)
    assert r.status_code == 422
    assert r.json()["message"] == ("memory_usage_bytes, row 1 (container 'a'): must be ≥ 0, "
                                   "got -5")
    assert r.json()["detail"][0]["row"] == 1
    r = client.post("/v1/predict", b"\x00" * 64, content_type=ARROW)
    assert r.status_code == 400 and "not a readable Arrow IPC stream" in r.json()["message"]
    many = pa.table({"container": [f"c{i}" for i in range(51)], "ts_s": [T0] * 51})
    r = client.post("/v1/predict", arrow_body(many), content_type=ARROW)
    assert (r.status_code, r.json()) == (413, {
        "detail": "51 containers in one request is above max_containers = 50"})
    r = client.post("/v1/recommend", arrow_body(table.drop_columns(["colour"])),
                    content_type=ARROW, accept=ARROW)
    assert r.status_code == 406 and "answers application/json only" in r.json()["detail"]


def test_openapi_describes_json_and_arrow(api):
    doc = requests.get(api["base"] + "/openapi.json", timeout=10).json()
    for path in ("/v1/predict", "/v1/recommend"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]
        assert set(body) == {"application/json", ARROW}, path
        assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
        assert "one row per sample" in body[ARROW]["schema"]["description"]
    answers = doc["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]
    assert set(answers) == {"application/json", ARROW}
    assert "406" in doc["paths"]["/v1/recommend"]["post"]["responses"]


def test_concurrent_requests_batched_or_not_get_their_own_answers(api):
    """Requests one at a time are predicted at once; concurrent ones wait for the
    prediction thread and are batched. Either way each gets its own answer: 6 clients ×
    4 requests, windows of different lengths in three forms, against the answers of
    requests sent one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from prescale.app.serve_client import PredictClient, samples_table

    tables = [samples_table([leaker(f"l{k}", n=8 + k), steady(f"s{k}", n=3 + k)])
              for k in range(6)]
    forms = ("arrow", "series", "samples")
    alone = [PredictClient(api["base"]).predict(t, body="series") for t in tables]

    def client(k: int) -> list[bool]:
        c = PredictClient(api["base"])
        return [c.predict(tables[k], body=forms[(k + i) % 3]) == alone[k] for i in range(4)]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(client, range(6)))
    assert all(all(r) for r in results), results
