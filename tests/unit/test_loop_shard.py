"""Shards and their merge (app/loop/shard.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prescale.app.core.sample import METRICS
from prescale.app.loop.shard import Shard, merge_shards, row_load


def test_merge_shards_qualifies_a_name_seen_on_two_nodes():


    def shard(node, names):
        n = len(names)
        return Shard.from_dict({"node": node, "capacity": {"memory_bytes": 8.0, "cpu_cores": 2.0},
                "names": names, "apps": ["app"] * n, "replicas": {},
                "window": np.full((n, 4, len(METRICS)), math.nan), "events": [],
                "errors": {}, "dropped": {"bad": 1}, "now_s": 10.0})

    m = merge_shards(
        [shard("aaaaaaaa1111", ["web", "db"]), shard("bbbbbbbb2222", ["web"])],
        (4, len(METRICS)))
    snap, route = m.snapshot, m.route
    assert list(snap.names) == ["web@aaaaaaaa", "db", "web@bbbbbbbb"]
    assert route["web@bbbbbbbb"] == ("bbbbbbbb2222", "web")
    assert route["db"] == ("aaaaaaaa1111", "db")
    assert snap.window.shape == (3, 4, len(METRICS))
    assert m.dropped == {"bad": 2} and set(m.nodes) == {
        "aaaaaaaa1111", "bbbbbbbb2222"}
    # two node ids that share their first 8 characters: the full id
    m = merge_shards([shard("aaaaaaaa1111", ["web"]),
                                   shard("aaaaaaaa2222", ["web"])], (4, len(METRICS)))
    snap, route = m.snapshot, m.route
    assert list(snap.names) == ["web@aaaaaaaa", "web@aaaaaaaa2222"]




def test_merge_shards_keeps_a_deployment_spanning_nodes_as_one_container():
    """``app/api`` (a Serve deployment: reported with a replica count) has 1 replica on
    node a at 0.9 of its memory and 2 on node b at 0.4: one container ``app/api``, 3
    replicas, node a's window (those replicas fail first). ``web``, not replicated, is
    still qualified per node."""

    from prescale.app.core.sample import M

    def row(mem_frac, w=4):
        r = np.full((w, len(METRICS)), math.nan)
        r[:, M["ts_s"]] = 10.0 + np.arange(w)
        r[:, M["memory_usage_bytes"]] = mem_frac * 100
        r[:, M["memory_limit_bytes"]] = 100.0
        r[:, M["cpu_usage_s_total"]] = 0.1 * np.arange(w)  # 0.1 cores of 1
        r[:, M["cpu_quota_cores"]] = 1.0
        return r

    def shard(node, names, rows, replicas):
        return Shard.from_dict({"node": node, "capacity": {"memory_bytes": 8.0, "cpu_cores": 2.0},
                "names": names, "apps": ["x"] * len(names), "replicas": replicas,
                "window": np.stack(rows), "events": [], "errors": {}, "dropped": {},
                "now_s": 13.0})

    assert row_load(row(0.9)) == pytest.approx(0.9)
    assert row_load(row(0.05)) == pytest.approx(0.1)  # the CPU rate 0.1 of quota 1
    m = merge_shards(
        [shard("aaaaaaaa1111", ["app/api", "web"], [row(0.9), row(0.2)], {"app/api": 1}),
         shard("bbbbbbbb2222", ["web", "app/api"], [row(0.3), row(0.4)], {"app/api": 2})],
        (4, len(METRICS)))
    snap, route = m.snapshot, m.route
    assert sorted(snap.names) == ["app/api", "web@aaaaaaaa", "web@bbbbbbbb"]
    assert snap.replicas == {"app/api": 3}
    i = list(snap.names).index("app/api")
    assert snap.window[i, -1, M["memory_usage_bytes"]] == pytest.approx(90.0)  # node a's
    assert route["app/api"] == ("aaaaaaaa1111", "app/api")
    j = list(snap.names).index("web@bbbbbbbb")
    assert snap.window[j, -1, M["memory_usage_bytes"]] == pytest.approx(30.0)
    assert snap.window.shape == (3, 4, len(METRICS))


def test_a_shard_refuses_a_window_of_another_shape():
    with pytest.raises(ValueError, match="Shard of node 'n': 2 names"):
        Shard("n", 1.0, ["a", "b"], ["x", "x"], np.zeros((1, 4, len(METRICS))))


def test_no_shard_at_all_is_an_empty_snapshot_at_the_given_time():
    m = merge_shards([], (4, len(METRICS)), now_s=42.0)
    assert m.snapshot.now_s == 42.0 and m.snapshot.window.shape == (0, 4, len(METRICS))
