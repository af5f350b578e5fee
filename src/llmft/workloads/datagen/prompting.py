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
Write {num_questions} question and answer pairs about the text, one for each of these kinds, \
in this order:
{kinds}

Answer in one or two sentences, using the words of the text.
Reply as JSON: {"pairs": [{"question": "...", "answer": "...", "kind": "..."}]}"""

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


def response_schema(kinds: Sequence[str]) -> dict[str, Any]:
    """The JSON schema passed as Ollama's `format`: a list of question/answer/kind objects."""
    return {
        "type": "object",
        "properties": {
            "pairs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "question": {"type": "string"},
                        "answer": {"type": "string"},
                        "kind": {"type": "string", "enum": sorted(set(kinds))},
                    },
                    "required": ["question", "answer", "kind"],
                },
                "minItems": 1,
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
    kinds_text = "\n".join(f"{i + 1}. {k}: {KIND_HINTS[k]}" for i, k in enumerate(kinds))
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
    )
