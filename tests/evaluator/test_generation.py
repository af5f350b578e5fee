"""Batched greedy generation answers exactly as one-at-a-time generation does."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.common import ModelSource
from llmft.prompts import DEFAULT_SYSTEM, RAG_SYSTEM
from llmft.workloads.evaluator.generation import AnswerGenerator, render_prompt
from llmft.workloads.modeling import load_base_model, load_chat_format

QUESTIONS = [
    "Hi?",
    "How many days of annual leave do full-time employees get each year?",
    "Core hours?",
    "When do I need a fit note from a doctor after being off sick for a while?",
    "Who approves first-class rail travel?",
]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model: Path):  # type: ignore[no-untyped-def]
    fmt = load_chat_format(ModelSource(name=str(tiny_model)))
    model, _ = load_base_model(
        ModelSource(name=str(tiny_model)), quantize_4bit=False, tokenizer=fmt.tokenizer
    )
    return model, fmt


def test_batched_greedy_answers_equal_unbatched(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model, fmt = model_and_tokenizer
    tok = fmt.tokenizer
    prompts = [render_prompt(fmt, q) for q in QUESTIONS]
    generator = AnswerGenerator(model, tok, max_new_tokens=10)
    one_by_one = generator.generate(prompts, batch_size=1)
    batched = generator.generate(prompts, batch_size=4)
    assert batched == one_by_one
    # The prompts differ, so do the answers: equality above is not the trivial kind.
    assert len(set(one_by_one)) == len(QUESTIONS)
    assert all(one_by_one)


def test_right_padding_would_change_answers(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """The control for the test above: pad on the wrong side and batched answers drift."""
    import torch

    model, fmt = model_and_tokenizer
    tok = fmt.tokenizer
    prompts = [render_prompt(fmt, q) for q in QUESTIONS[:2]]
    tok.padding_side = "right"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(
            **enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id
        )
    right_padded = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    alone = AnswerGenerator(model, tok, max_new_tokens=10).generate(prompts, batch_size=1)
    assert [a.strip() for a in right_padded] != alone


def test_answers_come_back_in_input_order_and_progress_counts_items(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model, fmt = model_and_tokenizer
    tok = fmt.tokenizer
    prompts = [render_prompt(fmt, q) for q in QUESTIONS]
    generator = AnswerGenerator(model, tok, max_new_tokens=4)
    seen: list[int] = []
    answers = generator.generate(prompts, batch_size=2, on_batch=seen.append)
    assert seen == [2, 4, 5]
    assert answers == [generator.generate([p], batch_size=1)[0] for p in prompts]


def test_prompt_uses_the_shared_training_format(model_and_tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, fmt = model_and_tokenizer
    plain = render_prompt(fmt, "How much leave?")
    rag = render_prompt(fmt, "How much leave?", ["27 days a year."])
    assert DEFAULT_SYSTEM in plain and "How much leave?" in plain
    assert RAG_SYSTEM in rag and "[1] 27 days a year." in rag
    assert plain.rstrip().endswith("assistant")
