"""Ray placement-group actuator: resize a managed actor by moving it to a new group.

A *managed* Ray workload is an actor class, its constructor arguments and a small
state protocol (:class:`StatefulWorkload`: ``get_state()`` and ``set_state(state)``),
running alone in a placement group with one bundle ``{"CPU": cores, "memory":
bytes}``; the actor asks for the whole bundle. :class:`ManagedActor` (driver side)
starts it and owns the current handle; callers go through :meth:`ManagedActor.call`
(or read :attr:`ManagedActor.handle` afresh for each call: a handle is only valid until
the next resize).

Placement groups cannot be resized, so :meth:`ManagedActor.resize` moves the actor:

*Alongside* (there is room for old and new at once): create the new group, wait until
it is ready (``ready_timeout_s``), start a new actor in it and wait until it is up,
then — with calls held — ``state = old.get_state()``, ``new.set_state(state)``, switch
the handle; then remove the old group (which kills the old actor). Calls are held only
for the two state calls (milliseconds); none fail and no update is lost.

*Replace* (no room for both: the 2-CPU case, where a 1-core actor cannot grow to 1.5
cores while its 1-core group exists). Chosen when the cluster's free resources cannot
hold the new bundle (checked up front), or when the new group stayed pending for
``ready_timeout_s``. With calls held: checkpoint ``state = old.get_state()``, remove
the old group (kills the old actor), create the new group and wait until it is ready
(``replace_timeout_s``), start the new actor, ``set_state(state)``, switch. **The
workload is unavailable for the duration**: measured 1.0–1.6 s on an idle 2-core
machine, up to 3.4 s under load (0.2–1.1 s until Ray hands the removed group's CPUs to
the new group, 0.2–0.8 s to start the actor); calls made through
:meth:`ManagedActor.call` wait (they do not fail) unless their timeout is shorter;
the measured hold is in ``ResizeReport.unavailable_s``. If the new group does not
become ready, the actor is restarted in a group of the old bundle from the same
checkpoint (rolled back, :class:`ResizeError`). A resize that could not fit even after
removing the old group is refused up front (nothing changes).

Resources: CPU in cores, memory in bytes (Ray's ``memory`` resource), as Ray takes them.
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from prescale.app.actuators.base import (
    IdempotentActuator,
    InvalidActionError,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier

# -- pure part


@runtime_checkable
class StatefulWorkload(Protocol):
    """What a managed actor class provides so that it can be moved.

    ``get_state()`` returns everything that must survive a move (picklable);
    ``set_state(state)`` loads it into a freshly constructed instance.
    """

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...


@dataclass(frozen=True)
class Bundle:
    """One placement-group bundle: ``cpu_cores`` (> 0) and ``memory_bytes`` (≥ 1)."""

    cpu_cores: float
    memory_bytes: int

    def __post_init__(self) -> None:
        c = self.cpu_cores
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) \
                or c <= 0:
            raise ValueError(f"bundle cpu_cores must be a positive finite number, got {c!r}")
        m = self.memory_bytes
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"bundle memory_bytes must be an integer ≥ 1, got {m!r}")
        object.__setattr__(self, "cpu_cores", float(c))
        object.__setattr__(self, "memory_bytes", int(m))

    def to_ray(self) -> dict[str, float]:
        """``Bundle(0.25, 67108864).to_ray()`` → ``{"CPU": 0.25, "memory": 67108864.0}``."""
        return {"CPU": self.cpu_cores, "memory": float(self.memory_bytes)}

    @classmethod
    def from_ray(cls, resources: Mapping[str, float]) -> Bundle:
        """Inverse of :meth:`to_ray` (as Ray's placement-group table reports a bundle)."""
        try:
            return cls(resources["CPU"], int(round(resources["memory"])))
        except KeyError as exc:
            raise ValueError(f"bundle {dict(resources)} has no {exc.args[0]!r}") from None

    def limit(self, tier: Tier) -> float:
        """The bundle's limit of ``tier``: cores for CPU, bytes for memory."""
        return self.cpu_cores if tier is Tier.CPU else float(self.memory_bytes)

    def with_limit(self, tier: Tier, value: float) -> Bundle:
        """The bundle with one tier changed, the other kept.

        Example: ``Bundle(0.25, 256 MiB).with_limit(Tier.CPU, 0.5)`` →
        ``Bundle(0.5, 256 MiB)``; ``.with_limit(Tier.MEMORY, 402653184.7)`` →
        ``Bundle(0.25, 402653184)`` (bytes are whole: rounded down).
        """
        if tier is Tier.CPU:
            return replace(self, cpu_cores=value)
        if tier is Tier.MEMORY:
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"memory limit must be a finite number, got {value!r}")
            return replace(self, memory_bytes=int(value))
        raise ValueError(f"a bundle has no {tier!r} tier")

    def __str__(self) -> str:
        return f"{{CPU: {fmt_limit(self.cpu_cores)}, memory: {self.memory_bytes}}}"


def shortfall(available: Mapping[str, float], need: Bundle,
              freed: Bundle | None = None) -> list[str]:
    """What is missing to place ``need`` in the cluster's ``available`` resources, plus
    ``freed`` (a bundle that would be released first). Empty when it may fit.

    A cluster-wide check, so necessary but not sufficient on several nodes (a bundle
    lives on one node): an empty answer still needs the group to become ready.
    Example: available ``{"CPU": 1.0, "memory": 8e9}``, need ``Bundle(1.5, 1 GiB)`` →
    ``["CPU: 1.5 needed, 1 free"]``; with ``freed=Bundle(1.0, 1 GiB)`` → ``[]``.
    """
    extra = freed.to_ray() if freed is not None else {}
    missing = []
    for key, amount in need.to_ray().items():
        free = available.get(key, 0.0) + extra.get(key, 0.0)
        # Ray keeps resources in units of 1e-4: compare with that tolerance
        if amount > free + 1e-4:
            missing.append(f"{key}: {fmt_limit(amount)} needed, {fmt_limit(round(free, 4))} free")
    return missing


# -- the I/O edge


class ResizeError(RuntimeError):
    """A resize that did not happen; ``state`` says where the actor is now."""


class ManagedActorDown(RuntimeError):
    """The managed actor is not running (not started, stopped, or lost in a resize)."""


@dataclass(frozen=True)
class ResizeReport:
    """What one resize did. Bundles are read back from Ray's placement-group table."""

    name: str
    old_bundle: Bundle
    new_bundle: Bundle
    mode: str  # "alongside" | "replace" | "unchanged"
    unavailable_s: float  # how long calls were held
    elapsed_s: float
    old_group_removed: bool
    notes: tuple[str, ...] = field(default=())


class _CallGate:
    """Calls pass while the gate is open; :meth:`hold` drains them and keeps new ones out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight = 0
        self._held = False

    @contextmanager
    def passing(self, timeout_s: float) -> Iterator[None]:
        with self._cond:
            if not self._cond.wait_for(lambda: not self._held, timeout_s):
                raise TimeoutError(f"the actor stayed unavailable (moving) for {timeout_s} s")
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    @contextmanager
    def hold(self, drain_timeout_s: float) -> Iterator[float]:
        """Yields the ``perf_counter`` time the gate closed (after draining calls)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._held)
            self._held = True
            if not self._cond.wait_for(lambda: self._inflight == 0, drain_timeout_s):
                self._held = False
                self._cond.notify_all()
                raise TimeoutError(
                    f"{self._inflight} calls still running after {drain_timeout_s} s"
                )
        try:
            yield time.perf_counter()
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()


class ManagedActor:
    """An actor prescale can resize: class + constructor args + state, in its own group.

    ``cls`` is a plain class (not ``@ray.remote``) implementing
    :class:`StatefulWorkload`; ``actor_options`` are passed to ``.options()`` (e.g.
    ``max_restarts``) except the resource and scheduling options this class owns.
    Ray must be initialised before :meth:`start`.
    """

    _OWNED_OPTIONS = frozenset({"num_cpus", "memory", "scheduling_strategy", "resources",
                                "placement_group", "placement_group_bundle_index"})

    def __init__(self, name: str, cls: type, bundle: Bundle, *, args: tuple = (),
                 kwargs: Mapping[str, Any] | None = None,
                 actor_options: Mapping[str, Any] | None = None,
                 call_timeout_s: float = 30.0, start_timeout_s: float = 30.0) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not isinstance(cls, type):
            raise TypeError(f"cls must be a plain class (not @ray.remote), got {cls!r}")
        missing = [m for m in ("get_state", "set_state") if not callable(getattr(cls, m, None))]
        if missing:
            raise TypeError(f"{cls.__name__} lacks {', '.join(missing)} (see StatefulWorkload)")
        if not isinstance(bundle, Bundle):
            raise TypeError(f"bundle must be a Bundle, got {bundle!r}")
        owned = self._OWNED_OPTIONS & set(actor_options or {})
        if owned:
            raise ValueError(f"actor_options may not set {sorted(owned)}: ManagedActor owns them")
        self.name = name
        self.cls = cls
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.actor_options = dict(actor_options or {})
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._bundle = bundle
        self._gate = _CallGate()
        self._handle: Any = None
        self._pg: Any = None
        self._remote_cls: Any = None
        #: increases by one each time the actor is (re)started in a new group
        self.generation = 0
        self.down_reason = "not started"

    # -- public

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def running(self) -> bool:
        return self._handle is not None

    @property
    def placement_group(self) -> Any:
        return self._pg

    @property
    def handle(self) -> Any:
        """The current actor handle: valid until the next resize."""
        if self._handle is None:
            raise ManagedActorDown(f"managed actor {self.name!r} is down: {self.down_reason}")
        return self._handle

    def start(self) -> ManagedActor:
        """Creates the group and the actor and waits until it answers."""
        if self._handle is not None:
            raise RuntimeError(f"managed actor {self.name!r} is already running")
        import ray

        if self._remote_cls is None:
            self._remote_cls = ray.remote(self.cls)
        pg, handle = self._spawn(self._bundle, self.start_timeout_s, state=None)
        self._pg, self._handle = pg, handle
        self.generation += 1
        return self

    def call(self, method: str, *args: Any, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Calls ``method`` on the current actor and returns its result.

        While a resize holds calls, this waits (up to ``timeout_s``) rather than fail.
        """
        import ray

        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        with self._gate.passing(timeout):
            handle = self.handle
            return ray.get(getattr(handle, method).remote(*args, **kwargs), timeout=timeout)

    def stop(self) -> None:
        """Kills the actor and removes its group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        with self._gate.hold(self.call_timeout_s):
            if self._handle is not None:
                ray.kill(self._handle, no_restart=True)
            if self._pg is not None:
                remove_placement_group(self._pg)
            self._handle, self._pg = None, None
            self.down_reason = "stopped"

    def read_bundle(self) -> Bundle:
        """The current group's bundle as Ray's placement-group table reports it."""
        return Bundle.from_ray(_pg_row(self._pg)["bundles"][0])

    def resize(self, new: Bundle, *, ready_timeout_s: float = 10.0,
               replace_timeout_s: float = 30.0, precheck_room: bool = True) -> ResizeReport:
        """Moves the actor to a group of bundle ``new``; see the module docstring.

        ``ready_timeout_s`` bounds the wait for a group beside the old one (after which
        it falls back to *replace*); ``replace_timeout_s`` the wait for the new group once
        the old one is gone (after which it rolls back); Ray needs ≈ 0.4–2 s here to
        hand a removed group's resources to a new one.
        ``precheck_room`` compares the cluster's free resources with ``new`` first and
        goes straight to the *replace* path when they cannot hold it (instead of
        waiting ``ready_timeout_s`` for a group that stays pending).
        Raises :class:`ResizeError` when the actor did not move (it still runs in its
        old bundle, or was rolled back to it) and :class:`ManagedActorDown` when the
        rollback failed too.
        """
        import ray
        from ray.util.placement_group import remove_placement_group

        if not isinstance(new, Bundle):
            raise TypeError(f"new must be a Bundle, got {new!r}")
        old_pg, old_handle, old = self._pg, self.handle, self._bundle
        t0 = time.perf_counter()
        if new == old:
            return ResizeReport(self.name, old, old, "unchanged", 0.0, 0.0, False)
        notes: list[str] = []
        missing = shortfall(ray.available_resources(), new) if precheck_room else []
        if missing:
            notes.append("no room alongside (" + "; ".join(missing) + ")")
        else:
            pg = _create_group(new)
            if pg.wait(ready_timeout_s):
                return self._move_alongside(pg, old_pg, old_handle, old, new, t0, notes)
            remove_placement_group(pg)
            notes.append(f"new group stayed pending for {ready_timeout_s:g} s")
        if precheck_room:
            missing = shortfall(ray.available_resources(), new, freed=old)
            if missing:
                raise ResizeError(
                    f"{self.name}: bundle {new} does not fit even after removing {old} ("
                    + "; ".join(missing) + "); nothing changed"
                )
        return self._replace(old_pg, old_handle, old, new, replace_timeout_s, t0, notes)

    # -- moves

    def _move_alongside(self, pg: Any, old_pg: Any, old_handle: Any, old: Bundle, new: Bundle,
                        t0: float, notes: list[str]) -> ResizeReport:
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            handle = self._start_in(pg, new, self.start_timeout_s)
        except BaseException:
            remove_placement_group(pg)  # kills a half-started actor too
            raise
        try:
            with self._gate.hold(self.call_timeout_s) as closed_at:
                state = ray.get(old_handle.get_state.remote(), timeout=self.call_timeout_s)
                ray.get(handle.set_state.remote(state), timeout=self.call_timeout_s)
                self._pg, self._handle, self._bundle = pg, handle, new
                self.generation += 1
                held_s = time.perf_counter() - closed_at
        except BaseException:
            ray.kill(handle, no_restart=True)
            remove_placement_group(pg)
            raise
        ray.kill(old_handle, no_restart=True)
        remove_placement_group(old_pg)
        self._bundle = self.read_bundle()
        return ResizeReport(self.name, old, self._bundle, "alongside", held_s,
                            time.perf_counter() - t0, _pg_removed(old_pg), tuple(notes))

    def _replace(self, old_pg: Any, old_handle: Any, old: Bundle, new: Bundle,
                 ready_timeout_s: float, t0: float, notes: list[str]) -> ResizeReport:
        import ray
        from ray.util.placement_group import remove_placement_group

        with self._gate.hold(self.call_timeout_s) as closed_at:
            state = ray.get(old_handle.get_state.remote(), timeout=self.call_timeout_s)
            ray.kill(old_handle, no_restart=True)
            remove_placement_group(old_pg)
            self._handle, self._pg = None, None
            self.down_reason = f"being moved from {old} to {new}"
            try:
                pg, handle = self._spawn(new, ready_timeout_s, state)
            except Exception as exc:  # noqa: BLE001 - roll back, then report
                error = f"{type(exc).__name__}: {exc}"
                try:
                    pg, handle = self._spawn(old, self.start_timeout_s, state)
                except Exception as exc2:  # noqa: BLE001
                    self.down_reason = (f"resize to {new} failed ({error}) and the rollback "
                                        f"to {old} failed too ({type(exc2).__name__}: {exc2})")
                    raise ManagedActorDown(f"{self.name}: {self.down_reason}") from exc2
                self._pg, self._handle = pg, handle
                self.generation += 1
                self._bundle = self.read_bundle()
                raise ResizeError(
                    f"{self.name}: resize to {new} failed ({error}); rolled back: restarted "
                    f"in {self._bundle} from its checkpoint after "
                    f"{time.perf_counter() - closed_at:.2f} s unavailable"
                ) from exc
            self._pg, self._handle = pg, handle
            self.generation += 1
            held_s = time.perf_counter() - closed_at
        self._bundle = self.read_bundle()
        return ResizeReport(self.name, old, self._bundle, "replace", held_s,
                            time.perf_counter() - t0, _pg_removed(old_pg), tuple(notes))

    # -- helpers

    def _spawn(self, bundle: Bundle, ready_timeout_s: float, state: Any) -> tuple[Any, Any]:
        """A ready group of ``bundle`` and an actor in it, loaded with ``state`` if given."""
        import ray
        from ray.util.placement_group import remove_placement_group

        pg = _create_group(bundle)
        try:
            if not pg.wait(ready_timeout_s):
                raise ResizeError(f"a group of {bundle} stayed pending for {ready_timeout_s:g} s")
            handle = self._start_in(pg, bundle, self.start_timeout_s)
            if state is not None:
                ray.get(handle.set_state.remote(state), timeout=self.call_timeout_s)
        except BaseException:
            remove_placement_group(pg)
            raise
        return pg, handle

    def _start_in(self, pg: Any, bundle: Bundle, timeout_s: float) -> Any:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        handle = self._remote_cls.options(
            num_cpus=bundle.cpu_cores,
            memory=bundle.memory_bytes,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=0
            ),
            **self.actor_options,
        ).remote(*self.args, **self.kwargs)
        ray.get(handle.__ray_ready__.remote(), timeout=timeout_s)
        return handle


def _create_group(bundle: Bundle) -> Any:
    from ray.util.placement_group import placement_group

    return placement_group([bundle.to_ray()], strategy="PACK")


def _pg_row(pg: Any) -> dict[str, Any]:
    from ray.util.placement_group import placement_group_table

    return placement_group_table(pg)


def _pg_removed(pg: Any) -> bool:
    return _pg_row(pg).get("state") == "REMOVED"


class PlacementGroupActuator(IdempotentActuator):
    """Resizes managed actors (``action.container`` = :attr:`ManagedActor.name`).

    Handles ``RESIZE`` of CPU (cores) or memory (bytes). An action for an actor it
    does not manage is ``DENIED`` (nothing touched). A resize that did not happen is
    ``FAILED`` with the reason and the bundle read back afterwards. ``APPLIED`` reports
    the read-back bundle; :attr:`reports` keeps the :class:`ResizeReport` per action id.
    Example reason: ``"moved alongside: bundle {CPU: 0.25, memory: 67108864} → {CPU: 0.5,
    memory: 67108864} (read back); old group removed; calls held 0.004 s; took 1.21 s"``.
    """

    kind = "ray_placement_group"

    def __init__(self, actors: Iterable[ManagedActor], *, ready_timeout_s: float = 10.0,
                 replace_timeout_s: float = 30.0, precheck_room: bool = True) -> None:
        super().__init__()
        self.actors: dict[str, ManagedActor] = {}
        for a in actors:
            if not isinstance(a, ManagedActor):
                raise TypeError(f"expected ManagedActor, got {a!r}")
            if a.name in self.actors:
                raise ValueError(f"two managed actors named {a.name!r}")
            self.actors[a.name] = a
        self.ready_timeout_s = ready_timeout_s
        self.replace_timeout_s = replace_timeout_s
        self.precheck_room = precheck_room
        self.reports: dict[str, ResizeReport] = {}

    def _apply(self, action: ScalingAction) -> ActionResult:
        if action.kind is not ActionKind.RESIZE:
            raise InvalidActionError(
                f"action {action.action_id}: the placement-group actuator resizes; "
                f"{action.kind.value} goes to the Serve actuator"
            )
        managed = self.actors.get(action.container)
        if managed is None:
            return make_result(
                action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                f"refused: {action.container!r} is not a managed actor "
                f"(managed: {', '.join(sorted(self.actors)) or 'none'}); nothing touched",
            )
        old = managed.bundle
        target = old.with_limit(action.tier, action.new_limit)
        try:
            report = managed.resize(target, ready_timeout_s=self.ready_timeout_s,
                                    replace_timeout_s=self.replace_timeout_s,
                                    precheck_room=self.precheck_room)
        except Exception as exc:  # noqa: BLE001 - ResizeError, ManagedActorDown, Ray errors
            return self._failed(action, managed, old, f"{type(exc).__name__}: {exc}")
        self.reports[action.action_id] = report
        if report.mode == "unchanged":
            reason = f"already at bundle {old}; nothing to move"
        else:
            notes = f" ({'; '.join(report.notes)})" if report.notes else ""
            reason = (
                f"moved {report.mode}{notes}: bundle {report.old_bundle} → {report.new_bundle} "
                f"(read back); old group {'removed' if report.old_group_removed else 'NOT removed'}"
                f"; calls held {report.unavailable_s:.3f} s; took {report.elapsed_s:.2f} s"
            )
        return make_result(action, ResultStatus.APPLIED, old.limit(action.tier),
                           report.new_bundle.limit(action.tier), reason)

    @staticmethod
    def _failed(action: ScalingAction, managed: ManagedActor, old: Bundle,
                error: str) -> ActionResult:
        try:
            now = managed.read_bundle().limit(action.tier) if managed.running else math.nan
        except Exception:  # noqa: BLE001 - cannot read back: say so with nan
            now = math.nan
        return make_result(action, ResultStatus.FAILED, old.limit(action.tier), now, error)


__all__ = [
    "Bundle",
    "ManagedActor",
    "ManagedActorDown",
    "PlacementGroupActuator",
    "ResizeError",
    "ResizeReport",
    "StatefulWorkload",
    "shortfall",
]
