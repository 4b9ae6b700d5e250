"""Latency and throughput of ``/v1/predict`` over HTTP (Ray Serve) vs the same code in-process.

Usage: ``python -m prescale.scripts.bench_serve [--requests N] [--containers C] [--clients K]
[--duration-s S] [--window W] [--replicas R] [--batch-wait-s B] [--url URL] [--json]``

Starts Ray (2 CPUs, no dashboard) and Serve on a free 127.0.0.1 port with the prescale
app (``R`` fixed replicas, default 1, so autoscaling does not move the numbers), or uses
a running one with ``--url``. Then, in the same run and on the same payloads:

1. **latency**, single container (one window of ``W`` samples): ``N`` sequential
   ``POST /v1/predict`` → p50 / p99 / mean ms; next to it the same request handled
   in-process by :class:`app.serve_app.PredictionService` (JSON parse, validation,
   window, features, predictor, model lookup, JSON encoding: everything but HTTP and
   Serve) and the bare core (``compute_features`` + ``TrendExhaustionPredictor``).
2. **throughput**, ``C`` containers per request, ``K`` client threads for ``S``
   seconds → container-predictions/s; next to it the same ``K`` threads calling the
   in-process service on the same payload. Twice: windows as ``samples`` (one JSON
   object per reading) and as ``series`` (one list per metric, ~3× smaller, ~5× cheaper
   to validate).

Ratio = HTTP / in-process (latency: how many times slower; throughput: the fraction
kept). Worked example: HTTP p50 9.0 ms vs in-process 0.6 ms → ratio 15×; HTTP 4 000
vs in-process 20 000 container-predictions/s → 0.20. Nothing is asserted; numbers
depend on the machine (2 shared cores here: the proxy, the replica, the clients and the
in-process runs compete for them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
import requests

MiB = 2**20


def window(name: str, n: int, t0: float, *, leaking: bool) -> dict[str, Any]:
    """One container's window: ``n`` samples 1 s apart, memory growing 4 MiB/s (leaking)
    or flat at 48 MiB, under 128 MiB, with CPU counters."""
    return {"name": name, "app": "bench", "samples": [
        {"ts_s": t0 + i,
         "memory_usage_bytes": (40 * MiB + 4 * MiB * i) if leaking else 48 * MiB,
         "memory_limit_bytes": 128 * MiB, "cpu_usage_s_total": 0.3 * i,
         "cpu_quota_cores": 1.0, "cpu_periods_total": 10.0 * i,
         "cpu_throttled_periods_total": 0.0}
        for i in range(n)]}


def payload(containers: int, n: int, t0: float, *, series: bool = False) -> bytes:
    """A /v1/predict body: windows as ``samples`` (one object per reading) or as
    ``series`` (one list per metric) — the same numbers either way."""
    wins = [window(f"c{i}", n, t0, leaking=i % 2 == 0) for i in range(containers)]
    if series:
        wins = [{"name": w["name"], "app": w["app"],
                 "series": {k: [s[k] for s in w["samples"]] for k in w["samples"][0]}}
                for w in wins]
    return json.dumps({"containers": wins}).encode()


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": len(ms)}


def time_calls(fn, n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def run_threads(fn, clients: int, duration_s: float) -> tuple[int, float, int]:
    """Call ``fn`` from ``clients`` threads for ``duration_s``: (calls, seconds, errors)."""
    stop = time.perf_counter() + duration_s
    counts = [0] * clients
    errors = [0] * clients

    def loop(k: int) -> None:
        while time.perf_counter() < stop:
            try:
                fn()
                counts[k] += 1
            except Exception:  # noqa: BLE001 - counted, reported
                errors[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts), time.perf_counter() - t, sum(errors)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(settings: Any, replicas: int, batch_wait_s: float) -> tuple[str, Any]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from prescale.app.serve_app import app_from_settings

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * MiB,
             log_to_driver=False, namespace="bench-serve")
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(app_from_settings(settings, {"max_containers": 100_000, "max_samples": 10**7,
                                           "batch_wait_timeout_s": batch_wait_s},
                                autoscaling_config={"min_replicas": replicas,
                                                    "max_replicas": replicas}),
              name="bench", route_prefix="/")

    def stop() -> None:
        serve.shutdown()
        ray.shutdown()

    return f"http://127.0.0.1:{port}", stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="sequential latency requests")
    ap.add_argument("--containers", type=int, default=100, help="containers per batched call")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--duration-s", type=float, default=10.0, help="throughput run length")
    ap.add_argument("--window", type=int, default=30, help="samples per container window")
    ap.add_argument("--replicas", type=int, default=1, help="Serve replicas (fixed)")
    ap.add_argument("--batch-wait-s", type=float, default=0.005,
                    help="batch_wait_timeout_s of the replica (user_config)")
    ap.add_argument("--url", default=None, help="use a running API instead of starting one")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    from prescale.app.api_models import PredictRequest
    from prescale.app.core.features import compute_features
    from prescale.app.serve_app import PredictionService
    from prescale.app.serve_jobs import window_of
    from prescale.app.settings import load_settings

    data_dir = tempfile.mkdtemp(prefix="bench-serve-")
    settings = load_settings(None, data_dir=data_dir)
    t0 = time.time() - 3600
    one = payload(1, args.window, t0)
    many = payload(args.containers, args.window, t0)
    many_series = payload(args.containers, args.window, t0, series=True)

    service = PredictionService(settings)  # the same code the replica runs

    def in_process(body: bytes) -> bytes:
        req = PredictRequest.model_validate(json.loads(body))
        return json.dumps(service.predict(req), allow_nan=False).encode()

    job_one = window_of(PredictRequest.model_validate_json(one))

    def core() -> None:
        service.predictor.predict(compute_features(
            job_one.window, recent_steps=settings.predictor.recent_steps))

    stop = None
    url = args.url
    if url is None:
        t = time.perf_counter()
        url, stop = start_serve(settings, args.replicas, args.batch_wait_s)
        start_s = time.perf_counter() - t
    else:
        start_s = float("nan")
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("PRESCALE_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def http(body: bytes, sess: requests.Session = session) -> None:
        r = sess.post(url + "/v1/predict", data=body, headers=headers, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

    try:
        # sanity: the API and the in-process service agree on the payload
        got = session.post(url + "/v1/predict", data=one, headers=headers, timeout=60).json()
        want = json.loads(in_process(one))
        same = got["predictions"] == want["predictions"]

        lat_http = percentiles(time_calls(lambda: http(one), args.requests))
        lat_local = percentiles(time_calls(lambda: in_process(one), args.requests))
        lat_core = percentiles(time_calls(core, args.requests))

        local_sessions = threading.local()

        def http_many(body: bytes) -> None:
            sess = getattr(local_sessions, "s", None)
            if sess is None:
                sess = local_sessions.s = requests.Session()
            http(body, sess)

        tput: dict[str, dict[str, dict[str, float]]] = {}
        for form, body in (("samples", many), ("series", many_series)):
            http_many(body)
            calls_h, secs_h, err_h = run_threads(lambda b=body: http_many(b), args.clients,
                                                 args.duration_s)
            calls_l, secs_l, err_l = run_threads(lambda b=body: in_process(b), args.clients,
                                                 args.duration_s)
            tput[form] = {
                "http": {"container_predictions_per_s": calls_h * args.containers / secs_h,
                         "requests": calls_h, "seconds": secs_h, "errors": err_h},
                "in_process_service": {
                    "container_predictions_per_s": calls_l * args.containers / secs_l,
                    "requests": calls_l, "seconds": secs_l, "errors": err_l},
            }
    finally:
        if stop is not None:
            stop()
        service.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    result = {
        "containers_per_request": args.containers, "clients": args.clients,
        "window_samples": args.window, "replicas": args.replicas,
        "batch_wait_s": args.batch_wait_s, "cpus": os.cpu_count(),
        "serve_start_s": start_s, "http_equals_in_process": same,
        "latency_single": {"http": lat_http, "in_process_service": lat_local,
                           "in_process_core": lat_core},
        "throughput": tput,
        "payload_bytes": {"single": len(one), "samples": len(many), "series": len(many_series)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lh, ll, lc = lat_http, lat_local, lat_core
    print(f"`/v1/predict`, window {args.window} samples/container, {args.replicas} replica(s) "
          f"(num_cpus 0.25, batch ≤ 32 requests, wait {args.batch_wait_s * 1000:g} ms), "
          f"{os.cpu_count()} CPUs; "
          f"HTTP answer == in-process answer: {same}\n")
    print("| measure | HTTP (Ray Serve) | in-process service | ratio HTTP / in-process |"
          " in-process core (features + predictor) |")
    print("|---|---|---|---|---|")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("mean_ms", "mean")):
        print(f"| single container, {label} latency (ms, {lh['n']} sequential requests) | "
              f"{lh[key]:.2f} | {ll[key]:.3f} | {lh[key] / ll[key]:.1f}× | {lc[key]:.3f} |")
    for form in ("samples", "series"):
        h = tput[form]["http"]
        local = tput[form]["in_process_service"]
        print(f"| {args.containers} containers/request as `{form}` "
              f"({len(many if form == 'samples' else many_series) / 1024:.0f} KiB), "
              f"{args.clients} clients, {args.duration_s:g} s: container-predictions/s | "
              f"{h['container_predictions_per_s']:,.0f} | "
              f"{local['container_predictions_per_s']:,.0f} | "
              f"{h['container_predictions_per_s'] / local['container_predictions_per_s']:.2f}"
              " | – |")
    errors = sum(v["errors"] for f in tput.values() for v in f.values())
    print(f"\nserve start {start_s:.1f} s; errors during the throughput runs: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
