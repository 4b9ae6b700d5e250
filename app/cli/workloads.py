"""`prescale policies` and `prescale describe`: the ``[[workloads]]`` policies, what they
match, and one container's effective policy, live prediction and standing
recommendation (as ``kubectl describe vpa`` shows a VPA's)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    fail,
    fmt_bytes,
    fmt_cores,
    fmt_probability,
    out,
    settings_or_exit,
    status_or_exit,
)
from prescale.app.cli.output import JsonOpt, OutputOpt, emit, output_of


def policies(
    config: ConfigOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The [[workloads]] policies, in order, then the policies containers carry in their
    own prescale.* labels (Docker), and the containers of the last tick each governs
    (-o json: {"workloads": [...], "global_mode": ...})."""
    from prescale.app.core.engine import EngineConfig
    from prescale.app.core.workloads import from_labels
    from prescale.app.store import jsonfile

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    cfg = EngineConfig.from_settings(s)
    guards = cfg.policy.guards
    snap = jsonfile.read_newest(Path(s.data_dir) / "status.json") or {}
    rows = [r for r in snap.get("containers", []) if r.get("state") == "ok"]
    entries = list(guards.workloads)
    for r in rows:  # a container's own labels: a policy of that container, over its entry
        w = guards.workload_of(r["name"], r.get("app") or "", r.get("labels"))
        if w is not None and from_labels(r["name"], r.get("labels")) is not None:
            entries.append(w)
    governs: dict[str, list[str]] = {w.name: [] for w in entries}
    for r in rows:
        w = guards.workload_of(r["name"], r.get("app") or "", r.get("labels"))
        if w is not None:
            governs[w.name].append(r["name"])
    listed = [{"name": w.name, "matches": w.describe_match(), "mode": w.mode or s.mode.value,
               "controlled": sorted(w.controlled) if w.controlled is not None else "all",
               "policy": w.kind or cfg.policy.kind, "tenant": w.tenant, "weight": w.weight,
               "problems": [*w.problems, *w.ignored], "governs": governs[w.name]}
              for w in entries]
    if emit(fmt, {"workloads": listed, "global_mode": s.mode.value}):
        return
    if not listed:
        out.print(f"no [[workloads]]: every container follows the global settings "
                  f"(mode {s.mode.value})", markup=False)
        return
    table = Table(title=f"workload policies (global mode {s.mode.value}; the most specific "
                        "match wins: container glob > labels > app; a container's own "
                        "prescale.* labels over its match)")
    for col in ("name", "matches", "mode", "controlled", "policy", "tenant / weight",
                "governs (last tick)"):
        table.add_column(col, overflow="fold")
    for w in listed:
        c = w["controlled"]
        weight = "-" if w["weight"] is None else f"{w['weight']:g}"
        table.add_row(w["name"], w["matches"], w["mode"], c if isinstance(c, str)
                      else ", ".join(c), w["policy"], f"{w['tenant'] or '-'} / {weight}",
                      ", ".join(w["governs"]) or "-")
    out.print(table, markup=False)
    for w in listed:
        for why in w["problems"]:
            out.print(f"{w['name']}: {why}", markup=False)


def describe(
    container: Annotated[str, typer.Argument(metavar="CONTAINER",
                                             help="A container of the last tick.")],
    config: ConfigOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One container: its effective policy (and where each part comes from), the live
    prediction, and a standing recommendation (lower bound / target / upper bound);
    -o json gives them in bytes and cores. Exit 1 when the last tick has no such
    container."""
    from prescale.app.core.contention import ContentionConfig
    from prescale.app.core.engine import EngineConfig
    from prescale.app.core.tenants import tenant_of
    from prescale.app.core.workloads import bound_sources, recommendation

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    cfg = EngineConfig.from_settings(s)
    guards, policy = cfg.policy.guards, cfg.policy
    snap = status_or_exit(s)
    row = next((r for r in snap.get("containers", []) if r.get("name") == container), None)
    if row is None or row.get("state") != "ok":
        known = ", ".join(r["name"] for r in snap.get("containers", [])) or "none"
        raise fail(f"no container {container!r} in the last tick (containers: {known})", 1)
    app, labels = row.get("app") or "", row.get("labels") or {}
    w = guards.workload_of(container, app, labels)
    mode = w.mode if w is not None and w.mode is not None else s.mode.value
    if s.mode.value in ("off", "recommend") and mode == "auto":
        mode = s.mode.value  # a workload holds back, never pushes further
    margin = policy.margin_fraction
    tiers: dict[str, Any] = {}
    for tier, usage_key, limit_key, fc_key in (
            ("memory", "memory_usage_bytes", "memory_limit_bytes", "memory_forecast_bytes"),
            ("cpu", "cpu_usage_cores", "cpu_quota_cores", "cpu_forecast_cores")):
        lo, hi = guards.bounds_for(container, app, tier, labels)
        lo_src, hi_src = bound_sources(guards, container, app, tier, labels)
        usage, fc = _num(row.get(usage_key)), _num(row.get(fc_key))
        safety = guards.safety_margin_fraction if tier == "memory" else 0.0
        lower, target, upper = recommendation(usage, fc, lo, hi, margin, safety)
        p, thr = _num(row.get(f"p_fail_{tier}")), _num(row.get(f"threshold_{tier}"))
        controlled = w is None or w.controlled is None or tier in w.controlled
        pt, tt = fmt_probability(p), fmt_probability(thr)
        why = (f"p_fail {pt} ≥ threshold {tt}: a scale-up to the target is due"
               if p >= thr else f"p_fail {pt} < threshold {tt}: the limit holds")
        if not controlled:
            why += f"; workload {w.name} does not control {tier}"
        elif w is not None and w.problems:
            why += f"; held back: {'; '.join(w.problems)}"
        elif mode != "auto":
            why += f"; {mode} mode: nothing is applied"
        tiers[tier] = {"usage": usage, "limit": _num(row.get(limit_key)), "forecast": fc,
                       "p_fail": p, "threshold": thr, "bounds": [lo, hi],
                       "bounds_from": [lo_src, hi_src], "lower": lower, "target": target,
                       "upper": upper, "controlled": controlled, "reason": why}
    tenant = tenant_of(cfg.tenants, container, app, (w.tenant or "") if w else "")
    weight = (w.weight if w is not None and w.weight is not None
              else s.contention.app_weights.get(app, ContentionConfig.from_settings(s.contention)
                                               .default_weight))
    problems = [*w.problems, *w.ignored] if w is not None else []
    result = {"name": container, "app": app, "workload": w.name if w else None,
              "matched_by": w.describe_match() if w else None, "mode": mode,
              "policy": w.kind if w is not None and w.kind else policy.kind,
              "tenant": tenant or None, "weight": weight, "problems": problems,
              "time_to_limit_s": _num(row.get("memory_time_to_limit_s")),
              "last_action": row.get("last_action"), "tiers": tiers}
    if emit(fmt, result):
        return
    governed = (f"workload {w.name} ({w.describe_match()})" if w
                else "global settings (no [[workloads]] match)")
    out.print(f"Name:      {container}\nApp:       {app or '-'}\n"
              f"Policy:    {governed}\n"
              f"Mode:      {mode}\n"
              f"Scale-up:  {result['policy']}\n"
              f"Tenant:    {tenant or '-'} (risk weight {weight:g})\n"
              f"Time to memory limit: {_fmt_s(result['time_to_limit_s'])}", markup=False)
    for why in problems:
        out.print(f"Problem:   {why}", markup=False)
    table = Table(title="resources")
    for col in ("tier", "usage", "limit", "forecast", "p_fail / thr", "bounds (from)",
                "lower bound", "target", "upper bound", "reason"):
        table.add_column(col, overflow="fold")
    for tier, t in tiers.items():
        f = fmt_bytes if tier == "memory" else fmt_cores
        table.add_row(tier, f(t["usage"]), f(t["limit"]), f(t["forecast"]),
                      f"{fmt_probability(t['p_fail'])} / {fmt_probability(t['threshold'])}",
                      f"{f(t['bounds'][0])}..{f(t['bounds'][1])} ({t['bounds_from'][0]}, "
                      f"{t['bounds_from'][1]})", f(t["lower"]), f(t["target"]), f(t["upper"]),
                      t["reason"])
    out.print(table)


def _num(v: Any) -> float:
    if isinstance(v, int | float):
        return float(v)
    if v == "inf":
        return math.inf
    return math.nan


def _fmt_s(v: float) -> str:
    return "never" if v == math.inf else "-" if v != v else f"{v:.0f} s"
