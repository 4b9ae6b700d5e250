"""The failure-model evaluation's report as Markdown tables for docs/BENCHMARKS.md: the
Google 2011 cross-validation, the replay fleets, the timings."""

from __future__ import annotations

import math
from typing import Any


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def _ms(d: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std [min, max]`` of a :func:`tuning.cv.spread`."""
    if not d or d.get("n", 0) == 0:
        return "—"
    return (f"{_f(d['mean'], digits)} ± {_f(d['std'], digits)} "
            f"[{_f(d['min'], digits)}, {_f(d['max'], digits)}]")


def _ci(d: dict[str, Any], key: str) -> str:
    lo, hi = d.get(f"{key}_lo"), d.get(f"{key}_hi")
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f"[{lo:.3f}, {hi:.3f}]"


def _minutes(s: Any) -> str:
    return "—" if s is None or not math.isfinite(s) else f"{s / 60:.1f}"


def render_google(g: dict[str, Any]) -> str:
    if "skipped" in g:
        return f"### Google 2011\n\nSkipped: {g['skipped']}\n"
    n_folds = g["folds"] * g["repeats"]
    lines = [
        "### Google 2011: usage snapshot → FAIL, EVICT or KILL later (job-grouped "
        f"{g['folds']}-fold CV × {g['repeats']})",
        "",
        f"{g['n_tasks']} tasks of {g['n_jobs']} jobs; {g['n_positive']} positive tasks in "
        f"{g['positive_jobs']} jobs (base rate {g['n_positive'] / g['n_tasks']:.4f}); "
        f"horizon 1 day; a {g['params']['window_steps']}-step window per task; {g['folds']} "
        f"folds of whole jobs with the positives spread, {g['repeats']} seeds: {n_folds} "
        "held-out folds, mean ± std [min, max] over them. Each model is trained as "
        "`prescale train` trains it (split by job, judged, refitted, threshold from its "
        "out-of-fold probabilities).",
        "",
        "| score | AP | ROC-AUC | AP − best usage column (paired) | folds > usage column "
        "| precision at its threshold | recall at its threshold | precision ÷ base rate "
        "| ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(g["models"].values()), None)
    if first is not None:
        s = first["summary"]
        lines.append(f"| base rate | {_ms(s['model']['base_rate'], 4)} | 0.5 | — | — | — | — "
                     "| 1 | — |")
        lines.append(f"| best single usage column (chosen on the other folds) "
                     f"| {_ms(s['usage_rule']['pr_auc'])} | {_ms(s['usage_rule']['roc_auc'])} "
                     "| 0 | — | — | — | — | — |")
        lines.append(f"| best single feature of all (chosen on the other folds) "
                     f"| {_ms(s['rule']['pr_auc'])} | {_ms(s['rule']['roc_auc'])} | — | — | — "
                     "| — | — | — |")
        h = s["heuristic"]
        lines.append(f"| heuristic (ranks {h['rankable']['mean']:.0%} of the windows: "
                     f"{g['params']['window_steps']} samples < min_samples 5) "
                     f"| {_ms(h['pr_auc'])} | {_ms(h['roc_auc'])} | — | — | — | — | — | — |")
    for kind, m in g["models"].items():
        s = m["summary"]
        beats = sum(1 for f in m["folds"]
                    if f["model"]["pr_auc"] > f["usage_rule"]["pr_auc"])
        lines.append(
            f"| {kind} | {_ms(s['model']['pr_auc'])} | {_ms(s['model']['roc_auc'])} "
            f"| {_ms(s['model_minus_usage_rule_ap'])} | {beats}/{len(m['folds'])} "
            f"| {_ms(s['model']['precision'])} | {_ms(s['model']['recall'])} "
            f"| {_ms(s['precision_over_base_rate'], 1)} | {_ms(s['model']['ece'])} |")
    if first is not None:
        lines += ["", "Usage columns chosen: " + ", ".join(first["summary"]["usage_rules"])
                  + "; best features of all: " + ", ".join(first["summary"]["rules"]) + "."]
    for kind, m in g["models"].items():
        lines += ["", f"Per fold, {kind} (AP / usage column AP / positives / threshold / "
                  "precision / recall):", "",
                  "| repeat | fold | test tasks | positives | AP | usage column AP "
                  "| ROC-AUC | threshold | precision | recall |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for f in m["folds"]:
            lines.append(
                f"| {f['repeat']} | {f['fold']} | {f['n_test']} | {f['n_test_positive']} "
                f"| {_f(f['model']['pr_auc'])} | {_f(f['usage_rule']['pr_auc'])} "
                f"| {_f(f['model']['roc_auc'])} | {_f(f['threshold']['threshold'], 4)} "
                f"| {_f(f['model']['precision'])} | {_f(f['model']['recall'])} |")
        rel = m["pooled_reliability"]
        lines += ["", f"Reliability of {kind} on the held-out folds (all folds pooled):", "",
                  "| p bin | windows | mean p | observed failure rate |", "|---|---|---|---|"]
        for k, c in enumerate(rel["count"]):
            if c:
                lines.append(f"| {rel['edges'][k]:.1f}–{rel['edges'][k + 1]:.1f} | {c} "
                             f"| {_f(rel['mean_predicted'][k])} | {_f(rel['observed'][k])} |")
    return "\n".join(lines) + "\n"


def render_fleets(fleets: dict[str, dict[str, Any]]) -> str:
    lines = [
        "### Replay fleets: memory failure within H (time split 60/10/30, gap H)",
        "",
    ]
    for name, f in fleets.items():
        if "skipped" in f:
            lines.append(f"- `{name}`: skipped: {f['skipped']}")
            continue
        extra = ""
        if name == "bitbrains":
            d = f["derivation"]
            extra = (f"; limit {d['limit_multiple']:g} × median of the first "
                     f"{d['first_fraction']:.0%} of each VM's rows, {d['oom_kills']} derived "
                     f"OOM kills, {len(d['containers_without_limit'])} VM(s) without a "
                     "limit left out")
        lines.append(
            f"- `{name}`: {f['containers']} containers, {f['samples']} samples, "
            f"{f['failures']} OOM kills{extra}; H = {f['horizon_s'] / 60:g} min, "
            f"W = {f['window_steps']} steps, stride {f['stride']}; {f['windows']} windows "
            f"scored ({f['exhausted_windows_dropped']} ending at or above the limit left "
            f"out), fitted on {f['n_train']} ({f['n_train_positive']} positive), test "
            f"{f['n_test']} ({f['n_test_positive']} positive).")
    lines += [
        "",
        "| fleet | score | threshold | precision | recall | PR-AUC [95 % CI] "
        "| − rule [95 % CI] | − heuristic [95 % CI] | ROC-AUC | Brier | median lead of TP "
        "windows (min) | failures caught | median first warning (min) | TP | FP | FN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in fleets.items():
        if "skipped" in f:
            continue
        lines.append(f"| {name} | base rate (random score) | — | — | — | {_f(f['base_rate'])} "
                     "| — | — | — | — | — | — | — | — | — | — |")
        r = f["rule"]
        lines.append(f"| {name} | rule: {r['feature']} ({r['direction']}) | — | — | — "
                     f"| {_f(r['pr_auc'])} {_ci(r, 'pr_auc')} | 0 | — | — | — | — | — | — "
                     "| — | — | — |")
        h = f["models"].get("heuristic", {})
        for kind, m in f["models"].items():
            caught = f"{m['failures_caught']}/{m['failures']}"
            minus_h = ("0" if kind == "heuristic" else
                       f"{_f(m['pr_auc'] - h['pr_auc'])} {_ci(m, 'minus_heuristic')}"
                       if h else "—")
            lines.append(
                f"| {name} | {kind} | {_f(m['threshold'], 4)} | {_f(m['precision'])} "
                f"| {_f(m['recall'])} | {_f(m['pr_auc'])} {_ci(m, 'pr_auc')} "
                f"| {_f(m['pr_auc'] - r['pr_auc'])} {_ci(m, 'minus_rule')} | {minus_h} "
                f"| {_f(m['roc_auc'])} | {_f(m['brier'], 4)} | {_minutes(m['median_lead_s'])} "
                f"| {caught} | {_minutes(m['median_first_warning_s'])} "
                f"| {m['tp']} | {m['fp']} | {m['fn']} |")
    sim = fleets.get("sim")
    if sim and "skipped" not in sim:
        apps = list(sim["test_positive_per_app"])
        lines += ["", "Recall at the operating threshold per failing scenario of the "
                  "simulated fleet (test positives in brackets):", "",
                  "| model | " + " | ".join(
                      f"{a.removeprefix('sim-')} ({sim['test_positive_per_app'][a]})"
                      for a in apps) + " |",
                  "|---|" + "---|" * len(apps)]
        for kind, m in sim["models"].items():
            lines.append(f"| {kind} | " + " | ".join(_f(m["recall_per_app"][a]) for a in apps)
                         + " |")
    return "\n".join(lines) + "\n"


def render_timings(timings: dict[str, float], parts: dict[str, dict[str, Any]]) -> str:
    lines = ["### Timings (s)", "", "| part | step | seconds |", "|---|---|---|"]
    for part, res in parts.items():
        for step, secs in res.get("timings_s", {}).items():
            lines.append(f"| {part} | {step} | {secs:.1f} |")
    for part in ("google2011", "sim", "bitbrains", "all"):
        if part in timings:
            lines.append(f"| **{part}** | total wall | **{timings[part]:.1f}** |")
    if "cpu_all" in timings:
        lines.append(f"| all | process CPU | {timings['cpu_all']:.1f} |")
        lines.append(f"| all | load average (1 min) start → end "
                     f"| {_f(timings['load_avg_1m_start'], 1)} → "
                     f"{_f(timings['load_avg_1m_end'], 1)} |")
    return "\n".join(lines) + "\n"


def render(report: dict[str, Any]) -> str:
    head = (f"## Failure models ({'quick' if report['config']['quick'] else 'full'} "
            f"configuration; kinds: {', '.join(report['kinds'])})\n")
    return "\n".join([
        head,
        render_google(report["google2011"]),
        render_fleets(report["fleets"]),
        render_timings(report["timings_s"], {"google2011": report["google2011"],
                                             **report["fleets"]}),
    ])

