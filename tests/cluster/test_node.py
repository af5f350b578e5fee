"""The real node runs the images built from images/Dockerfile, as their user, under `restricted`.

Each image's own ENTRYPOINT answers --help in a pod (a wrong entrypoint fails here); a second
container of the same pod checks what the workloads rely on: uid 1000, a read-only root with the
scratch volume writable, and every distribution of the image's extra installed and importable.
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

import pytest

from servers.launch import KubeCluster, wait_for
from servers.node import DNS_SERVICE_IP, GPU_CAPACITY, GPU_PRODUCT, NODE_NAME, SERVICE_IP

pytestmark = pytest.mark.cluster

NAMESPACE = "node-smoke"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
# image -> (pyproject extra, entrypoint module)
IMAGES = {
    "operator": ("operator", "llmft_operator"),
    "datagen": ("datagen", "llmft.workloads.datagen"),
    "trainer": ("trainer", "llmft.workloads.trainer"),
    "evaluator": ("evaluator", "llmft.workloads.evaluator"),
}

# Run inside the image: what its workload needs at run time, checked from within.
CHECK = textwrap.dedent(
    """
    import importlib, importlib.metadata as md, os, re, sys
    extra, module = sys.argv[1], sys.argv[2]
    assert os.getuid() == 1000 and os.getgid() == 1000, (os.getuid(), os.getgid())
    try:
        open("/llmft-write-probe", "w")
    except OSError:
        pass
    else:
        sys.exit("the root filesystem is writable")
    with open("/tmp/probe", "w") as f:
        f.write("scratch is writable")
    wanted = []
    for req in md.requires("llmft") or []:
        name, _, marker = req.partition(";")
        if not marker.strip() or f'extra == "{extra}"' in marker:
            wanted.append(re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0))
    missing = []
    for dist in wanted:
        try:
            md.version(dist)
        except md.PackageNotFoundError:
            missing.append(dist)
    assert not missing, f"llmft[{extra}] lacks {missing}"
    importlib.import_module(module)
    print(f"ok: uid 1000, read-only root, /tmp writable, {len(wanted)} requirements, {module}")
    """
)


def restricted_container(name: str, image: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",  # built here and imported; nothing is pulled
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        **fields,
    }


def pod(name: str, init: list[dict[str, Any]], main: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"nvidia.com/gpu.product": GPU_PRODUCT},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": init,
            "containers": [main],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


@pytest.fixture(scope="module")
def cluster(node_cluster: KubeCluster) -> KubeCluster:
    node_cluster.create_namespace(NAMESPACE, labels=RESTRICTED)
    return node_cluster


def run_to_completion(cluster: KubeCluster, manifest: dict[str, Any], timeout: float) -> str:
    """Apply a pod, wait until it finishes, return its phase (the pod is left for its logs)."""
    name = manifest["metadata"]["name"]
    cluster.kubectl("delete", "pod", name, "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def finished() -> str | None:
        out = cluster.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", "json").stdout
        phase: str = json.loads(out)["status"].get("phase", "")
        return phase if phase in ("Succeeded", "Failed") else None

    def describe() -> str:
        return cluster.kubectl("describe", "pod", name, "-n", NAMESPACE, check=False).stdout

    phase: str = wait_for(finished, timeout, 1, f"pod {name} finished", describe)
    return phase


def logs(cluster: KubeCluster, name: str, container: str) -> str:
    return cluster.kubectl("logs", name, "-n", NAMESPACE, "-c", container).stdout


def test_node_is_an_a10_node_with_simulated_gpu_capacity(node_cluster: KubeCluster) -> None:
    node = json.loads(node_cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)

    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT
    assert not node["spec"].get("taints"), "the only node: CPU pods must schedule there too"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == GPU_CAPACITY
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6")
    server = json.loads(node_cluster.kubectl("version", "-o", "json", check=False).stdout)
    assert info["kubeletVersion"] == server["serverVersion"]["gitVersion"]


def test_pod_reaches_the_api_server_through_the_kubernetes_service(cluster: KubeCluster) -> None:
    assert cluster.node is not None
    probe = (
        "import os; from kubernetes import client, config; config.load_incluster_config(); "
        "print(os.environ['KUBERNETES_SERVICE_HOST'], client.VersionApi().get_code().git_version)"
    )
    manifest = pod(
        "service-probe",
        [],
        restricted_container(
            "probe", cluster.node.images["operator"], command=["python", "-c", probe]
        ),
    )

    phase = run_to_completion(cluster, manifest, timeout=300)

    out = logs(cluster, "service-probe", "probe")
    assert phase == "Succeeded", out
    host, version = out.split()
    assert host == SERVICE_IP  # the ClusterIP, routed to the API server by kube-proxy
    assert version.startswith("v1.")


# Run in a pod: the Service's name resolved through the pod's resolv.conf (the search path makes
# the short name work), then an HTTP request to it. Retried within the pod for a bounded time:
# kube-proxy and CoreDNS learn of a new Service within seconds, not at once.
DNS_CLIENT = textwrap.dedent(
    """
    import socket, sys, time, urllib.request
    short, fqdn = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 120
    while True:
        try:
            resolved = {socket.gethostbyname(short), socket.gethostbyname(fqdn)}
            status = urllib.request.urlopen(f"http://{short}/", timeout=5).status
            break
        except OSError as e:
            if time.monotonic() > deadline:
                raise
            print("retrying:", e, file=sys.stderr)
            time.sleep(1)
    nameserver = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")]
    print(" ".join(sorted(resolved)), status, ",".join(nameserver))
    """
)


def test_pod_reaches_a_service_by_its_dns_name(cluster: KubeCluster) -> None:
    assert cluster.node is not None
    image = cluster.node.images["operator"]
    server = pod(
        "web",
        [],
        restricted_container(
            "web",
            image,
            command=["python", "-m", "http.server", "8080", "--directory", "/tmp"],
            ports=[{"containerPort": 8080}],
            readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        ),
    )
    server["metadata"]["labels"] = {"app": "web"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(server))
    cluster.kubectl(
        "wait", "--for=condition=Ready", "pod/web", "-n", NAMESPACE, "--timeout=300s",
        timeout=330,
    )  # fmt: skip
    fqdn = f"web.{NAMESPACE}.svc.cluster.local"
    client = pod(
        "dns-client",
        [],
        restricted_container("client", image, command=["python", "-c", DNS_CLIENT, "web", fqdn]),
    )

    phase = run_to_completion(cluster, client, timeout=300)

    out = logs(cluster, "dns-client", "client")
    assert phase == "Succeeded", out
    cluster_ip = cluster.kubectl(
        "get", "service", "web", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()
    resolved, status, nameservers = out.split()
    assert resolved == cluster_ip  # both names, one address: the Service's
    assert status == "200"
    assert nameservers == DNS_SERVICE_IP  # the kubelet's clusterDNS, the kube-dns Service


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_entrypoint_user_writable_paths_and_extra(cluster: KubeCluster, image: str) -> None:
    assert cluster.node is not None
    ref = cluster.node.images[image]
    extra, module = IMAGES[image]
    manifest = pod(
        f"smoke-{image}",
        # The image's own ENTRYPOINT, only arguments given.
        [restricted_container("help", ref, args=["--help"])],
        restricted_container("check", ref, command=["python", "-c", CHECK, extra, module]),
    )
    started = time.monotonic()

    phase = run_to_completion(cluster, manifest, timeout=600)

    help_text = logs(cluster, f"smoke-{image}", "help")
    check = logs(cluster, f"smoke-{image}", "check")
    assert phase == "Succeeded", f"{image}: {phase}\n--- help\n{help_text}\n--- check\n{check}"
    assert "usage:" in help_text
    assert check.strip().startswith("ok: uid 1000"), check
    print(f"{image}: {time.monotonic() - started:.0f}s")
