"""What is checked before any weight is read: target modules, memory, 4-bit support, settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.families import GENERIC
from llmft.workloads.entry import WorkloadError
from llmft.workloads.trainer.model import (
    GiB,
    build_trainable_model,
    check_fits,
    estimate_training_memory,
    resolve_hyperparameters,
    resolve_target_modules,
)
from trainer.conftest import RunTrainer, finetune_manifest


def _meta_llama(hidden: int, layers: int, inter: int, heads: int = 4, vocab: int = 32000):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=vocab,
    )
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def _spec(**fields: object) -> FineTuneJobSpec:
    """A spec resolved as the trainer resolves it (unset shape fields from the family preset)."""
    spec = FineTuneJobSpec.model_validate(
        {"baseModel": {"name": "owner/model-13b"}, "dataset": {"path": "/data"}, **fields}
    )
    return resolve_hyperparameters(spec, GENERIC)


def test_target_modules_are_checked_against_the_models_layers() -> None:
    model = _meta_llama(256, 2, 512)

    assert resolve_target_modules(model, ["all-linear"]) == "all-linear"
    assert resolve_target_modules(model, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    with pytest.raises(WorkloadError) as err:
        resolve_target_modules(model, ["q_proj", "query_key_value"])
    message = str(err.value)
    assert message.startswith("spec.hyperparameters.lora.targetModules: query_key_value not found")
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message


def test_a_13b_model_in_bf16_does_not_fit_a_24gib_gpu_and_the_error_says_how_much() -> None:
    model = _meta_llama(5120, 40, 13824, heads=40)  # Llama-2-13B's shape
    spec = _spec(method="lora", hyperparameters={"batchSize": 4, "maxSeqLength": 1024})
    estimate = estimate_training_memory(model, spec, dtype_bytes=2, device="cuda")

    assert 24.2 * GiB < estimate.weights < 24.3 * GiB  # 13.0B parameters x 2 bytes
    with pytest.raises(WorkloadError) as err:
        check_fits(estimate, 22 * GiB, "GPU 0 (NVIDIA A10G) has 22.0 GiB free of 22.5", spec)
    message = str(err.value)
    assert message.startswith("spec.baseModel: owner/model-13b with method lora needs about ")
    assert f"{estimate.total / GiB:.1f} GiB" in message and "method: qlora" in message


def test_the_same_13b_model_fits_with_qlora() -> None:
    model = _meta_llama(5120, 40, 13824, heads=40)
    spec = _spec(method="qlora", hyperparameters={"batchSize": 4, "maxSeqLength": 1024})
    estimate = estimate_training_memory(model, spec, dtype_bytes=2, device="cuda")

    assert estimate.weights < 8 * GiB
    check_fits(estimate, 22 * GiB, "GPU 0 has 22.0 GiB free", spec)


def test_qlora_where_4bit_cannot_run_is_refused_before_loading(tiny_model: Path) -> None:
    spec = _spec(method="qlora", baseModel={"name": str(tiny_model)})

    # No CUDA on this machine: bitsandbytes cannot quantise there.
    with pytest.raises(
        WorkloadError, match=r"^spec.method: qlora needs 4-bit bitsandbytes on cuda"
    ):
        build_trainable_model(spec, tokenizer=None, family=GENERIC, device="cuda")


def test_an_unknown_target_module_fails_the_workload_with_exit_1(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        tmp_path / "out",
        hyperparameters={"lora": {"targetModules": ["c_attn"]}},
    )
    rc, status = run_trainer(manifest)

    assert rc == 1
    assert "targetModules: c_attn not found in LlamaForCausalLM" in status["progress"]["message"]


def test_early_stopping_without_an_eval_split_is_refused(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    (dataset_dir / "eval.jsonl").unlink()
    manifest = finetune_manifest(
        tiny_model, dataset_dir, tmp_path / "out", hyperparameters={"earlyStoppingPatience": 2}
    )
    rc, status = run_trainer(manifest)

    assert rc == 1
    assert (
        "earlyStoppingPatience: early stopping needs an eval split" in status["progress"]["message"]
    )


def test_checkpoints_of_a_different_run_are_not_resumed(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    ckpt = out / "checkpoints"
    (ckpt / "checkpoint-3").mkdir(parents=True)
    (ckpt / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    (ckpt / "run.json").write_text(json.dumps({"method": "qlora"}))

    rc, status = run_trainer(finetune_manifest(tiny_model, dataset_dir, out))

    assert rc == 1
    assert "holds checkpoints of a different run" in status["progress"]["message"]


def test_a_push_without_the_token_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmft.api.common import HuggingFaceRepo
    from llmft.workloads.hubpush import push_folder

    monkeypatch.delenv("LLMFT_HF_PUSH_TOKEN", raising=False)
    target = HuggingFaceRepo.model_validate(
        {"repo": "me/adapter", "tokenSecretRef": {"name": "hf", "key": "token"}}
    )
    with pytest.raises(WorkloadError, match=r"tokenSecretRef: no push token in \$LLMFT_HF_PUSH"):
        push_folder(target, tmp_path, "test")


def _config(spec: FineTuneJobSpec, tmp_path: Path, has_eval: bool = True):
    import torch

    from llmft.workloads.trainer.pipeline import training_config

    placement = SimpleNamespace(device="cpu", dtype=torch.float32)
    return training_config(spec, tmp_path, "job", placement, has_eval, ["tensorboard"])


def test_early_stopping_keeps_the_best_checkpoint_by_eval_loss(tmp_path: Path) -> None:
    spec = _spec(
        hyperparameters={"earlyStoppingPatience": 2, "evalSteps": 10, "saveSteps": 20},
    )
    config = _config(spec, tmp_path)

    assert config.load_best_model_at_end and config.metric_for_best_model == "eval_loss"
    assert config.eval_strategy == "steps" and config.eval_steps == 10
    assert not config.bf16 and config.use_cpu  # fp32 on a CPU


def test_early_stopping_with_checkpoints_off_the_eval_steps_is_refused(tmp_path: Path) -> None:
    spec = _spec(hyperparameters={"earlyStoppingPatience": 2, "evalSteps": 10, "saveSteps": 25})

    with pytest.raises(WorkloadError, match=r"saveSteps \(25\) must be a multiple of evalSteps"):
        _config(spec, tmp_path)


def test_causal_mode_packs_and_instruct_mode_masks_the_prompt(tmp_path: Path) -> None:
    causal = _config(_spec(mode="causal"), tmp_path, has_eval=False)
    instruct = _config(_spec(mode="instruct"), tmp_path, has_eval=False)

    assert causal.packing and causal.packing_strategy == "bfd_split"
    assert not instruct.packing and instruct.completion_only_loss is True
    assert causal.eval_strategy == "no"


def test_a_configured_tracker_that_is_not_installed_is_named(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    manifest = finetune_manifest(tiny_model, dataset_dir, tmp_path / "out")
    manifest["spec"]["tracking"] = {"wandbProject": "hr"}
    rc, status = run_trainer(manifest)

    assert rc == 1
    assert status["progress"]["message"] == (
        "failed: spec.tracking.wandbProject: set, but the wandb package is not installed "
        "in the trainer image"
    )
