"""The median stopping rule on reported eval losses."""

from __future__ import annotations

from llmft.api.experiment import EarlyStopping
from llmft.experiments.stopping import best_until, history_of, median_rule

RULE = EarlyStopping(algorithm="median", min_trials=2, start_step=2)


def test_a_trial_worse_than_the_median_at_its_step_is_stopped() -> None:
    others = {"a": [(2, 1.0), (4, 0.8)], "b": [(2, 1.2), (4, 0.9)], "c": [(2, 1.1)]}

    decision = median_rule([(2, 1.5), (4, 2.5)], others, RULE)

    assert decision is not None and decision.reason == "EarlyStopped"
    assert (
        "1.5 by step 4" in decision.message and "median 0.85 of 2 other trials" in decision.message
    )


def test_a_trial_at_or_better_than_the_median_runs_on() -> None:
    others = {"a": [(2, 1.0)], "b": [(2, 1.2)]}

    assert median_rule([(2, 1.1)], others, RULE) is None
    assert median_rule([(2, 0.9)], others, RULE) is None


def test_the_rule_waits_for_enough_trials_at_the_same_step() -> None:
    others = {"a": [(2, 1.0), (4, 0.5)], "b": [(2, 1.0)]}

    assert median_rule([(2, 1.2), (4, 3.0)], others, RULE) is None


def test_the_rule_waits_for_the_start_step() -> None:
    others = {"a": [(1, 1.0)], "b": [(1, 1.0)]}

    assert median_rule([(1, 9.0)], others, RULE) is None


def test_a_diverged_trial_is_stopped_at_once() -> None:
    decision = median_rule([(1, 2.0), (2, None)], {}, RULE)

    assert decision is not None and decision.reason == "Diverged"


def test_no_rule_stops_nothing() -> None:
    assert median_rule([(2, None)], {}, EarlyStopping(algorithm="none")) is None


def test_best_until_ignores_later_steps_and_counts_non_finite_as_worst() -> None:
    assert best_until([(2, 1.0), (4, 0.5)], 3) == 1.0
    assert best_until([(2, None)], 3) == float("inf")
    assert best_until([(5, 1.0)], 3) is None


def test_history_reads_the_status_shape() -> None:
    assert history_of([{"step": 2, "evalLoss": 1.5}, {"step": 4}]) == [(2, 1.5), (4, None)]
