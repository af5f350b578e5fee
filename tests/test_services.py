"""Calls to a service that may be down: bounded retries, then one error naming the service."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llmft.services import ServiceUnavailable, Wait, call_service


def _flaky(failures: int, error: Exception) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "answer"

    return calls, call


def test_a_service_back_within_the_wait_answers_the_call() -> None:
    calls, call = _flaky(3, ConnectionRefusedError("refused"))
    slept: list[float] = []

    assert call_service("Weaviate at x", call, lambda e: True, Wait(60), slept.append) == "answer"
    assert len(calls) == 4 and len(slept) == 3 and slept[0] <= 1.0 < slept[2]


def test_a_service_down_for_the_whole_wait_fails_naming_it_and_the_last_error() -> None:
    calls, call = _flaky(1000, ConnectionRefusedError("refused"))
    slept: list[float] = []

    with pytest.raises(ServiceUnavailable) as err:
        call_service("Ollama at http://o:11434", call, lambda e: True, Wait(20), slept.append)

    assert sum(slept) <= 20 and len(calls) == len(slept) + 1
    assert str(err.value).startswith("Ollama at http://o:11434 did not answer for")
    assert "LLMFT_SERVICE_WAIT_SECONDS=20" in str(err.value)
    assert str(err.value).endswith("ConnectionRefusedError: refused")


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    calls, call = _flaky(1, ValueError("bad query"))

    with pytest.raises(ValueError, match="bad query"):
        call_service("Weaviate", call, lambda e: isinstance(e, OSError), Wait(60), lambda _: None)
    assert len(calls) == 1
