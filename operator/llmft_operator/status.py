"""What the operator saw, as a resource's status: Job and Pod states mapped to phase and conditions.

Pure functions over the API's JSON (plain dicts), so every mapping is tested without a cluster.
The operator owns phase, message, conditions, observedGeneration, times, jobName and artifacts;
the workload owns progress, metrics and outputs (it patches them itself), and the operator only
adds to those from the pod's termination message when the workload is done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmft.api.common import Condition, Phase
from llmft.api.status import (
    DEGRADED,
    FAILED,
    INPUTS_READY,
    READY,
    SPEC_OUT_OF_DATE,
    degraded_condition,
    drop_condition,
    find_condition,
    model_family_condition,
    read_status,
    set_condition,
    set_phase_conditions,
)
from llmft.api.status import clip as _clip
from llmft_operator.resolve import Problem

IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
# The kubelet alternates these two on every pull attempt (the error, then the wait before the
# next): one reason, so the status does not flap and one Event is posted, not one per attempt.
PULL_RETRY_REASON = "ImagePullBackOff"
CONTAINER_CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
FINISHED = (Phase.SUCCEEDED.value, Phase.FAILED.value)


@dataclass(frozen=True)
class Observation:
    """The state of a resource's workload, read from its Job and Pods."""

    phase: Phase
    reason: str
    message: str
    start_time: str | None = None
    completion_time: str | None = None
    result: dict[str, Any] | None = None
    # False when the pod cannot start for an input gone since the Job was created.
    inputs_ready: bool = True


# --- reading Pods and Jobs -------------------------------------------------------------------


def parse_termination_message(text: str | None) -> dict[str, Any] | None:
    """The workload's result.json (or {"error": ...}) from a termination message, if it is one."""
    if not text or not text.strip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def last_message(text: str | None) -> str:
    """The useful part of a termination message: the error it reports, or its last log line."""
    parsed = parse_termination_message(text)
    if parsed is not None and parsed.get("error"):
        return _clip(str(parsed["error"]))
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return _clip(lines[-1]) if lines else ""


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or []
    )


def _memory_limit(pod: dict[str, Any], container: str) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
            return str(limit) if limit is not None else None
    return None


def pod_failure(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a failed container in `pod`: OOMKilled, exit code and last message."""
    for cs in _container_statuses(pod):
        term = (cs.get("state") or {}).get("terminated") or (
            (cs.get("lastState") or {}).get("terminated")
        )
        if not term or term.get("exitCode", 0) == 0:
            continue
        code = term.get("exitCode")
        reason = term.get("reason") or "Error"
        detail = last_message(term.get("message"))
        if reason == "OOMKilled":
            limit = _memory_limit(pod, cs.get("name", ""))
            where = f" (memory limit {limit})" if limit else ""
            msg = (
                f"container {cs.get('name')} was OOMKilled{where}: raise spec.resources.memory "
                "or lower the batch size / sequence length"
            )
            return "OOMKilled", msg + (f"; last message: {detail}" if detail else "")
        msg = f"container {cs.get('name')} exited with code {code}"
        if reason not in ("Error", "Completed"):
            msg += f" ({reason})"
        return (reason if reason != "Completed" else "Error"), msg + (
            f": {detail}" if detail else ""
        )
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "PodFailed"
        return reason, _clip(status.get("message") or f"pod {pod_name(pod)} failed ({reason})")
    return None


def pod_waiting_problem(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why a pod cannot start: image pull errors, bad container config, or no node fits."""
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in IMAGE_PULL_REASONS:
            image = cs.get("image") or "?"
            detail = waiting.get("message") or reason
            if reason == "ErrImagePull":
                reason = PULL_RETRY_REASON
            return reason, _clip(f"cannot pull image {image}: {detail}")
        if reason in CONTAINER_CONFIG_REASONS:
            return reason, _clip(waiting.get("message") or reason)
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            reason = cond.get("reason") or "Unschedulable"
            return reason, _clip(f"pod cannot be scheduled: {cond.get('message') or reason}")
    return None


def pod_name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _newest(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        pods,
        key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", pod_name(p)),
        reverse=True,
    )


def _succeeded_result(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        for cs in _container_statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            parsed = parse_termination_message(term.get("message"))
            if parsed is not None:
                return parsed
    return None


def _job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _job_failure(
    job: dict[str, Any], pods: list[dict[str, Any]], cond: dict[str, Any]
) -> tuple[str, str]:
    for pod in pods:
        failure = pod_failure(pod)
        if failure is not None:
            return failure
    job_reason = cond.get("reason") or "JobFailed"
    message = cond.get("message") or "the Job failed"
    if job_reason == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        message = (
            f"the Job ran longer than its deadline ({deadline}s, "
            "spec.resources.activeDeadlineSeconds)"
        )
    # A pod still stuck on its image when the deadline hit says more than the deadline does.
    for pod in pods:
        problem = pod_waiting_problem(pod)
        if problem is not None:
            return problem[0], f"{message}; {problem[1]}"
    return job_reason, _clip(message)


def _exit_code(pod: dict[str, Any]) -> int | None:
    for cs in _container_statuses(pod):
        term = (cs.get("state") or {}).get("terminated") or {}
        if term.get("exitCode"):
            return int(term["exitCode"])
    return None


def _no_retry_left(job: dict[str, Any], pods: list[dict[str, Any]], pod: dict[str, Any]) -> str:
    """Why the Job will not start another pod after `pod` failed ('' if it will)."""
    spec = job.get("spec") or {}
    limit = int(spec.get("backoffLimit", 6))
    failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
    if failed > limit:
        return f"no retry left (backoffLimit={limit})"
    code = _exit_code(pod)
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        codes = rule.get("onExitCodes") or {}
        if (
            rule.get("action") == "FailJob"
            and codes.get("operator") == "In"
            and code in (codes.get("values") or [])
        ):
            return f"exit code {code} fails the Job at once (the spec is unusable); no retry"
    return ""


def observe_job(
    job: dict[str, Any], pods: Iterable[dict[str, Any]], failed_create: str | None = None
) -> Observation:
    """Phase, reason and message of a workload from its Job and the Job's Pods.

    `failed_create` is the message of the Job controller's latest FailedCreate event, when the
    API server refused the pod (a ResourceQuota, Pod Security admission, a webhook).
    """
    pods = _newest(pods)
    status = job.get("status") or {}
    start = status.get("startTime")
    complete = _job_condition(job, "Complete")
    if complete is not None:
        return Observation(
            Phase.SUCCEEDED,
            "Succeeded",
            "the workload finished",
            start_time=start,
            completion_time=status.get("completionTime") or complete.get("lastTransitionTime"),
            result=_succeeded_result(pods),
        )
    failed = _job_condition(job, "Failed")
    if failed is not None:
        reason, message = _job_failure(job, pods, failed)
        return Observation(
            Phase.FAILED,
            reason,
            message,
            start_time=start,
            completion_time=failed.get("lastTransitionTime"),
        )
    if (job.get("spec") or {}).get("suspend"):
        return Observation(Phase.PENDING, "Queued", "the Job is suspended until Kueue admits it")
    if not pods and failed_create:
        return Observation(
            Phase.PENDING,
            "FailedCreate",
            _clip(f"the Job controller cannot create the pod: {failed_create}"),
            start,
        )
    if not pods:
        return Observation(
            Phase.PENDING, "PodPending", "waiting for the Job controller to create the pod", start
        )
    pod = pods[0]
    pod_phase = (pod.get("status") or {}).get("phase")
    if pod_phase == "Running":
        return Observation(Phase.RUNNING, "Running", f"pod {pod_name(pod)} is running", start)
    if pod_phase == "Succeeded":
        return Observation(Phase.RUNNING, "Finishing", f"pod {pod_name(pod)} succeeded", start)
    previous = next((f for p in pods if (f := pod_failure(p)) is not None), None)
    if pod_phase == "Failed" or previous is not None:
        attempts = len(pods)
        limit = (job.get("spec") or {}).get("backoffLimit")
        failure = pod_failure(pod) or previous or ("PodFailed", "pod failed")
        final = _no_retry_left(job, pods, pod) if pod_phase == "Failed" else None
        if final:
            # The Job controller is about to mark the Job failed: say so, not "retrying".
            return Observation(
                Phase.RUNNING,
                "Failing",
                _clip(f"attempt {attempts} failed ({failure[0]}: {failure[1]}); {final}"),
                start,
            )
        return Observation(
            Phase.RUNNING,
            "Retrying",
            _clip(
                f"attempt {attempts} failed ({failure[0]}: {failure[1]}); "
                f"the Job retries up to backoffLimit={limit}"
            ),
            start,
        )
    problem = pod_waiting_problem(pod)
    if problem is not None:
        return Observation(Phase.PENDING, problem[0], problem[1], start)
    return Observation(Phase.PENDING, "PodPending", f"pod {pod_name(pod)} is pending", start)


# Input problems the kubelet meets when it starts a container: a Secret (or its key) the
# container's env reads, deleted after the Job was created.
START_INPUT_REASONS = frozenset({"SecretNotFound", "SecretKeyNotFound"})


def inputs_gone(obs: Observation, problems: list[Problem]) -> Observation:
    """`obs` of a pod the kubelet cannot start (CreateContainerConfigError), told as the input
    problems a resource without a Job would show (the Secret and the field that names it), with
    the kubelet's own words after them. The kubelet retries, so it starts once they are fixed."""
    found = [p for p in problems if p.reason in START_INPUT_REASONS]
    if obs.reason not in CONTAINER_CONFIG_REASONS or not found:
        return obs
    message = "; ".join(p.message for p in found)
    return Observation(
        Phase.PENDING,
        found[0].reason,
        _clip(
            f"the pod cannot start: {message}; it starts once that is fixed "
            f"(kubelet: {obs.message})"
        ),
        obs.start_time,
        inputs_ready=False,
    )


# --- writing status --------------------------------------------------------------------------


def _wire(conditions: list[Condition]) -> list[dict[str, Any]]:
    return [c.to_wire() for c in conditions]


def condition(status: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """One condition of a status (API JSON), read through the typed status, as JSON."""
    found = find_condition(read_status(status).conditions, type_)
    return found.to_wire() if found is not None else None


def waiting_status(
    current: dict[str, Any], problems: list[Problem], generation: int, now: str
) -> dict[str, Any]:
    """Status while the inputs are missing or not ready: phase Waiting, the first problem first."""
    first = problems[0]
    message = "; ".join(p.message for p in problems)
    conds = read_status(current).conditions
    conds = set_condition(conds, INPUTS_READY, False, first.reason, message, generation, now)
    conds = set_condition(conds, READY, False, first.reason, message, generation, now)
    return {
        "phase": Phase.WAITING.value,
        "message": _clip(message),
        "observedGeneration": generation,
        "conditions": _wire(conds),
    }


def invalid_spec_status(
    current: dict[str, Any], message: str, generation: int, now: str, reason: str = "InvalidSpec"
) -> dict[str, Any]:
    """Status of a spec the operator refuses (what the CRD schema could not catch)."""
    conds = read_status(current).conditions
    conds = set_condition(conds, READY, False, reason, message, generation, now)
    conds = set_condition(conds, FAILED, True, reason, message, generation, now)
    return {
        "phase": Phase.FAILED.value,
        "message": _clip(message),
        "observedGeneration": generation,
        "conditions": _wire(conds),
    }


def spec_change_message(phase: str | None, job_generation: int, generation: int) -> tuple[str, str]:
    """Reason and message for a spec changed after its Job was created (it is not applied)."""
    when = "Completion" if phase in FINISHED else "Start"
    return (
        f"SpecChangedAfter{when}",
        f"spec generation {generation} is not applied: the Job ran generation {job_generation}; "
        "delete and re-create the resource to run the new spec",
    )


def job_status(
    current: dict[str, Any],
    obs: Observation,
    *,
    generation: int,
    job_generation: int,
    job_name: str,
    artifacts: dict[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The status patch for a resource whose Job exists (or existed, for a finished one)."""
    phase = obs.phase.value
    conds = read_status(current).conditions
    ready = (
        (True, "InputsReady", "all inputs are ready")
        if obs.inputs_ready
        else (False, obs.reason, obs.message)  # an input gone since the Job was created
    )
    conds = set_condition(conds, INPUTS_READY, *ready, job_generation, now)
    conds = set_phase_conditions(conds, obs.phase, obs.reason, obs.message, job_generation, now)
    conds = model_family_condition(conds, current, job_generation, now)
    if generation != job_generation:
        reason, message = spec_change_message(phase, job_generation, generation)
        conds = set_condition(conds, SPEC_OUT_OF_DATE, True, reason, message, generation, now)
    else:
        conds = drop_condition(conds, SPEC_OUT_OF_DATE)
    patch: dict[str, Any] = {
        "phase": phase,
        "message": _clip(obs.message),
        "observedGeneration": generation,
        "conditions": _wire(conds),
        "jobName": job_name,
    }
    if artifacts:
        patch["artifacts"] = artifacts
    if obs.start_time:
        patch["startTime"] = obs.start_time
    if obs.completion_time:
        patch["completionTime"] = obs.completion_time
    if obs.phase == Phase.SUCCEEDED:
        patch["progress"] = {"percent": 100.0}
        result = obs.result or {}
        if isinstance(result.get("metrics"), dict) and result["metrics"]:
            patch["metrics"] = result["metrics"]
        # Succeeded with a caveat the workload reported (e.g. too many missing judge scores).
        degraded = degraded_condition(patch.get("metrics") or current.get("metrics") or {})
        if degraded is not None:
            conds = set_condition(conds, DEGRADED, True, *degraded, job_generation, now)
            patch["conditions"] = _wire(conds)
        if isinstance(result.get("outputs"), dict) and result["outputs"]:
            patch["outputs"] = result["outputs"]
    return patch


@dataclass(frozen=True)
class Transition:
    """A change worth a Kubernetes Event on the resource."""

    type: str  # Normal or Warning
    reason: str
    message: str


# Reasons that are part of normal progress; every other reason is worth a Warning event.
NORMAL_REASONS = frozenset(
    {
        "UpstreamNotReady",
        "JobCreated",
        "PodPending",
        "Queued",
        "Running",
        "Finishing",
        "Failing",  # the failure itself is the Warning that follows
        "Succeeded",
    }
)


def transitions(old: dict[str, Any], new: dict[str, Any]) -> list[Transition]:
    """Events for the move from status `old` to status `new` (none when nothing changed)."""
    out: list[Transition] = []
    old_ready = condition(old, READY) or {}
    new_ready = condition(new, READY) or {}
    phase_changed = old.get("phase") != new.get("phase")
    reason_changed = old_ready.get("reason") != new_ready.get("reason")
    if phase_changed or reason_changed:
        phase = new.get("phase") or ""
        reason = new_ready.get("reason") or phase
        kind = "Normal" if reason in NORMAL_REASONS else "Warning"
        out.append(Transition(kind, reason, new.get("message") or phase))
    old_spec = condition(old, SPEC_OUT_OF_DATE) or {}
    new_spec = condition(new, SPEC_OUT_OF_DATE) or {}
    if new_spec and new_spec.get("observedGeneration") != old_spec.get("observedGeneration"):
        out.append(Transition("Warning", new_spec["reason"], new_spec["message"]))
    return out
