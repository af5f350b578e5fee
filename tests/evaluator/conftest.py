"""Fixtures for the evaluator tests: a small HR dataset directory, a tiny model, spec files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.models import MINILM, SMOLLM2, SMOLLM2_GGUF

# Chunks in the shape datagen writes (chunks.jsonl) and questions (eval.jsonl) whose gold
# chunk is known, so retrieval hit rates can be asserted.
CHUNKS = [
    {
        "id": "leave-0",
        "source": "03-annual-leave.md",
        "text": "Full-time employees receive 27 days of annual leave per leave year, plus the 8 "
        "public holidays. You gain one extra day for every two complete years of service, up to "
        "a maximum of 32 days.",
    },
    {
        "id": "leave-1",
        "source": "03-annual-leave.md",
        "text": "The leave year runs from 1 January to 31 December. All leave is requested in "
        "Harbour and approved by your manager, who answers within five working days.",
    },
    {
        "id": "sick-0",
        "source": "04-sickness.md",
        "text": "If you are ill, call your manager before 10am on the first day of absence. "
        "After seven calendar days of sickness you need a fit note from a doctor.",
    },
    {
        "id": "hours-0",
        "source": "02-working-hours.md",
        "text": "Core hours are 10am to 4pm. Hybrid staff work from the office at least two days "
        "a week; the rest may be worked from home with the manager's agreement.",
    },
    {
        "id": "expenses-0",
        "source": "07-travel.md",
        "text": "Travel expenses are claimed in Harbour within 60 days with receipts. Rail travel "
        "is standard class; first class needs a director's approval.",
    },
]

QUESTIONS = [
    (
        "q-leave-days",
        "How many days of annual leave do full-time employees get?",
        "Full-time employees get 27 days of annual leave plus 8 public holidays.",
        ["leave-0"],
    ),
    (
        "q-fit-note",
        "When do I need a fit note from a doctor?",
        "You need a fit note after seven calendar days of sickness.",
        ["sick-0"],
    ),
    (
        "q-core-hours",
        "What are the core working hours?",
        "Core hours are 10am to 4pm.",
        ["hours-0"],
    ),
    (
        "q-expenses",
        "How long do I have to claim travel expenses?",
        "Travel expenses must be claimed within 60 days, with receipts.",
        ["expenses-0"],
    ),
]


def write_dataset(directory: Path, n_questions: int = len(QUESTIONS)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "chunks.jsonl").open("w") as f:
        for chunk in CHUNKS:
            f.write(json.dumps(chunk) + "\n")
    with (directory / "eval.jsonl").open("w") as f:
        for qid, question, answer, gold in QUESTIONS[:n_questions]:
            row = {
                "id": qid,
                "question": question,
                "answer": answer,
                "chunk_id": gold[0],
                "context_chunk_ids": gold,
                "kind": "factual",
            }
            f.write(json.dumps(row) + "\n")
    return directory


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer (fast, real generation)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    # At the default init scale the tiny model answers every prompt with the same newlines;
    # larger weights make its greedy answers differ by prompt, so comparisons mean something.
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.save_pretrained(path)
    return path


SMOLLM2_SOURCE = {"name": SMOLLM2, "ggufFile": SMOLLM2_GGUF}


def evaluation_manifest(
    dataset: Path, output: Path, arms: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """A resolved Evaluation (dataset path and output path filled in, as the runner does)."""
    body: dict[str, Any] = {
        "dataset": {"path": str(dataset)},
        "arms": arms,
        "metrics": ["bleu", "chrf", "rouge", "ngram"],
        "primaryMetric": "rouge",
        "generation": {"maxNewTokens": 8, "batchSize": 2},
        "retrieval": {"backend": "embedded", "embeddingModel": MINILM},
        "bootstrap": {"samples": 200},
        "resources": {"gpuCount": 0},
        "output": {"path": str(output)},
    }
    body.update(spec)
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "eval-test", "namespace": "default"},
        "spec": body,
    }


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(manifest: dict[str, Any]) -> Path:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(manifest))
        return path

    return write
