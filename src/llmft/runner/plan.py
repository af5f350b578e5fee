"""What `llmft run` will do: which resources run, which are up to date, and why.

A resource is up to date when its last run succeeded, its resolved spec hashes the same, its
artefacts are still there, and every input it was built from is the very run (`runId`) that
is current now. Anything else runs again: a changed spec, or a changed or rerun input, starts
from clean artefacts (old checkpoints belong to another spec); an interrupted or failed run
of the same spec keeps them, so the workload resumes from its own checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.api.common import Phase
from llmft.api.kinds import KINDS
from llmft.api.resource import Resource
from llmft.runner.graph import (
    DependencyError,
    ancestors,
    dependency_graph,
    key_of,
    references,
    topological_order,
)
from llmft.runner.resolve import ResolvedManifest, resolve_manifest
from llmft.runner.state import StateDir


def spec_hash(manifest: ResolvedManifest) -> str:
    """A short stable hash of what a workload is asked to do (labels and annotations excluded)."""
    canonical = json.dumps(
        {
            "apiVersion": manifest["apiVersion"],
            "kind": manifest["kind"],
            "name": manifest["metadata"]["name"],
            "spec": manifest["spec"],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    """Whether a resource runs, whether its old artefacts are cleared first, and why."""

    run: bool
    fresh: bool
    reason: str


def decide(
    status: Mapping[str, Any] | None,
    current_hash: str,
    inputs: Mapping[str, str | None],
    forced: bool = False,
    outputs_present: bool = True,
) -> Decision:
    """Decide for one resource.

    `inputs` maps each input's key to its current `runId`, or None when the input runs again
    in this plan (its new run id is not known yet).
    """
    if forced:
        return Decision(True, True, "forced (--force): rerunning from scratch")
    if not status or not status.get("specHash"):
        return Decision(True, True, "new")
    if status.get("specHash") != current_hash:
        return Decision(True, True, "spec changed since the last run: rerunning from scratch")
    recorded = status.get("inputs") or {}
    for key, run_id in inputs.items():
        if run_id is None:
            return Decision(True, True, f"its input {key} reruns: rerunning from scratch")
        if recorded.get(key) != run_id:
            return Decision(True, True, f"its input {key} was rerun since: rerunning from scratch")
    phase = status.get("phase")
    if phase == Phase.SUCCEEDED.value:
        if not outputs_present:
            return Decision(True, True, "artefacts are missing: rerunning")
        return Decision(False, False, "up to date")
    progress = status.get("progress") or {}
    where = ""
    if progress.get("step") is not None and progress.get("total"):
        where = f" at {progress['step']}/{progress['total']} {progress.get('unit') or ''}".rstrip()
    reason = _condition_reason(status)
    if reason == "Interrupted" or phase in (Phase.RUNNING.value, Phase.PENDING.value):
        return Decision(True, False, f"interrupted{where}: resuming from its checkpoint")
    return Decision(True, False, f"last run failed{where}: retrying, resuming from its checkpoint")


def _condition_reason(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return str(cond.get("reason"))
    return None


@dataclass
class Step:
    """One resource in the plan, with its resolved spec and the decision about it."""

    key: str
    resource: Resource[Any]
    manifest: ResolvedManifest
    spec_hash: str
    decision: Decision
    inputs: list[str] = field(default_factory=list)

    @property
    def output_dir(self) -> Path:
        return Path(self.manifest["spec"]["output"]["path"])


@dataclass
class Plan:
    """The ordered steps, and the resources left alone because --only did not select them."""

    steps: list[Step]
    not_selected: dict[str, str] = field(default_factory=dict)


def make_plan(
    resources: Sequence[Resource[Any]],
    state: StateDir,
    only: str | None = None,
    force: bool = False,
) -> Plan:
    """Order, resolve and decide every resource; raises DependencyError or ResolveError."""
    for res in resources:
        if KINDS[res.kind].workload is None:
            raise DependencyError(
                f"{key_of(res)}: an {res.kind} is run by llmft.runner.experiment, not planned"
            )
    by_key = {key_of(r): r for r in resources}
    succeeded_before = {
        k
        for k in state.keys(kind=None)
        if (state.read_status(k) or {}).get("phase") == Phase.SUCCEEDED.value
        and state.read_spec(k) is not None
    }
    graph = dependency_graph(resources, available=succeeded_before)
    order = topological_order(list(by_key), graph)

    if only is not None:
        if only not in by_key:
            raise DependencyError(
                f"--only {only}: not among the manifests; they define {', '.join(by_key)}"
            )
        selected = {only} | ancestors(only, graph)
    else:
        selected = set(by_key)

    resolved: dict[str, ResolvedManifest] = {}
    for key in succeeded_before - set(by_key):
        resolved[key] = state.read_spec(key) or {}

    steps: list[Step] = []
    running: set[str] = set()
    for key in order:
        if key not in selected:
            continue
        res = by_key[key]
        manifest = resolve_manifest(res, state.artifacts_root, resolved)
        resolved[key] = manifest
        input_keys = list(dict.fromkeys(ref.key for ref in references(res)))
        inputs = {
            k: None if k in running else (state.read_status(k) or {}).get("runId")
            for k in input_keys
        }
        digest = spec_hash(manifest)
        decision = decide(
            state.read_status(key),
            digest,
            inputs,
            forced=force and (only is None or key == only),
            outputs_present=Path(manifest["spec"]["output"]["path"]).exists(),
        )
        if decision.run:
            running.add(key)
        steps.append(Step(key, res, manifest, digest, decision, input_keys))

    not_selected: dict[str, str] = {}
    for key in order:
        if key in selected:
            continue
        stale = [d for d in ancestors(key, graph) if d in running]
        not_selected[key] = (
            f"not selected by --only; it will rerun on the next full run ({stale[0]} reruns now)"
            if stale
            else "not selected by --only"
        )
    return Plan(steps, not_selected)
