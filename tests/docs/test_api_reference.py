"""docs/api.md is generated from the API models and must be current."""

from __future__ import annotations

from llmft.api import apidoc


def test_committed_api_reference_matches_the_models() -> None:
    assert apidoc.DOC.read_text() == apidoc.render(), "run `python -m llmft.api.apidoc`"


def test_api_reference_documents_nested_and_list_fields_with_their_rules() -> None:
    text = apidoc.render()
    assert "| `spec.arms[].rag.topK` | integer |" in text
    assert "CEL: set exactly one of configMap, pvc, urls, path" in text
