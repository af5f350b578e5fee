"""What a workload writes into status survives the CRD's structural schema (is not pruned)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmft.api.crdgen import status_pruned_paths
from llmft.reporting import FileSink, Reporter


def test_the_pruning_check_finds_a_field_the_schema_does_not_name() -> None:
    status = {"phase": "Succeeded", "summary": {"winner": "a"}, "conditions": [{"type": "Ready",
              "status": "True", "color": "red"}]}  # fmt: skip

    assert status_pruned_paths("FineTuneJob", status) == [
        "status.summary",
        "status.conditions[0].color",
    ]
    assert status_pruned_paths("Evaluation", status) == ["status.conditions[0].color"]


@pytest.mark.parametrize("kind", ["DatasetGeneration", "FineTuneJob", "Evaluation"])
def test_what_the_reporter_writes_is_kept(kind: str, tmp_path: Path) -> None:
    status_file = tmp_path / "status.json"
    reporter = Reporter(FileSink(status_file), tmp_path / "out", min_interval=0)

    reporter.progress(step=3, total=10, unit="steps", loss=1.5, tokensPerSecond=12.0, epoch=0.3)
    reporter.result({"trainLoss": 1.2, "winner": "a", "a.rougeL": 0.4}, {"adapter": "/x"})

    assert status_pruned_paths(kind, json.loads(status_file.read_text())) == []
