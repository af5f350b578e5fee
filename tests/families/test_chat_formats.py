"""Each family's chat format, token by token, on the seed models' real tokenizers.

For every family: the prompt llmft renders is the template's own rendering of the messages as
the family sends them (system prompt kept or folded); the loss covers exactly the answer tokens
and the end-of-turn token; causal rows are closed by the document-end token; batched
generation stops on the family's end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from llmft.api.common import ModelSource
from llmft.models import SMOLLM2, SMOLLM2_GGUF
from llmft.prompts import build_messages
from llmft.workloads.chatformat import ChatFormat, ChatFormatError, build_chat_format
from llmft.workloads.entry import WorkloadError
from llmft.workloads.modeling import load_chat_format, load_tokenizer
from model_fixtures import model_dir

SYS = "You answer from the handbook."
Q = "How many days of leave do I get?"
A = "You get 27 days of annual leave."
MESSAGES = [{"role": "system", "content": SYS}, {"role": "user", "content": Q}]


@dataclass(frozen=True)
class Case:
    family: str
    prompt: str  # the exact prompt text llmft must render for MESSAGES
    end_of_turn: int
    document_end: int
    bos: int | None


CASES = {
    "meta-llama-3-8b-instruct": Case(
        "llama3",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYS + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n" + Q + "<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        128009,
        128001,
        128000,
    ),
    "mistral-7b-instruct-v0.2": Case("mistral", f"<s> [INST] {SYS}\n\n{Q} [/INST]", 2, 2, 1),
    "mistral-7b-instruct-v0.3": Case("mistral", f"<s>[INST] {SYS}\n\n{Q}[/INST]", 2, 2, 1),
    "gemma-2b-it": Case(
        "gemma",
        f"<bos><start_of_turn>user\n{SYS}\n\n{Q}<end_of_turn>\n<start_of_turn>model\n",
        107,
        1,
        2,
    ),
    "phi-2": Case("phi2", f"Instruct: {SYS}\n\n{Q}\nOutput:", 50256, 50256, None),
    "smollm2": Case(
        "chatml",
        f"<|im_start|>system\n{SYS}<|im_end|>\n<|im_start|>user\n{Q}<|im_end|>\n"
        "<|im_start|>assistant\n",
        2,
        0,
        None,
    ),
}


def source_for(name: str) -> ModelSource:
    if name == "smollm2":
        return ModelSource(name=SMOLLM2, gguf_file=SMOLLM2_GGUF)
    return ModelSource(name=str(model_dir(name)))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, ChatFormat, Case]:
    name = request.param
    return name, load_chat_format(source_for(name)), CASES[name]


def test_family_is_detected_from_config_and_tokenizer(case: tuple[str, ChatFormat, Case]) -> None:
    _, fmt, expected = case
    assert fmt.family.name == expected.family
    assert fmt.warnings == []


def test_prompt_is_the_templates_own_rendering(case: tuple[str, ChatFormat, Case]) -> None:
    _, fmt, expected = case
    prompt = fmt.prompt_text(MESSAGES)
    assert prompt == expected.prompt
    own = fmt.tokenizer.apply_chat_template(
        fmt.messages(MESSAGES), tokenize=False, add_generation_prompt=True
    )
    assert prompt == own


def test_labels_are_exactly_the_answer_tokens_and_end_of_turn(
    case: tuple[str, ChatFormat, Case],
) -> None:
    _, fmt, expected = case
    tok = fmt.tokenizer
    row = fmt.example(MESSAGES, A)
    # Independently: the template's own rendering of the whole conversation, tokenized.
    msgs = fmt.messages(MESSAGES)
    prompt_ids = tok(
        tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    full = tok.apply_chat_template([*msgs, {"role": "assistant", "content": A}], tokenize=False)
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    answer_end = full_ids.index(expected.end_of_turn, len(prompt_ids)) + 1
    labelled = [t for t, m in zip(row.input_ids, row.completion_mask, strict=True) if m]
    assert row.input_ids == full_ids[:answer_end]
    assert row.completion_mask == [0] * len(prompt_ids) + [1] * (answer_end - len(prompt_ids))
    assert labelled == full_ids[len(prompt_ids) : answer_end]
    assert labelled[-1] == expected.end_of_turn
    assert expected.end_of_turn not in labelled[:-1]
    assert tok.decode(labelled[:-1]).strip() == A
    assert row.labels[: len(prompt_ids)] == [-100] * len(prompt_ids)


def test_causal_rows_end_with_the_document_end_token(case: tuple[str, ChatFormat, Case]) -> None:
    _, fmt, expected = case
    ids = fmt.document("Staff get 27 days of annual leave.")
    assert ids[-1] == expected.document_end
    assert ids.count(expected.document_end) == 1 or expected.bos == expected.document_end
    if expected.bos is not None:
        assert ids[0] == expected.bos
    assert "27 days" in fmt.tokenizer.decode(ids, skip_special_tokens=True)


def test_system_prompt_is_kept_or_folded_as_documented(case: tuple[str, ChatFormat, Case]) -> None:
    _, fmt, _ = case
    prompt = fmt.prompt_text(build_messages(Q))
    keep = fmt.family.system_prompt == "keep"
    assert fmt.system_prompt == ("keep" if keep else "fold")
    roles = [m["role"] for m in fmt.messages(MESSAGES)]
    assert roles == (["system", "user"] if keep else ["user"])
    assert SYS in fmt.prompt_text(MESSAGES)
    assert "answers questions about the organisation" in prompt


def test_mistral_v03_template_drops_the_system_prompt_without_folding() -> None:
    """Why mistral folds: v0.3's template keeps the system prompt only in the last user turn."""
    fmt = load_chat_format(source_for("mistral-7b-instruct-v0.3"))
    tok = fmt.tokenizer
    prompt = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template([*MESSAGES, {"role": "assistant", "content": A}], tokenize=False)
    assert SYS in prompt and SYS not in full
    row = fmt.example(MESSAGES, A)
    assert SYS in tok.decode(row.input_ids)


def test_gemma_template_refuses_a_kept_system_prompt() -> None:
    source = ModelSource(name=str(model_dir("gemma-2b-it")), systemPrompt="keep")
    with pytest.raises(WorkloadError, match=r"spec.baseModel.*systemPrompt") as err:
        load_chat_format(source)
    assert "System role not supported" in str(err.value)


def test_phi2_answers_end_with_endoftext_although_it_ships_no_template() -> None:
    fmt = load_chat_format(source_for("phi-2"))
    assert fmt.template_source == "family"
    row = fmt.example(MESSAGES, A)
    assert row.input_ids[-1] == 50256
    assert fmt.tokenizer.decode(row.input_ids).endswith(f"Output: {A}<|endoftext|>")


def test_stop_tokens_cover_the_end_of_turn_beyond_generation_config() -> None:
    gemma = load_chat_format(source_for("gemma-2b-it"))
    assert gemma.stop_ids[:2] == [107, 1]
    llama = load_chat_format(source_for("meta-llama-3-8b-instruct"))
    assert llama.stop_ids[:2] == [128009, 128001]


def test_llama3_pad_is_the_unused_finetune_pad_id_not_a_stop_token() -> None:
    fmt = load_chat_format(source_for("meta-llama-3-8b-instruct"))
    assert fmt.tokenizer.pad_token_id == 128004
    assert fmt.tokenizer.pad_token_id not in fmt.stop_ids


def test_a_model_outside_the_registry_appends_eos_when_its_template_has_no_end_token() -> None:
    tok = load_tokenizer(ModelSource(name=str(model_dir("phi-2"))))
    template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}"
    )
    source = ModelSource(name="acme/plain-model", chatTemplate=template)
    fmt = build_chat_format(source, tok, "gpt2", "spec.baseModel")
    assert fmt.family.name == "generic"
    assert any("not in llmft's model families" in w for w in fmt.warnings)
    assert any("appended" in w for w in fmt.warnings)
    row = fmt.example(MESSAGES, A)
    assert row.input_ids[-1] == tok.eos_token_id
    assert tok.decode([t for t, m in zip(row.input_ids, row.completion_mask, strict=True) if m])


def test_a_model_outside_the_registry_has_its_refused_system_prompt_folded() -> None:
    tok = load_tokenizer(ModelSource(name=str(model_dir("gemma-2b-it"))))
    fmt = build_chat_format(ModelSource(name="acme/gemma-tune"), tok, "acme", "spec.baseModel")
    assert fmt.family.name == "generic" and fmt.system_prompt == "fold"
    assert any("refuses a system message" in w for w in fmt.warnings)
    assert fmt.example(MESSAGES, A).input_ids[-1] == 107


def test_a_model_with_no_family_and_no_template_gets_the_eos_fallback() -> None:
    tok = load_tokenizer(ModelSource(name=str(model_dir("phi-2"))))
    fmt = build_chat_format(ModelSource(name="acme/base"), tok, "gpt2", "spec.baseModel")
    assert fmt.template_source == "fallback"
    assert fmt.example(MESSAGES, A).input_ids[-1] == tok.eos_token_id


def test_a_template_that_cannot_render_fails_naming_the_model_and_field() -> None:
    source = ModelSource(
        name=str(model_dir("meta-llama-3-8b-instruct")),
        chatTemplate="{{ raise_exception('no') }}",
    )
    with pytest.raises(WorkloadError) as err:
        load_chat_format(source, "spec.arms[1].baseModel")
    message = str(err.value)
    assert message.startswith("spec.arms[1].baseModel: ")
    assert "meta-llama-3-8b-instruct" in message
    assert "spec.arms[1].baseModel.chatTemplate" in message


def test_folding_moves_the_system_prompt_into_the_first_user_turn() -> None:
    fmt = load_chat_format(source_for("gemma-2b-it"))
    folded = fmt.messages(MESSAGES)
    assert folded == [{"role": "user", "content": f"{SYS}\n\n{Q}"}]
    with pytest.raises(ChatFormatError):
        fmt.render(MESSAGES, add_generation_prompt=True)  # unfolded: the template refuses it


# Batched generation: a tiny model of the family's architecture whose logits are steered to
# emit some text, then the end-of-turn token, then more text; generation must stop at the
# end-of-turn token, so that last text never shows up in an answer.


def _steered_model(name: str, fmt: ChatFormat, filler: int, stop: int, after: list[int]) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from family_models import TINY

    path = model_dir(name) if name != "smollm2" else None
    if path is None:
        from transformers import LlamaConfig

        config = LlamaConfig(vocab_size=len(fmt.tokenizer), **TINY)
    else:
        config = AutoConfig.from_pretrained(path)
        for key, value in TINY.items():
            setattr(config, key, value)
        if config.model_type == "gemma":
            config.head_dim = 16
        if config.model_type == "phi":
            config.num_key_value_heads = config.num_attention_heads
    config.tie_word_embeddings = False
    model = AutoModelForCausalLM.from_config(config).eval()
    start: dict[str, int] = {}
    junk = fmt.tokenizer.convert_tokens_to_ids(fmt.tokenizer.tokenize(" ZZZ"))[0]

    def steer(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        # Prefill sees the whole prompt; each decoding step one more token per row.
        if "len" not in start:
            start["len"] = output.shape[1]
            start["step"] = 0
        else:
            start["step"] += 1
        step = start["step"]
        out = torch.full_like(output, -1e4)
        for row, n in enumerate(after):
            token = filler if step < n else (stop if step == n else junk)
            out[row, -1, token] = 0.0
        return out

    model.get_output_embeddings().register_forward_hook(steer)
    model.generation_config.eos_token_id = None
    return model, start


def test_batched_generation_stops_at_the_end_of_turn_token(
    case: tuple[str, ChatFormat, Case],
) -> None:
    from llmft.workloads.evaluator.generation import AnswerGenerator, render_prompt

    name, fmt, expected = case
    tok = fmt.tokenizer
    filler = tok.convert_tokens_to_ids(tok.tokenize(" yes"))[-1]
    after = [1, 3, 2]
    model, state = _steered_model(name, fmt, filler, expected.end_of_turn, after)
    generator = AnswerGenerator(model, tok, max_new_tokens=8, stop_ids=fmt.stop_ids)
    prompts = [render_prompt(fmt, q) for q in ("Leave?", "Core hours at the office?", "Pay?")]
    state.clear()
    answers = generator._generate_batch(prompts)
    for answer, n in zip(answers, after, strict=True):
        assert "ZZZ" not in answer
        assert answer == tok.decode([filler] * n, skip_special_tokens=True).strip()
