"""`llmft chat`: ask a tuned model questions, locally or through the Ollama model it was served as.

Locally the base model and the adapter are loaded with transformers (`llmft.workloads.modeling`,
as the evaluator loads them) and prompted with the shared `llmft.prompts` format; when the
FineTuneJob trained with RAG, each question gets the `topK` passages of the job's dataset that
MiniLM finds nearest, as its training prompts had. Through Ollama the same messages go to
`/api/chat` of the job's Ollama model (`status.outputs.ollama`) or any model named.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.api.common import ModelSource
from llmft.api.layout import CHUNKS
from llmft.cli import DEFAULT_OLLAMA
from llmft.models import MINILM
from llmft.prompts import build_messages


class ChatError(RuntimeError):
    """A target that cannot be asked; the message says which option or resource to fix."""


@dataclass
class ChatTarget:
    """What answers and how: a local base (+ adapter), or an Ollama model; and the retrieval."""

    base_model: ModelSource | None = None
    adapter: str | None = None
    ollama_model: str | None = None
    ollama_host: str = DEFAULT_OLLAMA
    rag: bool = False
    top_k: int = 3
    chunks: Path | None = None
    # The job's spec.rag.retrieval.embeddingModel; the packaged MiniLM when none is known.
    embedding_model: str = MINILM

    def describe(self) -> str:
        if self.ollama_model:
            what = f"Ollama model {self.ollama_model} at {self.ollama_host}"
        else:
            assert self.base_model is not None
            what = self.base_model.name + (f" + adapter {self.adapter}" if self.adapter else "")
        return what + (f", RAG top-{self.top_k} from {self.chunks}" if self.rag else "")


def target_from_job(state_dir: Path, name: str, served: bool) -> ChatTarget:
    """The FineTuneJob `name` as `llmft run` left it in `state_dir` (resolved spec, status)."""
    from llmft.runner.state import StateDir

    state = StateDir(state_dir)
    key = f"FineTuneJob/{name}"
    manifest, status = state.read_spec(key), state.read_status(key) or {}
    if manifest is None:
        raise ChatError(f"ftj/{name}: no FineTuneJob {name!r} has run in {state.root}")
    if status.get("phase") != "Succeeded":
        raise ChatError(
            f"ftj/{name}: the FineTuneJob has not succeeded (phase {status.get('phase')}); "
            f"run `llmft run` first"
        )
    spec = manifest["spec"]
    outputs = status.get("outputs") or {}
    rag = spec.get("rag") or {}
    target = ChatTarget(rag=bool(rag.get("enabled")), top_k=int(rag.get("topK", 3)))
    embedding = (rag.get("retrieval") or {}).get("embeddingModel")
    if embedding:
        target.embedding_model = str(embedding)
    dataset = (spec.get("dataset") or {}).get("path")
    if target.rag and dataset:
        from llmft.workloads.hubsource import local_dataset

        target.chunks = local_dataset(dataset) / CHUNKS
    if served:
        ollama = outputs.get("ollama")
        if not ollama:
            raise ChatError(
                f"ftj/{name}: --served asks its Ollama model, but the job has none "
                "(set spec.output.ollama)"
            )
        target.ollama_model, target.ollama_host = ollama["model"], ollama["host"]
        return target
    target.base_model = ModelSource.model_validate(spec["baseModel"])
    target.adapter = outputs.get("adapter")
    if not target.adapter:
        raise ChatError(f"ftj/{name}: its status records no adapter")
    return target


def target_from_args(args: argparse.Namespace) -> ChatTarget:
    """The target the options name; a job (ftj/NAME) first, then --base-model or --ollama."""
    if args.target:
        kind, sep, name = args.target.partition("/")
        if not sep or kind.lower() not in ("ftj", "finetunejob", "finetunejobs") or not name:
            raise ChatError(f"{args.target!r}: expected ftj/NAME (a FineTuneJob run locally)")
        if args.base_model or args.ollama:
            raise ChatError("ftj/NAME excludes --base-model and --ollama (use --served)")
        target = target_from_job(Path(args.state_dir), name, args.served)
    elif args.ollama:
        target = ChatTarget(ollama_model=args.ollama)
    elif args.base_model:
        source = ModelSource(name=args.base_model, gguf_file=args.gguf_file)
        target = ChatTarget(base_model=source, adapter=args.adapter)
    else:
        raise ChatError("name what to ask: ftj/NAME, --base-model NAME or --ollama MODEL")
    if args.host:
        target.ollama_host = args.host
    if args.dataset:
        target.chunks = Path(args.dataset) / CHUNKS
    if args.rag is not None:
        target.rag = args.rag
    if args.top_k:
        target.top_k = args.top_k
    if target.rag and (target.chunks is None or not target.chunks.exists()):
        raise ChatError(
            f"--rag needs the dataset's {CHUNKS}"
            + (f" ({target.chunks} does not exist)" if target.chunks else " (use --dataset DIR)")
        )
    return target


class Passages:
    """Retrieval over the dataset's chunks with the embedding model the job trained with."""

    def __init__(self, chunks_file: Path, embedding_model: str = MINILM) -> None:
        from llmft.retrieval import EmbeddedRetriever, Embedder, load_chunks

        try:
            embedder = Embedder(embedding_model)
        except Exception as err:
            raise ChatError(
                f"--rag needs the sentence-embedding model {embedding_model!r}: "
                f"{type(err).__name__}: {err}"
            ) from None
        self.retriever = EmbeddedRetriever(embedder)
        self.retriever.index(load_chunks(chunks_file))

    def top(self, question: str, k: int) -> list[str]:
        return [hit.text for hit in self.retriever.search_many([question], k)[0]]


class Answerer:
    """Answers one question at a time with the target (the model is loaded once)."""

    def __init__(self, target: ChatTarget, max_new_tokens: int, temperature: float) -> None:
        self.target = target
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.passages = (
            Passages(target.chunks, target.embedding_model)
            if target.rag and target.chunks
            else None
        )
        self.generator: Any = None
        self.fmt: Any = None
        if target.ollama_model is None:
            from llmft.workloads import modeling
            from llmft.workloads.evaluator.generation import AnswerGenerator

            assert target.base_model is not None
            # The model's family decides the prompt and the stop tokens, as in evaluation.
            if target.adapter:
                adapter = modeling.resolve_adapter(target.adapter, "--adapter", "HF_TOKEN")
                saved = modeling.saved_adapter_tokenizer(adapter)
                self.fmt = modeling.load_chat_format(target.base_model, "--base-model", saved)
                model, _ = modeling.load_with_adapter(
                    target.base_model, adapter, tokenizer=self.fmt.tokenizer
                )
            else:
                self.fmt = modeling.load_chat_format(target.base_model, "--base-model")
                model, _ = modeling.load_base_model(
                    target.base_model, False, tokenizer=self.fmt.tokenizer
                )
            self.generator = AnswerGenerator(
                model, self.fmt.tokenizer, max_new_tokens, temperature, stop_ids=self.fmt.stop_ids
            )

    def context(self, question: str) -> list[str] | None:
        return self.passages.top(question, self.target.top_k) if self.passages else None

    def answer(self, question: str) -> str:
        context = self.context(question)
        if self.generator is not None:
            from llmft.workloads.evaluator.generation import render_prompt

            prompt = render_prompt(self.fmt, question, context)
            return self.generator.generate([prompt], 1)[0]
        import ollama

        client = ollama.Client(host=self.target.ollama_host)
        try:
            reply = client.chat(
                model=str(self.target.ollama_model),
                messages=build_messages(question, context),
                options={"temperature": self.temperature, "num_predict": self.max_new_tokens},
            )
        except ollama.ResponseError as err:
            raise ChatError(f"--ollama {self.target.ollama_model}: {err.error}") from None
        except ConnectionError as err:
            host = self.target.ollama_host
            raise ChatError(f"--host: cannot reach Ollama at {host}: {err}") from None
        return str(reply.message.content).strip()


def _questions(args: argparse.Namespace) -> Iterator[str]:
    if args.question:
        yield from args.question
        return
    interactive = sys.stdin.isatty()
    lines: Iterable[str] = sys.stdin
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = next(iter(lines), None)
        if line is None:
            return
        if line.strip():
            yield line.strip()


def chat_command(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        target = target_from_args(args)
        print(f"asking {target.describe()}", file=sys.stderr)
        answerer = Answerer(target, args.max_new_tokens, args.temperature)
        for question in _questions(args):
            print(answerer.answer(question), flush=True)
    except ChatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a model that will not load, a workload-side error: one line
        from llmft.workloads.entry import WorkloadError

        if not isinstance(err, WorkloadError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
