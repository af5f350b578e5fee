"""The children of an Experiment: one FineTuneJob per trial and the Evaluation of the best ones.

Names are a pure function of the Experiment's name and the trial's number, and each trial's cell
and parameters travel on its FineTuneJob as annotations, so whoever finds the children (an
operator after a restart, `llmft run` on a second run) knows every trial without other state.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmft.api.common import API_VERSION, GROUP
from llmft.api.evaluation import primary_key
from llmft.api.experiment import EVAL_LOSS, ExperimentSpec
from llmft.api.resource import MAX_NAME, bounded_name
from llmft.experiments.space import Cell, Trial

LABEL_EXPERIMENT = f"{GROUP}/experiment"
LABEL_TRIAL = f"{GROUP}/trial"
ANNOTATION_CELL = f"{GROUP}/trial-cell"
ANNOTATION_PARAMETERS = f"{GROUP}/trial-parameters"
# Set on a trial's FineTuneJob to stop it (by the Experiment, or by a person); the value says why.
ANNOTATION_STOP = f"{GROUP}/stop"
ANNOTATION_STOP_REASON = f"{GROUP}/stop-reason"  # the Failed condition's reason (EarlyStopped)
# The FineTuneJob's Job adds "-ftj"; keeping trial names within 59 keeps Job names readable.
MAX_TRIAL_NAME = MAX_NAME - 4


def trial_name(experiment: str, index: int) -> str:
    """The trial's FineTuneJob: <experiment>-t<NN>."""
    return bounded_name(experiment, f"t{index:02d}", MAX_TRIAL_NAME)


def evaluation_name(experiment: str) -> str:
    """The Experiment's Evaluation: <experiment>-eval."""
    return bounded_name(experiment, "eval", MAX_TRIAL_NAME)


def mlflow_experiment_name(spec: ExperimentSpec, namespace: str, name: str) -> str | None:
    """The MLflow experiment every trial and the evaluation log to (None: no MLflow)."""
    mlflow = spec.tracking.mlflow
    if mlflow is None:
        return None
    return mlflow.experiment_name or f"{namespace}/{name}"


def _tracking(spec: ExperimentSpec, namespace: str, name: str) -> dict[str, Any]:
    mlflow = spec.tracking.mlflow
    if mlflow is None:
        return {}
    wire = mlflow.to_wire()
    wire["experimentName"] = mlflow_experiment_name(spec, namespace, name)
    return {"mlflow": wire}


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def _meta(name: str, namespace: str, experiment: str, extra: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_EXPERIMENT: experiment[:MAX_NAME], **extra},
    }


def fine_tune_manifest(
    spec: ExperimentSpec, namespace: str, experiment: str, trial: Trial
) -> dict[str, Any]:
    """The FineTuneJob of one trial: the template, the cell, the searched values."""
    template = spec.fine_tune
    model = next(m for m in spec.matrix.models if m.name == trial.cell.model)
    hyperparameters = template.hyperparameters.to_wire()
    for path, value in trial.parameters.items():
        _set_path(hyperparameters, path, value)
    ftj_spec: dict[str, Any] = {
        "baseModel": model.base_model.to_wire(),
        "dataset": spec.dataset.to_wire(),
        "method": trial.cell.method,
        "mode": trial.cell.mode,
        # A retrieving trial retrieves with the Evaluation's settings: one Retrieval shape.
        "rag": {
            "enabled": trial.cell.rag,
            **template.rag.to_wire(),
            "retrieval": spec.evaluation.retrieval.to_wire(),
        },
        "hyperparameters": hyperparameters,
        "resources": template.resources.to_wire(),
        "tracking": _tracking(spec, namespace, experiment),
    }
    if template.output_pvc:
        ftj_spec["output"] = {"pvc": template.output_pvc}
    meta = _meta(
        trial_name(experiment, trial.index), namespace, experiment, {LABEL_TRIAL: str(trial.index)}
    )
    meta["annotations"] = {
        ANNOTATION_CELL: json.dumps(trial.cell.to_wire(), sort_keys=True),
        ANNOTATION_PARAMETERS: json.dumps(trial.parameters, sort_keys=True),
    }
    return {"apiVersion": API_VERSION, "kind": "FineTuneJob", "metadata": meta, "spec": ftj_spec}


def trial_from_manifest(body: dict[str, Any]) -> Trial | None:
    """The trial a FineTuneJob child was made for (None: not a trial, or hand-edited badly)."""
    meta = body.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    try:
        index = int(labels[LABEL_TRIAL])
        cell = Cell.from_wire(json.loads(notes[ANNOTATION_CELL]))
        parameters = json.loads(notes.get(ANNOTATION_PARAMETERS) or "{}")
    except (KeyError, ValueError, TypeError):
        return None
    return Trial(index, cell, dict(parameters))


@dataclass(frozen=True)
class ArmInfo:
    """One arm of the Experiment's Evaluation and what it stands for."""

    name: str
    model: str
    rag: bool
    trial: str | None = None  # the trial's FineTuneJob; None for a base model
    cell: Cell | None = None


def tuned_arm(trial: Trial, rag: bool) -> str:
    return f"t{trial.index:02d}" + ("-rag" if rag else "")


def arms_for(spec: ExperimentSpec, experiment: str, evaluated: Sequence[Trial]) -> list[ArmInfo]:
    """Base models first (the first is the baseline), then each evaluated trial's arms."""
    choice = spec.evaluation.arms
    arms: list[ArmInfo] = []
    models = [m.name for m in spec.matrix.models]
    for model in models:
        if choice.base:
            arms.append(ArmInfo(f"base-{model}", model, False))
        if choice.base_with_rag:
            arms.append(ArmInfo(f"base-{model}-rag", model, True))
    for trial in evaluated:
        name = trial_name(experiment, trial.index)
        for rag, wanted in ((False, choice.tuned), (True, choice.tuned_with_rag)):
            if wanted:
                arms.append(ArmInfo(tuned_arm(trial, rag), trial.cell.model, rag, name, trial.cell))
    return arms


def ranking_metric(spec: ExperimentSpec) -> str:
    """The evaluation metric that ranks the arms: the objective's, when it is one."""
    metric = spec.objective.metric
    return spec.evaluation.primary_metric if metric == EVAL_LOSS else metric


def evaluation_manifest(
    spec: ExperimentSpec, namespace: str, experiment: str, evaluated: Sequence[Trial]
) -> dict[str, Any]:
    """The Evaluation of the evaluated trials (tuned arms) against the base models."""
    ev = spec.evaluation
    models = {m.name: m for m in spec.matrix.models}
    top_k = spec.fine_tune.rag.top_k
    arms: list[dict[str, Any]] = []
    for arm in arms_for(spec, experiment, evaluated):
        wire: dict[str, Any] = {"name": arm.name, "rag": {"enabled": arm.rag, "topK": top_k}}
        if arm.trial is None:
            wire["baseModel"] = models[arm.model].base_model.to_wire()
        else:
            wire["fineTuneJobRef"] = arm.trial
        arms.append(wire)
    eval_spec: dict[str, Any] = {
        "dataset": spec.dataset.to_wire(),
        "arms": arms,
        "metrics": list(ev.metrics),
        "primaryMetric": ranking_metric(spec),
        "generation": ev.generation.to_wire(),
        "retrieval": ev.retrieval.to_wire(),
        "bootstrap": ev.bootstrap.to_wire(),
        "resources": ev.resources.to_wire(),
        "tracking": _tracking(spec, namespace, experiment),
    }
    if ev.judge is not None:
        eval_spec["judge"] = ev.judge.to_wire()
    if spec.fine_tune.output_pvc:
        eval_spec["output"] = {"pvc": spec.fine_tune.output_pvc}
    meta = _meta(evaluation_name(experiment), namespace, experiment, {})
    return {
        "apiVersion": API_VERSION,
        "kind": "Evaluation",
        "metadata": meta,
        "spec": copy.deepcopy(eval_spec),
    }


def arm_score(metrics: dict[str, Any], arm: str, metric: str) -> float | None:
    """An arm's mean of an evaluation metric, from the Evaluation's status.metrics."""
    value = metrics.get(f"{arm}.{primary_key(metric)}")
    return float(value) if isinstance(value, int | float) else None
