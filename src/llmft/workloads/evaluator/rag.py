"""Context for RAG arms: index the dataset's chunks once, retrieve top-k for every question.

Retrieval does not depend on the arm's model, so every question is searched once with the
largest top-k any arm asks for, and each arm keeps its own first k (the ranking of the first k
of a larger search is the same as that of a k search).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmft.api.evaluation import EvaluationSpec
from llmft.api.layout import ENV_WEAVIATE_API_KEY
from llmft.retrieval import (
    Embedder,
    RetrievalError,
    Retrieved,
    Retriever,
    load_chunks,
    open_retriever,
)
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.evaluator.rag")


@dataclass(frozen=True)
class Retrieval:
    """The chunks found for each question (best first), and which backend found them."""

    backend: str
    per_question: list[list[Retrieved]]

    def top(self, index: int, k: int) -> list[Retrieved]:
        return self.per_question[index][:k]


def default_collection(namespace: str, name: str) -> str:
    return f"Llmft_{namespace}_{name}"


def gold_hit(retrieved: Sequence[Retrieved], gold_chunk_ids: Sequence[str]) -> bool | None:
    """Whether a chunk the reference answer came from was retrieved; None without gold ids."""
    if not gold_chunk_ids:
        return None
    found = {r.chunk_id for r in retrieved}
    return any(g in found for g in gold_chunk_ids)


def open_index(
    spec: EvaluationSpec, namespace: str, name: str, embedder: Embedder, chunks_file: Path
) -> Retriever:
    """The spec's retriever with the dataset's chunks indexed (reused when already indexed)."""
    cfg = spec.retrieval
    api_key = os.environ.get(ENV_WEAVIATE_API_KEY) or None
    if cfg.api_key_secret_ref is not None and api_key is None:
        raise WorkloadError(
            f"spec.retrieval.apiKeySecretRef: set, but {ENV_WEAVIATE_API_KEY} is empty in the "
            "workload's environment"
        )
    try:
        chunks = load_chunks(chunks_file)
        if not chunks:
            raise WorkloadError(f"spec.dataset.path: {chunks_file} holds no chunks to retrieve")
        retriever = open_retriever(
            cfg.backend,
            embedder,
            weaviate_url=cfg.weaviate_url,
            grpc_port=cfg.weaviate_grpc_port,
            collection=cfg.collection or default_collection(namespace, name),
            api_key=api_key,
        )
    except RetrievalError as err:
        raise WorkloadError(f"spec.retrieval: {err}") from None
    try:
        retriever.index(chunks)
    except Exception as err:
        retriever.close()
        raise WorkloadError(f"spec.retrieval: indexing {chunks_file} failed: {err}") from err
    log.info("indexed %d chunks with the %s backend", len(chunks), retriever.backend)
    return retriever


def retrieve_all(retriever: Retriever, questions: Sequence[str], k: int) -> Retrieval:
    try:
        found = retriever.search_many(questions, k)
    except Exception as err:
        raise WorkloadError(f"spec.retrieval: search failed: {err}") from err
    return Retrieval(retriever.backend, found)
