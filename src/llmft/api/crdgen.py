"""Generate the CustomResourceDefinitions in crds/ from the pydantic models of each kind.

`python -m llmft.api.crdgen` rewrites crds/; `--check` exits non-zero when the committed YAML
differs from what the models say. The models stay the single source of truth: the API server
then refuses, at `kubectl apply`, what the operator and the workloads would refuse later.

The pydantic JSON schema is turned into a Kubernetes *structural* schema: `$ref`s inlined,
`anyOf [X, null]` folded into X, `const` turned into `enum`, numeric exclusive bounds rewritten
the OpenAPI v3.0 way, defaults kept (including those from default factories), titles dropped,
and free-form maps marked `x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from llmft.api.common import GROUP, VERSION, ResourceStatus
from llmft.api.datasetgeneration import DatasetGenerationSpec
from llmft.api.evaluation import EvaluationSpec
from llmft.api.finetunejob import FineTuneJobSpec
from llmft.api.resource import PLURALS

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"
CATEGORY = "llmft"


@dataclass(frozen=True)
class KindInfo:
    """Everything about one kind that its CRD needs besides the schema."""

    kind: str
    spec_model: type[BaseModel]
    short_names: tuple[str, ...]
    description: str
    columns: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def plural(self) -> str:
        return PLURALS[self.kind]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


def _column(
    name: str, json_path: str, type_: str, description: str, priority: int = 0
) -> dict[str, Any]:
    col: dict[str, Any] = {
        "name": name,
        "type": type_,
        "jsonPath": json_path,
        "description": description,
    }
    if priority:
        col["priority"] = priority
    return col


PHASE = _column("Phase", ".status.phase", "string", "Pending, Waiting, Running, Succeeded, Failed.")
PROGRESS = _column("Progress", ".status.progress.percent", "number", "Percent of the work done.")
AGE = _column("Age", ".metadata.creationTimestamp", "date", "Time since creation.")
MESSAGE = _column("Message", ".status.message", "string", "Latest state or failure.", priority=1)
JOB = _column("Job", ".status.jobName", "string", "The workload's Job.", priority=1)

KIND_INFOS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            "DatasetGeneration",
            DatasetGenerationSpec,
            ("dsgen",),
            "Generates an instruction dataset (Q/A pairs) and a causal corpus from documents "
            "with an LLM served by Ollama.",
            (
                PHASE,
                PROGRESS,
                _column("Pairs", ".status.metrics.pairs", "integer", "Q/A pairs kept."),
                _column("Train", ".status.metrics.trainPairs", "integer", "Pairs in train.jsonl."),
                _column("Eval", ".status.metrics.evalPairs", "integer", "Pairs in eval.jsonl."),
                AGE,
                JOB,
                MESSAGE,
            ),
        ),
        KindInfo(
            "FineTuneJob",
            FineTuneJobSpec,
            ("ftj",),
            "Fine-tunes a base model with QLoRA or LoRA (causal or instruct, optionally with RAG "
            "context) on a dataset, and saves the adapter.",
            (
                PHASE,
                _column("Method", ".spec.method", "string", "qlora or lora."),
                _column("Mode", ".spec.mode", "string", "causal or instruct."),
                PROGRESS,
                _column("Loss", ".status.progress.loss", "number", "Latest training loss."),
                _column("Eval-Loss", ".status.metrics.evalLoss", "number", "Final eval loss."),
                AGE,
                _column("Base", ".spec.baseModel.name", "string", "Base model.", priority=1),
                JOB,
                MESSAGE,
            ),
        ),
        KindInfo(
            "Evaluation",
            EvaluationSpec,
            ("eval",),
            "Answers held-out questions with several arms (base or fine-tuned, with or without "
            "RAG) and scores them side by side.",
            (
                PHASE,
                PROGRESS,
                _column("Metric", ".spec.primaryMetric", "string", "Metric that ranks the arms."),
                _column("Winner", ".status.metrics.winner", "string", "Best arm by that metric."),
                _column("Score", ".status.metrics.winnerScore", "number", "The winner's mean."),
                AGE,
                JOB,
                MESSAGE,
            ),
        ),
    )
}


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
            return dft.model_dump(by_alias=True, exclude_none=True, mode="json")
        return super().encode_default(dft)


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
        if key in ("title", "additionalProperties", "properties", "items", "required"):
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
    inlined = _inline(raw, raw.get("$defs", {}))
    return to_structural(inlined)


def _without_defaults(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if k != "default"}
    if "properties" in out:
        out["properties"] = {k: _without_defaults(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _without_defaults(out["items"])
    return out


def _status_schema() -> dict[str, Any]:
    # Status is written by the operator and the workload, never defaulted by the API server.
    schema = _without_defaults(model_schema(ResourceStatus))
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
    props["metrics"]["description"] += " Evaluation metrics are keyed <arm>.<metric>."
    return schema


def crd_for(info: KindInfo) -> dict[str, Any]:
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
            "status": _status_schema(),
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
                    "additionalPrinterColumns": list(info.columns),
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `python -m llmft.api.crdgen` from src/llmft/api; do not edit by hand.\n"


def render(info: KindInfo) -> str:
    """The CRD as the YAML text committed in crds/."""
    body = yaml.safe_dump(crd_for(info), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + "---\n" + body


def rendered_files() -> dict[str, str]:
    """File name -> YAML text, one file per kind."""
    return {info.file_name: render(info) for info in KIND_INFOS.values()}


def stale_files(out_dir: Path) -> list[str]:
    """Files in out_dir that differ from (or are missing against) the models; empty if current."""
    stale = []
    for name, text in rendered_files().items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CRD_DIR, help="directory for the CRD YAML")
    parser.add_argument(
        "--check", action="store_true", help="only check that the files are up to date"
    )
    args = parser.parse_args(argv)
    files = rendered_files()
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            path = args.out / name
            old = path.read_text().splitlines(keepends=True) if path.exists() else []
            sys.stdout.writelines(
                difflib.unified_diff(old, files[name].splitlines(keepends=True), str(path), name)
            )
        if stale:
            print(f"stale CRDs: {', '.join(stale)}; run `python -m llmft.api.crdgen`")
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
