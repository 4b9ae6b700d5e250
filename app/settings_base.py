"""What every settings group shares: the frozen, closed base model and the field types
the groups reuse. The groups live in :mod:`prescale.app.settings_decisions` (what decides)
and :mod:`prescale.app.settings_edges` (where data comes from and goes);
:mod:`prescale.app.settings` composes them into the root.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveSeconds = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
