"""A policy per workload, the rest of it: Kubernetes quantities, a container's own
``prescale.*`` labels (Docker) laid over its ``[[workloads]]`` entry, and the entry's
policy kind, tenant and weight — each as a table, through the engine and the live tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.actions import ScalingAction, Verdict
from prescale.app.core.contention import arbitrate
from prescale.app.core.engine import Engine, EngineConfig
from prescale.app.core.policy import KINDS, decide
from prescale.app.core.policy_types import PolicyInput, PolicyState
from prescale.app.core.pool import Capacity, Pool
from prescale.app.core.predictor import Prediction, TierPrediction
from prescale.app.core.quantity import parse_bytes, parse_cores
from prescale.app.core.sample import Tier
from prescale.app.core.tenants import Tenancy, tenant_of
from prescale.app.core.workloads import from_labels, label_problems
from prescale.app.loop.tick import Tick
from prescale.app.settings import Settings
from tests.loop_ports import MiB, leak_window, mem_ports, shard

GiB = 1024 * MiB


@pytest.mark.parametrize("text, value", [
    ("512Mi", 512 * MiB), ("2Gi", 2 * GiB), ("1.5Gi", 1.5 * GiB), ("2G", 2e9), ("2k", 2000),
    ("64MiB", 64 * MiB), ("1073741824", GiB), (" 3Ki ", 3072), (256, 256.0), (".5Gi", GiB / 2),
])
def test_bytes_quantities(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text, value", [("500m", 0.5), ("2", 2.0), ("1.25", 1.25),
                                         ("1500m", 1.5), (0.1, 0.1)])
def test_cpu_quantities(text, value):
    assert parse_cores(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["2Q", "-1Gi", "Gi", "", "nan", "1e3Mi", "2 Gigs", True])
def test_bad_sizes_name_the_text_and_the_forms(text):
    with pytest.raises(ValueError, match=r"is not a size: expected a number of bytes"):
        parse_bytes(text)


@pytest.mark.parametrize("text", ["500Mi", "-1", "1.5k", "m"])
def test_bad_cpu_amounts_are_refused(text):
    with pytest.raises(ValueError, match="is not a CPU amount"):
        parse_cores(text)


def test_settings_take_kubernetes_quantities_everywhere_a_size_or_cpu_bound_is():
    s = Settings(policy={"memory_max_bytes": "3Gi", "app_bounds": {
        "web": {"memory_max_bytes": "512Mi", "cpu_max_cores": "750m"}}},
        workloads=[{"name": "w", "app": "x", "memory_min_bytes": "64Mi",
                    "cpu_max_cores": "1500m"}])
    g = EngineConfig.from_settings(s).policy.guards
    assert g.max_limit["memory"] == 3 * GiB
    assert g.bounds_for("web-1", "web", "memory") == (32 * MiB, 512 * MiB)
    assert g.bounds_for("web-1", "web", "cpu") == (0.1, 0.75)
    assert g.bounds_for("x-1", "x", "cpu") == (0.1, 1.5)
    assert Settings(policy={"memory_max_bytes": "3GiB"}).policy.memory_max_bytes == 3 * GiB


# -- labels ------------------------------------------------------------------------------

def test_labels_make_a_policy_of_the_container():
    w = from_labels("db-2", {"prescale.enable": "true", "prescale.app": "shop",
                             "prescale.mode": "recommend", "prescale.policy": "multi_tier",
                             "prescale.controlled": "memory", "prescale.memory.min": "256Mi",
                             "prescale.memory.max": "8Gi", "prescale.cpu.max": "1500m",
                             "prescale.max-replicas": "3", "prescale.threshold": "0.6",
                             "prescale.tenant": "team-db", "prescale.weight": "2.5"})
    assert (w.name, w.container, w.mode, w.kind, w.controlled) == (
        "labels of db-2", "db-2", "recommend", "multi_tier", frozenset({"memory"}))
    assert w.bounds.min_limit == {"memory": 256 * MiB}
    assert w.bounds.max_limit == {"memory": 8 * GiB, "cpu": 1.5}
    assert (w.bounds.max_replicas, w.threshold, w.tenant, w.weight) == (3, 0.6, "team-db", 2.5)
    assert w.problems == () and w.ignored == ()
    # the watch selector, the app name and the user's own labels are no policy
    assert from_labels("a", {"prescale.enable": "true", "prescale.app": "shop",
                             "prescale.tier": "batch", "team": "x"}) is None


@pytest.mark.parametrize("key, value, needle", [
    ("prescale.mode", "sometimes", "expected one of off, recommend, auto"),
    ("prescale.policy", "greedy", "expected one of preemptive_buffer, proportional"),
    ("prescale.controlled", "memory,gpu", "unknown tier gpu"),
    ("prescale.memory.max", "lots", "'lots' is not a size"),
    ("prescale.cpu.min", "2Gi", "'2Gi' is not a CPU amount"),
    ("prescale.max-replicas", "0", "expected an integer >= 1"),
    ("prescale.threshold", "1.5", "expected a number in (0, 1]"),
    ("prescale.weight", "-2", "expected a finite number > 0"),
    ("prescale.tenant", " ", "expected a tenant name"),
])
def test_a_label_that_does_not_parse_holds_the_container_back(key, value, needle):
    w = from_labels("c", {key: value, "prescale.cpu.max": "2"})
    assert len(w.problems) == 1 and w.problems[0].startswith(f"label {key}={value!r}: ")
    assert needle in w.problems[0]
    assert w.bounds.max_limit == {"cpu": 2.0}  # the labels that parse still say what they say


def test_min_above_max_and_near_miss_labels():
    w = from_labels("c", {"prescale.memory.min": "2Gi", "prescale.memory.max": "1Gi"})
    assert w.problems == ("labels prescale.memory.min above prescale.memory.max",)
    assert w.bounds.min_limit == {} and w.bounds.max_limit == {}
    assert label_problems("c", {"prescale.memroy.max": "1Gi", "prescale.tier": "b"}) == (
        "label prescale.memroy.max is not a policy label: ignored (did you mean "
        "prescale.memory.max?)",)
    w = from_labels("c", {"prescale.memroy.max": "1Gi"})
    assert w.problems == () and w.bounds.max_limit == {}  # named, holds nothing back


WORKLOADS = [
    {"name": "shop", "app": "shop", "mode": "recommend", "memory_max_bytes": "4Gi",
     "cpu_max_cores": 2, "tenant": "team-shop", "weight": 3, "policy": "proportional"},
    {"name": "web", "container": "web-*", "cpu_max_cores": 1},
]
SETTINGS = dict(workloads=WORKLOADS, policy={"memory_max_bytes": "8Gi", "app_bounds": {
    "shop": {"memory_min_bytes": "64Mi"}}, "container_bounds": {"db-9": {"memory_max_bytes":
                                                                          "512Mi"}}},
    contention={"tenants": {"db-0": "team-own", "shop": "team-app", "cache": "team-cache"}})


@pytest.mark.parametrize("container, app, labels, name, mode, mem, cpu_hi, tenant, kind", [
    # no labels: the [[workloads]] entry, then the app's bounds, then the global ones
    ("db-1", "shop", {}, "shop", "recommend", (64 * MiB, 4 * GiB), 2.0, "team-shop",
     "proportional"),
    # labels over the entry, field by field: memory max and mode from the labels
    ("db-1", "shop", {"prescale.memory.max": "6Gi", "prescale.mode": "auto"}, "shop+labels",
     "auto", (64 * MiB, 6 * GiB), 2.0, "team-shop", "proportional"),
    # a container's own bounds still beat its labels; its own tenant entry beats the workload's
    ("db-9", "shop", {"prescale.memory.max": "6Gi"}, "shop+labels", "recommend",
     (64 * MiB, 512 * MiB), 2.0, "team-shop", "proportional"),
    ("db-0", "shop", {"prescale.tenant": "team-label"}, "shop+labels", "recommend",
     (64 * MiB, 4 * GiB), 2.0, "team-own", "proportional"),
    # labels on a container no entry matches: a policy of its own
    ("cache-1", "cache", {"prescale.policy": "multi_tier", "prescale.cpu.max": "500m"},
     "labels of cache-1", None, (32 * MiB, 8 * GiB), 0.5, "team-cache", "multi_tier"),
    ("cache-1", "cache", {}, None, None, (32 * MiB, 8 * GiB), 1.0, "team-cache",
     "preemptive_buffer"),
    # a name glob beats the app entry; labels over it
    ("web-1", "shop", {"prescale.tenant": "team-web"}, "web+labels", None,
     (64 * MiB, 8 * GiB), 1.0, "team-web", "preemptive_buffer"),
])
def test_precedence_labels_over_workload_over_app_over_global(container, app, labels, name,
                                                             mode, mem, cpu_hi, tenant, kind):
    cfg = EngineConfig.from_settings(Settings(**SETTINGS))
    g = cfg.policy.guards
    w = g.workload_of(container, app, labels)
    assert (w.name if w else None) == name
    assert (w.mode if w else None) == mode
    assert g.bounds_for(container, app, "memory", labels) == mem
    assert g.bounds_for(container, app, "cpu", labels)[1] == cpu_hi
    assert tenant_of(cfg.tenants, container, app, (w.tenant or "") if w else "") == tenant
    assert ((w.kind if w else None) or cfg.policy.kind) == kind


def test_tenant_of_worked_examples():
    tenants = {"db-0": "team-b", "web": "team-a"}
    assert tenant_of(tenants, "db-0", "db") == "team-b"
    assert tenant_of(tenants, "web-3", "web") == "team-a"
    assert tenant_of(tenants, "cache-1", "cache") == ""
    assert tenant_of(tenants, "web-3", "web", workload="team-c") == "team-c"
    assert tenant_of(tenants, "db-0", "db", workload="team-c") == "team-b"


# -- the policy kind per workload ----------------------------------------------------------

def _inp(names, labels=None):
    """Three containers at 90 % of 1 GiB memory / 1 core, rising (p_fail 0.9)."""
    n = len(names)
    lim = {Tier.MEMORY: np.full(n, float(GiB)), Tier.CPU: np.full(n, 1.0)}
    fc = {Tier.MEMORY: np.full(n, 1.2 * GiB), Tier.CPU: np.full(n, 1.1)}
    pred = Prediction(60.0, "test", {
        t: TierPrediction(np.full(n, 0.9), np.full(n, 30.0), fc[t], lim[t])
        for t in (Tier.MEMORY, Tier.CPU)})
    return PolicyInput(1000.0, names, pred, np.full(n, 0.5), apps=["a"] * n, labels=labels,
                       usage={Tier.MEMORY: np.full(n, 0.9 * GiB), Tier.CPU: np.full(n, 0.8)})


@pytest.mark.parametrize("kind", KINDS[1:])
def test_a_workloads_kind_sizes_its_containers_as_that_kind_alone(kind):
    """Global preemptive_buffer; container b's label (and c's [[workloads]] entry) name
    another kind: each container's decisions are those its kind gives it alone."""
    s = Settings(workloads=[{"name": "c", "container": "c", "policy": kind}])
    cfg = EngineConfig.from_settings(s).policy
    mixed, _ = decide(_inp(["a", "b", "c"], [{}, {"prescale.policy": kind}, {}]), cfg,
                      PolicyState())
    plain = EngineConfig.from_settings(Settings()).policy
    alone_a, _ = decide(_inp(["a"]), plain, PolicyState())
    other = EngineConfig.from_settings(Settings(policy={"kind": kind})).policy
    alone_b, _ = decide(_inp(["b"]), other, PolicyState())
    alone_c, _ = decide(_inp(["c"]), other, PolicyState())

    def targets(ds, name):
        return {d.tier: (d.action.new_limit if d.action else None, d.reason)
                for d in ds if d.container == name}

    assert targets(mixed, "a") == targets(alone_a, "a")
    assert targets(mixed, "b") == targets(alone_b, "b")
    assert targets(mixed, "c") == targets(alone_c, "c")
    assert targets(mixed, "a") != targets(mixed, "b")  # the kinds really differ here
    assert [d.container for d in mixed][:2] == ["a", "a"]  # the global kind's group first


def test_no_workload_kind_is_the_plain_policy():
    cfg = EngineConfig.from_settings(Settings(workloads=[{"name": "x", "app": "a"}])).policy
    inp = _inp(["a", "b"], [{"prescale.mode": "auto"}, {}])
    got, _ = decide(inp, cfg, PolicyState())
    want, _ = decide(_inp(["a", "b"]), EngineConfig.from_settings(Settings()).policy,
                     PolicyState())
    assert [(d.container, d.tier, d.reason) for d in got] == [
        (d.container, d.tier, d.reason) for d in want]


# -- tenant and weight when tenants contend ------------------------------------------------

def _ask(c, p, app="a"):
    return ScalingAction(f"{c}/memory@1", 1.0, c, Tier.MEMORY, GiB, 2 * GiB, p, 0.5, 30.0,
                         2 * GiB, "", app=app, preemptive=True)


def _pool():
    p = Pool(Capacity(4 * GiB, 4), Capacity(0, 0))
    for c in ("x", "y", "z"):
        p.observe(c, Tier.MEMORY, GiB)
    return p  # 1 GiB free: one of two 1 GiB asks fits


def test_a_workloads_weight_ranks_its_ask_first():
    """x (p 0.6) outranks y (p 0.5) by risk; y's workload weight 2 makes y's risk 1.0."""
    asks = [_ask("x", 0.6), _ask("y", 0.5)]
    plain = arbitrate(asks, _pool(), idle=[], tenants={}, weights={}, now_s=1.0)
    assert plain.order[0] == "x/memory@1"
    r = arbitrate(asks, _pool(), idle=[], tenants={}, weights={}, now_s=1.0,
                  tenancy=Tenancy(weights={"y": 2.0}))
    assert r.order[0] == "y/memory@1" and r.verdict("y/memory@1").verdict is Verdict.GRANTED
    assert "risk 1.00 (p_fail 0.50 × weight 2" in r.verdict("y/memory@1").reason


def test_a_workloads_tenant_moves_the_container_to_that_tenants_share():
    """Same risk band: DRF serves the tenant with the lowest share. By app, x and y are
    both team-a's; y's workload puts it in team-b, whose share is lower than team-a's
    (which holds x and z), so y is served first."""
    asks = [_ask("x", 0.55), _ask("y", 0.52)]
    tenants = {"a": "team-a"}
    plain = arbitrate(asks, _pool(), idle=[], tenants=tenants, weights={}, now_s=1.0)
    assert plain.order[0] == "x/memory@1"  # one tenant: the riskier first
    r = arbitrate(asks, _pool(), idle=[], tenants=tenants, weights={}, now_s=1.0,
                  apps={"z": "a"}, tenancy=Tenancy(tenants={"y": "team-b"}))
    assert r.order[0] == "y/memory@1"
    assert "tenant team-b" in r.verdict("y/memory@1").reason


def test_the_engine_resolves_tenancy_from_workloads_and_labels():
    cfg = EngineConfig.from_settings(Settings(**SETTINGS))
    ports = mem_ports()
    win = np.concatenate([leak_window(), leak_window()])
    sh = shard(win, names=("db-1", "cache-1"))
    sh = type(sh)(**{**sh.__dict__, "apps": ["shop", "cache"],
                     "labels": {"cache-1": {"prescale.weight": "4"}}})
    ports.telemetry.next = [sh]
    tick = Tick(cfg, ports, run_id="r", mode="auto", window_steps=12, now=lambda: 0.0)
    tick.run_once()
    eng: Engine = tick.engine
    assert eng.tenancy == Tenancy({"db-1": "team-shop"}, {"db-1": 3.0, "cache-1": 4.0})
    assert eng.owner("db-1", "shop") == "team-shop"
    assert eng.owner("cache-1", "cache") == "team-cache"


def test_a_bad_label_holds_the_container_back_in_the_live_tick():
    ports = mem_ports()
    sh = shard(leak_window())  # w leaks to its limit: it would be resized
    ports.telemetry.next = [type(sh)(**{**sh.__dict__, "labels": {
        "w": {"prescale.memory.max": "lots"}}})]
    s = Settings(mode="auto", predictor={"horizon_s": 60.0, "min_samples": 5},
                 policy={"cooldown_s": 0.0})
    summary = Tick(EngineConfig.from_settings(s), ports, run_id="r", mode="auto",
                   window_steps=12, now=lambda: 0.0).run_once()
    assert summary["actions"] == []
    (d,) = [r for r in ports.journal.records if r["kind"] == "decision"]
    assert ("labels of w: label prescale.memory.max='lots': 'lots' is not a size" in d["reason"]
            and "not applied until the label is fixed" in d["reason"])
    assert d["new_limit"] is None and math.isfinite(d["p_fail"])


def test_an_opted_in_serve_app_that_does_not_run_is_named_with_the_closest():
    from prescale.app.edges.serve_instance import missing_apps

    assert missing_apps(["shop", "serch"], ["shop", "search"]) == (
        "sources.serve_apps names 'serch' (did you mean 'search'?), which no running Serve "
        "application has; running: search, shop")
    assert missing_apps(["*"], []) is None and missing_apps(["a"], ["a", "b"]) is None
    assert missing_apps(["zzz"], []).endswith("'zzz', which no running Serve application "
                                              "has; running: none")
