"""Latency and throughput of ``/v1/predict`` over HTTP (Ray Serve), beside a trivial Serve
echo deployment and the same code in-process, all in the same run.

Usage: ``python -m prescale.scripts.bench_serve [--requests N] [--containers C]
[--clients K] [--duration-s S] [--window W] [--replicas R] [--batch-wait-s B]
[--forms samples,series,arrow,arrow-json] [--no-echo] [--direct-ingress] [--url URL]
[--json]``

Starts Ray (2 CPUs, no dashboard) and Serve on a free 127.0.0.1 port as ``prescale
serve`` does (its proxy settings, :func:`app.serve_proxy.proxy_env`), with two
applications of one fixed replica each (``R``, default 1, so autoscaling does not move
the numbers; the same ``num_cpus`` and ``max_ongoing_requests``):

- the prescale app at ``/``;
- **echo** at ``/echo``: a FastAPI route that returns the request body as it came —
  Serve's proxy, the replica and FastAPI with no work at all: the floor any route of
  this machine and Ray can reach (``--no-echo`` leaves it out).

Then, on the same payloads (``W``-sample windows, memory leaking in every second
container; each form carries the same numbers):

1. **latency**, one container: ``N`` rounds, each one request to echo and one per form
   to ``/v1/predict``, in turn (so a burst of load on the shared cores hits all alike)
   → p50 / p99 / mean ms and the ratio to echo's p50; beside it the same request
   handled in-process by :class:`app.serve_app.PredictionService` (everything but HTTP
   and Serve) and the bare core (``compute_features`` + ``TrendExhaustionPredictor``).
2. **throughput**, ``C`` containers per request, ``K`` client threads for ``S`` seconds
   per form → container-predictions/s; beside it the same ``K`` threads calling the
   in-process service on the same body, the bare core on one thread (the window
   already built), and echo sent the Arrow body (what the transport alone carries).

Forms: ``samples`` (JSON, one object per reading), ``series`` (JSON, one list per
metric), ``arrow`` (an Arrow IPC stream, float32 where it holds the numbers exactly,
the answer asked as Arrow too), ``arrow-json`` (Arrow body, JSON answer), ``arrow-lz4``
and ``arrow-zstd`` (the Arrow body with compressed buffers). Forms the API does not
accept (an older build) are skipped. ``--jitter`` makes the readings vary as real ones
do (what compression meets in practice; the default windows are straight lines).

``--direct-ingress``: Serve's direct ingress (``api.direct_ingress_port`` of ``prescale
serve``): each app's replica serves HTTP on its own port and the requests go there,
past the proxy; echo too, so the ratios stay fair.

Ratios: latency = HTTP p50 / echo p50 (how many times the floor); throughput = HTTP /
in-process (the fraction kept). Worked example: predict p50 9.0 ms, echo 8.0 ms → 1.12×;
HTTP 40 000 vs in-process 50 000 container-predictions/s → 0.80. Nothing is asserted;
numbers depend on the machine (2 shared cores here: the proxy, the replicas, the
clients and the in-process runs compete for them).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
from fastapi import Request
from fastapi.responses import Response

MiB = 2**20
JSON_TYPE = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FORMS = ("samples", "series", "arrow", "arrow-json", "arrow-lz4", "arrow-zstd")
#: Arrow forms: form → (compression, answer as Arrow)
_ARROW_FORMS = {"arrow": (None, True), "arrow-json": (None, False),
                "arrow-lz4": ("lz4", True), "arrow-zstd": ("zstd", True)}


def window(name: str, n: int, t0: float, *, leaking: bool,
           rng: np.random.Generator | None = None) -> dict[str, Any]:
    """One container's window: ``n`` samples 1 s apart, memory growing 4 MiB/s (leaking)
    or flat at 48 MiB, under 128 MiB, with CPU counters. With ``rng`` (``--jitter``) the
    readings vary as real ones do: memory ± up to 10 % in 4 KiB pages, CPU seconds by
    0.1–0.5 per second, so that compression meets realistic entropy."""
    mem = [(40 * MiB + 4 * MiB * i) if leaking else 48 * MiB for i in range(n)]
    cpu = [0.3 * i for i in range(n)]
    if rng is not None:
        mem = [float(4096 * round(m * (1 + rng.uniform(-0.1, 0.1)) / 4096)) for m in mem]
        cpu = np.cumsum(rng.uniform(0.1, 0.5, n)).tolist()
    return {"name": name, "app": "bench", "samples": [
        {"ts_s": t0 + i, "memory_usage_bytes": mem[i],
         "memory_limit_bytes": 128 * MiB, "cpu_usage_s_total": cpu[i],
         "cpu_quota_cores": 1.0, "cpu_periods_total": 10.0 * i,
         "cpu_throttled_periods_total": 0.0}
        for i in range(n)]}


#: ``--jitter``: real-looking readings (see :func:`window`); off: regular ones
JITTER = {"on": False}


def windows(containers: int, n: int, t0: float) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7) if JITTER["on"] else None
    return [window(f"c{i}", n, t0, leaking=i % 2 == 0, rng=rng) for i in range(containers)]


def payload(containers: int, n: int, t0: float, *, series: bool = False) -> bytes:
    """A JSON /v1/predict body: windows as ``samples`` (one object per reading) or as
    ``series`` (one list per metric) — the same numbers either way."""
    wins = windows(containers, n, t0)
    if series:
        wins = [{"name": w["name"], "app": w["app"],
                 "series": {k: [s[k] for s in w["samples"]] for k in w["samples"][0]}}
                for w in wins]
    return json.dumps({"containers": wins}).encode()


def bodies(containers: int, n: int, t0: float, forms: list[str]) -> dict[str, tuple[bytes, str,
                                                                                     str]]:
    """form → (body, Content-Type, Accept)."""
    out: dict[str, tuple[bytes, str, str]] = {}
    for form in forms:
        if form in ("samples", "series"):
            out[form] = (payload(containers, n, t0, series=form == "series"), JSON_TYPE,
                         JSON_TYPE)
        else:
            from prescale.app.serve_client import arrow_body

            compression, arrow_answer = _ARROW_FORMS[form]
            opts = {"compression": compression} if compression else {}
            body = arrow_body(windows(containers, n, t0), **opts)
            out[form] = (body, ARROW_STREAM, ARROW_STREAM if arrow_answer else JSON_TYPE)
    return out


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": len(ms)}


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def time_interleaved(fns: dict[str, Callable[[], Any]], n: int,
                     warmup: int = 20) -> dict[str, list[float]]:
    """``n`` rounds, each calling every function once in turn: ms per call, by name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append((time.perf_counter() - t) * 1000)
    return out


def run_threads(fn: Callable[[], Any], clients: int, duration_s: float) -> tuple[int, float, int]:
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


def _free_port_range(n: int = 101) -> int:
    """A first port of ``n`` for direct ingress whose first three ports are free now."""
    for first in range(30_000, 60_000, n):
        try:
            for p in (first, first + 1, first + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
    raise RuntimeError("no free port range for direct ingress")


def echo_app(num_cpus: float, max_ongoing: int, replicas: int) -> Any:
    """A trivial Serve deployment: FastAPI, ``POST /`` answers the body it was sent."""
    from fastapi import FastAPI
    from ray import serve

    api = FastAPI()

    @serve.deployment(name="Echo", ray_actor_options={"num_cpus": num_cpus},
                      max_ongoing_requests=max_ongoing, num_replicas=replicas)
    @serve.ingress(api)
    class Echo:
        async def echo(self, request):  # annotated below
            return Response(await request.body(),
                            media_type=request.headers.get("content-type", JSON_TYPE))

        # real classes, not the strings of `from __future__ import annotations`: the
        # replica rebuilds the route from a pickled copy, without this module's globals
        echo.__annotations__ = {"request": Request, "return": Response}
        echo = api.post("/")(echo)

    return Echo.bind()


def start_serve(settings: Any, replicas: int, batch_wait_s: float,
                echo: bool, direct: bool = False) -> tuple[dict[str, str], Callable[[], None]]:
    """Start Ray and Serve with the apps: ``({"/": url, "/echo": url}, stop)``. With
    ``direct`` (Serve's direct ingress) each app's URL is its replica's own port."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from prescale.app.serve_app import MAX_ONGOING_REQUESTS, REPLICA_NUM_CPUS, app_from_settings
    from prescale.app.serve_proxy import PROXY_MAX_BODY_BYTES, http_options, proxy_env

    for key, value in proxy_env(max_body_bytes=PROXY_MAX_BODY_BYTES).items():
        os.environ.setdefault(key, value)  # as `prescale serve`: the proxy inherits them
    if direct:  # as `prescale serve` with api.direct_ingress_port
        from prescale.app.serve_proxy import direct_ingress_env

        os.environ.update(direct_ingress_env(_free_port_range()))
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 * MiB,
             log_to_driver=False, namespace="bench-serve")
    port = _free_port()
    serve.start(http_options=http_options("127.0.0.1", port))
    serve.run(app_from_settings(settings, {"max_containers": 100_000, "max_samples": 10**7,
                                           "max_body_bytes": 64 * MiB,
                                           "batch_wait_timeout_s": batch_wait_s},
                                autoscaling_config={"min_replicas": replicas,
                                                    "max_replicas": replicas}),
              name="bench", route_prefix="/")
    if echo:
        serve.run(echo_app(REPLICA_NUM_CPUS, MAX_ONGOING_REQUESTS, replicas), name="echo",
                  route_prefix="/echo")

    def stop() -> None:
        serve.shutdown()
        ray.shutdown()

    urls = {"/": f"http://127.0.0.1:{port}", "/echo": f"http://127.0.0.1:{port}"}
    if direct:
        from prescale.app.serve_app import replica_urls

        urls = {"/": replica_urls(app="bench")[0]}
        urls["/echo"] = replica_urls(app="echo")[0] if echo else urls["/"]
    return urls, stop


def in_process(service: Any, body: bytes, ctype: str, accept: str) -> Callable[[], bytes]:
    """The replica's own handling of one body, without HTTP and Serve: what the route
    runs (``PredictionService.answer``), or before it existed the JSON models' path."""
    if hasattr(service, "answer"):
        def run() -> bytes:
            status, out, _ = service.answer("/v1/predict", body, ctype, accept)
            if status != 200:
                raise RuntimeError(f"in-process {status}: {out[:200]!r}")
            return out
        return run

    from prescale.app.api_models import PredictRequest

    def legacy() -> bytes:
        req = PredictRequest.model_validate(json.loads(body))
        return json.dumps(service.predict(req), allow_nan=False).encode()

    return legacy


def answer_json(content: bytes, accept: str) -> dict[str, Any]:
    if accept == ARROW_STREAM:
        from prescale.app.serve_client import predictions_from_table, read_table

        return predictions_from_table(read_table(content))
    return json.loads(content)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="latency rounds")
    ap.add_argument("--containers", type=int, default=1000, help="containers per batched call")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--duration-s", type=float, default=10.0, help="throughput run length")
    ap.add_argument("--window", type=int, default=30, help="samples per container window")
    ap.add_argument("--replicas", type=int, default=1, help="Serve replicas (fixed)")
    ap.add_argument("--batch-wait-s", type=float, default=0.005,
                    help="batch_wait_timeout_s of the replica (user_config)")
    ap.add_argument("--forms", default=",".join(FORMS),
                    help=f"body forms to measure, comma-separated ({', '.join(FORMS)})")
    ap.add_argument("--no-echo", action="store_true", help="leave the echo deployment out")
    ap.add_argument("--url", default=None, help="use a running API instead of starting one "
                    "(no echo unless it serves /echo)")
    ap.add_argument("--direct-ingress", action="store_true",
                    help="Serve's direct ingress: each app's replica serves HTTP on its own "
                    "port (RAY_SERVE_ENABLE_DIRECT_INGRESS=1), no proxy in the path")
    ap.add_argument("--jitter", action="store_true",
                    help="readings that vary as real ones do (memory ±10 %% in pages, CPU "
                    "0.1-0.5 s/s), not regular lines: what compression meets in practice")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    forms = [f for f in args.forms.split(",") if f]
    JITTER["on"] = args.jitter
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        ap.error(f"unknown forms {unknown}; known: {', '.join(FORMS)}")

    from prescale.app.core.features import compute_features
    from prescale.app.serve_app import PredictionService
    from prescale.app.settings import load_settings

    data_dir = tempfile.mkdtemp(prefix="bench-serve-")
    settings = load_settings(None, data_dir=data_dir)
    t0 = time.time() - 3600
    service = PredictionService(settings)  # the same code the replica runs
    if not hasattr(service, "answer"):
        forms = [f for f in forms if not f.startswith("arrow")]  # before the binary API
    one = bodies(1, args.window, t0, forms)
    many = bodies(args.containers, args.window, t0, forms)

    from prescale.app.api_models import PredictRequest
    from prescale.app.serve_jobs import window_of

    job_one = window_of(PredictRequest.model_validate_json(payload(1, args.window, t0)))
    job_many = window_of(PredictRequest.model_validate_json(
        payload(args.containers, args.window, t0, series=True)))

    def core(job: Any) -> Callable[[], Any]:
        return lambda: service.predictor.predict(compute_features(
            job.window, recent_steps=settings.predictor.recent_steps))

    stop = None
    urls = {"/": args.url, "/echo": args.url}
    echo = not args.no_echo
    if args.url is None:
        t = time.perf_counter()
        urls, stop = start_serve(settings, args.replicas, args.batch_wait_s, echo,
                                 args.direct_ingress)
        start_s = time.perf_counter() - t
    else:
        start_s = float("nan")
    token = os.environ.get("PRESCALE_API_TOKEN")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    local = threading.local()

    def post(path: str, body: bytes, ctype: str, accept: str) -> bytes:
        sess = getattr(local, "s", None)
        if sess is None:
            sess = local.s = requests.Session()
        base = urls["/echo" if path.startswith("/echo") else "/"]
        r = sess.post(base + path, data=body, timeout=120,
                      headers={"Content-Type": ctype, "Accept": accept, **auth})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return r.content

    try:
        # sanity: every form's HTTP answer equals the in-process JSON answer
        want = json.loads(in_process(service, *one["samples"])()) if "samples" in one else None
        same: dict[str, bool] = {}
        for form, (body, ctype, accept) in one.items():
            got = answer_json(post("/v1/predict", body, ctype, accept), accept)
            want = want or got
            same[form] = got["predictions"] == want["predictions"]

        calls = {f"predict {form}": (lambda b=b: post("/v1/predict", *b))
                 for form, b in one.items()}
        if echo:
            calls = {"echo": lambda: post("/echo/", one[forms[0]][0], JSON_TYPE, JSON_TYPE),
                     **calls}
        lat = {k: percentiles(v) for k, v in time_interleaved(calls, args.requests).items()}
        lat["in-process service (samples)"] = percentiles(time_calls(
            in_process(service, *bodies(1, args.window, t0, ["samples"])["samples"]),
            args.requests))
        if "arrow" in one:
            lat["in-process service (arrow)"] = percentiles(time_calls(
                in_process(service, *one["arrow"]), args.requests))
        lat["in-process core"] = percentiles(time_calls(core(job_one), args.requests))

        tput: dict[str, dict[str, Any]] = {}
        for form, (body, ctype, accept) in many.items():
            post("/v1/predict", body, ctype, accept)
            n_h, s_h, e_h = run_threads(lambda b=body, c=ctype, a=accept: post(
                "/v1/predict", b, c, a), args.clients, args.duration_s)
            n_l, s_l, e_l = run_threads(in_process(service, body, ctype, accept),
                                        args.clients, args.duration_s)
            tput[form] = {"bytes": len(body),
                          "http": n_h * args.containers / s_h, "http_errors": e_h,
                          "http_requests": n_h,
                          "in_process": n_l * args.containers / s_l, "in_process_errors": e_l}
        n_c, s_c, _ = run_threads(core(job_many), 1, min(args.duration_s, 5.0))
        core_rate = n_c * args.containers / s_c
        echo_rate = None
        if echo:
            big = many[forms[-1]][0]
            n_e, s_e, _ = run_threads(lambda: post("/echo/", big, JSON_TYPE, JSON_TYPE),
                                      args.clients, args.duration_s)
            echo_rate = {"form": forms[-1], "requests_per_s": n_e / s_e, "bytes": len(big),
                         "containers_per_s": n_e * args.containers / s_e}
    finally:
        if stop is not None:
            stop()
        service.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    result = {
        "command": "python -m prescale.scripts.bench_serve " + shlex.join(argv or sys.argv[1:]),
        "containers_per_request": args.containers, "clients": args.clients,
        "window_samples": args.window, "replicas": args.replicas,
        "batch_wait_s": args.batch_wait_s, "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "serve_start_s": start_s, "urls": urls,
        "jitter": args.jitter,
        "direct_ingress": args.direct_ingress,
        "http_equals_in_process": same, "latency_single": lat, "throughput": tput,
        "in_process_core_container_predictions_per_s": core_rate, "echo_throughput": echo_rate,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_tables(result, args)
    return 0


def _print_tables(result: dict[str, Any], args: argparse.Namespace) -> None:
    lat = result["latency_single"]
    print(f"`{result['command']}`: window {args.window} samples/container, {args.replicas} "
          f"replica(s) per app (num_cpus 0.25), batch wait {args.batch_wait_s * 1000:g} ms, "
          f"{result['cpus']} CPUs, load average at the end "
          f"{', '.join(f'{x:.1f}' for x in result['load_average'])}; HTTP answer == "
          f"in-process answer: {result['http_equals_in_process']}\n")
    floor = lat.get("echo", {}).get("p50_ms")
    print(f"| one container ({args.requests} rounds, in turn) | p50 ms | p99 ms | mean ms | "
          "p50 / echo p50 |")
    print("|---|---|---|---|---|")
    for k, v in lat.items():
        ratio = f"{v['p50_ms'] / floor:.2f}×" if floor and not k.startswith("in-process") else "–"
        print(f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['mean_ms']:.2f} | {ratio} |")
    print(f"\n| {args.containers} containers/request, {args.clients} clients, "
          f"{args.duration_s:g} s | body KiB | HTTP container-predictions/s | in-process "
          "service | HTTP / in-process |")
    print("|---|---|---|---|---|")
    for form, v in result["throughput"].items():
        print(f"| `{form}` | {v['bytes'] / 1024:,.0f} | {v['http']:,.0f} | "
              f"{v['in_process']:,.0f} | {v['http'] / v['in_process']:.2f} |")
    print(f"| in-process core (features + predictor, 1 thread) | – | – | "
          f"{result['in_process_core_container_predictions_per_s']:,.0f} | – |")
    e = result["echo_throughput"]
    if e:
        print(f"| echo of the `{e['form']}` body | {e['bytes'] / 1024:,.0f} | "
              f"{e['containers_per_s']:,.0f} ({e['requests_per_s']:.1f} requests/s) | – | – |")
    errors = sum(v["http_errors"] + v["in_process_errors"] for v in result["throughput"].values())
    print(f"\nURLs {result['urls']} (direct ingress: {result['direct_ingress']}; jitter: "
          f"{result['jitter']}); "
          f"serve start {result['serve_start_s']:.1f} s; errors during the throughput runs: "
          f"{errors}")


if __name__ == "__main__":
    sys.exit(main())
