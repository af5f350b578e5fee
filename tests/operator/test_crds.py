"""The committed CRDs in crds/: generated from the API models, complete enough for kubectl."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.api.crdgen import (
    CHART_KINDS_FILE,
    chart_kinds_template,
    crd_file_name,
    crd_for,
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


class GoYamlLoader(yaml.SafeLoader):
    """YAML as kubectl and helm read it (sigs.k8s.io/yaml over go-yaml v2): besides PyYAML's
    YAML 1.1 booleans, a plain y, Y, n or N is a boolean too."""


GoYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:[yYnN]|yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE"
               r"|on|On|ON|off|Off|OFF)$"),
    list("yYnNtTfFoO"),
)  # fmt: skip
GoYamlLoader.add_constructor(
    "tag:yaml.org,2002:bool",
    lambda loader, node: loader.construct_scalar(node).lower() in {"y", "yes", "true", "on"},
)


@pytest.mark.parametrize("info", list(KINDS), ids=lambda i: i.kind)
def test_kubectl_and_helm_read_the_committed_crds_as_generated(info: Any) -> None:
    """A bare `n:` property (an item count in an Evaluation's summary) once reached the API
    server as a property named "false": the cluster then pruned every count and defaulted a
    "false": 0 in its place, which `llmft report --cluster` refused."""
    generated = crd_for(info)
    for root in (CRDS, CHART_KINDS_FILE.parents[1] / "crds"):
        text = (root / crd_file_name(info)).read_text()
        assert yaml.load(text, Loader=GoYamlLoader) == generated, root / crd_file_name(info)


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
