"""The held-out questions: the documents split (made on chunks before any generation so that
nothing leaks across it) and the closed-book split (made on the training side's pairs).

Neighbouring chunks share words (the overlap) and multi-hop questions read two of them, so
the unit that is split is a *group*: up to `split.groupChunks` consecutive chunks of one
document. A whole group lands on one side, and a multi-hop question only ever pairs a chunk
with a neighbour from its own group. Every pair's context chunks are therefore on the same
side as its primary chunk; a pair that would break this is dropped (reason `cross_split`)
as a last safeguard.

The closed-book split asks about documents the model trains on: a seeded share of the training
side's pairs (stratified by source document) becomes eval_closed_book.jsonl, and every other
training pair that paraphrases one of them (shares `paraphraseThreshold` of its question's
content words, or gives the same answer from the same chunk) is left out of train.jsonl, so a
closed-book arm can only answer from what it learned from the documents.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmft.sampling import stratified_indices
from llmft.workloads.datagen.chunking import Chunk
from llmft.workloads.datagen.quality import content_words

TRAIN, EVAL, CLOSED_BOOK = "train", "eval", "closed-book"
CLOSED_BOOK_RULE = (
    "split.closedBookFraction of the training pairs, drawn with split.seed and stratified by "
    "source document, are closed-book eval questions; a training pair whose question shares "
    "split.paraphraseThreshold of its content words with one of them (Jaccard), or whose answer "
    "repeats one of theirs from the same chunk, is left out of training as a paraphrase"
)
SAME_ANSWER = 0.8  # content-word Jaccard of two answers from one chunk: the same fact


@dataclass(frozen=True)
class SplitPlan:
    """Which side each chunk is on, and which neighbour a chunk's multi-hop questions use."""

    side: dict[str, str]
    neighbour: dict[str, Chunk | None]
    groups: int

    def sides_of(self, chunk_ids: Sequence[str]) -> set[str]:
        return {self.side[c] for c in chunk_ids}


def group_chunks(chunks: Sequence[Chunk], group_size: int) -> list[list[Chunk]]:
    """Consecutive chunks of one document, at most `group_size` per group, in input order."""
    groups: list[list[Chunk]] = []
    for chunk in chunks:
        last = groups[-1] if groups else None
        if last is not None and last[-1].source == chunk.source and len(last) < group_size:
            last.append(chunk)
        else:
            groups.append([chunk])
    return groups


def plan_split(
    chunks: Sequence[Chunk], eval_fraction: float, seed: int, group_size: int
) -> SplitPlan:
    """Shuffle the groups with `seed` and hold out groups until `eval_fraction` of the chunks
    are on the eval side; with two or more groups both sides get at least one."""
    groups = group_chunks(chunks, group_size)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    # No documents split (closed-book only): every chunk trains.
    target = max(1, round(eval_fraction * len(chunks))) if eval_fraction > 0 else 0
    side: dict[str, str] = {}
    held = 0
    for rank, g in enumerate(order):
        # The last group always trains, so a tiny input never ends up with nothing to train on.
        to_eval = held < target and rank < len(order) - 1
        for chunk in groups[g]:
            side[chunk.id] = EVAL if to_eval else TRAIN
        if to_eval:
            held += len(groups[g])
    neighbour: dict[str, Chunk | None] = {}
    for group in groups:
        for i, chunk in enumerate(group):
            if i + 1 < len(group):
                neighbour[chunk.id] = group[i + 1]
            elif i > 0:
                neighbour[chunk.id] = group[i - 1]
            else:
                neighbour[chunk.id] = None
    return SplitPlan(side, neighbour, len(groups))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def is_paraphrase(pair: dict[str, Any], held: dict[str, Any], threshold: float) -> bool:
    """Whether a training pair asks (or answers) what a closed-book question does."""
    question = frozenset(content_words(pair["question"]))
    if _overlap(question, frozenset(content_words(held["question"]))) >= threshold:
        return True
    if pair.get("chunk_id") != held.get("chunk_id"):
        return False
    answer = frozenset(content_words(pair["answer"]))
    return _overlap(answer, frozenset(content_words(held["answer"]))) >= SAME_ANSWER


@dataclass(frozen=True)
class ClosedBook:
    """The closed-book questions, the training pairs left, and the paraphrases left out."""

    questions: list[dict[str, Any]]
    train: list[dict[str, Any]]
    paraphrases: int


def hold_out_closed_book(
    train: Sequence[dict[str, Any]], fraction: float, seed: int, threshold: float
) -> ClosedBook:
    """Hold out `fraction` of the training pairs (at least one when there are two or more) as
    closed-book questions and drop their paraphrases from training."""
    if len(train) < 2:
        return ClosedBook([], list(train), 0)
    k = min(len(train) - 1, max(1, round(fraction * len(train))))
    chosen = set(stratified_indices([str(p.get("source", "")) for p in train], k, seed))
    held = [p for i, p in enumerate(train) if i in chosen]
    kept: list[dict[str, Any]] = []
    paraphrases = 0
    for i, pair in enumerate(train):
        if i in chosen:
            continue
        if any(is_paraphrase(pair, h, threshold) for h in held):
            paraphrases += 1
        else:
            kept.append(pair)
    return ClosedBook(held, kept, paraphrases)
