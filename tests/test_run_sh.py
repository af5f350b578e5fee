"""tests/run.sh: with no selection it runs the `cluster` tier beside the rest and fails if either
fails; given a selection it runs pytest once, as asked. Run here on a stand-in project of two
tests (one marked `cluster`), with the Python environment these tests run in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

RUN_SH = Path(__file__).parent / "run.sh"

TESTS = """
import os

import pytest


def test_rest():
    print("rest ran")


@pytest.mark.cluster
def test_cluster():
    assert os.environ.get("CLUSTER_FAILS") != "1", "the cluster tier failed"
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_text(f"echo {sys.prefix}\n")
    (tmp_path / "tests").mkdir()
    shutil.copy(RUN_SH, tmp_path / "tests" / "run.sh")
    (tmp_path / "tests" / "test_two.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  cluster: the real node\n")
    return tmp_path


def _run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "tests/run.sh", "-p", "no:cacheprovider", "-s", *args],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **env},
    )  # fmt: skip


def test_without_a_selection_both_halves_run_and_a_failing_cluster_tier_fails_the_run(
    tmp_path: Path,
) -> None:
    result = _run(_project(tmp_path), CLUSTER_FAILS="1")
    out = result.stdout

    assert result.returncode == 1, out + result.stderr
    assert "rest ran" in out and "1 passed, 1 deselected" in out  # the other tiers, shown live
    assert "the cluster tier failed" in out  # the cluster tier's log, shown at the end
    assert "-m 'not cluster' exited 0" in out and "-m cluster exited 1" in out


def test_a_selection_runs_one_pytest_as_asked(tmp_path: Path) -> None:
    result = _run(_project(tmp_path), "-m", "cluster", CLUSTER_FAILS="1")

    assert result.returncode == 1
    assert "runs beside" not in result.stdout and "rest ran" not in result.stdout
    assert "1 failed, 1 deselected" in result.stdout
