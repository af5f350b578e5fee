"""Cutting documents into chunks: by headings first, then by a token budget with overlap.

Token counting has to work offline and inside the small datagen image, so there are two
counters: the local model's own tokenizer when `generator.localModel` is set and transformers
is installed (the count then matches what that model sees), otherwise a regex that counts
each word and each punctuation mark as one token. For English prose the regex count lands
within about 20% of a BPE tokenizer's, which is close enough for a chunk budget; the counter
used is recorded in the manifest.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from llmft.api.common import ModelSource
from llmft.api.datasetgeneration import Chunking
from llmft.workloads.datagen.documents import Document, Section

log = logging.getLogger("llmft.datagen.chunking")

Span = tuple[int, int]


class TokenCounter(Protocol):
    """Finds the character spans of the tokens of a text."""

    name: str

    def spans(self, text: str) -> list[Span]: ...


class RegexTokenCounter:
    """One token per word (letters, digits, underscores) and one per punctuation mark."""

    name = "regex-words"
    _token = re.compile(r"\w+|[^\w\s]")

    def spans(self, text: str) -> list[Span]:
        return [m.span() for m in self._token.finditer(text)]


class TokenizerCounter:
    """The spans a Hugging Face fast tokenizer reports through its offset mapping."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = f"tokenizer:{name}"

    def spans(self, text: str) -> list[Span]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(a, b) for a, b in enc["offset_mapping"] if b > a]


def token_counter_for(local_model: ModelSource | None) -> TokenCounter:
    """The local model's tokenizer when one is named and loadable, else the regex counter."""
    if local_model is None:
        return RegexTokenCounter()
    try:
        from transformers import AutoTokenizer
    except ImportError:
        log.info("transformers is not installed; counting tokens with the regex approximation")
        return RegexTokenCounter()
    from llmft.models import resolve_model

    loc = resolve_model(local_model.name, local_model.gguf_file)
    kwargs: dict[str, Any] = {}
    if loc.gguf_file:
        kwargs["gguf_file"] = loc.gguf_file
    if local_model.revision:
        kwargs["revision"] = local_model.revision
    tokenizer = AutoTokenizer.from_pretrained(loc.path_or_id, **kwargs)
    if not getattr(tokenizer, "is_fast", False):
        log.info("%s has no fast tokenizer (no offsets); using the regex counter", local_model.name)
        return RegexTokenCounter()
    return TokenizerCounter(tokenizer, local_model.name)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough for one generation prompt, and where it came from."""

    id: str
    text: str
    source: str
    index: int
    start_char: int
    end_char: int
    heading: str | None
    page: int | None
    tokens: int

    def position(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_char": self.start_char,
            "end_char": self.end_char,
            "heading": self.heading,
            "page": self.page,
        }


@dataclass
class Chunked:
    chunks: list[Chunk]
    skipped_near_empty: int


def chunk_id(source: str, index: int, text: str) -> str:
    """Readable and stable: the document's stem, the index, and a hash of source and text."""
    stem = PurePosixPath(source.rstrip("/")).stem or "doc"
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:40] or "doc"
    digest = hashlib.sha1(f"{source}\0{text}".encode()).hexdigest()[:8]
    return f"{slug}-{index:03d}-{digest}"


_PARAGRAPH_GAP = re.compile(r"\n[ \t]*\n")


def _best_cut(text: str, spans: Sequence[Span], start: int, end: int) -> int:
    """Where to end a window that must stop by token `end`: a paragraph end, else a sentence
    end, else a line end, searched in the window's second half; the hard limit otherwise."""
    floor = start + max(1, (end - start) // 2)
    sentence = line = None
    for e in range(end, floor - 1, -1):
        gap = text[spans[e - 1][1] : spans[e][0]]
        if _PARAGRAPH_GAP.search(gap):
            return e
        if sentence is None and text[spans[e - 1][1] - 1] in ".!?:" and gap[:1].isspace():
            sentence = e
        if line is None and "\n" in gap:
            line = e
    return sentence or line or end


def _overlap_start(text: str, spans: Sequence[Span], end: int, overlap: int) -> int:
    """Where the next window starts: `overlap` tokens back from `end`, moved forward to the
    first sentence or line start inside the overlap so no chunk opens mid-sentence."""
    first = end - overlap
    line = None
    for k in range(max(first, 1), end):
        gap = text[spans[k - 1][1] : spans[k][0]]
        if _PARAGRAPH_GAP.search(gap) or (text[spans[k - 1][1] - 1] in ".!?" and gap[:1].isspace()):
            return k
        if line is None and "\n" in gap:
            line = k
    return line or first


def token_windows(
    text: str, spans: Sequence[Span], max_tokens: int, overlap: int, min_tail: int = 0
) -> list[Span]:
    """Character spans of windows of at most `max_tokens` tokens; each shares up to `overlap`
    tokens (whole sentences where possible) with the one before. What would be left for a
    last window of fewer than `min_tail` (or a quarter of `max_tokens`) new tokens is shared
    out over the last two windows instead, so no short tail is dropped as near-empty."""
    windows: list[Span] = []
    n, start = len(spans), 0
    short_tail = max(max_tokens // 4, min_tail)
    while n:
        end = min(start + max_tokens, n)
        if end < n:
            if n - end < short_tail:
                end = max(start + 1, min(end, start + (n - start + overlap + 1) // 2))
            end = _best_cut(text, spans, start, end)
        windows.append((spans[start][0], spans[end - 1][1]))
        if end >= n:
            break
        start = max(_overlap_start(text, spans, end, overlap), start + 1) if overlap else end
    return windows


_WORD = re.compile(r"[^\W_]+")


def substance(text: str) -> int:
    """Words in `text`: what decides whether a piece is near-empty. Markup such as a setext
    underline or a table rule is many tokens but no words."""
    return len(_WORD.findall(text))


def merge_small_sections(sections: Sequence[Section], text: str, min_words: int) -> list[Section]:
    """A near-empty section (often a bare parent heading) joins the section after it, so its
    words lead that section's first chunk instead of being skipped; the heading path is the
    later, deeper one. A near-empty last section joins the one before it."""
    merged: list[Section] = []
    pending: Section | None = None
    for section in sections:
        if pending is not None:
            section = Section(section.heading or pending.heading, pending.start, section.end)
            pending = None
        if substance(text[section.start : section.end]) < min_words:
            pending = section
        else:
            merged.append(section)
    if pending is not None:
        if merged:
            merged[-1] = Section(merged[-1].heading, merged[-1].start, pending.end)
        else:
            merged.append(pending)
    return merged


def chunk_document(doc: Document, counter: TokenCounter, settings: Chunking) -> Chunked:
    """The document's chunks in order. A section with fewer than `minTokens` words even after
    merging (a stub at the end, a near-empty file) is counted and dropped; the windows of a
    real section are all kept, however short the last one is."""
    chunks: list[Chunk] = []
    skipped = 0
    for section in merge_small_sections(doc.sections, doc.text, settings.min_tokens):
        body = doc.text[section.start : section.end]
        if substance(body) < settings.min_tokens or not re.search(r"[^\W\d_]{2}", body):
            skipped += 1
            continue
        spans = counter.spans(body)
        windows = token_windows(
            body, spans, settings.max_tokens, settings.overlap_tokens, settings.min_tokens
        )
        for a, b in windows:
            raw = body[a:b]
            lead = len(raw) - len(raw.lstrip())
            text = raw.strip()
            start = section.start + a + lead
            index = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(doc.source, index, text),
                    text=text,
                    source=doc.source,
                    index=index,
                    start_char=start,
                    end_char=start + len(text),
                    heading=section.heading,
                    page=doc.page_at(start),
                    tokens=len(counter.spans(text)),
                )
            )
    return Chunked(chunks, skipped)


def chunk_documents(docs: Sequence[Document], counter: TokenCounter, settings: Chunking) -> Chunked:
    chunks: list[Chunk] = []
    skipped = 0
    for doc in docs:
        result = chunk_document(doc, counter, settings)
        chunks.extend(result.chunks)
        skipped += result.skipped_near_empty
    return Chunked(chunks, skipped)
