"""Time from applying a resource to its Job existing (N = 50, 200, 1000), and operator memory.

Starts its own control plane with kwok nodes (tests/servers/launch.py) and one operator process
(`python -m llmft_operator`, namespace-scoped, one namespace per round). Each round creates N
DatasetGenerations from a thread pool, as a burst of `kubectl apply` would, while a watch on
Jobs records when each Job appears; latency is Job seen minus create call sent. The operator's
peak resident memory (VmHWM) is read from /proc after each round, so it is the peak so far.
Pods get tiny requests and kwok ends them after a moment, so the operator also follows Jobs to
completion while the next objects arrive.

The baseline, measured in the same run on the same control plane: a plain client creating the
same ConfigMaps and Jobs (built by the operator's own builders) directly, from the same number
of threads, in a namespace of its own; latency is again Job seen minus first create sent. The
ratio is the operator's p99 over the baseline's.

The floor, in the same run: a plain client that creates the DatasetGeneration, then its ConfigMap
and Job, then writes its first status (the least work any controller of this API causes, with no
watch in between), latency from the resource's create call. Its p99 over the baseline's is the
best ratio any controller could reach on this machine. API calls per resource are the API server's
own request counts (apiserver_request_total, watches excluded) over each round, divided by N;
they include the Job controller's and kwok's calls, which both rounds share.

    python bench/operator_scale.py [--sizes 50,200,1000] [--apply-threads 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kubernetes import client, watch  # noqa: E402

sys.path.insert(0, str(ROOT / "operator"))

from llmft.api.crdgen import rendered_files  # noqa: E402
from llmft.api.resource import parse_resource  # noqa: E402
from llmft_operator.jobs import build_spec_configmap, build_workload_job  # noqa: E402
from llmft_operator.resolve import Fetched, plan_workload  # noqa: E402
from llmft_operator.settings import OperatorSettings  # noqa: E402
from servers.launch import KubeCluster, free_port, start_kube_cluster  # noqa: E402


def setup_namespace(cluster: KubeCluster, ns: str) -> None:
    cluster.create_namespace(ns)
    pv = f"{ns}-artifacts"
    size = {"storage": "10Gi"}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": size,
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/tmp/{pv}"},
                "claimRef": {"namespace": ns, "name": "llmft-artifacts"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "llmft-artifacts", "namespace": ns},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": size},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "llmft-workload", "namespace": ns},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "docs", "namespace": ns},
            "data": {"leave.md": "# Leave\nStaff get 25 days of annual leave.\n"},
        },
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "DatasetGeneration",
        "metadata": {"name": name},
        "spec": {
            "source": {"configMap": "docs"},
            "resources": {
                "cpu": "10m",
                "memory": "16Mi",
                "sharedMemory": "1Mi",
                "podAnnotations": {"llmft.io/kwok-run": "1s"},
            },
        },
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_order(sent: dict[str, float], seen: dict[str, float], parts: int = 10) -> list[float]:
    """Mean latency of each tenth of the resources, in the order they were created: flat when
    the creator keeps up, rising when a queue builds up behind it."""
    order = sorted((t, k) for k, t in sent.items() if k in seen)
    size = max(1, len(order) // parts)
    chunks = [order[i : i + size] for i in range(0, len(order), size)][:parts]
    return [round(statistics.mean(seen[k] - t for t, k in chunk), 2) for chunk in chunks]


def cpu_by_process(cluster: KubeCluster, operator_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each control-plane process, the operator and this script."""
    pids = {proc.name: proc.popen.pid for proc in cluster.procs}
    if operator_pid is not None:
        pids["operator"] = operator_pid
    pids["bench"] = os.getpid()
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except OSError:  # exited
            continue
    return out


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 1) for k in after if k in before}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


class JobWatch:
    """Records, per Job name, when a watch on Jobs first reports it."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.batch = client.BatchV1Api(api_client)
        self.namespace = namespace
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            w = watch.Watch()
            self._ready.set()
            try:
                for event in w.stream(
                    self.batch.list_namespaced_job, self.namespace, timeout_seconds=30
                ):
                    name = event["object"].metadata.name
                    self.seen.setdefault(name, time.monotonic())
                    if self._stop.is_set():
                        w.stop()
                        break
            except Exception:  # a watch the API server cut: list and watch again
                continue

    def stop(self) -> None:
        self._stop.set()


def reconcile_totals(metrics_url: str) -> tuple[float, float]:
    """(seconds, count) summed over the operator's reconcile histogram."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    seconds = count = 0.0
    for line in text.splitlines():
        if line.startswith("llmft_operator_reconcile_seconds_sum"):
            seconds += float(line.rsplit(" ", 1)[1])
        elif line.startswith("llmft_operator_reconcile_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return seconds, count


def api_requests(cluster: KubeCluster) -> Counter[str]:
    """Requests the API server has served so far (apiserver_request_total, watches excluded),
    by verb and resource, e.g. "PATCH datasetgenerations/status"."""
    text = cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{") or 'verb="WATCH"' in line:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        what = labels.get("resource", "")
        if labels.get("subresource"):
            what += "/" + labels["subresource"]
        counts[f"{labels.get('verb', '')} {what}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def per_resource(before: Counter[str], after: Counter[str], n: int) -> dict[str, Any]:
    """API calls per resource over a round: the total and the busiest (verb, resource) pairs."""
    spent = {k: after[k] - before[k] for k in after if after[k] - before[k] >= n / 20}
    top = dict(sorted(spent.items(), key=lambda kv: -kv[1]))
    return {
        "total": round((sum(after.values()) - sum(before.values())) / n, 1),
        "by_call": {k: round(v / n, 2) for k, v in top.items()},
    }


def baseline_round(
    cluster: KubeCluster,
    ns: str,
    n: int,
    threads: int,
    operator_pid: int | None = None,
    prefix: str = "baseline",
    with_resource: bool = False,
) -> dict[str, Any]:
    """The same ConfigMaps and Jobs, created by a plain client: what no operator can beat.

    With `with_resource` (the "floor" round) each thread also does what any controller of this
    API must cause, in the cheapest order and with no watch in between: it creates the
    DatasetGeneration first, then the ConfigMap and the Job, then writes the resource's first
    status (a merge patch of phase and observedGeneration, as the operator's first write). Its
    latency runs from the resource's create call, as the operator's does."""
    api_client = cluster.api_client()
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    settings = OperatorSettings()
    objects = []
    for i in range(n):
        body = dataset(f"ds-{i:04d}")
        body["metadata"]["namespace"] = ns
        plan = plan_workload(parse_resource(body), Fetched(), settings, 1)
        objects.append((body, build_spec_configmap(plan), build_workload_job(plan, settings)))
    jobs = JobWatch(api_client, ns)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}

    def create(objs: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
        resource, config_map, job = objs
        name = job["metadata"]["name"]
        sent[name] = time.monotonic()
        if with_resource:
            custom.create_namespaced_custom_object(
                "llmft.io", "v1alpha1", ns, "datasetgenerations", resource
            )
        core.create_namespaced_config_map(ns, config_map)
        batch.create_namespaced_job(ns, job)
        answered[name] = time.monotonic()
        if with_resource:
            custom.patch_namespaced_custom_object_status(
                "llmft.io", "v1alpha1", ns, "datasetgenerations", resource["metadata"]["name"],
                {"status": {"phase": "Pending", "observedGeneration": 1}},
            )  # fmt: skip

    requests_before = api_requests(cluster)
    cpu_before = cpu_by_process(cluster, operator_pid)
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, objects))
    deadline = time.monotonic() + max(300, n)
    while len(jobs.seen.keys() & sent.keys()) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs.stop()
    cpu = cpu_spent(cpu_before, cpu_by_process(cluster, operator_pid))
    latencies = [jobs.seen[k] - t for k, t in sent.items() if k in jobs.seen]
    result = {
        "cpu_seconds": cpu,
        "p50_seconds": round(statistics.median(latencies), 3),
        "p99_seconds": round(percentile(latencies, 99), 3),
        "latency_by_order": by_order(sent, jobs.seen),
        "all_jobs_seconds": round(max(jobs.seen.values()) - started, 2),
        # The create calls alone (sent to answered), and the rest (answered to Job seen).
        "create_calls_p99_seconds": round(
            percentile([answered[k] - t for k, t in sent.items()], 99), 3
        ),
        "after_create_p99_seconds": round(
            percentile([jobs.seen[k] - answered[k] for k in sent if k in jobs.seen], 99), 3
        ),
        "api_calls": per_resource(requests_before, api_requests(cluster), n),
    }
    return {f"{prefix}_{k}": v for k, v in result.items()}


def run_round(
    cluster: KubeCluster, ns: str, n: int, threads: int, pid: int, metrics_url: str
) -> dict[str, Any]:
    api_client = cluster.api_client()
    custom = client.CustomObjectsApi(api_client)
    jobs = JobWatch(api_client, ns)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}

    def create(i: int) -> None:
        name = f"ds-{i:04d}"
        sent[f"{name}-dsgen"] = time.monotonic()
        custom.create_namespaced_custom_object(
            "llmft.io", "v1alpha1", ns, "datasetgenerations", dataset(name)
        )
        answered[f"{name}-dsgen"] = time.monotonic()

    cpu_before = cpu_seconds(pid)
    cpu_all_before = cpu_by_process(cluster, pid)
    seconds_before, count_before = reconcile_totals(metrics_url)
    requests_before = api_requests(cluster)
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, range(n)))
    applied = time.monotonic() - started
    deadline = time.monotonic() + max(300, n)
    while len(jobs.seen.keys() & sent.keys()) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs.stop()
    requests = per_resource(requests_before, api_requests(cluster), n)
    operator_cpu = cpu_seconds(pid) - cpu_before
    cpu = cpu_spent(cpu_all_before, cpu_by_process(cluster, pid))
    seconds_after, count_after = reconcile_totals(metrics_url)
    reconciles = max(count_after - count_before, 1)
    latencies = [jobs.seen[k] - t for k, t in sent.items() if k in jobs.seen]
    return {
        "n": n,
        "jobs_created": len(latencies),
        "apply_seconds": round(applied, 2),
        "all_jobs_seconds": round(max(jobs.seen[k] for k in sent if k in jobs.seen) - started, 2),
        "p50_seconds": round(statistics.median(latencies), 3),
        "p99_seconds": round(percentile(latencies, 99), 3),
        "max_seconds": round(max(latencies), 3),
        "latency_by_order": by_order(sent, jobs.seen),
        # The create call alone (sent to answered), and the operator's part (answered to Job
        # seen: the watch event reaching it, its reconcile, its two creates, the Job's event).
        "create_call_p99_seconds": round(
            percentile([answered[k] - t for k, t in sent.items()], 99), 3
        ),
        "after_create_p50_seconds": round(
            statistics.median([jobs.seen[k] - answered[k] for k in sent if k in jobs.seen]), 3
        ),
        "after_create_p99_seconds": round(
            percentile([jobs.seen[k] - answered[k] for k in sent if k in jobs.seen], 99), 3
        ),
        "operator_peak_rss_mib": round(peak_rss_mib(pid), 1),
        # CPU the operator spent until the last Job appeared: what it costs per object.
        "operator_cpu_seconds": round(operator_cpu, 1),
        # CPU seconds of every process over the round (the machine's cores are shared by all).
        "cpu_seconds": cpu,
        "reconciles": int(reconciles),
        "api_calls": requests,
        "mean_reconcile_ms": round(1000 * (seconds_after - seconds_before) / reconciles, 1),
        "load_average_1m": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--apply-threads", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="llmft-bench-operator-"))
    cluster = start_kube_cluster(workdir / "kube")
    operator = None
    try:
        for text in rendered_files().values():
            cluster.kubectl("apply", "--server-side", "-f", "-", input=text)
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        namespaces = [f"bench-{n}" for n in sizes]
        for ns in namespaces + [f"{p}-{n}" for n in sizes for p in ("base", "floor")]:
            setup_namespace(cluster, ns)
        health, metrics_port = free_port(), free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "LLMFT_METRICS_PORT": str(metrics_port),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "operator")]),
        }
        argv = [
            sys.executable,
            "-m",
            "llmft_operator",
            "--log-format",
            "plain",
            "--quiet",
            "--liveness",
            f"http://127.0.0.1:{health}/healthz",
        ]
        for ns in namespaces:
            argv += ["--namespace", ns]
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2)
                break
            except OSError as err:
                if time.monotonic() > deadline or operator.poll() is not None:
                    log_file = workdir / "operator.log"
                    raise RuntimeError(f"operator did not start; see {log_file}") from err
                time.sleep(0.3)
        results = []
        for n, ns in zip(sizes, namespaces, strict=True):
            # The baseline first, in a namespace the operator does not watch.
            base = baseline_round(cluster, f"base-{n}", n, args.apply_threads, operator.pid)
            floor = baseline_round(
                cluster, f"floor-{n}", n, args.apply_threads, operator.pid, "floor", True
            )
            result = run_round(cluster, ns, n, args.apply_threads, operator.pid, metrics_url)
            result.update(base)
            result.update(floor)
            base_p99 = base["baseline_p99_seconds"]
            result["p99_ratio"] = round(result["p99_seconds"] / base_p99, 2)
            # The best ratio any controller of this API could reach on this machine, and the
            # operator's distance from it.
            result["floor_ratio"] = round(floor["floor_p99_seconds"] / base_p99, 2)
            result["p99_over_floor"] = round(result["p99_seconds"] / floor["floor_p99_seconds"], 2)
            results.append(result)
            print(json.dumps(result), flush=True)
        print(
            f"{'N':>6} {'p50 s':>8} {'p99 s':>8} {'base p99 s':>11} {'p99 ratio':>10} "
            f"{'floor p99 s':>12} {'floor ratio':>12} {'calls/res':>10} {'base calls':>11} "
            f"{'floor calls':>12} {'peak RSS MiB':>13} {'operator CPU s':>15}"
        )
        for r in results:
            print(
                f"{r['n']:>6} {r['p50_seconds']:>8} {r['p99_seconds']:>8} "
                f"{r['baseline_p99_seconds']:>11} {r['p99_ratio']:>10} "
                f"{r['floor_p99_seconds']:>12} {r['floor_ratio']:>12} "
                f"{r['api_calls']['total']:>10} {r['baseline_api_calls']['total']:>11} "
                f"{r['floor_api_calls']['total']:>12} "
                f"{r['operator_peak_rss_mib']:>13} {r['operator_cpu_seconds']:>15}"
            )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    finally:
        try:
            if operator is not None and operator.poll() is None:
                operator.terminate()
                try:
                    operator.wait(30)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait(5)
        finally:
            cluster.stop()
            # etcd's data is 100-200 MiB a run; the operator's log stays for a look afterwards.
            shutil.rmtree(workdir / "kube", ignore_errors=True)
            print(f"operator log: {workdir / 'operator.log'}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
