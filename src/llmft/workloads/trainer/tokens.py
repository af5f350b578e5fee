"""Training rows as token ids, by the model's chat format, before any weight is loaded.

Instruct rows become `input_ids` plus a `completion_mask` that is 1 on exactly the answer tokens
and the family's end-of-turn token (so the tuned model learns to stop); causal rows become the
document's tokens closed by the family's document-end token. trl's SFTTrainer takes the rows
as they are (it skips its own chat templating for tokenized data) and builds the labels from
the mask. A row the template cannot render fails the job here, naming the row and the fields
that change the format.
"""

from __future__ import annotations

import logging
from typing import Any

from llmft.api.finetunejob import FineTuneJobSpec
from llmft.workloads.chatformat import ChatFormat, ChatFormatError
from llmft.workloads.entry import WorkloadError
from llmft.workloads.trainer.data import TrainingData

log = logging.getLogger("llmft.trainer.tokens")


def tokenize_rows(
    rows: list[dict[str, Any]], fmt: ChatFormat, mode: str, where: str
) -> list[dict[str, Any]]:
    """Token rows for trl from the text rows of one split (`where` names it in errors)."""
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows, start=1):
        if mode == "causal":
            out.append({"input_ids": fmt.document(row["text"])})
            continue
        answer = row["completion"][-1]["content"]
        try:
            tokens = fmt.example(row["prompt"], answer)
        except ChatFormatError as err:
            raise WorkloadError(
                f"{fmt.field}: {fmt.model_name} ({fmt.family.name} family, template from "
                f"{fmt.template_source}) cannot render {where} row {i}: {err}; set "
                f"{fmt.field}.chatTemplate or {fmt.field}.systemPrompt"
            ) from None
        out.append({"input_ids": tokens.input_ids, "completion_mask": tokens.completion_mask})
    return out


def tokenize_training_data(
    spec: FineTuneJobSpec, data: TrainingData, fmt: ChatFormat
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval token rows; warns about instruct rows longer than maxSeqLength."""
    train = tokenize_rows(data.train, fmt, spec.mode, data.train_file.name)
    eval_name = data.eval_file.name if data.eval_file else "eval"
    evals = tokenize_rows(data.eval, fmt, spec.mode, eval_name)
    limit = spec.hyperparameters.max_seq_length
    if spec.mode == "instruct" and limit:
        cut = sum(1 for r in train if len(r["input_ids"]) > limit)
        if cut:
            log.warning(
                "%d of %d training rows are longer than maxSeqLength %d: their answers are cut "
                "(and lose the end-of-turn token)",
                cut,
                len(train),
                limit,
            )
    return train, evals
