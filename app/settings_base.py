"""What every settings group shares: the frozen, closed base model and the field types
the groups reuse. The groups live in :mod:`prescale.app.settings_decisions` (what decides)
and :mod:`prescale.app.settings_edges` (where data comes from and goes);
:mod:`prescale.app.settings` composes them into the root.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from prescale.app.core.quantity import parse_bytes, parse_cores
from prescale.app.timeparse import parse_duration_s

PositiveSeconds = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _kube_bytes(v: object) -> object:
    """A Kubernetes quantity (``512Mi``, ``2Gi``, ``2G``) as bytes; other forms go on to
    pydantic's ByteSize (``2GiB``, ``2 GB``, a number)."""
    if isinstance(v, str):
        try:
            return int(parse_bytes(v))
        except ValueError as exc:
            try:
                return int(TypeAdapter(ByteSize).validate_python(v))
            except ValidationError:
                raise exc from None  # the Kubernetes forms' message, not pydantic's
    return v


def _kube_cores(v: object) -> object:
    """``500m`` → 0.5 (Kubernetes millicores); a number or other text goes on as is."""
    if isinstance(v, str) and v.strip().endswith("m"):
        try:
            return parse_cores(v)
        except ValueError:
            return v
    return v


#: bytes, written as a number, ``512Mi`` / ``2Gi`` / ``2G`` (Kubernetes) or ``2GiB``
Bytes = Annotated[ByteSize, BeforeValidator(_kube_bytes)]
#: cores, written as a number or as Kubernetes millicores (``500m``)
KubeCores = BeforeValidator(_kube_cores)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unit_text(name: str, v: object) -> object:
    """Text in a field named for its unit, read as users write it: a ``*_s`` field (not
    ``*_per_s``) takes a duration (``1h30m``, ``90s``, ``2d``), a ``*_cores`` field
    millicores (``500m``). A number, or text that is one (``"45"``, from the
    environment), goes on as it is; text that is neither raises naming the field:
    ``loop.interval_s = "1h30m"`` → 5400.0; ``pool.reserve_cpu_cores = "500m"`` → 0.5;
    ``policy.cooldown_s = "5 min"`` → "policy.cooldown_s: '5 min' is not a duration"."""
    if not isinstance(v, str) or _is_number(v):
        return v
    if name.endswith("_s") and not name.endswith("_per_s"):
        return parse_duration_s(v)
    if name.endswith("_cores"):
        return parse_cores(v)
    return v


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _units(cls, v: object, info: ValidationInfo) -> object:
        """Durations and millicores in the fields named for them (:func:`_unit_text`);
        also the values of a per-tier dict of them (``tier_cooldown_s = {cpu = "2m"}``)."""
        name = info.field_name or ""
        if isinstance(v, dict):
            return {k: _unit_text(name, x) for k, x in v.items()}
        return _unit_text(name, v)
