"""DatasetGeneration: documents in, instruction pairs and a causal corpus out, written by an LLM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from llmft.api.common import (
    FREE_TEXT_LIMIT,
    ApiModel,
    ArtifactOutput,
    ClusterDefault,
    ClusterSource,
    ContainedPath,
    InputPath,
    ModelSource,
    ObjectName,
    Quantity,
    Resources,
    cel,
    cel_rules,
)
from llmft.api.layout import CONFIGMAP_DOCUMENTS_MOUNT, PVC_DOCUMENTS_MOUNT

QuestionKind = Literal["factual", "procedural", "yesno", "multihop"]
ALL_QUESTION_KINDS: tuple[QuestionKind, ...] = ("factual", "procedural", "yesno", "multihop")


class PvcSource(ApiModel):
    """Documents on a PersistentVolumeClaim."""

    claim_name: Annotated[
        ObjectName, ClusterSource("PersistentVolumeClaim", PVC_DOCUMENTS_MOUNT)
    ] = Field(description="Name of the PersistentVolumeClaim.")
    path: ContainedPath = Field(
        default="", description="Directory inside the volume (no '..' segments)."
    )


class DocumentSource(ApiModel):
    """Where the documents come from: exactly one of configMap, pvc, urls or path."""

    model_config = cel_rules(
        cel(
            "(has(self.configMap) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + (has(self.urls) ? 1 : 0)"
            " + (has(self.path) ? 1 : 0) == 1",
            "set exactly one of configMap, pvc, urls, path",
        )
    )

    config_map: Annotated[str | None, ClusterSource("ConfigMap", CONFIGMAP_DOCUMENTS_MOUNT)] = (
        Field(
            default=None, description="ConfigMap whose keys are document files (name -> content)."
        )
    )
    pvc: PvcSource | None = Field(default=None, description="Directory on a PVC.")
    urls: list[Annotated[str, Field(max_length=2048)]] | None = Field(
        default=None,
        description="HTTP(S) URLs of documents to fetch.",
        min_length=1,
        max_length=256,
    )
    path: Annotated[str | None, InputPath()] = Field(
        default=None,
        description="Local directory or file (the local runner; relative to the manifest).",
    )
    include: list[str] = Field(
        default_factory=lambda: ["**/*.md", "**/*.txt", "**/*.html", "**/*.htm", "**/*.pdf"],
        description="Glob patterns of files to ingest from a directory.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DocumentSource:
        given = [n for n in ("config_map", "pvc", "urls", "path") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "spec.source: set exactly one of configMap, pvc, urls, path "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class Chunking(ApiModel):
    """How documents are cut: by headings first, then by a token budget with overlap."""

    model_config = cel_rules(
        cel(
            "self.overlapTokens < self.maxTokens",
            "overlapTokens must be smaller than maxTokens",
            ".overlapTokens",
        )
    )

    max_tokens: int = Field(default=384, ge=32, le=8192, description="Token budget per chunk.")
    overlap_tokens: int = Field(
        default=48, ge=0, le=2048, description="Tokens shared by neighbouring chunks."
    )
    min_tokens: int = Field(
        default=24, ge=1, description="Chunks shorter than this (near-empty) are skipped."
    )

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> Chunking:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("spec.chunking.overlapTokens must be smaller than maxTokens")
        return self


class Generator(ApiModel):
    """The LLM served by Ollama that writes question/answer pairs."""

    backend: Literal["ollama", "transformers", "auto"] = Field(
        default="ollama",
        description=(
            "ollama: the Ollama server; transformers: localModel in-process with the same "
            "prompts; auto: Ollama if it answers, else in-process."
        ),
    )
    local_model: ModelSource | None = Field(
        default=None, description="Model for the transformers backend (and auto's fallback)."
    )
    ollama_host: Annotated[str, ClusterDefault("ollama_host")] = Field(
        default="http://ollama:11434",
        description=(
            "Base URL of the Ollama server; unset: the cluster's Ollama (Helm), else "
            "http://ollama:11434."
        ),
    )
    model: str = Field(default="llama3:8b", description="Model name on the Ollama server.")
    system_prompt: str | None = Field(
        default=None,
        description="System prompt; empty uses llmft's built-in prompt.",
        max_length=FREE_TEXT_LIMIT,
    )
    prompt_template: str | None = Field(
        default=None,
        description=(
            "User prompt template; placeholders {context}, {neighbour_context}, "
            "{num_questions}, {kinds}. Empty uses the built-in template."
        ),
        max_length=FREE_TEXT_LIMIT,
    )
    questions_per_chunk: int = Field(default=3, ge=1, le=20, description="Pairs asked per chunk.")
    question_kinds: list[QuestionKind] = Field(
        default_factory=lambda: list(ALL_QUESTION_KINDS),
        description="Kinds of question to ask for, rotated across chunks.",
        min_length=1,
    )
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight at once.")
    max_retries: int = Field(default=3, ge=0, le=10, description="Retries on server errors.")
    timeout_seconds: float = Field(default=300, gt=0, description="Per-request timeout.")
    num_predict: int = Field(default=768, ge=16, description="Max tokens the model may write.")
    seed: int | None = Field(default=None, description="Generation seed, for reproducibility.")


class Quality(ApiModel):
    """Filters applied to generated pairs."""

    min_answer_support: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of the answer's content words that must appear in the chunk(s).",
    )
    near_duplicate_threshold: float = Field(
        default=0.85,
        ge=0.0,
        le=1.0,
        description="Question similarity (Jaccard of word 3-grams) above which pairs are dropped.",
    )
    min_answer_chars: int = Field(default=2, ge=1, description="Shorter answers are dropped.")


SplitPurpose = Literal["documents", "closed-book"]


def _documents_only() -> list[SplitPurpose]:
    return ["documents"]


class Split(ApiModel):
    """Which held-out questions to make: unseen documents, closed-book questions, or both."""

    model_config = cel_rules(
        cel(
            "self.purposes.all(p, self.purposes.filter(q, q == p).size() == 1)",
            "purposes must not repeat",
            ".purposes",
        )
    )

    purposes: list[SplitPurpose] = Field(
        default_factory=_documents_only,
        min_length=1,
        max_length=2,
        description=(
            "documents: eval.jsonl asks about documents held out of all training "
            "(generalisation to unseen documents); closed-book: eval_closed_book.jsonl asks "
            "about documents the model trains on, with those questions and their paraphrases "
            "kept out of train.jsonl (knowledge injection). Both can be made at once."
        ),
    )
    eval_fraction: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Share of chunks held out (documents split)."
    )
    closed_book_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description=(
            "Share of the training documents' pairs held out as closed-book questions "
            "(drawn with seed, stratified by source document)."
        ),
    )
    paraphrase_threshold: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description=(
            "A training pair whose question shares at least this share of content words with "
            "a closed-book question (Jaccard), or that gives the same answer from the same "
            "chunk, is a paraphrase and is left out of training."
        ),
    )
    seed: int = Field(default=42, description="Shuffle seed; the same seed gives the same split.")
    group_chunks: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Neighbouring chunks of a document that move to the same side of the split together; "
            "multi-hop questions only pair chunks of one group, so none spans the split."
        ),
    )

    @model_validator(mode="after")
    def _unique_purposes(self) -> Split:
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError(f"spec.split.purposes: {self.purposes} repeats a purpose")
        return self


class GenerationResources(Resources):
    """Compute for the generation pod: the LLM runs in Ollama, so no GPU unless asked for."""

    gpu_count: int = Field(default=0, ge=0, le=16, description="GPUs per pod (nvidia.com/gpu).")
    cpu: Quantity = Field(
        default="2", description="CPU request and limit, as a Kubernetes quantity."
    )
    memory: Quantity = Field(default="4Gi", description="Memory request and limit (quantity).")
    shared_memory: Quantity = Field(
        default="1Gi", description="Size of the /dev/shm memory volume."
    )


class DatasetGenerationSpec(ApiModel):
    """What dataset to generate, from which documents, with which model."""

    source: DocumentSource = Field(description="Where the documents come from.")
    chunking: Chunking = Field(default_factory=Chunking, description="How documents are cut.")
    generator: Generator = Field(default_factory=Generator, description="The generating LLM.")
    quality: Quality = Field(default_factory=Quality, description="Filters on generated pairs.")
    split: Split = Field(default_factory=Split, description="Train/eval split.")
    output: ArtifactOutput = Field(
        default_factory=ArtifactOutput, description="Where the dataset files are written."
    )
    resources: GenerationResources = Field(
        default_factory=GenerationResources,
        description=(
            "Compute for the generation pod (the LLM runs in Ollama, so no GPU by default)."
        ),
    )


def generator_notes(
    spec: DatasetGenerationSpec, manifest: Mapping[str, Any], metrics: Mapping[str, Any]
) -> list[str]:
    """Which generator wrote the pairs (from the dataset manifest), and why that one when the
    spec said `auto`: the line `llmft run` prints after a DatasetGeneration."""
    generator = manifest.get("generator") or {}
    backend, model = generator.get("backend"), generator.get("model")
    if not backend:
        return []
    asked = spec.generator
    if backend == "ollama":
        where = f"Ollama at {generator.get('ollamaHost') or asked.ollama_host}"
        why = " (it answered; spec.generator.backend auto)" if asked.backend == "auto" else ""
    else:
        where = f"in-process {backend}"
        why = (
            f" (no Ollama answered at {asked.ollama_host}; spec.generator.backend auto)"
            if asked.backend == "auto"
            else ""
        )
    return [f"generator: {where}, model {model}{why}"]
