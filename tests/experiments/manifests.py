"""Experiment manifests the experiment tests share (dicts, as a user writes them)."""

from __future__ import annotations

import copy
from typing import Any

API = "llmft.io/v1alpha1"


def experiment(name: str = "sweep", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """Two models x QLoRA/LoRA x RAG on/off, a random search of 4 trials over the learning rate."""
    body: dict[str, Any] = {
        "apiVersion": API,
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "dataset": {"datasetGenerationRef": "docs"},
            "matrix": {
                "models": [
                    {"name": "smol", "baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}},
                    {"name": "llama", "baseModel": {"name": "meta-llama/Meta-Llama-3-8B"}},
                ],
                "methods": ["qlora", "lora"],
                "modes": ["instruct"],
                "rag": [False, True],
            },
            "fineTune": {"hyperparameters": {"maxSteps": 10, "evalSteps": 2, "saveSteps": 2}},
            "search": {
                "algorithm": "random",
                "seed": 7,
                "parameters": [
                    {"name": "learningRate", "min": 1e-5, "max": 1e-3, "scale": "log"},
                ],
            },
            "budget": {"maxTrials": 4, "parallelTrials": 2},
            "evaluation": {"metrics": ["rouge", "bleu"], "primaryMetric": "rouge"},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body
