"""Types shared by every llmft kind: references, resources, outputs, status shapes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from llmft.api.layout import ENV_HF_PUSH_TOKEN, ENV_HF_TOKEN, ENV_MLFLOW_PASSWORD, ENV_MLFLOW_TOKEN
from llmft.families import FamilyName, SystemPromptHandling

GROUP = "llmft.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_GPU_PRODUCT = "NVIDIA-A10"
# Between SIGTERM and SIGKILL: about four QLoRA steps of an 8B model at its A10 preset (16k
# tokens per step) plus the checkpoint save.
DEFAULT_GRACE_SECONDS = 120
# How long a workload retries a service that does not answer (llmft.services): long enough for
# a pod that starts before the chart's Ollama or Weaviate is ready, or a server restarting.
DEFAULT_SERVICE_WAIT_SECONDS = 60
ENV_SERVICE_WAIT = "LLMFT_SERVICE_WAIT_SECONDS"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# A Secret may be handed to a workload only if it carries this label with value "true": whoever
# may create llmft objects cannot otherwise send any Secret of the namespace to an endpoint.
SECRET_OPT_IN_LABEL = f"{GROUP}/use-in-workloads"
PUBLIC_HUB_URL = "https://huggingface.co"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A Kubernetes object name (DNS subdomain): PVCs, ConfigMaps, Secrets.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# One path segment that is not "..", without whitespace. Written without look-arounds, which
# neither the API server's regular expressions (RE2) nor pydantic's (Rust regex) have, so the
# same pattern is enforced at `kubectl apply` and by every parse of a spec.
_SEGMENT = r"(?:[^/.\s][^/\s]*|\.|\.[^/.\s][^/\s]*|\.\.[^/\s]+)"
CONTAINED_PATH = rf"^(?:/?{_SEGMENT}(?:/{_SEGMENT})*/?)?$"
# A Hugging Face Hub URI (hf://[datasets/]owner/name[@revision][/folder]), read by the workload.
HF_SCHEME = "hf://"
CONTAINED_PATH_OR_HUB = rf"^(?:hf://[^\s]+|{CONTAINED_PATH[1:-1]})$"
# A non-negative Kubernetes quantity ("4", "500m", "24Gi", "1e3"), as the Job API accepts it.
QUANTITY = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][-+]?[0-9]+)?$"
# A label value (at most 63 characters), and a label or annotation key (a qualified name with an
# optional DNS-subdomain prefix).
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Pattern -> what it means, for error messages (pydantic would print the pattern itself).
PATTERN_MEANINGS = {
    CONTAINED_PATH: "must be a path without '..' segments, empty segments or whitespace",
    CONTAINED_PATH_OR_HUB: (
        "must be a path without '..' segments, empty segments or whitespace, or an hf:// Hub URI"
    ),
    DNS_SUBDOMAIN: "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')",
    QUANTITY: "must be a Kubernetes quantity such as 4, 500m or 24Gi",
    LABEL_VALUE: "must be a label value: at most 63 letters, digits, '-', '_' or '.'",
    QUALIFIED_NAME: "must be a label or annotation key such as example.com/name",
}

ContainedPath = Annotated[str, Field(pattern=CONTAINED_PATH, max_length=1024)]
"""A directory taken from a root (the artefact volume, the runner's artefact root): no segment
may be "..", so the path can never leave that root."""
ContainedPathOrHub = Annotated[str, Field(pattern=CONTAINED_PATH_OR_HUB, max_length=1024)]
"""A contained path, or a Hub repository as hf://[datasets/]owner/name[@revision][/folder]."""
ObjectName = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=64)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]
QualifiedName = Annotated[str, Field(pattern=QUALIFIED_NAME, max_length=317)]
# Free text a user writes into a spec (prompts, templates): bounded, so a spec always fits in the
# ConfigMap (1 MiB) the operator hands the workload.
FREE_TEXT_LIMIT = 65536


def cel_rules(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying CEL rules; the CRD generator writes them as x-kubernetes-validations.

    A rule spans fields of one object, so the API server refuses what pydantic's model validator
    would refuse, at `kubectl apply` time, with the same message.
    """
    extra: dict[str, Any] = {"x-kubernetes-validations": list(rules)}
    return ConfigDict(json_schema_extra=extra)


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule; `field_path` (e.g. ".overlapTokens") points the error at a field."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class FieldRole:
    """Base of the markers a spec field carries in `Annotated[...]` to say what it points at.

    Read by `llmft.api.references` (the walk) and `llmft.api.resolve` (the one resolver).
    """


@dataclass(frozen=True)
class Ref(FieldRole):
    """Marks a spec field that names another llmft resource of `kind` in the same namespace.

    Written once, on the field (`Annotated[str | None, Ref(...)]`), and read by everything that
    follows references: the kind registry, the runner's dependency graph, the operator's wait for
    inputs and the one resolver. Resolving sets the sibling field `fills` to the referenced
    resource's output directory (plus `subpath`), copies each `(field, upstreamField)` of
    `inherits` from the referenced resource's spec when this object leaves it unset, and clears
    the reference.
    """

    kind: str
    fills: str
    subpath: str = ""
    inherits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class InputPath(FieldRole):
    """Marks a path the workload reads. Relative paths are taken from the artefact volume on a
    cluster and from the manifest's directory under `llmft run` (where the path must exist)."""


@dataclass(frozen=True)
class ModelName(FieldRole):
    """Marks a model: a Hub id, `pkg:<package>`, or a path. A path written `./`, `../` or `~`
    is taken from the manifest's directory under `llmft run`; on a cluster it is used as is."""


@dataclass(frozen=True)
class ClusterSource(FieldRole):
    """Marks an input only a cluster has (a ConfigMap or a PVC), mounted into the pod at `mount`.
    The operator waits for the object and mounts it; `llmft run` refuses it."""

    object_kind: str
    mount: str


@dataclass(frozen=True)
class SecretEnv(FieldRole):
    """Marks a SecretKeyRef handed to the workload as the environment variable `env` (`{index}`
    is the index of the list item holding it); `endpoint` names the sibling field with the URL
    the secret is sent to (the public Hub when unset). The operator checks the Secret and the
    endpoint, and maps it into the pod; the value never appears in a spec, status or log."""

    env: str
    endpoint: str | None = None


@dataclass(frozen=True)
class ClusterDefault(FieldRole):
    """Marks a field that, when a manifest leaves it unset, takes the cluster's value: the
    operator setting `setting` (from Helm), where one is set and the `when` (field, value) pairs
    of the same object hold. A value written in the manifest always wins, even one equal to the
    built-in default; so the CRD carries no default for such a field (the API server would
    otherwise write it in), and `llmft run` uses the built-in default."""

    setting: str
    when: tuple[tuple[str, Any], ...] = ()


class ApiModel(BaseModel):
    """Base for API types: camelCase on the wire, unknown fields refused (typos fail loudly)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(ApiModel):
    """A key in a Secret of the resource's namespace; the value is never copied anywhere."""

    name: str = Field(description="Name of the Secret in the resource's namespace.", min_length=1)
    key: str = Field(description="Key within the Secret whose value is used.", min_length=1)


class HuggingFaceRepo(ApiModel):
    """Where on the Hugging Face Hub an artefact is pushed."""

    repo: str = Field(
        description="Repository id on the Hub, as owner/name.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$",
    )
    private: bool = Field(default=True, description="Create the repository as private.")
    token_secret_ref: Annotated[SecretKeyRef, SecretEnv(ENV_HF_PUSH_TOKEN, "endpoint")] = Field(
        description="Secret key holding a Hugging Face token with write access."
    )
    branch: str = Field(default="main", description="Branch (revision) to push to.")
    endpoint: str | None = Field(
        default=None, description="Hub endpoint URL; empty means the public Hugging Face Hub."
    )


class MlflowTracking(ApiModel):
    """An MLflow tracking server: each resource (each trial) is one run in an MLflow experiment."""

    tracking_uri: str = Field(
        description="MLflow tracking URI (http(s)://host:port, or a local path for llmft run).",
        min_length=1,
    )
    experiment_name: str | None = Field(
        default=None,
        description="MLflow experiment; empty: <namespace>/<name> of the Experiment or resource.",
    )
    token_secret_ref: Annotated[
        SecretKeyRef | None, SecretEnv(ENV_MLFLOW_TOKEN, "tracking_uri")
    ] = Field(default=None, description="Secret key with a bearer token (MLFLOW_TRACKING_TOKEN).")
    username: str | None = Field(default=None, description="Basic-auth user name.")
    password_secret_ref: Annotated[
        SecretKeyRef | None, SecretEnv(ENV_MLFLOW_PASSWORD, "tracking_uri")
    ] = Field(default=None, description="Secret key with the basic-auth password.")


class Tracking(ApiModel):
    """Experiment trackers besides the TensorBoard files a trainer always writes."""

    mlflow: MlflowTracking | None = Field(
        default=None,
        description="Log parameters, per-step and final metrics and artefact locations to MLflow.",
    )


class ModelSource(ApiModel):
    """A base model: a Hugging Face id or a path on the artefact volume or in the image."""

    name: Annotated[str, ModelName()] = Field(
        description=(
            "Hugging Face model id (owner/name, or hf://owner/name@revision), an absolute local "
            "path, or pkg:<package> for a model shipped in a Python package. Hub models are "
            "downloaded into the Hub cache on the artefact volume; status.outputs.sources "
            "records the commit read."
        ),
        min_length=1,
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).")
    gguf_file: str | None = Field(
        default=None,
        description="GGUF file inside the model directory or repo; transformers dequantises it.",
    )
    offline: bool = Field(
        default=False, description="Never contact the Hub; the model must already be local."
    )
    token_secret_ref: Annotated[SecretKeyRef | None, SecretEnv(ENV_HF_TOKEN)] = Field(
        default=None, description="Secret key holding a Hub token, for gated or private models."
    )
    chat_template: str | None = Field(
        default=None,
        description=(
            "Jinja chat template used instead of the tokenizer's own (or the family's, for "
            "models that ship none)."
        ),
        max_length=FREE_TEXT_LIMIT,
    )
    family: FamilyName | None = Field(
        default=None,
        description=(
            "Model family whose rules apply (system prompt, end-of-turn, stop and pad tokens, "
            "LoRA targets, A10 presets); empty detects it from config.json and the tokenizer."
        ),
    )
    system_prompt: SystemPromptHandling | None = Field(
        default=None,
        description=(
            "keep: send the system prompt as a system message; fold: join it to the first user "
            "turn; omit: drop it. Empty uses the family's rule."
        ),
    )
    end_of_turn: str | None = Field(
        default=None,
        description=(
            "Token that ends an answer: training answers end with it, generation stops on it. "
            "Empty uses the family's (or the tokenizer's EOS)."
        ),
    )
    stop_tokens: list[str] | None = Field(
        default=None, description="More tokens generation stops on (besides endOfTurn and EOS)."
    )
    pad_token: str | None = Field(
        default=None, description="Padding token when the tokenizer has none (masked by position)."
    )


class Resources(ApiModel):
    """Compute for the workload's pod. GPU product picks the node pool (default A10)."""

    gpu_count: int = Field(default=1, ge=0, le=16, description="GPUs per pod (nvidia.com/gpu).")
    gpu_product: Annotated[LabelValue, ClusterDefault("gpu_product")] = Field(
        default=DEFAULT_GPU_PRODUCT,
        description=(
            "GPU product label value the pod is scheduled onto (nvidia.com/gpu.product); unset: "
            f"the cluster's GPU product (Helm), else {DEFAULT_GPU_PRODUCT}."
        ),
    )
    cpu: Quantity = Field(
        default="4", description="CPU request and limit, as a Kubernetes quantity."
    )
    memory: Quantity = Field(default="24Gi", description="Memory request and limit (quantity).")
    shared_memory: Quantity = Field(
        default="8Gi", description="Size of the /dev/shm memory volume."
    )
    node_selector: dict[QualifiedName, LabelValue] = Field(
        default_factory=dict,
        description="Extra node selector labels, merged with the GPU one.",
        max_length=32,
    )
    queue_name: LabelValue | None = Field(
        default=None, description="Kueue LocalQueue to submit the Job to (kueue.x-k8s.io label)."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=60, description="Hard limit on the Job's run time, in seconds."
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=10, description="Pod restarts before the Job is marked failed."
    )
    termination_grace_period_seconds: int = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=3600,
        description=(
            "Seconds a stopping pod (deleted, drained, preempted) gets between SIGTERM and "
            "SIGKILL. A FineTuneJob's trainer finishes the step in progress and writes a "
            "checkpoint in that time, so it must cover one training step plus a save; other "
            "workloads stop at once."
        ),
    )
    service_wait_seconds: Annotated[int, ClusterDefault("service_wait_seconds")] = Field(
        default=DEFAULT_SERVICE_WAIT_SECONDS,
        ge=0,
        le=3600,
        description=(
            "Seconds the workload keeps retrying, with back-off, a service it needs (Ollama, "
            "Weaviate) that does not answer, when it starts or mid-run, before the attempt "
            "fails naming the service (LLMFT_SERVICE_WAIT_SECONDS in the pod); the Job's "
            "backoffLimit then bounds the attempts. Unset: the cluster's value (Helm "
            f"workloads.serviceWaitSeconds), else {DEFAULT_SERVICE_WAIT_SECONDS}."
        ),
    )
    pod_annotations: dict[QualifiedName, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Extra annotations on the workload pod (e.g. sidecar.istio.io/inject, "
            "cluster-autoscaler.kubernetes.io/safe-to-evict)."
        ),
    )


class ArtifactOutput(ApiModel):
    """Where a workload writes its artefacts: a directory on the artefact PVC."""

    pvc: ObjectName | None = Field(
        default=None,
        description="PersistentVolumeClaim for artefacts; empty uses the operator's default.",
    )
    path: ContainedPath | None = Field(
        default=None,
        description="Directory under the volume root (no '..' segments); empty uses <kind>/<name>.",
    )
    hugging_face: HuggingFaceRepo | None = Field(
        default=None, description="Also push the result to this Hugging Face repository."
    )


class Phase(str, Enum):  # noqa: UP042 (str mix-in: compared with plain strings)
    """The coarse state of a resource, as printed by kubectl."""

    PENDING = "Pending"
    WAITING = "Waiting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Condition(ApiModel):
    """A standard Kubernetes status condition."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Condition type, e.g. Ready, InputsReady, Complete, Failed.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time.")
    observed_generation: int | None = Field(default=None, description="Spec generation seen.")


EVAL_HISTORY_LIMIT = 200


class EvalPoint(ApiModel):
    """The eval loss a trainer reported at one step."""

    step: int = Field(description="Training step of the evaluation.")
    eval_loss: float | None = Field(
        default=None, description="Eval loss at that step (empty: not finite, diverged)."
    )


class Progress(ApiModel):
    """How far the workload is; written by the workload, shown by kubectl."""

    model_config = ConfigDict(extra="allow")

    step: int | None = Field(default=None, description="Units done (steps, chunks or items).")
    total: int | None = Field(default=None, description="Units in all.")
    percent: float | None = Field(default=None, description="Done, as a percentage.")
    unit: str | None = Field(default=None, description="What a step counts: steps, chunks, items.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    eval_loss: float | None = Field(default=None, description="Latest evaluation loss.")
    learning_rate: float | None = Field(default=None, description="Current learning rate.")
    tokens_per_second: float | None = Field(default=None, description="Training throughput.")
    eta_seconds: float | None = Field(default=None, description="Estimated seconds to finish.")
    resumed_from_step: int | None = Field(default=None, description="Checkpoint step resumed.")
    message: str | None = Field(default=None, description="Latest human-readable note.")
    updated_at: str | None = Field(default=None, description="RFC 3339 time of this report.")
    eval_history: list[EvalPoint] = Field(
        default_factory=list,
        description="Eval loss at each evaluation step (the latest 200); the median rule reads it.",
        max_length=EVAL_HISTORY_LIMIT,
    )


class ArtifactLocation(ApiModel):
    """Where the operator told the workload to write: a directory on a PVC."""

    pvc: ObjectName = Field(description="PersistentVolumeClaim holding the artefacts.")
    path: ContainedPath = Field(description="Directory relative to the volume root (no '..').")
    uri: str = Field(description="The same place as pvc://<pvc>/<path>.")


class ChatFormatStatus(ApiModel):
    """The model family and chat rules a workload applied (reported by the workload)."""

    model_config = ConfigDict(extra="allow")

    family: str = Field(description="llama3, mistral, gemma, phi2, chatml or generic.")
    family_title: str | None = Field(default=None, description="The family's readable name.")
    chat_template: str | None = Field(
        default=None, description="Where the template came from: spec, model, family, fallback."
    )
    system_prompt: str | None = Field(default=None, description="keep, fold or omit.")
    end_of_turn: str | None = Field(default=None, description="Token that ends every answer.")
    stop_tokens: list[str] = Field(default_factory=list, description="Generation stops on these.")
    pad_token: str | None = Field(default=None, description="Padding token.")
    overridden: list[str] = Field(
        default_factory=list, description="Rules the spec set instead of the family."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Why the model's format is not a verified family's."
    )


class BaseStatus(ApiModel):
    """What every kind's status starts with: phase, message, standard conditions, times."""

    phase: Phase | None = Field(
        default=None, description="Pending, Waiting (for inputs), Running, Succeeded or Failed."
    )
    message: str | None = Field(
        default=None, description="Human-readable summary of the latest state or failure."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Standard conditions: Ready, InputsReady, Running, Complete, Failed, ...",
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation the Job and this status were made from."
    )
    start_time: str | None = Field(default=None, description="When the workload pod started.")
    completion_time: str | None = Field(default=None, description="When the workload finished.")


class ResourceStatus(BaseStatus):
    """What the operator (and the workload, through its status patch) saw of a resource."""

    job_name: str | None = Field(default=None, description="Name of the workload's batch/v1 Job.")
    artifacts: ArtifactLocation | None = Field(
        default=None, description="Where the workload writes its artefacts."
    )
    progress: Progress | None = Field(
        default=None, description="How far the workload is (reported by the workload)."
    )
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Final metrics (reported by the workload or read from its termination message)."
        ),
    )
    outputs: dict[str, Any] = Field(
        default_factory=dict, description="Output locations: paths, Hub repository and revision."
    )


class TrainerMetric(ApiModel):
    """One metric as a name/value pair (Kubeflow Trainer's trainerStatus.metrics shape)."""

    name: str = Field(description="Metric name, e.g. loss, eval_loss, learning_rate.", min_length=1)
    value: str = Field(description="The value, as a string.", min_length=1)


class TrainerStatus(ApiModel):
    """Training progress under the names Kubeflow Trainer's TrainJob uses (status.trainerStatus),
    so tools written for one read the other."""

    progress_percentage: int | None = Field(
        default=None, ge=0, le=100, description="Estimated share of training done, 0-100."
    )
    estimated_remaining_seconds: int | None = Field(
        default=None, ge=0, description="Estimated seconds of training left."
    )
    metrics: list[TrainerMetric] = Field(
        default_factory=list, description="Latest training metrics as name/value pairs."
    )
    last_updated_time: str | None = Field(default=None, description="RFC 3339 time of the report.")
