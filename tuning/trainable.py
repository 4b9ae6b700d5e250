"""The Ray Tune function trainable: fit one config on the shared data, report, checkpoint.

``tune.with_parameters(trainable, data=training_data)`` puts the
:class:`~tuning.training_data.TrainingData` in the object store once; every trial reads it
from there. A trial trains ``config["kind"]`` with ``config[kind]`` (see
:mod:`tuning.space`) on the training split and, after each of its steps, reports
the validation scores (``val_pr_auc`` is the metric ASHA and the search rank by,
``val_recall_at_fpr`` the tie-break) with a checkpoint holding the model bytes
(``model.bin``, :meth:`FailureModel.to_bytes`; the driver keeps the last one per
trial).

Steps (what lets ASHA stop a poor trial early)
    Forests and boosting grow: ``n_estimators`` (random forest) / ``max_iter``
    (boosting) go through :func:`growth_steps` of the sampled total, e.g. 50, 100,
    200 trees, and each step *adds* trees to the previous ones (scikit-learn's
    ``warm_start``) instead of starting again, then recalibrates (cheap) and
    reports. The model after the last step predicts exactly what a single fit with
    the full ``n_estimators`` / ``max_iter`` gives (scikit-learn draws the trees'
    seeds in the same order; checked for both kinds in
    ``tests/integration/test_train_tune.py``), so a whole trial costs one fit plus
    the calibrations and evaluations. The heuristic and the LSTM report once.

:func:`fit_in_steps` is that loop without Ray (it is tested on its own);
:func:`trainable` wraps it with ``tune.report``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from ray import tune

from prescale.app.models import FailureModel, make_model
from prescale.tuning.train import evaluate, model_params
from prescale.tuning.training_data import TrainingData

#: The metric Tune maximises (and ASHA stops by).
METRIC = "val_pr_auc"
#: The model's file in a trial checkpoint.
MODEL_FILE = "model.bin"
#: Which parameter grows over the steps, per kind (others train in one step).
GROW_PARAM: dict[str, str] = {
    "random_forest": "n_estimators",
    "hist_gradient_boosting": "max_iter",
}
_REPORTED = ("pr_auc", "recall_at_fpr", "precision", "recall", "brier", "base_rate",
             "lead_time_median_s")


def growth_steps(total: int, n_steps: int) -> list[int]:
    """Sizes of the successive fits: halving back from ``total``, ``n_steps`` of them.

    ``step_k = max(1, round(total / 2^(n_steps − 1 − k)))``, repeats dropped.
    Examples: (200, 3) → [50, 100, 200]; (300, 3) → [75, 150, 300]; (3, 3) →
    [1, 2, 3] (round(0.75) = 1, round(1.5) = 2); (1, 3) → [1]; (100, 1) → [100].
    """
    for name, v in (("total", total), ("n_steps", n_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int ≥ 1, got {v!r}")
    steps: list[int] = []
    for k in range(n_steps):
        s = max(1, round(total / 2 ** (n_steps - 1 - k)))
        if not steps or s > steps[-1]:
            steps.append(s)
    return steps


def config_kind_params(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(kind, its hyperparameters)`` of a trial config (see :mod:`tuning.space`)."""
    kind = config["kind"]
    return kind, dict(config.get(kind) or {})


@contextlib.contextmanager
def _shared_estimator(model: FailureModel, estimator: Any) -> Iterator[None]:
    """Make ``model.fit`` use (and keep growing) ``estimator`` instead of a fresh one.

    :class:`~app.models.base.CalibratedModel` gets its estimator from
    ``self._estimator(seed)``; an instance attribute shadows that method for the
    duration of one fit and is removed afterwards, so the model pickles as the plain
    class it is.
    """
    model._estimator = lambda _seed: estimator  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.__dict__["_estimator"]


def fit_in_steps(
    data: TrainingData,
    kind: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    *,
    n_steps: int = 3,
) -> Iterator[tuple[int, FailureModel]]:
    """Fit ``kind`` on the training split in growing steps; yield ``(step, model)``.

    For :data:`GROW_PARAM` kinds, ``step`` is the tree/iteration count reached
    (:func:`growth_steps` of the configured total) and the same model object is
    grown and recalibrated in place; other kinds yield ``(1, model)`` once. The
    model yielded is always complete and picklable.
    """
    params = dict(params or {})
    if kind in GROW_PARAM:
        # a trial ranks a configuration: head/tail calibration (one fit per step, grown
        # in place); the model registered from it is refitted cross-fitted
        params.setdefault("calibration_folds", 0)
    model = make_model(kind, **model_params(data, kind, params))
    idx = data.train_idx
    x, y, ts = data.inputs(model, idx), data.y[idx], data.ts_s[idx]
    groups = data.groups(idx)
    grow = GROW_PARAM.get(kind)
    estimator = type(model)._estimator(model, seed) if grow is not None else None
    if estimator is None or not hasattr(estimator, "steps"):  # not a Pipeline: one fit
        model.fit(x, y, seed=seed, ts_s=ts, groups=groups)
        yield 1, model
        return
    total = int(model.params[grow])
    last = estimator.steps[-1][0]  # the Pipeline's classifier step
    estimator.set_params(**{f"{last}__warm_start": True})
    for step in growth_steps(total, n_steps):
        estimator.set_params(**{f"{last}__{grow}": step})
        model.params[grow] = step
        with _shared_estimator(model, estimator), warnings.catch_warnings():
            # the forest warns that balanced class weights and warm_start "are not
            # recommended" for data that changes between fits; ours does not change
            warnings.filterwarnings("ignore", message=".*warm_start.*", category=UserWarning)
            model.fit(x, y, seed=seed, ts_s=ts, groups=groups)
        yield step, model


def lower_priority(nice: int) -> None:
    """Run this process at CPU priority ``nice`` (at least; it is never raised back)."""
    if nice > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
        except OSError:
            pass


def trainable(config: dict[str, Any], data: TrainingData) -> None:
    """Ray Tune function trainable (see the module doc); one report per step."""
    lower_priority(int(config.get("nice", 0)))
    kind, params = config_kind_params(config)
    seed = int(config.get("seed", 0))
    max_fpr = float(config.get("max_fpr", 0.05))
    min_lead_s = float(config.get("min_lead_s", 0.0))
    n_steps = int(config.get("n_steps", 3))
    for step, model in fit_in_steps(data, kind, params, seed, n_steps=n_steps):
        val = evaluate(model, data, data.val_idx, max_fpr=max_fpr, min_lead_s=min_lead_s)
        metrics = {f"val_{k}": float(val[k]) for k in _REPORTED}
        metrics.update(kind=kind, step=int(step), calibration=str(
            model.fit_info.get("calibration", "")))
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, MODEL_FILE), "wb") as f:
                f.write(model.to_bytes())
            with open(os.path.join(tmp, "params.json"), "w") as f:
                json.dump({"kind": kind, "params": model.params}, f, default=str)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


class ProgressCallback(tune.Callback):
    """Tune's side of the progress hook (:mod:`tuning.progress`), in the driver:
    ``on_progress(finished, total, label)`` as trials start, report and finish (completed,
    stopped early by ASHA, or failed); the label says how many run and the best
    validation PR-AUC so far, e.g. ``"trials: 2 running; best val PR-AUC 0.794
    (random_forest)"``. Tune pickles its run config (callbacks included) into the
    experiment state: the callback pickles without ``on_progress`` (the CLI's holds a
    live display, locks and a thread), and a restored one reports nothing."""

    def __init__(self, total: int,
                 on_progress: Callable[[float, float, str], None] | None) -> None:
        self.total, self.on_progress = total, on_progress
        self.best, self.best_kind = float("-inf"), ""
        self.finished = 0
        self.running: set[str] = set()

    def label(self) -> str:
        best = ("no score yet" if self.best == float("-inf")
                else f"best val PR-AUC {self.best:.3f} ({self.best_kind})")
        return f"trials: {len(self.running)} running; {best}"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "on_progress": None}

    def _say(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.finished, self.total, self.label())

    def setup(self, **info: Any) -> None:
        self._say()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(str(trial.trial_id))
        self._say()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        v = result.get(METRIC)
        if isinstance(v, float) and v == v and v > self.best:
            self.best, self.best_kind = v, str(result.get("kind", ""))
        self._say()

    def _finish(self, trial: Any) -> None:
        self.running.discard(str(trial.trial_id))
        self.finished = min(self.finished + 1, self.total)
        self._say()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)
