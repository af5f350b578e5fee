"""The real Ollama server answers chat requests from the `ollama` Python client."""

from __future__ import annotations

import ollama
import pytest

from servers.launch import OllamaServer

pytestmark = pytest.mark.ollama


def test_chat_answer_from_smollm2(ollama_server: OllamaServer) -> None:
    client = ollama.Client(host=ollama_server.url)

    reply = client.chat(
        model=ollama_server.model,
        messages=[{"role": "user", "content": "Name a colour of the sky."}],
        options={"temperature": 0, "num_predict": 24, "seed": 1},
    )

    assert reply.message.role == "assistant"
    assert len(reply.message.content.strip()) > 0
    assert reply.eval_count and reply.eval_count > 0


def test_structured_output_follows_json_schema(ollama_server: OllamaServer) -> None:
    client = ollama.Client(host=ollama_server.url)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }

    reply = client.chat(
        model=ollama_server.model,
        messages=[{"role": "user", "content": "What is 2 plus 2? Reply in JSON."}],
        format=schema,
        options={"temperature": 0, "num_predict": 48},
    )

    import json

    assert "answer" in json.loads(reply.message.content)
