"""The operator's cluster-specific settings, read once from environment variables (Helm values)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from urllib.parse import urlsplit

from llmft.api.common import DEFAULT_GPU_PRODUCT, GPU_PRODUCT_LABEL, GPU_RESOURCE
from llmft.api.kinds import KINDS

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class SettingsError(ValueError):
    """An environment variable with a value the operator cannot use; the message names it."""


@functools.cache  # a lookup scans sys.path: once per process, not once per Job
def _version() -> str:
    try:
        return metadata.version("llmft")
    except metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True)
class OperatorSettings:
    """Everything cluster-specific the operator needs; the defaults suit a plain A10 cluster."""

    namespace: str | None = None
    images: Mapping[str, str] = field(default_factory=dict)
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    gpu_product: str = DEFAULT_GPU_PRODUCT
    gpu_product_label: str = GPU_PRODUCT_LABEL
    gpu_toleration_key: str = GPU_RESOURCE
    artifact_pvc: str = "llmft-artifacts"
    artifact_mount: str = "/artifacts"
    workload_service_account: str = "llmft-workload"
    job_ttl_seconds: int = 86400
    # Cluster-wide cap on a Job's run time when a resource sets none (0: no cap).
    job_deadline_seconds: int = 0
    ollama_host: str | None = None
    weaviate_url: str | None = None
    kueue_queue: str | None = None
    metrics_port: int = 9090
    # Endpoints a referenced secret may be sent to (URL prefixes); empty allows any.
    allowed_endpoints: tuple[str, ...] = ()

    def image_for(self, kind: str) -> str:
        """The workload image of a kind: as configured, else ghcr.io/llmft/<name>:<version>."""
        return self.images.get(kind) or f"ghcr.io/llmft/{KINDS.workload(kind).name}:{_version()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read the LLMFT_* variables; unset or empty ones keep their defaults."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def integer(name: str, default: int, minimum: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r}: expected an integer") from None
            if value < minimum:
                raise SettingsError(f"{name}={value}: must be at least {minimum}")
            return value

        images = {
            entry.kind: image
            for entry in KINDS.with_workload()
            if (image := get(KINDS.workload(entry.kind).image_setting))
        }
        pull_policy = get("LLMFT_IMAGE_PULL_POLICY") or "IfNotPresent"
        if pull_policy not in PULL_POLICIES:
            raise SettingsError(
                f"LLMFT_IMAGE_PULL_POLICY={pull_policy!r}: "
                f"expected one of {', '.join(PULL_POLICIES)}"
            )
        mount = get("LLMFT_ARTIFACT_MOUNT") or "/artifacts"
        if not mount.startswith("/"):
            raise SettingsError(f"LLMFT_ARTIFACT_MOUNT={mount!r}: must be an absolute path")
        pull_secrets = tuple(s.strip() for s in (get("LLMFT_IMAGE_PULL_SECRETS") or "").split(","))
        endpoints = tuple(
            e for e in (s.strip() for s in (get("LLMFT_ALLOWED_ENDPOINTS") or "").split(",")) if e
        )
        for endpoint in endpoints:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise SettingsError(
                    f"LLMFT_ALLOWED_ENDPOINTS: {endpoint!r} is not an http(s)://host[:port] URL"
                )
        return cls(
            namespace=get("LLMFT_NAMESPACE"),
            images=images,
            image_pull_policy=pull_policy,
            image_pull_secrets=tuple(s for s in pull_secrets if s),
            gpu_product=get("LLMFT_GPU_PRODUCT") or DEFAULT_GPU_PRODUCT,
            gpu_product_label=get("LLMFT_GPU_PRODUCT_LABEL") or GPU_PRODUCT_LABEL,
            gpu_toleration_key=get("LLMFT_GPU_TOLERATION_KEY") or GPU_RESOURCE,
            artifact_pvc=get("LLMFT_ARTIFACT_PVC") or "llmft-artifacts",
            artifact_mount=mount.rstrip("/") or "/",
            workload_service_account=get("LLMFT_WORKLOAD_SERVICE_ACCOUNT") or "llmft-workload",
            job_ttl_seconds=integer("LLMFT_JOB_TTL_SECONDS", 86400, 0),
            job_deadline_seconds=integer("LLMFT_JOB_DEADLINE_SECONDS", 0, 0),
            ollama_host=get("LLMFT_OLLAMA_HOST"),
            weaviate_url=get("LLMFT_WEAVIATE_URL"),
            kueue_queue=get("LLMFT_KUEUE_QUEUE"),
            metrics_port=integer("LLMFT_METRICS_PORT", 9090, 0),
            allowed_endpoints=endpoints,
        )


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
