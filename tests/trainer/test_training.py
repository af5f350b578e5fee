"""Real training steps on CPU: a tiny Llama (LoRA, QLoRA, causal + resume) and SmolLM2 from GGUF."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmft.models import MINILM
from trainer.conftest import RunTrainer, finetune_manifest, logged_losses

pytestmark = pytest.mark.slow


def _logits(model, tokenizer, text: str):
    import torch

    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_lora_instruct_loss_falls_and_the_reloaded_adapter_changes_the_output(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    from llmft.api.common import ModelSource
    from llmft.workloads.modeling import load_base_model, load_with_adapter

    out = tmp_path / "out"
    manifest = finetune_manifest(tiny_model, dataset_dir, out)
    manifest["spec"]["output"]["mergeAdapter"] = True
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    losses = logged_losses(out)
    assert len(losses) == 6 and losses[-1] < losses[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["tokensPerSecond"] > 0 and metrics["evalLoss"] > 0
    assert status["metrics"]["steps"] == 6
    assert status["progress"]["total"] == 6 and status["progress"]["tokensPerSecond"] > 0
    assert status["outputs"]["adapter"] == str(out / "adapter")
    card = (out / "adapter" / "README.md").read_text()
    assert str(tiny_model) in card and "learningRate: 0.005" in card and "evalLoss" in card
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    source = ModelSource(name=str(tiny_model))
    base, tokenizer = load_base_model(source, quantize_4bit=False)
    tuned, _ = load_with_adapter(source, out / "adapter")
    merged, _ = load_base_model(ModelSource(name=str(out / "merged")), quantize_4bit=False)
    text = "What colour is the front door of the office?"
    tuned_logits = _logits(tuned, tokenizer, text)
    assert not _logits(base, tokenizer, text).allclose(tuned_logits, atol=1e-4)
    assert _logits(merged, tokenizer, text).allclose(tuned_logits, atol=1e-4)
    assert "library_name: transformers" in (out / "merged" / "README.md").read_text()


def test_qlora_with_rag_context_trains_on_a_4bit_base(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        method="qlora",
        # Retrieved as the evaluation retrieves (same shape of settings), over the train chunks.
        rag={
            "enabled": True,
            "topK": 2,
            "retrieval": {"backend": "embedded", "embeddingModel": MINILM},
        },
        hyperparameters={"gradientCheckpointing": True, "maxSeqLength": 256},
    )
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    losses = logged_losses(out)
    assert losses[-1] < losses[0]
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA"
    assert "qlora" in (out / "adapter" / "README.md").read_text()
    # What an evaluation reads to load the base 4-bit, as trained.
    training = json.loads((out / "adapter" / "llmft_training.json").read_text())
    assert training["method"] == "qlora" and training["rag"]["enabled"] is True
    assert status["metrics"]["truncatedRows"] == 0 and status["metrics"]["droppedRows"] == 0


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stderr.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path} after {timeout}s")
        time.sleep(0.2)


def test_causal_training_killed_mid_run_resumes_from_its_last_checkpoint(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        mode="causal",
        hyperparameters={"maxSteps": 40, "saveSteps": 2, "evalSteps": 2, "maxSeqLength": 64},
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(manifest))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("LLMFT_STATUS_FILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmft.workloads.trainer", "--spec", str(spec_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_for(out / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc, timeout=240)
    proc.send_signal(signal.SIGKILL)  # no clean shutdown, as when a node dies
    proc.wait()
    saved = sorted(
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    )
    assert not (out / "adapter").exists()

    manifest["spec"]["hyperparameters"]["maxSteps"] = saved[-1] + 2
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumedFromStep"] == saved[-1]
    assert metrics["steps"] == saved[-1] + 2
    assert status["progress"]["resumedFromStep"] == saved[-1]
    steps = [
        json.loads(line)["step"]
        for line in (out / "log_history.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == sorted(set(steps)), "steps after the checkpoint were logged twice"
    assert steps[-1] == saved[-1] + 2

    # Restarted once more after the last step: nothing is trained past maxSteps.
    rc, status = run_trainer(manifest)
    assert rc == 0, status
    assert status["metrics"]["steps"] == saved[-1] + 2
    assert status["metrics"]["resumedFromStep"] == saved[-1] + 2


def start_trainer(
    manifest: dict[str, Any], tmp_path: Path, status_name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """The trainer's entrypoint as a pod runs it, in the background: (process, status file)."""
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(manifest))
    status_file = tmp_path / status_name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LLMFT_STATUS_FILE": str(status_file)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmft.workloads.trainer", "--spec", str(spec_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, status_file


def test_sigterm_mid_training_checkpoints_the_step_and_the_next_attempt_resumes_there(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    # Far more steps than the signal needs, and no periodic checkpoint: the only checkpoint is
    # the one written on SIGTERM, and the run cannot end before the signal arrives.
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        hyperparameters={"maxSteps": 100000, "saveSteps": 100000, "evalSteps": 100000},
    )
    proc, status_file = start_trainer(manifest, tmp_path, "status-sigterm.json")
    deadline = time.monotonic() + 240
    reported = 0
    while reported < 2:  # a step reported: the training loop is running
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no training step reported"
        time.sleep(0.2)
        if status_file.exists():
            text = status_file.read_text()
            reported = (json.loads(text).get("progress") or {}).get("step", 0) if text else 0

    proc.send_signal(signal.SIGTERM)  # what the kubelet sends on deletion, drain, preemption
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 143, err.decode()[-3000:]
    saved = [p.name for p in (out / "checkpoints").glob("checkpoint-*")]
    assert len(saved) == 1, saved
    step = int(saved[0].split("-")[1])
    assert step >= reported and (out / "checkpoints" / saved[0] / "trainer_state.json").exists()
    stopped = json.loads(status_file.read_text())["progress"]["message"]
    assert stopped == (
        f"stopped by SIGTERM: checkpoint-{step} written at step {step} of 100000; "
        f"the next attempt resumes from step {step}"
    )
    assert not (out / "adapter").exists()

    manifest["spec"]["hyperparameters"]["maxSteps"] = step + 2
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    assert status["metrics"]["resumedFromStep"] == step and status["metrics"]["steps"] == step + 2
    assert status["progress"]["resumedFromStep"] == step


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs standing in for the artefact volume (mounting needs root)."""
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(volume: Path) -> Path:
    """Write until the volume has no space left; the file that holds it all."""
    filler = volume / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    return filler


def test_a_full_artefact_volume_fails_with_a_clear_reason_and_keeps_the_run_resumable(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer, small_volume: Path
) -> None:
    out = small_volume / "finetunejob" / "test-ftj"
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        hyperparameters={"maxSteps": 100000, "saveSteps": 2, "evalSteps": 100000},
    )
    proc, status_file = start_trainer(manifest, tmp_path, "status-full.json")
    _wait_for(out / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc, timeout=240)
    filler = _fill(small_volume)  # the volume fills up while the trainer runs
    _, err = proc.communicate(timeout=240)

    assert proc.returncode == 1, err.decode()[-3000:]
    message = json.loads(status_file.read_text())["progress"]["message"]
    assert message.startswith(f"failed: no space left on the artefact volume under {out} (")
    assert "spec.output.pvc" in message
    assert not (out / "adapter").exists()

    filler.unlink()  # space again: the same spec resumes from the newest complete checkpoint
    saved = [
        int(p.name.split("-")[1])
        for p in (out / "checkpoints").glob("checkpoint-*")
        if (p / "trainer_state.json").exists()
    ]
    manifest["spec"]["hyperparameters"]["maxSteps"] = max(saved) + 2
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    resumed = status["metrics"]["resumedFromStep"]
    assert resumed >= 2 and status["metrics"]["steps"] == resumed + 2
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_smollm2_from_the_gguf_package_runs_lora_steps(
    dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    from llmft.models import SMOLLM2, SMOLLM2_GGUF

    out = tmp_path / "out"
    manifest = finetune_manifest(
        SMOLLM2,
        dataset_dir,
        out,
        hyperparameters={
            "maxSteps": 3,
            "batchSize": 2,
            "maxSeqLength": 96,
            "learningRate": 0.001,
            "saveSteps": 3,
            "evalSteps": 3,
            "lora": {"r": 4, "alpha": 8, "targetModules": ["q_proj", "v_proj"]},
        },
    )
    manifest["spec"]["baseModel"]["ggufFile"] = SMOLLM2_GGUF
    manifest["spec"]["baseModel"]["offline"] = True
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["totalParameters"] > 100_000_000
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


def test_early_stopping_ends_a_diverging_run_and_keeps_the_best_checkpoint(
    tiny_model: Path, dataset_dir: Path, tmp_path: Path, run_trainer: RunTrainer
) -> None:
    out = tmp_path / "out"
    manifest = finetune_manifest(
        tiny_model,
        dataset_dir,
        out,
        hyperparameters={
            "maxSteps": 20,
            "learningRate": 1.0,  # diverges at once: eval loss only gets worse
            "evalSteps": 1,
            "saveSteps": 1,
            "earlyStoppingPatience": 1,
        },
    )
    rc, status = run_trainer(manifest)

    assert rc == 0, status
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stoppedEarly"] and metrics["steps"] < 20
    evals = [
        json.loads(line)["eval_loss"]
        for line in (out / "log_history.jsonl").read_text().splitlines()
        if "eval_loss" in json.loads(line)
    ]
    assert metrics["evalLoss"] == pytest.approx(min(evals[:-1]), rel=1e-4)
