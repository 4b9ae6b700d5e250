"""The closed loop of ``prescale evaluate``: one scenario, one policy, a simulated clock.

The simulated world (:mod:`app.evaluation.world`) plays the scenario's demand against
the limits in force, step by step. prescale acts on it through the live loop's own tick
(:class:`app.loop.tick.Tick` in mode ``auto``: features, predictor, thresholds learning
from every judgement, outcome tracking, policy and guards, the pool and contention with
reclaims from idle containers, partial grants) over the world's ports; a baseline
(:mod:`app.evaluation.baselines`) decides on the same observation and its asks go
through the same pool and arbitration (:meth:`~app.evaluation.world.SimWorld.act_on`).

Nothing here reads a clock or a file. The result is a
:class:`~app.evaluation.record.RunRecord` of arrays ``[N, T]`` (demand, limits,
replicas, failures) and the list of applied actions, from which
:mod:`app.evaluation.metrics` computes the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from prescale.app.core.contention import ContentionConfig
from prescale.app.core.engine import EngineConfig
from prescale.app.core.sample import Tier
from prescale.app.core.thresholds import ThresholdBook, ThresholdConfig
from prescale.app.evaluation.baselines import (
    BASELINES,
    HPA,
    VPA,
    VPA_VARIANTS,
    Baseline,
    Bounds,
    FailureRateReactive,
    Static,
)
from prescale.app.evaluation.record import AppliedAction, RunRecord
from prescale.app.evaluation.scenarios import Scenario
from prescale.app.evaluation.world import SimWorld
from prescale.app.loop.tick import Tick

PRESCALE_POLICIES = ("preemptive_buffer", "proportional", "multi_tier")
POLICIES = (*BASELINES, *PRESCALE_POLICIES)


class PrescalePolicy:
    """prescale's settings for one run; the run drives the tick with them."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.name = settings.policy.kind


def _merge(into: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``into`` updated with ``over``, nested mappings merged key by key."""
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v
    return into


def prescale_settings(scenario: Scenario, kind: str, extra: dict[str, Any] | None = None,
                      base: Any = None) -> Any:
    """The :class:`~app.settings.Settings` prescale runs with in ``scenario``: ``base``
    (the user's settings: file + ``PRESCALE_*`` env; default: the defaults + env), then
    the scenario's own overrides (tick = step, horizon, bounds, tenants: how the
    simulated world is built, the same for every user), ``extra``, ``policy.kind``."""
    from prescale.app.settings import Settings  # settings is not an I/O layer; imported lazily

    merged = (base if base is not None else Settings()).model_dump()
    _merge(merged, scenario.settings)
    _merge(merged, extra or {})
    merged["policy"]["kind"] = kind
    return Settings.model_validate(merged)


def make_policy(name: str, scenario: Scenario, extra: dict[str, Any] | None = None,
                base_settings: Any = None) -> Baseline | PrescalePolicy:
    bounds = Bounds(memory_max_bytes=scenario.memory_max_bytes,
                    cpu_max_cores=scenario.cpu_max_cores)
    if name in PRESCALE_POLICIES:
        return PrescalePolicy(prescale_settings(scenario, name, extra, base_settings))
    makers: dict[str, Callable[[], Baseline]] = {
        "static": Static, "reactive": lambda: FailureRateReactive(bounds),
        "hpa": lambda: HPA(bounds)}
    for vname, cfg in VPA_VARIANTS.items():
        makers[vname] = lambda cfg=cfg, vname=vname: VPA(bounds, cfg, name=vname)
    if name not in makers:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    return makers[name]()


def run(scenario: Scenario, policy_name: str, *, extra_settings: dict[str, Any] | None = None,
        window_steps: int = 60, base_settings: Any = None,
        progress: Callable[[int], None] | None = None) -> RunRecord:
    """Run ``scenario`` under one policy (see the module docstring). ``base_settings``:
    the user's :class:`~app.settings.Settings` (file + env) under the scenario's own
    overrides (prescale policies only). ``progress(k)`` (a plain callback: the CLI's bar
    reads it) is called before each step ``k``, i.e. with the steps done so far."""
    s = scenario
    policy = make_policy(policy_name, s, extra_settings, base_settings)
    prescale = isinstance(policy, PrescalePolicy)
    if prescale:
        window_steps = policy.settings.loop.window_steps
    world = SimWorld(
        s, policy_name, window_steps=window_steps,
        contention=ContentionConfig(  # prescale's setting; the baselines' asks alike
            partial_grants=bool(policy.settings.contention.partial_grants)
            if prescale else True),
        restarts_on_update=bool(getattr(policy, "restarts_on_update", False)))
    tick = book = None
    if prescale:
        st = policy.settings
        book = ThresholdBook(ThresholdConfig.from_settings(st.thresholds))
        tick = Tick(EngineConfig.from_settings(st), world.ports(book), run_id=s.name,
                    mode="auto", window_steps=window_steps, now=lambda: world.now)
    for k in range(s.steps):
        if progress is not None:
            progress(k)
        obs = world.begin(k)
        if tick is not None:
            tick.run_once()
            continue
        asks = policy.decide(obs)
        if asks:
            policy.settle(obs, world.act_on(asks, world.arbitrate(asks, [])))
    rec = world.rec
    if tick is not None:
        names, apps = list(s.names), list(s.apps)
        rec.threshold_final = {
            tier.value: float(np.mean(tick.engine.thresholds(book, names, apps)[tier]))
            for tier in (Tier.MEMORY, Tier.CPU)}
    return rec


def check_policies(names: list[str]) -> list[str]:
    """The policy names, each validated; raises ValueError naming an unknown one."""
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown policy {', '.join(map(repr, bad))}; known: "
                         f"{', '.join(POLICIES)}")
    if not names:
        raise ValueError(f"no policy given; known: {', '.join(POLICIES)}")
    return names


__all__ = ["POLICIES", "PRESCALE_POLICIES", "AppliedAction", "PrescalePolicy", "RunRecord",
           "check_policies", "make_policy", "prescale_settings", "run"]
