"""The typed spec and status of each llmft custom resource, shared by operator and workloads.

This package imports pydantic only: the operator, the workloads and the local runner all
parse manifests through it, so a manifest means the same thing everywhere.
"""

from llmft.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    ArtifactOutput,
    Condition,
    HuggingFaceRepo,
    ModelSource,
    Phase,
    Progress,
    Ref,
    Resources,
    SecretKeyRef,
)
from llmft.api.datasetgeneration import DatasetGenerationSpec
from llmft.api.evaluation import EvaluationSpec
from llmft.api.finetunejob import FineTuneJobSpec
from llmft.api.kinds import KINDS, KindEntry, KindRegistry
from llmft.api.resource import (
    ManifestError,
    Resource,
    load_manifests,
    parse_resource,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "ArtifactOutput",
    "Condition",
    "DatasetGenerationSpec",
    "EvaluationSpec",
    "FineTuneJobSpec",
    "HuggingFaceRepo",
    "KindEntry",
    "KindRegistry",
    "ManifestError",
    "ModelSource",
    "Phase",
    "Progress",
    "Ref",
    "Resource",
    "Resources",
    "SecretKeyRef",
    "load_manifests",
    "parse_resource",
]
