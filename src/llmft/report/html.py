"""One self-contained HTML page for the report: tables plus the PNG charts inlined as data URIs."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from llmft import __version__
from llmft.api.status import now_rfc3339

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35rem 0.6rem; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
tr.winner td { font-weight: bold; background: #f0f8ec; }
figure { margin: 1.5rem 0; } figcaption { color: #555; font-size: 0.85rem; }
img { max-width: 100%; } .note { color: #666; font-size: 0.85rem; }
"""


@dataclass
class HtmlSection:
    """One evaluation's part of the page."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    winner_rows: set[int] = field(default_factory=set)
    images: list[tuple[str, Path]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _table(section: HtmlSection) -> str:
    text_cols = {1, 2, 3, 4}
    head = "".join(
        f'<th class="{"text" if i in text_cols else ""}">{html.escape(h)}</th>'
        for i, h in enumerate(section.headers)
    )
    body = []
    for r, row in enumerate(section.rows):
        cells = "".join(
            f'<td class="{"text" if i in text_cols else ""}">{html.escape(c)}</td>'
            for i, c in enumerate(row)
        )
        cls = ' class="winner"' if r in section.winner_rows else ""
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_html(sections: list[HtmlSection], path: Path, title: str = "llmft report") -> Path:
    """Write the page; every image is embedded, so the file can be mailed or attached alone."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Generated {now_rfc3339()} by llmft {__version__}.</p>',
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.headers:
            parts.append(_table(section))
        for note in section.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        for caption, png in section.images:
            parts.append(
                f'<figure><img alt="{html.escape(caption)}" src="{data_uri(png)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
