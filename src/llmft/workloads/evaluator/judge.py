"""The LLM judge: RAGAS metrics (accuracy, relevance, faithfulness) against an HTTP endpoint.

Both providers are reached through the OpenAI chat-completions API: an OpenAI-compatible server
at `judge.endpoint`, or Ollama at `judge.endpoint` + `/v1` (Ollama serves the same API there).
RAGAS asks for JSON (instructor's JSON mode) and validates it into its pydantic output types.

Metrics, per answer, on 0..1:
- accuracy: RAGAS AnswerAccuracy, two judge prompts rating the answer against the reference
  0/2/4, averaged and divided by 4;
- relevance: RAGAS AnswerRelevancy, the judge writes questions the answer would answer and we
  take their mean cosine similarity to the real question (MiniLM vectors, clamped to 0..1);
- faithfulness: RAGAS Faithfulness, the share of the answer's statements the judge finds
  supported by the retrieved context (RAG arms only).

Output the judge cannot produce in the expected shape (invalid JSON, an out-of-range rating, an
empty question, no statements) is retried `judge.maxRetries` times and then recorded as missing
(None) with the reason; it is never scored as 0. After a missing score the endpoint is probed:
a judge that no longer answers fails the evaluation at once, naming its address, instead of
turning every remaining answer into a missing score. `judge_budget` then compares the share of
missing scores with `judge.maxMissingShare` (above it the Evaluation is marked Degraded).

An empty answer is not sent to the judge: it scores 0 on accuracy and relevance (it answers
nothing) and has no faithfulness.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from openai import AsyncOpenAI
from pydantic import BaseModel
from ragas.embeddings.base import BaseRagasEmbedding
from ragas.llms.base import InstructorBaseRagasLLM, llm_factory
from ragas.metrics.collections import (
    AnswerAccuracy,
    AnswerRelevancy,
    Faithfulness,
)
from tenacity import AsyncRetrying, RetryCallState, RetryError, stop_after_attempt

from llmft.api.evaluation import Judge
from llmft.api.layout import ENV_JUDGE_API_KEY
from llmft.retrieval import Embedder
from llmft.workloads.entry import WorkloadError
from llmft.workloads.evaluator.endpoint import chat_base_url, check_endpoint

log = logging.getLogger("llmft.evaluator.judge")

JUDGE_KEYS = ("accuracy", "relevance", "faithfulness")
UNSCORED = {
    "accuracy": "neither judge prompt gave a usable 0/2/4 rating",
    "faithfulness": "the judge found no statements in the answer to check",
}
T = TypeVar("T", bound=BaseModel)


class UnusableJudgeOutput(ValueError):
    """The judge answered, but not with something a metric can score."""


@dataclass(frozen=True)
class JudgeInput:
    """What the judge sees of one answered question."""

    question: str
    answer: str
    reference: str
    contexts: tuple[str, ...] = ()


@dataclass
class JudgeResult:
    """Scores (None where missing) and, for each missing one, why."""

    scores: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class CheckedLLM(InstructorBaseRagasLLM):
    """Delegates to the RAGAS LLM and refuses parsed outputs that carry nothing to score.

    AnswerRelevancy scores an empty generated question as 0, which would turn a judge failure
    into a bad score; raising here lets our retry loop handle it instead.
    """

    def __init__(self, inner: InstructorBaseRagasLLM) -> None:
        self.inner = inner

    @staticmethod
    def _check(result: T) -> T:
        question = getattr(result, "question", None)
        if isinstance(question, str) and not question.strip():
            raise UnusableJudgeOutput("the judge wrote an empty question")
        return result

    def generate(self, prompt: str, response_model: type[T]) -> T:
        return self._check(self.inner.generate(prompt, response_model))

    async def agenerate(self, prompt: str, response_model: type[T]) -> T:
        return self._check(await self.inner.agenerate(prompt, response_model))


class EmbedderEmbeddings(BaseRagasEmbedding):
    """RAGAS embeddings backed by our sentence-transformers Embedder (MiniLM by default)."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder

    def embed_text(self, text: str, **kwargs: Any) -> list[float]:
        return [float(x) for x in self.embedder.encode([text])[0]]

    async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
        return self.embed_text(text)

    def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embedder.encode(list(texts))]

    async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        return self.embed_texts(texts)


def base_url(cfg: Judge) -> str:
    """The judge's chat-completions base URL (Ollama's OpenAI-compatible API is under /v1)."""
    return chat_base_url(cfg.provider, cfg.endpoint)


def judge_api_key(cfg: Judge) -> str:
    """The key from the secret the spec references (through its env var), or a placeholder."""
    key = os.environ.get(ENV_JUDGE_API_KEY, "")
    if cfg.api_key_secret_ref is not None and not key:
        raise WorkloadError(
            f"spec.judge.apiKeySecretRef: set, but {ENV_JUDGE_API_KEY} is empty in the "
            "workload's environment (is the secret key present?)"
        )
    # The OpenAI client refuses an empty key; local servers (Ollama) ignore whatever is sent.
    return key or "no-key"


class JudgeUnreachable(WorkloadError):
    """The judge endpoint stopped answering in the middle of scoring."""


def check_judge(cfg: Judge, timeout: float = 10.0) -> None:
    """Fail fast, naming the field, when the judge endpoint is down or lacks the model."""
    check_endpoint(cfg.provider, cfg.endpoint, cfg.model, judge_api_key(cfg), "spec.judge", timeout)


def _reason(err: Exception) -> str:
    """A one-line cause: instructor wraps pydantic's message in a long attempt log."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines if "validation error" in line), lines[0] if lines else "")
    index = lines.index(detail) if detail in lines else -1
    if 0 <= index < len(lines) - 1 and "validation error" in detail:
        detail += ": " + lines[index + 1]
    return f"{type(err).__name__}: {detail}"[:300]


def _log_attempt(key: str) -> Callable[[RetryCallState], None]:
    def log_failure(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        cause = _reason(error) if error is not None else "no outcome"
        log.info("judge %s attempt %d failed: %s", key, state.attempt_number, cause)

    return log_failure


def _usable(value: Any, key: str) -> float:
    if value is None or not isinstance(value, int | float) or math.isnan(float(value)):
        raise UnusableJudgeOutput(UNSCORED.get(key, "the judge's output could not be scored"))
    # Cosine similarity can leave 0..1 by rounding or for unrelated questions; keep the scale.
    return min(1.0, max(0.0, float(value)))


class RagasJudge:
    """Scores answers with the RAGAS metrics the spec asks for."""

    def __init__(self, cfg: Judge, metrics: Sequence[str], embedder: Embedder | None) -> None:
        self.cfg = cfg
        self.keys = [m for m in JUDGE_KEYS if m in metrics]
        if "relevance" in self.keys and embedder is None:
            raise WorkloadError("spec.judge.embeddingModel: relevance needs an embedding model")
        self.embedder = embedder
        self.api_key = judge_api_key(cfg)

    def _metrics(self) -> dict[str, Any]:
        client = AsyncOpenAI(
            base_url=base_url(self.cfg),
            api_key=self.api_key,
            timeout=self.cfg.timeout_seconds,
            # No hidden transport retries (a timed-out call would silently cost three timeouts):
            # every failed call, whatever the cause, counts against judge.maxRetries.
            max_retries=0,
        )
        raw = llm_factory(
            self.cfg.model,
            provider="openai",
            client=client,
            temperature=0.0,
            max_tokens=self.cfg.max_tokens,
            seed=0,
            max_retries=0,  # instructor re-asks no more; our loop counts the attempts
        )
        llm = CheckedLLM(raw)
        built: dict[str, Any] = {}
        if "accuracy" in self.keys:
            # AnswerAccuracy retries each of its two judge prompts itself, then gives NaN.
            built["accuracy"] = AnswerAccuracy(llm=llm, max_retries=self.cfg.max_retries + 1)
        if "relevance" in self.keys:
            assert self.embedder is not None
            built["relevance"] = AnswerRelevancy(
                llm=llm,
                embeddings=EmbedderEmbeddings(self.embedder),
                strictness=self.cfg.relevancy_questions,
            )
        if "faithfulness" in self.keys:
            built["faithfulness"] = Faithfulness(llm=llm)
        return built

    async def _score_one(self, metrics: dict[str, Any], item: JudgeInput) -> JudgeResult:
        result = JudgeResult()
        for key, metric in metrics.items():
            if key == "faithfulness" and not item.contexts:
                continue  # only RAG arms have a context to be faithful to
            if not item.answer.strip():
                # The model said nothing: that answers nothing (a real 0, not a judge failure),
                # and holds no statement whose faithfulness could be judged.
                if key == "faithfulness":
                    result.scores[key], result.errors[key] = None, "empty answer: no statements"
                else:
                    result.scores[key] = 0.0
                continue
            kwargs: dict[str, Any] = {"user_input": item.question, "response": item.answer}
            if key == "accuracy":
                kwargs["reference"] = item.reference
            elif key == "faithfulness":
                kwargs["retrieved_contexts"] = list(item.contexts)
            # accuracy retries inside RAGAS; the others get our attempts
            attempts = 1 if key == "accuracy" else self.cfg.max_retries + 1
            # Any failure (judge output, transport, validation) costs an attempt.
            retrying = AsyncRetrying(stop=stop_after_attempt(attempts), after=_log_attempt(key))
            try:
                async for attempt in retrying:
                    with attempt:
                        value = _usable((await metric.ascore(**kwargs)).value, key)
                result.scores[key] = value
                result.errors.pop(key, None)
            except RetryError as err:  # every attempt failed: the score is missing
                last = _reason(err.last_attempt.exception() or err)
                result.scores[key], result.errors[key] = None, last
                await asyncio.to_thread(self._still_answering, last)
        return result

    def _still_answering(self, last_error: str) -> None:
        """Probe the endpoint after a missing score; raise when it no longer answers."""
        try:
            check_judge(self.cfg, timeout=min(10.0, self.cfg.timeout_seconds))
        except WorkloadError as err:
            raise JudgeUnreachable(
                f"spec.judge.endpoint: the judge at {self.cfg.endpoint} stopped answering while "
                f"scoring ({err}); last error: {last_error}"
            ) from None

    async def _score_all(
        self, items: Sequence[JudgeInput], on_item: Callable[[int], None] | None
    ) -> list[JudgeResult]:
        metrics = self._metrics()
        gate = asyncio.Semaphore(self.cfg.concurrency)
        done = 0

        async def one(item: JudgeInput) -> JudgeResult:
            nonlocal done
            async with gate:
                res = await self._score_one(metrics, item)
            done += 1
            if on_item is not None:
                on_item(done)
            return res

        return list(await asyncio.gather(*(one(i) for i in items)))

    def score(
        self, items: Sequence[JudgeInput], on_item: Callable[[int], None] | None = None
    ) -> list[JudgeResult]:
        """Judge every item (in input order); `on_item(done)` after each one finishes."""
        if not self.keys or not items:
            return [JudgeResult() for _ in items]
        return asyncio.run(self._score_all(items, on_item))


# Reasons for a missing score that are not the judge's failure.
NOT_JUDGE_FAILURES = ("empty answer",)


def judge_budget(records: Sequence[dict[str, Any]], max_missing_share: float) -> dict[str, Any]:
    """How many judge scores items.jsonl records asked for and how many are missing;
    `degraded` (a sentence) when the missing share is above `max_missing_share`."""
    asked = missing = 0
    for record in records:
        errors = record.get("judgeErrors") or {}
        for key, value in (record.get("scores") or {}).items():
            if key not in JUDGE_KEYS:
                continue
            reason = str(errors.get(key, ""))
            if value is None and reason.startswith(NOT_JUDGE_FAILURES):
                continue
            asked += 1
            missing += value is None
    share = missing / asked if asked else 0.0
    out: dict[str, Any] = {"judgeScores": asked, "judgeMissing": missing,
                           "judgeMissingShare": round(share, 4)}  # fmt: skip
    if share > max_missing_share:
        out["degraded"] = (
            f"JudgeFailures: {missing} of {asked} judge scores are missing ({share:.0%}, above "
            f"spec.judge.maxMissingShare {max_missing_share:.0%}); see judgeErrors in items.jsonl"
        )
    return out
