"""`llmft run` end to end with a stand-in workload: order, status files, failures, Ctrl-C."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests
from llmft.api import load_manifests
from llmft.api.layout import RESULT
from llmft.cli import main
from llmft.runner import RunDisplay, execute, make_plan
from llmft.runner.state import StateDir

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every kind runs the stand-in workload; returns the file it logs its runs to."""
    monkeypatch.setattr(execute, "workload_module", lambda kind: "cli.standin_workload")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "runs.jsonl"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "runs.jsonl"


def _runs(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _annotate(obj: dict[str, Any], **notes: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["annotations"] = {
        f"llmft.test/{k.replace('_', '-')}": v for k, v in notes.items()
    }
    return obj


def _run(manifests: Path, state: Path, *extra: str) -> int:
    return main(["run", "-f", str(manifests), "--state-dir", str(state), *extra])


def test_resources_run_in_dependency_order_whatever_the_file_order(
    tmp_path: Path, standin: Path
) -> None:
    write_manifests(tmp_path / "m", EVALUATION, FINETUNE, DATASET)
    assert _run(tmp_path / "m", tmp_path / "state") == 0
    assert [r["key"] for r in _runs(standin)] == [
        "DatasetGeneration/docs",
        "FineTuneJob/tune",
        "Evaluation/compare",
    ]


def test_status_files_hold_what_the_operator_and_the_workload_write(tmp_path: Path) -> None:
    write_manifests(tmp_path / "m", DATASET, _annotate(FINETUNE, steps="3"), EVALUATION)
    assert _run(tmp_path / "m", tmp_path / "state") == 0

    state = StateDir(tmp_path / "state")
    status = state.read_status("FineTuneJob/tune") or {}
    assert status["phase"] == "Succeeded"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["Failed"]["status"] == "False"
    assert conditions["InputsReady"]["status"] == "True"
    assert status["progress"]["step"] == 3 and status["progress"]["percent"] == 100.0
    assert status["metrics"] == {"steps": 3, "resumedFrom": 0}
    dataset = state.read_status("DatasetGeneration/docs") or {}
    assert status["inputs"] == {"DatasetGeneration/docs": dataset["runId"]}
    out = Path(status["runner"]["outputDir"])
    assert json.loads((out / RESULT).read_text())["metrics"] == status["metrics"]
    spec = state.read_spec("FineTuneJob/tune") or {}
    assert spec["spec"]["dataset"]["path"] == dataset["runner"]["outputDir"]


def test_a_second_run_skips_what_is_up_to_date(
    tmp_path: Path, standin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifests(tmp_path / "m", DATASET, FINETUNE, EVALUATION)
    assert _run(tmp_path / "m", tmp_path / "state") == 0
    capsys.readouterr()
    assert _run(tmp_path / "m", tmp_path / "state") == 0
    assert "Everything is up to date" in capsys.readouterr().out
    assert len(_runs(standin)) == 3


def test_a_failed_workload_blocks_only_what_depends_on_it(
    tmp_path: Path, standin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = _annotate(FINETUNE, fail="spec.hyperparameters.maxSteps: too many for the data")
    write_manifests(tmp_path / "m", DATASET, failing, EVALUATION)

    assert _run(tmp_path / "m", tmp_path / "state") == 1

    state = StateDir(tmp_path / "state")
    job = state.read_status("FineTuneJob/tune") or {}
    assert job["phase"] == "Failed"
    failed = next(c for c in job["conditions"] if c["type"] == "Failed")
    assert failed["message"] == "spec.hyperparameters.maxSteps: too many for the data"
    evaluation = state.read_status("Evaluation/compare") or {}
    assert evaluation["phase"] == "Waiting"
    assert evaluation["conditions"][0]["message"] == "FineTuneJob/tune did not succeed"
    assert [r["key"] for r in _runs(standin)] == ["DatasetGeneration/docs"]
    captured = capsys.readouterr()
    assert "too many for the data" in captured.out
    assert "failed: FineTuneJob/tune, Evaluation/compare" in captured.err


def test_an_invalid_manifest_is_refused_before_anything_runs(
    tmp_path: Path, standin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = copy.deepcopy(FINETUNE)
    bad["spec"]["hyperparameters"]["learningRate"] = -1
    write_manifests(tmp_path / "m", DATASET, bad, EVALUATION)

    assert _run(tmp_path / "m", tmp_path / "state") == 2

    err = capsys.readouterr().err
    assert "FineTuneJob/tune" in err and "spec.hyperparameters.learningRate" in err
    assert _runs(standin) == []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_keeps_the_checkpoint_and_the_next_run_resumes_from_it(
    tmp_path: Path, standin: Path
) -> None:
    # Far more steps than the interrupt needs: the signal never races the workload's end.
    slow = _annotate(FINETUNE, steps="400", step_seconds="0.25")
    write_manifests(tmp_path / "m", DATASET, slow, EVALUATION)
    state = StateDir(tmp_path / "state")
    argv = [sys.executable, str(TESTS / "cli" / "standin_run.py"), "run", "-f", str(tmp_path / "m")]
    argv += ["--state-dir", str(state.root)]
    # Started as a shell starts a background job: with SIGINT ignored, which Python inherits.
    runner = subprocess.Popen(
        argv,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_ignore_sigint,
    )
    deadline = time.monotonic() + 120
    while ((state.read_status("FineTuneJob/tune") or {}).get("progress") or {}).get("step", 0) < 3:
        assert time.monotonic() < deadline and runner.poll() is None, runner.communicate()
        time.sleep(0.1)

    runner.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = runner.communicate(timeout=60)

    assert runner.returncode == 130, (out, err)
    assert b"Run the same `llmft run` again to resume" in out
    interrupted = state.read_status("FineTuneJob/tune") or {}
    assert interrupted["phase"] == "Failed"
    assert {c["type"]: c["reason"] for c in interrupted["conditions"]}["Failed"] == "Interrupted"
    stopped_at = interrupted["progress"]["step"]
    assert 3 <= stopped_at < 400

    # The same spec (annotations are not part of it), without the pauses: it resumes.
    write_manifests(tmp_path / "m", DATASET, _annotate(FINETUNE, steps="400"), EVALUATION)
    capture = subprocess.run(argv, env=os.environ, capture_output=True, timeout=120)

    assert capture.returncode == 0, capture
    assert b"skip DatasetGeneration/docs: up to date" in capture.stdout
    assert b"FineTuneJob/tune: interrupted at" in capture.stdout
    runs = _runs(standin)
    assert [r["key"] for r in runs].count("DatasetGeneration/docs") == 1
    resumed = [r for r in runs if r["key"] == "FineTuneJob/tune"]
    assert len(resumed) == 1 and resumed[0]["from"] >= stopped_at
    final = state.read_status("FineTuneJob/tune") or {}
    assert final["phase"] == "Succeeded" and final["progress"]["resumedFromStep"] >= stopped_at


def test_cpu_workloads_get_the_threads_their_cpu_resource_allows(
    tmp_path: Path, standin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    job = copy.deepcopy(FINETUNE)
    job["spec"]["resources"]["cpu"] = "500m"
    write_manifests(tmp_path / "m", DATASET, job)
    assert _run(tmp_path / "m", tmp_path / "state") == 0
    threads = {r["key"]: r["threads"] for r in _runs(standin)}
    assert threads["FineTuneJob/tune"] == "1"
    assert threads["DatasetGeneration/docs"] == str(min(4, os.cpu_count() or 1))


def test_threads_the_user_set_are_left_alone(
    tmp_path: Path, standin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    write_manifests(tmp_path / "m", DATASET)
    assert _run(tmp_path / "m", tmp_path / "state") == 0
    assert [r["threads"] for r in _runs(standin)] == ["3"]


def test_the_runner_removes_nothing_outside_its_artefact_root(
    tmp_path: Path, standin: Path
) -> None:
    write_manifests(tmp_path / "m", DATASET)
    state = StateDir(tmp_path / "state")
    plan = make_plan(load_manifests(tmp_path / "m"), state, force=True)
    # The output directory becomes a link out of the root after planning (another process).
    precious = tmp_path / "precious"
    (precious / "keep").mkdir(parents=True)
    (step,) = plan.steps
    step.output_dir.parent.mkdir(parents=True)
    step.output_dir.symlink_to(precious)

    result = execute.execute_plan(plan, state, RunDisplay(Console(file=io.StringIO())))

    assert result.phases == {"DatasetGeneration/docs": "Failed"}
    assert (precious / "keep").is_dir() and sorted(precious.iterdir()) == [precious / "keep"]
    assert _runs(standin) == []
    failed = {c["type"]: c for c in (state.read_status(step.key) or {})["conditions"]}["Failed"]
    assert failed["reason"] == "OutputOutsideArtifactRoot"
