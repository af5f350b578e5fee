"""The split is made on groups of neighbouring chunks, with a fixed seed, so nothing leaks."""

from __future__ import annotations

from pathlib import Path

from llmft.api.datasetgeneration import Chunking, DocumentSource
from llmft.workloads.datagen.chunking import Chunk, RegexTokenCounter, chunk_documents
from llmft.workloads.datagen.documents import ingest
from llmft.workloads.datagen.splitting import EVAL, TRAIN, group_chunks, plan_split


def _handbook_chunks(handbook: Path) -> list[Chunk]:
    docs = ingest(DocumentSource(path=str(handbook))).documents
    return chunk_documents(docs, RegexTokenCounter(), Chunking(max_tokens=128)).chunks


def test_the_same_seed_gives_the_same_split(handbook: Path) -> None:
    chunks = _handbook_chunks(handbook)
    assert plan_split(chunks, 0.2, 7, 4).side == plan_split(chunks, 0.2, 7, 4).side
    assert plan_split(chunks, 0.2, 7, 4).side != plan_split(chunks, 0.2, 8, 4).side


def test_the_eval_share_is_close_to_the_fraction(handbook: Path) -> None:
    chunks = _handbook_chunks(handbook)
    side = plan_split(chunks, 0.25, 42, 4).side
    share = sum(1 for s in side.values() if s == EVAL) / len(chunks)
    assert 0.2 <= share <= 0.32


def test_groups_are_neighbours_of_one_document() -> None:
    chunks = [Chunk(f"{s}-{i}", "t", s, i, 0, 1, None, None, 1) for s in "ab" for i in range(5)]
    groups = group_chunks(chunks, 2)
    assert [[c.id for c in g] for g in groups] == [
        ["a-0", "a-1"], ["a-2", "a-3"], ["a-4"], ["b-0", "b-1"], ["b-2", "b-3"], ["b-4"],
    ]  # fmt: skip


def test_no_chunk_or_multihop_neighbour_crosses_the_split(handbook: Path) -> None:
    chunks = _handbook_chunks(handbook)
    plan = plan_split(chunks, 0.3, 1, 3)
    assert set(plan.side.values()) == {TRAIN, EVAL}
    for chunk in chunks:
        neighbour = plan.neighbour[chunk.id]
        if neighbour is not None:
            assert neighbour.source == chunk.source
            assert abs(neighbour.index - chunk.index) == 1
            assert plan.side[neighbour.id] == plan.side[chunk.id]


def test_overlapping_neighbours_fall_on_one_side(handbook: Path) -> None:
    # Chunks that share overlap text are consecutive in one section; within a group they move
    # together, so what leaks is at most the overlap at a group's edge, never a whole chunk.
    chunks = _handbook_chunks(handbook)
    plan = plan_split(chunks, 0.3, 1, 64)
    by_source: dict[str, set[str]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk.source, set()).add(plan.side[chunk.id])
    assert all(len(sides) == 1 for sides in by_source.values())  # a group spans a document


def test_a_single_group_trains() -> None:
    chunks = [Chunk(f"a-{i}", "t", "a", i, 0, 1, None, None, 1) for i in range(3)]
    assert set(plan_split(chunks, 0.5, 0, 4).side.values()) == {TRAIN}
