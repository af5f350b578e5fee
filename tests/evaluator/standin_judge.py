"""A stand-in LLM judge: a real HTTP server speaking the OpenAI chat-completions API (and
Ollama's /api/tags), whose replies are scripted, so the judge path can be tested exactly;
`ChatCompletionsServer`, under it, also serves the endpoint arms' tests.

It recognises which RAGAS output the request asks for from the JSON schema instructor puts in
the prompt, and answers with fixed valid JSON, unless the answer under judgement carries a
marker: UNUSABLE (always invalid output), FLAKY (invalid the first time, valid after) or
EVASIVE (a valid but noncommittal relevancy reply).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

RELEVANCY_QUESTION = "How many days of annual leave do full-time employees get?"
STATEMENTS = ["Employees get 27 days.", "Plus 8 public holidays.", "Leave grows.", "It is sunny."]


def _reply(kind: str, prompt: str) -> dict[str, Any]:
    if kind == "AnswerAccuracyOutput":
        # RAGAS asks two differently worded judges; rate them 4 and 2: (4/4 + 2/4) / 2 = 0.75.
        return {"rating": 4 if "world class state of the art assistant" in prompt else 2}
    if kind == "AnswerRelevanceOutput":
        return {"question": RELEVANCY_QUESTION, "noncommittal": int("EVASIVE" in prompt)}
    if kind == "StatementGeneratorOutput":
        return {"statements": STATEMENTS}
    if kind == "NLIStatementOutput":
        # Three of four statements supported: faithfulness 0.75.
        return {
            "statements": [
                {"statement": s, "reason": "scripted", "verdict": int(i < 3)}
                for i, s in enumerate(STATEMENTS)
            ]
        }
    raise ValueError(f"unexpected request for {kind}")


KINDS = (
    "AnswerAccuracyOutput",
    "AnswerRelevanceOutput",
    "StatementGeneratorOutput",
    "NLIStatementOutput",
)


class ChatCompletionsServer:
    """A real HTTP server speaking the OpenAI chat-completions API (and Ollama's /api/tags),
    serving `model`; replies come from `reply(request)`. With an `api_key`, requests without
    it as a Bearer token get a 401. Start with `start()`."""

    def __init__(self, api_key: str | None = None, model: str = "stand-in") -> None:
        self.api_key = api_key
        self.model = model
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if server.api_key is None:
                    return True
                return self.headers.get("Authorization") == f"Bearer {server.api_key}"

            def do_GET(self) -> None:
                if not self._authorised():
                    self._send(401, {"error": {"message": "bad key"}})
                elif self.path.endswith("/api/tags"):
                    self._send(200, {"models": [{"name": f"{server.model}:latest"}]})
                elif self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                if not self._authorised():
                    self._send(401, {"error": {"message": "bad key"}})
                    return
                content = server.reply(request)
                self._send(
                    200,
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion",
                        "created": 0,
                        "model": request.get("model", server.model),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reply(self, request: dict[str, Any]) -> str:
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StandInJudge(ChatCompletionsServer):
    """The scripted judge; `calls` counts requests per (kind, marker)."""

    def __init__(self, api_key: str | None = None, model: str = "stand-in") -> None:
        super().__init__(api_key, model)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def reply(self, request: dict[str, Any]) -> str:
        prompt = "\n".join(str(m.get("content", "")) for m in request["messages"])
        kind = next((k for k in KINDS if k in prompt), "unknown")
        marker = next((m for m in ("UNUSABLE", "FLAKY", "EVASIVE") if m in prompt), "")
        with self.lock:
            self.calls[(kind, marker)] += 1
            first = self.calls[(kind, marker)] == 1
        if marker == "UNUSABLE" or (marker == "FLAKY" and first):
            return "I am not sure what you mean."
        return json.dumps(_reply(kind, prompt))
