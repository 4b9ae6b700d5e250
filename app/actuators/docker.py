"""Docker actuator: resize a running container in place through the Engine's update
endpoint (``POST /containers/{id}/update``, what ``docker update`` calls).

An I/O edge over the ``docker`` SDK (shared pieces: :mod:`app.edges.docker_engine`).
One :class:`~app.core.actions.ScalingAction` of kind ``resize``:

* **memory** (bytes) → ``Memory``, with ``MemorySwap`` (memory + swap) moved along so
  the container keeps its swap allowance (:func:`~app.edges.docker_engine.memswap_for`;
  the Engine refuses a memory limit above the memswap limit in force). Example: memory
  48 MiB, memswap 96 MiB (``docker run -m 48m`` sets twice), new 64 MiB → ``Memory``
  64 MiB, ``MemorySwap`` 112 MiB.
* **cpu** (cores) → ``CpuQuota`` = round(cores × period), at least 1000 µs, with the
  container's ``CpuPeriod`` (100000 µs when unset); a container started with ``--cpus``
  gets ``NanoCpus`` = round(cores × 1e9) instead (the Engine refuses a quota there).
  Example: 0.25 cores, period 100000 → ``CpuQuota`` 25000.

Before anything is sent, the action and the container are checked, and nothing is
changed when a check fails:

* a bad value (not finite, ≤ 0, a memory limit under the Engine's 6 MiB minimum, a
  kind other than resize) raises :class:`~app.actuators.base.InvalidActionError`;
* a container that does not carry the source's label (``prescale.enable=true``) is
  ``DENIED``: prescale acts only on the containers it was told about;
* a container that does not exist or does not run is ``FAILED``.

After the update the limit is **read back** from the container: its cgroup file when
this host can see it (what the kernel enforces, rounded down to a page), else the
Engine's inspect. Writing the limit already in force sends nothing (``APPLIED``, old ==
new). Idempotent by ``action_id`` (:class:`~app.actuators.base.IdempotentActuator`).
A daemon that cannot be reached raises (the retry wrapper retries, then reports
``FAILED`` naming the daemon).
"""

from __future__ import annotations

import math
from typing import Any

from prescale.app.actuators.base import (
    IdempotentActuator,
    InvalidActionError,
    fmt_limit,
    make_result,
)
from prescale.app.core.actions import ActionKind, ActionResult, ResultStatus, ScalingAction
from prescale.app.core.sample import Tier
from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroupfs import cpu_quota_cores_at, memory_limit_at
from prescale.app.edges.docker_engine import (
    DEFAULT_CPU_PERIOD_US,
    DEFAULT_LABEL,
    MIN_MEMORY_BYTES,
    DockerEngineError,
    LabelSelector,
    cgroup_dirs_of_pid,
    connect,
    docker_host,
    engine_error_text,
    limits_of,
    memswap_for,
)


def check_docker_action(action: ScalingAction) -> None:
    """What the Engine would refuse, refused before anything is sent
    (:class:`InvalidActionError` naming the value): only ``resize``; memory at least
    :data:`~app.edges.docker_engine.MIN_MEMORY_BYTES` (6 MiB); the memory and cpu tiers
    only. Example: a memory resize
    to 4 MiB → "below the Docker Engine's minimum of 6 MiB"."""
    if action.kind is not ActionKind.RESIZE:
        raise InvalidActionError(
            f"action {action.action_id}: a Docker container cannot {action.kind.value} "
            "(only resize: memory or cpu)")
    if action.tier not in (Tier.MEMORY, Tier.CPU):
        raise InvalidActionError(
            f"action {action.action_id}: the Docker Engine resizes memory and cpu only, "
            f"not {action.tier.value}")
    if action.tier is Tier.MEMORY and action.new_limit < MIN_MEMORY_BYTES:
        raise InvalidActionError(
            f"action {action.action_id}: memory limit {fmt_limit(action.new_limit)} bytes is "
            f"below the Docker Engine's minimum of {MIN_MEMORY_BYTES} bytes (6 MiB)")


class DockerActuator(IdempotentActuator):
    """Resizes the labelled containers of one Docker daemon.

    Example::

        actuator = DockerActuator("unix:///var/run/docker.sock")
        actuator.apply(ScalingAction("a1", "leaker", Tier.MEMORY, ActionKind.RESIZE,
                                     50331648, 100663296, "predicted OOM"))
        # → APPLIED, old 48 MiB, new 96 MiB (read back from memory.limit_in_bytes)
    """

    kind = "docker"

    def __init__(self, host: str | None = None, label: str = DEFAULT_LABEL,
                 timeout_s: float = 10.0) -> None:
        super().__init__()
        self.host = docker_host(host)
        self.selector = LabelSelector.parse(label)
        self.timeout_s = float(timeout_s)
        self._api: Any = None

    def _client(self):
        if self._api is None:
            self._api = connect(self.host, self.timeout_s)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
        self._api = None

    def apply(self, action: ScalingAction) -> ActionResult:
        if isinstance(action, ScalingAction):
            check_docker_action(action)
        return super().apply(action)

    # -- acting

    def _apply(self, action: ScalingAction) -> ActionResult:
        from docker.errors import DockerException, NotFound
        from requests import RequestException

        api = self._client()
        try:
            info = api.inspect_container(action.container)
        except NotFound:
            return make_result(action, ResultStatus.FAILED, action.old_limit, action.old_limit,
                               f"no Docker container {action.container!r} on {self.host}")
        except (DockerException, RequestException) as exc:
            self._api = None
            raise DockerEngineError(f"Docker daemon at {self.host}: "
                                    f"{engine_error_text(exc)}") from None
        labels = (info.get("Config") or {}).get("Labels") or {}
        if not self.selector.matches(labels):
            return make_result(action, ResultStatus.DENIED, action.old_limit, action.old_limit,
                               f"container {action.container!r} does not carry the label "
                               f"{self.selector}: prescale does not act on it")
        state = info.get("State") or {}
        if not state.get("Running"):
            return make_result(action, ResultStatus.FAILED, action.old_limit, action.old_limit,
                               f"container {action.container!r} is not running "
                               f"({state.get('Status', '?')})")
        cid = info["Id"]
        hc = info.get("HostConfig") or {}
        old = self._read_back(api, cid, info, action.tier)
        if action.tier is Tier.MEMORY:
            new_bytes = int(action.new_limit)
            if int(hc.get("Memory") or 0) == new_bytes:
                return make_result(action, ResultStatus.APPLIED, old, old,
                                   "already the container's memory limit: nothing sent")
            memswap = memswap_for(new_bytes, int(hc.get("Memory") or 0),
                                  int(hc.get("MemorySwap") or 0))
            what = f"Memory {new_bytes}, MemorySwap {memswap}"
            call = lambda: api.update_container(  # noqa: E731
                cid, mem_limit=new_bytes, memswap_limit=memswap)
        else:
            nano = int(hc.get("NanoCpus") or 0)
            if nano > 0:
                value = max(1, round(float(action.new_limit) * 1e9))
                if value == nano:
                    return make_result(action, ResultStatus.APPLIED, old, old,
                                       "already the container's NanoCpus: nothing sent")
                what = f"NanoCpus {value}"
                call = lambda: _update_raw(api, cid, {"NanoCpus": value})  # noqa: E731
            else:
                period = int(hc.get("CpuPeriod") or 0) or DEFAULT_CPU_PERIOD_US
                quota = lay.quota_us_for_cores(float(action.new_limit), period)
                if int(hc.get("CpuQuota") or 0) == quota:
                    return make_result(action, ResultStatus.APPLIED, old, old,
                                       "already the container's CpuQuota: nothing sent")
                what = f"CpuQuota {quota} (CpuPeriod {period})"
                call = lambda: api.update_container(  # noqa: E731
                    cid, cpu_quota=quota, cpu_period=period)
        try:
            call()
        except NotFound:
            return make_result(action, ResultStatus.FAILED, old, old,
                               f"container {action.container!r} was removed during the update")
        except DockerException as exc:  # the daemon refused: e.g. EBUSY below usage
            after = self._read_back(api, cid, None, action.tier)
            return make_result(action, ResultStatus.FAILED, old, after,
                               f"the Docker Engine refused {what}: {engine_error_text(exc)}")
        except RequestException as exc:
            self._api = None
            raise DockerEngineError(f"Docker daemon at {self.host}: "
                                    f"{engine_error_text(exc)}") from None
        new = self._read_back(api, cid, None, action.tier)
        return make_result(action, ResultStatus.APPLIED, old, new,
                           f"{what} set through the Docker Engine and read back")

    # -- reading back

    def _read_back(self, api, cid: str, info: dict | None, tier: Tier) -> float:
        """The limit in force: the cgroup file when visible, else the inspect's."""
        try:
            if info is None:
                info = api.inspect_container(cid)
        except Exception:  # noqa: BLE001 - nothing readable: nan, as the cgroup actuator
            return math.nan
        pid = int((info.get("State") or {}).get("Pid") or 0)
        found = cgroup_dirs_of_pid(pid)
        if found is not None:
            version, dirs = found
            key = lay.controller_key(version, "memory" if tier is Tier.MEMORY else "cpu")
            d = dirs.get(key)
            if d is not None:
                try:
                    value = (memory_limit_at(version, d) if tier is Tier.MEMORY
                             else cpu_quota_cores_at(version, d))
                except (OSError, ValueError):
                    value = None
                if value is not None:
                    return float(value)
        limits = limits_of(info.get("HostConfig") or {})
        return limits["memory_limit_bytes" if tier is Tier.MEMORY else "cpu_quota_cores"]


def _update_raw(api, cid: str, body: dict) -> None:
    """``POST /containers/{id}/update`` with fields the SDK's ``update_container`` does
    not take (``NanoCpus``)."""
    res = api._post_json(api._url("/containers/{0}/update", cid), data=body)
    api._raise_for_status(res)


__all__ = ["DockerActuator", "check_docker_action"]
