"""The held-out questions an Evaluation answers: eval.jsonl from a dataset directory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from llmft.api.layout import CHUNKS, INSTRUCT_EVAL
from llmft.jsonfiles import JsonLinesError, iter_jsonl
from llmft.workloads.entry import WorkloadError


@dataclass(frozen=True)
class EvalItem:
    """One question with its reference answer and the chunks the answer was written from."""

    id: str
    question: str
    reference: str
    gold_chunk_ids: tuple[str, ...] = ()


def dataset_dir(path: str | None) -> Path:
    """The resolved dataset directory; the runner or operator must have filled it in."""
    if not path:
        raise WorkloadError(
            "spec.dataset.path: not set (a datasetGenerationRef must be resolved to its "
            "output directory before the workload runs)"
        )
    from llmft.workloads.hubsource import local_dataset

    directory = local_dataset(path)
    if not directory.is_dir():
        raise WorkloadError(f"spec.dataset.path: {directory} is not a directory")
    return directory


def load_eval_items(directory: Path, max_items: int | None = None) -> list[EvalItem]:
    """Read eval.jsonl (id, question, answer, chunk_id, context_chunk_ids); errors name the line."""
    path = directory / INSTRUCT_EVAL
    if not path.exists():
        raise WorkloadError(f"spec.dataset.path: {path} does not exist (no eval split)")
    items: list[EvalItem] = []
    seen: set[str] = set()
    try:
        rows = list(iter_jsonl(path))
    except JsonLinesError as err:
        raise WorkloadError(str(err)) from None
    for lineno, row in rows:
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not question.strip():
            raise WorkloadError(f"{path}:{lineno}: 'question' must be a non-empty string")
        if not isinstance(answer, str) or not answer.strip():
            raise WorkloadError(f"{path}:{lineno}: 'answer' must be a non-empty string")
        item_id = str(row.get("id") or f"line{lineno}")
        if item_id in seen:
            raise WorkloadError(f"{path}:{lineno}: duplicate id {item_id!r}")
        seen.add(item_id)
        gold = row.get("context_chunk_ids") or ([row["chunk_id"]] if row.get("chunk_id") else [])
        items.append(EvalItem(item_id, question, answer, tuple(str(g) for g in gold)))
        if max_items is not None and len(items) >= max_items:
            break
    if not items:
        raise WorkloadError(f"spec.dataset.path: {path} holds no questions")
    return items


def chunks_path(directory: Path) -> Path:
    path = directory / CHUNKS
    if not path.exists():
        raise WorkloadError(
            f"spec.dataset.path: {path} does not exist, and RAG arms retrieve from it"
        )
    return path


def items_fingerprint(items: list[EvalItem]) -> str:
    """What the answers depend on from the data side (used to resume finished arms)."""
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps([item.id, item.question, item.reference, item.gold_chunk_ids]).encode())
    return h.hexdigest()[:16]
