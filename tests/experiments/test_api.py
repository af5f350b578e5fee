"""The Experiment API: what a manifest may say, and the errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.manifests import experiment
from llmft.api.experiment import ExperimentSpec
from llmft.api.resource import ManifestError, parse_resource


def refused(body: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as err:
        parse_resource(body)
    return str(err.value)


def test_the_seed_matrix_parses_with_defaults() -> None:
    res = parse_resource(experiment())
    spec: ExperimentSpec = res.spec

    assert spec.matrix.cell_count() == 8
    assert spec.budget.max_trials == 4
    assert spec.objective.goal() == "minimize"
    assert spec.early_stopping.algorithm == "none"


def test_an_empty_matrix_is_refused_naming_the_field() -> None:
    body = experiment()
    body["spec"]["matrix"]["models"] = []

    assert "spec.matrix.models" in refused(body)


def test_an_unknown_hyperparameter_is_refused_naming_the_field() -> None:
    body = experiment()
    body["spec"]["search"]["parameters"] = [{"name": "learningRat", "values": [1e-4]}]

    message = refused(body)
    assert "spec.search.parameters[0].name" in message
    assert "learningRate" in message


def test_a_grid_larger_than_max_trials_is_refused_unless_truncation_is_allowed() -> None:
    body = experiment(
        search={
            "algorithm": "grid",
            "parameters": [{"name": "learningRate", "values": [1e-4, 2e-4]}],
        }
    )

    message = refused(body)
    assert "spec.budget.maxTrials" in message and "16 trials" in message
    body["spec"]["budget"]["allowTruncate"] = True
    assert parse_resource(body).spec.grid_size() == 16


def test_an_objective_the_evaluation_does_not_compute_is_refused() -> None:
    body = experiment(objective={"metric": "chrf"})

    message = refused(body)
    assert "spec.objective.metric" in message and "chrf" in message


def test_an_objective_on_an_evaluation_metric_maximises_by_default() -> None:
    res = parse_resource(experiment(objective={"metric": "bleu"}))

    assert res.spec.objective.goal() == "maximize"


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"name": "learningRate", "min": 0.1, "max": 0.01}, "min must be smaller than max"),
        ({"name": "learningRate", "min": 0.0, "max": 0.1, "scale": "log"}, "min > 0"),
        ({"name": "learningRate", "min": 1e-5}, "both min and max"),
        ({"name": "learningRate", "values": [2.0]}, "learningRate: 2.0 is not a valid value"),
        ({"name": "batchSize", "values": [2.5]}, "takes integers"),
        ({"name": "lrScheduler", "values": [1.0]}, "lrScheduler takes categories"),
        ({"name": "lrScheduler", "categories": ["cosin"]}, "not a valid value"),
    ],
)
def test_bad_search_parameters_are_refused(parameter: dict[str, Any], expected: str) -> None:
    body = experiment()
    body["spec"]["search"]["parameters"] = [parameter]

    assert expected in refused(body)


def test_a_grid_over_a_range_needs_its_point_count() -> None:
    body = experiment(
        search={"algorithm": "grid", "parameters": [{"name": "lora.r", "min": 4, "max": 16}]},
        budget={"maxTrials": 64},
    )

    assert "spec.search.parameters[0].count" in refused(body)


def test_duplicate_model_names_are_refused() -> None:
    body = experiment()
    body["spec"]["matrix"]["models"][1]["name"] = "smol"

    assert "duplicate model names ['smol']" in refused(body)
