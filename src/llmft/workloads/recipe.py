"""The steps every workload's `main` shares, so that each reads as its recipe: load the spec,
open the inputs, run, report progress, write the outputs, push.

`llmft.workloads.entry` loads the spec and builds the reporter; this module gives a main its
output directory and the record of the Hub sources it read; `llmft.tracking.tracked_run` its
MLflow run (apart, so that a workload without MLflow does not import it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmft.workloads import hubsource
from llmft.workloads.entry import WorkloadError


def output_dir(spec: Any) -> Path:
    """The spec's output directory, created; the runner or the operator always sets it."""
    output = getattr(spec, "output", None)
    if output is None or not output.path:
        raise WorkloadError("spec.output.path: not set (the runner or operator resolves it)")
    out = Path(output.path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def with_sources(outputs: dict[str, Any]) -> dict[str, Any]:
    """`outputs` plus the Hub sources the run read and their commits, when it read any."""
    sources = hubsource.fetched_sources()
    return {**outputs, "sources": sources} if sources else outputs
