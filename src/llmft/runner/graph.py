"""Which llmft resources need which others, and the order the local runner runs them in."""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmft.api.kinds import KINDS
from llmft.api.references import Reference, resource_key
from llmft.api.references import references as spec_references
from llmft.api.resource import Resource

__all__ = ["DependencyError", "Reference", "references", "resource_key"]


class DependencyError(ValueError):
    """A reference to an object that does not exist, or references that form a cycle."""


def key_of(res: Resource[Any]) -> str:
    return resource_key(res.kind, res.metadata.name)


def describe(res: Resource[Any]) -> str:
    """`Kind/name (file)` for error messages."""
    return key_of(res) + (f" ({res.source_file})" if res.source_file else "")


def parse_selector(text: str) -> str:
    """Turn `ftj/tune`, `FineTuneJob/tune` or `finetunejobs/tune` into `FineTuneJob/tune`."""
    kind, sep, name = text.partition("/")
    entry = KINDS.lookup(kind)
    if not sep or not name or entry is None:
        known = ", ".join(f"{e.kind} ({e.short_name})" for e in KINDS)
        raise DependencyError(f"--only {text!r}: expected KIND/NAME with KIND one of {known}")
    return resource_key(entry.kind, name)


def references(res: Resource[Any]) -> list[Reference]:
    """The objects a resource waits for, in the order its spec names them."""
    return spec_references(res.spec)


def dependency_graph(
    resources: Sequence[Resource[Any]], available: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Each resource's key -> the keys it depends on (only those among `resources`).

    A reference to something not in `resources` is allowed only when its key is in `available`
    (a resource that already succeeded in the state directory); otherwise it is an error that
    names the file, the object and the field.
    """
    known = {key_of(r) for r in resources}
    outside = set(available)
    graph: dict[str, list[str]] = {}
    for res in resources:
        deps: list[str] = []
        for ref in references(res):
            if ref.key in known:
                if ref.key not in deps:
                    deps.append(ref.key)
            elif ref.key not in outside:
                raise DependencyError(
                    f"{describe(res)}: {ref.field}: {ref.kind} {ref.name!r} is not defined in the "
                    "manifests given to -f, and has not succeeded in the state directory"
                )
        graph[key_of(res)] = deps
    return graph


def topological_order(nodes: Sequence[str], edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes ordered so that each comes after everything it depends on.

    Ties keep the input order, so the run order follows the manifests. A cycle raises
    DependencyError naming the nodes on it.
    """
    deps = {n: list(edges.get(n, ())) for n in nodes}
    for n, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise DependencyError(f"{n} depends on {d}, which is not defined")
    sorter = graphlib.TopologicalSorter(deps)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        # graphlib lists a cycle from dependency to dependant; say it as "a depends on b".
        raise DependencyError("dependency cycle: " + " -> ".join(reversed(err.args[1]))) from None
    index = {n: i for i, n in enumerate(nodes)}
    ready: list[tuple[int, str]] = []
    order: list[str] = []
    while sorter.is_active():
        for n in sorter.get_ready():
            heapq.heappush(ready, (index[n], n))
        # One node at a time, the earliest in the input, so ties resolve in manifest order.
        _, node = heapq.heappop(ready)
        order.append(node)
        sorter.done(node)
    return order


def ancestors(key: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Everything `key` depends on, directly or through others."""
    seen: set[str] = set()
    stack = list(edges.get(key, ()))
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            stack.extend(edges.get(k, ()))
    return seen


def dependants(key: str, edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Everything that depends on `key`, directly or through others."""
    return {n for n in edges if key in ancestors(n, edges)}
