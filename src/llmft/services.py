"""Calls to a service a workload depends on (Ollama, Weaviate) while it may be down or restarting:
retried with exponential backoff and jitter for a bounded time, then one error naming the
service, how long it was tried and the last error.

The bound is `LLMFT_SERVICE_WAIT_SECONDS` (default 60): long enough for a pod that starts before
the chart's Ollama or Weaviate is ready, or a server restarted mid-run; short enough that a
service that is really gone fails the attempt, and the Job's own retries take over.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("llmft.services")

ENV_SERVICE_WAIT = "LLMFT_SERVICE_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 60.0
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
    start = time.monotonic()
    attempt = 0
    slept = 0.0
    while True:
        try:
            return call()
        except Exception as err:
            if not transient(err):
                raise
            elapsed = max(time.monotonic() - start, slept)
            delay = backoff_delay(attempt, wait.base)
            attempt += 1
            if elapsed + delay > wait.seconds:
                raise ServiceUnavailable(
                    f"{what} did not answer for {elapsed:.0f}s ({attempt} attempts; "
                    f"{ENV_SERVICE_WAIT}={wait.seconds:g}): {type(err).__name__}: {err}"
                ) from err
            name = type(err).__name__
            log.warning("%s: %s: %s; retry %d in %.1fs", what, name, err, attempt, delay)
            sleep(delay)
            slept += delay
