"""From the models' raw replies to the dataset files: every filter, counted by reason, and
files that `datasets.load_dataset` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmft.api.datasetgeneration import Generator, Quality
from llmft.workloads.datagen import hub
from llmft.workloads.datagen.chunking import Chunk
from llmft.workloads.datagen.pipeline import (
    assemble,
    generation_fingerprint,
    write_dataset,
)
from llmft.workloads.datagen.prompting import PromptSet
from llmft.workloads.datagen.splitting import EVAL, TRAIN, SplitPlan
from llmft.workloads.datagen.worklog import ChunkRecord

TEXTS = {
    "a0": "Full-time staff receive 27 days of annual leave each year, plus public holidays.",
    "a1": "Up to five unused days may be carried over and must be used by 31 March.",
    "b0": "Salaries are paid on the last working day of each month, in arrears.",
}


def _chunks() -> list[Chunk]:
    return [
        Chunk(cid, text, f"{cid[0]}.md", int(cid[1]), 0, len(text), None, None, 15)
        for cid, text in TEXTS.items()
    ]


def _plan(sides: dict[str, str]) -> SplitPlan:
    chunks = {c.id: c for c in _chunks()}
    neighbour = {"a0": chunks["a1"], "a1": chunks["a0"], "b0": None}
    return SplitPlan(sides, neighbour, 2)


def _record(cid: str, pairs: list[dict] | str, kinds: list[str], context: list[str]) -> ChunkRecord:
    raw = pairs if isinstance(pairs, str) else json.dumps({"pairs": pairs})
    return ChunkRecord(cid, "fp", raw, kinds, context, "ollama", "smollm2", 1.0)


def _pair(q: str, a: str, kind: str = "factual") -> dict:
    return {"question": q, "answer": a, "kind": kind}


def test_each_filter_drops_and_counts_its_pairs() -> None:
    records = {
        "a0": _record(
            "a0",
            [
                _pair(
                    "How many days of annual leave do full-time staff get?",
                    "27 days of annual leave.",
                ),
                _pair(
                    "How many days of annual leave do full-time staff get each year?", "27 days."
                ),
                _pair("Who approves annual leave for staff?", "The director, every Friday."),
                _pair("", "27 days."),
                _pair("Annual leave", "27 days of annual leave."),
                _pair("Can you answer this?", "Yes, I can!", "yesno"),
                _pair("What is the canteen menu?", "Pizza and chips."),
                _pair("How many days of leave?", "10.5 days of annual leave."),
                _pair("Extra?", "Too many pairs.", "factual"),
            ],
            ["factual"] * 8,
            ["a0"],
        ),
        "a1": _record("a1", "I am sorry, I cannot do that.", ["factual"], ["a1"]),
        "b0": _record(
            "b0",
            [
                _pair(
                    "How many days of annual leave do full-time staff get?",
                    "Paid on the last working day of each month.",
                )
            ],
            ["factual"],
            ["b0"],
        ),
    }
    result = assemble(_chunks(), records, _plan({"a0": TRAIN, "a1": TRAIN, "b0": EVAL}),
                      Quality(near_duplicate_threshold=0.7))  # fmt: skip

    assert result.dropped == {
        "unparsable": 1, "empty": 1, "over_limit": 1, "not_question": 1, "not_standalone": 1,
        "off_topic": 1, "unsupported_number": 1, "unsupported": 1, "cross_split": 0,
        "duplicate": 1, "near_duplicate": 1, "closed_book_paraphrase": 0,
    }  # fmt: skip
    assert [r["question"] for r in result.rows[TRAIN]] == [
        "How many days of annual leave do full-time staff get?"
    ]
    # b0's pair repeats a train question: dropped, so the same question is never on both sides.
    assert result.rows[EVAL] == []


def test_a_kept_pair_carries_its_context_source_and_kind() -> None:
    records = {
        "a0": _record(
            "a0",
            [_pair("How many leave days carry over, and by when must they be used?",
                   "Five days, used by 31 March.", "multihop")],
            ["multihop"],
            ["a0", "a1"],
        )
    }  # fmt: skip
    result = assemble(_chunks(), records, _plan({"a0": TRAIN, "a1": TRAIN, "b0": EVAL}), Quality())
    row = result.rows[TRAIN][0]
    assert row["kind"] == "multihop"
    assert row["context_chunk_ids"] == ["a0", "a1"]
    assert row["context"] == TEXTS["a0"] + "\n\n" + TEXTS["a1"]
    assert (row["source"], row["chunk_id"], row["id"]) == ("a.md", "a0", "a0-q0")


def test_a_pair_whose_context_spans_the_split_is_dropped() -> None:
    records = {
        "a0": _record(
            "a0",
            [_pair("When must carried-over days be used?", "By 31 March.", "multihop")],
            ["multihop"],
            ["a0", "a1"],
        )
    }
    result = assemble(_chunks(), records, _plan({"a0": TRAIN, "a1": EVAL, "b0": EVAL}), Quality())
    assert result.dropped["cross_split"] == 1
    assert result.rows[TRAIN] == [] and result.rows[EVAL] == []


def test_a_kind_the_model_made_up_falls_back_to_the_one_asked() -> None:
    records = {
        "b0": _record(
            "b0",
            [_pair("When are salaries paid?", "On the last working day of each month.", "trivia")],
            ["procedural"],
            ["b0"],
        )
    }
    result = assemble(_chunks(), records, _plan({"a0": TRAIN, "a1": TRAIN, "b0": EVAL}), Quality())
    assert result.rows[EVAL][0]["kind"] == "procedural"


def test_the_files_load_with_datasets_and_the_card_names_their_configs(tmp_path: Path) -> None:
    from datasets import load_dataset

    chunks = _chunks()
    plan = _plan({"a0": TRAIN, "a1": TRAIN, "b0": EVAL})
    records = {
        "a0": _record("a0", [_pair("How many leave days?", "27 days.")], ["factual"], ["a0"]),
        "b0": _record(
            "b0",
            [_pair("When are salaries paid?", "The last working day of each month.")],
            ["factual"],
            ["b0"],
        ),
    }
    files = write_dataset(tmp_path, chunks, plan, assemble(chunks, records, plan, Quality()))
    manifest = {
        "counts": {"documents": 2, "chunks": 3, "trainPairs": 1, "evalPairs": 1},
        "generator": {"model": "smollm2", "backend": "ollama"},
    }
    (tmp_path / hub.CARD).write_text(hub.dataset_card("hr", manifest))

    pairs = load_dataset("json", data_files={"train": files["train"], "eval": files["eval"]})
    assert pairs["train"]["question"] == ["How many leave days?"]
    assert pairs["eval"]["answer"] == ["The last working day of each month."]
    corpus = load_dataset(str(tmp_path), "corpus")
    assert corpus["train"]["chunk_id"] == ["a0", "a1"] and corpus["eval"]["chunk_id"] == ["b0"]
    all_chunks = load_dataset(str(tmp_path), "chunks")["chunks"]
    assert all_chunks["split"] == [TRAIN, TRAIN, EVAL]


def test_the_card_leaves_out_an_empty_split(tmp_path: Path) -> None:
    from datasets import load_dataset

    chunks = _chunks()
    plan = _plan({"a0": TRAIN, "a1": TRAIN, "b0": EVAL})
    records = {
        "a0": _record("a0", [_pair("How many leave days?", "27 days.")], ["factual"], ["a0"])
    }
    write_dataset(tmp_path, chunks, plan, assemble(chunks, records, plan, Quality()))
    manifest = {
        "counts": {"documents": 2, "chunks": 3, "trainPairs": 1, "evalPairs": 0},
        "generator": {"model": "smollm2", "backend": "ollama"},
    }
    (tmp_path / hub.CARD).write_text(hub.dataset_card("hr", manifest))
    assert list(load_dataset(str(tmp_path), "instruct")) == ["train"]


def test_generation_fingerprint_follows_what_changes_replies_only() -> None:
    base = Generator(model="smollm2")
    fp = generation_fingerprint(base, PromptSet.from_spec(base))
    same = base.model_copy(update={"concurrency": 8, "max_retries": 0})
    assert generation_fingerprint(same, PromptSet.from_spec(same)) == fp
    for change in ({"model": "other"}, {"temperature": 0.1}, {"system_prompt": "Be brief."}):
        other = base.model_copy(update=change)
        assert generation_fingerprint(other, PromptSet.from_spec(other)) != fp


@pytest.mark.parametrize("missing", ["", "  "])
def test_a_push_without_token_is_an_error_naming_the_field(missing: str) -> None:
    from llmft.workloads.entry import WorkloadError
    from llmft.workloads.hubpush import push_token

    with pytest.raises(WorkloadError, match=r"spec\.output\.huggingFace\.tokenSecretRef: no push"):
        push_token({"LLMFT_HF_PUSH_TOKEN": missing})
