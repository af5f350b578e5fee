"""The operator against a real control plane: CRDs enforced, Jobs run on fake A10s, status written.

One operator process (`python -m llmft_operator`, namespace-scoped) serves every test here. It
runs as the operator service account with exactly the RBAC the Helm chart renders, and the
workload's status channel is exercised with a token of the chart's workload service account, so
the chart's least-privilege roles are proven sufficient. kwok plays the kubelet: pods "run" for a
moment and end as their annotations say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from operator_manifests import dataset, evaluation, finetune

from llmft.api.crdgen import rendered_files
from llmft.api.kinds import KINDS
from servers.launch import (
    GPU_NODES,
    KubeCluster,
    binary,
    free_port,
    wait_for,
    write_kubeconfig,
)

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
NS = "llmft-op"
GROUP, VERSION = "llmft.io", "v1alpha1"
PLURALS = {entry.kind: entry.plural for entry in KINDS}
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SYSTEM_NS = "llmft-op-system"
RELEASE = "optest"


# --- fixtures --------------------------------------------------------------------------------


class OperatorProcess:
    """`python -m llmft_operator` in a subprocess, watching one namespace."""

    def __init__(self, cluster: KubeCluster, workdir: Path, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.log = workdir / "operator.log"
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "operator")]),
            "LLMFT_RECONCILE_INTERVAL": "1",
            "LLMFT_IMAGE_DATAGEN": "registry.example/llmft/datagen:test",
            "LLMFT_IMAGE_TRAINER": "registry.example/llmft/trainer:test",
            "LLMFT_IMAGE_EVALUATOR": "registry.example/llmft/evaluator:test",
            "LLMFT_JOB_TTL_SECONDS": "3600",
            "LLMFT_METRICS_PORT": str(self.metrics_port),
        }
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llmft_operator",
                    "--namespace",
                    NS,
                    "--log-format",
                    "plain",
                    "--liveness",
                    f"http://127.0.0.1:{self.health_port}/healthz",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        wait_for(self.healthy, 60, 0.3, "operator /healthz", self.tail)

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc.returncode}):\n{self.tail()}")
        try:
            return http_get(f"http://127.0.0.1:{self.health_port}/healthz").startswith("{")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as when its pod is deleted with no grace or its node dies: no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "--- operator log\n" + "\n".join(text.splitlines()[-lines:])


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return str(resp.read().decode())


def install_crds(cluster: KubeCluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for text in rendered_files().values():
        name = yaml.safe_load(text)["metadata"]["name"]
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", timeout=90
        )


def artefact_volume(namespace: str, claim: str = "llmft-artifacts") -> list[dict[str, Any]]:
    """A pre-bound hostPath volume and its claim: kwok nodes have no provisioner."""
    pv_name = f"{namespace}-{claim}"
    size = {"storage": "10Gi"}
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": size,
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/{pv_name}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv_name,
                "resources": {"requests": size},
            },
        },
    ]


def chart_rbac() -> list[dict[str, Any]]:
    """The chart's service accounts and roles for an operator watching NS (helm template)."""
    rendered = subprocess.run(
        [
            str(binary("helm")),
            "template",
            RELEASE,
            str(ROOT / "charts" / "llmft-operator"),
            "--namespace",
            SYSTEM_NS,
            "--set",
            f"operator.watchNamespace={NS}",
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac-operator.yaml",
            "--show-only",
            "templates/rbac-workload.yaml",
            "--show-only",
            "templates/admission-workload-status.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def token_kubeconfig(
    cluster: KubeCluster, account: str, namespace: str, path: Path, pod: str | None = None
) -> Path:
    """A kubeconfig authenticating as a service account (a TokenRequest token), bound to `pod`
    as the token mounted into that pod would be."""
    bound = ["--bound-object-kind", "Pod", "--bound-object-name", pod] if pod else []
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h", *bound
    ).stdout
    write_kubeconfig(path, cluster.server, cluster.workdir / "ca.crt", token.strip(), user=account)
    return path


@pytest.fixture(scope="module")
def cluster(kube_cluster: KubeCluster) -> KubeCluster:
    install_crds(kube_cluster)
    kube_cluster.create_namespace(NS, labels=RESTRICTED)
    kube_cluster.create_namespace(SYSTEM_NS)
    objects = [
        *artefact_volume(NS),
        *chart_rbac(),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "handbook", "namespace": NS},
            "data": {"leave.md": "# Leave\nStaff get 25 days of annual leave.\n"},
        },
    ]
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    kube_cluster.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Bound",
        "pvc/llmft-artifacts",
        "-n",
        NS,
        "--timeout=60s",
        timeout=90,
    )
    return kube_cluster


@pytest.fixture(scope="module")
def operator(
    cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    account = next(
        o["metadata"]["name"]
        for o in chart_rbac()
        if o["kind"] == "ServiceAccount" and o["metadata"]["namespace"] == SYSTEM_NS
    )
    kubeconfig = token_kubeconfig(cluster, account, SYSTEM_NS, workdir / "kubeconfig")
    op = OperatorProcess(cluster, workdir, kubeconfig)
    op.start()
    try:
        yield op
    finally:
        op.stop()


class Api:
    """The calls the tests make, through the admin client."""

    def __init__(self, cluster: KubeCluster, op: OperatorProcess | None = None) -> None:
        api_client = cluster.api_client()
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.cluster = cluster
        self.op = op

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": NS}}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURALS[body["kind"]], body
        )
        return result

    def get(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NS, PLURALS[kind], name
        )
        return result

    def status(self, kind: str, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.get(kind, name).get("status") or {}
        return status

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(kind, name)
            return status if status.get("phase") == phase else None

        logs = self.op.tail if self.op else None
        result: dict[str, Any] = wait_for(
            reached,
            timeout,
            what=f"{kind} {name} phase {phase} (now {self.status(kind, name)})",
            logs=logs,
        )
        return result

    def job(self, name: str) -> Any | None:
        try:
            return self.batch.read_namespaced_job(name, NS)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def pods_of(self, job_name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                NS, label_selector=f"batch.kubernetes.io/job-name={job_name}"
            ).items
        )

    def events_for(self, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.name == name and e.involved_object.kind != "Job"
        ]


@pytest.fixture(scope="module")
def api(cluster: KubeCluster, operator: OperatorProcess) -> Api:
    return Api(cluster, operator)


@pytest.fixture(scope="module")
def docs(api: Api) -> str:
    """A DatasetGeneration "docs" that has succeeded, for tests that need an upstream."""
    try:
        api.get("DatasetGeneration", "docs")
    except ApiException as err:
        if err.status != 404:
            raise
        api.create(dataset("docs", resources=run_ms(200)))
    api.wait_phase("DatasetGeneration", "docs", "Succeeded")
    return "docs"


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def run_ms(ms: int, **annotations: str) -> dict[str, Any]:
    """spec.resources with pod annotations telling kwok how the pod should run."""
    return {"podAnnotations": {"llmft.io/kwok-run": f"{ms}ms", **annotations}}


# --- the API ---------------------------------------------------------------------------------


def test_kubectl_explain_documents_the_fields(cluster: KubeCluster) -> None:
    out = cluster.kubectl("explain", "finetunejob.spec.hyperparameters.learningRate").stdout

    assert "Peak learning rate" in out


def _mistakes() -> list[tuple[str, dict[str, Any], str]]:
    ds, ft, ev = dataset, finetune, evaluation
    return [
        ("missing required field", ft(baseModel=None), "spec.baseModel"),
        (
            "wrong type",
            ft(hyperparameters={"learningRate": "fast"}),
            "spec.hyperparameters.learningRate",
        ),
        ("value not in enum", ft(method="full"), "spec.method"),
        ("below minimum", ft(hyperparameters={"batchSize": 0}), "spec.hyperparameters.batchSize"),
        ("above maximum", ft(resources={"gpuCount": 64}), "spec.resources.gpuCount"),
        (
            "pattern mismatch",
            ev(arms=[{"name": "Base_Arm", "baseModel": {"name": "m"}}]),
            "spec.arms[0].name",
        ),
        ("unknown field", ft(hyperparameter={"epochs": 1}), "spec.hyperparameter"),
        ("path leaving the volume", ft(output={"path": "a/../../../x"}), "spec.output.path"),
        ("negative quantity", ft(resources={"memory": "-1"}), "spec.resources.memory"),
        ("not a quantity", ft(resources={"cpu": "lots"}), "spec.resources.cpu"),
        ("quantity with a space", ft(resources={"sharedMemory": "1 GB"}), "spec.resources"),
        ("label value", ft(resources={"gpuProduct": "NVIDIA A10"}), "spec.resources.gpuProduct"),
        ("queue name", ft(resources={"queueName": "my queue"}), "spec.resources.queueName"),
        (
            "annotation key",
            ft(resources={"podAnnotations": {"bad key!": "x"}}),
            "spec.resources.podAnnotations",
        ),
        (
            "node selector value",
            ft(resources={"nodeSelector": {"pool": "a b"}}),
            "spec.resources.nodeSelector",
        ),
        (
            "free text too long",
            ds(generator={"systemPrompt": "x" * 70000}),
            "spec.generator.systemPrompt",
        ),
        (
            "CEL: overlap not below budget",
            ds(chunking={"maxTokens": 64, "overlapTokens": 64}),
            "spec.chunking.overlapTokens",
        ),
        (
            "CEL: two dataset sources",
            ft(dataset={"datasetGenerationRef": "d", "path": "/x"}),
            "spec.dataset",
        ),
        (
            "CEL: two document sources",
            ds(source={"configMap": "a", "urls": ["https://x"]}),
            "spec.source",
        ),
        ("CEL: rag needs instruct", ft(mode="causal", rag={"enabled": True}), "spec.rag.enabled"),
        (
            "CEL: endpoint arm with a local model",
            ev(
                arms=[
                    {
                        "name": "served",
                        "baseModel": {"name": "m"},
                        "endpoint": {"url": "http://ollama:11434", "model": "m"},
                    }
                ]
            ),
            "spec.arms[0].endpoint",
        ),
        (
            "CEL: Ollama adapter without a base",
            ft(output={"ollama": {"model": "hr-tuned"}}),
            "spec.output.ollama.base",
        ),
        ("Hub path of another scheme", ft(dataset={"path": "hf:/x y"}), "spec.dataset.path"),
        (
            "CEL: primary metric not computed",
            ev(metrics=["bleu"], primaryMetric="rouge"),
            "spec.primaryMetric",
        ),
        ("CEL: judge metric without judge", ev(metrics=["rouge", "faithfulness"]), "spec.judge"),
        (
            "CEL: duplicate arm names",
            ev(
                arms=[
                    {"name": "a", "baseModel": {"name": "m"}},
                    {"name": "a", "baseModel": {"name": "n"}},
                ]
            ),
            "spec.arms",
        ),
    ]


@pytest.mark.parametrize(("mistake", "body", "field"), _mistakes(), ids=[m[0] for m in _mistakes()])
def test_invalid_manifest_is_refused_naming_the_field(
    cluster: KubeCluster, mistake: str, body: dict[str, Any], field: str
) -> None:
    spec = {k: v for k, v in body["spec"].items() if v is not None}
    custom = client.CustomObjectsApi(cluster.api_client())

    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURALS[body["kind"]],
            {**body, "metadata": {"name": "invalid", "namespace": NS}, "spec": spec},
            dry_run="All",
            field_validation="Strict",
        )

    assert refused.value.status in (400, 422), mistake
    assert field in json.loads(refused.value.body)["message"]


def test_example_manifests_are_accepted_by_the_api_server(cluster: KubeCluster) -> None:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", NS, "-f", str(ROOT / "examples" / "quickstart")
    )

    assert result.stdout.count("(server dry run)") == 3


# --- the operator ----------------------------------------------------------------------------


def test_chain_runs_in_dependency_order_on_gpu_nodes(api: Api, cluster: KubeCluster) -> None:
    result = {
        "metrics": {"pairs": 40, "trainPairs": 32, "evalPairs": 8},
        "outputs": {"train": "/artifacts/datasets/chain-docs/train.jsonl"},
    }
    api.create(finetune("chain-tune", dataset_ref="chain-docs", resources=run_ms(300)))
    api.create(
        evaluation(
            "chain-compare",
            dataset_ref="chain-docs",
            finetune_ref="chain-tune",
            resources=run_ms(300),
        )
    )

    missing = api.wait_phase("FineTuneJob", "chain-tune", "Waiting")
    assert condition(missing, "InputsReady")["reason"] == "ReferenceNotFound"
    assert "spec.dataset.datasetGenerationRef" in missing["message"]

    api.create(
        dataset(
            "chain-docs", resources=run_ms(3000, **{"llmft.io/kwok-message": json.dumps(result)})
        )
    )
    api.wait_phase("DatasetGeneration", "chain-docs", "Running")
    # The FineTuneJob's re-check (with back-off) may first have seen the DatasetGeneration
    # Pending: wait for the one that sees it Running.
    not_ready = wait_for(
        lambda: (
            (s := api.status("FineTuneJob", "chain-tune"))
            and condition(s, "InputsReady")["reason"] != "ReferenceNotFound"
            and "(phase Pending)" not in s["message"]
            and s
        ),
        30,
        what="ftj sees docs running",
    )
    assert condition(not_ready, "InputsReady")["reason"] == "UpstreamNotReady"
    assert "to succeed (phase Running)" in not_ready["message"]
    assert api.job("chain-tune-ftj") is None

    docs = api.wait_phase("DatasetGeneration", "chain-docs", "Succeeded")
    tune = api.wait_phase("FineTuneJob", "chain-tune", "Succeeded")
    compare = api.wait_phase("Evaluation", "chain-compare", "Succeeded")

    assert docs["metrics"] == result["metrics"] and docs["outputs"] == result["outputs"]
    assert docs["artifacts"]["uri"] == "pvc://llmft-artifacts/datasets/chain-docs"
    jobs = {
        name: api.job(name) for name in ("chain-docs-dsgen", "chain-tune-ftj", "chain-compare-eval")
    }
    created = [j.metadata.creation_timestamp for j in jobs.values()]
    assert created == sorted(created)
    assert jobs["chain-tune-ftj"].metadata.creation_timestamp >= _time(docs["completionTime"])
    assert jobs["chain-compare-eval"].metadata.creation_timestamp >= _time(tune["completionTime"])
    (pod,) = api.pods_of("chain-tune-ftj")
    assert pod.spec.node_name in GPU_NODES
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    (cpu_pod,) = api.pods_of("chain-docs-dsgen")
    assert cpu_pod.spec.node_name == "cpu-0"
    for status in (docs, tune, compare):
        assert condition(status, "Ready")["status"] == "True"
        assert condition(status, "Complete")["status"] == "True"
        assert status["observedGeneration"] == 1 and status["startTime"]
    assert compare["jobName"] == "chain-compare-eval"
    table = cluster.kubectl("get", "dsgen,ftj,eval", "-n", NS).stdout
    assert table.count("Succeeded") >= 3 and "PAIRS" in table and "WINNER" in table
    wait_for(
        lambda: (
            {"ReferenceNotFound", "JobCreated", "Succeeded"}
            <= {e.reason for e in api.events_for("chain-tune")}
        ),
        20,
        what="the chain's events",
    )


def _time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_spec_is_resolved_into_the_mounted_configmap(api: Api, docs: str) -> None:
    api.create(finetune("resolved", dataset_ref=docs, resources=run_ms(200)))
    api.wait_phase("FineTuneJob", "resolved", "Succeeded")

    cm = api.core.read_namespaced_config_map("resolved-ftj-spec", NS)
    spec = json.loads(cm.data["spec.json"])["spec"]

    assert spec["dataset"] == {"path": "/artifacts/datasets/docs"}
    assert spec["output"]["path"] == "/artifacts/finetune/resolved"
    assert cm.metadata.owner_references[0].kind == "FineTuneJob"


def test_workload_reports_progress_and_metrics_through_its_service_account(
    api: Api, cluster: KubeCluster, tmp_path: Path
) -> None:
    final = {"metrics": {"trainLoss": 1.1}, "outputs": {"adapter": "/artifacts/x/adapter"}}
    api.create(
        finetune(
            "reported",
            dataset={"path": "datasets/reported"},
            resources=run_ms(4000, **{"llmft.io/kwok-message": json.dumps(final)}),
        )
    )
    api.wait_phase("FineTuneJob", "reported", "Running")
    (pod,) = api.pods_of("reported-ftj")
    kubeconfig = token_kubeconfig(
        cluster, "llmft-workload", NS, tmp_path / "kubeconfig", pod=pod.metadata.name
    )
    as_workload = config.new_client_from_config(config_file=str(kubeconfig))
    workload_api = client.CustomObjectsApi(as_workload)

    workload_api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        NS,
        "finetunejobs",
        "reported",
        {
            "status": {
                "progress": {"step": 5, "total": 10, "loss": 1.4, "tokensPerSecond": 900.0},
                "metrics": {"tokensSeen": 51200},
            }
        },
    )
    running = api.status("FineTuneJob", "reported")
    done = api.wait_phase("FineTuneJob", "reported", "Succeeded")

    assert running["progress"]["step"] == 5 and running["phase"] == "Running"
    assert done["metrics"] == {"tokensSeen": 51200, "trainLoss": 1.1}
    assert done["progress"]["loss"] == 1.4 and done["progress"]["percent"] == 100.0
    with pytest.raises(ApiException) as spec_patch:
        workload_api.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "finetunejobs", "reported", {"spec": {"method": "lora"}}
        )
    assert spec_patch.value.status == 403
    with pytest.raises(ApiException) as secrets:
        client.CoreV1Api(as_workload).list_namespaced_secret(NS)
    assert secrets.value.status == 403


def test_a_workload_cannot_forge_another_resources_status(
    api: Api, cluster: KubeCluster, tmp_path: Path
) -> None:
    # An upstream still running, and a downstream waiting for it.
    api.create(dataset("forged-docs", resources=run_ms(120000)))
    api.create(finetune("forger", dataset={"path": "datasets/x"}, resources=run_ms(120000)))
    api.create(finetune("forged-tune", dataset_ref="forged-docs", resources=run_ms(200)))
    api.wait_phase("DatasetGeneration", "forged-docs", "Running")
    api.wait_phase("FineTuneJob", "forger", "Running")
    (pod,) = api.pods_of("forger-ftj")
    kubeconfig = token_kubeconfig(
        cluster, "llmft-workload", NS, tmp_path / "kubeconfig", pod=pod.metadata.name
    )
    workload_api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    forged = {"phase": "Succeeded", "artifacts": {"pvc": "llmft-artifacts", "path": "etc"}}

    refused = []
    for plural, name, status in [
        ("datasetgenerations", "forged-docs", forged),
        ("datasetgenerations", "forged-docs", {"progress": {"percent": 100.0}}),
        ("finetunejobs", "forger", {"phase": "Succeeded"}),
    ]:
        with pytest.raises(ApiException) as err:
            workload_api.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, plural, name, {"status": status}
            )
        refused.append(err.value.status)

    assert refused == [403, 403, 403]
    assert api.status("DatasetGeneration", "forged-docs")["phase"] == "Running"
    assert api.job("forged-tune-ftj") is None
    for plural, name in [("finetunejobs", "forger"), ("datasetgenerations", "forged-docs")]:
        api.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, plural, name)


def test_failed_pods_give_failed_with_the_reason(api: Api, docs: str) -> None:
    error = json.dumps({"error": "dataset.path: /artifacts/none has no train.jsonl", "metrics": {}})
    api.create(
        finetune(
            "oom",
            dataset_ref=docs,
            resources={
                "backoffLimit": 0,
                "memory": "20Gi",
                **run_ms(300, **{"llmft.io/kwok-fail": "OOMKilled"}),
            },
        )
    )
    api.create(
        finetune(
            "bad-data",
            dataset_ref=docs,
            resources={
                "backoffLimit": 0,
                **run_ms(300, **{"llmft.io/kwok-fail": "Error", "llmft.io/kwok-message": error}),
            },
        )
    )

    oom = api.wait_phase("FineTuneJob", "oom", "Failed")
    bad = api.wait_phase("FineTuneJob", "bad-data", "Failed")

    assert condition(oom, "Failed")["reason"] == "OOMKilled"
    assert "memory limit 20Gi" in oom["message"]
    assert condition(bad, "Failed")["reason"] == "Error"
    assert "exited with code 1: dataset.path: /artifacts/none has no train.jsonl" in bad["message"]
    assert condition(bad, "Ready")["status"] == "False" and bad["completionTime"]
    # kopf posts events from a queue of its own: the event may follow the status.
    wait_for(
        lambda: "OOMKilled" in [e.reason for e in api.events_for("oom") if e.type == "Warning"],
        20,
        what="OOMKilled warning event",
    )


def test_missing_secret_waits_with_a_clear_condition_until_it_exists(api: Api, docs: str) -> None:
    hub = {"huggingFace": {"repo": "acme/hr-lora", "tokenSecretRef": {"name": "hub", "key": "tok"}}}
    api.create(finetune("pushed", dataset_ref=docs, output=hub, resources=run_ms(200)))

    waiting = api.wait_phase("FineTuneJob", "pushed", "Waiting")
    inputs = condition(waiting, "InputsReady")
    assert inputs["reason"] == "SecretNotFound"
    assert "Secret 'hub' (spec.output.huggingFace.tokenSecretRef) not found" in inputs["message"]
    assert api.job("pushed-ftj") is None
    wait_for(
        lambda: "SecretNotFound" in [e.reason for e in api.events_for("pushed")],
        20,
        what="SecretNotFound event",
    )

    api.core.create_namespaced_secret(
        NS,
        client.V1Secret(metadata=client.V1ObjectMeta(name="hub"), string_data={"tok": "hf_s3cr3t"}),
    )
    not_allowed = wait_for(
        lambda: (
            (s := api.status("FineTuneJob", "pushed"))
            and condition(s, "InputsReady")["reason"] == "SecretNotAllowed"
            and s
        ),
        30,
        what="SecretNotAllowed",
    )
    assert "llmft.io/use-in-workloads=true" in not_allowed["message"]
    assert api.job("pushed-ftj") is None
    api.core.patch_namespaced_secret(
        "hub", NS, {"metadata": {"labels": {"llmft.io/use-in-workloads": "true"}}}
    )
    done = api.wait_phase("FineTuneJob", "pushed", "Succeeded")

    env = {e.name: e for e in api.job("pushed-ftj").spec.template.spec.containers[0].env}
    assert env["LLMFT_HF_PUSH_TOKEN"].value_from.secret_key_ref.name == "hub"
    assert env["LLMFT_HF_PUSH_TOKEN"].value is None
    seen = json.dumps(done) + " ".join(e.message or "" for e in api.events_for("pushed"))
    assert "hf_s3cr3t" not in seen


def test_a_secret_without_the_referenced_key_waits_naming_both_until_it_is_fixed(
    api: Api, docs: str
) -> None:
    # The seed's gated base model: a Hub read token, in a Secret whose key has a typo.
    gated = {"name": "meta-llama/Meta-Llama-3-8B-Instruct"}
    gated["tokenSecretRef"] = {"name": "hf-read", "key": "token"}  # type: ignore[assignment]
    opted_in = client.V1ObjectMeta(name="hf-read", labels={"llmft.io/use-in-workloads": "true"})
    api.core.create_namespaced_secret(
        NS, client.V1Secret(metadata=opted_in, string_data={"tokn": "hf_r34d"})
    )
    api.create(finetune("gated", dataset_ref=docs, baseModel=gated, resources=run_ms(200)))

    waiting = api.wait_phase("FineTuneJob", "gated", "Waiting")
    inputs = condition(waiting, "InputsReady")
    assert inputs["reason"] == "SecretKeyNotFound"
    missing = "Secret 'hf-read' has no key 'token' (spec.baseModel.tokenSecretRef)"
    assert inputs["message"] == missing
    assert api.job("gated-ftj") is None
    warned = wait_for(
        lambda: [e for e in api.events_for("gated") if e.reason == "SecretKeyNotFound"],
        20,
        what="SecretKeyNotFound event",
    )
    assert warned[0].type == "Warning"

    api.core.patch_namespaced_secret("hf-read", NS, {"stringData": {"token": "hf_r34d"}})
    done = api.wait_phase("FineTuneJob", "gated", "Succeeded")

    assert condition(done, "InputsReady")["status"] == "True"
    seen = json.dumps(done) + " ".join(e.message or "" for e in api.events_for("gated"))
    assert "hf_r34d" not in seen


def test_spec_change_after_completion_is_recorded_not_silently_ignored(api: Api, docs: str) -> None:
    api.create(finetune("changed", dataset_ref=docs, resources=run_ms(200)))
    api.wait_phase("FineTuneJob", "changed", "Succeeded")

    api.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "finetunejobs", "changed", {"spec": {"method": "lora"}}
    )
    status = wait_for(
        lambda: (s := api.status("FineTuneJob", "changed")).get("observedGeneration") == 2 and s,
        20,
        what="observedGeneration 2",
    )

    changed = condition(status, "SpecOutOfDate")
    assert changed["status"] == "True" and changed["reason"] == "SpecChangedAfterCompletion"
    assert status["phase"] == "Succeeded"
    assert len(api.pods_of("changed-ftj")) == 1
    wait_for(
        lambda: "SpecChangedAfterCompletion" in [e.reason for e in api.events_for("changed")],
        20,
        what="SpecChangedAfterCompletion event",
    )


def test_deleting_a_resource_deletes_its_job(api: Api, docs: str) -> None:
    api.create(finetune("doomed", dataset_ref=docs, resources=run_ms(120000)))
    api.wait_phase("FineTuneJob", "doomed", "Running")

    api.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "finetunejobs", "doomed")

    wait_for(lambda: api.job("doomed-ftj") is None, 60, what="Job garbage-collected")
    wait_for(lambda: not api.pods_of("doomed-ftj"), 60, what="pod garbage-collected")


def test_restarted_operator_creates_no_duplicate_job_and_keeps_status(
    api: Api, operator: OperatorProcess, docs: str
) -> None:
    api.create(finetune("survivor", dataset_ref=docs, resources=run_ms(3000)))
    api.wait_phase("FineTuneJob", "survivor", "Running")
    job_uid = api.job("survivor-ftj").metadata.uid

    operator.stop()
    api.create(finetune("latecomer", dataset_ref=docs, resources=run_ms(200)))
    wait_for(lambda: api.job("survivor-ftj").status.succeeded, 30, what="Job done meanwhile")
    operator.start()

    survivor = api.wait_phase("FineTuneJob", "survivor", "Succeeded")
    api.wait_phase("FineTuneJob", "latecomer", "Succeeded")
    assert api.job("survivor-ftj").metadata.uid == job_uid
    assert len(api.pods_of("survivor-ftj")) == 1
    assert survivor["startTime"] and survivor["jobName"] == "survivor-ftj"


def test_operator_killed_during_a_burst_of_creates_makes_each_job_once_and_loses_no_status(
    api: Api, operator: OperatorProcess
) -> None:
    names = [f"burst-{i}" for i in range(24)]
    for name in names:
        api.create(dataset(name, resources=run_ms(200)))
    jobs = lambda: {  # noqa: E731
        j.metadata.name: j.metadata.uid
        for j in api.batch.list_namespaced_job(NS, label_selector="llmft.io/name").items
        if j.metadata.name.startswith("burst-")
    }
    wait_for(lambda: jobs(), 60, 0.1, what="the first burst Job")
    operator.kill()  # mid-reconcile: most of the burst is not handled yet
    before = jobs()
    seen = {n: api.status("DatasetGeneration", n) for n in names}
    operator.start()

    done = {n: api.wait_phase("DatasetGeneration", n, "Succeeded", timeout=180) for n in names}
    after = jobs()
    assert sorted(after) == sorted(f"{n}-dsgen" for n in names)  # one Job each, no duplicate
    assert all(after[name] == uid for name, uid in before.items())  # none re-created
    for name in names:
        assert len(api.pods_of(f"{name}-dsgen")) == 1
        if seen[name].get("startTime"):  # what was recorded before the kill is still there
            assert done[name]["startTime"] == seen[name]["startTime"]
        assert done[name]["jobName"] == f"{name}-dsgen"


def test_two_operators_overlapping_post_each_transition_once(
    api: Api, operator: OperatorProcess, tmp_path: Path
) -> None:
    """A replaced operator pod runs on while its successor starts (a deleted pod's grace
    period): both see every Job event, yet each transition is written and posted once."""
    second = OperatorProcess(api.cluster, tmp_path, operator.kubeconfig)
    second.start()
    try:
        fail = {"llmft.io/kwok-fail": "Error"}
        api.create(finetune("overlap", dataset={"path": "datasets/o"}, resources={
            "backoffLimit": 1, **run_ms(500, **fail)}))  # fmt: skip
        api.wait_phase("FineTuneJob", "overlap", "Failed", timeout=90)
        warnings = lambda: [  # noqa: E731
            e.reason for e in api.events_for("overlap") if e.type == "Warning"
        ]
        # kopf posts events from a queue of its own: wait for the last transition's.
        wait_for(lambda: "Error" in warnings(), 20, what="the failure's Warning event")
    finally:
        second.stop()
    assert sorted(warnings()) == ["Error", "Retrying"], second.tail()


def test_health_and_prometheus_metrics_are_served(api: Api, operator: OperatorProcess) -> None:
    api.create(finetune("metered", dataset={"path": "datasets/m"}, resources=run_ms(200)))
    api.wait_phase("FineTuneJob", "metered", "Succeeded")

    metrics = http_get(f"http://127.0.0.1:{operator.metrics_port}/metrics")

    assert operator.healthy()
    assert 'llmft_operator_jobs_created_total{kind="FineTuneJob"}' in metrics
    assert 'llmft_operator_resources{kind="FineTuneJob",phase="Succeeded"}' in metrics
    assert "llmft_operator_reconcile_seconds_bucket" in metrics


def test_quickstart_examples_run_in_order_when_applied(api: Api, cluster: KubeCluster) -> None:
    # As its first file says: on a cluster, the local source.path becomes a cluster source.
    manifests = []
    for path in sorted((ROOT / "examples" / "quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "DatasetGeneration":
                doc["spec"]["source"] = {"configMap": "handbook"}
            manifests.append(doc)
    cluster.kubectl(
        "apply",
        "-n",
        NS,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
    )

    statuses = [
        api.wait_phase(kind, name, "Succeeded")
        for kind, name in (
            ("DatasetGeneration", "hr-handbook"),
            ("FineTuneJob", "hr-lora"),
            ("Evaluation", "hr-compare"),
        )
    ]

    jobs = [api.job(s["jobName"]) for s in statuses]
    assert [j.metadata.name for j in jobs] == [
        "hr-handbook-dsgen",
        "hr-lora-ftj",
        "hr-compare-eval",
    ]
    for upstream, job in zip(statuses, jobs[1:], strict=False):
        assert job.metadata.creation_timestamp >= _time(upstream["completionTime"])


def test_job_deleted_by_hand_mid_run_leaves_the_resource_failed(api: Api, docs: str) -> None:
    api.create(finetune("orphaned", dataset_ref=docs, resources=run_ms(120000)))
    api.wait_phase("FineTuneJob", "orphaned", "Running")

    api.batch.delete_namespaced_job("orphaned-ftj", NS, propagation_policy="Background")
    status = api.wait_phase("FineTuneJob", "orphaned", "Failed")

    assert condition(status, "Failed")["reason"] == "JobDeleted"
    assert "delete and re-create" in status["message"]
    assert api.job("orphaned-ftj") is None


def _metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry `labels` (in any order)."""
    text = http_get(f"http://127.0.0.1:{operator.metrics_port}/metrics")
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in wanted)
    )


def test_deletion_never_waits_for_the_operator(api: Api, operator: OperatorProcess) -> None:
    # A Job suspended for Kueue keeps the resource Pending with a Job: what kopf's timer (and its
    # finalizer) used to cover. The finalizer an older operator left is removed too.
    timer = {"kind": "FineTuneJob", "trigger": "timer"}
    body = finetune("queued", dataset={"path": "datasets/docs"}, resources={"queueName": "nowhere"})
    body["metadata"]["finalizers"] = ["llmft.io/operator"]
    api.create(body)
    api.wait_phase("FineTuneJob", "queued", "Pending")
    refreshed = _metric(operator, "llmft_operator_reconciles_total", **timer)
    wait_for(
        lambda: _metric(operator, "llmft_operator_reconciles_total", **timer) > refreshed,
        30,
        what="a refresh of the resource",
        logs=operator.tail,
    )
    wait_for(
        lambda: not api.get("FineTuneJob", "queued")["metadata"].get("finalizers"),
        30,
        what="no finalizer on the resource",
        logs=operator.tail,
    )

    operator.stop()
    try:
        api.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "finetunejobs", "queued")
        wait_for(lambda: _gone(api, "FineTuneJob", "queued"), 30, what="deleted, operator stopped")
    finally:
        operator.start()


def _gone(api: Api, kind: str, name: str) -> bool:
    try:
        api.get(kind, name)
    except ApiException as err:
        if err.status == 404:
            return True
        raise
    return False


def test_a_spec_configmap_with_a_forged_owner_is_refused_naming_it(api: Api) -> None:
    hub = {"huggingFace": {"repo": "acme/x", "tokenSecretRef": {"name": "forge-hub", "key": "t"}}}
    api.create(
        finetune("victim", dataset={"path": "datasets/v"}, output=hub, resources=run_ms(200))
    )
    api.wait_phase("FineTuneJob", "victim", "Waiting")
    uid = api.get("FineTuneJob", "victim")["metadata"]["uid"]
    owner = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "name": "victim",
        "uid": uid,
    }
    evil = {"spec.json": json.dumps({"spec": {"baseModel": {"name": "attacker/model"}}})}
    api.core.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="victim-ftj-spec", owner_references=[owner]),
            data=evil,
        ),
    )
    api.core.create_namespaced_secret(
        NS,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="forge-hub", labels={"llmft.io/use-in-workloads": "true"}
            ),
            string_data={"t": "hf_x"},
        ),
    )

    refused = wait_for(
        lambda: (
            (s := api.status("FineTuneJob", "victim"))
            and condition(s, "InputsReady").get("reason") == "ChildNameConflict"
            and s
        ),
        30,
        what="ChildNameConflict",
    )
    assert "ConfigMap 'victim-ftj-spec'" in refused["message"]
    assert api.job("victim-ftj") is None

    api.core.delete_namespaced_config_map("victim-ftj-spec", NS)
    api.wait_phase("FineTuneJob", "victim", "Succeeded")
    spec = json.loads(api.core.read_namespaced_config_map("victim-ftj-spec", NS).data["spec.json"])
    assert spec["spec"]["baseModel"]["name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_child_the_api_server_refuses_fails_the_resource_with_its_message(api: Api) -> None:
    # Each template fits the CRD, but the resolved spec is over the 1 MiB a ConfigMap may hold.
    template = "{{ messages }}" + "x" * 64000
    arms = [
        {"name": f"arm-{i}", "baseModel": {"name": "m", "chatTemplate": template}}
        for i in range(18)
    ]
    api.create(evaluation("oversized", dataset={"path": "datasets/x"}, arms=arms))

    failed = api.wait_phase("Evaluation", "oversized", "Failed")

    refused = condition(failed, "Failed")
    assert refused["reason"] == "CreateRefused"
    assert "the API server refused ConfigMap oversized-eval-spec" in refused["message"]
    assert "1048576" in refused["message"]
    wait_for(
        lambda: "CreateRefused" in [e.reason for e in api.events_for("oversized")],
        20,
        what="CreateRefused event",
    )


def test_a_pod_refused_by_a_quota_shows_why_on_the_resource(api: Api) -> None:
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="tiny"),
        spec=client.V1ResourceQuotaSpec(hard={"requests.memory": "1Mi"}),
    )
    api.core.create_namespaced_resource_quota(NS, quota)
    try:
        api.create(finetune("over-quota", dataset={"path": "datasets/q"}, resources=run_ms(200)))
        refused = wait_for(
            lambda: (
                (s := api.status("FineTuneJob", "over-quota"))
                and condition(s, "Ready").get("reason") == "FailedCreate"
                and s
            ),
            60,
            what="FailedCreate on the resource",
            logs=api.op.tail if api.op else None,
        )
        assert refused["phase"] == "Pending"
        # Found by the refresher's tick (no Job event says it): its Event is posted as well.
        wait_for(
            lambda: (
                "FailedCreate"
                in {e.reason for e in api.events_for("over-quota") if e.type == "Warning"}
            ),
            30,
            what="FailedCreate warning event",
            logs=api.op.tail if api.op else None,
        )
        assert "exceeded quota: tiny" in refused["message"]
    finally:
        api.core.delete_namespaced_resource_quota("tiny", NS)
        # How soon the Job controller tries again is its own backoff: not part of this test.
        api.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "finetunejobs", "over-quota")


def test_a_local_source_path_fails_on_the_cluster_naming_the_field(api: Api) -> None:
    api.create(dataset("local-docs", source={"path": "/etc"}))

    failed = api.wait_phase("DatasetGeneration", "local-docs", "Failed")

    assert "spec.source.path" in failed["message"] and "spec.source.configMap" in failed["message"]
    assert api.job("local-docs-dsgen") is None
