"""An Experiment in the report: its trials table, a models x methods heat map of the objective,
the objective against each searched hyper-parameter, and every trial's loss curves on one chart.

Everything is read from the Experiment's status (what the operator or `llmft run` wrote) and,
locally, from each trial's log_history.jsonl; nothing is recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from llmft.api.layout import TRAIN_LOG
from llmft.report.charts import LossCurve, _save, loss_curve, loss_curves, plt
from llmft.runner.state import StateDir

STOPPED = ("EarlyStopped", "Diverged")


@dataclass
class ExperimentInput:
    """One Experiment's status and its trials' loss curves."""

    name: str
    status: dict[str, Any]
    objective: str = "evalLoss"
    direction: str = "minimize"
    curves: list[LossCurve] = field(default_factory=list)

    @property
    def trials(self) -> list[dict[str, Any]]:
        return list(self.status.get("trials") or [])


def local_experiments(state: StateDir) -> list[ExperimentInput]:
    """Every Experiment `llmft run` has run in this state directory."""
    from llmft.report.sources import read_log_history

    found = []
    for key in state.keys("Experiment"):
        status = state.read_status(key) or {}
        spec = (state.read_spec(key) or {}).get("spec") or {}
        item = experiment_input(key.partition("/")[2], spec, status)
        for trial in status.get("trials") or []:
            trial_spec = (state.read_spec(f"FineTuneJob/{trial['name']}") or {}).get("spec") or {}
            out = (trial_spec.get("output") or {}).get("path")
            log = Path(out) / TRAIN_LOG if out else None
            if log is not None and log.exists():
                item.curves.append(loss_curve(trial_label(trial), read_log_history(log)))
        found.append(item)
    return found


def experiment_input(name: str, spec: Mapping[str, Any], status: dict[str, Any]) -> ExperimentInput:
    """An Experiment's report input from its spec and status (no loss curves)."""
    objective = spec.get("objective") or {}
    metric = objective.get("metric") or "evalLoss"
    direction = objective.get("direction") or ("minimize" if metric == "evalLoss" else "maximize")
    return ExperimentInput(name, status, metric, direction)


def context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context (default: default)."""
    from kubernetes import config

    _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    return str((active or {}).get("context", {}).get("namespace") or "default")


def cluster_experiments(namespace: str) -> list[ExperimentInput]:
    """Every Experiment in a namespace, through the Kubernetes API (the kubeconfig is loaded
    by the Evaluation inputs first); trial loss curves live on the artefact volume, so none."""
    from kubernetes import client

    from llmft.api.common import GROUP, VERSION
    from llmft.api.kinds import EXPERIMENT

    listed = client.CustomObjectsApi().list_namespaced_custom_object(
        GROUP, VERSION, namespace, EXPERIMENT.plural
    )
    return [
        experiment_input(o["metadata"]["name"], o.get("spec") or {}, o.get("status") or {})
        for o in listed.get("items", [])
    ]


def trial_label(trial: Mapping[str, Any]) -> str:
    cell = trial.get("cell") or {}
    rag = "+RAG" if cell.get("rag") else ""
    return f"t{int(trial.get('index', 0)):02d} {cell.get('model')}/{cell.get('method')}{rag}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trials_table(item: ExperimentInput) -> tuple[list[str], list[list[str]], set[int]]:
    """Headers, rows and the best trial's row, for the terminal and the HTML page."""
    names = sorted({k for t in item.trials for k in (t.get("parameters") or {})})
    headers = [
        "trial",
        "model",
        "method",
        "mode",
        "RAG",
        *names,
        "state",
        "eval loss",
        item.objective,
    ]
    best = (item.status.get("bestTrial") or {}).get("name")
    rows, best_rows = [], set()
    for i, t in enumerate(item.trials):
        cell = t.get("cell") or {}
        params = t.get("parameters") or {}
        state = t.get("reason") or t.get("phase") or ""
        rows.append(
            [
                t["name"],
                str(cell.get("model")),
                str(cell.get("method")),
                str(cell.get("mode")),
                "yes" if cell.get("rag") else "no",
                *[_fmt(params.get(n)) for n in names],
                state,
                _fmt(t.get("evalLoss")),
                _fmt(t.get("objective")),
            ]
        )
        if t["name"] == best:
            best_rows.add(i)
    return headers, rows, best_rows


def render_trials(item: ExperimentInput) -> Table:
    headers, rows, best = trials_table(item)
    counts = item.status.get("counts") or {}
    table = Table(
        title=f"Experiment {item.name}: {counts.get('done', '?')} trials done, "
        f"best by {item.objective} ({item.direction}) in bold"
    )
    for h in headers:
        table.add_column(h)
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i in best else None)
    return table


def heatmap(item: ExperimentInput, path: Path) -> Path | None:
    """Models x methods: the best objective among each pair's succeeded trials."""
    done = [t for t in item.trials if t.get("objective") is not None]
    if not done:
        return None
    models = list(dict.fromkeys((t.get("cell") or {}).get("model") for t in item.trials))
    methods = list(dict.fromkeys((t.get("cell") or {}).get("method") for t in item.trials))
    pick = min if item.direction == "minimize" else max
    grid = np.full((len(models), len(methods)), np.nan)
    for i, model in enumerate(models):
        for j, method in enumerate(methods):
            values = [
                float(t["objective"])
                for t in done
                if (t.get("cell") or {}).get("model") == model
                and (t.get("cell") or {}).get("method") == method
            ]
            if values:
                grid[i, j] = pick(values)
    fig, ax = plt.subplots(figsize=(1.8 * len(methods) + 3, 0.9 * len(models) + 2))
    cmap = "viridis_r" if item.direction == "minimize" else "viridis"
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    for i in range(len(models)):
        for j in range(len(methods)):
            text = "no trial" if math.isnan(grid[i, j]) else f"{grid[i, j]:.4g}"
            ax.text(j, i, text, ha="center", va="center", color="white", fontsize=10)
    ax.set_xticks(range(len(methods)), [str(m) for m in methods])
    ax.set_yticks(range(len(models)), [str(m) for m in models])
    ax.set_title(f"{item.name}: best {item.objective} per model and method")
    fig.colorbar(image, ax=ax, label=item.objective)
    return _save(fig, path)


def parameter_scatter(item: ExperimentInput, path: Path) -> Path | None:
    """The objective (or the last eval loss of a stopped trial) against each hyper-parameter."""
    names = sorted({k for t in item.trials for k in (t.get("parameters") or {})})
    numeric = [
        n
        for n in names
        if all(isinstance((t.get("parameters") or {}).get(n), int | float) for t in item.trials)
    ]
    if not numeric:
        return None
    fig, axes = plt.subplots(1, len(numeric), figsize=(4.5 * len(numeric), 3.8), squeeze=False)
    for ax, name in zip(axes[0], numeric, strict=True):
        xs = [float(t["parameters"][name]) for t in item.trials]
        for t, x in zip(item.trials, xs, strict=True):
            stopped = t.get("reason") in STOPPED
            y = t.get("objective") if not stopped else t.get("evalLoss")
            if y is None:
                continue
            ax.scatter(
                x,
                float(y),
                marker="x" if stopped else "o",
                color="C3" if stopped else "C0",
                label="stopped early (last eval loss)" if stopped else item.objective,
            )
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(item.objective)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.suptitle(f"{item.name}: {item.objective} against each searched hyper-parameter")
    return _save(fig, path)


def experiment_charts(item: ExperimentInput, out_dir: Path) -> list[tuple[str, Path]]:
    """The Experiment's charts with their captions (only those there is data for)."""
    charts: list[tuple[str, Path | None]] = [
        (
            "Best objective of each model and method (over RAG settings and hyper-parameters).",
            heatmap(item, out_dir / f"{item.name}-heatmap.png"),
        ),
        (
            "Objective against each searched hyper-parameter; x: stopped early by the median rule.",
            parameter_scatter(item, out_dir / f"{item.name}-parameters.png"),
        ),
        (
            "Loss curves of every trial (train solid, eval dashed).",
            loss_curves(item.curves, out_dir / f"{item.name}-trial-losses.png"),
        ),
    ]
    return [(caption, p) for caption, p in charts if p is not None]


def ranking_lines(item: ExperimentInput) -> Sequence[str]:
    rows = item.status.get("ranking") or []
    metric = item.status.get("rankingMetric") or "score"
    return [
        f"{r['rank']}. {r['arm']} ({r.get('trial') or 'base ' + str(r.get('model'))}"
        f"{', RAG' if r.get('rag') else ''}): {metric} {_fmt(r.get('score'))}"
        for r in rows
    ]
