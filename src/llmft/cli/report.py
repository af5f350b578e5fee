"""`llmft report`: pick the source (state directory or cluster), print tables, write charts."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from llmft.cli import DEFAULT_STATE_DIR
from llmft.report import (
    ReportSourceError,
    SummaryError,
    cluster_inputs,
    local_inputs,
    write_report,
)
from llmft.runner.state import StateDir

REPORT_WIDTH = 160


def report_command(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=REPORT_WIDTH)  # a log or a pipe: room for the whole table
    errors = Console(stderr=True)
    try:
        if args.cluster:
            inputs = cluster_inputs(args.namespace, args.kubeconfig, args.evaluation)
            out = Path(args.out or "llmft-report")
        else:
            state = StateDir(args.state_dir or DEFAULT_STATE_DIR)
            inputs = local_inputs(state, args.evaluation)
            out = Path(args.out) if args.out else state.root / "report"
        write_report(inputs, out, console)
    except (ReportSourceError, SummaryError) as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    return 0
