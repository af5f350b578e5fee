"""Filters on generated pairs: empty, not a question, not standalone, off topic, numbers or
words unsupported by the chunk, duplicate and near-duplicate.

Support is lexical: the share of the answer's content words (stopwords removed, light
suffix stemming) that occur in the chunk(s) the pair was written from. It cannot prove an
answer right, but it reliably catches answers a small model invented from nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from llmft.workloads.datagen.parsing import RawPair

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CURLY_APOSTROPHE = "\u2019"

# Function words and the words every answer uses ("yes", "employees" is not one of them).
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each either
    few for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just may me might more most must my myself no nor not now of off
    on once only or other our ours ourselves out over own per same shall she should so some
    such than that the their theirs them themselves then there these they this those through
    to too under until up upon very was we were what when where which while who whom why will
    with within without would yes you your yours yourself yourselves one ones get gets got
    able cannot can't don't doesn't isn't aren't won't it's there's that's""".split()  # noqa: SIM905
)


def _stem(word: str) -> str:
    """Strip the commonest English suffixes so "days"/"day" and "approved"/"approve" match."""
    word = re.sub(r"'s$", "", word)
    for suffix in ("ing", "ied", "ies", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace(_CURLY_APOSTROPHE, "'"))


def content_words(text: str) -> list[str]:
    return [_stem(w) for w in words(text) if w not in STOPWORDS]


def answer_support(answer: str, context: str, kind: str | None = None) -> float:
    """Share of the answer's content words found in the context, in [0, 1].

    A bare "Yes." or "No." to a yes/no question has no content words and counts as supported:
    the question carries the claim, and the answer is too short to have invented anything.
    """
    needed = content_words(answer)
    if not needed:
        first = words(answer)[:1]
        return 1.0 if kind == "yesno" and first and first[0] in ("yes", "no") else 0.0
    available = set(content_words(context))
    return sum(1 for w in needed if w in available) / len(needed)


_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")


def numbers(text: str) -> set[str]:
    """The numbers written in `text`, thousands separators removed ("10,000" -> "10000")."""
    return {re.sub(r"(?<=\d),(?=\d{3}\b)", "", n) for n in _NUMBER.findall(text)}


def unsupported_numbers(answer: str, context: str) -> set[str]:
    """Numbers in the answer that the context never states: the commonest invention of a small
    model ("10.5 days"), and one a share-of-words check lets through."""
    return numbers(answer) - numbers(context)


# Words of a question that point at the prompt rather than at the handbook.
_SELF_REFERENCE = re.compile(
    r"\b(?:(?:this|the|that|above|following|given) (?:text|document|passage|section|sentence|"
    r"paragraph|question|answer|excerpt|rule)|answer (?:this|it)|mentioned above)\b",
    re.IGNORECASE,
)
_GENERIC = frozenset({"answer", "question", "text", "document", "mean", "say", "thing", "do"})


def is_standalone(question: str) -> bool:
    """A question a reader can answer without seeing the prompt: no "this text", "the above",
    "answer this"."""
    return _SELF_REFERENCE.search(question) is None


def on_topic(question: str, context: str) -> bool:
    """At least one of the question's own content words occurs in the context; "Can you answer
    this?" and "How many days until your next shift?" about a payday rule do not."""
    needed = [w for w in content_words(question) if w not in _GENERIC]
    available = set(content_words(context))
    return any(w in available for w in needed)


def _shingles(text: str, n: int = 3) -> frozenset[tuple[str, ...]]:
    tokens = words(text)
    if len(tokens) < n:
        return frozenset({tuple(tokens)}) if tokens else frozenset()
    return frozenset(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class DuplicateFilter:
    """Remembers kept questions; a new one is a duplicate (same words) or a near-duplicate
    (Jaccard similarity of word 3-grams above the threshold) of an earlier one."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._exact: set[str] = set()
        self._kept: list[frozenset[tuple[str, ...]]] = []
        self._index: dict[tuple[str, ...], list[int]] = defaultdict(list)

    def check(self, question: str) -> str | None:
        """None if the question is new (and remember it); else the reason to drop it."""
        key = " ".join(words(question))
        if key in self._exact:
            return "duplicate"
        shingles = _shingles(question)
        # Only questions sharing a shingle can be similar, so look those up instead of all.
        candidates: set[int] = set()
        for s in shingles:
            candidates.update(self._index.get(s, ()))
        if any(jaccard(shingles, self._kept[i]) > self.threshold for i in candidates):
            return "near_duplicate"
        self._exact.add(key)
        for s in shingles:
            self._index[s].append(len(self._kept))
        self._kept.append(shingles)
        return None


def is_empty(pair: RawPair, min_answer_chars: int) -> bool:
    has_question = bool(re.search(r"[^\W\d_]{2}", pair.question))
    return not has_question or len(pair.answer.strip()) < min_answer_chars


_QUESTION_START = frozenset(
    """what when where which who whom whose why how is are was were do does did can could
    should shall must may might will would has have had if under after before in for""".split()  # noqa: SIM905
)


def is_question(text: str) -> bool:
    """Ends with a question mark or opens like one. Small models sometimes write a heading or a
    statement in the question field ("Annual leave"); such a pair teaches nothing."""
    stripped = text.strip()
    if stripped.endswith("?"):
        return True
    first = words(stripped)[:1]
    return bool(first) and first[0] in _QUESTION_START and len(words(stripped)) >= 4


def count_reasons(reasons: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return counts
