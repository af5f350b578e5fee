"""Reading the dataset directory: the prompt format shared with evaluation, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.prompts import build_messages
from llmft.workloads.entry import WorkloadError
from llmft.workloads.trainer.data import load_training_data
from trainer.conftest import FACTS


def _spec(dataset: Path, **fields: object) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate(
        {"baseModel": {"name": "owner/model"}, "dataset": {"path": str(dataset)}, **fields}
    )


def test_instruct_rows_are_the_evaluation_prompt_with_the_answer_as_completion(
    dataset_dir: Path,
) -> None:
    data = load_training_data(_spec(dataset_dir, mode="instruct"))

    question, answer = FACTS[0]
    assert data.train[0]["prompt"] == build_messages(question)
    assert data.train[0]["completion"] == [{"role": "assistant", "content": answer}]
    assert len(data.train) == 8 and len(data.eval) == 2


def test_rag_prompts_carry_the_pairs_context_chunks_as_evaluation_passages(
    dataset_dir: Path,
) -> None:
    data = load_training_data(_spec(dataset_dir, rag={"enabled": True, "topK": 2}))

    question, answer = FACTS[1]
    chunk = f"{answer} This is rule 1 of the handbook."
    assert data.train[1]["prompt"] == build_messages(question, [chunk])
    assert "Context:\n[1] " + chunk in data.train[1]["prompt"][1]["content"]


def test_causal_mode_reads_the_corpus_text(dataset_dir: Path) -> None:
    data = load_training_data(_spec(dataset_dir, mode="causal"))

    assert set(data.train[0]) == {"text"} and "rule 0" in data.train[0]["text"]
    assert data.train_file.name == "corpus_train.jsonl" and len(data.eval) == 2


def test_a_missing_train_file_is_named_with_what_the_directory_holds(
    dataset_dir: Path,
) -> None:
    (dataset_dir / "corpus_train.jsonl").unlink()

    with pytest.raises(WorkloadError, match=r"spec.dataset.path: .* has no corpus_train.jsonl"):
        load_training_data(_spec(dataset_dir, mode="causal"))


def test_an_empty_train_file_is_refused(dataset_dir: Path) -> None:
    (dataset_dir / "train.jsonl").write_text("\n")

    with pytest.raises(WorkloadError, match=r"train\.jsonl is empty"):
        load_training_data(_spec(dataset_dir))


def test_a_pair_without_an_answer_names_the_file_and_row(dataset_dir: Path) -> None:
    (dataset_dir / "train.jsonl").write_text(
        '{"question": "q?", "answer": "a"}\n{"question": "x?"}\n'
    )

    with pytest.raises(WorkloadError, match=r"train.jsonl: row 2 has no 'answer'"):
        load_training_data(_spec(dataset_dir))


def test_a_missing_dataset_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"spec\.dataset\.path: .* is not a directory"):
        load_training_data(_spec(tmp_path / "nowhere"))


@pytest.mark.slow  # loads the MiniLM sentence-embedding model
def test_retriever_context_comes_from_the_training_chunks_by_similarity(
    dataset_dir: Path,
) -> None:
    spec = _spec(dataset_dir, rag={"enabled": True, "topK": 1, "contextSource": "retriever"})
    data = load_training_data(spec)

    for row, (question, answer) in zip(data.train, FACTS, strict=False):
        user = row["prompt"][1]["content"]
        assert user.startswith("Context:\n[1] ") and user.endswith(f"Question: {question}")
        assert answer in user  # the nearest chunk is the one the answer came from
