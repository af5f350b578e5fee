"""Text metrics agree with values worked out by hand."""

from __future__ import annotations

import pytest

from llmft.workloads.evaluator.metrics import (
    bleu,
    chrf,
    ngram_similarity,
    rouge,
    text_scores,
    word_ngrams,
)

HYP = "the cat sat on the mat"
REF = "the cat sat on a mat"


def test_bleu_matches_hand_computed_modified_precisions() -> None:
    # Clipped n-gram precisions: 1-grams 5/6 ("the" twice, once in the reference), 2-grams 3/5,
    # 3-grams 2/4, 4-grams 1/3; equal lengths, so no brevity penalty.
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu(HYP, REF) == pytest.approx(expected, abs=1e-6)


def test_bleu_is_one_for_identical_and_zero_for_disjoint_text() -> None:
    assert bleu("annual leave is 27 days", "annual leave is 27 days") == pytest.approx(1.0)
    assert bleu("completely different words", "annual leave is 27 days") == 0.0


def test_rouge_matches_hand_computed_f1() -> None:
    scores = rouge(HYP, REF)
    # ROUGE-1: 5 of 6 unigrams overlap both ways; ROUGE-2: 3 of 5 bigrams;
    # ROUGE-L: the longest common subsequence "the cat sat on mat" has 5 words.
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(3 / 5)
    assert scores["rougeL"] == pytest.approx(5 / 6)


def test_rouge_l_follows_order_where_rouge1_does_not() -> None:
    scores = rouge("mat the on sat", "sat on the mat")
    assert scores["rouge1"] == pytest.approx(1.0)
    # The words in reverse order: every common subsequence is a single word.
    assert scores["rougeL"] == pytest.approx(1 / 4)


def test_chrf_bounds() -> None:
    assert chrf(REF, REF) == pytest.approx(1.0)
    assert chrf("xyz", "abc") == 0.0
    assert 0.0 < chrf(HYP, REF) < 1.0


def test_word_ngrams_are_lowercased_word_sets() -> None:
    assert word_ngrams("The cat, the CAT!", 1) == {("the",), ("cat",)}
    assert word_ngrams("a b c", 2) == {("a", "b"), ("b", "c")}
    assert word_ngrams("a b", 3) == set()


def test_ngram_similarity_is_mean_jaccard_over_orders() -> None:
    # 1-grams {the,cat,sat} vs {the,cat,ran}: 2/4; 2-grams: 1/3 ("the cat"); 3-grams: 0/2.
    expected = (2 / 4 + 1 / 3 + 0 / 2) / 3
    assert ngram_similarity("the cat sat", "the cat ran") == pytest.approx(expected)


def test_ngram_similarity_skips_orders_neither_text_has() -> None:
    # Two-word texts have no 3-grams: the mean is over orders 1 and 2 only.
    assert ngram_similarity("paid leave", "paid leave") == pytest.approx(1.0)
    assert ngram_similarity("paid leave", "unpaid leave") == pytest.approx((1 / 3 + 0 / 2) / 2)


def test_ngram_similarity_of_empty_texts() -> None:
    assert ngram_similarity("", "") == 1.0
    assert ngram_similarity("something", "") == 0.0


def test_text_scores_are_all_on_a_unit_scale() -> None:
    scores = text_scores(HYP, REF)
    assert set(scores) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "ngram"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
