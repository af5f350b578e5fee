"""JSON and JSON-lines files as llmft writes and reads them: whole or not at all.

A writer fills a temporary file beside the target and renames it into place, so a reader (the
runner polling a status file, a workload resuming after a crash) never sees half a file. A
JSON-lines reader names the file and line of anything that is not one JSON object per line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class JsonLinesError(ValueError):
    """A JSON-lines file with a line that is not a JSON object; the message names the line."""


def _replace_into(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two processes writing the same file (runner and workload) off one temp file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        write(handle)
    tmp.replace(path)


def write_json(path: Path, data: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write `data` as JSON and replace `path` with it in one step."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    _replace_into(path, lambda handle: handle.write(text + "\n"))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line and replace `path` with the file in one step."""

    def write(handle: Any) -> None:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    _replace_into(path, write)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-empty line; JsonLinesError names a broken line."""
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise JsonLinesError(f"{path}:{lineno}: not valid JSON ({err})") from None
            if not isinstance(obj, dict):
                raise JsonLinesError(f"{path}:{lineno}: expected a JSON object per line")
            yield lineno, obj


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every object of a JSON-lines file (see iter_jsonl)."""
    return [obj for _, obj in iter_jsonl(path)]
