"""Scheduled retraining in the live loop, on real Ray (actors/retrainer.py).

The real coordinator, pool and monitor (simulated containers, app/telemetry/simulated.py)
tick every 0.5 s over a history store that also holds a fleet where a learned model can
beat the trend heuristic (tests/fleets.py: CPU surges before OOM kills no memory trend
announces). The global model serving is a stump an operator forced in an hour ago, so
the weekly rule (here 10 minutes) makes it due. The coordinator must start the retraining
through Ray Tune as a background Ray task, keep ticking at its pace while it trains,
promote the result only through the gate (with the gate's numbers in the registry), and
log both ends in the decision log.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

import pytest

from prescale.app.settings import load_settings
from prescale.app.store.history import HistoryStore
from prescale.app.store.registry import ModelRegistry
from prescale.app.telemetry.replay import replay_into
from prescale.tuning.register import GLOBAL_APP
from prescale.tuning.train import fit_model
from prescale.tuning.training_data import build_training_data
from tests.fleets import DATA_KW, WEAK_RF, warning_fleet

pytestmark = pytest.mark.slow
MiB = 2**20
INTERVAL_S = 0.5


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    import ray

    from prescale.actors import runtime

    data_dir = tmp_path_factory.mktemp("retrain")
    base = load_settings()
    s = type(base).model_validate({
        **base.model_dump(),
        "data_dir": str(data_dir),
        "loop": {**base.loop.model_dump(), "interval_s": INTERVAL_S,
                 "window_steps": DATA_KW["window_steps"]},
        "predictor": {**base.predictor.model_dump(), "horizon_s": DATA_KW["horizon_s"],
                      "recent_steps": DATA_KW["recent_steps"]},
        "sources": {**base.sources.model_dump(), "simulated": 20},
        "models": {**base.models.model_dump(), "retrain_trials": 2,
                   "retrain_interval_s": 600.0, "retrain_check_interval_s": 1.0},
    })
    fleet = warning_fleet()
    replay_into(fleet, HistoryStore(s.history_uri()))
    # a stump forced in as the global model an hour ago (an operator's --force)
    data = build_training_data(fleet, **DATA_KW)
    weak = fit_model(data, "random_forest", WEAK_RF)
    an_hour_ago = lambda: time.time() - 3600  # noqa: E731
    registry = ModelRegistry(s.registry_dir(), clock=an_hour_ago)
    ts = data.ts_s[data.train_idx]
    v = registry.register(
        weak, app=GLOBAL_APP, tier="memory", features=list(data.features),
        metrics={"val_pr_auc": 0.2}, promote=True, clock=an_hour_ago,
        training={"since_s": float(ts.min()), "until_s": float(ts.max()),
                  "rows": int(data.train_idx.size),
                  "positives": int(data.y[data.train_idx].sum()), "data_hash": "weak"})
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=s.ray.namespace,
             object_store_memory=200 * MiB, log_to_driver=False)
    handles = runtime.start_actors(s, run_id=f"retrain-{uuid.uuid4().hex[:6]}")
    try:
        yield s, handles, v
    finally:
        runtime.stop_actors(handles)
        ray.shutdown()


def test_scheduled_retrain_runs_in_the_background_and_promotes_through_the_gate(loop):
    from prescale.actors import runtime
    from prescale.app.store.decision_log import read_log

    s, handles, weak = loop
    ticks: list[tuple[float, bool]] = []
    stages: list[tuple[dict, bool]] = []
    done_at: list[int] = []
    stop = threading.Event()

    def on_tick(summary: dict) -> None:
        r = summary["retrain"]
        ticks.append((summary["tick_s"], r["running"] is not None))
        stages.append((summary["stages_s"], r["running"] is not None))
        if r["last"] is not None and not done_at:
            done_at.append(len(ticks))
        if done_at and len(ticks) >= done_at[0] + 20:
            stop.set()

    started = time.monotonic()
    runtime.run_loop(handles, s, duration_s=300.0, stop=stop, on_tick=on_tick)
    wall_s = time.monotonic() - started
    assert done_at, f"the retraining did not finish in {wall_s:.0f} s ({len(ticks)} ticks)"

    # promoted only through the gate: it beat the forced stump and the heuristic on the
    # same validation rows, and the registry keeps the gate's numbers
    events = [r for r in read_log(HistoryStore(s.history_uri()), kinds={"event"})
              if r.get("container") == "_models"]
    registry = ModelRegistry(s.registry_dir())
    current = registry.current(GLOBAL_APP, "memory")
    assert current.version_id != weak.version_id, [e["reason"] for e in events]
    assert current.training["method"] == "tune"
    gate = current.training["gate"]
    refs = {c["reference"]: c for c in gate["comparisons"]}
    assert set(refs) == {f"current model {weak.version_id} (random_forest)", "heuristic"}
    assert all(c["passed"] and c["ci_low"] > 0 and c["gain_ap"] >= gate["margin_ap"]
               for c in refs.values())
    assert registry.get(GLOBAL_APP, "memory", weak.version_id).status == "retired"

    kinds = [r["event"] for r in events]
    assert "retrain_started" in kinds and "retrain_done" in kinds
    started_rec = next(r for r in events if r["event"] == "retrain_started")
    assert started_rec["reason"].startswith("retraining _global: periodic: ")
    done = next(r for r in events if r["event"] == "retrain_done")
    assert f"{current.version_id} promoted: promoted: validation AP" in done["reason"]

    during = [t for t, running in ticks if running]
    after = [t for t, running in ticks[done_at[0]:]]
    assert len(during) >= 10  # it trained across many ticks: the tick never waited for it
    # the loop kept its pace: about one tick per interval over the whole run
    assert len(ticks) >= 0.7 * wall_s / INTERVAL_S
    # and a tick took no longer while it trained
    med_during, med_after = statistics.median(during), statistics.median(after)
    print(f"\nticks: {len(during)} while training (median {med_during * 1000:.0f} ms), "
          f"{len(after)} after (median {med_after * 1000:.0f} ms); wall {wall_s:.0f} s")
    for name in stages[0][0]:
        d = statistics.median(st[name] for st, run in stages if run)
        a = statistics.median(st[name] for st, run in stages[done_at[0]:])
        print(f"  {name}: {d * 1000:.1f} ms while training, {a * 1000:.1f} ms after")
    assert med_during <= max(1.5 * med_after, med_after + 0.05), (med_during, med_after)
