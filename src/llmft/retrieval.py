"""Retrieval of context chunks for RAG prompts: Weaviate, or an in-process numpy store.

Both backends index the dataset's `chunks.jsonl` with vectors from one sentence-embedding model
(Weaviate runs without a vectorizer: we bring the vectors) and return the top-k chunks by cosine
similarity. The evaluator uses it for RAG arms; the trainer may use it for retrieved training
context. `open_retriever` picks the backend: `weaviate`, `embedded`, or `auto` (Weaviate when its
readiness endpoint answers, the embedded store otherwise).

Indexing is idempotent: chunks get UUIDs derived from the collection and chunk id, and every
object carries a fingerprint of (embedding model, chunks); a collection that already holds
exactly this fingerprint is reused as is, any other content is replaced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlparse

import numpy as np

from llmft.api.layout import ENV_WEAVIATE_API_KEY
from llmft.jsonfiles import JsonLinesError, iter_jsonl
from llmft.models import resolve_model
from llmft.services import ServiceUnavailable, Wait, call_service

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("llmft.retrieval")

Backend = Literal["weaviate", "embedded", "auto"]


class RetrievalError(RuntimeError):
    """The index cannot be built or queried; the message says which setting to check."""


@dataclass(frozen=True)
class Chunk:
    """One indexable passage from chunks.jsonl."""

    id: str
    text: str
    source: str = ""


@dataclass(frozen=True)
class Retrieved:
    """A chunk returned for a query, with its cosine similarity."""

    chunk_id: str
    text: str
    score: float


def load_chunks(path: str | Path) -> list[Chunk]:
    """Read chunks.jsonl (fields id, text, source, ...); a chunk without id or text is an error."""
    path = Path(path)
    if not path.exists():
        raise RetrievalError(f"{path}: no such file (the dataset has no chunks for RAG)")
    chunks: list[Chunk] = []
    seen: set[str] = set()
    try:
        rows = list(iter_jsonl(path))
    except JsonLinesError as err:
        raise RetrievalError(str(err)) from None
    for lineno, obj in rows:
        cid, text = obj.get("id"), obj.get("text")
        if not cid or not isinstance(text, str):
            raise RetrievalError(f"{path}:{lineno}: a chunk needs a non-empty 'id' and a 'text'")
        if str(cid) in seen:
            continue  # the same chunk twice adds nothing to an index
        seen.add(str(cid))
        chunks.append(Chunk(str(cid), text, str(obj.get("source") or "")))
    return chunks


class Embedder:
    """A sentence-transformers model that turns texts into unit-length vectors."""

    def __init__(self, model_name: str, device: str | None = None, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = model_name
        location = resolve_model(model_name)
        self.model: SentenceTransformer = SentenceTransformer(location.path_or_id, device=device)
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def dimension(self) -> int:
        dim = self.model.get_sentence_embedding_dimension()
        if dim is None:
            raise RetrievalError(f"embedding model {self.name}: unknown vector dimension")
        return int(dim)


class Retriever(Protocol):
    """Index chunks once, then return the top-k chunks for questions."""

    backend: str

    def index(self, chunks: Sequence[Chunk]) -> None: ...

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Retrieved]]: ...

    def close(self) -> None: ...


def fingerprint(chunks: Sequence[Chunk], embedding_model: str) -> str:
    """What the vectors in an index depend on: the embedding model and every chunk's id and text."""
    h = hashlib.sha256(embedding_model.encode())
    for c in chunks:
        h.update(b"\0" + c.id.encode() + b"\0" + c.text.encode())
    return h.hexdigest()[:32]


class EmbeddedRetriever:
    """Cosine similarity over an in-memory matrix of chunk vectors; no server needed."""

    backend = "embedded"

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.chunks: list[Chunk] = []
        self.matrix = np.zeros((0, 0), dtype=np.float32)

    def index(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = list(chunks)
        self.matrix = self.embedder.encode([c.text for c in self.chunks])

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Retrieved]]:
        if not self.chunks or not queries:
            return [[] for _ in queries]
        sims = self.embedder.encode(queries) @ self.matrix.T
        k = min(k, len(self.chunks))
        results = []
        for row in sims:
            # stable sort: equal scores keep index order, so results are deterministic
            top = np.argsort(-row, kind="stable")[:k]
            results.append(
                [Retrieved(self.chunks[i].id, self.chunks[i].text, float(row[i])) for i in top]
            )
        return results

    def close(self) -> None:
        return None


def collection_name(raw: str) -> str:
    """A valid Weaviate collection name from any string (letters, digits, _; capital first)."""
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", raw)
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "C" + cleaned
    return cleaned[0].upper() + cleaned[1:]


def weaviate_transient(err: Exception) -> bool:
    """Whether a Weaviate client error means the server is down or restarting (worth a retry)."""
    from weaviate import exceptions as wx

    down = (
        wx.WeaviateConnectionError,
        wx.WeaviateStartUpError,
        wx.WeaviateGRPCUnavailableError,
        wx.WeaviateTimeoutError,
        wx.WeaviateRetryError,
        ConnectionError,
        TimeoutError,
    )
    if isinstance(err, down):
        return True
    if isinstance(err, wx.UnexpectedStatusCodeError):
        return err.status_code == 429 or err.status_code >= 500
    if isinstance(err, wx.WeaviateQueryError):  # gRPC: the channel's status
        return any(code in str(err) for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"))
    return False


def weaviate_ready(url: str, timeout: float = 3.0) -> bool:
    """True when Weaviate's readiness endpoint answers 2xx."""
    try:
        ready = url.rstrip("/") + "/v1/.well-known/ready"
        with urllib.request.urlopen(ready, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class WeaviateRetriever:
    """Chunks in a Weaviate collection without vectorizer; queries by our own vectors."""

    backend = "weaviate"

    def __init__(
        self,
        embedder: Embedder,
        url: str,
        grpc_port: int,
        collection: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        wait: Wait | None = None,
    ) -> None:
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        self.embedder = embedder
        self.collection_name = collection_name(collection)
        parsed = urlparse(url)
        if not parsed.hostname:
            raise RetrievalError(f"retrieval.weaviateUrl {url!r}: not a URL (http://host:port)")
        secure = parsed.scheme == "https"
        self.what = f"Weaviate at {url} (gRPC port {grpc_port})"

        def connect() -> Any:
            return weaviate.connect_to_custom(
                http_host=parsed.hostname,
                http_port=parsed.port or (443 if secure else 80),
                http_secure=secure,
                grpc_host=parsed.hostname,
                grpc_port=grpc_port,
                grpc_secure=secure,
                auth_credentials=Auth.api_key(api_key) if api_key else None,
                additional_config=AdditionalConfig(timeout=Timeout(init=timeout, query=timeout)),
            )

        try:
            self.client = call_service(self.what, connect, weaviate_transient, wait)
        except ServiceUnavailable as err:
            raise RetrievalError(f"retrieval.weaviateUrl: {err}") from err
        except Exception as err:
            raise RetrievalError(
                f"retrieval.weaviateUrl {url} (gRPC port {grpc_port}): cannot connect: {err}"
            ) from err

    def _create(self) -> Any:
        from weaviate.classes.config import Configure, DataType, Property

        props = [
            Property(name="chunk_id", data_type=DataType.TEXT),
            Property(name="text", data_type=DataType.TEXT),
            Property(name="source", data_type=DataType.TEXT),
            Property(name="fingerprint", data_type=DataType.TEXT),
        ]
        return self.client.collections.create(
            self.collection_name,
            properties=props,
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=_cosine_distance())
            ),
        )

    def index(self, chunks: Sequence[Chunk]) -> None:
        from weaviate.classes.query import Filter
        from weaviate.util import generate_uuid5

        fp = fingerprint(chunks, self.embedder.name)
        cols = self.client.collections
        if cols.exists(self.collection_name):
            coll = cols.get(self.collection_name)
            total = coll.aggregate.over_all(total_count=True).total_count
            same = coll.aggregate.over_all(
                filters=Filter.by_property("fingerprint").equal(fp), total_count=True
            ).total_count
            if total == same == len(chunks):
                log.info("collection %s already indexed (%d chunks)", self.collection_name, total)
                return
            # different chunks or a different embedding model (maybe another vector size)
            cols.delete(self.collection_name)
        coll = self._create()
        vectors = self.embedder.encode([c.text for c in chunks])
        with coll.batch.fixed_size(batch_size=128) as batch:
            for chunk, vec in zip(chunks, vectors, strict=True):
                batch.add_object(
                    properties={
                        "chunk_id": chunk.id,
                        "text": chunk.text,
                        "source": chunk.source,
                        "fingerprint": fp,
                    },
                    uuid=generate_uuid5(chunk.id, self.collection_name),
                    vector=vec.tolist(),
                )
        failed = coll.batch.failed_objects
        if failed:
            raise RetrievalError(
                f"Weaviate collection {self.collection_name}: {len(failed)} chunks failed to "
                f"index, first: {failed[0].message}"
            )

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Retrieved]]:
        from weaviate.classes.query import MetadataQuery

        coll = self.client.collections.get(self.collection_name)
        results = []
        for vec in self.embedder.encode(queries):
            # The client itself retries a query while the server is unavailable (gRPC
            # UNAVAILABLE: 1 + 2 + ... + 32 s), so a restarted server is waited for here.
            try:
                res = coll.query.near_vector(
                    near_vector=vec.tolist(), limit=k, return_metadata=MetadataQuery(distance=True)
                )
            except Exception as err:
                if not weaviate_transient(err):
                    raise
                first = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise RetrievalError(
                    f"retrieval.weaviateUrl: {self.what} stopped answering (the client retried "
                    f"for about a minute): {type(err).__name__}: {first}"
                ) from err
            hits = []
            for obj in res.objects:
                distance = obj.metadata.distance if obj.metadata.distance is not None else 1.0
                hits.append(
                    Retrieved(
                        str(obj.properties["chunk_id"]),
                        str(obj.properties["text"]),
                        1.0 - float(distance),
                    )
                )
            results.append(hits)
        return results

    def close(self) -> None:
        self.client.close()


def _cosine_distance() -> Any:
    from weaviate.classes.config import VectorDistances

    return VectorDistances.COSINE


def open_retriever(
    backend: Backend,
    embedder: Embedder,
    weaviate_url: str = "http://weaviate:8080",
    grpc_port: int = 50051,
    collection: str = "LlmftChunks",
    api_key: str | None = None,
) -> Retriever:
    """The retriever for `backend`; `auto` falls back to the embedded store when Weaviate is down.

    The Weaviate API key defaults to the LLMFT_WEAVIATE_API_KEY environment variable (the
    operator injects it from the spec's secretKeyRef).
    """
    api_key = api_key or os.environ.get(ENV_WEAVIATE_API_KEY) or None
    if backend == "embedded":
        return EmbeddedRetriever(embedder)
    if backend == "auto" and not weaviate_ready(weaviate_url):
        log.warning("Weaviate at %s is not reachable; using the embedded store", weaviate_url)
        return EmbeddedRetriever(embedder)
    if backend not in ("weaviate", "auto"):
        raise RetrievalError(f"retrieval.backend {backend!r}: use weaviate, embedded or auto")
    return WeaviateRetriever(embedder, weaviate_url, grpc_port, collection, api_key)
