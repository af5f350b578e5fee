"""ModelFamilyKnown: the condition the operator and `llmft run` derive from a workload's report."""

from __future__ import annotations

from llmft.api.status import MODEL_FAMILY_KNOWN, find_condition, model_family_condition

NOW = "2026-12-01T00:00:00Z"


def test_a_verified_family_sets_the_condition_true_naming_it() -> None:
    conds = model_family_condition([], {"model": {"family": "gemma"}}, 3, NOW)
    cond = find_condition(conds, MODEL_FAMILY_KNOWN)
    assert cond is not None and cond.status == "True"
    assert cond.reason == "VerifiedModelFamily" and "gemma" in cond.message
    assert cond.observed_generation == 3


def test_a_model_outside_the_registry_turns_it_false_with_the_warnings_per_arm() -> None:
    raw = {
        "models": {
            "base": {"family": "llama3"},
            "other": {"family": "generic", "warnings": ["acme/x is not in llmft's families"]},
        }
    }
    cond = find_condition(model_family_condition([], raw, None, NOW), MODEL_FAMILY_KNOWN)
    assert cond is not None and cond.status == "False"
    assert cond.reason == "UnverifiedModelFamily"
    assert cond.message == "arm other: acme/x is not in llmft's families"


def test_no_report_yet_leaves_the_conditions_alone() -> None:
    assert model_family_condition([], {"phase": "Running"}, 1, NOW) == []
