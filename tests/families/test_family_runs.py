"""Each seed family trained and evaluated end to end on CPU: the real architecture class, shrunk
(random weights), with the model's real tokenizer and chat template.

The runs cover QLoRA and LoRA, causal and instruct, RAG on and off, two or three per family
rather than the full product; each instruct adapter is then evaluated against its base model.
A last test tunes a tiny Phi-2 (the family with no template of its own) until it ends answers
with <|endoftext|>, and fails if it never does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluator.conftest import evaluation_manifest
from family_models import build_tiny_family_model
from llmft.workloads.entry import run_workload
from trainer.conftest import finetune_manifest, write_dataset

pytestmark = pytest.mark.slow

# (fixture, family, method, mode, rag): every family trains twice or more, and between them
# the runs cover both methods, both modes and RAG on and off.
RUNS = [
    ("meta-llama-3-8b-instruct", "llama3", "qlora", "instruct", True),
    ("meta-llama-3-8b-instruct", "llama3", "lora", "causal", False),
    ("mistral-7b-instruct-v0.2", "mistral", "lora", "instruct", True),
    ("mistral-7b-instruct-v0.3", "mistral", "lora", "instruct", False),
    ("mistral-7b-instruct-v0.3", "mistral", "qlora", "causal", False),
    ("gemma-2b-it", "gemma", "qlora", "instruct", False),
    ("gemma-2b-it", "gemma", "lora", "instruct", True),
    ("phi-2", "phi2", "lora", "instruct", True),
    ("phi-2", "phi2", "qlora", "causal", False),
]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    names = sorted({run[0] for run in RUNS})
    root = tmp_path_factory.mktemp("tiny-families")
    return {name: build_tiny_family_model(name, root / name) for name in names}


def _run(kind: str, manifest: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> dict[str, Any]:
    from llmft.workloads.evaluator.pipeline import main as evaluate
    from llmft.workloads.trainer.pipeline import main as train

    spec = tmp_path / f"{kind}.json"
    status = tmp_path / f"{kind}-status.json"
    spec.write_text(json.dumps(manifest))
    monkeypatch.setenv("LLMFT_STATUS_FILE", str(status))
    main = train if kind == "FineTuneJob" else evaluate
    rc = run_workload(kind, "test", main, ["--spec", str(spec)])
    result = json.loads(status.read_text()) if status.exists() else {}
    assert rc == 0, result.get("progress", {}).get("message")
    return result


@pytest.mark.parametrize(
    ("fixture", "family", "method", "mode", "rag"),
    RUNS,
    ids=[f"{r[0]}-{r[2]}-{r[3]}{'-rag' if r[4] else ''}" for r in RUNS],
)
def test_family_trains_and_its_adapter_is_evaluated(
    fixture: str,
    family: str,
    method: str,
    mode: str,
    rag: bool,
    tiny_models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_models[fixture]
    dataset = write_dataset(tmp_path / "dataset", repeat=1)
    out = tmp_path / "ftj"
    manifest = finetune_manifest(
        model,
        dataset,
        out,
        method=method,
        mode=mode,
        rag={"enabled": rag, "topK": 1},
        hyperparameters={"maxSteps": 2, "saveSteps": 2, "evalSteps": 2, "batchSize": 2},
    )
    status = _run("FineTuneJob", manifest, tmp_path, monkeypatch)
    assert status["model"]["family"] == family
    assert not status["model"].get("warnings")
    assert status["hyperparameters"]["batchSize"] == 2
    assert status["hyperparameters"]["maxSeqLength"] == 128
    assert status["metrics"]["steps"] == 2
    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    if mode == "causal":
        return
    arms = [
        {"name": "base", "baseModel": {"name": str(model)}, "rag": {"enabled": rag, "topK": 1}},
        {
            "name": "tuned",
            "baseModel": {"name": str(model)},
            "adapterPath": str(adapter),
            "rag": {"enabled": rag, "topK": 1},
        },
    ]
    evaluation = evaluation_manifest(
        dataset, tmp_path / "eval", arms, metrics=["bleu"], primaryMetric="bleu"
    )
    result = _run("Evaluation", evaluation, tmp_path, monkeypatch)
    assert {arm: m["family"] for arm, m in result["models"].items()} == {
        "base": family,
        "tuned": family,
    }
    items = (tmp_path / "eval" / "items.jsonl").read_text().splitlines()
    assert len(items) == 2 * 2  # two arms x the two eval questions


def test_a_tuned_phi2_learns_to_end_its_answers_with_endoftext(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Phi-2 ships no template; without the EOS llmft appends, its answers never stop."""
    from llmft.api.common import ModelSource
    from llmft.prompts import build_messages
    from llmft.workloads import modeling
    from trainer.conftest import FACTS

    model = tiny_models["phi-2"]
    dataset = write_dataset(tmp_path / "dataset", repeat=4)
    out = tmp_path / "ftj"
    manifest = finetune_manifest(
        model,
        dataset,
        out,
        hyperparameters={
            "maxSteps": 40,
            "saveSteps": 40,
            "evalSteps": 40,
            "batchSize": 4,
            "learningRate": 0.02,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        },
    )
    _run("FineTuneJob", manifest, tmp_path, monkeypatch)

    def ends_with_eos(adapter: Path | None) -> list[bool]:
        import torch

        source = ModelSource(name=str(model))
        fmt = modeling.load_chat_format(source)
        if adapter is None:
            lm, _ = modeling.load_base_model(source, False, tokenizer=fmt.tokenizer)
        else:
            lm, _ = modeling.load_with_adapter(source, adapter, tokenizer=fmt.tokenizer)
        ended = []
        for question, _ in FACTS:
            ids = fmt.encode(fmt.prompt_text(build_messages(question)))
            with torch.inference_mode():
                new = lm.generate(
                    torch.tensor([ids]),
                    max_new_tokens=24,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=fmt.tokenizer.pad_token_id,
                )[0, len(ids) :].tolist()
            ended.append(fmt.end_of_turn_id in new)
        return ended

    assert not any(ends_with_eos(None))  # the untuned model never stops
    assert all(ends_with_eos(out / "adapter"))
