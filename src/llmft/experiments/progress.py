"""One step of an Experiment: from what its children report to what to do and what to show.

`step` is called by the operator on every reconcile and by the local runner between trials. It
decides which trials to create (within parallelTrials and maxTrials), which running trials the
median rule stops, when to create the Evaluation (once every trial is done, for the best ones),
and the Experiment's phase and status. It never creates or stops anything itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmft.api.common import Phase
from llmft.api.evaluation import primary_key
from llmft.api.experiment import EVAL_LOSS, ExperimentSpec
from llmft.experiments.children import (
    arm_score,
    arms_for,
    evaluation_name,
    mlflow_experiment_name,
    ranking_metric,
    trial_name,
    tuned_arm,
)
from llmft.experiments.space import Outcome, Trial, planned_trials, propose
from llmft.experiments.stopping import StopDecision, history_of, median_rule

FINISHED = (Phase.SUCCEEDED.value, Phase.FAILED.value)
STOP_REASONS = frozenset({"EarlyStopped", "Diverged"})
MAX_ARMS = 32  # an Evaluation's arm limit


@dataclass(frozen=True)
class TrialView:
    """What a trial's FineTuneJob shows (its status, and whether a stop was asked for)."""

    trial: Trial
    name: str
    phase: str | None = None
    reason: str | None = None  # the Failed condition's reason when it failed
    message: str | None = None
    step: int | None = None
    eval_loss: float | None = None
    history: Sequence[tuple[int, float | None]] = ()
    stop_requested: str | None = None  # the stop annotation's reason

    @property
    def stopped(self) -> bool:
        return self.stop_requested is not None or (
            self.phase == Phase.FAILED.value and self.reason in STOP_REASONS
        )

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED or self.stop_requested is not None

    @property
    def failed(self) -> bool:
        return self.phase == Phase.FAILED.value and not self.stopped

    @property
    def succeeded(self) -> bool:
        return self.phase == Phase.SUCCEEDED.value


def failed_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The Failed condition of a status when it is True (its reason says why), else {}."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return dict(cond)
    return {}


def trial_view_of(
    trial: Trial, name: str, status: Mapping[str, Any], stop_requested: str | None = None
) -> TrialView:
    """What a trial's status says (the operator's object or the runner's status file alike)."""
    progress = status.get("progress") or {}
    metrics = status.get("metrics") or {}
    failed = failed_condition(status)
    eval_loss = metrics.get("evalLoss", progress.get("evalLoss"))
    return TrialView(
        trial=trial,
        name=name,
        phase=status.get("phase"),
        reason=failed.get("reason"),
        message=status.get("message") or failed.get("message"),
        step=progress.get("step"),
        eval_loss=float(eval_loss) if isinstance(eval_loss, int | float) else None,
        history=history_of(progress.get("evalHistory") or []),
        stop_requested=stop_requested,
    )


def evaluation_view_of(name: str, status: Mapping[str, Any]) -> EvaluationView:
    return EvaluationView(
        name, status.get("phase"), status.get("message"), dict(status.get("metrics") or {})
    )


@dataclass(frozen=True)
class EvaluationView:
    """What the Experiment's Evaluation shows."""

    name: str
    phase: str | None = None
    message: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """What to do now, and the status to write."""

    create: list[Trial] = field(default_factory=list)
    stop: dict[str, StopDecision] = field(default_factory=dict)
    evaluate: list[Trial] | None = None  # create the Evaluation of these trials
    phase: str = Phase.PENDING.value
    reason: str = "Pending"
    message: str = ""
    status: dict[str, Any] = field(default_factory=dict)


def _outcome(view: TrialView) -> Outcome:
    if view.succeeded:
        return Outcome(view.trial, "complete", view.eval_loss)
    if view.stopped:
        return Outcome(view.trial, "stopped", _last_loss(view))
    if view.failed:
        return Outcome(view.trial, "failed")
    return Outcome(view.trial, "running")


def _last_loss(view: TrialView) -> float | None:
    if view.eval_loss is not None:
        return view.eval_loss
    finite = [v for _, v in sorted(view.history) if v is not None and math.isfinite(v)]
    return finite[-1] if finite else None


def evaluated_trials(spec: ExperimentSpec, views: Sequence[TrialView]) -> list[Trial]:
    """The succeeded trials the Evaluation compares: the best by eval loss, as many as fit."""
    choice = spec.evaluation.arms
    base_arms = len(spec.matrix.models) * (int(choice.base) + int(choice.base_with_rag))
    per_trial = int(choice.tuned) + int(choice.tuned_with_rag)
    room = max(0, (MAX_ARMS - base_arms) // per_trial)
    done = [v for v in views if v.succeeded]
    done.sort(key=lambda v: (v.eval_loss is None, v.eval_loss or 0.0, v.trial.index))
    chosen = done[: min(spec.evaluation.trials, room)]
    return sorted((v.trial for v in chosen), key=lambda t: t.index)


def objective_of(
    spec: ExperimentSpec, view: TrialView, evaluation: EvaluationView | None
) -> float | None:
    """The trial's objective: its final eval loss, or its tuned arm's evaluation score."""
    if not view.succeeded:
        return None
    if spec.objective.metric == EVAL_LOSS:
        return view.eval_loss
    if evaluation is None:
        return None
    choice = spec.evaluation.arms
    # The arm with the RAG setting the trial was trained with; the other when that one is off.
    rag = view.trial.cell.rag if (choice.tuned_with_rag and choice.tuned) else choice.tuned_with_rag
    return arm_score(dict(evaluation.metrics), tuned_arm(view.trial, rag), spec.objective.metric)


def _best(
    spec: ExperimentSpec, scored: Sequence[tuple[TrialView, float | None]]
) -> tuple[TrialView, float] | None:
    candidates = [(v, s) for v, s in scored if s is not None and math.isfinite(s)]
    if not candidates:
        return None
    sign = 1.0 if spec.objective.goal() == "minimize" else -1.0
    return min(candidates, key=lambda vs: (sign * vs[1], vs[0].trial.index))


def ranking(
    spec: ExperimentSpec,
    experiment: str,
    evaluated: Sequence[Trial],
    evaluation: EvaluationView | None,
) -> list[dict[str, Any]]:
    """The Evaluation's arms, best first, each with what it stands for."""
    if evaluation is None or not evaluation.metrics:
        return []
    metric = ranking_metric(spec)
    rows = []
    for arm in arms_for(spec, experiment, evaluated):
        score = arm_score(dict(evaluation.metrics), arm.name, metric)
        row: dict[str, Any] = {"arm": arm.name, "model": arm.model, "rag": arm.rag}
        if arm.trial is not None and arm.cell is not None:
            row.update(
                trial=arm.trial,
                method=arm.cell.method,
                mode=arm.cell.mode,
                trainedWithRag=arm.cell.rag,
            )
        if score is not None:
            row["score"] = round(score, 6)
        rows.append(row)
    order = {r["arm"]: i for i, r in enumerate(rows)}
    rows.sort(key=lambda r: (r.get("score") is None, -(r.get("score") or 0.0), order[r["arm"]]))
    return [{"rank": i + 1, **r} for i, r in enumerate(rows)]


def _trial_row(
    spec: ExperimentSpec, view: TrialView, stop: StopDecision | None, objective: float | None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": view.name,
        "index": view.trial.index,
        "cell": view.trial.cell.to_wire(),
        "parameters": dict(view.trial.parameters),
    }
    if stop is not None:
        row.update(phase=Phase.FAILED.value, reason=stop.reason, message=stop.message)
    elif view.stop_requested is not None and view.phase not in FINISHED:
        row.update(phase=Phase.FAILED.value, reason="EarlyStopped", message=view.stop_requested)
    else:
        if view.phase:
            row["phase"] = view.phase
        reason = view.reason if view.phase == Phase.FAILED.value else None
        if view.phase == Phase.SUCCEEDED.value:
            reason = "Succeeded"
        if reason:
            row["reason"] = reason
        if view.message and view.phase == Phase.FAILED.value:
            row["message"] = view.message
    if view.step is not None:
        row["step"] = view.step
    loss = _last_loss(view)
    if loss is not None:
        row["evalLoss"] = round(loss, 6)
    if objective is not None:
        row["objective"] = round(objective, 6)
    return row


def step(
    spec: ExperimentSpec,
    namespace: str,
    experiment: str,
    views: Sequence[TrialView],
    evaluation: EvaluationView | None,
) -> Step:
    """Decide the next actions and the status from the children as they are now."""
    views = sorted(views, key=lambda v: v.trial.index)
    out = Step()
    planned = planned_trials(spec)

    # 1. The median rule, on every running trial against all the others.
    histories = {v.name: v.history for v in views if v.history and not v.failed}
    for view in views:
        if view.finished:
            continue
        others = {n: h for n, h in histories.items() if n != view.name}
        decision = median_rule(view.history, others, spec.early_stopping)
        if decision is not None:
            out.stop[view.name] = decision

    def done(v: TrialView) -> bool:
        return v.finished or v.name in out.stop

    failed = sum(1 for v in views if v.failed)
    too_many_failed = failed > spec.budget.max_failed_trials

    # 2. New trials, within the budget and the parallelism.
    active = sum(1 for v in views if not done(v))
    if not too_many_failed:
        history = [_outcome(v) for v in views]
        index = max((v.trial.index for v in views), default=-1) + 1
        while active < spec.budget.parallel_trials and index < planned:
            trial = propose(spec, index, history)
            out.create.append(trial)
            history.append(Outcome(trial, "running"))
            active += 1
            index += 1

    # 3. Once every trial is done: the Evaluation, then the verdict.
    created = len(views) + len(out.create)
    all_done = created >= planned and not out.create and all(done(v) for v in views)
    succeeded = [v for v in views if v.succeeded]
    evaluated = evaluated_trials(spec, views) if all_done else []
    stopped = sum(1 for v in views if v.stopped or v.name in out.stop)
    finished = sum(1 for v in views if done(v))

    if too_many_failed:
        out.phase, out.reason = Phase.FAILED.value, "TooManyFailedTrials"
        out.message = (
            f"{failed} trials failed, more than budget.maxFailedTrials "
            f"({spec.budget.max_failed_trials}); no more trials are started"
        )
    elif all_done and not succeeded:
        out.phase, out.reason = Phase.FAILED.value, "NoTrialSucceeded"
        out.message = f"none of the {len(views)} trials succeeded ({stopped} stopped early)"
    elif all_done and spec.evaluation.enabled:
        if evaluation is None:
            out.evaluate = evaluated
            out.phase, out.reason = Phase.RUNNING.value, "Evaluating"
            out.message = f"creating the Evaluation of the best {len(evaluated)} trials"
        elif evaluation.phase == Phase.SUCCEEDED.value:
            out.phase, out.reason = Phase.SUCCEEDED.value, "Succeeded"
            out.message = f"{len(succeeded)} trials succeeded, {stopped} stopped early; ranked"
        elif evaluation.phase == Phase.FAILED.value:
            out.phase, out.reason = Phase.FAILED.value, "EvaluationFailed"
            out.message = f"Evaluation {evaluation.name} failed: {evaluation.message or ''}"
        else:
            out.phase, out.reason = Phase.RUNNING.value, "Evaluating"
            out.message = f"Evaluation {evaluation.name} is {evaluation.phase or 'Pending'}"
    elif all_done:
        out.phase, out.reason = Phase.SUCCEEDED.value, "Succeeded"
        out.message = f"{len(succeeded)} trials succeeded, {stopped} stopped early"
    else:
        out.phase = Phase.RUNNING.value if views or out.create else Phase.PENDING.value
        out.reason = "TrialsRunning"
        out.message = f"{finished} of {planned} trials finished, {active} running" + (
            f", {stopped} stopped early" if stopped else ""
        )

    scored = [(v, objective_of(spec, v, evaluation)) for v in views]
    rows = [_trial_row(spec, v, out.stop.get(v.name), s) for v, s in scored]
    status: dict[str, Any] = {
        "trials": rows,
        "counts": {
            "planned": planned,
            "created": len(views),
            "running": sum(1 for v in views if not done(v)),
            "succeeded": len(succeeded),
            "failed": failed,
            "stopped": stopped,
            "done": f"{finished}/{planned}",
        },
        "rankingMetric": primary_key(ranking_metric(spec)) if spec.evaluation.enabled else None,
        "mlflowExperiment": mlflow_experiment_name(spec, namespace, experiment),
    }
    best = _best(spec, scored)
    if best is not None:
        view, value = best
        status["bestTrial"] = {
            "name": view.name,
            "objective": round(value, 6),
            "cell": view.trial.cell.to_wire(),
            "parameters": dict(view.trial.parameters),
        }
    if evaluation is not None:
        status["evaluationName"] = evaluation.name
        status["ranking"] = ranking(spec, experiment, evaluated_trials(spec, views), evaluation)
    out.status = {k: v for k, v in status.items() if v is not None}
    return out


__all__ = [
    "EvaluationView",
    "Step",
    "TrialView",
    "evaluated_trials",
    "evaluation_name",
    "objective_of",
    "ranking",
    "step",
    "trial_name",
]
