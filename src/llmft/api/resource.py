"""The manifest envelope (apiVersion, kind, metadata, spec) and loading manifests from files."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmft.api.common import API_VERSION, DNS_LABEL, PATTERN_MEANINGS
from llmft.api.kinds import KINDS

SpecT = TypeVar("SpecT", bound=BaseModel)

MAX_NAME = 63  # a label value, and so any name that becomes one (a Job's, a pod's label)


def bounded_name(base: str, suffix: str, limit: int = MAX_NAME) -> str:
    """`<base>-<suffix>`, or, past `limit` characters, base cut short plus a hash of all of it.

    The hash keeps two long names that share a prefix apart, and the result is a pure function
    of its inputs, so whoever computes it again (a restarted operator, `llmft run`) finds the
    same object."""
    name = f"{base}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


class Metadata(BaseModel):
    """The part of ObjectMeta llmft reads; everything else is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(BaseModel, Generic[SpecT]):
    """A parsed llmft object: the typed spec plus where it came from."""

    model_config = ConfigDict(extra="allow")

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    spec: SpecT
    source_file: Path | None = Field(default=None, exclude=True)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.metadata.name)


@cache
def resource_model(kind: str) -> type[Resource[Any]]:
    """The typed resource of a registered kind: its envelope around the kind's spec model."""
    model: type[Resource[Any]] = Resource.__class_getitem__(KINDS[kind].spec_model)  # type: ignore[assignment]
    return model


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the object and the field."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif "[" in str(p) or ("-" in str(p) and parts):
            continue  # pydantic's union/validator tags carry no field name
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def format_validation_error(err: ValidationError, where: str) -> str:
    lines = [f"{where} is invalid:"]
    for e in err.errors():
        path = _field_path(tuple(e["loc"])) or "(object)"
        msg = e["msg"].removeprefix("Value error, ")
        meaning = PATTERN_MEANINGS.get(str((e.get("ctx") or {}).get("pattern")))
        if e["type"] == "string_pattern_mismatch" and meaning:
            msg = f"{meaning}, got {e['input']!r}"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def parse_resource(obj: dict[str, Any], source: Path | None = None) -> Resource[Any]:
    """Validate one manifest dict into its typed resource, or raise ManifestError."""
    kind = obj.get("kind")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = f"{kind or '?'}/{name}" + (f" ({source})" if source else "")
    if obj.get("apiVersion") != API_VERSION:
        raise ManifestError(
            f"{where}: apiVersion must be {API_VERSION}, got {obj.get('apiVersion')!r}"
        )
    if not isinstance(kind, str) or kind not in KINDS:
        raise ManifestError(f"{where}: kind must be one of {', '.join(KINDS.kinds)}, got {kind!r}")
    try:
        res = resource_model(kind).model_validate(obj)
    except ValidationError as err:
        raise ManifestError(format_validation_error(err, where)) from None
    res.source_file = source
    return res


def load_manifests(target: str | Path) -> list[Resource[Any]]:
    """All llmft objects in a YAML file or a directory of them (non-llmft kinds are skipped)."""
    root = Path(target)
    if not root.exists():
        raise ManifestError(f"{root}: no such file or directory")
    files = sorted(root.glob("*.y*ml")) if root.is_dir() else [root]
    resources: list[Resource[Any]] = []
    seen: set[tuple[str, str]] = set()
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError as err:
            raise ManifestError(f"{f}: not valid YAML: {err}") from None
        for doc in docs:
            if not doc or not str(doc.get("apiVersion", "")).startswith("llmft.io/"):
                continue
            res = parse_resource(doc, f)
            if res.key in seen:
                raise ManifestError(f"{f}: {res.kind}/{res.metadata.name} is defined twice")
            seen.add(res.key)
            resources.append(res)
    if not resources:
        raise ManifestError(f"{root}: no llmft.io objects found")
    return resources
