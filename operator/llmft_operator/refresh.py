"""Re-checking resources whose pod has not started, without a finalizer on them.

No Job event says why a pod does not start (an image that cannot be pulled, no node that fits),
so such resources are re-read on a slow tick. kopf's own timers would do it, but kopf puts a
finalizer on every object a timer may run for, and a finalizer makes deletion wait for the
operator: with the operator stopped or uninstalled such a resource could not be deleted and its
namespace would stay Terminating. Here the watch events only keep a set of what is pending, and a
thread of the operator's own re-reads those; deletion never waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from llmft.api.common import Phase

log = logging.getLogger("llmft.operator")

Key = tuple[str, str, str]  # (kind, namespace, name)


def needs_refresh(status: Mapping[str, Any] | None) -> bool:
    """Whether a resource's Job exists but its pod has not started (nothing else reports that)."""
    status = status or {}
    return status.get("phase") == Phase.PENDING.value and bool(status.get("jobName"))


class Refresher:
    """The set of resources to re-check, and the thread that re-checks them every `interval` s.

    A resource is re-checked once it has been pending for `min_age` seconds: a burst of new
    Jobs whose pods are on their way costs no reads.
    """

    def __init__(
        self,
        check: Callable[[str, str, str], Any],
        interval: float,
        min_age: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.interval = interval
        self.min_age = min_age
        self.clock = clock
        self._pending: dict[Key, float] = {}  # key -> when it was first seen pending
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, key: Key, status: Mapping[str, Any] | None, deleted: bool = False) -> None:
        """Record what a watch event showed of one resource."""
        with self._guard:
            if not deleted and needs_refresh(status):
                self._pending.setdefault(key, self.clock())
            else:
                self._pending.pop(key, None)

    def pending(self) -> list[Key]:
        """The resources pending for at least `min_age` seconds."""
        oldest = self.clock() - self.min_age
        with self._guard:
            return sorted(key for key, since in self._pending.items() if since <= oldest)

    def tick(self) -> int:
        """Re-check every resource pending long enough once; returns how many were checked."""
        keys = self.pending()
        for kind, namespace, name in keys:
            if self._stop.is_set():
                break
            try:
                self.check(kind, namespace, name)
            except Exception:  # the next tick tries again
                log.exception("re-checking %s %s/%s failed", kind, namespace, name)
        return len(keys)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llmft-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()
