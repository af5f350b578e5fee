"""From per-item scores to summary.json: per-arm means with bootstrap CIs, paired comparisons
against the baseline, ranking, and a winner only where the difference is significant.

A missing score (`None`, a judge that could not score an item) is left out of that metric's
mean and counted out of its `n`; it is never treated as 0.

Every arm answers the same questions, so arms are compared question by question: the
per-question differences of two arms get a percentile-bootstrap interval for their mean and a
two-sided paired permutation test (random sign flips, exact when all 2^n flips fit in
`comparison.permutations`). The best arm by the primary metric is named the winner only when
its paired test against the runner-up is significant at `comparison.significanceLevel`;
otherwise the verdict says there is no significant winner, and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmft.api.evaluation import Bootstrap, Comparison, primary_key

# Spec metric names -> the score keys they produce; `rouge` ranks by ROUGE-L.
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "bleu": ("bleu",),
    "chrf": ("chrf",),
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "ngram": ("ngram",),
    "accuracy": ("accuracy",),
    "relevance": ("relevance",),
    "faithfulness": ("faithfulness",),
}


def score_keys(metrics: Sequence[str]) -> list[str]:
    """The per-item score keys the spec's metric list asks for, in a stable order."""
    return [key for m in metrics for key in METRIC_KEYS[m]]


@dataclass(frozen=True)
class MeanCI:
    """A mean with a percentile-bootstrap confidence interval, over `n` scored items."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ciLow": self.ci_low, "ciHigh": self.ci_high, "n": self.n}


def bootstrap_mean(values: Sequence[float | None], cfg: Bootstrap) -> MeanCI:
    """Mean of the non-missing values with a percentile bootstrap CI at `cfg.confidence`."""
    xs = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(xs.size)
    if n == 0:
        return MeanCI(None, None, None, 0)
    mean = float(xs.mean())
    if n == 1:
        return MeanCI(mean, mean, mean, 1)
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, n, size=(cfg.samples, n))
    means = xs[idx].mean(axis=1)
    alpha = (1.0 - cfg.confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # The percentile interval can miss the sample mean by float rounding on constant data.
    return MeanCI(mean, min(float(low), mean), max(float(high), mean), n)


@dataclass
class ArmScores:
    """One arm's identity and its per-item scores (key -> one value or None per item)."""

    name: str
    base_model: str
    adapter: str | None
    rag: bool
    n: int
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    hits: list[bool | None] = field(default_factory=list)

    def hit_rate(self) -> float | None:
        known = [h for h in self.hits if h is not None]
        return sum(known) / len(known) if self.rag and known else None


def rank_arms(means: Mapping[str, float | None]) -> list[str]:
    """Arms by descending mean (input order breaks ties; arms without a score come last)."""
    order = list(means)
    return sorted(
        order,
        key=lambda a: (means[a] is None, -(means[a] or 0.0), order.index(a)),
    )


@dataclass(frozen=True)
class PairedDiff:
    """Arm minus other arm, question by question: mean difference, its CI, and a p-value."""

    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    differing: int
    significant: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "ciLow": self.ci_low,
            "ciHigh": self.ci_high,
            "pValue": self.p_value,
            "n": self.n,
            "differing": self.differing,
            "significant": self.significant,
        }


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def sign_flip_p_value(diffs: np.ndarray, permutations: int, seed: int) -> float:
    """Two-sided paired permutation test of "the mean difference is 0" (scipy, sign flips)."""
    from scipy.stats import permutation_test

    if not np.any(diffs):
        return 1.0  # no question tells the arms apart
    if diffs.size < 2:
        return 1.0  # one question: its two sign flips are equally extreme (scipy needs two)
    result = permutation_test(
        (diffs,),
        lambda d, axis: np.mean(d, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=permutations,
        alternative="two-sided",
        random_state=seed,
    )
    return float(min(1.0, result.pvalue))


def min_p_value(differing: int) -> float:
    """The smallest two-sided p-value a sign-flip test can reach with this many nonzero diffs."""
    return min(1.0, 2.0 / 2.0**differing) if differing < 1024 else 0.0


def paired_diff(
    mine: Sequence[float | None],
    other: Sequence[float | None],
    cfg: Bootstrap,
    comparison: Comparison,
) -> PairedDiff:
    """`mine - other` over the questions both arms have a score for."""
    diffs = np.asarray(
        [a - b for a, b in zip(mine, other, strict=True) if _finite(a) and _finite(b)],  # type: ignore[operator]
        dtype=float,
    )
    n = int(diffs.size)
    if n == 0:
        return PairedDiff(None, None, None, None, 0, 0, False)
    ci = bootstrap_mean(diffs.tolist(), cfg)
    p = sign_flip_p_value(diffs, comparison.permutations, cfg.seed)
    differing = int(np.count_nonzero(diffs))
    return PairedDiff(
        ci.mean, ci.ci_low, ci.ci_high, p, n, differing, p < comparison.significance_level
    )


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def verdict(
    arms: Sequence[ArmScores],
    ranking: Sequence[str],
    primary: str,
    cfg: Bootstrap,
    comparison: Comparison,
) -> dict[str, Any]:
    """Whether the best arm is significantly better than the runner-up, and the reason in words."""
    alpha = comparison.significance_level
    by_name = {a.name: a for a in arms}
    best = ranking[0]
    out: dict[str, Any] = {
        "winner": None,
        "best": best,
        "runnerUp": None,
        "metric": primary,
        "significanceLevel": alpha,
    }
    if len(ranking) < 2:
        out["reason"] = "one arm: nothing to compare it with"
        return out
    runner = ranking[1]
    out["runnerUp"] = runner
    test = paired_diff(
        by_name[best].scores.get(primary, []), by_name[runner].scores.get(primary, []), cfg,
        comparison,
    )  # fmt: skip
    out.update(test.to_json())
    level = f"{round(cfg.confidence * 100)}% CI"
    if test.n == 0:
        out["reason"] = (
            f"no significant winner: no question has a {primary} score from both {best} and "
            f"{runner}"
        )
        return out
    told = (
        f"{best} vs {runner} on {primary}: {test.delta:+.3g} ({level} {_fmt(test.ci_low)}.."
        f"{_fmt(test.ci_high)}), p={test.p_value:.3g}, paired over {test.n} questions"
    )
    if test.significant and (test.delta or 0) > 0:
        out["winner"] = best
        out["reason"] = f"{best} wins: {told}, below the level {alpha:g}"
        return out
    why = [f"p >= {alpha:g}"]
    if test.differing == 0:
        why = ["the two arms score the same on every question"]
    elif min_p_value(test.differing) >= alpha:
        why.append(
            f"n too small: with {test.differing} questions whose scores differ the smallest "
            f"possible p-value is {min_p_value(test.differing):.3g}"
        )
    out["reason"] = f"no significant winner: {told}; " + "; ".join(why)
    return out


def build_summary(
    arms: Sequence[ArmScores],
    keys: Sequence[str],
    primary_metric: str,
    cfg: Bootstrap,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """The summary.json document (see the Evaluation output contract)."""
    if not arms:
        raise ValueError("build_summary needs at least one arm")
    comparison = comparison or Comparison()
    stats = {a.name: {k: bootstrap_mean(a.scores.get(k, []), cfg) for k in keys} for a in arms}
    base_arm = arms[0]
    baseline = base_arm.name
    primary = primary_key(primary_metric)
    ranking = rank_arms({a.name: stats[a.name][primary].mean for a in arms})
    out_arms = []
    for a in arms:
        delta: dict[str, float | None] = {}
        for k in keys:
            mine, base = stats[a.name][k].mean, stats[baseline][k].mean
            delta[k] = None if mine is None or base is None else mine - base
        paired = (
            None
            if a is base_arm
            else {
                k: paired_diff(
                    a.scores.get(k, []), base_arm.scores.get(k, []), cfg, comparison
                ).to_json()
                for k in keys
            }
        )
        out_arms.append(
            {
                "name": a.name,
                "baseModel": a.base_model,
                "adapter": a.adapter,
                "rag": a.rag,
                "n": a.n,
                "retrievalHitRate": a.hit_rate(),
                "metrics": {k: stats[a.name][k].to_json() for k in keys},
                "delta": delta,
                "comparison": paired,
            }
        )
    decided = verdict(arms, ranking, primary, cfg, comparison)
    return {
        "primaryMetric": primary,
        "baseline": baseline,
        "winner": decided["winner"],
        "ranking": ranking,
        "verdict": decided,
        "comparisonTest": (
            "paired permutation test (sign flips of per-question differences), two-sided; "
            "percentile-bootstrap CI of the mean difference"
        ),
        "arms": out_arms,
    }


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def status_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The flat `status.metrics` dict: verdict, winner (when significant), ranking, and every
    `<arm>.<metric>` mean with, for arms other than the baseline, its paired difference from
    the baseline (`.delta`, `.deltaCiLow`, `.deltaCiHigh`, `.pValue`).

    `winner`, `winnerScore`, `best`, `pValue` and `verdict` are what printer columns and
    `llmft` status lines show; the per-arm means feed `llmft report` when only a status is at
    hand.
    """
    primary = summary["primaryMetric"]
    decided = summary.get("verdict") or {}
    flat: dict[str, Any] = {
        "primaryMetric": primary,
        "best": summary["ranking"][0],
        "ranking": " > ".join(summary["ranking"]),
        "verdict": decided.get("reason"),
        "significanceLevel": decided.get("significanceLevel"),
    }
    if decided.get("pValue") is not None:
        flat["pValue"] = _round(decided["pValue"], 6)
    if summary.get("winner"):
        winner = next(a for a in summary["arms"] if a["name"] == summary["winner"])
        flat["winner"] = summary["winner"]
        flat["winnerScore"] = _round(winner["metrics"][primary]["mean"], 4)
    for arm in summary["arms"]:
        for key, stat in arm["metrics"].items():
            if stat["mean"] is not None:
                flat[f"{arm['name']}.{key}"] = round(stat["mean"], 6)
        for key, test in (arm.get("comparison") or {}).items():
            if test["delta"] is None:
                continue
            prefix = f"{arm['name']}.{key}"
            flat[f"{prefix}.delta"] = _round(test["delta"])
            flat[f"{prefix}.deltaCiLow"] = _round(test["ciLow"])
            flat[f"{prefix}.deltaCiHigh"] = _round(test["ciHigh"])
            flat[f"{prefix}.pValue"] = _round(test["pValue"])
        if arm["retrievalHitRate"] is not None:
            flat[f"{arm['name']}.retrievalHitRate"] = round(arm["retrievalHitRate"], 6)
    return {k: v for k, v in flat.items() if v is not None}
