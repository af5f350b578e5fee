"""What `llmft run` prints after a succeeded step: the kind's own lines (from its registry
entry), its headline metrics, and where the artefacts are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmft.api.layout import DATASET_MANIFEST, EVAL_SUMMARY
from llmft.api.resource import Resource, load_manifests
from llmft.runner.plan import Step
from llmft.runner.results import result_notes

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def step_for(kind: str, out: Path) -> Step:
    res: Resource[Any] = next(r for r in load_manifests(QUICKSTART) if r.kind == kind)
    manifest: Any = {"spec": {"output": {"path": str(out)}}}
    return Step(key=kind, resource=res, manifest=manifest, spec_hash="", decision=None)  # type: ignore[arg-type]


def test_a_dataset_generation_says_which_generator_wrote_it_and_its_counts(tmp_path: Path) -> None:
    (tmp_path / DATASET_MANIFEST).write_text(
        json.dumps({"generator": {"backend": "ollama", "model": "smollm2", "ollamaHost": "h:1"}})
    )
    metrics = {"chunks": 4, "pairs": 9, "trainPairs": 7, "evalPairs": 2, "dropped": 1}

    notes = result_notes(step_for("DatasetGeneration", tmp_path), {"metrics": metrics})

    assert notes[0].startswith("generator: Ollama at h:1, model smollm2")
    assert notes[1] == "chunks 4, pairs 9, trainPairs 7, evalPairs 2, dropped 1"
    assert notes[-1] == f"artefacts: {tmp_path}"


def test_an_evaluation_reads_its_summary_and_points_to_the_report(tmp_path: Path) -> None:
    summary = {
        "retrievalBackend": "embedded",
        "split": {"name": "documents", "meaning": "unseen documents"},
        "verdict": {"reason": "tuned beats base"},
    }
    (tmp_path / EVAL_SUMMARY).write_text(json.dumps(summary))

    notes = result_notes(step_for("Evaluation", tmp_path), {"metrics": {"best": "tuned"}})

    assert notes == [
        "retrieval: in-process vector store (no Weaviate answered)",
        "scored the documents split: unseen documents",
        "tuned beats base",
        "see the comparison with `llmft report`",
        f"artefacts: {tmp_path}",
    ]


def test_a_fine_tune_job_without_metrics_still_names_its_artefacts(tmp_path: Path) -> None:
    notes = result_notes(step_for("FineTuneJob", tmp_path), {"metrics": {"steps": 3}})

    assert notes == ["steps 3", f"artefacts: {tmp_path}"]
