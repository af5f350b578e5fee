"""Reading pairs out of what a small model writes."""

from __future__ import annotations

from llmft.workloads.datagen.parsing import RawPair, parse_pairs


def test_schema_shaped_reply() -> None:
    reply = '{"pairs": [{"question": "How many days?", "answer": "27 days.", "kind": "factual"}]}'
    assert parse_pairs(reply) == [RawPair("How many days?", "27 days.", "factual")]


def test_prose_and_code_fences_around_the_json_are_ignored() -> None:
    reply = 'Sure! Here you go:\n```json\n[{"Question": "Q?", "Answer": "A."}]\n```\nHope it helps.'
    assert parse_pairs(reply) == [RawPair("Q?", "A.", None)]


def test_boolean_and_number_answers_become_text() -> None:
    reply = '{"pairs": [{"question": "Is it paid?", "answer": true, "type": "YesNo"}, '
    reply += '{"question": "How many weeks?", "answer": 52}]}'
    assert parse_pairs(reply) == [
        RawPair("Is it paid?", "Yes", "yesno"),
        RawPair("How many weeks?", "52", None),
    ]


def test_a_reply_cut_off_by_the_token_limit_keeps_its_complete_pairs() -> None:
    reply = (
        '{"pairs": [{"question": "Q1?", "answer": "A1.", "kind": "factual"}, '
        '{"question": "Q2?", "answer": "A2 is cut sh'
    )
    assert parse_pairs(reply) == [RawPair("Q1?", "A1.", "factual")]


def test_valid_json_without_pairs_is_empty_not_unparsable() -> None:
    assert parse_pairs('{"pairs": []}') == []


def test_nothing_readable_is_none() -> None:
    assert parse_pairs("") is None
    assert parse_pairs("I cannot help with that.") is None
    assert parse_pairs('{"answer": "no question here"}') is None
