"""A stop request during training (SIGTERM, SIGINT) ends it after the step in progress, with a
checkpoint of that step, so a restart loses nothing already trained."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from llmft.workloads.stopping import StopSignals


class CheckpointOnStop(TrainerCallback):
    """Turns a recorded stop request into "save this step, then stop" at the next step's end.

    A checkpoint can only be taken between optimizer steps (not mid gradient accumulation), so
    the pod's grace period must cover one step plus the save; the evaluation that step may be
    due for is skipped to stay within it.
    """

    def __init__(self, stop: StopSignals) -> None:
        self.stop = stop
        self.stopped_at: int | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> TrainerControl:
        if self.stop.requested:
            control.should_save = True
            control.should_evaluate = False
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control
