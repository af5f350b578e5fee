"""The evaluation recipe: every arm answers every eval question, answers are scored, arms ranked.

Per arm: load the base model (and adapter), build the prompts (with retrieved context for RAG
arms), answer in batches, score each answer with the text metrics and the judge, and save the
arm's records under `arms/` so a restarted pod skips the arms it already finished. Then
items.jsonl (every arm's records), summary.json (means, CIs, deltas, ranking) and the result.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.api.evaluation import (
    JUDGE_METRICS,
    TEXT_METRICS,
    Arm,
    EvaluationSpec,
    EvaluationSummary,
)
from llmft.api.layout import ADAPTER_TRAINING, EVAL_ITEMS, EVAL_SUMMARY
from llmft.api.resource import Resource
from llmft.api.status import DEGRADED_METRIC
from llmft.jsonfiles import write_json, write_jsonl
from llmft.reporting import Reporter
from llmft.tracking import tracked_run
from llmft.workloads import hubsource
from llmft.workloads.entry import WorkloadError
from llmft.workloads.evaluator.data import (
    SPLIT_FILES,
    SPLIT_MEANING,
    EvalItem,
    chunks_path,
    dataset_dir,
    items_fingerprint,
    load_eval_items,
    stratified_sample,
)
from llmft.workloads.evaluator.metrics import text_scores
from llmft.workloads.evaluator.rag import Retrieval, gold_hit
from llmft.workloads.evaluator.summary import (
    ArmScores,
    build_summary,
    score_keys,
    status_metrics,
)
from llmft.workloads.evaluator.tracking import log_scores, run_params
from llmft.workloads.rag import load_embedder
from llmft.workloads.recipe import output_dir, with_sources

log = logging.getLogger("llmft.evaluator")

ARMS_DIR = "arms"


def _json_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class ProgressTracker:
    """Items done of total for the current arm, and work units done over the whole evaluation.

    An item is one unit when answered and, with a judge, one more when judged.
    """

    def __init__(self, reporter: Reporter, n_arms: int, n_items: int, judged: bool) -> None:
        self.reporter = reporter
        self.n_items = n_items
        self.per_item = 2 if judged else 1
        self.total = n_arms * n_items * self.per_item
        self.base = 0

    def update(self, arm: str, stage: str, done: int, force: bool = False) -> None:
        offset = self.n_items if stage == "judging" else 0
        step = self.base + offset + done
        self._report(step, done, f"arm {arm}: {stage} {done}/{self.n_items}", force, arm)

    def arm_finished(self) -> None:
        self.base += self.n_items * self.per_item

    def finished(self, message: str) -> None:
        self._report(self.total, self.n_items, message, True)

    def _report(
        self, step: int, done: int, message: str, force: bool, arm: str | None = None
    ) -> None:
        self.reporter.progress(
            force=force,
            step=step,
            total=self.total,
            unit="items",
            itemsDone=done,
            itemsTotal=self.n_items,
            arm=arm,
            message=message,
        )


@dataclass
class ModelCache:
    """Keeps the last loaded model, so consecutive arms on the same model load it once.

    The chat format comes first and alone (tokenizer and config, no weights), so prompts that
    the model's template cannot render fail before any weight is read.
    """

    key: str | None = None
    fmt: Any = None
    model: Any = None
    adapter: Path | None = None
    formats: dict[str, dict[str, Any]] = field(default_factory=dict)
    four_bit: dict[str, bool] = field(default_factory=dict)  # arm -> base loaded 4-bit
    loaded_4bit: bool = False

    def chat_format(self, arm: Arm, index: int) -> Any:
        from llmft.workloads import modeling

        if arm.base_model is None:
            raise WorkloadError(
                f"spec.arms[{index}].baseModel: not set and no FineTuneJob was resolved into it"
            )
        key = _json_hash([arm.base_model.to_wire(), arm.adapter_path])
        if key != self.key:
            self.fmt = self.model = self.adapter = None
            gc.collect()
            # Hub sources are fetched (and recorded for status) under the arm's own fields.
            modeling.resolve_source(arm.base_model, f"spec.arms[{index}].baseModel")
            if arm.adapter_path:
                self.adapter = modeling.resolve_adapter(
                    arm.adapter_path,
                    f"spec.arms[{index}].adapterPath",
                    f"spec.arms[{index}].adapterTokenSecretRef",
                )
            saved = modeling.saved_adapter_tokenizer(self.adapter)
            self.fmt = modeling.load_chat_format(
                arm.base_model, f"spec.arms[{index}].baseModel", tokenizer=saved
            )
            self.key = key
        self.formats[arm.name] = self.fmt.describe()
        return self.fmt

    def get(self, arm: Arm, index: int) -> tuple[Any, Any]:
        """The arm's model (loaded once per base model and adapter) and its chat format."""
        from llmft.workloads import modeling

        fmt = self.chat_format(arm, index)
        assert arm.base_model is not None
        four_bit = self.four_bit[arm.name] = base_in_4bit(arm, self.adapter)
        if self.model is not None and self.loaded_4bit != four_bit:
            self.model = None  # the same weights at another precision
            gc.collect()
        if self.model is None:
            if self.adapter is not None:
                self.model, _ = modeling.load_with_adapter(
                    arm.base_model, self.adapter, four_bit, tokenizer=fmt.tokenizer
                )
            else:
                self.model, _ = modeling.load_base_model(
                    arm.base_model, quantize_4bit=four_bit, tokenizer=fmt.tokenizer
                )
            self.loaded_4bit = four_bit
        return self.model, fmt


def trained_method(adapter: str | Path | None) -> str | None:
    """The method ("qlora", "lora") an llmft adapter was trained with; None if unrecorded."""
    if not adapter:
        return None
    meta = Path(adapter) / ADAPTER_TRAINING
    try:
        method = json.loads(meta.read_text()).get("method")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return str(method) if method else None


def base_in_4bit(arm: Arm, adapter: str | Path | None = None) -> bool:
    """Whether the arm's base loads 4-bit: as its adapter was trained, unless the spec says.
    `adapter` is the adapter's local directory when the spec names a Hub adapter."""
    if arm.base_precision != "as-trained":
        return arm.base_precision == "4bit"
    return trained_method(adapter or arm.adapter_path) == "qlora"


def arm_fingerprint(spec: EvaluationSpec, arm: Arm, data_fp: str, chunks_fp: str | None) -> str:
    """What an arm's records depend on; a saved arm with this fingerprint is reused as is."""
    return _json_hash(
        {
            "arm": arm.to_wire(),
            "generation": spec.generation.to_wire(),
            "metrics": sorted(spec.metrics),
            "judge": spec.judge.to_wire() if spec.judge else None,
            "retrieval": spec.retrieval.to_wire() if arm.rag.enabled else None,
            "chunks": chunks_fp if arm.rag.enabled else None,
            "data": data_fp,
            "basePrecision": arm.base_precision,
        }
    )


def _load_saved_arm(path: Path, fingerprint: str) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if saved.get("fingerprint") != fingerprint:
        return None
    records: list[dict[str, Any]] = saved["records"]
    return records


def _save_arm(path: Path, fingerprint: str, records: list[dict[str, Any]]) -> None:
    write_json(path, {"fingerprint": fingerprint, "records": records}, indent=None)


def answer_arm(
    arm: Arm,
    index: int,
    spec: EvaluationSpec,
    items: Sequence[EvalItem],
    retrieval: Retrieval | None,
    models: ModelCache,
    on_batch: Any,
) -> tuple[list[str], list[list[Any]], float]:
    """The arm's answers, the chunks each prompt carried, and the generation wall time."""
    from llmft.workloads.evaluator.generation import AnswerGenerator
    from llmft.workloads.rag import rag_messages

    contexts: list[list[Any]] = []
    for i in range(len(items)):
        if arm.rag.enabled:
            assert retrieval is not None
            contexts.append(retrieval.top(i, arm.rag.top_k))
        else:
            contexts.append([])
    if arm.endpoint is not None:
        from llmft.workloads.evaluator.endpoint import EndpointAnswerer

        answerer = EndpointAnswerer(
            arm.endpoint, index, spec.generation.max_new_tokens, spec.generation.temperature
        )
        start = time.perf_counter()
        answers = answerer.generate(
            [item.question for item in items],
            [[r.text for r in ctx] for ctx in contexts],
            on_batch=on_batch,
        )
        return answers, contexts, time.perf_counter() - start
    from llmft.workloads.chatformat import ChatFormatError

    fmt = models.chat_format(arm, index)
    try:
        prompts = [
            # The same code builds a FineTuneJob's RAG training prompts (llmft.workloads.rag).
            fmt.prompt_text(rag_messages(item.question, ctx))
            for item, ctx in zip(items, contexts, strict=True)
        ]
    except ChatFormatError as err:
        raise WorkloadError(
            f"{fmt.field}: {fmt.model_name} ({fmt.family.name} family) cannot render the arm's "
            f"prompts: {err}; set {fmt.field}.chatTemplate or {fmt.field}.systemPrompt"
        ) from None
    model, fmt = models.get(arm, index)
    generator = AnswerGenerator(
        model,
        fmt.tokenizer,
        spec.generation.max_new_tokens,
        spec.generation.temperature,
        stop_ids=fmt.stop_ids,
    )
    start = time.perf_counter()
    answers = generator.generate(prompts, spec.generation.batch_size, on_batch=on_batch)
    return answers, contexts, time.perf_counter() - start


def arm_records(
    arm: Arm,
    items: Sequence[EvalItem],
    answers: Sequence[str],
    contexts: Sequence[Sequence[Any]],
    text_metrics: Sequence[str],
    judged: Sequence[Any] | None,
) -> list[dict[str, Any]]:
    """One items.jsonl record per question: answer, retrieved chunks, hit and every score."""
    records = []
    for i, (item, answer, ctx) in enumerate(zip(items, answers, contexts, strict=True)):
        scores: dict[str, float | None] = {}
        if text_metrics:
            all_text = text_scores(answer, item.reference)
            wanted = set(score_keys(text_metrics))
            scores.update({k: v for k, v in all_text.items() if k in wanted})
        record: dict[str, Any] = {
            "arm": arm.name,
            "id": item.id,
            "question": item.question,
            "reference": item.reference,
            "answer": answer,
            "rag": arm.rag.enabled,
            "goldChunkIds": list(item.gold_chunk_ids),
        }
        if arm.rag.enabled:
            record["retrieved"] = [{"id": r.chunk_id, "score": round(r.score, 6)} for r in ctx]
            record["hit"] = gold_hit(ctx, item.gold_chunk_ids)
        if judged is not None:
            scores.update(judged[i].scores)
            if judged[i].errors:
                record["judgeErrors"] = judged[i].errors
        record["scores"] = scores
        records.append(record)
    return records


def arm_scores(arm: Arm, records: Sequence[dict[str, Any]], keys: Sequence[str]) -> ArmScores:
    base = arm.base_model.name if arm.base_model else ""
    if arm.endpoint is not None:
        base = f"{arm.endpoint.model} ({arm.endpoint.provider} at {arm.endpoint.url})"
    scores = ArmScores(arm.name, base, arm.adapter_path, arm.rag.enabled, len(records))
    for key in keys:
        scores.scores[key] = [r["scores"].get(key) for r in records]
    scores.hits = [r.get("hit") for r in records]
    return scores


def main(res: Resource[Any], reporter: Reporter) -> None:
    """Evaluate every arm of the Evaluation and report its summary (see the module's doc)."""
    spec: EvaluationSpec = res.spec
    out = output_dir(spec)
    hubsource.start_recording()
    with tracked_run(spec.tracking.mlflow, res, out, run_params(spec)) as mlflow_run:
        questions = load_questions(spec)
        fingerprints, saved = saved_arms(spec, questions, out)
        todo = [a for a, prior in zip(spec.arms, saved, strict=True) if prior is None]
        scorers = open_scorers(res, questions, todo)
        progress = ProgressTracker(
            reporter, len(spec.arms), len(questions.items), scorers.judge is not None
        )
        scored = score_arms(spec, questions, scorers, fingerprints, saved, progress, out)
        summary = summarise(spec, questions, scorers, scored)
        write_jsonl(out / EVAL_ITEMS, scored.records)
        # The one contract: what summary.json, status.summary and `llmft report` hold.
        typed = EvaluationSummary.model_validate(summary)
        write_json(out / EVAL_SUMMARY, typed.model_dump(by_alias=True, mode="json"))
        progress.finished(f"done: {summary['verdict']['reason']}")
        if mlflow_run is not None:
            log_scores(mlflow_run, spec, summary)
    outputs = {"items": str(out / EVAL_ITEMS), "summary": str(out / EVAL_SUMMARY)}
    reporter.result(
        result_metrics(spec, summary), with_sources(outputs), status={"summary": typed.to_wire()}
    )


@dataclass
class Questions:
    """The eval questions an Evaluation asks every arm, and what its saved arms depend on."""

    directory: Path
    items: list[EvalItem]
    available: int  # questions in the split, before maxItems sampled them
    fingerprint: str
    chunks_fingerprint: str | None  # of chunks.jsonl, when an arm retrieves from it


def load_questions(spec: EvaluationSpec) -> Questions:
    """The split's questions (sampled down to maxItems, per source document)."""
    directory = dataset_dir(spec.dataset.path)
    all_items = load_eval_items(directory, split=spec.split)
    items = all_items
    if spec.generation.max_items is not None:
        items = stratified_sample(all_items, spec.generation.max_items, spec.generation.seed)
    chunks_fp: str | None = None
    if any(a.rag.enabled for a in spec.arms):
        chunks_fp = hashlib.sha256(chunks_path(directory).read_bytes()).hexdigest()[:16]
    log.info("evaluating %d arms on %d questions from %s", len(spec.arms), len(items), directory)
    return Questions(directory, items, len(all_items), items_fingerprint(items), chunks_fp)


def saved_arms(
    spec: EvaluationSpec, questions: Questions, out: Path
) -> tuple[list[str], list[list[dict[str, Any]] | None]]:
    """Each arm's fingerprint, and its records where an earlier run saved them under it."""
    fingerprints = [
        arm_fingerprint(spec, a, questions.fingerprint, questions.chunks_fingerprint)
        for a in spec.arms
    ]
    saved = [
        _load_saved_arm(out / ARMS_DIR / f"{a.name}.json", fp)
        for a, fp in zip(spec.arms, fingerprints, strict=True)
    ]
    return fingerprints, saved


@dataclass
class Scorers:
    """What the arms still to run need besides their models: the judge and the retrieved
    context (retrieved once for all RAG arms, at the largest topK)."""

    judge_metrics: list[str]
    judge: Any = None
    retrieval: Retrieval | None = None


def open_scorers(res: Resource[Any], questions: Questions, todo: Sequence[Arm]) -> Scorers:
    """Load the embedders, the judge and the retrieval that the arms in `todo` need."""
    spec: EvaluationSpec = res.spec
    judge_metrics = [m for m in spec.metrics if m in JUDGE_METRICS]
    scorers = Scorers(judge_metrics)
    embedder = None
    needs_rag = any(a.rag.enabled for a in todo)
    needs_judge = bool(judge_metrics) and bool(todo)
    if needs_rag or (needs_judge and "relevance" in judge_metrics):
        embedder = load_embedder(spec.retrieval.embedding_model, "spec.retrieval.embeddingModel")
    judge_embedder = embedder
    judge_model = spec.judge.embedding_model if spec.judge else None
    if needs_judge and judge_model and judge_model != spec.retrieval.embedding_model:
        judge_embedder = load_embedder(judge_model, "spec.judge.embeddingModel")

    if needs_judge:
        assert spec.judge is not None
        from llmft.workloads.evaluator.judge import RagasJudge, check_judge

        check_judge(spec.judge)
        scorers.judge = RagasJudge(spec.judge, judge_metrics, judge_embedder)

    if needs_rag:
        from llmft.workloads.evaluator.rag import open_index, retrieve_all

        assert embedder is not None
        name, namespace = res.metadata.name, res.metadata.namespace
        retriever = open_index(spec, namespace, name, embedder, chunks_path(questions.directory))
        try:
            k = max(a.rag.top_k for a in spec.arms if a.rag.enabled)
            scorers.retrieval = retrieve_all(retriever, [i.question for i in questions.items], k)
        finally:
            retriever.close()
    return scorers


@dataclass
class ScoredArms:
    """Every arm's records (answers and scores) and per-arm means, timings and precision."""

    records: list[dict[str, Any]] = field(default_factory=list)
    scores: list[ArmScores] = field(default_factory=list)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    models: ModelCache = field(default_factory=ModelCache)


def score_arms(
    spec: EvaluationSpec,
    questions: Questions,
    scorers: Scorers,
    fingerprints: Sequence[str],
    saved: Sequence[list[dict[str, Any]] | None],
    progress: ProgressTracker,
    out: Path,
) -> ScoredArms:
    """Answer and score every question with every arm, reusing the arms saved by an earlier
    run with the same fingerprint; each new arm is saved as soon as it is scored."""
    items = questions.items
    keys = score_keys(spec.metrics)
    text_metrics = [m for m in spec.metrics if m in TEXT_METRICS]
    scored = ScoredArms()
    models, judge = scored.models, scorers.judge
    for index, (arm, fp, prior) in enumerate(zip(spec.arms, fingerprints, saved, strict=True)):
        if prior is not None:
            log.info("arm %s: reusing the records of a previous run", arm.name)
            records = prior
            progress.update(arm.name, "reused", len(items), force=True)
        else:
            progress.update(arm.name, "answering", 0, force=True)
            answers, contexts, seconds = answer_arm(
                arm,
                index,
                spec,
                items,
                scorers.retrieval,
                models,
                on_batch=lambda done, a=arm.name: progress.update(a, "answering", done),
            )
            if arm.name in models.formats:
                progress.reporter.record(models=dict(models.formats))
            scored.timings[arm.name] = {
                "generationSeconds": round(seconds, 3),
                "itemsPerSecond": round(len(items) / seconds, 4) if seconds > 0 else 0.0,
            }
            judged = None
            if judge is not None:
                from llmft.workloads.evaluator.judge import JudgeInput

                progress.update(arm.name, "judging", 0, force=True)
                judged = judge.score(
                    [
                        JudgeInput(i.question, a, i.reference, tuple(r.text for r in ctx))
                        for i, a, ctx in zip(items, answers, contexts, strict=True)
                    ],
                    on_item=lambda done, a=arm.name: progress.update(a, "judging", done),
                )
            records = arm_records(arm, items, answers, contexts, text_metrics, judged)
            _save_arm(out / ARMS_DIR / f"{arm.name}.json", fp, records)
        progress.arm_finished()
        scored.records.extend(records)
        scored.scores.append(arm_scores(arm, records, keys))
    return scored


def summarise(
    spec: EvaluationSpec, questions: Questions, scorers: Scorers, scored: ScoredArms
) -> dict[str, Any]:
    """summary.json: per-arm means and intervals, paired differences, ranking and verdict, and
    how the evaluation ran (split, sample, judge budget, retrieval backend)."""
    keys = score_keys(spec.metrics)
    summary = build_summary(
        scored.scores, keys, spec.primary_metric, spec.bootstrap, spec.comparison
    )
    endpoints = {a.name: a.endpoint for a in spec.arms if a.endpoint is not None}
    for arm_out in summary["arms"]:
        arm_out.update(scored.timings.get(arm_out["name"], {}))
        if arm_out["name"] in endpoints:
            from llmft.workloads.evaluator.endpoint import describe

            arm_out["endpoint"] = describe(endpoints[arm_out["name"]])
        else:
            arm = next(a for a in spec.arms if a.name == arm_out["name"])
            four_bit = scored.models.four_bit.get(arm.name, base_in_4bit(arm))
            arm_out["basePrecision"] = "4bit" if four_bit else "full"
    summary["items"] = len(questions.items)
    summary["split"] = {
        "name": spec.split,
        "file": SPLIT_FILES[spec.split],
        "meaning": SPLIT_MEANING[spec.split],
    }
    if len(questions.items) < questions.available:
        summary["sample"] = {
            "of": questions.available,
            "maxItems": spec.generation.max_items,
            "seed": spec.generation.seed,
            "stratifiedBy": "source document",
        }
    if scorers.judge_metrics:
        from llmft.workloads.evaluator.judge import judge_budget

        assert spec.judge is not None
        budget = judge_budget(scored.records, spec.judge.max_missing_share)
        summary["judge"] = budget
        if "degraded" in budget:
            summary["degraded"] = budget["degraded"]
            log.warning("%s", budget["degraded"])
    if scorers.retrieval is not None and scorers.retrieval.backend:
        summary["retrievalBackend"] = scorers.retrieval.backend
    return summary


def result_metrics(spec: EvaluationSpec, summary: dict[str, Any]) -> dict[str, Any]:
    """The flat status.metrics: per-arm means and differences, verdict, split, judge budget."""
    metrics = status_metrics(summary)
    metrics["split"] = spec.split
    for key in ("judgeMissingShare", "judgeMissing"):
        if key in summary.get("judge", {}):
            metrics[key] = summary["judge"][key]
    if summary.get("degraded"):
        metrics[DEGRADED_METRIC] = summary["degraded"]
    return metrics
