"""The committed CRDs in crds/: generated from the API models, complete enough for kubectl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.api.crdgen import (
    CHART_KINDS_FILE,
    chart_kinds_template,
    crd_file_name,
    main,
    rendered_files,
    stale_files,
)
from llmft.api.kinds import KINDS

CRDS = Path(__file__).resolve().parents[2] / "crds"


def load(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRDS / name).read_text())
    return crd


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    return out


def test_committed_crds_match_the_api_models() -> None:
    stale = stale_files(CRDS)

    assert stale == [], f"stale CRDs {stale}: run `python -m llmft.api.crdgen --out crds/`"


def test_the_charts_kind_plurals_are_generated_from_the_registry() -> None:
    # The chart's RBAC rules range over these lists (templates/_kinds.tpl).
    assert CHART_KINDS_FILE.read_text() == chart_kinds_template(), (
        "stale charts/llmft-operator/templates/_kinds.tpl: run `python -m llmft.api.crdgen`"
    )
    for entry in KINDS:
        assert f'"{entry.plural}"' in chart_kinds_template()


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    for name, text in rendered_files().items():
        (tmp_path / name).write_text(text)
    first = next(iter(rendered_files()))
    (tmp_path / first).write_text((tmp_path / first).read_text().replace("Pending", "Pendng"))

    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0


def test_there_is_one_crd_file_per_kind() -> None:
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(
        crd_file_name(info) for info in KINDS
    )


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_every_schema_field_has_a_description(info: Any) -> None:
    schema = load(crd_file_name(info))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    missing = [
        path
        for path, node in walk(schema)
        if path
        and path != ".metadata"
        and not node.get("description")
        # a list's items are described by the list, unless they are objects with fields
        and not (path.endswith("[]") and node.get("type") != "object")
    ]

    assert missing == []


@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_crd_has_status_subresource_columns_and_short_names(info: Any) -> None:
    crd = load(crd_file_name(info))
    version = crd["spec"]["versions"][0]

    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Phase" and "Age" in columns
    assert crd["spec"]["names"]["shortNames"] == list(info.short_names)
    assert crd["spec"]["scope"] == "Namespaced"


def test_cross_field_rules_are_cel_validations() -> None:
    rules = [
        rule["rule"]
        for info in KINDS
        for _, node in walk(
            load(crd_file_name(info))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        )
        for rule in node.get("x-kubernetes-validations", [])
    ]

    assert any("overlapTokens < self.maxTokens" in r for r in rules)
    assert any("self.primaryMetric in self.metrics" in r for r in rules)
    assert any("has(self.datasetGenerationRef) != has(self.path)" in r for r in rules)
