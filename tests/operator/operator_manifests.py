"""Manifests the operator tests share: a dataset, a fine-tune on it, an evaluation of both."""

from __future__ import annotations

import copy
from typing import Any

API = "llmft.io/v1alpha1"


def dataset(name: str = "docs", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API,
        "kind": "DatasetGeneration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"configMap": "handbook"}, "generator": {"model": "smollm2"}},
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def finetune(
    name: str = "tune", namespace: str = "default", dataset_ref: str = "docs", **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API,
        "kind": "FineTuneJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "dataset": {"datasetGenerationRef": dataset_ref},
            "method": "qlora",
            "hyperparameters": {"maxSteps": 10},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def evaluation(
    name: str = "compare",
    namespace: str = "default",
    dataset_ref: str = "docs",
    finetune_ref: str = "tune",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API,
        "kind": "Evaluation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "dataset": {"datasetGenerationRef": dataset_ref},
            "arms": [
                {"name": "base", "baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
                {"name": "tuned", "fineTuneJobRef": finetune_ref},
            ],
            "metrics": ["rouge", "bleu"],
            "primaryMetric": "rouge",
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body
