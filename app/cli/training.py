"""The commands that train models: `prescale train` (one kind), `prescale tune` (Ray Tune
over kinds and hyperparameters) and `prescale retrain` (each app when due); all judged by
the same gate, their result printed in words."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from prescale.app.cli.common import (
    ConfigOpt,
    err,
    fail,
    fmt_probability,
    open_registry,
    open_store,
    out,
    settings_or_exit,
    time_option,
)
from prescale.app.cli.output import (
    JsonOpt,
    ListOutputOpt,
    Output,
    OutputOpt,
    emit,
    emit_records,
    output_of,
)
from prescale.app.cli.progress import Progress, ProgressOpt, wanted
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

SplitOpt = Annotated[str, typer.Option(help="auto (default: by app when each container has "
                                            "one window, else by time) | time | group")]
SplitSeedOpt = Annotated[int, typer.Option(help="Seed of a group split.")]
WindowStepsOpt = Annotated[int | None, typer.Option(min=1, help="Default: loop.window_steps.")]
HorizonOpt = Annotated[float | None, typer.Option(
    min=1.0, help="Seconds ahead a failure counts (default: predictor.horizon_s).")]


def train(
    app_name: Annotated[str | None, typer.Option("--app", help="App (empty: a global model).")]
    = None,
    kind: Annotated[str, typer.Option(help="random_forest | hist_gradient_boosting | "
                                           "heuristic | lstm")] = "hist_gradient_boosting",
    stride: Annotated[int, typer.Option(min=1, help="A window every N samples.")] = 1,
    tier: Annotated[str | None, typer.Option(help="memory|cpu|disk|any (default: models.tier)")]
    = None,
    split: SplitOpt = "auto",
    split_seed: SplitSeedOpt = 0,
    window_steps: WindowStepsOpt = None,
    horizon: HorizonOpt = None,
    since: Annotated[str | None, typer.Option(
        metavar="TIME", help="Training data from (2h, 1h30m, 3d, ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="TIME", help="Training data until (same forms).")] = None,
    trace: Annotated[str | None, typer.Option(
        help="Train on this trace (bitbrains | google2011 | a Bitbrains-format file | a "
        "directory with Google 2011 task_usage* and task_events* files | PATH with --map) "
        "instead of the history store.")] = None,
    mapping: MapOpt = None,
    container_col: ContainerColOpt = "id",
    ts_col: TsColOpt = "timestamp",
    derive_failures: DeriveOpt = False,
    limit_multiple: LimitMultipleOpt = 1.3,
    first_fraction: FirstFractionOpt = 0.25,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Train one model and register it. It becomes current only if, on the held-out
    validation rows, it beats the model serving now and the trend heuristic (AP, by
    models.gate_margin_ap with the 95% bootstrap interval above 0); the reason is printed
    in words. Exit 1 when nothing could be learned (no failure in the data). The stages
    (reading, features, labels and split, fitting, validating, the gate, the refit, the
    test split and registration) show on stderr as they go."""
    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    source: Any = s.history_uri()
    try:
        with Progress("train", wanted(progress), unit="stages") as on_progress:
            on_progress(0, None, "loading the training code")
            from prescale.tuning.register import Promotion, train_and_register

            if trace is not None:
                on_progress(0, None, f"reading the trace {trace}")
                source = trace_or_exit(trace, mapping, container_col, ts_col, app_name,
                                       derive_failures, limit_multiple, first_fraction)
                err.print(failure_summary(source), markup=False)
            result = train_and_register(
                source, str(s.registry_dir()), app=app_name, kind=kind,
                tier=tier or s.models.tier, horizon_s=horizon or s.predictor.horizon_s,
                window_steps=window_steps or s.loop.window_steps,
                recent_steps=s.predictor.recent_steps, split=split, split_seed=split_seed,
                stride=stride, since_s=time_option(since, "--since"),
                until_s=time_option(until, "--until"), promotion=Promotion.from_settings(s),
                on_progress=on_progress)
    except ValueError as exc:
        raise fail(str(exc)) from None
    _print_training(result, fmt)


def tune(
    app_name: Annotated[str | None, typer.Option("--app", help="App (empty: a global model).")]
    = None,
    trials: Annotated[int, typer.Option(min=1, max=1000)] = 8,
    kinds: Annotated[str, typer.Option(help="Comma-separated model kinds to search.")]
    = "random_forest,hist_gradient_boosting,heuristic",
    stride: Annotated[int, typer.Option(min=1)] = 1,
    tier: Annotated[str | None, typer.Option(help="memory|cpu|disk|any (default: models.tier)")]
    = None,
    split: SplitOpt = "auto",
    split_seed: SplitSeedOpt = 0,
    window_steps: WindowStepsOpt = None,
    horizon: HorizonOpt = None,
    since: Annotated[str | None, typer.Option(
        metavar="TIME", help="Training data from (2h, 1h30m, 3d, ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="TIME", help="Training data until (same forms).")] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Ray Tune search over model kinds and hyperparameters (ASHA early stopping); the best
    is judged by the same gate as `prescale train` (beat the current model and the
    heuristic on validation) and registered. Exit 1 when nothing could be learned. One
    display on stderr: preparing the data, the trials finished (with the best score so
    far), registering; Tune's own tables stay quiet."""
    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    try:
        with Progress("tune", wanted(progress)) as on_progress:
            on_progress(0, None, "loading the training code")
            from prescale.tuning.register import Promotion
            from prescale.tuning.search import tune_and_register

            result = tune_and_register(
                s.history_uri(), str(s.registry_dir()), app=app_name,
                tier=tier or s.models.tier, trials=trials,
                storage_path=str(Path(s.data_dir).resolve() / "tune"),
                kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
                split=split, split_seed=split_seed,
                horizon_s=horizon or s.predictor.horizon_s,
                window_steps=window_steps or s.loop.window_steps,
                recent_steps=s.predictor.recent_steps, stride=stride,
                since_s=time_option(since, "--since"), until_s=time_option(until, "--until"),
                num_cpus=s.ray.num_cpus, on_progress=on_progress,
                promotion=Promotion.from_settings(s))
    except ValueError as exc:
        raise fail(str(exc)) from None
    except RuntimeError as exc:
        raise fail(str(exc), 1) from None
    _print_training(result, fmt)


def retrain(
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app (_global: the "
                                                               "global model).")] = None,
    force: Annotated[bool, typer.Option(
        "--force/--no-force", help="Retrain even if not due.")] = False,
    trials: Annotated[int | None, typer.Option(min=1, max=1000,
                                               help="Default: models.retrain_trials.")] = None,
    output: ListOutputOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Retrain each app's model (and the global one) when due: weekly
    (models.retrain_interval_s) or when the live precision/recall of the judged outcomes
    drifts below the floors; through Ray Tune and the same gate as `prescale train`. The
    control loop schedules this itself (models.retrain_live); this command is for cron or
    a Ray job. It does nothing when nothing is due. -o jsonl: one line per app (app, due,
    why, and the result of a retraining)."""
    from prescale.app.store.decision_log import read_log
    from prescale.tuning.register import GLOBAL_APP
    from prescale.tuning.retrain import (
        due,
        last_trained_s,
        live_rates_by_app,
        policy_of,
        retrain_app,
    )
    from prescale.tuning.search import ray_session

    fmt = output_of(output, as_json)
    s = settings_or_exit(config)
    m = s.models
    policy = policy_of(s)
    store, registry = open_store(s), open_registry(s)
    apps = ([app_name] if app_name is not None
            else [a for a in store.apps() if a] + [GLOBAL_APP])
    rates = live_rates_by_app(read_log(store, kinds={"judgement"}), m.tier, m.live_window_n)
    now_s = time.time()
    report = []
    for a in apps:
        is_due, why = due(policy, now_s, last_trained_s(registry, a, m.tier),
                          rates.get(a) if a != GLOBAL_APP else None)
        report.append({"app": a, "due": is_due or force, "why": why if not force else "forced"})
    if any(e["due"] for e in report):
        with ray_session(s.ray.num_cpus, None, False):
            for entry in report:
                if entry["due"]:
                    entry["result"] = retrain_app(s, entry["app"], trials=trials, nice=0)
    if emit_records(fmt, report):
        return
    for entry in report:
        res = entry.get("result")
        out.print(f"{entry['app']}: {entry['why']}" + (
            f" → {res.get('version_id') or 'nothing registered'} {res['status']}: "
            f"{res.get('reason')}" if res else ""), markup=False)


def _print_training(out_dict: dict, fmt: Output) -> None:
    """The result in words (or JSON) on stdout, like every command's result (app/cli/output.py);
    exit 1 when nothing could be learned, said on stderr."""
    if not emit(fmt, out_dict):
        _describe_training(out_dict)
    if out_dict.get("status") == "nothing learned":
        raise typer.Exit(1)


def _describe_training(r: dict) -> None:
    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    who = f"{r.get('app')}/{r.get('tier')}"
    if r.get("status") == "nothing learned":
        err.print(f"nothing learned for {who}: {r.get('reason')}")
        err.print(f"nothing registered; {who} keeps serving what it served (its current model "
                  "or the heuristic)")
        return
    kind = r.get("kind")
    if r.get("promoted"):
        out.print(f"{who}: {r.get('version_id')} ({kind}) is current — {r.get('reason')}",
                  markup=False)
    else:
        out.print(f"{who}: {r.get('version_id')} ({kind}) registered as a candidate — "
                  f"{r.get('reason')}", markup=False)
    for c in (r.get("gate") or {}).get("comparisons", []):
        if c.get("note"):
            out.print(f"  note on the {c['reference']}: {c['note']}", markup=False)
    test = r.get("test") or {}
    thr = test.get("threshold")
    out.print(f"operating threshold {('never alarms' if thr is None else fmt_probability(thr))}"
              + (f"; {r['threshold_seeded']}" if r.get("threshold_seeded") else ""),
              markup=False)
    rule = r.get("test_best_single_feature") or {}
    out.print(f"held-out test split ({test.get('n', 0):,} windows, {test.get('n_positive', 0):,} "
              f"positive, base rate {f(test.get('base_rate'), 4)}): AP {f(test.get('pr_auc'))}, "
              f"ROC-AUC {f(test.get('roc_auc'))}, precision {f(test.get('precision'))} and "
              f"recall {f(test.get('recall'))} at the threshold; best single feature "
              f"{rule.get('feature')} ({rule.get('direction')}) AP {f(rule.get('pr_auc'))}",
              markup=False)
