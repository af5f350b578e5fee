"""From a resource to the plan of its workload: what it needs, what is missing, the resolved spec.

Three pure steps, so each can be tested with plain objects:
`needs_of` lists what must exist before the workload may start (upstream resources, secrets,
ConfigMaps, PVCs, the workload service account); the reconciler fetches those; `find_problems`
says what is missing or not ready; `plan_workload` writes the *resolved spec* (absolute output
directory, references replaced by paths on the artefact volume) and the volumes it needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from llmft.api.common import (
    PUBLIC_HUB_URL,
    SECRET_OPT_IN_LABEL,
    ArtifactLocation,
    ClusterSource,
    Phase,
    SecretEnv,
    SecretKeyRef,
)
from llmft.api.kinds import KINDS
from llmft.api.references import Reference, marked, references
from llmft.api.resolve import (
    ResolveError,
    Upstream,
    apply_cluster_defaults,
    manifest_of,
    resolve_resource,
)
from llmft.api.resource import ManifestError, Resource, parse_resource
from llmft_operator.naming import spec_configmap_name
from llmft_operator.settings import OperatorSettings

INPUTS_MOUNT_ROOT = "/mnt/llmft/inputs"
# Inputs only `llmft run` can read (a path on the user's machine), and what to use instead.
LOCAL_ONLY_FIELDS = {
    "spec.source.path": "a local directory is read by `llmft run` only; on a cluster use "
    "spec.source.configMap, spec.source.pvc or spec.source.urls",
}
SPEC_KEY = "spec.json"


@dataclass(frozen=True)
class SecretUse:
    """A secret key handed to the workload as an environment variable, and where it is sent."""

    env: str
    ref: SecretKeyRef
    field: str
    endpoint: str = PUBLIC_HUB_URL


@dataclass(frozen=True)
class Needs:
    """Everything that must exist before the workload of a resource may start."""

    upstream: tuple[Reference, ...] = ()
    secrets: tuple[SecretUse, ...] = ()
    config_maps: tuple[tuple[str, str], ...] = ()  # (name, field)
    claims: tuple[tuple[str, str], ...] = ()  # (PVC name, field)
    service_account: str = ""
    # Where a secret may be sent (scheme://host[:port] prefixes); empty: anywhere.
    allowed_endpoints: tuple[str, ...] = ()


@dataclass
class Fetched:
    """What the reconciler found for a resource's needs (None: not found).

    Secrets are recorded by their key names only: the operator never holds their values.
    """

    resources: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    upstream_specs: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    # The Job of each succeeded upstream, if it still exists (a finished Job expires).
    upstream_jobs: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    secret_keys: dict[str, frozenset[str] | None] = field(default_factory=dict)
    # Secrets labelled SECRET_OPT_IN_LABEL=true (assumed when RBAC forbids reading Secrets).
    secrets_opted_in: dict[str, bool] = field(default_factory=dict)
    config_maps: dict[str, bool] = field(default_factory=dict)
    claims: dict[str, bool] = field(default_factory=dict)
    service_account: bool = True


@dataclass(frozen=True)
class Problem:
    """Why the workload cannot start yet; `reason` is a condition reason."""

    reason: str
    message: str


@dataclass(frozen=True)
class ClaimMount:
    """A PersistentVolumeClaim mounted into the workload pod."""

    claim: str
    mount_path: str
    read_only: bool


@dataclass(frozen=True)
class WorkloadPlan:
    """Everything the Job and ConfigMap builders need, decided; builders add no policy."""

    kind: str
    name: str
    namespace: str
    generation: int
    manifest: dict[str, Any]
    resource: Resource[Any]
    artifacts: ArtifactLocation
    claims: tuple[ClaimMount, ...]
    secrets: tuple[SecretUse, ...]
    documents_config_map: str | None = None
    documents_claim: str | None = None

    @property
    def spec_json(self) -> str:
        return json.dumps(self.manifest, indent=2, sort_keys=True)


def output_pvc(res: Resource[Any], settings: OperatorSettings) -> str:
    return res.spec.output.pvc or settings.artifact_pvc


def output_location(res: Resource[Any], settings: OperatorSettings) -> ArtifactLocation:
    """The PVC and directory (relative to its root) a resource's workload writes to."""
    pvc = output_pvc(res, settings)
    default = KINDS[res.kind].default_output_path(res.metadata.name)
    rel = (res.spec.output.path or default).strip("/")
    return ArtifactLocation(pvc=pvc, path=rel, uri=f"pvc://{pvc}/{rel}")


def _secret_uses(res: Resource[Any]) -> list[SecretUse]:
    """The secrets `res`'s workload gets, from the spec's SecretEnv fields, in field order."""
    uses: list[SecretUse] = []
    for m, role in marked(res.spec, SecretEnv):
        indexes = re.findall(r"\[(\d+)\]", m.field)
        env = role.env.format(index=indexes[-1] if indexes else "")
        endpoint = (getattr(m.obj, role.endpoint) if role.endpoint else None) or PUBLIC_HUB_URL
        uses.append(SecretUse(env, m.value, m.field, endpoint))
    # One variable holds one value: the first reference to a variable wins, the others must agree.
    first: dict[str, SecretUse] = {}
    for use in uses:
        first.setdefault(use.env, use)
    return [u for u in uses if first[u.env] is u or first[u.env].ref != u.ref] if uses else []


def needs_of(res: Resource[Any], settings: OperatorSettings) -> Needs:
    """What must exist before `res`'s workload may start."""
    spec = res.spec
    upstream: list[Reference] = []
    config_maps: list[tuple[str, str]] = []
    claims = [(output_pvc(res, settings), "spec.output.pvc")]
    for m, source in marked(spec, ClusterSource):
        (config_maps if source.object_kind == "ConfigMap" else claims).append((m.value, m.field))
    for ref in references(spec):
        if (ref.kind, ref.name) not in {(u.kind, u.name) for u in upstream}:
            upstream.append(ref)
    # Secrets go where the workload will really send them: after the cluster's service defaults.
    effective = res.model_copy(deep=True)
    _apply_service_defaults(effective, settings)
    allowed = settings.allowed_endpoints
    if allowed:
        # The cluster's own services (from Helm) are trusted as much as the listed endpoints.
        allowed += tuple(u for u in (settings.ollama_host, settings.weaviate_url) if u)
    return Needs(
        upstream=tuple(upstream),
        secrets=tuple(_secret_uses(effective)),
        config_maps=tuple(config_maps),
        claims=tuple(dict.fromkeys(claims)),
        service_account=settings.workload_service_account,
        allowed_endpoints=allowed,
    )


def endpoint_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """Whether `url` has the scheme, host and port of an allowed endpoint, under its path."""
    if not allowed:
        return True
    target = urlsplit(url)
    for entry in allowed:
        base = urlsplit(entry)
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
            continue
        prefix = base.path.rstrip("/")
        if target.path == prefix or target.path.startswith(prefix + "/") or not prefix:
            return True
    return False


def _upstream_problem(
    ref: Reference,
    body: dict[str, Any] | None,
    namespace: str,
    job_outcome: dict[str, Any] | None = None,
) -> Problem | None:
    what = f"{ref.kind} {ref.name!r} ({ref.field})"
    if body is None:
        return Problem("ReferenceNotFound", f"{what} not found in namespace {namespace}")
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase == Phase.FAILED.value:
        detail = status.get("message") or "no message"
        return Problem(
            "UpstreamFailed",
            f"{what} failed: {detail}; re-create it to let this resource continue",
        )
    if phase != Phase.SUCCEEDED.value:
        percent = (status.get("progress") or {}).get("percent")
        done = f", {percent}%" if percent is not None else ""
        return Problem(
            "UpstreamNotReady", f"waiting for {what} to succeed (phase {phase or 'Pending'}{done})"
        )
    job = job_outcome
    if job is not None and not _job_complete(job, body):
        # Only the operator decides Succeeded, from the Job; a Job that exists and has not
        # completed means the phase was not written by it.
        return Problem(
            "UpstreamNotReady",
            f"{what} has phase Succeeded but its Job {job['metadata']['name']} has not "
            "completed; waiting for the Job",
        )
    try:
        parse_resource(body)
    except ManifestError as err:
        return Problem("UpstreamInvalid", f"{what}: its spec is no longer valid: {err}")
    return None


def _job_complete(job: dict[str, Any], owner: dict[str, Any]) -> bool:
    owner_uid = (owner.get("metadata") or {}).get("uid")
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    if owner_uid and owner_uid not in {r.get("uid") for r in refs}:
        return False
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions)


def upstream_location(body: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """Where an upstream resource's workload wrote: computed from its spec, as when its Job was
    created, and never read from its status (which a workload pod may patch)."""
    return output_location(parse_resource(body), settings).model_dump()


def find_problems(needs: Needs, fetched: Fetched, namespace: str) -> list[Problem]:
    """Everything that keeps the workload from starting; empty when it may start."""
    problems: list[Problem] = []
    # Failures first: a failed upstream is the most useful thing to read in the status.
    upstream = [
        p
        for ref in needs.upstream
        if (
            p := _upstream_problem(
                ref,
                fetched.resources.get((ref.kind, ref.name)),
                namespace,
                fetched.upstream_jobs.get((ref.kind, ref.name)),
            )
        )
    ]
    upstream.sort(key=lambda p: {"UpstreamFailed": 0, "ReferenceNotFound": 1}.get(p.reason, 2))
    problems.extend(upstream)
    first_use: dict[str, SecretUse] = {}
    for use in needs.secrets:
        other = first_use.setdefault(use.env, use)
        if other.ref != use.ref:
            problems.append(
                Problem(
                    "ConflictingSecrets",
                    f"{use.field} and {other.field} name different secrets for {use.env}; "
                    "one pod gets one value: reference the same secret key",
                )
            )
    for use in needs.secrets:
        keys = fetched.secret_keys.get(use.ref.name)
        if keys is None:
            problems.append(
                Problem(
                    "SecretNotFound",
                    f"Secret {use.ref.name!r} ({use.field}) not found in namespace {namespace}",
                )
            )
        elif use.ref.key not in keys:
            problems.append(
                Problem(
                    "SecretKeyNotFound",
                    f"Secret {use.ref.name!r} has no key {use.ref.key!r} ({use.field})",
                )
            )
        elif not fetched.secrets_opted_in.get(use.ref.name, False):
            problems.append(
                Problem(
                    "SecretNotAllowed",
                    f"Secret {use.ref.name!r} ({use.field}) is not labelled "
                    f"{SECRET_OPT_IN_LABEL}=true; its owner allows llmft workloads to use it with "
                    f"`kubectl label secret {use.ref.name} {SECRET_OPT_IN_LABEL}=true`",
                )
            )
        if not endpoint_allowed(use.endpoint, needs.allowed_endpoints):
            problems.append(
                Problem(
                    "EndpointNotAllowed",
                    f"{use.field}: the secret would be sent to {use.endpoint}, which is not among "
                    "the endpoints the operator allows (Helm value operator.allowedEndpoints)",
                )
            )
    for name, where in needs.config_maps:
        if not fetched.config_maps.get(name):
            problems.append(
                Problem(
                    "ConfigMapNotFound",
                    f"ConfigMap {name!r} ({where}) not found in namespace {namespace}",
                )
            )
    for name, where in needs.claims:
        if not fetched.claims.get(name):
            problems.append(
                Problem(
                    "PVCNotFound",
                    f"PersistentVolumeClaim {name!r} ({where} or the operator's artifact PVC) "
                    f"not found in namespace {namespace}",
                )
            )
    if not fetched.service_account:
        problems.append(
            Problem(
                "ServiceAccountNotFound",
                f"ServiceAccount {needs.service_account!r} for workload pods not found in "
                f"namespace {namespace} (the Helm chart creates it in the namespaces it is told "
                "about)",
            )
        )
    return problems


def _on_volume(path: str, mount: str) -> str:
    """A path from a spec as seen in the pod: relative paths are on the artefact volume."""
    return path if path.startswith("/") else str(PurePosixPath(mount) / path)


class _Mounts:
    """Mount points of the PVCs a workload reads and writes; its own output PVC at the root."""

    def __init__(self, own: str, settings: OperatorSettings) -> None:
        self.own = own
        self.settings = settings
        self.mounts: dict[str, ClaimMount] = {
            own: ClaimMount(own, settings.artifact_mount, read_only=False)
        }

    def path_of(self, location: dict[str, Any]) -> str:
        pvc, rel = location["pvc"], location["path"].strip("/")
        if pvc not in self.mounts:
            self.mounts[pvc] = ClaimMount(pvc, f"{INPUTS_MOUNT_ROOT}/{pvc}", read_only=True)
        return str(PurePosixPath(self.mounts[pvc].mount_path) / rel)


def _apply_service_defaults(res: Resource[Any], settings: OperatorSettings) -> None:
    # A field the manifest leaves unset takes the cluster's value (from Helm), so manifests stay
    # portable; a value written in the manifest wins, even one equal to the built-in default.
    apply_cluster_defaults(res.spec, lambda name: getattr(settings, name, None))


def _upstream_spec(fetched: Fetched, kind: str, name: str) -> dict[str, Any]:
    # What the upstream workload really ran with (its resolved spec); its live spec otherwise.
    resolved = fetched.upstream_specs.get((kind, name))
    if resolved:
        return dict(resolved.get("spec") or {})
    body = fetched.resources.get((kind, name)) or {}
    return dict(body.get("spec") or {})


class _PodBinding:
    """Where things are for a workload pod: PVCs mounted under the artefact mount."""

    def __init__(self, location: ArtifactLocation, fetched: Fetched, settings: OperatorSettings):
        self.location = location
        self.fetched = fetched
        self.settings = settings
        self.mounts = _Mounts(location.pvc, settings)
        self.sources: dict[str, str] = {}  # object kind (ConfigMap, PVC) -> name

    def output_dir(self, res: Resource[Any]) -> str:
        return self.mounts.path_of(self.location.model_dump())

    def upstream(self, ref: Reference) -> Upstream:
        body = self.fetched.resources.get((ref.kind, ref.name))
        if not body:  # find_problems refuses this before a plan is made
            raise ResolveError(f"{ref.field}: {ref.kind} {ref.name!r} not found")
        spec = _upstream_spec(self.fetched, ref.kind, ref.name)
        location = upstream_location(body, self.settings)
        return Upstream(output_dir=self.mounts.path_of(location), spec=spec)

    def input_path(self, value: str, field: str) -> str:
        if field in LOCAL_ONLY_FIELDS:
            raise ResolveError(f"{field}: {LOCAL_ONLY_FIELDS[field]}")
        return _on_volume(value, self.settings.artifact_mount)

    def model_name(self, value: str, field: str) -> str:
        return value

    def cluster_source(self, source: ClusterSource, value: str, field: str) -> None:
        self.sources[source.object_kind] = value


def plan_workload(
    res: Resource[Any], fetched: Fetched, settings: OperatorSettings, generation: int
) -> WorkloadPlan:
    """The resolved spec and volumes of `res`'s workload; call only when find_problems is empty."""
    location = output_location(res, settings)
    binding = _PodBinding(location, fetched, settings)
    res = resolve_resource(res, binding)
    _apply_service_defaults(res, settings)
    metadata = {
        "name": res.metadata.name,
        "namespace": res.metadata.namespace,
        "labels": dict(res.metadata.labels),
        "generation": generation,
    }
    uid = (res.metadata.model_extra or {}).get("uid")
    if uid:
        metadata["uid"] = uid  # tags the workload's MLflow run with the resource it belongs to
    return WorkloadPlan(
        kind=res.kind,
        name=res.metadata.name,
        namespace=res.metadata.namespace,
        generation=generation,
        manifest=manifest_of(res, metadata),
        resource=res,
        artifacts=location,
        claims=tuple(binding.mounts.mounts.values()),
        secrets=tuple(_secret_uses(res)),
        documents_config_map=binding.sources.get("ConfigMap"),
        documents_claim=binding.sources.get("PersistentVolumeClaim"),
    )


def upstream_spec_configmaps(needs: Needs) -> list[tuple[tuple[str, str], str]]:
    """(kind, name) of each upstream resource and the ConfigMap holding its resolved spec."""
    return [((r.kind, r.name), spec_configmap_name(r.kind, r.name)) for r in needs.upstream]
