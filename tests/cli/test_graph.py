"""Dependency order of llmft resources: references, topological order, cycles, missing refs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests
from llmft.api import load_manifests
from llmft.runner.graph import (
    DependencyError,
    ancestors,
    dependants,
    dependency_graph,
    parse_selector,
    references,
    topological_order,
)


def test_evaluation_depends_on_its_dataset_and_each_referenced_job(manifests_dir: Path) -> None:
    resources = {r.kind: r for r in load_manifests(manifests_dir)}
    refs = references(resources["Evaluation"])
    assert [(r.key, r.field) for r in refs] == [
        ("DatasetGeneration/docs", "spec.dataset.datasetGenerationRef"),
        ("FineTuneJob/tune", "spec.arms[1].fineTuneJobRef"),
    ]


def test_order_puts_every_resource_after_what_it_needs_whatever_the_file_order(
    tmp_path: Path,
) -> None:
    write_manifests(tmp_path, EVALUATION, FINETUNE, DATASET)  # written back to front
    resources = load_manifests(tmp_path)
    graph = dependency_graph(resources)
    order = topological_order([f"{r.kind}/{r.metadata.name}" for r in resources], graph)
    assert order == ["DatasetGeneration/docs", "FineTuneJob/tune", "Evaluation/compare"]


def test_independent_resources_keep_manifest_order() -> None:
    order = topological_order(["b", "a", "c"], {"b": [], "a": [], "c": ["a"]})
    assert order == ["b", "a", "c"]


def test_a_cycle_is_refused_with_the_nodes_on_it() -> None:
    with pytest.raises(DependencyError, match=r"cycle: a -> c -> b -> a"):
        topological_order(["a", "b", "c", "d"], {"a": ["c"], "b": ["a"], "c": ["b"], "d": []})


def test_a_missing_reference_names_file_object_and_field(tmp_path: Path) -> None:
    job = copy.deepcopy(FINETUNE)
    job["spec"]["dataset"]["datasetGenerationRef"] = "no-such-dataset"
    path = write_manifests(tmp_path, DATASET, job)
    with pytest.raises(DependencyError) as err:
        dependency_graph(load_manifests(tmp_path))
    message = str(err.value)
    assert "FineTuneJob/tune" in message
    assert str(path) in message
    assert "spec.dataset.datasetGenerationRef" in message
    assert "'no-such-dataset'" in message


def test_a_reference_to_something_that_already_succeeded_elsewhere_is_allowed(
    tmp_path: Path,
) -> None:
    write_manifests(tmp_path, FINETUNE)  # its dataset is not among these manifests
    resources = load_manifests(tmp_path)
    graph = dependency_graph(resources, available={"DatasetGeneration/docs"})
    assert graph == {"FineTuneJob/tune": []}


def test_ancestors_and_dependants_follow_references_transitively() -> None:
    edges = {"d": [], "f": ["d"], "e": ["d", "f"], "x": []}
    assert ancestors("e", edges) == {"d", "f"}
    assert dependants("d", edges) == {"f", "e"}
    assert dependants("x", edges) == set()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("ftj/tune", "FineTuneJob/tune"),
        ("FineTuneJob/tune", "FineTuneJob/tune"),
        ("datasetgenerations/docs", "DatasetGeneration/docs"),
        ("eval/compare", "Evaluation/compare"),
    ],
)
def test_only_selector_accepts_kind_short_name_and_plural(text: str, key: str) -> None:
    assert parse_selector(text) == key


@pytest.mark.parametrize("text", ["tune", "pod/tune", "ftj/"])
def test_only_selector_rejects_anything_else_with_the_kinds_listed(text: str) -> None:
    with pytest.raises(DependencyError, match="DatasetGeneration"):
        parse_selector(text)
