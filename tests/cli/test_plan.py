"""Spec hashing and what `llmft run` skips, resumes or reruns from scratch, and why."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cli.manifests import DATASET, EVALUATION, FINETUNE, write_manifests
from llmft.api import Phase, load_manifests
from llmft.runner.execute import begin_run, finish_run
from llmft.runner.graph import DependencyError
from llmft.runner.plan import Plan, decide, make_plan, spec_hash
from llmft.runner.state import StateDir


def _plan(directory: Path, state: StateDir, **kwargs: object) -> Plan:
    return make_plan(load_manifests(directory), state, **kwargs)  # type: ignore[arg-type]


def _complete(
    plan: Plan, state: StateDir, phase: Phase = Phase.SUCCEEDED, reason: str = ""
) -> None:
    """Record each step that runs as the runner does around a workload (no workload needed)."""
    for step in plan.steps:
        if step.decision.run:
            step.output_dir.mkdir(parents=True, exist_ok=True)
            begin_run(state, step, "cpu")
            finish_run(state, step.key, phase, reason or phase.value, "")


def _decisions(plan: Plan) -> dict[str, tuple[bool, str]]:
    return {s.key: (s.decision.run, s.decision.reason) for s in plan.steps}


def test_spec_hash_ignores_key_order_and_labels_but_not_the_spec() -> None:
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tune", "labels": {"team": "a"}},
        "spec": {"method": "lora", "hyperparameters": {"maxSteps": 2, "batchSize": 4}},
    }
    reordered = copy.deepcopy(manifest)
    reordered["spec"] = {"hyperparameters": {"batchSize": 4, "maxSteps": 2}, "method": "lora"}
    reordered["metadata"]["labels"] = {"team": "b"}
    changed = copy.deepcopy(manifest)
    changed["spec"]["hyperparameters"]["maxSteps"] = 3
    assert spec_hash(manifest) == spec_hash(reordered)
    assert spec_hash(manifest) != spec_hash(changed)


def test_first_run_runs_everything_in_dependency_order(manifests_dir: Path, tmp_path: Path) -> None:
    plan = _plan(manifests_dir, StateDir(tmp_path / "state"))
    assert _decisions(plan) == {
        "DatasetGeneration/docs": (True, "new"),
        "FineTuneJob/tune": (True, "new"),
        "Evaluation/compare": (True, "new"),
    }


def test_succeeded_resources_with_unchanged_specs_are_skipped(
    manifests_dir: Path, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    _complete(_plan(manifests_dir, state), state)
    again = _plan(manifests_dir, state)
    assert {k: run for k, (run, _) in _decisions(again).items()} == dict.fromkeys(
        ["DatasetGeneration/docs", "FineTuneJob/tune", "Evaluation/compare"], False
    )


def test_a_spec_change_reruns_that_resource_and_its_dependants_from_scratch(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path / "state")
    write_manifests(tmp_path / "m", DATASET, FINETUNE, EVALUATION)
    _complete(_plan(tmp_path / "m", state), state)

    job = copy.deepcopy(FINETUNE)
    job["spec"]["hyperparameters"]["learningRate"] = 0.001
    write_manifests(tmp_path / "m", DATASET, job, EVALUATION)
    plan = _plan(tmp_path / "m", state)
    decisions = _decisions(plan)
    assert decisions["DatasetGeneration/docs"] == (False, "up to date")
    assert decisions["FineTuneJob/tune"][0] is True
    assert "spec changed" in decisions["FineTuneJob/tune"][1]
    assert decisions["Evaluation/compare"][0] is True
    assert "FineTuneJob/tune reruns" in decisions["Evaluation/compare"][1]
    assert all(s.decision.fresh for s in plan.steps if s.decision.run)


def test_an_interrupted_run_resumes_without_clearing_its_checkpoints(
    manifests_dir: Path, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    first = _plan(manifests_dir, state)
    dataset, job, _ = first.steps
    for step, phase, reason in ((dataset, Phase.SUCCEEDED, ""), (job, Phase.FAILED, "Interrupted")):
        step.output_dir.mkdir(parents=True)
        begin_run(state, step, "cpu")
        finish_run(state, step.key, phase, reason or phase.value, "")

    plan = _plan(manifests_dir, state)
    by_key = {s.key: s for s in plan.steps}
    assert not by_key["DatasetGeneration/docs"].decision.run
    resumed = by_key["FineTuneJob/tune"].decision
    assert resumed.run and not resumed.fresh
    assert "interrupted" in resumed.reason and "resuming" in resumed.reason


def test_a_rerun_input_makes_its_dependant_stale_even_when_run_alone(
    manifests_dir: Path, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    _complete(_plan(manifests_dir, state), state)
    # Rerun only the dataset; the job built on the old dataset is now stale.
    forced = _plan(manifests_dir, state, only="DatasetGeneration/docs", force=True)
    assert [s.key for s in forced.steps] == ["DatasetGeneration/docs"]
    assert "FineTuneJob/tune" in forced.not_selected
    assert "will rerun on the next full run" in forced.not_selected["FineTuneJob/tune"]
    _complete(forced, state)

    plan = _plan(manifests_dir, state)
    decisions = _decisions(plan)
    assert decisions["DatasetGeneration/docs"][0] is False
    assert decisions["FineTuneJob/tune"] == (
        True,
        "its input DatasetGeneration/docs was rerun since: rerunning from scratch",
    )


def test_only_runs_the_target_and_the_inputs_it_needs_but_not_dependants(
    manifests_dir: Path, tmp_path: Path
) -> None:
    plan = _plan(manifests_dir, StateDir(tmp_path / "state"), only="FineTuneJob/tune")
    assert [s.key for s in plan.steps] == ["DatasetGeneration/docs", "FineTuneJob/tune"]
    assert list(plan.not_selected) == ["Evaluation/compare"]


def test_force_with_only_reruns_just_the_target(manifests_dir: Path, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    _complete(_plan(manifests_dir, state), state)
    plan = _plan(manifests_dir, state, only="FineTuneJob/tune", force=True)
    assert _decisions(plan)["DatasetGeneration/docs"][0] is False
    assert _decisions(plan)["FineTuneJob/tune"] == (
        True,
        "forced (--force): rerunning from scratch",
    )


def test_only_naming_an_unknown_resource_lists_the_known_ones(
    manifests_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DependencyError, match="FineTuneJob/tune"):
        _plan(manifests_dir, StateDir(tmp_path / "state"), only="FineTuneJob/nope")


def test_deleted_artefacts_rerun_a_succeeded_resource(manifests_dir: Path, tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    plan = _plan(manifests_dir, state)
    _complete(plan, state)
    plan.steps[2].output_dir.rmdir()
    assert _decisions(_plan(manifests_dir, state))["Evaluation/compare"] == (
        True,
        "artefacts are missing: rerunning",
    )


def test_a_failed_run_is_retried_and_resumes() -> None:
    status = {
        "specHash": "abc",
        "phase": "Failed",
        "conditions": [{"type": "Failed", "status": "True", "reason": "WorkloadFailed"}],
        "progress": {"step": 4, "total": 10, "unit": "steps"},
    }
    decision = decide(status, "abc", {})
    assert decision.run and not decision.fresh
    assert (
        decision.reason == "last run failed at 4/10 steps: retrying, resuming from its checkpoint"
    )


def test_a_resource_whose_state_is_gone_from_the_manifests_can_still_be_referenced(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path / "state")
    write_manifests(tmp_path / "first", DATASET)
    _complete(_plan(tmp_path / "first", state), state)
    write_manifests(tmp_path / "second", FINETUNE)  # refers to docs, run earlier
    plan = _plan(tmp_path / "second", state)
    (step,) = plan.steps
    assert step.manifest["spec"]["dataset"]["path"] == str(
        state.artifacts_root / "datasets" / "docs"
    )
    assert step.decision.reason == "new"


def test_a_run_whose_workload_reported_a_caveat_ends_degraded(tmp_path: Path) -> None:
    write_manifests(tmp_path / "m", DATASET)
    state = StateDir(tmp_path / "state")
    step = _plan(tmp_path / "m", state).steps[0]
    step.output_dir.mkdir(parents=True, exist_ok=True)
    begin_run(state, step, "cpu")
    state.update_status(step.key, {"metrics": {"degraded": "JudgeFailures: 3 of 8 missing"}})
    finish_run(state, step.key, Phase.SUCCEEDED, "Succeeded", "the workload finished")

    status = state.read_status(step.key) or {}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "JudgeFailures")
    assert degraded["message"] == "3 of 8 missing"
    assert status["phase"] == "Succeeded"
