"""Reconciling an Experiment: create its trials and Evaluation, stop trials that fall behind,
and aggregate what its children report into its status.

What to do comes from llmft.experiments.progress.step (the same step `llmft run` takes); this
module only reads the children, creates them (owned by the Experiment, so deleting it deletes
them), asks a trial to stop (the llmft.io/stop annotation, acted on by the FineTuneJob's own
reconcile, which deletes its Job), and writes the status.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from llmft.api.common import Condition, Phase
from llmft.api.experiment import ExperimentSpec
from llmft.api.resource import ManifestError, parse_resource
from llmft.api.status import now_rfc3339, set_phase_conditions
from llmft.experiments.children import (
    ANNOTATION_STOP,
    ANNOTATION_STOP_REASON,
    LABEL_EXPERIMENT,
    evaluation_manifest,
    evaluation_name,
    fine_tune_manifest,
    trial_from_manifest,
)
from llmft.experiments.progress import (
    EvaluationView,
    Step,
    TrialView,
    evaluation_view_of,
    step,
    trial_view_of,
)
from llmft_operator.kube import STALE_RETRIES, Kube, StaleObject, owner_uids

log = logging.getLogger("llmft.operator.experiments")

Adopter = Callable[[list[dict[str, Any]], dict[str, Any]], None]
Writer = Callable[[str, dict[str, Any], dict[str, Any]], None]
ChildReconciler = Callable[[str, str, str], Any]
FINISHED = (Phase.SUCCEEDED.value, Phase.FAILED.value)


def trial_view(body: dict[str, Any]) -> TrialView | None:
    """What a trial's FineTuneJob shows, for the step; None if it is not a trial."""
    trial = trial_from_manifest(body)
    if trial is None:
        return None
    meta = body.get("metadata") or {}
    stop = (meta.get("annotations") or {}).get(ANNOTATION_STOP)
    return trial_view_of(trial, meta["name"], body.get("status") or {}, stop)


def evaluation_view(body: dict[str, Any] | None) -> EvaluationView | None:
    if body is None:
        return None
    return evaluation_view_of(body["metadata"]["name"], body.get("status") or {})


def status_patch(current: dict[str, Any], out: Step, generation: int, now: str) -> dict[str, Any]:
    """The Experiment's status patch: the step's status, phase, conditions and times."""
    conds = [Condition.model_validate(c) for c in current.get("conditions") or []]
    done = out.phase in FINISHED
    conds = set_phase_conditions(conds, out.phase, out.reason, out.message, generation, now)
    patch: dict[str, Any] = {
        **out.status,
        "phase": out.phase,
        "message": out.message,
        "observedGeneration": generation,
        "conditions": [c.to_wire() for c in conds],
    }
    if not current.get("startTime") and out.phase != Phase.PENDING.value:
        patch["startTime"] = now
    if done and not current.get("completionTime"):
        patch["completionTime"] = now
    return patch


class ExperimentController:
    """Reconciles Experiments; one at a time per Experiment."""

    def __init__(
        self, kube: Kube, adopt: Adopter, write: Writer, reconcile_child: ChildReconciler
    ) -> None:
        self.kube = kube
        self.adopt = adopt
        self.write = write
        self.reconcile_child = reconcile_child
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile(self, namespace: str, name: str) -> str | None:
        """Bring the Experiment's children and status up to date; returns an error to report
        permanently (an invalid spec), else None."""
        with self._lock(namespace, name):
            for attempt in range(STALE_RETRIES + 1):
                body = self.kube.get_resource("Experiment", namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return None
                try:
                    return self._reconcile(body)
                except StaleObject:  # its status changed since it was read: read it again
                    if attempt == STALE_RETRIES:
                        raise
            return None

    def _reconcile(self, body: dict[str, Any]) -> str | None:
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        generation = int(meta.get("generation") or 1)
        current: dict[str, Any] = body.get("status") or {}
        try:
            spec: ExperimentSpec = parse_resource(body).spec
        except ManifestError as err:
            out = Step(phase=Phase.FAILED.value, reason="InvalidSpec", message=str(err))
            self.write("Experiment", body, status_patch(current, out, generation, now_rfc3339()))
            return str(err)
        if current.get("phase") in FINISHED:
            return None  # a finished Experiment never starts trials again (docs/experiment.md)

        children = [
            c
            for c in self.kube.list_resources(
                "FineTuneJob", namespace, f"{LABEL_EXPERIMENT}={name}"
            )
            if uid in owner_uids(c)
        ]
        views = [v for c in children if (v := trial_view(c)) is not None]
        evaluation = self.kube.get_resource("Evaluation", namespace, evaluation_name(name))
        if evaluation is not None and uid not in owner_uids(evaluation):
            evaluation = None
        out = step(spec, namespace, name, views, evaluation_view(evaluation))

        for trial_name, decision in out.stop.items():
            log.info(
                "Experiment %s/%s: stopping %s (%s)", namespace, name, trial_name, decision.message
            )
            self.kube.annotate_resource(
                "FineTuneJob",
                namespace,
                trial_name,
                {ANNOTATION_STOP: decision.message, ANNOTATION_STOP_REASON: decision.reason},
            )
            self.reconcile_child("FineTuneJob", namespace, trial_name)
        children = [fine_tune_manifest(spec, namespace, name, t) for t in out.create]
        if out.evaluate is not None:
            children.append(evaluation_manifest(spec, namespace, name, out.evaluate))
        for child in children:
            refused = self._create(body, child)
            if refused is not None:
                # The API server will refuse it again: say so instead of retrying forever.
                out.phase, out.reason, out.message = Phase.FAILED.value, "ChildRefused", refused
                break
        self.write("Experiment", body, status_patch(current, out, generation, now_rfc3339()))
        return out.message if out.reason == "ChildRefused" else None

    def _create(self, owner: dict[str, Any], child: dict[str, Any]) -> str | None:
        """Create a child; a message when the API server refuses it (4xx other than 409)."""
        self.adopt([child], owner)
        what = f"{child['kind']} {child['metadata']['name']}"
        try:
            created = self.kube.create_resource(child)
        except ApiException as err:
            if err.status is not None and 400 <= err.status < 500 and err.status != 429:
                return f"the API server refused {what}: {_api_message(err)}"
            raise
        if created is None:
            # Created by an earlier reconcile that stopped before its status was written.
            log.info("%s exists already", what)
        return None


def _api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)
