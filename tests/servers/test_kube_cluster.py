"""The real control plane does what the operator relies on: schemas, scheduling to A10s, GC."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from servers.launch import GPU_NODES, KubeCluster, wait_for

pytestmark = pytest.mark.k8s

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.llmft.io"},
    "spec": {
        "group": "test.llmft.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, size: int) -> str:
    return json.dumps(
        {
            "apiVersion": "test.llmft.io/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"size": size},
        }
    )


def test_crd_schema_accepts_valid_and_refuses_invalid_objects(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.llmft.io", "--timeout=30s"
    )
    kube_cluster.kubectl("apply", "-f", "-", input=widget("ok", 3))

    refused = kube_cluster.kubectl("apply", "-f", "-", input=widget("bad", 0), check=False)

    assert refused.returncode != 0
    assert "spec.size" in refused.stderr and "greater than or equal to 1" in refused.stderr


def test_gpu_job_runs_on_fake_a10_node_and_succeeds(kube_cluster: KubeCluster) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "gpu-smoke", "namespace": "default"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A10"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "train",
                            "image": "example.invalid/trainer:1",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                }
            },
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    kube_cluster.kubectl(
        "wait", "--for=condition=Complete", "job/gpu-smoke", "--timeout=90s", timeout=120
    )
    pods = json.loads(
        kube_cluster.kubectl("get", "pods", "-l", "job-name=gpu-smoke", "-o", "json").stdout
    )

    assert [p["status"]["phase"] for p in pods["items"]] == ["Succeeded"]
    assert pods["items"][0]["spec"]["nodeName"] in GPU_NODES


def test_pod_without_toleration_is_not_scheduled_on_gpu_nodes(kube_cluster: KubeCluster) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "no-toleration"},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A10"},
            "containers": [{"name": "c", "image": "example.invalid/x:1"}],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def unschedulable() -> bool:
        p = json.loads(kube_cluster.kubectl("get", "pod", "no-toleration", "-o", "json").stdout)
        conds = {c["type"]: c for c in p["status"].get("conditions", [])}
        return conds.get("PodScheduled", {}).get("reason") == "Unschedulable"

    wait_for(unschedulable, 60)
    kube_cluster.kubectl("delete", "pod", "no-toleration", "--wait=false")


def test_owned_object_is_garbage_collected_with_its_owner(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl("create", "configmap", "owner")
    uid = kube_cluster.kubectl("get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}").stdout
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(owned))

    kube_cluster.kubectl("delete", "configmap", "owner")

    wait_for(
        lambda: kube_cluster.kubectl("get", "configmap", "owned", check=False).returncode != 0, 60
    )


def test_a_pod_runs_as_long_as_its_kwok_run_annotation_says(kube_cluster: KubeCluster) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "timed", "namespace": "default"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"llmft.io/kwok-run": "5s"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "example.invalid/work:1"}],
                },
            },
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    kube_cluster.kubectl(
        "wait", "--for=condition=Complete", "job/timed", "--timeout=90s", timeout=120
    )
    (pod,) = json.loads(
        kube_cluster.kubectl("get", "pods", "-l", "job-name=timed", "-o", "json").stdout
    )["items"]

    started = datetime.fromisoformat(pod["status"]["startTime"])
    (container,) = pod["status"]["containerStatuses"]
    finished = datetime.fromisoformat(container["state"]["terminated"]["finishedAt"])
    # Whole seconds on both sides: 5 s of running shows as at least 4 (kwok's default is 1.5 s).
    assert (finished - started).total_seconds() >= 4
