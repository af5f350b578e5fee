"""Prompts: built-in or from the spec, hashed for the manifest, varied in question kinds."""

from __future__ import annotations

import re

import pytest

from llmft.api.datasetgeneration import Generator
from llmft.workloads.datagen.chunking import Chunk
from llmft.workloads.datagen.prompting import (
    ANSWER_PATTERNS,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_TEMPLATE,
    QUESTION_PATTERNS,
    PromptSet,
    build_request,
    kinds_for_chunk,
    response_schema,
)
from llmft.workloads.entry import WorkloadError


def _chunk(i: int, text: str = "Staff receive 27 days of leave.") -> Chunk:
    return Chunk(f"c-{i}", text, "leave.md", i, 0, len(text), "Leave", None, 7)


def test_the_built_in_prompts_are_used_when_the_spec_sets_none() -> None:
    prompts = PromptSet.from_spec(Generator())
    assert (prompts.system, prompts.template) == (DEFAULT_SYSTEM_PROMPT, DEFAULT_TEMPLATE)


def test_the_prompt_hash_is_stable_and_follows_both_prompts() -> None:
    default = PromptSet.from_spec(Generator()).hash
    assert default == PromptSet.from_spec(Generator(temperature=0.1)).hash
    assert len(default) == 64
    other_template = PromptSet.from_spec(Generator(prompt_template="Text: {context}")).hash
    other_system = PromptSet.from_spec(Generator(system_prompt="Be brief.")).hash
    assert len({default, other_template, other_system}) == 3


def test_a_template_from_the_spec_is_filled_and_keeps_literal_braces() -> None:
    gen = Generator(
        prompt_template='From {source}: {context}\nAsk {num_questions}. JSON: {"pairs": []}',
        questions_per_chunk=2,
        question_kinds=["factual"],
    )
    request = build_request(PromptSet.from_spec(gen), _chunk(0), 0, None, gen)
    assert request.messages[1]["content"] == (
        'From leave.md: Staff receive 27 days of leave.\nAsk 2. JSON: {"pairs": []}'
    )
    assert request.messages[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


def test_an_unknown_placeholder_is_an_error_naming_the_field() -> None:
    with pytest.raises(WorkloadError, match=r"spec\.generator\.promptTemplate: .*\{chunk\}"):
        PromptSet.from_spec(Generator(prompt_template="Use {chunk} please"))


def test_a_template_without_the_context_is_an_error() -> None:
    with pytest.raises(WorkloadError, match=r"must contain \{context\}"):
        PromptSet.from_spec(Generator(prompt_template="Write questions about HR."))


def test_kinds_rotate_across_chunks_so_each_is_asked_evenly() -> None:
    kinds = ["factual", "procedural", "yesno", "multihop"]
    asked = [k for p in range(8) for k in kinds_for_chunk(p, kinds, 1, has_neighbour=True)]
    assert sorted(asked) == sorted(kinds * 2)


def test_multihop_needs_a_neighbour() -> None:
    kinds = ["multihop", "factual"]
    assert kinds_for_chunk(0, kinds, 2, has_neighbour=False) == ["factual", "factual"]
    assert kinds_for_chunk(0, kinds, 2, has_neighbour=True) == ["multihop", "factual"]


def test_a_multihop_request_shows_the_neighbour_and_records_both_chunks() -> None:
    gen = Generator(question_kinds=["multihop", "factual"], questions_per_chunk=2)
    neighbour = _chunk(1, "Unused leave of up to five days carries over to March.")
    request = build_request(PromptSet.from_spec(gen), _chunk(0), 0, neighbour, gen)
    assert request.context_chunk_ids == ["c-0", "c-1"]
    assert "five days carries over" in request.messages[1]["content"]
    alone = build_request(
        PromptSet.from_spec(gen), _chunk(0), 1, neighbour, Generator(question_kinds=["factual"])
    )
    assert alone.context_chunk_ids == ["c-0"]
    assert "five days" not in alone.messages[1]["content"]


def test_the_response_schema_asks_one_pair_per_kind_in_order() -> None:
    schema = response_schema(["yesno", "factual"])
    pairs = schema["properties"]["pairs"]
    assert pairs["minItems"] == pairs["maxItems"] == 2
    items = pairs["prefixItems"]
    assert [i["properties"]["kind"]["enum"] for i in items] == [["yesno"], ["factual"]]
    assert list(items[0]["properties"]) == ["kind", "question", "answer"]
    assert all(i["required"] == ["kind", "question", "answer"] for i in items)


@pytest.mark.parametrize(
    ("kind", "question", "ok"),
    [
        ("factual", "How many days of leave do I get?", True),
        ("factual", "1. factual", False),
        ("factual", "Annual leave", False),
        ("procedural", "How do I book leave?", True),
        ("yesno", "Is sick pay paid during probation?", True),
        ("yesno", "What is sick pay?", False),
        ("multihop", "When must carried-over days be used, and how many are there?", True),
        ("multihop", "Your first weeks, your buddy will meet you.", False),
        ("factual", 'What is "Harbour"?', False),  # a quote would end the JSON string
    ],
)
def test_question_patterns_hold_the_model_to_a_question_of_its_kind(
    kind: str, question: str, ok: bool
) -> None:
    assert bool(re.match(QUESTION_PATTERNS[kind], question)) is ok


def test_a_yes_no_answer_starts_with_yes_or_no() -> None:
    pattern = ANSWER_PATTERNS["yesno"]
    assert re.match(pattern, "Yes, after probation.") and re.match(pattern, "No.")
    assert not re.match(pattern, "It depends on your service.")


def test_a_request_carries_the_texts_it_shows() -> None:
    gen = Generator(question_kinds=["multihop"], questions_per_chunk=1)
    neighbour = _chunk(1, "Unused leave of up to five days carries over to March.")
    request = build_request(PromptSet.from_spec(gen), _chunk(0), 0, neighbour, gen)
    assert request.texts == (_chunk(0).text, neighbour.text)


def test_answer_sentences_are_whole_sentences_without_markup() -> None:
    from llmft.workloads.datagen.backends import answer_sentences

    text = (
        "## Carry over\n\nYou may carry over up to **five days** of unused leave. Use them by "
        "31 March.\n\n| Leave | Days |\n| --- | --- |\n- Ask your manager in Harbour first;\n"
    )
    assert answer_sentences(text) == [
        "You may carry over up to five days of unused leave.",
        "Use them by 31 March.",
        "Ask your manager in Harbour first.",
    ]
