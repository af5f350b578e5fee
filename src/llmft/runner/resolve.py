"""Turn a manifest into the resolved spec a workload runs: absolute paths, references replaced.

This is the local twin of what the operator hands a pod: `spec.output.path` becomes an absolute
directory under the state directory's artefact root, `datasetGenerationRef` becomes the dataset's
output directory, and an arm's `fineTuneJobRef` becomes the job's adapter directory and base
model. Relative paths in a manifest are taken from the manifest's own directory, so an example
works from wherever `llmft run` is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.api.common import ClusterSource
from llmft.api.kinds import KINDS
from llmft.api.references import Reference
from llmft.api.resolve import ResolveError, Upstream, manifest_of, resolve_resource
from llmft.api.resource import ManifestError, Resource, parse_resource
from llmft.runner.graph import describe
from llmft.runner.state import inside

ResolvedManifest = dict[str, Any]

__all__ = ["LocalBinding", "ResolveError", "ResolvedManifest", "resolve_manifest"]


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


@dataclass
class LocalBinding:
    """Where things are for a local process: the state directory and the manifest's directory."""

    res: Resource[Any]
    artifacts_root: Path
    resolved: Mapping[str, ResolvedManifest]

    @property
    def base(self) -> Path:
        return manifest_dir(self.res)

    def output_dir(self, res: Resource[Any]) -> str:
        return str(artifact_dir(res, self.artifacts_root))

    def upstream(self, ref: Reference) -> Upstream:
        if ref.key not in self.resolved:
            raise ResolveError(
                f"{describe(self.res)}: {ref.field}: {ref.kind} {ref.name!r} is not known"
            )
        spec = self.resolved[ref.key]["spec"]
        return Upstream(output_dir=spec["output"]["path"], spec=spec)

    def input_path(self, value: str, field: str) -> str:
        path = local_path(value, self.base)
        if not path.exists():
            hint = "" if Path(value).is_absolute() else f" (relative paths start at {self.base})"
            raise ResolveError(f"{describe(self.res)}: {field}: {path} does not exist{hint}")
        return str(path)

    def model_name(self, value: str, field: str) -> str:
        return str(local_path(value, self.base)) if _is_relative_model_path(value) else value

    def cluster_source(self, source: ClusterSource, value: str, field: str) -> None:
        raise ResolveError(
            f"{describe(self.res)}: {field}: only a cluster has this source (a "
            f"{source.object_kind}); for `llmft run` point spec.source.path at a local directory "
            "or file"
        )


def resolve_manifest(
    res: Resource[Any], artifacts_root: Path, resolved: Mapping[str, ResolvedManifest]
) -> ResolvedManifest:
    """The resolved spec for `res`; `resolved` holds the resolved specs of what it references."""
    done = resolve_resource(res, LocalBinding(res, artifacts_root, resolved))
    manifest = manifest_of(done, res.metadata.model_dump(mode="json", exclude_none=True))
    try:  # the workload parses the same dict; refuse here rather than in a subprocess
        parse_resource(manifest)
    except ManifestError as err:
        raise ResolveError(f"{describe(res)}: the resolved spec is invalid: {err}") from None
    return manifest
