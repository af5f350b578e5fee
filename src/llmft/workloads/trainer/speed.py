"""The trainer's fast paths, each taken only where it trains what the plain path trains.

`resolve_speed` turns `spec.speed` into a plan for the job's device (attention implementation,
padding-free rows, Liger's fused kernels, length-grouped sampling, micro-batch sizing), each
choice with the reason status shows. Two choices are checked on the loaded model before the
first step: padding-free rows must not attend to each other (`attention_leak`), and the
micro-batch is the largest that fits the memory at maxSeqLength (`largest_micro_batch`, a pure
search fed by real probe steps on a GPU or by the memory estimate on a CPU).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.families import Family
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.trainer.speed")

GiB = 1024**3
FIELD = "spec.speed"
# Attention implementations whose masks keep concatenated rows apart: sdpa and eager build a
# block-diagonal mask from the restarting position ids (transformers' packed-sequence detection,
# when no KV cache is built), flash_attention_2 uses the rows' cumulative lengths.
ROW_SEPARATING_ATTENTION = ("sdpa", "eager", "flash_attention_2")
# A concatenated row may change the next row's logits by at most this share of what changing
# the row itself does (0 with an exact mask; a leak is of the order of 0.1 to 1).
LEAK_TOLERANCE = 1e-2
# Share of the GPU's memory (under the process's cap) a probed micro-batch may reach: the rest
# is left to the allocator's fragmentation and to evaluation.
GPU_HEADROOM = 0.9


@dataclass(frozen=True)
class Choice:
    """One switch as resolved for this job: on or off (or the implementation), and why."""

    on: bool
    reason: str
    value: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": self.on, "reason": self.reason}
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass
class SpeedPlan:
    """Every fast path's resolution for the job's device; `batch` once the search has run."""

    attention: Choice
    padding_free: Choice
    fused_kernels: Choice
    group_by_length: Choice
    auto_batch_size: Choice
    batch: BatchSearch | None = None

    @property
    def attn_implementation(self) -> str:
        assert self.attention.value is not None
        return self.attention.value

    def to_status(self) -> dict[str, Any]:
        out = {
            "attention": self.attention.to_json(),
            "paddingFree": self.padding_free.to_json(),
            "fusedKernels": self.fused_kernels.to_json(),
            "groupByLength": self.group_by_length.to_json(),
            "autoBatchSize": self.auto_batch_size.to_json(),
        }
        if self.batch is not None:
            out["autoBatchSize"] |= self.batch.to_json()
        return out


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_attention(requested: str, device: str, half_precision: bool) -> Choice:
    """flash_attention_2 where it can run and was not refused, else SDPA (or what was asked)."""
    cuda = device.startswith("cuda")
    if requested == "flash_attention_2":
        if not (cuda and half_precision and _installed("flash_attn")):
            raise WorkloadError(
                f"{FIELD}.attention: flash_attention_2 needs a GPU computing in bf16 or fp16 and "
                f"the flash-attn package (device {device}, flash-attn "
                f"{'installed' if _installed('flash_attn') else 'not installed'}); use auto or sdpa"
            )
        return Choice(True, "asked for", "flash_attention_2")
    if requested != "auto":
        return Choice(True, "asked for", requested)
    if cuda and half_precision and _installed("flash_attn"):
        return Choice(True, "auto: a GPU with flash-attn installed", "flash_attention_2")
    why = "flash-attn is not installed" if cuda else "no GPU (FlashAttention needs CUDA)"
    return Choice(True, f"auto: {why}; PyTorch's scaled-dot-product attention", "sdpa")


def liger_model_types() -> set[str]:
    """The config.json model types Liger Kernel can patch (imports Triton: call on a GPU)."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return set(MODEL_TYPE_TO_APPLY_LIGER_FN)


def resolve_fused_kernels(
    requested: str, device: str, family: Family, model_type: str | None
) -> Choice:
    """Liger's kernels on a GPU, for architectures it has them for; off (and why) elsewhere."""
    if requested == "off":
        return Choice(False, "off in the spec")
    reason = None
    if not device.startswith("cuda"):
        reason = "no GPU: Liger Kernel's Triton kernels run on CUDA only"
    elif not family.fused_kernels:
        reason = f"the {family.name} family's architecture has no Liger kernels"
    elif not _installed("liger_kernel"):
        reason = "liger-kernel is not installed"
    elif model_type not in liger_model_types():
        reason = f"Liger Kernel has no kernels for model type {model_type!r}"
    if reason is None:
        return Choice(True, f"{requested}: RMSNorm, RoPE and the gated MLP fused ({model_type})")
    if requested == "on":
        raise WorkloadError(f"{FIELD}.fusedKernels: on, but {reason}; use auto or off")
    return Choice(False, f"auto: {reason}")


def resolve_speed(
    spec: FineTuneJobSpec,
    family: Family,
    device: str,
    half_precision: bool,
    model_type: str | None,
) -> SpeedPlan:
    """What each `spec.speed` switch means for this job on `device` (`spec` resolved)."""
    speed, hp = spec.speed, spec.hyperparameters
    attention = resolve_attention(speed.attention, device, half_precision)
    impl = attention.value
    if spec.mode == "causal":
        padding_free = (
            Choice(True, "causal: packed rows (hyperparameters.packing), documents kept apart")
            if hp.packing
            else Choice(False, "causal: hyperparameters.packing is off")
        )
    elif speed.padding_free == "off":
        padding_free = Choice(False, "off in the spec")
    elif impl not in ROW_SEPARATING_ATTENTION:  # pragma: no cover - all offered ones do
        padding_free = Choice(False, f"{impl} cannot keep concatenated rows apart")
    elif speed.padding_free == "on":
        padding_free = Choice(True, f"on: {impl} keeps the rows apart")
    elif impl == "flash_attention_2":
        padding_free = Choice(True, "auto: FlashAttention's varlen kernel, no work across rows")
    else:
        # The block-diagonal mask keeps the loss exact, but sdpa and eager still compute the
        # whole (micro-batch x length)^2 score matrix: more attention work than padding saves
        # once micro-batches grow. Length-grouped padded batches save most of the padding.
        padding_free = Choice(
            False,
            f"auto: {impl} would score the whole concatenated micro-batch (quadratic in its "
            "tokens); padded batches grouped by length instead (on: exact as well)",
        )
    fused = resolve_fused_kernels(speed.fused_kernels, device, family, model_type)
    padded = not padding_free.on
    if speed.group_by_length == "off":
        grouped = Choice(False, "off in the spec")
    elif speed.group_by_length == "on":
        grouped = Choice(True, "on in the spec")
    elif padded:
        grouped = Choice(True, "auto: padded batches waste less on rows of similar length")
    else:
        grouped = Choice(False, "auto: batches have no padding to save")
    cuda = device.startswith("cuda")
    if speed.auto_batch_size == "off":
        auto_batch = Choice(False, "off in the spec")
    elif cuda:
        auto_batch = Choice(True, f"{speed.auto_batch_size}: measured with probe steps")
    elif speed.auto_batch_size == "on":
        auto_batch = Choice(True, "on: no GPU, sized from the memory estimate")
    else:
        auto_batch = Choice(False, "auto: no GPU; the spec's (or the family preset's) batch shape")
    return SpeedPlan(attention, padding_free, fused, grouped, auto_batch)


def apply_fused_kernels(model: Any) -> None:
    """Patch Liger's layer kernels into the model (before LoRA wraps it). The loss is trl's own
    chunked LM head, so Liger's fused linear cross-entropy stays off."""
    from transformers.integrations.liger import apply_liger_kernel

    apply_liger_kernel(model, {"fused_linear_cross_entropy": False, "cross_entropy": False})


# --- padding-free rows must not see each other ------------------------------------------------


def attention_leak(model: Any, pad_token_id: int) -> float:
    """How much a concatenated row's logits change when the row before it changes, as a share
    of how much that row's own logits change: 0 when the attention keeps rows apart.

    The rows go through trl's padding-free collator and the model's forward, as in training.
    """
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    vocab = int(model.get_input_embeddings().weight.shape[0])
    gen = torch.Generator().manual_seed(0)

    def row(n: int) -> list[int]:
        return [int(t) for t in torch.randint(1, vocab, (n,), generator=gen)]

    first, other, second = row(9), row(9), row(7)
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)
    device = next(p.device for p in model.parameters())

    def logits(rows: list[list[int]]) -> Any:
        batch = collate([{"input_ids": r} for r in rows])
        batch.pop("labels")
        inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        return model(**inputs, use_cache=False).logits[0].float()

    was_training = model.training
    model.eval()
    # A bitsandbytes 4-bit layer run in eval mode on a CPU repacks its weights for inference,
    # and training cannot use them afterwards ("a view of a leaf Variable ... in-place"): those
    # layers (no dropout of their own) stay in training mode while the rest is measured in eval.
    for module in model.modules():
        if type(module).__module__.startswith("bitsandbytes"):
            module.train()
    try:
        with torch.no_grad():
            a, b = logits([first, second]), logits([other, second])
    finally:
        model.train(was_training)
    n = len(first)
    own = float((a[:n] - b[:n]).abs().max())
    leak = float((a[n:] - b[n:]).abs().max())
    return leak / own if own > 0 else 0.0


def check_rows_stay_apart(plan: SpeedPlan, model: Any, pad_token_id: int, spec: Any) -> None:
    """Measure the leak on the loaded model; padding-free (or packing) that leaks is turned off
    (auto) or refused (on, and causal packing), never trained."""
    if not plan.padding_free.on:
        return
    leak = attention_leak(model, pad_token_id)
    impl = plan.attn_implementation
    if leak <= LEAK_TOLERANCE:
        log.info("padding-free rows stay apart with %s (leak %.2g)", impl, leak)
        return
    what = f"concatenated rows attend to each other with {impl} (leak {leak:.3f})"
    if spec.mode == "causal":
        raise WorkloadError(
            f"spec.hyperparameters.packing: {what}; set packing: false or another {FIELD}.attention"
        )
    if spec.speed.padding_free == "on":
        raise WorkloadError(f"{FIELD}.paddingFree: on, but {what}; use auto or off")
    log.warning("padding-free turned off: %s", what)
    plan.padding_free = Choice(False, f"auto: turned off, {what}")
    if spec.speed.group_by_length == "auto":
        plan.group_by_length = Choice(True, "auto: padded batches waste less on similar lengths")


# --- the micro-batch from the memory budget --------------------------------------------------


@dataclass(frozen=True)
class Probe:
    micro_batch: int
    peak_bytes: int | None  # None: out of memory
    fits: bool

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"microBatch": self.micro_batch, "fits": self.fits}
        if self.peak_bytes is not None:
            out["peakGiB"] = round(self.peak_bytes / GiB, 3)
        return out


@dataclass(frozen=True)
class BatchSearch:
    """The chosen micro-batch and accumulation (their product the effective batch), and the
    probes that chose them."""

    effective_batch: int
    micro_batch: int
    gradient_accumulation_steps: int
    budget_bytes: int
    method: str  # "probe" (measured) or "estimate"
    probes: list[Probe] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return any(p.fits and p.micro_batch == self.micro_batch for p in self.probes)

    def to_json(self) -> dict[str, Any]:
        return {
            "microBatch": self.micro_batch,
            "gradientAccumulationSteps": self.gradient_accumulation_steps,
            "effectiveBatch": self.effective_batch,
            "method": self.method,
            "budgetGiB": round(self.budget_bytes / GiB, 3),
            "probes": [p.to_json() for p in self.probes],
        }


def largest_micro_batch(
    effective_batch: int,
    measure: Callable[[int], int | None],
    budget_bytes: int,
    method: str = "probe",
) -> BatchSearch:
    """The largest divisor of `effective_batch` whose measured peak fits `budget_bytes`.

    `measure(micro)` is the peak memory of one training step at that micro-batch (None when it
    ran out of memory); it is assumed to grow with the micro-batch, so the divisors are
    bisected: a handful of probes. When not even 1 fits, the result is 1 with `fits` False.
    """
    if effective_batch < 1:
        raise ValueError(f"effective batch must be at least 1, not {effective_batch}")
    divisors = [d for d in range(1, effective_batch + 1) if effective_batch % d == 0]
    probes: list[Probe] = []
    lo, hi, best = 0, len(divisors) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        peak = measure(divisors[mid])
        fits = peak is not None and peak <= budget_bytes
        probes.append(Probe(divisors[mid], peak, fits))
        if fits:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    micro = divisors[best]
    return BatchSearch(
        effective_batch, micro, effective_batch // micro, budget_bytes, method, probes
    )


def gpu_budget_bytes() -> int:
    """What training may use on the current GPU: its memory under the process's cap (set by
    torch.cuda.set_per_process_memory_fraction), less headroom."""
    import torch

    index = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _: 1.0)(index)
    capped = int(total * fraction)
    usable = min(capped, free + torch.cuda.memory_allocated(index))
    return int(usable * GPU_HEADROOM)


def optimizer_state_bytes(model: Any) -> int:
    """Adam's two moments for every trainable parameter (allocated at the first update)."""
    return sum(2 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def probe_step(trainer: Any, micro_batch: int, seq_len: int) -> None:
    """One forward and backward pass at `micro_batch` full-length rows, as training computes
    it (the trainer's collator, trl's loss, its autocast); gradients are cleared and the random
    state restored afterwards, so the probe trains nothing."""
    import torch

    model = trainer.model
    vocab = int(model.get_input_embeddings().weight.shape[0])
    device = next(p.device for p in model.parameters())
    gen = torch.Generator().manual_seed(micro_batch)
    rows = [
        {"input_ids": [int(t) for t in torch.randint(1, vocab, (seq_len,), generator=gen)]}
        for _ in range(micro_batch)
    ]
    batch = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in trainer.data_collator(rows).items()
    }
    args = trainer.args
    half = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    autocast = (
        torch.autocast(device.type, dtype=half) if half is not None else contextlib.nullcontext()
    )
    was_training = model.training
    model.train()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            with autocast:
                out = model(**batch, use_cache=False, fused_lm_head=True)
            out.loss.backward()
        finally:
            out = None
            model.zero_grad(set_to_none=True)
            model.train(was_training)


def probe_step_memory(trainer: Any, micro_batch: int, seq_len: int) -> int | None:
    """Peak GPU memory of `probe_step` plus the optimizer state it does not allocate; None when
    it runs out of memory."""
    import torch

    device = torch.cuda.current_device()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        probe_step(trainer, micro_batch, seq_len)
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        torch.cuda.empty_cache()
    return int(torch.cuda.max_memory_allocated(device)) + optimizer_state_bytes(trainer.model)


def size_micro_batch(
    plan: SpeedPlan,
    trainer: Any,
    spec: FineTuneJobSpec,
    estimate: Callable[[int], int],
    available_bytes: int,
) -> BatchSearch | None:
    """Run the search the plan asks for and give the trainer the chosen shape (same effective
    batch). `estimate(micro)` is the memory estimate, used where no GPU can be probed."""
    if not plan.auto_batch_size.on:
        return None
    hp = spec.hyperparameters
    assert hp.batch_size and hp.gradient_accumulation_steps and hp.max_seq_length
    effective = hp.batch_size * hp.gradient_accumulation_steps
    if trainer.args.use_cpu:
        search = largest_micro_batch(effective, estimate, available_bytes, "estimate")
    else:
        if trainer.args.gradient_checkpointing:  # as train() will, so the probe is faithful
            trainer.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
            )
        import torch

        search = largest_micro_batch(
            effective,
            lambda micro: probe_step_memory(trainer, micro, hp.max_seq_length or 0),
            gpu_budget_bytes(),
        )
        torch.cuda.reset_peak_memory_stats()  # the run's peak is training's, not the probes
    if not search.fits:
        what = (
            f"not even a micro-batch of 1 x {hp.max_seq_length} tokens fits "
            f"{search.budget_bytes / GiB:.1f} GiB ({search.method})"
        )
        if spec.memory_check == "enforce":
            raise WorkloadError(
                f"spec.hyperparameters.maxSeqLength: {what}; lower maxSeqLength, use method: "
                "qlora or gradientCheckpointing: true, or set memoryCheck: warn to try anyway"
            )
        log.warning("memory: %s; trying with 1 (memoryCheck: %s)", what, spec.memory_check)
    set_batch_shape(trainer, search.micro_batch, search.gradient_accumulation_steps)
    plan.batch = search
    log.info(
        "batch: micro-batch %d x accumulation %d (effective %d) from %s",
        search.micro_batch, search.gradient_accumulation_steps, effective, search.method,
    )  # fmt: skip
    return search


def set_batch_shape(trainer: Any, micro_batch: int, accumulation: int) -> None:
    """Give a built Trainer another micro-batch and accumulation before it trains."""
    trainer.args.per_device_train_batch_size = micro_batch
    trainer.args.per_device_eval_batch_size = micro_batch
    trainer.args.gradient_accumulation_steps = accumulation
    # Trainer.__init__ copies the batch size (transformers' own auto_find_batch_size rewrites
    # the same attribute); train() builds its dataloader from it.
    trainer._train_batch_size = trainer.args.train_batch_size
