"""WorkloadActuatorActor: the Ray workloads prescale manages, and their actuators.

A thin shell that owns the placement-group actuator (managed actors,
:mod:`app.actuators.ray_pg`) and the Serve actuator (:mod:`app.actuators.serve`), each
behind :class:`~app.actuators.retry.RetryingActuator` (retries with backoff, then gives
up loudly). The operator registers workloads with :meth:`manage_actor` /
:meth:`manage_serve`; the coordinator asks :meth:`names` which containers are
workloads and routes their actions to :meth:`apply` (everything else goes to the
monitor of the container's node). Both actuators are idempotent by action id.

It also owns the actuator of the Serve applications the user runs and opted in
(``sources.serve_apps``, :mod:`app.actuators.serve_config`): their deployments are
discovered on every :meth:`names` call and scaled through their own config. The loop
starts this actor when the settings opt any in (:func:`actors.runtime.start_workloads`).

Named :data:`actors.names.WORKLOADS`; ``max_restarts=0`` by default: the managed actors
and Serve applications it created are owned by it, so a restart could not take them
over. The one the loop starts for the user's Serve apps alone
(:func:`actors.runtime.start_workloads`) owns nothing and is restarted.
"""

from __future__ import annotations

from typing import Any

import ray

from prescale.app.actuators.ray_pg import Bundle, ManagedActor, PlacementGroupActuator
from prescale.app.actuators.retry import RetryingActuator, RetryPolicy
from prescale.app.actuators.serve import ServeActuator, ServeApp
from prescale.app.actuators.serve_config import ServeConfigActuator
from prescale.app.core.actions import ActionResult, ResultStatus, ScalingAction
from prescale.app.edges.serve_instance import serve_container
from prescale.app.edges.serve_rest import ServeRestClient


class WorkloadActuators:
    def __init__(self, retry: RetryPolicy | None = None, *, ready_timeout_s: float = 60.0,
                 serve_apps: tuple[str, ...] | list[str] = (),
                 serve_dashboard_url: str | None = None) -> None:
        self.pg = PlacementGroupActuator([], ready_timeout_s=min(ready_timeout_s, 30.0))
        self.serve = ServeActuator([], ready_timeout_s=ready_timeout_s)
        self.serve_config = ServeConfigActuator(
            serve_apps, ServeRestClient(serve_dashboard_url), ready_timeout_s=ready_timeout_s)
        self.retry = retry or RetryPolicy()
        self._pg = RetryingActuator(self.pg, self.retry)
        self._serve = RetryingActuator(self.serve, self.retry)
        self._serve_config = RetryingActuator(self.serve_config, self.retry)
        self._where: dict[tuple[str, int], tuple[int, str]] = {}

    def manage_actor(self, name: str, cls: type, bundle: Bundle, args: tuple = (),
                     kwargs: dict[str, Any] | None = None) -> dict[str, float]:
        """Start ``cls`` in its own placement group and manage it; returns its bundle."""
        if name in self.pg.actors:
            raise ValueError(f"a managed actor named {name!r} exists already")
        managed = ManagedActor(name, cls, bundle, args=args, kwargs=kwargs).start()
        self.pg.actors[name] = managed
        return managed.bundle.to_ray()

    def call(self, name: str, method: str, *args: Any) -> Any:
        """Call a managed actor (through its call gate, so a resize never loses a call)."""
        return self.pg.actors[name].call(method, *args)

    def manage_serve(self, app: ServeApp) -> list[str]:
        """Deploy a Serve application (external scaler on) and manage its listed
        deployments; returns their container names."""
        if app.name in self.serve.apps:
            raise ValueError(f"a Serve application named {app.name!r} is managed already")
        self.serve.apps[app.name] = app
        self.serve.deploy(app.name)
        return sorted(serve_container(app.name, d) for d in app.managed)

    def describe(self) -> list[dict[str, Any]]:
        """Each running managed actor: name, pid and node of its current generation, its
        bundle (what :class:`app.telemetry.managed_actors.ManagedActorSource` reads)."""
        out = []
        for name, m in self.pg.actors.items():
            if not m.running:
                continue
            key = (name, m.generation)
            if key not in self._where:
                self._where[key] = ray.get(m.handle.__ray_call__.remote(_where), timeout=30)
            pid, node = self._where[key]
            out.append({"name": name, "pid": pid, "node_id": node, "app": m.cls.__name__,
                        "cpu_cores": m.bundle.cpu_cores, "memory_bytes": m.bundle.memory_bytes})
        return out

    def names(self) -> dict[str, str]:
        """Every managed container → the actuator kind that applies its actions (the
        deployments of opted-in Serve applications discovered now; those prescale
        deployed itself take precedence)."""
        out = {n: self.serve_config.kind for n in self.serve_config.containers()}
        out.update({n: self.pg.kind for n in self.pg.actors})
        for app in self.serve.apps.values():
            out.update({serve_container(app.name, d): self.serve.kind for d in app.managed})
        return out

    def apply(self, actions: list[ScalingAction]) -> list[ActionResult]:
        kinds = self.names()
        results = []
        for a in actions:
            kind = kinds.get(a.container)
            if kind is None:
                results.append(ActionResult(a.action_id, a.container, a.tier,
                                            ResultStatus.FAILED, a.old_limit, a.old_limit,
                                            "not a managed workload: nothing touched"))
                continue
            actuator = {self.pg.kind: self._pg, self.serve.kind: self._serve,
                        self.serve_config.kind: self._serve_config}[kind]
            try:
                results.append(actuator.apply(a))
            except (ValueError, TypeError) as exc:
                results.append(ActionResult(a.action_id, a.container, a.tier,
                                            ResultStatus.FAILED, a.old_limit, a.old_limit,
                                            f"refused: {exc}"))
        return results

    def shutdown(self) -> None:
        for m in self.pg.actors.values():
            m.stop()


def _where(_self: Any) -> tuple[int, str]:
    """Runs inside a managed actor: its pid and node."""
    import os

    return os.getpid(), ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0, max_restarts=0)
class WorkloadActuatorActor(WorkloadActuators):
    """:class:`WorkloadActuators` as the named actor :data:`actors.names.WORKLOADS`."""
