"""Reading source documents (Markdown, text, HTML, PDF) from a directory or URLs into plain text.

Each document keeps its extracted text plus the heading structure found by the format's own
parser (markdown-it-py, BeautifulSoup, pypdf), so chunks can record where they came from.
A document that cannot be read is skipped with a recorded reason; a source that yields no
documents at all is an error.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bs4 import BeautifulSoup, Comment, NavigableString, Tag
from markdown_it import MarkdownIt

from llmft.api.datasetgeneration import DocumentSource
from llmft.api.layout import CONFIGMAP_DOCUMENTS_MOUNT, PVC_DOCUMENTS_MOUNT
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.datagen.documents")

# Where the operator mounts a configMap or PVC source in the pod; LLMFT_SOURCE_DIR overrides both
# (a test, or a chart that mounts elsewhere).
SOURCE_DIR_ENV = "LLMFT_SOURCE_DIR"
CONFIGMAP_MOUNT = CONFIGMAP_DOCUMENTS_MOUNT
PVC_MOUNT = PVC_DOCUMENTS_MOUNT

FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
FORMATS |= {".html": "html", ".htm": "html", ".pdf": "pdf"}
URL_TIMEOUT_SECONDS = 30
MAX_URL_BYTES = 50 * 1024 * 1024


class DocumentError(Exception):
    """One document that cannot be read; it is skipped and the reason recorded."""


@dataclass(frozen=True)
class Section:
    """A span of a document's text under one heading path (e.g. "Leave > Annual leave")."""

    heading: str | None
    start: int
    end: int


@dataclass
class Document:
    """A document's extracted text, its sections, and (PDFs) the offset where each page starts."""

    source: str
    format: str
    text: str
    sections: list[Section]
    page_starts: list[int] = field(default_factory=list)

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding `offset`, for PDFs; None for other formats."""
        if not self.page_starts:
            return None
        page = 0
        for i, start in enumerate(self.page_starts):
            if start <= offset:
                page = i
        return page + 1


@dataclass(frozen=True)
class SkippedDocument:
    source: str
    reason: str


@dataclass
class Ingested:
    documents: list[Document]
    skipped: list[SkippedDocument]


# ---------------------------------------------------------------- parsing, one format at a time


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def _decode(data: bytes, source: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError("binary content, not a text document")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Old handbooks are often Windows-1252; latin-1 never fails, so it is the last resort.
        log.warning("%s: not UTF-8, reading as latin-1", source)
        return data.decode("latin-1")


def parse_markdown(text: str, source: str) -> Document:
    """Sections from the headings markdown-it-py finds (ATX and setext), with heading paths."""
    text = _normalise(text)
    tokens = MarkdownIt("commonmark").parse(text)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    headings: list[tuple[int, int, str]] = []  # (char offset, level, title)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map is not None and tok.level == 0:
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            headings.append((line_starts[tok.map[0]], int(tok.tag[1]), title))
    return Document(source, "markdown", text, _sections_from_headings(text, headings))


# A plain-text heading: one short line standing alone as a paragraph, starting with a capital
# and not ending like a sentence. ALL-CAPS headings rank above mixed-case ones.
_TEXT_HEADING = re.compile(
    r"(?:\A|\n[ \t]*\n)[ \t]*([A-Z][^\n]{0,78}[^\s.,;:!?])[ \t]*(?=\n[ \t]*\n)"
)


def parse_text(text: str, source: str) -> Document:
    """Plain text has no markup, so headings are recognised by shape: a short line on its own,
    with blank lines around it, that does not end like a sentence."""
    text = _normalise(text)
    headings: list[tuple[int, int, str]] = []
    for m in _TEXT_HEADING.finditer(text):
        title = m.group(1).strip()
        level = 1 if title.upper() == title and any(c.isalpha() for c in title) else 2
        headings.append((m.start(1), level, title))
    return Document(source, "text", text, _sections_from_headings(text, headings))


_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "svg", "nav"}
_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "ul", "ol", "li",
    "table", "tr", "blockquote", "pre", "dl", "dt", "dd", "figure", "figcaption", "address",
    "hr", "form", "fieldset", "details", "summary", "body", "html", "caption", "thead", "tbody",
}  # fmt: skip
_CELL_TAGS = {"td", "th"}


class _HtmlText:
    """Accumulates visible HTML text with paragraph breaks, remembering where headings start."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[tuple[int, int, str]] = []

    def _tail(self) -> str:
        if not self.parts:
            return "\n\n"
        tail = self.parts[-1][-2:]
        if len(tail) < 2 and len(self.parts) > 1:
            tail = self.parts[-2][-1:] + tail
        return tail

    def emit(self, s: str) -> None:
        if not s:
            return
        tail = self._tail()
        if s[0] == " " and (tail.endswith((" ", "\n")) or not self.parts):
            s = s.lstrip(" ")
        if s:
            self.parts.append(s)
            self.length += len(s)

    def block_break(self) -> None:
        if not self.parts:
            return
        while self.parts and self.parts[-1].endswith(" "):
            stripped = self.parts[-1].rstrip(" ")
            self.length -= len(self.parts[-1]) - len(stripped)
            self.parts[-1] = stripped
            if not stripped:
                self.parts.pop()
        tail = self._tail()
        need = "" if tail == "\n\n" else ("\n" if tail.endswith("\n") else "\n\n")
        self.emit(need)

    def line_break(self) -> None:
        if self.parts and not self._tail().endswith("\n"):
            self.emit("\n")

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not CData, Doctype, processing instruction
                    self.emit(re.sub(r"\s+", " ", str(child)))
                continue
            if not isinstance(child, Tag) or child.name in _SKIP_TAGS:
                continue
            if child.name in _HEADING_TAGS:
                self.block_break()
                title = re.sub(r"\s+", " ", child.get_text(" ")).strip()
                if title:
                    self.headings.append((self.length, int(child.name[1]), title))
                    self.emit(title)
                self.block_break()
            elif child.name == "br":
                self.line_break()
            elif child.name in _CELL_TAGS:
                # Cells of a row are kept on one line, apart, as in a Markdown table.
                if self.parts and not self._tail().endswith("\n"):
                    self.emit(" | ")
                self.walk(child)
            elif child.name in _BLOCK_TAGS:
                if child.name in ("li", "tr", "dt", "dd"):
                    self.line_break()
                else:
                    self.block_break()
                if child.name == "pre":
                    self.emit(child.get_text())
                else:
                    self.walk(child)
                if child.name in ("li", "tr", "dt", "dd"):
                    self.line_break()
                else:
                    self.block_break()
            else:
                self.walk(child)


def parse_html(text: str, source: str) -> Document:
    """Visible text from BeautifulSoup, blocks as paragraphs, sections from h1-h6."""
    soup = BeautifulSoup(_normalise(text), "html.parser")
    root = soup.body or soup
    acc = _HtmlText()
    acc.walk(root)
    body = "".join(acc.parts).strip("\n ")
    # Offsets shift by what strip removed at the front.
    shift = len("".join(acc.parts)) - len("".join(acc.parts).lstrip("\n "))
    headings = [(max(0, off - shift), lvl, title) for off, lvl, title in acc.headings]
    return Document(source, "html", body, _sections_from_headings(body, headings))


def _pdf_outline(reader: Any) -> list[tuple[int, int, str]]:
    """(page index, level, title) of each bookmark, in document order; [] when there are none."""
    found: list[tuple[int, int, str]] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):  # the children of the item before it
                walk(item, level + 1)
                continue
            page = reader.get_destination_page_number(item)
            title = re.sub(r"\s+", " ", str(getattr(item, "title", "") or "")).strip()
            if page is not None and page >= 0 and title:
                found.append((page, level, title))

    try:
        walk(list(reader.outline), 1)
    except Exception as err:  # a broken outline costs the headings, never the text
        log.info("ignoring the PDF outline: %s: %s", type(err).__name__, err)
        return []
    return sorted(found, key=lambda h: h[0])  # stable: same-page items keep outline order


def _headings_in_pdf_text(
    text: str, starts: list[int], outline: list[tuple[int, int, str]]
) -> list[tuple[int, int, str]]:
    """Place each bookmark at its title's first occurrence on its page, after the previous one;
    a title that cannot be found (an image heading, a bookmark to nowhere) is left out."""
    headings: list[tuple[int, int, str]] = []
    cursor = 0
    for page, level, title in outline:
        if page >= len(starts):
            continue
        page_end = starts[page + 1] if page + 1 < len(starts) else len(text)
        pattern = r"\s+".join(re.escape(w) for w in title.split())
        m = re.compile(pattern).search(text, max(cursor, starts[page]), page_end)
        if m is None:
            continue
        headings.append((m.start(), level, title))
        cursor = m.end()
    return headings


def parse_pdf(data: bytes, source: str) -> Document:
    """Text of each page from pypdf, pages separated by a blank line; page offsets kept, and
    sections from the PDF's outline (bookmarks) when it has one."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted PDF (no password support)")
        pages = [_normalise(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError) as err:
        raise DocumentError(f"unreadable PDF: {type(err).__name__}: {err}") from None
    if not any(pages):
        raise DocumentError("PDF has no extractable text (scanned images need OCR first)")
    text, starts = "", []
    for page in pages:
        if text:
            text += "\n\n"
        starts.append(len(text))
        text += page
    headings = _headings_in_pdf_text(text, starts, _pdf_outline(reader))
    return Document(source, "pdf", text, _sections_from_headings(text, headings), starts)


def _sections_from_headings(text: str, headings: list[tuple[int, int, str]]) -> list[Section]:
    """Cut text at each heading; a section's heading is the path of enclosing headings."""
    sections: list[Section] = []
    if not headings or headings[0][0] > 0:
        first = headings[0][0] if headings else len(text)
        if text[:first].strip():
            sections.append(Section(None, 0, first))
    stack: list[tuple[int, str]] = []
    for i, (start, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        sections.append(Section(" > ".join(t for _, t in stack if t) or None, start, end))
    return sections


def parse_document(data: bytes, source: str, fmt: str) -> Document:
    """Dispatch to the format's parser; raises DocumentError for unreadable content."""
    if fmt == "pdf":
        doc = parse_pdf(data, source)
    elif fmt == "html":
        doc = parse_html(_decode(data, source), source)
    elif fmt == "markdown":
        doc = parse_markdown(_decode(data, source), source)
    elif fmt == "text":
        doc = parse_text(_decode(data, source), source)
    else:
        raise DocumentError(f"unsupported format {fmt!r}")
    if not doc.text.strip():
        raise DocumentError("empty document")
    return doc


def format_of(name: str) -> str | None:
    return FORMATS.get(PurePosixPath(name).suffix.lower())


# ---------------------------------------------------------------- where documents come from


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    # fnmatch's "*" also crosses "/", so "**/*.md" needs the zero-directory case added by hand.
    for pattern in patterns:
        if fnmatch.fnmatch(rel, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:]):
            return True
    return False


def list_directory(root: Path, include: Sequence[str]) -> list[tuple[str, Path]]:
    """Files under root matching `include`, as (relative posix name, path), sorted by name.

    Dot-entries are skipped: a mounted ConfigMap holds `..data` and `..<timestamp>` directories
    next to the symlinks named after its keys, and each file must be read once.
    """
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_file() and _matches(rel, include):
                found.append((rel, path))
    return sorted(found)


def source_directory(source: DocumentSource, base_dir: Path | None) -> Path | None:
    """The local directory (or file) the documents are read from; None for URL sources."""
    override = os.environ.get(SOURCE_DIR_ENV)
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return path
    if source.config_map is not None:
        return Path(override or CONFIGMAP_MOUNT)
    if source.pvc is not None:
        return Path(override or PVC_MOUNT) / source.pvc.path.lstrip("/")
    return None


def _field_of(source: DocumentSource) -> str:
    if source.config_map is not None:
        return f"spec.source.configMap ({source.config_map})"
    if source.pvc is not None:
        return f"spec.source.pvc ({source.pvc.claim_name}:{source.pvc.path or '/'})"
    return "spec.source.path"


def read_directory(root: Path, include: Sequence[str], where: str) -> Ingested:
    if not root.exists():
        raise WorkloadError(f"{where}: {root} does not exist")
    files = [(root.name, root)] if root.is_file() else list_directory(root, include)
    if not files:
        raise WorkloadError(f"{where}: no files matching {', '.join(include)} under {root}")
    docs, skipped = [], []
    for rel, path in files:
        fmt = format_of(rel)
        try:
            if fmt is None:
                raise DocumentError(f"unsupported file type {path.suffix or '(none)'}")
            docs.append(parse_document(path.read_bytes(), rel, fmt))
        except (DocumentError, OSError) as err:
            log.warning("skipping %s: %s", rel, err)
            skipped.append(SkippedDocument(rel, str(err)))
    return Ingested(docs, skipped)


_CONTENT_TYPES = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
}


def fetch_url(url: str, timeout: float = URL_TIMEOUT_SECONDS) -> tuple[bytes, str]:
    """Download one URL; returns (content, format). Raises DocumentError naming the problem."""
    if not url.startswith(("http://", "https://")):
        raise DocumentError("only http:// and https:// URLs are supported")
    request = urllib.request.Request(url, headers={"User-Agent": "llmft-datagen"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            data = resp.read(MAX_URL_BYTES + 1)
            content_type = resp.headers.get_content_type()
    except urllib.error.HTTPError as err:
        raise DocumentError(f"HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DocumentError(f"cannot fetch: {err.reason}") from None
    except TimeoutError:
        raise DocumentError(f"no answer within {timeout:.0f}s") from None
    except OSError as err:
        raise DocumentError(f"cannot fetch: {err}") from None
    if len(data) > MAX_URL_BYTES:
        raise DocumentError(f"larger than {MAX_URL_BYTES // (1024 * 1024)} MiB")
    fmt = _CONTENT_TYPES.get(content_type)
    if fmt is None:
        by_name = format_of(urllib.request.urlparse(url).path)
        if by_name is not None:
            fmt = by_name
        elif content_type.startswith("text/"):
            fmt = "text"
        else:
            raise DocumentError(f"unsupported content type {content_type}")
    return data, fmt


def read_urls(urls: Iterable[str]) -> Ingested:
    docs, skipped = [], []
    for i, url in enumerate(urls):
        try:
            data, fmt = fetch_url(url)
            docs.append(parse_document(data, url, fmt))
        except DocumentError as err:
            reason = f"spec.source.urls[{i}] {url}: {err}"
            log.warning("skipping %s", reason)
            skipped.append(SkippedDocument(url, str(err)))
    return Ingested(docs, skipped)


def ingest(source: DocumentSource, base_dir: Path | None = None) -> Ingested:
    """All readable documents of the spec's source; raises WorkloadError if none can be read."""
    if source.urls is not None:
        result = read_urls(source.urls)
        where = "spec.source.urls"
    else:
        root = source_directory(source, base_dir)
        assert root is not None
        where = _field_of(source)
        result = read_directory(root, source.include, where)
    if not result.documents:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in result.skipped)
        raise WorkloadError(f"{where}: no readable documents ({reasons})")
    return result
