"""The tick's fast paths give exactly what the slow ones gave (``prescale bench tick``
work): each test keeps the previous implementation as a reference and compares.

- ``decide(..., sparse=True)`` is the full decision list filtered to what is read
  (p_fail ≥ threshold, or a low tier), same order, same state;
- ``Engine.thresholds`` (one book lookup per app and owner) equals one lookup per
  container;
- ``Engine.predict`` calls each distinct model once, with the same probabilities as
  one call per app;
- the boosting model's thread limit uses one cached ``ThreadpoolController``;
- ``OutcomeTracker.decisions`` leaves the state per-container ``decision`` calls left;
- the guards' positional copies carry every field of ``Decision`` and ``ScalingAction``;
- the engine pauses the garbage collector only inside the tick;
- ``rate_trend``'s shifted difference (no gaps) equals the ``take_along_axis`` gather.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_policies_property import FAST, policy_configs, snapshots, states

from prescale.app.core.engine import AppModel, Engine, EngineConfig, Snapshot
from prescale.app.core.features import FEATURES, F
from prescale.app.core.policy import _low_tiers, decide
from prescale.app.core.sample import METRICS, M, Tier
from prescale.app.core.thresholds import ThresholdBook
from prescale.app.settings import Settings

TIERS = (Tier.MEMORY, Tier.CPU, Tier.DISK, Tier.NETWORK, Tier.IO)


# -- decide(sparse=True) -------------------------------------------------------------------


def _read(inp, cfg, d) -> bool:
    """The sparse rule on a decision of the full list."""
    i = inp.containers.index(d.container)
    return d.p_fail >= d.threshold or bool(_low_tiers(inp, cfg.cost)[d.tier][i])


@FAST
@given(data=st.data())
def test_sparse_decide_is_the_full_list_filtered(data):
    inp = data.draw(snapshots(n=data.draw(st.integers(1, 8))))
    cfg = data.draw(policy_configs())
    state = data.draw(states(inp))
    full, full_state = decide(inp, cfg, state)
    got, got_state = decide(inp, cfg, state, sparse=True)
    want = [d for d in full if _read(inp, cfg, d)]
    assert repr(got) == repr(want)  # repr: nan == nan (float repr round-trips)
    assert repr(got_state) == repr(full_state)
    # everything the coordinator logs and the engine turns into asks is there
    logged = [d for d in full if d.action is not None or d.p_fail >= d.threshold]
    assert repr([d for d in got if d.action is not None or d.p_fail >= d.threshold]) == repr(
        logged)


# -- Engine.thresholds ---------------------------------------------------------------------


def reference_thresholds(engine, book, names, apps):
    """``Engine.thresholds`` before it grouped by (app, owner), verbatim."""
    fixed = engine.config.fixed_thresholds
    return {
        tier: np.array([
            fixed[n] if n in fixed else book.value(
                tier, app=a or n, owner=engine.owner(n, a) or None)
            for n, a in zip(names, apps, strict=True)], dtype=float)
        for tier in TIERS
    }


APPS = ("", "web", "db", "batch")
OWNERS = ("team-a", "team-b")


@FAST
@given(data=st.data())
def test_thresholds_equal_one_lookup_per_container(data):
    n = data.draw(st.integers(0, 12))
    names = [f"c{i}" for i in range(n)]
    apps = [data.draw(st.sampled_from(APPS)) for _ in names]
    tenants = data.draw(st.dictionaries(st.sampled_from(["c0", "c3", *APPS[1:]]),
                                        st.sampled_from(OWNERS), max_size=3))
    fixed = data.draw(st.dictionaries(st.sampled_from(["c1", "c2", "zz"]),
                                      st.sampled_from([0.1, 1, 0.75]), max_size=2))
    base = EngineConfig.from_settings(Settings())
    engine = Engine(EngineConfig(base.predictor, base.policy, base.outcome,
                                 fixed_thresholds=fixed, tenants=tenants))
    book = ThresholdBook()
    for _ in range(data.draw(st.integers(0, 4))):
        tier = data.draw(st.sampled_from(TIERS))
        who = data.draw(st.sampled_from(["app", "owner", "default", "both"]))
        app = data.draw(st.sampled_from(APPS[1:]))
        owner = data.draw(st.sampled_from(OWNERS))
        value = data.draw(st.sampled_from([0.2, 0.4, 0.6]))
        if who == "app":
            book.set(tier, app=app, value=value)
        elif who == "owner":
            book.set(tier, owner=owner, value=value)
        elif who == "both":
            book.set(tier, app=app, owner=owner)
        else:
            book.set(tier, value=value)
    got = engine.thresholds(book, names, apps)
    want = reference_thresholds(engine, book, names, apps)
    assert list(got) == list(want)
    for tier in TIERS:
        assert got[tier].dtype == want[tier].dtype
        assert got[tier].tobytes() == want[tier].tobytes()


# -- Engine.predict: one call per model ------------------------------------------------------


class _Counting:
    """A per-row model (p depends on the row only) that counts its calls."""

    input = "features"

    def __init__(self, scale: float) -> None:
        self.scale, self.calls = scale, 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return 1 / (1 + np.exp(-self.scale * np.nan_to_num(x[:, 0] / 2**20 - 100)))


def _window(n: int, rng: np.random.Generator) -> np.ndarray:
    w = np.full((n, 12, len(METRICS)), np.nan)
    w[:, :, M["ts_s"]] = 1000.0 + 5 * np.arange(12)
    w[:, :, M["memory_usage_bytes"]] = rng.uniform(50, 150, (n, 1)) * 2**20 + np.arange(12)
    w[:, :, M["memory_limit_bytes"]] = 256 * 2**20
    w[:, :, M["cpu_usage_s_total"]] = np.cumsum(rng.uniform(0, 5, (n, 12)), axis=1)
    w[:, :, M["cpu_quota_cores"]] = 1.0
    return w


def test_predict_calls_each_model_once_with_the_per_app_probabilities():
    rng = np.random.default_rng(0)
    n = 40
    names = [f"c{i}" for i in range(n)]
    apps = [f"app{int(rng.integers(0, 6))}" for _ in names]
    shared, own = _Counting(0.1), _Counting(0.3)
    cols = ("memory_usage_last_bytes", "memory_slope_bytes_per_s")

    def models(app: str) -> AppModel | None:
        if app == "app0":
            return None  # heuristic only
        if app == "app1":
            return AppModel("own", own, cols)
        return AppModel(f"global for {app}", shared, cols)

    snap = Snapshot(1055.0, names, apps, _window(n, rng))
    engine = Engine(EngineConfig.from_settings(Settings()))
    feats, pred, model_of = engine.predict(snap, models)
    assert (shared.calls, own.calls) == (1, 1)
    # reference: the heuristic, then one call per app over that app's rows
    want = engine.config.predictor.predict(feats).tiers[engine.config.model_tier].p_fail.copy()
    for app in dict.fromkeys(apps):
        m = models(app)
        if m is not None:
            rows = np.array([i for i, a in enumerate(apps) if a == app])
            want[rows] = m.model.predict_proba(feats[rows][:, [F[c] for c in m.features]])
    assert pred.tiers[engine.config.model_tier].p_fail.tobytes() == want.tobytes()
    assert model_of == {n_: models(a).label for n_, a in zip(names, apps, strict=True)
                        if a != "app0"}
    assert list(model_of) == [n_ for a in dict.fromkeys(apps) if a != "app0"
                              for n_, b in zip(names, apps, strict=True) if b == a]


class _Writer:
    """A model that writes into what it is given (a defect in a user's model)."""

    input = "features"

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x[:, 0] = 0.0
        return np.zeros(len(x))


class _Seen:
    """A features model that keeps what it was given."""

    input = "features"

    def __init__(self) -> None:
        self.x: np.ndarray | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x[:, F["memory_usage_last_bytes"]] / 2**30


def test_one_model_over_every_row_reads_the_features_without_a_copy_and_read_only():
    rng = np.random.default_rng(1)
    n = 30
    names, apps = [f"c{i}" for i in range(n)], [f"app{i % 3}" for i in range(n)]
    snap = Snapshot(1055.0, names, apps, _window(n, rng))
    engine = Engine(EngineConfig.from_settings(Settings()))
    seen = _Seen()
    feats, pred, _ = engine.predict(snap, lambda app: AppModel("all", seen, FEATURES))
    assert seen.x is feats  # every row, every column in order: the matrix itself
    assert feats.flags.writeable  # read-only only during the call
    want = feats[:, F["memory_usage_last_bytes"]] / 2**30
    assert pred.tiers[engine.config.model_tier].p_fail.tobytes() == want.tobytes()
    # one app without a model: that model gets a copy of its rows (not the matrix)
    seen2 = _Seen()
    feats2, pred2, _ = engine.predict(
        snap, lambda app: None if app == "app0" else AppModel("all", seen2, FEATURES))
    assert seen2.x is not feats2 and len(seen2.x) == n - n // 3
    # a model that writes into its input fails by name; a window model cannot change the
    # caller's window, and the window is writable again after
    with pytest.raises(ValueError, match="read-only"):
        engine.predict(snap, lambda app: AppModel("writer", _Writer(), FEATURES))
    window_writer = _Writer()
    window_writer.input = "window"
    before = snap.window.copy()
    with pytest.raises(ValueError, match="read-only"):
        engine.predict(snap, lambda app: AppModel("writer", window_writer, ()))
    assert snap.window.flags.writeable
    assert np.array_equal(snap.window, before, equal_nan=True)


def test_one_boosting_call_equals_per_app_calls_to_the_last_bit():
    from prescale.app.models import make_model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, len(FEATURES)))
    x[rng.random(x.shape) < 0.05] = math.nan
    y = (x[:, 1] + 0.5 * rng.normal(size=400) > 0).astype(np.int64)
    model = make_model("hist_gradient_boosting", max_iter=15, n_threads=1).fit(x, y, seed=0)
    groups = rng.integers(0, 7, 400)
    whole = model.predict_proba(x)
    parts = np.empty(400)
    for g in range(7):
        parts[groups == g] = model.predict_proba(x[groups == g])
    assert whole.tobytes() == parts.tobytes()


# -- the cached thread controller ------------------------------------------------------------


def test_boosting_thread_limit_uses_one_cached_controller():
    from threadpoolctl import threadpool_info

    from prescale.app.models import make_model
    from prescale.app.models import sklearn_models as sm

    model = make_model("hist_gradient_boosting", max_iter=5, n_threads=1)
    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    with model._threads():
        inside = [i for i in threadpool_info() if i["user_api"] == "openmp"]
    assert inside and all(i["num_threads"] == 1 for i in inside)
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before
    first = sm._thread_controller()
    with model._threads():
        pass
    assert sm._thread_controller() is first


# -- outcome tracker, guards' copies, GC -----------------------------------------------------


@FAST
@given(data=st.data())
def test_outcome_decisions_batch_equals_one_call_per_container_and_tier(data):
    from prescale.app.core.outcomes import OutcomeConfig, OutcomeTracker

    n = data.draw(st.integers(0, 6))
    names = [f"c{i}" for i in range(n)]
    p = st.sampled_from([0.0, 0.3, 0.5, 1.0, math.nan])
    one, batch = OutcomeTracker(OutcomeConfig(horizon_s=20.0)), OutcomeTracker(
        OutcomeConfig(horizon_s=20.0))
    now = 1000.0
    for _ in range(data.draw(st.integers(1, 5))):
        now += data.draw(st.sampled_from([0.0, 5.0, 15.0, 30.0]))
        ticked = [c for c in names if data.draw(st.booleans())]
        cols = {t: (np.array([data.draw(p) for _ in ticked], dtype=float),
                    np.array([data.draw(p) for _ in ticked], dtype=float)) for t in TIERS}
        for i, c in enumerate(ticked):
            for t in TIERS:
                one.decision(c, t, now, float(cols[t][0][i]), float(cols[t][1][i]))
        batch.decisions(ticked, now, [(t, *cols[t]) for t in TIERS])
        # the same state: what each key saw (the checkpoint's blocks differ: one per call)
        assert repr(batch.seen) == repr(one.seen)
        assert {k: v for k, v in batch.to_dict().items() if k != "seen_blocks"} == {
            k: v for k, v in one.to_dict().items() if k != "seen_blocks"}


def test_guard_copies_carry_every_field():
    """guards builds Decision and ScalingAction positionally (faster than replace): a new
    field on either must be added there too."""
    from dataclasses import fields, replace

    from prescale.app.core.actions import ActionKind, Decision, ScalingAction
    from prescale.app.core.guards import _decision_with

    assert [f.name for f in fields(Decision)] == [
        "now_s", "container", "tier", "p_fail", "threshold", "time_to_limit_s", "forecast",
        "limit", "action", "reason"]
    assert [f.name for f in fields(ScalingAction)] == [
        "action_id", "now_s", "container", "tier", "old_limit", "new_limit", "p_fail",
        "threshold", "time_to_limit_s", "forecast", "reason", "kind", "app", "preemptive",
        "cause"]
    a = ScalingAction("c/memory@1", 1.0, "c", Tier.MEMORY, 1.0, 2.0, 0.6, 0.5, 3.0, 4.0, "r",
                      ActionKind.RESIZE, "web", False, "oom")
    d = Decision(1.0, "c", Tier.MEMORY, 0.6, 0.5, 3.0, 4.0, 1.0, a, "r")
    assert _decision_with(d, None, "x") == replace(d, action=None, reason="x")


def test_engine_pauses_the_collector_only_inside_the_tick():
    import gc

    rng = np.random.default_rng(2)
    snap = Snapshot(1055.0, ["a", "b"], ["x", "y"], _window(2, rng))
    engine = Engine(EngineConfig.from_settings(Settings()))
    seen = []
    real = engine._propose

    def spy(plan, s):
        seen.append(gc.isenabled())
        return real(plan, s)

    engine._propose = spy
    assert gc.isenabled()
    engine.plan(snap, ThresholdBook())
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        engine.plan(snap, ThresholdBook())
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


# -- features: the shifted difference when a metric has no gaps ---------------------------------


def _old_steps(mask):
    width = mask.shape[1]
    idx = np.where(mask, np.arange(width), -1)
    upto = np.maximum.accumulate(idx, axis=1) if width else idx
    prev = np.full_like(upto, -1)
    prev[:, 1:] = upto[:, :-1]
    step = mask & (prev >= 0)
    return np.maximum(prev, 0), step


def _old_delta(values, prev):
    return values - np.take_along_axis(values, prev, axis=1)


@FAST
@given(data=st.data())
def test_rate_trend_equals_the_gather_everywhere_version(data):
    """``rate_trend`` (the byte-rate tiers' trend; ``compute_features`` is the compiled
    kernel now, checked bit for bit in test_features.py) reads the shifted difference
    where a metric has no gaps: the same bits as the gather everywhere."""
    import prescale.app.core.features as fm

    n, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 14))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    win = np.abs(rng.normal(size=(n, w, len(METRICS)))) * 100
    win[:, :, M["ts_s"]] = 1000.0 + 5 * np.arange(w)
    for name in ("cpu_usage_s_total", "cpu_periods_total", "cpu_throttled_periods_total",
                 "oom_kills_total", "memory_pressure_full_s_total"):
        win[:, :, M[name]] = np.cumsum(win[:, :, M[name]], axis=1)
    holes = data.draw(st.sampled_from([0.0, 0.0, 0.1, 0.4]))
    win[rng.random(win.shape) < holes] = np.nan  # missing readings and absent rows (gaps)
    for i, k in enumerate(rng.integers(0, w + 1, n) * (rng.random(n) < 0.3)):
        win[i, :k] = np.nan  # a young container: absent rows at the start
    pairs = [("cpu_usage_s_total", "cpu_quota_cores"),
             ("memory_pressure_full_s_total", "memory_limit_bytes")]
    got = [fm.rate_trend(win, c, lim) for c, lim in pairs]
    saved = fm._steps, fm._delta
    fm._steps, fm._delta = _old_steps, _old_delta
    try:
        want = [fm.rate_trend(win, c, lim) for c, lim in pairs]
    finally:
        fm._steps, fm._delta = saved
    for g, x in zip(got, want, strict=True):
        for a, b in zip(g, x, strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert fm._steps is saved[0]
