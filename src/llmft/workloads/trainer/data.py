"""Training data for the two modes: packed corpus text (causal) or chat pairs (instruct, RAG).

Instruct examples are trl "prompt-completion" conversations: the prompt is exactly the
`llmft.prompts.build_messages` the evaluator sends, the completion is the reference answer, so
the loss falls on the answer alone and training sees the same words as evaluation.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft import jsonfiles
from llmft.api.finetunejob import FineTuneJobSpec
from llmft.api.layout import CHUNKS, CORPUS_EVAL, CORPUS_TRAIN, INSTRUCT_EVAL, INSTRUCT_TRAIN
from llmft.prompts import build_messages
from llmft.retrieval import Retrieved
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.trainer.data")


@dataclass
class TrainingData:
    """Rows ready for trl's SFTTrainer, and where they came from."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    train_file: Path
    eval_file: Path | None
    mode: str
    lengths: LengthReport | None = None

    def describe(self) -> dict[str, Any]:
        out = {
            "mode": self.mode,
            "trainFile": str(self.train_file),
            "evalFile": str(self.eval_file) if self.eval_file else None,
            "trainExamples": len(self.train),
            "evalExamples": len(self.eval),
        }
        if self.lengths is not None:
            out |= self.lengths.to_json()
        return out


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
    """The passages a RAG training prompt shows for a question, as the spec's `rag` block says.

    With the retriever source the index, embedding model and top-k are the Evaluation's
    (`spec.rag.retrieval` has the shape of its `spec.retrieval`) and the prompt is built by the
    same `llmft.workloads.rag` code, over the training chunks only.
    """

    def __init__(self, spec: FineTuneJobSpec, root: Path, collection: str = "Llmft_train") -> None:
        self.rag = spec.rag
        self.rng = random.Random(spec.hyperparameters.seed)
        self.chunk_text: dict[str, str] = {}
        chunks_file = root / CHUNKS
        if chunks_file.exists():
            for obj in read_jsonl(chunks_file, "spec.dataset.path"):
                if obj.get("id") and isinstance(obj.get("text"), str):
                    self.chunk_text[str(obj["id"])] = obj["text"]
        self._retrieved: dict[str, list[Retrieved]] = {}
        self.retriever: Any = None
        self.backend: str | None = None
        if self.rag.context_source == "retriever":
            self.retriever = self._open(chunks_file, collection)

    def _open(self, chunks_file: Path, collection: str) -> Any:
        from llmft.retrieval import load_chunks
        from llmft.workloads.rag import load_embedder, open_index

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
        chunks = [c for c in load_chunks(chunks_file) if c.id in train_ids]
        cfg = self.rag.retrieval
        embedder = load_embedder(cfg.embedding_model, "spec.rag.retrieval.embeddingModel")
        retriever = open_index(cfg, "spec.rag.retrieval", embedder, chunks, collection + "_Train")
        self.backend = retriever.backend
        return retriever

    def close(self) -> None:
        if self.retriever is not None:
            self.retriever.close()

    def prepare(self, questions: Sequence[str]) -> None:
        """Retrieve for every question at once (one embedding batch instead of one per row)."""
        if self.retriever is None:
            return
        from llmft.workloads.rag import search, search_depth

        todo = [q for q in dict.fromkeys(questions) if q not in self._retrieved]
        rag = self.rag
        depth = search_depth(rag.top_k, rag.distractors, rag.gold_probability)
        found = search(self.retriever, todo, depth, "spec.rag.retrieval")
        for q, hits in zip(todo, found, strict=True):
            self._retrieved[q] = hits

    def hits(self, obj: dict[str, Any], question: str) -> list[Retrieved]:
        """The retrieved chunks for a pair: the evaluation's top-k, or its RAFT context."""
        from llmft.workloads.rag import raft_context

        found = self._retrieved[question]
        if self.rag.gold_probability is None:
            return found[: self.rag.top_k]
        ids = [str(i) for i in obj.get("context_chunk_ids") or [obj.get("chunk_id")] if i]
        gold = {i: self.chunk_text[i] for i in ids if i in self.chunk_text}
        return raft_context(
            found, gold, self.rag.top_k, self.rag.gold_probability, self.rag.distractors, self.rng
        )

    def messages(self, obj: dict[str, Any], question: str) -> list[dict[str, str]] | None:
        """The prompt messages with context; None when there is no context for this pair."""
        from llmft.workloads.rag import rag_messages

        if self.retriever is not None:
            hits = self.hits(obj, question)
            return rag_messages(question, hits) if hits else None
        passages = self._dataset_passages(obj)
        return build_messages(question, passages) if passages else None

    def _dataset_passages(self, obj: dict[str, Any]) -> list[str]:
        top_k = self.rag.top_k
        ids = obj.get("context_chunk_ids") or []
        if ids and all(str(i) in self.chunk_text for i in ids):
            return [self.chunk_text[str(i)] for i in ids][:top_k]
        context = obj.get("context")
        if isinstance(context, str) and context.strip():
            return [context]
        if isinstance(context, list):
            return [str(c) for c in context if str(c).strip()][:top_k]
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
        prompt = context.messages(obj, question) if context is not None else None
        if context is not None and prompt is None:
            missing += 1
        rows.append(
            {
                "prompt": prompt or build_messages(question),
                "completion": [{"role": "assistant", "content": answer.strip()}],
            }
        )
    if missing:
        log.warning(
            "%s: %d of %d pairs have no context for the RAG prompt", path, missing, len(raw)
        )
    return rows


@dataclass(frozen=True)
class LengthReport:
    """How the training rows fit `hyperparameters.maxSeqLength`."""

    rows: int
    truncated: int  # longer than maxSeqLength: the end of the answer (or text) is cut
    dropped: int  # the prompt alone fills maxSeqLength: no answer token left to learn from
    max_seq_length: int
    longest: int

    @property
    def share(self) -> float:
        return (self.truncated + self.dropped) / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "truncatedRows": self.truncated,
            "droppedRows": self.dropped,
            "truncatedShare": round(self.share, 4),
            "longestRowTokens": self.longest,
        }


def check_lengths(report: LengthReport, spec: FineTuneJobSpec, train_file: Path) -> None:
    """Fail, naming maxSeqLength, when more rows than allowed do not fit."""
    allowed = spec.hyperparameters.max_truncated_share
    if report.share <= allowed and report.dropped < report.rows:
        if report.truncated or report.dropped:
            log.warning(
                "%d of %d training rows are longer than maxSeqLength %d (%d truncated, %d "
                "dropped: no answer token fits)",
                report.truncated + report.dropped, report.rows, report.max_seq_length,
                report.truncated, report.dropped,
            )  # fmt: skip
        return
    raise WorkloadError(
        f"spec.hyperparameters.maxSeqLength: {report.truncated + report.dropped} of "
        f"{report.rows} training rows in {train_file} do not fit {report.max_seq_length} tokens "
        f"({report.truncated} truncated, {report.dropped} with no room left for the answer; "
        f"longest {report.longest} tokens), {report.share:.0%} of the rows, above "
        f"spec.hyperparameters.maxTruncatedShare {allowed:.0%}: raise maxSeqLength (or "
        "shorten the prompts: fewer RAG passages, smaller chunks)"
    )


def load_training_data(spec: FineTuneJobSpec, collection: str = "Llmft_train") -> TrainingData:
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
        context = ContextSource(spec, root, collection) if spec.rag.enabled else None
        try:
            train = instruct_rows(train_file, field, context)
            evals = instruct_rows(eval_file, field, context) if eval_file else []
        finally:
            if context is not None:
                context.close()
    if not train:
        raise WorkloadError(
            f"{field}: {train_file} is empty: there is nothing to train on in {spec.mode} mode"
        )
    return TrainingData(train, evals, train_file, eval_file if evals else None, spec.mode)
