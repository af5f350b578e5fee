"""Context for RAG arms: index the dataset's chunks once, retrieve top-k for every question.

Retrieval does not depend on the arm's model, so every question is searched once with the
largest top-k any arm asks for, and each arm keeps its own first k (the ranking of the first k
of a larger search is the same as that of a k search).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmft.api.evaluation import EvaluationSpec
from llmft.retrieval import Embedder, RetrievalError, Retrieved, Retriever, load_chunks
from llmft.workloads import rag
from llmft.workloads.entry import WorkloadError
from llmft.workloads.rag import default_collection

log = logging.getLogger("llmft.evaluator.rag")


@dataclass(frozen=True)
class Retrieval:
    """The chunks found for each question (best first), and which backend found them."""

    backend: str
    per_question: list[list[Retrieved]]

    def top(self, index: int, k: int) -> list[Retrieved]:
        return self.per_question[index][:k]


def gold_hit(retrieved: Sequence[Retrieved], gold_chunk_ids: Sequence[str]) -> bool | None:
    """Whether a chunk the reference answer came from was retrieved; None without gold ids."""
    if not gold_chunk_ids:
        return None
    found = {r.chunk_id for r in retrieved}
    return any(g in found for g in gold_chunk_ids)


def open_index(
    spec: EvaluationSpec, namespace: str, name: str, embedder: Embedder, chunks_file: Path
) -> Retriever:
    """The spec's retriever with the dataset's chunks indexed (the shared RAG code)."""
    try:
        chunks = load_chunks(chunks_file)
    except RetrievalError as err:
        raise WorkloadError(f"spec.dataset.path: {err}") from None
    if not chunks:
        raise WorkloadError(f"spec.dataset.path: {chunks_file} holds no chunks to retrieve")
    collection = default_collection(namespace, name)
    return rag.open_index(spec.retrieval, "spec.retrieval", embedder, chunks, collection)


def retrieve_all(retriever: Retriever, questions: Sequence[str], k: int) -> Retrieval:
    return Retrieval(retriever.backend, rag.search(retriever, questions, k, "spec.retrieval"))
