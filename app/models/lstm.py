"""A small LSTM over the raw window (optional: needs PyTorch, ``prescale[lstm]``).

Unlike the other kinds, its input is the window itself, ``X = float64[n, W,
len(METRICS)]`` (:mod:`app.learning.dataset`), not the feature matrix. PyTorch is
imported only when a model is constructed, fitted or unpickled; without it,
constructing one raises ``ImportError`` with the install hint.

Channels (:func:`window_channels`, numpy, per step; ``C = len(CHANNELS)``)
    ``present``: 1 for a real row, 0 for the padding of a young container;
    ``age_s``: ``ts_s − ts_s`` of the window's last real row (≤ 0);
    levels: ``memory_usage_bytes``, ``memory_working_set_bytes``,
    ``memory_limit_bytes``, ``cpu_quota_cores``, ``block_latency_s`` (``inf`` →
    missing); ``memory_usage_fraction = usage / limit`` (finite limit > 0) and its
    per-step rate of change ``memory_usage_fraction_rate = Δfraction / Δt`` (1/s);
    per-step rates ``max(Δcounter, 0) / Δt`` of every ``*_total`` counter
    (``Δt > 0``; the first row has none); ``cpu_throttled_step_fraction =
    Δthrottled_periods / Δperiods`` clipped to [0, 1].

    Then every channel but ``present`` and the two fractions gets
    ``sign(v)·log1p(|v|)`` (bytes and rates span many orders of magnitude), is
    standardised with the training mean and std (a std of 0 counts as 1), clipped
    to ±10, and a missing value becomes 0 (= the training mean).

    Worked example (one container, W = 2): rows at ts 100 and 110 with
    ``cpu_usage_s_total`` 3 and 8 → step rate (8 − 3)/10 = 0.5 cores at the second
    row, missing at the first; ``age_s`` = −10, 0.

Network: ``LSTM(C → hidden_size, num_layers)`` → the last step's output →
``Linear(hidden_size → 1)`` → logit. Padding rows come first, so the last step is
always the last real row. Trained with Adam on ``BCEWithLogitsLoss`` with
``pos_weight = n_negative / n_positive`` (``"balanced"``) for ``epochs`` passes
over shuffled mini-batches; initialisation and shuffling come from ``seed`` only
(the global torch RNG is left as it was). Then calibrated like every learned kind
(:mod:`app.models.base`).

Threads: torch runs with ``n_threads`` intra-op threads (default 1; ``None`` =
torch's default) while fitting and predicting, and the previous setting is put
back afterwards. Measured on this 2-core machine under load: one training step
(batch 256, W 8, hidden 32) took 6 ms with 1 thread and 210 ms with 2 (OpenMP
threads spinning against each other and other processes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from prescale.app.core.sample import METRICS, M
from prescale.app.models.base import CalibratedModel

INSTALL_HINT = (
    "the 'lstm' model kind needs PyTorch (CPU): pip install 'prescale[lstm]' "
    "(or pip install torch==2.13.0)"
)

_LEVELS = (
    "memory_usage_bytes",
    "memory_working_set_bytes",
    "memory_limit_bytes",
    "cpu_quota_cores",
    "block_latency_s",
)
_COUNTERS = tuple(name for name in METRICS if name.endswith("_total"))
#: Channel names of :func:`window_channels`, in order.
CHANNELS: tuple[str, ...] = (
    "present",
    "age_s",
    *_LEVELS,
    "memory_usage_fraction",
    "memory_usage_fraction_rate",
    *(f"{name[: -len('_total')]}_rate" for name in _COUNTERS),
    "cpu_throttled_step_fraction",
)
_UNSCALED = frozenset({"present", "memory_usage_fraction", "cpu_throttled_step_fraction"})
_SCALED = np.array([name not in _UNSCALED for name in CHANNELS])


def torch_available() -> bool:
    """Whether PyTorch can be imported (without importing it)."""
    if "torch" in sys.modules:  # imported already, or blocked (None)
        return sys.modules["torch"] is not None
    return importlib.util.find_spec("torch") is not None


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return torch


def window_channels(windows: np.ndarray) -> np.ndarray:
    """``float64[n, W, len(CHANNELS)]`` from windows ``[n, W, len(METRICS)]``, unscaled.

    ``nan`` marks a missing value (see the module doc for each channel).
    """
    x = np.asarray(windows, dtype=np.float64)
    n, w, _ = x.shape
    out = np.full((n, w, len(CHANNELS)), np.nan)
    ts = x[:, :, M["ts_s"]]
    present = np.isfinite(ts)
    with np.errstate(all="ignore"):
        idx = np.where(present, np.arange(w), -1).max(axis=1) if w else np.zeros(n, int)
        t_last = np.take_along_axis(ts, np.maximum(idx, 0)[:, None], axis=1)
        out[:, :, 0] = present
        out[:, :, 1] = ts - t_last
        c = 2
        for name in _LEVELS:
            v = x[:, :, M[name]]
            out[:, :, c] = np.where(np.isinf(v), np.nan, v)
            c += 1
        usage, limit = x[:, :, M["memory_usage_bytes"]], x[:, :, M["memory_limit_bytes"]]
        ok = np.isfinite(limit) & (limit > 0)
        fraction = np.where(ok, usage / np.where(ok, limit, 1.0), np.nan)
        out[:, :, c] = fraction
        dt = np.full((n, w), np.nan)
        dt[:, 1:] = ts[:, 1:] - ts[:, :-1]
        dt = np.where(dt > 0, dt, np.nan)
        out[:, 1:, c + 1] = (fraction[:, 1:] - fraction[:, :-1]) / dt[:, 1:]
        c += 2

        def delta(name: str) -> np.ndarray:
            v = x[:, :, M[name]]
            d = np.full((n, w), np.nan)
            d[:, 1:] = v[:, 1:] - v[:, :-1]
            return d

        for name in _COUNTERS:
            d = delta(name)
            out[:, :, c] = np.maximum(d, 0.0) / dt  # nan stays nan
            c += 1
        dper, dthr = delta("cpu_periods_total"), delta("cpu_throttled_periods_total")
        frac = np.where(dper > 0, np.clip(dthr / np.where(dper > 0, dper, 1.0), 0.0, 1.0), np.nan)
        out[:, :, c] = np.where(np.isnan(dthr), np.nan, frac)
    out[~present] = np.nan
    out[:, :, 0] = present
    return out


def _signed_log(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log1p(np.abs(v))


class _LSTMClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn-style wrapper of the torch network (so it can be calibrated)."""

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 1,
        epochs: int = 30,
        batch_size: int = 256,
        learning_rate: float = 0.01,
        weight_decay: float = 0.0,
        pos_weight: Any = "balanced",
        seed: int = 0,
    ) -> None:
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.pos_weight = pos_weight
        self.seed = seed

    def _inputs(self, windows: np.ndarray) -> np.ndarray:
        ch = window_channels(windows)
        ch[:, :, _SCALED] = _signed_log(ch[:, :, _SCALED])
        with np.errstate(all="ignore"):
            z = (ch - self.mean_) / self.std_
        z[:, :, 0] = ch[:, :, 0]  # present: as is
        return np.clip(np.nan_to_num(z, nan=0.0), -10.0, 10.0).astype(np.float32)

    def _build(self) -> Any:
        torch = _torch()

        class Net(torch.nn.Module):
            def __init__(self, n_in: int, hidden: int, layers: int) -> None:
                super().__init__()
                self.lstm = torch.nn.LSTM(n_in, hidden, layers, batch_first=True)
                self.head = torch.nn.Linear(hidden, 1)

            def forward(self, x: Any) -> Any:
                out, _ = self.lstm(x)
                return self.head(out[:, -1]).squeeze(-1)

        return Net(len(CHANNELS), int(self.hidden_size), int(self.num_layers))

    def fit(self, X: np.ndarray, y: np.ndarray) -> _LSTMClassifier:
        torch = _torch()
        y = np.asarray(y, dtype=np.int64)
        self.classes_ = np.array([0, 1])
        ch = window_channels(X)
        ch[:, :, _SCALED] = _signed_log(ch[:, :, _SCALED])
        flat = ch.reshape(-1, ch.shape[2])
        with np.errstate(all="ignore"):
            counts = np.isfinite(flat).sum(axis=0)
            mean = np.where(counts > 0, np.nansum(flat, axis=0) / np.maximum(counts, 1), 0.0)
            var = np.nansum((flat - mean) ** 2, axis=0) / np.maximum(counts, 1)
        std = np.sqrt(np.where(counts > 0, var, 1.0))
        self.mean_ = np.where(_SCALED, mean, 0.0)
        self.std_ = np.where(_SCALED & (std > 0), std, 1.0)
        inputs = torch.from_numpy(self._inputs(X))
        target = torch.from_numpy(y.astype(np.float32))
        n_pos = int(y.sum())
        if self.pos_weight == "balanced":
            pw = (y.size - n_pos) / n_pos if n_pos else 1.0
        elif self.pos_weight is None:
            pw = 1.0
        else:
            pw = float(self.pos_weight)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            net = self._build()
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pw)))
        opt = torch.optim.Adam(
            net.parameters(), lr=float(self.learning_rate), weight_decay=float(self.weight_decay)
        )
        rng = np.random.default_rng(int(self.seed))
        net.train()
        for _ in range(int(self.epochs)):
            perm = torch.from_numpy(rng.permutation(y.size))
            for start in range(0, y.size, int(self.batch_size)):
                batch = perm[start : start + int(self.batch_size)]
                opt.zero_grad()
                loss = loss_fn(net(inputs[batch]), target[batch])
                loss.backward()
                opt.step()
        net.eval()
        self.net_ = net
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        inputs = torch.from_numpy(self._inputs(X))
        chunks = []
        with torch.no_grad():
            for start in range(0, inputs.shape[0], 4096):
                chunks.append(torch.sigmoid(self.net_(inputs[start : start + 4096])).numpy())
        p = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: never strip the live object
        net = state.pop("net_", None)
        if net is not None:
            state["net_state_"] = {
                k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        weights = state.pop("net_state_", None)
        super().__setstate__(state)
        if weights is not None:
            torch = _torch()
            net = self._build()
            net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            net.eval()
            self.net_ = net


class LSTMModel(CalibratedModel):
    kind = "lstm"
    input = "window"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **CalibratedModel.DEFAULTS,
        "hidden_size": 32,
        "num_layers": 1,
        "epochs": 30,
        "batch_size": 256,
        "learning_rate": 0.01,
        "weight_decay": 0.0,
        "pos_weight": "balanced",
        "n_threads": 1,
    }

    def __init__(self, **params: Any) -> None:
        _torch()  # fail early, with the install hint
        super().__init__(**params)

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("hidden_size", "num_layers", "epochs", "batch_size"):
            v = self.params[name]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {v!r}")
        for name, low_ok in (("learning_rate", False), ("weight_decay", True)):
            v = self.params[name]
            if not (isinstance(v, (int, float)) and (v >= 0 if low_ok else v > 0)):
                raise ValueError(f"{name} must be a number {'≥' if low_ok else '>'} 0, got {v!r}")
        nt = self.params["n_threads"]
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, int) or nt < 1):
            raise ValueError(f"n_threads must be an int ≥ 1 or None, got {nt!r}")
        pw = self.params["pos_weight"]
        if not (pw in ("balanced", None) or (isinstance(pw, (int, float)) and pw > 0)):
            raise ValueError(f"pos_weight must be 'balanced', None or a number > 0, got {pw!r}")

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        torch = _torch()
        wanted = self.params["n_threads"]
        before = torch.get_num_threads()
        if wanted is None or wanted == before:
            yield
            return
        torch.set_num_threads(int(wanted))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _estimator(self, seed: int) -> _LSTMClassifier:
        p = self.params
        return _LSTMClassifier(
            hidden_size=p["hidden_size"],
            num_layers=p["num_layers"],
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            learning_rate=p["learning_rate"],
            weight_decay=p["weight_decay"],
            pos_weight=p["pos_weight"],
            seed=seed,
        )
