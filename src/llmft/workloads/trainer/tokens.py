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
from llmft.workloads.trainer.data import LengthReport, TrainingData, check_lengths

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


def fit_to_length(
    rows: list[dict[str, Any]], limit: int, mode: str, packing: bool
) -> tuple[list[dict[str, Any]], LengthReport]:
    """Cut the token rows longer than `maxSeqLength` to it (counted), and remove the instruct
    rows it would leave without one answer token (they would train on nothing). Packed causal
    text is split across rows, never cut. Cutting here, as trl would, lets padding-free batches
    (which trl does not cut) see exactly the rows padded batches see."""
    kept: list[dict[str, Any]] = []
    truncated = dropped = longest = 0
    for row in rows:
        length = len(row["input_ids"])
        longest = max(longest, length)
        mask = row.get("completion_mask")
        if mode == "instruct" and mask is not None:
            first_answer = next((i for i, m in enumerate(mask) if m), length)
            if first_answer >= limit:
                dropped += 1
                continue
        if length > limit and not (mode == "causal" and packing):
            truncated += 1
            row = {k: v[:limit] if isinstance(v, list) else v for k, v in row.items()}
        kept.append(row)
    return kept, LengthReport(len(rows), truncated, dropped, limit, longest)


def tokenize_training_data(
    spec: FineTuneJobSpec, data: TrainingData, fmt: ChatFormat
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and eval token rows fitted to maxSeqLength (counts in `data.lengths`); fails when
    more rows than `maxTruncatedShare` allows do not fit."""
    train = tokenize_rows(data.train, fmt, spec.mode, data.train_file.name)
    eval_name = data.eval_file.name if data.eval_file else "eval"
    evals = tokenize_rows(data.eval, fmt, spec.mode, eval_name)
    hp = spec.hyperparameters
    if not hp.max_seq_length:  # resolved from the family's preset before this runs
        return train, evals
    train, report = fit_to_length(train, hp.max_seq_length, spec.mode, hp.packing)
    check_lengths(report, spec, data.train_file)
    evals, _ = fit_to_length(evals, hp.max_seq_length, spec.mode, hp.packing)
    data.lengths = report
    return train, evals
