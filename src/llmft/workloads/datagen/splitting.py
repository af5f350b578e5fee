"""The train/eval split, made on chunks before any generation so that nothing leaks across it.

Neighbouring chunks share words (the overlap) and multi-hop questions read two of them, so
the unit that is split is a *group*: up to `split.groupChunks` consecutive chunks of one
document. A whole group lands on one side, and a multi-hop question only ever pairs a chunk
with a neighbour from its own group. Every pair's context chunks are therefore on the same
side as its primary chunk; a pair that would break this is dropped (reason `cross_split`)
as a last safeguard.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from llmft.workloads.datagen.chunking import Chunk

TRAIN, EVAL = "train", "eval"


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
    target = max(1, round(eval_fraction * len(chunks)))
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
