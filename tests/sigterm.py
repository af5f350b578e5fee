"""SIGTERM (a CI runner's cancel, `kill`, tests/run.sh passing on an interrupt) stops a test run
as Ctrl-C does: pytest then tears the session fixtures down, which stop the servers and the real
node instead of leaving them running. tests/conftest.py installs it."""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # A second SIGTERM is ignored while the fixtures stop (SIGKILL still ends the run).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("SIGTERM")


def install() -> None:
    """Only where nothing else chose what SIGTERM does (the default kills without teardown)."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
