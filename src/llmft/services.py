"""Calls to a service a workload depends on (Ollama, Weaviate) while it may be down or restarting:
retried by tenacity with exponential backoff and jitter for a bounded time, then one error naming
the service, how long it was tried and the last error.

The bound is `LLMFT_SERVICE_WAIT_SECONDS` (default 60), which the operator and `llmft run` set
from the resource's `spec.resources.serviceWaitSeconds`: long enough for a pod that starts
before the chart's Ollama or Weaviate is ready, or a server restarted mid-run; short enough that
a service that is really gone fails the attempt, and the Job's own retries take over.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, RetryError, Retrying, retry_if_exception

from llmft.api.common import DEFAULT_SERVICE_WAIT_SECONDS, ENV_SERVICE_WAIT

log = logging.getLogger("llmft.services")

DEFAULT_WAIT_SECONDS = float(DEFAULT_SERVICE_WAIT_SECONDS)
MAX_BACKOFF_SECONDS = 30.0

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """The service kept failing for the whole wait."""


def backoff_delay(attempt: int, base: float) -> float:
    """Exponential with jitter, so concurrent callers do not hammer a recovering server together."""
    return min(MAX_BACKOFF_SECONDS, base * 2**attempt) * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class Wait:
    """How long to keep retrying a service (seconds in all) and the first backoff."""

    seconds: float = DEFAULT_WAIT_SECONDS
    base: float = 1.0

    @classmethod
    def from_env(cls) -> Wait:
        raw = os.environ.get(ENV_SERVICE_WAIT)
        return cls(seconds=float(raw)) if raw else cls()


def call_service(
    what: str,
    call: Callable[[], T],
    transient: Callable[[Exception], bool],
    wait: Wait | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried while it raises a `transient` error, until `wait.seconds` have passed.

    Other errors propagate at once. `what` names the service for the log and the final error
    ("Weaviate at http://weaviate:8080").
    """
    wait = wait or Wait.from_env()

    def elapsed(state: RetryCallState) -> float:
        # The time passed, or slept: a test's sleep lets none pass.
        return max(state.seconds_since_start or 0.0, state.idle_for)

    def out_of_time(state: RetryCallState) -> bool:
        return elapsed(state) + (state.upcoming_sleep or 0.0) > wait.seconds

    def before_sleep(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        name, attempt, delay = type(err).__name__, state.attempt_number, state.upcoming_sleep
        log.warning("%s: %s: %s; retry %d in %.1fs", what, name, err, attempt, delay)

    retrying = Retrying(
        stop=out_of_time,
        wait=lambda state: backoff_delay(state.attempt_number - 1, wait.base),
        retry=retry_if_exception(lambda err: isinstance(err, Exception) and transient(err)),
        sleep=sleep,
        before_sleep=before_sleep,
    )
    try:
        return retrying(call)
    except RetryError as failed:
        last = failed.last_attempt
        err = last.exception()
        state = retrying.statistics
        seconds = max(state["delay_since_first_attempt"], state["idle_for"])
        raise ServiceUnavailable(
            f"{what} did not answer for {seconds:.0f}s ({last.attempt_number} attempts; "
            f"{ENV_SERVICE_WAIT}={wait.seconds:g}): {type(err).__name__}: {err}"
        ) from err
