"""Against the real Ollama server with SmolLM2-135M-Instruct: a small set of documents in four
formats (and one broken file) becomes a dataset; reruns resume; a wrong model name, a flaky
server and an unreachable one behave as documented."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from datagen.conftest import SINGLE_THREAD_MODEL, make_mixed_docs
from datagen.test_entrypoint import error_line, run_datagen, write_spec
from llmft.api.crdgen import status_pruned_paths
from llmft.api.datasetgeneration import DatasetGenerationSpec
from llmft.reporting import Reporter
from llmft.workloads.datagen.backends import BackendUnavailable, OllamaBackend
from llmft.workloads.datagen.pipeline import DatasetGenerator
from llmft.workloads.datagen.prompting import GenerationRequest, PromptSet
from llmft.workloads.datagen.worklog import GENERATED, WORK_DIR
from servers.launch import OllamaServer, start_ollama

pytestmark = pytest.mark.ollama


def small_spec(server_url: str, model: str, docs: Path, out: Path) -> dict[str, Any]:
    """Five chunks, two short pairs each: a couple of minutes of a shared CPU, not ten."""
    return {
        "source": {"path": str(docs)},
        "chunking": {"maxTokens": 128, "overlapTokens": 16, "minTokens": 24},
        "generator": {
            "ollamaHost": server_url,
            "model": model,
            "questionsPerChunk": 2,
            "numPredict": 160,
            "temperature": 0.0,
            "seed": 7,
            "concurrency": 2,
            "timeoutSeconds": 120,
        },
        "split": {"evalFraction": 0.3, "seed": 3, "groupChunks": 2},
        "output": {"path": str(out)},
    }


@dataclass
class Run:
    spec_file: Path
    out: Path
    status_file: Path
    returncode: int
    stderr: str

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.out / "manifest.json").read_text())

    def rows(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def generated(
    ollama_server: OllamaServer, datagen_model: str, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """One run of the real entrypoint over the mixed documents plus a broken PDF."""
    root = tmp_path_factory.mktemp("datagen")
    docs = make_mixed_docs(root / "docs")
    (docs / "scanned.pdf").write_bytes(b"%PDF-1.4\n%broken export\n")
    out = root / "out"
    spec = small_spec(ollama_server.url, datagen_model, docs, out)
    spec_file = write_spec(root / "spec.yaml", spec)
    proc = run_datagen(spec_file, root / "status.json", timeout=900)
    return Run(spec_file, out, root / "status.json", proc.returncode, proc.stderr)


def test_documents_of_four_formats_become_a_dataset(generated: Run) -> None:
    assert generated.returncode == 0, generated.stderr[-3000:]
    manifest = generated.manifest()
    counts = manifest["counts"]
    assert counts["documents"] == 4 and counts["documentsSkipped"] == 1
    assert manifest["skippedDocuments"][0]["source"] == "scanned.pdf"
    assert counts["pairs"] == counts["trainPairs"] + counts["evalPairs"] > 0
    assert counts["rawPairs"] >= counts["pairs"]
    chunks = generated.rows("chunks.jsonl")
    assert {c["source"].rsplit(".", 1)[1] for c in chunks} == {"md", "html", "txt", "pdf"}
    pdf_chunks = [c for c in chunks if c["source"].endswith(".pdf")]
    assert [c["position"]["page"] for c in pdf_chunks] == [1]
    assert all(c["position"]["heading"] for c in chunks)
    for row in generated.rows("train.jsonl") + generated.rows("eval.jsonl"):
        assert row["question"].strip() and row["answer"].strip()
        assert row["context"] and row["source"] in {c["source"] for c in chunks}


def test_the_manifest_names_model_prompt_and_timings(generated: Run) -> None:
    manifest = generated.manifest()
    spec = DatasetGenerationSpec.model_validate(
        yaml.safe_load(generated.spec_file.read_text())["spec"]
    )
    gen = manifest["generator"]
    assert (gen["backend"], gen["model"]) == ("ollama", SINGLE_THREAD_MODEL)
    assert gen["promptHash"] == PromptSet.from_spec(spec.generator).hash
    assert set(manifest["timings"]) >= {"ingestSeconds", "generateSeconds", "totalSeconds"}
    assert manifest["timings"]["generateSeconds"] > 0
    assert set(manifest["dropped"]) == {
        "unparsable", "empty", "over_limit", "not_question", "not_standalone", "off_topic",
        "unsupported_number", "unsupported", "cross_split", "duplicate", "near_duplicate",
        "closed_book_paraphrase",
    }  # fmt: skip


def test_no_chunk_leaks_across_the_split(generated: Run) -> None:
    chunks = {c["id"]: c for c in generated.rows("chunks.jsonl")}
    sides = {cid: c["split"] for cid, c in chunks.items()}
    assert set(sides.values()) == {"train", "eval"}
    for side, name, corpus in (("train", "train.jsonl", "corpus_train.jsonl"),
                               ("eval", "eval.jsonl", "corpus_eval.jsonl")):  # fmt: skip
        for row in generated.rows(name):
            assert {sides[c] for c in row["context_chunk_ids"]} == {side}
        assert {r["chunk_id"] for r in generated.rows(corpus)} == {
            cid for cid, s in sides.items() if s == side
        }
    questions = [r["question"].lower() for r in generated.rows("train.jsonl")]
    assert not set(questions) & {r["question"].lower() for r in generated.rows("eval.jsonl")}


def test_the_files_load_with_load_dataset(generated: Run) -> None:
    from datasets import load_dataset

    counts = generated.manifest()["counts"]
    rows = {"train": counts["trainPairs"], "eval": counts["evalPairs"]}
    # The card names only the non-empty splits: a tiny model may leave one side without pairs.
    pairs = load_dataset(str(generated.out), "instruct")
    assert {s: pairs[s].num_rows for s in pairs} == {s: n for s, n in rows.items() if n}
    direct = load_dataset(
        "json", data_files={s: str(generated.out / f"{s}.jsonl") for s, n in rows.items() if n}
    )
    assert sum(direct[s].num_rows for s in direct) == counts["pairs"]
    corpus = load_dataset(str(generated.out), "corpus")
    assert corpus["train"].num_rows + corpus["eval"].num_rows == counts["chunks"]


def test_progress_and_counts_reach_the_status(generated: Run) -> None:
    status = json.loads(generated.status_file.read_text())
    assert status_pruned_paths("DatasetGeneration", status) == []
    counts = generated.manifest()["counts"]
    assert status["progress"]["step"] == status["progress"]["total"] == counts["chunks"]
    assert status["progress"]["pairsKept"] == counts["pairs"]
    assert status["metrics"]["pairs"] == counts["pairs"]
    assert status["metrics"]["dropped"] == counts["dropped"]
    assert status["outputs"]["train"].endswith("train.jsonl")


def test_a_rerun_skips_chunks_already_done(generated: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(generated.out, out)
    log = out / WORK_DIR / GENERATED
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")  # the last chunk was in flight when killed
    spec = yaml.safe_load(generated.spec_file.read_text())
    spec["spec"]["output"]["path"] = str(out)
    spec_file = write_spec(tmp_path / "spec.yaml", spec["spec"])

    proc = run_datagen(spec_file, tmp_path / "status.json", timeout=600)

    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert (counts["resumedChunks"], counts["generatedChunks"]) == (len(lines) - 1, 1)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["progress"]["resumedFromStep"] == len(lines) - 1


def test_a_model_missing_on_the_server_is_a_clear_error(
    ollama_server: OllamaServer, tmp_path: Path
) -> None:
    docs = make_mixed_docs(tmp_path / "docs")
    spec = small_spec(ollama_server.url, "no-such-model", docs, tmp_path / "out")
    proc = run_datagen(write_spec(tmp_path / "spec.yaml", spec), tmp_path / "status.json")
    assert proc.returncode == 1
    assert error_line(proc.stderr) == (
        f"error: spec.generator.model: model 'no-such-model' not found on {ollama_server.url}; "
        "run `ollama pull no-such-model`"
    )


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Fails the first `failures` chat requests with 503, then forwards to the real server."""

    upstream = ""
    failures = 0
    seen: list[int] = []

    def _forward(self, body: bytes | None) -> None:
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=300) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, data = err.code, err.read()
        self._reply(status, data)

    def _reply(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/api/chat":
            type(self).seen.append(1)
            if len(self.seen) <= self.failures:
                return self._reply(503, b'{"error": "server busy"}')
        self._forward(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_proxy(ollama_server: OllamaServer) -> Iterator[tuple[str, type[_FlakyProxy]]]:
    handler = type("Proxy", (_FlakyProxy,), {"upstream": ollama_server.url, "failures": 2,
                                             "seen": []})  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_server_errors_are_retried_until_the_server_answers(
    datagen_model: str, flaky_proxy: tuple[str, type[_FlakyProxy]], tmp_path: Path
) -> None:
    url, handler = flaky_proxy
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text(
        "# Annual leave\n\nFull-time employees receive 27 days of annual leave per year, plus "
        "8 public holidays. Leave is booked in Harbour and approved by your manager.\n"
    )
    spec = DatasetGenerationSpec.model_validate(
        small_spec(url, datagen_model, docs, tmp_path / "out") | {"split": {"evalFraction": 0.5}}
    )
    spec.generator.concurrency = 1
    spec.quality.min_answer_support = 0.0  # this test is about retries, not about quality

    manifest = DatasetGenerator(spec, tmp_path / "out", Reporter(None)).run()

    assert len(handler.seen) == 3
    record = json.loads((tmp_path / "out" / WORK_DIR / GENERATED).read_text())
    assert record["attempts"] == 3
    assert manifest["counts"]["generatedChunks"] == 1


def test_ollama_stopped_mid_run_fails_the_chunk_after_bounded_retries_and_a_restart_serves_again(
    tmp_path: Path,
) -> None:
    server = start_ollama(tmp_path / "ollama", num_parallel=1)
    port = int(server.url.rsplit(":", 1)[1])
    request = GenerationRequest(
        "c-0", [{"role": "user", "content": "Say yes."}], ["factual"], None, ["c-0"]
    )
    options = {"num_predict": 4, "temperature": 0.0, "seed": 1}
    backend = OllamaBackend(server.url, server.model, options, timeout=300, max_retries=2,
                            backoff_base=0.2)  # fmt: skip
    try:
        backend.check()  # the run starts with the server up
        server.stop()  # and it goes away mid-run

        with pytest.raises(BackendUnavailable) as down:
            backend.generate(request)

        server = start_ollama(tmp_path / "ollama", num_parallel=1, port=port)
        _, attempts = backend.generate(request)  # the same client, the server back
    finally:
        backend.close()
        server.stop()

    assert str(down.value).startswith(f"Ollama at {server.url} failed chunk c-0 after 3 attempt")
    assert "connection failed" in str(down.value)
    assert attempts == 1
