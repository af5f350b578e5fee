"""The operator's cluster-specific settings, read once from LLMFT_* environment variables (the
chart's values) by pydantic-settings."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from importlib import metadata
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llmft.api.common import DEFAULT_GPU_PRODUCT, GPU_PRODUCT_LABEL, GPU_RESOURCE
from llmft.api.kinds import KINDS

PREFIX = "LLMFT_"


class SettingsError(ValueError):
    """An environment variable with a value the operator cannot use; the message names it."""


@functools.cache  # a lookup scans sys.path: once per process, not once per Job
def _version() -> str:
    try:
        return metadata.version("llmft")
    except metadata.PackageNotFoundError:
        return "latest"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class OperatorSettings(BaseSettings):
    """Everything cluster-specific the operator needs; the defaults suit a plain A10 cluster.

    Each field is the variable LLMFT_<FIELD> (LLMFT_JOB_TTL_SECONDS, ...); an unset or empty
    one keeps its default. `images` comes from each workload's LLMFT_IMAGE_<NAME>.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, frozen=True)

    namespace: str | None = None
    images: Mapping[str, str] = Field(default_factory=dict)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: Annotated[tuple[str, ...], NoDecode] = ()
    gpu_product: str = DEFAULT_GPU_PRODUCT
    gpu_product_label: str = GPU_PRODUCT_LABEL
    gpu_toleration_key: str = GPU_RESOURCE
    artifact_pvc: str = "llmft-artifacts"
    artifact_mount: str = "/artifacts"
    workload_service_account: str = "llmft-workload"
    job_ttl_seconds: int = Field(default=86400, ge=0)
    # Cluster-wide cap on a Job's run time when a resource sets none (0: no cap).
    job_deadline_seconds: int = Field(default=0, ge=0)
    # Default of spec.resources.serviceWaitSeconds (None: the API's built-in 60 s).
    service_wait_seconds: int | None = Field(default=None, ge=1, le=3600)
    ollama_host: str | None = None
    weaviate_url: str | None = None
    kueue_queue: str | None = None
    metrics_port: int = Field(default=9090, ge=0)
    # Endpoints a referenced secret may be sent to (URL prefixes); empty allows any.
    allowed_endpoints: Annotated[tuple[str, ...], NoDecode] = ()

    _split_lists = field_validator("image_pull_secrets", "allowed_endpoints", mode="before")(
        _comma_list
    )

    @field_validator("artifact_mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value.rstrip("/") or "/"

    @field_validator("allowed_endpoints")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{endpoint!r} is not an http(s)://host[:port] URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructed directly (tests, tools), the settings are the arguments and defaults;
        # the environment is read by from_env only.
        return (init_settings,)

    def image_for(self, kind: str) -> str:
        """The workload image of a kind: as configured, else ghcr.io/llmft/<name>:<version>."""
        return self.images.get(kind) or f"ghcr.io/llmft/{KINDS.workload(kind).name}:{_version()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read the LLMFT_* variables (of `env`, else the process's); SettingsError names the
        variable whose value cannot be used."""
        values = _Environment(cls, os.environ if env is None else env)()
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            name = PREFIX + str(first["loc"][0]).upper() if first["loc"] else PREFIX
            given = values.get(str(first["loc"][0])) if first["loc"] else None
            raise SettingsError(f"{name}={given!r}: {_plain(first)}") from None


def _plain(error: Any) -> str:
    """A pydantic error as the operator's log says it."""
    ctx = error.get("ctx") or {}
    plain = {
        "int_parsing": "expected an integer",
        "int_type": "expected an integer",
        "int_from_float": "expected an integer",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "literal_error": f"expected one of {ctx.get('expected')}",
    }
    return plain.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")


class _Environment(EnvSettingsSource):
    """The LLMFT_* variables of a given environment, plus the per-kind images."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Each variable is asked for by name (the chart's test records which ones are read).
        names = [
            PREFIX + name.upper() for name in OperatorSettings.model_fields if name != "images"
        ]
        names += [entry.workload.image_setting for entry in KINDS.with_workload() if entry.workload]
        found = {name.lower(): (self.environ.get(name) or "").strip() for name in names}
        return {name: value for name, value in found.items() if value}

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        values.pop("images", None)
        images = {
            entry.kind: image
            for entry in KINDS.with_workload()
            if (image := self.env_vars.get(KINDS.workload(entry.kind).image_setting.lower()))
        }
        return {**values, "images": images} if images else values


def reconcile_interval(env: Mapping[str, str] | None = None) -> float:
    """Seconds between checks of an unfinished resource (LLMFT_RECONCILE_INTERVAL, default 10).

    Read at import time, apart from the other settings, because kopf's timer decorator needs it.
    """
    env = os.environ if env is None else env
    raw = env.get("LLMFT_RECONCILE_INTERVAL", "").strip() or "10"
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"LLMFT_RECONCILE_INTERVAL={raw!r}: expected seconds") from None
    if value <= 0:
        raise SettingsError(f"LLMFT_RECONCILE_INTERVAL={value}: must be positive")
    return value
