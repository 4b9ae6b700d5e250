"""``[[workloads]]``: a policy per workload (:mod:`prescale.app.core.workloads` says how a
container gets its workload and what each field does). The global settings are the
defaults each entry overrides."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from prescale.app.core.policy import KINDS
from prescale.app.settings_decisions import BoundsOverride

TIERS = ("memory", "cpu", "disk", "network", "io")


class WorkloadSettings(BoundsOverride):
    """A workload's match, mode, tiers, threshold, policy kind, tenant and weight; its
    min/max limits and max_replicas are those of a :class:`BoundsOverride`."""

    name: str = Field(..., min_length=1, description="The policy's name (unique).")
    container: str | None = Field(
        None, min_length=1, description="Container-name glob it matches (web-*)."
    )
    app: str | None = Field(None, description="App it matches (with others: all must).")
    labels: dict[str, str] | None = Field(
        None, description="Labels it matches, every one (a container's Docker labels)."
    )
    mode: Literal["off", "recommend", "auto"] | None = Field(
        None, description="off / recommend hold this workload back (default: the global mode)."
    )
    controlled: list[Literal[TIERS]] | None = Field(  # type: ignore[valid-type]
        None, description="Tiers prescale may change here (default: all)."
    )
    threshold: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="Fixed p_fail threshold of its containers (default: adaptive)."
    )
    policy: Literal[KINDS] | None = Field(  # type: ignore[valid-type]
        None, description="Scale-up policy kind of its containers (default: policy.kind)."
    )
    tenant: str | None = Field(
        None, min_length=1,
        description="Tenant its containers count for (default: contention.tenants).",
    )
    weight: Annotated[float, Field(gt=0, le=1e6)] | None = Field(
        None, description="Risk weight of its containers (default: contention.app_weights)."
    )

    @model_validator(mode="after")
    def _matches_something(self) -> Self:
        if self.container is None and self.app is None and not self.labels:
            raise ValueError(f"workloads[{self.name}]: give container (a glob), labels, app "
                             "or several")
        for tier, lo, hi in (("memory", self.memory_min_bytes, self.memory_max_bytes),
                             ("cpu", self.cpu_min_cores, self.cpu_max_cores)):
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"workloads[{self.name}]: {tier} min {lo} is above max {hi}")
        return self


def check_unique(workloads: list[WorkloadSettings]) -> list[WorkloadSettings]:
    names = [w.name for w in workloads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"workloads: names must be unique, repeated: {', '.join(dup)}")
    return workloads
