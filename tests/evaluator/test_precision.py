"""An arm's base is loaded as its adapter was trained: 4-bit NF4 under a QLoRA adapter, unless
the spec says otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from llmft.api.evaluation import Arm
from llmft.api.layout import ADAPTER_TRAINING
from llmft.workloads.evaluator.pipeline import ModelCache, base_in_4bit


def _adapter(tiny_model: Path, out: Path, method: str | None) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    model.save_pretrained(out)
    if method is not None:
        (out / ADAPTER_TRAINING).write_text(json.dumps({"method": method, "mode": "instruct"}))
    return out


def _arm(model: Path, adapter: Path | None, precision: str = "as-trained") -> Arm:
    body = {"name": "tuned", "baseModel": {"name": str(model)}, "basePrecision": precision}
    if adapter is not None:
        body["adapterPath"] = str(adapter)
    return Arm.model_validate(body)


def test_a_qlora_adapter_is_evaluated_on_a_4bit_base(tiny_model: Path, tmp_path: Path) -> None:
    adapter = _adapter(tiny_model, tmp_path / "qlora", "qlora")
    arm = _arm(tiny_model, adapter)
    assert base_in_4bit(arm)
    model, _ = ModelCache().get(arm, 0)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds


def test_precision_follows_the_adapter_unless_the_spec_says_otherwise(
    tiny_model: Path, tmp_path: Path
) -> None:
    qlora = _adapter(tiny_model, tmp_path / "qlora", "qlora")
    lora = _adapter(tiny_model, tmp_path / "lora", "lora")
    foreign = _adapter(tiny_model, tmp_path / "foreign", None)
    assert base_in_4bit(_arm(tiny_model, qlora))
    assert not base_in_4bit(_arm(tiny_model, qlora, "full"))
    assert not base_in_4bit(_arm(tiny_model, lora))
    assert base_in_4bit(_arm(tiny_model, lora, "4bit"))
    assert not base_in_4bit(_arm(tiny_model, foreign))  # trained elsewhere: nothing recorded
    assert not base_in_4bit(_arm(tiny_model, None))
