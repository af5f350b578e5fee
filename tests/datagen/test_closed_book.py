"""The closed-book split: questions about documents the model trains on, with the questions and
their paraphrases kept out of training, recorded in the manifest beside the documents split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmft.api.datasetgeneration import Split
from llmft.workloads.datagen.splitting import hold_out_closed_book, is_paraphrase, plan_split


def _pair(i: int, question: str, answer: str, chunk: str, source: str) -> dict[str, Any]:
    return {"id": f"{chunk}-q{i}", "question": question, "answer": answer, "chunk_id": chunk,
            "source": source}  # fmt: skip


def test_a_reworded_question_is_a_paraphrase_and_an_unrelated_one_is_not() -> None:
    held = _pair(0, "How many days of annual leave do staff get?", "27 days.", "a0", "a.md")
    reworded = _pair(1, "Staff get how many annual leave days?", "They get 27.", "a0", "a.md")
    same_answer = _pair(2, "What is the yearly holiday entitlement?", "27 days.", "a0", "a.md")
    unrelated = _pair(3, "When are salaries paid?", "On the last working day.", "b0", "b.md")
    assert is_paraphrase(reworded, held, 0.5)
    assert is_paraphrase(same_answer, held, 0.5)  # the same fact from the same chunk
    assert not is_paraphrase(unrelated, held, 0.5)
    # The same answer from another chunk is another fact that happens to read alike.
    assert not is_paraphrase({**same_answer, "chunk_id": "c9"}, held, 0.5)


def _training_pairs() -> list[dict[str, Any]]:
    pairs = []
    for d, doc in enumerate(("leave.md", "pay.md", "travel.md")):
        for i in range(10):
            subject = f"rule{d}x{i}"
            pairs.append(
                _pair(i, f"What does {subject} say?", f"It says {subject}.", f"c{d}{i}", doc)
            )
    return pairs


def test_closed_book_questions_are_a_stratified_seeded_share_and_leave_training() -> None:
    train = _training_pairs()
    closed = hold_out_closed_book(train, 0.2, seed=1, threshold=0.5)
    assert len(closed.questions) == 6
    assert (
        sorted(p["source"] for p in closed.questions)
        == ["leave.md"] * 2 + ["pay.md"] * 2 + ["travel.md"] * 2
    )
    held_ids = {p["id"] + p["source"] for p in closed.questions}
    assert not held_ids & {p["id"] + p["source"] for p in closed.train}
    assert len(closed.train) + len(closed.questions) + closed.paraphrases == len(train)
    assert hold_out_closed_book(train, 0.2, 1, 0.5) == closed
    assert hold_out_closed_book(train, 0.2, 2, 0.5).questions != closed.questions


def test_paraphrases_of_closed_book_questions_are_left_out_of_training() -> None:
    # Every fact asked twice, in other words: a held question's twin must not train.
    train = []
    for pair in _training_pairs():
        subject = pair["question"].removeprefix("What does ").removesuffix(" say?")
        twin = {**pair, "id": pair["id"] + "b", "question": f"What is it that {subject} says?",
                "answer": "Something else.", "chunk_id": pair["chunk_id"] + "x"}  # fmt: skip
        train += [pair, twin]
    closed = hold_out_closed_book(train, 0.2, seed=1, threshold=0.5)
    kept = {p["question"] for p in closed.train}
    for held in closed.questions:
        subject = held["question"].split(" ")[-2] if "that" in held["question"] else None
        assert not any(is_paraphrase(p, held, 0.5) for p in closed.train), held
        assert subject is None or f"What does {subject} say?" not in kept
    assert closed.paraphrases >= len(closed.questions) // 2
    assert len(closed.train) + len(closed.questions) + closed.paraphrases == len(train)


def test_closed_book_only_trains_on_every_chunk() -> None:
    from llmft.workloads.datagen.chunking import Chunk

    chunks = [Chunk(f"c{i}", "text", "a.md", i, 0, 4, None, None, 4) for i in range(5)]
    assert set(plan_split(chunks, 0.0, 1, 1).side.values()) == {"train"}


def test_split_purposes_must_not_repeat() -> None:
    with pytest.raises(ValueError, match="repeats a purpose"):
        Split(purposes=["closed-book", "closed-book"])


def test_the_dataset_records_both_splits_when_both_are_asked_for(tmp_path: Path) -> None:
    from datagen.test_assemble import _chunks, _plan, _record
    from datagen.test_assemble import _pair as raw_pair
    from llmft.api.datasetgeneration import Quality
    from llmft.workloads.datagen.pipeline import assemble, write_dataset

    records = {
        "a0": _record(
            "a0",
            [
                raw_pair("How many days of annual leave do full-time staff get?", "27 days."),
                raw_pair("Do full-time staff also get public holidays?", "Yes, public holidays."),
            ],
            ["factual", "factual"],
            ["a0"],
        ),
        "a1": _record(
            "a1",
            [raw_pair("How many unused days may be carried over?", "Up to five unused days.")],
            ["factual"],
            ["a1"],
        ),
        "b0": _record(
            "b0",
            [raw_pair("When are salaries paid each month?", "On the last working day.")],
            ["factual"],
            ["b0"],
        ),
    }
    plan = _plan({"a0": "train", "a1": "train", "b0": "eval"})
    split = Split(purposes=["documents", "closed-book"], closed_book_fraction=0.3, seed=3)
    assembled = assemble(_chunks(), records, plan, Quality(min_answer_support=0.0), split)
    files = write_dataset(tmp_path, _chunks(), plan, assembled)
    closed = [json.loads(x) for x in Path(files["evalClosedBook"]).read_text().splitlines()]
    train = [json.loads(x) for x in Path(files["train"]).read_text().splitlines()]
    evals = [json.loads(x) for x in Path(files["eval"]).read_text().splitlines()]
    assert len(closed) == 1 and closed[0]["chunk_id"] in {"a0", "a1"}
    assert closed[0]["question"] not in {p["question"] for p in train}
    assert [p["chunk_id"] for p in evals] == ["b0"]
    # The closed-book question's chunk still trains: the model may learn its fact from it.
    chunks = [json.loads(x) for x in (tmp_path / "chunks.jsonl").read_text().splitlines()]
    assert {c["id"]: c["split"] for c in chunks}[closed[0]["chunk_id"]] == "train"
