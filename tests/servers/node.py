"""A real worker node for the test cluster: containerd, runc, CNI, the kubelet, kube-proxy and
CoreDNS.

The node lives in network and mount namespaces of its own (held by one `sleep` process), joined
to the host by a veth pair: the pods' addresses, kube-proxy's iptables rules and the kubelet's
mounts never touch the host's, and they vanish with the namespaces. Its cgroups nest under the
test run's own, so the pods count against the same memory limit as the tests.

Addresses come from 198.18.0.0/15 (RFC 2544, for benchmark networks): never routed, and not a
range any real network of this machine uses. Nothing in the node can reach outside the machine.

containerd 1.6 (Debian) does not implement the CRI RuntimeConfig call, so the kubelet (1.37)
falls back to its own cgroupDriver setting, `cgroupfs`; the machine's hybrid cgroup layout makes
it a cgroup v1 host, which kubelets since 1.35 refuse unless `failCgroupV1: false`.

Cluster DNS is CoreDNS (built from its Go module, as the servers are) serving cluster.local from
the API server, as kubeadm sets it up, except that it runs as a process in the node's namespaces
rather than as a pod: the `kube-dns` Service at the conventional tenth address of the Service
range sends the pods' queries there through kube-proxy, and the kubelet points each pod's
resolv.conf at that Service. Only cluster names resolve: nothing outside the machine can be
reached, so there is no upstream to forward other names to.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from servers.launch import (
    CACHE,
    HERE,
    Proc,
    ServerUnavailable,
    binary,
    http_ok,
    start_proc,
    wait_for,
    wait_until,
)

if TYPE_CHECKING:
    from servers.launch import KubeCluster

NODE_NAME = "a10-node-0"
GPU_PRODUCT = "NVIDIA-A10"
# Simulated: the kubelet advertises what a one-GPU A10 node would; the pods run on the CPU.
GPU_CAPACITY = "1"
POD_CIDR = "198.18.200.0/24"
SERVICE_CIDR = "198.19.0.0/24"
SERVICE_IP = "198.19.0.1"  # the `kubernetes` Service: the first address of SERVICE_CIDR
DNS_SERVICE_IP = "198.19.0.10"  # the `kube-dns` Service, where kubeadm puts it
CLUSTER_DOMAIN = "cluster.local"
DNS_USER = "system:coredns"  # CoreDNS's identity at the API server (a token of its own)
DNS_READY_PORT = 8181  # CoreDNS's `ready` plugin, on the node's address
NODE_LABELS = {
    "nvidia.com/gpu.product": GPU_PRODUCT,
    "nvidia.com/gpu.count": GPU_CAPACITY,
    "nvidia.com/gpu.memory": "24564",
    "llmft.io/test-node": "real",
}
CNI_BIN = Path("/usr/lib/cni")
DEBIAN_PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "catatonit",
    "buildah",
    "debootstrap",
)
NODE_CACHE = CACHE / "node"


def missing_packages() -> list[str]:
    """The Debian packages the node needs that this machine lacks (.ci/run installs them)."""
    missing = []
    for pkg in DEBIAN_PACKAGES:
        result = subprocess.run(["dpkg", "-s", pkg], capture_output=True, check=False)
        if result.returncode != 0:
            missing.append(pkg)
    return missing


def _run(*argv: str | Path, check: bool = True, timeout: float = 60) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise ServerUnavailable(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


# --- namespaces and cgroups -----------------------------------------------------------------


@dataclass
class NodeNetwork:
    """The node's network and mount namespaces, and the veth pair to the host."""

    holder: Proc
    host_if: str
    host_ip: str
    node_ip: str

    @property
    def pid(self) -> int:
        return self.holder.popen.pid

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside the node's namespaces."""
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--"]

    def run(self, *argv: str | Path, check: bool = True) -> str:
        return _run(*self.enter(), *argv, check=check)

    def stop(self) -> None:
        _run("ip", "link", "del", self.host_if, check=False)
        self.holder.stop()


def _free_link_subnet() -> int:
    used = _run("ip", "-4", "-o", "addr", "show")
    for _ in range(50):
        n = secrets.randbelow(120) + 4
        if f" 198.18.{n}." not in used:
            return n
    raise ServerUnavailable("no free 198.18.N.0/30 link subnet for the node")


def create_network(workdir: Path) -> NodeNetwork:
    """New network and mount namespaces held by `sleep`, linked to the host by a veth pair."""
    holder = start_proc(
        "node-namespaces",
        ["unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"],
        workdir,
    )
    n = _free_link_subnet()
    host_if = f"llmft{secrets.token_hex(3)}"
    net = NodeNetwork(holder, host_if, f"198.18.{n}.1", f"198.18.{n}.2")
    try:
        # The holder must be inside its namespaces before the veth's peer is moved there.
        wait_until(
            holder,
            lambda: os.readlink(f"/proc/{net.pid}/ns/net") != os.readlink("/proc/self/ns/net"),
            10,
            "own network namespace",
        )
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", net.pid)
        _run("ip", "addr", "add", f"{net.host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        net.run("ip", "link", "set", "lo", "up")
        net.run("ip", "addr", "add", f"{net.node_ip}/30", "dev", "eth0")
        net.run("ip", "link", "set", "eth0", "up")
        net.run("ip", "route", "add", "default", "via", net.host_ip)
        # Per network namespace: forwarding between the pods' bridge and eth0, and bridged pod
        # traffic through iptables (kube-proxy's Service rules).
        net.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        net.run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1", check=False)
        return net
    except BaseException:
        net.stop()
        raise


def _cgroup_mounts(v2: bool = False) -> list[Path]:
    """The mount points of the cgroup v1 hierarchies (and of the v2 one, if asked)."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype == "cgroup" or (v2 and fstype == "cgroup2"):
            mounts.append(Path(mountpoint))
    return mounts


def own_cgroup_base() -> str:
    """This process's cgroup: the memory controller's path on a v1 or hybrid host."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.rstrip("/") or ""
    raise ServerUnavailable(
        "this host has no cgroup v1 memory hierarchy: the real node is set up for the hybrid "
        "cgroup layout of the CI machines (see README, 'The real node')"
    )


@dataclass
class NodeCgroups:
    """The kubelet's cgroup root, created in every v1 hierarchy and removed afterwards."""

    root: str
    created: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls) -> NodeCgroups:
        root = f"{own_cgroup_base()}/llmft-node-{secrets.token_hex(4)}"
        cgroups = cls(root)
        for mount in _cgroup_mounts():
            path = mount / root.lstrip("/")
            todo = []
            p = path
            while not p.exists():
                todo.append(p)
                p = p.parent
            for d in reversed(todo):
                d.mkdir()
                cgroups.created.append(d)
                # A new cpuset is empty: it takes its parent's CPUs and memory nodes.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if (d / name).exists() and not (d / name).read_text().strip():
                        (d / name).write_text((d.parent / name).read_text())
        return cgroups

    def pids(self) -> set[int]:
        found: set[int] = set()
        for mount in _cgroup_mounts(v2=True):
            top = mount / self.root.lstrip("/")
            if top.exists():
                for procs in top.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        found |= {int(p) for p in procs.read_text().split()}
        return found

    def remove(self) -> None:
        # runc also mirrors the containers' cgroups in the hybrid layout's v2 hierarchy.
        for mount in _cgroup_mounts(v2=True):
            top = mount / self.root.lstrip("/")
            if top.exists():
                for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
        for d in reversed(self.created):
            with contextlib.suppress(OSError):
                d.rmdir()


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- the node -------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd, kubelet and kube-proxy in the node's namespaces; stop() leaves nothing."""

    name: str
    workdir: Path
    network: NodeNetwork
    cgroups: NodeCgroups
    containerd_sock: Path
    state_dir: Path
    lock: IO[str]
    procs: list[Proc] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        return _run(
            "ctr", "--address", self.containerd_sock, "--namespace", "k8s.io", *args,
            check=check, timeout=timeout,
        )  # fmt: skip

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(20)}" for p in self.procs)

    def stop(self) -> None:
        # The kubelet first, so nothing restarts; then every container process (they live in
        # the node's cgroups) and the containerd shims (their pid files are in the state dir),
        # and the containers leave containerd's kept root while it still runs.
        for name in ("kubelet", "kube-proxy", "coredns"):
            with contextlib.suppress(StopIteration):
                self.proc(name).stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = self.cgroups.pids() | _shim_pids(self.state_dir)
            left = {pid for pid in left if Path(f"/proc/{pid}").exists()}
            if not left:
                break
            _kill_all(left)
            time.sleep(0.2)
        with contextlib.suppress(StopIteration, ServerUnavailable, subprocess.SubprocessError):
            if self.proc("containerd").alive():
                _remove_stale_containers(self)
        for proc in reversed(self.procs):
            proc.stop()
        self.network.stop()
        self.cgroups.remove()
        with contextlib.suppress(OSError):
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            self.lock.close()


def _shim_pids(state_dir: Path) -> set[int]:
    pids: set[int] = set()
    for pidfile in state_dir.glob("io.containerd.runtime.v2.task/*/*/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(pidfile.read_text().strip()))
    return pids


def _containerd_config(workdir: Path, root: Path, state: Path, sock: Path, pause: str) -> str:
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  # Lowering a process's oom_score_adj is refused on these machines; the kubelet asks for -998
  # for pod sandboxes, and runc fails the sandbox if it cannot set it. This keeps the runtime's
  # own (0) as the floor.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{workdir / "cni"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir / "opt"}"
"""


def _cni_config(workdir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "llmft-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(workdir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(workdir: Path, sock: Path, cgroup_root: str, ca: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{sock}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        # Lowering oom_score_adj is refused here (see restrict_oom_score_adj).
        "oomScoreAdj": 0,
        "podCIDR": POD_CIDR,
        "maxPods": 30,
        "resolvConf": str(workdir / "resolv.conf"),
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # No nvidia.com/gpu taint, unlike kwok's GPU nodes: this is the cluster's only node, so
        # the pods that need no GPU (the operator, dataset generation) run here too.
        # The disk is shared with other work: never evict or collect images over disk use.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "staticPodPath": "",
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "port": 10250,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "volumeStatsAggPeriod": "1m",
        "enableDebuggingHandlers": True,
    }


def _corefile(node_ip: str, kubeconfig: Path) -> str:
    # No `forward`: a name outside the cluster's zones has no upstream here, and fails at once.
    return f""".:53 {{
    bind {node_ip}
    errors
    ready {node_ip}:{DNS_READY_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} llmft-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def start_node(
    workdir: Path,
    network: NodeNetwork,
    kubelet_kubeconfig: Path,
    proxy_kubeconfig: Path,
    dns_kubeconfig: Path,
    ca: Path,
    startup_timeout: float = 120,
) -> Node:
    """containerd with the test images imported, then the kubelet, kube-proxy and CoreDNS."""
    missing = missing_packages()
    if missing:
        names = " ".join(missing)
        raise ServerUnavailable(
            f"the real node needs Debian's {names}: `apt-get install {names}` (.ci/run does)"
        )
    for b in ("kubelet", "kube-proxy", "coredns"):
        binary(b)
    workdir.mkdir(parents=True, exist_ok=True)
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    # containerd's root (the imported images, several GB) is kept between runs, so one node at
    # a time per machine.
    lock = (NODE_CACHE / "lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        lock.close()
        raise ServerUnavailable(
            f"another test run holds the real node on this machine ({NODE_CACHE / 'lock'})"
        ) from e
    cgroups = NodeCgroups.create()
    state = workdir / "containerd-state"
    sock = workdir / "containerd.sock"
    node = Node(NODE_NAME, workdir, network, cgroups, sock, state, lock)
    try:
        pause = _image_refs(["pause"])["pause"]
        (workdir / "cni").mkdir()
        (workdir / "cni" / "10-llmft.conflist").write_text(json.dumps(_cni_config(workdir)))
        (workdir / "resolv.conf").write_text("")
        config = workdir / "containerd.toml"
        config.write_text(
            _containerd_config(workdir, NODE_CACHE / "containerd", state, sock, pause)
        )
        node.procs.append(
            start_proc("containerd", [*network.enter(), "containerd", "--config", config], workdir)
        )
        wait_until(
            node.proc("containerd"),
            lambda: _run("ctr", "--address", sock, "version", check=False) != "",
            60,
            "ctr version",
        )
        _remove_stale_containers(node)
        node.images = import_images(sock)
        kubelet_config = workdir / "kubelet.yaml"
        kubelet_config.write_text(
            json.dumps(_kubelet_config(workdir, sock, cgroups.root, ca), indent=1)
        )
        labels = ",".join(f"{k}={v}" for k, v in NODE_LABELS.items())
        node.procs.append(
            start_proc(
                "kubelet",
                [
                    *network.enter(),
                    binary("kubelet"),
                    f"--config={kubelet_config}",
                    f"--kubeconfig={kubelet_kubeconfig}",
                    f"--root-dir={workdir / 'kubelet'}",
                    f"--cert-dir={workdir / 'kubelet-pki'}",
                    f"--hostname-override={NODE_NAME}",
                    f"--node-ip={network.node_ip}",
                    f"--node-labels={labels}",
                    "--v=1",
                ],
                workdir,
            )
        )
        node.procs.append(
            start_proc(
                "kube-proxy",
                [
                    *network.enter(),
                    binary("kube-proxy"),
                    f"--kubeconfig={proxy_kubeconfig}",
                    f"--hostname-override={NODE_NAME}",
                    "--proxy-mode=iptables",
                    f"--cluster-cidr={POD_CIDR}",
                    # conntrack limits are the host's (global) settings: leave them alone.
                    "--conntrack-max-per-core=0",
                    "--conntrack-tcp-timeout-established=0",
                    "--conntrack-tcp-timeout-close-wait=0",
                    "--oom-score-adj=0",
                    "--metrics-bind-address=127.0.0.1:10249",
                    "--healthz-bind-address=127.0.0.1:10256",
                ],
                workdir,
            )
        )
        corefile = workdir / "Corefile"
        corefile.write_text(_corefile(network.node_ip, dns_kubeconfig))
        node.procs.append(
            start_proc("coredns", [*network.enter(), binary("coredns"), "-conf", corefile], workdir)
        )
        return node
    except BaseException:
        node.stop()
        raise


def _remove_stale_containers(node: Node) -> None:
    """Containers a killed earlier run left in the kept containerd root."""
    for cid in node.ctr("containers", "ls", "-q").split():
        node.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
        node.ctr("tasks", "delete", "-f", cid, check=False)
        node.ctr("containers", "delete", cid, check=False)


def _image_refs(names: list[str], sock: Path | None = None) -> dict[str, str]:
    argv = ["bash", str(HERE / "build-images.sh")]
    if sock is not None:
        argv += ["--import", str(sock)]
    result = subprocess.run(
        [*argv, *names], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise ServerUnavailable(f"building the test images failed:\n{result.stderr[-3000:]}")
    # What was built and imported, and how long it took (shown with -s, or beside a failure).
    sys.stderr.write(result.stderr)
    refs = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    missing = set(names) - set(refs)
    if missing:
        raise ServerUnavailable(f"build-images.sh printed no reference for {sorted(missing)}")
    return refs


WORKLOAD_IMAGES = ("operator", "datagen", "trainer", "evaluator")


def import_images(sock: Path) -> dict[str, str]:
    """Build what is missing and import it into the node's containerd: image name -> ref.

    LLMFT_NODE_IMAGES (comma-separated, e.g. `operator,datagen`) limits a development run to
    the images its tests use: after a source change every image is rebuilt, and the GPU ones
    take most of the time. Unset: all of them, as CI runs.
    """
    wanted = [n.strip() for n in os.environ.get("LLMFT_NODE_IMAGES", "").split(",") if n.strip()]
    unknown = set(wanted) - set(WORKLOAD_IMAGES)
    if unknown:
        raise ValueError(f"LLMFT_NODE_IMAGES: unknown images {sorted(unknown)}")
    return _image_refs(["pause", *(wanted or WORKLOAD_IMAGES)], sock)


def wait_ready(cluster: KubeCluster, timeout: float = 180) -> None:
    """The node registered and Ready, advertising its simulated GPU as an extended resource."""
    node = cluster.node
    assert node is not None

    def registered() -> bool:
        for proc in node.procs:
            if not proc.alive():
                raise ServerUnavailable(f"{proc.name} exited while starting:\n{proc.tail()}")
        return cluster.kubectl("get", "node", node.name, check=False).returncode == 0

    wait_for(registered, timeout, 1, f"node {node.name} registered", node.logs)
    cluster.kubectl(
        "wait", "--for=condition=Ready", f"node/{node.name}", f"--timeout={int(timeout)}s",
        timeout=timeout + 30,
    )  # fmt: skip
    # What the NVIDIA device plugin would report; the kubelet keeps extended resources patched
    # into the node's status and adds them to what is allocatable.
    patch = [{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": GPU_CAPACITY}]
    cluster.kubectl(
        "patch", "node", node.name, "--subresource=status", "--type=json", "-p", json.dumps(patch)
    )

    def gpu_allocatable() -> bool:
        out = cluster.kubectl(
            "get", "node", node.name, "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}"
        ).stdout
        return out.strip() == GPU_CAPACITY

    wait_for(gpu_allocatable, 60, 0.5, "nvidia.com/gpu allocatable", node.logs)
    serve_cluster_dns(cluster, timeout)


def cluster_dns_objects(node_ip: str) -> list[dict[str, Any]]:
    """What kubeadm's CoreDNS add-on puts in the API, for a CoreDNS outside a pod: its read-only
    role, and the `kube-dns` Service, whose one endpoint is CoreDNS on the node's address."""
    dns_ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    rbac = "rbac.authorization.k8s.io"
    return [
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": DNS_USER},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DNS_USER},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": DNS_USER},
            "subjects": [{"apiGroup": rbac, "kind": "User", "name": DNS_USER}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            },
            # No selector: the endpoint is not a pod, it is listed below.
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "ports": [{"name": n, "port": 53, "protocol": p} for n, p in dns_ports],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-node",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": "llmft-tests",
                },
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": [node_ip], "conditions": {"ready": True}, "nodeName": NODE_NAME}
            ],
            "ports": [{"name": n, "port": 53, "protocol": p} for n, p in dns_ports],
        },
    ]


def serve_cluster_dns(cluster: KubeCluster, timeout: float = 180) -> None:
    """CoreDNS's role and the `kube-dns` Service in the API; then CoreDNS ready (it has read
    the Services and endpoints it answers from)."""
    node = cluster.node
    assert node is not None
    items = cluster_dns_objects(node.network.node_ip)
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    url = f"http://{node.network.node_ip}:{DNS_READY_PORT}/ready"
    wait_until(node.proc("coredns"), lambda: http_ok(url), timeout, url)
