"""Serve applications the user already runs, scaled through their own config.

For applications deployed with ``serve deploy`` (or the dashboard's REST API) and opted
in by name (``sources.serve_apps``; ``"*"`` = all), this actuator changes a deployment
the way the user would: it reads the config as deployed (``GET
/api/serve/applications/`` → each application's ``deployed_app_config``), changes only
the deployment's ``num_replicas`` (``SCALE_OUT``) or one ``ray_actor_options`` key
(``RESIZE``: CPU → ``num_cpus`` in cores, memory → ``memory`` in bytes), and PUTs the
whole config back (``PUT /api/serve/applications/``), every other application and field
as it was. The application keeps its ``import_path``, ``route_prefix``, ``runtime_env``
and code version; a new ``num_replicas`` is a light-weight update in Serve (the running
replicas stay, only the difference starts), a new ``ray_actor_options`` replaces the
deployment's replicas by a rolling update. Then it polls the same API until the
deployment is ``HEALTHY`` with the target count ``RUNNING`` (and the option read back),
or reports ``FAILED`` with what it saw after ``ready_timeout_s``.

Refused (``DENIED``, nothing read for actuation, nothing written):

- a container of an application that is not opted in;
- a deployment with an ``autoscaling_config`` (in its config or its code): Serve's own
  autoscaler owns its replica count and prescale does not fight it;
- an application deployed from Python (``serve.run``): it has no declarative config to
  change (its ``deployed_app_config`` is empty); :mod:`app.actuators.serve` manages
  those prescale deployed itself.

If the user runs ``serve deploy`` again with their own file, their counts win: prescale
changes the live config, never the user's file.

The pure part (:func:`app_opted_in`, :func:`deployment_view`, :func:`scaled_config`)
works on the API's JSON; the I/O is :class:`app.edges.serve_rest.ServeRestClient`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prescale.app.actuators.base import (
    IdempotentActuator,
    InvalidActionError,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.serve_instance import (
    ALL_APPS,
    app_opted_in,
    serve_container,
    split_container,
)

#: the ``ray_actor_options`` key each tier resizes (CPU in cores, memory in bytes)
RESOURCE_KEY = {Tier.CPU: "num_cpus", Tier.MEMORY: "memory"}


class ServeConfigRefused(ValueError):
    """The application or deployment cannot be changed through its config (why)."""


# -- pure part


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class DeploymentView:
    """One deployment of an application as the REST API reports it."""

    app_status: str
    declarative: bool
    status: str
    target_replicas: int
    replica_states: dict[str, int]
    ray_actor_options: dict[str, Any]
    autoscaling: bool

    @property
    def running(self) -> int:
        return self.replica_states.get("RUNNING", 0)

    def settled(self, n: int) -> bool:
        """``HEALTHY`` with exactly ``n`` replicas, all ``RUNNING``."""
        states = {k: v for k, v in self.replica_states.items() if v}
        return self.status == "HEALTHY" and states == ({"RUNNING": n} if n else {})


def deployment_view(details: Mapping[str, Any], app_name: str, dep_name: str) -> DeploymentView:
    """The deployment ``app_name/dep_name`` in ``GET /api/serve/applications/``'s answer;
    :class:`LookupError` if it is not there."""
    apps = details.get("applications") or {}
    app = apps.get(app_name)
    if app is None:
        raise LookupError(f"Serve application {app_name!r} is not running "
                          f"(running: {sorted(apps)})")
    dep = (app.get("deployments") or {}).get(dep_name)
    if dep is None:
        raise LookupError(f"application {app_name!r} has no deployment {dep_name!r} "
                          f"(has: {sorted(app.get('deployments') or {})})")
    states: dict[str, int] = {}
    for r in dep.get("replicas") or []:
        s = _plain(r.get("state"))
        states[s] = states.get(s, 0) + 1
    live = dep.get("deployment_config") or {}
    options = {k: v for k, v in (live.get("ray_actor_options") or {}).items()
               if v not in (None, {}, [])}
    entry = _config_entry(app.get("deployed_app_config"), dep_name) or {}
    autoscaling = bool(live.get("autoscaling_config") or entry.get("autoscaling_config")
                       or entry.get("num_replicas") == "auto")
    return DeploymentView(
        app_status=_plain(app.get("status")), declarative=bool(app.get("deployed_app_config")),
        status=_plain(dep.get("status")), target_replicas=int(dep.get("target_num_replicas") or 0),
        replica_states=states, ray_actor_options=options, autoscaling=autoscaling)


def _config_entry(app_config: Mapping[str, Any] | None, dep_name: str) -> dict | None:
    for entry in (app_config or {}).get("deployments") or []:
        if entry.get("name") == dep_name:
            return entry
    return None


#: the top-level fields of ``ServeInstanceDetails`` that are also ``ServeDeploySchema``'s
_TOP_LEVEL = ("proxy_location", "http_options", "grpc_options", "target_capacity")


def scaled_config(details: Mapping[str, Any], app_name: str, dep_name: str,
                  changes: Mapping[str, Any]) -> dict[str, Any]:
    """The whole ``ServeDeploySchema`` to PUT: every declaratively deployed application's
    ``deployed_app_config`` as it is, with ``changes`` set on one deployment's entry
    (``num_replicas``; ``ray_actor_options`` keys are merged into the deployment's
    current options). Raises :class:`ServeConfigRefused` for an application deployed
    from Python or a deployment with autoscaling; ``details`` is never modified.

    Worked example: ``deployed_app_config = {"name": "web", "import_path": "m:app",
    "route_prefix": "/web", "deployments": [{"name": "Model", "num_replicas": 1}]}`` and
    ``changes = {"num_replicas": 2}`` → the same dict with ``"num_replicas": 2`` in the
    ``Model`` entry; a deployment without an entry gets ``{"name": "Model",
    "num_replicas": 2}`` appended (the config overrides what the code says).
    """
    view = deployment_view(details, app_name, dep_name)
    if not view.declarative:
        raise ServeConfigRefused(
            f"application {app_name!r} was deployed from Python (serve.run), not with "
            f"`serve deploy`: it has no config to change; nothing touched")
    if view.autoscaling:
        raise ServeConfigRefused(
            f"deployment {serve_container(app_name, dep_name)!r} has an autoscaling_config: "
            f"Serve's autoscaler owns its replicas and prescale leaves it alone")
    unknown = set(changes) - {"num_replicas", "ray_actor_options"}
    if unknown:
        raise ValueError(f"only num_replicas and ray_actor_options are changed, got {unknown}")
    body: dict[str, Any] = {k: copy.deepcopy(details[k]) for k in _TOP_LEVEL
                            if details.get(k) is not None}
    applications = []
    for name, app in (details.get("applications") or {}).items():
        config = app.get("deployed_app_config")
        if not config:  # deployed from Python: a PUT leaves it alone
            continue
        config = copy.deepcopy(config)
        if name == app_name:
            entries = config.setdefault("deployments", [])
            entry = _config_entry(config, dep_name)
            if entry is None:
                entry = {"name": dep_name}
                entries.append(entry)
            if "num_replicas" in changes:
                entry["num_replicas"] = int(changes["num_replicas"])
            if "ray_actor_options" in changes:
                merged = dict(view.ray_actor_options)
                merged.update(entry.get("ray_actor_options") or {})
                merged.update(changes["ray_actor_options"])
                entry["ray_actor_options"] = merged
        applications.append(config)
    body["applications"] = applications
    return body


# -- the actuator


class ServeApi(Protocol):
    def details(self) -> dict[str, Any]: ...

    def deploy(self, config: dict[str, Any]) -> None: ...


class ServeConfigActuator(IdempotentActuator):
    """Scales the deployments of opted-in, ``serve deploy``-ed applications."""

    kind = "serve-config"

    def __init__(self, opted_in: Iterable[str], api: ServeApi, *,
                 ready_timeout_s: float = 60.0, poll_s: float = 0.5) -> None:
        super().__init__()
        if isinstance(opted_in, str):
            raise TypeError("opted_in is a list of application names, not a string")
        self.opted_in = tuple(opted_in)
        self.api = api
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s

    def containers(self) -> list[str]:
        """Every deployment of an opted-in application deployed declaratively (the
        containers whose actions come here); ``[]`` if the API cannot be read."""
        if not self.opted_in:
            return []
        try:
            details = self.api.details()
        except Exception:  # noqa: BLE001 - no dashboard now: no route, FAILED upstream
            return []
        out = []
        for name, app in (details.get("applications") or {}).items():
            if app_opted_in(name, self.opted_in) and app.get("deployed_app_config"):
                out += [serve_container(name, d) for d in app.get("deployments") or {}]
        return sorted(out)

    def _apply(self, action: ScalingAction) -> ActionResult:
        parts = split_container(action.container)
        if parts is None or not app_opted_in(parts[0], self.opted_in):
            return make_result(
                action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                f"refused: {action.container!r} is not a deployment of an opted-in Serve "
                f"application (sources.serve_apps = {list(self.opted_in)}); nothing touched")
        app_name, dep = parts
        if action.kind is ActionKind.SCALE_OUT:
            changes: dict[str, Any] = {"num_replicas": int(action.new_limit)}
        elif action.kind is ActionKind.RESIZE:
            key = RESOURCE_KEY[action.tier]
            value = int(action.new_limit) if action.tier is Tier.MEMORY else float(
                action.new_limit)
            changes = {"ray_actor_options": {key: value}}
        else:
            raise InvalidActionError(f"action {action.action_id}: unknown kind {action.kind!r}")
        try:
            details = self.api.details()
            before = deployment_view(details, app_name, dep)
        except LookupError as exc:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan, str(exc))
        except Exception as exc:  # noqa: BLE001 - the API is down: say so, retry later
            return make_result(action, ResultStatus.FAILED, action.old_limit, action.old_limit,
                               f"{type(exc).__name__}: {exc}")
        if action.kind is ActionKind.SCALE_OUT:
            n = changes["num_replicas"]
            old: float = before.running
            if before.target_replicas == n and before.settled(n):
                return make_result(action, ResultStatus.APPLIED, old, old,
                                   f"already {n} replicas running; nothing to change")
        else:
            old = before.ray_actor_options.get(key, math.nan)
            if old == value:
                return make_result(action, ResultStatus.APPLIED, old, old,
                                   f"{key} already {fmt_limit(value)}; nothing to change")
            n = before.target_replicas
        try:
            body = scaled_config(details, app_name, dep, changes)
        except ServeConfigRefused as exc:
            return make_result(action, ResultStatus.DENIED, old, old, f"refused: {exc}")
        t0 = time.perf_counter()
        try:
            self.api.deploy(body)
        except Exception as exc:  # noqa: BLE001 - refused config or API down
            return make_result(action, ResultStatus.FAILED, old, old,
                               f"{type(exc).__name__}: {exc}")
        ok, after, err = self._wait(app_name, dep, n, changes)
        took_s = time.perf_counter() - t0
        if action.kind is ActionKind.SCALE_OUT:
            now = after.running if after is not None else math.nan
            what = f"num_replicas {fmt_limit(old)} → {fmt_limit(now)} RUNNING"
        else:
            now = after.ray_actor_options.get(key, math.nan) if after is not None else math.nan
            what = f"{key} {fmt_limit(old)} → {fmt_limit(now)} per replica"
        if ok:
            return make_result(
                action, ResultStatus.APPLIED, old, now,
                f"{what} (application {app_name!r}'s config changed and redeployed as "
                f"`serve deploy` would, read back) in {took_s:.2f} s")
        seen = (f"{after.status} with replicas {after.replica_states or 'none'}"
                if after is not None else err or "gone")
        return make_result(
            action, ResultStatus.FAILED, old, now,
            f"config deployed with {changes} but after {took_s:.1f} s the deployment is {seen}")

    def _wait(self, app_name: str, dep: str, n: int, changes: Mapping[str, Any]
              ) -> tuple[bool, DeploymentView | None, str]:
        deadline = time.monotonic() + self.ready_timeout_s
        after, err = None, ""
        want = changes.get("ray_actor_options") or {}
        while True:
            try:
                after = deployment_view(self.api.details(), app_name, dep)
                if (after.target_replicas == n and after.settled(n)
                        and all(after.ray_actor_options.get(k) == v for k, v in want.items())):
                    return True, after, ""
            except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                err = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                return False, after, err
            time.sleep(self.poll_s)


__all__ = [
    "ALL_APPS",
    "DeploymentView",
    "RESOURCE_KEY",
    "ServeConfigActuator",
    "ServeConfigRefused",
    "app_opted_in",
    "deployment_view",
    "scaled_config",
]
