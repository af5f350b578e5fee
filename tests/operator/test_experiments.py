"""The Experiment controller's decisions with the cluster replaced by an in-memory table
(the real API server path is tests/operator/test_experiment_k8s.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

from kubernetes.client.rest import ApiException

from llmft_operator.experiments import ExperimentController

EXPERIMENT = {
    "apiVersion": "llmft.io/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "sweep", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {
        "dataset": {"path": "datasets/hr"},
        "matrix": {"models": [{"name": "smol", "baseModel": {"name": "m"}}]},
        "search": {"algorithm": "random"},
        "budget": {"maxTrials": 2, "parallelTrials": 2},
    },
}


class Objects:
    """Just the calls the controller makes, over a dict of objects."""

    def __init__(self, refuse: int | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {
            ("Experiment", "sweep"): copy.deepcopy(EXPERIMENT)
        }
        self.refuse = refuse

    def get_resource(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def list_resources(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [o for (k, _), o in self.objects.items() if k == kind]

    def create_resource(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        if self.refuse:
            err = ApiException(status=self.refuse, reason="Unprocessable Entity")
            err.body = json.dumps({"message": "spec.hyperparameters.batchSize: Invalid value"})
            raise err
        key = (obj["kind"], obj["metadata"]["name"])
        if key in self.objects:
            return None
        self.objects[key] = obj
        return obj


def controller(objects: Objects, written: list[dict[str, Any]]) -> ExperimentController:
    def adopt(children: list[dict[str, Any]], owner: dict[str, Any]) -> None:
        for child in children:
            child["metadata"]["ownerReferences"] = [{"uid": owner["metadata"]["uid"]}]

    def write(kind: str, body: dict[str, Any], patch: dict[str, Any]) -> None:
        written.append(patch)
        body["status"] = {**(body.get("status") or {}), **patch}

    return ExperimentController(objects, adopt, write, lambda *_: None)  # type: ignore[arg-type]


def test_the_first_reconcile_creates_the_parallel_trials_and_a_second_creates_nothing() -> None:
    objects, written = Objects(), []
    ctl = controller(objects, written)

    assert ctl.reconcile("ns", "sweep") is None
    assert ctl.reconcile("ns", "sweep") is None

    trials = sorted(n for k, n in objects.objects if k == "FineTuneJob")
    assert trials == ["sweep-t00", "sweep-t01"]
    assert written[-1]["phase"] == "Running" and written[-1]["counts"]["created"] == 2


def test_a_child_the_api_server_refuses_fails_the_experiment_naming_it() -> None:
    objects, written = Objects(refuse=422), []

    error = controller(objects, written).reconcile("ns", "sweep")

    assert error is not None and "the API server refused FineTuneJob sweep-t00" in error
    assert "spec.hyperparameters.batchSize" in error
    assert written[-1]["phase"] == "Failed"
    assert written[-1]["conditions"][-1]["reason"] == "ChildRefused"


def test_a_finished_experiment_creates_nothing_more() -> None:
    objects, written = Objects(), []
    objects.objects[("Experiment", "sweep")]["status"] = {"phase": "Succeeded"}

    assert controller(objects, written).reconcile("ns", "sweep") is None
    assert written == [] and not [k for k, _ in objects.objects if k == "FineTuneJob"]
