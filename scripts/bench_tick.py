"""Tick throughput: milliseconds of one engine tick beside a floor measured in the same run.

Usage: ``python -m prescale.scripts.bench_tick [--containers 1000,10000,100000] [--repeats R]
[--seed S] [--config PATH] [--json]`` (or ``prescale bench tick``).

For each N of ``--containers`` it builds a seeded window ``float64[N, W, M]``
(W = ``settings.loop.window_steps``, M = ``len(METRICS)``) of a mixed fleet
(:func:`make_fleet`: leaking, steady, idle, CPU-hogging, young and unlimited
containers over 20 apps) and times one :meth:`app.core.engine.Engine.plan` — the
exact decision path the live coordinator runs: features → heuristic predictor → each
app's model → thresholds → outcome judgements → policy (pre-emptive scale-ups and idle
scale-downs) → guards. Before the timed ticks, one warm-up tick runs
``cost.idle_after_s`` earlier on the same fleet, so the idle containers have been low
long enough and the timed tick proposes real scale-downs as well as scale-ups; every
timed repeat starts from a copy of that warmed state.

Two modes per N:

- ``heuristic``: ``models=None`` (the trend predictor alone);
- ``learned``: every app served by one calibrated ``hist_gradient_boosting`` model
  (``app.models``; 60 iterations, 1 thread) trained on a separate synthetic fleet of
  the same generator, passed as ``models=lambda app: AppModel(...)``. The engine calls
  it once per distinct model over all the rows it serves (1 call; it was one per app,
  20 calls, before the engine grouped them).

Stages, all measured inside the same ``plan`` call (the engine's own functions are
wrapped with timers, nothing else changes):

- ``features``: ``compute_features`` of the window;
- ``prediction``: the rest of ``Engine.predict`` (heuristic predictor, grouping rows
  by app, the model calls; ``model`` is the time inside ``predict_proba`` alone);
- ``decision``: the rest of ``plan`` — ``thresholds`` (per-container threshold
  lookup), ``policy`` (``decide``: policy + cost + guards) and ``judge_other``
  (outcome judgements, lead-time checks, building the asks);
- ``total``: the whole ``plan`` call (= features + prediction + decision);
- ``gc``: how much of the total the garbage collector ran (in whichever stage it hit).

The **floor**, measured in the same run on the same arrays:

- ``read``: ``window.sum()`` — one pass that reads every byte of the window once
  (a reduction, so nothing is written);
- ``predict``: one batched ``predict_proba`` of the same learned model over all N
  feature rows (the features themselves are not in the floor).

``ratio = total (learned) / (read + predict)``: how far the whole tick is above the
cheapest thing any tick must do (look at the data once, run the model once). The
heuristic tick against the same floor is given too (``ratio_heuristic``), and the
learned ratio in CPU time of this process (``ratio_cpu``: ``time.process_time``
medians), which other processes' load on a shared machine disturbs less than wall time.

Each figure is the median over ``--repeats`` (default 5; at most 3 from 50,000
containers up), with the min and max beside it; the stage figures of a mode are those
of its median repeat (by total), so they add up to its total. Memory: the window's
bytes, the process's peak RSS after each N, and the tick's own peak (``tick_peak_mib``:
what one extra, untimed ``plan`` allocates at most at once, traced by ``tracemalloc``)
against the window (``tick_peak_per_window``, the larger of the two modes). Nothing is
asserted; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import prescale.app.core.engine as engine_mod
from prescale.app.core.actions import ActionKind
from prescale.app.core.engine import AppModel, Engine, EngineConfig, Snapshot
from prescale.app.core.features import FEATURES, compute_features
from prescale.app.core.sample import METRICS, M
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.models import make_model
from prescale.app.models.base import FailureModel

DEFAULT_CONTAINERS = (1_000, 10_000, 100_000)
MAX_CONTAINERS = 1_000_000
N_APPS = 20
MIB = 2**20
NOW_S = 1_704_067_200.0
#: share of each kind in the fleet (the rest is steady)
MIX = {"leak": 0.10, "idle": 0.25, "cpu_hog": 0.08, "young": 0.04, "unlimited": 0.03}
MODEL_PARAMS = {"max_iter": 60, "n_threads": 1}


# -- the fleet -----------------------------------------------------------------------------


@dataclass
class Fleet:
    window: np.ndarray  # float64[N, W, M]
    names: list[str]
    apps: list[str]
    kind: np.ndarray  # str[N]
    fails: np.ndarray  # bool[N]: memory reaches the limit within the horizon (ground truth)


def make_fleet(n: int, w: int, *, now_s: float, interval_s: float, horizon_s: float,
               seed: int) -> Fleet:
    """A seeded window of ``n`` containers × ``w`` steps ``interval_s`` apart ending at
    ``now_s``, every column of :data:`METRICS` filled as a cgroup v1/v2 source would.

    Kinds (shares in :data:`MIX`, the rest steady): ``leak`` (memory grows 0.2–1 % of
    the limit per second, ending at 60–97 % of it), ``steady`` (55–80 % of the memory
    limit, 55–85 % of the CPU quota), ``idle`` (5–30 % of memory, 2–10 % of CPU),
    ``cpu_hog`` (at its quota, 50–90 % of periods throttled), ``young`` (steady, but
    only its last 3–9 rows present) and ``unlimited`` (steady, no memory limit).
    ``fails`` is the ground truth the learned model is trained on: the memory usage
    extrapolated ``horizon_s`` ahead reaches the limit.
    """
    rng = np.random.default_rng(seed)
    kinds = np.array(["steady", *MIX])
    probs = np.array([1 - sum(MIX.values()), *MIX.values()])
    kind = kinds[rng.choice(len(kinds), size=n, p=probs)]
    leak, idle, hog = kind == "leak", kind == "idle", kind == "cpu_hog"
    rel_t = (np.arange(w) - (w - 1)) * interval_s  # … −2Δ, −Δ, 0
    win = np.full((n, w, len(METRICS)), np.nan)

    def put(name: str, values: np.ndarray) -> None:
        win[:, :, M[name]] = values

    put("ts_s", np.broadcast_to(now_s + rel_t, (n, w)))
    # memory
    limit = rng.choice(np.array([256, 512, 1024, 1536]) * MIB, size=n).astype(float)
    level = rng.uniform(0.55, 0.80, n)
    level[idle] = rng.uniform(0.05, 0.30, idle.sum())
    level[hog] = rng.uniform(0.30, 0.60, hog.sum())
    slope = np.zeros(n)  # fraction of the limit per second
    slope[leak] = rng.uniform(0.002, 0.010, leak.sum())
    level[leak] = rng.uniform(0.60, 0.97, leak.sum())  # level at the last row
    usage = limit[:, None] * (level[:, None] + slope[:, None] * rel_t[None, :]
                              + rng.normal(0, 0.004, (n, w)))
    usage = np.maximum(usage, 1 * MIB)
    fails = leak & (level + slope * horizon_s >= 1.0)
    limit[kind == "unlimited"] = np.inf
    put("memory_usage_bytes", usage)
    put("memory_working_set_bytes", 0.9 * usage)
    put("memory_limit_bytes", np.broadcast_to(limit[:, None], (n, w)))
    put("memory_failcnt_total", np.zeros((n, w)))
    put("oom_kills_total", np.zeros((n, w)))
    # cpu: cumulative seconds, 10 CFS periods per second
    quota = rng.choice(np.array([0.25, 0.5, 1.0]), size=n)
    busy = rng.uniform(0.55, 0.85, n)
    busy[idle] = rng.uniform(0.02, 0.10, idle.sum())
    busy[hog] = rng.uniform(0.97, 1.0, hog.sum())
    rate = quota[:, None] * np.clip(busy[:, None] + rng.normal(0, 0.03, (n, w)), 0, 1)
    put("cpu_usage_s_total", np.cumsum(rate * interval_s, axis=1) + rng.uniform(0, 1e4, (n, 1)))
    put("cpu_quota_cores", np.broadcast_to(quota[:, None], (n, w)))
    periods = np.broadcast_to(np.cumsum(np.full(w, 10 * interval_s)), (n, w))
    put("cpu_periods_total", periods)
    throttled = np.where(hog, rng.uniform(0.5, 0.9, n), 0.0)
    put("cpu_throttled_periods_total", periods * throttled[:, None])
    put("cpu_throttled_s_total", periods * throttled[:, None] * 0.01)
    # block I/O and network counters
    for name, scale in (("io_read_bytes_total", 1e6), ("io_write_bytes_total", 5e5),
                        ("net_rx_bytes_total", 2e6), ("net_tx_bytes_total", 1e6)):
        put(name, np.cumsum(rng.exponential(scale * interval_s, (n, w)), axis=1))
    # application timings for a fifth of the fleet
    timed = rng.random(n) < 0.2
    calls = np.cumsum(rng.poisson(50, (n, w)), axis=1).astype(float)
    put("block_calls_total", np.where(timed[:, None], calls, np.nan))
    put("block_failures_total", np.where(timed[:, None], 0.0, np.nan))
    put("block_latency_s", np.where(timed[:, None], rng.gamma(4, 0.01, (n, w)), np.nan))
    # PSI (cgroup v2) for half the fleet
    v2 = rng.random(n) < 0.5
    for name, scale in (("cpu_pressure_some_s_total", 0.05),
                        ("memory_pressure_some_s_total", 0.01),
                        ("memory_pressure_full_s_total", 0.005),
                        ("io_pressure_some_s_total", 0.02)):
        psi = np.cumsum(rng.exponential(scale * interval_s, (n, w)), axis=1)
        put(name, np.where(v2[:, None], psi, np.nan))
    # young containers: the ring buffer pads the start of their window with nan rows
    for i in np.flatnonzero(kind == "young"):
        win[i, : max(w - int(rng.integers(3, 10)), 0)] = np.nan
    names = [f"c{i:06d}" for i in range(n)]
    apps = [f"app{i % N_APPS:02d}" for i in range(n)]
    return Fleet(win, names, apps, kind, fails)


def train_model(settings: Any, *, seed: int, n: int = 6_000) -> FailureModel:
    """A calibrated boosting model over every feature, trained on a separate fleet."""
    p = settings.predictor
    fleet = make_fleet(n, settings.loop.window_steps, now_s=NOW_S,
                       interval_s=settings.loop.interval_s, horizon_s=p.horizon_s,
                       seed=seed + 1_000_003)
    x = compute_features(fleet.window, recent_steps=p.recent_steps)
    return make_model("hist_gradient_boosting", **MODEL_PARAMS).fit(
        x, fleet.fails.astype(np.int64), seed=seed)


# -- timing --------------------------------------------------------------------------------


@dataclass
class _Clock:
    s: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.s[key] = self.s.get(key, 0.0) + seconds

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(key, time.perf_counter() - t)
        return timed


class _TimedEngine(Engine):
    """The engine with timers around its public ``predict`` and ``thresholds``."""

    clock: _Clock

    def predict(self, snap: Snapshot, models: Any = None) -> Any:
        return self.clock.wrap("predict", super().predict)(snap, models)

    def thresholds(self, book: ThresholdBook, names: Sequence[str],
                   apps: Sequence[str], labels: Any = None) -> Any:
        return self.clock.wrap("thresholds", super().thresholds)(book, names, apps, labels)


class _TimedModel:
    def __init__(self, model: FailureModel, clock: _Clock) -> None:
        self.input = model.input
        self.predict_proba = clock.wrap("model", model.predict_proba)


@contextlib.contextmanager
def _gc_time(clock: _Clock) -> Iterator[None]:
    """Add the time the garbage collector runs inside the block to ``clock["gc"]``."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            clock.add("gc", time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


@contextlib.contextmanager
def _timed_engine_functions(clock: _Clock) -> Iterator[None]:
    """Time the engine's ``compute_features`` and ``decide`` (restored afterwards)."""
    saved = {}
    for name, key in (("compute_features", "features"), ("decide", "policy")):
        if not hasattr(engine_mod, name):
            raise RuntimeError(f"app.core.engine no longer calls {name}: update the tick bench")
        saved[name] = getattr(engine_mod, name)
        setattr(engine_mod, name, clock.wrap(key, saved[name]))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(engine_mod, name, fn)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": _ms(statistics.median(values)), "min": _ms(min(values)),
            "max": _ms(max(values))}


def repeats_for(n: int, repeats: int) -> int:
    return repeats if n < 50_000 else min(repeats, 3)


def _count_asks(asks: Sequence[Any]) -> dict[str, int]:
    out = {"asks": len(asks), "scale_up": 0, "scale_down": 0, "scale_out": 0}
    for a in asks:
        if a.kind is ActionKind.SCALE_OUT:
            out["scale_out"] += 1
        elif a.new_limit > a.old_limit:
            out["scale_up"] += 1
        else:
            out["scale_down"] += 1
    return out


def bench_mode(fleet: Fleet, settings: Any, model: FailureModel | None, repeats: int
               ) -> dict[str, Any]:
    """Time ``Engine.plan`` on ``fleet`` ``repeats`` times from the same warmed state."""
    config = EngineConfig.from_settings(settings)
    book = ThresholdBook(ThresholdConfig.from_settings(settings.thresholds))
    engine = _TimedEngine(config)
    clock = _Clock()
    engine.clock = clock
    models = None
    if model is not None:
        served = AppModel("hist_gradient_boosting/bench", _TimedModel(model, clock), FEATURES)

        def models(app: str) -> AppModel:
            return served

    # warm-up tick idle_after_s earlier: starts the idle runs (and the cooldowns)
    ts = fleet.window[:, :, M["ts_s"]]
    earlier = settings.cost.idle_after_s + settings.loop.interval_s
    ts -= earlier
    try:
        engine.plan(Snapshot(NOW_S - earlier, fleet.names, fleet.apps, fleet.window), book,
                    models=models)
    finally:
        ts += earlier
    warmed = copy.deepcopy(engine.state)
    runs: list[dict[str, float]] = []
    counts: dict[str, int] = {}
    snap = Snapshot(NOW_S, fleet.names, fleet.apps, fleet.window)
    for _ in range(repeats):
        engine.state = copy.deepcopy(warmed)
        clock.s = {}
        gc.collect()
        with _timed_engine_functions(clock), _gc_time(clock):
            t, c = time.perf_counter(), time.process_time()
            plan = engine.plan(snap, book, models=models)
            total, cpu = time.perf_counter() - t, time.process_time() - c
        s = clock.s
        run = {
            "features": s["features"],
            "prediction": s["predict"] - s["features"],
            "model": s.get("model", 0.0),
            "decision": total - s["predict"],
            "thresholds": s["thresholds"],
            "policy": s["policy"],
            "judge_other": total - s["predict"] - s["thresholds"] - s["policy"],
            "total": total,
            "gc": s.get("gc", 0.0),
            "total_cpu": cpu,
        }
        runs.append(run)
        counts = _count_asks(plan.asks)
        del plan
    median_run = sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]
    engine.state = copy.deepcopy(warmed)
    return {
        "ms": {k: _ms(v) for k, v in median_run.items()},
        "spread_ms": {k: _spread([r[k] for r in runs]) for k in median_run},
        "tick_peak_mib": round(tick_peak_bytes(engine, snap, book, models) / MIB, 1),
        **counts,
    }


def tick_peak_bytes(engine: Engine, snap: Snapshot, book: ThresholdBook, models: Any) -> int:
    """The most memory one ``engine.plan`` holds at once beyond what existed before it
    (the window, the model, the engine's state): ``tracemalloc``'s peak over the call,
    which numpy's buffers report to as well as Python objects. Run apart from the timed
    ticks (tracing slows every allocation). E.g. a tick that builds a 10 MiB feature
    matrix, frees it and then builds 4 MiB of decisions peaks at 10 MiB (plus what is
    alive beside it at that moment)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        plan = engine.plan(snap, book, models=models)
        peak = tracemalloc.get_traced_memory()[1]
        del plan
    finally:
        tracemalloc.stop()
    return peak


def bench_floor(fleet: Fleet, model: FailureModel, features: np.ndarray, repeats: int
                ) -> dict[str, Any]:
    read, pred, cpu = [], [], []
    for _ in range(repeats):
        gc.collect()
        c = time.process_time()
        t = time.perf_counter()
        fleet.window.sum()
        read.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.predict_proba(features)
        pred.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    floor = [a + b for a, b in zip(read, pred, strict=True)]
    return {"read_ms": _spread(read), "predict_ms": _spread(pred), "floor_ms": _spread(floor),
            "floor_cpu_ms": _spread(cpu)}


def bench_n(n: int, settings: Any, model: FailureModel, repeats: int, seed: int
            ) -> dict[str, Any]:
    p = settings.predictor
    fleet = make_fleet(n, settings.loop.window_steps, now_s=NOW_S,
                       interval_s=settings.loop.interval_s, horizon_s=p.horizon_s, seed=seed)
    r = repeats_for(n, repeats)
    heuristic = bench_mode(fleet, settings, None, r)
    learned = bench_mode(fleet, settings, model, r)
    features = compute_features(fleet.window, recent_steps=p.recent_steps)
    floor = bench_floor(fleet, model, features, r)
    floor_ms = floor["floor_ms"]["median"]
    out = {
        "containers": n,
        "window_shape": list(fleet.window.shape),
        "window_mib": round(fleet.window.nbytes / MIB, 1),
        "repeats": r,
        "kinds": {k: int((fleet.kind == k).sum()) for k in ("steady", *MIX)},
        "heuristic": heuristic,
        "learned": learned,
        "floor": floor,
        "ratio": round(learned["ms"]["total"] / floor_ms, 2) if floor_ms > 0 else None,
        "ratio_heuristic": (round(heuristic["ms"]["total"] / floor_ms, 2)
                            if floor_ms > 0 else None),
        # the same ratio in CPU seconds of this process (less sensitive to other load)
        "ratio_cpu": (round(learned["spread_ms"]["total_cpu"]["median"]
                            / floor["floor_cpu_ms"]["median"], 2)
                      if floor["floor_cpu_ms"]["median"] > 0 else None),
    }
    del fleet, features
    gc.collect()
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # the tick's own memory against the window it reads (issue 18: ≤ 2×)
    out["tick_peak_per_window"] = round(
        max(heuristic["tick_peak_mib"], learned["tick_peak_mib"]) / out["window_mib"], 2)
    return out


def run(containers: Sequence[int], settings: Any, *, repeats: int = 5, seed: int = 0,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = train_model(settings, seed=seed)
    train_s = time.perf_counter() - t0
    results = []
    for n in containers:
        if progress:
            progress(f"bench tick: {n:,} containers …")
        results.append(bench_n(n, settings, model, repeats, seed))
    return {
        "window_steps": settings.loop.window_steps,
        "metrics": len(METRICS),
        "features": len(FEATURES),
        "model": f"hist_gradient_boosting {MODEL_PARAMS} (calibrated), trained in "
                 f"{train_s:.1f} s",
        "policy": settings.policy.kind if hasattr(settings.policy, "kind") else "",
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }


# -- input and output ------------------------------------------------------------------------


def parse_containers(text: str) -> list[int]:
    """``"1000,10000"`` → ``[1000, 10000]``; ``ValueError`` naming the bad entry."""
    out = []
    for part in str(text).split(","):
        part = part.strip().replace("_", "")
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"--containers: {part!r} is not a whole number "
                             f"(give a comma-separated list such as 1000,10000)") from None
        if not 1 <= n <= MAX_CONTAINERS:
            raise ValueError(f"--containers: {n} is out of range (1 to {MAX_CONTAINERS:,})")
        out.append(n)
    return out


def format_table(res: dict[str, Any]) -> str:
    """The Markdown tables of docs/BENCHMARKS.md: median ms per tick (min–max of the
    total over the repeats), one row per size and mode, then memory and the asks."""

    def spread(sp: dict[str, float]) -> str:
        return f"{sp['median']:,.1f} ({sp['min']:,.1f}–{sp['max']:,.1f})"

    lines = ["| containers | mode | features | prediction | of which model | decision "
             "| of which thresholds / policy + guards / judge + asks | total (min–max) "
             "| floor: read | floor: predict_proba | floor (min–max) | total ÷ floor |",
             "|---:|---|" + "---:|" * 10]
    for r in res["results"]:
        f = r["floor"]
        for mode, ratio in (("heuristic", r["ratio_heuristic"]), ("learned", r["ratio"])):
            ms = r[mode]["ms"]
            lines.append(
                f"| {r['containers']:,} | {mode} | {ms['features']:,.1f} | "
                f"{ms['prediction']:,.1f} | {ms['model']:,.1f} | {ms['decision']:,.1f} | "
                f"{ms['thresholds']:,.1f} / {ms['policy']:,.1f} / {ms['judge_other']:,.1f} | "
                f"{spread(r[mode]['spread_ms']['total'])} | {f['read_ms']['median']:,.1f} | "
                f"{f['predict_ms']['median']:,.1f} | {spread(f['floor_ms'])} | {ratio} |")
    lines += ["", "| containers | repeats | window | peak RSS | tick's own peak MiB (heuristic "
              "/ learned) ÷ window | GC inside the tick (heuristic / "
              "learned, ms) | CPU ms: learned tick / floor = ratio "
              "| asks heuristic (up / down / out) | asks learned (up / down / out) |",
              "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["results"]:
        h, lr = r["heuristic"], r["learned"]
        lines.append(
            f"| {r['containers']:,} | {r['repeats']} | {r['window_shape']} float64 = "
            f"{r['window_mib']:,} MiB | {r['peak_rss_mib']:,} MiB | "
            f"{h['tick_peak_mib']:,} / {lr['tick_peak_mib']:,} ÷ {r['window_mib']:,} = "
            f"{r['tick_peak_per_window']} | "
            f"{h['ms']['gc']:,.1f} / {lr['ms']['gc']:,.1f} | "
            f"{lr['spread_ms']['total_cpu']['median']:,.1f} / "
            f"{r['floor']['floor_cpu_ms']['median']:,.1f} = {r['ratio_cpu']} | "
            f"{h['asks']} ({h['scale_up']} / {h['scale_down']} / {h['scale_out']}) | "
            f"{lr['asks']} ({lr['scale_up']} / {lr['scale_down']} / {lr['scale_out']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="prescale bench tick",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--containers", default=",".join(map(str, DEFAULT_CONTAINERS)),
                    help="comma-separated fleet sizes")
    ap.add_argument("--repeats", default="5", help="timed ticks per size (≤ 3 from 50k up)")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        containers = parse_containers(args.containers)
        for name in ("repeats", "seed"):
            v = getattr(args, name)
            if not str(v).isdigit() or (name == "repeats" and int(v) < 1):
                raise ValueError(f"--{name}: {v!r} must be a whole number"
                                 f"{' ≥ 1' if name == 'repeats' else ' ≥ 0'}")
        from prescale.app.settings import ConfigError, load_settings
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = run(containers, settings, repeats=int(args.repeats), seed=int(args.seed),
              progress=None if args.json else lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"window steps {res['window_steps']}, {res['metrics']} metrics, "
              f"{res['features']} features; model: {res['model']}; "
              f"load average {res['load_average']}")
        print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
