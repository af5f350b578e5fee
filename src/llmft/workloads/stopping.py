"""Stop requests: SIGTERM (the kubelet, on pod deletion, node drain or preemption) and SIGINT
(`llmft run` on Ctrl-C).

Outside a stretch of work that can save its state the signal stops the workload at once (the
`Stopped` exception, a KeyboardInterrupt). Inside one (`STOP.deferred()`, e.g. the training
loop) the first signal is only recorded: the workload finishes its unit in progress (a training
step), saves (a checkpoint) and raises `Stopped` itself, within the pod's grace period. A second
signal stops it at once.

A container's PID 1 ignores a signal it has no handler for, so without this handler SIGTERM would
do nothing and the kubelet would SIGKILL the pod when its grace period ends.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("llmft.stop")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """The workload was asked to stop by a signal, and stopped; `detail` says what it kept."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum = signum
        self.detail = detail

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum

    def __str__(self) -> str:
        text = f"stopped by {signal.Signals(self.signum).name}"
        return f"{text}: {self.detail}" if self.detail else text


class StopSignals:
    """The stop signal this process received, and whether a stop may wait for a safe point."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = 0
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (main thread only); `restore` puts the old handlers back."""
        self.signum = None
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self._deferring and first:
            log.warning(
                "%s received: finishing the step in progress, then saving a checkpoint",
                signal.Signals(signum).name,
            )
            return
        raise Stopped(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A stretch in which the caller polls `requested` and stops at a safe point itself."""
        if self.signum is not None:  # asked before the stretch began: stop now
            raise Stopped(self.signum)
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1


STOP = StopSignals()
