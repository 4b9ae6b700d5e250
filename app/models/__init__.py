"""Learnable failure models behind one contract (:class:`~app.models.base.FailureModel`).

``make_model(kind, **params)`` builds one of :data:`MODEL_KINDS`:

``random_forest``           calibrated random forest over the features
``hist_gradient_boosting``  calibrated histogram gradient boosting over the features
``heuristic``               the training-free trend heuristic (one tier of it)
``lstm``                    a small PyTorch LSTM over the raw window (``prescale[lstm]``)

``load_model(data)`` reads what ``model.to_bytes()`` wrote. Pure: no file I/O
here; the model registry stores the bytes.
"""

from __future__ import annotations

from typing import Any

from prescale.app.models.base import MODEL_FORMAT, FailureModel
from prescale.app.models.heuristic import HeuristicModel
from prescale.app.models.lstm import LSTMModel, torch_available
from prescale.app.models.sklearn_models import HistGradientBoostingModel, RandomForestModel

_CLASSES: dict[str, type[FailureModel]] = {
    cls.kind: cls
    for cls in (RandomForestModel, HistGradientBoostingModel, HeuristicModel, LSTMModel)
}
#: Every model kind, in a fixed order.
MODEL_KINDS: tuple[str, ...] = tuple(_CLASSES)


def model_class(kind: str) -> type[FailureModel]:
    """The class of ``kind``; ``ValueError`` naming the known kinds otherwise."""
    try:
        return _CLASSES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model kind {kind!r}; known: {list(MODEL_KINDS)}") from None


def make_model(kind: str, **params: Any) -> FailureModel:
    """A new, unfitted model of ``kind`` with ``params`` over its defaults.

    ``make_model("random_forest", n_estimators=50)``; an unknown kind or parameter
    is a ``ValueError`` that names it; ``lstm`` without torch is an ``ImportError``
    with the install hint.
    """
    return model_class(kind)(**params)


def load_model(data: bytes) -> FailureModel:
    """The model serialised in ``data`` (``ValueError`` if corrupt or not a model)."""
    return FailureModel.from_bytes(data)


__all__ = [
    "MODEL_FORMAT",
    "MODEL_KINDS",
    "FailureModel",
    "HeuristicModel",
    "HistGradientBoostingModel",
    "LSTMModel",
    "RandomForestModel",
    "load_model",
    "make_model",
    "model_class",
    "torch_available",
]
