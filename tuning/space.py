"""The Ray Tune search space over model kinds and their hyperparameters.

:func:`search_space` returns a ``param_space`` for ``tune.Tuner``: one nested dict
per model kind with its sampled hyperparameters, and ``kind`` choosing which of
them a trial trains (the trainable reads ``config[config["kind"]]``; the other
kinds' samples are ignored)::

    {"kind": tune.choice([...learned kinds...]),
     "random_forest": {...}, "hist_gradient_boosting": {...},
     "lstm": {...},                         # only when asked for
     "seed": 0, "max_fpr": 0.05, "min_lead_s": 0.0, "n_steps": 3}

Kinds (``app.models``) and what is searched, with the reasoning:

``random_forest``
    ``n_estimators`` ∈ {100, 200, 300} — grown in ``n_steps`` warm-started steps
    (:func:`tuning.trainable.growth_steps`), so ASHA can stop a poor forest after
    its first quarter; ``max_depth`` ∈ {None, 8, 16, 32} and ``min_samples_leaf`` ∈
    {1, 5, 20, 50} (capacity against overfitting the few positives);
    ``max_features`` ∈ {"sqrt", 0.5, 1.0}; ``calibration`` ∈ {sigmoid, isotonic}.
``hist_gradient_boosting``
    ``max_iter`` ∈ {100, 200, 400} (grown in steps like the forest);
    ``learning_rate`` log-uniform in [0.02, 0.3]; ``max_leaf_nodes`` ∈ {15, 31, 63};
    ``min_samples_leaf`` ∈ {10, 20, 50, 100}; ``l2_regularization`` log-uniform in
    [1e-4, 10]; ``class_weight`` ∈ {None, "balanced"}; ``calibration`` as above.
``heuristic``
    The training-free trend heuristic: no hyperparameter (its tier and horizon come
    from the data). It is not a Tune trial: :func:`tuning.search.tune_and_register`
    scores it once in the driver as the fixed baseline (well under a second) and it
    competes with the best trial for registration. Run as a trial it would cost an
    actor start-up, repeat itself whenever the sampler drew it again, and sit in
    ASHA's first rung as a complete model among quarter-grown ones.
``lstm``
    Only when ``"lstm"`` is in ``kinds`` and torch is installed (``prescale[lstm]``):
    ``hidden_size`` ∈ {16, 32, 64}, ``num_layers`` ∈ {1, 2}, ``epochs`` ∈ {10, 20,
    30}, ``learning_rate`` log-uniform in [1e-3, 3e-2], ``batch_size`` ∈ {128, 256}.
    Trained in one step (no early stop).

Every learned kind keeps its thread defaults (1 thread per trial, one trial per
CPU). ``seed``, ``max_fpr``, ``min_lead_s`` and ``n_steps`` are constants every
trial reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prescale.app.models import MODEL_KINDS, torch_available

#: Kinds that have hyperparameters to sample (the heuristic has none).
LEARNED_KINDS: tuple[str, ...] = ("random_forest", "hist_gradient_boosting", "lstm")
BASELINE_KIND = "heuristic"


def kind_spaces() -> dict[str, dict[str, Any]]:
    """The hyperparameter distributions of each kind (see the module doc)."""
    from ray import tune

    calibration = tune.choice(["sigmoid", "isotonic"])
    return {
        "random_forest": {
            "n_estimators": tune.choice([100, 200, 300]),
            "max_depth": tune.choice([None, 8, 16, 32]),
            "min_samples_leaf": tune.choice([1, 5, 20, 50]),
            "max_features": tune.choice(["sqrt", 0.5, 1.0]),
            "calibration": calibration,
        },
        "hist_gradient_boosting": {
            "max_iter": tune.choice([100, 200, 400]),
            "learning_rate": tune.loguniform(0.02, 0.3),
            "max_leaf_nodes": tune.choice([15, 31, 63]),
            "min_samples_leaf": tune.choice([10, 20, 50, 100]),
            "l2_regularization": tune.loguniform(1e-4, 10.0),
            "class_weight": tune.choice([None, "balanced"]),
            "calibration": calibration,
        },
        "lstm": {
            "hidden_size": tune.choice([16, 32, 64]),
            "num_layers": tune.choice([1, 2]),
            "epochs": tune.choice([10, 20, 30]),
            "learning_rate": tune.loguniform(1e-3, 3e-2),
            "batch_size": tune.choice([128, 256]),
        },
    }


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, refused (``ValueError`` naming the problem) when empty,
    unknown, repeated, or ``lstm`` without torch."""
    if isinstance(kinds, str):
        kinds = [kinds]
    out = tuple(kinds)
    if not out:
        raise ValueError("kinds must name at least one model kind")
    unknown = [k for k in out if k not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model kinds {unknown}; known: {list(MODEL_KINDS)}")
    if len(set(out)) != len(out):
        raise ValueError(f"kinds has repeats: {list(out)}")
    if "lstm" in out and not torch_available():
        raise ValueError(
            "the 'lstm' kind needs PyTorch: pip install 'prescale[lstm]', or leave it out"
        )
    return out


def search_space(
    kinds: Sequence[str] = ("random_forest", "hist_gradient_boosting", "heuristic"),
    *,
    seed: int = 0,
    max_fpr: float = 0.05,
    min_lead_s: float = 0.0,
    n_steps: int = 3,
) -> dict[str, Any]:
    """The ``param_space`` for the learned kinds among ``kinds`` (see the module doc).

    Example: ``search_space(["random_forest", "heuristic"])["kind"]`` samples only
    ``"random_forest"`` and the space has no ``"heuristic"`` entry. ``ValueError``
    when ``kinds`` has no learned kind (there is nothing to search).
    """
    from ray import tune

    learned = tuned_kinds(kinds)
    if not learned:
        raise ValueError(
            f"kinds {list(kinds)} has no learned kind to search "
            f"(one of {list(LEARNED_KINDS)})"
        )
    spaces = kind_spaces()
    space: dict[str, Any] = {"kind": tune.choice(list(learned))}
    for k in learned:
        space[k] = spaces[k]
    space.update(seed=seed, max_fpr=max_fpr, min_lead_s=min_lead_s, n_steps=n_steps)
    return space


def tuned_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The kinds of ``kinds`` that Tune searches: ``["heuristic", "random_forest"]`` →
    ``("random_forest",)``."""
    return tuple(k for k in check_kinds(kinds) if k in LEARNED_KINDS)


def has_baseline(kinds: Sequence[str]) -> bool:
    """Whether the heuristic baseline is among ``kinds`` (scored in the driver)."""
    return BASELINE_KIND in check_kinds(kinds)
