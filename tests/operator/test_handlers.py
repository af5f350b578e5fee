"""kopf's last-handled state, kept in memory: no patch, and a spec change is still seen."""

from __future__ import annotations

import json
from typing import Any

import kopf

from llmft_operator.handlers import ANNOTATION_PREFIX, MemoryDiffBaseStorage

KEY = "last-handled-configuration"


def body(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "llmft.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {
                "name": "a",
                "namespace": "ns",
                "uid": "u1",
                **({"annotations": annotations} if annotations else {}),
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
    )


def test_the_handled_state_is_remembered_without_patching_the_object() -> None:
    storage = MemoryDiffBaseStorage(ANNOTATION_PREFIX, KEY)
    first = body({"x": 1})
    assert storage.fetch(body=first) is None  # never handled: kopf calls it a creation

    patch = kopf.Patch()
    storage.store(body=first, patch=patch, essence=storage.build(body=first))

    assert not patch  # nothing written to the object
    assert storage.fetch(body=first) == {"spec": {"x": 1}}
    changed = body({"x": 2})
    assert storage.fetch(body=changed) != storage.build(body=changed)  # a spec change is seen
    storage.forget("u1")
    assert storage.fetch(body=first) is None and len(storage) == 0


def test_an_older_operators_annotation_is_read_until_the_object_is_handled_again() -> None:
    storage = MemoryDiffBaseStorage(ANNOTATION_PREFIX, KEY)
    old = json.dumps({"spec": {"x": 1}})
    annotated = body({"x": 1}, {f"{ANNOTATION_PREFIX}/{KEY}": old})

    assert storage.fetch(body=annotated) == {"spec": {"x": 1}}
    assert storage.build(body=annotated) == {"spec": {"x": 1}}  # its own annotation is no change
