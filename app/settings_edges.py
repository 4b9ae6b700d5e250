"""The settings groups for where data comes from and where it goes: the cgroups watched
and acted on, the other telemetry sources and process targets, the history store, the
model registry and retraining, the prediction API, Ray, and the demo's containers.

``models.tier``'s default reads the core's (``EngineConfig.model_tier``), as the decision
groups' defaults do (:mod:`prescale.app.settings_decisions`).
"""

from __future__ import annotations

import posixpath
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import ByteSize, Field, SecretStr, model_validator

from prescale.app.core.config import default_of
from prescale.app.core.engine import EngineConfig
from prescale.app.settings_base import Bytes, Fraction, Group, PositiveSeconds


class CgroupVersion(StrEnum):
    AUTO = "auto"
    V1 = "v1"
    V2 = "v2"


class CgroupSettings(Group):
    version: CgroupVersion = Field(
        CgroupVersion.AUTO, description="cgroup version of the watched containers (auto: detect)."
    )
    roots: list[Path] = Field(
        default_factory=list,
        description=(
            "Absolute cgroup directories prescale may read and act on, e.g. "
            "/sys/fs/cgroup/memory/prescale and /sys/fs/cgroup/cpu/prescale on v1. "
            "Anything outside them is refused."
        ),
    )
    allow_wide_roots: bool = Field(
        False,
        description=(
            "Accept a root that is a cgroup hierarchy's mount point (or holds one), that "
            "contains prescale's own cgroup, or that is not written normalised. Off: such "
            "a root is refused, naming why."
        ),
    )
    discover: bool = Field(
        True, description="Watch every direct child directory of the roots as a container."
    )
    watch: list[str] = Field(
        default_factory=list,
        description="Container names (child directory names under the roots) to watch explicitly.",
    )

    @model_validator(mode="after")
    def _absolute_roots(self) -> Self:
        for root in self.roots:
            if not root.is_absolute():
                raise ValueError(f"cgroup.roots: {str(root)!r} is not an absolute path")
        return self


class HistorySettings(Group):
    enabled: bool = Field(True, description="Store samples, events and decisions (Parquet).")
    uri: str | None = Field(
        None,
        description=(
            "Where the history lives: a directory or a pyarrow filesystem URI "
            "(file://, s3://, gs://, hdfs://); empty = <data_dir>/history."
        ),
    )
    flush_interval_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        5.0, description="Samples are buffered at most this long (lost on a hard crash)."
    )
    retention_days: Annotated[float, Field(gt=0, le=36_500)] = Field(
        30.0, description="Day partitions older than this are deleted."
    )
    compact_min_files: Annotated[int, Field(ge=2, le=100_000)] = Field(
        8, description="A partition with at least this many files is compacted into one."
    )


class ProcessTargetSettings(Group):
    name: str = Field(..., min_length=1, description="Container name of this process tree.")
    pid: Annotated[int, Field(gt=0)] | None = Field(None, description="Root process id.")
    match: str | None = Field(
        None, description="Regex on the command line (followed across restarts)."
    )
    app: str = Field("", description="Application the process belongs to.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.pid is None) == (self.match is None):
            raise ValueError(f"sources.processes[{self.name}]: give exactly one of pid or match")
        return self


class SourceSettings(Group):
    processes: list[ProcessTargetSettings] = Field(
        default_factory=list, description="Process trees to watch as containers (psutil)."
    )
    prometheus_url: str | None = Field(
        None, description="Prometheus base URL to read cAdvisor metrics from (empty: off)."
    )
    prometheus_selector: str = Field(
        "", description='Label matchers added to every Prometheus query, e.g. namespace="web".'
    )
    ray_workers: bool = Field(False, description="Watch the Ray actors on this node.")
    serve_deployments: bool = Field(
        False,
        description="Watch the Ray Serve deployments on this node, one container "
        "'<app>/<deployment>' each, sized per replica (app/telemetry/serve_deployments.py).",
    )
    serve_apps: list[Annotated[str, Field(min_length=1, pattern=r"^[^/\s]+$")]] = Field(
        default_factory=list,
        description="Ray Serve applications already running on the cluster (deployed with "
        "`serve deploy`) that prescale watches and, in auto mode, scales through their own "
        "config (num_replicas, ray_actor_options), as `serve deploy` would; one container "
        "'<app>/<deployment>' per deployment. Application names, or [\"*\"] for all; "
        "empty: none. Apps not listed are never touched (app/actuators/serve_config.py).",
    )
    serve_dashboard_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Ray dashboard URL whose Serve REST API (/api/serve/applications/) "
        "reads and deploys the serve_apps' config, e.g. http://127.0.0.1:8265 "
        "(empty: the connected cluster's dashboard, as Ray records it).",
    )
    managed_actors: bool = Field(
        False,
        description="Watch the Ray actors prescale manages in placement groups "
        "(registered with the workload actuators), one container per managed actor.",
    )
    volumes: dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(
        min_length=1, pattern=r"^(/|docker:)")]] = Field(
        default_factory=dict,
        description="Container → the mount point of its writable volume (a tmpfs with a "
        "size), or docker:<path> for a Docker container's own --tmpfs: its disk tier, "
        "grown live before it fills (app/telemetry/volumes.py).",
    )
    # A value may also be docker:<absolute path inside the container> (docker:/data: the
    # `--tmpfs /data` of the Docker container watched under this name; needs
    # sources.docker; read through its process's /proc/<pid>/root, grown with nsenter:
    # app/edges/container_tmpfs.py). Not in the description yet: the configuration reference
    # is generated from it (scripts/update_config_reference; docs/CONFIGURATION.md).
    links: dict[Annotated[str, Field(min_length=1)], Annotated[str, Field(
        min_length=1, max_length=15, pattern=r"^[A-Za-z0-9_.:-]+$")]] = Field(
        default_factory=dict,
        description="Container → the host side of its veth: its receive bandwidth limit "
        "(a TBF there) is its network tier, raised before it saturates "
        "(app/telemetry/links.py).",
    )
    docker: bool = Field(
        False,
        description="Watch the running Docker containers that carry docker_label, one "
        "container each (its name); resize them in auto mode through the Engine API "
        "(app/telemetry/docker.py, app/actuators/docker.py).",
    )
    docker_host: str | None = Field(
        None,
        description="Docker daemon address, e.g. unix:///var/run/docker.sock or "
        "tcp://host:2375 (empty: $DOCKER_HOST, else unix:///var/run/docker.sock).",
    )
    docker_label: str = Field(
        "prescale.enable=true",
        pattern=r"^[^=\s]+(=\S.*)?$",
        description="Label a container must carry to be watched and acted on: key=value "
        "or key. Label prescale.app names its app (else the compose service, else the image).",
    )
    docker_timeout_s: Annotated[float, Field(gt=0, le=300)] = Field(
        10.0, description="Timeout of one call to the Docker Engine."
    )
    simulated: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        0,
        description="Simulated containers per monitor (tests, benchmarks; "
        "app/telemetry/simulated.py): half leak memory, half are steady.",
    )
    simulated_leak_bytes_per_s: Bytes = Field(
        ByteSize(2 * 2**20), description="How fast the simulated leaking containers grow."
    )
    timings_spool: Path | None = Field(
        None, description="Spool file that applications' timed() blocks report to (empty: off)."
    )
    block_timeouts_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Per key-code-block timeout: a slower call is a timeout."
    )


    @model_validator(mode="after")
    def _docker_volumes(self) -> Self:
        in_docker = [n for n, p in self.volumes.items() if p.startswith("docker:")]
        for name in in_docker:
            inside = self.volumes[name].removeprefix("docker:")
            normal = posixpath.normpath(inside) if inside else ""
            if not inside.startswith("/") or inside != normal or inside.startswith("//") \
                    or inside == "/":
                raise ValueError(
                    f"sources.volumes[{name}]: {self.volumes[name]!r}: give docker:<absolute "
                    "mount point inside the container>, written normalised and not / "
                    "(e.g. docker:/data)")
        if in_docker and not self.docker:
            raise ValueError(
                f"sources.volumes: {', '.join(in_docker)} live in a Docker container "
                "(docker:<path>): set sources.docker = true (their processes are found "
                "through the Docker source's daemon)")
        return self


class ModelSettings(Group):
    enabled: bool = Field(
        True, description="Use registered per-app models where they exist (else the heuristic)."
    )
    registry_dir: Path | None = Field(
        None, description="Model registry directory; empty = <data_dir>/models."
    )
    tier: str = Field(
        default_of(EngineConfig, "model_tier").value,
        pattern="^(memory|cpu)$",
        description="Tier the models predict.",
    )
    retrain_interval_s: Annotated[float, Field(gt=0)] = Field(
        7 * 86_400.0, description="`prescale retrain` retrains a model at least this often."
    )
    min_live_precision: Fraction = Field(
        0.5, description="Retrain early when live precision (judged outcomes) drops below."
    )
    min_live_recall: Fraction = Field(
        0.5, description="Retrain early when live recall (judged outcomes) drops below."
    )
    live_window_n: int = Field(50, ge=1, le=100_000, description="Outcomes the live rates cover.")
    gate_margin_ap: Annotated[float, Field(ge=0, le=1)] = Field(
        0.01,
        description="A trained model becomes current only if its validation AP beats "
        "the current model's and the heuristic's by at least this, with the 95% bootstrap "
        "interval of the gain above 0 (app/models/gate.py).",
    )
    threshold_target: str = Field(
        "balance",
        pattern="^(balance|cost|precision)$",
        description="How a model's operating threshold is chosen on held-out data "
        "(app/models/operating_threshold.py): balance (where thresholds.cost_false_positive "
        "× FP reaches thresholds.cost_miss × FN: where the adaptive threshold settles), cost "
        "(the least c_fp·FP + c_miss·FN) or precision (the most recall at "
        "models.threshold_min_precision). A promoted model's threshold is where its app's "
        "adaptive threshold starts.",
    )
    threshold_min_precision: Fraction = Field(
        0.5, description="threshold_target = precision: the precision to keep."
    )
    retrain_live: bool = Field(
        True,
        description="The control loop schedules retraining (weekly, or on live "
        "precision/recall drift) as a background Ray task running Ray Tune.",
    )
    retrain_trials: int = Field(
        4, ge=1, le=1000, description="Ray Tune trials per scheduled retraining."
    )
    retrain_check_interval_s: Annotated[float, Field(gt=0)] = Field(
        60.0, description="How often the loop checks whether a retraining is due."
    )


class ApiSettings(Group):
    token: SecretStr | None = Field(
        None, description="Bearer token the prediction API requires (all but /healthz)."
    )
    max_body_bytes: Bytes = Field(
        ByteSize(8 * 2**20), description="Largest request body; larger ones get 413."
    )
    max_containers: int = Field(
        10_000, ge=1, le=1_000_000, description="Most containers per prediction request."
    )
    max_samples: int = Field(200_000, ge=1, le=100_000_000, description="Most samples per request.")
    model_poll_interval_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        5.0, description="Serve replicas re-read the model registry at most this often."
    )
    direct_ingress_port: Annotated[int, Field(ge=1024, le=65000)] | None = Field(
        None,
        description="`prescale serve` with an embedded Ray: each replica also serves HTTP "
        "itself (Ray Serve's direct ingress, no proxy actor in the path), on the first free "
        "port from this one up (at most 100 above; `prescale serve` prints them); the proxy "
        "still answers on --port. Measured here: a 2 MB echo 3-4x, 1,000-container Arrow requests "
        "1.5-2x the throughput through the proxy (docs/BENCHMARKS.md). Empty: off (Ray marks "
        "the feature as limited; a replica's port is its own, so more than one replica needs a "
        "load balancer in front).",
    )


class RaySettings(Group):
    address: str | None = Field(
        None, description="Ray cluster address; empty starts an embedded single-node Ray."
    )
    namespace: str = Field("prescale", min_length=1, description="Ray namespace of the actors.")
    num_cpus: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="CPUs of the embedded Ray (default: all)."
    )
    metrics_export_port: Annotated[int, Field(ge=1024, le=65535)] | None = Field(
        None,
        description="Port of the embedded Ray's metrics endpoint, which Prometheus "
        "scrapes (configs/prometheus/prometheus.yml); empty: a random port. On a cluster, "
        "`ray start --metrics-export-port` sets it per node.",
    )
    detached: bool = Field(
        False,
        description="Run the pool manager and coordinator as detached actors that "
        "outlive the driver (cluster mode: `python -m prescale.actors.controller`).",
    )


class DemoSettings(Group):
    duration_s: PositiveSeconds = Field(60.0, le=3600, description="Length of `prescale demo`.")
    leak_rate_bytes_per_s: Bytes = Field(
        ByteSize(4 * 2**20), description="How fast the demo's leaker grows."
    )
    leak_cap_bytes: Bytes = Field(
        ByteSize(400 * 2**20), description="The leaker stops growing here."
    )
    leaker_limit_bytes: Bytes = Field(ByteSize(128 * 2**20), description="Leaker's first limit.")
    steady_bytes: Bytes = Field(ByteSize(48 * 2**20), description="Steady service's memory.")
    steady_limit_bytes: Bytes = Field(ByteSize(128 * 2**20), description="Its limit.")
    hog_limit_bytes: Bytes = Field(ByteSize(64 * 2**20), description="CPU hog's memory limit.")
    cpu_quota_cores: Annotated[float, Field(gt=0, le=64)] = Field(
        0.25, description="First CPU quota of each demo container."
    )
