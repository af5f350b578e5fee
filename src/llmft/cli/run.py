"""`llmft run`: load, plan and run manifests locally; failures become exit codes and one line."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console

from llmft.api.resource import ManifestError
from llmft.cli import DEFAULT_STATE_DIR
from llmft.runner import DependencyError, ResolveError, RunDisplay, StateDir, run_manifests
from llmft.runner.execute import WorkloadMissing
from llmft.runner.state import StateLocked

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _terminate_as_interrupt(signum: int, frame: FrameType | None) -> None:
    # `kill` or a closed terminal stops the workload as cleanly as Ctrl-C does.
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace) -> int:
    console = Console()
    errors = Console(stderr=True)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: Ctrl-C
    # (or `kill -INT`) would be lost and the run would go on. Stopping cleanly is this command's
    # promise, so SIGINT always raises KeyboardInterrupt here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    state = StateDir(args.state_dir)
    try:
        result = run_manifests(
            Path(args.filename),
            state,
            RunDisplay(console),
            only=args.only,
            force=args.force,
            verbose=args.verbose,
        )
    except (ManifestError, DependencyError, ResolveError, StateLocked, WorkloadMissing) as err:
        errors.print(f"[red]error:[/red] {err}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("interrupted before any workload started")
        return EXIT_INTERRUPTED
    if result.interrupted:
        return EXIT_INTERRUPTED
    if not result.ok:
        failed = [k for k, p in result.phases.items() if p != "Succeeded"]
        errors.print(f"[red]failed:[/red] {', '.join(failed)}", highlight=False)
        return EXIT_FAILED
    console.print(
        f"[green]Done.[/green] State and artefacts in {state.root}; next: llmft report"
        + ("" if args.state_dir == DEFAULT_STATE_DIR else f" --state-dir {args.state_dir}"),
        highlight=False,
    )
    sys.stdout.flush()
    return 0
