"""The model registry on real files: versions, promote/rollback, corruption, concurrency.

Models are real: ``hist_gradient_boosting`` fitted on a tiny synthetic task
(label = ``x0 > 0.3``) and the training-free ``heuristic``. Concurrency uses four
real processes (multiprocessing, spawn) registering into one root.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from prescale.app.core.features import FEATURES
from prescale.app.models import make_model
from prescale.app.store.model_cache import ModelCache
from prescale.app.store.registry import ModelRegistry
from prescale.app.store.registry_index import (
    CorruptModelError,
    ModelVersion,
    app_dir_name,
    model_rel_path,
    next_version_id,
)

T0 = 1_700_000_000.0
TRAINING = {
    "since_s": T0 - 86400.0,
    "until_s": T0,
    "rows": 80,
    "positives": 29,
    "data_hash": "d" * 64,
}
METRICS = {"pr_auc": 0.91, "brier": 0.07, "base_rate": 0.3625, "lead_time_median_s": 42.0}
X_TEST = np.random.default_rng(99).normal(size=(20, 3))


def hgb(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 3))
    y = (x[:, 0] > 0.3).astype(int)
    return make_model("hist_gradient_boosting", max_iter=10).fit(x, y, seed=seed)


def reg_hgb(reg: ModelRegistry, app: str = "web", tier: str = "memory", seed: int = 0, **kw):
    return reg.register(
        hgb(seed),
        app=app,
        tier=tier,
        features=["a", "b", "c"],
        metrics=METRICS,
        training=TRAINING,
        clock=lambda: T0,
        **kw,
    )


def reg_heuristic(reg: ModelRegistry, app: str = "_global", tier: str = "memory", **kw):
    return reg.register(
        make_model("heuristic"),
        app=app,
        tier=tier,
        features=list(FEATURES),
        metrics={"pr_auc": 0.5},
        training=TRAINING,
        **kw,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root (but the lock) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# --- pure helpers ---------------------------------------------------------------------
def test_names_and_ids() -> None:
    assert app_dir_name("web") == "web"
    assert app_dir_name("a/b") == "a%2Fb"
    assert app_dir_name("..") == "%2E."
    assert app_dir_name("_global") == "_global"
    assert app_dir_name("50%") == "50%25"
    assert model_rel_path("a/b", "memory", "v0003") == "models/a%2Fb/memory/v0003.model"
    e = [
        {"app": "web", "tier": "memory", "version_id": "v0001"},
        {"app": "web", "tier": "memory", "version_id": "v0009"},
        {"app": "web", "tier": "cpu", "version_id": "v0042"},
        {"app": "big", "tier": "cpu", "version_id": "v9999"},
    ]
    assert next_version_id(e, "web", "memory") == "v0010"
    assert next_version_id(e, "web", "cpu") == "v0043"
    assert next_version_id(e, "web", "disk") == "v0001"
    assert next_version_id(e, "big", "cpu") == "v10000"
    with pytest.raises(ValueError, match="too long"):
        app_dir_name("x" * 256)


# --- register / list / current / resolve ----------------------------------------------
def test_register_list_current_resolve_and_global_fallback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.revision() == 0 and reg.list() == [] and reg.resolve("web", "memory") is None

    model = hgb()
    v1 = reg.register(
        model,
        app="web",
        tier="memory",
        features=["a", "b", "c"],
        metrics={**METRICS, "recall_at_fpr": float("nan")},
        training=TRAINING,
        clock=lambda: T0,
    )
    data = (tmp_path / "reg" / "models/web/memory/v0001.model").read_bytes()
    assert v1 == ModelVersion(
        version_id="v0001",
        app="web",
        tier="memory",
        kind="hist_gradient_boosting",
        created_s=T0,
        sha256=hashlib.sha256(data).hexdigest(),
        path="models/web/memory/v0001.model",
        features=["a", "b", "c"],
        metrics={**METRICS, "recall_at_fpr": None},  # nan is stored as null
        training={**TRAINING, "params": model.params, "seed": 0},
        status="candidate",
        size_bytes=len(data),
        promoted_s=None,
        retired_s=None,
        seq=1,
    )
    assert data == model.to_bytes()
    assert reg.current("web", "memory") is None and reg.resolve("web", "memory") is None

    g1 = reg_heuristic(reg, promote=True)
    assert (g1.app, g1.version_id, g1.status, g1.kind) == (
        "_global",
        "v0001",
        "current",
        "heuristic",
    )
    # apps without a current model of their own fall back to the global one
    assert reg.resolve("web", "memory") == g1
    assert reg.resolve("other", "memory") == g1
    assert reg.resolve("web", "cpu") is None  # no global cpu model
    assert reg.resolve("", "memory") == g1  # a container without an app
    assert reg.current("", "memory") is None

    p1 = reg.promote("web", "memory", "v0001")
    assert p1.status == "current" and reg.current("web", "memory") == p1
    assert reg.resolve("web", "memory") == p1
    assert reg.resolve("other", "memory") == g1

    v2 = reg_hgb(reg, seed=1)
    assert v2.version_id == "v0002" and v2.status == "candidate"
    assert [(v.app, v.version_id) for v in reg.list()] == [
        ("web", "v0002"),
        ("_global", "v0001"),
        ("web", "v0001"),
    ]
    assert [v.version_id for v in reg.list(app="web")] == ["v0002", "v0001"]
    assert reg.list(tier="cpu") == []
    assert reg.get("web", "memory", "v0002") == v2

    loaded = reg.load(reg.current("web", "memory"))
    np.testing.assert_array_equal(loaded.predict_proba(X_TEST), model.predict_proba(X_TEST))
    assert type(reg.load(g1)).__name__ == "HeuristicModel"


def test_app_names_with_path_characters_stay_under_the_root(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    v = reg_hgb(reg, app="../evil/x", promote=True)
    assert v.path == "models/%2E.%2Fevil%2Fx/memory/v0001.model"
    assert (tmp_path / "reg" / v.path).is_file()
    assert not (tmp_path / "evil").exists()
    assert reg.resolve("../evil/x", "memory") == v
    reg.load(v)


# --- promote / rollback / revision ----------------------------------------------------
def test_promote_rollback_walks_back_through_promotions(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg", clock=lambda: T0 + 60)
    for seed in range(3):
        reg_hgb(reg, seed=seed, promote=True)
    assert reg.revision() == 3

    def statuses() -> dict[str, str]:
        return {v.version_id: v.status for v in reg.list(app="web", tier="memory")}

    assert statuses() == {"v0001": "retired", "v0002": "retired", "v0003": "current"}
    before = snapshot(tmp_path / "reg")
    assert reg.promote("web", "memory", "v0003").status == "current"  # already current
    assert reg.revision() == 3 and snapshot(tmp_path / "reg") == before

    back = reg.rollback("web", "memory")
    assert back.version_id == "v0002" and back.status == "current" and back.promoted_s == T0 + 60
    assert statuses() == {"v0001": "retired", "v0002": "current", "v0003": "retired"}
    assert reg.get("web", "memory", "v0003").retired_s == T0 + 60
    assert reg.rollback("web", "memory").version_id == "v0001"
    assert statuses() == {"v0001": "current", "v0002": "retired", "v0003": "retired"}
    assert reg.revision() == 5

    before = snapshot(tmp_path / "reg")
    with pytest.raises(ValueError, match="no version was retired by a promotion"):
        reg.rollback("web", "memory")
    assert reg.revision() == 5 and snapshot(tmp_path / "reg") == before

    # promoting a rolled-back version, then rolling back, returns to the one it displaced
    assert reg.promote("web", "memory", "v0003").status == "current"
    assert statuses() == {"v0001": "retired", "v0002": "retired", "v0003": "current"}
    assert reg.rollback("web", "memory").version_id == "v0001"
    assert reg.revision() == 7

    reg_hgb(reg, tier="cpu")  # a candidate only
    with pytest.raises(ValueError, match="no current version"):
        reg.rollback("web", "cpu")
    assert reg.revision() == 8


def test_index_survives_a_second_instance(tmp_path: Path) -> None:
    a = ModelRegistry(tmp_path / "reg")
    reg_hgb(a, promote=True)
    reg_hgb(a, seed=1)
    b = ModelRegistry(str(tmp_path / "reg"))  # another process's view: nothing cached
    assert b.list() == a.list() and b.revision() == a.revision() == 2
    b.promote("web", "memory", "v0002")
    assert a.current("web", "memory").version_id == "v0002" and a.revision() == 3
    assert a.get("web", "memory", "v0001").status == "retired"
    assert reg_hgb(a, seed=2).version_id == "v0003"


def test_revision_reads_an_index_in_another_layout(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg_hgb(reg)
    reg_hgb(reg)
    doc = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps(doc, indent=2))  # head regex misses
    assert reg.revision() == 2 and reg.list()[0].version_id == "v0002"


# --- bad input changes nothing ----------------------------------------------------------
BAD_CALLS = {
    "unknown tier": (
        lambda r: reg_hgb(r, tier="network"),
        ValueError,
        r"tier must be one of \['memory', 'cpu', 'disk', 'any'\], got 'network'",
    ),
    "empty app": (lambda r: reg_hgb(r, app=""), ValueError, "app must not be empty"),
    "app not a str": (lambda r: reg_hgb(r, app=7), ValueError, "app must be a str, got int 7"),
    "unfitted": (
        lambda r: r.register(
            make_model("hist_gradient_boosting"),
            app="web",
            tier="memory",
            features=["a", "b", "c"],
            metrics={},
            training=TRAINING,
        ),
        ValueError,
        "not fitted",
    ),
    "feature count": (
        lambda r: r.register(
            hgb(), app="web", tier="memory", features=["a"], metrics={}, training=TRAINING
        ),
        ValueError,
        "features names 1 columns but model hist_gradient_boosting/v1 expects 3",
    ),
    "training keys": (
        lambda r: r.register(
            hgb(),
            app="web",
            tier="memory",
            features=["a", "b", "c"],
            metrics={},
            training={"since_s": 0.0, "until_s": 1.0},
        ),
        ValueError,
        r"training is missing \['rows', 'positives', 'data_hash'\]",
    ),
    "window order": (
        lambda r: r.register(
            hgb(),
            app="web",
            tier="memory",
            features=["a", "b", "c"],
            metrics={},
            training={**TRAINING, "since_s": T0 + 1},
        ),
        ValueError,
        "since_s 1700000001.0 is after until_s 1700000000.0",
    ),
    "metrics not JSON": (
        lambda r: r.register(
            hgb(),
            app="web",
            tier="memory",
            features=["a", "b", "c"],
            metrics={"x": object()},
            training=TRAINING,
        ),
        ValueError,
        "metrics must be JSON-serialisable",
    ),
    "promote unknown": (
        lambda r: r.promote("web", "memory", "v0009"),
        KeyError,
        "no model version v0009 of app 'web' tier 'memory'",
    ),
    "promote malformed id": (
        lambda r: r.promote("web", "memory", "7"),
        ValueError,
        "version id must look like 'v0007', got '7'",
    ),
    "get unknown": (
        lambda r: r.get("web", "cpu", "v0001"),
        KeyError,
        "no model version v0001 of app 'web' tier 'cpu'",
    ),
    "current unknown tier": (lambda r: r.current("web", "gpu"), ValueError, "got 'gpu'"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_is_named_and_changes_nothing(tmp_path: Path, case: str) -> None:
    reg = ModelRegistry(tmp_path)
    reg_hgb(reg, promote=True)
    before = snapshot(tmp_path)
    call, exc, match = BAD_CALLS[case]
    with pytest.raises(exc, match=match):
        call(reg)
    assert snapshot(tmp_path) == before and reg.revision() == 1


# --- corruption -------------------------------------------------------------------------
class _Mkdir:
    """Unpickling this creates a directory: proof that bytes were (not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def corrupt(path: Path, how: str, marker: Path) -> str:
    """Damage the model file at ``path``; returns the expected error (a regex)."""
    data = path.read_bytes()
    if how == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        path.write_bytes(bytes(b))
        return r"has sha256 \w+…, the index records \w+… \(its bytes changed\); not loaded"
    if how == "truncate":
        path.write_bytes(data[:-10])
        return rf"has {len(data) - 10} bytes, the index records {len(data)} \(truncated"
    if how == "delete":
        path.unlink()
        return "is missing"
    assert how == "other_pickle"
    other = pickle.dumps(_Mkdir(marker))
    path.write_bytes(other)
    return rf"has {len(other)} bytes, the index records {len(data)}"


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "other_pickle"])
def test_corrupt_model_file_is_refused_and_the_previous_keeps_serving(
    tmp_path: Path, how: str
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg_heuristic(reg, promote=True)
    v1 = reg_hgb(reg, seed=1, promote=True)
    cache = ModelCache()
    assert cache.refresh(reg) == [] and cache.revision == 2
    served_v1, model_v1 = cache.get("web", "memory")
    assert served_v1.version_id == "v0001"

    v2 = reg_hgb(reg, seed=2, promote=True)
    path = tmp_path / "reg" / v2.path
    marker = tmp_path / "unpickled"
    expected = corrupt(path, how, marker)

    with pytest.raises(CorruptModelError, match=expected) as info:
        reg.load(v2)
    assert str(path) in str(info.value) and "web/memory v0002" in str(info.value)
    assert not marker.exists()  # nothing was unpickled

    errors = cache.refresh(reg)
    assert len(errors) == 1
    assert errors[0].startswith("web/memory: cannot load v0002: model file ")
    assert errors[0].endswith("(keeping v0001)")
    assert cache.failures == {("web", "memory"): errors[0]}
    version, model = cache.get("web", "memory")
    assert version.version_id == v1.version_id and model is model_v1
    assert cache.refresh(reg) == []  # same revision: nothing retried, nothing re-reported
    assert not marker.exists()

    # a cache that never had a model of its own falls back to the global one
    fresh = ModelCache()
    errors = fresh.refresh(reg)
    assert len(errors) == 1 and errors[0].endswith("(no model of its own)")
    assert fresh.get("web", "memory")[0].app == "_global"

    # the operator rolls back; then a good version v3 is picked up without restart
    assert reg.rollback("web", "memory").version_id == "v0001"
    assert cache.refresh(reg) == [] and cache.failures == {}
    assert cache.get("web", "memory")[1] is model_v1  # same bytes: not reloaded
    v3 = reg_hgb(reg, seed=3, promote=True)
    assert cache.refresh(reg) == []
    version, model = cache.get("web", "memory")
    assert version == v3
    np.testing.assert_array_equal(model.predict_proba(X_TEST), hgb(3).predict_proba(X_TEST))


def test_file_with_matching_hash_but_not_a_model_is_refused(tmp_path: Path) -> None:
    """If the index itself vouches for foreign bytes, unpickling finds no model."""
    reg = ModelRegistry(tmp_path)
    v = reg_hgb(reg, promote=True)
    other = pickle.dumps({"not": "a model"})
    (tmp_path / v.path).write_bytes(other)
    doc = json.loads((tmp_path / "index.json").read_text())
    doc["versions"][0].update(sha256=hashlib.sha256(other).hexdigest(), size_bytes=len(other))
    (tmp_path / "index.json").write_text(json.dumps(doc, sort_keys=True))
    with pytest.raises(CorruptModelError, match="not a prescale model: the envelope is missing"):
        reg.load(reg.current("web", "memory"))
    # a ModelVersion that disagrees with the index is refused before reading the file
    with pytest.raises(CorruptModelError, match="the index records sha256"):
        reg.load(v)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"format": 1, "revision": 2, "versions": [', "not valid JSON"),
        ("\xff\xfe garbage", "not valid JSON"),
        ('{"format": 1, "revision": 2, "versions": {}}', "versions must be a list"),
        ('{"format": 9, "revision": 2, "versions": []}', "format 9, this version reads 1"),
        (None, "path '../../etc/passwd', expected 'models/web/memory/v0001.model'"),
        (None, "a second current version of web/memory"),
    ],
)
def test_corrupt_index_is_an_error_not_a_reset(tmp_path: Path, text: str | None, match: str):
    reg = ModelRegistry(tmp_path)
    reg_hgb(reg, promote=True)
    cache = ModelCache()
    assert cache.refresh(reg) == []
    index = tmp_path / "index.json"
    if text is None:
        doc = json.loads(index.read_text())
        if "passwd" in match:
            doc["versions"][0]["path"] = "../../etc/passwd"
        else:
            doc["versions"].append(
                {
                    **doc["versions"][0],
                    "version_id": "v0002",
                    "path": "models/web/memory/v0002.model",
                }
            )
        doc["revision"] = 5
        text = json.dumps(doc, sort_keys=True)
    index.write_bytes(text.encode("latin-1"))
    before = snapshot(tmp_path)
    for call in (
        lambda: reg.list(),
        lambda: reg.resolve("web", "memory"),
        lambda: reg.promote("web", "memory", "v0001"),
        lambda: reg_hgb(reg, seed=1),
    ):
        with pytest.raises(CorruptModelError, match=match) as info:
            call()
        assert str(index) in str(info.value) and "not reset" in str(info.value)
    assert snapshot(tmp_path) == before  # nothing written, no model file for a v0002

    errors = cache.refresh(reg)
    assert len(errors) == 1 and str(index) in errors[0]
    assert cache.refresh(reg) == []  # reported once while the message stays the same
    assert cache.get("web", "memory")[0].version_id == "v0001"  # still serving


# --- hot reload -----------------------------------------------------------------------
def test_cache_reloads_only_what_changed(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    cache = ModelCache()
    assert cache.refresh(reg) == [] and cache.get("web", "memory") is None
    reg_hgb(reg, app="web", promote=True)
    reg_hgb(reg, app="api", tier="cpu", promote=True)
    reg_hgb(reg, app="batch")  # candidate: not served
    assert cache.refresh(reg) == [] and cache.revision == 3
    assert set(cache.loaded()) == {("web", "memory"), ("api", "cpu")}
    web = cache.get("web", "memory")[1]
    api = cache.get("api", "cpu")[1]
    assert cache.get("batch", "memory") is None

    other = ModelRegistry(tmp_path)  # e.g. `prescale tune` in another process
    other.promote("api", "cpu", "v0001")  # no change
    reg_hgb(other, app="api", tier="cpu", seed=5, promote=True)
    reg_heuristic(other, promote=True)
    assert cache.refresh(reg) == [] and cache.revision == 5
    assert cache.get("web", "memory")[1] is web  # unchanged: not reloaded
    assert cache.get("api", "cpu")[1] is not api
    assert cache.get("api", "cpu")[0].version_id == "v0002"
    assert cache.get("batch", "memory")[0].app == "_global"  # fallback
    assert cache.get("batch", "cpu") is None


# --- concurrency ----------------------------------------------------------------------
def _register_worker(root: str, worker: int, n: int, barrier, queue) -> None:
    try:
        reg = ModelRegistry(root)
        barrier.wait(timeout=60)
        ids = []
        for i in range(n):
            v = reg.register(
                make_model("heuristic"),
                app="web",
                tier="memory",
                features=list(FEATURES),
                metrics={"worker": worker, "i": i},
                training=TRAINING,
                promote=True,
            )
            ids.append(v.version_id)
        queue.put((worker, ids))
    except BaseException as exc:  # report instead of leaving the parent waiting
        queue.put((worker, f"{type(exc).__name__}: {exc}"))
        raise


def test_concurrent_registration_from_four_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_register_worker, args=(str(tmp_path), w, 3, barrier, queue))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    failed = {w: r for w, r in results.items() if isinstance(r, str)}
    assert failed == {} and [p.exitcode for p in procs] == [0, 0, 0, 0]
    all_ids = [i for ids in results.values() for i in ids]
    assert sorted(all_ids) == [f"v{i:04d}" for i in range(1, 13)]  # unique, no gaps
    for ids in results.values():
        assert ids == sorted(ids)  # increasing within each process

    reg = ModelRegistry(tmp_path)
    assert reg.revision() == 12
    versions = reg.list()
    assert [v.version_id for v in versions] == [f"v{i:04d}" for i in range(12, 0, -1)]
    assert [v.seq for v in versions] == list(range(12, 0, -1))
    assert [v.status for v in versions] == ["current"] + ["retired"] * 11
    for v in versions:
        assert (v.metrics["worker"], v.metrics["i"]) in {
            (w, ids.index(v.version_id)) for w, ids in results.items() if v.version_id in ids
        }
        reg.load(v)  # every file matches its hash
    leftovers = [p.name for p in tmp_path.rglob(".*") if p.name != ".lock"]
    assert leftovers == []
