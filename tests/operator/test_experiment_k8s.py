"""The Experiment against a real control plane: its CRD's rules, and the operator driving it.

The operator and the cluster come from test_operator_k8s (same namespace, same least-privilege
RBAC). kwok runs no containers, so the test plays each trial's workload status part with the
workload's own service account token, as the FineTuneJob tests do.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_operator_k8s import GROUP, NS, PLURALS, VERSION, cluster  # noqa: F401

from servers.launch import KubeCluster

pytestmark = pytest.mark.k8s

SMOL = {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def experiment(name: str = "sweep", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "dataset": {"datasetGenerationRef": "docs"},
            "matrix": {
                "models": [
                    {"name": "smol", "baseModel": SMOL},
                    {"name": "llama", "baseModel": {"name": "meta-llama/Meta-Llama-3-8B"}},
                ],
                "methods": ["qlora", "lora"],
                "rag": [False, True],
            },
            "fineTune": {"hyperparameters": {"maxSteps": 10}},
            "search": {
                "algorithm": "random",
                "parameters": [{"name": "learningRate", "min": 1e-5, "max": 1e-3, "scale": "log"}],
            },
            "budget": {"maxTrials": 4, "parallelTrials": 2},
            "evaluation": {"metrics": ["rouge", "bleu"], "primaryMetric": "rouge"},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node = body["spec"]
    for key in parents:
        node = node[key]
    node[leaf] = value
    return body


MISTAKES = [
    ("empty matrix", _with(experiment(), "matrix.models", []), "spec.matrix.models"),
    (
        "unknown hyper-parameter",
        _with(experiment(), "search.parameters", [{"name": "learningRat", "values": [0.1]}]),
        "spec.search.parameters[0].name",
    ),
    (
        "grid larger than maxTrials",
        experiment(
            search={"algorithm": "grid", "parameters": [{"name": "seed", "values": [1, 2]}]}
        ),
        "spec.budget.maxTrials",
    ),
    (
        "objective the evaluation does not compute",
        experiment(objective={"metric": "chrf"}),
        "spec.objective.metric",
    ),
    (
        "log range from zero",
        _with(
            experiment(),
            "search.parameters",
            [{"name": "learningRate", "min": 0.0, "max": 0.1, "scale": "log"}],
        ),
        "spec.search.parameters[0].min",
    ),
]


def _create(kube: KubeCluster, body: dict[str, Any], dry_run: bool = True) -> dict[str, Any]:
    custom = client.CustomObjectsApi(kube.api_client())
    kwargs: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kwargs["dry_run"] = "All"
    result: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURALS["Experiment"], body, **kwargs
    )
    return result


@pytest.mark.parametrize(("mistake", "body", "field"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_bad_experiments_are_refused_at_apply_naming_the_field(
    cluster: KubeCluster,  # noqa: F811
    mistake: str,
    body: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(cluster, body)

    assert refused.value.status in (400, 422), mistake
    assert field in json.loads(refused.value.body)["message"], mistake


def test_a_valid_experiment_is_accepted_with_its_defaults(cluster: KubeCluster) -> None:  # noqa: F811
    created = _create(cluster, experiment(search={"algorithm": "grid"}, budget={"maxTrials": 8}))

    assert created["spec"]["matrix"]["modes"] == ["instruct"]
    assert created["spec"]["earlyStopping"]["algorithm"] == "none"


def test_the_matrix_cannot_change_but_the_budget_can(cluster: KubeCluster) -> None:  # noqa: F811
    custom = client.CustomObjectsApi(cluster.api_client())
    body = experiment(name="frozen")
    _create(cluster, body, dry_run=False)
    try:
        with pytest.raises(ApiException) as refused:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, "experiments", "frozen", {"spec": {"matrix": {"rag": [False]}}}
            )
        assert "spec.matrix" in json.loads(refused.value.body)["message"]

        patched = custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "experiments", "frozen", {"spec": {"budget": {"maxTrials": 6}}}
        )
        assert patched["spec"]["budget"]["maxTrials"] == 6
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "experiments", "frozen")
