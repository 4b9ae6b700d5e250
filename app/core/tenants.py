"""Who owns a container: the tenant (owner) resolver.

``contention.tenants`` maps a container *or* an app to a tenant, and a container's
``[[workloads]]`` policy (or its ``prescale.tenant`` label) may name one. The owner of
container c of app a is ``tenants[c]``, else its workload's tenant, else ``tenants[a]``,
else none (``""``); an empty value counts as none. The engine uses it for the
thresholds' owner scope and the judgements' owner, and
:func:`app.core.contention.arbitrate` for dominant resource fairness across tenants —
one rule, so a container is never one tenant's for its threshold and another's (or
nobody's) for its share of the pool.

Worked example: tenants ``{"db-0": "team-b", "web": "team-a"}`` →
``tenant_of(tenants, "db-0", "db")`` = ``"team-b"`` (by container);
``tenant_of(tenants, "web-3", "web")`` = ``"team-a"`` (by app);
``tenant_of(tenants, "cache-1", "cache")`` = ``""`` (none);
``tenant_of(tenants, "web-3", "web", workload="team-c")`` = ``"team-c"`` (the workload's
beats the app's); ``tenant_of(tenants, "db-0", "db", workload="team-c")`` = ``"team-b"``
(the container's own entry beats both).

:class:`Tenancy` carries what the workloads say per container (tenant, risk weight) from
the engine, which knows each container's labels and workload, to the arbitration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def tenant_of(tenants: Mapping[str, str], container: str, app: str = "",
              workload: str = "") -> str:
    """The tenant of ``container`` (of ``app``, governed by a workload whose tenant is
    ``workload``): by container, else the workload's, else by app, else ``""`` (module
    docstring)."""
    return tenants.get(container) or workload or tenants.get(app) or ""


@dataclass(frozen=True)
class Tenancy:
    """Per container, what its workload policy says when tenants contend: ``tenants``
    (container → its tenant, resolved by :func:`tenant_of`) and ``weights`` (container →
    risk weight, which replaces its app's ``contention.app_weights``). Only containers
    whose workload names a tenant or a weight are in them."""

    tenants: Mapping[str, str] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tenants or self.weights)
