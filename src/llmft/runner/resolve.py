"""Turn a manifest into the resolved spec a workload runs: absolute paths, references replaced.

This is the local twin of what the operator hands a pod: `spec.output.path` becomes an absolute
directory under the state directory's artefact root, `datasetGenerationRef` becomes the dataset's
output directory, and an arm's `fineTuneJobRef` becomes the job's adapter directory and base
model. Relative paths in a manifest are taken from the manifest's own directory, so an example
works from wherever `llmft run` is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmft.api.common import ModelSource
from llmft.api.kinds import KINDS
from llmft.api.layout import ADAPTER_DIR
from llmft.api.resource import ManifestError, Resource, parse_resource
from llmft.runner.graph import describe, resource_key
from llmft.runner.state import inside

ResolvedManifest = dict[str, Any]


class ResolveError(ValueError):
    """A manifest that cannot run locally; the message names the object and the field."""


def manifest_dir(res: Resource[Any]) -> Path:
    """The directory relative paths in this manifest are taken from."""
    if res.source_file is not None:
        return Path(res.source_file).absolute().parent
    return Path.cwd()


def artifact_dir(res: Resource[Any], artifacts_root: Path) -> Path:
    """Where the resource writes: `spec.output.path` (or the kind's default) under the root.

    Raises ResolveError when that place is not inside the root (a symlink pointing out of it):
    the runner clears an output directory before a fresh run, so it must never be elsewhere.
    """
    rel = res.spec.output.path or KINDS[res.kind].default_output_path(res.metadata.name)
    path = artifacts_root.absolute() / rel.lstrip("/")
    if not inside(artifacts_root, path):
        raise ResolveError(
            f"{describe(res)}: spec.output.path: {path} resolves to {path.resolve()}, outside "
            f"the artefact root {artifacts_root.absolute()}; llmft writes only inside it"
        )
    return path


def local_path(value: str, base: Path) -> Path:
    """An absolute path: `value` itself if absolute, else taken from `base` (~ expanded)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _is_relative_model_path(name: str) -> bool:
    # Only explicit ./ and ../ paths: a bare owner/name is a Hub id, pkg: a packaged model.
    return name.startswith(("./", "../", "~"))


def _resolve_model(model: ModelSource | None, base: Path) -> None:
    if model is not None and _is_relative_model_path(model.name):
        model.name = str(local_path(model.name, base))


def _existing(value: str, base: Path, res: Resource[Any], field: str) -> str:
    path = local_path(value, base)
    if not path.exists():
        hint = "" if Path(value).is_absolute() else f" (relative paths start at {base})"
        raise ResolveError(f"{describe(res)}: {field}: {path} does not exist{hint}")
    return str(path)


def _dependency(
    resolved: Mapping[str, ResolvedManifest], res: Resource[Any], kind: str, name: str, field: str
) -> ResolvedManifest:
    key = resource_key(kind, name)
    if key not in resolved:
        raise ResolveError(f"{describe(res)}: {field}: {kind} {name!r} is not known")
    return resolved[key]


def resolve_manifest(
    res: Resource[Any], artifacts_root: Path, resolved: Mapping[str, ResolvedManifest]
) -> ResolvedManifest:
    """The resolved spec for `res`; `resolved` holds the resolved specs of what it references."""
    spec = res.spec.model_copy(deep=True)
    base = manifest_dir(res)
    spec.output.path = str(artifact_dir(res, artifacts_root))

    if res.kind == "DatasetGeneration":
        source = spec.source
        for field in ("config_map", "pvc"):
            if getattr(source, field) is not None:
                wire = "configMap" if field == "config_map" else "pvc"
                raise ResolveError(
                    f"{describe(res)}: spec.source.{wire}: only a cluster has this source; "
                    "for `llmft run` point spec.source.path at a local directory or file"
                )
        if source.path is not None:
            source.path = _existing(source.path, base, res, "spec.source.path")
        _resolve_model(spec.generator.local_model, base)

    if res.kind in ("FineTuneJob", "Evaluation"):
        ref = spec.dataset.dataset_generation_ref
        if ref is not None:
            field = "spec.dataset.datasetGenerationRef"
            dataset = _dependency(resolved, res, "DatasetGeneration", ref, field)
            spec.dataset.path = dataset["spec"]["output"]["path"]
            spec.dataset.dataset_generation_ref = None
        elif spec.dataset.path is not None:
            spec.dataset.path = _existing(spec.dataset.path, base, res, "spec.dataset.path")

    if res.kind == "FineTuneJob":
        _resolve_model(spec.base_model, base)

    if res.kind == "Evaluation":
        for i, arm in enumerate(spec.arms):
            _resolve_model(arm.base_model, base)
            if arm.fine_tune_job_ref is not None:
                field = f"spec.arms[{i}].fineTuneJobRef"
                job = _dependency(resolved, res, "FineTuneJob", arm.fine_tune_job_ref, field)
                arm.adapter_path = str(Path(job["spec"]["output"]["path"]) / ADAPTER_DIR)
                if arm.base_model is None:
                    arm.base_model = ModelSource.model_validate(job["spec"]["baseModel"])
                arm.fine_tune_job_ref = None
            elif arm.adapter_path is not None:
                arm.adapter_path = _existing(
                    arm.adapter_path, base, res, f"spec.arms[{i}].adapterPath"
                )
        if _is_relative_model_path(spec.retrieval.embedding_model):
            spec.retrieval.embedding_model = str(local_path(spec.retrieval.embedding_model, base))
        judge_embedding = spec.judge.embedding_model if spec.judge else None
        if spec.judge is not None and judge_embedding and _is_relative_model_path(judge_embedding):
            spec.judge.embedding_model = str(local_path(judge_embedding, base))

    manifest: ResolvedManifest = {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "metadata": res.metadata.model_dump(mode="json", exclude_none=True),
        "spec": spec.to_wire(),
    }
    try:  # the workload parses the same dict; refuse here rather than in a subprocess
        parse_resource(manifest)
    except ManifestError as err:
        raise ResolveError(f"{describe(res)}: the resolved spec is invalid: {err}") from None
    return manifest
