"""The few lines `llmft run` prints about a finished workload: what it made and with what.

What to print for a kind is its registry entry's (`result_notes`, `result_file`,
`result_metrics`); this module reads the files and formats the numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmft.api.kinds import KINDS
from llmft.runner.plan import Step


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pick(metrics: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{n} {_fmt(metrics[n])}" for n in names if metrics.get(n) is not None)


def result_notes(step: Step, status: dict[str, Any]) -> list[str]:
    """Human lines for a succeeded step, read from its status and its own output files."""
    entry = KINDS[step.resource.kind]
    metrics = status.get("metrics") or {}
    out = step.output_dir
    notes: list[str] = []
    if entry.result_notes is not None:
        detail = _read(out / entry.result_file) if entry.result_file else {}
        notes.extend(entry.result_notes(step.resource.spec, detail, metrics))
    counts = _pick(metrics, entry.result_metrics)
    if counts:
        notes.append(counts)
    notes.append(f"artefacts: {out}")
    return notes
