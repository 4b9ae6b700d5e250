"""The Docker Engine, as the Docker source and the Docker actuator both see it.

An I/O edge below :mod:`app.telemetry.docker` and :mod:`app.actuators.docker`: how to
reach a daemon (:func:`connect`, the ``docker`` SDK from PyPI over its socket or TCP
address), which containers are prescale's (:class:`LabelSelector`), what a container is
called and which application it belongs to (:func:`container_name`, :func:`app_of`),
where its cgroup is on this host (:func:`cgroup_dirs_of_pid`), and the Engine's numbers
as :class:`~app.core.sample.Sample` quantities (:func:`limits_of`, :func:`stats_quantities`,
pure: dicts in, numbers out).

Scope: prescale reads and acts only on containers that carry the selector's label
(default ``prescale.enable=true``), never on the others of the same daemon.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prescale.app.edges import cgroup_layout as lay
from prescale.app.edges.cgroup_layout import UNIFIED, Version

#: where the Engine listens when neither the settings nor ``DOCKER_HOST`` say otherwise
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
#: the label a container carries to be watched, unless ``sources.docker_label`` says
DEFAULT_LABEL = "prescale.enable=true"
#: the label that names a container's application (else compose service, else image)
APP_LABEL = "prescale.app"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
#: the smallest memory limit the Engine accepts (``docker update -m``: "Minimum memory
#: limit allowed is 6MB")
MIN_MEMORY_BYTES = 6 * 2**20
#: the CFS period the Engine uses when a container sets none
DEFAULT_CPU_PERIOD_US = 100_000
#: the v1 controllers whose files a container's sample reads
V1_READ = ("memory", "cpu", "cpuacct", "blkio")


class DockerEngineError(Exception):
    """The daemon cannot be reached or refused a call; the message names the daemon."""


def docker_host(configured: str | None) -> str:
    """The daemon address: ``configured``, else ``$DOCKER_HOST``, else
    :data:`DEFAULT_DOCKER_HOST`. Example: ``None`` with ``DOCKER_HOST=tcp://h:2375`` →
    ``"tcp://h:2375"``."""
    return configured or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def connect(host: str, timeout_s: float = 10.0):
    """A low-level ``docker.APIClient`` of the daemon at ``host``; it negotiates the API
    version, so an unreachable daemon raises :class:`DockerEngineError` here, naming
    ``host``."""
    import docker  # the SDK: imported where it is used (the rest of prescale runs without)
    from docker.errors import DockerException

    try:
        return docker.APIClient(base_url=host, version="auto", timeout=timeout_s)
    except DockerException as exc:
        raise DockerEngineError(f"Docker daemon at {host} is not reachable: {exc}") from None


def close_quietly(api: Any) -> None:
    """Close a client from :func:`connect` that may be broken (its daemon gone): whatever
    closing it raises is ignored; ``None`` (no client yet) is nothing to close."""
    if api is not None:
        try:
            api.close()
        except Exception:  # noqa: BLE001 - closing a broken client
            pass


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelSelector:
    """``key=value`` (the label must have that value) or ``key`` (any value).

    Example: ``LabelSelector.parse("prescale.enable=true")`` matches ``{"prescale.enable":
    "true"}``, not ``{"prescale.enable": "false"}`` nor ``{}``.
    """

    key: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not key or any(c.isspace() for c in key) or (sep and not value.strip()):
            raise ValueError(
                f"docker label selector {text!r}: expected 'key=value' or 'key', "
                "e.g. 'prescale.enable=true'"
            )
        return cls(key, value.strip() if sep else None)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        if self.key not in labels:
            return False
        return self.value is None or labels[self.key] == self.value

    def engine_filter(self) -> str:
        """The Engine's ``label`` filter: ``"prescale.enable=true"``."""
        return self.key if self.value is None else f"{self.key}={self.value}"

    def __str__(self) -> str:
        return self.engine_filter()


# --------------------------------------------------------------------------- names


def container_name(names: Any) -> str:
    """A container's name from the Engine's ``Names`` (list) or ``Name`` (str), without
    the leading ``/``. Example: ``["/web-1"]`` → ``"web-1"``; ``"/db"`` → ``"db"``."""
    if isinstance(names, list | tuple):
        plain = [n.lstrip("/") for n in names if isinstance(n, str) and "/" not in n.lstrip("/")]
        names = plain[0] if plain else (names[0] if names else "")
    return str(names or "").lstrip("/")


def image_app(image: str) -> str:
    """An image reference without tag or digest, so an upgrade stays one app.
    Example: ``"registry:5000/team/web:1.2@sha256:ab"`` → ``"registry:5000/team/web"``;
    ``"redis:7"`` → ``"redis"``; ``"sha256:abcd"`` → ``"sha256:abcd"`` (an id stays)."""
    if image.startswith("sha256:"):
        return image
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def app_of(labels: Mapping[str, str] | None, image: str) -> str:
    """The application of a container: label ``prescale.app``; else the compose
    ``<project>/<service>``; else the image without its tag.

    Example: ``{"prescale.app": "shop"}`` → ``"shop"``; ``{"com.docker.compose.project":
    "demo", "com.docker.compose.service": "web"}`` → ``"demo/web"``; ``{}`` with image
    ``"redis:7"`` → ``"redis"``.
    """
    labels = labels or {}
    if labels.get(APP_LABEL):
        return labels[APP_LABEL]
    project, service = labels.get(COMPOSE_PROJECT), labels.get(COMPOSE_SERVICE)
    if project and service:
        return f"{project}/{service}"
    if project:
        return project
    return image_app(image or "")


# --------------------------------------------------------------------------- cgroups


def cgroup_dirs_of_pid(pid: int, proc: Path = Path("/proc"),
                       mountinfo: Path = Path("/proc/self/mountinfo")
                       ) -> tuple[Version, dict[str, Path]] | None:
    """Where the cgroup of process ``pid`` (a container's first process) lies on this
    host: ``("v1", {"memory": ..., "cpu": ..., ...})`` or ``("v2", {"unified": ...})``;
    None when it cannot be seen from here (another host, another cgroup namespace, the
    process gone) — then the Engine's stats API is read instead.

    Example: ``/proc/4242/cgroup`` ``4:memory:/p/abc`` with the memory hierarchy mounted
    at ``/sys/fs/cgroup/memory`` → ``{"memory": /sys/fs/cgroup/memory/p/abc, ...}``.
    """
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        own = lay.parse_proc_cgroup((proc / str(pid) / "cgroup").read_text())
        mounts = lay.parse_mountinfo(mountinfo.read_text())
    except OSError:
        return None
    dirs: dict[str, Path] = {}
    versions: set[Version] = set()
    for controller in V1_READ:
        found = lay.locate_cgroup(own, mounts, controller)
        if not isinstance(found, tuple):
            continue
        version, d, _mount = found
        if not d.is_dir():
            continue
        versions.add(version)
        dirs[UNIFIED if version == "v2" else controller] = d
    if len(versions) != 1 or ("memory" not in dirs and UNIFIED not in dirs):
        return None
    return versions.pop(), dirs


# --------------------------------------------------------------------------- numbers


def limits_of(host_config: Mapping[str, Any]) -> dict[str, float]:
    """The limits a container was given, from its inspect ``HostConfig``, as
    :class:`~app.core.sample.Sample` fields (0 means "none" to the Engine → inf).

    * ``memory_limit_bytes`` = ``Memory``;
    * ``cpu_quota_cores`` = ``NanoCpus`` / 1e9 when set (``--cpus``), else
      ``CpuQuota`` / ``CpuPeriod`` (period 100000 µs when unset).

    Example: ``{"Memory": 67108864, "CpuQuota": 50000, "CpuPeriod": 0}`` →
    ``memory_limit_bytes`` 67108864, ``cpu_quota_cores`` 0.5; ``{"NanoCpus":
    1500000000}`` → 1.5 cores; ``{}`` → inf and inf.
    """
    memory = int(host_config.get("Memory") or 0)
    nano = int(host_config.get("NanoCpus") or 0)
    quota = int(host_config.get("CpuQuota") or 0)
    period = int(host_config.get("CpuPeriod") or 0) or DEFAULT_CPU_PERIOD_US
    if nano > 0:
        cores = nano / 1e9
    elif quota > 0:
        cores = quota / period
    else:
        cores = math.inf
    return {"memory_limit_bytes": float(memory) if memory > 0 else math.inf,
            "cpu_quota_cores": cores}


def memswap_for(new_memory_bytes: int, old_memory_bytes: int, old_memswap_bytes: int) -> int:
    """The ``MemorySwap`` (memory + swap) to send with a new memory limit, keeping the
    container's swap allowance.

    The Engine refuses a memory limit above the memswap limit in force ("update the
    memoryswap at the same time"), and also a memory limit alone on a container that had
    none. Examples: memory 64 MiB, memswap 128 MiB (64 MiB of swap), new memory 96 MiB →
    160 MiB; memswap −1 (unlimited swap) → −1; memswap 0 (never set: no memsw limit in
    force) → −1, which keeps it so.
    """
    if old_memswap_bytes in (-1, 0):
        return -1
    if old_memory_bytes > 0:
        return new_memory_bytes + max(0, old_memswap_bytes - old_memory_bytes)
    return max(new_memory_bytes, old_memswap_bytes)


def _sum_blkio(entries: Any, op: str) -> float:
    if not entries:
        return math.nan
    return float(sum(int(e.get("value", 0)) for e in entries
                     if str(e.get("op", "")).lower() == op))


def stats_quantities(stats: Mapping[str, Any]) -> dict[str, float]:
    """One reading of the Engine's stats API (``GET /containers/{id}/stats?stream=false``)
    as :class:`~app.core.sample.Sample` fields (limits come from :func:`limits_of`).

    * ``memory_usage_bytes`` = ``memory_stats.usage``; working set = usage −
      ``total_inactive_file`` (v1) or ``inactive_file`` (v2), as cAdvisor;
    * ``cpu_usage_s_total`` = ``cpu_stats.cpu_usage.total_usage`` ns × 1e-9; throttling
      from ``cpu_stats.throttling_data``;
    * network bytes summed over ``networks``; block I/O from
      ``blkio_stats.io_service_bytes_recursive``.

    Example: ``{"memory_stats": {"usage": 104857600, "stats": {"total_inactive_file":
    31457280}}, "cpu_stats": {"cpu_usage": {"total_usage": 1500000000}}}`` →
    ``memory_usage_bytes`` 100 MiB, ``memory_working_set_bytes`` 70 MiB,
    ``cpu_usage_s_total`` 1.5; everything absent is nan.
    """
    mem = stats.get("memory_stats") or {}
    mstat = mem.get("stats") or {}
    usage = float(mem["usage"]) if "usage" in mem else math.nan
    inactive = mstat.get("total_inactive_file", mstat.get("inactive_file"))
    cpu = stats.get("cpu_stats") or {}
    total_ns = (cpu.get("cpu_usage") or {}).get("total_usage")
    thr = cpu.get("throttling_data") or {}
    nets = stats.get("networks") or {}
    blk = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive")

    def num(v: Any, scale: float = 1.0) -> float:
        return math.nan if v is None else float(v) * scale

    return {
        "memory_usage_bytes": usage,
        "memory_working_set_bytes": (math.nan if inactive is None or math.isnan(usage)
                                     else lay.working_set_bytes(usage, float(inactive))),
        "memory_failcnt_total": num(mem.get("failcnt")),
        "cpu_usage_s_total": num(total_ns, 1e-9),
        "cpu_periods_total": num(thr.get("periods")),
        "cpu_throttled_periods_total": num(thr.get("throttled_periods")),
        "cpu_throttled_s_total": num(thr.get("throttled_time"), 1e-9),
        "net_rx_bytes_total": (float(sum(int(n.get("rx_bytes", 0)) for n in nets.values()))
                               if nets else math.nan),
        "net_tx_bytes_total": (float(sum(int(n.get("tx_bytes", 0)) for n in nets.values()))
                               if nets else math.nan),
        "io_read_bytes_total": _sum_blkio(blk, "read"),
        "io_write_bytes_total": _sum_blkio(blk, "write"),
    }


def engine_error_text(exc: BaseException) -> str:
    """The daemon's own explanation of a refused call (``APIError.explanation``), else
    the exception's text. Example: a 409 with explanation "Conflicting options: ..." →
    ``"Conflicting options: ..."``."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation).strip()
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- PIDs


class DockerPids:
    """The first process (``State.Pid``) of the Docker containers whose volumes live in
    their own mount namespace (``sources.volumes = {"web": "docker:/data"}``), asked of
    the Engine at every use, so a restarted container is seen at once.

    Shared by the volume source and the volume actuator (the monitor gives both the
    same one): :attr:`seen` is the PID each container's volume was last read through,
    so a grow decided on a container that restarted since is refused, not applied to
    its new, fresh tmpfs.

    :meth:`pid_of` raises :class:`DockerEngineError` naming the container: not found,
    not carrying the selector's label (prescale acts only on its own), not running
    ("exited, exit code 0"), or a PID not of this host (a remote daemon, another PID
    namespace: ``/proc/<pid>/cgroup`` does not name the container).

    Example::

        pids = DockerPids("unix:///var/run/docker.sock")
        pids.pid_of("web")   # 4242
    """

    def __init__(self, host: str | None = None, label: str = DEFAULT_LABEL,
                 timeout_s: float = 10.0, proc: Path = Path("/proc")) -> None:
        self.host = docker_host(host)
        self.selector = LabelSelector.parse(label)
        self.timeout_s = float(timeout_s)
        self.proc = proc
        #: container name → the PID its volume was last read through
        self.seen: dict[str, int] = {}
        self._api: Any = None

    def pid_of(self, name: str) -> int:
        from docker.errors import DockerException, NotFound
        from requests import RequestException

        try:
            if self._api is None:
                self._api = connect(self.host, self.timeout_s)
            info = self._api.inspect_container(name)
        except NotFound:
            raise DockerEngineError(f"docker container {name!r} does not exist") from None
        except (DockerException, RequestException, DockerEngineError) as exc:
            self.close()
            raise DockerEngineError(f"Docker daemon at {self.host} is not reachable: "
                                    f"{engine_error_text(exc)}") from None
        labels = (info.get("Config") or {}).get("Labels") or {}
        if not self.selector.matches(labels):
            raise DockerEngineError(f"docker container {name!r} does not carry the label "
                                    f"{self.selector}: prescale does not act on it")
        state = info.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if not state.get("Running") or pid <= 0:
            raise DockerEngineError(f"docker container {name!r} is not running "
                                    f"({state.get('Status', '?')}, exit code "
                                    f"{state.get('ExitCode')})")
        cid = str(info.get("Id") or "")
        try:
            own = (self.proc / str(pid) / "cgroup").read_text()
        except OSError:
            own = ""
        if not cid or cid not in own:
            raise DockerEngineError(f"docker container {name!r}: its process {pid} is not "
                                    "visible on this host (a remote daemon, or another PID "
                                    "namespace), so its mounts cannot be reached")
        return pid

    def close(self) -> None:
        close_quietly(self._api)
        self._api = None
