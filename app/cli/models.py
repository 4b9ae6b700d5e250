"""`prescale models`: list the registry's versions, promote or roll back one, score one
on another trace."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from prescale.app.cli.common import (
    ConfigOpt,
    err,
    fail,
    fmt_probability,
    fmt_time,
    new_app,
    open_registry,
    out,
    settings_or_exit,
)
from prescale.app.cli.output import (
    JsonOpt,
    ListOutputOpt,
    OutputOpt,
    emit,
    emit_records,
    output_of,
)
from prescale.app.cli.traces import (
    ContainerColOpt,
    DeriveOpt,
    FirstFractionOpt,
    LimitMultipleOpt,
    MapOpt,
    TsColOpt,
    failure_summary,
    trace_or_exit,
)

models_app = new_app("The model registry: list (also with no command), evaluate, promote, "
                     "rollback.")

AppOpt = Annotated[str | None, typer.Option("--app", help="Only this app.")]


@models_app.callback(invoke_without_command=True)
def models_default(
    ctx: typer.Context,
    app_name: AppOpt = None,
    output: ListOutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The model registry. With no command: the same as `prescale models list`."""
    if ctx.invoked_subcommand is None:
        models_list(app_name, output, as_json, config)
    elif app_name is not None or output is not None or as_json or config is not None:
        raise typer.BadParameter(f"give the options after the command (prescale models "
                                 f"{ctx.invoked_subcommand} ...)")


@models_app.command("list")
def models_list(
    app_name: AppOpt = None,
    output: ListOutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List model versions (newest first) with their held-out test metrics at their
    operating threshold, their validation AP and whether they passed the gate (-o jsonl:
    one version per line, created_s in epoch seconds)."""
    from dataclasses import asdict

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    versions = open_registry(s).list(app=app_name)
    if emit_records(fmt, (asdict(v) for v in versions)):
        return
    table = Table(title=f"models in {s.registry_dir()}")
    for col in ("app", "tier", "version", "kind", "status", "created", "PR-AUC", "ROC-AUC",
                "threshold", "precision", "recall", "base rate", "val PR-AUC", "gate",
                "rows"):
        table.add_column(col)

    def f(m: dict, key: str, prob: bool = False) -> str:
        val = m.get(key)
        if val is None:
            return "-"
        if prob:
            return fmt_probability(val)
        return f"{val:.3f}" if isinstance(val, float) else str(val)

    for v in versions:
        m = v.metrics
        gate = (v.training or {}).get("gate") or {}
        verdict = ("-" if not gate else "passed" if gate.get("promote")
                   else "not passed")
        table.add_row(v.app, v.tier, v.version_id, v.kind, v.status, fmt_time(v.created_s),
                      f(m, "pr_auc"), f(m, "roc_auc"), f(m, "threshold", True),
                      f(m, "precision"), f(m, "recall"), f(m, "base_rate", True),
                      f(m, "val_pr_auc"), verdict, str(v.training.get("rows", "-")))
    out.print(table)


@models_app.command("promote")
def models_promote(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    version_id: Annotated[str, typer.Argument(metavar="VERSION")],
    tier: Annotated[str, typer.Option()] = "memory",
    force: Annotated[bool, typer.Option(
        "--force/--no-force", help="Promote even a version trained on no positive window or "
        "without a validation AP (it would serve in place of the heuristic).")] = False,
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """Make VERSION the current model of APP (the running coordinator picks it up); -o
    json prints the version promoted."""
    fmt = output_of(output)
    s = settings_or_exit(config)
    reg = open_registry(s)
    try:
        target = reg.get(app_name, tier, version_id)
        training, metrics = target.training or {}, target.metrics or {}
        why = ("it was trained on no positive window" if not training.get("positives")
               else "it has no validation AP" if metrics.get("val_pr_auc", 0.0) is None
               else None)
        if why and not force:
            raise fail(f"{app_name}/{tier} {version_id} is not promoted: {why}, so it "
                       "learned nothing to serve in place of the heuristic (--force to "
                       "promote it anyway)")
        v = reg.promote(app_name, tier, version_id)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc)) from None
    _said(fmt, v, f"{v.app}/{v.tier}: {v.version_id} is current")


def _said(fmt, v: Any, line: str) -> None:
    """A registry change: the version as JSON when asked, the line on stderr always."""
    from dataclasses import asdict

    emit(fmt, asdict(v))
    err.print(line, markup=False, highlight=False)


@models_app.command("evaluate")
def models_evaluate(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="App (_global: the global "
                                                                "model).")],
    trace: Annotated[str | None, typer.Option(
        help="Score on this trace (bitbrains | google2011 | a Bitbrains-format file | a "
        "directory with Google 2011 task_usage* and task_events* files | PATH with --map) "
        "instead of the history store.")] = None,
    version_id: Annotated[str | None, typer.Option("--version", help="Default: current.")]
    = None,
    tier: Annotated[str | None, typer.Option(help="Default: models.tier.")] = None,
    mapping: MapOpt = None,
    container_col: ContainerColOpt = "id",
    ts_col: TsColOpt = "timestamp",
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Score a registered model on another trace (or the history store): AP, ROC-AUC,
    base rate, precision and recall at its stored threshold, beside the best single
    feature and the heuristic, and its reliability curve."""
    from prescale.tuning.register import evaluate_version

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    source: Any = s.history_uri()
    if trace is not None:
        source = trace_or_exit(trace, mapping, container_col, ts_col, None, derive_failures,
                               limit_multiple, first_fraction)
        err.print(failure_summary(source), markup=False)
    try:
        res = evaluate_version(open_registry(s), app_name, source, tier=tier or s.models.tier,
                               version_id=version_id)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc)) from None
    if emit(fmt, res):
        return
    m, rule, heur = res["metrics"], res["best_single_feature"], res["heuristic"]

    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    thr = "never alarms" if res["threshold"] is None else fmt_probability(res["threshold"])
    out.print(f"{res['app']}/{res['tier']} {res['version_id']} ({res['kind']}, "
              f"{res['status']}) on {m['n']:,} windows, {m['n_positive']:,} positive "
              f"(base rate {f(m['base_rate'], 4)}); stored threshold {thr}")
    table = Table(title="scores on these windows (held out only if the model did not train on "
                        "them)")
    for col in ("score", "AP", "ROC-AUC", "precision", "recall", "alarms"):
        table.add_column(col)
    table.add_row(res["kind"], f(m["pr_auc"]), f(m["roc_auc"]), f(m["precision"]),
                  f(m["recall"]), str(m["alarms"]))
    table.add_row(f"best single feature: {rule['feature']} ({rule['direction']}), chosen on "
                  "these windows", f(rule["pr_auc"]), f(rule["roc_auc"]), "", "", "")
    hnote = (" (cannot rank: too few samples)" if heur["rankable"] == 0 else "")
    table.add_row(f"heuristic{hnote}", f(heur["pr_auc"]), f(heur["roc_auc"]), "", "", "")
    table.add_row("base rate", f(m["base_rate"], 4), "0.500", "", "", "")
    out.print(table)
    rel = res["reliability"]
    if rel:
        rt = Table(title=f"reliability (expected calibration error {f(rel['ece'])})")
        for col in ("p bin", "windows", "mean p", "observed failure rate"):
            rt.add_column(col)
        for k, c in enumerate(rel["count"]):
            if c:
                rt.add_row(f"{rel['edges'][k]:.1f}–{rel['edges'][k + 1]:.1f}", str(c),
                           f(rel["mean_predicted"][k]), f(rel["observed"][k]))
        out.print(rt)


@models_app.command("rollback")
def models_rollback(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    tier: Annotated[str, typer.Option()] = "memory",
    config: ConfigOpt = None,
    output: OutputOpt = None,
) -> None:
    """Retire APP's current model and bring back the one before it; -o json prints the
    version now current."""
    fmt = output_of(output)
    s = settings_or_exit(config)
    try:
        v = open_registry(s).rollback(app_name, tier)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc)) from None
    _said(fmt, v, f"{v.app}/{v.tier}: rolled back to {v.version_id}")
