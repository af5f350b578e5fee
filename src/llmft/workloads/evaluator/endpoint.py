"""Served models over HTTP: Ollama or any OpenAI-compatible API, for endpoint arms and the judge.

Both flavours are reached through the OpenAI chat-completions API (Ollama serves it under `/v1`),
so an endpoint arm gets exactly the chat messages a local arm's chat template renders, and its
answers are scored by the same metrics. `check_endpoint` fails fast, naming the spec field, when
the server is down, refuses the key, or (Ollama) does not have the model.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmft.api.evaluation import ArmEndpoint
from llmft.api.layout import arm_api_key_env
from llmft.prompts import build_messages
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.evaluator.endpoint")


def chat_base_url(provider: str, url: str) -> str:
    """The chat-completions base URL: Ollama's OpenAI-compatible API lives under /v1."""
    url = url.rstrip("/")
    if provider == "ollama" and not url.endswith("/v1"):
        url += "/v1"
    return url


def check_endpoint(
    provider: str, url: str, model: str, api_key: str, field: str, timeout: float = 10.0
) -> None:
    """Raise a WorkloadError naming `field` (e.g. spec.judge) when the endpoint cannot serve."""
    root = url.rstrip("/").removesuffix("/v1")
    if provider == "ollama":
        probe, headers = root + "/api/tags", {}
    else:
        probe = url.rstrip("/") + "/models"
        headers = {"Authorization": f"Bearer {api_key}"}
    try:
        request = urllib.request.Request(probe, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise WorkloadError(
                f"{field}.apiKeySecretRef: the endpoint at {url} refused the key (HTTP {err.code})"
            ) from None
        return  # some OpenAI-compatible servers have no /models; the first call will tell
    except (urllib.error.URLError, OSError, ValueError) as err:
        where = "endpoint" if field.endswith("judge") else "url"
        raise WorkloadError(f"{field}.{where}: cannot reach {url}: {err}") from None
    if provider == "ollama":
        try:
            names = {m.get("name", "") for m in json.loads(body).get("models", [])}
        except (json.JSONDecodeError, AttributeError):
            return
        if model not in names and f"{model}:latest" not in names:
            raise WorkloadError(
                f"{field}.model: {model!r} is not on the Ollama server at {url} "
                f"(it has {sorted(names)}; run `ollama pull {model}` or create it)"
            )


def arm_api_key(endpoint: ArmEndpoint, index: int) -> str:
    """The arm's key from its secret (through its own variable), or a placeholder."""
    env = arm_api_key_env(index)
    key = os.environ.get(env, "")
    if endpoint.api_key_secret_ref is not None and not key:
        raise WorkloadError(
            f"spec.arms[{index}].endpoint.apiKeySecretRef: set, but {env} is empty in the "
            "workload's environment (is the secret key present?)"
        )
    return key or "no-key"  # the OpenAI client refuses an empty key; Ollama ignores it


class EndpointAnswerer:
    """Answers questions with a served model, `concurrency` requests at a time, in input order."""

    def __init__(
        self,
        endpoint: ArmEndpoint,
        index: int,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        from openai import OpenAI

        self.endpoint = endpoint
        self.field = f"spec.arms[{index}].endpoint"
        api_key = arm_api_key(endpoint, index)
        check_endpoint(endpoint.provider, endpoint.url, endpoint.model, api_key, self.field)
        self.client = OpenAI(
            base_url=chat_base_url(endpoint.provider, endpoint.url),
            api_key=api_key,
            timeout=endpoint.timeout_seconds,
            max_retries=2,
        )
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed

    def answer(self, messages: list[dict[str, str]]) -> str:
        try:
            reply = self.client.chat.completions.create(
                model=self.endpoint.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=self.seed,
            )
        except Exception as err:
            raise WorkloadError(
                f"{self.field}: {self.endpoint.model!r} at {self.endpoint.url} failed: "
                f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
            ) from None
        content = reply.choices[0].message.content if reply.choices else None
        return (content or "").strip()

    def generate(
        self,
        questions: Sequence[str],
        contexts: Sequence[Sequence[str] | None],
        on_batch: Callable[[int], None] | None = None,
    ) -> list[str]:
        """One answer per question, with the same prompt messages a local arm gets."""
        conversations = [
            build_messages(q, list(c) if c else None)
            for q, c in zip(questions, contexts, strict=True)
        ]
        answers: list[str] = []
        with ThreadPoolExecutor(max_workers=self.endpoint.concurrency) as pool:
            for answer in pool.map(self.answer, conversations):
                answers.append(answer)
                if on_batch is not None:
                    on_batch(len(answers))
        return answers


def describe(endpoint: ArmEndpoint) -> dict[str, Any]:
    """What the summary records of an endpoint arm (never its key)."""
    return {"provider": endpoint.provider, "url": endpoint.url, "model": endpoint.model}
