"""`llmft report`: the ranked comparison table and its charts (PNG files and one HTML page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from llmft.report.charts import delta_bars, loss_curves, metric_bars
from llmft.report.experiment import (
    ExperimentInput,
    experiment_charts,
    local_experiments,
    ranking_lines,
    render_trials,
    trials_table,
)
from llmft.report.html import HtmlSection, write_html
from llmft.report.sources import ReportInput, ReportSourceError, cluster_inputs, local_inputs
from llmft.report.summary import EvaluationSummary, SummaryError, load_summary
from llmft.report.table import comparison_rows, render_table, table_cells, table_headers

__all__ = [
    "EvaluationSummary",
    "ExperimentInput",
    "ReportInput",
    "ReportSourceError",
    "SummaryError",
    "WrittenReport",
    "cluster_inputs",
    "load_summary",
    "local_experiments",
    "local_inputs",
    "write_report",
]


@dataclass
class WrittenReport:
    """The files a report wrote."""

    pngs: list[Path] = field(default_factory=list)
    html: Path | None = None


def summary_notes(summary: EvaluationSummary) -> list[str]:
    """Remarks from the summary itself: the split scored, the verdict, where RAG context came
    from."""
    notes = []
    split = summary.summary.split
    if split is not None:
        notes.append(f"Scored on the {split.name} split: {split.meaning}")
    if summary.verdict:
        notes.append(summary.verdict)
    if summary.summary.degraded:
        notes.append(f"Degraded: {summary.summary.degraded}")
    backend = summary.retrieval_backend
    if backend:
        where = {"embedded": "the in-process vector store (no Weaviate)", "weaviate": "Weaviate"}
        notes.append(f"RAG context retrieved from {where.get(str(backend), str(backend))}")
    return notes


def write_report(
    inputs: list[ReportInput],
    out_dir: Path,
    console: Console,
    experiments: list[ExperimentInput] | None = None,
) -> WrittenReport:
    """Print each experiment's trials and each evaluation's table, write their charts, then one
    HTML page with everything."""
    written = WrittenReport()
    sections: list[HtmlSection] = []
    for exp in experiments or []:
        console.print(render_trials(exp))
        lines = ranking_lines(exp)
        for line in lines:
            console.print(line, highlight=False)
        images = experiment_charts(exp, out_dir)
        written.pngs += [p for _, p in images]
        headers, rows, best = trials_table(exp)
        sections.append(
            HtmlSection(
                title=f"Experiment {exp.name} — trials by {exp.objective} ({exp.direction})",
                headers=headers,
                rows=rows,
                winner_rows=best,
                images=images,
                notes=[str(exp.status.get("message") or ""), *lines],
            )
        )
    for item in inputs:
        summary = item.summary
        console.print(render_table(summary))
        notes = [*item.notes, *summary_notes(summary)]
        for note in notes:
            console.print(f"[dim]{note}[/dim]", highlight=False)
        images: list[tuple[str, Path]] = []
        bars = metric_bars(summary, out_dir / f"{summary.name}-metrics.png")
        images.append(("Mean score per metric and arm; error bars are bootstrap CIs.", bars))
        deltas = delta_bars(summary, out_dir / f"{summary.name}-deltas.png")
        if deltas is not None:
            images.append(("Base versus fine-tuned: difference in mean score.", deltas))
        loss = loss_curves(item.curves, out_dir / f"{summary.name}-loss.png")
        if loss is not None:
            images.append(("Training and evaluation loss of the fine-tune jobs.", loss))
        written.pngs += [p for _, p in images]
        rows = comparison_rows(summary)
        sections.append(
            HtmlSection(
                title=f"Evaluation {summary.name} — ranked by {summary.primary_metric}"
                + (f" on the {summary.split_label()} split" if summary.split_label() else ""),
                headers=table_headers(summary),
                rows=[table_cells(r) for r in rows],
                winner_rows={i for i, r in enumerate(rows) if r.winner},
                images=images,
                notes=[*notes, f"Source: {summary.source}"],
            )
        )
    written.html = write_html(sections, out_dir / "report.html")
    console.print(f"Charts: {', '.join(str(p) for p in written.pngs)}", highlight=False)
    console.print(f"HTML:   {written.html}", highlight=False)
    return written
