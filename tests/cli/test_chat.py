"""`llmft chat`: the target a job or the options name, and answers from a local base + adapter
with the retrieval the job trained with (Ollama: tests/trainer/test_ollama_serving.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmft.cli import main
from llmft.models import MINILM
from trainer.conftest import FACTS, write_dataset


@pytest.fixture(scope="module")
def tiny_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory in which FineTuneJob `hr` succeeded with RAG, on a tiny Llama."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("chat")
    base = build_tiny_model(root / "base")
    adapter = root / "artifacts" / "finetune" / "hr" / "adapter"
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear")
    )
    model.save_pretrained(adapter)
    dataset = write_dataset(root / "dataset")
    state = root / "state"
    spec: dict[str, Any] = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "hr", "namespace": "default"},
        "spec": {
            "baseModel": {"name": str(base)},
            "dataset": {"path": str(dataset)},
            "method": "lora",
            "rag": {
                "enabled": True,
                "topK": 1,
                "retrieval": {"backend": "embedded", "embeddingModel": MINILM},
            },
            "output": {"path": str(adapter.parent)},
        },
    }
    status = {"phase": "Succeeded", "outputs": {"adapter": str(adapter)}}
    for area, body in (("specs", spec), ("status", status)):
        (state / area / "FineTuneJob").mkdir(parents=True)
        (state / area / "FineTuneJob" / "hr.json").write_text(json.dumps(body))
    return state


def test_chat_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["chat", "--help"])
    assert done.value.code == 0
    assert "ftj/NAME" in capsys.readouterr().out


def test_without_a_target_or_with_an_unknown_job_it_says_what_to_name(  # type: ignore[no-untyped-def]
    tiny_job, capsys
) -> None:
    assert main(["chat", "-q", "hi"]) == 2
    assert "name what to ask: ftj/NAME, --base-model NAME or --ollama MODEL" in (
        capsys.readouterr().err
    )
    assert main(["chat", "ftj/nope", "--state-dir", str(tiny_job), "-q", "hi"]) == 2
    assert "no FineTuneJob 'nope' has run in" in capsys.readouterr().err
    assert main(["chat", "ftj/hr", "--served", "--state-dir", str(tiny_job), "-q", "hi"]) == 2
    assert "the job has none (set spec.output.ollama)" in capsys.readouterr().err


def test_a_job_answers_locally_with_the_retrieval_it_trained_with(  # type: ignore[no-untyped-def]
    tiny_job, capsys
) -> None:
    from llmft.cli.chat import Answerer, target_from_job

    target = target_from_job(tiny_job, "hr", served=False)
    assert target.rag and target.top_k == 1 and target.adapter is not None
    answerer = Answerer(target, max_new_tokens=4, temperature=0.0)
    question, answer = FACTS[1]
    assert answerer.context(question) == [f"{answer} This is rule 1 of the handbook."]

    args = ["chat", "ftj/hr", "--state-dir", str(tiny_job), "--max-new-tokens", "4"]
    assert main([*args, "-q", FACTS[0][0], "-q", FACTS[2][0]]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "adapter" in err and "RAG top-1" in err
