"""What the failure models learn from, kept out of the online core.

Used by training, tuning, replay and evaluation only — never by a tick:

- :mod:`app.learning.labels`: the one label definition (a failure of a tier within the
  horizon after a window), lead times, and the time / group splits and folds;
- :mod:`app.learning.dataset`: history frames → the windows and feature matrix a model
  trains on (the same :func:`app.core.features.compute_features` the loop runs);
- :mod:`app.learning.trace_mapping`: public trace units and event codes (Google 2011,
  Bitbrains) → prescale's samples and events, for :mod:`app.telemetry.replay`;
- :mod:`app.learning.limit_failures`: failures derived from readings at the limit, for
  traces that do not record their kills.

Pure like :mod:`app.core` (numpy and pandas; no Ray, psutil, clock or I/O layers), and
below it only: ``app.core`` never imports this package (import-linter holds both).
:mod:`app.core.peers` stays in the core: the learned models compute peer features at
inference, in the loop.
"""
