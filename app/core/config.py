"""Where prescale's defaults live: once, in the pure core's config types.

Every tunable of the decision path has one default, written once, as the field
default of the core type that uses it: :class:`~app.core.engine.EngineConfig`
(``recent_steps``, …), :class:`~app.core.predictor.TrendExhaustionPredictor`,
:class:`~app.core.policy.PolicyConfig`, :class:`~app.core.guards.GuardConfig`,
:class:`~app.core.cost.CostConfig`, :class:`~app.core.oom.OomConfig`,
:class:`~app.core.outcomes.OutcomeConfig`, :class:`~app.core.thresholds.ThresholdConfig`
and :class:`~app.core.contention.ContentionConfig`. The settings groups
(``app/settings_decisions.py``; ``models.tier`` in ``app/settings_edges.py``) do not
repeat the numbers: each of their ``Field`` defaults is :func:`default_of` the core
field it feeds (``cost.idle_after_s`` is ``default_of(CostConfig, "idle_after_s")``).
The settings add what only they know: the sources (TOML, ``PRESCALE_*``), units,
constraints and descriptions.

Why this way round (the core keeps the defaults, the settings read them) and not the
settings holding them with the core's fields required: the core is the lower layer
and must stay whole without the settings — the evaluator's baselines, the tests and
a notebook build ``CostConfig()`` or ``GuardConfig()`` and get the product's
behaviour, and the import direction stays one way (the settings may import the pure
core; the core never imports ``app.settings`` or its group modules, which import-linter
checks).

The way back is one path per type: each type's ``from_settings`` classmethod reads
its settings group (duck-typed, so the core needs no settings import), and
:meth:`EngineConfig.from_settings <app.core.engine.EngineConfig.from_settings>`
composes them. ``tests/unit/test_config_defaults.py`` builds every core config from
the default settings and fails, naming the field, if any differs from the core
type's own default.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (a fresh object when the
    field has a ``default_factory``). Example: ``default_of(CostConfig,
    "idle_after_s")`` → ``259200.0``; ``default_of(CostConfig, "tier_idle_after_s")``
    → ``{"cpu": 3600.0}`` (a new dict each call). Raises :class:`ValueError` naming
    the field if ``cls`` has no such field or it has no default."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    f = fields.get(name)
    if f is None:
        raise ValueError(f"{cls.__name__} has no field {name!r}")
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"{cls.__name__}.{name} has no default")
