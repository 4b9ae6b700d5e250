"""A predictor that needs no training data: extrapolate the trend, compare with the limit.

:class:`TrendExhaustionPredictor` is a *heuristic*, not a learned model: it turns
the features of :mod:`app.core.features` into a probability that each resource
tier runs out within ``horizon_s`` by extrapolating the current trend linearly and
treating the forecast as normally distributed. It is what serves before an app has
enough history to train a model, and the baseline a trained model must beat. Its
probabilities are not calibrated against outcomes.

Notation: H = ``horizon_s``, f = ``sigma_floor_fraction``, β = ``cpu_busy_fraction``,
Φ = standard normal CDF.

Memory (failure = OOM kill)
    u = ``memory_usage_last_bytes``, L = ``memory_limit_bytes``,
    s = max(``memory_slope_bytes_per_s``, ``memory_recent_slope_bytes_per_s``) (the
    larger, so an acceleration shows early; a ``nan`` recent slope falls back to the
    full one), r = ``memory_resid_std_bytes``, e = ``memory_slope_std_bytes_per_s``::

        forecast u_H = u + max(s, 0)·H
        σ_H          = max( sqrt(r² + (H·e)²), f·L )
        p_fail       = Φ((u_H − L) / σ_H)          (0 if L = inf)
        time_to_limit_s = the feature memory_time_to_limit_s

    Worked example: u = 400 MiB, s = 2 MiB/s, H = 30 s, L = 450 MiB, r = 3 MiB,
    e = 0.1333… MiB/s (so H·e = 4 MiB), f = 0.01 (f·L = 4.5 MiB) →
    σ_H = max(sqrt(3² + 4²), 4.5) = 5 MiB, u_H = 400 + 2·30 = 460 MiB,
    z = (460 − 450)/5 = 2, p_fail = Φ(2) ≈ 0.9772; time to limit = 50 MiB / 2 MiB/s
    = 25 s.

CPU (failure = starvation by CFS throttling)
    c = ``cpu_usage_cores_last``, c̄ = ``cpu_usage_cores_mean``,
    g = ``cpu_slope_cores_per_s``, ρ = ``cpu_rate_std_cores``, Q = ``cpu_quota_cores``,
    θ = ``cpu_throttled_fraction``::

        forecast c_H = max(c, c̄) + max(g, 0)·H
        σ            = max(ρ, f·Q)
        p_trend      = Φ((c_H − β·Q) / σ)
        p_fail       = max(p_trend, θ)            (0 if Q = inf)
        time_to_limit_s = 0                if θ ≥ 0.5 or c ≥ β·Q
                          (β·Q − c) / g    if g > 0
                          inf              otherwise (incl. Q = inf)
                          nan              if c or Q is unknown, or g is and Q is finite

    Being throttled now is starvation already happening, hence the max with θ.
    Worked example: c = 1.5, c̄ = 1.2 cores, g = 0.02 cores/s, H = 30 s, ρ = 0.15,
    Q = 2 cores, β = 0.9 (β·Q = 1.8), f = 0.01 (f·Q = 0.02), θ = 0.1 →
    c_H = 1.5 + 0.02·30 = 2.1 cores, σ = max(0.15, 0.02) = 0.15,
    z = (2.1 − 1.8)/0.15 = 2, p_trend = Φ(2) ≈ 0.9772, p_fail = max(0.9772, 0.1)
    = 0.9772; time to limit = (1.8 − 1.5)/0.02 = 15 s.

Disk (failure = ENOSPC: the container's volume is full)
    The memory formula with the volume's used bytes for u and its size for L
    (:meth:`TrendExhaustionPredictor.predict_trend` of
    :func:`app.core.features.usage_trend`); the disk is not among the learned models'
    features, so this heuristic predicts it for every app.

Network (failure = saturation: traffic queued at the receive bandwidth limit)
    The CPU formula with the receive rate for c and the TBF rate limit for Q, θ = 0
    (:meth:`TrendExhaustionPredictor.predict_rate` of :func:`app.core.features.rate_trend`).

Missing data never makes a ``nan`` probability: where a term p_fail needs is
``nan`` (or σ is ``nan``), that term is 0 — for CPU, p_trend is 0 and p_fail = θ
(θ is always finite), for memory p_fail is 0. The forecast may be ``nan``.
Containers with ``n_samples < min_samples`` get p_fail = 0 on every tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr

from prescale.app.core.features import FEATURES, F, RateTrend, UsageTrend
from prescale.app.core.sample import Tier


@dataclass(frozen=True)
class TierPrediction:
    """One tier's prediction for N containers (each field ``float64[N]``)."""

    p_fail: np.ndarray  # probability of failure within the horizon, in [0, 1]
    time_to_limit_s: np.ndarray  # inf if never; nan if unknown
    forecast: np.ndarray  # usage expected at now + horizon (bytes / cores)
    limit: np.ndarray  # current limit (bytes / cores; inf = unlimited)


@dataclass(frozen=True)
class Prediction:
    horizon_s: float
    model: str
    tiers: dict[Tier, TierPrediction]


@dataclass(frozen=True)
class TrendExhaustionPredictor:
    """Heuristic trend-extrapolation predictor (no training); formulas in the module doc.

    ``horizon_s`` (> 0): how far ahead to look. ``min_samples`` (≥ 0): containers
    with fewer present samples get p_fail 0. ``sigma_floor_fraction`` (≥ 0): the
    forecast's standard deviation is at least this fraction of the limit, so a
    perfectly straight line does not give a 0/1 step. ``cpu_busy_fraction``
    (in (0, 1]): the fraction of the quota at which CPU counts as exhausted.

    The field defaults are prescale's defaults (``predictor.*`` in the settings read
    them: :mod:`app.core.config`).
    """

    name: ClassVar[str] = "trend-exhaustion/v1"

    horizon_s: float = 30.0
    min_samples: int = 5
    sigma_floor_fraction: float = 0.02
    cpu_busy_fraction: float = 0.9

    def __post_init__(self) -> None:
        horizon_s, min_samples = self.horizon_s, self.min_samples
        sigma_floor_fraction, cpu_busy_fraction = self.sigma_floor_fraction, self.cpu_busy_fraction
        if not (np.isfinite(horizon_s) and horizon_s > 0):
            raise ValueError(f"horizon_s must be a finite number > 0, got {horizon_s!r}")
        if min_samples < 0:
            raise ValueError(f"min_samples must be ≥ 0, got {min_samples!r}")
        if not (np.isfinite(sigma_floor_fraction) and sigma_floor_fraction >= 0):
            raise ValueError(
                f"sigma_floor_fraction must be a finite number ≥ 0, got {sigma_floor_fraction!r}"
            )
        if not (0 < cpu_busy_fraction <= 1):
            raise ValueError(f"cpu_busy_fraction must be in (0, 1], got {cpu_busy_fraction!r}")
        set_ = object.__setattr__
        set_(self, "horizon_s", float(horizon_s))
        set_(self, "min_samples", int(min_samples))
        set_(self, "sigma_floor_fraction", float(sigma_floor_fraction))
        set_(self, "cpu_busy_fraction", float(cpu_busy_fraction))

    @classmethod
    def from_settings(cls, p: Any) -> TrendExhaustionPredictor:
        """From ``settings.predictor`` (duck-typed: the core does not import settings)."""
        return cls(horizon_s=p.horizon_s, min_samples=p.min_samples,
                   sigma_floor_fraction=p.sigma_floor_fraction,
                   cpu_busy_fraction=p.cpu_busy_fraction)

    def forecastable(self, features: np.ndarray) -> np.ndarray:
        """``bool[N]``: the containers with enough samples (``n_samples ≥ min_samples``)
        for a trend. The others get p_fail 0 from :meth:`predict`: not a forecast that
        they will not fail, but no forecast at all — so a set of windows none of which is
        forecastable (e.g. a trace with 2 samples per task) cannot be *ranked* by the
        heuristic, and evaluation says so instead of scoring the zeros. Example:
        ``min_samples = 5``, n_samples 2, 5, 9 → False, True, True."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(FEATURES):
            raise ValueError(f"features must have shape [N, {len(FEATURES)}], got {x.shape}")
        return x[:, F["n_samples"]] >= self.min_samples

    def predict(self, features: np.ndarray) -> Prediction:
        """Predict every tier for ``features`` ``[N, len(FEATURES)]`` (see the module doc)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(FEATURES):
            raise ValueError(
                f"features must have shape [N, {len(FEATURES)}] (app.core.features.FEATURES), "
                f"got {x.shape}"
            )
        enough = x[:, F["n_samples"]] >= self.min_samples
        with np.errstate(all="ignore"):
            memory = self._memory(x)
            cpu = self._cpu(x)
        tiers = {}
        for tier, pred in ((Tier.MEMORY, memory), (Tier.CPU, cpu)):
            p = np.where(enough, pred.p_fail, 0.0)
            tiers[tier] = TierPrediction(
                p_fail=p,
                time_to_limit_s=pred.time_to_limit_s,
                forecast=pred.forecast,
                limit=pred.limit,
            )
        return Prediction(horizon_s=self.horizon_s, model=self.name, tiers=tiers)

    def _memory(self, x: np.ndarray) -> TierPrediction:
        return self._exhaustion(
            x[:, F["memory_usage_last_bytes"]], x[:, F["memory_limit_bytes"]],
            x[:, F["memory_slope_bytes_per_s"]], x[:, F["memory_recent_slope_bytes_per_s"]],
            x[:, F["memory_resid_std_bytes"]], x[:, F["memory_slope_std_bytes_per_s"]],
            x[:, F["memory_time_to_limit_s"]])

    def predict_trend(self, trend: UsageTrend) -> TierPrediction:
        """The memory formula (module docstring) for another used-vs-limit amount: the
        disk tier, from :func:`app.core.features.usage_trend` of ``disk_used_bytes``
        against ``disk_limit_bytes`` (failure = ENOSPC: the volume is full). Containers
        with fewer than ``min_samples`` samples get p_fail 0. Worked example: the memory
        one with the volume's used bytes for u and its size for L: p_fail ≈ 0.9772, time
        to limit 25 s."""
        with np.errstate(all="ignore"):
            pred = self._exhaustion(trend.last, trend.limit, trend.slope, trend.recent_slope,
                                    trend.resid_std, trend.slope_std, trend.time_to_limit_s)
        return TierPrediction(np.where(trend.n_samples >= self.min_samples, pred.p_fail, 0.0),
                              pred.time_to_limit_s, pred.forecast, pred.limit)

    def _exhaustion(self, u: np.ndarray, limit: np.ndarray, slope_all: np.ndarray,
                    slope_recent: np.ndarray, resid: np.ndarray, slope_se: np.ndarray,
                    ttl: np.ndarray) -> TierPrediction:
        h = self.horizon_s
        slope = np.fmax(slope_all, slope_recent)
        forecast = u + np.maximum(slope, 0.0) * h
        sigma = np.maximum(
            np.sqrt(resid**2 + (h * slope_se) ** 2), self.sigma_floor_fraction * limit
        )
        p = _exceed_probability(forecast, limit, sigma)
        return TierPrediction(
            p_fail=p,
            time_to_limit_s=np.array(ttl, dtype=np.float64),
            forecast=forecast,
            limit=np.array(limit, dtype=np.float64),
        )

    def _cpu(self, x: np.ndarray) -> TierPrediction:
        return self._saturation(
            x[:, F["cpu_usage_cores_last"]], x[:, F["cpu_usage_cores_mean"]],
            x[:, F["cpu_slope_cores_per_s"]], x[:, F["cpu_rate_std_cores"]],
            x[:, F["cpu_quota_cores"]],
            np.nan_to_num(x[:, F["cpu_throttled_fraction"]], nan=0.0))

    def predict_rate(self, trend: RateTrend) -> TierPrediction:
        """The CPU formula (module docstring) for another rate against its limit, with no
        throttling counter (θ = 0): the network tier, from
        :func:`app.core.features.rate_trend` of ``net_rx_bytes_total`` against
        ``net_rx_limit_bytes_per_s`` (failure = saturation: traffic queued at the limit).
        Worked example: the CPU one in MB/s (c = 1.5, c̄ = 1.2, g = 0.02, ρ = 0.15, limit
        2, β = 0.9) → p_fail ≈ 0.9772, time to limit 15 s."""
        with np.errstate(all="ignore"):
            pred = self._saturation(trend.last, trend.mean, trend.slope, trend.std,
                                    trend.limit, np.zeros(len(trend.last)))
        return TierPrediction(np.where(trend.n_samples >= self.min_samples, pred.p_fail, 0.0),
                              pred.time_to_limit_s, pred.forecast, pred.limit)

    def _saturation(self, c_last: np.ndarray, c_mean: np.ndarray, slope: np.ndarray,
                    rate_std: np.ndarray, quota: np.ndarray, throttled: np.ndarray
                    ) -> TierPrediction:
        h = self.horizon_s
        busy = self.cpu_busy_fraction * quota

        forecast = np.fmax(c_last, c_mean) + np.maximum(slope, 0.0) * h
        sigma = np.maximum(rate_std, self.sigma_floor_fraction * quota)
        p_trend = _exceed_probability(forecast, busy, sigma)
        p = np.where(np.isinf(quota), 0.0, np.maximum(p_trend, np.clip(throttled, 0.0, 1.0)))

        ttl = np.where(slope > 0, (busy - c_last) / slope, np.inf)
        unknown = np.isnan(c_last) | np.isnan(busy) | (np.isnan(slope) & np.isfinite(busy))
        ttl = np.where(unknown, np.nan, ttl)
        ttl = np.where((throttled >= 0.5) | (c_last >= busy), 0.0, ttl)
        return TierPrediction(p_fail=p, time_to_limit_s=ttl, forecast=forecast, limit=quota.copy())


def _exceed_probability(forecast: np.ndarray, limit: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``Φ((forecast − limit)/sigma)``; 0 where anything is ``nan`` or the limit is ``inf``.

    With ``sigma == 0`` (no noise and no floor) it is the step ``forecast ≥ limit``.
    """
    z = (forecast - limit) / sigma
    p = ndtr(z)
    zero_sigma = sigma == 0
    p = np.where(zero_sigma, (forecast >= limit).astype(np.float64), p)
    bad = np.isnan(forecast) | np.isnan(limit) | np.isnan(sigma) | np.isinf(limit)
    return np.where(bad, 0.0, p)
