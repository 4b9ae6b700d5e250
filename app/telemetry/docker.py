"""Docker containers as containers: the ones the Engine runs with prescale's label.

An I/O edge over the Docker Engine API (the ``docker`` SDK from PyPI; shared pieces in
:mod:`app.edges.docker_engine`). Each poll:

1. **Which**: ``GET /containers/json?filters={"label": ["prescale.enable=true"]}`` — the
   running containers that carry the label (``sources.docker_label``). A container seen
   for the first time is inspected once (its first process, its labels, its image).
2. **Name and app**: the container's name (``web-1``); its app is label
   ``prescale.app``, else the compose ``<project>/<service>``, else the image without
   its tag (:func:`~app.edges.docker_engine.app_of`). Every label stays on the record
   (:attr:`DockerSource.containers`, :meth:`DockerSource.labels_of`), so a per-workload
   policy can match them and a container's own ``prescale.*`` policy labels
   (``prescale.mode=recommend``, ``prescale.memory.max=2Gi``: :mod:`app.core.workloads`)
   reach the engine. Policy labels that do not parse are reported in the errors when
   the container is found (the engine holds that container back until they are fixed).
3. **Usage and limits**: from the container's own cgroup files when this host can see
   them (the daemon is local: ``/proc/<pid>/cgroup`` of its first process, read with
   the cgroup source's readers, :func:`~app.edges.cgroupfs.read_v1_quantities` — the
   same numbers the cgroup source gives, one directory listing and a few small files);
   otherwise the Engine's stats API (one-shot) plus the limits of an inspect
   (:func:`~app.edges.docker_engine.stats_quantities`, :func:`~app.edges.docker_engine.limits_of`).
4. **OOM kills**: the Engine's ``oom`` events since the previous poll
   (``GET /events?since=…&until=now&filters={"event":["oom"],…}``), one
   :class:`~app.core.sample.Event` each, also for a container that died of it (its
   cgroup and counter are gone by then). The cgroup's ``oom_kill`` counter stays in the
   samples (``oom_kills_total``) but is not turned into events a second time.
5. **Gone**: a container watched at the previous poll and no longer listed (removed,
   stopped, or its label taken off) is reported once in the errors, with why (inspect:
   "removed", or "exited with code 137 (OOM-killed)"), then forgotten: no error storm.

A daemon that cannot be reached raises :class:`~app.edges.docker_engine.DockerEngineError`
naming its address, which the monitor shows as ``errors["_source:docker"]`` while the
other sources go on; the next poll connects again.

Worked example: a container ``leaker`` (label ``prescale.enable=true``, image
``busybox:latest``, 48 MiB limit) using 30 MiB → one sample ``leaker``, app
``busybox``, ``memory_usage_bytes`` 30 MiB, ``memory_limit_bytes`` 48 MiB; when the
kernel kills in it, the next poll has one ``oom_kill`` event for ``leaker``.

Event times: the Engine stamps events with the daemon host's wall clock; they are moved
into the source's clock (``clock() − (time.time() − event time)``). A remote daemon
whose clock is ahead delays the events by that much.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prescale.app.core.sample import Event, EventKind, Sample, SourceBatch
from prescale.app.core.workloads import label_problems
from prescale.app.edges.cgroup_layout import UNIFIED, Version
from prescale.app.edges.cgroupfs import (
    CgroupError,
    CgroupNotFoundError,
    read_v1_quantities,
    read_v2_quantities,
)
from prescale.app.edges.docker_engine import (
    DEFAULT_LABEL,
    DockerEngineError,
    LabelSelector,
    app_of,
    cgroup_dirs_of_pid,
    close_quietly,
    connect,
    container_name,
    docker_host,
    engine_error_text,
    limits_of,
    stats_quantities,
)


@dataclass
class DockerContainer:
    """A watched container as the source knows it. ``dirs`` empty: read through the
    stats API (its cgroup is not visible from this host)."""

    id: str
    name: str
    app: str
    image: str
    labels: dict[str, str]
    pid: int
    version: Version | None = None
    dirs: dict[str, Path] = field(default_factory=dict)
    #: what is wrong with its ``prescale.*`` policy labels (reported when it is found)
    label_problems: tuple[str, ...] = ()

    @property
    def via(self) -> str:
        """``"cgroup"`` or ``"stats"``: where its numbers come from."""
        return "cgroup" if self.dirs else "stats"


def _engine_errors() -> tuple[type[BaseException], ...]:
    from docker.errors import DockerException
    from requests import RequestException

    return DockerException, RequestException, DockerEngineError


class DockerSource:
    """Samples and OOM events of the labelled containers of one Docker daemon.

    Example::

        source = DockerSource("unix:///var/run/docker.sock", label="prescale.enable=true")
        batch = source.poll()        # samples of every running labelled container
        source.labels_of("web-1")    # {"prescale.enable": "true", "prescale.app": "shop"}
    """

    kind = "docker"

    def __init__(self, host: str | None = None, label: str = DEFAULT_LABEL,
                 clock: Callable[[], float] = time.time, timeout_s: float = 10.0,
                 use_cgroups: bool = True) -> None:
        self.host = docker_host(host)
        self.selector = LabelSelector.parse(label)
        self.clock = clock
        self.timeout_s = float(timeout_s)
        self.use_cgroups = use_cgroups
        #: the watched containers by name (labels included), as of the last poll
        self.containers: dict[str, DockerContainer] = {}
        self._by_id: dict[str, DockerContainer] = {}
        self._api: Any = None
        self._events_since_s = time.time()
        self._seen_events: set[tuple[str, int, str]] = set()

    # -- what others ask

    def watches(self, name: str) -> bool:
        """Whether ``name`` is a container of this source (the monitor routes its
        resizes to the Docker actuator)."""
        return name in self.containers

    def labels_of(self, name: str) -> dict[str, str]:
        """The labels of watched container ``name`` (``{}`` when not watched)."""
        c = self.containers.get(name)
        return dict(c.labels) if c else {}

    # -- the daemon

    def _client(self):
        if self._api is None:
            self._api = connect(self.host, self.timeout_s)
        return self._api

    def _lost(self, exc: BaseException) -> DockerEngineError:
        close_quietly(self._api)
        self._api = None
        return DockerEngineError(f"Docker daemon at {self.host} is not reachable: "
                                 f"{engine_error_text(exc)}")

    # -- poll

    def poll(self) -> SourceBatch:
        """Samples of the labelled running containers, their ``oom`` events since the
        last poll, and errors (a container gone since the last poll, once; one that
        could not be read). Raises :class:`DockerEngineError` when the daemon is down."""
        errs = _engine_errors()
        api = self._client()
        now_wall_s = time.time()
        try:
            listed = api.containers(filters={"label": [self.selector.engine_filter()]})
        except errs as exc:
            raise self._lost(exc) from None
        samples: list[Sample] = []
        errors: dict[str, str] = {}
        current: dict[str, DockerContainer] = {}
        for summary in listed:
            cid = summary.get("Id", "")
            labels = dict(summary.get("Labels") or {})
            if not cid or not self.selector.matches(labels):
                continue
            record = self._by_id.get(cid)
            try:
                if record is None:
                    record = self._inspect_new(api, cid)
                    if record is None:
                        continue  # removed between the listing and the inspect
                    if record.label_problems:  # said once, when it is found
                        errors[record.name] = (f"docker container {record.name!r}: "
                                               f"{'; '.join(record.label_problems)}")
                current[cid] = record
                samples.append(self._sample(api, record))
            except (CgroupError, OSError, *errs) as exc:
                name = record.name if record else container_name(summary.get("Names"))
                errors[name] = f"docker container {name!r}: {engine_error_text(exc)}"
        for cid in set(self._by_id) - set(current):
            gone = self._by_id[cid]
            errors[gone.name] = (f"docker container {gone.name!r} ({cid[:12]}) is gone: "
                                 f"{self._why_gone(api, cid)}; no longer watched")
        self._by_id = current
        self.containers = {c.name: c for c in current.values()}
        events: list[Event] = []
        try:
            events = self._oom_events(api, now_wall_s)
        except errs as exc:
            errors["_events:docker"] = (f"Docker daemon at {self.host}: reading the "
                                        f"event stream failed: {engine_error_text(exc)}")
        return SourceBatch(samples, events, dict(sorted(errors.items())))

    def close(self) -> None:
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # noqa: BLE001
                pass
        self._api = None
        self._by_id.clear()
        self.containers = {}

    # -- one container

    def _inspect_new(self, api, cid: str) -> DockerContainer | None:
        from docker.errors import NotFound

        try:
            info = api.inspect_container(cid)
        except NotFound:
            return None
        config = info.get("Config") or {}
        labels = dict(config.get("Labels") or {})
        image = str(config.get("Image") or info.get("Image") or "")
        pid = int((info.get("State") or {}).get("Pid") or 0)
        record = DockerContainer(cid, container_name(info.get("Name")), app_of(labels, image),
                                 image, labels, pid)
        record.label_problems = label_problems(record.name, labels)
        if self.use_cgroups:
            found = cgroup_dirs_of_pid(pid)
            if found is not None:
                record.version, record.dirs = found
        return record

    def _sample(self, api, c: DockerContainer) -> Sample:
        ts = float(self.clock())
        if c.dirs:
            try:
                if c.version == "v2":
                    values = read_v2_quantities(c.dirs[UNIFIED])
                else:
                    values = read_v1_quantities(c.dirs)
                return Sample(container=c.name, ts_s=ts, app=c.app, **values)
            except CgroupNotFoundError:
                c.dirs = {}  # restarted elsewhere or moved: the Engine's numbers from now on
        info = api.inspect_container(c.id)
        values = stats_quantities(api.stats(c.id, stream=False, one_shot=True))
        values.update(limits_of(info.get("HostConfig") or {}))
        return Sample(container=c.name, ts_s=ts, app=c.app, **values)

    @staticmethod
    def _why_gone(api, cid: str) -> str:
        from docker.errors import NotFound

        try:
            state = (api.inspect_container(cid).get("State") or {})
        except NotFound:
            return "removed"
        except Exception as exc:  # noqa: BLE001 - only the wording depends on it
            return f"not listed any more (inspect failed: {engine_error_text(exc)})"
        status = state.get("Status", "?")
        if state.get("Running"):
            return "running, but no longer carries the label"
        code = state.get("ExitCode")
        oom = " (OOM-killed)" if state.get("OOMKilled") else ""
        return f"{status}, exit code {code}{oom}"

    # -- events

    def _oom_events(self, api, now_wall_s: float) -> list[Event]:
        """The Engine's ``oom`` events of labelled containers in (last poll, now]."""
        since_s, until_s = self._events_since_s, now_wall_s
        if until_s <= since_s:
            return []
        stream = api.events(since=f"{since_s:.9f}", until=f"{until_s:.9f}", decode=True,
                            filters={"type": "container", "event": ["oom"],
                                     "label": [self.selector.engine_filter()]})
        out: list[Event] = []
        seen: set[tuple[str, int, str]] = set()
        now_s = float(self.clock())
        try:
            for ev in stream:
                actor = ev.get("Actor") or {}
                attrs: Mapping[str, str] = actor.get("Attributes") or {}
                cid = str(actor.get("ID") or ev.get("id") or "")
                at_ns = int(ev.get("timeNano") or int(float(ev.get("time") or 0) * 1e9))
                key = (cid, at_ns, str(ev.get("Action") or ev.get("status") or ""))
                seen.add(key)
                if key in self._seen_events:
                    continue  # the boundary second, read twice
                name = attrs.get("name") or (self._by_id[cid].name if cid in self._by_id
                                             else cid[:12])
                app = app_of(attrs, attrs.get("image", ""))
                ts = now_s - max(0.0, now_wall_s - at_ns * 1e-9) if at_ns else now_s
                out.append(Event(name, ts if math.isfinite(ts) else now_s, EventKind.OOM_KILL,
                                 "Docker Engine oom event (the kernel's OOM killer ran in "
                                 "the container)", app))
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self._seen_events = seen
        self._events_since_s = until_s
        return out


__all__ = ["DockerContainer", "DockerSource"]
