"""Trials from the matrix and the search space: grid, random and Bayesian (optuna)."""

from __future__ import annotations

import math

from experiments.manifests import experiment
from llmft.api.experiment import ExperimentSpec
from llmft.api.resource import parse_resource
from llmft.experiments.space import (
    Cell,
    Outcome,
    cells,
    grid_points,
    planned_trials,
    propose,
)


def spec_of(**changes: object) -> ExperimentSpec:
    spec: ExperimentSpec = parse_resource(experiment(**changes)).spec
    return spec


def test_causal_cells_are_trained_once_without_rag() -> None:
    spec = spec_of(
        matrix={
            "models": [{"name": "a", "baseModel": {"name": "x"}}],
            "methods": ["lora"],
            "modes": ["causal", "instruct"],
            "rag": [True, False],
        }
    )

    assert cells(spec.matrix) == [
        Cell("a", "lora", "causal", False),
        Cell("a", "lora", "instruct", False),
        Cell("a", "lora", "instruct", True),
    ]


def test_grid_covers_every_cell_with_every_point_in_order() -> None:
    spec = spec_of(
        search={
            "algorithm": "grid",
            "parameters": [
                {"name": "learningRate", "min": 1e-4, "max": 1e-2, "scale": "log", "count": 3},
                {"name": "lora.r", "values": [8, 16]},
            ],
        },
        budget={"maxTrials": 48},
    )

    trials = [propose(spec, i) for i in range(planned_trials(spec))]

    assert planned_trials(spec) == 8 * 3 * 2
    seen = {
        (t.cell, round(math.log10(float(t.parameters["learningRate"]))), t.parameters["lora.r"])
        for t in trials
    }
    assert seen == {(c, e, r) for c in cells(spec.matrix) for e in (-4, -3, -2) for r in (8, 16)}
    assert [t.parameters["lora.r"] for t in trials[:2]] == [8, 16]
    assert isinstance(trials[0].parameters["lora.r"], int)
    assert math.isclose(float(trials[2].parameters["learningRate"]), 1e-3)


def test_log_grid_points_are_evenly_spaced_in_log() -> None:
    spec = spec_of(
        search={
            "algorithm": "grid",
            "parameters": [
                {"name": "learningRate", "min": 1e-4, "max": 1e-2, "scale": "log", "count": 3}
            ],
        },
        budget={"maxTrials": 24},
    )

    points = grid_points(spec.search.parameters[0])

    assert [round(math.log10(float(p)), 6) for p in points] == [-4.0, -3.0, -2.0]


def test_a_truncated_grid_runs_max_trials() -> None:
    spec = spec_of(search={"algorithm": "grid"}, budget={"maxTrials": 3, "allowTruncate": True})

    assert planned_trials(spec) == 3


def test_random_search_is_reproducible_and_covers_distinct_cells_first() -> None:
    spec = spec_of()

    first = [propose(spec, i) for i in range(4)]
    again = [propose(spec, i) for i in range(4)]

    assert first == again
    assert len({t.cell for t in first}) == 4
    for t in first:
        assert 1e-5 <= float(t.parameters["learningRate"]) <= 1e-3


def test_another_seed_gives_other_trials() -> None:
    a = [propose(spec_of(), i) for i in range(4)]
    b_spec = spec_of()
    b_spec.search.seed = 8
    b = [propose(b_spec, i) for i in range(4)]

    assert a != b


def test_random_trials_do_not_depend_on_each_other() -> None:
    spec = spec_of()

    assert propose(spec, 3) == [propose(spec, i) for i in range(4)][3]


def test_bayesian_search_moves_towards_the_low_losses_it_was_told() -> None:
    spec = spec_of(
        search={
            "algorithm": "bayesian",
            "seed": 1,
            "parameters": [{"name": "learningRate", "min": 1e-5, "max": 1e-1, "scale": "log"}],
        },
        budget={"maxTrials": 40},
    )
    history: list[Outcome] = []
    for i in range(30):
        trial = propose(spec, i, history)
        lr = float(trial.parameters["learningRate"])
        # A loss whose minimum is at 1e-3: TPE should sample near it once it has seen enough.
        history.append(Outcome(trial, "complete", (math.log10(lr) + 3) ** 2))

    late = [abs(math.log10(float(o.trial.parameters["learningRate"])) + 3) for o in history[20:]]
    early = [abs(math.log10(float(o.trial.parameters["learningRate"])) + 3) for o in history[:10]]
    assert sum(late) / len(late) < sum(early) / len(early)
    assert propose(spec, 30, history) == propose(spec, 30, history)


def test_bayesian_search_tells_failed_and_running_trials_without_values() -> None:
    spec = spec_of(
        search={"algorithm": "bayesian", "parameters": [{"name": "batchSize", "min": 1, "max": 8}]}
    )
    first = propose(spec, 0)
    history = [Outcome(first, "failed"), Outcome(propose(spec, 1), "running")]

    trial = propose(spec, 2, history)

    assert isinstance(trial.parameters["batchSize"], int)
    assert 1 <= int(trial.parameters["batchSize"]) <= 8
