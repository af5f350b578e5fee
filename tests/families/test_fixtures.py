"""The seed models' tokenizer fixtures load with transformers and carry the published ids."""

from __future__ import annotations

import pytest

from model_fixtures import SEED_MODELS, model_dir

# Published facts about each model's tokenizer: size and the ids of its special tokens.
PUBLISHED = {
    "meta-llama-3-8b-instruct": (
        128256,
        {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009},
    ),
    "mistral-7b-instruct-v0.2": (32000, {"<s>": 1, "</s>": 2}),
    "mistral-7b-instruct-v0.3": (32768, {"<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4}),
    "gemma-2b-it": (
        256000,
        {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<start_of_turn>": 106, "<end_of_turn>": 107},
    ),
    "phi-2": (50295, {"<|endoftext|>": 50256}),
}


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_fixture_tokenizer_has_the_published_vocabulary_and_special_ids(name: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(name))
    size, ids = PUBLISHED[name]
    assert len(tok) == size
    assert {t: tok.convert_tokens_to_ids(t) for t in ids} == ids


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_fixture_config_is_the_full_size_architecture(name: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir(name))
    assert config.vocab_size >= PUBLISHED[name][0]
    assert config.num_hidden_layers >= 18
