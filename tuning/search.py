"""The Ray Tune search over model kinds and hyperparameters (:mod:`tuning.space`,
:mod:`tuning.trainable`), ending with the registration of the best contender through the
gate (:func:`tuning.register.register_model`), and the Ray session it runs in."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prescale.app.models import FailureModel, load_model
from prescale.tuning.jsonsafe import json_number, jsonable
from prescale.tuning.progress import OnProgress, Stages
from prescale.tuning.register import (
    Promotion,
    nothing_to_learn,
    open_registry,
    register_model,
    registry_app,
)
from prescale.tuning.train import DEFAULT_MAX_FPR, check_fpr, score, train_model, validate
from prescale.tuning.training_data import TrainingData, build_training_data

if TYPE_CHECKING:
    from prescale.app.store.history import HistoryStore

#: The model kinds :func:`tune_and_register` searches by default (lstm: on request).
DEFAULT_TUNE_KINDS = ("random_forest", "hist_gradient_boosting", "heuristic")
DEFAULT_TUNE_MAX_TRAIN_ROWS = 20_000
#: :func:`tune_and_register`'s progress phases before and after the trials: reading,
#: features, labels and split, the heuristic baseline, starting Ray; validating the
#: best, the gate, the refit, the test split and registration
PREPARE_STAGES = 5
REGISTER_STAGES = 4


@contextlib.contextmanager
def _ray_session(
    num_cpus: int | None, object_store_memory: int | None, log_to_driver: bool
) -> Iterator[bool]:
    """Use the running Ray, or start a local one (no dashboard) and stop it afterwards."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield False
        return
    kwargs: dict[str, Any] = {
        "address": "local",  # a new local Ray, never one that happens to run on the host
        "num_cpus": num_cpus or os.cpu_count() or 1,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "log_to_driver": log_to_driver,
    }
    if object_store_memory is not None:
        kwargs["object_store_memory"] = object_store_memory
    ray.init(**kwargs)
    try:
        yield True
    finally:
        ray.shutdown()


#: The Ray session of :func:`tune_and_register`, for callers that run several (the CLI's
#: ``retrain``): the running Ray, or a local one for the block.
ray_session = _ray_session


@contextlib.contextmanager
def _quiet_tune(verbose: int) -> Iterator[None]:
    """No warnings about checkpoint snapshots (one per step is by design) and, with
    ``verbose = 0``, Tune's legacy output engine, which is silent at 0 (the new one
    still prints its experiment table)."""
    env = {"TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
    if verbose == 0:
        env["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tune_and_register(
    store: HistoryStore | str | os.PathLike[str],
    registry: Any,
    *,
    app: str | None = None,
    tier: str = "memory",
    trials: int = 8,
    storage_path: str | os.PathLike[str] | None = None,
    kinds: Sequence[str] = DEFAULT_TUNE_KINDS,
    seed: int = 0,
    horizon_s: float = 30.0,
    window_steps: int = 60,
    recent_steps: int = 10,
    stride: int = 1,
    min_present: int = 2,
    since_s: float | None = None,
    until_s: float | None = None,
    split: str = "auto",
    group_key: str = "app",
    split_seed: int = 0,
    max_train_rows: int | None = DEFAULT_TUNE_MAX_TRAIN_ROWS,
    max_eval_rows: int | None = None,
    max_fpr: float = DEFAULT_MAX_FPR,
    min_lead_s: float = 0.0,
    num_cpus: int | None = None,
    max_concurrent_trials: int | None = None,
    n_steps: int = 3,
    time_budget_s: float | None = None,
    reuse_actors: bool = True,
    object_store_memory: int | None = None,
    on_progress: OnProgress | None = None,
    verbose: int = 0,
    name: str | None = None,
    promote_if_better: bool = True,
    data: TrainingData | None = None,
    promotion: Promotion | None = None,
    refit: bool = True,
    trial_nice: int = 0,
) -> dict[str, Any]:
    """Search model kinds and hyperparameters with Ray Tune; register the best.

    1. :func:`build_training_data` once in the driver (by default at most
       ``max_train_rows = 20 000`` training rows, a uniform sample, which keeps 8
       trials within minutes on 2 cores); the data goes to the object store once
       (``tune.with_parameters``).
    2. The heuristic baseline (when ``"heuristic"`` is in ``kinds``) is scored in the
       driver, not as a trial (:mod:`tuning.space` says why).
    3. ``Tuner`` over :func:`tuning.space.search_space` (the learned kinds of
       ``kinds``; ``"lstm"`` only if asked for, and with torch) with ``trials``
       samples, one CPU per trial, at most ``max_concurrent_trials`` (default: the
       CPUs Ray has) at once, :class:`~ray.tune.schedulers.ASHAScheduler` on
       ``val_pr_auc`` (max) over the ``n_steps`` growing fits of each trial
       (:mod:`tuning.trainable`), so poor trials stop early. A trial that fails is
       recorded (``errored``, with its error) and the search goes on.
    4. The best contender by validation (PR-AUC, then recall@FPR) — each trial's last
       report, stopped trials included, and the baseline — is taken as is (a trial's
       model from its checkpoint: no refit, it is the very model that was scored),
       scored on the test split and registered; promoted only if it beats the
       current model (:func:`compare`).

    Ray: uses the running Ray, else starts one with ``num_cpus`` (default: every
    core), no dashboard, and stops it at the end. ``storage_path`` (default
    ``./.prescale/tune``) keeps Tune's results under ``name``. ``on_progress(done,
    total, label)`` (:mod:`tuning.progress`) hears three phases, each with its own
    total: preparing (reading, features, labels and split, the heuristic baseline,
    starting Ray: :data:`PREPARE_STAGES`), the trials (finished of ``trials``, the best
    validation AP so far and how many run) and registering (validating the best, the
    gate, the refit, the test split: :data:`REGISTER_STAGES`). ``verbose`` is Tune's own
    output (0 = silent: the CLI shows its bar instead; 1–3 print Tune's tables, which
    a bar would only interleave with); ``trial_nice`` (> 0) runs the trials at that
    CPU priority (``nice``), below the control loop's. Data whose training or
    validation split has no positive returns the "nothing learned" answer of
    :func:`nothing_to_learn` before Ray starts (nothing to rank the trials by).
    ``data`` reuses a :class:`TrainingData` (its parameters win
    over the data arguments).

    Measured on the 2-core dev machine while other sessions kept its load average at
    7–9 (so an idle machine does better), ``trials = 8``, Ray started by the call:

    - Google 2011 (6,153 windows, one per task; ``tier="any"``, ``horizon_s=86400``,
      ``window_steps=2``, ``split="group"`` by job, ``split_seed=17``): 50 s (data
      2.6 s, Tune with Ray start-up 45 s; best: boosting, test PR-AUC 0.106 against a
      base rate of 0.014); 42 s with ``kinds=("random_forest", "heuristic")``.
    - Bitbrains-derived (50 VMs, 413k samples; OOM kills derived from a limit of 1.3 ×
      the early median usage; ``horizon_s=1800``, ``window_steps=12``, ``stride=2``,
      20,000 training rows): 82 s (data 3.2 s, Tune 76 s; test PR-AUC 0.727 against
      a base rate of 0.251); 107 s without actor reuse.

    Returns what :func:`train_and_register` returns plus ``"tune": {"trials",
    "completed", "errored", "best_trial", "best_config", "experiment_path",
    "max_concurrent_trials", "leaderboard", "data_s", "tune_s"}``; the leaderboard
    lists every contender, best first.
    """
    from prescale.tuning.space import has_baseline, search_space, tuned_kinds

    t0 = time.perf_counter()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an int ≥ 1, got {trials!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be an int ≥ 1, got {n_steps!r}")
    if verbose not in (0, 1, 2, 3):
        raise ValueError(f"verbose must be 0, 1, 2 or 3, got {verbose!r}")
    check_fpr(max_fpr, min_lead_s)
    registry_app(app)
    space = search_space(kinds, seed=seed, max_fpr=max_fpr, min_lead_s=min_lead_s,
                         n_steps=n_steps)
    space["nice"] = int(trial_nice)
    reg = open_registry(registry)
    prepare = Stages(on_progress, PREPARE_STAGES, "preparing: ")
    if data is None:
        data = build_training_data(
            store, app=app, tier=tier, horizon_s=horizon_s, window_steps=window_steps,
            recent_steps=recent_steps, stride=stride, min_present=min_present,
            since_s=since_s, until_s=until_s, split=split, group_key=group_key,
            split_seed=split_seed, max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
            include_windows="lstm" in tuned_kinds(kinds), on_stage=prepare,
        )
    else:
        prepare.done = 3
    promotion = promotion or Promotion()
    nothing = nothing_to_learn(data)
    if nothing is not None:  # before Ray starts: no trial could be ranked
        prepare.finish("nothing learned")
        return jsonable({**nothing, "elapsed_s": round(time.perf_counter() - t0, 3)})
    t_data = time.perf_counter() - t0

    contenders: list[tuple[tuple[float, float], dict[str, Any], Any]] = []
    if has_baseline(kinds):
        prepare(f"scoring the heuristic baseline on {data.val_idx.size:,} windows")
        t_b = time.perf_counter()
        baseline, b_val = train_model(data, "heuristic", None, seed, max_fpr=max_fpr,
                                      min_lead_s=min_lead_s,
                                      threshold_target=promotion.threshold_target)
        row = {"trial_id": "baseline", "kind": "heuristic", "params": {}, "steps": 1,
               "val_pr_auc": json_number(b_val["pr_auc"]),
               "val_recall_at_fpr": json_number(b_val["recall_at_fpr"]),
               "time_s": round(time.perf_counter() - t_b, 2)}
        contenders.append((score(b_val), row, baseline))

    storage = os.path.abspath(os.fspath(storage_path or os.path.join(".prescale", "tune")))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = name or f"tune-{registry_app(data.params['app'])}-{data.params['tier']}-{stamp}"
    run_name = run_name.replace("/", "_")
    errors: list[dict[str, Any]] = []
    prepare.done = PREPARE_STAGES - 1
    prepare("starting Ray and Tune")
    with _ray_session(num_cpus, object_store_memory, verbose > 0), _quiet_tune(verbose):
        concurrent, grid = _run_tuner(
            data, space, trials=trials, n_steps=n_steps, seed=seed,
            max_concurrent_trials=max_concurrent_trials, time_budget_s=time_budget_s,
            reuse_actors=reuse_actors, storage=storage, run_name=run_name,
            on_progress=on_progress, verbose=verbose,
        )
        t_tune = time.perf_counter() - t0 - t_data
        for res in grid:
            row = _trial_row(res)
            if "error" in row:
                errors.append(row)
            else:
                contenders.append((score(row, "val_"), row, res))
        experiment_path = grid.experiment_path
        if not contenders:
            raise RuntimeError(
                f"no Tune trial produced a model: {[e['error'] for e in errors[:3]]}"
            )
        contenders.sort(key=lambda c: c[0], reverse=True)
        _, best_row, best = contenders[0]
        register = Stages(on_progress, REGISTER_STAGES, "registering: ")
        register(f"validating the best: {best_row['kind']} ({best_row['trial_id']})")
        model = best if isinstance(best, FailureModel) else _checkpoint_model(best)

    val = validate(model, data, max_fpr=max_fpr, min_lead_s=min_lead_s,
                   threshold_target=promotion.threshold_target)
    # the trial's parameters, with the default (cross-fitted) calibration of a full fit
    best_kind = best_row["kind"]
    best_params = {k: v for k, v in model.params.items() if k != "calibration_folds"}
    out = register_model(
        reg, model, data, val=val,
        training={
            "method": "tune", "seed": seed, "trials": trials,
            "best_trial": best_row["trial_id"], "experiment_path": experiment_path,
        },
        promote_if_better=promote_if_better, promotion=promotion,
        refit=(best_kind, best_params, seed) if refit and model.trainable else None,
        max_fpr=max_fpr, min_lead_s=min_lead_s, on_stage=register,
    )
    register.finish(f"{out.get('version_id') or 'nothing registered'} {out['status']}")
    out["tune"] = {
        "trials": trials,
        "completed": sum(1 for c in contenders if c[1]["trial_id"] != "baseline"),
        "errored": len(errors),
        "best_trial": best_row["trial_id"],
        "best_config": {"kind": best_row["kind"], "params": best_row["params"]},
        "experiment_path": experiment_path,
        "max_concurrent_trials": concurrent,
        "leaderboard": [c[1] for c in contenders] + errors,
        "data_s": round(t_data, 3),
        "tune_s": round(t_tune, 3),
    }
    out["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return jsonable(out)


def _run_tuner(
    data: TrainingData,
    space: dict[str, Any],
    *,
    trials: int,
    n_steps: int,
    seed: int,
    max_concurrent_trials: int | None,
    time_budget_s: float | None,
    reuse_actors: bool,
    storage: str,
    run_name: str,
    on_progress: OnProgress | None,
    verbose: int,
) -> tuple[int, Any]:
    """Run the Tuner (Ray is up); ``(max concurrent trials, ResultGrid)``."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from prescale.tuning.trainable import METRIC, ProgressCallback, trainable

    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    concurrent = max_concurrent_trials or max(1, min(trials, cpus))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=trials,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=n_steps, grace_period=1,
                reduction_factor=2,
            ),
            # the concurrency limit goes here: TuneConfig.max_concurrent_trials is
            # ignored when a search algorithm instance is given
            search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=concurrent),
            time_budget_s=time_budget_s,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=storage,
            verbose=verbose,
            callbacks=[ProgressCallback(trials, on_progress)] if on_progress else [],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    return concurrent, tuner.fit()


def _trial_row(res: Any) -> dict[str, Any]:
    """One leaderboard row of a Tune result (``error`` set when it has no model)."""
    from prescale.tuning.trainable import METRIC, config_kind_params

    m = res.metrics or {}
    kind, params = config_kind_params(res.config) if res.config else (None, {})
    row: dict[str, Any] = {"trial_id": m.get("trial_id") or getattr(res, "path", None),
                           "kind": kind, "params": params}
    if res.error is not None or not m or res.checkpoint is None:
        row["error"] = str(res.error)[-300:] if res.error is not None else "no result"
        return row
    row.update(
        steps=m.get("training_iteration"),
        val_pr_auc=json_number(m.get(METRIC)),
        val_recall_at_fpr=json_number(m.get("val_recall_at_fpr")),
        time_s=json_number(round(float(m.get("time_total_s", float("nan"))), 2)),
    )
    return row


def _checkpoint_model(res: Any) -> FailureModel:
    """The model in a Tune result's (last) checkpoint."""
    from prescale.tuning.trainable import MODEL_FILE

    with tempfile.TemporaryDirectory() as tmp:
        res.checkpoint.to_directory(tmp)
        return load_model(Path(tmp, MODEL_FILE).read_bytes())
