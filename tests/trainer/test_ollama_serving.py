"""A FineTuneJob's adapter served by the real Ollama: trained here on SmolLM2 (llama
architecture), created in Ollama as base + ADAPTER, asked over Ollama's API, and scored as an
Evaluation endpoint arm beside a local arm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmft.models import MINILM, SMOLLM2, SMOLLM2_GGUF
from llmft.prompts import build_messages
from llmft.workloads.entry import run_workload
from trainer.conftest import FACTS, finetune_manifest, write_dataset

pytestmark = [pytest.mark.ollama, pytest.mark.slow]

TUNED = "llmft-test-tuned"


def _run(kind: str, manifest: dict[str, Any], workdir: Path, tag: str) -> dict[str, Any]:
    if kind == "FineTuneJob":
        from llmft.workloads.trainer.pipeline import main
    else:
        from llmft.workloads.evaluator.pipeline import main
    spec = workdir / f"{tag}.json"
    status = workdir / f"{tag}-status.json"
    spec.write_text(json.dumps(manifest))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMFT_STATUS_FILE", str(status))
        rc = run_workload(kind, "test", main, ["--spec", str(spec)])
    result = json.loads(status.read_text()) if status.exists() else {}
    assert rc == 0, result.get("progress", {}).get("message")
    return result


def _ask(url: str, model: str, question: str) -> str:
    import ollama

    reply = ollama.Client(host=url).chat(
        model=model,
        messages=build_messages(question),
        options={"temperature": 0, "seed": 0, "num_predict": 24},
    )
    return str(reply.message.content).strip()


@pytest.fixture(scope="module")
def served(ollama_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Train a LoRA adapter on SmolLM2 that learns FACTS, with output.ollama asking for it."""
    work = tmp_path_factory.mktemp("ollama-serving")
    dataset = write_dataset(work / "dataset", repeat=4)
    manifest = finetune_manifest(
        SMOLLM2,
        dataset,
        work / "out",
        hyperparameters={"maxSteps": 8, "learningRate": 0.004, "saveSteps": 8, "evalSteps": 8},
        output={
            "path": str(work / "out"),
            "ollama": {"host": ollama_server.url, "model": TUNED, "base": ollama_server.model},
        },
    )
    manifest["spec"]["baseModel"]["ggufFile"] = SMOLLM2_GGUF
    status = _run("FineTuneJob", manifest, work, "ftj")
    yield status, work, dataset


def test_the_adapter_in_ollama_answers_what_it_was_trained_on(served, ollama_server) -> None:  # type: ignore[no-untyped-def]
    status, _, _ = served
    assert status["outputs"]["ollama"]["model"] == f"{TUNED}:latest"
    assert status["outputs"]["ollama"]["method"] == "adapter"
    question = FACTS[0][0]

    tuned = _ask(ollama_server.url, TUNED, question)
    base = _ask(ollama_server.url, ollama_server.model, question)

    assert tuned != base
    assert "green" in tuned.lower(), (tuned, base)


def test_an_endpoint_arm_on_the_ollama_model_ranks_beside_a_local_arm(  # type: ignore[no-untyped-def]
    served, ollama_server
) -> None:
    _, work, dataset = served
    out = work / "eval"
    manifest = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "served", "namespace": "default"},
        "spec": {
            "dataset": {"path": str(dataset)},
            "arms": [
                {"name": "local-base", "baseModel": {"name": SMOLLM2, "ggufFile": SMOLLM2_GGUF}},
                {
                    "name": "ollama-tuned",
                    "endpoint": {"provider": "ollama", "url": ollama_server.url, "model": TUNED},
                },
            ],
            "metrics": ["rouge", "bleu"],
            "primaryMetric": "rouge",
            "generation": {"maxNewTokens": 24, "batchSize": 2},
            "retrieval": {"backend": "embedded", "embeddingModel": MINILM},
            "bootstrap": {"samples": 200},
            "resources": {"gpuCount": 0},
            "output": {"path": str(out)},
        },
    }
    status = _run("Evaluation", manifest, work, "eval")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranking"] == ["ollama-tuned", "local-base"]
    # Ranked first ("winner" needs a significant paired difference: two questions cannot give one)
    assert status["metrics"]["best"] == "ollama-tuned"
    tuned = next(a for a in summary["arms"] if a["name"] == "ollama-tuned")
    assert tuned["endpoint"]["model"] == TUNED
    assert tuned["n"] == 2


def test_a_base_missing_from_ollama_fails_naming_the_field(ollama_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from llmft.api.finetunejob import OllamaServing
    from llmft.workloads.entry import WorkloadError
    from llmft.workloads.trainer.ollama import publish_to_ollama

    serving = OllamaServing(host=ollama_server.url, base="no-such-model")
    with pytest.raises(WorkloadError, match=r"spec\.output\.ollama\.base: 'no-such-model'"):
        publish_to_ollama(serving, "job", tmp_path, None)


def test_llmft_chat_asks_the_jobs_ollama_model(served, ollama_server, capsys) -> None:  # type: ignore[no-untyped-def]
    from llmft.cli import main

    status, work, _ = served
    # The state directory `llmft run` would have left: the job's resolved spec and its status.
    state = work / "state"
    spec = json.loads((work / "ftj.json").read_text())
    for area, body in (("specs", spec), ("status", {**status, "phase": "Succeeded"})):
        (state / area / "FineTuneJob").mkdir(parents=True, exist_ok=True)
        (state / area / "FineTuneJob" / "test-ftj.json").write_text(json.dumps(body))

    args = ["chat", "ftj/test-ftj", "--served", "--state-dir", str(state), "--max-new-tokens", "24"]
    assert main([*args, "-q", FACTS[0][0]]) == 0
    out, err = capsys.readouterr()
    assert "green" in out.lower()
    assert f"Ollama model {TUNED}:latest at {ollama_server.url}" in err


def test_a_merged_model_is_imported_whole(  # type: ignore[no-untyped-def]
    ollama_server, tiny_model, dataset_dir, tmp_path, run_trainer
) -> None:
    """method: merged, for families whose adapters Ollama cannot apply (tiny Llama: fast)."""
    import ollama

    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        tmp_path / "out",
        hyperparameters={"maxSteps": 1, "saveSteps": 1, "evalSteps": 1},
        output={
            "path": str(tmp_path / "out"),
            "ollama": {"host": ollama_server.url, "model": "llmft-test-merged", "method": "merged"},
        },
    )
    rc, status = run_trainer(manifest)

    assert rc == 0, status.get("progress", {}).get("message")
    assert status["outputs"]["ollama"]["model"] == "llmft-test-merged:latest"
    assert status["outputs"]["merged"]
    shown = ollama.Client(host=ollama_server.url).show("llmft-test-merged")
    assert shown.details.family == "llama"
    assert "im_start" in (shown.template or "")  # the chat template came along
    assert isinstance(_ask(ollama_server.url, "llmft-test-merged", FACTS[0][0]), str)
