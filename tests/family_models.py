"""Tiny random-weight models of the seed models' real architectures, with their real tokenizers.

`build_tiny_family_model(name, out)` shrinks a seed model's own config (LlamaForCausalLM,
MistralForCausalLM, GemmaForCausalLM, PhiForCausalLM) to a few layers of width 64, keeps its
full vocabulary, and saves it next to that model's real tokenizer files (tests/fixtures/models).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from model_fixtures import model_dir

# Shrunk sizes: the architecture class and vocabulary stay the seed model's own.
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def build_tiny_family_model(name: str, out_dir: str | Path, *, seed: int = 0) -> Path:
    """The seed model `name` (a tests/fixtures/models folder) shrunk, with random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    source = model_dir(name)
    config = AutoConfig.from_pretrained(source)
    shrink = dict(TINY)
    if config.model_type == "gemma":
        shrink["head_dim"] = 16
    if config.model_type == "phi":
        shrink["num_key_value_heads"] = shrink["num_attention_heads"]
    for key, value in shrink.items():
        setattr(config, key, value)
    config.max_position_embeddings = min(int(config.max_position_embeddings), 2048)
    # Untied heads would double a 128k-256k vocabulary's parameters for nothing in a test.
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for path in source.iterdir():
        if path.name not in ("config.json",) and not path.name.startswith("model"):
            shutil.copy(path, out / path.name)
    return out
