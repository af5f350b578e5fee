"""The manifests under examples/ are valid resources: users apply them as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.resource import load_manifests

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("name", ["quickstart", "cluster"])
def test_example_manifests_parse_as_the_three_kinds(name: str) -> None:
    kinds = {res.kind for res in load_manifests(EXAMPLES / name)}
    assert kinds == {"DatasetGeneration", "FineTuneJob", "Evaluation"}


def test_cluster_example_evaluates_every_fine_tune_job() -> None:
    resources = load_manifests(EXAMPLES / "cluster")
    jobs = {r.metadata.name for r in resources if r.kind == "FineTuneJob"}
    (evaluation,) = [r for r in resources if r.kind == "Evaluation"]
    assert jobs == {arm.fine_tune_job_ref for arm in evaluation.spec.arms} - {None}
