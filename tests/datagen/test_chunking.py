"""Chunking: headings first, then a token budget with overlap; every chunk knows where it is."""

from __future__ import annotations

import itertools
from pathlib import Path

from llmft.api.datasetgeneration import Chunking, DocumentSource
from llmft.workloads.datagen.chunking import (
    RegexTokenCounter,
    chunk_document,
    chunk_documents,
    token_windows,
)
from llmft.workloads.datagen.documents import (
    Document,
    Section,
    ingest,
    parse_markdown,
    parse_text,
)

COUNTER = RegexTokenCounter()


def _sentences(n: int, topic: str) -> str:
    return " ".join(f"Rule {i} of {topic} says staff must follow step {i}." for i in range(n))


def test_chunks_never_cross_a_heading() -> None:
    doc = parse_markdown(
        f"# Leave\n\n{_sentences(6, 'leave')}\n\n# Pay\n\n{_sentences(6, 'pay')}\n", "h.md"
    )
    chunks = chunk_document(doc, COUNTER, Chunking(max_tokens=512, min_tokens=10)).chunks
    assert [c.heading for c in chunks] == ["Leave", "Pay"]
    assert "pay" not in chunks[0].text and "leave" not in chunks[1].text


def test_long_sections_are_cut_to_the_budget_with_overlap() -> None:
    doc = parse_text(_sentences(40, "travel"), "t.txt")
    settings = Chunking(max_tokens=64, overlap_tokens=16, min_tokens=5)
    chunks = chunk_document(doc, COUNTER, settings).chunks
    assert len(chunks) > 5
    assert all(c.tokens <= 64 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.start_char < before.end_char  # they share text
        assert after.start_char > before.start_char


def test_overlap_starts_at_a_sentence() -> None:
    doc = parse_text(_sentences(40, "travel"), "t.txt")
    chunks = chunk_document(doc, COUNTER, Chunking(max_tokens=64, overlap_tokens=20)).chunks
    assert all(c.text.startswith("Rule ") for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)


def test_zero_overlap_tiles_the_text() -> None:
    text = _sentences(30, "pay")
    spans = COUNTER.spans(text)
    windows = token_windows(text, spans, 50, 0)
    assert windows[0][0] == 0 and windows[-1][1] == len(text)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert text[end:start].strip() == ""


def test_a_short_tail_is_shared_out_rather_than_lost() -> None:
    text = _sentences(11, "leave")  # a little more than one window's worth
    spans = COUNTER.spans(text)
    windows = token_windows(text, spans, 120, 10, min_tail=24)
    assert len(windows) == 2
    last_new = len(COUNTER.spans(text[windows[0][1] : windows[1][1]]))
    assert last_new >= 24


def test_positions_point_back_into_the_document() -> None:
    doc = parse_markdown(f"# A\n\n{_sentences(30, 'a')}\n\n## B\n\n{_sentences(30, 'b')}\n", "x.md")
    for chunk in chunk_document(doc, COUNTER, Chunking(max_tokens=80, overlap_tokens=10)).chunks:
        assert doc.text[chunk.start_char : chunk.end_char] == chunk.text
        assert chunk.position()["index"] == chunk.index


def test_near_empty_sections_join_a_neighbour_instead_of_being_lost() -> None:
    doc = parse_markdown(
        f"# Handbook\n\n## Leave\n\n{_sentences(5, 'leave')}\n\n## Contacts\n\nAsk HR.\n", "h.md"
    )
    result = chunk_document(doc, COUNTER, Chunking(max_tokens=256, min_tokens=24))
    assert len(result.chunks) == 1
    assert result.chunks[0].text.startswith("# Handbook\n\n## Leave")
    assert result.chunks[0].text.endswith("## Contacts\n\nAsk HR.")
    assert result.chunks[0].heading == "Handbook > Leave"
    assert result.skipped_near_empty == 0


def test_a_near_empty_document_is_skipped() -> None:
    doc = parse_markdown("# Contacts\n\nTo be written.\n", "stub.md")
    result = chunk_document(doc, COUNTER, Chunking(min_tokens=24))
    assert result.chunks == [] and result.skipped_near_empty == 1


def test_markup_is_not_substance() -> None:
    doc = parse_markdown("Title\n" + "=" * 60 + "\n\n| a | b |\n|---|---|\n", "m.md")
    result = chunk_document(doc, COUNTER, Chunking(min_tokens=5))
    assert result.chunks == [] and result.skipped_near_empty == 1


def test_chunk_ids_are_stable_and_unique(handbook: Path) -> None:
    docs = ingest(DocumentSource(path=str(handbook))).documents
    first = chunk_documents(docs, COUNTER, Chunking(max_tokens=256, overlap_tokens=32))
    again = chunk_documents(docs, COUNTER, Chunking(max_tokens=256, overlap_tokens=32))
    ids = [c.id for c in first.chunks]
    assert ids == [c.id for c in again.chunks]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("01-welcome-and-employment-000-")


def test_every_handbook_format_is_chunked_by_its_headings(handbook: Path) -> None:
    docs = ingest(DocumentSource(path=str(handbook))).documents
    chunks = chunk_documents(docs, COUNTER, Chunking(max_tokens=256, overlap_tokens=32)).chunks
    by_source: dict[str, list] = {}
    for c in chunks:
        by_source.setdefault(c.source, []).append(c)
    assert len(by_source) == 10
    assert all(all(c.heading for c in cs) for cs in by_source.values())
    pdf = by_source["07-travel-and-expenses.pdf"]
    assert {c.page for c in pdf} == {1, 2}
    assert any(c.heading == "Travel and Expenses > Driving" for c in pdf)


def test_a_document_without_structure_still_chunks() -> None:
    text = _sentences(50, "x").lower()
    doc = Document("plain.txt", "text", text, [Section(None, 0, len(text))])
    chunks = chunk_document(doc, COUNTER, Chunking(max_tokens=100, overlap_tokens=0)).chunks
    assert len(chunks) >= 4 and all(c.heading is None for c in chunks)
