"""`python -m llmft_operator`: its command line, and settings refused before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from llmft.api.status import is_noop

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmft_operator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_help_documents_the_namespace_and_health_options() -> None:
    result = run("--help")

    assert result.returncode == 0
    assert "--namespace" in result.stdout and "--liveness" in result.stdout


def test_a_bad_setting_exits_before_connecting_and_names_the_variable() -> None:
    result = run("--namespace", "x", LLMFT_JOB_TTL_SECONDS="a day")

    assert result.returncode == 2
    assert "LLMFT_JOB_TTL_SECONDS='a day': expected an integer" in result.stderr


def test_status_patch_is_skipped_when_it_changes_nothing() -> None:
    current = {"phase": "Running", "metrics": {"a": 1, "b": 2}, "conditions": [{"type": "Ready"}]}

    assert is_noop(current, {"phase": "Running", "metrics": {"a": 1}})
    assert not is_noop(current, {"metrics": {"a": 2}})
    assert not is_noop(current, {"conditions": []})
    assert not is_noop({}, {"progress": {"percent": 100.0}})


def test_waiting_resources_are_checked_less_often_the_longer_they_wait() -> None:
    from llmft_operator.handlers import retry_delay

    assert [retry_delay(10, retry) for retry in range(6)] == [10, 20, 40, 60, 60, 60]
