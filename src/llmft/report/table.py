"""The ranked comparison table: one row per arm, numbers straight from the summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from rich.table import Table

from llmft.report.summary import ArmResult, EvaluationSummary, MetricStat


@dataclass(frozen=True)
class Row:
    """One arm as the table shows it."""

    rank: int
    arm: str
    model: str
    adapter: str
    rag: bool
    primary: MetricStat | None
    others: dict[str, float | None]
    delta: float | None
    p_value: float | None
    retrieval_hit_rate: float | None
    winner: bool
    baseline: bool


def model_label(model: str) -> str:
    """A readable model name: absolute paths shortened to their last part."""
    if model.startswith("/"):
        return PurePath(model.split(" ")[0]).name + model[len(model.split(" ")[0]) :]
    return model


def adapter_label(adapter: str | None) -> str:
    """`-` for none; for `<job output>/adapter`, the fine-tune job's directory name."""
    if not adapter:
        return "-"
    path = PurePath(adapter)
    return path.parent.name if path.name == "adapter" and path.parent.name else path.name


def comparison_rows(summary: EvaluationSummary) -> list[Row]:
    primary = summary.primary_metric
    others = [m for m in summary.metric_names() if m != primary]
    rows: list[Row] = []
    for rank, arm in enumerate(summary.ranked_arms(), start=1):
        rows.append(
            Row(
                rank=rank,
                arm=arm.name,
                model=model_label(arm.base_model),
                adapter=adapter_label(arm.adapter),
                rag=arm.rag,
                primary=arm.metrics.get(primary),
                others={m: _mean(arm, m) for m in others},
                delta=arm.delta.get(primary),
                p_value=summary.p_value(arm, primary),
                retrieval_hit_rate=arm.retrieval_hit_rate,
                winner=arm.name == summary.winner,
                baseline=arm.name == summary.baseline,
            )
        )
    return rows


def _mean(arm: ArmResult, metric: str) -> float | None:
    stat = arm.metrics.get(metric)
    return stat.mean if stat else None


def format_number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_stat(stat: MetricStat | None) -> str:
    """`mean ± half-width of the CI`, or the mean alone when there is no interval."""
    if stat is None or stat.mean is None:
        return "-"
    if stat.ci_low is None or stat.ci_high is None:
        return format_number(stat.mean)
    return f"{stat.mean:.3f} ± {(stat.ci_high - stat.ci_low) / 2:.3f}"


def format_delta(delta: float | None, baseline: bool) -> str:
    if baseline:
        return "baseline"
    return "-" if delta is None else f"{delta:+.3f}"


def table_headers(summary: EvaluationSummary) -> list[str]:
    others = [m for m in summary.metric_names() if m != summary.primary_metric]
    return [
        "#",
        "arm",
        "model",
        "adapter",
        "RAG",
        f"{summary.primary_metric} (mean ± CI)",
        *others,
        f"Δ {summary.primary_metric}",
        "p",
        "hit rate",
    ]


def table_cells(row: Row) -> list[str]:
    return [
        str(row.rank),
        row.arm + (" ★" if row.winner else ""),
        row.model,
        row.adapter,
        "yes" if row.rag else "no",
        format_stat(row.primary),
        *(format_number(v) for v in row.others.values()),
        format_delta(row.delta, row.baseline),
        "-" if row.p_value is None else f"{row.p_value:.3g}",
        format_number(row.retrieval_hit_rate) if row.rag else "-",
    ]


def render_table(summary: EvaluationSummary) -> Table:
    """The rich table for a terminal."""
    n = max((a.n or 0) for a in summary.arms) if summary.arms else 0
    split = summary.split_label()
    table = Table(
        title=f"Evaluation {summary.name}: ranked by {summary.primary_metric}"
        + (f" on the {split} split" if split else "")
        + (f" (n={n} per arm)" if n else ""),
        caption=(
            "★ winner (significantly better than the runner-up) · "
            f"Δ: difference from the baseline arm ({summary.baseline or '-'}) · "
            "p: paired permutation test against the baseline · "
            "hit rate: share of RAG questions whose source chunk was retrieved · "
            "metrics on a 0..1 scale"
        ),
    )
    for i, header in enumerate(table_headers(summary)):
        numeric = i == 0 or i >= 5
        # Numbers never wrap or get cut; names and models give way on a narrow terminal.
        table.add_column(header, justify="right" if numeric else "left", no_wrap=numeric or i == 1)
    for row in comparison_rows(summary):
        table.add_row(*table_cells(row), style="bold" if row.winner else None)
    return table
