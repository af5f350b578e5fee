"""docs/argocd-health.lua judges the statuses the operator really writes, as Argo CD would.

Argo CD runs a health script with the object in the global `obj` and reads the table it
returns; lupa runs it the same way. The statuses come from the operator's own status builders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa

from llmft.api.common import Phase
from llmft_operator.resolve import Problem
from llmft_operator.status import (
    Observation,
    invalid_spec_status,
    job_status,
    waiting_status,
)

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "argocd-health.lua"
NOW = "2026-01-01T00:00:00Z"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return result["status"], result["message"]


def resource(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tune", "namespace": "ml", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def with_job(
    phase: Phase, reason: str, message: str, generation: int = 1, job_generation: int = 1
) -> dict[str, Any]:
    return job_status(
        {},
        Observation(phase, reason, message),
        generation=generation,
        job_generation=job_generation,
        job_name="tune-ftj",
        artifacts=None,
        now=NOW,
    )


def test_a_new_object_is_progressing_until_the_operator_writes_status() -> None:
    assert health(resource(None)) == ("Progressing", "waiting for the llmft operator to pick it up")


def test_waiting_for_inputs_is_progressing_and_says_why() -> None:
    status = waiting_status(
        {}, [Problem("UpstreamNotReady", "waiting for DatasetGeneration 'docs' to succeed")], 1, NOW
    )
    state, message = health(resource(status))
    assert state == "Progressing"
    assert message == "Waiting: waiting for DatasetGeneration 'docs' to succeed"


def test_a_running_workload_is_progressing_with_its_progress() -> None:
    status = with_job(Phase.RUNNING, "Running", "pod tune-ftj-x is running")
    status["progress"] = {"step": 30, "total": 120, "loss": 1.25}
    assert health(resource(status)) == (
        "Progressing",
        "Running (30/120): pod tune-ftj-x is running",
    )
    status["progress"]["percent"] = 25.0
    assert health(resource(status))[1].startswith("Running (25%)")


def test_a_succeeded_workload_is_healthy() -> None:
    status = with_job(Phase.SUCCEEDED, "Succeeded", "adapter saved")
    assert health(resource(status)) == ("Healthy", "adapter saved")


def test_a_failed_workload_is_degraded_with_the_reason() -> None:
    status = with_job(Phase.FAILED, "OOMKilled", "the trainer ran out of memory (limit 8Gi)")
    assert health(resource(status)) == ("Degraded", "the trainer ran out of memory (limit 8Gi)")


def test_a_spec_the_operator_refuses_is_degraded() -> None:
    status = invalid_spec_status({}, "spec.baseModel.name: no such model", 1, NOW)
    assert health(resource(status)) == ("Degraded", "spec.baseModel.name: no such model")


def test_a_spec_changed_after_the_job_ran_is_degraded_until_re_created() -> None:
    status = with_job(Phase.SUCCEEDED, "Succeeded", "adapter saved", generation=2, job_generation=1)
    state, message = health(resource(status, generation=2))
    assert state == "Degraded"
    assert "spec generation 2 is not applied" in message


def test_a_status_older_than_the_spec_is_progressing() -> None:
    status = with_job(Phase.SUCCEEDED, "Succeeded", "adapter saved")
    assert health(resource(status, generation=3)) == (
        "Progressing",
        "the operator has not yet seen generation 3",
    )
