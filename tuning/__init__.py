"""Training, Ray Tune search and the retraining schedule of the failure models.

- the offline pipeline, one module a step: :mod:`tuning.training_data` (history store
  → labelled feature matrix with time or group splits), :mod:`tuning.train` (fit one
  model, score it), :mod:`tuning.register` (the gate, :mod:`app.models.gate`, then the
  model registry, promoted only if it beats the current model: ``train_and_register``)
  and :mod:`tuning.search` (the Ray Tune search over kinds and hyperparameters that ends
  the same way: ``tune_and_register``); :mod:`tuning.jsonsafe` keeps their answers
  JSON-safe.
- :mod:`tuning.space` — the search space (random forest, gradient boosting, the
  heuristic as the fixed baseline, the LSTM on request).
- :mod:`tuning.trainable` — the Tune function trainable (growing fits, so ASHA can
  stop poor trials early) and the progress bar.
- :mod:`tuning.schedule` — when to retrain: weekly, or when the live precision or
  recall drifts below its floor (pure).
- :mod:`tuning.retrain` — the retraining job (due apps, Tune + gate for one app), for
  ``prescale retrain`` and the live loop (:mod:`actors.retrainer`).
- :mod:`tuning.cv` — job-grouped, stratified k-fold cross-validation of the training
  pipeline (``scripts/eval_models/``).
"""
