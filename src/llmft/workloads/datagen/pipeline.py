"""The DatasetGeneration recipe: ingest, chunk, split, generate (resumably), filter, write.

Generation results are kept raw in the work log; parsing and every filter run afterwards over
all chunks in document order, so the output files depend only on the chunks, the replies
and the settings, never on the order in which concurrent replies arrived.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmft.api.datasetgeneration import DatasetGenerationSpec, Generator, Quality, Split
from llmft.api.layout import (
    CHUNKS,
    CORPUS_EVAL,
    CORPUS_TRAIN,
    DATASET_MANIFEST,
    INSTRUCT_EVAL,
    INSTRUCT_EVAL_CLOSED_BOOK,
    INSTRUCT_TRAIN,
)
from llmft.api.resource import Resource
from llmft.api.status import now_rfc3339
from llmft.jsonfiles import write_json, write_jsonl
from llmft.reporting import Reporter
from llmft.workloads.datagen import hub
from llmft.workloads.datagen.backends import Backend, RequestRejected, select_backend
from llmft.workloads.datagen.chunking import Chunk, chunk_documents, token_counter_for
from llmft.workloads.datagen.documents import ingest
from llmft.workloads.datagen.parsing import RawPair, parse_pairs
from llmft.workloads.datagen.prompting import GenerationRequest, PromptSet, build_request
from llmft.workloads.datagen.quality import (
    DuplicateFilter,
    answer_support,
    is_empty,
    is_question,
    is_standalone,
    on_topic,
    unsupported_numbers,
)
from llmft.workloads.datagen.splitting import (
    CLOSED_BOOK,
    CLOSED_BOOK_RULE,
    EVAL,
    TRAIN,
    SplitPlan,
    hold_out_closed_book,
    plan_split,
)
from llmft.workloads.datagen.worklog import ChunkRecord, WorkLog, fingerprint
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubpush import push_folder
from llmft.workloads.recipe import output_dir

log = logging.getLogger("llmft.datagen")

DROP_REASONS = (
    "unparsable",
    "empty",
    "over_limit",
    "not_question",
    "not_standalone",
    "off_topic",
    "unsupported_number",
    "unsupported",
    "cross_split",
    "duplicate",
    "near_duplicate",
    "closed_book_paraphrase",
)
SPLIT_RULE = (
    "groups of up to split.groupChunks consecutive chunks of one document are assigned whole "
    "to train or eval (seeded shuffle); multi-hop pairs only use a neighbour from their own "
    "group; any pair whose context chunks span both sides is dropped as cross_split"
)


@dataclass
class Assembled:
    """The kept pairs of each side, and what was dropped, per reason."""

    rows: dict[str, list[dict[str, Any]]]
    dropped: dict[str, int]
    raw_pairs: int
    kept_by_chunk: dict[str, int] = field(default_factory=dict)


def _pair_kind(pair: RawPair, j: int, record: ChunkRecord) -> str:
    """The model's label when it is one that was asked for, else the kind asked at position j."""
    asked = record.kinds
    kind = pair.kind if pair.kind in asked else asked[min(j, len(asked) - 1)]
    if kind == "multihop" and len(record.context_chunk_ids) < 2:
        return "factual"
    return kind


def screen_pairs(
    chunk: Chunk, record: ChunkRecord, texts: dict[str, str], quality: Quality
) -> tuple[list[tuple[int, RawPair, str, list[str]]], Counter[str], int]:
    """Per-chunk filters, cheapest first (parse, count, empty, question shape, standalone, on
    topic, numbers, word support): (index, pair, kind, context ids) kept, drops by reason, and
    how many pairs were parsed."""
    dropped: Counter[str] = Counter()
    parsed = parse_pairs(record.raw)
    if parsed is None:
        dropped["unparsable"] += 1
        return [], dropped, 0
    if not parsed:
        dropped["empty"] += 1
    kept = []
    for j, pair in enumerate(parsed):
        if j >= len(record.kinds):
            dropped["over_limit"] += 1
            continue
        if is_empty(pair, quality.min_answer_chars):
            dropped["empty"] += 1
            continue
        if not is_question(pair.question):
            dropped["not_question"] += 1
            continue
        if not is_standalone(pair.question):
            dropped["not_standalone"] += 1
            continue
        kind = _pair_kind(pair, j, record)
        context_ids = record.context_chunk_ids if kind == "multihop" else [chunk.id]
        context = "\n\n".join(texts[c] for c in context_ids)
        if not on_topic(pair.question, context):
            dropped["off_topic"] += 1
            continue
        if unsupported_numbers(pair.answer, context):
            dropped["unsupported_number"] += 1
            continue
        if answer_support(pair.answer, context, kind) < quality.min_answer_support:
            dropped["unsupported"] += 1
            continue
        kept.append((j, pair, kind, context_ids))
    return kept, dropped, len(parsed)


def assemble(
    chunks: Sequence[Chunk],
    records: dict[str, ChunkRecord],
    plan: SplitPlan,
    quality: Quality,
    split: Split | None = None,
) -> Assembled:
    """Every filter over every chunk's reply, in chunk order; pairs go to their chunk's side,
    and closed-book questions (when asked for) are held out of the training side."""
    texts = {c.id: c.text for c in chunks}
    dedup = DuplicateFilter(quality.near_duplicate_threshold)
    dropped: Counter[str] = Counter({r: 0 for r in DROP_REASONS})
    rows: dict[str, list[dict[str, Any]]] = {TRAIN: [], EVAL: []}
    raw_pairs = 0
    kept_by_chunk: dict[str, int] = {}
    for chunk in chunks:
        record = records.get(chunk.id)
        if record is None:
            continue
        kept, chunk_dropped, parsed = screen_pairs(chunk, record, texts, quality)
        dropped.update(chunk_dropped)
        raw_pairs += parsed
        side = plan.side[chunk.id]
        kept_by_chunk[chunk.id] = 0
        for j, pair, kind, context_ids in kept:
            if plan.sides_of(context_ids) != {side}:
                dropped["cross_split"] += 1
                continue
            reason = dedup.check(pair.question)
            if reason is not None:
                dropped[reason] += 1
                continue
            kept_by_chunk[chunk.id] += 1
            rows[side].append(
                {
                    "id": f"{chunk.id}-q{j}",
                    "question": pair.question,
                    "answer": pair.answer,
                    "context": "\n\n".join(texts[c] for c in context_ids),
                    "source": chunk.source,
                    "chunk_id": chunk.id,
                    "context_chunk_ids": context_ids,
                    "kind": kind,
                }
            )
    if split is not None and CLOSED_BOOK in split.purposes:
        closed = hold_out_closed_book(
            rows[TRAIN], split.closed_book_fraction, split.seed, split.paraphrase_threshold
        )
        rows[TRAIN], rows[CLOSED_BOOK] = closed.train, closed.questions
        dropped["closed_book_paraphrase"] += closed.paraphrases
    return Assembled(rows, dict(dropped), raw_pairs, kept_by_chunk)


def generation_fingerprint(generator: Generator, prompts: PromptSet) -> str:
    """What changes a chunk's reply; the resolved backend is left out so that `auto` resumes
    the same work whichever backend it lands on."""
    return fingerprint(
        {
            "promptHash": prompts.hash,
            "backend": generator.backend,
            "model": generator.model,
            "localModel": generator.local_model.to_wire() if generator.local_model else None,
            "questionsPerChunk": generator.questions_per_chunk,
            "questionKinds": list(generator.question_kinds),
            "temperature": generator.temperature,
            "numPredict": generator.num_predict,
            "seed": generator.seed,
        }
    )


def write_dataset(
    out_dir: Path, chunks: Sequence[Chunk], plan: SplitPlan, assembled: Assembled
) -> dict[str, str]:
    """The dataset-dir contract: instruction pairs, causal corpus and chunks, per side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "train": out_dir / INSTRUCT_TRAIN,
        "eval": out_dir / INSTRUCT_EVAL,
        "corpusTrain": out_dir / CORPUS_TRAIN,
        "corpusEval": out_dir / CORPUS_EVAL,
        "chunks": out_dir / CHUNKS,
    }
    write_jsonl(files["train"], assembled.rows[TRAIN])
    write_jsonl(files["eval"], assembled.rows[EVAL])
    closed_book = out_dir / INSTRUCT_EVAL_CLOSED_BOOK
    if CLOSED_BOOK in assembled.rows:
        files["evalClosedBook"] = closed_book
        write_jsonl(closed_book, assembled.rows[CLOSED_BOOK])
    else:
        closed_book.unlink(missing_ok=True)  # from an earlier run that asked for it
    for key, side in (("corpusTrain", TRAIN), ("corpusEval", EVAL)):
        write_jsonl(
            files[key],
            [
                {"text": c.text, "source": c.source, "chunk_id": c.id}
                for c in chunks
                if plan.side[c.id] == side
            ],
        )
    write_jsonl(
        files["chunks"],
        [
            {
                "id": c.id,
                "text": c.text,
                "source": c.source,
                "position": c.position(),
                "split": plan.side[c.id],
            }
            for c in chunks
        ],
    )
    return {k: str(v) for k, v in files.items()}


@dataclass
class GenerationStats:
    generated: int = 0
    parsed_pairs: int = 0
    screened_pairs: int = 0
    seconds: float = 0.0
    backend: str | None = None
    model: str | None = None
    chunk_ids: set[str] = field(default_factory=set)
    # Chunks the server refused for good; not in the work log, so a rerun asks again.
    failed: dict[str, str] = field(default_factory=dict)


class DatasetGenerator:
    """One DatasetGeneration run into `out_dir`; resumes from the work log it finds there."""

    def __init__(
        self,
        spec: DatasetGenerationSpec,
        out_dir: Path,
        reporter: Reporter,
        name: str = "dataset",
        base_dir: Path | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.reporter = reporter
        self.name = name
        self.base_dir = base_dir
        self._backend = backend
        self.timings: dict[str, float] = {}

    def _timed(self, key: str, start: float) -> float:
        now = time.monotonic()
        self.timings[key] = round(now - start, 3)
        return now

    def run(self) -> dict[str, Any]:
        """Generate the dataset, write it with its manifest and card, and return the manifest;
        a WorkloadError when no pair survived the filters."""
        spec, gen = self.spec, self.spec.generator
        t0 = t = time.monotonic()
        prompts = PromptSet.from_spec(gen)
        ingested = ingest(spec.source, self.base_dir)
        t = self._timed("ingestSeconds", t)
        counter = token_counter_for(gen.local_model)
        chunked = chunk_documents(ingested.documents, counter, spec.chunking)
        if not chunked.chunks:
            raise WorkloadError(
                "spec.chunking: every chunk is below minTokens "
                f"({spec.chunking.min_tokens}); nothing to generate from"
            )
        chunks = chunked.chunks
        documents = "documents" in spec.split.purposes
        plan = plan_split(
            chunks,
            spec.split.eval_fraction if documents else 0.0,
            spec.split.seed,
            spec.split.group_chunks,
        )
        t = self._timed("chunkSeconds", t)

        worklog = WorkLog(self.out_dir, generation_fingerprint(gen, prompts))
        records = worklog.load()
        resumed = sum(1 for c in chunks if c.id in records)
        todo = [(i, c) for i, c in enumerate(chunks) if c.id not in records]
        log.info(
            "%d documents, %d chunks (%d near-empty skipped); %d already generated, %d to go",
            len(ingested.documents), len(chunks), chunked.skipped_near_empty, resumed, len(todo),
        )  # fmt: skip
        stats = GenerationStats()
        if todo:
            stats = self._generate(todo, chunks, plan, prompts, worklog, records, resumed)
        t = self._timed("generateSeconds", t)

        assembled = assemble(chunks, records, plan, spec.quality, spec.split)
        files = write_dataset(self.out_dir, chunks, plan, assembled)
        t = self._timed("assembleSeconds", t)
        self.timings["totalSeconds"] = round(time.monotonic() - t0, 3)

        manifest = self._manifest(
            ingested, chunked.skipped_near_empty, chunks, plan, records, assembled, stats,
            prompts, worklog.fingerprint, counter.name, resumed, files,
        )  # fmt: skip
        write_json(self.out_dir / DATASET_MANIFEST, manifest)
        (self.out_dir / hub.CARD).write_text(hub.dataset_card(self.name, manifest))
        total = manifest["counts"]["pairs"]
        if total == 0:
            why = [f"{k}={v}" for k, v in assembled.dropped.items() if v]
            if stats.failed:
                why.append(f"{len(stats.failed)} chunk(s) refused by the server")
            raise WorkloadError(
                f"no question/answer pairs survived the filters ({', '.join(why) or 'no replies'})"
                f"; see {self.out_dir / DATASET_MANIFEST}"
            )
        return manifest

    def _generate(
        self,
        todo: list[tuple[int, Chunk]],
        chunks: Sequence[Chunk],
        plan: SplitPlan,
        prompts: PromptSet,
        worklog: WorkLog,
        records: dict[str, ChunkRecord],
        resumed: int,
    ) -> GenerationStats:
        """Send the remaining chunks, `concurrency` at a time; every reply is logged at once,
        so an interruption loses only the requests in flight."""
        gen = self.spec.generator
        backend = self._backend or select_backend(gen)
        backend.check()
        stats = GenerationStats(backend=backend.name, model=backend.model)
        texts = {c.id: c.text for c in chunks}
        requests = [
            build_request(prompts, chunk, i, plan.neighbour[chunk.id], gen) for i, chunk in todo
        ]
        by_id = {c.id: c for c in chunks}
        done, total = resumed, len(chunks)
        screened = sum(
            len(screen_pairs(by_id[cid], r, texts, self.spec.quality)[0])
            for cid, r in records.items()
            if cid in by_id
        )
        self.reporter.progress(
            force=True,
            step=done,
            total=total,
            unit="chunks",
            resumedFromStep=resumed or None,
            pairsKept=screened,
            message=f"generating with {backend.name} {backend.model}: {len(todo)} chunks to go",
        )
        fp = worklog.fingerprint

        def run_one(request: GenerationRequest) -> ChunkRecord:
            start = time.monotonic()
            raw, attempts = backend.generate(request)
            return ChunkRecord(
                chunk_id=request.chunk_id,
                fingerprint=fp,
                raw=raw,
                kinds=request.kinds,
                context_chunk_ids=request.context_chunk_ids,
                backend=backend.name,
                model=backend.model,
                seconds=round(time.monotonic() - start, 3),
                attempts=attempts,
            )

        start = time.monotonic()
        error: BaseException | None = None
        try:
            with ThreadPoolExecutor(gen.concurrency, thread_name_prefix="datagen") as pool:
                futures: dict[Future[ChunkRecord], str] = {
                    pool.submit(run_one, r): r.chunk_id for r in requests
                }
                for fut in as_completed(futures):
                    try:
                        record = fut.result()
                    except CancelledError:
                        continue
                    except RequestRejected as err:
                        log.warning("chunk %s skipped: %s", futures[fut], err)
                        stats.failed[futures[fut]] = str(err)
                        done += 1
                        continue
                    except BaseException as err:
                        # Stop sending, but keep what is already in flight: it is paid for.
                        if error is None:
                            error = err
                            for other in futures:
                                other.cancel()
                        continue
                    worklog.append(record)
                    records[record.chunk_id] = record
                    kept, _, parsed = screen_pairs(
                        by_id[record.chunk_id], record, texts, self.spec.quality
                    )
                    stats.generated += 1
                    stats.chunk_ids.add(record.chunk_id)
                    stats.parsed_pairs += parsed
                    stats.screened_pairs += len(kept)
                    screened += len(kept)
                    done += 1
                    elapsed = time.monotonic() - start
                    rate = stats.generated / elapsed if elapsed > 0 else 0.0
                    self.reporter.progress(
                        step=done,
                        total=total,
                        unit="chunks",
                        pairsKept=screened,
                        etaSeconds=round((total - done) / rate, 1) if rate else None,
                        message=f"{done}/{total} chunks, {screened} pairs kept so far",
                    )
        finally:
            stats.seconds = time.monotonic() - start
            backend.close()
        if error is not None:
            raise error
        return stats

    def _manifest(
        self,
        ingested: Any,
        skipped_near_empty: int,
        chunks: Sequence[Chunk],
        plan: SplitPlan,
        records: dict[str, ChunkRecord],
        assembled: Assembled,
        stats: GenerationStats,
        prompts: PromptSet,
        fp: str,
        counter_name: str,
        resumed: int,
        files: dict[str, str],
    ) -> dict[str, Any]:
        spec, gen = self.spec, self.spec.generator
        used = Counter((r.backend, r.model) for c in chunks if (r := records.get(c.id)))
        backend, model = (stats.backend, stats.model)
        if backend is None and used:
            backend, model = used.most_common(1)[0][0]
        train, evals = assembled.rows[TRAIN], assembled.rows[EVAL]
        kept_this_run = sum(assembled.kept_by_chunk.get(cid, 0) for cid in stats.chunk_ids)
        gen_seconds = stats.seconds
        closed = assembled.rows.get(CLOSED_BOOK)
        warnings = []
        if not evals and "documents" in spec.split.purposes:
            warnings.append("eval.jsonl is empty: no eval pair survived the filters")
        if closed is not None and not closed:
            warnings.append(f"{INSTRUCT_EVAL_CLOSED_BOOK} is empty: too few training pairs")
        if not train:
            warnings.append("train.jsonl is empty: no train pair survived the filters")
        return {
            "name": self.name,
            "createdAt": now_rfc3339(),
            "counts": {
                "documents": len(ingested.documents),
                "documentsSkipped": len(ingested.skipped),
                "chunks": len(chunks),
                "chunksSkippedNearEmpty": skipped_near_empty,
                "trainChunks": sum(1 for c in chunks if plan.side[c.id] == TRAIN),
                "evalChunks": sum(1 for c in chunks if plan.side[c.id] == EVAL),
                "generatedChunks": stats.generated,
                "failedChunks": len(stats.failed),
                "resumedChunks": resumed,
                "rawPairs": assembled.raw_pairs,
                "pairs": len(train) + len(evals) + len(closed or []),
                "trainPairs": len(train),
                "evalPairs": len(evals),
                "closedBookPairs": len(closed or []),
                "dropped": sum(assembled.dropped.values()),
            },
            "dropped": assembled.dropped,
            "failedChunks": [{"chunk": c, "reason": r} for c, r in sorted(stats.failed.items())],
            "skippedDocuments": [
                {"source": s.source, "reason": s.reason} for s in ingested.skipped
            ],
            "generator": {
                "backend": backend,
                "model": model,
                "requestedBackend": gen.backend,
                "ollamaHost": gen.ollama_host if backend == "ollama" else None,
                "promptHash": prompts.hash,
                "fingerprint": fp,
                "customSystemPrompt": gen.system_prompt is not None,
                "customPromptTemplate": gen.prompt_template is not None,
                "questionsPerChunk": gen.questions_per_chunk,
                "questionKinds": list(gen.question_kinds),
                "temperature": gen.temperature,
                "numPredict": gen.num_predict,
                "seed": gen.seed,
                "concurrency": gen.concurrency,
            },
            "chunking": {**spec.chunking.to_wire(), "tokenCounter": counter_name},
            "split": {
                **spec.split.to_wire(),
                "groups": plan.groups,
                "rule": SPLIT_RULE,
                "produced": {
                    purpose: file
                    for purpose, file in (
                        ("documents", INSTRUCT_EVAL),
                        ("closed-book", INSTRUCT_EVAL_CLOSED_BOOK),
                    )
                    if purpose in spec.split.purposes
                },
                **({"closedBookRule": CLOSED_BOOK_RULE} if closed is not None else {}),
            },
            "quality": spec.quality.to_wire(),
            "timings": dict(self.timings),
            # Throughput of this run's generation only: resumed chunks cost nothing now.
            "pairsPerSecond": round(kept_this_run / gen_seconds, 4) if gen_seconds else 0.0,
            "rawPairsPerSecond": round(stats.parsed_pairs / gen_seconds, 4) if gen_seconds else 0.0,
            "chunksPerSecond": round(stats.generated / gen_seconds, 4) if gen_seconds else 0.0,
            "files": {k: Path(v).name for k, v in files.items()},
            "warnings": warnings,
        }


def main(resource: Resource[Any], reporter: Reporter) -> None:
    """Generate the dataset the DatasetGeneration describes, push it when asked, report it."""
    spec: DatasetGenerationSpec = resource.spec
    out = output_dir(spec)
    name = resource.metadata.name
    base_dir = resource.source_file.parent if resource.source_file else None
    manifest = DatasetGenerator(spec, out, reporter, name, base_dir).run()
    outputs: dict[str, Any] = {"path": str(out)}
    outputs |= {key: str(out / file) for key, file in manifest["files"].items()}
    outputs["manifest"] = str(out / DATASET_MANIFEST)
    if spec.output.hugging_face is not None:
        counts = manifest["counts"]
        manifest["hub"] = outputs["huggingFace"] = push_folder(
            spec.output.hugging_face,
            out,
            f"llmft DatasetGeneration {name}: {counts['pairs']} pairs from {counts['chunks']} "
            "chunks",
            repo_type="dataset",
            allow_patterns=hub.PUSHED_FILES,
        )
        write_json(out / DATASET_MANIFEST, manifest)
    reporter.progress(force=True, **done_progress(manifest))
    reporter.result(result_metrics(manifest), outputs)


def done_progress(manifest: dict[str, Any]) -> dict[str, Any]:
    """The last progress report: every chunk done, and what the pairs came to."""
    counts = manifest["counts"]
    return {
        "step": counts["chunks"],
        "total": counts["chunks"],
        "unit": "chunks",
        "pairsKept": counts["pairs"],
        "message": f"done: {counts['pairs']} pairs ({counts['trainPairs']} train, "
        f"{counts['evalPairs']} eval, {counts['closedBookPairs']} closed-book), "
        f"{counts['dropped']} dropped",
    }


def result_metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    """The final status.metrics: the manifest's counts and this run's throughput."""
    counts = manifest["counts"]
    keys = ("documents", "chunks", "pairs", "trainPairs", "evalPairs", "closedBookPairs", "dropped")
    return {**{k: counts[k] for k in keys}, "pairsPerSecond": manifest["pairsPerSecond"]}
