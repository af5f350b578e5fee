"""FineTuneJob: QLoRA or LoRA fine-tuning of a base model (causal or instruct, RAG or not)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

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
    TrainerStatus,
    cel,
    cel_rules,
)
from llmft.api.layout import ENV_HF_TOKEN, ENV_WEAVIATE_API_KEY

Method = Literal["qlora", "lora"]
Mode = Literal["causal", "instruct"]
# auto: on where the fast path is known correct (and useful) on the device the job runs on.
Switch = Literal["auto", "on", "off"]


class DatasetInput(ApiModel):
    """The training data: a DatasetGeneration in this namespace, or a directory of its files."""

    model_config = cel_rules(
        cel(
            "has(self.datasetGenerationRef) != has(self.path)",
            "set exactly one of datasetGenerationRef, path",
        )
    )

    dataset_generation_ref: Annotated[str | None, Ref("DatasetGeneration", fills="path")] = Field(
        default=None, description="Name of a DatasetGeneration; the job waits until it succeeds."
    )
    path: Annotated[ContainedPathOrHub | None, InputPath()] = Field(
        default=None,
        description=(
            "Directory holding train.jsonl/eval.jsonl (and corpus files), no '..' segments; "
            "relative paths are on the artefact volume (locally: from the manifest's directory). "
            "Or a Hub dataset repository: hf://datasets/owner/name@revision[/folder]."
        ),
    )
    token_secret_ref: Annotated[SecretKeyRef | None, SecretEnv(ENV_HF_TOKEN)] = Field(
        default=None,
        description="Secret key holding a Hub token, for a private or gated Hub dataset (path).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetInput:
        if (self.dataset_generation_ref is None) == (self.path is None):
            raise ValueError("dataset: set exactly one of datasetGenerationRef, path")
        return self


class Retrieval(ApiModel):
    """The index RAG prompts retrieve from: the same shape (and the same code) for an
    Evaluation's RAG arms and a FineTuneJob's RAG training rows."""

    backend: Literal["weaviate", "embedded", "auto"] = Field(
        default="weaviate",
        description="weaviate: the Weaviate server; embedded: in-process; auto: Weaviate if up.",
    )
    weaviate_url: Annotated[str, ClusterDefault("weaviate_url")] = Field(
        default="http://weaviate:8080",
        description="Weaviate HTTP endpoint; unset: the cluster's Weaviate (Helm), else this.",
    )
    weaviate_grpc_port: int = Field(
        default=50051, ge=1, le=65535, description="Weaviate gRPC port."
    )
    collection: str | None = Field(
        default=None,
        description=(
            "Collection name; empty derives one from the resource's name (a FineTuneJob adds "
            "a Train suffix: it indexes the training chunks only)."
        ),
    )
    embedding_model: Annotated[str, ModelName()] = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="Sentence-embedding model (Hub id or local path) for chunks and questions.",
    )
    api_key_secret_ref: Annotated[
        SecretKeyRef | None, SecretEnv(ENV_WEAVIATE_API_KEY, "weaviate_url")
    ] = Field(default=None, description="Secret key with a Weaviate API key.")


class Rag(ApiModel):
    """Retrieved context in training prompts, built by the evaluator's code and settings."""

    enabled: bool = Field(default=False, description="Put retrieved context in the prompt.")
    top_k: int = Field(default=3, ge=1, le=20, description="Chunks of context per question.")
    context_source: Literal["retriever", "dataset"] = Field(
        default="retriever",
        description=(
            "retriever: top-k from `retrieval`, as an Evaluation's RAG arm gets it (the gold "
            "chunk only when retrieved); dataset: the pair's own context chunks (always gold)."
        ),
    )
    retrieval: Retrieval = Field(
        default_factory=Retrieval,
        description=(
            "The retriever, embedding model and backend; set it as the Evaluation's "
            "spec.retrieval so training and evaluation prompts match."
        ),
    )
    gold_probability: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "RAFT-style training (retriever source): the pair's gold chunk is in the context "
            "with this probability and left out otherwise, beside `distractors` retrieved "
            "non-gold chunks, so the model learns to use context and to ignore it. Empty: the "
            "plain top-k, exactly as evaluation retrieves."
        ),
    )
    distractors: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Non-gold chunks beside the gold one when goldProbability is set (topK - 1).",
    )


class Lora(ApiModel):
    """LoRA adapter shape."""

    r: int = Field(default=16, ge=1, le=512, description="Adapter rank.")
    alpha: int = Field(default=32, ge=1, description="Scaling numerator (alpha / r).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on adapter input.")
    target_modules: list[str] | None = Field(
        default=None,
        description=(
            "Module names to adapt, or [all-linear] for every linear layer; empty uses the "
            "model family's default."
        ),
        min_length=1,
    )


class HyperParameters(ApiModel):
    """Optimisation settings; the four shape fields default to the model family's A10 preset."""

    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate.")
    epochs: float = Field(default=3, gt=0, description="Passes over the data (if maxSteps unset).")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps.")
    batch_size: int | None = Field(
        default=None, ge=1, description="Per-device batch size; empty: the family's A10 preset."
    )
    gradient_accumulation_steps: int | None = Field(
        default=None, ge=1, description="Steps per update; empty: the family's A10 preset."
    )
    max_seq_length: int | None = Field(
        default=None,
        ge=16,
        le=131072,
        description="Tokens per sequence; empty: the family's A10 preset.",
    )
    max_truncated_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=(
            "Share of training rows that may be longer than maxSeqLength (truncated, or dropped "
            "when not one answer token fits) before the job fails; counts are in status."
        ),
    )
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Warm-up share of steps.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule."
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    optimizer: str = Field(default="adamw_torch", description="transformers optimizer name.")
    seed: int = Field(default=42, description="Seed for data order and adapter init.")
    gradient_checkpointing: bool | None = Field(
        default=None, description="Trade compute for memory; empty: the family's A10 preset."
    )
    packing: bool = Field(default=True, description="Pack causal sequences (causal mode).")
    lora: Lora = Field(default_factory=Lora, description="LoRA adapter shape.")
    eval_steps: int | None = Field(default=None, ge=1, description="Evaluate every N steps.")
    save_steps: int = Field(default=50, ge=1, description="Checkpoint every N steps.")
    save_total_limit: int = Field(default=3, ge=1, description="Checkpoints kept.")
    logging_steps: int = Field(default=5, ge=1, description="Log (and report) every N steps.")
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="Stop after N evaluations without eval-loss improvement."
    )


class Speed(ApiModel):
    """How the trainer runs fast without training anything else: each fast path is checked to
    give the plain path's loss; `auto` turns it on where that holds on the job's device. What
    each switch resolved to, and why, is in status.speed."""

    padding_free: Switch = Field(
        default="auto",
        description=(
            "Instruct: the micro-batch's rows concatenated into one row without padding, "
            "attention kept within each row by position ids (block-diagonal mask, or "
            "FlashAttention's variable-length kernel); checked on the loaded model at start. "
            "auto: on with flash_attention_2; off with sdpa/eager, which compute attention "
            "over the whole concatenated row (on: the same loss, more attention work)."
        ),
    )
    fused_kernels: Switch = Field(
        default="auto",
        description=(
            "Liger Kernel's fused RMSNorm, RoPE and SwiGLU/GeGLU (Triton, CUDA only) where the "
            "model's architecture has them (Llama, Mistral, Gemma, Qwen2; not Phi-2). auto: on "
            "on a GPU with liger-kernel installed; on: fail where they cannot run."
        ),
    )
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        default="auto",
        description=(
            "Attention implementation. auto: flash_attention_2 on a GPU with flash-attn "
            "installed and bf16/fp16 compute, else sdpa."
        ),
    )
    auto_batch_size: Switch = Field(
        default="auto",
        description=(
            "Keep batchSize x gradientAccumulationSteps (the effective batch) and use the "
            "largest micro-batch that divides it and fits the memory at maxSeqLength: measured "
            "with real probe steps on a GPU, from the memory estimate on a CPU. auto: on on a "
            "GPU. The result is in status.hyperparameters."
        ),
    )
    group_by_length: Switch = Field(
        default="auto",
        description=(
            "Instruct: draw each effective batch from rows of similar length (less padding). "
            "auto: on when batches are padded (paddingFree off), off otherwise."
        ),
    )


class TrainingTracking(Tracking):
    """Experiment trackers besides TensorBoard (always written)."""

    wandb_project: str | None = Field(default=None, description="Weights & Biases project.")


class OllamaServing(ApiModel):
    """Make the tuned model available in an Ollama server, under its own model name."""

    model_config = cel_rules(
        cel(
            "self.method != 'adapter' || has(self.base)",
            "method: adapter needs base (the Ollama model the adapter is applied to)",
            ".base",
        )
    )

    host: Annotated[str, ClusterDefault("ollama_host")] = Field(
        default="http://ollama:11434",
        description="Ollama server URL; unset: the cluster's Ollama (Helm), else http://ollama:11434.",
        pattern=r"^https?://",
    )
    model: str | None = Field(
        default=None,
        description="Name of the Ollama model to create (name[:tag]); empty uses the job's name.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9._-]+)?$",
        max_length=200,
    )
    method: Literal["adapter", "merged"] = Field(
        default="adapter",
        description=(
            "adapter: the base Ollama model plus the LoRA adapter (Ollama's ADAPTER, converted by "
            "Ollama; llama-architecture bases such as Llama 3 and Mistral 7B, and gemma2); "
            "merged: the adapter merged into the base and imported by Ollama as a whole model "
            "(architectures its safetensors importer knows, such as Gemma)."
        ),
    )
    base: str | None = Field(
        default=None,
        description=(
            "Ollama model holding the same base weights the adapter was trained on (e.g. "
            "llama3:8b-instruct-fp16); the tuned model keeps its template and parameters."
        ),
        min_length=1,
    )

    @model_validator(mode="after")
    def _adapter_needs_base(self) -> OllamaServing:
        if self.method == "adapter" and self.base is None:
            raise ValueError(
                "output.ollama.base: method adapter needs the Ollama model the adapter is "
                "applied to"
            )
        return self


class FineTuneOutput(ArtifactOutput):
    """Where the adapter goes; optionally a merged model, a Hub push and an Ollama model."""

    merge_adapter: bool = Field(
        default=False, description="Also save the base model with the adapter merged in."
    )
    ollama: OllamaServing | None = Field(
        default=None,
        description="Also create an Ollama model from the result, so it can be asked right away.",
    )


class FineTuneJobSpec(ApiModel):
    """A fine-tuning run: base model, data, method, mode, hyper-parameters, output."""

    model_config = cel_rules(
        cel(
            "!has(self.rag) || !has(self.rag.enabled) || !self.rag.enabled"
            " || self.mode == 'instruct'",
            "rag.enabled requires mode: instruct",
            ".rag.enabled",
        )
    )

    base_model: ModelSource = Field(description="The model to fine-tune.")
    dataset: DatasetInput = Field(description="Training data.")
    method: Method = Field(default="qlora", description="qlora (4-bit NF4 base) or lora.")
    mode: Mode = Field(
        default="instruct",
        description="causal: continued pre-training on the corpus; instruct: Q/A chat pairs.",
    )
    rag: Rag = Field(default_factory=Rag, description="Retrieved context in training prompts.")
    hyperparameters: HyperParameters = Field(
        default_factory=HyperParameters, description="Optimisation settings."
    )
    speed: Speed = Field(
        default_factory=Speed,
        description="Fast paths (padding-free batches, fused kernels, attention, batch sizing).",
    )
    resources: Resources = Field(default_factory=Resources, description="Compute for the pod.")
    output: FineTuneOutput = Field(
        default_factory=FineTuneOutput, description="Where the adapter is written and pushed."
    )
    tracking: TrainingTracking = Field(
        default_factory=TrainingTracking, description="Experiment trackers."
    )
    memory_check: Literal["enforce", "warn", "off"] = Field(
        default="enforce",
        description=(
            "Before loading weights, estimate the memory training needs (calibrated per model "
            "family) and refuse (enforce), log (warn) or skip (off) a run that would not fit."
        ),
    )

    @model_validator(mode="after")
    def _rag_needs_instruct(self) -> FineTuneJobSpec:
        if self.rag.enabled and self.mode != "instruct":
            raise ValueError("spec.rag.enabled requires spec.mode: instruct")
        return self


class FineTuneJobStatus(ResourceStatus):
    """A FineTuneJob's status: the common fields plus trainerStatus."""

    trainer_status: TrainerStatus | None = Field(
        default=None, description="Training progress in Kubeflow Trainer's trainerStatus shape."
    )
    model: ChatFormatStatus | None = Field(
        default=None, description="The model family and chat rules the trainer applied."
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="The batch shape the run used (spec values, else the family's A10 preset).",
    )
    speed: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "What each spec.speed switch resolved to on the job's device, and why; the micro-"
            "batch search's probes when autoBatchSize ran."
        ),
    )
