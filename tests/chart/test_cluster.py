"""The chart on the real API server: applied, installed, admitted as `restricted`, RBAC-tight.

kwok runs the pods (no image is pulled), so these tests show what the API server decides:
schema and server-side validation, Pod Security admission, RBAC. The operator's behaviour is
tested in-process by tests/operator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart.helm import CHART, EVERYTHING_ON, helm, merged, values_file
from servers.launch import GPU_NODES, KubeCluster, free_port, wait_for, write_kubeconfig

pytestmark = pytest.mark.k8s

SYSTEM_NS = "llmft-system"
TEAM_NS = "llmft-team"
SCOPED_SYSTEM_NS = "llmft-scoped-system"
SCOPED_TEAM_NS = "llmft-scoped-team"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
OPERATOR = f"system:serviceaccount:{SYSTEM_NS}:llmft-operator"
WORKLOAD = f"system:serviceaccount:{TEAM_NS}:llmft-workload"
# A statically provisioned volume the artefact PVC binds to: the test cluster has no provisioner.
STORAGE_CLASS = "llmft-test-static"
EXAMPLES = Path(__file__).parents[2] / "examples" / "cluster"


@dataclass
class Install:
    cluster: KubeCluster
    tmp: Path

    def helm(self, *args: str, timeout: float = 180) -> str:
        return helm(*args, "--kubeconfig", str(self.cluster.kubeconfig), timeout=timeout).stdout


def get_json(cluster: KubeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def running_pods(cluster: KubeCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in pods if p["status"].get("phase") == "Running"]


def static_volume(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "200Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/{name}"},
        },
    }


def installable_chart(cluster: KubeCluster, tmp: Path) -> Path:
    """The chart, or a copy without its kubeVersion floor when the server reports no version.

    API servers built from source without version ldflags say v0.0.0-master, which no
    kubeVersion range admits; a versioned server gets the chart exactly as shipped.
    """
    # kubectl exits 1 when it finds the server more than one minor version ahead; the JSON is there.
    result = cluster.kubectl("version", "-o", "json", check=False)
    version = json.loads(result.stdout)["serverVersion"]
    if version["gitVersion"].startswith("v0.0.0"):
        copy = tmp / "llmft-operator"
        shutil.copytree(CHART, copy)
        chart_yaml = copy / "Chart.yaml"
        chart_yaml.write_text(re.sub(r"(?m)^kubeVersion:.*\n", "", chart_yaml.read_text()))
        return copy
    return CHART


@pytest.fixture(scope="module")
def installed(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    """The chart installed with Ollama, Weaviate, PVC and NetworkPolicies, in restricted namespaces.

    A second release watches one namespace only, to show the operator's namespaced RBAC.
    """
    inst = Install(kube_cluster, tmp_path_factory.mktemp("chart"))
    for ns in (SYSTEM_NS, TEAM_NS, SCOPED_SYSTEM_NS, SCOPED_TEAM_NS):
        kube_cluster.create_namespace(ns, labels=RESTRICTED)
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(static_volume("llmft-chart-test")))
    values = merged(
        EVERYTHING_ON,
        {
            # No Kueue here: a queue name would leave the Jobs suspended, waiting for it.
            "workloads": {"namespaces": [TEAM_NS], "kueueQueue": ""},
            "artifacts": {"pvc": {"storageClassName": STORAGE_CLASS, "keep": False}},
            "ollama": {"persistence": {"enabled": False}},
            "weaviate": {"persistence": {"enabled": False}},
            # The test cluster has no Prometheus Operator CRDs.
            "metrics": {"serviceMonitor": {"enabled": False}},
        },
    )
    chart = installable_chart(kube_cluster, inst.tmp)
    inst.helm(
        "install",
        "llmft",
        str(chart),
        "--namespace",
        SYSTEM_NS,
        "-f",
        str(values_file(inst.tmp, values)),
    )
    kube_cluster.kubectl(
        "apply", "-f", "-", input=json.dumps(static_volume("llmft-chart-test-scoped"))
    )
    scoped = {
        "operator": {"watchNamespace": SCOPED_TEAM_NS},
        "artifacts": {"pvc": {"create": True, "storageClassName": STORAGE_CLASS, "keep": False}},
    }
    inst.helm(
        "install",
        "llmft-scoped",
        str(chart),
        "--namespace",
        SCOPED_SYSTEM_NS,
        "-f",
        str(values_file(inst.tmp, scoped, "scoped.json")),
    )
    try:
        yield inst
    finally:
        for release, ns in (("llmft", SYSTEM_NS), ("llmft-scoped", SCOPED_SYSTEM_NS)):
            helm(
                "uninstall",
                release,
                "--namespace",
                ns,
                "--kubeconfig",
                str(kube_cluster.kubeconfig),
                check=False,
                timeout=120,
            )
        kube_cluster.kubectl(
            "delete",
            "namespace",
            SYSTEM_NS,
            TEAM_NS,
            SCOPED_SYSTEM_NS,
            SCOPED_TEAM_NS,
            "--wait=false",
            check=False,
        )
        kube_cluster.kubectl(
            "delete",
            "pv",
            "llmft-chart-test",
            "llmft-chart-test-scoped",
            "--wait=false",
            check=False,
        )


def can_i(
    cluster: KubeCluster,
    who: str,
    verb: str,
    resource: str,
    namespace: str,
    subresource: str | None = None,
) -> bool:
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={who}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    result = cluster.kubectl(*args, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


# --- apply -----------------------------------------------------------------------------------


def test_rendered_manifests_pass_server_side_dry_run(
    kube_cluster: KubeCluster, tmp_path: Path
) -> None:
    """Every template, CRDs included, is accepted by the API server's validation."""
    ns = kube_cluster.create_namespace("llmft-dry-run")
    values = merged(EVERYTHING_ON, {"metrics": {"serviceMonitor": {"enabled": False}}})
    rendered = helm(
        "template",
        "dry",
        str(CHART),
        "--namespace",
        ns,
        "--include-crds",
        "-f",
        str(values_file(tmp_path, values)),
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]

    result = kube_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)

    assert len([line for line in result.stdout.splitlines() if "(server dry run)" in line]) == len(
        docs
    )
    assert "customresourcedefinition.apiextensions.k8s.io/finetunejobs.llmft.io" in result.stdout


# --- helm install ----------------------------------------------------------------------------


def test_helm_install_runs_the_operator_pod_in_a_restricted_namespace(installed: Install) -> None:
    cluster = installed.cluster
    pods = wait_for(
        lambda: running_pods(cluster, SYSTEM_NS, "app.kubernetes.io/component=operator"), timeout=90
    )
    assert len(pods) == 1
    assert pods[0]["spec"]["nodeName"] not in GPU_NODES, "the operator takes no GPU node"
    status = json.loads(installed.helm("status", "llmft", "-n", SYSTEM_NS, "-o", "json"))
    assert status["info"]["status"] == "deployed"
    for crd in ("datasetgenerations", "finetunejobs", "evaluations"):
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd}.llmft.io", "--timeout=30s"
        )


@pytest.mark.parametrize("component", ["ollama", "weaviate"])
def test_ollama_and_weaviate_pods_are_admitted_as_restricted(
    installed: Install, component: str
) -> None:
    pods = wait_for(
        lambda: running_pods(
            installed.cluster, SYSTEM_NS, f"app.kubernetes.io/component={component}"
        ),
        timeout=90,
    )
    assert len(pods) == 1


def test_restricted_namespace_refuses_a_pod_without_the_security_settings(
    installed: Install,
) -> None:
    """The control: Pod Security really is enforced where the chart's pods were admitted."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "careless"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    result = installed.cluster.kubectl(
        "apply", "--dry-run=server", "-n", SYSTEM_NS, "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr


def test_artefact_pvc_and_workload_identity_land_in_the_workload_namespace(
    installed: Install,
) -> None:
    cluster = installed.cluster
    wait_for(
        lambda: (
            get_json(cluster, "pvc", "llmft-artifacts", "-n", TEAM_NS)["status"].get("phase")
            == "Bound"
        ),
        timeout=90,
    )
    cluster.kubectl("get", "serviceaccount", "llmft-workload", "-n", TEAM_NS)
    cluster.kubectl("get", "rolebinding", "llmft-workload", "-n", TEAM_NS)


# --- the workload pod under `restricted` -----------------------------------------------------


def test_a_gpu_workload_job_from_the_operator_is_admitted_and_runs(installed: Install) -> None:
    """The operator's own Job builder, fed the installed ConfigMap, passes `restricted`."""
    from llmft.api.resource import parse_resource
    from llmft_operator.jobs import build_workload_job
    from llmft_operator.resolve import Fetched, plan_workload
    from llmft_operator.settings import OperatorSettings

    cluster = installed.cluster
    config = get_json(cluster, "configmap", "llmft-config", "-n", SYSTEM_NS)["data"]
    settings = OperatorSettings.from_env(config)
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "psa-check", "namespace": TEAM_NS},
        "spec": {
            "baseModel": {
                "name": "meta-llama/Llama-3.2-1B-Instruct",
                "tokenSecretRef": {"name": "hf-token", "key": "token"},
            },
            "dataset": {"path": "datasets/hr"},
            "resources": {"gpuCount": 1, "cpu": "2", "memory": "8Gi"},
        },
    }
    plan = plan_workload(parse_resource(manifest), Fetched(), settings, generation=1)
    job = build_workload_job(plan, settings)
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    created = cluster.kubectl(
        "create", "-n", TEAM_NS, "-f", "-", input=json.dumps(job), check=False
    )
    assert created.returncode == 0, created.stderr
    assert "would violate PodSecurity" not in created.stderr
    name = job["metadata"]["name"]
    done = cluster.kubectl(
        "wait",
        "--for=condition=Complete",
        f"job/{name}",
        "-n",
        TEAM_NS,
        "--timeout=90s",
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        detail = cluster.kubectl("describe", "job,pods", "-n", TEAM_NS, check=False).stdout
        events = cluster.kubectl("get", "events", "-n", TEAM_NS, check=False).stdout
        raise AssertionError(f"job {name} did not complete:\n{detail}\n{events}")
    (pod,) = get_json(cluster, "pods", "-n", TEAM_NS, "-l", f"job-name={name}")["items"]
    assert pod["spec"]["nodeName"] in GPU_NODES
    assert pod["spec"]["serviceAccountName"] == "llmft-workload"
    cluster.kubectl("delete", "job", name, "-n", TEAM_NS, "--cascade=foreground", check=False)


# --- RBAC: the operator ----------------------------------------------------------------------

OPERATOR_MAY = [
    ("get", "finetunejobs.llmft.io", None),
    ("list", "datasetgenerations.llmft.io", None),
    ("watch", "evaluations.llmft.io", None),
    ("patch", "finetunejobs.llmft.io", None),
    ("patch", "finetunejobs.llmft.io", "status"),
    ("patch", "evaluations.llmft.io", "status"),
    ("update", "finetunejobs.llmft.io", "finalizers"),
    ("create", "jobs.batch", None),
    ("watch", "jobs.batch", None),
    ("create", "configmaps", None),
    ("get", "configmaps", None),
    ("create", "events", None),
    ("list", "events", None),
    ("list", "pods", None),
    ("get", "persistentvolumeclaims", None),
    ("get", "serviceaccounts", None),
    ("get", "secrets", None),
]
OPERATOR_MAY_NOT = [
    ("list", "secrets", None),  # names only by reference: no enumeration
    ("watch", "secrets", None),
    ("create", "secrets", None),
    ("create", "pods", None),  # pods only through Jobs
    ("delete", "pods", None),
    ("watch", "pods", None),
    ("create", "pods", "exec"),
    ("get", "pods", "log"),
    ("update", "finetunejobs.llmft.io", None),
    # (create finetunejobs and delete jobs are granted: the Experiment controller creates its
    # trials and stops a pruned trial's Job.)
    ("delete", "finetunejobs.llmft.io", None),  # users delete their experiments, not the operator
    ("create", "rolebindings.rbac.authorization.k8s.io", None),
    ("create", "serviceaccounts", None),
    ("create", "serviceaccounts", "token"),
    ("create", "deployments.apps", None),
    ("update", "jobs.batch", None),
    ("list", "configmaps", None),
    ("delete", "configmaps", None),
    ("create", "persistentvolumeclaims", None),
]


@pytest.mark.parametrize(("verb", "resource", "sub"), OPERATOR_MAY)
def test_operator_may_do_its_work(
    installed: Install, verb: str, resource: str, sub: str | None
) -> None:
    assert can_i(installed.cluster, OPERATOR, verb, resource, TEAM_NS, sub)


@pytest.mark.parametrize(("verb", "resource", "sub"), OPERATOR_MAY_NOT)
def test_operator_is_refused_what_it_does_not_need(
    installed: Install, verb: str, resource: str, sub: str | None
) -> None:
    assert not can_i(installed.cluster, OPERATOR, verb, resource, TEAM_NS, sub)


def test_operator_cannot_change_crds_or_cluster_rbac(installed: Install) -> None:
    cluster = installed.cluster
    assert can_i(
        cluster, OPERATOR, "watch", "customresourcedefinitions.apiextensions.k8s.io", "default"
    )
    for verb, resource in [
        ("update", "customresourcedefinitions.apiextensions.k8s.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("list", "nodes"),
    ]:
        assert not can_i(cluster, OPERATOR, verb, resource, "default"), (verb, resource)


def test_operator_really_creates_a_configmap_and_is_refused_listing_secrets(
    installed: Install,
) -> None:
    """Impersonated requests, not just `can-i`: the API server acts on them."""
    cluster = installed.cluster
    cluster.kubectl(
        "create", "configmap", "rbac-probe", "-n", TEAM_NS, "--from-literal=k=v", f"--as={OPERATOR}"
    )
    cluster.kubectl("get", "configmap", "rbac-probe", "-n", TEAM_NS, f"--as={OPERATOR}")
    cluster.kubectl("delete", "configmap", "rbac-probe", "-n", TEAM_NS)
    refused = cluster.kubectl("get", "secrets", "-n", TEAM_NS, f"--as={OPERATOR}", check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr and 'cannot list resource "secrets"' in refused.stderr


def test_namespaced_operator_is_refused_outside_its_namespace(installed: Install) -> None:
    cluster = installed.cluster
    (account,) = get_json(
        cluster,
        "serviceaccounts",
        "-n",
        SCOPED_SYSTEM_NS,
        "-l",
        "app.kubernetes.io/component=operator",
    )["items"]
    scoped = f"system:serviceaccount:{SCOPED_SYSTEM_NS}:{account['metadata']['name']}"
    assert can_i(cluster, scoped, "create", "jobs.batch", SCOPED_TEAM_NS)
    assert can_i(cluster, scoped, "patch", "finetunejobs.llmft.io", SCOPED_TEAM_NS, "status")
    assert not can_i(cluster, scoped, "create", "jobs.batch", TEAM_NS)
    assert not can_i(cluster, scoped, "list", "finetunejobs.llmft.io", TEAM_NS)
    assert not can_i(cluster, scoped, "get", "secrets", TEAM_NS)


# --- RBAC: the workloads ---------------------------------------------------------------------


@pytest.mark.parametrize("plural", ["datasetgenerations", "finetunejobs", "evaluations"])
def test_workload_may_only_patch_status(installed: Install, plural: str) -> None:
    cluster = installed.cluster
    resource = f"{plural}.llmft.io"
    assert can_i(cluster, WORKLOAD, "patch", resource, TEAM_NS, "status")
    assert not can_i(cluster, WORKLOAD, "get", resource, TEAM_NS, "status")
    for verb in ("get", "list", "watch", "patch", "update", "create", "delete"):
        assert not can_i(cluster, WORKLOAD, verb, resource, TEAM_NS), verb
    assert not can_i(cluster, WORKLOAD, "update", resource, TEAM_NS, "status")
    assert not can_i(cluster, WORKLOAD, "patch", resource, SYSTEM_NS, "status")
    for verb, other in [
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "jobs.batch"),
        ("get", "configmaps"),
    ]:
        assert not can_i(cluster, WORKLOAD, verb, other, TEAM_NS), (verb, other)


def as_workload_pod(cluster: KubeCluster, pod: str) -> Any:
    """The API as the workload identity of pod `pod` (what its pod-bound token says)."""
    from kubernetes import client

    api_client = cluster.api_client()
    api_client.set_default_header("Impersonate-User", WORKLOAD)
    api_client.set_default_header("Impersonate-Extra-authentication.kubernetes.io%2fpod-name", pod)
    return client.CustomObjectsApi(api_client)


def test_a_workload_pod_writes_only_its_own_progress_and_never_the_spec(
    installed: Install,
) -> None:
    from kubernetes.client.rest import ApiException

    cluster = installed.cluster
    ftj = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "rbac-probe", "namespace": TEAM_NS},
        "spec": {
            "baseModel": {"name": "meta-llama/Llama-3.2-1B-Instruct"},
            "dataset": {"path": "datasets/hr"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(ftj))

    def patch(api: Any, status: dict[str, Any]) -> int:
        try:
            api.patch_namespaced_custom_object_status(
                "llmft.io", "v1alpha1", TEAM_NS, "finetunejobs", "rbac-probe", {"status": status}
            )
        except ApiException as err:
            return int(err.status)
        return 200

    try:
        # What the operator writes when it creates the Job.
        cluster.kubectl(
            "patch",
            "finetunejob",
            "rbac-probe",
            "-n",
            TEAM_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"phase": "Running", "jobName": "rbac-probe-ftj"}}),
        )
        own = as_workload_pod(cluster, "rbac-probe-ftj-x7k2q")
        other = as_workload_pod(cluster, "rbac-probe-ftj-b-ftj-x7k2q")

        assert patch(own, {"progress": {"step": 3, "total": 10}}) == 200
        body = get_json(cluster, "finetunejob", "rbac-probe", "-n", TEAM_NS)
        assert body["status"]["progress"]["step"] == 3
        assert patch(own, {"phase": "Succeeded"}) in (403, 422)
        assert patch(own, {"artifacts": {"pvc": "x", "path": "y", "uri": "pvc://x/y"}}) in (
            403,
            422,
        )
        assert patch(other, {"progress": {"step": 4}}) in (403, 422)
        unbound = as_workload_pod(cluster, "")
        assert patch(unbound, {"progress": {"step": 5}}) in (403, 422)
        spec_patch = cluster.kubectl(
            "patch",
            "finetunejob",
            "rbac-probe",
            "-n",
            TEAM_NS,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"dataset": {"path": "elsewhere"}}}),
            f"--as={WORKLOAD}",
            check=False,
        )
        assert spec_patch.returncode != 0 and "Forbidden" in spec_patch.stderr
    finally:
        cluster.kubectl("delete", "finetunejob", "rbac-probe", "-n", TEAM_NS, check=False)


# --- the operator, with exactly the chart's permissions --------------------------------------


def operator_kubeconfig(cluster: KubeCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a token of the operator's ServiceAccount, as its pod would have."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    write_kubeconfig(path, cluster.server, cluster.workdir / "ca.crt", token, user=account)
    return path


def test_operator_runs_the_chain_with_only_the_chart_rbac(installed: Install) -> None:
    """`python -m llmft_operator` as the namespaced release's Deployment would run it (its
    ServiceAccount's token, its ConfigMap, its arguments) on examples/cluster: the whole
    experiment reaches Succeeded, as in tests/operator."""
    cluster = installed.cluster
    (account,) = get_json(
        cluster,
        "serviceaccounts",
        "-n",
        SCOPED_SYSTEM_NS,
        "-l",
        "app.kubernetes.io/component=operator",
    )["items"]
    deployment = get_json(
        cluster, "deployments", "-n", SCOPED_SYSTEM_NS, "-l", "app.kubernetes.io/component=operator"
    )["items"][0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (config_ref,) = container["envFrom"]
    config = get_json(
        cluster, "configmap", config_ref["configMapRef"]["name"], "-n", SCOPED_SYSTEM_NS
    )["data"]
    health_port = free_port()
    args = [
        re.sub(
            r"^--liveness=http://0\.0\.0\.0:\d+", f"--liveness=http://127.0.0.1:{health_port}", a
        )
        for a in container["args"]
    ]
    assert any(a.startswith("--liveness=http://127.0.0.1") for a in args)
    env = {
        **os.environ,
        **config,
        "KUBECONFIG": str(
            operator_kubeconfig(
                cluster,
                SCOPED_SYSTEM_NS,
                account["metadata"]["name"],
                installed.tmp / "operator.kubeconfig",
            )
        ),
        # Not the chart's: this process shares the machine with other tests.
        "LLMFT_METRICS_PORT": str(free_port()),
        "LLMFT_RECONCILE_INTERVAL": "1",
    }
    log = installed.tmp / "operator.log"
    ns = SCOPED_TEAM_NS
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmft_operator", *args, "--log-format", "plain"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-40:])

    def phase(kind: str, name: str) -> str | None:
        result = cluster.kubectl(
            "get", kind, name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False
        )
        return result.stdout.strip() or None

    try:
        # The examples a user applies after `helm install`, as they are, except for the pod
        # annotations that tell kwok how long each pod "runs" and what it "prints".
        result = {"metrics": {"pairs": 40, "trainPairs": 32, "evalPairs": 8}, "outputs": {}}
        run = {"llmft.io/kwok-run": "500ms"}
        cluster.kubectl(
            "create",
            "configmap",
            "hr-handbook",
            "-n",
            ns,
            f"--from-file={EXAMPLES.parent / 'hr-handbook'}",
        )
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            "hf-token",
            "-n",
            ns,
            "--from-literal=token=hf_not_a_real_token",
        )
        cluster.kubectl("label", "secret", "hf-token", "-n", ns, "llmft.io/use-in-workloads=true")
        manifests = []
        for path in sorted(EXAMPLES.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                annotations = dict(run)
                if doc["kind"] == "DatasetGeneration":
                    annotations["llmft.io/kwok-message"] = json.dumps(result)
                doc["spec"].setdefault("resources", {})["podAnnotations"] = annotations
                manifests.append(doc)
        cluster.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
        )

        for doc in manifests:
            kind, name = doc["kind"], doc["metadata"]["name"]
            try:
                wait_for(
                    lambda k=kind, n=name: phase(k, n) == "Succeeded" or proc.poll() is not None,
                    timeout=180,
                )
            except AssertionError:
                raise AssertionError(f"{kind}/{name} is {phase(kind, name)}\n{tail()}") from None
            assert proc.poll() is None, f"operator exited ({proc.returncode}):\n{tail()}"
        # The fine-tuning and evaluation Jobs ran on the fake A10 nodes, the dataset's on CPU.
        pods = get_json(cluster, "pods", "-n", ns)["items"]
        nodes = {
            p["metadata"]["labels"].get("job-name", ""): p["spec"].get("nodeName") for p in pods
        }
        gpu_jobs = [j for j in nodes if "hr-handbook" not in j]
        assert gpu_jobs and all(nodes[j] in GPU_NODES for j in gpu_jobs), nodes
        docs = get_json(cluster, "datasetgeneration", "hr-handbook", "-n", ns)
        assert docs["status"]["metrics"] == result["metrics"]
        # The operator carries on without a check it may not make, but says so.
        text = log.read_text(errors="replace")
        for refusal in ("Forbidden", "not allowed", "(RBAC)"):
            assert refusal not in text, tail()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_helm_uninstall_keeps_crds_the_users_resources_and_the_artefact_pvc(
    installed: Install,
) -> None:
    cluster = installed.cluster
    system, team = "llmft-gone-system", "llmft-gone-team"
    for ns in (system, team):
        cluster.create_namespace(ns, labels=RESTRICTED)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(static_volume("llmft-chart-test-gone")))
    values = {
        "workloads": {"namespaces": [team]},
        "artifacts": {"pvc": {"create": True, "storageClassName": STORAGE_CLASS}},
        "metrics": {"serviceMonitor": {"enabled": False}},
    }
    chart = installable_chart(cluster, installed.tmp)
    notes = installed.helm(
        "install", "llmft-gone", str(chart), "--namespace", system,
        "-f", str(values_file(installed.tmp, values, "gone.json")),
    )  # fmt: skip
    dataset = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "DatasetGeneration",
        "metadata": {"name": "kept", "namespace": team},
        "spec": {"source": {"configMap": "handbook"}, "generator": {"model": "smollm2"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dataset))

    out = installed.helm("uninstall", "llmft-gone", "--namespace", system, "--wait")

    assert "kubectl delete crd datasetgenerations.llmft.io" in notes  # said at install
    assert "PersistentVolumeClaim" in out and "llmft-artifacts" in out  # kept, and said so
    pvc = get_json(cluster, "pvc", "llmft-artifacts", "-n", team)
    assert "deletionTimestamp" not in pvc["metadata"]
    assert get_json(cluster, "dsgen", "kept", "-n", team)["metadata"]["name"] == "kept"
    for crd in ("datasetgenerations", "finetunejobs", "evaluations", "experiments"):
        assert get_json(cluster, "crd", f"{crd}.llmft.io")["metadata"]["name"]
    gone = cluster.kubectl("get", "deployment,serviceaccount", "-n", system, "-o", "name").stdout
    assert "llmft-gone" not in gone
    cluster.kubectl("delete", "namespace", system, team, "--wait=false", check=False)
    cluster.kubectl("delete", "pv", "llmft-chart-test-gone", "--wait=false", check=False)
