"""spec.speed resolved per device, the micro-batch search, and a run that uses them (CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.families import get_family
from llmft.workloads.entry import WorkloadError
from llmft.workloads.trainer.model import resolve_hyperparameters
from llmft.workloads.trainer.speed import largest_micro_batch, resolve_speed
from llmft.workloads.trainer.tokens import fit_to_length
from trainer.conftest import RunTrainer, finetune_manifest

GiB = 1024**3


def _spec(mode: str = "instruct", family: str = "llama3", **speed: Any) -> FineTuneJobSpec:
    spec = FineTuneJobSpec.model_validate(
        {"baseModel": {"name": "m"}, "dataset": {"path": "/d"}, "mode": mode, "speed": speed}
    )
    return resolve_hyperparameters(spec, get_family(family))


def _plan(device: str = "cpu", family: str = "llama3", mode: str = "instruct", **speed: Any):
    return resolve_speed(_spec(mode, family, **speed), get_family(family), device, False, "llama")


def test_on_a_cpu_auto_takes_sdpa_and_length_grouped_padded_batches() -> None:
    plan = _plan()

    assert plan.attn_implementation == "sdpa"
    assert not plan.padding_free.on and "quadratic" in plan.padding_free.reason
    assert plan.group_by_length.on
    assert not plan.fused_kernels.on and "CUDA only" in plan.fused_kernels.reason
    assert not plan.auto_batch_size.on and "no GPU" in plan.auto_batch_size.reason
    status = plan.to_status()
    assert status["fusedKernels"] == {"enabled": False, "reason": plan.fused_kernels.reason}
    assert status["attention"]["value"] == "sdpa"


def test_padding_free_rows_are_not_grouped_by_length() -> None:
    plan = _plan(paddingFree="on")

    assert plan.padding_free.on and not plan.group_by_length.on
    assert not _plan(groupByLength="off").group_by_length.on


def test_causal_rows_are_padding_free_exactly_when_packed() -> None:
    assert _plan(mode="causal").padding_free.on
    spec = _spec("causal")
    spec.hyperparameters.packing = False
    plan = resolve_speed(spec, get_family("llama3"), "cpu", False, "llama")
    assert not plan.padding_free.on and plan.group_by_length.on


def test_fast_paths_forced_on_where_they_cannot_run_are_refused_naming_the_field() -> None:
    with pytest.raises(WorkloadError, match=r"spec.speed.fusedKernels: on, but no GPU"):
        _plan(fusedKernels="on")
    with pytest.raises(WorkloadError, match=r"spec.speed.attention: flash_attention_2 needs"):
        _plan(attention="flash_attention_2")


def test_phi2_gets_no_fused_kernels_even_on_a_gpu() -> None:
    plan = _plan(device="cuda", family="phi2")

    assert not plan.fused_kernels.on
    assert "phi2 family's architecture has no Liger kernels" in plan.fused_kernels.reason


def test_an_explicit_attention_implementation_is_kept() -> None:
    assert _plan(attention="eager").attn_implementation == "eager"


def test_the_largest_fitting_divisor_of_the_effective_batch_is_chosen() -> None:
    # 1 GiB of weights plus 1 GiB per row; 5.5 GiB allowed: 4 rows fit, 8 do not.
    search = largest_micro_batch(16, lambda micro: (1 + micro) * GiB, int(5.5 * GiB))

    assert (search.micro_batch, search.gradient_accumulation_steps) == (4, 4)
    assert search.fits and len(search.probes) <= 3  # bisected over 1, 2, 4, 8, 16
    assert search.to_json()["probes"][0] == {"microBatch": 4, "fits": True, "peakGiB": 5.0}


def test_an_out_of_memory_probe_counts_as_not_fitting() -> None:
    search = largest_micro_batch(12, lambda micro: None if micro > 3 else micro * GiB, 100 * GiB)

    assert (search.micro_batch, search.gradient_accumulation_steps) == (3, 4)


def test_the_whole_effective_batch_is_taken_when_it_fits_and_primes_have_two_choices() -> None:
    assert largest_micro_batch(8, lambda micro: micro, 100).micro_batch == 8
    assert largest_micro_batch(7, lambda micro: micro, 6).micro_batch == 1


def test_when_not_even_one_row_fits_the_search_says_so() -> None:
    search = largest_micro_batch(4, lambda micro: 10 * GiB, GiB)

    assert search.micro_batch == 1 and not search.fits


def test_rows_longer_than_max_seq_length_are_cut_as_trl_would_cut_them() -> None:
    rows = [{"input_ids": list(range(10)), "completion_mask": [0] * 4 + [1] * 6}]

    kept, report = fit_to_length(rows, 8, "instruct", packing=False)

    assert kept == [{"input_ids": list(range(8)), "completion_mask": [0] * 4 + [1] * 4}]
    assert report.truncated == 1


def test_the_sft_config_follows_the_plan(tmp_path: Path) -> None:
    import torch

    from llmft.workloads.trainer.pipeline import training_config

    placement = SimpleNamespace(device="cpu", dtype=torch.float32)
    fast = training_config(_spec(), tmp_path, "j", placement, False, [], _plan(paddingFree="on"))
    padded = training_config(_spec(), tmp_path, "j", placement, False, [], _plan(paddingFree="off"))

    assert fast.padding_free and fast.max_length is None
    assert fast.include_num_input_tokens_seen == "all"
    assert fast.train_sampling_strategy == "random"
    assert not padded.padding_free and padded.max_length == 1024  # the llama3 QLoRA preset
    assert padded.train_sampling_strategy == "group_by_length"


@pytest.mark.slow
def test_a_run_sized_from_the_memory_estimate_trains_the_same_effective_batch_in_one_micro_batch(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        hyperparameters={"batchSize": 1, "gradientAccumulationSteps": 4, "maxSteps": 2},
        speed={"autoBatchSize": "on", "paddingFree": "off"},
    )
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    speed = status["speed"]
    assert speed["autoBatchSize"]["method"] == "estimate"
    assert speed["autoBatchSize"]["microBatch"] == 4
    assert speed["groupByLength"]["enabled"] and not speed["paddingFree"]["enabled"]
    assert status["hyperparameters"]["batchSize"] == 4
    assert status["hyperparameters"]["gradientAccumulationSteps"] == 1
    state = json.loads((out / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4 and state["global_step"] == 2


def test_a_memory_probe_step_trains_nothing(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    """The probe's forward and backward leave no gradient, no changed weight, no used-up
    random numbers: training after the search is training without it."""
    import datasets
    import torch
    from trl import SFTTrainer

    from llmft.api.common import ModelSource
    from llmft.workloads import modeling
    from llmft.workloads.trainer.model import build_trainable_model
    from llmft.workloads.trainer.pipeline import training_config
    from llmft.workloads.trainer.speed import probe_step

    fmt = modeling.load_chat_format(ModelSource(name=str(tiny_model)))
    spec = resolve_hyperparameters(
        FineTuneJobSpec.model_validate(
            finetune_manifest(tiny_model, dataset_dir, tmp_path / "out")["spec"]
        ),
        fmt.family,
    )
    tm = build_trainable_model(spec, fmt.tokenizer, fmt.family, "cpu")
    plan = resolve_speed(spec, fmt.family, "cpu", False, "llama")
    config = training_config(spec, tmp_path, "probe", tm, False, [], plan)
    rows = [{"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}]
    trainer = SFTTrainer(
        model=tm.model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tm.tokenizer,
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    rng = torch.random.get_rng_state()
    seen: list[float] = []
    lora_b = next(p for n, p in trainer.model.named_parameters() if "lora_B" in n)
    lora_b.register_hook(lambda grad: seen.append(float(grad.abs().sum())))

    probe_step(trainer, 2, 32)

    assert seen and seen[0] > 0  # a real backward pass ran
    assert torch.equal(torch.random.get_rng_state(), rng)
    for name, param in trainer.model.named_parameters():
        assert param.grad is None and torch.equal(param, before[name]), name
