"""The reconciler's ordering rules, with the API reduced to the few reads it makes."""

from __future__ import annotations

import copy
from typing import Any, cast

from operator_manifests import finetune

from llmft.api.status import merge_patch
from llmft.experiments.children import ANNOTATION_STOP, ANNOTATION_STOP_REASON
from llmft_operator.controller import Bodies, Reconciler
from llmft_operator.kube import Kube, StaleObject
from llmft_operator.settings import OperatorSettings

UID = "uid-1"
ARTIFACTS = {"pvc": "p", "path": "finetune/tune", "uri": "pvc://p/finetune/tune"}


class RecordingKube:
    """What the API server holds for one FineTuneJob; records every status patch."""

    def __init__(self, status: dict[str, Any], job: dict[str, Any]) -> None:
        self.body = {**finetune("tune", namespace="ns"), "status": status}
        self.body["metadata"].update(uid=UID, generation=1)
        self.job = job
        self.patches: list[dict[str, Any]] = []

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self.body

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self.job

    def job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []

    def failed_create(self, namespace: str, uid: str) -> str | None:
        return None

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], **_: Any
    ) -> None:
        self.patches.append(status)


def job(*conditions: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "tune-ftj", "uid": "job-1", "ownerReferences": [{"uid": UID}]},
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def test_a_stale_job_event_never_moves_a_finished_phase_back() -> None:
    succeeded = {"phase": "Succeeded", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = RecordingKube(succeeded, job("Complete"))
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job())  # still "running"

    assert kube.patches == []


def test_a_job_event_moves_a_running_resource_forward() -> None:
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = RecordingKube(running, job("Complete"))
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job("Complete"))

    assert [p["phase"] for p in kube.patches] == ["Succeeded"]


def test_a_stopped_resource_stays_stopped_when_its_job_completes_as_it_is_deleted() -> None:
    # The pod finished just as the stop deleted the Job: the Job's last event says Complete.
    stopped = {"phase": "Failed", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = RecordingKube(stopped, job("Complete"))
    kube.body["metadata"]["annotations"] = {
        ANNOTATION_STOP: "eval loss above the median",
        ANNOTATION_STOP_REASON: "EarlyStopped",
    }
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job("Complete"))

    assert kube.patches == []


class CountingKube(RecordingKube):
    """RecordingKube that counts the reads of the resource and of the Job's pods."""

    def __init__(self, status: dict[str, Any], job: dict[str, Any]) -> None:
        super().__init__(status, job)
        self.body["metadata"]["resourceVersion"] = "7"
        self.reads: list[str] = []

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.reads.append("resource")
        return self.body

    def job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        self.reads.append("pods")
        return []


def test_a_job_event_reads_the_resource_from_its_last_watch_event_not_the_api() -> None:
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = CountingKube(running, job("Complete"))
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)
    reconciler.bodies.remember("FineTuneJob", kube.body)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job("Complete"))

    assert kube.reads == ["pods"]
    assert [p["phase"] for p in kube.patches] == ["Succeeded"]


def test_an_unknown_resource_is_read_once_then_known() -> None:
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = CountingKube(running, job())
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job())
    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=job())

    assert kube.reads == ["resource", "pods", "pods"]


def test_a_just_created_job_without_status_costs_no_call() -> None:
    pending = {"phase": "Pending", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    fresh = {**job(), "status": {}}
    kube = CountingKube(pending, fresh)
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)
    reconciler.bodies.remember("FineTuneJob", kube.body)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=fresh)

    assert kube.reads == [] and kube.patches == []


def test_a_just_created_suspended_job_is_shown_queued_at_once() -> None:
    pending = {"phase": "Pending", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    queued = {**job(), "spec": {"suspend": True}, "status": {}}
    kube = CountingKube(pending, queued)
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)
    reconciler.bodies.remember("FineTuneJob", kube.body)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=queued)

    assert [p["conditions"][0]["reason"] for p in kube.patches] == ["Queued"]


def test_a_stop_reads_the_resource_from_the_api_server() -> None:
    # The stop annotation was just written: a watch event may not have brought it yet.
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = CountingKube(running, job())
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)
    reconciler.bodies.remember("FineTuneJob", kube.body)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "stop")

    assert kube.reads[0] == "resource"


def test_bodies_keep_the_newest_version_and_drop_managed_fields() -> None:
    bodies = Bodies()

    def body(version: str, phase: str) -> dict[str, Any]:
        meta = {"name": "a", "namespace": "ns", "resourceVersion": version, "managedFields": [{}]}
        return {"metadata": meta, "status": {"phase": phase}}

    bodies.remember("FineTuneJob", body("10", "Running"))
    bodies.remember("FineTuneJob", body("9", "Pending"))  # an older event arriving late
    kept = bodies.get("FineTuneJob", "ns", "a")
    assert kept is not None and kept["status"]["phase"] == "Running"
    assert "managedFields" not in kept["metadata"]
    bodies.remember("FineTuneJob", body("11", "Succeeded"))
    kept = bodies.get("FineTuneJob", "ns", "a")
    assert kept is not None and kept["status"]["phase"] == "Succeeded"
    bodies.forget("FineTuneJob", "ns", "a")
    assert bodies.get("FineTuneJob", "ns", "a") is None


def test_a_burst_of_existence_checks_of_one_name_costs_one_lookup() -> None:
    import threading
    import time

    from kubernetes import client

    from llmft_operator.kube import Kube as RealKube

    reads: list[str] = []
    gate = threading.Event()

    def read(name: str, namespace: str, **_: Any) -> None:
        reads.append(name)
        gate.wait(5)  # the lookup is slow: the other threads arrive while it runs

    kube = RealKube(client.ApiClient())
    kube.core.read_namespaced_service_account = read  # type: ignore[method-assign]
    answers: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(kube.exists("ServiceAccount", "ns", "llmft-workload"))
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while not reads and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(5)

    assert answers == [True] * 8 and reads == ["llmft-workload"]


class VersionedKube(RecordingKube):
    """One FineTuneJob as the API server holds it: each status patch bumps its resourceVersion,
    and a patch conditioned on another version is refused (409), as the API server does."""

    def __init__(self, status: dict[str, Any], job: dict[str, Any], pods: list[Any]) -> None:
        super().__init__(status, job)
        self.body["metadata"]["resourceVersion"] = "1"
        self.pods = pods

    def job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.pods

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def patch_status(  # type: ignore[override]
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        current = self.body["metadata"]["resourceVersion"]
        if resource_version and resource_version != current:
            raise StaleObject(f"{resource_version} != {current}")
        self.patches.append(status)
        self.body["status"] = merge_patch(self.body.get("status") or {}, status)
        self.body["metadata"]["resourceVersion"] = str(int(current) + 1)
        return copy.deepcopy(self.body)


def failed_attempt() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Job whose first pod exited 143 (its pod deleted mid-training) and will be retried."""
    retried = {**job(), "spec": {"backoffLimit": 2}, "status": {"failed": 1}}
    stopped = {"terminated": {"exitCode": 143, "reason": "Error", "message": "stopped by SIGTERM"}}
    pod = {
        "metadata": {"name": "tune-ftj-a", "creationTimestamp": "2026-12-01T07:00:00Z"},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "trainer", "state": stopped}]},
    }
    return retried, [pod]


def test_two_operators_deciding_the_same_transition_post_its_event_once() -> None:
    """The old operator pod still running while its replacement starts: both see the same Job
    event on the same version of the resource; one writes Retrying and posts the Event, the
    other's write is refused as stale, it reads again and finds nothing left to do."""
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    retried, pods = failed_attempt()
    kube = VersionedKube(running, retried, pods)
    seen = kube.get_resource("FineTuneJob", "ns", "tune")  # both hold this version
    events: list[tuple[str, str]] = []
    operators = [
        Reconciler(
            cast(Kube, kube),
            OperatorSettings(),
            lambda _body, t: events.append((t.type, t.reason)),
            lambda *_: None,
        )
        for _ in range(2)
    ]

    for reconciler in operators:
        reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=retried, body=seen)

    assert events == [("Warning", "Retrying")]
    assert [p["phase"] for p in kube.patches] == ["Running"]
    assert kube.body["status"]["conditions"][0]["reason"] == "Retrying"


def test_a_watch_event_older_than_the_operators_own_patch_repeats_no_transition() -> None:
    """After a restart kopf's resume handler may run on the body it listed, after the Job's
    event already moved the resource on: the newer body the patch answered with wins."""
    running = {"phase": "Running", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    retried, pods = failed_attempt()
    kube = VersionedKube(running, retried, pods)
    listed = kube.get_resource("FineTuneJob", "ns", "tune")
    events: list[str] = []
    reconciler = Reconciler(
        cast(Kube, kube), OperatorSettings(), lambda _b, t: events.append(t.reason), lambda *_: None
    )
    reconciler.bodies.remember("FineTuneJob", listed)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "job", job=retried)
    reconciler.reconcile("FineTuneJob", "ns", "tune", "resume", body=listed)

    assert events == ["Retrying"]
    assert len(kube.patches) == 1


class SecretsKube(RecordingKube):
    """A FineTuneJob whose pod the kubelet cannot start; its Secret now lacks the key."""

    def __init__(self, status: dict[str, Any], job: dict[str, Any], keys: set[str]) -> None:
        super().__init__(status, job)
        self.body["spec"]["baseModel"]["tokenSecretRef"] = {"name": "hf-read", "key": "token"}
        self.keys = keys

    def job_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        waiting = {"reason": "CreateContainerConfigError", "message": "couldn't find key token"}
        state = {"name": "trainer", "state": {"waiting": waiting}}
        return [
            {
                "metadata": {"name": "tune-ftj-a", "creationTimestamp": "2026-12-01T07:00:00Z"},
                "status": {"phase": "Pending", "containerStatuses": [state]},
            }
        ]

    def secret_keys(self, namespace: str, name: str) -> tuple[frozenset[str], bool] | None:
        return (frozenset(self.keys), True) if name == "hf-read" else None


def test_a_pod_waiting_on_a_secrets_removed_key_names_the_secret_key_and_field() -> None:
    pending = {"phase": "Pending", "jobName": "tune-ftj", "artifacts": ARTIFACTS}
    kube = SecretsKube(pending, {**job(), "status": {"active": 1}}, keys={"other"})
    reconciler = Reconciler(cast(Kube, kube), OperatorSettings(), lambda *_: None, lambda *_: None)

    reconciler.reconcile("FineTuneJob", "ns", "tune", "timer")

    (patch,) = kube.patches
    inputs = next(c for c in patch["conditions"] if c["type"] == "InputsReady")
    assert (patch["phase"], inputs["status"], inputs["reason"]) == (
        "Pending", "False", "SecretKeyNotFound"
    )  # fmt: skip
    assert "Secret 'hf-read' has no key 'token' (spec.baseModel.tokenSecretRef)" in patch["message"]
    assert patch["message"].endswith("(kubelet: couldn't find key token)")
