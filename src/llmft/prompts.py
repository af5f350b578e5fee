"""The one prompt format shared by training (instruct mode) and evaluation, with or without RAG.

Training and evaluation must put the same words around a question, or the evaluation measures
a format mismatch instead of the fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_SYSTEM = (
    "You are a helpful assistant that answers questions about the organisation's internal "
    "documents accurately and concisely."
)
RAG_SYSTEM = (
    DEFAULT_SYSTEM
    + " Use the context passages when they are relevant; if they do not contain the answer, "
    "answer from what you know."
)


def format_context(passages: Sequence[str]) -> str:
    return "\n\n".join(f"[{i + 1}] {p.strip()}" for i, p in enumerate(passages) if p.strip())


def build_messages(question: str, context: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Chat messages for one question; `context` (retrieved passages) turns on the RAG format."""
    if context:
        user = f"Context:\n{format_context(context)}\n\nQuestion: {question.strip()}"
        return [{"role": "system", "content": RAG_SYSTEM}, {"role": "user", "content": user}]
    return [
        {"role": "system", "content": DEFAULT_SYSTEM},
        {"role": "user", "content": question.strip()},
    ]


def build_conversation(
    question: str, answer: str, context: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """The training example: the prompt messages plus the reference answer."""
    return [*build_messages(question, context), {"role": "assistant", "content": answer.strip()}]
