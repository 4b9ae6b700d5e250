"""The coordinator's Prometheus metrics, through ``ray.util.metrics``: a thin Ray shell.

:class:`CoordinatorMetrics` lives in the coordinator actor: it registers the specs of
:mod:`app.metric_specs` (exported names, labels, the freshness rule) and writes, each
tick, what :class:`app.metrics_book.MetricsBook` plans (the pure part: label slots,
the prediction-quality window). The Serve app's request metrics are
:mod:`app.serve_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prescale.app.metric_specs import COORDINATOR_METRICS, register_metrics
from prescale.app.metrics_book import MetricsBook, TickUpdate


class CoordinatorMetrics:
    """The coordinator's metrics: create it inside the coordinator actor and call
    :meth:`record_tick` once per tick. See :mod:`app.metric_specs` for the exported
    names, the labels and the freshness rule."""

    def __init__(self, max_containers: int = 1000, max_apps: int = 1000,
                 window_s: float = 3600.0, outcome_source: str = "judgements") -> None:
        from ray.util import metrics as ray_metrics

        self.book = MetricsBook(max_containers=max_containers, max_apps=max_apps,
                                window_s=window_s, outcome_source=outcome_source)
        self._metrics = register_metrics(COORDINATOR_METRICS, ray_metrics)

    def record_tick(self, summary: Mapping[str, Any], status_rows: Sequence[Mapping[str, Any]],
                    outcomes: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
                    ) -> TickUpdate:
        """Write one tick's metrics (see :meth:`MetricsBook.plan` for the inputs) and
        return what was written. Bad input raises ``ValueError`` and writes nothing."""
        up = self.book.plan(summary, status_rows, outcomes, records)
        for p in up.gauges:
            self._metrics[p.name].set(p.value, tags=p.tags)
        for p in up.counters:
            if p.value > 0:
                self._metrics[p.name].inc(p.value, tags=p.tags)
        for p in up.histograms:
            self._metrics[p.name].observe(p.value, tags=p.tags)
        return up
