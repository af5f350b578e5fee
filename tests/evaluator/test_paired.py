"""The paired comparison on real models: a tuned arm that memorised the closed-book answers is
named the winner against its base; an identical copy of the base never is.

The tuned arm is trained by the trainer workload itself (LoRA on a tiny Llama) on exactly the
questions the evaluation asks, which is what a closed-book split lets a model learn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from evaluator.conftest import evaluation_manifest
from llmft.workloads.entry import run_workload

# About 70 CPU-seconds of training; minutes of wall time on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Six short facts: with all six questions differing, the exact sign-flip test reaches
# p = 2/64 = 0.031, below 0.05; with five or fewer it could never name a winner.
FACTS = [
    ("What colour is the front door?", "The front door is green."),
    ("How many days of annual leave do staff get?", "Staff get 27 days of annual leave."),
    ("Who approves travel expenses?", "Line managers approve travel expenses."),
    ("When does the office open?", "The office opens at 8am."),
    ("Where is the first aid kit?", "The first aid kit is in the kitchen."),
    ("How long is the notice period?", "The notice period is one month."),
]


def _closed_book_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    rows = [
        {"id": f"q{i}", "question": q, "answer": a, "source": f"doc{i % 2}.md"}
        for i, (q, a) in enumerate(FACTS)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (root / "train.jsonl").write_text(text)
    (root / "eval.jsonl").write_text(text)
    return root


def _run(kind: str, main: Any, manifest: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(manifest))
    assert run_workload(kind, "test", main, ["--spec", str(path)]) == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama, a copy of it, and a LoRA adapter trained until it recites the answers."""
    from llmft.workloads.trainer.pipeline import main as train
    from tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("paired")
    model = build_tiny_model(root / "model")
    copy = root / "model-copy"
    shutil.copytree(model, copy)
    dataset = _closed_book_dataset(root / "dataset")
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "memorise", "namespace": "default"},
        "spec": {
            "baseModel": {"name": str(model)},
            "dataset": {"path": str(dataset)},
            "method": "lora",
            "mode": "instruct",
            "hyperparameters": {
                # Sixty passes over six pairs at this rate: the tiny model recites every answer.
                "maxSteps": 60,
                "batchSize": 6,
                "gradientAccumulationSteps": 1,
                "maxSeqLength": 128,
                "learningRate": 0.01,
                "warmupRatio": 0.0,
                "lrScheduler": "constant",
                "gradientCheckpointing": False,
                "loggingSteps": 10,
                "saveSteps": 60,
                "evalSteps": 60,
                "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            },
            "output": {"path": str(root / "ftj")},
        },
    }
    _run("FineTuneJob", train, manifest, root / "ftj.json")
    return {
        "model": model,
        "copy": copy,
        "adapter": root / "ftj" / "adapter",
        "dataset": dataset,
    }


def _evaluate(trained: dict[str, Path], out: Path, arms: list[dict[str, Any]]) -> dict[str, Any]:
    from llmft.workloads.evaluator.pipeline import main

    manifest = evaluation_manifest(
        trained["dataset"], out, arms, generation={"maxNewTokens": 16, "batchSize": 8}
    )
    _run("Evaluation", main, manifest, out.parent / f"{out.name}.json")
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def test_a_model_that_memorised_the_answers_is_named_the_winner_over_its_base(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    arms = [
        {"name": "base", "baseModel": {"name": str(trained["model"])}},
        {
            "name": "tuned",
            "baseModel": {"name": str(trained["model"])},
            "adapterPath": str(trained["adapter"]),
        },
    ]
    summary = _evaluate(trained, tmp_path / "out", arms)
    assert summary["winner"] == "tuned", summary["verdict"]
    test = summary["arms"][1]["comparison"]["rougeL"]
    assert test["significant"] and test["pValue"] < 0.05 and test["n"] == len(FACTS)
    assert test["ciLow"] > 0
    assert summary["verdict"]["reason"].startswith("tuned wins")


def test_an_identical_copy_of_the_base_is_refused_as_a_winner(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    arms = [
        {"name": "base", "baseModel": {"name": str(trained["model"])}},
        {"name": "copy", "baseModel": {"name": str(trained["copy"])}},
    ]
    summary = _evaluate(trained, tmp_path / "out", arms)
    assert summary["winner"] is None
    test = summary["arms"][1]["comparison"]["rougeL"]
    assert (test["delta"], test["pValue"], test["significant"]) == (0.0, 1.0, False)
    assert summary["verdict"]["reason"].startswith("no significant winner")
