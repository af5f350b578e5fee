"""The chart lints, renders what each value asks for, refuses typos and matches the operator."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart.helm import (
    CHART,
    EVERYTHING_ON,
    REPO_CRDS,
    ROOT,
    find,
    helm,
    merged,
    render,
    values_file,
)
from llmft.api import crdgen
from llmft.api.kinds import KINDS

SECRET_VERBS_ALLOWED = {"get"}
PLURALS = tuple(entry.plural for entry in KINDS)


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def operator_env_names() -> set[str]:
    """Every LLMFT_* variable the operator reads, found by letting it read an empty environment."""
    from llmft_operator.settings import OperatorSettings, reconcile_interval

    env = RecordingEnv()
    OperatorSettings.from_env(env)
    reconcile_interval(env)
    return {name for name in env.asked if name.startswith("LLMFT_")}


def rules_of(role: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples a Role or ClusterRole grants."""
    return [
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


# --- lint and render -------------------------------------------------------------------------


@pytest.mark.parametrize("everything", [False, True], ids=["defaults", "everything-on"])
def test_chart_passes_helm_lint_strict(tmp_path: Path, everything: bool) -> None:
    args = ["lint", "--strict", str(CHART)]
    if everything:
        args += ["-f", str(values_file(tmp_path, EVERYTHING_ON))]
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout


def test_defaults_render_the_operator_its_rbac_and_the_workload_identity(tmp_path: Path) -> None:
    docs = render(tmp_path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ServiceAccount",
            "ConfigMap",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "RoleBinding",
            "Service",
            "Deployment",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    # Optional parts stay off by default.
    assert not {"NetworkPolicy", "ServiceMonitor", "PersistentVolumeClaim"} & set(kinds)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "llmft"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_everything_on_renders_ollama_weaviate_pvcs_policies_and_monitor(tmp_path: Path) -> None:
    docs = render(tmp_path, EVERYTHING_ON)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "llmft-ollama"),
        ("Service", "llmft-ollama"),
        ("PersistentVolumeClaim", "llmft-ollama-models"),
        ("Deployment", "llmft-weaviate"),
        ("Service", "llmft-weaviate"),
        ("PersistentVolumeClaim", "llmft-weaviate-data"),
        ("PersistentVolumeClaim", "llmft-artifacts"),
        ("NetworkPolicy", "llmft-operator"),
        ("NetworkPolicy", "llmft-ollama"),
        ("NetworkPolicy", "llmft-weaviate"),
        ("ServiceMonitor", "llmft-operator"),
    } <= names
    config = find(docs, "ConfigMap")["data"]
    assert config["LLMFT_OLLAMA_HOST"] == "http://llmft-ollama.llmft-system.svc:11434"
    assert config["LLMFT_WEAVIATE_URL"] == "http://llmft-weaviate.llmft-system.svc:8080"
    assert config["LLMFT_KUEUE_QUEUE"] == "gpu-queue"
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_notes_tell_the_user_what_to_do_next() -> None:
    result = helm("install", "llmft", str(CHART), "--namespace", "llmft-system", "--dry-run=client")
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "rollout status deployment/llmft-operator" in notes
    assert "kubectl apply -n llmft-system" in notes
    assert "artifacts.pvc.create=true" in notes


# --- values and schema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("gpu.prodcut=NVIDIA-L4", "additional properties 'prodcut' not allowed"),
        ("operator.replicas=1", "additional properties 'replicas' not allowed"),
        ("imagez.tag=1.0", "additional properties 'imagez' not allowed"),
        ("operator.replicaCount=2", "/operator/replicaCount"),
        ("images.pullPolicy=Sometimes", "/images/pullPolicy"),
        ("artifacts.mountPath=artifacts", "/artifacts/mountPath"),
    ],
)
def test_schema_refuses_typos_and_bad_values(setting: str, complaint: str) -> None:
    result = helm("template", "llmft", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_values_yaml_documents_every_value() -> None:
    """Each value has a `# --` comment; a key without one must be a section of documented keys."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    # Stack of (indent, documented) for the mappings we are inside.
    stack: list[tuple[int, bool]] = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_documented = any(doc for _, doc in stack)
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and "# --" not in lines[j]:
            j -= 1
        documented = j >= 0 and lines[j].strip().startswith("# --")
        is_section = rest == "" and i + 1 < len(lines) and not lines[i + 1].strip().startswith("-")
        if not inside_documented and not documented and not is_section:
            undocumented.append(f"line {i + 1}: {key}")
        if is_section:
            stack.append((indent, documented or inside_documented))
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)


def test_default_values_name_every_schema_property() -> None:
    """The schema and values.yaml describe the same keys (a key only in the schema is dead)."""
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> list[str]:
        # Shared definitions (resources, probes, images) may allow keys a default leaves out.
        shared = "$ref" in node
        if shared:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if node.get("additionalProperties") is not False or not isinstance(value, dict):
            return []
        missing = (
            []
            if shared
            else [
                f"{path}.{k}"
                for k in node.get("properties", {})
                if k not in value and k != "global"
            ]
        )
        for key, sub in value.items():
            missing += walk(node["properties"].get(key, {}), sub, f"{path}.{key}")
        return missing

    assert walk(schema, values, "") == []


# --- the operator's settings -----------------------------------------------------------------


def test_configmap_sets_exactly_the_variables_the_operator_reads(tmp_path: Path) -> None:
    values = merged(EVERYTHING_ON, {"operator": {"watchNamespace": "team-a"}})
    config = find(render(tmp_path, values), "ConfigMap")["data"]
    assert set(config) == operator_env_names()


def test_operator_reads_the_configmap_it_is_given(tmp_path: Path) -> None:
    from llmft_operator.settings import OperatorSettings, reconcile_interval

    values = merged(
        EVERYTHING_ON,
        {
            "images": {
                "registry": "registry.example.com/ml",
                "tag": "1.2.3",
                "pullSecrets": ["regcred"],
                "pullPolicy": "Always",
            },
            "operator": {"watchNamespace": "team-a", "reconcileInterval": 5},
            "gpu": {
                "product": "NVIDIA-L4",
                "productLabel": "nvidia.com/gpu.product",
                "tolerationKey": "nvidia.com/gpu",
            },
            "workloads": {
                "jobTTLSeconds": 600,
                "jobDeadlineSeconds": 7200,
                "serviceAccount": {"name": "trainer-sa"},
            },
        },
    )
    config = find(render(tmp_path, values), "ConfigMap")["data"]

    settings = OperatorSettings.from_env(config)

    assert settings.namespace == "team-a"
    assert settings.image_for("FineTuneJob") == "registry.example.com/ml/trainer:1.2.3"
    assert settings.image_for("DatasetGeneration") == "registry.example.com/ml/datagen:1.2.3"
    assert settings.image_for("Evaluation") == "registry.example.com/ml/evaluator:1.2.3"
    assert settings.image_pull_policy == "Always"
    assert settings.image_pull_secrets == ("regcred",)
    assert settings.gpu_product == "NVIDIA-L4"
    assert settings.workload_service_account == "trainer-sa"
    assert settings.job_ttl_seconds == 600
    assert settings.job_deadline_seconds == 7200
    assert settings.kueue_queue == "gpu-queue"
    assert settings.service_wait_seconds == 300
    assert settings.ollama_host == "http://llmft-ollama.llmft-system.svc:11434"
    assert reconcile_interval(config) == 5


def test_default_workload_images_follow_the_chart_version(tmp_path: Path) -> None:
    docs = render(tmp_path)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    config = find(docs, "ConfigMap")["data"]
    for image in ("datagen", "trainer", "evaluator"):
        assert config[f"LLMFT_IMAGE_{image.upper()}"] == f"ghcr.io/llmft/{image}:{version}"
    container = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/llmft/operator:{version}"


def test_an_image_digest_wins_over_the_tag(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    docs = render(tmp_path, {"images": {"tag": "9.9.9", "trainer": {"digest": digest}}})
    config = find(docs, "ConfigMap")["data"]
    assert config["LLMFT_IMAGE_TRAINER"] == f"ghcr.io/llmft/trainer@{digest}"
    assert config["LLMFT_IMAGE_EVALUATOR"] == "ghcr.io/llmft/evaluator:9.9.9"


# --- the operator Deployment -----------------------------------------------------------------


def test_operator_deployment_is_one_restricted_replica_with_probes(tmp_path: Path) -> None:
    deployment = find(render(tmp_path), "Deployment", "llmft-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "two operators must never overlap"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "llmft-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["envFrom"] == [{"configMapRef": {"name": "llmft-config"}}]


def test_operator_command_line_accepts_the_chart_arguments() -> None:
    """The Deployment passes --liveness (and extraArgs such as --verbose) to the operator."""
    result = subprocess.run(
        [sys.executable, "-m", "llmft_operator", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--liveness" in result.stdout


def test_a_changed_setting_restarts_the_operator(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = find(render(tmp_path, values), "Deployment", "llmft-operator")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(None) != checksum({"gpu": {"product": "NVIDIA-L4"}})


# --- RBAC ------------------------------------------------------------------------------------


def test_operator_role_grants_its_work_and_no_wildcards(tmp_path: Path) -> None:
    role = find(render(tmp_path), "ClusterRole", "llmft-operator")
    granted = set(rules_of(role))
    assert not any("*" in triple for triple in granted)
    for plural in PLURALS:
        for verb in ("get", "list", "watch", "patch"):
            assert ("llmft.io", plural, verb) in granted
        assert ("llmft.io", f"{plural}/status", "patch") in granted
    # delete: stopping a trial (the median rule) or a resource annotated llmft.io/stop.
    assert {v for g, r, v in granted if r == "jobs"} == {"create", "get", "list", "watch", "delete"}
    # create: an Experiment's trials and Evaluation; it never makes datasets or Experiments.
    assert {r for g, r, v in granted if g == "llmft.io" and v == "create"} == {
        "finetunejobs",
        "evaluations",
    }
    assert {v for g, r, v in granted if r == "configmaps"} == {"create", "get"}
    assert {v for g, r, v in granted if r == "pods"} == {"list"}
    assert {v for g, r, v in granted if r == "secrets"} == SECRET_VERBS_ALLOWED
    assert {v for g, r, v in granted if r == "events"} == {"create", "list"}
    # No way to escalate: it cannot touch RBAC, ServiceAccount tokens, pods' shells or CRDs.
    assert not {r for _, r, _ in granted} & {
        "roles",
        "rolebindings",
        "clusterroles",
        "clusterrolebindings",
        "serviceaccounts/token",
        "customresourcedefinitions",
        "pods/exec",
        "pods/attach",
        "nodes",
    }
    assert {v for g, r, v in granted if r == "serviceaccounts"} == {"get"}


KOPF_NEEDS = {
    # kopf watches the kinds and patches them (last-handled annotation; no finalizer).
    *(("llmft.io", p, v) for p in PLURALS for v in ("list", "watch", "patch")),
    # @kopf.on.event on batch/v1 jobs.
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    # kopf.event() posts core/v1 Events.
    ("", "events", "create"),
}
# Granted though no call in the operator's code makes it, and why.
GRANTED_BEYOND_CALLS = {
    **{
        ("llmft.io", f"{p}/finalizers", "update"): "ownerReference blockOwnerDeletion on "
        "clusters enforcing OwnerReferencesPermissionEnforcement"
        for p in PLURALS
    },
}
CLIENT_VERBS = {
    "read": "get",
    "get": "get",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "delete": "delete",
    "replace": "update",
}


def operator_api_calls() -> dict[tuple[str, str, str], str]:
    """(group, resource, verb) of every kubernetes-client call in the operator, with its place."""
    calls: dict[tuple[str, str, str], str] = {}
    for path in sorted((ROOT / "operator" / "llmft_operator").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            # Calls and method references alike (`exists` keeps a table of readers).
            for api, method in re.findall(r"\.(core|batch|custom)\.(\w+_namespaced_\w+)", line):
                match = re.fullmatch(r"([a-z]+)_namespaced_(\w+?)(_status)?", method)
                assert match, f"{path.name}:{n}: unexpected client method {method}"
                verb = CLIENT_VERBS[match.group(1)]
                sub = "/status" if match.group(3) else ""
                where = f"{path.name}:{n}"
                if api == "custom":
                    # Only an Experiment creates llmft objects: its trials and its Evaluation.
                    made = ("finetunejobs", "evaluations") if verb == "create" else PLURALS
                    for plural in made:
                        calls[("llmft.io", plural + sub, verb)] = where
                else:
                    resource = match.group(2).replace("_", "") + "s"
                    calls[("batch" if api == "batch" else "", resource + sub, verb)] = where
    return calls


def test_operator_role_grants_every_call_the_operator_makes_and_nothing_else(
    tmp_path: Path,
) -> None:
    docs = render(tmp_path)
    granted = set(rules_of(find(docs, "ClusterRole", "llmft-operator"))) | set(
        rules_of(find(docs, "ClusterRole", "llmft-operator-crds"))
    )
    calls = operator_api_calls()
    assert calls, "no kubernetes client calls found in operator/llmft_operator"
    needed = (
        set(calls)
        | KOPF_NEEDS
        | {
            ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        }
    )
    missing = sorted(needed - granted)
    assert not missing, "not granted: " + ", ".join(
        f"{t} ({calls.get(t, 'kopf')})" for t in missing
    )
    unused = sorted(granted - needed - set(GRANTED_BEYOND_CALLS))
    assert not unused, f"granted but never used: {unused}"


def test_check_secrets_false_drops_every_secret_permission(tmp_path: Path) -> None:
    docs = render(tmp_path, {"operator": {"checkSecrets": False}})
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        assert not [t for t in rules_of(role) if t[1] == "secrets"], role["metadata"]["name"]


def test_crd_observation_is_read_only(tmp_path: Path) -> None:
    role = find(render(tmp_path), "ClusterRole", "llmft-operator-crds")
    assert set(rules_of(role)) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }


def test_watch_namespace_grants_the_operator_that_namespace_only(tmp_path: Path) -> None:
    docs = render(tmp_path, {"operator": {"watchNamespace": "team-a"}})
    binding = find(docs, "RoleBinding", "llmft-operator")
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"]["name"] == "llmft-operator"
    cluster_bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
    assert cluster_bound == {"llmft-operator-crds"}
    workload = find(docs, "ServiceAccount", "llmft-workload")
    assert workload["metadata"]["namespace"] == "team-a"


def test_workload_identity_may_only_patch_status(tmp_path: Path) -> None:
    docs = render(tmp_path, {"workloads": {"namespaces": ["team-a", "team-b"]}})
    role = find(docs, "ClusterRole", "llmft-workload")
    assert set(rules_of(role)) == {
        ("llmft.io", f"{plural}/status", "patch")
        for plural in ("datasetgenerations", "finetunejobs", "evaluations")
    }
    bindings = [
        d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == "llmft-workload"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        (subject,) = binding["subjects"]
        assert subject["namespace"] == binding["metadata"]["namespace"]


# --- CRDs ------------------------------------------------------------------------------------


def test_chart_crds_are_what_the_api_models_generate() -> None:
    chart_crds = CHART / "crds"
    assert crdgen.stale_files(chart_crds) == [], "run `make -C charts/llmft-operator crds`"
    assert sorted(p.name for p in chart_crds.glob("*.yaml")) == sorted(crdgen.rendered_files())


def test_chart_crds_are_identical_to_the_repository_crds() -> None:
    assert REPO_CRDS.is_dir(), f"{REPO_CRDS} is missing: run `python -m llmft.api.crdgen`"
    repo = {p.name: p.read_bytes() for p in REPO_CRDS.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert sorted(chart) == sorted(repo)
    differing = [name for name in repo if repo[name] != chart[name]]
    assert not differing, f"{differing} differ: run `make -C charts/llmft-operator crds`"


def test_mlflow_renders_a_server_on_a_pvc_reachable_only_from_workloads(tmp_path: Path) -> None:
    docs = render(tmp_path, {"mlflow": {"enabled": True}, "networkPolicy": {"enabled": True}})
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    assert {
        ("Deployment", "llmft-mlflow"),
        ("Service", "llmft-mlflow"),
        ("PersistentVolumeClaim", "llmft-mlflow-data"),
        ("NetworkPolicy", "llmft-mlflow"),
    } <= names
    deployment = find(docs, "Deployment", "llmft-mlflow")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in args
    hosts = next(a for a in args if a.startswith("--allowed-hosts="))
    assert "llmft-mlflow.llmft-system.svc:5000" in hosts
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False
    claim = next(v for v in pod["volumes"] if v["name"] == "data")
    assert claim["persistentVolumeClaim"]["claimName"] == "llmft-mlflow-data"
