"""Reference-based text metrics for one answer: BLEU, chrF, ROUGE-1/2/L and n-gram similarity.

Every score is on a 0..1 scale (sacrebleu's 0..100 BLEU and chrF are divided by 100), so the
summary can put text and judge metrics side by side.

n-gram similarity (`ngram`) is our own simple, order-aware overlap measure: the mean over
n = 1, 2, 3 of the Jaccard index (size of the intersection over size of the union) of the *sets*
of lowercased word n-grams of the answer and of the reference. Orders where neither text has an
n-gram (both shorter than n words) are left out of the mean; two empty texts score 1, one empty
text scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import sacrebleu
from rouge_score import rouge_scorer

TEXT_METRIC_KEYS: tuple[str, ...] = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "ngram")
NGRAM_ORDERS: tuple[int, ...] = (1, 2, 3)

_WORD = re.compile(r"\w+", re.UNICODE)


def bleu(answer: str, reference: str) -> float:
    """Sentence BLEU with effective order (short answers are not zeroed by missing 4-grams)."""
    score = sacrebleu.sentence_bleu(answer, [reference], use_effective_order=True)
    return score.score / 100.0


def chrf(answer: str, reference: str) -> float:
    """Sentence chrF (character 1..6-grams, beta 2)."""
    return sacrebleu.sentence_chrf(answer, [reference]).score / 100.0


@lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(answer: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 (Porter-stemmed words)."""
    scores = _rouge().score(reference, answer)
    return {key: float(scores[key].fmeasure) for key in ("rouge1", "rouge2", "rougeL")}


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ngram_similarity(answer: str, reference: str, orders: Iterable[int] = NGRAM_ORDERS) -> float:
    """Mean Jaccard overlap of word n-gram sets over `orders` (see the module docstring)."""
    jaccards: list[float] = []
    for n in orders:
        a, b = word_ngrams(answer, n), word_ngrams(reference, n)
        union = a | b
        if union:
            jaccards.append(len(a & b) / len(union))
    if not jaccards:  # neither text has a single word: two empty texts are identical
        return 1.0
    return sum(jaccards) / len(jaccards)


def text_scores(answer: str, reference: str) -> dict[str, float]:
    """All text metrics for one answer against its reference, keyed as in summary.json."""
    return {
        "bleu": bleu(answer, reference),
        "chrf": chrf(answer, reference),
        **rouge(answer, reference),
        "ngram": ngram_similarity(answer, reference),
    }
