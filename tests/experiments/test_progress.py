"""One Experiment step: what to create and stop, when to evaluate, and the status it shows."""

from __future__ import annotations

from typing import Any

from experiments.manifests import experiment
from llmft.api.experiment import ExperimentSpec
from llmft.api.resource import parse_resource
from llmft.experiments.children import (
    evaluation_manifest,
    fine_tune_manifest,
    trial_from_manifest,
    trial_name,
)
from llmft.experiments.progress import EvaluationView, TrialView, step
from llmft.experiments.space import Trial, propose


def spec_of(**changes: Any) -> ExperimentSpec:
    spec: ExperimentSpec = parse_resource(experiment(**changes)).spec
    return spec


def view(spec: ExperimentSpec, i: int, phase: str | None = "Running", **kw: Any) -> TrialView:
    return TrialView(propose(spec, i), trial_name("sweep", i), phase, **kw)


def test_the_first_step_creates_parallel_trials_only() -> None:
    spec = spec_of()

    out = step(spec, "ns", "sweep", [], None)

    assert [t.index for t in out.create] == [0, 1]
    assert out.phase == "Running" and out.status["counts"]["done"] == "0/4"


def test_a_finished_trial_makes_room_for_the_next() -> None:
    spec = spec_of()
    views = [view(spec, 0, "Succeeded", eval_loss=1.0), view(spec, 1)]

    out = step(spec, "ns", "sweep", views, None)

    assert [t.index for t in out.create] == [2]
    assert out.status["counts"] | {"planned": 4, "created": 2, "running": 1} == out.status["counts"]


def test_nothing_is_created_past_the_budget() -> None:
    spec = spec_of()
    views = [view(spec, i) for i in range(2)] + [view(spec, i, "Succeeded") for i in (2, 3)]

    assert step(spec, "ns", "sweep", views, None).create == []


def test_the_median_rule_stops_a_trial_that_falls_behind() -> None:
    spec = spec_of(earlyStopping={"algorithm": "median", "minTrials": 2, "startStep": 1})
    views = [
        view(spec, 0, "Succeeded", eval_loss=0.9, history=[(2, 1.0), (4, 0.9)]),
        view(spec, 1, "Succeeded", eval_loss=1.0, history=[(2, 1.1), (4, 1.0)]),
        view(spec, 2, history=[(2, 4.0)]),
        view(spec, 3, history=[(2, 1.05)]),
    ]

    out = step(spec, "ns", "sweep", views, None)

    assert list(out.stop) == [trial_name("sweep", 2)]
    row = out.status["trials"][2]
    assert row["reason"] == "EarlyStopped" and "median rule" in row["message"]
    assert out.status["counts"]["stopped"] == 1


def test_too_many_failures_fail_the_experiment_and_start_nothing() -> None:
    spec = spec_of(budget={"maxTrials": 4, "parallelTrials": 2, "maxFailedTrials": 0})
    views = [view(spec, 0, "Failed", reason="OOMKilled")]

    out = step(spec, "ns", "sweep", views, None)

    assert out.phase == "Failed" and out.reason == "TooManyFailedTrials" and out.create == []


def test_stopped_trials_do_not_count_as_failures() -> None:
    spec = spec_of(budget={"maxTrials": 4, "parallelTrials": 1, "maxFailedTrials": 0})
    views = [view(spec, 0, "Failed", reason="EarlyStopped")]

    out = step(spec, "ns", "sweep", views, None)

    assert out.phase == "Running" and [t.index for t in out.create] == [1]


def test_when_every_trial_is_done_the_best_are_evaluated() -> None:
    spec = spec_of(evaluation={"trials": 2, "metrics": ["rouge"], "primaryMetric": "rouge"})
    views = [
        view(spec, 0, "Succeeded", eval_loss=1.3),
        view(spec, 1, "Succeeded", eval_loss=0.8),
        view(spec, 2, "Failed", reason="EarlyStopped"),
        view(spec, 3, "Succeeded", eval_loss=1.0),
    ]

    out = step(spec, "ns", "sweep", views, None)

    assert out.evaluate is not None and [t.index for t in out.evaluate] == [1, 3]
    assert out.reason == "Evaluating"
    assert out.status["bestTrial"]["name"] == trial_name("sweep", 1)


def test_the_evaluation_ranks_arms_and_an_evaluation_objective_picks_the_best() -> None:
    spec = spec_of(
        objective={"metric": "rouge"},
        evaluation={"trials": 2, "metrics": ["rouge"], "primaryMetric": "rouge"},
    )
    views = [view(spec, i, "Succeeded", eval_loss=1.0 + i) for i in range(4)]
    t0, t1 = views[0].trial, views[1].trial
    rag0 = "t00-rag" if t0.cell.rag else "t00"
    rag1 = "t01-rag" if t1.cell.rag else "t01"
    metrics = {f"{rag0}.rougeL": 0.2, f"{rag1}.rougeL": 0.5, "base-smol.rougeL": 0.1}
    evaluation = EvaluationView("sweep-eval", "Succeeded", metrics=metrics)

    out = step(spec, "ns", "sweep", views, evaluation)

    assert out.phase == "Succeeded"
    assert out.status["bestTrial"] == out.status["bestTrial"] | {
        "name": trial_name("sweep", 1),
        "objective": 0.5,
    }
    ranked = out.status["ranking"]
    assert [r["arm"] for r in ranked[:3]] == [rag1, rag0, "base-smol"]
    assert ranked[0]["rank"] == 1 and ranked[0]["trial"] == trial_name("sweep", 1)


def test_no_succeeded_trial_fails_the_experiment() -> None:
    spec = spec_of(budget={"maxTrials": 1, "maxFailedTrials": 3})
    out = step(spec, "ns", "sweep", [view(spec, 0, "Failed", reason="Diverged")], None)

    assert out.phase == "Failed" and out.reason == "NoTrialSucceeded"


def test_a_trial_manifest_carries_its_cell_parameters_and_template() -> None:
    spec = spec_of(tracking={"mlflow": {"trackingUri": "http://mlflow:5000"}})
    trial = propose(spec, 0)

    body = fine_tune_manifest(spec, "ns", "sweep", trial)
    res = parse_resource(body)

    assert res.metadata.name == "sweep-t00"
    assert res.spec.hyperparameters.learning_rate == trial.parameters["learningRate"]
    assert res.spec.hyperparameters.max_steps == 10
    assert res.spec.rag.enabled == trial.cell.rag and res.spec.method == trial.cell.method
    assert res.spec.tracking.mlflow.experiment_name == "ns/sweep"
    assert trial_from_manifest(body) == trial


def test_nested_hyperparameters_are_set_by_path() -> None:
    spec = spec_of(
        search={"algorithm": "random", "parameters": [{"name": "lora.r", "values": [4]}]}
    )

    res = parse_resource(fine_tune_manifest(spec, "ns", "sweep", propose(spec, 0)))

    assert res.spec.hyperparameters.lora.r == 4


def test_the_evaluation_has_base_models_once_and_two_arms_per_trial() -> None:
    spec = spec_of()
    trials: list[Trial] = [propose(spec, 0), propose(spec, 2)]

    res = parse_resource(evaluation_manifest(spec, "ns", "sweep", trials))

    names = [a.name for a in res.spec.arms]
    bases = ["base-smol", "base-smol-rag", "base-llama", "base-llama-rag"]
    assert names == [*bases, "t00", "t00-rag", "t02", "t02-rag"]
    assert res.spec.arms[4].fine_tune_job_ref == "sweep-t00"
    assert res.spec.primary_metric == "rouge"


def test_long_experiment_names_give_bounded_child_names() -> None:
    name = trial_name("x" * 63, 3)

    assert len(name) <= 59 and name.endswith("-t03")
