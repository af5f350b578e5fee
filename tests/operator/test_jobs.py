"""The Job builder: what a workload pod gets, decided from the resolved plan and the settings."""

from __future__ import annotations

import json
from typing import Any

from operator_manifests import dataset, evaluation, finetune

from llmft.api.layout import CONFIGMAP_DOCUMENTS_MOUNT, SPEC_FILE
from llmft.api.resource import parse_resource
from llmft_operator.jobs import (
    GENERATION_ANNOTATION,
    build_spec_configmap,
    build_workload_job,
)
from llmft_operator.resolve import Fetched, WorkloadPlan, plan_workload
from llmft_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(
    images={
        "DatasetGeneration": "registry.example/llmft/datagen:1.0",
        "FineTuneJob": "registry.example/llmft/trainer:1.0",
        "Evaluation": "registry.example/llmft/evaluator:1.0",
    },
    artifact_pvc="shared-artifacts",
    job_ttl_seconds=3600,
)


def succeeded(kind: str, name: str, pvc: str = "shared-artifacts") -> dict[str, Any]:
    """An upstream as the API returns it once it succeeded, writing to `pvc`."""
    body = {"DatasetGeneration": dataset, "FineTuneJob": finetune}[kind](name, output={"pvc": pvc})
    path = {"DatasetGeneration": "datasets", "FineTuneJob": "finetune"}[kind] + f"/{name}"
    return {
        **body,
        "status": {
            "phase": "Succeeded",
            "artifacts": {"pvc": pvc, "path": path, "uri": f"pvc://{pvc}/{path}"},
        },
    }


def plan_for(
    body: dict[str, Any], settings: OperatorSettings = SETTINGS, generation: int = 1
) -> WorkloadPlan:
    fetched = Fetched(
        resources={
            ("DatasetGeneration", "docs"): succeeded("DatasetGeneration", "docs"),
            ("FineTuneJob", "tune"): succeeded("FineTuneJob", "tune"),
        }
    )
    return plan_workload(parse_resource(body), fetched, settings, generation)


def job_for(body: dict[str, Any], settings: OperatorSettings = SETTINGS) -> dict[str, Any]:
    return build_workload_job(plan_for(body, settings), settings)


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(job)["containers"]
    c: dict[str, Any] = only
    return c


def mounts(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(job)["volumeMounts"]}


def volumes(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec(job)["volumes"]}


def test_job_and_configmap_names_are_deterministic_per_kind() -> None:
    plan = plan_for(finetune(name="hr-lora"))

    job = build_workload_job(plan, SETTINGS)
    config_map = build_spec_configmap(plan)

    assert job["metadata"]["name"] == "hr-lora-ftj"
    assert config_map["metadata"]["name"] == "hr-lora-ftj-spec"
    assert job == build_workload_job(plan_for(finetune(name="hr-lora")), SETTINGS)


def test_each_kind_runs_its_own_image_and_workload_module() -> None:
    jobs = {
        "datagen": job_for(dataset()),
        "trainer": job_for(finetune()),
        "evaluator": job_for(evaluation()),
    }

    for component, job in jobs.items():
        c = container(job)
        assert c["name"] == component
        assert c["image"] == f"registry.example/llmft/{component}:1.0"
        assert c["command"] == ["python", "-m", f"llmft.workloads.{component}"]
        assert c["args"] == ["--spec", SPEC_FILE]


def test_gpu_job_requests_gpus_on_the_product_nodes_and_tolerates_their_taint() -> None:
    job = job_for(finetune(resources={"gpuCount": 2}))

    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10"}
    assert pod_spec(job)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cluster_gpu_product_replaces_the_builtin_default_but_not_a_manifest_choice() -> None:
    settings = OperatorSettings(gpu_product="NVIDIA-L4", gpu_product_label="gpu.example/product")

    default = job_for(finetune(), settings)
    chosen = job_for(finetune(resources={"gpuProduct": "NVIDIA-A100-SXM4-80GB"}), settings)

    assert pod_spec(default)["nodeSelector"] == {"gpu.example/product": "NVIDIA-L4"}
    assert pod_spec(chosen)["nodeSelector"] == {"gpu.example/product": "NVIDIA-A100-SXM4-80GB"}


def test_cpu_only_job_has_no_gpu_limit_selector_or_toleration() -> None:
    job = job_for(dataset())

    assert "nvidia.com/gpu" not in container(job)["resources"]["limits"]
    assert "nodeSelector" not in pod_spec(job)
    assert "tolerations" not in pod_spec(job)


def test_extra_node_selector_is_merged_with_the_gpu_one() -> None:
    job = job_for(finetune(resources={"nodeSelector": {"topology.kubernetes.io/zone": "a"}}))

    assert pod_spec(job)["nodeSelector"] == {
        "topology.kubernetes.io/zone": "a",
        "nvidia.com/gpu.product": "NVIDIA-A10",
    }


def test_cpu_and_memory_are_requested_and_limited_alike() -> None:
    job = job_for(finetune(resources={"cpu": "6", "memory": "30Gi"}))

    resources = container(job)["resources"]
    assert resources["requests"] == {"cpu": "6", "memory": "30Gi"}
    assert resources["limits"] == {"cpu": "6", "memory": "30Gi", "nvidia.com/gpu": "1"}


def test_resolved_spec_is_an_immutable_configmap_mounted_at_the_spec_file() -> None:
    plan = plan_for(finetune(), generation=3)
    config_map = build_spec_configmap(plan)
    job = build_workload_job(plan, SETTINGS)

    spec = json.loads(config_map["data"]["spec.json"])
    assert spec["spec"]["dataset"] == {"path": "/artifacts/datasets/docs"}
    assert spec["spec"]["output"]["path"] == "/artifacts/finetune/tune"
    assert config_map["immutable"] is True
    assert config_map["metadata"]["annotations"][GENERATION_ANNOTATION] == "3"
    assert mounts(job)[SPEC_FILE] == {
        "name": "spec",
        "mountPath": SPEC_FILE,
        "subPath": "spec.json",
        "readOnly": True,
    }
    assert volumes(job)["spec"]["configMap"]["name"] == "tune-ftj-spec"


def test_artefact_pvc_is_mounted_writable_at_the_artifact_mount() -> None:
    job = job_for(finetune())

    assert volumes(job)["artifacts"]["persistentVolumeClaim"] == {
        "claimName": "shared-artifacts",
        "readOnly": False,
    }
    assert mounts(job)["/artifacts"]["readOnly"] is False


def test_inputs_on_another_pvc_are_mounted_read_only() -> None:
    plan = plan_workload(
        parse_resource(finetune()),
        Fetched(
            resources={
                ("DatasetGeneration", "docs"): succeeded("DatasetGeneration", "docs", "datasets")
            }
        ),
        SETTINGS,
        1,
    )
    job = build_workload_job(plan, SETTINGS)

    assert volumes(job)["inputs-1"]["persistentVolumeClaim"] == {
        "claimName": "datasets",
        "readOnly": True,
    }
    assert mounts(job)["/mnt/llmft/inputs/datasets"]["readOnly"] is True


def test_configmap_documents_are_mounted_read_only() -> None:
    job = job_for(dataset())

    assert volumes(job)["documents"] == {"name": "documents", "configMap": {"name": "handbook"}}
    assert mounts(job)[CONFIGMAP_DOCUMENTS_MOUNT]["readOnly"] is True


def test_shared_memory_is_a_memory_backed_volume_of_the_requested_size() -> None:
    job = job_for(finetune(resources={"sharedMemory": "16Gi"}))

    assert volumes(job)["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert "/dev/shm" in mounts(job)


def test_pod_meets_the_restricted_pod_security_profile() -> None:
    job = job_for(finetune())

    pod = pod_spec(job)["securityContext"]
    c = container(job)["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 1000
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["allowPrivilegeEscalation"] is False
    assert c["capabilities"] == {"drop": ["ALL"]}
    assert c["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all(
        set(v) <= {"name", "configMap", "emptyDir", "persistentVolumeClaim"}
        for v in pod_spec(job)["volumes"]
    )


def test_job_retries_deadline_and_ttl_come_from_the_spec_and_settings() -> None:
    job = job_for(finetune(resources={"backoffLimit": 0, "activeDeadlineSeconds": 7200}))

    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_the_pods_grace_period_comes_from_the_spec_with_a_default_for_a_checkpoint() -> None:
    chosen = job_for(finetune(resources={"terminationGracePeriodSeconds": 600}))

    assert pod_spec(chosen)["terminationGracePeriodSeconds"] == 600
    assert pod_spec(job_for(finetune()))["terminationGracePeriodSeconds"] == 120


def test_cluster_deadline_applies_when_the_spec_sets_none() -> None:
    settings = OperatorSettings(job_deadline_seconds=86400)

    assert job_for(finetune(), settings)["spec"]["activeDeadlineSeconds"] == 86400
    assert "activeDeadlineSeconds" not in job_for(finetune())["spec"]


def test_the_service_wait_comes_from_the_spec_then_the_cluster_then_the_default() -> None:
    def wait(job: dict[str, Any]) -> str:
        env = pod_spec(job)["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "LLMFT_SERVICE_WAIT_SECONDS"))

    cluster = OperatorSettings(service_wait_seconds=300)

    assert wait(job_for(dataset(resources={"serviceWaitSeconds": 5}), cluster)) == "5"
    assert wait(job_for(dataset(), cluster)) == "300"
    assert wait(job_for(dataset())) == "60"


def test_unusable_spec_exit_code_fails_the_job_without_retries() -> None:
    rules = job_for(finetune())["spec"]["podFailurePolicy"]["rules"]

    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [2]
    assert rules[1]["action"] == "Ignore"


def test_kueue_queue_label_suspends_the_job_until_admitted() -> None:
    from_spec = job_for(finetune(resources={"queueName": "team-a"}))
    from_settings = job_for(finetune(), OperatorSettings(kueue_queue="gpu-queue"))
    without = job_for(finetune())

    assert from_spec["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert from_spec["spec"]["suspend"] is True
    assert from_settings["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert "kueue.x-k8s.io/queue-name" not in without["metadata"]["labels"]
    assert "suspend" not in without["spec"]


def test_secrets_reach_the_pod_only_as_secret_key_references() -> None:
    body = finetune(
        baseModel={
            "name": "meta-llama/Llama-3.1-8B",
            "tokenSecretRef": {"name": "hf", "key": "read"},
        },
        output={
            "huggingFace": {
                "repo": "acme/hr-lora",
                "tokenSecretRef": {"name": "hf", "key": "write"},
            }
        },
    )

    env = {e["name"]: e for e in container(job_for(body))["env"]}

    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "read"}},
    }
    assert env["LLMFT_HF_PUSH_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "hf", "key": "write"}
    }
    assert all("value" not in e for e in env.values() if "valueFrom" in e)


def test_pod_annotations_from_the_spec_are_on_the_pod_template() -> None:
    job = job_for(finetune(resources={"podAnnotations": {"sidecar.istio.io/inject": "false"}}))

    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"
    assert annotations["kubectl.kubernetes.io/default-container"] == "trainer"


def test_termination_message_falls_back_to_the_log_tail() -> None:
    assert container(job_for(finetune()))["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_workload_runs_as_the_workload_service_account_with_a_token() -> None:
    spec = pod_spec(job_for(finetune(), OperatorSettings(workload_service_account="runner")))

    assert spec["serviceAccountName"] == "runner"
    assert spec["automountServiceAccountToken"] is True


def test_job_and_pod_carry_the_resource_labels() -> None:
    job = job_for(evaluation(name="hr-compare"))

    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["llmft.io/kind"] == "Evaluation"
        assert labels["llmft.io/name"] == "hr-compare"
        assert labels["app.kubernetes.io/managed-by"] == "llmft-operator"


def test_evaluation_arm_gets_the_finetune_adapter_and_base_model() -> None:
    plan = plan_for(evaluation())

    arms = json.loads(plan.spec_json)["spec"]["arms"]
    assert arms[1]["adapterPath"] == "/artifacts/finetune/tune/adapter"
    assert arms[1]["baseModel"]["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "fineTuneJobRef" not in arms[1]


def test_dataset_generation_with_partial_resources_still_needs_no_gpu() -> None:
    job = job_for(dataset(resources={"memory": "8Gi"}))

    assert container(job)["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert "tolerations" not in pod_spec(job)
