"""Conversations to tokens by a model family's rules, identical for training and evaluation.

A `ChatFormat` binds a tokenizer to its `llmft.families.Family` (detected, or named in the
spec) and the chat template in use. The trainer asks it for token rows (instruct examples whose
labels are exactly the answer tokens plus the end-of-turn token; causal documents closed by the
document-end token), the evaluator for the prompt text and the token ids generation stops on.
`build_chat_format` verifies the template on a probe conversation before any weight is loaded,
so a template that cannot render llmft's conversations fails the job at once, naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmft.api.common import ModelSource
from llmft.families import (
    FAMILY_NAMES,
    GENERIC_FALLBACK_TEMPLATE,
    Family,
    detect_family,
    get_family,
)
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.chatformat")

Messages = list[dict[str, str]]

PROBE: Messages = [
    {"role": "system", "content": "You answer questions."},
    {"role": "user", "content": "What colour is the sky?"},
]
PROBE_ANSWER = "The sky is blue."


class ChatFormatError(ValueError):
    """A conversation the chat template cannot render consistently."""


@dataclass
class TokenRow:
    """One training row: token ids and which of them carry the loss (1) or not (0)."""

    input_ids: list[int]
    completion_mask: list[int]

    @property
    def labels(self) -> list[int]:
        return [t if m else -100 for t, m in zip(self.input_ids, self.completion_mask, strict=True)]


@dataclass
class ChatFormat:
    """A tokenizer with its family's rules; `build_chat_format` makes one."""

    family: Family
    tokenizer: Any
    template: str
    template_source: str  # spec, model, family or fallback
    model_name: str
    field: str
    system_prompt: str
    end_of_turn: str
    end_of_turn_id: int
    # False when the template closes answers with no special token: the EOS is appended.
    end_of_turn_in_template: bool = True
    document_end_id: int | None = None
    stop_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def messages(self, messages: Sequence[dict[str, str]]) -> Messages:
        """The messages as this model receives them: system prompt kept, folded or omitted."""
        out = [dict(m) for m in messages]
        if not out or out[0]["role"] != "system" or self.system_prompt == "keep":
            return out
        system, rest = out[0]["content"], out[1:]
        if self.system_prompt == "omit" or not system.strip():
            return rest
        if rest and rest[0]["role"] == "user":
            rest[0] = {**rest[0], "content": f"{system.strip()}\n\n{rest[0]['content']}"}
            return rest
        return [{"role": "user", "content": system}, *rest]

    def render(self, messages: Messages, add_generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages,
                chat_template=self.template,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        except Exception as err:  # jinja's TemplateError, raise_exception in the template
            raise ChatFormatError(f"{type(err).__name__}: {err}") from err
        return str(text)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        """The text the model continues: the rendered prompt with the generation prompt."""
        return self.render(self.messages(messages), add_generation_prompt=True)

    def example(self, prompt: Sequence[dict[str, str]], answer: str) -> TokenRow:
        """Prompt and answer as one row whose loss covers the answer and its end-of-turn token."""
        msgs = self.messages(prompt)
        prompt_text = self.render(msgs, add_generation_prompt=True)
        full = self.render(
            [*msgs, {"role": "assistant", "content": answer.strip()}], add_generation_prompt=False
        )
        if not full.startswith(prompt_text):
            raise ChatFormatError(
                "the template renders the prompt differently once the answer is appended "
                f"(prompt {prompt_text[-80:]!r}, conversation {full[:160]!r}...)"
            )
        tail = full[len(prompt_text) :]
        if self.end_of_turn_in_template:
            after = tail.find(answer.strip())
            start = after + len(answer.strip()) if after >= 0 else 0
            end = tail.find(self.end_of_turn, start)
            if end < 0:
                raise ChatFormatError(
                    f"the rendered answer is not followed by {self.end_of_turn!r} "
                    f"(it renders as {tail[:120]!r})"
                )
            tail = tail[: end + len(self.end_of_turn)]
        prompt_ids = self.encode(prompt_text)
        ids = self.encode(prompt_text + tail)
        if ids[: len(prompt_ids)] != prompt_ids:
            raise ChatFormatError(
                "the prompt's tokens change once the answer follows it (a token spans the "
                "boundary between the generation prompt and the answer)"
            )
        if not self.end_of_turn_in_template:
            ids.append(self.end_of_turn_id)
        if len(ids) == len(prompt_ids):
            raise ChatFormatError("the rendered conversation holds no answer tokens")
        mask = [0] * len(prompt_ids) + [1] * (len(ids) - len(prompt_ids))
        return TokenRow(ids, mask)

    def document(self, text: str) -> list[int]:
        """A causal document's tokens (BOS where the tokenizer adds one) closed by document-end."""
        ids: list[int] = self.tokenizer(text)["input_ids"]
        end = self.document_end_id
        if end is not None and (not ids or ids[-1] != end):
            ids.append(end)
        return ids

    def describe(self) -> dict[str, Any]:
        """What status and the logs show: the family and every rule in force."""
        tok = self.tokenizer
        out: dict[str, Any] = {
            "family": self.family.name,
            "familyTitle": self.family.title,
            "chatTemplate": self.template_source,
            "systemPrompt": self.system_prompt,
            "endOfTurn": self.end_of_turn,
            "stopTokens": [tok.convert_ids_to_tokens(i) for i in self.stop_ids],
            "padToken": tok.pad_token,
        }
        if self.family.overridden:
            out["overridden"] = list(self.family.overridden)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The token's id, None when the vocabulary lacks it (looked up, not by copying the whole
    vocabulary: get_vocab() builds a 256k-entry dict for Gemma, seconds per call)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or (found == tokenizer.unk_token_id and token != tokenizer.unk_token):
        return None
    return int(found)


def _choose_pad(tokenizer: Any, family: Family) -> None:
    if tokenizer.pad_token is not None:
        return
    for token in family.pad_tokens:
        if _token_id(tokenizer, token) is not None:
            tokenizer.pad_token = token
            return
    # Padding is masked by position (attention mask, -100 labels), so reusing EOS is safe.
    tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token else tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise WorkloadError("tokenizer has neither a pad, an EOS nor an UNK token to pad with")


def build_chat_format(
    source: ModelSource, tokenizer: Any, model_type: str | None, field_path: str
) -> ChatFormat:
    """The model's chat format: its family, template and tokens, verified on a probe.

    `field_path` is where the model is named in the spec (`spec.baseModel`,
    `spec.arms[0].baseModel`), for error messages.
    """
    vocab = tokenizer.get_vocab()
    own_template = getattr(tokenizer, "chat_template", None)
    if isinstance(own_template, dict):  # several named templates: the default one
        own_template = own_template.get("default")
    if source.family:
        family = get_family(source.family)
    else:
        family = detect_family(model_type, vocab, own_template)
    family = family.with_overrides(
        system_prompt=source.system_prompt,
        end_of_turn=source.end_of_turn,
        stop_tokens=source.stop_tokens,
        pad_token=source.pad_token,
    )
    name = source.name
    warnings: list[str] = []
    if source.chat_template:
        template, template_source = source.chat_template, "spec"
    elif own_template:
        template, template_source = own_template, "model"
    elif family.fallback_template:
        template, template_source = family.fallback_template, "family"
    else:
        template, template_source = GENERIC_FALLBACK_TEMPLATE, "fallback"
        warnings.append(
            f"{name} has no chat template: using llmft's ChatML-shaped fallback, answers closed "
            f"by EOS; set {field_path}.chatTemplate to use the model's own format"
        )
    if not family.known:
        warnings.insert(
            0,
            f"{name} is not in llmft's model families ({', '.join(FAMILY_NAMES)}): its chat "
            f"template was verified at start; set {field_path}.family if it belongs to one",
        )
    if template_source == "fallback" or family.end_of_turn is None:
        end_of_turn = tokenizer.eos_token
    else:
        end_of_turn = family.end_of_turn
    if end_of_turn is None or _token_id(tokenizer, end_of_turn) is None:
        raise WorkloadError(
            f"{field_path}: {name}: the end-of-turn token {end_of_turn!r} is not in the "
            f"vocabulary; set {field_path}.endOfTurn"
        )
    _choose_pad(tokenizer, family)
    # The template in use travels with the tokenizer (and so with a saved adapter).
    tokenizer.chat_template = template
    document_end = family.document_end if family.document_end in vocab else None
    fmt = ChatFormat(
        family=family,
        tokenizer=tokenizer,
        template=template,
        template_source=template_source,
        model_name=name,
        field=field_path,
        system_prompt=family.system_prompt,
        end_of_turn=end_of_turn,
        end_of_turn_id=int(vocab[end_of_turn]),
        document_end_id=_token_id(tokenizer, document_end or tokenizer.eos_token or ""),
        warnings=warnings,
    )
    _verify(fmt)
    stops = [fmt.end_of_turn_id]
    for token in (*family.stop_tokens, tokenizer.eos_token):
        tid = _token_id(tokenizer, token) if token else None
        if tid is not None and tid not in stops:
            stops.append(tid)
    fmt.stop_ids = stops
    for warning in fmt.warnings:
        log.warning("%s", warning)
    return fmt


def _verify(fmt: ChatFormat) -> None:
    """Render a probe conversation; adapt a generic model's rules, or fail naming the field."""
    where = f"{fmt.field}: {fmt.model_name}"
    if not fmt.family.known and fmt.system_prompt == "keep":
        try:
            fmt.render([*PROBE, {"role": "assistant", "content": PROBE_ANSWER}], False)
        except ChatFormatError:
            fmt.system_prompt = "fold"
            fmt.warnings.append(
                f"{fmt.model_name}'s chat template refuses a system message: it is folded into "
                f"the first user turn (set {fmt.field}.systemPrompt to choose)"
            )
    if not fmt.family.known:
        full = fmt.render(
            [*fmt.messages(PROBE), {"role": "assistant", "content": PROBE_ANSWER}], False
        )
        tail = full[full.find(PROBE_ANSWER) + len(PROBE_ANSWER) :]
        special = [t for t in fmt.tokenizer.all_special_tokens if t and tail.startswith(t)]
        if special:
            fmt.end_of_turn = special[0]
            fmt.end_of_turn_id = int(fmt.tokenizer.convert_tokens_to_ids(special[0]))
        elif not tail.lstrip().startswith(fmt.end_of_turn):
            fmt.end_of_turn = fmt.tokenizer.eos_token
            fmt.end_of_turn_id = int(fmt.tokenizer.eos_token_id)
            fmt.end_of_turn_in_template = False
            fmt.warnings.append(
                f"{fmt.model_name}'s chat template ends answers with no special token: "
                f"{fmt.end_of_turn!r} is appended to every training answer"
            )
    try:
        fmt.example(PROBE, PROBE_ANSWER)
    except ChatFormatError as err:
        raise WorkloadError(
            f"{where}: the chat template ({fmt.template_source}) cannot render llmft's "
            f"conversations: {err}; set {fmt.field}.chatTemplate or {fmt.field}.systemPrompt"
        ) from None
