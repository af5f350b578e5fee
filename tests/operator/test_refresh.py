"""The refresher: resources whose pod has not started are re-read, without a finalizer."""

from __future__ import annotations

from typing import Any

from llmft_operator.refresh import Refresher, needs_refresh

PENDING = {"phase": "Pending", "jobName": "tune-ftj"}


def test_only_pending_resources_with_a_job_need_a_refresh() -> None:
    assert needs_refresh(PENDING)
    assert not needs_refresh({"phase": "Pending"})  # no Job yet: kopf retries the creation
    assert not needs_refresh({"phase": "Running", "jobName": "tune-ftj"})
    assert not needs_refresh(None)


def test_a_tick_rechecks_what_the_watch_showed_pending_and_forgets_the_rest() -> None:
    checked: list[tuple[str, str, str]] = []
    refresher = Refresher(lambda *key: checked.append(key), interval=60)
    refresher.observe(("FineTuneJob", "ns", "a"), PENDING)
    refresher.observe(("FineTuneJob", "ns", "b"), PENDING)
    refresher.observe(("FineTuneJob", "ns", "b"), {"phase": "Running", "jobName": "b-ftj"})
    refresher.observe(("Evaluation", "ns", "c"), PENDING)
    refresher.observe(("Evaluation", "ns", "c"), PENDING, deleted=True)

    assert refresher.tick() == 1
    assert checked == [("FineTuneJob", "ns", "a")]


def test_a_failing_check_does_not_stop_the_others() -> None:
    checked: list[str] = []

    def check(kind: str, namespace: str, name: str) -> Any:
        checked.append(name)
        if name == "a":
            raise RuntimeError("API server unavailable")

    refresher = Refresher(check, interval=60)
    for name in ("a", "b"):
        refresher.observe(("FineTuneJob", "ns", name), PENDING)

    assert refresher.tick() == 2 and checked == ["a", "b"]


def test_a_resource_is_rechecked_only_once_it_has_been_pending_for_min_age() -> None:
    now = [100.0]
    checked: list[str] = []
    refresher = Refresher(lambda *key: checked.append(key[2]), 30, min_age=30, clock=lambda: now[0])
    refresher.observe(("FineTuneJob", "ns", "a"), PENDING)
    now[0] += 20
    refresher.observe(("FineTuneJob", "ns", "b"), PENDING)
    refresher.observe(("FineTuneJob", "ns", "a"), PENDING)  # still pending: the age is kept

    assert refresher.tick() == 0
    now[0] += 10
    assert refresher.tick() == 1 and checked == ["a"]
    now[0] += 20
    assert refresher.tick() == 2 and checked == ["a", "a", "b"]
