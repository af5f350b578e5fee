"""How `llmft run` shows its plan and progress: rich bars on a terminal, lines elsewhere."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from llmft.runner.plan import Plan, Step


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_detail(progress: dict[str, Any]) -> str:
    """One line from a status.progress: steps, loss, throughput, ETA, the workload's message."""
    parts: list[str] = []
    step, total = progress.get("step"), progress.get("total")
    unit = progress.get("unit") or ""
    if step is not None and total:
        parts.append(f"{step}/{total} {unit}".strip())
    elif step is not None:
        parts.append(f"{step} {unit}".strip())
    if progress.get("loss") is not None:
        parts.append(f"loss {progress['loss']:.4g}")
    if progress.get("evalLoss") is not None:
        parts.append(f"eval loss {progress['evalLoss']:.4g}")
    if progress.get("tokensPerSecond"):
        parts.append(f"{progress['tokensPerSecond']:.0f} tok/s")
    if progress.get("etaSeconds") is not None:
        parts.append(f"ETA {format_duration(progress['etaSeconds'])}")
    if progress.get("resumedFromStep"):
        parts.append(f"resumed from step {progress['resumedFromStep']}")
    message = str(progress.get("message") or "")
    if message:
        if step is not None and total and message.startswith(f"{step}/{total} "):
            parts.pop(0)  # the workload's message already says how far it is
        parts.append(message[:100])
    return " · ".join(parts)


class RunDisplay:
    """Prints the plan, per-workload progress and results to a rich console.

    On a terminal each running workload gets a live progress bar; elsewhere (CI, a pipe) it
    prints a line when the workload's message changes or its progress crosses ten percent.
    """

    def __init__(self, console: Console, live: bool | None = None) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = ""
        self._last_decile = -1
        self._last_print = 0.0

    def plan(self, plan: Plan) -> None:
        self.console.print("[bold]Plan[/bold]")
        for step in plan.steps:
            verb = "[cyan]run [/cyan]" if step.decision.run else "[green]skip[/green]"
            self.console.print(f"  {verb} {step.key}: {step.decision.reason}", soft_wrap=True)
        for key, why in plan.not_selected.items():
            self.console.print(f"  [dim]----[/dim] {key}: {why}", soft_wrap=True)

    def note(self, text: str) -> None:
        # soft_wrap: a long path or message stays one line in a log instead of being cut at 80.
        self.console.print(text, highlight=False, soft_wrap=True)

    def started(self, step: Step, device: str) -> None:
        self.console.print(f"[bold cyan]>[/bold cyan] {step.key} on {device}")
        self._last_line, self._last_decile, self._last_print = "", -1, time.monotonic()
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(step.key, total=None, detail="starting")

    def progress(self, step: Step, status: dict[str, Any]) -> None:
        progress = status.get("progress") or {}
        detail = progress_detail(progress)
        total, done = progress.get("total"), progress.get("step")
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                total=total or None,
                completed=done or 0,
                detail=detail,
            )
            return
        decile = int(10 * done / total) if done is not None and total else -1
        quiet_for = time.monotonic() - self._last_print
        if detail and (
            decile != self._last_decile or (detail != self._last_line and quiet_for > 30)
        ):
            self.console.print(f"  {step.key}: {detail}", highlight=False, soft_wrap=True)
            self._last_line, self._last_decile, self._last_print = detail, decile, time.monotonic()

    def log_line(self, step: Step, line: str) -> None:
        self.console.print(
            f"  [dim]{step.key} |[/dim] {line.rstrip()}", highlight=False, soft_wrap=True
        )

    def finished(self, step: Step, phase: str, message: str, seconds: float) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None
        mark = "[green]✓[/green]" if phase == "Succeeded" else "[red]✗[/red]"
        self.console.print(
            f"{mark} {step.key} {phase} in {format_duration(seconds)}"
            + (f": {message}" if message else ""),
            highlight=False,
            soft_wrap=True,
        )
