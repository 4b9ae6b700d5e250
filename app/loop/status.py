"""The status snapshot (``status.json``, what ``prescale status`` shows): one row per
container — its usage, limits, risk and last action — and the unknown ones (a slow or
lost monitor) with the reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prescale.app.core.engine import Plan
from prescale.app.core.features import F
from prescale.app.core.sample import Tier


def status_rows(plan: Plan, seen: Mapping[str, Mapping[str, Any]],
                last_action: Mapping[str, Any],
                replicas: Mapping[str, int] | None = None,
                labels: Mapping[str, Mapping[str, str]] | None = None) -> list[dict[str, Any]]:
    """One row per container of ``plan`` (``seen``: container → its node, …)."""
    pred, feats = plan.prediction, plan.features
    mem, cpu = pred.tiers[Tier.MEMORY], pred.tiers[Tier.CPU]
    rows = []
    for i, n in enumerate(plan.names):
        samples = feats[i, F["n_samples"]]
        rows.append({
            "name": n,
            "node": seen.get(n, {}).get("node"),
            "state": "ok",
            "replicas": (replicas or {}).get(n),  # None: not horizontally scaled
            "memory_usage_bytes": float(feats[i, F["memory_usage_last_bytes"]]),
            "memory_limit_bytes": float(mem.limit[i]),
            "cpu_usage_cores": float(feats[i, F["cpu_usage_cores_last"]]),
            "cpu_quota_cores": float(cpu.limit[i]),
            "p_fail_memory": float(mem.p_fail[i]),
            "p_fail_cpu": float(cpu.p_fail[i]),
            "memory_time_to_limit_s": float(mem.time_to_limit_s[i]),
            # for `prescale describe`: the app, what each tier is forecast to need at the
            # horizon, and the threshold p_fail is held against
            "app": plan.apps[i],
            "labels": dict((labels or {}).get(n, {})),
            "memory_forecast_bytes": float(mem.forecast[i]),
            "cpu_forecast_cores": float(cpu.forecast[i]),
            "threshold_memory": float(plan.thresholds[Tier.MEMORY][i]),
            "threshold_cpu": float(plan.thresholds[Tier.CPU][i]),
            "model": plan.model_of.get(n, pred.model),
            "samples": int(samples) if math.isfinite(samples) else 0,
            "last_action": last_action.get(n),
        })
    return rows


def unknown_rows(seen: Mapping[str, Mapping[str, Any]],
                 last_action: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The containers whose node did not answer: last seen, and why."""
    return [{"name": n, "node": info["node"], "state": "unknown", "reason": info["unknown"],
             "last_seen_s": info["last_s"], "last_action": last_action.get(n)}
            for n, info in sorted(seen.items()) if info.get("unknown")]


__all__ = ["status_rows", "unknown_rows"]
