"""The shared workload entrypoint: logs are JSON lines, failures are reported through the API."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llmft.reporting import Reporter
from llmft.workloads.entry import disk_full, run_workload
from llmft.workloads.stopping import STOP, Stopped

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


def _spec_file(tmp_path: Path) -> Path:
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "stop", "namespace": "default"},
        "spec": {
            "baseModel": {"name": "/models/none"},
            "dataset": {"path": "/data/none"},
            "output": {"path": str(tmp_path / "out")},
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(manifest))
    return path


def test_sigterm_outside_a_saving_stretch_stops_the_workload_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status_file = tmp_path / "status.json"
    monkeypatch.setenv("LLMFT_STATUS_FILE", str(status_file))
    reached: list[str] = []

    def main(res: Any, reporter: Reporter) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the next line runs
        reached.append("after the signal")

    before = signal.getsignal(signal.SIGTERM)
    rc = run_workload("FineTuneJob", "test", main, ["--spec", str(_spec_file(tmp_path))])

    assert rc == 143 and reached == []
    assert json.loads(status_file.read_text())["progress"]["message"] == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_a_saving_stretch_defers_the_first_stop_signal_and_not_a_second() -> None:
    STOP.install()
    try:
        with STOP.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert STOP.requested and STOP.signum == signal.SIGTERM  # recorded, still running
            with pytest.raises(Stopped) as second:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # not reached: the handler raises first
        assert second.value.exit_code == 130  # the second signal stopped it
        with pytest.raises(Stopped), STOP.deferred():  # already asked: no stretch begins
            pass
    finally:
        STOP.restore()


def test_a_full_volume_is_recognised_however_a_library_reports_it(tmp_path: Path) -> None:
    safetensors = RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "..." })')
    wrapped = RuntimeError("saving the checkpoint failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")

    assert disk_full(safetensors, None) and disk_full(wrapped, None)
    assert not disk_full(ValueError("bad value"), tmp_path)  # tmp_path's volume has space
