"""The trainable model: base model (4-bit NF4 for QLoRA) with a LoRA adapter on the named modules.

Before any weight is read, the architecture is built on the meta device to check the target
modules and to estimate the memory training needs, so a wrong module name or a model too big
for the GPU fails in seconds with a message that says what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.families import Family
from llmft.workloads import modeling
from llmft.workloads.entry import WorkloadError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("llmft.trainer.model")

ALL_LINEAR = "all-linear"
GiB = 1024**3
TARGETS_FIELD = "spec.hyperparameters.lora.targetModules"
# Module types PEFT's LoRA can wrap, by class name (bitsandbytes and transformers' Conv1D too).
LORA_MODULE_TYPES = {
    "Linear",
    "Linear4bit",
    "Linear8bitLt",
    "Conv1D",
    "Embedding",
    "Conv1d",
    "Conv2d",
}


def adaptable_modules(model: Any) -> dict[str, str]:
    """Full name -> class name of every module a LoRA adapter can wrap."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if name and type(module).__name__ in LORA_MODULE_TYPES
    }


def linear_layer_names(model: Any) -> list[str]:
    """The distinct short names of the model's linear layers (what `all-linear` adapts)."""
    output = model.get_output_embeddings()
    skip = {name for name, module in model.named_modules() if module is output}
    names = {
        name.rsplit(".", 1)[-1]
        for name, kind in adaptable_modules(model).items()
        if kind not in {"Embedding"} and name not in skip
    }
    return sorted(names)


def resolve_target_modules(model: Any, requested: list[str]) -> str | list[str]:
    """PEFT's `target_modules` for the spec: `all-linear`, or names checked against the model."""
    if ALL_LINEAR in requested:
        if len(requested) > 1:
            raise WorkloadError(f"{TARGETS_FIELD}: use [{ALL_LINEAR}] alone or a list of names")
        return ALL_LINEAR
    modules = adaptable_modules(model)
    # PEFT matches a name against the full module name or its dotted suffix.
    unknown = [
        target
        for target in requested
        if not any(full == target or full.endswith("." + target) for full in modules)
    ]
    if unknown:
        arch = type(model).__name__
        raise WorkloadError(
            f"{TARGETS_FIELD}: {', '.join(unknown)} not found in {arch}; its linear layers are "
            f"{', '.join(linear_layer_names(model))} (or use [{ALL_LINEAR}])"
        )
    return list(requested)


def _matched(model: Any, targets: str | list[str]) -> list[Any]:
    """The modules a LoRA adapter with these targets wraps."""
    output = model.get_output_embeddings()
    found = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if not name or kind not in LORA_MODULE_TYPES:
            continue
        if targets == ALL_LINEAR:
            if kind != "Embedding" and module is not output:
                found.append(module)
        elif any(name == t or name.endswith("." + t) for t in targets):
            found.append(module)
    return found


@dataclass(frozen=True)
class MemoryEstimate:
    """What training is expected to hold in memory at its peak, in bytes, by part."""

    weights: int
    adapter_and_optimizer: int
    activations: int
    runtime: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter_and_optimizer + self.activations + self.runtime

    def describe(self) -> str:
        return (
            f"about {self.total / GiB:.1f} GiB (weights {self.weights / GiB:.1f}, adapter and "
            f"optimizer {self.adapter_and_optimizer / GiB:.2f}, activations "
            f"{self.activations / GiB:.1f}, runtime {self.runtime / GiB:.1f})"
        )


def resolve_hyperparameters(spec: FineTuneJobSpec, family: Family) -> FineTuneJobSpec:
    """The spec with every unset shape field (batch, accumulation, length, checkpointing, LoRA
    targets) taken from the family's A10 preset for the spec's method."""
    hp = spec.hyperparameters
    preset = family.preset(spec.method)
    filled = hp.model_copy(
        update={
            "batch_size": hp.batch_size or preset.batch_size,
            "gradient_accumulation_steps": (
                hp.gradient_accumulation_steps or preset.gradient_accumulation_steps
            ),
            "max_seq_length": hp.max_seq_length or preset.max_seq_length,
            "gradient_checkpointing": (
                preset.gradient_checkpointing
                if hp.gradient_checkpointing is None
                else hp.gradient_checkpointing
            ),
            "lora": hp.lora.model_copy(
                update={"target_modules": hp.lora.target_modules or list(family.lora_targets)}
            ),
        }
    )
    return spec.model_copy(update={"hyperparameters": filled})


def shape(spec: FineTuneJobSpec) -> dict[str, Any]:
    """The resolved batch shape, as status shows it."""
    hp = spec.hyperparameters
    return {
        "batchSize": hp.batch_size,
        "gradientAccumulationSteps": hp.gradient_accumulation_steps,
        "maxSeqLength": hp.max_seq_length,
        "gradientCheckpointing": hp.gradient_checkpointing,
        "targetModules": hp.lora.target_modules,
    }


def estimate_training_memory(
    model: Any,
    spec: FineTuneJobSpec,
    dtype_bytes: int,
    device: str,
    mlp_activations: float = 3.0,
) -> MemoryEstimate:
    """A deliberately modest estimate (real peaks are higher), so only hopeless runs are refused.

    `spec` must be resolved (`resolve_hyperparameters`); `mlp_activations` is the family's
    calibration of the MLP's activation tensors per token (3 for gated MLPs, 2 for Phi's).
    """
    hp = spec.hyperparameters
    assert hp.batch_size and hp.max_seq_length and hp.lora.target_modules
    params = {id(p): p.numel() for p in model.parameters()}
    total = sum(params.values())
    linear_ids = {id(m.weight) for m in _matched(model, ALL_LINEAR) if hasattr(m, "weight")}
    linear = sum(n for pid, n in params.items() if pid in linear_ids)
    if spec.method == "qlora":
        # NF4 packs two weights a byte (+ ~3% for double-quantised scales); the rest (embeddings,
        # norms) is cast to fp32 by prepare_model_for_kbit_training.
        weights = int(linear * 0.53) + (total - linear) * 4
    else:
        weights = total * dtype_bytes
    targets = resolve_target_modules(model, hp.lora.target_modules)
    r = hp.lora.r
    adapter = 0
    for module in _matched(model, targets):
        shape = getattr(getattr(module, "weight", None), "shape", None)
        if shape is not None and len(shape) >= 2:
            adapter += r * (int(shape[0]) + int(shape[1]))
    # fp32 weight + gradient + two Adam moments per adapter parameter
    adapter_bytes = adapter * 16
    config = model.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    inter = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    tokens = hp.batch_size * hp.max_seq_length
    per_layer = int(tokens * (10 * hidden + mlp_activations * inter) * dtype_bytes)
    if hp.gradient_checkpointing:
        # layer inputs kept, one layer recomputed at a time
        acts = layers * tokens * hidden * dtype_bytes + per_layer
    else:
        acts = layers * per_layer
    # logits and their gradient, upcast to fp32 for the loss
    acts += tokens * vocab * (dtype_bytes + 8)
    runtime = int(1.0 * GiB) if device.startswith("cuda") else int(0.5 * GiB)
    return MemoryEstimate(weights, adapter_bytes, acts, runtime)


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def available_memory(device: str) -> tuple[int, str]:
    """Free bytes where the model will live, and a phrase naming that place."""
    if device.startswith("cuda"):
        import torch

        index = torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        return free, f"GPU {index} ({name}) has {free / GiB:.1f} GiB free of {total / GiB:.1f}"
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = _cgroup_limit()
    if available is None and limit is None:
        return 1 << 62, "memory is unknown"
    free = min(x for x in (available, limit) if x is not None)
    return free, f"this machine has {free / GiB:.1f} GiB of memory available"


def check_fits(estimate: MemoryEstimate, free: int, where: str, spec: FineTuneJobSpec) -> None:
    """Refuse a run whose estimate exceeds the free memory, saying how much it needed."""
    if estimate.total <= free:
        return
    hints = []
    if spec.method == "lora":
        hints.append("method: qlora")
    hp = spec.hyperparameters
    if not hp.gradient_checkpointing:
        hints.append("gradientCheckpointing: true")
    hints.append("a smaller batchSize or maxSeqLength")
    hints.append("a GPU with more memory (spec.resources.gpuProduct)")
    hints.append("or memoryCheck: warn to try anyway")
    raise WorkloadError(
        f"spec.baseModel: {spec.base_model.name} with method {spec.method} needs "
        f"{estimate.describe()}, but {where}; try {', '.join(hints)}"
    )


@dataclass
class TrainableModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    estimate: MemoryEstimate
    target_modules: str | list[str]
    dtype: torch.dtype
    device: str
    # Memory free before the weights loaded, and the estimate at another micro-batch (bytes):
    # what the micro-batch search uses where no GPU can be probed.
    free_bytes: int = 0
    estimate_at: Callable[[int], int] = field(default=lambda micro: 0)


def build_trainable_model(
    spec: FineTuneJobSpec,
    tokenizer: PreTrainedTokenizerBase,
    family: Family,
    device: str | None = None,
    *,
    attn_implementation: str | None = None,
    fused_kernels: bool = False,
) -> TrainableModel:
    """Check, then load the base model and wrap it in a fresh LoRA adapter.

    `spec` is resolved (family presets filled in); `tokenizer` is the chat format's. With
    `fused_kernels`, Liger's kernels are patched in before the adapter wraps the layers.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    device = device or modeling.best_device()
    dtype = modeling.compute_dtype(device)
    dtype_bytes = 2 if str(dtype) in ("torch.bfloat16", "torch.float16") else 4
    hp = spec.hyperparameters
    assert hp.lora.target_modules is not None
    quantize = spec.method == "qlora"
    if quantize:
        try:
            modeling.check_4bit_support(device)
        except WorkloadError as err:
            raise WorkloadError(f"spec.{err}") from None
    skeleton = modeling.meta_model(spec.base_model)
    targets = resolve_target_modules(skeleton, hp.lora.target_modules)
    estimate = estimate_training_memory(
        skeleton, spec, dtype_bytes, device, mlp_activations=family.mlp_activations
    )
    free, where = available_memory(device)
    log.info("memory: training needs %s; %s", estimate.describe(), where)
    if spec.memory_check == "enforce":
        check_fits(estimate, free, where, spec)
    elif spec.memory_check == "warn" and estimate.total > free:
        log.warning("memory: the estimate exceeds what is free (memoryCheck: warn; going on)")

    def estimate_at(micro_batch: int) -> int:
        resized = spec.hyperparameters.model_copy(update={"batch_size": micro_batch})
        at = spec.model_copy(update={"hyperparameters": resized})
        return estimate_training_memory(
            skeleton, at, dtype_bytes, device, mlp_activations=family.mlp_activations
        ).total

    model, tokenizer = modeling.load_base_model(
        spec.base_model,
        quantize,
        dtype=dtype,
        tokenizer=tokenizer,
        attn_implementation=attn_implementation,
    )
    if fused_kernels:
        from llmft.workloads.trainer.speed import apply_fused_kernels

        apply_fused_kernels(model)
    # The KV cache is useless in training and clashes with gradient checkpointing.
    model.config.use_cache = False
    if quantize:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(hp.gradient_checkpointing),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=hp.lora.r,
        lora_alpha=hp.lora.alpha,
        lora_dropout=hp.lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info("LoRA on %s: %d trainable of %d parameters", targets, trainable, total)
    return TrainableModel(
        peft_model, tokenizer, estimate, targets, dtype, device, free, estimate_at
    )
