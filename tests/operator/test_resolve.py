"""Inputs of a workload: what must exist first, what is missing, and the resolved spec."""

from __future__ import annotations

import json
from typing import Any

import pytest
from operator_manifests import dataset, evaluation, finetune
from pydantic import ValidationError

from llmft.api.common import ArtifactLocation
from llmft.api.resolve import ResolveError
from llmft.api.resource import parse_resource
from llmft_operator.resolve import (
    Fetched,
    Needs,
    endpoint_allowed,
    find_problems,
    needs_of,
    plan_workload,
)
from llmft_operator.settings import OperatorSettings

SETTINGS = OperatorSettings()
ARTIFACTS = {"pvc": "llmft-artifacts", "path": "datasets/docs", "uri": "pvc://llmft-artifacts/d"}


def succeeded(kind: str, name: str) -> dict[str, Any]:
    """An upstream resource as the API returns it once the operator saw its Job complete."""
    body = {"DatasetGeneration": dataset, "FineTuneJob": finetune}[kind](name)
    return {**body, "status": {"phase": "Succeeded", "artifacts": ARTIFACTS}}


def all_present(needs: Needs, **resources: dict[str, Any] | None) -> Fetched:
    """What the reconciler would fetch when every input exists; `resources` overrides upstreams."""
    fetched = Fetched(
        resources={(r.kind, r.name): succeeded(r.kind, r.name) for r in needs.upstream},
        secret_keys={u.ref.name: frozenset({u.ref.key}) for u in needs.secrets},
        secrets_opted_in={u.ref.name: True for u in needs.secrets},
        config_maps={name: True for name, _ in needs.config_maps},
        claims={name: True for name, _ in needs.claims},
    )
    for key, body in resources.items():
        kind, name = key.split("/")
        fetched.resources[(kind, name)] = body
    return fetched


def reasons(body: dict[str, Any], **resources: dict[str, Any] | None) -> list[str]:
    needs = needs_of(parse_resource(body), SETTINGS)
    return [p.reason for p in find_problems(needs, all_present(needs, **resources), "ns")]


def test_finetune_needs_its_dataset_the_artifact_pvc_and_the_workload_account() -> None:
    needs = needs_of(parse_resource(finetune()), SETTINGS)

    assert [(r.kind, r.name, r.field) for r in needs.upstream] == [
        ("DatasetGeneration", "docs", "spec.dataset.datasetGenerationRef")
    ]
    assert needs.claims == (("llmft-artifacts", "spec.output.pvc"),)
    assert needs.service_account == "llmft-workload"


def test_evaluation_needs_each_finetune_once() -> None:
    body = evaluation(
        arms=[
            {"name": "a", "fineTuneJobRef": "tune"},
            {"name": "b", "fineTuneJobRef": "tune", "rag": {"enabled": True}},
            {"name": "c", "fineTuneJobRef": "other"},
        ]
    )

    needs = needs_of(parse_resource(body), SETTINGS)

    assert [(r.kind, r.name) for r in needs.upstream] == [
        ("DatasetGeneration", "docs"),
        ("FineTuneJob", "tune"),
        ("FineTuneJob", "other"),
    ]


def test_nothing_is_missing_when_every_input_is_there() -> None:
    assert reasons(evaluation()) == []


def test_missing_upstream_is_reference_not_found() -> None:
    assert reasons(finetune(), **{"DatasetGeneration/docs": None}) == ["ReferenceNotFound"]


def test_running_upstream_is_not_ready_and_a_failed_one_is_reported_first() -> None:
    running = {"status": {"phase": "Running", "progress": {"percent": 40.0}}}
    failed = {"status": {"phase": "Failed", "message": "OOMKilled"}}

    assert reasons(finetune(), **{"DatasetGeneration/docs": running}) == ["UpstreamNotReady"]
    assert reasons(
        evaluation(), **{"DatasetGeneration/docs": running, "FineTuneJob/tune": failed}
    ) == ["UpstreamFailed", "UpstreamNotReady"]


def test_missing_secret_and_missing_key_are_told_apart() -> None:
    body = finetune(baseModel={"name": "m", "tokenSecretRef": {"name": "hf", "key": "read"}})
    needs = needs_of(parse_resource(body), SETTINGS)
    fetched = all_present(needs)

    fetched.secret_keys["hf"] = None
    gone = find_problems(needs, fetched, "ns")
    fetched.secret_keys["hf"] = frozenset({"write"})
    no_key = find_problems(needs, fetched, "ns")

    assert [p.reason for p in gone] == ["SecretNotFound"]
    assert (
        "Secret 'hf' (spec.baseModel.tokenSecretRef) not found in namespace ns" in gone[0].message
    )
    assert [p.reason for p in no_key] == ["SecretKeyNotFound"]
    assert "no key 'read'" in no_key[0].message


def test_two_secrets_for_one_variable_conflict() -> None:
    body = evaluation(
        arms=[
            {"name": "a", "baseModel": {"name": "m", "tokenSecretRef": {"name": "s1", "key": "k"}}},
            {"name": "b", "baseModel": {"name": "m", "tokenSecretRef": {"name": "s2", "key": "k"}}},
        ]
    )

    assert reasons(body) == ["ConflictingSecrets"]


def test_missing_documents_configmap_pvc_and_account_are_each_reported() -> None:
    needs = needs_of(parse_resource(dataset()), SETTINGS)
    fetched = all_present(needs)
    fetched.config_maps["handbook"] = False
    fetched.claims["llmft-artifacts"] = False
    fetched.service_account = False

    problems = find_problems(needs, fetched, "ns")

    assert [p.reason for p in problems] == [
        "ConfigMapNotFound",
        "PVCNotFound",
        "ServiceAccountNotFound",
    ]


def test_cluster_service_addresses_replace_only_builtin_defaults() -> None:
    settings = OperatorSettings(ollama_host="http://ollama.llmft:11434")
    default = parse_resource(dataset())
    explicit = parse_resource(dataset(generator={"ollamaHost": "http://mine:11434"}))

    hosts = [
        json.loads(plan_workload(r, Fetched(), settings, 1).spec_json)["spec"]["generator"][
            "ollamaHost"
        ]
        for r in (default, explicit)
    ]

    assert hosts == ["http://ollama.llmft:11434", "http://mine:11434"]


def test_arm_without_base_model_takes_the_one_its_finetune_ran_with() -> None:
    res = parse_resource(evaluation(arms=[{"name": "tuned", "fineTuneJobRef": "tune"}]))
    needs = needs_of(res, SETTINGS)
    fetched = all_present(needs)
    fetched.upstream_specs[("FineTuneJob", "tune")] = {
        "spec": {"baseModel": {"name": "/artifacts/models/base", "revision": "v2"}}
    }

    spec = json.loads(plan_workload(res, fetched, SETTINGS, 1).spec_json)["spec"]

    assert spec["arms"][0]["baseModel"] == {
        "name": "/artifacts/models/base",
        "revision": "v2",
        "offline": False,
    }


def test_an_artifact_location_outside_the_volume_is_refused() -> None:
    with pytest.raises(ValidationError, match="path"):
        ArtifactLocation(pvc="llmft-artifacts", path="finetune/../../../etc", uri="pvc://x/y")


def test_each_endpoint_arm_key_gets_its_own_variable() -> None:
    def arm(name: str, secret: str) -> dict[str, Any]:
        ref = {"name": secret, "key": "apiKey"}
        return {
            "name": name,
            "endpoint": {"url": "https://x/v1", "model": "m", "apiKeySecretRef": ref},
        }

    body = evaluation(arms=[arm("a", "s1"), arm("b", "s2")])
    needs = needs_of(parse_resource(body), SETTINGS)

    assert [(u.env, u.ref.name, u.field) for u in needs.secrets] == [
        ("LLMFT_ARM_0_API_KEY", "s1", "spec.arms[0].endpoint.apiKeySecretRef"),
        ("LLMFT_ARM_1_API_KEY", "s2", "spec.arms[1].endpoint.apiKeySecretRef"),
    ]
    assert find_problems(needs, all_present(needs), "ns") == []


def test_finetune_ollama_serving_takes_the_cluster_ollama_unless_set() -> None:
    settings = OperatorSettings(ollama_host="http://ollama.llmft:11434")

    def host(ollama: dict[str, Any]) -> str:
        body = finetune(output={"ollama": {"base": "smollm2", **ollama}})
        needs = needs_of(parse_resource(body), settings)
        plan = plan_workload(parse_resource(body), all_present(needs), settings, 1)
        return str(json.loads(plan.spec_json)["spec"]["output"]["ollama"]["host"])

    assert host({}) == "http://ollama.llmft:11434"
    assert host({"host": "http://mine:11434"}) == "http://mine:11434"


def test_a_secret_not_labelled_for_llmft_is_not_handed_to_a_workload() -> None:
    hub = {"repo": "acme/x", "tokenSecretRef": {"name": "hf", "key": "write"}}
    needs = needs_of(parse_resource(finetune(output={"huggingFace": hub})), SETTINGS)
    fetched = all_present(needs)
    fetched.secrets_opted_in["hf"] = False

    (problem,) = find_problems(needs, fetched, "ns")

    assert problem.reason == "SecretNotAllowed"
    assert "kubectl label secret hf llmft.io/use-in-workloads=true" in problem.message


def test_a_secret_is_sent_only_to_an_allowed_endpoint() -> None:
    settings = OperatorSettings(
        allowed_endpoints=("https://huggingface.co",), ollama_host="http://ollama.llmft:11434"
    )
    key = {"name": "judge", "key": "k"}
    judged = {"provider": "ollama", "model": "m", "apiKeySecretRef": key}
    hub = {"repo": "acme/x", "tokenSecretRef": {"name": "hf", "key": "write"}}
    evil = {**hub, "endpoint": "https://huggingface.co.evil.example"}

    def problems(body: dict[str, Any]) -> list[str]:
        needs = needs_of(parse_resource(body), settings)
        return [p.message for p in find_problems(needs, all_present(needs), "ns")]

    assert problems(finetune(output={"huggingFace": hub})) == []
    (refused,) = problems(finetune(output={"huggingFace": evil}))
    assert refused.startswith("spec.output.huggingFace.tokenSecretRef: the secret would be sent")
    assert problems(evaluation(metrics=["rouge"], judge=judged)) == []  # the cluster's Ollama
    outside = {**judged, "endpoint": "https://judge.example/v1"}
    assert "https://judge.example/v1" in problems(evaluation(metrics=["rouge"], judge=outside))[0]


def test_endpoints_match_on_scheme_host_port_and_path() -> None:
    allowed = ("https://hub.example:8443/api",)

    assert endpoint_allowed("https://hub.example:8443/api/models", allowed)
    assert not endpoint_allowed("http://hub.example:8443/api", allowed)
    assert not endpoint_allowed("https://hub.example/api", allowed)
    assert not endpoint_allowed("https://hub.example:8443/apix", allowed)
    assert endpoint_allowed("https://anything.example", ())


def test_an_upstream_location_is_computed_never_read_from_its_status() -> None:
    res = parse_resource(finetune())
    needs = needs_of(res, SETTINGS)
    fetched = all_present(needs)
    forged = {"pvc": "llmft-artifacts", "path": "../../../etc", "uri": "pvc://x/../../../etc"}
    fetched.resources[("DatasetGeneration", "docs")]["status"]["artifacts"] = forged

    spec = json.loads(plan_workload(res, fetched, SETTINGS, 1).spec_json)["spec"]

    assert spec["dataset"] == {"path": "/artifacts/datasets/docs"}


def test_an_upstream_is_ready_only_when_its_job_completed() -> None:
    needs = needs_of(parse_resource(finetune()), SETTINGS)
    fetched = all_present(needs)
    upstream = fetched.resources[("DatasetGeneration", "docs")]
    upstream["metadata"]["uid"] = "u1"
    job: dict[str, Any] = {
        "metadata": {"name": "docs-dsgen", "ownerReferences": [{"uid": "u1"}]},
        "status": {"active": 1},
    }
    fetched.upstream_jobs[("DatasetGeneration", "docs")] = job

    (forged,) = find_problems(needs, fetched, "ns")
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    done = find_problems(needs, fetched, "ns")
    fetched.upstream_jobs[("DatasetGeneration", "docs")] = None  # expired after its TTL
    expired = find_problems(needs, fetched, "ns")

    assert forged.reason == "UpstreamNotReady" and "has not completed" in forged.message
    assert done == [] and expired == []


def test_mlflow_credentials_reach_the_pod_by_secret_reference_only() -> None:
    from llmft.api.layout import ENV_MLFLOW_PASSWORD, ENV_MLFLOW_TOKEN

    res = parse_resource(
        finetune(
            tracking={
                "mlflow": {
                    "trackingUri": "https://mlflow.example",
                    "username": "ci",
                    "passwordSecretRef": {"name": "mlflow", "key": "password"},
                    "tokenSecretRef": {"name": "mlflow", "key": "token"},
                }
            }
        )
    )

    uses = {u.env: u for u in needs_of(res, OperatorSettings()).secrets}

    assert uses[ENV_MLFLOW_TOKEN].ref.key == "token"
    assert uses[ENV_MLFLOW_PASSWORD].field == "spec.tracking.mlflow.passwordSecretRef"


def test_hub_dataset_and_adapter_tokens_fill_hf_token_and_must_agree() -> None:
    token = {"name": "hf", "key": "read"}
    adapter_arm = {
        "name": "tuned",
        "baseModel": {"name": "acme/base"},
        "adapterPath": "hf://acme/hr-adapter@v1",
        "adapterTokenSecretRef": token,
    }
    body = evaluation(
        dataset={"path": "hf://datasets/acme/hr-qa", "tokenSecretRef": token}, arms=[adapter_arm]
    )
    res = parse_resource(body)
    needs = needs_of(res, SETTINGS)

    # One variable, one Secret key: the second reference to the same key adds nothing.
    assert [(u.env, u.field) for u in needs.secrets] == [
        ("HF_TOKEN", "spec.dataset.tokenSecretRef")
    ]
    assert find_problems(needs, all_present(needs), "ns") == []
    # Hub URIs are left for the workload: no volume path is put in front of them.
    spec = json.loads(plan_workload(res, all_present(needs), SETTINGS, 1).spec_json)["spec"]
    assert spec["dataset"]["path"] == "hf://datasets/acme/hr-qa"
    assert spec["arms"][0]["adapterPath"] == "hf://acme/hr-adapter@v1"

    other = {**adapter_arm, "adapterTokenSecretRef": {"name": "other", "key": "read"}}
    conflicting = evaluation(
        dataset={"path": "hf://datasets/acme/hr-qa", "tokenSecretRef": token}, arms=[other]
    )
    assert reasons(conflicting) == ["ConflictingSecrets"]


def test_a_local_source_path_is_refused_on_the_cluster_saying_what_to_use() -> None:
    res = parse_resource(dataset(source={"path": "/etc"}))

    with pytest.raises(ResolveError, match=r"spec\.source\.path: .*spec\.source\.configMap"):
        plan_workload(res, all_present(needs_of(res, SETTINGS)), SETTINGS, 1)
