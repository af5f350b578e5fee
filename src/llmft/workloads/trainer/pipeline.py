"""The fine-tuning recipe: data, model, trl SFTTrainer with resume, then adapter, card and push."""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.api.layout import (
    ADAPTER_DIR,
    ADAPTER_TRAINING,
    CHECKPOINTS_DIR,
    CORPUS_EVAL,
    INSTRUCT_EVAL,
    MERGED_DIR,
    TRAIN_LOG,
    TRAIN_METRICS,
)
from llmft.api.resource import Resource
from llmft.jsonfiles import write_json
from llmft.reporting import Reporter
from llmft.tracking import MlflowRun, tracked_run
from llmft.workloads import hubsource, modeling
from llmft.workloads.chatformat import ChatFormat
from llmft.workloads.entry import WorkloadError
from llmft.workloads.rag import default_collection
from llmft.workloads.recipe import output_dir, with_sources
from llmft.workloads.stopping import STOP, Stopped
from llmft.workloads.trainer.card import model_card, write_model_card
from llmft.workloads.trainer.data import TrainingData, load_training_data
from llmft.workloads.trainer.model import (
    TrainableModel,
    build_trainable_model,
    resolve_hyperparameters,
    shape,
)
from llmft.workloads.trainer.speed import (
    SpeedPlan,
    check_rows_stay_apart,
    resolve_speed,
    size_micro_batch,
)
from llmft.workloads.trainer.tokens import tokenize_training_data
from llmft.workloads.trainer.tracking import MlflowCallback, finish_run, training_params

log = logging.getLogger("llmft.trainer")

TENSORBOARD_DIR = "tensorboard"
RUN_FILE = "run.json"  # in checkpoints/: what the checkpoints were trained on


def run_fingerprint(spec: FineTuneJobSpec, data: TrainingData) -> dict[str, Any]:
    """What a checkpoint depends on; the length of the run (steps, epochs) may change."""
    hp = spec.hyperparameters.to_wire()
    for free in (
        "maxSteps", "epochs", "evalSteps", "saveSteps", "saveTotalLimit", "loggingSteps",
        "maxTruncatedShare",
    ):  # fmt: skip
        hp.pop(free, None)
    digest = hashlib.sha256()
    for path in (data.train_file, data.eval_file):
        if path is not None:
            digest.update(path.read_bytes())
    return {
        "baseModel": spec.base_model.to_wire(),
        "method": spec.method,
        "mode": spec.mode,
        "rag": spec.rag.to_wire(),
        "hyperparameters": hp,
        "dataSha256": digest.hexdigest(),
    }


def checkpoint_step(checkpoint: str | None) -> int | None:
    if checkpoint is None:
        return None
    state = Path(checkpoint) / "trainer_state.json"
    try:
        return int(json.loads(state.read_text())["global_step"])
    except (OSError, KeyError, ValueError):
        return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint-N that was fully written.

    The Trainer writes trainer_state.json last; a pod killed while saving leaves a checkpoint
    without it, which would fail the resume, so such a checkpoint is passed over.
    """
    found = []
    for path in ckpt_dir.glob("checkpoint-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit():
            found.append((int(suffix), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            log.warning(
                "skipping %s: incomplete (trainer_state.json missing or cut short: killed, or "
                "the volume full, while saving)",
                path,
            )
    return None


def find_resume_checkpoint(ckpt_dir: Path, fingerprint: dict[str, Any]) -> str | None:
    """The last checkpoint of this same run, if any; checkpoints of another run are refused."""
    run_file = ckpt_dir / RUN_FILE
    if not ckpt_dir.exists():
        return None
    last = last_complete_checkpoint(ckpt_dir)
    if last is None:
        return None
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != fingerprint:
            changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
            raise WorkloadError(
                f"spec.output.path: {ckpt_dir} holds checkpoints of a different run "
                f"({', '.join(changed)} changed); delete them or choose another output path"
            )
    return last


def checkpoint_is_final(checkpoint: str, spec: FineTuneJobSpec) -> bool:
    """Whether the checkpoint already holds the run's last step (for the spec's run length)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    step = int(state.get("global_step", 0))
    hp = spec.hyperparameters
    if hp.max_steps is not None:
        return step >= hp.max_steps
    # Epoch-based: the same data and batch shape (run.json) give the same steps per epoch.
    same_epochs = float(state.get("num_train_epochs") or -1) == float(hp.epochs)
    return same_epochs and step >= int(state.get("max_steps") or 1 << 62)


def restore_final_checkpoint(trainer: Any, checkpoint: str) -> tuple[float, float]:
    """Load the adapter (the best one, when early stopping kept it) and the state of a finished
    run into the trainer; returns its last logged training loss and runtime."""
    from peft import load_peft_weights, set_peft_model_state_dict
    from transformers import TrainerState

    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    source = Path(state.best_model_checkpoint or checkpoint)
    if trainer.args.load_best_model_at_end and not (source / "adapter_model.safetensors").exists():
        source = Path(checkpoint)
    set_peft_model_state_dict(trainer.model, load_peft_weights(str(source)))
    trainer.state = state
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    runtimes = [e["train_runtime"] for e in state.log_history if "train_runtime" in e]
    return (float(losses[-1]) if losses else float("nan")), (
        float(runtimes[-1]) if runtimes else 0.0
    )


def _kept(ckpt_dir: Path, state: Any, stopped_at: int | None) -> str:
    """What a training run stopped by a signal leaves for the next attempt."""
    step = int(state.global_step)
    last = last_complete_checkpoint(ckpt_dir)
    if last is None or checkpoint_step(last) != step:
        return f"at step {step} of {state.max_steps}; no checkpoint of that step was written"
    when = "the last step" if stopped_at is None else f"step {step} of {state.max_steps}"
    return f"checkpoint-{step} written at {when}; the next attempt resumes from step {step}"


def _log_entry(line: str) -> dict[str, Any] | None:
    """One log_history.jsonl line; None for a blank one or one cut short (a full volume)."""
    try:
        entry = json.loads(line) if line.strip() else None
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _trim_log(log_file: Path, resumed_from: int | None) -> None:
    """Keep log entries up to the resumed step, so steps logged after it are not doubled."""
    if resumed_from is None or not log_file.exists():
        log_file.unlink(missing_ok=True)
        return
    kept = [
        line
        for line in log_file.read_text().splitlines()
        if (entry := _log_entry(line)) is not None and int(entry.get("step") or 0) <= resumed_from
    ]
    log_file.write_text("".join(line + "\n" for line in kept))


def report_integrations(spec: FineTuneJobSpec, out: Path) -> list[str]:
    """TensorBoard always; W&B when the spec names a project (MLflow has its own callback)."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / TENSORBOARD_DIR)
    report = ["tensorboard"]
    project = spec.tracking.wandb_project
    if project:
        if importlib.util.find_spec("wandb") is None:
            raise WorkloadError(
                "spec.tracking.wandbProject: set, but the wandb package is not installed in the "
                "trainer image"
            )
        report.append("wandb")
        os.environ["WANDB_PROJECT"] = project
    return report


def check_evaluation_settings(spec: FineTuneJobSpec, has_eval: bool) -> None:
    """Early stopping needs eval data and checkpoints on eval steps (it keeps the best one)."""
    hp = spec.hyperparameters
    eval_steps = hp.eval_steps or hp.save_steps
    if hp.early_stopping_patience is None:
        return
    if not has_eval:
        eval_file = CORPUS_EVAL if spec.mode == "causal" else INSTRUCT_EVAL
        raise WorkloadError(
            "spec.hyperparameters.earlyStoppingPatience: early stopping needs an eval split, and "
            f"the dataset has no non-empty {eval_file}"
        )
    if hp.save_steps % eval_steps:
        raise WorkloadError(
            f"spec.hyperparameters.saveSteps ({hp.save_steps}) must be a multiple of evalSteps "
            f"({eval_steps}) when earlyStoppingPatience is set (the best checkpoint is kept)"
        )


def training_config(
    spec: FineTuneJobSpec,
    out: Path,
    name: str,
    tm: TrainableModel,
    has_eval: bool,
    report_to: list[str],
    plan: SpeedPlan | None = None,
) -> Any:
    """trl's SFTConfig from the spec's hyper-parameters and the resolved fast paths (none when
    `plan` is None: padded batches in random order)."""
    from trl import SFTConfig

    hp = spec.hyperparameters
    cuda = tm.device.startswith("cuda")
    bf16 = cuda and str(tm.dtype) == "torch.bfloat16"
    fp16 = cuda and str(tm.dtype) == "torch.float16"
    check_evaluation_settings(spec, has_eval)
    eval_steps = hp.eval_steps or hp.save_steps
    early = hp.early_stopping_patience is not None
    causal = spec.mode == "causal"
    # Instruct rows concatenated without padding; rows are cut to maxSeqLength beforehand
    # (tokens.fit_to_length), as trl does not cut them on this path.
    padding_free = bool(plan and plan.padding_free.on and not causal)
    grouped = bool(plan and plan.group_by_length.on)
    no_padding = padding_free or (causal and hp.packing)
    return SFTConfig(
        **sampling_arguments(SFTConfig, grouped),
        output_dir=str(out / CHECKPOINTS_DIR),
        run_name=name,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps or -1,
        warmup_steps=hp.warmup_ratio,  # a float below 1 is a share of the steps
        lr_scheduler_type=hp.lr_scheduler,
        weight_decay=hp.weight_decay,
        optim=hp.optimizer,
        seed=hp.seed,
        data_seed=hp.seed,
        gradient_checkpointing=hp.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=bf16,
        fp16=fp16,
        use_cpu=not cuda,
        logging_steps=hp.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=hp.save_steps,
        save_total_limit=hp.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        report_to=report_to,
        disable_tqdm=True,
        # Without padding every token is real (counting by pad id would miss pad-valued EOS).
        include_num_input_tokens_seen="all" if no_padding else "non_padding",
        dataloader_num_workers=0,
        max_length=None if padding_free else hp.max_seq_length,
        padding_free=padding_free,
        # Causal: documents packed best-fit into full-length rows without crossing attention
        # between them (position ids restart per document); overflow is split, never dropped.
        packing=causal and hp.packing,
        packing_strategy="bfd_split",
        completion_only_loss=None if causal else True,
    )


def sampling_arguments(config_class: Any, grouped: bool) -> dict[str, Any]:
    """Length-grouped or random sampling, in the words of the installed transformers (its
    train_sampling_strategy replaced the group_by_length flag)."""
    import dataclasses

    if "train_sampling_strategy" in {f.name for f in dataclasses.fields(config_class)}:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


def final_eval_loss(trainer: Any) -> float | None:
    """The eval loss of the saved weights: the one logged at the last step, else a fresh one."""
    state = trainer.state
    if not trainer.args.load_best_model_at_end:
        for entry in reversed(state.log_history):
            if "eval_loss" in entry:
                if entry.get("step") == state.global_step:
                    return float(entry["eval_loss"])
                break
    value = trainer.evaluate().get("eval_loss")
    return float(value) if value is not None else None


def quiet_progress_bars() -> None:
    """Progress goes out as structured lines (and to status); bars would only garble the log."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def peak_memory_bytes(device: str) -> int:
    """Peak memory of the training process: allocated GPU memory, or resident CPU memory."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def save_merged(spec: FineTuneJobSpec, adapter_dir: Path, merged_dir: Path) -> None:
    """Fold the adapter into an unquantised copy of the base and save it (never the 4-bit base)."""
    from peft import PeftModel

    base, tokenizer = modeling.load_base_model(spec.base_model, quantize_4bit=False)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    tmp = merged_dir.with_name(merged_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(merged_dir, ignore_errors=True)
    tmp.rename(merged_dir)


@dataclass
class TrainedAdapter:
    """What training left in the output directory: the adapter, its metrics and model card."""

    adapter_dir: Path
    metrics: dict[str, Any]
    outputs: dict[str, Any]
    card_data: dict[str, Any]
    target_modules: Any


def main(res: Resource[Any], reporter: Reporter) -> None:
    """Train the adapter the FineTuneJob describes and report its metrics and locations."""
    from transformers import set_seed

    spec: FineTuneJobSpec = res.spec
    out = output_dir(spec)
    quiet_progress_bars()
    set_seed(spec.hyperparameters.seed)
    reporter.progress(force=True, message="reading the dataset")
    hubsource.start_recording()
    data = load_training_data(spec, default_collection(res.metadata.namespace, res.metadata.name))
    # A Hub base model is fetched here, so its commit is recorded under the spec's field.
    modeling.resolve_source(spec.base_model, "spec.baseModel")
    log.info("data: %s", json.dumps(data.describe()))
    # The model's family decides the chat format and fills the unset batch shape (its A10
    # preset); every row is rendered and tokenized now, before any weight is loaded.
    fmt = modeling.load_chat_format(spec.base_model, "spec.baseModel")
    spec = resolve_hyperparameters(spec, fmt.family)
    log.info("model: %s; shape: %s", json.dumps(fmt.describe()), json.dumps(shape(spec)))
    reporter.record(model=fmt.describe(), hyperparameters=shape(spec))
    # Rows longer than maxSeqLength are counted (answerless ones dropped) before any weight loads;
    # above maxTruncatedShare the job fails here, naming maxSeqLength.
    rows = tokenize_training_data(spec, data, fmt)
    report_to = report_integrations(spec, out)
    check_evaluation_settings(spec, bool(data.eval))
    with tracked_run(spec.tracking.mlflow, res, out, training_params(spec, data)) as mlflow_run:
        trained = train_adapter(res, spec, reporter, data, rows, fmt, out, report_to, mlflow_run)
        outputs = publish(spec, res.metadata.name, reporter, trained)
        if mlflow_run is not None:
            finish_run(mlflow_run, trained.metrics, outputs, int(trained.metrics["steps"]))
    reporter.result(trained.metrics, with_sources(outputs))


def train_adapter(
    res: Resource[Any],
    spec: FineTuneJobSpec,
    reporter: Reporter,
    data: TrainingData,
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    fmt: ChatFormat,
    out: Path,
    report_to: list[str],
    mlflow_run: MlflowRun | None,
) -> TrainedAdapter:
    """Train (resuming from the last checkpoint of this run), save the adapter and its card.

    `spec` is resolved (family preset filled in); `rows` are the tokenized train and eval rows.
    """
    import datasets
    from transformers import EarlyStoppingCallback, PrinterCallback, set_seed
    from trl import SFTTrainer

    from llmft.workloads.trainer.progress import ProgressCallback
    from llmft.workloads.trainer.stop import CheckpointOnStop

    name = res.metadata.name
    hp = spec.hyperparameters
    has_eval = bool(data.eval)
    train_rows, eval_rows = rows

    ckpt_dir = out / CHECKPOINTS_DIR
    fingerprint = run_fingerprint(spec, data)
    if hubsource.fetched_sources():  # a moved Hub branch is another run
        fingerprint["hubCommits"] = {k: v["commit"] for k, v in hubsource.fetched_sources().items()}
    resume = find_resume_checkpoint(ckpt_dir, fingerprint)
    resumed_from = checkpoint_step(resume)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_json(ckpt_dir / RUN_FILE, fingerprint, sort_keys=True)  # whole, or not at all
    log_file = out / TRAIN_LOG
    _trim_log(log_file, resumed_from)

    reporter.progress(force=True, message=f"loading {spec.base_model.name} ({spec.method})")
    device = modeling.best_device()
    half = str(modeling.compute_dtype(device)) in ("torch.bfloat16", "torch.float16")
    model_type = getattr(modeling.load_config(spec.base_model), "model_type", None)
    plan = resolve_speed(spec, fmt.family, device, half, model_type)
    tm = build_trainable_model(
        spec,
        fmt.tokenizer,
        fmt.family,
        device,
        attn_implementation=plan.attn_implementation,
        fused_kernels=plan.fused_kernels.on,
    )
    check_rows_stay_apart(plan, tm.model, tm.tokenizer.pad_token_id or 0, spec)
    set_seed(hp.seed)
    config = training_config(spec, out, name, tm, has_eval, report_to, plan)
    progress = ProgressCallback(reporter, log_file, resumed_from)
    on_stop = CheckpointOnStop(STOP)
    callbacks: list[Any] = [progress, on_stop]
    if mlflow_run is not None:
        callbacks.append(MlflowCallback(mlflow_run))
    if hp.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=hp.early_stopping_patience))
    trainer = SFTTrainer(
        model=tm.model,
        args=config,
        train_dataset=datasets.Dataset.from_list(train_rows),
        eval_dataset=datasets.Dataset.from_list(eval_rows) if has_eval else None,
        processing_class=tm.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # ProgressCallback logs the same, structured
    search = size_micro_batch(plan, trainer, spec, tm.estimate_at, tm.free_bytes)
    if search is not None:
        hp = hp.model_copy(
            update={
                "batch_size": search.micro_batch,
                "gradient_accumulation_steps": search.gradient_accumulation_steps,
            }
        )
        spec = spec.model_copy(update={"hyperparameters": hp})
    log.info("speed: %s", json.dumps(plan.to_status()))
    reporter.record(speed=plan.to_status(), hyperparameters=shape(spec))
    if spec.method == "qlora" and not config.bf16:
        # trl keeps QLoRA adapters in bf16 (the paper's choice on GPUs); where compute is fp32
        # or fp16, fp32 adapter weights keep small updates from rounding away.
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    if resume:
        log.info("resuming from %s (step %s)", resume, resumed_from)
    cpu_start = time.process_time()
    if resume and checkpoint_is_final(resume, spec):
        # A pod restarted after the last step (while saving or pushing): training again would
        # run past maxSteps, so the final checkpoint's adapter is taken as it is.
        train_loss, train_runtime = restore_final_checkpoint(trainer, resume)
        reporter.progress(
            force=True,
            step=trainer.state.global_step,
            total=trainer.state.max_steps,
            resumedFromStep=resumed_from,
            message=f"checkpoint {resumed_from} is the last step; saving it without training",
        )
    else:
        # SIGTERM or SIGINT now ends training after the step in progress, with its checkpoint.
        with STOP.deferred():
            result = trainer.train(resume_from_checkpoint=resume)
        if STOP.signum is not None:
            raise Stopped(STOP.signum, _kept(ckpt_dir, trainer.state, on_stop.stopped_at))
        train_loss = float(result.training_loss)
        train_runtime = float(result.metrics.get("train_runtime", 0.0))
    train_cpu = time.process_time() - cpu_start
    eval_loss = final_eval_loss(trainer) if has_eval else None
    progress.eval_loss = eval_loss
    tokens_per_second, _ = progress.throughput(trainer.state)
    peak = peak_memory_bytes(tm.device)

    adapter_dir = out / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))
    tm.tokenizer.save_pretrained(adapter_dir)
    # How the adapter was trained, so an evaluation loads its base the same way (4-bit for QLoRA).
    (adapter_dir / ADAPTER_TRAINING).write_text(
        json.dumps(
            {
                "method": spec.method,
                "mode": spec.mode,
                "baseModel": spec.base_model.to_wire(),
                "rag": spec.rag.to_wire(),
                "maxSeqLength": hp.max_seq_length,
            },
            indent=2,
        )
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    metrics: dict[str, Any] = {
        "steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "trainLoss": round(train_loss, 6),
        "finalLoss": progress.loss,
        "evalLoss": round(float(eval_loss), 6) if eval_loss is not None else None,
        "tokensPerSecond": round(tokens_per_second, 2) if tokens_per_second else None,
        "tokensSeen": int(trainer.state.num_input_tokens_seen),
        "trainRuntimeSeconds": round(train_runtime, 2),
        "trainCpuSeconds": round(train_cpu, 2),
        "peakMemoryGiB": round(peak / 1024**3, 3),
        "estimatedMemoryGiB": round(tm.estimate.total / 1024**3, 3),
        "trainableParameters": int(trainable),
        "totalParameters": int(total),
        "trainExamples": len(data.train),
        "evalExamples": len(data.eval),
        **(data.lengths.to_json() if data.lengths else {}),
        "device": tm.device,
        "resumedFromStep": resumed_from,
        "stoppedEarly": bool(
            hp.early_stopping_patience is not None
            and trainer.state.global_step < trainer.state.max_steps
        ),
    }
    metrics = {k: v for k, v in metrics.items() if v is not None}
    (out / TRAIN_METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    card_data = data.describe()
    write_model_card(adapter_dir, model_card(spec, name, card_data, metrics, tm.target_modules))
    outputs: dict[str, Any] = {
        "adapter": str(adapter_dir),
        "checkpoints": str(ckpt_dir),
        "tensorboard": str(out / TENSORBOARD_DIR),
        "metrics": str(out / TRAIN_METRICS),
        "logHistory": str(log_file),
    }

    trained = TrainedAdapter(adapter_dir, metrics, outputs, card_data, tm.target_modules)
    device = tm.device
    del trainer, tm
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()  # a merge loads an unquantised base next to nothing else
    return trained


def publish(
    spec: FineTuneJobSpec, name: str, reporter: Reporter, trained: TrainedAdapter
) -> dict[str, Any]:
    """Merge the adapter (when asked), serve it with Ollama and push it to the Hub, as the
    spec's output says; returns the outputs with where each copy went."""
    outputs = dict(trained.outputs)
    adapter_dir, metrics = trained.adapter_dir, trained.metrics
    serving = spec.output.ollama
    merged_dir: Path | None = None
    if spec.output.merge_adapter or (serving is not None and serving.method == "merged"):
        reporter.progress(force=True, message="merging the adapter into the base model")
        merged_dir = adapter_dir.parent / MERGED_DIR
        save_merged(spec, adapter_dir, merged_dir)
        write_model_card(
            merged_dir,
            model_card(spec, name, trained.card_data, metrics, trained.target_modules, merged=True),
        )
        outputs["merged"] = str(merged_dir)

    if serving is not None:
        from llmft.workloads.trainer.ollama import ollama_model_name, publish_to_ollama

        model_name = ollama_model_name(serving, name)
        reporter.progress(force=True, message=f"creating the Ollama model {model_name}")
        outputs["ollama"] = publish_to_ollama(serving, name, adapter_dir, merged_dir)

    if spec.output.hugging_face is not None:
        from llmft.workloads.hubpush import push_folder

        reporter.progress(
            force=True, message=f"pushing the adapter to {spec.output.hugging_face.repo}"
        )
        outputs["huggingFace"] = push_folder(
            spec.output.hugging_face,
            adapter_dir,
            f"llmft FineTuneJob {name}: step {metrics['steps']}",
        )
    return outputs
