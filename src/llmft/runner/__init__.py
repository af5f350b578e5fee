"""The local runner: the manifests a user would `kubectl apply`, run on this machine in order.

`llmft run` loads and validates the manifests, resolves references into the same resolved
specs the operator hands its pods, and runs the same workload entrypoints as subprocesses,
keeping each resource's status in a state directory so that an interrupted run resumes.
"""

from __future__ import annotations

from pathlib import Path

from llmft.api.kinds import KINDS
from llmft.api.resource import load_manifests
from llmft.runner.display import RunDisplay
from llmft.runner.execute import RunResult, check_workloads, execute_plan
from llmft.runner.experiment import ExperimentRun, Interrupted
from llmft.runner.graph import DependencyError, key_of, parse_selector, references
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
    loaded = load_manifests(target)
    experiments = [r for r in loaded if KINDS[r.kind].workload is None]
    resources = [r for r in loaded if KINDS[r.kind].workload is not None]
    selector = parse_selector(only) if only else None
    if selector is not None and selector.startswith("Experiment/"):
        # The Experiment and what it reads (its dataset, if the manifests define it).
        experiments = [r for r in experiments if key_of(r) == selector]
        wanted = {ref.key for e in experiments for ref in references(e)}
        defined = [key_of(r) for r in resources if key_of(r) in wanted]
        selector = defined[0] if defined else None
        if selector is None:
            resources = []
    elif selector is not None:
        experiments = []
    with state.lock():
        result = RunResult()
        if resources:
            plan = make_plan(resources, state, only=selector, force=force)
            check_workloads(plan)
            display.plan(plan)
            if any(step.decision.run for step in plan.steps):
                result = execute_plan(plan, state, display, verbose=verbose)
            else:
                display.note("Everything is up to date; use --force to rerun.")
                result = RunResult({s.key: "Succeeded" for s in plan.steps})
        for experiment in experiments:
            if not result.ok:
                break
            try:
                phase = ExperimentRun(experiment, state, display, verbose).run()
            except Interrupted:
                result.interrupted = True
                break
            result.phases[key_of(experiment)] = phase
        return result
