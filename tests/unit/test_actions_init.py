"""The ``__init__`` that :func:`app.core.actions._slot_init` gives ScalingAction and
Decision: the dataclass's signature and defaults, every field set, still frozen, and
the same objects as ``dataclasses.replace`` (which calls it by keyword) makes."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from prescale.app.core.actions import ActionKind, Decision, ScalingAction
from prescale.app.core.sample import Tier


@pytest.mark.parametrize("cls", [ScalingAction, Decision])
def test_the_signature_is_the_dataclass_one(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [(p.name, p.default) for p in params] == [
        (f.name, inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(cls)]


def test_objects_are_set_frozen_and_equal_by_field():
    a = ScalingAction("w/memory@1", 1.0, "w", Tier.MEMORY, 512.0, 768.0, 0.9, 0.5, 20.0,
                      700.0, "why")
    assert (a.kind, a.app, a.preemptive, a.cause) == (ActionKind.RESIZE, "", True, "forecast")
    b = dataclasses.replace(a, reason="other", cause="idle")
    assert (b.reason, b.cause, b.new_limit) == ("other", "idle", 768.0)
    assert dataclasses.replace(b, reason="why", cause="forecast") == a
    assert hash(dataclasses.replace(b, reason="why", cause="forecast")) == hash(a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reason = "x"  # type: ignore[misc]
    d = Decision(now_s=1.0, container="w", tier=Tier.MEMORY, p_fail=0.9, threshold=0.5,
                 time_to_limit_s=20.0, forecast=700.0, limit=512.0, action=a, reason="why")
    assert dataclasses.astuple(d)[:8] == (1.0, "w", Tier.MEMORY, 0.9, 0.5, 20.0, 700.0, 512.0)
    assert d.action is a and d.reason == "why"
    with pytest.raises(TypeError):
        Decision(1.0, "w")  # type: ignore[call-arg]
