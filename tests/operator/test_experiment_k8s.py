"""The Experiment against a real control plane: its CRD's rules, and the operator driving it.

The operator and the cluster come from test_operator_k8s (same namespace, same least-privilege
RBAC). kwok runs no containers, so the test plays each trial's workload status part with the
workload's own service account token, as the FineTuneJob tests do.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from test_operator_k8s import (  # noqa: F401 (fixtures shared with the FineTuneJob tests)
    GROUP,
    NS,
    PLURALS,
    VERSION,
    Api,
    api,
    cluster,
    condition,
    operator,
    run_ms,
    token_kubeconfig,
)

from servers.launch import KubeCluster, wait_for

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


# --- the operator ----------------------------------------------------------------------------

HOLD = "llmft.io/kwok-hold"  # kwok keeps a trial's pod Running until the test releases it


def _release(on: Api, trial: str) -> None:
    """Let a held trial's pod complete (kwok's complete stage needs the hold annotation gone)."""
    pods = wait_for(lambda: on.pods_of(f"{trial}-ftj"), 60, what=f"pod of {trial}")
    for pod in pods:
        on.core.patch_namespaced_pod(
            pod.metadata.name, NS, {"metadata": {"annotations": {HOLD: None}}}
        )


def _play(kube: KubeCluster, on: Api, tmp_path: Path, trial: str, status: dict[str, Any]) -> None:
    """Report `status` for a running trial as its workload would: its pod's bound token."""
    pods = wait_for(lambda: on.pods_of(f"{trial}-ftj"), 60, what=f"pod of {trial}")
    kubeconfig = token_kubeconfig(
        kube, "llmft-workload", NS, tmp_path / f"{trial}.kubeconfig", pod=pods[0].metadata.name
    )
    workload = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    workload.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "finetunejobs", trial, {"status": status}
    )


def _trials(on: Api, experiment: str) -> list[dict[str, Any]]:
    items = on.custom.list_namespaced_custom_object(
        GROUP, VERSION, NS, "finetunejobs", label_selector=f"llmft.io/experiment={experiment}"
    )["items"]
    return sorted(items, key=lambda t: t["metadata"]["name"])


def _history(*losses: float | None) -> list[dict[str, Any]]:
    return [
        {"step": i + 1, **({} if loss is None else {"evalLoss": loss})}
        for i, loss in enumerate(losses)
    ]


def test_an_experiment_runs_its_trials_in_parallel_stops_a_diverging_one_and_ranks(
    api: Api,  # noqa: F811
    cluster: KubeCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    arms_scores = {"t00.rougeL": 0.31, "t00-rag.rougeL": 0.42, "t01.rougeL": 0.2}
    arms_scores |= {"t01-rag.rougeL": 0.25, "t03.rougeL": 0.3, "t03-rag.rougeL": 0.35}
    arms_scores |= {"base-smol.rougeL": 0.1, "base-llama.rougeL": 0.12}
    evaluation_result = {"metrics": {"winner": "t00-rag", **arms_scores}}
    body = experiment(
        "exp-sweep",
        dataset={"path": "datasets/hr"},
        fineTune={
            "hyperparameters": {"maxSteps": 10},
            "resources": run_ms(300, **{HOLD: "true"}),
        },
        earlyStopping={"algorithm": "median", "minTrials": 2, "startStep": 1},
        evaluation={
            "metrics": ["rouge"],
            "primaryMetric": "rouge",
            "arms": {"baseWithRag": False},
            "resources": run_ms(500, **{"llmft.io/kwok-message": json.dumps(evaluation_result)}),
        },
    )
    api.create(body)

    # Two at a time: the first two trials, and no third while they run.
    first = wait_for(lambda: len(_trials(api, "exp-sweep")) >= 2 and _trials(api, "exp-sweep"))
    assert [t["metadata"]["name"] for t in first] == ["exp-sweep-t00", "exp-sweep-t01"]
    for trial, losses, final in (
        ("exp-sweep-t00", (1.0, 0.8), 0.8),
        ("exp-sweep-t01", (1.1, 0.9), 0.9),
    ):
        api.wait_phase("FineTuneJob", trial, "Running")
        _play(
            cluster,
            api,
            tmp_path,
            trial,
            {
                "progress": {"step": 2, "total": 10, "evalHistory": _history(*losses)},
                "metrics": {"evalLoss": final},
                # What the trainer reports under Kubeflow Trainer's names.
                "trainerStatus": {
                    "progressPercentage": 20,
                    "estimatedRemainingSeconds": 40,
                    "metrics": [{"name": "eval_loss", "value": str(losses[-1])}],
                    "lastUpdatedTime": "2026-12-01T00:00:00Z",
                },
            },
        )
    assert len(_trials(api, "exp-sweep")) == 2
    reported = api.status("FineTuneJob", "exp-sweep-t00")["trainerStatus"]
    assert reported["progressPercentage"] == 20
    assert reported["metrics"] == [{"name": "eval_loss", "value": "0.8"}]
    running = api.wait_phase("Experiment", "exp-sweep", "Running")
    assert running["counts"]["running"] == 2 and running["counts"]["planned"] == 4

    # When they finish, the next two start; the one whose eval loss diverges is stopped.
    _release(api, "exp-sweep-t00")
    _release(api, "exp-sweep-t01")
    wait_for(lambda: len(_trials(api, "exp-sweep")) == 4, 90, what="trials 3 and 4")
    api.wait_phase("FineTuneJob", "exp-sweep-t02", "Running")
    _play(
        cluster,
        api,
        tmp_path,
        "exp-sweep-t02",
        {
            "progress": {"step": 1, "total": 10, "evalHistory": _history(9.5)},
        },
    )
    stopped = api.wait_phase("FineTuneJob", "exp-sweep-t02", "Failed", timeout=60)
    assert condition(stopped, "Failed")["reason"] == "EarlyStopped"
    assert "median rule" in stopped["message"]
    wait_for(
        lambda: api.job("exp-sweep-t02-ftj") is None, 60, what="the stopped trial's Job deleted"
    )
    api.wait_phase("FineTuneJob", "exp-sweep-t03", "Running")
    _play(
        cluster,
        api,
        tmp_path,
        "exp-sweep-t03",
        {
            # Never worse than the median of the others at the same step: it runs on.
            "progress": {"step": 2, "total": 10, "evalHistory": _history(0.95, 0.82)},
            "metrics": {"evalLoss": 0.82},
        },
    )
    _release(api, "exp-sweep-t03")

    # Then the Evaluation of the succeeded trials, and the ranking.
    done = api.wait_phase("Experiment", "exp-sweep", "Succeeded", timeout=120)
    trials = {t["name"]: t for t in done["trials"]}
    assert trials["exp-sweep-t02"]["reason"] == "EarlyStopped"
    assert done["counts"] | {"succeeded": 3, "stopped": 1, "failed": 0} == done["counts"]
    assert done["counts"]["done"] == "4/4"
    assert done["bestTrial"]["name"] == "exp-sweep-t00" and done["bestTrial"]["objective"] == 0.8
    assert [r["arm"] for r in done["ranking"][:3]] == ["t00-rag", "t03-rag", "t00"]
    assert done["ranking"][0]["trial"] == "exp-sweep-t00"
    evaluation = api.get("Evaluation", "exp-sweep-eval")
    assert [a["name"] for a in evaluation["spec"]["arms"]] == [
        "base-smol",
        "base-llama",
        "t00",
        "t00-rag",
        "t01",
        "t01-rag",
        "t03",
        "t03-rag",
    ]
    owners = {
        o["uid"]
        for child in [*_trials(api, "exp-sweep"), evaluation]
        for o in child["metadata"]["ownerReferences"]
    }
    assert owners == {api.get("Experiment", "exp-sweep")["metadata"]["uid"]}
    printed = cluster.kubectl("get", "exp", "exp-sweep", "-n", NS).stdout
    assert "4/4" in printed and "exp-sweep-t00" in printed

    # Applying the same manifest again changes nothing and creates nothing.
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(body)
    )
    assert len(_trials(api, "exp-sweep")) == 4
    assert api.get("Experiment", "exp-sweep")["metadata"]["generation"] == 1

    # Deleting the Experiment deletes its trials and its Evaluation.
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "experiments", "exp-sweep")
    wait_for(lambda: not _trials(api, "exp-sweep"), 90, what="trials garbage-collected")
    wait_for(
        lambda: (
            "exp-sweep-eval"
            not in [
                e["metadata"]["name"]
                for e in api.custom.list_namespaced_custom_object(
                    GROUP, VERSION, NS, "evaluations"
                )["items"]
            ]
        ),
        90,
        what="the Evaluation garbage-collected",
    )
