"""Evaluation: prescale against the autoscalers people use, on a simulated clock.

- :mod:`app.evaluation.scenarios` — scenarios with ground truth (demand paths that do
  not depend on the limit; failures decided by the limit the policy under test set),
  and the conversion of a real trace's samples into one (pure);
- :mod:`app.evaluation.baselines` — static limits, reactive by failure rate, the
  Kubernetes VPA recommender + updater, an HPA-like horizontal autoscaler (pure);
- :mod:`app.evaluation.runner` — the closed loop: the same :class:`~app.core.engine.Engine`,
  pool and contention code the live coordinator runs, driven tick by tick (pure);
- :mod:`app.evaluation.metrics` — failures, failure-minutes, violations, slack,
  resource-hours, actions, lead time, false-positive rate (pure);
- :mod:`app.evaluation.traces` — reads the real traces (I/O edge);
- :mod:`app.evaluation.report` — the run of every pair and the Markdown report (I/O edge);
- :mod:`app.evaluation.plots` — the report's PNG plots (I/O edge: matplotlib).
"""
