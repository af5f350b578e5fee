"""The kind registry: everything llmft knows about a kind, in one entry per kind.

The operator, the local runner, the CRD generator, the API reference, the report and the chart
read a kind's names, models, workload, printer columns and outputs from here, so adding a kind
is one `KindEntry` below plus its workload (see docs/architecture.md). References between
kinds are not listed here: they are declared once, on the spec field that holds them
(`Annotated[..., Ref(...)]`), and read from the spec models.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel

from llmft.api import layout
from llmft.api.common import GROUP, ApiModel, BaseStatus, Ref, ResourceStatus
from llmft.api.datasetgeneration import DatasetGenerationSpec, generator_notes
from llmft.api.evaluation import EvaluationSpec, EvaluationStatus, summary_notes
from llmft.api.experiment import ExperimentSpec, ExperimentStatus
from llmft.api.finetunejob import FineTuneJobSpec, FineTuneJobStatus


@dataclass(frozen=True)
class Column:
    """A `kubectl get` printer column."""

    name: str
    json_path: str
    type: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        col: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            col["priority"] = self.priority
        return col


PHASE = Column("Phase", ".status.phase", "string", "Pending, Waiting, Running, Succeeded, Failed.")
PROGRESS = Column("Progress", ".status.progress.percent", "number", "Percent of the work done.")
AGE = Column("Age", ".metadata.creationTimestamp", "date", "Time since creation.")
MESSAGE = Column("Message", ".status.message", "string", "Latest state or failure.", priority=1)
JOB = Column("Job", ".status.jobName", "string", "The workload's Job.", priority=1)


@dataclass(frozen=True)
class Workload:
    """The program that does a kind's work, as a pod (on a cluster) or a process (`llmft run`).

    `name` is at once the image (`ghcr.io/llmft/<name>`, target `<name>` of images/Dockerfile),
    the container, the `app.kubernetes.io/component` label, the pip extra that installs it
    (`llmft[<name>]`) and the operator's `LLMFT_IMAGE_<NAME>` setting.
    """

    module: str
    name: str

    @property
    def image_setting(self) -> str:
        return f"LLMFT_IMAGE_{self.name.upper()}"


ResultNotes = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class KindEntry:
    """One llmft kind."""

    kind: str
    plural: str
    short_name: str
    description: str
    spec_model: type[ApiModel]
    # None for a parent kind: the operator creates other resources for it instead of a Job
    # (its controller is llmft_operator.experiments; `llmft run` drives it the same way).
    workload: Workload | None
    artifact_dir: str
    columns: tuple[Column, ...]
    # Files or directories (relative to the output directory) that a succeeded run leaves;
    # a run whose outputs are gone is run again.
    outputs: tuple[str, ...]
    # What `llmft run` prints after a succeeded run: the lines `result_notes` makes from the
    # spec, the output file `result_file` (a JSON object; {} when absent) and the final
    # metrics, then the metrics named here, in this order.
    result_metrics: tuple[str, ...] = ()
    result_file: str | None = None
    result_notes: ResultNotes | None = None
    # Kinds the operator creates for one of these (an Experiment's trials and Evaluation); the
    # chart grants it `create` on those and nothing else.
    creates: tuple[str, ...] = ()
    status_model: type[BaseStatus] = ResourceStatus

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def short_names(self) -> tuple[str, ...]:
        return (self.short_name,)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    def default_output_path(self, name: str) -> str:
        """The directory, relative to the artefact root, a resource writes to by default."""
        return str(PurePosixPath(self.artifact_dir) / name)

    @property
    def references(self) -> tuple[Ref, ...]:
        """The references to other kinds its spec can hold (declared on the spec fields)."""
        return tuple(dict.fromkeys(ref for _, ref in _ref_fields(self.spec_model)))

    @property
    def referenced_kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.kind for ref in self.references))


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models a field's type annotation can hold (through Optional, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from models_in(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType, list, tuple, dict):
        for arg in typing.get_args(annotation):
            yield from models_in(arg)


def _ref_fields(
    model: type[BaseModel], seen: frozenset[type] = frozenset()
) -> Iterator[tuple[str, Ref]]:
    """(python field name, Ref) of every reference field in `model` and the models it holds."""
    if model in seen:
        return
    for name, info in model.model_fields.items():
        for meta in info.metadata:
            if isinstance(meta, Ref):
                yield name, meta
        for inner in models_in(info.annotation):
            yield from _ref_fields(inner, seen | {model})


DATASET_GENERATION = KindEntry(
    kind="DatasetGeneration",
    plural="datasetgenerations",
    short_name="dsgen",
    description=(
        "Generates an instruction dataset (Q/A pairs) and a causal corpus from documents "
        "with an LLM served by Ollama."
    ),
    spec_model=DatasetGenerationSpec,
    workload=Workload("llmft.workloads.datagen", "datagen"),
    artifact_dir="datasets",
    columns=(
        PHASE,
        PROGRESS,
        Column("Pairs", ".status.metrics.pairs", "integer", "Q/A pairs kept."),
        Column("Train", ".status.metrics.trainPairs", "integer", "Pairs in train.jsonl."),
        Column("Eval", ".status.metrics.evalPairs", "integer", "Pairs in eval.jsonl."),
        AGE,
        JOB,
        MESSAGE,
    ),
    outputs=(layout.INSTRUCT_TRAIN, layout.INSTRUCT_EVAL, layout.DATASET_MANIFEST),
    result_metrics=("chunks", "pairs", "trainPairs", "evalPairs", "dropped"),
    result_file=layout.DATASET_MANIFEST,
    result_notes=generator_notes,
)

FINE_TUNE_JOB = KindEntry(
    kind="FineTuneJob",
    plural="finetunejobs",
    short_name="ftj",
    description=(
        "Fine-tunes a base model with QLoRA or LoRA (causal or instruct, optionally with RAG "
        "context) on a dataset, and saves the adapter."
    ),
    spec_model=FineTuneJobSpec,
    workload=Workload("llmft.workloads.trainer", "trainer"),
    artifact_dir="finetune",
    columns=(
        PHASE,
        Column("Method", ".spec.method", "string", "qlora or lora."),
        Column("Mode", ".spec.mode", "string", "causal or instruct."),
        PROGRESS,
        Column("Loss", ".status.progress.loss", "number", "Latest training loss."),
        Column("Eval-Loss", ".status.metrics.evalLoss", "number", "Final eval loss."),
        AGE,
        Column("Base", ".spec.baseModel.name", "string", "Base model.", priority=1),
        JOB,
        MESSAGE,
    ),
    outputs=(layout.ADAPTER_DIR,),
    result_metrics=("steps", "trainLoss", "evalLoss", "tokensPerSecond"),
    status_model=FineTuneJobStatus,
)

EVALUATION = KindEntry(
    kind="Evaluation",
    plural="evaluations",
    short_name="eval",
    description=(
        "Answers held-out questions with several arms (base or fine-tuned, with or without "
        "RAG) and scores them side by side."
    ),
    spec_model=EvaluationSpec,
    status_model=EvaluationStatus,
    workload=Workload("llmft.workloads.evaluator", "evaluator"),
    artifact_dir="evaluations",
    columns=(
        PHASE,
        PROGRESS,
        Column("Metric", ".spec.primaryMetric", "string", "Metric that ranks the arms."),
        Column("Best", ".status.metrics.best", "string", "Best arm by that metric."),
        Column(
            "Winner",
            ".status.metrics.winner",
            "string",
            "The best arm when significantly better than the runner-up (else empty).",
        ),
        Column(
            "P-Value",
            ".status.metrics.pValue",
            "number",
            "Paired test of the best arm against the runner-up.",
        ),
        Column("Score", ".status.metrics.winnerScore", "number", "The winner's mean."),
        AGE,
        JOB,
        MESSAGE,
    ),
    outputs=(layout.EVAL_SUMMARY, layout.EVAL_ITEMS),
    result_file=layout.EVAL_SUMMARY,
    result_notes=summary_notes,
)


class KindRegistry:
    """The kinds by name, in dependency order (a kind comes after those it references)."""

    def __init__(self, *entries: KindEntry) -> None:
        self._entries = {e.kind: e for e in entries}
        for entry in entries:
            for ref in entry.references:
                if ref.kind not in self._entries:
                    raise ValueError(f"{entry.kind} references unknown kind {ref.kind}")

    def __getitem__(self, kind: str) -> KindEntry:
        return self._entries[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def __iter__(self) -> Iterator[KindEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def workload(self, kind: str) -> Workload:
        """The workload of a kind that runs one; ValueError for a parent kind (Experiment)."""
        workload = self[kind].workload
        if workload is None:
            raise ValueError(f"{kind} runs no workload of its own: it creates other resources")
        return workload

    def with_workload(self) -> Iterator[KindEntry]:
        """The kinds that run one workload (a Job, or a local process) per resource."""
        return (e for e in self if e.workload is not None)

    def by_plural(self, plural: str) -> KindEntry:
        return next(e for e in self if e.plural == plural)

    def lookup(self, text: str) -> KindEntry | None:
        """The kind a user means by its name, short name or plural (any case), or None."""
        wanted = text.lower()
        return next(
            (e for e in self if wanted in (e.singular, e.plural, *e.short_names)),
            None,
        )


EXPERIMENT = KindEntry(
    kind="Experiment",
    plural="experiments",
    short_name="exp",
    description=(
        "Compares models x methods x modes x RAG with a hyper-parameter search: creates the "
        "trials (FineTuneJobs) and the Evaluation, stops trials that fall behind, and ranks."
    ),
    spec_model=ExperimentSpec,
    workload=None,
    artifact_dir="experiments",
    columns=(
        PHASE,
        Column("Trials", ".status.counts.done", "string", "Trials finished / planned."),
        Column("Running", ".status.counts.running", "integer", "Trials running now."),
        Column("Best", ".status.bestTrial.name", "string", "Best trial by the objective."),
        Column("Objective", ".status.bestTrial.objective", "number", "The best trial's value."),
        AGE,
        Column("Metric", ".spec.objective.metric", "string", "The objective.", priority=1),
        MESSAGE,
    ),
    outputs=(),
    status_model=ExperimentStatus,
    creates=("FineTuneJob", "Evaluation"),
)

KINDS = KindRegistry(DATASET_GENERATION, FINE_TUNE_JOB, EVALUATION, EXPERIMENT)
