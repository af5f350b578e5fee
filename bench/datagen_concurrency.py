"""Pairs per second of dataset generation against a real Ollama, at concurrency 1 and 4.

Starts its own Ollama (tests/servers/launch.py, OLLAMA_NUM_PARALLEL=4) serving SmolLM2-135M,
then runs the real DatasetGeneration pipeline twice over the same chunks of the example
handbook, once per concurrency, each into a fresh output directory (so nothing resumes), and
prints pairs/s for both and their ratio. A warm-up request loads the model first, so neither
run pays for loading it.

    python bench/datagen_concurrency.py [--chunks 8] [--num-predict 160] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from llmft.api.datasetgeneration import DatasetGenerationSpec  # noqa: E402
from llmft.reporting import Reporter  # noqa: E402
from llmft.workloads.datagen.pipeline import DatasetGenerator  # noqa: E402
from llmft.workloads.entry import WorkloadError  # noqa: E402


def spec_for(
    host: str, model: str, docs: Path, concurrency: int, args: Any
) -> DatasetGenerationSpec:
    return DatasetGenerationSpec.model_validate(
        {
            "source": {"path": str(docs)},
            "chunking": {"maxTokens": 128, "overlapTokens": 16},
            "generator": {
                "ollamaHost": host,
                "model": model,
                "questionsPerChunk": args.questions,
                "numPredict": args.num_predict,
                "temperature": 0.0,
                "seed": 11,
                "concurrency": concurrency,
                "timeoutSeconds": 600,
            },
            "split": {"evalFraction": 0.25, "seed": 1},
        }
    )


def pick_documents(dest: Path, chunks_wanted: int, host: str, model: str, args: Any) -> int:
    """Copy handbook chapters into `dest` until they hold about `chunks_wanted` chunks."""
    from llmft.workloads.datagen.chunking import RegexTokenCounter, chunk_documents
    from llmft.workloads.datagen.documents import ingest

    dest.mkdir(parents=True)
    spec = spec_for(host, model, dest, 1, args)
    count = 0
    for path in sorted((ROOT / "examples" / "hr-handbook").glob("0*.md")):
        shutil.copy(path, dest / path.name)
        docs = ingest(spec.source).documents
        count = len(chunk_documents(docs, RegexTokenCounter(), spec.chunking).chunks)
        if count >= chunks_wanted:
            break
    return count


def model_with_threads(host: str, base: str, threads: int) -> str:
    """`base`, or a variant of it pinned to `threads` CPU threads (Ollama's num_thread). On a
    shared CPU ggml's spinning worker threads slow each step many times over when there are
    fewer free cores than threads, which would swamp the effect of concurrency."""
    if threads <= 0:
        return base
    import ollama

    name = f"{base}-{threads}thread"
    ollama.Client(host=host).create(model=name, from_=base, parameters={"num_thread": threads})
    return name


def warm_up(host: str, model: str) -> None:
    import ollama

    ollama.Client(host=host).chat(
        model=model, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4}
    )


def run_once(host: str, model: str, docs: Path, out: Path, concurrency: int, args: Any) -> dict:
    spec = spec_for(host, model, docs, concurrency, args)
    start = time.monotonic()
    try:
        manifest = DatasetGenerator(spec, out, Reporter(None, min_interval=3600)).run()
    except WorkloadError:  # every pair filtered out: the throughput is still measured
        manifest = json.loads((out / "manifest.json").read_text())
    wall = time.monotonic() - start
    counts, seconds = manifest["counts"], manifest["timings"]["generateSeconds"]
    return {
        "concurrency": concurrency,
        "chunks": counts["generatedChunks"],
        "rawPairs": counts["rawPairs"],
        "pairs": counts["pairs"],
        "generateSeconds": round(seconds, 2),
        "wallSeconds": round(wall, 2),
        "pairsPerSecond": round(counts["pairs"] / seconds, 4),
        "rawPairsPerSecond": round(counts["rawPairs"] / seconds, 4),
        "chunksPerSecond": round(counts["generatedChunks"] / seconds, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8, help="about this many chunks")
    parser.add_argument("--questions", type=int, default=2, help="questions per chunk")
    parser.add_argument("--num-predict", type=int, default=160, help="max tokens per reply")
    parser.add_argument("--ollama", help="use this running server instead of starting one")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument(
        "--threads", type=int, default=1, help="num_thread for the model (0: the server's choice)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmft-bench-"))
    server = None
    try:
        host = args.ollama
        if host is None:
            from servers.launch import start_ollama

            server = start_ollama(work / "ollama", model=args.model, num_parallel=4)
            host = server.url
        model = model_with_threads(host, args.model, args.threads)
        chunks = pick_documents(work / "docs", args.chunks, host, model, args)
        print(
            f"ollama {host} model {model}: {chunks} chunks, {args.questions} questions each, "
            f"numPredict {args.num_predict}, OLLAMA_NUM_PARALLEL=4",
            flush=True,
        )
        warm_up(host, model)
        results = []
        for concurrency in (1, 4):
            result = run_once(host, model, work / "docs", work / f"out-c{concurrency}",
                              concurrency, args)  # fmt: skip
            results.append(result)
            print(json.dumps(result), flush=True)
        one, four = results
        print(
            f"pairs/s: concurrency 1 = {one['pairsPerSecond']:.3f}, "
            f"concurrency 4 = {four['pairsPerSecond']:.3f}, "
            f"ratio = {four['pairsPerSecond'] / one['pairsPerSecond']:.2f}x "
            f"(raw pairs/s ratio {four['rawPairsPerSecond'] / one['rawPairsPerSecond']:.2f}x, "
            f"chunks/s ratio {four['chunksPerSecond'] / one['chunksPerSecond']:.2f}x)"
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
