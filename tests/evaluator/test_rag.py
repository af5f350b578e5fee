"""RAG arms: the dataset's chunks indexed into the real Weaviate, top-k retrieval, gold hits."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from evaluator.conftest import QUESTIONS, evaluation_manifest
from llmft.api.evaluation import EvaluationSpec
from llmft.models import MINILM
from llmft.retrieval import Embedder, RetrievalError, Retrieved, WeaviateRetriever, load_chunks
from llmft.services import Wait
from llmft.workloads.entry import run_workload
from llmft.workloads.evaluator.pipeline import main
from llmft.workloads.evaluator.rag import gold_hit, open_index, retrieve_all
from servers.launch import start_weaviate, wait_for


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(MINILM)


def _spec(dataset: Path, retrieval: dict[str, object]) -> EvaluationSpec:
    return EvaluationSpec.model_validate(
        {
            "dataset": {"path": str(dataset)},
            "arms": [{"name": "rag", "baseModel": {"name": "x"}, "rag": {"enabled": True}}],
            "metrics": ["rouge"],
            "retrieval": {"embeddingModel": MINILM, **retrieval},
        }
    )


def test_gold_hit() -> None:
    found = [Retrieved("a", "", 0.9), Retrieved("b", "", 0.5)]
    assert gold_hit(found, ["b"]) is True
    assert gold_hit(found, ["c", "a"]) is True
    assert gold_hit(found, ["c"]) is False
    assert gold_hit(found, []) is None


def _hit_rate(retrieval, k: int) -> float:  # type: ignore[no-untyped-def]
    hits = [gold_hit(retrieval.top(i, k), q[3]) for i, q in enumerate(QUESTIONS)]
    return sum(bool(h) for h in hits) / len(hits)


@pytest.mark.weaviate
def test_weaviate_top_k_finds_the_gold_chunks_like_the_embedded_store(  # type: ignore[no-untyped-def]
    weaviate_server, dataset_dir, embedder
) -> None:
    spec = _spec(
        dataset_dir,
        {
            "backend": "weaviate",
            "weaviateUrl": weaviate_server.url,
            "weaviateGrpcPort": weaviate_server.grpc_port,
            "collection": "EvalRagTest",
        },
    )
    questions = [q[1] for q in QUESTIONS]
    retriever = open_index(spec, "default", "t", embedder, dataset_dir / "chunks.jsonl")
    try:
        assert retriever.backend == "weaviate"
        found = retrieve_all(retriever, questions, k=3)
    finally:
        retriever.close()
    assert all(len(hits) == 3 for hits in found.per_question)
    assert _hit_rate(found, 1) == 1.0
    assert [hits[0].chunk_id for hits in found.per_question] == [q[3][0] for q in QUESTIONS]

    embedded = open_index(
        _spec(dataset_dir, {"backend": "embedded"}),
        "default",
        "t",
        embedder,
        dataset_dir / "chunks.jsonl",
    )
    local = retrieve_all(embedded, questions, k=3)
    for remote, mine in zip(found.per_question, local.per_question, strict=True):
        assert [r.chunk_id for r in remote] == [r.chunk_id for r in mine]
        assert [r.score for r in remote] == pytest.approx([r.score for r in mine], abs=1e-4)

    # Indexing again finds the same fingerprint and keeps the collection.
    again = open_index(spec, "default", "t", embedder, dataset_dir / "chunks.jsonl")
    try:
        assert retrieve_all(again, questions[:1], k=1).per_question[0][0].chunk_id == "leave-0"
    finally:
        again.close()


@pytest.mark.weaviate
def test_rag_arm_against_weaviate_records_retrieved_ids_and_hit_rate(  # type: ignore[no-untyped-def]
    weaviate_server, tiny_model, dataset_dir, tmp_path, write_spec
) -> None:
    out = tmp_path / "out"
    arms = [
        {"name": "base", "baseModel": {"name": str(tiny_model)}},
        {
            "name": "rag-1",
            "baseModel": {"name": str(tiny_model)},
            "rag": {"enabled": True, "topK": 1},
        },
    ]
    manifest = evaluation_manifest(
        dataset_dir,
        out,
        arms,
        retrieval={
            "backend": "weaviate",
            "weaviateUrl": weaviate_server.url,
            "weaviateGrpcPort": weaviate_server.grpc_port,
            "embeddingModel": MINILM,
        },
        generation={"maxNewTokens": 4, "batchSize": 4},
    )
    assert run_workload("Evaluation", "t", main, ["--spec", str(write_spec(manifest))]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["retrievalBackend"] == "weaviate"
    rag = next(a for a in summary["arms"] if a["name"] == "rag-1")
    assert rag["retrievalHitRate"] == 1.0
    records = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [r["retrieved"][0]["id"] for r in records if r["rag"]] == [q[3][0] for q in QUESTIONS]


def test_auto_falls_back_to_the_embedded_store_when_weaviate_is_down(  # type: ignore[no-untyped-def]
    dataset_dir, embedder
) -> None:
    spec = _spec(dataset_dir, {"backend": "auto", "weaviateUrl": "http://127.0.0.1:9"})
    retriever = open_index(spec, "default", "t", embedder, dataset_dir / "chunks.jsonl")
    assert retriever.backend == "embedded"
    found = retrieve_all(retriever, [q[1] for q in QUESTIONS], k=2)
    assert _hit_rate(found, 2) == 1.0


class _Retries(logging.Handler):
    """Collects the retry messages of the Weaviate client: the condition a test waits on."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.weaviate
def test_weaviate_restarted_mid_run_is_waited_for_and_one_that_stays_down_fails_naming_it(  # type: ignore[no-untyped-def]
    dataset_dir, embedder, tmp_path
) -> None:
    server = start_weaviate(tmp_path / "weaviate")
    chunks = load_chunks(dataset_dir / "chunks.jsonl")
    retriever = WeaviateRetriever(
        embedder, server.url, server.grpc_port, "Restarts", wait=Wait(seconds=180, base=0.5)
    )
    retries = _Retries()
    client_log = logging.getLogger("weaviate-client")
    client_log.addHandler(retries)
    client_log.setLevel(logging.INFO)
    try:
        retriever.index(chunks)
        question = QUESTIONS[0][0]
        expected = retriever.search_many([question], 1)[0][0].chunk_id
        server.stop()
        found: list[list[Retrieved]] = []
        worker = threading.Thread(target=lambda: found.extend(retriever.search_many([question], 1)))
        worker.start()
        wait_for(lambda: retries.messages, 60, what="a retry while Weaviate is down")
        server = server.restart()
        worker.join(timeout=200)

        assert not worker.is_alive() and found[0][0].chunk_id == expected
        assert "Retrying with exponential backoff" in retries.messages[0]

        server.stop()  # for good: the client's retries run out (about a minute)
        with pytest.raises(RetrievalError) as mid_run:
            retriever.search_many([question], 1)
        with pytest.raises(RetrievalError) as at_start:
            WeaviateRetriever(
                embedder, server.url, server.grpc_port, "Restarts", wait=Wait(seconds=2, base=0.5)
            )
    finally:
        client_log.removeHandler(retries)
        retriever.close()
        server.stop()

    where = f"retrieval.weaviateUrl: Weaviate at {server.url} (gRPC port {server.grpc_port})"
    assert str(mid_run.value).startswith(f"{where} stopped answering")
    assert str(at_start.value).startswith(f"{where} did not answer for")
    assert "LLMFT_SERVICE_WAIT_SECONDS=2" in str(at_start.value)
