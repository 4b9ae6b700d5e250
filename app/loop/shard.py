"""A shard: one node's containers at one tick, and the merge of every node's shard.

A monitor (one per node) answers ``collect()`` with a :class:`Shard`: the window
``[N, W, M]`` of its containers, what happened to them, and its node's capacity. The
tick merges the shards of every node that answered into one
:class:`~app.core.engine.Snapshot` (:func:`merge_shards`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prescale.app.core.engine import Snapshot
from prescale.app.core.features import F, compute_features
from prescale.app.core.sample import Event


@dataclass(frozen=True)
class Shard:
    """What one node's monitor saw at ``now_s`` (``window`` in the order of ``names``)."""

    node: str
    now_s: float
    names: Sequence[str]
    apps: Sequence[str]
    window: np.ndarray  # [N, W, M]
    events: Sequence[Event] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, float] = field(default_factory=dict)
    #: horizontally scaled containers → their replica count on this node
    replicas: Mapping[str, int] = field(default_factory=dict)
    #: containers whose source knows labels (Docker's) → their labels
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.apps) != n or self.window.ndim != 3 or self.window.shape[0] != n:
            raise ValueError(f"Shard of node {self.node!r}: {n} names, {len(self.apps)} apps, "
                             f"window {self.window.shape} (expected ({n}, W, M))")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Shard:
        """From a monitor's ``collect()`` answer (a dict crosses Ray cheaply)."""
        return cls(node=d["node"], now_s=float(d["now_s"]), names=list(d["names"]),
                   apps=list(d["apps"]), window=d["window"], events=list(d["events"]),
                   errors=dict(d["errors"]), dropped=dict(d["dropped"]),
                   capacity=dict(d["capacity"]), replicas=dict(d.get("replicas", {})),
                   labels=dict(d.get("labels", {})))

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "now_s": self.now_s, "names": list(self.names),
                "apps": list(self.apps), "window": self.window, "events": list(self.events),
                "errors": dict(self.errors), "dropped": dict(self.dropped),
                "capacity": dict(self.capacity), "replicas": dict(self.replicas),
                "labels": dict(self.labels)}


@dataclass(frozen=True)
class Merged:
    """The merged snapshot, each container's route ``(node, the name its monitor knows
    it by)``, and what the shards reported besides their windows."""

    snapshot: Snapshot
    route: dict[str, tuple[str, str]]
    errors: dict[str, str]
    dropped: dict[str, int]
    nodes: dict[str, dict[str, float]]


def merge_shards(shards: Sequence[Shard], window_shape: tuple[int, int],
                 now_s: float | None = None) -> Merged:
    """One snapshot of the containers of every shard.

    A name seen on two nodes is qualified as ``name@<node[:8]>`` on both, so that each
    action reaches its node. Worked example: node a has ``web`` and ``db``, node b has
    ``web`` → containers ``db``, ``web@a…``, ``web@b…``.

    Except a horizontally scaled container (every node reports it with a replica
    count: a Serve deployment whose replicas span nodes): it stays *one* container,
    whose replicas are the sum and whose window is that of its most loaded node (the
    highest last memory usage ÷ limit or CPU rate ÷ quota: those replicas fail first);
    its actions go to the workload actuators by name. Worked example: ``app/api`` with
    1 replica at 0.9 of its memory on node a and 2 at 0.4 on node b → ``app/api``, 3
    replicas, node a's window. ``now_s``: the snapshot's time when no shard answered.
    """
    seen_on: dict[str, list[int]] = {}
    for k, sh in enumerate(shards):
        for n in sh.names:
            seen_on.setdefault(n, []).append(k)
    spanning = {n for n, ks in seen_on.items()
                if len(ks) > 1 and all(n in shards[k].replicas for k in ks)}
    names_, apps, windows, events = [], [], [], []
    route: dict[str, tuple[str, str]] = {}
    replicas: dict[str, int] = {}
    labels: dict[str, Mapping[str, str]] = {}
    errors: dict[str, str] = {}
    dropped: dict[str, int] = {}
    nodes: dict[str, dict[str, float]] = {}
    hottest: dict[str, tuple[float, int, int]] = {}  # spanning name → (load, shard, row)
    for k, sh in enumerate(shards):
        node = sh.node
        nodes[node] = dict(sh.capacity)
        keep = []
        for i, (n, app) in enumerate(zip(sh.names, sh.apps, strict=True)):
            if n in spanning:
                load = row_load(sh.window[i])
                if n not in hottest or load > hottest[n][0]:
                    hottest[n] = (load, k, i)
                replicas[n] = replicas.get(n, 0) + int(sh.replicas[n])
                continue
            name = n if len(seen_on[n]) == 1 else f"{n}@{node[:8]}"
            if name in route:  # two nodes whose ids share 8 characters: the full id
                name = f"{n}@{node}"
            names_.append(name)
            apps.append(app)
            route[name] = (node, n)
            keep.append(i)
            if n in sh.replicas:
                replicas[name] = sh.replicas[n]
            if n in sh.labels:
                labels[name] = sh.labels[n]
        if keep:
            windows.append(sh.window[keep])
        events += sh.events
        errors.update(sh.errors)
        for key, v in sh.dropped.items():
            dropped[key] = dropped.get(key, 0) + v
    for n, (_, k, i) in sorted(hottest.items()):
        sh = shards[k]
        names_.append(n)
        apps.append(sh.apps[i])
        route[n] = (sh.node, n)
        windows.append(sh.window[i:i + 1])
        if n in sh.labels:
            labels[n] = sh.labels[n]
    t = max((sh.now_s for sh in shards), default=now_s if now_s is not None else 0.0)
    window = (np.concatenate(windows) if windows
              else np.empty((0, *window_shape), dtype=float))
    snap = Snapshot(t, names_, apps, window, events, replicas, labels)
    return Merged(snap, route, errors, dropped, nodes)


def row_load(row: np.ndarray) -> float:
    """How close one container's window ``[W, M]`` is to a limit: the larger of the last
    memory usage ÷ limit and the last CPU rate ÷ quota (the features' own formulas; 0
    when unknown). Example: usage 90 of limit 100 → 0.9; CPU counter 10 → 10.5 s over
    1 s with quota 1 → 0.5."""
    f = compute_features(row[None], recent_steps=2)[0]
    with np.errstate(all="ignore"):
        fracs = np.array([f[F["memory_usage_last_bytes"]] / f[F["memory_limit_bytes"]],
                          f[F["cpu_usage_cores_last"]] / f[F["cpu_quota_cores"]]])
    fracs = fracs[np.isfinite(fracs)]
    return float(fracs.max()) if len(fracs) else 0.0


__all__ = ["Merged", "Shard", "merge_shards", "row_load"]
