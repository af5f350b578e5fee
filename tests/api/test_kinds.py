"""The kind registry: one entry per kind, and the references its spec fields declare."""

from __future__ import annotations

import pytest

from llmft.api import parse_resource
from llmft.api.crdgen import crd_for
from llmft.api.kinds import FINE_TUNE_JOB, KINDS, KindEntry, KindRegistry, Workload
from llmft.api.references import Reference, references


def test_every_kind_is_found_by_its_name_short_name_or_plural_in_any_case() -> None:
    for entry in KINDS:
        for text in (entry.kind, entry.kind.upper(), entry.short_name, entry.plural):
            assert KINDS.lookup(text) is entry
    assert KINDS.lookup("experimentz") is None


def test_references_between_kinds_are_read_from_the_spec_fields() -> None:
    assert KINDS["DatasetGeneration"].referenced_kinds == ()
    assert KINDS["FineTuneJob"].referenced_kinds == ("DatasetGeneration",)
    assert KINDS["Evaluation"].referenced_kinds == ("DatasetGeneration", "FineTuneJob")


def test_a_spec_lists_what_it_names_with_the_field_a_user_wrote() -> None:
    res = parse_resource(
        {
            "apiVersion": "llmft.io/v1alpha1",
            "kind": "Evaluation",
            "metadata": {"name": "e"},
            "spec": {
                "dataset": {"datasetGenerationRef": "ds"},
                "arms": [
                    {"name": "base", "baseModel": {"name": "m"}},
                    {"name": "tuned", "fineTuneJobRef": "ft"},
                ],
                "metrics": ["rouge"],
            },
        }
    )

    assert references(res.spec) == [
        Reference("DatasetGeneration", "ds", "spec.dataset.datasetGenerationRef"),
        Reference("FineTuneJob", "ft", "spec.arms[1].fineTuneJobRef"),
    ]


def test_a_new_kind_is_one_entry_and_gets_its_crd() -> None:
    entry = KindEntry(
        kind="ShadowJob",
        plural="shadowjobs",
        short_name="shj",
        description="A kind made for this test.",
        spec_model=FINE_TUNE_JOB.spec_model,
        workload=Workload("llmft.workloads.trainer", "trainer"),
        artifact_dir="shadow",
        columns=FINE_TUNE_JOB.columns,
        outputs=(),
    )
    registry = KindRegistry(*KINDS, entry)

    crd = crd_for(registry["ShadowJob"])

    assert crd["metadata"]["name"] == "shadowjobs.llmft.io"
    assert crd["spec"]["names"]["shortNames"] == ["shj"]
    assert registry.lookup("shj") is entry
    assert entry.default_output_path("x") == "shadow/x"


def test_a_reference_to_an_unregistered_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="references unknown kind DatasetGeneration"):
        KindRegistry(FINE_TUNE_JOB)
