"""Ingestion: each format's parser yields clean text with sections; bad files are skipped with
a reason; a source with nothing readable is an error naming the field."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from datagen.conftest import build_handbook_pdf
from llmft.api.datasetgeneration import DocumentSource
from llmft.workloads.datagen.documents import (
    SOURCE_DIR_ENV,
    DocumentError,
    ingest,
    parse_document,
    parse_html,
    parse_markdown,
    parse_text,
)
from llmft.workloads.entry import WorkloadError


def _section_texts(doc) -> dict[str | None, str]:
    return {s.heading: doc.text[s.start : s.end] for s in doc.sections}


def test_markdown_sections_carry_the_path_of_enclosing_headings() -> None:
    doc = parse_markdown(
        "# Handbook\n\nIntro.\n\n## Leave\n\nTwo days.\n\n### Carry over\n\nFive days.\n\n"
        "## Pay\n\nMonthly.\n",
        "h.md",
    )
    sections = _section_texts(doc)
    assert list(sections) == ["Handbook", "Handbook > Leave", "Handbook > Leave > Carry over",
                              "Handbook > Pay"]  # fmt: skip
    assert sections["Handbook > Leave > Carry over"].startswith("### Carry over")
    assert "Monthly." in sections["Handbook > Pay"]


def test_markdown_setext_headings_and_code_blocks_are_told_apart() -> None:
    doc = parse_markdown(
        "Conduct\n=======\n\nBe kind.\n\n```\n# not a heading\n```\n\nGifts\n-----\n\nUp to 50.\n",
        "c.md",
    )
    assert [s.heading for s in doc.sections] == ["Conduct", "Conduct > Gifts"]


def test_plain_text_headings_are_short_lines_standing_alone() -> None:
    doc = parse_text(
        "FAMILY LEAVE\n\nThis chapter sums up the policies.\n\nMaternity leave\n\n"
        "Everyone is entitled to 52 weeks.\n\nA short sentence on its own.\n\nMore text here.\n",
        "f.txt",
    )
    assert [s.heading for s in doc.sections] == ["FAMILY LEAVE", "FAMILY LEAVE > Maternity leave"]
    assert doc.text[doc.sections[1].start :].startswith("Maternity leave")


def test_html_keeps_visible_text_headings_and_table_rows() -> None:
    doc = parse_html(
        "<html><head><title>T</title><style>p{}</style><script>track()</script></head><body>"
        "<nav>Home | Next</nav><h1>Pay</h1><p>Paid <b>monthly</b>,&nbsp;in arrears.</p>"
        "<!-- internal note --><h2>Benefits</h2><table><tr><th>Benefit</th><th>Who</th></tr>"
        "<tr><td>Dental</td><td>After probation</td></tr></table></body></html>",
        "p.html",
    )
    assert "track()" not in doc.text and "Home" not in doc.text and "internal" not in doc.text
    assert "Paid monthly, in arrears." in doc.text
    assert "Dental | After probation" in doc.text
    assert [s.heading for s in doc.sections] == ["Pay", "Pay > Benefits"]
    assert doc.text[doc.sections[1].start :].startswith("Benefits")


def test_pdf_text_keeps_pages_and_takes_sections_from_the_outline(handbook: Path) -> None:
    doc = parse_document(build_handbook_pdf(), "travel.pdf", "pdf")
    headings = [s.heading for s in doc.sections]
    assert headings[0] == "Travel and Expenses > Before you travel" or headings[0] == (
        "Travel and Expenses"
    )
    assert "Travel and Expenses > Claiming expenses" in headings
    claiming = next(
        s for s in doc.sections if s.heading and s.heading.endswith("Claiming expenses")
    )
    assert doc.text[claiming.start :].startswith("Claiming expenses")
    assert doc.page_at(0) == 1
    assert doc.page_at(len(doc.text) - 1) == 2
    assert "45p per mile" in doc.text


def test_committed_pdf_is_what_its_script_generates(handbook: Path) -> None:
    assert (handbook / "07-travel-and-expenses.pdf").read_bytes() == build_handbook_pdf()


def test_pdf_without_outline_is_one_section() -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Fire alarms are tested every Wednesday at 11:00.")
    doc = parse_document(bytes(pdf.output()), "alarm.pdf", "pdf")
    assert len(doc.sections) == 1 and doc.sections[0].heading is None
    assert doc.text == "Fire alarms are tested every Wednesday at 11:00."


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated", "PDF"),
        ("notes.md", b"\x00\x01\x02binary\x00", "binary content"),
        ("empty.txt", b"  \n\n ", "empty document"),
        ("image.pdf", None, "no extractable text"),
    ],
)
def test_malformed_documents_are_skipped_with_their_reason(
    mixed_docs: Path, name: str, content: bytes | None, reason: str
) -> None:
    if content is None:  # a PDF page with a drawing and no text, like a scan
        from fpdf import FPDF

        pdf = FPDF()
        pdf.add_page()
        pdf.rect(20, 20, 50, 50)
        content = bytes(pdf.output())
    (mixed_docs / name).write_bytes(content)

    result = ingest(DocumentSource(path=str(mixed_docs)))

    assert [s.source for s in result.skipped] == [name]
    assert reason in result.skipped[0].reason
    assert len(result.documents) == 4


def test_a_source_with_nothing_readable_is_an_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"not a pdf")
    (tmp_path / "b.md").write_text("")
    with pytest.raises(WorkloadError, match=r"spec\.source\.path: no readable documents") as err:
        ingest(DocumentSource(path=str(tmp_path)))
    assert "a.pdf" in str(err.value) and "b.md: empty document" in str(err.value)


def test_missing_directory_is_an_error_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"spec\.source\.path: .*nowhere does not exist"):
        ingest(DocumentSource(path=str(tmp_path / "nowhere")))


def test_directory_without_matching_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.docx").write_bytes(b"PK")
    with pytest.raises(WorkloadError, match="no files matching"):
        ingest(DocumentSource(path=str(tmp_path)))


def test_include_patterns_choose_the_files(mixed_docs: Path) -> None:
    result = ingest(DocumentSource(path=str(mixed_docs), include=["*.md", "**/*.txt"]))
    assert sorted(d.source for d in result.documents) == ["leave.md", "sick.txt"]


def test_relative_path_is_taken_from_the_manifest_directory(mixed_docs: Path) -> None:
    result = ingest(DocumentSource(path="docs/leave.md"), base_dir=mixed_docs.parent)
    assert [d.source for d in result.documents] == ["leave.md"]


def test_mounted_configmap_is_read_once_per_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kubelet's layout: keys are symlinks into ..data, which points at a timestamped dir.
    mount = tmp_path / "mount"
    stamped = mount / "..2026_01_05_09_00_00.1"
    stamped.mkdir(parents=True)
    (stamped / "leave.md").write_text("# Leave\n\nTwenty-seven days a year for everyone.\n")
    os.symlink(stamped.name, mount / "..data")
    os.symlink("..data/leave.md", mount / "leave.md")
    monkeypatch.setenv(SOURCE_DIR_ENV, str(mount))

    result = ingest(DocumentSource(config_map="handbook"))

    assert [d.source for d in result.documents] == ["leave.md"]


def test_configmap_errors_name_the_configmap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOURCE_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(WorkloadError, match=r"spec\.source\.configMap \(handbook\)"):
        ingest(DocumentSource(config_map="handbook"))


def test_windows_1252_text_is_read_rather_than_skipped(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_bytes("Allowance: \xa3300 for a desk.".encode("cp1252"))
    doc = ingest(DocumentSource(path=str(tmp_path))).documents[0]
    assert doc.text == "Allowance: \xa3300 for a desk."


def test_the_example_handbook_is_ten_documents_in_four_formats(handbook: Path) -> None:
    result = ingest(DocumentSource(path=str(handbook)))
    assert result.skipped == []
    assert len(result.documents) == 10
    assert {d.format for d in result.documents} == {"markdown", "html", "text", "pdf"}
    # A dozen pages of prose, at about 500 words (3,000 characters) a page.
    assert sum(len(d.text) for d in result.documents) > 12 * 3000


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served_docs(mixed_docs: Path) -> Iterator[str]:
    """The mixed documents on a real local HTTP server."""

    def handler(*args, **kwargs):  # type: ignore[no-untyped-def]
        return _Handler(*args, directory=str(mixed_docs), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_urls_are_fetched_and_parsed_by_content_type(served_docs: str) -> None:
    urls = [f"{served_docs}/{n}" for n in ("leave.md", "pay.html", "sick.txt", "travel.pdf")]
    result = ingest(DocumentSource(urls=[*urls, f"{served_docs}/missing.md"]))
    assert [d.format for d in result.documents] == ["markdown", "html", "text", "pdf"]
    assert result.documents[1].source == urls[1]
    assert [(s.source, s.reason) for s in result.skipped] == [
        (f"{served_docs}/missing.md", "HTTP 404 File not found")
    ]


def test_unreachable_urls_only_is_an_error_naming_the_field() -> None:
    with pytest.raises(WorkloadError, match=r"spec\.source\.urls: no readable documents"):
        ingest(DocumentSource(urls=["http://127.0.0.1:9/handbook.md", "ftp://x/y.md"]))


def test_unknown_format_is_a_document_error() -> None:
    with pytest.raises(DocumentError, match="unsupported format"):
        parse_document(b"x", "x.docx", "docx")
