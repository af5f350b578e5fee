"""Prometheus metrics of the operator: reconciles, Jobs created, phases of the resources it sees."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "llmft_operator_reconciles_total",
    "Reconciles of llmft resources, by kind, trigger and outcome.",
    ["kind", "trigger", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "llmft_operator_reconcile_seconds",
    "Time one reconcile takes (API calls included).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS_CREATED = Counter(
    "llmft_operator_jobs_created_total", "Workload Jobs created, by kind.", ["kind"]
)
TRANSITIONS = Counter(
    "llmft_operator_phase_transitions_total",
    "Phase changes written to llmft resources, by kind and new phase.",
    ["kind", "phase"],
)
RESOURCES = Gauge(
    "llmft_operator_resources",
    "llmft resources this operator has seen, by kind and phase.",
    ["kind", "phase"],
)


class PhaseBook:
    """The last phase written per resource, kept in the RESOURCES gauge."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def record(self, kind: str, namespace: str, name: str, phase: str) -> None:
        key = (kind, namespace, name)
        with self._lock:
            old = self._phases.get(key)
            if old == phase:
                return
            if old is not None:
                RESOURCES.labels(kind, old).dec()
            else:
                RESOURCES.labels(kind, phase)  # the series exists from the first sighting
            self._phases[key] = phase
            RESOURCES.labels(kind, phase).inc()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            old = self._phases.pop((kind, namespace, name), None)
            if old is not None:
                RESOURCES.labels(kind, old).dec()

    def count(self) -> int:
        with self._lock:
            return len(self._phases)


def serve(port: int) -> None:
    """Expose /metrics on `port` (0: do not serve)."""
    if port:
        start_http_server(port)
