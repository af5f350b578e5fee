"""Training progress to the resource's status and to log_history.jsonl, as the Trainer logs it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from llmft.api.common import EVAL_HISTORY_LIMIT
from llmft.reporting import Reporter, now_rfc3339


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _eval_history(log_file: Path) -> list[dict[str, Any]]:
    if not log_file.exists():
        return []
    points: list[dict[str, Any]] = []
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line) if line.strip() else {}
        except ValueError:  # a line cut short when the volume filled up
            continue
        if "eval_loss" in entry:
            point: dict[str, Any] = {"step": int(entry.get("step") or 0)}
            if (value := _finite(entry["eval_loss"])) is not None:
                point["evalLoss"] = value
            points.append(point)
    return points[-EVAL_HISTORY_LIMIT:]


def trainer_status(
    state: TrainerState, latest: dict[str, float], eta: float | None
) -> dict[str, Any]:
    """Progress in Kubeflow Trainer's trainerStatus shape: percent, seconds left, and the latest
    value of each metric the Trainer logged, as name/value pairs (values as strings)."""
    out: dict[str, Any] = {"lastUpdatedTime": now_rfc3339()}
    if state.max_steps:
        out["progressPercentage"] = min(100, int(100 * state.global_step / state.max_steps))
    if eta is not None:
        out["estimatedRemainingSeconds"] = round(eta)
    metrics = [{"name": "step", "value": str(state.global_step)}]
    if state.epoch is not None:
        metrics.append({"name": "epoch", "value": f"{state.epoch:.4g}"})
    for name, value in latest.items():
        metrics.append({"name": name, "value": f"{value:.6g}"})
    out["metrics"] = metrics
    return out


class ProgressCallback(TrainerCallback):
    """Reports step, total, loss, eval loss, learning rate, tokens/s and ETA at each log.

    Throughput and ETA count only this run's steps: after a resume, the restored steps took no
    time here and would inflate the rate.
    """

    def __init__(self, reporter: Reporter, log_file: Path, resumed_from_step: int | None) -> None:
        self.reporter = reporter
        self.log_file = log_file
        self.resumed_from_step = resumed_from_step
        self._start_time: float | None = None
        self._start_step = 0
        self._start_tokens = 0
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self.learning_rate: float | None = None
        # (step, eval loss or None when not finite): what the median stopping rule reads;
        # after a resume, the evaluations already logged come back from the log file.
        self.eval_history: list[dict[str, Any]] = _eval_history(log_file)
        self.latest: dict[str, float] = {}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._start_time = time.monotonic()
        self._start_step = state.global_step
        self._start_tokens = state.num_input_tokens_seen
        self.reporter.progress(
            force=True,
            step=state.global_step,
            total=state.max_steps,
            unit="steps",
            resumedFromStep=self.resumed_from_step,
            message=(
                f"resumed from checkpoint step {self.resumed_from_step}"
                if self.resumed_from_step
                else "training started"
            ),
        )

    def throughput(self, state: TrainerState) -> tuple[float | None, float | None]:
        """(tokens per second, seconds to go) over this run's steps so far."""
        if self._start_time is None:
            return None, None
        elapsed = time.monotonic() - self._start_time
        steps = state.global_step - self._start_step
        if elapsed <= 0 or steps <= 0:
            return None, None
        tokens = state.num_input_tokens_seen - self._start_tokens
        eta = (state.max_steps - state.global_step) * elapsed / steps
        return (tokens / elapsed if tokens > 0 else None), max(eta, 0.0)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        logs = logs or {}
        entry = {"step": state.global_step, "epoch": state.epoch, **logs}
        with self.log_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        if _finite(logs.get("loss")) is not None:
            self.loss = _finite(logs["loss"])
        if _finite(logs.get("eval_loss")) is not None:
            self.eval_loss = _finite(logs["eval_loss"])
        if _finite(logs.get("learning_rate")) is not None:
            self.learning_rate = _finite(logs["learning_rate"])
        for key, value in logs.items():
            if key != "epoch" and (number := _finite(value)) is not None:
                self.latest[key] = number
        if "eval_loss" in logs:
            point: dict[str, Any] = {"step": state.global_step}
            if _finite(logs["eval_loss"]) is not None:
                point["evalLoss"] = _finite(logs["eval_loss"])
            kept = [p for p in self.eval_history if p["step"] != state.global_step]
            self.eval_history = [*kept[-(EVAL_HISTORY_LIMIT - 1) :], point]
        tokens_per_second, eta = self.throughput(state)
        self.reporter.progress(
            # An evaluation is a moment the median rule may act on: report it at once.
            force="eval_loss" in logs,
            status={"trainerStatus": trainer_status(state, self.latest, eta)},
            evalHistory=list(self.eval_history) or None,
            step=state.global_step,
            total=state.max_steps,
            unit="steps",
            loss=self.loss,
            evalLoss=self.eval_loss,
            learningRate=self.learning_rate,
            tokensPerSecond=round(tokens_per_second, 1) if tokens_per_second else None,
            etaSeconds=round(eta, 1) if eta is not None else None,
            resumedFromStep=self.resumed_from_step,
            # Replaces "training started" (reports merge field by field).
            message=(
                f"training (resumed from step {self.resumed_from_step})"
                if self.resumed_from_step
                else "training"
            ),
        )

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        tokens_per_second, _ = self.throughput(state)
        self.reporter.progress(
            force=True,
            step=state.global_step,
            total=state.max_steps,
            loss=self.loss,
            evalLoss=self.eval_loss,
            tokensPerSecond=round(tokens_per_second, 1) if tokens_per_second else None,
            etaSeconds=0.0,
            message="training finished; saving the adapter",
        )
