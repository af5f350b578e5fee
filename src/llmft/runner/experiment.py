"""`llmft run` of an Experiment: the operator's steps, taken on this machine.

The same `llmft.experiments.progress.step` the operator takes decides which trial runs next,
which running trial the median rule stops, and when the Evaluation runs; each child is then
planned and run like any other resource (so a finished trial is not run again, and an
interrupted one resumes from its checkpoint). One machine runs one trial at a time:
`parallelTrials` applies on a cluster. Unless the spec names an MLflow server, trials and the
evaluation are tracked in a local MLflow store (STATE_DIR/mlflow.db; `mlflow ui
--backend-store-uri sqlite:///STATE_DIR/mlflow.db` shows them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from llmft.api.common import Condition, MlflowTracking, Phase
from llmft.api.experiment import ExperimentSpec
from llmft.api.resource import Resource, parse_resource
from llmft.api.status import now_rfc3339, set_phase_conditions
from llmft.experiments.children import (
    GROUP,
    LABEL_EXPERIMENT,
    evaluation_manifest,
    evaluation_name,
    fine_tune_manifest,
    trial_from_manifest,
)
from llmft.experiments.progress import (
    EvaluationView,
    Step,
    TrialView,
    evaluation_view_of,
    failed_condition,
    step,
    trial_view_of,
)
from llmft.experiments.space import Trial
from llmft.runner.display import RunDisplay
from llmft.runner.execute import StopCheck, check_workloads, execute_plan
from llmft.runner.graph import resource_key
from llmft.runner.plan import make_plan
from llmft.runner.state import StateDir

# On a child: which Experiment spec it was made from (a changed spec makes new children).
ANNOTATION_SPEC = f"{GROUP}/experiment-spec"
MLFLOW_DB = "mlflow.db"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a child ran; the next `llmft run` resumes it."""


def experiment_hash(res: Resource[Any]) -> str:
    canonical = json.dumps(res.spec.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def local_spec(spec: ExperimentSpec, state: StateDir) -> ExperimentSpec:
    """The spec as this machine runs it: one trial at a time, MLflow in the state dir by default."""
    local = spec.model_copy(deep=True)
    local.budget.parallel_trials = 1
    if local.tracking.mlflow is None:
        uri = f"sqlite:///{state.root / MLFLOW_DB}"
        local.tracking.mlflow = MlflowTracking(tracking_uri=uri)
    return local


def trial_view(trial: Trial, name: str, status: dict[str, Any]) -> TrialView:
    """A trial as the step sees it; one interrupted (or left Running by a killed runner) is
    pending again, to be resumed by this run."""
    view = trial_view_of(trial, name, status)
    if view.phase == Phase.RUNNING.value or view.reason == "Interrupted":
        return replace(view, phase=Phase.PENDING.value)
    return view


class ExperimentRun:
    """One Experiment on this machine."""

    def __init__(
        self, res: Resource[Any], state: StateDir, display: RunDisplay, verbose: bool = False
    ) -> None:
        self.res = res
        self.state = state
        self.display = display
        self.verbose = verbose
        self.name = res.metadata.name
        self.namespace = res.metadata.namespace
        self.key = resource_key("Experiment", self.name)
        self.spec = local_spec(res.spec, state)
        self.hash = experiment_hash(res)

    # --- what the state directory holds

    def _children(self, kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(resolved manifest, status) of this Experiment's children made from this spec."""
        out = []
        for key in self.state.keys(kind):
            manifest = self.state.read_spec(key) or {}
            meta = manifest.get("metadata") or {}
            if (meta.get("labels") or {}).get(LABEL_EXPERIMENT) != self.name:
                continue
            if (meta.get("annotations") or {}).get(ANNOTATION_SPEC) != self.hash:
                continue
            out.append((manifest, self.state.read_status(key) or {}))
        return out

    def views(self) -> list[TrialView]:
        views = []
        for manifest, status in self._children("FineTuneJob"):
            trial = trial_from_manifest(manifest)
            if trial is not None:
                views.append(trial_view(trial, manifest["metadata"]["name"], status))
        return views

    def evaluation(self) -> EvaluationView | None:
        for manifest, status in self._children("Evaluation"):
            if manifest["metadata"]["name"] == evaluation_name(self.name):
                if failed_condition(status).get("reason") == "Interrupted":
                    return None  # run it again
                return evaluation_view_of(manifest["metadata"]["name"], status)
        return None

    # --- running

    def run(self) -> str:
        """Take steps until the Experiment is done; returns its phase."""
        self.display.note(f"[bold]{self.key}[/bold]: {self.spec.search.algorithm} search")
        while True:
            views = self.views()
            out = step(self.spec, self.namespace, self.name, views, self.evaluation())
            self._write_status(out)
            pending = [v for v in views if v.phase == Phase.PENDING.value]
            if pending:
                self._run_trial(pending[0].trial, views)
            elif out.create:
                self._run_trial(out.create[0], views)
            elif out.evaluate is not None:
                manifest = evaluation_manifest(self.spec, self.namespace, self.name, out.evaluate)
                self._run_child(manifest, None)
            else:
                self.display.note(f"{self.key}: {out.phase}: {out.message}")
                return out.phase

    def _run_trial(self, trial: Trial, views: list[TrialView]) -> None:
        manifest = fine_tune_manifest(self.spec, self.namespace, self.name, trial)
        name = manifest["metadata"]["name"]
        others = [v for v in views if v.name != name]

        def median_rule(status: dict[str, Any]) -> tuple[str, str] | None:
            live = trial_view(trial, name, status)
            decided = step(self.spec, self.namespace, self.name, [*others, live], None)
            stop = decided.stop.get(name)
            return (stop.reason, stop.message) if stop is not None else None

        self._run_child(manifest, median_rule)

    def _run_child(self, manifest: dict[str, Any], stop_check: StopCheck | None) -> None:
        manifest["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC] = self.hash
        child = parse_resource(manifest, self.res.source_file)
        plan = make_plan([child], self.state)
        check_workloads(plan)
        result = execute_plan(plan, self.state, self.display, self.verbose, stop_check)
        if result.interrupted:
            raise Interrupted

    def _write_status(self, out: Step) -> None:
        current = self.state.read_status(self.key) or {}
        if current.get("specHash") != self.hash:
            current = {}
        now = now_rfc3339()
        conds = [Condition.model_validate(c) for c in current.get("conditions") or []]
        conds = set_phase_conditions(conds, out.phase, out.reason, out.message, None, now)
        status = {
            **out.status,
            "phase": out.phase,
            "message": out.message,
            "specHash": self.hash,
            "startTime": current.get("startTime") or now,
            "conditions": [c.to_wire() for c in conds],
        }
        if out.phase in (Phase.SUCCEEDED, Phase.FAILED):
            status["completionTime"] = current.get("completionTime") or now
        self.state.write_spec(
            self.key,
            {
                "apiVersion": self.res.api_version,
                "kind": "Experiment",
                "metadata": self.res.metadata.model_dump(mode="json", exclude_none=True),
                "spec": self.res.spec.to_wire(),
            },
        )
        self.state.write_status(self.key, status)
