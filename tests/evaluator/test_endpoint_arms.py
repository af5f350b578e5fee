"""Endpoint arms: a served model (OpenAI-compatible or Ollama) answers beside local arms and is
scored by the same metrics; its key comes from its own Secret-backed variable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from evaluator.conftest import QUESTIONS, evaluation_manifest
from evaluator.standin_judge import ChatCompletionsServer
from llmft.api.evaluation import Arm
from llmft.api.layout import arm_api_key_env
from llmft.workloads.entry import run_workload
from llmft.workloads.evaluator.pipeline import main


class ChatServer(ChatCompletionsServer):
    """A served model that answers with the reference of the question asked, so an endpoint
    arm that sends the right messages scores perfectly."""

    def __init__(self, api_key: str, answers: dict[str, str]) -> None:
        super().__init__(api_key, model="served")
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def reply(self, request: dict[str, Any]) -> str:
        self.requests.append(request)
        user = request["messages"][-1]["content"]
        return next((a for q, a in self.answers.items() if q in user), "no idea")

    @property
    def url(self) -> str:
        return f"{super().url}/v1"


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer("k-123", {q: a for _, q, a, _ in QUESTIONS}).start()
    yield server
    server.stop()


def _endpoint_arm(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "served",
        "endpoint": {
            "provider": "openai",
            "url": url,
            "model": "served",
            "apiKeySecretRef": {"name": "served", "key": "apiKey"},
        },
        **extra,
    }


def test_endpoint_arm_is_scored_and_ranked_beside_a_local_arm(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec, chat_server, monkeypatch
) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv(arm_api_key_env(1), "k-123")
    arms = [
        {"name": "local", "baseModel": {"name": str(tiny_model)}},
        _endpoint_arm(chat_server.url, rag={"enabled": True, "topK": 1}),
    ]
    spec = write_spec(evaluation_manifest(dataset_dir, out, arms))
    assert run_workload("Evaluation", "test", main, ["--spec", str(spec)]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranking"] == ["served", "local"]
    served = next(a for a in summary["arms"] if a["name"] == "served")
    assert served["endpoint"] == {"provider": "openai", "url": chat_server.url, "model": "served"}
    assert served["metrics"]["rougeL"]["mean"] == pytest.approx(1.0)
    # The served model got the evaluator's prompt: system message, retrieved context, question.
    assert len(chat_server.requests) == len(QUESTIONS)
    first = chat_server.requests[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "Context:\n[1]" in first["messages"][1]["content"]
    assert first["max_tokens"] == 8 and first["temperature"] == 0
    assert "k-123" not in (out / "summary.json").read_text()


def test_endpoint_arm_with_a_rejected_key_fails_naming_the_field(  # type: ignore[no-untyped-def]
    dataset_dir, tmp_path, write_spec, chat_server, monkeypatch, capsys
) -> None:
    monkeypatch.setenv(arm_api_key_env(0), "wrong")
    spec = write_spec(
        evaluation_manifest(dataset_dir, tmp_path / "o", [_endpoint_arm(chat_server.url)])
    )
    assert run_workload("Evaluation", "test", main, ["--spec", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "spec.arms[0].endpoint.apiKeySecretRef" in err and "refused the key" in err
    assert "wrong" not in err


def test_endpoint_excludes_local_model_fields() -> None:
    endpoint = {"url": "http://ollama:11434", "model": "hr-tuned"}
    assert Arm.model_validate({"name": "a", "endpoint": endpoint}).endpoint is not None
    with pytest.raises(ValidationError, match="endpoint excludes"):
        Arm.model_validate({"name": "a", "endpoint": endpoint, "fineTuneJobRef": "ftj"})
    with pytest.raises(ValidationError, match="url"):
        Arm.model_validate({"name": "a", "endpoint": {"url": "ollama:11434", "model": "m"}})
    with pytest.raises(ValidationError, match="set baseModel, fineTuneJobRef or endpoint"):
        Arm.model_validate({"name": "a"})
