"""The prompts that ask a model for question/answer pairs about one chunk, and the JSON shape
the answer must take.

The user may replace the system prompt and the template in the spec. The template is filled
by replacing known `{placeholder}`s only, so literal JSON braces need no escaping; an unknown
placeholder is an error that names the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmft.api.datasetgeneration import Generator
from llmft.workloads.datagen.chunking import Chunk
from llmft.workloads.entry import WorkloadError

DEFAULT_SYSTEM_PROMPT = (
    "You write question and answer pairs that are used to teach and test an assistant on an "
    "organisation's internal documents. Take every answer from the text you are given: copy "
    "numbers, names, days and amounts exactly as written, and never add outside knowledge. "
    "Each question must make sense on its own, without seeing the text. Reply with JSON only."
)

DEFAULT_TEMPLATE = """Document: {source}
Section: {heading}

Text:
\"\"\"
{context}
\"\"\"
{neighbour_context}
Write {num_questions} question and answer pairs about the text, one of each of these kinds, \
in this order:
{kinds}

Each question ends with a question mark. Answer in one or two sentences, using the words of \
the text.
Reply as JSON: {"pairs": [{"kind": "...", "question": "...", "answer": "..."}]}"""

NEIGHBOUR_BLOCK = """
Neighbouring text from the same document (use it for the multihop question only):
\"\"\"
{text}
\"\"\"
"""

KIND_HINTS = {
    "factual": "asks for one specific fact stated in the text (a number, name, date or rule)",
    "procedural": "asks how to do something or which steps to follow, as the text describes",
    "yesno": "can be answered yes or no; the answer starts with Yes or No and gives the reason",
    "multihop": "needs one fact from the text and one from the neighbouring text together",
}

PLACEHOLDERS = ("context", "neighbour_context", "num_questions", "kinds", "source", "heading")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class PromptSet:
    """The system prompt and user template in force, and their hash for the manifest."""

    system: str
    template: str

    @classmethod
    def from_spec(cls, generator: Generator) -> PromptSet:
        prompts = cls(
            system=generator.system_prompt or DEFAULT_SYSTEM_PROMPT,
            template=generator.prompt_template or DEFAULT_TEMPLATE,
        )
        prompts.validate()
        return prompts

    @property
    def hash(self) -> str:
        """sha256 over the system prompt and the template, as used."""
        return hashlib.sha256((self.system + self.template).encode()).hexdigest()

    def validate(self) -> None:
        unknown = sorted({m for m in _PLACEHOLDER.findall(self.template)} - set(PLACEHOLDERS))
        if unknown:
            raise WorkloadError(
                f"spec.generator.promptTemplate: unknown placeholder(s) "
                f"{', '.join('{' + u + '}' for u in unknown)}; "
                f"allowed: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        if "{context}" not in self.template:
            raise WorkloadError("spec.generator.promptTemplate: must contain {context}")

    def render(self, **values: Any) -> str:
        return _PLACEHOLDER.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0),
            self.template,
        )


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for one chunk: the messages, the kinds asked for, the chunks it shows."""

    chunk_id: str
    messages: list[dict[str, str]]
    kinds: list[str]
    schema: dict[str, Any]
    context_chunk_ids: list[str]
    # The texts shown (the chunk, then the neighbour when one is used), for backends that work
    # on the text itself rather than on the messages.
    texts: tuple[str, ...] = ()


def kinds_for_chunk(
    position: int, kinds: Sequence[str], count: int, has_neighbour: bool
) -> list[str]:
    """Kinds rotate across chunks so each kind is asked about evenly; multi-hop needs a
    neighbour, so without one it gives way to the next other kind."""
    usable = [k for k in kinds if has_neighbour or k != "multihop"] or ["factual"]
    start = position % len(kinds)
    rotated = [kinds[(start + j) % len(kinds)] for j in range(len(kinds))]
    rotated = [k for k in rotated if k in usable]
    return [rotated[j % len(rotated)] for j in range(count)]


# What each kind's question opens with; the schema's patterns hold the model to it, so even a
# 135M model writes a question (not a heading, a list item or "1. factual") of the kind asked.
_TEXT = r'[^"\\\n]'
QUESTION_PATTERNS = {
    "factual": rf"^(What|When|Who|Which|Where|How many|How much|How long|How often) {_TEXT}+\?$",
    "procedural": rf"^(How|What) {_TEXT}+\?$",
    "yesno": rf"^(Is|Are|Can|Could|Do|Does|Did|Must|Should|May|Will|Has|Have) {_TEXT}+\?$",
    # Any question word: without one, a small model writes a paragraph and never reaches "?".
    "multihop": rf"^(What|When|Who|Which|Where|Why|How|Is|Are|Can|Do|Does|Must|Should) {_TEXT}+\?$",
}
ANSWER_PATTERNS = {"yesno": rf"^(Yes|No)[,.]( {_TEXT}+)?$"}


def _pair_schema(kind: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"type": "string"}
    if kind in ANSWER_PATTERNS:
        answer["pattern"] = ANSWER_PATTERNS[kind]
    else:
        answer["minLength"] = 1
    return {
        "type": "object",
        # The kind comes first, so the model has read which kind it writes before the question.
        "properties": {
            "kind": {"type": "string", "enum": [kind]},
            "question": {"type": "string", "pattern": QUESTION_PATTERNS.get(kind, r"^.+\?$")},
            "answer": answer,
        },
        "required": ["kind", "question", "answer"],
    }


def response_schema(kinds: Sequence[str]) -> dict[str, Any]:
    """The JSON schema passed as Ollama's `format`: exactly one pair per kind asked, in order,
    each with its kind fixed and its question (and a yes/no answer) held to a pattern."""
    return {
        "type": "object",
        "properties": {
            "pairs": {
                "type": "array",
                # Ollama refuses `"items": false`; minItems = maxItems closes the tuple instead.
                "prefixItems": [_pair_schema(k) for k in kinds],
                "minItems": len(kinds),
                "maxItems": len(kinds),
            }
        },
        "required": ["pairs"],
    }


def build_request(
    prompts: PromptSet,
    chunk: Chunk,
    position: int,
    neighbour: Chunk | None,
    generator: Generator,
) -> GenerationRequest:
    """The messages asking for `questionsPerChunk` pairs about `chunk` (and its neighbour when a
    multi-hop question is among the kinds)."""
    kinds = kinds_for_chunk(
        position, generator.question_kinds, generator.questions_per_chunk, neighbour is not None
    )
    uses_neighbour = neighbour is not None and "multihop" in kinds
    # Bullets, not numbers: small models copy "1. factual" into the question field otherwise.
    kinds_text = "\n".join(f"- {k}: {KIND_HINTS[k]}" for k in kinds)
    user = prompts.render(
        context=chunk.text,
        neighbour_context=NEIGHBOUR_BLOCK.format(text=neighbour.text)
        if uses_neighbour and neighbour is not None
        else "",
        num_questions=len(kinds),
        kinds=kinds_text,
        source=chunk.source,
        heading=chunk.heading or "(none)",
    )
    context_ids = [chunk.id] + ([neighbour.id] if uses_neighbour and neighbour else [])
    return GenerationRequest(
        chunk_id=chunk.id,
        messages=[
            {"role": "system", "content": prompts.system},
            {"role": "user", "content": user},
        ],
        kinds=kinds,
        schema=response_schema(kinds),
        context_chunk_ids=context_ids,
        texts=(chunk.text, neighbour.text) if uses_neighbour and neighbour else (chunk.text,),
    )
