"""Answering eval questions in batches with a causal LM, in the prompt format training used.

Prompts are the shared `llmft.prompts.build_messages` rendered by the model's chat format (its
family's system-prompt rule and template, as in training); generation stops on the family's
end-of-turn and stop tokens as well as the model's EOS.
Batches are left-padded with an attention mask, so every prompt ends where generation starts and
a batched greedy answer is the same as answering that prompt alone. Prompts are sorted by length
before batching (less padding per batch) and answers are returned in the input order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmft.prompts import build_messages

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from llmft.workloads.chatformat import ChatFormat


def render_prompt(fmt: ChatFormat, question: str, context: Sequence[str] | None = None) -> str:
    """The exact text the model continues: chat template + generation prompt."""
    return fmt.prompt_text(build_messages(question, context))


def _stop_token_ids(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, extra: Sequence[int] = ()
) -> list[int]:
    """End-of-turn ids from the chat format, the generation config and the tokenizer."""
    ids: list[int] = []
    configured = getattr(model.generation_config, "eos_token_id", None)
    for value in (list(extra), configured, tokenizer.eos_token_id):
        if value is None:
            continue
        for i in value if isinstance(value, list | tuple) else [value]:
            if int(i) not in ids:
                ids.append(int(i))
    return ids


class AnswerGenerator:
    """Greedy (or sampled, when temperature > 0) answers for rendered prompts, in batches."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop_ids: Sequence[int] = (),
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self.stop_ids = _stop_token_ids(model, tokenizer, stop_ids)
        model.eval()

    def _generate_batch(self, prompts: Sequence[str]) -> list[str]:
        import torch

        tok = self.tokenizer
        # Left padding: the last prompt token of every row sits right before the first new token.
        tok.padding_side = "left"
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.model.device
        )
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature}
            if self.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        if self.temperature > 0:
            torch.manual_seed(self.seed)
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=self.stop_ids or None,
                **sampling,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]

    def generate(
        self,
        prompts: Sequence[str],
        batch_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Answers for `prompts` in their order; `on_batch(done)` after every batch."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        answers: list[str] = [""] * len(prompts)
        done = 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            for i, answer in zip(idx, self._generate_batch([prompts[i] for i in idx]), strict=True):
                answers[i] = answer
            done += len(idx)
            if on_batch is not None:
                on_batch(done)
        return answers
