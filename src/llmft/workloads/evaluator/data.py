"""The held-out questions an Evaluation answers: eval.jsonl from a dataset directory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmft.api.layout import CHUNKS, DATASET_MANIFEST, INSTRUCT_EVAL, INSTRUCT_EVAL_CLOSED_BOOK
from llmft.jsonfiles import JsonLinesError, iter_jsonl
from llmft.sampling import stratified_indices
from llmft.workloads.entry import WorkloadError


@dataclass(frozen=True)
class EvalItem:
    """One question with its reference answer and the chunks the answer was written from."""

    id: str
    question: str
    reference: str
    gold_chunk_ids: tuple[str, ...] = ()
    source: str = ""


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


def stratified_sample(items: Sequence[EvalItem], k: int, seed: int) -> list[EvalItem]:
    """`k` items drawn with `seed`, each source document keeping its share, in file order."""
    return [items[i] for i in stratified_indices([i.source for i in items], k, seed)]


SPLIT_FILES = {"documents": INSTRUCT_EVAL, "closed-book": INSTRUCT_EVAL_CLOSED_BOOK}
SPLIT_MEANING = {
    "documents": "questions about documents held out of all training (generalisation)",
    "closed-book": "questions about documents the tuned arms trained on (knowledge injection)",
}


def split_file(directory: Path, split: str) -> Path:
    """The eval file of `split`; an error naming spec.split when the dataset did not make it."""
    path = directory / SPLIT_FILES[split]
    if path.exists():
        return path
    made = ""
    manifest = directory / DATASET_MANIFEST
    if manifest.exists():
        try:
            purposes = json.loads(manifest.read_text()).get("split", {}).get("purposes")
        except (json.JSONDecodeError, AttributeError):
            purposes = None
        if purposes:
            made = f"; its DatasetGeneration made {purposes} (spec.split.purposes)"
    if made or split != "documents":
        raise WorkloadError(f"spec.split: {split}: {path} does not exist{made}")
    raise WorkloadError(f"spec.dataset.path: {path} does not exist (no eval split)")


def load_eval_items(
    directory: Path, max_items: int | None = None, seed: int = 0, split: str = "documents"
) -> list[EvalItem]:
    """Read the split's eval file (id, question, answer, chunk_id, context_chunk_ids, source);
    errors name the line. With `max_items`, a sample stratified by source document."""
    path = split_file(directory, split)
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
        source = str(row.get("source") or "")
        items.append(EvalItem(item_id, question, answer, tuple(str(g) for g in gold), source))
    if not items:
        raise WorkloadError(f"spec.dataset.path: {path} holds no questions")
    return items if max_items is None else stratified_sample(items, max_items, seed)


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
