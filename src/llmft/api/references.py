"""The fields of a spec that point outside it, found from the markers on the spec models.

A spec field that names another resource carries `Ref` metadata, a path the workload reads
`InputPath`, a model `ModelName`, a cluster-only input `ClusterSource` (see llmft.api.common).
This module walks a parsed spec for them, with each field's path as a user wrote it
(`spec.arms[1].fineTuneJobRef`), for error messages and conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from llmft.api.common import FieldRole, Ref

MarkerT = TypeVar("MarkerT")


@dataclass(frozen=True)
class Reference:
    """One resource naming another: the target and the field that names it."""

    kind: str
    name: str
    field: str

    @property
    def key(self) -> str:
        return resource_key(self.kind, self.name)


def resource_key(kind: str, name: str) -> str:
    """`Kind/name`, the key of a resource in the local runner (state files, --only)."""
    return f"{kind}/{name}"


@dataclass(frozen=True)
class Marked:
    """A set field that carries a marker: its object, python name, marker and wire path."""

    obj: BaseModel
    name: str
    marker: Any
    field: str

    @property
    def value(self) -> Any:
        return getattr(self.obj, self.name)


def walk_marked(model: BaseModel, path: str = "spec") -> Iterator[Marked]:
    """Every set field of `model` (and the models it holds) that carries marker metadata."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        where = f"{path}.{info.alias or name}"
        if value is not None:
            for meta in info.metadata:
                if isinstance(meta, FieldRole):
                    yield Marked(model, name, meta, where)
        yield from _walk_value(value, where)


def _walk_value(value: Any, where: str) -> Iterator[Marked]:
    if isinstance(value, BaseModel):
        yield from walk_marked(value, where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk_value(item, f"{where}[{i}]")


def marked(model: BaseModel, marker_type: type[MarkerT]) -> list[tuple[Marked, MarkerT]]:
    """The set fields of `model` marked with a `marker_type`, in field order."""
    return [(m, m.marker) for m in walk_marked(model) if isinstance(m.marker, marker_type)]


def references(spec: BaseModel) -> list[Reference]:
    """What a spec names, in the order it names it (the same target may appear twice)."""
    return [Reference(ref.kind, m.value, m.field) for m, ref in marked(spec, Ref)]
