"""The one settings root: TOML file + ``PRESCALE_*`` environment variables.

Precedence (highest first): explicit overrides passed to :func:`load_settings`,
environment variables (``PRESCALE_POLICY__MARGIN_FRACTION=0.3``; nested groups are
separated by ``__``), the TOML file (``configs/local.toml`` by default), then the
defaults below. Sizes in bytes accept units: ``"128MiB"``, ``"2GB"``.

Settings are passed in, never read from a global.

The groups live by concept and are re-exported here, the public config API (import them
from this module): :mod:`prescale.app.settings_decisions` (predictor, thresholds, policy,
cost, oom, pool, contention, loop: their defaults read the pure core's config types,
``app/core/config.py``), :mod:`prescale.app.settings_edges` (cgroup, sources, history,
models, api, ray, demo), both on :mod:`prescale.app.settings_base`.
"""

from __future__ import annotations

import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from prescale.app.settings_decisions import (
    BoundsOverride,
    ContentionSettings,
    CostSettings,
    LoopSettings,
    OomSettings,
    PolicySettings,
    PoolSettings,
    PredictorSettings,
    ThresholdSettings,
)
from prescale.app.settings_edges import (
    ApiSettings,
    CgroupSettings,
    CgroupVersion,
    DemoSettings,
    HistorySettings,
    ModelSettings,
    ProcessTargetSettings,
    RaySettings,
    SourceSettings,
)
from prescale.app.settings_workloads import WorkloadSettings, check_unique

__all__ = [
    "CLUSTER_CONFIG_PATH",
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "Mode",
    "Settings",
    "load_settings",
    "reference_markdown",
    "ApiSettings",
    "BoundsOverride",
    "CgroupSettings",
    "CgroupVersion",
    "ContentionSettings",
    "CostSettings",
    "DemoSettings",
    "HistorySettings",
    "LoopSettings",
    "ModelSettings",
    "OomSettings",
    "PolicySettings",
    "PoolSettings",
    "PredictorSettings",
    "ProcessTargetSettings",
    "RaySettings",
    "SourceSettings",
    "ThresholdSettings",
]

#: The file read when no ``--config`` is given: ``configs/local.toml`` of the checkout, or
#: ``prescale/configs/local.toml`` of an installed package (the same relative place).
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "local.toml"
#: Cluster mode's default settings file (``python -m prescale.actors.controller``).
CLUSTER_CONFIG_PATH = DEFAULT_CONFIG_PATH.with_name("cluster.toml")


class Mode(StrEnum):
    """As in the Kubernetes VPA."""

    OFF = "off"  # observe only: sample and predict, decide nothing
    RECOMMEND = "recommend"  # decide and log, touch nothing
    AUTO = "auto"  # decide, log and apply


class Settings(BaseSettings):
    """Root of prescale's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PRESCALE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mode: Mode = Field(
        Mode.RECOMMEND,
        description="off: observe only; recommend: decide and log, touch nothing; auto: apply.",
    )
    data_dir: Path = Field(
        Path(".prescale"),
        description="Decision log, status and checkpoints (relative paths: to the working dir).",
    )
    loop: LoopSettings = LoopSettings()
    cgroup: CgroupSettings = CgroupSettings()
    predictor: PredictorSettings = PredictorSettings()
    thresholds: ThresholdSettings = ThresholdSettings()
    policy: PolicySettings = PolicySettings()
    cost: CostSettings = CostSettings()
    oom: OomSettings = OomSettings()
    pool: PoolSettings = PoolSettings()
    contention: ContentionSettings = ContentionSettings()
    history: HistorySettings = HistorySettings()
    sources: SourceSettings = SourceSettings()
    models: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()
    ray: RaySettings = RaySettings()
    demo: DemoSettings = DemoSettings()
    workloads: Annotated[list[WorkloadSettings], AfterValidator(check_unique)] = Field(
        default_factory=list,
        description="A policy per workload ([[workloads]]: match, mode, controlled, bounds, "
        "threshold, policy, tenant, weight).",
    )

    def registry_dir(self) -> Path:
        """``models.registry_dir``, or ``<data_dir>/models`` (absolute) when it is empty."""
        return Path(self.models.registry_dir or Path(self.data_dir).resolve() / "models")

    def history_uri(self) -> str:
        """``history.uri``, or ``<data_dir>/history`` (absolute) when it is empty."""
        return self.history.uri or str(Path(self.data_dir).resolve() / "history")


def reference_markdown() -> str:
    """The configuration reference as a Markdown table, generated from the fields of
    :class:`Settings` and its groups."""
    rows = ["| key | default | description |", "| --- | --- | --- |"]
    defaults = Settings.model_construct().model_dump(mode="json")

    def walk(model: type[BaseModel], prefix: str, values: dict[str, Any]) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.", values[name])
                continue
            desc = (info.description or "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | `{json.dumps(values[name])}` | {desc} |")

    walk(Settings, "", defaults)
    return "\n".join(rows) + "\n"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and field."""


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {field}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file at ``path`` (default :data:`DEFAULT_CONFIG_PATH`, shipped with
    the package) plus env. With no ``path`` and no default file, the built-in defaults
    plus env.

    Raises :class:`ConfigError` naming the file and field on any problem.
    """
    if path is None and not DEFAULT_CONFIG_PATH.is_file():
        try:
            return Settings.model_validate(Settings(**overrides).model_dump())
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, "PRESCALE_* env")) from exc
    toml_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not toml_path.is_file():
        raise ConfigError(f"config file not found: {toml_path}")
    try:
        with toml_path.open("rb") as fh:
            tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from exc

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
            )

    try:
        loaded = _FromFile(**overrides)
        # Re-validate as the plain root so the result pickles without the local class.
        return Settings.model_validate(loaded.model_dump())
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, f"{toml_path} + PRESCALE_* env")) from exc
