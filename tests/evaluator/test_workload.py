"""`python -m llmft.workloads.evaluator --spec FILE` end to end on CPU: a tiny model for the
fast checks, SmolLM2-135M-Instruct (with and without RAG) for the slow one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evaluator.conftest import QUESTIONS, SMOLLM2_SOURCE, evaluation_manifest
from evaluator.standin_judge import StandInJudge
from llmft.api.crdgen import status_pruned_paths
from llmft.workloads.entry import run_workload
from llmft.workloads.evaluator.pipeline import main

SpecWriter = Callable[[dict[str, Any]], Path]


def _run(spec: Path) -> int:
    return run_workload("Evaluation", "test", main, ["--spec", str(spec)])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def standin() -> Iterator[StandInJudge]:
    server = StandInJudge().start()
    yield server
    server.stop()


def test_two_arms_with_rag_and_judge_write_items_summary_status(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec, standin, monkeypatch
) -> None:
    out = tmp_path / "out"
    status_file = tmp_path / "status.json"
    monkeypatch.setenv("LLMFT_STATUS_FILE", str(status_file))
    arms = [
        {"name": "base", "baseModel": {"name": str(tiny_model)}},
        {
            "name": "base-rag",
            "baseModel": {"name": str(tiny_model)},
            "rag": {"enabled": True, "topK": 2},
        },
    ]
    manifest = evaluation_manifest(
        dataset_dir,
        out,
        arms,
        metrics=["bleu", "rouge", "ngram", "accuracy", "faithfulness"],
        judge={"provider": "openai", "endpoint": standin.url + "/v1", "model": "stand-in"},
    )
    assert _run(write_spec(manifest)) == 0

    items = _lines(out / "items.jsonl")
    assert [(r["arm"], r["id"]) for r in items] == [
        (arm, q[0]) for arm in ("base", "base-rag") for q in QUESTIONS
    ]
    for record in items:
        assert record["scores"]["accuracy"] == pytest.approx(0.75)
        assert set(record["scores"]) >= {"bleu", "rouge1", "rouge2", "rougeL", "ngram"}
        assert "chrf" not in record["scores"]
    rag_records = [r for r in items if r["rag"]]
    assert all(len(r["retrieved"]) == 2 for r in rag_records)
    assert all(r["scores"]["faithfulness"] == pytest.approx(0.75) for r in rag_records)
    assert all("faithfulness" not in r["scores"] for r in items if not r["rag"])
    # These questions paraphrase their chunk closely: MiniLM finds every gold chunk in its top 2.
    assert all(r["hit"] is True for r in rag_records)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["baseline"] == "base"
    assert sorted(summary["ranking"]) == ["base", "base-rag"]
    # Four questions can never make a difference significant: no winner, and the verdict says so.
    assert summary["winner"] is None
    assert summary["verdict"]["best"] == summary["ranking"][0]
    by_name = {a["name"]: a for a in summary["arms"]}
    assert by_name["base-rag"]["retrievalHitRate"] == 1.0
    assert by_name["base"]["retrievalHitRate"] is None
    assert by_name["base-rag"]["metrics"]["accuracy"]["mean"] == pytest.approx(0.75)
    assert by_name["base"]["metrics"]["faithfulness"]["n"] == 0
    assert summary["retrievalBackend"] == "embedded"

    status = json.loads(status_file.read_text())
    assert status_pruned_paths("Evaluation", status) == []
    assert "winner" not in status["metrics"]
    assert status["metrics"]["verdict"] == summary["verdict"]["reason"]
    assert status["metrics"]["judgeMissingShare"] == 0.0
    assert status["metrics"]["base-rag.accuracy"] == pytest.approx(0.75)
    assert status["progress"]["itemsTotal"] == len(QUESTIONS)
    assert status["progress"]["percent"] == 100.0
    result = json.loads((out / "result.json").read_text())
    assert result["outputs"]["summary"] == str(out / "summary.json")


def test_a_restart_reuses_finished_arms(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec
) -> None:
    model_copy = tmp_path / "model"
    shutil.copytree(tiny_model, model_copy)
    out = tmp_path / "out"
    manifest = evaluation_manifest(
        dataset_dir, out, [{"name": "base", "baseModel": {"name": str(model_copy)}}]
    )
    spec = write_spec(manifest)
    assert _run(spec) == 0
    first = (out / "items.jsonl").read_text()
    # Without the model only the saved arm can answer: the rerun must not load it.
    shutil.rmtree(model_copy)
    (out / "items.jsonl").unlink()
    assert _run(spec) == 0
    assert (out / "items.jsonl").read_text() == first


def test_an_adapter_arm_answers_with_the_adapter_applied(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter): make it change answers
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(adapter)

    out = tmp_path / "out"
    arms = [
        {"name": "base", "baseModel": {"name": str(tiny_model)}},
        {"name": "tuned", "baseModel": {"name": str(tiny_model)}, "adapterPath": str(adapter)},
    ]
    assert _run(write_spec(evaluation_manifest(dataset_dir, out, arms))) == 0
    items = _lines(out / "items.jsonl")
    base = [r["answer"] for r in items if r["arm"] == "base"]
    tuned = [r["answer"] for r in items if r["arm"] == "tuned"]
    assert base != tuned
    summary = json.loads((out / "summary.json").read_text())
    assert [a["adapter"] for a in summary["arms"]] == [None, str(adapter)]


def test_missing_eval_split_fails_naming_the_field(  # type: ignore[no-untyped-def]
    tiny_model, tmp_path, write_spec, capsys
) -> None:
    empty = tmp_path / "empty-dataset"
    empty.mkdir()
    manifest = evaluation_manifest(
        empty, tmp_path / "out", [{"name": "base", "baseModel": {"name": str(tiny_model)}}]
    )
    assert _run(write_spec(manifest)) == 1
    assert "spec.dataset.path" in capsys.readouterr().err


def test_adapter_dir_without_adapter_fails_naming_the_field(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec, capsys
) -> None:
    arms = [{"name": "tuned", "baseModel": {"name": str(tiny_model)}, "adapterPath": str(tmp_path)}]
    manifest = evaluation_manifest(dataset_dir, tmp_path / "out", arms)
    assert _run(write_spec(manifest)) == 1
    assert "adapterPath" in capsys.readouterr().err


def test_unknown_embedding_model_fails_naming_the_field(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec, capsys
) -> None:
    arms = [{"name": "rag", "baseModel": {"name": str(tiny_model)}, "rag": {"enabled": True}}]
    manifest = evaluation_manifest(
        dataset_dir,
        tmp_path / "out",
        arms,
        retrieval={"backend": "embedded", "embeddingModel": "pkg:no_such_package/model"},
    )
    assert _run(write_spec(manifest)) == 1
    assert "spec.retrieval.embeddingModel" in capsys.readouterr().err


def test_unreachable_judge_fails_before_any_generation(  # type: ignore[no-untyped-def]
    tiny_model, dataset_dir, tmp_path, write_spec, capsys
) -> None:
    manifest = evaluation_manifest(
        dataset_dir,
        tmp_path / "out",
        [{"name": "base", "baseModel": {"name": str(tiny_model)}}],
        metrics=["rouge", "accuracy"],
        judge={"provider": "ollama", "endpoint": "http://127.0.0.1:9", "model": "x"},
    )
    assert _run(write_spec(manifest)) == 1
    assert "spec.judge.endpoint" in capsys.readouterr().err
    assert not (tmp_path / "out" / "arms").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smollm2_with_and_without_rag_via_the_module_entrypoint(  # type: ignore[no-untyped-def]
    dataset_dir, tmp_path, write_spec
) -> None:
    """The real model, run exactly as a pod runs it: `python -m llmft.workloads.evaluator`."""
    out = tmp_path / "out"
    arms = [
        {"name": "base", "baseModel": SMOLLM2_SOURCE},
        {"name": "base-rag", "baseModel": SMOLLM2_SOURCE, "rag": {"enabled": True, "topK": 1}},
    ]
    manifest = evaluation_manifest(
        dataset_dir, out, arms, generation={"maxNewTokens": 32, "batchSize": 2, "maxItems": 2}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "llmft.workloads.evaluator", "--spec", str(write_spec(manifest))],
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = _lines(out / "items.jsonl")
    assert len(items) == 4
    assert all(r["answer"].strip() for r in items), "SmolLM2 answers every question"
    rag = [r for r in items if r["rag"]]
    # maxItems samples two questions (seeded, one per source document); each retrieves its own
    # gold chunk first.
    gold = {qid: chunks[0] for qid, _, _, chunks in QUESTIONS}
    assert len({gold[r["id"]] for r in rag}) == 2
    assert [r["retrieved"][0]["id"] for r in rag] == [gold[r["id"]] for r in rag]
    # With the chunk in the prompt, the instruct model repeats its facts ("27", "60", ...).
    facts = {"q-leave-days": "27", "q-fit-note": "seven", "q-core-hours": "10", "q-expenses": "60"}
    assert any(facts[r["id"]] in r["answer"] for r in rag), [r["answer"] for r in rag]
    summary = json.loads((out / "summary.json").read_text())
    assert {a["name"] for a in summary["arms"]} == {"base", "base-rag"}
    assert all(a["metrics"]["rougeL"]["n"] == 2 for a in summary["arms"])
