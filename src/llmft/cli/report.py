"""`llmft report`: pick the source (state directory or cluster), print tables, write charts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from llmft.cli import DEFAULT_STATE_DIR
from llmft.report import (
    ExperimentInput,
    ReportSourceError,
    SummaryError,
    cluster_inputs,
    local_experiments,
    local_inputs,
    write_report,
)
from llmft.report.experiment import cluster_experiments, context_namespace
from llmft.runner.state import StateDir

REPORT_WIDTH = 160


def report_command(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=REPORT_WIDTH)  # a log or a pipe: room for the whole table
    errors = Console(stderr=True)
    try:
        experiments: list[ExperimentInput] = []
        if args.cluster:
            inputs = cluster_inputs(args.namespace, args.kubeconfig, args.evaluation)
            if not args.evaluation:
                namespace = args.namespace or context_namespace(args.kubeconfig)
                experiments = cluster_experiments(namespace)
            out = Path(args.out or "llmft-report")
        else:
            state = StateDir(args.state_dir or DEFAULT_STATE_DIR)
            experiments = [] if args.evaluation else local_experiments(state)
            try:
                inputs = local_inputs(state, args.evaluation)
            except ReportSourceError:
                if not experiments:  # an Experiment without an Evaluation still has its trials
                    raise
                inputs = []
            out = Path(args.out) if args.out else state.root / "report"
        write_report(inputs, out, console, experiments)
    except (ReportSourceError, SummaryError) as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    return 0
