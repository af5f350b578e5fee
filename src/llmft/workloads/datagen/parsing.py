"""Turning a model's reply into question/answer pairs, tolerating what small models do:
prose around the JSON, code fences, a bare list instead of an object, a reply cut off by
the token limit (the complete pairs before the cut are kept).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder()
_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class RawPair:
    """A pair as the model wrote it, before any quality filter."""

    question: str
    answer: str
    kind: str | None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):  # a yes/no answer given as a JSON boolean
        return "Yes" if value else "No"
    if isinstance(value, str | int | float):
        return str(value).strip()
    return ""


def _pair_from(obj: Any) -> RawPair | None:
    if not isinstance(obj, dict):
        return None
    lowered = {str(k).lower(): v for k, v in obj.items()}
    if "question" not in lowered or "answer" not in lowered:
        return None
    kind = lowered.get("kind", lowered.get("type"))
    return RawPair(
        _as_text(lowered["question"]),
        _as_text(lowered["answer"]),
        kind.strip().lower() if isinstance(kind, str) else None,
    )


def _pairs_from(value: Any) -> list[RawPair] | None:
    """Pairs from a decoded JSON value, or None when it does not have the expected shape."""
    items: Any = None
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        for key in ("pairs", "questions", "qa_pairs", "items", "data"):
            if isinstance(value.get(key), list):
                items = value[key]
                break
    if items is None:
        return None
    pairs = [p for p in (_pair_from(item) for item in items) if p is not None]
    return pairs if pairs or not items else None


def parse_pairs(text: str) -> list[RawPair] | None:
    """All pairs found in `text`; None when nothing in it can be read as pairs.

    An empty list means the model answered with valid JSON holding no pairs.
    """
    if not text or not text.strip():
        return None
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        pairs = _pairs_from(value)
        if pairs is not None:
            return pairs
    # No complete list of pairs: salvage every complete flat pair object (a reply cut short,
    # or a single pair on its own).
    salvaged: list[RawPair] = []
    for match in _FLAT_OBJECT.finditer(text):
        try:
            pair = _pair_from(json.loads(match.group(0)))
        except json.JSONDecodeError:
            continue
        if pair is not None:
            salvaged.append(pair)
    return salvaged or None
