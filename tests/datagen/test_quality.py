"""Quality filters: lexical support, duplicates and near-duplicates, empty pairs."""

from __future__ import annotations

from llmft.workloads.datagen.parsing import RawPair
from llmft.workloads.datagen.quality import (
    DuplicateFilter,
    answer_support,
    count_reasons,
    is_empty,
    is_question,
    is_standalone,
    numbers,
    on_topic,
    unsupported_numbers,
)

CHUNK = (
    "Full-time employees receive 27 days of annual leave per leave year, plus the 8 public "
    "holidays. Requests are approved by your manager in Harbour."
)


def test_an_answer_taken_from_the_chunk_is_supported() -> None:
    assert answer_support("Employees receive 27 days of annual leave.", CHUNK) == 1.0


def test_inflections_still_count_as_support() -> None:
    assert answer_support("The manager approves the request.", CHUNK) >= 0.6


def test_an_invented_answer_is_not_supported() -> None:
    assert answer_support("Staff get unlimited vacation and a pizza party.", CHUNK) < 0.3


def test_bare_yes_no_is_supported_only_for_yes_no_questions() -> None:
    assert answer_support("Yes.", CHUNK, kind="yesno") == 1.0
    assert answer_support("Yes.", CHUNK, kind="factual") == 0.0


def test_exact_and_near_duplicate_questions_are_dropped() -> None:
    dedup = DuplicateFilter(threshold=0.6)
    assert dedup.check("How many days of annual leave do full-time employees get?") is None
    assert dedup.check("How many days of annual leave do full-time employees get?") == "duplicate"
    assert dedup.check("how many days of annual leave do full time employees get") == "duplicate"
    assert (
        dedup.check("How many days of annual leave do full-time employees get each year?")
        == "near_duplicate"
    )
    assert dedup.check("Who approves a leave request?") is None


def test_threshold_one_keeps_every_different_question() -> None:
    dedup = DuplicateFilter(threshold=1.0)
    assert dedup.check("How many days of annual leave do employees get?") is None
    assert dedup.check("How many days of annual leave do employees get now?") is None


def test_empty_pairs() -> None:
    assert is_empty(RawPair("", "27 days.", None), 2)
    assert is_empty(RawPair("???", "27 days.", None), 2)
    assert is_empty(RawPair("How many days?", " ", None), 2)
    assert not is_empty(RawPair("Is it paid?", "No", "yesno"), 2)


def test_reasons_are_counted() -> None:
    assert count_reasons(["unsupported", "duplicate", "unsupported"]) == {
        "unsupported": 2,
        "duplicate": 1,
    }


def test_a_heading_or_statement_is_not_a_question() -> None:
    assert is_question("How many days of leave do I get?")
    assert is_question("When must carried-over leave be used by")  # cut off, still a question
    assert is_question("Is sick pay paid during probation?")
    assert not is_question("Annual leave")
    assert not is_question("Employees get 27 days of leave.")
    assert not is_question("How")


def test_numbers_an_answer_states_must_be_in_the_chunk() -> None:
    assert numbers("10,000 miles at 45p, by 09:30, 1.5 times") == {"10000", "45", "09:30", "1.5"}
    assert unsupported_numbers("27 days, plus 8 public holidays.", CHUNK) == set()
    assert unsupported_numbers("10.5 days a year.", CHUNK) == {"10.5"}


def test_a_question_about_the_prompt_is_not_standalone() -> None:
    assert not is_standalone("Can you answer this?")
    assert not is_standalone("What is the answer to this question?")
    assert not is_standalone("What does the text say about leave?")
    assert is_standalone("How many days of annual leave do full-time employees get?")


def test_a_question_must_share_a_content_word_with_the_chunk() -> None:
    assert on_topic("Who approves leave requests?", CHUNK)
    assert not on_topic("What is the canteen menu?", CHUNK)
    assert not on_topic("What does it mean?", CHUNK)
