"""The one resolver: a parsed manifest made into the resolved spec its workload runs.

The operator (for a pod) and `llmft run` (for a local process) resolve a manifest the same way;
what differs is only where things are, which each of them says through a `Binding`:

- `spec.output.path` becomes the absolute directory the workload writes to;
- a reference (`Ref`) becomes the referenced resource's output directory (plus its subpath),
  in the field the reference fills, and fields it inherits are copied from that resource's
  resolved spec when left unset; the reference itself is cleared;
- a path the workload reads (`InputPath`) and a model path (`ModelName`) become what the
  workload can open;
- a cluster-only input (`ClusterSource`) is handed to the binding (mounted, or refused).

Which fields are which is declared once, on the spec models, so a new kind or field needs no
change here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from pydantic import BaseModel, TypeAdapter

from llmft.api.common import HF_SCHEME, ClusterDefault, ClusterSource, InputPath, ModelName, Ref
from llmft.api.references import Reference, marked, walk_marked
from llmft.api.resource import Resource


class ResolveError(ValueError):
    """A reference or path that cannot be resolved; the message names the object and field."""


@dataclass(frozen=True)
class Upstream:
    """A referenced resource as its dependants see it: where its output is, what it ran."""

    output_dir: str
    spec: Mapping[str, Any]


class Binding(Protocol):
    """Where things are for one place of execution (a pod, or a local process)."""

    def output_dir(self, res: Resource[Any]) -> str:
        """The absolute directory `res`'s workload writes to."""
        ...

    def upstream(self, ref: Reference) -> Upstream:
        """The referenced resource (it has succeeded); raises ResolveError if unknown."""
        ...

    def input_path(self, value: str, field: str) -> str:
        """A path the workload reads, as the workload sees it."""
        ...

    def model_name(self, value: str, field: str) -> str:
        """A model id or path, as the workload loads it."""
        ...

    def cluster_source(self, source: ClusterSource, value: str, field: str) -> None:
        """A cluster-only input: note it (to mount it) or refuse it."""
        ...


def resolve_resource(res: Resource[Any], binding: Binding) -> Resource[Any]:
    """A copy of `res` with every output, reference, path and model resolved through `binding`."""
    res = res.model_copy(deep=True)
    # Collected before anything changes: a field filled from a reference is final as filled.
    found = list(walk_marked(res.spec))
    if getattr(res.spec, "output", None) is not None:
        res.spec.output.path = binding.output_dir(res)
    for m in found:
        role = m.marker
        if isinstance(role, Ref):
            upstream = binding.upstream(Reference(role.kind, m.value, m.field))
            target = PurePosixPath(upstream.output_dir) / role.subpath
            setattr(m.obj, role.fills, str(target) if role.subpath else upstream.output_dir)
            for mine, theirs in role.inherits:
                if getattr(m.obj, mine) is None and upstream.spec.get(theirs) is not None:
                    field = type(m.obj).model_fields[mine]
                    adapter: TypeAdapter[Any] = TypeAdapter(field.annotation)  # type: ignore[arg-type]
                    value = adapter.validate_python(upstream.spec[theirs])
                    setattr(m.obj, mine, value)
            setattr(m.obj, m.name, None)
        elif isinstance(role, InputPath):
            if not str(m.value).startswith(HF_SCHEME):  # a Hub repository: the workload reads it
                setattr(m.obj, m.name, binding.input_path(m.value, m.field))
        elif isinstance(role, ModelName):
            setattr(m.obj, m.name, binding.model_name(m.value, m.field))
        elif isinstance(role, ClusterSource):
            binding.cluster_source(role, m.value, m.field)
    return res


def apply_cluster_defaults(spec: BaseModel, setting: Callable[[str], str | None]) -> None:
    """Give each `ClusterDefault` field the manifest left unset the cluster's value, if any.

    "Unset" means not written in the manifest (pydantic's fields_set), so a value written there
    wins even when it equals the built-in default.
    """
    for m, role in marked(spec, ClusterDefault):
        if m.name in m.obj.model_fields_set:
            continue
        if any(getattr(m.obj, name) != value for name, value in role.when):
            continue
        value = setting(role.setting)
        if value:
            setattr(m.obj, m.name, value)


def manifest_of(res: Resource[Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved manifest handed to a workload (`--spec`): envelope, metadata, wire spec."""
    return {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "metadata": dict(metadata),
        "spec": res.spec.to_wire(),
    }
