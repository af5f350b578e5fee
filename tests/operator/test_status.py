"""Status mapping: what a Job and its Pods mean for a resource's phase, conditions and events."""

from __future__ import annotations

import itertools
import json
from typing import Any

from llmft.api.common import Phase
from llmft_operator.resolve import Problem
from llmft_operator.status import (
    Observation,
    condition,
    inputs_gone,
    job_status,
    last_message,
    observe_job,
    transitions,
    waiting_status,
)

T0 = "2026-01-01T10:00:00Z"
T1 = "2026-01-01T10:05:00Z"


def job(*conditions: str, suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "tune-ftj", "annotations": {"llmft.io/generation": "1"}},
        "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 3600, "suspend": suspend},
        "status": {
            "startTime": T0,
            "conditions": [
                {"type": c, "status": "True", "reason": r, "lastTransitionTime": T1}
                for c, r in (x.split(":") if ":" in x else (x, "") for x in conditions)
            ],
            **status,
        },
    }


def pod(
    phase: str,
    *,
    name: str = "tune-ftj-abcde",
    created: str = T0,
    terminated: dict[str, Any] | None = None,
    waiting: dict[str, Any] | None = None,
    scheduled: dict[str, Any] | None = None,
    memory: str = "24Gi",
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if terminated is not None:
        state["terminated"] = terminated
    if waiting is not None:
        state["waiting"] = waiting
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": [
            {"name": "trainer", "image": "registry.example/trainer:1", "state": state}
        ],
    }
    if scheduled is not None:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", **scheduled}]
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"containers": [{"name": "trainer", "resources": {"limits": {"memory": memory}}}]},
        "status": status,
    }


def test_complete_job_is_succeeded_with_the_result_from_the_termination_message() -> None:
    result = {"metrics": {"trainLoss": 1.25, "evalLoss": 1.5}, "outputs": {"adapter": "/a"}}
    done = pod("Succeeded", terminated={"exitCode": 0, "message": json.dumps(result)})

    obs = observe_job(job("Complete", completionTime=T1), [done])

    assert obs.phase == Phase.SUCCEEDED
    assert obs.result == result
    assert (obs.start_time, obs.completion_time) == (T0, T1)


def test_oom_killed_pod_fails_with_reason_and_memory_limit() -> None:
    killed = pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"}, memory="30Gi")

    obs = observe_job(job("Failed:BackoffLimitExceeded"), [killed])

    assert obs.phase == Phase.FAILED
    assert obs.reason == "OOMKilled"
    assert "memory limit 30Gi" in obs.message
    assert "spec.resources.memory" in obs.message
    assert obs.completion_time == T1


def test_failed_pod_reports_exit_code_and_the_workload_error() -> None:
    message = json.dumps({"error": "dataset.path: no train.jsonl in /artifacts/x", "metrics": {}})
    failed = pod("Failed", terminated={"exitCode": 1, "reason": "Error", "message": message})

    obs = observe_job(job("Failed:BackoffLimitExceeded"), [failed])

    assert obs.reason == "Error"
    assert obs.message == (
        "container trainer exited with code 1: dataset.path: no train.jsonl in /artifacts/x"
    )


def test_failed_pod_without_json_reports_the_last_log_line() -> None:
    logs = "loading model\nTraceback (most recent call last):\nRuntimeError: CUDA error\n"
    failed = pod("Failed", terminated={"exitCode": 1, "reason": "Error", "message": logs})

    obs = observe_job(job("Failed:BackoffLimitExceeded"), [failed])

    assert obs.message.endswith("exited with code 1: RuntimeError: CUDA error")


def test_newest_failed_pod_is_the_one_reported() -> None:
    older = pod("Failed", name="a", created=T0, terminated={"exitCode": 1, "message": "first"})
    newer = pod("Failed", name="b", created=T1, terminated={"exitCode": 3, "message": "second"})

    obs = observe_job(job("Failed:BackoffLimitExceeded"), [older, newer])

    assert "code 3: second" in obs.message


def test_deadline_exceeded_while_pulling_names_the_image_problem() -> None:
    stuck = pod(
        "Pending",
        waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling image"},
    )

    obs = observe_job(job("Failed:DeadlineExceeded"), [stuck])

    assert obs.phase == Phase.FAILED
    assert obs.reason == "ImagePullBackOff"
    assert "deadline (3600s" in obs.message
    assert "cannot pull image registry.example/trainer:1" in obs.message


def test_image_pull_error_while_running_is_pending_with_the_reason() -> None:
    stuck = pod("Pending", waiting={"reason": "ErrImagePull", "message": "not found"})

    obs = observe_job(job(), [stuck])

    assert (obs.phase, obs.reason) == (Phase.PENDING, "ImagePullBackOff")
    assert obs.message == "cannot pull image registry.example/trainer:1: not found"


def test_image_pull_retries_keep_one_reason_so_one_event_is_posted() -> None:
    """The kubelet alternates ErrImagePull and ImagePullBackOff on every attempt."""
    first = observe_job(job(), [pod("Pending", waiting={"reason": "ErrImagePull"})])
    backoff = observe_job(job(), [pod("Pending", waiting={"reason": "ImagePullBackOff"})])
    statuses = [
        job_status({}, o, generation=1, job_generation=1, job_name="j", artifacts=None, now=T1)
        for o in (first, backoff, first)
    ]

    posted = [t for old, new in itertools.pairwise(statuses) for t in transitions(old, new)]
    assert transitions({}, statuses[0])[0].type == "Warning"
    assert posted == []


def test_a_secret_deleted_after_the_job_was_created_is_named_with_its_field() -> None:
    kubelet = 'secret "hub" not found'
    stuck = pod("Pending", waiting={"reason": "CreateContainerConfigError", "message": kubelet})
    gone = Problem(
        "SecretNotFound",
        "Secret 'hub' (spec.output.huggingFace.tokenSecretRef) not found in namespace team",
    )

    obs = inputs_gone(observe_job(job(), [stuck]), [gone])
    status = job_status(
        {}, obs, generation=1, job_generation=1, job_name="j", artifacts=None, now=T1
    )

    assert (status["phase"], obs.reason) == ("Pending", "SecretNotFound")
    inputs = condition(status, "InputsReady") or {}
    assert (inputs["status"], inputs["reason"]) == ("False", "SecretNotFound")
    assert "Secret 'hub' (spec.output.huggingFace.tokenSecretRef) not found" in inputs["message"]
    assert status["message"].endswith(f"(kubelet: {kubelet})")
    assert [(t.type, t.reason) for t in transitions({}, status)] == [("Warning", "SecretNotFound")]


def test_a_container_config_error_with_the_secrets_in_place_keeps_the_kubelets_words() -> None:
    message = 'configmap "x" not found'
    stuck = pod("Pending", waiting={"reason": "CreateContainerConfigError", "message": message})
    allowed = Problem("SecretNotAllowed", "Secret 'hub' is not labelled")

    obs = inputs_gone(observe_job(job(), [stuck]), [allowed])

    assert (obs.phase, obs.reason, obs.message) == (
        Phase.PENDING, "CreateContainerConfigError", message
    )  # fmt: skip
    assert obs.inputs_ready


def test_unschedulable_pod_is_pending_with_the_scheduler_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    waiting = pod("Pending", scheduled={"reason": "Unschedulable", "message": message})

    obs = observe_job(job(), [waiting])

    assert (obs.phase, obs.reason) == (Phase.PENDING, "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in obs.message


def test_running_pod_is_running() -> None:
    assert observe_job(job(), [pod("Running")]).phase == Phase.RUNNING


def test_failed_attempt_before_the_backoff_limit_is_still_running_and_says_so() -> None:
    first = pod("Failed", name="a", created=T0, terminated={"exitCode": 1, "message": "boom"})
    second = pod("Pending", name="b", created=T1)

    obs = observe_job(job(), [first, second])

    assert (obs.phase, obs.reason) == (Phase.RUNNING, "Retrying")
    assert "attempt 2 failed" in obs.message and "boom" in obs.message


def test_a_failed_pod_with_no_retry_left_is_not_called_retrying() -> None:
    no_retries = job()
    no_retries["spec"]["backoffLimit"] = 0
    bad_spec = job()
    bad_spec["spec"]["podFailurePolicy"] = {
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]
    }
    failed = pod("Failed", terminated={"exitCode": 1, "message": "boom"})
    unusable = pod("Failed", terminated={"exitCode": 2, "message": "spec.json: invalid"})

    last = observe_job(no_retries, [failed])
    refused = observe_job(bad_spec, [unusable])
    retried = observe_job(bad_spec, [failed])

    assert (last.reason, refused.reason, retried.reason) == ("Failing", "Failing", "Retrying")
    assert "no retry left (backoffLimit=0)" in last.message
    assert "exit code 2 fails the Job at once" in refused.message
    assert (
        transitions(
            {},
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False", "reason": "Failing"}],
            },
        )[0].type
        == "Normal"
    )


def test_suspended_job_is_queued() -> None:
    obs = observe_job(job(suspend=True), [])

    assert (obs.phase, obs.reason) == (Phase.PENDING, "Queued")


def test_last_message_prefers_the_reported_error() -> None:
    assert last_message('{"error": "bad spec", "metrics": {}}') == "bad spec"
    assert last_message("one\ntwo\n\n") == "two"
    assert last_message(None) == ""


def test_job_status_has_standard_conditions_and_the_result() -> None:
    obs = Observation(
        Phase.SUCCEEDED,
        "Succeeded",
        "done",
        start_time=T0,
        completion_time=T1,
        result={"metrics": {"pairs": 12}, "outputs": {"train": "/a/train.jsonl"}},
    )

    status = job_status(
        {}, obs, generation=2, job_generation=2, job_name="j", artifacts=None, now=T1
    )

    assert status["phase"] == "Succeeded"
    assert status["observedGeneration"] == 2
    assert status["metrics"] == {"pairs": 12}
    assert status["outputs"] == {"train": "/a/train.jsonl"}
    assert status["progress"] == {"percent": 100.0}
    assert (status["startTime"], status["completionTime"], status["jobName"]) == (T0, T1, "j")
    by_type = {c["type"]: c["status"] for c in status["conditions"]}
    assert by_type == {
        "Ready": "True",
        "InputsReady": "True",
        "Running": "False",
        "Complete": "True",
        "Failed": "False",
    }


def test_spec_changed_after_completion_is_recorded_not_applied() -> None:
    obs = Observation(Phase.SUCCEEDED, "Succeeded", "done")

    status = job_status(
        {}, obs, generation=3, job_generation=1, job_name="j", artifacts=None, now=T1
    )

    changed = condition(status, "SpecOutOfDate")
    assert changed is not None and changed["status"] == "True"
    assert changed["reason"] == "SpecChangedAfterCompletion"
    assert "generation 3 is not applied" in changed["message"]
    assert condition(status, "Complete")["observedGeneration"] == 1  # type: ignore[index]


def test_waiting_status_names_every_missing_input() -> None:
    problems = [
        Problem("ReferenceNotFound", "DatasetGeneration 'docs' not found"),
        Problem("SecretNotFound", "Secret 'hf' not found"),
    ]

    status = waiting_status({}, problems, 1, T0)

    assert status["phase"] == "Waiting"
    inputs = condition(status, "InputsReady")
    assert inputs is not None and inputs["status"] == "False"
    assert inputs["reason"] == "ReferenceNotFound"
    assert "Secret 'hf' not found" in inputs["message"]


def test_transitions_post_one_event_per_change_and_warn_on_failure() -> None:
    waiting = waiting_status({}, [Problem("SecretNotFound", "Secret 'hf' not found")], 1, T0)
    failed = job_status(
        waiting,
        Observation(Phase.FAILED, "OOMKilled", "killed"),
        generation=1,
        job_generation=1,
        job_name="j",
        artifacts=None,
        now=T1,
    )

    first = transitions({}, waiting)
    again = transitions(waiting, waiting)
    fail = transitions(waiting, failed)

    assert [(e.type, e.reason) for e in first] == [("Warning", "SecretNotFound")]
    assert again == []
    assert [(e.type, e.reason) for e in fail] == [("Warning", "OOMKilled")]


def test_a_pod_refused_at_admission_shows_the_job_controllers_reason() -> None:
    refused = 'pods "tune-ftj-x" is forbidden: exceeded quota: compute, requested: memory=24Gi'

    obs = observe_job(job(), [], failed_create=refused)

    assert (obs.phase, obs.reason) == (Phase.PENDING, "FailedCreate")
    assert obs.message == f"the Job controller cannot create the pod: {refused}"


def test_a_workload_that_succeeded_with_a_caveat_is_degraded() -> None:
    caveat = "JudgeFailures: 9 of 20 judge scores are missing (45%, above 10%)"
    obs = Observation(
        Phase.SUCCEEDED, "Succeeded", "done", T0, T1, result={"metrics": {"degraded": caveat}}
    )

    status = job_status(
        {}, obs, generation=1, job_generation=1, job_name="j", artifacts=None, now=T1
    )

    degraded = condition(status, "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "JudgeFailures"
    assert degraded["message"].startswith("9 of 20 judge scores are missing")
    assert status["phase"] == "Succeeded"
    clean = Observation(Phase.SUCCEEDED, "Succeeded", "done", T0, T1, result={"metrics": {}})
    status = job_status(
        {}, clean, generation=1, job_generation=1, job_name="j", artifacts=None, now=T1
    )
    assert condition(status, "Degraded") is None
