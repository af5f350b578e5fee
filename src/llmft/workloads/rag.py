"""RAG context built one way for a training row and for an evaluation item.

Both the trainer (FineTuneJob `spec.rag.retrieval`) and the evaluator (Evaluation
`spec.retrieval`) describe their index with the same `Retrieval` spec, open it with
`open_index`, search it with `search`, and turn the chunks found into prompt messages with
`rag_messages`, so a model is trained on prompts shaped exactly like the ones it is scored on.
The one deliberate difference: the trainer indexes only the training side's chunks (retrieving
a held-out document's chunk would show its text in training).

`raft_context` builds RAFT-style training context (Zhang et al., 2024): the pair's gold chunk
with a given probability, beside retrieved distractors, so the model learns both to use the
context and to answer when it does not help.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from llmft.api.finetunejob import Retrieval
from llmft.api.layout import ENV_WEAVIATE_API_KEY
from llmft.prompts import build_messages
from llmft.retrieval import Chunk, Embedder, RetrievalError, Retrieved, Retriever, open_retriever
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.rag")


def default_collection(namespace: str, name: str) -> str:
    return f"Llmft_{namespace}_{name}"


def load_embedder(model: str, field: str) -> Embedder:
    """The sentence-embedding model, or an error naming the spec field that chose it."""
    try:
        return Embedder(model)
    except Exception as err:
        raise WorkloadError(f"{field}: cannot load {model!r}: {type(err).__name__}: {err}") from err


def open_index(
    cfg: Retrieval, field: str, embedder: Embedder, chunks: Sequence[Chunk], collection: str
) -> Retriever:
    """The spec's retriever with `chunks` indexed (reused when already indexed); errors name
    `field` (spec.retrieval or spec.rag.retrieval)."""
    api_key = os.environ.get(ENV_WEAVIATE_API_KEY) or None
    if cfg.api_key_secret_ref is not None and api_key is None:
        raise WorkloadError(
            f"{field}.apiKeySecretRef: set, but {ENV_WEAVIATE_API_KEY} is empty in the "
            "workload's environment"
        )
    try:
        retriever = open_retriever(
            cfg.backend,
            embedder,
            weaviate_url=cfg.weaviate_url,
            grpc_port=cfg.weaviate_grpc_port,
            collection=cfg.collection or collection,
            api_key=api_key,
        )
    except RetrievalError as err:
        raise WorkloadError(f"{field}: {err}") from None
    try:
        retriever.index(chunks)
    except Exception as err:
        retriever.close()
        raise WorkloadError(f"{field}: indexing {len(chunks)} chunks failed: {err}") from err
    log.info("indexed %d chunks with the %s backend", len(chunks), retriever.backend)
    return retriever


def search(
    retriever: Retriever, questions: Sequence[str], k: int, field: str
) -> list[list[Retrieved]]:
    """The top-k chunks for every question, best first."""
    try:
        return retriever.search_many(questions, k)
    except Exception as err:
        raise WorkloadError(f"{field}: search failed: {err}") from err


def rag_messages(question: str, hits: Sequence[Retrieved]) -> list[dict[str, str]]:
    """The chat messages for a question with the chunks retrieved for it (none: plain format)."""
    return build_messages(question, [h.text for h in hits] or None)


def raft_context(
    hits: Sequence[Retrieved],
    gold: Mapping[str, str],
    top_k: int,
    gold_probability: float,
    distractors: int | None,
    rng: random.Random,
) -> list[Retrieved]:
    """RAFT context for one training pair: its gold chunks (`gold`: id -> text) with
    probability `gold_probability`, and `distractors` (default topK - 1) of the best-ranked
    retrieved chunks that are not gold; the gold chunk goes to a random position."""
    n = top_k - 1 if distractors is None else distractors
    others = [h for h in hits if h.chunk_id not in gold][:n]
    if not gold or rng.random() >= gold_probability:
        return others
    context = list(others)
    for chunk_id, text in gold.items():
        context.insert(rng.randint(0, len(context)), Retrieved(chunk_id, text, 1.0))
    return context


def search_depth(top_k: int, distractors: int | None, gold_probability: float | None) -> int:
    """How many chunks to retrieve per question: top-k, or enough distractors for RAFT even
    when the gold chunks rank among them."""
    if gold_probability is None:
        return top_k
    return (top_k - 1 if distractors is None else distractors) + 4


def describe(cfg: Retrieval, top_k: int, backend: str) -> dict[str, Any]:
    """The retrieval settings a manifest records."""
    return {**cfg.to_wire(), "topK": top_k, "resolvedBackend": backend}
