"""Which llmft resources need which others, and the order the local runner runs them in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmft.api.resource import Resource

# What a user may type for a kind in `--only KIND/NAME`: the kind, its short name or plural.
KIND_ALIASES = {
    "datasetgeneration": "DatasetGeneration",
    "datasetgenerations": "DatasetGeneration",
    "dsgen": "DatasetGeneration",
    "finetunejob": "FineTuneJob",
    "finetunejobs": "FineTuneJob",
    "ftj": "FineTuneJob",
    "evaluation": "Evaluation",
    "evaluations": "Evaluation",
    "eval": "Evaluation",
}


class DependencyError(ValueError):
    """A reference to an object that does not exist, or references that form a cycle."""


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
    """The `Kind/name` string the runner uses for a resource everywhere (state files, --only)."""
    return f"{kind}/{name}"


def key_of(res: Resource[Any]) -> str:
    return resource_key(res.kind, res.metadata.name)


def describe(res: Resource[Any]) -> str:
    """`Kind/name (file)` for error messages."""
    return key_of(res) + (f" ({res.source_file})" if res.source_file else "")


def parse_selector(text: str) -> str:
    """Turn `ftj/tune`, `FineTuneJob/tune` or `finetunejobs/tune` into `FineTuneJob/tune`."""
    kind, sep, name = text.partition("/")
    canonical = KIND_ALIASES.get(kind.lower())
    if not sep or not name or canonical is None:
        raise DependencyError(
            f"--only {text!r}: expected KIND/NAME with KIND one of DatasetGeneration (dsgen), "
            "FineTuneJob (ftj), Evaluation (eval)"
        )
    return resource_key(canonical, name)


def references(res: Resource[Any]) -> list[Reference]:
    """The objects a resource waits for, in the order its spec names them."""
    spec = res.spec
    refs: list[Reference] = []
    if res.kind in ("FineTuneJob", "Evaluation") and spec.dataset.dataset_generation_ref:
        refs.append(
            Reference(
                "DatasetGeneration",
                spec.dataset.dataset_generation_ref,
                "spec.dataset.datasetGenerationRef",
            )
        )
    if res.kind == "Evaluation":
        for i, arm in enumerate(spec.arms):
            if arm.fine_tune_job_ref:
                refs.append(
                    Reference(
                        "FineTuneJob", arm.fine_tune_job_ref, f"spec.arms[{i}].fineTuneJobRef"
                    )
                )
    return refs


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
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in done and all(d in done for d in deps[n])]
        if not ready:
            raise DependencyError("dependency cycle: " + " -> ".join(_find_cycle(deps, done)))
        # Take only the first ready node each round so ties resolve in manifest order.
        order.append(ready[0])
        done.add(ready[0])
    return order


def _find_cycle(deps: Mapping[str, Sequence[str]], done: set[str]) -> list[str]:
    """One cycle among the nodes not yet ordered, as a closed path a -> b -> a."""
    start = next(n for n in deps if n not in done)
    path: list[str] = []
    node = start
    while node not in path:
        path.append(node)
        node = next(d for d in deps[node] if d not in done)
    return [*path[path.index(node) :], node]


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
