"""Evaluate every failure model kind on real and simulated data (issue 4's acceptance).

``python -m prescale.scripts.eval_models``; one module a part:

- :mod:`.config` — the evaluation's settings (full and ``--quick``);
- :mod:`.google` — part A, Google 2011, job-grouped k-fold cross-validation;
- :mod:`.fleets` — part B, the replay fleets (simulated and Bitbrains), split by time;
- :mod:`.report` — the Markdown tables;
- :mod:`.run` — runs the parts, times them; the command line.
"""
