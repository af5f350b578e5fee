"""The references a resource's spec holds to other llmft resources, found from the `Ref` fields.

A spec field that names another resource carries `Ref` metadata (see llmft.api.common); this
module walks a parsed spec and lists what it names, with the field's path as a user wrote it
(`spec.arms[1].fineTuneJobRef`), for error messages and conditions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from llmft.api.common import Ref


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


def walk_refs(model: BaseModel, path: str = "spec") -> Iterator[tuple[BaseModel, str, Ref, str]]:
    """(object, python field name, Ref, wire path) for every reference field set in `model`."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        where = f"{path}.{info.alias or name}"
        for meta in info.metadata:
            if isinstance(meta, Ref) and value is not None:
                yield model, name, meta, where
        yield from _walk_value(value, where)


def _walk_value(value: Any, where: str) -> Iterator[tuple[BaseModel, str, Ref, str]]:
    if isinstance(value, BaseModel):
        yield from walk_refs(value, where)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk_value(item, f"{where}[{i}]")


def references(spec: BaseModel) -> list[Reference]:
    """What a spec names, in the order it names it (the same target may appear twice)."""
    return [Reference(ref.kind, getattr(obj, name), at) for obj, name, ref, at in walk_refs(spec)]
