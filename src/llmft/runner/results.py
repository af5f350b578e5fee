"""The few lines `llmft run` prints about a finished workload: what it made and with what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmft.api.layout import DATASET_MANIFEST, EVAL_SUMMARY
from llmft.runner.plan import Step


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pick(metrics: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{n} {_fmt(metrics[n])}" for n in names if metrics.get(n) is not None)


def generator_line(step: Step, generator: dict[str, Any]) -> str | None:
    """Which generator wrote the pairs, and why that one when the spec said `auto`."""
    backend, model = generator.get("backend"), generator.get("model")
    if not backend:
        return None
    asked = step.resource.spec.generator
    if backend == "ollama":
        where = f"Ollama at {generator.get('ollamaHost') or asked.ollama_host}"
        why = " (it answered; spec.generator.backend auto)" if asked.backend == "auto" else ""
    else:
        where = f"in-process {backend}"
        why = (
            f" (no Ollama answered at {asked.ollama_host}; spec.generator.backend auto)"
            if asked.backend == "auto"
            else ""
        )
    return f"generator: {where}, model {model}{why}"


def result_notes(step: Step, status: dict[str, Any]) -> list[str]:
    """Human lines for a succeeded step, read from its status and its own output files."""
    metrics = status.get("metrics") or {}
    out = step.output_dir
    notes: list[str] = []
    if step.resource.kind == "DatasetGeneration":
        line = generator_line(step, _read(out / DATASET_MANIFEST).get("generator") or {})
        if line:
            notes.append(line)
        counts = _pick(metrics, ["chunks", "pairs", "trainPairs", "evalPairs", "dropped"])
        if counts:
            notes.append(counts)
    elif step.resource.kind == "FineTuneJob":
        line = _pick(metrics, ["steps", "trainLoss", "evalLoss", "tokensPerSecond"])
        if line:
            notes.append(line)
    elif step.resource.kind == "Evaluation":
        summary = _read(out / EVAL_SUMMARY)
        if summary.get("retrievalBackend") == "embedded":
            notes.append("retrieval: in-process vector store (no Weaviate answered)")
        elif summary.get("retrievalBackend"):
            notes.append(f"retrieval: {summary['retrievalBackend']}")
        split = summary.get("split") or {}
        if split.get("name"):
            notes.append(
                f"scored the {split['name']} split: {split.get('meaning', '')}".rstrip(": ")
            )
        verdict = (summary.get("verdict") or {}).get("reason") or metrics.get("verdict")
        if verdict:
            notes.append(verdict)
        if summary.get("degraded"):
            notes.append(f"degraded: {summary['degraded']}")
        notes.append("see the comparison with `llmft report`")
    notes.append(f"artefacts: {out}")
    return notes
