"""The report's charts (matplotlib, written as PNG): metric bars, loss curves, tuning deltas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt
import numpy as np

from llmft.report.summary import ArmResult, EvaluationSummary

DPI = 120


def arm_label(arm: ArmResult) -> str:
    tags = ["tuned" if arm.adapter else "base", "RAG" if arm.rag else "no RAG"]
    return f"{arm.name} ({', '.join(tags)})"


def metric_bars(summary: EvaluationSummary, path: Path) -> Path:
    """Grouped bars: each metric's mean per arm, with the bootstrap CI as error bars."""
    metrics = summary.metric_names()
    arms = summary.ranked_arms()
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(metrics) + 3), 4.2))
    for i, arm in enumerate(arms):
        means, low, high = [], [], []
        for m in metrics:
            stat = arm.metrics.get(m)
            mean = stat.mean if stat and stat.mean is not None else np.nan
            means.append(mean)
            lo = stat.ci_low if stat and stat.ci_low is not None else mean
            hi = stat.ci_high if stat and stat.ci_high is not None else mean
            low.append(max(mean - lo, 0.0) if not np.isnan(mean) else 0.0)
            high.append(max(hi - mean, 0.0) if not np.isnan(mean) else 0.0)
        ax.bar(
            x + (i - (len(arms) - 1) / 2) * width,
            means,
            width,
            yerr=[low, high],
            capsize=3,
            label=arm_label(arm),
            edgecolor="black" if arm.name == summary.winner else "none",
            linewidth=1.2,
        )
    ax.set_xticks(x, [f"{m}\n(primary)" if m == summary.primary_metric else m for m in metrics])
    ax.set_ylabel("mean score (0..1), 95% CI")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Evaluation {summary.name}: metrics per arm (winner outlined)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _legend_below(ax, len(arms))
    return _save(fig, path)


def _legend_below(ax: Any, entries: int) -> None:
    # Below the axes, so it never hides a bar or an error bar however high they reach.
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=min(entries, 4),
        frameon=False,
    )


@dataclass(frozen=True)
class LossCurve:
    """One fine-tune job's logged losses."""

    label: str
    train: list[tuple[float, float]]
    eval: list[tuple[float, float]]


def loss_curve(label: str, events: Sequence[Mapping[str, Any]]) -> LossCurve:
    """Train and eval loss by step from a log_history.jsonl's events."""
    train = [
        (float(e["step"]), float(e["loss"]))
        for e in events
        if e.get("step") is not None and isinstance(e.get("loss"), int | float)
    ]
    evals = [
        (float(e["step"]), float(e["eval_loss"]))
        for e in events
        if e.get("step") is not None and isinstance(e.get("eval_loss"), int | float)
    ]
    return LossCurve(label, train, evals)


def loss_curves(curves: Sequence[LossCurve], path: Path) -> Path | None:
    """Training (solid) and evaluation (dashed) loss per fine-tune job; None if nothing logged."""
    curves = [c for c in curves if c.train or c.eval]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, curve in enumerate(curves):
        colour = f"C{i % 10}"
        if curve.train:
            xs, ys = zip(*curve.train, strict=True)
            ax.plot(xs, ys, "-o", color=colour, markersize=3, label=f"{curve.label} train")
        if curve.eval:
            xs, ys = zip(*curve.eval, strict=True)
            ax.plot(xs, ys, "--s", color=colour, markersize=4, label=f"{curve.label} eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Fine-tuning loss (train solid, eval dashed)")
    ax.grid(alpha=0.3)
    _legend_below(ax, 2 * len(curves))
    return _save(fig, path)


@dataclass(frozen=True)
class DeltaSet:
    """Per-metric differences for one comparison (tuned minus base, or arm minus baseline)."""

    label: str
    deltas: dict[str, float]


def tuning_deltas(summary: EvaluationSummary) -> tuple[str, list[DeltaSet]]:
    """Fine-tuned minus base for arms that differ only by the adapter; else each arm vs baseline.

    Returns a title for the chart and the sets of deltas.
    """
    sets: list[DeltaSet] = []
    for tuned in summary.arms:
        if not tuned.adapter:
            continue
        base = next(
            (
                a
                for a in summary.arms
                if not a.adapter and a.rag == tuned.rag and a.base_model == tuned.base_model
            ),
            None,
        )
        if base is None:
            continue
        deltas = {
            m: tuned.metrics[m].mean - base.metrics[m].mean  # type: ignore[operator]
            for m in summary.metric_names()
            if m in tuned.metrics
            and m in base.metrics
            and tuned.metrics[m].mean is not None
            and base.metrics[m].mean is not None
        }
        sets.append(DeltaSet(f"{tuned.name} - {base.name}", deltas))
    if sets:
        return "Fine-tuned minus base (same RAG setting)", sets
    fallback = [
        DeltaSet(f"{a.name} - {summary.baseline}", dict(a.delta))
        for a in summary.arms
        if a.name != summary.baseline and a.delta
    ]
    return f"Each arm minus the baseline ({summary.baseline})", fallback


def delta_bars(summary: EvaluationSummary, path: Path) -> Path | None:
    """Bars of base-vs-tuned differences per metric; None when there is nothing to compare."""
    title, sets = tuning_deltas(summary)
    if not sets:
        return None
    metrics = [m for m in summary.metric_names() if any(m in s.deltas for s in sets)]
    x = np.arange(len(metrics))
    width = 0.8 / len(sets)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(metrics) + 3), 4.2))
    for i, s in enumerate(sets):
        values = [s.deltas.get(m, np.nan) for m in metrics]
        bars = ax.bar(x + (i - (len(sets) - 1) / 2) * width, values, width, label=s.label)
        for bar, v in zip(bars, values, strict=True):
            if not np.isnan(v):
                ax.annotate(
                    f"{v:+.3f}",
                    (bar.get_x() + bar.get_width() / 2, v),
                    ha="center",
                    va="bottom" if v >= 0 else "top",
                    fontsize=7,
                )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, metrics)
    ax.set_ylabel("difference in mean score")
    ax.set_title(f"Evaluation {summary.name}: {title}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _legend_below(ax, len(sets))
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # keeps the legend below the axes
    plt.close(fig)
    return path
