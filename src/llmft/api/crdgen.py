"""Generate the CustomResourceDefinitions in crds/ from the pydantic models of each kind.

`python -m llmft.api.crdgen` rewrites crds/ and the chart's crds/ (Helm installs those verbatim)
and the chart's templates/_kinds.tpl (the plurals its RBAC rules grant); `--check` exits
non-zero when the committed files differ from what the models say. The models stay the single
source of truth: the API server then refuses, at `kubectl apply`, what the
operator and the workloads would refuse later.

The pydantic JSON schema is turned into a Kubernetes *structural* schema: `$ref`s inlined,
`anyOf [X, null]` folded into X, `const` turned into `enum`, numeric exclusive bounds rewritten
the OpenAPI v3.0 way, defaults kept (including those from default factories), titles dropped,
and free-form maps marked `x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from llmft.api.common import GROUP, PATTERN_MEANINGS, VERSION, BaseStatus, ClusterDefault
from llmft.api.kinds import KINDS, KindEntry, models_in

ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "crds"
# Helm installs a chart's crds/ verbatim, so the chart gets its own generated copy.
CHART_CRD_DIR = ROOT / "charts" / "llmft-operator" / "crds"
# The kinds' plurals as Helm named templates, which the chart's RBAC rules range over.
CHART_KINDS_FILE = ROOT / "charts" / "llmft-operator" / "templates" / "_kinds.tpl"
CATEGORY = "llmft"


def crd_file_name(entry: KindEntry) -> str:
    return f"{GROUP}_{entry.plural}.yaml"


class _CrdJsonSchema(GenerateJsonSchema):
    """Pydantic's generator, plus the defaults that come from default factories."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, BaseModel):
            # Written out whole: the API server checks a default against the object's CEL rules
            # before it fills in nested defaults, so `{}` fails a rule like
            # `self.overlapTokens < self.maxTokens` ("no such key").
            return _wire_without_cluster_defaults(dft)
        return super().encode_default(dft)


def _cluster_default_fields(model: type[BaseModel]) -> list[str]:
    return [
        info.alias or name
        for name, info in model.model_fields.items()
        if any(isinstance(m, ClusterDefault) for m in info.metadata)
    ]


def _wire_without_cluster_defaults(obj: BaseModel) -> dict[str, Any]:
    """An object's wire form without the fields the cluster fills (see ClusterDefault).

    The API server writes a CRD default into every object it stores; a field that must stay
    unset unless the user writes it can have none, in its own schema or in a parent's default.
    """
    out = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    for key in _cluster_default_fields(type(obj)):
        out.pop(key, None)
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        key = info.alias or name
        if isinstance(value, BaseModel) and key in out:
            out[key] = _wire_without_cluster_defaults(value)
    return out


def _drop_cluster_defaults(model: type[BaseModel], raw: dict[str, Any]) -> None:
    """Remove the `default` of every ClusterDefault field from pydantic's JSON schema."""
    seen: set[type[BaseModel]] = set()
    stack = [model]
    defs = raw.get("$defs", {})
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = raw if current is model else defs.get(current.__name__, {})
        for key in _cluster_default_fields(current):
            node.get("properties", {}).get(key, {}).pop("default", None)
        for info in current.model_fields.values():
            stack.extend(models_in(info.annotation))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_inline(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    variants = node.get("anyOf")
    if not variants:
        return node
    non_null = [v for v in variants if v.get("type") != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot express union {variants} in a structural schema")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**non_null[0], **rest}


def to_structural(node: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON-schema node (refs already inlined) as a Kubernetes structural schema."""
    node = _fold_nullable(dict(node))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in (
            "title",
            "additionalProperties",
            "patternProperties",
            "propertyNames",
            "properties",
            "items",
            "required",
        ):
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
            continue
        out[key] = value
    if "enum" in node and "type" not in node:
        kinds = {type(v) for v in node["enum"]}
        if kinds == {str}:
            out["type"] = "string"
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: to_structural(v) for k, v in node["properties"].items()}
        if node.get("required"):
            out["required"] = list(node["required"])
        if node.get("additionalProperties") is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif node.get("patternProperties"):
        # A map whose keys are constrained (dict[Pattern, V]): structural schemas have no
        # patternProperties, so the key pattern becomes a CEL rule over the keys.
        ((pattern, values),) = node["patternProperties"].items()
        out["additionalProperties"] = to_structural(values)
        meaning = PATTERN_MEANINGS.get(pattern, f"must match {pattern}")
        limit = (node.get("propertyNames") or {}).get("maxLength")
        size = f"size(k) <= {limit} && " if limit else ""
        out.setdefault("x-kubernetes-validations", []).append(
            {
                "rule": f"self.all(k, {size}k.matches(r'{pattern}'))",
                "message": f"every key {meaning}",
            }
        )
    elif node.get("type") == "object":
        extra = node.get("additionalProperties", True)
        if extra is True or extra == {}:
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out["additionalProperties"] = to_structural(extra)
    elif not node.get("type") and "enum" not in node:
        # Any: kept as given by the workload or the user.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = to_structural(node["items"])
    return _ordered(out)


_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "items",
    "required",
    "properties",
    "additionalProperties",
)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of a pydantic model, as the CRD embeds it."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    _drop_cluster_defaults(model, raw)
    inlined = _inline(raw, raw.get("$defs", {}))
    return to_structural(inlined)


def _without_defaults(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: _without_defaults(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _without_defaults(out["items"])
    return out


def _status_schema(model: type[BaseStatus]) -> dict[str, Any]:
    # Status is written by the operator and the workload, never defaulted by the API server.
    schema = _without_defaults(model_schema(model))
    props = schema["properties"]
    for name in ("startTime", "completionTime"):
        props[name]["format"] = "date-time"
    conditions = props["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    cond = conditions["items"]
    cond["required"] = ["type", "status"]
    cond["properties"]["status"]["enum"] = ["True", "False", "Unknown"]
    cond["properties"]["lastTransitionTime"]["format"] = "date-time"
    # Conditions follow metav1.Condition exactly; nothing else is kept in them.
    cond.pop("x-kubernetes-preserve-unknown-fields", None)
    if "metrics" in props:
        props["metrics"]["description"] += " Evaluation metrics are keyed <arm>.<metric>."
    return schema


def crd_for(info: KindEntry) -> dict[str, Any]:
    """The whole CustomResourceDefinition object for one kind."""
    spec_schema = model_schema(info.spec_model)
    spec_schema["description"] = (info.spec_model.__doc__ or "").strip()
    root = {
        "description": info.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion of this object: llmft.io/v1alpha1.",
                "type": "string",
            },
            "kind": {"description": f"Kind of this object: {info.kind}.", "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": _status_schema(info.status_model),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "llmft", "app.kubernetes.io/part-of": "llmft"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.to_crd() for c in info.columns],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def pruned_paths(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """The fields of `value` the API server would drop (prune) under a structural `schema`.

    An object keeps the properties its schema names, every field where the schema says
    x-kubernetes-preserve-unknown-fields, and map entries under additionalProperties.
    """
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            where = f"{path}.{key}"
            if props is not None and key in props:
                out += pruned_paths(child, props[key], where)
            elif isinstance(extra, dict):
                out += pruned_paths(child, extra, where)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                out.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += pruned_paths(item, schema["items"], f"{path}[{i}]")
    return out


def status_pruned_paths(kind: str, status: dict[str, Any]) -> list[str]:
    """The fields of a `kind`'s status that its CRD would prune (empty: all of it is kept)."""
    schema = crd_for(KINDS[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return pruned_paths(status, schema["properties"]["status"], "status")


HEADER = "# Generated by `python -m llmft.api.crdgen` from src/llmft/api; do not edit by hand.\n"


# Plain scalars that Go's YAML (sigs.k8s.io/yaml over go-yaml v2: kubectl, helm) reads as
# booleans. PyYAML quotes the ones its own YAML 1.1 resolver knows, but not y, Y, n and N: a bare
# `n:` property (an item count) would reach the API server as a property named "false".
GO_YAML_BOOLS = frozenset(
    f(word)
    for word in ("y", "yes", "n", "no", "true", "false", "on", "off")
    for f in (str.lower, str.upper, str.capitalize)
)


class CrdDumper(yaml.SafeDumper):
    """A SafeDumper that quotes every string Go's YAML would read as a boolean."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value in GO_YAML_BOOLS:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


CrdDumper.add_representer(str, _represent_str)


def render(info: KindEntry) -> str:
    """The CRD as the YAML text committed in crds/."""
    body = yaml.dump(
        crd_for(info), Dumper=CrdDumper, sort_keys=False, width=100, allow_unicode=True
    )
    return HEADER + "---\n" + body


def rendered_files() -> dict[str, str]:
    """File name -> YAML text, one file per kind."""
    return {crd_file_name(info): render(info) for info in KINDS}


def chart_kinds_template() -> str:
    """_kinds.tpl: each list of plurals the chart's RBAC needs, as a JSON array in a named
    template (`include "llmft.kinds.all" . | fromJsonArray`)."""
    created = {kind for entry in KINDS for kind in entry.creates}
    lists = {
        "llmft.kinds.all": [e.plural for e in KINDS],
        "llmft.kinds.created": [e.plural for e in KINDS if e.kind in created],
        # What a workload pod may patch: its own kind's status.
        "llmft.kinds.workloadStatus": [f"{e.plural}/status" for e in KINDS.with_workload()],
    }
    lines = [
        "{{- /* Generated from the kind registry (llmft.api.kinds) by "
        "`python -m llmft.api.crdgen`; do not edit. */ -}}"
    ]
    for name, plurals in lists.items():
        lines.append(f'{{{{- define "{name}" -}}}}{json.dumps(plurals)}{{{{- end }}}}')
    return "\n".join(lines) + "\n"


def stale_files(out_dir: Path) -> list[str]:
    """Files in out_dir that differ from, are missing against or are not among the models' CRDs."""
    files = rendered_files()
    stale = [
        name
        for name, text in files.items()
        if not (out_dir / name).exists() or (out_dir / name).read_text() != text
    ]
    extra = sorted(p.name for p in out_dir.glob("*.yaml") if p.name not in files)
    return stale + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        help=f"directory for the CRD YAML (repeatable; default: {CRD_DIR} and {CHART_CRD_DIR})",
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that the files are up to date"
    )
    args = parser.parse_args(argv)
    out_dirs: list[Path] = args.out or [CRD_DIR, CHART_CRD_DIR]
    files = rendered_files()
    # Writing the chart's CRDs writes the chart's list of kinds too.
    chart = any(out.resolve() == CHART_CRD_DIR.resolve() for out in out_dirs)
    kinds_tpl = chart_kinds_template()
    if args.check:
        stale_anywhere = False
        if chart and (not CHART_KINDS_FILE.exists() or CHART_KINDS_FILE.read_text() != kinds_tpl):
            stale_anywhere = True
            print(f"stale {CHART_KINDS_FILE}; run `python -m llmft.api.crdgen`")
        for out in out_dirs:
            stale = stale_files(out)
            for name in stale:
                path = out / name
                old = path.read_text().splitlines(keepends=True) if path.exists() else []
                new = files[name].splitlines(keepends=True) if name in files else []
                sys.stdout.writelines(difflib.unified_diff(old, new, str(path), name))
            if stale:
                stale_anywhere = True
                print(f"stale CRDs in {out}: {', '.join(stale)}; run `python -m llmft.api.crdgen`")
        return 1 if stale_anywhere else 0
    for out in out_dirs:
        out.mkdir(parents=True, exist_ok=True)
        for gone in out.glob("*.yaml"):
            if gone.name not in files:
                gone.unlink()  # a kind that is gone takes its CRD with it
                print(f"removed {gone}")
        for name, text in files.items():
            (out / name).write_text(text)
            print(f"wrote {out / name}")
    if chart:
        CHART_KINDS_FILE.write_text(kinds_tpl)
        print(f"wrote {CHART_KINDS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
