"""The trainer's MLflow run: its parameters, every logged metric per step, final metrics and
where the adapter went (llmft.tracking does the talking to MLflow)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.tracking import MlflowRun
from llmft.workloads.trainer.data import TrainingData


class MlflowCallback(TrainerCallback):
    """Logs what the Trainer logs (loss, eval_loss, learning_rate, ...) at its global step."""

    def __init__(self, run: MlflowRun) -> None:
        self.run = run

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        metrics = {k: v for k, v in (logs or {}).items() if k != "total_flos"}
        self.run.log_metrics(metrics, step=state.global_step)


def training_params(spec: FineTuneJobSpec, data: TrainingData) -> dict[str, Any]:
    """What a run is, as MLflow params: the model, method, mode, RAG and hyper-parameters."""
    return {
        "baseModel": spec.base_model.name,
        "method": spec.method,
        "mode": spec.mode,
        "rag": spec.rag.enabled,
        "hyperparameters": spec.hyperparameters.to_wire(),
        "trainExamples": len(data.train),
        "evalExamples": len(data.eval),
    }


def finish_run(run: MlflowRun, metrics: dict[str, Any], outputs: dict[str, Any], step: int) -> None:
    """Final metrics at the last step, the artefact locations as tags, and the run ended."""
    run.log_metrics({f"final.{k}": v for k, v in metrics.items()}, step=step)
    run.set_tags({f"llmft.output.{k}": v for k, v in outputs.items() if isinstance(v, str)})
    run.finish("FINISHED")
