"""Who owns a container: the tenant (owner) resolver.

``contention.tenants`` maps a container *or* an app to a tenant. The owner of
container c of app a is ``tenants[c]``, else ``tenants[a]``, else none (``""``); an
empty value counts as none. The engine uses it for the thresholds' owner scope and
the judgements' owner, and :func:`app.core.contention.arbitrate` for dominant resource
fairness across tenants — one rule, so a container is never one tenant's for its
threshold and another's (or nobody's) for its share of the pool.

Worked example: tenants ``{"db-0": "team-b", "web": "team-a"}`` →
``tenant_of(tenants, "db-0", "db")`` = ``"team-b"`` (by container);
``tenant_of(tenants, "web-3", "web")`` = ``"team-a"`` (by app);
``tenant_of(tenants, "cache-1", "cache")`` = ``""`` (none).
"""

from __future__ import annotations

from collections.abc import Mapping


def tenant_of(tenants: Mapping[str, str], container: str, app: str = "") -> str:
    """The tenant of ``container`` (of ``app``): by container, else by app, else ``""``
    (module docstring)."""
    return tenants.get(container) or tenants.get(app) or ""
