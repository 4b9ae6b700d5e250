"""Ray Serve as the I/O edges see it: the instance's details and a deployment's name.

Shared by the Serve deployments source (:mod:`app.telemetry.serve_deployments`: one
container per deployment) and the Serve actuator (:mod:`app.actuators.serve`: its
replicas and resources). Both name a deployment ``"<application>/<deployment>"``
(:func:`serve_container`) and read Serve's state with :func:`serve_details`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def serve_container(app_name: str, deployment_name: str) -> str:
    """``serve_container("echo", "Echo")`` → ``"echo/Echo"``."""
    return f"{app_name}/{deployment_name}"


def split_container(container: str) -> tuple[str, str] | None:
    """``"echo/Echo"`` → ``("echo", "Echo")``; no ``/`` → ``None``. The application
    name is everything before the *last* ``/`` (deployment names have none)."""
    app, sep, dep = container.rpartition("/")
    return (app, dep) if sep and app and dep else None


#: ``sources.serve_apps = ["*"]``: every application is opted in
ALL_APPS = "*"


def app_opted_in(app_name: str, opted_in: Iterable[str]) -> bool:
    """Whether the operator opted the application in (``sources.serve_apps``).

    ``("web", ["web"])`` → True; ``("web", ["*"])`` → True; ``("web", [])`` → False;
    ``("web", ["web2"])`` → False (exact names, no prefixes).
    """
    names = set(opted_in)
    return ALL_APPS in names or app_name in names


def missing_apps(opted_in: Iterable[str], running: Iterable[str]) -> str | None:
    """Why some opted-in names match no running application (a typo, or not deployed
    yet), with the closest running name; ``None`` when every name matches (or ``"*"``).

    Example: ``missing_apps(["shop", "serch"], ["shop", "search"])`` → "sources.serve_apps
    names 'serch', which no running Serve application has (did you mean 'search'?);
    running: search, shop"."""
    import difflib

    names = [n for n in opted_in if n != ALL_APPS]
    have = sorted(set(running))
    gone = [n for n in names if n not in have]
    if not gone:
        return None
    hints = [f"'{n}'" + (f" (did you mean '{near[0]}'?)"
                         if (near := difflib.get_close_matches(n, have, 1, 0.6)) else "")
             for n in gone]
    return (f"sources.serve_apps names {', '.join(hints)}, which no running Serve "
            f"application has; running: {', '.join(have) or 'none'}")


def serve_details() -> Any:
    """All applications' details (``ServeInstanceDetails``), the data behind ``serve
    status`` and the dashboard: applications → deployments → their config
    (``ray_actor_options``, target replicas) and replicas (state, pid, node).

    Read through the Serve client's ``get_serve_details()`` (beyond Serve's public
    Python API, isolated here) and parsed with the public ``ServeInstanceDetails``
    schema; needs a running Serve (``serve.start``), otherwise it raises.
    """
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeInstanceDetails

    return ServeInstanceDetails(**_get_global_client().get_serve_details())
