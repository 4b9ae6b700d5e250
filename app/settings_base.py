"""What every settings group shares: the frozen, closed base model and the field types
the groups reuse. The groups live in :mod:`prescale.app.settings_decisions` (what decides)
and :mod:`prescale.app.settings_edges` (where data comes from and goes);
:mod:`prescale.app.settings` composes them into the root.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ByteSize, ConfigDict, Field

from prescale.app.core.quantity import parse_bytes, parse_cores

PositiveSeconds = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


def _kube_bytes(v: object) -> object:
    """A Kubernetes quantity (``512Mi``, ``2Gi``, ``2G``) as bytes; other forms go on to
    pydantic's ByteSize (``2GiB``, ``2 GB``, a number)."""
    if isinstance(v, str):
        try:
            return int(parse_bytes(v))
        except ValueError:
            return v
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


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
