"""`python -m llmft.workloads.datagen --spec FILE` fails with one clear line, and a status,
for bad input and for a server that is not there; retries and refusals behave as documented."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.api.datasetgeneration import Generator
from llmft.workloads.datagen.backends import (
    BackendUnavailable,
    OllamaBackend,
    RequestRejected,
    select_backend,
)
from llmft.workloads.datagen.prompting import GenerationRequest
from llmft.workloads.entry import WorkloadError


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_spec(path: Path, spec: dict[str, Any], name: str = "hr") -> Path:
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "DatasetGeneration",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(manifest))
    return path


def error_line(stderr: str) -> str:
    """The one `error: ...` line the entrypoint prints for a failure."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def run_datagen(
    spec_file: Path, status_file: Path, timeout: float = 120, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMFT_STATUS_FILE": str(status_file), **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "llmft.workloads.datagen", "--spec", str(spec_file)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def test_an_unreachable_server_fails_naming_ollama_host(mixed_docs: Path, tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    spec = write_spec(
        tmp_path / "spec.yaml",
        {
            "source": {"path": str(mixed_docs)},
            "generator": {"ollamaHost": host, "model": "smollm2"},
            "output": {"path": str(tmp_path / "out")},
        },
    )
    # Waited for (a pod may start before Ollama is ready), but only for a bounded time.
    proc = run_datagen(spec, tmp_path / "status.json", LLMFT_SERVICE_WAIT_SECONDS="3")

    assert proc.returncode == 1
    last = error_line(proc.stderr)
    assert last.startswith(f"error: spec.generator.ollamaHost: Ollama server at {host}")
    assert "is unreachable (Ollama at" in last and "did not answer for" in last
    assert "LLMFT_SERVICE_WAIT_SECONDS=3" in last and "ConnectError" in last
    assert "retry 1 in" in proc.stderr  # logged while it waited
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["progress"]["message"].startswith("failed: spec.generator.ollamaHost")


def test_a_spec_error_exits_2_naming_the_field(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml",
        {"source": {"path": "."}, "generator": {"concurrency": 0}, "output": {"path": "o"}},
    )
    proc = run_datagen(spec, tmp_path / "status.json")
    assert proc.returncode == 2
    assert "spec.generator.concurrency" in proc.stderr


def test_only_malformed_documents_fail_before_any_request(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "blank.md").write_text("\n")
    spec = write_spec(
        tmp_path / "spec.yaml",
        {
            "source": {"path": str(docs)},
            "generator": {"ollamaHost": f"http://127.0.0.1:{closed_port()}"},
            "output": {"path": str(tmp_path / "out")},
        },
    )
    proc = run_datagen(spec, tmp_path / "status.json")
    assert proc.returncode == 1
    last = error_line(proc.stderr)
    assert last.startswith("error: spec.source.path: no readable documents")
    assert "scan.pdf: unreadable PDF" in last and "blank.md: empty document" in last


def test_auto_without_a_server_or_local_model_names_local_model() -> None:
    gen = Generator(backend="auto", ollama_host=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(WorkloadError, match=r"spec\.generator\.localModel: required"):
        select_backend(gen)


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers /api/chat with the next status in `script` (the last one repeats)."""

    script: list[int] = []
    calls: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append(self.path)
        status = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        body = json.dumps({"error": f"scripted {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {"script": [503], "calls": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _request() -> GenerationRequest:
    return GenerationRequest("c-0", [{"role": "user", "content": "hi"}], ["factual"], {}, ["c-0"])


def test_server_errors_are_retried_with_growing_backoff_then_reported(
    failing_server: tuple[str, type[_Scripted]],
) -> None:
    url, handler = failing_server
    delays: list[float] = []
    backend = OllamaBackend(url, "m", {}, timeout=5, max_retries=3, backoff_base=1.0,
                            sleep=delays.append)  # fmt: skip
    with pytest.raises(BackendUnavailable, match=r"after 4 attempt\(s\): server error 503"):
        backend.generate(_request())
    assert handler.calls == ["/api/chat"] * 4
    assert len(delays) == 3
    assert 0.5 <= delays[0] <= 1.0 and 2.0 <= delays[2] <= 4.0


def test_a_refused_request_is_not_retried(failing_server: tuple[str, type[_Scripted]]) -> None:
    url, handler = failing_server
    handler.script = [400]
    backend = OllamaBackend(url, "m", {}, timeout=5, max_retries=3, sleep=lambda _: None)
    with pytest.raises(RequestRejected, match=r"rejected the request for chunk c-0"):
        backend.generate(_request())
    assert len(handler.calls) == 1
