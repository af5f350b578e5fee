"""Training data for the two modes: packed corpus text (causal) or chat pairs (instruct, RAG).

Instruct examples are trl "prompt-completion" conversations: the prompt is exactly the
`llmft.prompts.build_messages` the evaluator sends, the completion is the reference answer, so
the loss falls on the answer alone and training sees the same words as evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft import jsonfiles
from llmft.api.finetunejob import FineTuneJobSpec
from llmft.api.layout import CHUNKS, CORPUS_EVAL, CORPUS_TRAIN, INSTRUCT_EVAL, INSTRUCT_TRAIN
from llmft.models import MINILM
from llmft.prompts import build_messages
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.trainer.data")

# The evaluator's default embedding model (Evaluation.spec.retrieval.embeddingModel); the
# packaged copy of the same weights is preferred, so training needs no Hub access.
RETRIEVER_EMBEDDING_MODELS = (MINILM, "sentence-transformers/all-MiniLM-L6-v2")


@dataclass
class TrainingData:
    """Rows ready for trl's SFTTrainer, and where they came from."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    train_file: Path
    eval_file: Path | None
    mode: str

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "trainFile": str(self.train_file),
            "evalFile": str(self.eval_file) if self.eval_file else None,
            "trainExamples": len(self.train),
            "evalExamples": len(self.eval),
        }


def read_jsonl(path: Path, field: str) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a broken line is an error naming the field, file and line."""
    try:
        return jsonfiles.read_jsonl(path)
    except jsonfiles.JsonLinesError as err:
        raise WorkloadError(f"{field}: {err}") from None


def _dataset_dir(spec: FineTuneJobSpec) -> Path:
    if spec.dataset.path is None:
        raise WorkloadError(
            "spec.dataset.path: unset; the resolved spec must name the dataset directory "
            "(datasetGenerationRef is replaced by its output path before the workload runs)"
        )
    from llmft.workloads.hubsource import local_dataset

    root = local_dataset(spec.dataset.path)
    if not root.is_dir():
        raise WorkloadError(f"spec.dataset.path: {root} is not a directory")
    return root


def _required_file(root: Path, name: str) -> Path:
    path = root / name
    if not path.exists():
        present = sorted(p.name for p in root.iterdir()) or ["nothing"]
        raise WorkloadError(
            f"spec.dataset.path: {root} has no {name} (it holds {', '.join(present)})"
        )
    return path


def _text_rows(path: Path, field: str) -> list[dict[str, Any]]:
    rows = []
    for i, obj in enumerate(read_jsonl(path, field), start=1):
        text = obj.get("text")
        if not isinstance(text, str):
            raise WorkloadError(f"{field}: {path}: row {i} has no string 'text'")
        if text.strip():
            rows.append({"text": text})
    return rows


def _pair(obj: dict[str, Any], path: Path, i: int, field: str) -> tuple[str, str]:
    question, answer = obj.get("question"), obj.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise WorkloadError(f"{field}: {path}: row {i} has no 'question'")
    if not isinstance(answer, str) or not answer.strip():
        raise WorkloadError(f"{field}: {path}: row {i} has no 'answer'")
    return question, answer


class ContextSource:
    """The passages a RAG prompt shows for a question, as the spec's `rag` block says."""

    def __init__(self, spec: FineTuneJobSpec, root: Path) -> None:
        self.top_k = spec.rag.top_k
        self.source = spec.rag.context_source
        self.chunk_text: dict[str, str] = {}
        chunks_file = root / CHUNKS
        if chunks_file.exists():
            for obj in read_jsonl(chunks_file, "spec.dataset.path"):
                if obj.get("id") and isinstance(obj.get("text"), str):
                    self.chunk_text[str(obj["id"])] = obj["text"]
        self._retrieved: dict[str, list[str]] = {}
        if self.source == "retriever":
            self._retrieved_for = self._retrieve_all(chunks_file)

    def _retrieve_all(self, chunks_file: Path) -> Any:
        from llmft.retrieval import Chunk, EmbeddedRetriever, Embedder, load_chunks

        if not chunks_file.exists():
            raise WorkloadError(
                f"spec.rag.contextSource: retriever needs {chunks_file} to index (the dataset "
                "has no chunks)"
            )
        # Only training-side chunks: retrieving an eval chunk would show eval text in training.
        train_ids = {
            str(o["id"])
            for o in read_jsonl(chunks_file, "spec.dataset.path")
            if o.get("split", "train") == "train"
        }
        chunks: list[Chunk] = [c for c in load_chunks(chunks_file) if c.id in train_ids]
        embedder = None
        errors = []
        for name in RETRIEVER_EMBEDDING_MODELS:
            try:
                embedder = Embedder(name)
                break
            except Exception as err:  # the packaged copy may be missing; try the Hub id
                errors.append(f"{name}: {type(err).__name__}: {err}")
        if embedder is None:
            raise WorkloadError(
                "spec.rag.contextSource: retriever needs a sentence-embedding model; none could "
                "be loaded (" + "; ".join(errors) + ")"
            )
        retriever = EmbeddedRetriever(embedder)
        retriever.index(chunks)
        log.info("indexed %d training chunks with %s", len(chunks), embedder.name)
        return retriever

    def prepare(self, questions: Sequence[str]) -> None:
        """Retrieve for every question at once (one embedding batch instead of one per row)."""
        if self.source != "retriever":
            return
        todo = [q for q in dict.fromkeys(questions) if q not in self._retrieved]
        for q, hits in zip(todo, self._retrieved_for.search_many(todo, self.top_k), strict=True):
            self._retrieved[q] = [h.text for h in hits]

    def passages(self, obj: dict[str, Any], question: str) -> list[str]:
        if self.source == "retriever":
            return self._retrieved[question]
        ids = obj.get("context_chunk_ids") or []
        if ids and all(str(i) in self.chunk_text for i in ids):
            return [self.chunk_text[str(i)] for i in ids][: self.top_k]
        context = obj.get("context")
        if isinstance(context, str) and context.strip():
            return [context]
        if isinstance(context, list):
            return [str(c) for c in context if str(c).strip()][: self.top_k]
        return []


def instruct_rows(path: Path, field: str, context: ContextSource | None) -> list[dict[str, Any]]:
    """prompt/completion conversations for each question/answer pair of `path`."""
    raw = read_jsonl(path, field)
    pairs = [_pair(obj, path, i, field) for i, obj in enumerate(raw, start=1)]
    if context is not None:
        context.prepare([q for q, _ in pairs])
    rows = []
    missing = 0
    for obj, (question, answer) in zip(raw, pairs, strict=True):
        passages = context.passages(obj, question) if context is not None else None
        if context is not None and not passages:
            missing += 1
        rows.append(
            {
                "prompt": build_messages(question, passages),
                "completion": [{"role": "assistant", "content": answer.strip()}],
            }
        )
    if missing:
        log.warning(
            "%s: %d of %d pairs have no context for the RAG prompt", path, missing, len(raw)
        )
    return rows


def load_training_data(spec: FineTuneJobSpec) -> TrainingData:
    """Read the dataset directory for the spec's mode; missing or empty data is a clear error."""
    root = _dataset_dir(spec)
    if spec.mode == "causal":
        train_name, eval_name = CORPUS_TRAIN, CORPUS_EVAL
    else:
        train_name, eval_name = INSTRUCT_TRAIN, INSTRUCT_EVAL
    train_file = _required_file(root, train_name)
    eval_file = root / eval_name if (root / eval_name).exists() else None
    field = "spec.dataset.path"
    if spec.mode == "causal":
        train = _text_rows(train_file, field)
        evals = _text_rows(eval_file, field) if eval_file else []
    else:
        context = ContextSource(spec, root) if spec.rag.enabled else None
        train = instruct_rows(train_file, field, context)
        evals = instruct_rows(eval_file, field, context) if eval_file else []
    if not train:
        raise WorkloadError(
            f"{field}: {train_file} is empty: there is nothing to train on in {spec.mode} mode"
        )
    return TrainingData(train, evals, train_file, eval_file if evals else None, spec.mode)
