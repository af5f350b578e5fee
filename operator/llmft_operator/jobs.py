"""The objects a resource's workload runs as: the resolved-spec ConfigMap and the batch/v1 Job.

Pure functions of a WorkloadPlan and the operator settings: no API calls and no decisions beyond
turning the plan into manifests, so tests call them directly and the reconciler only adds
ownership (kopf.adopt) before creating them.
"""

from __future__ import annotations

from typing import Any

from llmft.api.common import ENV_SERVICE_WAIT, GPU_RESOURCE, GROUP
from llmft.api.kinds import KINDS
from llmft.api.layout import CONFIGMAP_DOCUMENTS_MOUNT, PVC_DOCUMENTS_MOUNT, SPEC_FILE
from llmft_operator.naming import KUEUE_QUEUE_LABEL, job_name, labels, spec_configmap_name
from llmft_operator.resolve import SPEC_KEY, WorkloadPlan
from llmft_operator.settings import OperatorSettings

# The spec generation a Job (and its ConfigMap) was built from; compared with the resource's
# metadata.generation to notice spec changes made after the Job started.
GENERATION_ANNOTATION = f"{GROUP}/generation"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# The uid/gid the workload images are built with (images/Dockerfile).
WORKLOAD_UID = 1000
# `run_workload` exits 2 when the spec file itself is unusable: a retry cannot help.
EXIT_BAD_SPEC = 2
SCRATCH_MOUNT = "/tmp"


def gpu_product(plan: WorkloadPlan, settings: OperatorSettings) -> str:
    """The GPU product to schedule on: the manifest's, or the cluster's when it set none.

    The resolver has already given an unset gpuProduct the cluster's (settings.gpu_product).
    """
    product: str = plan.resource.spec.resources.gpu_product
    return product


def kueue_queue(plan: WorkloadPlan, settings: OperatorSettings) -> str | None:
    """The Kueue LocalQueue the Job is submitted to, if any (the manifest's wins)."""
    queue: str | None = plan.resource.spec.resources.queue_name
    return queue or settings.kueue_queue


def build_spec_configmap(plan: WorkloadPlan) -> dict[str, Any]:
    """The immutable ConfigMap holding the resolved spec the workload reads at SPEC_FILE."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec_configmap_name(plan.kind, plan.name),
            "namespace": plan.namespace,
            "labels": labels(plan.kind, plan.name),
            "annotations": {GENERATION_ANNOTATION: str(plan.generation)},
        },
        "immutable": True,
        "data": {SPEC_KEY: plan.spec_json},
    }


def _security_context() -> tuple[dict[str, Any], dict[str, Any]]:
    # What the `restricted` Pod Security Standard asks for, so the pod is admitted in namespaces
    # that enforce it.
    pod = {
        "runAsNonRoot": True,
        "runAsUser": WORKLOAD_UID,
        "runAsGroup": WORKLOAD_UID,
        "fsGroup": WORKLOAD_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return pod, container


def _volumes(plan: WorkloadPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    resources = plan.resource.spec.resources
    volumes: list[dict[str, Any]] = [
        {
            "name": "spec",
            "configMap": {
                "name": spec_configmap_name(plan.kind, plan.name),
                "items": [{"key": SPEC_KEY, "path": SPEC_KEY}],
            },
        },
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": resources.shared_memory}},
        {"name": "scratch", "emptyDir": {}},
    ]
    # subPath: the spec is one file, so /etc/llmft stays free for the documents mount.
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_FILE, "subPath": SPEC_KEY, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH_MOUNT},
    ]
    for i, claim in enumerate(plan.claims):
        name = "artifacts" if i == 0 else f"inputs-{i}"
        volumes.append(
            {
                "name": name,
                "persistentVolumeClaim": {"claimName": claim.claim, "readOnly": claim.read_only},
            }
        )
        mounts.append({"name": name, "mountPath": claim.mount_path, "readOnly": claim.read_only})
    if plan.documents_config_map:
        volumes.append({"name": "documents", "configMap": {"name": plan.documents_config_map}})
        mounts.append(
            {"name": "documents", "mountPath": CONFIGMAP_DOCUMENTS_MOUNT, "readOnly": True}
        )
    if plan.documents_claim:
        volumes.append(
            {
                "name": "documents",
                "persistentVolumeClaim": {"claimName": plan.documents_claim, "readOnly": True},
            }
        )
        mounts.append({"name": "documents", "mountPath": PVC_DOCUMENTS_MOUNT, "readOnly": True})
    return volumes, mounts


def _env(plan: WorkloadPlan, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "LLMFT_KIND", "value": plan.kind},
        {"name": "LLMFT_NAME", "value": plan.name},
        {"name": "LLMFT_NAMESPACE", "value": plan.namespace},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # The root filesystem is read-only: caches go to scratch, models to the shared volume.
        {"name": "HOME", "value": SCRATCH_MOUNT},
        {"name": "HF_HOME", "value": f"{settings.artifact_mount.rstrip('/')}/.cache/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": ENV_SERVICE_WAIT, "value": str(plan.resource.spec.resources.service_wait_seconds)},
    ]
    seen: set[str] = set()
    for use in plan.secrets:
        if use.env in seen:  # conflicting references are refused before a Job is built
            continue
        seen.add(use.env)
        ref = {"name": use.ref.name, "key": use.ref.key}
        env.append({"name": use.env, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(plan: WorkloadPlan) -> dict[str, Any]:
    spec = plan.resource.spec.resources
    amounts: dict[str, str] = {"cpu": spec.cpu, "memory": spec.memory}
    limits = dict(amounts)
    if spec.gpu_count > 0:
        limits[GPU_RESOURCE] = str(spec.gpu_count)
    return {"requests": amounts, "limits": limits}


def _scheduling(plan: WorkloadPlan, settings: OperatorSettings) -> dict[str, Any]:
    spec = plan.resource.spec.resources
    selector = dict(spec.node_selector)
    out: dict[str, Any] = {}
    if spec.gpu_count > 0:
        selector[settings.gpu_product_label] = gpu_product(plan, settings)
        out["tolerations"] = [
            {"key": settings.gpu_toleration_key, "operator": "Exists", "effect": "NoSchedule"}
        ]
    if selector:
        out["nodeSelector"] = selector
    return out


def build_workload_job(plan: WorkloadPlan, settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job that runs the workload of `plan` once, on the right (GPU) nodes."""
    resources = plan.resource.spec.resources
    workload = KINDS.workload(plan.kind)
    container_name = workload.name
    pod_security, container_security = _security_context()
    volumes, mounts = _volumes(plan)
    container = {
        "name": container_name,
        "image": settings.image_for(plan.kind),
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", workload.module],
        "args": ["--spec", SPEC_FILE],
        "env": _env(plan, settings),
        "resources": _resources(plan),
        "securityContext": container_security,
        "volumeMounts": mounts,
        # The workload writes its result (or its error) there; the log tail otherwise.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer checkpoints the step in progress on SIGTERM within this time.
        "terminationGracePeriodSeconds": resources.termination_grace_period_seconds,
        "serviceAccountName": settings.workload_service_account,
        # The token is the workload's status channel (it may only patch <plural>/status).
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        **_scheduling(plan, settings),
        "containers": [container],
        "volumes": volumes,
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]

    job_labels = labels(plan.kind, plan.name)
    pod_labels = dict(job_labels)
    queue = kueue_queue(plan, settings)
    if queue:
        job_labels[KUEUE_QUEUE_LABEL] = queue
    pod_annotations = {
        **resources.pod_annotations,
        DEFAULT_CONTAINER_ANNOTATION: container_name,
        GENERATION_ANNOTATION: str(plan.generation),
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": resources.backoff_limit,
        "completions": 1,
        "parallelism": 1,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "podFailurePolicy": {
            "rules": [
                # An unusable spec fails the same way every time: stop at the first attempt.
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": container_name,
                        "operator": "In",
                        "values": [EXIT_BAD_SPEC],
                    },
                },
                # Preemption or node drain is not the workload's fault: do not count it.
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
        "template": {
            "metadata": {"labels": pod_labels, "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    deadline = resources.active_deadline_seconds or settings.job_deadline_seconds
    if deadline:
        job_spec["activeDeadlineSeconds"] = deadline
    if queue:
        # Kueue admits a Job by unsuspending it.
        job_spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(plan.kind, plan.name),
            "namespace": plan.namespace,
            "labels": job_labels,
            "annotations": {GENERATION_ANNOTATION: str(plan.generation)},
        },
        "spec": job_spec,
    }
