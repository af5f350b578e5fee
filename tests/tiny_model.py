"""A randomly initialised tiny Llama with SmolLM2's real tokenizer: a real model, fast to train."""

from __future__ import annotations

from pathlib import Path

from llmft.api.common import ModelSource
from llmft.models import SMOLLM2, SMOLLM2_GGUF
from llmft.workloads.modeling import load_tokenizer


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny Llama with SmolLM2's tokenizer, for fast real tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = load_tokenizer(ModelSource(name=SMOLLM2, gguf_file=SMOLLM2_GGUF))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
