"""Cross-field rules are written once as CEL (the API server's check) and pydantic must agree.

Each rule-bearing model gets sample objects; whether each is valid is taken from evaluating the
model's CEL rules (with cel-python, on the object defaulted as the API server defaults it), and
pydantic must accept exactly those. A rule no sample breaks fails the test, so every rule is
exercised both ways.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest
from pydantic import BaseModel, ValidationError

from llmft.api.crdgen import model_schema
from llmft.api.datasetgeneration import Chunking, DocumentSource, Split
from llmft.api.evaluation import Arm, EvaluationSpec
from llmft.api.finetunejob import DatasetInput, FineTuneJobSpec, OllamaServing
from llmft.api.kinds import KINDS, models_in

FTJ = {"baseModel": {"name": "m"}, "dataset": {"path": "d"}}
EVAL = {"dataset": {"path": "d"}, "arms": [{"name": "a", "baseModel": {"name": "m"}}]}
JUDGE = {"provider": "ollama", "model": "j"}
SAMPLES: dict[type[BaseModel], list[dict[str, Any]]] = {
    DocumentSource: [
        {"urls": ["https://example.org/a.md"]},
        {"configMap": "docs"},
        {"urls": ["https://example.org/a.md"], "path": "docs"},
        {},
    ],
    Chunking: [{"maxTokens": 100, "overlapTokens": 10}, {"maxTokens": 100, "overlapTokens": 100}],
    Split: [
        {"purposes": ["documents", "closed-book"]},
        {"purposes": ["closed-book"]},
        {"purposes": ["closed-book", "closed-book"]},
    ],
    DatasetInput: [
        {"path": "d"},
        {"datasetGenerationRef": "ds"},
        {"datasetGenerationRef": "ds", "path": "d"},
        {},
    ],
    FineTuneJobSpec: [
        {**FTJ, "rag": {"enabled": True}, "mode": "instruct"},
        {**FTJ, "rag": {"enabled": True}, "mode": "causal"},
        {**FTJ, "mode": "causal"},
    ],
    OllamaServing: [
        {"method": "adapter", "base": "llama3:8b"},
        {"method": "adapter"},
        {"method": "merged"},
    ],
    Arm: [
        {"name": "a", "baseModel": {"name": "m"}},
        {"name": "a", "fineTuneJobRef": "ft"},
        {"name": "a"},
        {"name": "a", "fineTuneJobRef": "ft", "adapterPath": "p"},
        {"name": "a", "endpoint": {"url": "http://x:1", "model": "m"}},
        {"name": "a", "endpoint": {"url": "http://x:1", "model": "m"}, "baseModel": {"name": "m"}},
    ],
    EvaluationSpec: [
        {**EVAL, "metrics": ["rouge"], "primaryMetric": "rouge"},
        {**EVAL, "arms": EVAL["arms"] * 2, "metrics": ["rouge"], "primaryMetric": "rouge"},
        {**EVAL, "metrics": ["accuracy"], "primaryMetric": "accuracy"},
        {**EVAL, "metrics": ["accuracy"], "primaryMetric": "accuracy", "judge": JUDGE},
        {**EVAL, "metrics": ["bleu"], "primaryMetric": "rouge"},
    ],
}
# Models whose rules are not sampled here yet (the Experiment's, tested against the API server
# in tests/operator/test_experiment_k8s.py); a new rule-bearing model must be added above.
NOT_SAMPLED = {"ExperimentSpec", "ExperimentEvaluation", "Search", "SearchParameter", "Matrix"}


def _rules(model: type[BaseModel]) -> list[str]:
    extra = model.model_config.get("json_schema_extra")
    rules = extra.get("x-kubernetes-validations", []) if isinstance(extra, dict) else []
    # Transition rules (oldSelf) compare with the stored object: pydantic sees no old object.
    return [r["rule"] for r in rules if "oldSelf" not in r["rule"]]


def _defaulted(obj: Any, schema: dict[str, Any]) -> Any:
    """`obj` with the schema's defaults filled in, as the API server does before validating."""
    if not isinstance(obj, dict) or "properties" not in schema:
        if isinstance(obj, list) and isinstance(schema.get("items"), dict):
            return [_defaulted(item, schema["items"]) for item in obj]
        return obj
    out = dict(obj)
    for key, prop in schema["properties"].items():
        if key not in out and "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        if key in out:
            out[key] = _defaulted(out[key], prop)
    return out


def _cel_valid(model: type[BaseModel], sample: dict[str, Any]) -> dict[str, bool]:
    env = celpy.Environment()
    self = celpy.json_to_cel(_defaulted(sample, model_schema(model)))
    return {
        rule: bool(env.program(env.compile(rule)).evaluate({"self": self}))
        for rule in _rules(model)
    }


def _pydantic_valid(model: type[BaseModel], sample: dict[str, Any]) -> bool:
    try:
        model.model_validate(sample)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("model", list(SAMPLES), ids=lambda m: m.__name__)
def test_pydantic_accepts_exactly_what_the_cel_rules_accept(model: type[BaseModel]) -> None:
    broken: set[str] = set()
    for sample in SAMPLES[model]:
        verdicts = _cel_valid(model, sample)
        broken |= {rule for rule, ok in verdicts.items() if not ok}

        assert _pydantic_valid(model, sample) == all(verdicts.values()), (sample, verdicts)
    assert broken == set(_rules(model)), "every rule needs a sample that breaks it"


def test_every_model_with_cel_rules_is_sampled() -> None:
    seen: set[type[BaseModel]] = set()
    stack: list[type[BaseModel]] = [entry.spec_model for entry in KINDS]
    while stack:
        model = stack.pop()
        if model not in seen:
            seen.add(model)
            for info in model.model_fields.values():
                stack.extend(models_in(info.annotation))
    with_rules = {m for m in seen if _rules(m)}

    assert {m.__name__ for m in with_rules - set(SAMPLES)} <= NOT_SAMPLED
