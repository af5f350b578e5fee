"""Experiment: a matrix of models x methods x modes x RAG, a hyper-parameter search, one ranking.

An Experiment owns the FineTuneJobs (its trials) and the Evaluation it creates. Each trial is one
matrix cell (model, method, mode, RAG in training) with one point of the search space; the
search (grid, random, or Bayesian through optuna) is steered by the eval loss the trials report
while training, the median rule stops trials that fall behind, and the objective (the eval loss,
or an evaluation metric) ranks the trials once they are done.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from llmft.api.common import (
    ApiModel,
    BaseStatus,
    ModelSource,
    Phase,
    Resources,
    Tracking,
    cel,
    cel_rules,
)
from llmft.api.evaluation import Bootstrap, Generation, Judge, Metric, Retrieval
from llmft.api.finetunejob import DatasetInput, HyperParameters, Method, Mode

# The FineTuneJob hyper-parameters a search may vary, as paths under spec.hyperparameters.
SearchableName = Literal[
    "learningRate",
    "epochs",
    "maxSteps",
    "batchSize",
    "gradientAccumulationSteps",
    "maxSeqLength",
    "warmupRatio",
    "lrScheduler",
    "weightDecay",
    "seed",
    "lora.r",
    "lora.alpha",
    "lora.dropout",
]
SEARCHABLE: tuple[str, ...] = SearchableName.__args__  # type: ignore[attr-defined]
CATEGORICAL = frozenset({"lrScheduler"})
INTEGER = frozenset(
    {"maxSteps", "batchSize", "gradientAccumulationSteps", "maxSeqLength", "seed", "lora.r"}
    | {"lora.alpha"}
)
EVAL_LOSS = "evalLoss"
ObjectiveMetric = Literal[
    "evalLoss", "bleu", "chrf", "rouge", "ngram", "accuracy", "relevance", "faithfulness"
]
MAX_PARAMETERS = 6
MAX_TRIALS = 256
# Bounds the Evaluation: every evaluated trial adds up to two arms, every model up to two more.
MAX_EVALUATED_TRIALS = 12


def _default_methods() -> list[Method]:
    return ["qlora"]


def _default_modes() -> list[Mode]:
    return ["instruct"]


def _default_metrics() -> list[Metric]:
    return ["bleu", "chrf", "rouge", "ngram"]


class MatrixModel(ApiModel):
    """One model of the matrix: a short name (used in child and arm names) and its source."""

    name: str = Field(
        description="Short name of the model in trial and arm names (e.g. llama3, gemma2b).",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=20,
    )
    base_model: ModelSource = Field(description="The base model every trial of this row tunes.")


class Matrix(ApiModel):
    """The axes every trial picks one value of: model, method, mode, RAG in training.

    A causal trial trains on the corpus, which has no questions to put context into, so the RAG
    axis applies to instruct cells only: causal cells are trained once, without RAG.
    """

    model_config = cel_rules(
        cel(
            "self.models.all(m, self.models.filter(o, o.name == m.name).size() == 1)",
            "model names must be unique",
            ".models",
        )
    )

    models: list[MatrixModel] = Field(
        description="Models to compare (at least one).", min_length=1, max_length=8
    )
    methods: list[Method] = Field(
        default_factory=_default_methods,
        description="Fine-tuning methods to compare: qlora, lora.",
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    modes: list[Mode] = Field(
        default_factory=_default_modes,
        description="Training modes to compare: causal, instruct.",
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    rag: list[bool] = Field(
        default_factory=lambda: [False],
        description="RAG context in training prompts, off and/or on (instruct cells only).",
        min_length=1,
        max_length=2,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    @model_validator(mode="after")
    def _unique(self) -> Matrix:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec.matrix.models: duplicate model names {dupes}")
        for axis in ("methods", "modes", "rag"):
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise ValueError(f"spec.matrix.{axis}: values must be unique")
        return self

    def cell_count(self) -> int:
        """How many (model, method, mode, rag) cells the matrix has."""
        per_method = (len(self.rag) if "instruct" in self.modes else 0) + (
            1 if "causal" in self.modes else 0
        )
        return len(self.models) * len(self.methods) * per_method


class SearchParameter(ApiModel):
    """One hyper-parameter to vary: a list of values, categories, or a (log-)range."""

    model_config = cel_rules(
        cel(
            "(has(self.values) ? 1 : 0) + (has(self.categories) ? 1 : 0)"
            " + (has(self.min) || has(self.max) ? 1 : 0) == 1",
            "set exactly one of values, categories, or min and max",
        ),
        cel(
            "has(self.min) == has(self.max)",
            "a range needs both min and max",
            ".max",
        ),
        cel("!has(self.min) || self.min < self.max", "min must be smaller than max", ".max"),
        cel(
            "!has(self.scale) || self.scale != 'log' || !has(self.min) || self.min > 0.0",
            "a log range needs min > 0",
            ".min",
        ),
        cel(
            "(self.name == 'lrScheduler') == has(self.categories)",
            "lrScheduler takes categories; numeric hyper-parameters take values or a range",
            ".name",
        ),
    )

    name: SearchableName = Field(
        description="The FineTuneJob hyper-parameter (path under spec.hyperparameters)."
    )
    values: list[float] | None = Field(
        default=None, description="Values to try (numbers).", min_length=1, max_length=32
    )
    categories: list[str] | None = Field(
        default=None, description="Values to try (lrScheduler).", min_length=1, max_length=8
    )
    min: float | None = Field(default=None, description="Lower end of a range (inclusive).")
    max: float | None = Field(default=None, description="Upper end of a range (inclusive).")
    scale: Literal["linear", "log"] = Field(
        default="linear", description="How a range is sampled: linear or log (min > 0)."
    )
    count: int | None = Field(
        default=None,
        ge=2,
        le=32,
        description="Grid points over a range (grid search only; evenly spaced on its scale).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> SearchParameter:
        forms = [self.values is not None, self.categories is not None]
        ranged = self.min is not None or self.max is not None
        if sum(forms) + int(ranged) != 1:
            raise ValueError(f"{self.name}: set exactly one of values, categories, or min and max")
        if ranged:
            if self.min is None or self.max is None:
                raise ValueError(f"{self.name}: a range needs both min and max")
            if self.min >= self.max:
                raise ValueError(f"{self.name}: min must be smaller than max")
            if self.scale == "log" and self.min <= 0:
                raise ValueError(f"{self.name}: a log range needs min > 0")
        if (self.name in CATEGORICAL) != (self.categories is not None):
            raise ValueError(
                f"{self.name}: lrScheduler takes categories; numeric hyper-parameters take "
                "values or a range"
            )
        if self.name in INTEGER:
            for number in self.values or []:
                if not float(number).is_integer():
                    raise ValueError(f"{self.name}: takes integers, got {number}")
        for bound in self.bounds():
            _check_hyperparameter(self.name, bound)
        return self

    def bounds(self) -> list[float | str]:
        """The extreme values this parameter can take (checked against the field's limits)."""
        if self.categories is not None:
            return list(self.categories)
        if self.values is not None:
            return [min(self.values), max(self.values)]
        assert self.min is not None and self.max is not None
        return [self.min, self.max]

    def grid_size(self) -> int | None:
        """Points this parameter contributes to a grid; None for a range without count."""
        if self.values is not None:
            return len(set(self.values))
        if self.categories is not None:
            return len(set(self.categories))
        return self.count


def _check_hyperparameter(name: str, value: float | str) -> None:
    """Refuse a value the FineTuneJob's own schema would refuse (its bounds, its enum)."""
    top, _, sub = name.partition(".")
    hp: dict[str, object]
    v: object = int(value) if name in INTEGER and isinstance(value, float) else value
    hp = {top: {sub: v}} if sub else {top: v}
    try:
        HyperParameters.model_validate(hp)
    except ValidationError as err:
        reason = err.errors()[0]["msg"]
        raise ValueError(f"{name}: {value} is not a valid value ({reason})") from None


def _grid_cel() -> str:
    """CEL for 'the grid fits in maxTrials': matrix cells x each parameter's grid points."""
    m = "self.matrix"
    cells = (
        f"{m}.models.size() * {m}.methods.size() * ((('instruct' in {m}.modes) ? "
        f"{m}.rag.size() : 0) + (('causal' in {m}.modes) ? 1 : 0))"
    )
    p = "self.search.parameters"
    terms = [
        f"({p}.size() > {i} ? (has({p}[{i}].values) ? {p}[{i}].values.size() : "
        f"(has({p}[{i}].categories) ? {p}[{i}].categories.size() : "
        f"(has({p}[{i}].count) ? {p}[{i}].count : 1))) : 1)"
        for i in range(MAX_PARAMETERS)
    ]
    return (
        "self.search.algorithm != 'grid' || self.budget.allowTruncate || "
        f"{cells} * {' * '.join(terms)} <= self.budget.maxTrials"
    )


class Search(ApiModel):
    """How trials pick their hyper-parameters."""

    model_config = cel_rules(
        cel(
            "self.parameters.all(p, self.parameters.filter(o, o.name == p.name).size() == 1)",
            "each hyper-parameter may appear once",
            ".parameters",
        ),
        cel(
            "self.algorithm != 'grid' || self.parameters.all(p, !has(p.min) || has(p.count))",
            "grid search over a range needs its count (grid points)",
            ".parameters",
        ),
    )

    algorithm: Literal["grid", "random", "bayesian"] = Field(
        default="grid",
        description=(
            "grid: every combination (matrix x values); random: maxTrials samples, matrix cells "
            "taken in turn; bayesian: optuna's TPE learns from the eval loss of finished trials."
        ),
    )
    parameters: list[SearchParameter] = Field(
        default_factory=list,
        description="Hyper-parameters to vary; the others come from spec.fineTune.",
        max_length=MAX_PARAMETERS,
    )
    seed: int = Field(default=0, description="Seed of the sampler; the same seed, the same trials.")

    @model_validator(mode="after")
    def _consistent(self) -> Search:
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec.search.parameters: {dupes} appear more than once")
        if self.algorithm == "grid":
            for i, p in enumerate(self.parameters):
                if p.grid_size() is None:
                    raise ValueError(
                        f"spec.search.parameters[{i}].count: grid search over the range of "
                        f"{p.name} needs count (grid points)"
                    )
        return self


class Budget(ApiModel):
    """How many trials, how many at once, how many failures before the Experiment gives up."""

    max_trials: int = Field(
        default=8, ge=1, le=MAX_TRIALS, description="Trials (FineTuneJobs) in all."
    )
    parallel_trials: int = Field(
        default=1, ge=1, le=64, description="Trials running (or queued) at the same time."
    )
    max_failed_trials: int = Field(
        default=2,
        ge=0,
        le=MAX_TRIALS,
        description="Failed trials tolerated; one more fails the Experiment (stopped trials "
        "do not count).",
    )
    allow_truncate: bool = Field(
        default=False,
        description="Run only the first maxTrials points of a grid larger than maxTrials.",
    )


class Objective(ApiModel):
    """What ranks the trials: the eval loss, or an evaluation metric of the trial's tuned arm."""

    metric: ObjectiveMetric = Field(
        default="evalLoss",
        description=(
            "evalLoss (the trainer's final eval loss) or an evaluation metric of spec.evaluation; "
            "a trial's score is its tuned arm with the RAG setting it was trained with."
        ),
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        default=None,
        description="minimize or maximize; empty: minimize evalLoss, maximize the others.",
    )

    def goal(self) -> Literal["minimize", "maximize"]:
        if self.direction is not None:
            return self.direction
        return "minimize" if self.metric == EVAL_LOSS else "maximize"


class EarlyStopping(ApiModel):
    """The median rule: stop a trial whose best eval loss so far is worse than the median."""

    algorithm: Literal["median", "none"] = Field(
        default="median",
        description=(
            "median: at each evaluation step, stop a trial whose best eval loss so far is worse "
            "than the median of the other trials' best at the same step; none: never stop."
        ),
    )
    min_trials: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Other trials that must have reported at that step before the rule applies.",
    )
    start_step: int = Field(
        default=1, ge=1, description="Training steps before a trial may be stopped."
    )


class ArmChoice(ApiModel):
    """Which arms the Evaluation compares."""

    tuned: bool = Field(default=True, description="Each evaluated trial's adapter, without RAG.")
    tuned_with_rag: bool = Field(
        default=True, description="Each evaluated trial's adapter, with retrieved context."
    )
    base: bool = Field(default=True, description="Each base model once, without RAG.")
    base_with_rag: bool = Field(default=True, description="Each base model once, with RAG.")


class ExperimentEvaluation(ApiModel):
    """The Evaluation the Experiment creates once its trials are done."""

    model_config = cel_rules(
        cel(
            "!self.metrics.exists(m, m in ['accuracy', 'relevance', 'faithfulness'])"
            " || has(self.judge)",
            "judge metrics (accuracy, relevance, faithfulness) need judge",
            ".judge",
        ),
        cel(
            "self.primaryMetric in self.metrics",
            "primaryMetric must be one of metrics",
            ".primaryMetric",
        ),
        cel(
            "self.arms.tuned || self.arms.tunedWithRag",
            "at least one tuned arm (tuned or tunedWithRag) is needed",
            ".arms",
        ),
    )

    enabled: bool = Field(
        default=True, description="Create the Evaluation (false: rank trials by eval loss only)."
    )
    trials: int = Field(
        default=8,
        ge=1,
        le=MAX_EVALUATED_TRIALS,
        description="Evaluate the best N succeeded trials by eval loss (each adds its arms).",
    )
    arms: ArmChoice = Field(default_factory=ArmChoice, description="Which arms to compare.")
    metrics: list[Metric] = Field(
        default_factory=_default_metrics,
        description="Metrics to compute; judge metrics need judge.",
        min_length=1,
        max_length=7,
    )
    primary_metric: Metric = Field(
        default="rouge",
        description="Metric that ranks the arms (the objective's metric when it is one).",
    )
    generation: Generation = Field(default_factory=Generation, description="How arms answer.")
    retrieval: Retrieval = Field(default_factory=Retrieval, description="Index for RAG arms.")
    judge: Judge | None = Field(default=None, description="LLM judge for judge metrics.")
    bootstrap: Bootstrap = Field(default_factory=Bootstrap, description="Confidence intervals.")
    resources: Resources = Field(default_factory=Resources, description="Compute for the pod.")

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentEvaluation:
        if any(m in ("accuracy", "relevance", "faithfulness") for m in self.metrics) and (
            self.judge is None
        ):
            raise ValueError("spec.evaluation.metrics asks for judge metrics but judge is unset")
        if self.primary_metric not in self.metrics:
            raise ValueError("spec.evaluation.primaryMetric must be one of spec.evaluation.metrics")
        if not (self.arms.tuned or self.arms.tuned_with_rag):
            raise ValueError("spec.evaluation.arms: at least one of tuned, tunedWithRag is needed")
        return self


class TrialRag(ApiModel):
    """How RAG trials put context in their prompts (the matrix says which trials do)."""

    top_k: int = Field(default=3, ge=1, le=20, description="Chunks of context per question.")
    context_source: Literal["dataset", "retriever"] = Field(
        default="dataset",
        description="dataset: the pair's own context field; retriever: top-k from the index.",
    )


class TrialTemplate(ApiModel):
    """What every trial's FineTuneJob has in common; the search overrides hyper-parameters."""

    hyperparameters: HyperParameters = Field(
        default_factory=HyperParameters, description="Defaults for every trial."
    )
    rag: TrialRag = Field(default_factory=TrialRag, description="RAG settings of RAG trials.")
    resources: Resources = Field(default_factory=Resources, description="Compute per trial pod.")
    output_pvc: str | None = Field(
        default=None, description="PVC for the adapters; empty uses the operator's default."
    )


# Parts of a spec the trials were made from: they cannot change once the Experiment exists
# (budget and earlyStopping can; see docs/experiment.md, "Changing a running Experiment").
IMMUTABLE = ("dataset", "matrix", "fineTune", "search", "objective", "evaluation", "tracking")


def _immutable(field: str) -> dict[str, str]:
    return cel(
        f"self.{field} == oldSelf.{field}",
        f"{field} cannot change once the Experiment exists (its trials were made from it); "
        "create a new Experiment",
        f".{field}",
    )


class ExperimentSpec(ApiModel):
    """The comparison: a matrix of models and methods, a search, a budget and an objective."""

    model_config = cel_rules(
        *(_immutable(f) for f in IMMUTABLE),
        cel(
            _grid_cel(),
            "the grid (matrix cells x grid points) has more trials than budget.maxTrials; raise "
            "maxTrials or set budget.allowTruncate",
            ".budget.maxTrials",
        ),
        cel(
            "self.objective.metric == 'evalLoss' || (self.evaluation.enabled && "
            "self.objective.metric in self.evaluation.metrics)",
            "objective.metric must be evalLoss or one of evaluation.metrics (with the evaluation "
            "enabled)",
            ".objective.metric",
        ),
    )

    dataset: DatasetInput = Field(description="Training and evaluation data.")
    matrix: Matrix = Field(description="Models x methods x modes x RAG: the cells trials cover.")
    fine_tune: TrialTemplate = Field(
        default_factory=TrialTemplate, description="What every trial's FineTuneJob shares."
    )
    search: Search = Field(default_factory=Search, description="Hyper-parameter search.")
    budget: Budget = Field(default_factory=Budget, description="Trial counts and parallelism.")
    objective: Objective = Field(default_factory=Objective, description="What ranks trials.")
    early_stopping: EarlyStopping = Field(
        default_factory=lambda: EarlyStopping(algorithm="none"),
        description="Stopping trials that fall behind (the median rule).",
    )
    evaluation: ExperimentEvaluation = Field(
        default_factory=ExperimentEvaluation, description="The Evaluation of the best trials."
    )
    tracking: Tracking = Field(
        default_factory=Tracking,
        description="MLflow tracking: one MLflow experiment, one run per trial and evaluation.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        size = self.grid_size()
        if (
            self.search.algorithm == "grid"
            and not self.budget.allow_truncate
            and size is not None
            and size > self.budget.max_trials
        ):
            raise ValueError(
                f"spec.budget.maxTrials: the grid has {size} trials (matrix cells x grid points) "
                f"but maxTrials is {self.budget.max_trials}; raise maxTrials or set "
                "budget.allowTruncate"
            )
        metric = self.objective.metric
        if metric != EVAL_LOSS and not (
            self.evaluation.enabled and metric in self.evaluation.metrics
        ):
            raise ValueError(
                f"spec.objective.metric: {metric} is not computed: it must be evalLoss or one "
                f"of spec.evaluation.metrics {list(self.evaluation.metrics)} (with the "
                "evaluation enabled)"
            )
        return self

    def grid_size(self) -> int | None:
        """Trials a full grid has (None when a range has no grid points)."""
        sizes = [p.grid_size() for p in self.search.parameters]
        if any(s is None for s in sizes):
            return None
        return self.matrix.cell_count() * math.prod(s for s in sizes if s is not None)


class TrialCell(ApiModel):
    """The matrix cell a trial covers."""

    model: str = Field(description="spec.matrix.models[].name.")
    method: Method = Field(description="qlora or lora.")
    mode: Mode = Field(description="causal or instruct.")
    rag: bool = Field(description="RAG context in training prompts.")


class TrialStatus(ApiModel):
    """One trial: its FineTuneJob, its cell and hyper-parameters, how it went."""

    name: str = Field(description="The trial's FineTuneJob.")
    index: int = Field(description="Trial number, from 0, in creation order.")
    cell: TrialCell = Field(description="Model, method, mode and RAG of the trial.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The searched hyper-parameters' values."
    )
    phase: Phase | None = Field(default=None, description="The FineTuneJob's phase.")
    reason: str | None = Field(
        default=None, description="Why it ended: Succeeded, Failed, EarlyStopped."
    )
    message: str | None = Field(default=None, description="Latest note (why it was stopped).")
    step: int | None = Field(default=None, description="Latest training step reported.")
    eval_loss: float | None = Field(default=None, description="Latest (final) eval loss.")
    objective: float | None = Field(default=None, description="The objective's value.")


class TrialCounts(ApiModel):
    """How many trials are where."""

    planned: int = Field(default=0, description="Trials this Experiment will run in all.")
    created: int = Field(default=0, description="FineTuneJobs created so far.")
    running: int = Field(default=0, description="Created and not finished.")
    succeeded: int = Field(default=0, description="Finished with an adapter.")
    failed: int = Field(default=0, description="Failed (counted against maxFailedTrials).")
    stopped: int = Field(default=0, description="Stopped early by the median rule.")
    done: str = Field(default="0/0", description="Finished of planned, as kubectl shows it.")


class BestTrial(ApiModel):
    """The best trial by the objective."""

    name: str = Field(description="The trial's FineTuneJob.")
    objective: float | None = Field(default=None, description="Its objective value.")
    cell: TrialCell | None = Field(default=None, description="Its matrix cell.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Its hyper-parameters.")


class RankedArm(ApiModel):
    """One arm of the Evaluation, in ranking order."""

    rank: int = Field(description="1 is the best.")
    arm: str = Field(description="Arm name in the Evaluation.")
    trial: str | None = Field(default=None, description="Trial (FineTuneJob); empty: a base model.")
    model: str = Field(description="spec.matrix.models[].name.")
    method: str | None = Field(default=None, description="qlora or lora (tuned arms).")
    mode: str | None = Field(default=None, description="causal or instruct (tuned arms).")
    trained_with_rag: bool | None = Field(default=None, description="RAG in training.")
    rag: bool = Field(description="Retrieval when answering.")
    score: float | None = Field(default=None, description="Mean of the ranking metric.")


class ExperimentStatus(BaseStatus):
    """What the Experiment saw of its trials and its evaluation."""

    trials: list[TrialStatus] = Field(
        default_factory=list, description="Every trial created, in order."
    )
    counts: TrialCounts = Field(default_factory=TrialCounts, description="Trials by state.")
    best_trial: BestTrial | None = Field(default=None, description="The best trial so far.")
    evaluation_name: str | None = Field(default=None, description="The Evaluation it created.")
    ranking_metric: str | None = Field(default=None, description="Metric that ranks the arms.")
    ranking: list[RankedArm] = Field(
        default_factory=list, description="The Evaluation's arms, best first."
    )
    mlflow_experiment: str | None = Field(
        default=None, description="MLflow experiment the trials are logged to."
    )
