"""Evaluation: answer held-out questions with several arms and score them side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from llmft.api.common import (
    ApiModel,
    ArtifactOutput,
    ChatFormatStatus,
    ClusterDefault,
    ContainedPathOrHub,
    InputPath,
    ModelName,
    ModelSource,
    Ref,
    Resources,
    ResourceStatus,
    SecretEnv,
    SecretKeyRef,
    Tracking,
    cel,
    cel_rules,
)
from llmft.api.finetunejob import DatasetInput, Retrieval
from llmft.api.layout import (
    ADAPTER_DIR,
    ENV_ARM_API_KEY,
    ENV_HF_TOKEN,
    ENV_JUDGE_API_KEY,
)

Metric = Literal["bleu", "chrf", "rouge", "ngram", "accuracy", "relevance", "faithfulness"]
TEXT_METRICS: tuple[Metric, ...] = ("bleu", "chrf", "rouge", "ngram")
JUDGE_METRICS: tuple[Metric, ...] = ("accuracy", "relevance", "faithfulness")
# The score key that ranks arms for a spec metric, where the two differ (status.metrics keys).
RANKING_KEY = {"rouge": "rougeL"}


def primary_key(primary_metric: str) -> str:
    """The score key that ranks arms for a spec metric (rouge -> rougeL)."""
    return RANKING_KEY.get(primary_metric, primary_metric)


class ArmRag(ApiModel):
    """Retrieval for one arm."""

    enabled: bool = Field(default=False, description="Retrieve context from Weaviate.")
    top_k: int = Field(default=3, ge=1, le=20, description="Chunks retrieved per question.")


class ArmEndpoint(ApiModel):
    """A model already served over HTTP: an Ollama server or an OpenAI-compatible API."""

    provider: Literal["ollama", "openai"] = Field(
        default="ollama",
        description="ollama: an Ollama server's root URL; openai: an OpenAI-compatible base URL.",
    )
    url: str = Field(
        description=(
            "Base URL: Ollama's root (http://ollama:11434) or the OpenAI-compatible API's base "
            "(e.g. https://api.example.com/v1)."
        ),
        pattern=r"^https?://",
    )
    model: str = Field(description="Model name the endpoint serves.", min_length=1)
    api_key_secret_ref: Annotated[SecretKeyRef | None, SecretEnv(ENV_ARM_API_KEY, "url")] = Field(
        default=None, description="Secret key with the endpoint's API key (sent as a Bearer token)."
    )
    timeout_seconds: float = Field(default=300, gt=0, description="Per-answer timeout.")
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Questions in flight at once against the endpoint."
    )


class Arm(ApiModel):
    """One contestant: a base model, optionally with a fine-tuned adapter, or a served endpoint,
    with or without RAG."""

    model_config = cel_rules(
        cel(
            "has(self.baseModel) || has(self.fineTuneJobRef) || has(self.endpoint)",
            "set baseModel, fineTuneJobRef or endpoint",
        ),
        cel(
            "!(has(self.fineTuneJobRef) && has(self.adapterPath))",
            "set at most one of fineTuneJobRef, adapterPath",
        ),
        cel(
            "!has(self.endpoint) || !(has(self.baseModel) || has(self.fineTuneJobRef)"
            " || has(self.adapterPath))",
            "endpoint excludes baseModel, fineTuneJobRef and adapterPath",
            ".endpoint",
        ),
    )

    name: str = Field(
        description="Arm name, unique in the evaluation.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    base_model: ModelSource | None = Field(
        default=None, description="Base model; empty takes the FineTuneJob's base model."
    )
    fine_tune_job_ref: Annotated[
        str | None,
        Ref(
            "FineTuneJob",
            fills="adapter_path",
            subpath=ADAPTER_DIR,
            inherits=(("base_model", "baseModel"),),
        ),
    ] = Field(
        default=None, description="FineTuneJob whose adapter is applied; waits for it to succeed."
    )
    adapter_path: Annotated[ContainedPathOrHub | None, InputPath()] = Field(
        default=None,
        description=(
            "Directory of a saved adapter (instead of a FineTuneJob); relative paths are on the "
            "artefact volume (no '..' segments). Or a Hub repository holding the adapter: "
            "hf://owner/name@revision[/folder]."
        ),
    )
    adapter_token_secret_ref: Annotated[SecretKeyRef | None, SecretEnv(ENV_HF_TOKEN)] = Field(
        default=None,
        description="Secret key holding a Hub token, for an adapter in a private Hub repository.",
    )
    endpoint: ArmEndpoint | None = Field(
        default=None,
        description="A served model (Ollama or OpenAI-compatible) answers instead of a local one.",
    )
    base_precision: Literal["as-trained", "4bit", "full"] = Field(
        default="as-trained",
        description=(
            "How the base model is loaded: as-trained (4-bit NF4 under a QLoRA adapter, as it "
            "was trained; full precision otherwise), 4bit, or full."
        ),
    )
    rag: ArmRag = Field(default_factory=ArmRag, description="Retrieval for this arm.")

    @model_validator(mode="after")
    def _model_known(self) -> Arm:
        local = (self.base_model, self.fine_tune_job_ref, self.adapter_path)
        if self.endpoint is not None:
            if any(v is not None for v in local):
                raise ValueError(
                    f"arms[{self.name}]: endpoint excludes baseModel, fineTuneJobRef and "
                    "adapterPath"
                )
            return self
        if self.base_model is None and self.fine_tune_job_ref is None:
            raise ValueError(f"arms[{self.name}]: set baseModel, fineTuneJobRef or endpoint")
        if self.fine_tune_job_ref is not None and self.adapter_path is not None:
            raise ValueError(f"arms[{self.name}]: set at most one of fineTuneJobRef, adapterPath")
        return self


class Generation(ApiModel):
    """How arms answer."""

    max_new_tokens: int = Field(default=256, ge=1, le=8192, description="Answer length limit.")
    batch_size: int = Field(default=8, ge=1, le=512, description="Questions per batch.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 means greedy.")
    max_items: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Evaluate a sample of N eval items, drawn with `seed` and stratified by source "
            "document (every document keeps its share)."
        ),
    )
    seed: int = Field(default=0, description="Seed of the maxItems sample.")


class Judge(ApiModel):
    """The LLM judge (through RAGAS): an Ollama or OpenAI-compatible endpoint."""

    provider: Literal["ollama", "openai"] = Field(default="ollama", description="API flavour.")
    endpoint: Annotated[str, ClusterDefault("ollama_host", when=(("provider", "ollama"),))] = Field(
        default="http://ollama:11434",
        description="Judge base URL; unset (ollama): the cluster's Ollama (Helm), else this.",
    )
    model: str = Field(default="llama3:8b", description="Judge model name.")
    api_key_secret_ref: Annotated[SecretKeyRef | None, SecretEnv(ENV_JUDGE_API_KEY, "endpoint")] = (
        Field(default=None, description="Secret key with the judge's API key (openai provider).")
    )
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries on unusable output.")
    timeout_seconds: float = Field(default=120, gt=0, description="Per-call timeout.")
    max_tokens: int = Field(
        default=1024, ge=16, le=16384, description="Token limit of one judge reply."
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Answers judged at the same time (1 for a CPU judge)."
    )
    relevancy_questions: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Questions the judge writes per answer for answer relevancy (strictness).",
    )
    embedding_model: Annotated[str | None, ModelName()] = Field(
        default=None,
        description="Embedding model for answer relevancy; empty uses retrieval.embeddingModel.",
    )
    max_missing_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=(
            "Share of judge scores that may be missing (unusable judge output) before the "
            "Evaluation is marked Degraded; a judge that stops answering fails it at once."
        ),
    )


class Bootstrap(ApiModel):
    """Confidence intervals on per-arm means."""

    samples: int = Field(default=1000, ge=100, le=100000, description="Bootstrap resamples.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Interval level.")
    seed: int = Field(default=0, description="Resampling seed.")


class Comparison(ApiModel):
    """Paired tests between arms, question by question (every arm answers the same questions)."""

    significance_level: float = Field(
        default=0.05,
        gt=0.0,
        lt=0.5,
        description=(
            "A difference counts (and a winner is named) only when its paired test's p-value is "
            "below this level."
        ),
    )
    permutations: int = Field(
        default=10000,
        ge=100,
        le=1000000,
        description=(
            "Random sign flips of the per-question differences in the paired permutation test; "
            "the test is exact (all 2^n flips) when 2^n is not larger."
        ),
    )


class EvaluationSpec(ApiModel):
    """Which arms answer which held-out questions, and how answers are scored."""

    model_config = cel_rules(
        cel(
            "self.arms.all(a, self.arms.filter(b, b.name == a.name).size() == 1)",
            "arm names must be unique",
            ".arms",
        ),
        cel(
            "!self.metrics.exists(m, m in ['accuracy', 'relevance', 'faithfulness'])"
            " || has(self.judge)",
            "judge metrics (accuracy, relevance, faithfulness) need spec.judge",
            ".judge",
        ),
        cel(
            "self.primaryMetric in self.metrics",
            "primaryMetric must be one of metrics",
            ".primaryMetric",
        ),
    )

    dataset: DatasetInput = Field(description="Eval data (the eval split of a dataset).")
    split: Literal["documents", "closed-book"] = Field(
        default="documents",
        description=(
            "Which held-out questions to score: documents (eval.jsonl, about documents no arm "
            "trained on: generalisation) or closed-book (eval_closed_book.jsonl, about documents "
            "the tuned arms trained on: knowledge injection). The dataset must have made it "
            "(DatasetGeneration spec.split.purposes)."
        ),
    )
    arms: list[Arm] = Field(
        description="Contestants; the first is the baseline.", min_length=1, max_length=32
    )
    metrics: list[Metric] = Field(
        default_factory=lambda: [*TEXT_METRICS, "accuracy", "relevance"],
        description="Metrics to compute; judge metrics need spec.judge.",
        min_length=1,
        max_length=7,  # bounds the CEL rules' cost estimate; there are 7 metrics
    )
    primary_metric: Metric = Field(default="rouge", description="Metric that ranks the arms.")
    generation: Generation = Field(default_factory=Generation, description="How arms answer.")
    retrieval: Retrieval = Field(default_factory=Retrieval, description="Index for RAG arms.")
    judge: Judge | None = Field(default=None, description="LLM judge for judge metrics.")
    bootstrap: Bootstrap = Field(default_factory=Bootstrap, description="Confidence intervals.")
    comparison: Comparison = Field(
        default_factory=Comparison,
        description="Paired significance tests of each arm against the baseline (and the winner).",
    )
    resources: Resources = Field(default_factory=Resources, description="Compute for the pod.")
    output: ArtifactOutput = Field(
        default_factory=ArtifactOutput, description="Where answers and scores are written."
    )
    tracking: Tracking = Field(
        default_factory=Tracking, description="Log per-arm scores to MLflow."
    )

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSpec:
        names = [a.name for a in self.arms]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"spec.arms: duplicate arm names {dupes}")
        if any(m in JUDGE_METRICS for m in self.metrics) and self.judge is None:
            raise ValueError("spec.metrics asks for judge metrics but spec.judge is not set")
        if self.primary_metric not in self.metrics:
            raise ValueError("spec.primaryMetric must be one of spec.metrics")
        return self


# --- what an Evaluation produces: summary.json, status.summary and `llmft report` read this --


class MetricSummary(ApiModel):
    """One arm's mean of one score, with its bootstrap confidence interval."""

    mean: float | None = Field(default=None, description="Mean over the scored items.")
    ci_low: float | None = Field(default=None, description="Lower end of the interval.")
    ci_high: float | None = Field(default=None, description="Upper end of the interval.")
    n: int = Field(default=0, ge=0, description="Items scored (missing scores are left out).")


class EndpointSummary(ApiModel):
    """The served model an endpoint arm asked (never its key)."""

    provider: str = Field(description="ollama or openai.")
    url: str = Field(description="Base URL of the endpoint.")
    model: str = Field(description="Model name the endpoint serves.")


class PairedDifference(ApiModel):
    """One arm minus another, question by question, over the questions both have a score for."""

    delta: float | None = Field(default=None, description="Mean of the per-question differences.")
    ci_low: float | None = Field(default=None, description="Bootstrap interval, lower end.")
    ci_high: float | None = Field(default=None, description="Bootstrap interval, upper end.")
    p_value: float | None = Field(
        default=None, description="Two-sided paired permutation test (sign flips) of delta = 0."
    )
    n: int = Field(default=0, ge=0, description="Questions paired.")
    differing: int = Field(default=0, ge=0, description="Paired questions whose scores differ.")
    significant: bool = Field(
        default=False, description="p-value below spec.comparison.significanceLevel."
    )


class Verdict(PairedDifference):
    """Whether the best arm is significantly better than the runner-up, and why (not)."""

    winner: str | None = Field(default=None, description="The best arm, when significant.")
    best: str = Field(description="Best arm by the primary metric's mean.")
    runner_up: str | None = Field(default=None, description="Second-best arm.")
    metric: str = Field(description="The primary score key compared.")
    significance_level: float = Field(description="The level a p-value must be below.")
    reason: str = Field(description="The verdict in words: winner, or why there is none.")


class SplitSummary(ApiModel):
    """Which held-out questions were scored."""

    name: Literal["documents", "closed-book"] = Field(description="spec.split.")
    file: str = Field(description="The eval file read from the dataset.")
    meaning: str = Field(description="What the split measures.")


class SampleSummary(ApiModel):
    """How generation.maxItems drew the questions."""

    of: int = Field(ge=0, description="Questions in the split.")
    max_items: int = Field(ge=1, description="Questions drawn.")
    seed: int = Field(description="Sampling seed.")
    stratified_by: str = Field(description="What each stratum is.")


class JudgeBudget(ApiModel):
    """Judge scores asked for and missing, against spec.judge.maxMissingShare."""

    judge_scores: int = Field(ge=0, description="Judge scores asked for.")
    judge_missing: int = Field(ge=0, description="Of which missing (unusable judge output).")
    judge_missing_share: float = Field(ge=0, le=1, description="Missing share.")
    degraded: str | None = Field(default=None, description="Why the Evaluation is Degraded.")


class ArmSummary(ApiModel):
    """One arm's line in the comparison."""

    name: str = Field(description="Arm name.")
    base_model: str = Field(default="", description="Base model the arm answered with.")
    adapter: str | None = Field(default=None, description="Adapter applied, if any.")
    rag: bool = Field(default=False, description="Whether retrieved context was in the prompt.")
    n: int | None = Field(default=None, ge=0, description="Questions answered.")
    retrieval_hit_rate: float | None = Field(
        default=None, description="Share of questions whose gold chunk was retrieved (RAG arms)."
    )
    metrics: dict[str, MetricSummary] = Field(
        default_factory=dict, description="Score key (bleu, rougeL, ...) -> mean and interval."
    )
    delta: dict[str, float | None] = Field(
        default_factory=dict, description="Score key -> this arm's mean minus the baseline's."
    )
    generation_seconds: float | None = Field(default=None, description="Seconds spent answering.")
    items_per_second: float | None = Field(default=None, description="Answering throughput.")
    endpoint: EndpointSummary | None = Field(
        default=None, description="The served model, for an endpoint arm."
    )
    base_precision: Literal["4bit", "full"] | None = Field(
        default=None, description="How the local base model was loaded."
    )
    comparison: dict[str, PairedDifference] | None = Field(
        default=None,
        description="Score key -> paired difference from the baseline (none for the baseline).",
    )

    @field_validator("base_model", mode="before")
    @classmethod
    def _model_name(cls, value: object) -> object:
        # An older summary wrote the whole ModelSource; its name (and GGUF file) is what counts.
        if isinstance(value, dict):
            name, gguf = str(value.get("name", "")), value.get("ggufFile")
            return f"{name} ({gguf})" if gguf else name
        return "" if value is None else value


class EvaluationSummary(ApiModel):
    """The comparison an Evaluation produces: per-arm scores, deltas, ranking and winner.

    Written by the evaluator to summary.json and to status.summary, read by `llmft report`.
    """

    primary_metric: str = Field(
        description="Score key that ranks the arms (rouge ranks by rougeL)."
    )
    baseline: str | None = Field(default=None, description="The first arm; deltas are against it.")
    winner: str | None = Field(
        default=None,
        description="Best arm by the primary metric, when significantly better than the runner-up.",
    )
    ranking: list[str] = Field(default_factory=list, description="Arms, best first.")
    arms: list[ArmSummary] = Field(min_length=1, description="Every arm's scores.")
    items: int | None = Field(default=None, ge=0, description="Questions asked.")
    retrieval_backend: str | None = Field(
        default=None, description="Where RAG context came from: weaviate or embedded."
    )
    verdict: Verdict | None = Field(default=None, description="Winner, or why there is none.")
    comparison_test: str | None = Field(default=None, description="The paired test used.")
    split: SplitSummary | None = Field(default=None, description="Which questions were scored.")
    sample: SampleSummary | None = Field(default=None, description="The maxItems sample.")
    judge: JudgeBudget | None = Field(default=None, description="Judge scores missing.")
    degraded: str | None = Field(default=None, description="Why the result is Degraded.")


class EvaluationStatus(ResourceStatus):
    """An Evaluation's status: the common fields plus the whole comparison."""

    summary: EvaluationSummary | None = Field(
        default=None, description="The comparison (as in summary.json), written by the evaluator."
    )
    models: dict[str, ChatFormatStatus] = Field(
        default_factory=dict,
        description="Per arm name: the model family and chat rules the evaluator applied.",
    )


def summary_notes(
    spec: EvaluationSpec, summary: Mapping[str, Any], metrics: Mapping[str, Any]
) -> list[str]:
    """What `llmft run` prints after an Evaluation, from its summary.json: where the context
    came from, which split was scored, the verdict and any caveat."""
    notes: list[str] = []
    if summary.get("retrievalBackend") == "embedded":
        notes.append("retrieval: in-process vector store (no Weaviate answered)")
    elif summary.get("retrievalBackend"):
        notes.append(f"retrieval: {summary['retrievalBackend']}")
    split = summary.get("split") or {}
    if split.get("name"):
        notes.append(f"scored the {split['name']} split: {split.get('meaning', '')}".rstrip(": "))
    verdict = (summary.get("verdict") or {}).get("reason") or metrics.get("verdict")
    if verdict:
        notes.append(verdict)
    if summary.get("degraded"):
        notes.append(f"degraded: {summary['degraded']}")
    notes.append("see the comparison with `llmft report`")
    return notes
