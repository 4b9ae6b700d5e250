"""Baselines for ``prescale evaluate``, implemented from their published descriptions.

Every baseline sees the same :class:`Observation` as prescale and returns asks that go
through the same pool and contention code (:mod:`.base`). One module each:

- :mod:`.reactive` — :class:`Static` (never acts) and :class:`FailureRateReactive`
  (Nextflow-style "retry with more resources");
- :mod:`.vpa` — the Kubernetes Vertical Pod Autoscaler recommender and updater, in
  three variants (:data:`VPA_VARIANTS`);
- :mod:`.hpa` — the Kubernetes Horizontal Pod Autoscaler.
"""

from prescale.app.evaluation.baselines.base import Baseline, Bounds, Observation
from prescale.app.evaluation.baselines.hpa import HPA
from prescale.app.evaluation.baselines.reactive import FailureRateReactive, Static
from prescale.app.evaluation.baselines.vpa import VPA, VPA_VARIANTS

#: every baseline ``prescale evaluate`` runs, by name
BASELINES = ("static", "reactive", *VPA_VARIANTS, "hpa")

__all__ = ["BASELINES", "HPA", "VPA", "VPA_VARIANTS", "Baseline", "Bounds",
           "FailureRateReactive", "Observation", "Static"]
