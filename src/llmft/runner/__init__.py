"""The local runner: the manifests a user would `kubectl apply`, run on this machine in order.

`llmft run` loads and validates the manifests, resolves references into the same resolved
specs the operator hands its pods, and runs the same workload entrypoints as subprocesses,
keeping each resource's status in a state directory so that an interrupted run resumes.
"""

from __future__ import annotations

from pathlib import Path

from llmft.api.resource import load_manifests
from llmft.runner.display import RunDisplay
from llmft.runner.execute import RunResult, check_workloads, execute_plan
from llmft.runner.graph import DependencyError, parse_selector
from llmft.runner.plan import Plan, make_plan
from llmft.runner.resolve import ResolveError
from llmft.runner.state import StateDir

__all__ = [
    "DependencyError",
    "Plan",
    "ResolveError",
    "RunDisplay",
    "RunResult",
    "StateDir",
    "make_plan",
    "run_manifests",
]


def run_manifests(
    target: Path,
    state: StateDir,
    display: RunDisplay,
    only: str | None = None,
    force: bool = False,
    verbose: bool = False,
) -> RunResult:
    """Load, plan and run; manifest, reference and lock errors raise before anything runs."""
    resources = load_manifests(target)
    selector = parse_selector(only) if only else None
    with state.lock():
        plan = make_plan(resources, state, only=selector, force=force)
        check_workloads(plan)
        display.plan(plan)
        if not any(step.decision.run for step in plan.steps):
            display.note("Everything is up to date; use --force to rerun.")
            return RunResult({s.key: "Succeeded" for s in plan.steps})
        return execute_plan(plan, state, display, verbose=verbose)
