"""Deterministic names and labels of the objects the operator creates for a resource.

Names are a pure function of the resource's name and kind, so an operator that restarts (or
runs twice) finds what it created before instead of creating a duplicate.
"""

from __future__ import annotations

from llmft.api.common import GROUP
from llmft.api.kinds import KINDS
from llmft.api.resource import MAX_NAME, bounded_name

LABEL_KIND = f"{GROUP}/kind"
LABEL_NAME = f"{GROUP}/name"
MANAGED_BY = "llmft-operator"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MAX_LABEL = MAX_NAME  # label values and the Job name (it becomes a pod label)


def job_name(kind: str, name: str) -> str:
    """The workload Job's name: <name>-<short kind>, shortened with a hash past 63 characters."""
    return bounded_name(name, KINDS[kind].short_name)


def spec_configmap_name(kind: str, name: str) -> str:
    """The ConfigMap holding the resolved spec: <name>-<short kind>-spec."""
    return f"{job_name(kind, name)}-spec"


def labels(kind: str, name: str) -> dict[str, str]:
    """Labels on every object created for a resource (and selectors for them)."""
    return {
        "app.kubernetes.io/name": "llmft",
        "app.kubernetes.io/instance": name[:MAX_LABEL],
        "app.kubernetes.io/component": KINDS.workload(kind).name,
        "app.kubernetes.io/part-of": "llmft",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_KIND: kind,
        LABEL_NAME: name[:MAX_LABEL],
    }
