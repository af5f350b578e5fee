"""The shared workload entrypoint: logs are JSON lines, failures are reported through the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llmft.reporting import Reporter

LOGS = """
import logging
from llmft.workloads.entry import configure_logging
configure_logging()
logging.getLogger("llmft.test").warning('a "quoted" message\\nover two lines: %s', {"k": 1})
"""


def test_workload_logs_are_one_json_object_per_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LOGS], capture_output=True, text=True, timeout=60, check=True
    )

    lines = [json.loads(line) for line in proc.stderr.splitlines()]

    assert len(lines) == 1
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "llmft.test"
    assert lines[0]["msg"] == "a \"quoted\" message\nover two lines: {'k': 1}"
    assert {"time", "level", "logger", "msg"} <= set(lines[0])


def test_a_failure_reaches_the_status_and_the_termination_message(tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    termination.write_text("")
    reporter = Reporter(None, None, termination_log=str(termination))

    reporter.failure("spec.dataset.path: no such directory")

    assert reporter.last_progress["message"] == "failed: spec.dataset.path: no such directory"
    assert json.loads(termination.read_text())["error"] == "spec.dataset.path: no such directory"


def test_a_result_too_big_for_the_termination_message_stays_valid_json(tmp_path: Path) -> None:
    termination = tmp_path / "termination-log"
    termination.write_text("")
    reporter = Reporter(None, None, termination_log=str(termination))
    metrics = {"winner": "lora", "verdict": "lora wins: " + "x" * 200}
    for arm in range(8):
        for key in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "ngram"):
            metrics[f"arm{arm}.{key}"] = 0.123456
            for stat in ("delta", "deltaCiLow", "deltaCiHigh", "pValue"):
                metrics[f"arm{arm}.{key}.{stat}"] = 0.654321

    reporter.result(metrics, {"summary": "/out/summary.json"})

    text = termination.read_text()
    kept = json.loads(text)["metrics"]  # valid JSON, not cut mid-way
    assert len(text) <= 4000
    assert kept["winner"] == "lora" and kept["arm7.ngram"] == 0.123456  # the means stay
    assert not any(k.count(".") == 2 for k in kept) or len(kept) < len(metrics)
