"""From per-item scores to summary.json: per-arm means with bootstrap CIs, deltas, ranking, winner.

A missing score (`None`, a judge that could not score an item) is left out of that metric's
mean and counted out of its `n`; it is never treated as 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmft.api.evaluation import Bootstrap, primary_key

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


def build_summary(
    arms: Sequence[ArmScores], keys: Sequence[str], primary_metric: str, cfg: Bootstrap
) -> dict[str, Any]:
    """The summary.json document (see the Evaluation output contract)."""
    if not arms:
        raise ValueError("build_summary needs at least one arm")
    stats = {a.name: {k: bootstrap_mean(a.scores.get(k, []), cfg) for k in keys} for a in arms}
    baseline = arms[0].name
    primary = primary_key(primary_metric)
    ranking = rank_arms({a.name: stats[a.name][primary].mean for a in arms})
    out_arms = []
    for a in arms:
        delta: dict[str, float | None] = {}
        for k in keys:
            mine, base = stats[a.name][k].mean, stats[baseline][k].mean
            delta[k] = None if mine is None or base is None else mine - base
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
            }
        )
    return {
        "primaryMetric": primary,
        "baseline": baseline,
        "winner": ranking[0],
        "ranking": ranking,
        "arms": out_arms,
    }


def status_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The flat `status.metrics` dict: winner, its score, the ranking, every `<arm>.<metric>`.

    `winner`, `winnerScore` and `ranking` (a one-line "a > b > c") are what printer columns and
    `llmft` status lines show; the per-arm means feed `llmft report` when only a status is at hand.
    """
    primary = summary["primaryMetric"]
    winner = next(a for a in summary["arms"] if a["name"] == summary["winner"])
    score = winner["metrics"][primary]["mean"]
    flat: dict[str, Any] = {
        "winner": summary["winner"],
        "primaryMetric": primary,
        "winnerScore": None if score is None else round(score, 4),
        "ranking": " > ".join(summary["ranking"]),
    }
    for arm in summary["arms"]:
        for key, stat in arm["metrics"].items():
            if stat["mean"] is not None:
                flat[f"{arm['name']}.{key}"] = round(stat["mean"], 6)
        if arm["retrievalHitRate"] is not None:
            flat[f"{arm['name']}.retrievalHitRate"] = round(arm["retrievalHitRate"], 6)
    return flat
