"""Model families: what differs between Llama 3, Mistral, Gemma, Phi-2 and ChatML models.

The trainer and the evaluator both read a model's `Family` to render conversations the way the
model was tuned (system prompt kept or folded into the first user turn), to end every training
answer with the token the model stops on, to pad, to stop generation, to pick default LoRA
targets and an A10 24 GB preset, to say whether fused kernels apply, and to calibrate the
memory pre-check. A model outside the registry gets `GENERIC`: its own chat template (verified
at start) or a ChatML-shaped fallback whose answers end with the tokenizer's EOS, and a warning
in status. No ML import here.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

FamilyName = Literal["llama3", "mistral", "gemma", "phi2", "chatml"]
SystemPromptHandling = Literal["keep", "fold", "omit"]
FAMILY_NAMES: tuple[FamilyName, ...] = ("llama3", "mistral", "gemma", "phi2", "chatml")
GENERIC_NAME = "generic"

# The A10's 24 GiB less the CUDA context and allocator slack: what a preset must fit in.
A10_BUDGET_GIB = 22.0
# The decoder blocks' linear layers of the Llama-style architectures (Llama, Mistral, Gemma, Qwen).
LLAMA_STYLE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Phi-2 ships no chat template; its model card's QA format is "Instruct: ...\nOutput: ...".
# Answers end with <|endoftext|> so the tuned model learns to stop.
PHI2_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'Instruct: ' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Output: ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Output:' }}{% endif %}"
)

# ChatML for tokenizers that ship no template (and for the ChatML family when one is missing).
# The assistant turn ends with <|im_end|> where the vocabulary has it; `end_of_turn` below
# decides which token the answer must end with.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# For a model with neither a family nor a template: ChatML-shaped turns, the answer closed by
# the tokenizer's EOS (so the tuned model stops) instead of a token its vocabulary may lack.
GENERIC_FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Preset:
    """One method's training shape on an A10 24 GB: batch, accumulation, length, checkpointing."""

    batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    gradient_checkpointing: bool


@dataclass(frozen=True)
class Family:
    """Everything llmft does differently for one family of models."""

    name: str
    title: str
    # Hub ids this family's rules were verified on, token by token (tests/fixtures/models).
    verified_on: tuple[str, ...]
    # config.json model_type values of the family, and tokens its vocabulary must hold.
    model_types: tuple[str, ...]
    marker_tokens: tuple[str, ...]
    # keep: a system message as the template renders it; fold: joined to the first user turn
    # (templates that refuse a system role, or place it inconsistently); omit: dropped.
    system_prompt: SystemPromptHandling
    # The token that ends an assistant turn: training answers end with it, generation stops on
    # it. None: the tokenizer's EOS.
    end_of_turn: str | None
    # More tokens generation stops on (the tokenizer's EOS is always one).
    stop_tokens: tuple[str, ...]
    # The token that closes a causal (continued pre-training) document; None: the EOS.
    document_end: str | None
    # Padding when the tokenizer has none (first one in the vocabulary); EOS otherwise. Padding
    # is masked by position (attention mask, -100 labels), never by id, so any choice is safe.
    pad_tokens: tuple[str, ...]
    # Template used only when the tokenizer ships none (and the spec sets none).
    fallback_template: str | None
    # Default LoRA targets; ("all-linear",) adapts every linear layer but the output head.
    lora_targets: tuple[str, ...]
    presets: Mapping[str, Preset]
    # Activation tensors of the MLP per token per layer, in units of intermediate_size (gated
    # MLPs keep gate, up and their product; a plain MLP keeps its two): calibrates the memory
    # pre-check's activation term for the architecture.
    mlp_activations: float = 3.0
    # Whether the architecture has Liger Kernel's fused kernels (RMSNorm, RoPE, gated MLP);
    # spec.speed.fusedKernels uses them on a GPU where this holds and Liger knows the model type.
    fused_kernels: bool = True
    notes: str = ""
    # Filled in by `with_overrides` from the spec, for status and the logs.
    overridden: tuple[str, ...] = field(default=())

    @property
    def known(self) -> bool:
        return self.name != GENERIC_NAME

    def preset(self, method: str) -> Preset:
        return self.presets.get(method) or self.presets["qlora"]

    def with_overrides(
        self,
        *,
        system_prompt: SystemPromptHandling | None = None,
        end_of_turn: str | None = None,
        stop_tokens: list[str] | None = None,
        pad_token: str | None = None,
    ) -> Family:
        """This family with the manifest's overrides (`spec.baseModel.*`) applied."""
        changes: dict[str, object] = {}
        if system_prompt is not None:
            changes["system_prompt"] = system_prompt
        if end_of_turn is not None:
            changes["end_of_turn"] = end_of_turn
        if stop_tokens is not None:
            changes["stop_tokens"] = tuple(stop_tokens)
        if pad_token is not None:
            changes["pad_tokens"] = (pad_token,)
        if not changes:
            return self
        names = {"system_prompt": "systemPrompt", "end_of_turn": "endOfTurn"}
        names |= {"stop_tokens": "stopTokens", "pad_tokens": "padToken"}
        return replace(self, **changes, overridden=tuple(names[k] for k in changes))  # type: ignore[arg-type]


def _presets(qlora: Preset, lora: Preset) -> dict[str, Preset]:
    return {"qlora": qlora, "lora": lora}


FAMILIES: dict[str, Family] = {
    "llama3": Family(
        name="llama3",
        title="Llama 3 (Instruct)",
        verified_on=("meta-llama/Meta-Llama-3-8B-Instruct",),
        model_types=("llama",),
        marker_tokens=("<|start_header_id|>", "<|eot_id|>"),
        system_prompt="keep",
        end_of_turn="<|eot_id|>",
        stop_tokens=("<|eot_id|>", "<|end_of_text|>"),
        document_end="<|end_of_text|>",
        # Llama 3.1 names id 128004 <|finetune_right_pad_id|>; in Llama 3 it is the same unused id.
        pad_tokens=("<|finetune_right_pad_id|>", "<|reserved_special_token_2|>"),
        fallback_template=None,
        lora_targets=LLAMA_STYLE_TARGETS,
        presets=_presets(
            qlora=Preset(2, 8, 1024, True),
            lora=Preset(1, 16, 512, True),
        ),
        notes="the tokenizer's EOS may be <|end_of_text|> (older revisions): answers still "
        "end with <|eot_id|>, and generation stops on both",
    ),
    "mistral": Family(
        name="mistral",
        title="Mistral Instruct (v0.2 and v0.3 templates)",
        verified_on=("mistralai/Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.3"),
        model_types=("mistral", "mixtral"),
        marker_tokens=(),
        # v0.3's template puts the system prompt into the *last* user turn, so it disappears
        # once the answer is appended; folding it into the first turn renders the same prompt
        # for training and generation, and matches what mistral-common sends.
        system_prompt="fold",
        end_of_turn="</s>",
        stop_tokens=("</s>",),
        document_end=None,
        pad_tokens=("<unk>",),
        fallback_template=None,
        lora_targets=LLAMA_STYLE_TARGETS,
        presets=_presets(
            qlora=Preset(4, 4, 1024, True),
            lora=Preset(1, 16, 1024, True),
        ),
    ),
    "gemma": Family(
        name="gemma",
        title="Gemma (it)",
        verified_on=("google/gemma-2b-it",),
        model_types=("gemma", "gemma2"),
        marker_tokens=("<start_of_turn>", "<end_of_turn>"),
        # The template raises on a system role.
        system_prompt="fold",
        end_of_turn="<end_of_turn>",
        # generation_config.json stops on <eos> only; the chat model ends turns with <end_of_turn>.
        stop_tokens=("<end_of_turn>", "<eos>"),
        document_end=None,
        pad_tokens=("<pad>",),
        fallback_template=None,
        lora_targets=LLAMA_STYLE_TARGETS,
        # A 256k vocabulary: the fp32 logits of batch x length tokens dominate memory.
        presets=_presets(
            qlora=Preset(2, 8, 1024, True),
            lora=Preset(2, 8, 1024, True),
        ),
    ),
    "phi2": Family(
        name="phi2",
        title="Phi-2",
        verified_on=("microsoft/phi-2",),
        model_types=("phi",),
        marker_tokens=(),
        system_prompt="fold",
        end_of_turn=None,  # <|endoftext|>, its EOS
        stop_tokens=(),
        document_end=None,
        pad_tokens=(),
        fallback_template=PHI2_TEMPLATE,
        lora_targets=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
        presets=_presets(
            qlora=Preset(4, 4, 1024, True),
            lora=Preset(4, 4, 1024, True),
        ),
        mlp_activations=2.0,
        # LayerNorm, a plain GELU MLP and partial rotary embeddings: nothing Liger fuses.
        fused_kernels=False,
        notes="no chat template: llmft uses the model card's 'Instruct: ... Output:' format "
        "and ends answers with <|endoftext|>",
    ),
    "chatml": Family(
        name="chatml",
        title="ChatML (SmolLM2, Qwen2 and others)",
        verified_on=("HuggingFaceTB/SmolLM2-135M-Instruct",),
        model_types=(),  # any architecture whose vocabulary speaks ChatML
        marker_tokens=("<|im_start|>", "<|im_end|>"),
        system_prompt="keep",
        end_of_turn="<|im_end|>",
        stop_tokens=("<|im_end|>", "<|endoftext|>"),
        document_end="<|endoftext|>",
        pad_tokens=("<|endoftext|>",),
        fallback_template=CHATML_TEMPLATE,
        lora_targets=("all-linear",),
        presets=_presets(
            qlora=Preset(4, 4, 1024, True),
            lora=Preset(4, 4, 1024, True),
        ),
    ),
}

GENERIC = Family(
    name=GENERIC_NAME,
    title="any other model",
    verified_on=(),
    model_types=(),
    marker_tokens=(),
    system_prompt="keep",  # folded instead when the template refuses a system role
    end_of_turn=None,
    stop_tokens=(),
    document_end=None,
    pad_tokens=(),
    fallback_template=None,  # GENERIC_FALLBACK_TEMPLATE, with a warning (see chatformat)
    lora_targets=("all-linear",),
    presets=_presets(
        qlora=Preset(4, 4, 1024, True),
        lora=Preset(2, 8, 1024, True),
    ),
    notes="its own chat template, verified at start (system prompt folded if refused, EOS "
    "appended if the template ends answers with no special token), or a ChatML-shaped "
    "fallback ending answers with EOS; a warning goes to status",
)


def get_family(name: str) -> Family:
    if name == GENERIC_NAME:
        return GENERIC
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def detect_family(
    model_type: str | None, vocabulary: Container[str], chat_template: str | None
) -> Family:
    """The family of a model from its config's model_type, vocabulary and own chat template.

    ChatML wins when the vocabulary has its tokens and the template (if any) uses them, so a
    Llama- or Mistral-architecture model tuned on ChatML is treated as ChatML.
    """
    chatml = FAMILIES["chatml"]
    if all(t in vocabulary for t in chatml.marker_tokens) and (
        not chat_template or "<|im_start|>" in chat_template
    ):
        return chatml
    for family in FAMILIES.values():
        if family is chatml or model_type not in family.model_types:
            continue
        if all(t in vocabulary for t in family.marker_tokens):
            return family
    return GENERIC
