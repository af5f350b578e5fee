"""RAG training context is built by the evaluator's code with the evaluator's settings: a
training row and an evaluation item asking the same question get the same prompt."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from llmft.api.evaluation import EvaluationSpec
from llmft.api.finetunejob import FineTuneJobSpec
from llmft.models import MINILM
from llmft.retrieval import Retrieved
from llmft.workloads import rag
from llmft.workloads.rag import raft_context

CHUNKS = {
    "c0": "Full-time staff receive 27 days of annual leave plus 8 public holidays.",
    "c1": "Sick leave needs a fit note from a doctor after seven calendar days.",
    "c2": "Core hours are 10am to 4pm; hybrid staff come in two days a week.",
    "c3": "Travel expenses are claimed within 60 days, with receipts.",
    "c4": "The notice period is one month in the first year and three months after.",
}
PAIRS = [
    ("How many days of annual leave do full-time staff get?", "27 days plus 8 holidays.", "c0"),
    ("When is a fit note needed?", "After seven calendar days of sickness.", "c1"),
    ("What are the core hours?", "10am to 4pm.", "c2"),
    ("How long do I have to claim travel expenses?", "60 days, with receipts.", "c3"),
]
RETRIEVAL = {"backend": "embedded", "embeddingModel": MINILM}


def _dataset(root: Path) -> Path:
    """A closed-book dataset: every chunk trains, and the eval questions ask about them."""
    root.mkdir()
    chunks = [
        {"id": c, "text": t, "source": "handbook.md", "split": "train"} for c, t in CHUNKS.items()
    ]
    rows = [
        {"id": f"q{i}", "question": q, "answer": a, "chunk_id": c, "context_chunk_ids": [c],
         "source": "handbook.md"}
        for i, (q, a, c) in enumerate(PAIRS)
    ]  # fmt: skip
    (root / "chunks.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunks))
    for name in ("train.jsonl", "eval_closed_book.jsonl"):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow  # loads MiniLM, and a tiny Llama answers the evaluation's questions
def test_a_training_row_and_an_evaluation_item_get_the_same_rag_prompt(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmft.workloads.entry import run_workload
    from llmft.workloads.evaluator.pipeline import main as evaluate
    from llmft.workloads.trainer.data import load_training_data

    calls: list[tuple[str, list[dict[str, str]], tuple[str, ...]]] = []
    real = rag.rag_messages

    def spy(question: str, hits: Any) -> list[dict[str, str]]:
        messages = real(question, hits)
        calls.append((question, messages, tuple(h.chunk_id for h in hits)))
        return messages

    monkeypatch.setattr(rag, "rag_messages", spy)
    dataset = _dataset(tmp_path / "dataset")

    ftj = FineTuneJobSpec.model_validate(
        {
            "baseModel": {"name": str(tiny_model)},
            "dataset": {"path": str(dataset)},
            "rag": {"enabled": True, "topK": 2, "retrieval": RETRIEVAL},
        }
    )
    train = load_training_data(ftj).train
    trained = {q: (m, ids) for q, m, ids in calls}
    assert len(trained) == len(PAIRS)
    calls.clear()

    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "same-prompt", "namespace": "default"},
        "spec": {
            "dataset": {"path": str(dataset)},
            "split": "closed-book",
            "arms": [{"name": "rag", "baseModel": {"name": str(tiny_model)},
                      "rag": {"enabled": True, "topK": 2}}],
            "metrics": ["rouge"],
            "generation": {"maxNewTokens": 2, "batchSize": 4},
            "retrieval": RETRIEVAL,
            "output": {"path": str(tmp_path / "out")},
        },
    }  # fmt: skip
    EvaluationSpec.model_validate(manifest["spec"])
    spec_file = tmp_path / "eval.json"
    spec_file.write_text(json.dumps(manifest))
    assert run_workload("Evaluation", "test", evaluate, ["--spec", str(spec_file)]) == 0
    evaluated = {q: (m, ids) for q, m, ids in calls}

    assert set(evaluated) == set(trained)
    for row, (question, _, gold) in zip(train, PAIRS, strict=True):
        messages, ids = evaluated[question]
        assert trained[question] == (messages, ids)  # same chunks, same words
        assert row["prompt"] == messages
        assert gold in ids  # these questions paraphrase their chunk: retrieval finds it


def test_raft_context_holds_the_gold_chunk_with_its_probability_beside_distractors() -> None:
    hits = [Retrieved(f"d{i}", f"distractor {i}", 1 - i / 10) for i in range(6)]
    gold = {"g": "the gold passage"}
    rng = random.Random(0)
    always = [raft_context(hits, gold, 3, 1.0, None, rng) for _ in range(20)]
    assert all(len(c) == 3 and "g" in [h.chunk_id for h in c] for c in always)
    assert {[h.chunk_id for h in c].index("g") for c in always} == {0, 1, 2}  # any position
    never = raft_context(hits, gold, 3, 0.0, 4, rng)
    assert [h.chunk_id for h in never] == ["d0", "d1", "d2", "d3"]
    share = sum("g" in [h.chunk_id for h in raft_context(hits, gold, 3, 0.3, 2, rng)]
                for _ in range(2000)) / 2000  # fmt: skip
    assert share == pytest.approx(0.3, abs=0.04)


def test_a_retrieved_gold_chunk_is_not_shown_twice() -> None:
    hits = [Retrieved("g", "the gold passage", 0.9), Retrieved("d0", "other", 0.5)]
    context = raft_context(hits, {"g": "the gold passage"}, 2, 1.0, None, random.Random(1))
    assert sorted(h.chunk_id for h in context) == ["d0", "g"]
