"""Status written and read the same way everywhere: conditions, merge patches, typed reads."""

from __future__ import annotations

from llmft.api.status import is_noop, merge_patch, read_status, set_condition

T0 = "2026-01-01T10:00:00Z"
T1 = "2026-01-01T10:05:00Z"


def test_condition_transition_time_moves_only_when_its_status_flips() -> None:
    conds = set_condition([], "Ready", False, "Waiting", "x", 1, T0)

    same = set_condition(conds, "Ready", False, "Other", "y", 1, T1)
    flipped = set_condition(conds, "Ready", True, "Succeeded", "z", 1, T1)

    assert same[0].last_transition_time == T0 and same[0].reason == "Other"
    assert flipped[0].last_transition_time == T1


def test_conditions_keep_the_standard_order() -> None:
    conds = set_condition([], "Failed", False, "NotFailed", "", 1, T0)
    conds = set_condition(conds, "Ready", True, "Succeeded", "", 1, T0)

    assert [c.type for c in conds] == ["Ready", "Failed"]


def test_merge_patch_merges_objects_at_every_depth_and_replaces_lists() -> None:
    current = {"progress": {"step": 1, "loss": 2.0}, "conditions": [{"type": "A"}], "x": 1}

    merged = merge_patch(
        current, {"progress": {"step": 2}, "conditions": [{"type": "B"}], "x": None}
    )

    assert merged == {"progress": {"step": 2, "loss": 2.0}, "conditions": [{"type": "B"}]}
    assert current["progress"] == {"step": 1, "loss": 2.0}  # the input is left alone


def test_a_patch_that_changes_nothing_is_a_noop() -> None:
    current = {"phase": "Running", "metrics": {"a": 1, "b": 2}}

    assert is_noop(current, {"phase": "Running", "metrics": {"a": 1}})
    assert not is_noop(current, {"metrics": {"a": 2}})
    assert not is_noop(current, {"phase": None})


def test_status_is_read_through_its_type_and_unknown_fields_are_ignored() -> None:
    status = read_status(
        {"phase": "Running", "progress": {"step": 3, "total": 10}, "specHash": "abc"}
    )

    assert status.phase == "Running"
    assert status.progress is not None and status.progress.step == 3
