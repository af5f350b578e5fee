"""Where the generating model runs: an Ollama server, or in-process with transformers.

Both take the same messages and return the model's raw text; the caller parses it. Ollama
gets the response JSON schema as `format=`, so its sampler can only write valid JSON. The
in-process fallback is meant for a small local model that cannot follow the JSON prompt, so it
works extractively: each answer is a sentence of the chunk and the model writes only the
question that sentence answers; llmft writes the JSON, so the reply always parses.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import httpx
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from llmft.api.common import ModelSource
from llmft.api.datasetgeneration import Generator
from llmft.services import ServiceUnavailable, backoff_delay, call_service
from llmft.workloads.datagen.prompting import GenerationRequest
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.datagen.backends")

PROBE_TIMEOUT_SECONDS = 3.0
# Token budget of one question written in-process.
QUESTION_TOKENS = 64
# The first word of each kind's question, written for the in-process model: what the schema's
# patterns make Ollama's model do, so a small model starts a question, not a heading.
QUESTION_OPENERS = {"factual": "What", "procedural": "How", "yesno": "Is", "multihop": "What"}
IN_PROCESS_SYSTEM = "You turn statements from an employee handbook into quiz questions."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*])")
_MARKUP = re.compile(r"^\s*(?:#+\s.*|[-=|]{3,}.*|\|.*)$", re.MULTILINE)


def answer_sentences(text: str) -> list[str]:
    """The chunk's sentences that can stand as an answer: markup lines (headings, rules, table
    rows) removed, emphasis and list markers dropped, 5 to 60 words."""
    body = _MARKUP.sub("", text)
    body = re.sub(r"\*\*|__|`", "", body)
    body = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", body, flags=re.MULTILINE)
    out = []
    for paragraph in re.split(r"\n\s*\n", body):
        flat = " ".join(paragraph.split())
        for sentence in _SENTENCE_END.split(flat):
            if 5 <= len(sentence.split()) <= 60 and sentence[-1:] in ".!?;:":
                out.append(sentence.rstrip(";:") + ("" if sentence[-1] in ".!?" else "."))
    return out


class BackendUnavailable(WorkloadError):
    """The model server cannot be reached, or kept failing after the retries."""


class ModelMissing(WorkloadError):
    """The named model is not on the server."""


class RequestRejected(WorkloadError):
    """The server refused one request for good (a 4xx other than 404 and 429): retrying the
    same prompt cannot help, so the chunk is recorded as failed and the run goes on."""


class Backend(Protocol):
    """Runs one generation request and returns the model's raw reply."""

    name: str
    model: str

    def check(self) -> None: ...

    def generate(self, request: GenerationRequest) -> tuple[str, int]:
        """The reply text and the number of attempts it took."""
        ...

    def close(self) -> None: ...


def ollama_answers(host: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """The server's version if an Ollama server answers at `host`, else None."""
    try:
        resp = httpx.get(host.rstrip("/") + "/api/version", timeout=timeout)
        resp.raise_for_status()
        return str(resp.json().get("version", "unknown"))
    except (httpx.HTTPError, ValueError):
        return None


def _http_transient(err: Exception) -> bool:
    """A server that is not (yet) listening, timing out, or answering 429/5xx."""
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code == 429 or err.response.status_code >= 500
    return isinstance(err, httpx.TransportError)


class _Transient(Exception):
    """A failure worth another attempt: a 5xx or 429, a broken connection, a timeout."""


class OllamaBackend:
    """Chat requests to an Ollama server with a JSON-schema `format` and retries."""

    name = "ollama"

    def __init__(
        self,
        host: str,
        model: str,
        options: dict[str, Any],
        timeout: float,
        max_retries: int,
        backoff_base: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import ollama

        self._ollama = ollama
        self.host = host.rstrip("/")
        self.model = model
        self.options = options
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.sleep = sleep
        self.client = ollama.Client(host=self.host, timeout=timeout)

    def _missing(self) -> ModelMissing:
        return ModelMissing(
            f"spec.generator.model: model '{self.model}' not found on {self.host}; "
            f"run `ollama pull {self.model}`"
        )

    def _unreachable(self, err: object) -> BackendUnavailable:
        return BackendUnavailable(
            f"spec.generator.ollamaHost: Ollama server at {self.host} is unreachable ({err}); "
            "start it, or set generator.backend to auto or transformers to run in-process"
        )

    def check(self) -> None:
        """Fail fast, before any chunk is sent, if the server or the model is not there."""

        def version() -> None:
            resp = httpx.get(self.host + "/api/version", timeout=PROBE_TIMEOUT_SECONDS * 3)
            resp.raise_for_status()

        # A pod may start before the chart's Ollama is ready: wait for it, for a bounded time.
        try:
            call_service(f"Ollama at {self.host}", version, _http_transient, sleep=self.sleep)
        except ServiceUnavailable as err:
            raise self._unreachable(err) from None
        except httpx.HTTPError as err:
            raise self._unreachable(f"{type(err).__name__}: {err}") from None
        try:
            self.client.show(self.model)
        except self._ollama.ResponseError as err:
            if err.status_code == 404:
                raise self._missing() from None
            raise BackendUnavailable(
                f"Ollama at {self.host} refused `show {self.model}`: {err.error}"
            ) from None
        except ConnectionError as err:
            raise self._unreachable(err) from None

    def generate(self, request: GenerationRequest) -> tuple[str, int]:
        """The reply, retried with growing back-off on server errors, throttling and broken
        connections; a refused request (4xx) is not retried."""

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "chunk %s: %s; retry %d in %.1fs",
                request.chunk_id, error, state.attempt_number, state.upcoming_sleep,
            )  # fmt: skip

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=lambda state: backoff_delay(state.attempt_number - 1, self.backoff_base),
            retry=retry_if_exception_type(_Transient),
            sleep=self.sleep,
            before_sleep=before_sleep,
        )
        try:
            reply = retrying(self._chat, request)
        except RetryError as err:
            raise BackendUnavailable(
                f"Ollama at {self.host} failed chunk {request.chunk_id} after "
                f"{self.max_retries + 1} attempt(s): {err.last_attempt.exception()}"
            ) from None
        return reply, int(retrying.statistics["attempt_number"])

    def _chat(self, request: GenerationRequest) -> str:
        """One chat request; _Transient for a failure worth another attempt."""
        try:
            resp = self.client.chat(
                model=self.model,
                messages=request.messages,
                format=request.schema,
                options=self.options,
                stream=False,
            )
            return resp.message.content or ""
        except self._ollama.ResponseError as err:
            if err.status_code == 404:
                raise self._missing() from None
            if "invalid JSON schema" in str(err.error):
                # Ollama answers 500, but the same schema fails the same way every time.
                raise WorkloadError(
                    f"Ollama at {self.host} cannot use the reply schema as `format`: "
                    f"{err.error}; upgrade Ollama (structured outputs need 0.5 or later)"
                ) from None
            if err.status_code != 429 and err.status_code < 500:
                raise RequestRejected(
                    f"Ollama at {self.host} rejected the request for chunk "
                    f"{request.chunk_id}: {err.error} (HTTP {err.status_code})"
                ) from None
            raise _Transient(f"server error {err.status_code}: {err.error}") from None
        except ConnectionError as err:
            raise _Transient(f"connection failed: {err}") from None
        except httpx.TimeoutException as err:
            raise _Transient(f"timed out ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _Transient(f"transport error: {type(err).__name__}: {err}") from None

    def close(self) -> None:
        self.client.close()


class TransformersBackend:
    """The same prompts run in-process on a local model; one request at a time."""

    name = "transformers"

    def __init__(self, source: ModelSource, generator: Generator) -> None:
        self.source = source
        self.generator = generator
        self.model = source.name + (f"/{source.gguf_file}" if source.gguf_file else "")
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._lm: Any = None

    def check(self) -> None:
        """Load the model now, so a bad path fails before any chunk is sent."""
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise WorkloadError(
                "spec.generator.backend: the transformers backend needs transformers and torch "
                "(pip install 'llmft[trainer]')"
            ) from None
        from llmft.models import ModelNotFound, resolve_model

        try:
            loc = resolve_model(self.source.name, self.source.gguf_file)
        except ModelNotFound as err:
            raise WorkloadError(f"spec.generator.localModel: {err}") from None
        kwargs: dict[str, Any] = {}
        if loc.gguf_file:
            kwargs["gguf_file"] = loc.gguf_file
        if self.source.revision:
            kwargs["revision"] = self.source.revision
        log.info("loading %s in-process", self.model)
        self._tokenizer = AutoTokenizer.from_pretrained(loc.path_or_id, **kwargs)
        if self.source.chat_template:
            self._tokenizer.chat_template = self.source.chat_template
        if not getattr(self._tokenizer, "chat_template", None):
            raise WorkloadError(
                f"spec.generator.localModel: {self.source.name} has no chat template; "
                "set localModel.chatTemplate"
            )
        self._lm = AutoModelForCausalLM.from_pretrained(loc.path_or_id, **kwargs)
        self._lm.eval()

    def _fill(
        self,
        prefix: str,
        max_new_tokens: int,
        seed: int | None,
        stops: tuple[str, ...] = ('"', "\n"),
    ) -> str:
        """The model's continuation of `prefix` up to the first of `stops` (kept when it is a
        question mark) or the token budget."""
        import torch

        tokenizer = self._tokenizer
        inputs = tokenizer(prefix, return_tensors="pt", add_special_tokens=False)
        prompt_len = inputs["input_ids"].shape[1]

        sample = self.generator.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sample,
            # Tiny models loop ("2022-01-01, 2022-01-01, ..."); a mild penalty breaks it.
            "repetition_penalty": 1.15,
            # transformers stops at the first stop string (a tokenizer decodes the tokens).
            "stop_strings": list(stops),
            "tokenizer": tokenizer,
        }
        if sample:
            kwargs |= {"temperature": self.generator.temperature, "top_p": 0.95}
        pad = tokenizer.pad_token_id
        kwargs["pad_token_id"] = pad if pad is not None else tokenizer.eos_token_id
        with torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            out = self._lm.generate(**inputs, **kwargs)
        text = tokenizer.decode(out[0, prompt_len:], skip_special_tokens=True)
        end = len(text)
        for stop in stops:
            k = text.find(stop)
            if k >= 0:
                end = min(end, k + 1 if stop == "?" else k)
        return text[:end].strip()

    def _question_for(self, answer: str, kind: str, seed: int | None) -> str:
        """The model's question, of `kind`, that the handbook statement `answer` answers. The
        chunk itself is left out of this prompt: a 135M model given the whole text writes
        questions about the text ("What does it say?") instead of about the statement."""
        opener = QUESTION_OPENERS.get(kind, "What")
        messages = [
            {"role": "system", "content": IN_PROCESS_SYSTEM},
            {"role": "user", "content": f"Statement: {answer}\nQuestion?"},
        ]
        prompt = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        rest = self._fill(prompt + opener, QUESTION_TOKENS, seed, stops=("?", "\n"))
        question = opener + ("" if not rest or not rest[0].isalnum() else " ") + rest
        return question.rstrip(" ?.") + "?"

    def generate(self, request: GenerationRequest) -> tuple[str, int]:
        """Extractive, for a model too small to follow the JSON prompt: each answer is a sentence
        of the chunk (of the chunk and its neighbour for multihop, "Yes." before it for yesno),
        and the model writes the question that sentence answers."""
        if self._lm is None:
            self.check()
        sentences = answer_sentences(request.texts[0]) if request.texts else []
        others = answer_sentences(request.texts[1]) if len(request.texts) > 1 else []
        base = None
        if self.generator.seed is not None:
            # Seeded per chunk, so a resumed run samples each chunk as a fresh run would.
            base = self.generator.seed ^ zlib.crc32(request.chunk_id.encode())
        pairs = []
        with self._lock:
            for j, kind in enumerate(request.kinds):
                if not sentences:
                    break
                # Spread the pairs over the chunk rather than asking about its opening twice.
                answer = sentences[(j * len(sentences)) // len(request.kinds)]
                if kind == "multihop" and others:
                    answer = f"{answer} {others[0]}"
                seed = None if base is None else base + j
                question = self._question_for(answer, kind, seed)
                if kind == "yesno":
                    answer = f"Yes. {answer}"
                pairs.append({"kind": kind, "question": question, "answer": answer})
        return json.dumps({"pairs": pairs}), 1

    def close(self) -> None:
        self._lm = None


def ollama_options(generator: Generator) -> dict[str, Any]:
    options: dict[str, Any] = {
        "temperature": generator.temperature,
        "num_predict": generator.num_predict,
    }
    if generator.seed is not None:
        options["seed"] = generator.seed
    return options


def select_backend(generator: Generator) -> Backend:
    """The backend the spec asks for; `auto` is Ollama when it answers /api/version."""
    choice = generator.backend
    if choice == "auto":
        version = ollama_answers(generator.ollama_host)
        if version is not None:
            log.info("Ollama %s answers at %s; using it", version, generator.ollama_host)
            choice = "ollama"
        else:
            log.info("no Ollama at %s; generating in-process", generator.ollama_host)
            choice = "transformers"
    if choice == "ollama":
        return OllamaBackend(
            generator.ollama_host,
            generator.model,
            ollama_options(generator),
            timeout=generator.timeout_seconds,
            max_retries=generator.max_retries,
        )
    if generator.local_model is None:
        raise WorkloadError(
            "spec.generator.localModel: required when generating in-process "
            f"(backend {generator.backend!r}"
            + (
                f", no Ollama answered at {generator.ollama_host})"
                if generator.backend == "auto"
                else ")"
            )
        )
    return TransformersBackend(generator.local_model, generator)
