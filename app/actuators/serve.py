"""Ray Serve actuator: replicas of a deployment (horizontal) and their resources (vertical).

Only deployments the operator listed (:attr:`ServeApp.managed`) are touched; an action
for anything else is ``DENIED`` and nothing changes. ``action.container`` names a
deployment as ``"<application>/<deployment>"``
(:func:`app.edges.serve_instance.serve_container`).

Horizontal (``SCALE_OUT``, ``new_limit`` = replicas)
    Ray 2.60's external-scaler API: an application deployed with
    ``external_scaler_enabled=True`` (:meth:`ServeActuator.deploy` does) accepts a new
    target replica count without a redeploy; the running replicas keep serving and only
    the difference is started (or stopped). This is the call the dashboard's
    ``POST /api/v1/applications/{app}/deployments/{dep}/scale`` makes; here it goes to the
    Serve controller directly, so it works without the dashboard. The actuator then
    polls ``serve.status()`` until the deployment is ``HEALTHY`` with exactly that many
    replicas ``RUNNING`` (``ready_timeout_s``) and reports the running count read back.
    (A redeploy with ``.options(num_replicas=n)`` would also work, but ``serve.run`` gives
    every Python-API deploy a new code version, so it replaces *every* replica.)

Vertical (``RESIZE``: CPU → ``ray_actor_options["num_cpus"]`` in cores, memory →
``ray_actor_options["memory"]`` in bytes)
    Serve has no in-place change of replica resources: the application is redeployed
    (``serve.run_many`` with the deployment's ``.options(ray_actor_options=...)``, every
    deployment keeping its current replica count), which replaces the replicas of
    *every* deployment in the application by a rolling update (requests keep being
    served; ≈ 7 s for two tiny replicas on 2 cores). Because of that, a vertical resize is
    ``DENIED`` unless every deployment of the application is listed. It waits until the
    read-back ``ray_actor_options`` hold the new value and the deployment is settled.

Two calls go beyond Serve's public Python API, each isolated in one function: the
controller's ``update_deployment_replicas`` (the external scaler, below) and the
client's ``get_serve_details()`` (the data behind ``serve status`` and the dashboard,
parsed with the public ``ServeInstanceDetails`` schema:
:func:`app.edges.serve_instance.serve_details`, which the Serve source shares) to read
back targets and options.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prescale.app.actuators.base import (
    IdempotentActuator,
    InvalidActionError,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges.serve_instance import serve_container, serve_details, split_container

#: the ``ray_actor_options`` key each tier resizes (CPU in cores, memory in bytes)
RESOURCE_KEY = {Tier.CPU: "num_cpus", Tier.MEMORY: "memory"}


# -- pure part


def replicas_settled(status: str, replica_states: Mapping[str, int], n: int) -> bool:
    """True when a deployment is ``HEALTHY`` with exactly ``n`` replicas, all ``RUNNING``.

    Examples: ``("HEALTHY", {"RUNNING": 2}, 2)`` → True;
    ``("UPSCALING", {"RUNNING": 1, "STARTING": 1}, 2)`` → False;
    ``("HEALTHY", {"RUNNING": 2, "STOPPING": 1}, 2)`` → False (one still stopping).
    """
    states = {str(getattr(k, "value", k)): v for k, v in replica_states.items() if v}
    return str(getattr(status, "value", status)) == "HEALTHY" and states == (
        {"RUNNING": n} if n else {}
    )


@dataclass(frozen=True)
class ServeApp:
    """A Serve application prescale may deploy and change.

    ``deployments`` are all the application's deployments by name (as configured by
    the operator: ``Model.options(num_replicas=1, ray_actor_options={"num_cpus": 0.1})``);
    ``bind`` builds the application from them (e.g. ``lambda d: d["Model"].bind()``) —
    the actuator passes the same deployments with changed options; ``managed`` is the
    operator's list of deployments prescale may touch.
    """

    name: str
    deployments: Mapping[str, Any]
    bind: Callable[[Mapping[str, Any]], Any]
    managed: frozenset[str]
    route_prefix: str | None = "/"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ServeApp.name must be a non-empty string, got {self.name!r}")
        if not self.deployments:
            raise ValueError(f"ServeApp {self.name!r}: deployments is empty")
        for key, d in self.deployments.items():
            if getattr(d, "name", None) != key:
                raise ValueError(f"ServeApp {self.name!r}: deployments[{key!r}] is named "
                                 f"{getattr(d, 'name', None)!r}; key and name must match")
            if "/" in key:
                raise ValueError(f"ServeApp {self.name!r}: deployment name {key!r} has a '/'")
        if isinstance(self.managed, str):
            raise TypeError("ServeApp.managed is a set of deployment names, not a string")
        object.__setattr__(self, "managed", frozenset(self.managed))
        unknown = self.managed - set(self.deployments)
        if unknown:
            raise ValueError(f"ServeApp {self.name!r}: managed names {sorted(unknown)} are not "
                             f"deployments of it (has: {sorted(self.deployments)})")
        if not callable(self.bind):
            raise TypeError(f"ServeApp {self.name!r}: bind must be callable")


@dataclass(frozen=True)
class DeploymentState:
    """One deployment as Serve reports it now."""

    app_status: str
    status: str
    target_replicas: int
    replica_states: dict[str, int]
    ray_actor_options: dict[str, Any]
    external_scaler_enabled: bool
    replica_ids: tuple[str, ...] = field(default=())

    @property
    def running(self) -> int:
        return self.replica_states.get("RUNNING", 0)

    def settled(self, n: int) -> bool:
        return replicas_settled(self.status, self.replica_states, n)


class DeploymentNotFound(LookupError):
    """The application or deployment is not running in Serve."""


# -- the I/O edge


def _set_target_replicas(app_name: str, deployment_name: str, n: int, timeout_s: float) -> None:
    """The external scaler: what ``POST .../deployments/{dep}/scale`` does (controller call)."""
    import ray
    from ray.serve._private.common import DeploymentID
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    ray.get(controller.update_deployment_replicas.remote(
        DeploymentID(name=deployment_name, app_name=app_name), n), timeout=timeout_s)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


class ServeActuator(IdempotentActuator):
    """Scales listed Serve deployments; Serve must be started (``serve.start``)."""

    kind = "serve"

    def __init__(self, apps: Iterable[ServeApp], *, ready_timeout_s: float = 60.0,
                 poll_s: float = 0.2, call_timeout_s: float = 30.0) -> None:
        super().__init__()
        self.apps: dict[str, ServeApp] = {}
        for a in apps:
            if not isinstance(a, ServeApp):
                raise TypeError(f"expected ServeApp, got {a!r}")
            if a.name in self.apps:
                raise ValueError(f"two ServeApps named {a.name!r}")
            self.apps[a.name] = a
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.call_timeout_s = call_timeout_s

    # -- deploy and read

    def deploy(self, app_name: str, timeout_s: float | None = None) -> dict[str, DeploymentState]:
        """Deploys the application as configured (external scaler on) and waits until
        every deployment is settled at its configured replica count (a running
        application goes back to the configured counts and options)."""
        app = self._app(app_name)
        return self._redeploy(app, {name: d for name, d in app.deployments.items()},
                              {name: _replicas_of(d) for name, d in app.deployments.items()},
                              timeout_s)

    def read(self, app_name: str, deployment_name: str) -> DeploymentState:
        """The deployment's state now; :class:`DeploymentNotFound` if it is not running."""
        details = serve_details()
        app = details.applications.get(app_name)
        if app is None:
            raise DeploymentNotFound(f"Serve application {app_name!r} is not running "
                                     f"(running: {sorted(details.applications)})")
        dep = app.deployments.get(deployment_name)
        if dep is None:
            raise DeploymentNotFound(f"application {app_name!r} has no deployment "
                                     f"{deployment_name!r} (has: {sorted(app.deployments)})")
        states: dict[str, int] = {}
        for r in dep.replicas:
            state = str(_plain(r.state))
            states[state] = states.get(state, 0) + 1
        options = dep.deployment_config.ray_actor_options
        if hasattr(options, "model_dump"):
            options = options.model_dump(exclude_none=True)
        options = {k: v for k, v in dict(options or {}).items() if v not in (None, {}, [])}
        return DeploymentState(
            app_status=str(_plain(app.status)), status=str(_plain(dep.status)),
            target_replicas=int(dep.target_num_replicas), replica_states=states,
            ray_actor_options=options,
            external_scaler_enabled=bool(getattr(app, "external_scaler_enabled", False)),
            replica_ids=tuple(sorted(r.replica_id for r in dep.replicas)),
        )

    def wait_settled(self, app_name: str, deployment_name: str, n: int,
                     timeout_s: float | None = None,
                     extra: Callable[[DeploymentState], bool] | None = None,
                     ) -> tuple[bool, DeploymentState | None, dict[str, int]]:
        """Polls ``serve.status()`` until the deployment is settled at ``n`` replicas (and
        ``extra(state)`` holds). Returns (settled, last state, last replica states)."""
        from ray import serve

        timeout = self.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        states: dict[str, int] = {}
        while True:
            app = serve.status().applications.get(app_name)
            dep = app.deployments.get(deployment_name) if app is not None else None
            if dep is not None:
                states = {str(_plain(k)): v for k, v in dep.replica_states.items()}
                if replicas_settled(dep.status, states, n):
                    state = self.read(app_name, deployment_name)
                    if state.settled(n) and (extra is None or extra(state)):
                        return True, state, states
            if time.monotonic() >= deadline:
                try:
                    return False, self.read(app_name, deployment_name), states
                except DeploymentNotFound:
                    return False, None, states
            time.sleep(self.poll_s)

    # -- apply

    def _app(self, app_name: str) -> ServeApp:
        app = self.apps.get(app_name)
        if app is None:
            raise ValueError(f"no ServeApp named {app_name!r} (have: {sorted(self.apps)})")
        return app

    def _apply(self, action: ScalingAction) -> ActionResult:
        parts = split_container(action.container)
        app = self.apps.get(parts[0]) if parts else None
        if parts is None or app is None or parts[1] not in app.managed:
            listed = sorted(serve_container(a.name, d) for a in self.apps.values()
                            for d in a.managed)
            return make_result(
                action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                f"refused: {action.container!r} is not a deployment the operator listed "
                f"(listed: {', '.join(listed) or 'none'}); nothing touched",
            )
        if action.kind is ActionKind.SCALE_OUT:
            return self._scale(action, app, parts[1], int(action.new_limit))
        if action.kind is ActionKind.RESIZE:
            return self._resize(action, app, parts[1])
        raise InvalidActionError(f"action {action.action_id}: unknown kind {action.kind!r}")

    def _scale(self, action: ScalingAction, app: ServeApp, dep: str, n: int) -> ActionResult:
        try:
            before = self.read(app.name, dep)
        except DeploymentNotFound as exc:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan, str(exc))
        old = before.running
        if before.target_replicas == n and before.settled(n):
            return make_result(action, ResultStatus.APPLIED, old, old,
                               f"already {n} replicas running; nothing to change")
        if not before.external_scaler_enabled:
            return make_result(
                action, ResultStatus.FAILED, old, old,
                f"application {app.name!r} was deployed without external_scaler_enabled; "
                f"deploy it with ServeActuator.deploy() (or external_scaler_enabled: true)",
            )
        t0 = time.perf_counter()
        _set_target_replicas(app.name, dep, n, self.call_timeout_s)
        ok, after, states = self.wait_settled(app.name, dep, n)
        took_s = time.perf_counter() - t0
        if ok and after is not None:
            return make_result(
                action, ResultStatus.APPLIED, old, after.running,
                f"replicas {old} → {after.running} RUNNING (read back from serve status; "
                f"target {after.target_replicas}) in {took_s:.2f} s; existing replicas kept",
            )
        running = after.running if after is not None else math.nan
        return make_result(
            action, ResultStatus.FAILED, old, running,
            f"target set to {n} but after {took_s:.1f} s the deployment is "
            f"{after.status if after else 'gone'} with replicas {states or 'none'}",
        )

    def _resize(self, action: ScalingAction, app: ServeApp, dep: str) -> ActionResult:
        key = RESOURCE_KEY[action.tier]
        value: float = (int(action.new_limit) if action.tier is Tier.MEMORY
                        else float(action.new_limit))
        if value <= 0:
            raise InvalidActionError(f"action {action.action_id}: {key} must be positive, "
                                     f"got {action.new_limit!r}")
        unlisted = sorted(set(app.deployments) - app.managed)
        if unlisted:
            return make_result(
                action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                f"refused: a vertical resize redeploys application {app.name!r} and replaces "
                f"the replicas of all its deployments, but {unlisted} are not listed; "
                f"nothing touched",
            )
        try:
            current = {name: self.read(app.name, name) for name in app.deployments}
        except DeploymentNotFound as exc:
            return make_result(action, ResultStatus.FAILED, action.old_limit, math.nan, str(exc))
        old = current[dep].ray_actor_options.get(key, math.nan)
        if old == value:
            return make_result(action, ResultStatus.APPLIED, old, old,
                               f"{key} already {fmt_limit(value)}; nothing to change")
        deployments = {}
        for name, d in app.deployments.items():
            options = dict(d.ray_actor_options or {})
            for k in RESOURCE_KEY.values():  # keep earlier resizes (read back, not remembered)
                if k in current[name].ray_actor_options:
                    options[k] = current[name].ray_actor_options[k]
            if name == dep:
                options[key] = value
            deployments[name] = d.options(ray_actor_options=options)
        replicas = {name: current[name].target_replicas for name in app.deployments}
        t0 = time.perf_counter()
        self._redeploy(app, deployments, replicas, None, wait=False)
        ok, after, states = self.wait_settled(
            app.name, dep, replicas[dep],
            extra=lambda s: s.ray_actor_options.get(key) == value
            and not set(s.replica_ids) & set(current[dep].replica_ids),
        )
        took_s = time.perf_counter() - t0
        now = after.ray_actor_options.get(key, math.nan) if after is not None else math.nan
        if ok:
            return make_result(
                action, ResultStatus.APPLIED, old, now,
                f"{key} {fmt_limit(old)} → {fmt_limit(now)} per replica (read back); "
                f"application {app.name!r} redeployed, {replicas[dep]} replicas replaced "
                f"in {took_s:.2f} s",
            )
        return make_result(
            action, ResultStatus.FAILED, old, now,
            f"redeployed with {key}={fmt_limit(value)} but after {took_s:.1f} s the deployment "
            f"is {after.status if after else 'gone'} with replicas {states or 'none'}",
        )

    def _redeploy(self, app: ServeApp, deployments: Mapping[str, Any],
                  replicas: Mapping[str, int], timeout_s: float | None,
                  wait: bool = True) -> dict[str, DeploymentState]:
        from ray import serve

        built = {name: d.options(num_replicas=replicas[name]) for name, d in deployments.items()}
        serve.run_many(
            [serve.RunTarget(target=app.bind(built), name=app.name,
                             route_prefix=app.route_prefix, external_scaler_enabled=True)],
            wait_for_ingress_deployment_creation=False,
            wait_for_applications_running=False,
        )
        if not wait:
            return {}
        result = {}
        for name in deployments:
            ok, state, states = self.wait_settled(app.name, name, replicas[name], timeout_s)
            if not ok or state is None:
                raise TimeoutError(f"application {app.name!r}: deployment {name!r} did not "
                                   f"settle at {replicas[name]} replicas (replicas: {states})")
            result[name] = state
        return result


def _replicas_of(deployment: Any) -> int:
    n = deployment.num_replicas
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"deployment {deployment.name!r}: num_replicas must be a fixed integer "
                         f"≥ 1 for prescale to scale it (autoscaling and the external scaler "
                         f"exclude each other), got {n!r}")
    return n


__all__ = [
    "DeploymentNotFound",
    "DeploymentState",
    "RESOURCE_KEY",
    "ServeActuator",
    "ServeApp",
    "replicas_settled",
]
