"""Reading the dataset directory: the prompt format shared with evaluation, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.models import MINILM
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
    rag = {"enabled": True, "topK": 2, "contextSource": "dataset"}
    data = load_training_data(_spec(dataset_dir, rag=rag))

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
    retrieval = {"backend": "embedded", "embeddingModel": MINILM}
    spec = _spec(dataset_dir, rag={"enabled": True, "topK": 1, "retrieval": retrieval})
    data = load_training_data(spec)

    for row, (question, answer) in zip(data.train, FACTS, strict=False):
        user = row["prompt"][1]["content"]
        assert user.startswith("Context:\n[1] ") and user.endswith(f"Question: {question}")
        assert answer in user  # the nearest chunk is the one the answer came from


@pytest.fixture(scope="module")
def smollm2_format():  # type: ignore[no-untyped-def]
    from llmft.api.common import ModelSource
    from llmft.models import SMOLLM2, SMOLLM2_GGUF
    from llmft.workloads.modeling import load_chat_format

    return load_chat_format(ModelSource(name=SMOLLM2, gguf_file=SMOLLM2_GGUF))


def _prompt_tokens(fmt, question: str) -> int:  # type: ignore[no-untyped-def]
    mask = fmt.example(build_messages(question), "x").completion_mask
    return mask.index(1)


def _tokenize(dataset_dir: Path, fmt, **hyper: object):  # type: ignore[no-untyped-def]
    from llmft.workloads.trainer.tokens import tokenize_training_data

    spec = _spec(dataset_dir, hyperparameters=hyper)
    data = load_training_data(spec)
    train, _ = tokenize_training_data(spec, data, fmt)
    return data, train


def test_rows_longer_than_max_seq_length_are_counted_and_answerless_ones_dropped(
    dataset_dir: Path, smollm2_format
) -> None:  # type: ignore[no-untyped-def]
    # A limit just past the longest prompt: every answer is cut, none is lost entirely.
    prompt = max(_prompt_tokens(smollm2_format, q) for q, _ in FACTS)
    data, train = _tokenize(
        dataset_dir, smollm2_format, maxSeqLength=prompt + 1, maxTruncatedShare=1
    )
    report = data.lengths
    assert report is not None and (report.rows, report.truncated, report.dropped) == (8, 8, 0)
    assert data.describe()["truncatedRows"] == 8 and report.share == 1.0 and len(train) == 8

    # At the longest prompt's length, that prompt leaves no room for its answer: dropped.
    data, train = _tokenize(dataset_dir, smollm2_format, maxSeqLength=prompt, maxTruncatedShare=1)
    longest = sum(_prompt_tokens(smollm2_format, q) >= prompt for q, _ in FACTS) * 2
    assert data.lengths is not None and data.lengths.dropped == longest > 0
    assert len(train) == 8 - longest


def test_too_many_rows_over_max_seq_length_fail_naming_it(
    dataset_dir: Path, smollm2_format
) -> None:  # type: ignore[no-untyped-def]
    prompt = max(_prompt_tokens(smollm2_format, q) for q, _ in FACTS)
    with pytest.raises(WorkloadError) as err:
        _tokenize(dataset_dir, smollm2_format, maxSeqLength=prompt + 1)
    message = str(err.value)
    assert message.startswith("spec.hyperparameters.maxSeqLength: 8 of 8 training rows")
    assert "maxTruncatedShare 10%" in message


def test_rows_that_fit_are_all_kept(dataset_dir: Path, smollm2_format) -> None:  # type: ignore[no-untyped-def]
    data, train = _tokenize(dataset_dir, smollm2_format, maxSeqLength=512)
    assert data.lengths is not None
    assert (data.lengths.truncated, data.lengths.dropped, len(train)) == (0, 0, 8)


def test_an_unloadable_embedding_model_is_named_by_its_rag_field(dataset_dir: Path) -> None:
    retrieval = {"backend": "embedded", "embeddingModel": "pkg:no_such_package/model"}
    spec = _spec(dataset_dir, rag={"enabled": True, "retrieval": retrieval})
    with pytest.raises(WorkloadError, match=r"spec\.rag\.retrieval\.embeddingModel"):
        load_training_data(spec)
