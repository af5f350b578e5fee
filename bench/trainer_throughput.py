"""Training throughput and peak memory: the llmft trainer against a plain trl script, one run.

Both train the same randomly initialised Llama (built from a config) on the same
prompt/completion conversations, with the same LoRA shape, batch, sequence length and steps, each
in its own fresh process (so peak memory is its own). tokens/s counts non-padding tokens over the
Trainer's train_runtime in both. Peak memory is the CUDA allocator's peak on a GPU, the peak
resident set size on a CPU. Each process's CPU time (user + system, import and load included)
is printed too: on a shared CPU, wall-clock rates swing with the neighbours' load.

    python bench/trainer_throughput.py                       # CPU-sized defaults
    python bench/trainer_throughput.py --preset 1b --method qlora --steps 30   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS = {
    # hidden, layers, heads, kv heads, intermediate
    "tiny": (64, 2, 4, 2, 128),
    "small": (256, 4, 4, 2, 688),
    "1b": (2048, 16, 32, 8, 8192),
}
WORDS = [
    "leave",
    "policy",
    "manager",
    "expense",
    "travel",
    "office",
    "badge",
    "payroll",
    "pension",
    "holiday",
    "contract",
    "notice",
    "training",
    "review",
    "safety",
    "laptop",
    "remote",
    "hybrid",
    "allowance",
    "receipt",
    "claim",
    "approval",
    "deadline",
    "team",
]


def build_model(out: Path, preset: str, tokenizer_dir: str | None) -> Path:
    """A random Llama of the preset's shape with SmolLM2's tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_dir:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        from llmft.api.common import ModelSource
        from llmft.models import SMOLLM2, SMOLLM2_GGUF
        from llmft.workloads.modeling import load_tokenizer

        tokenizer = load_tokenizer(ModelSource(name=SMOLLM2, gguf_file=SMOLLM2_GGUF))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hidden, layers, heads, kv, inter = PRESETS[preset]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if torch.cuda.is_available():
        model = model.to(torch.bfloat16)  # both sides train in bf16 there; half the bytes to load
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: random Llama '{preset}', {params / 1e6:.1f}M parameters", flush=True)
    return out


def write_data(dataset_dir: Path, rows: int, answer_words: int) -> Path:
    """train.jsonl for llmft and the same conversations, rendered, for the baseline."""
    from llmft.prompts import build_conversation

    rng = random.Random(0)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(rows):
        question = f"Question {i}: what does the handbook say about " + " ".join(
            rng.choices(WORDS, k=8)
        )
        answer = " ".join(rng.choices(WORDS, k=answer_words)) + "."
        pairs.append((question, answer))
    with (dataset_dir / "train.jsonl").open("w") as f:
        for question, answer in pairs:
            f.write(json.dumps({"question": question, "answer": answer}) + "\n")
    conversations = dataset_dir / "conversations.jsonl"
    with conversations.open("w") as f:
        for question, answer in pairs:
            messages = build_conversation(question, answer)
            f.write(json.dumps({"prompt": messages[:-1], "completion": messages[-1:]}) + "\n")
    return conversations


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """stdout, wall seconds and CPU seconds (user + system) of one fresh process."""
    start, cpu = time.perf_counter(), _children_cpu_seconds()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return proc.stdout, time.perf_counter() - start, _children_cpu_seconds() - cpu


def run_llmft(args: argparse.Namespace, model: Path, data: Path, work: Path, env: dict[str, str]):
    spec = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "bench"},
        "spec": {
            "baseModel": {"name": str(model)},
            "dataset": {"path": str(data)},
            "method": args.method,
            "mode": "instruct",
            "hyperparameters": {
                "maxSteps": args.steps,
                "batchSize": args.batch_size,
                "gradientAccumulationSteps": 1,
                "maxSeqLength": args.seq_len,
                "learningRate": 2e-4,
                "warmupRatio": 0.0,
                "lrScheduler": "constant",
                "gradientCheckpointing": args.gradient_checkpointing,
                "loggingSteps": max(1, args.steps // 4),
                "saveSteps": args.steps * 10,  # no checkpoint inside the timed loop
                "seed": 0,
                "lora": {"r": 16, "alpha": 32, "targetModules": ["all-linear"]},
            },
            "output": {"path": str(work / "llmft-out")},
        },
    }
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec))
    _, wall, cpu = run(
        [sys.executable, "-m", "llmft.workloads.trainer", "--spec", str(spec_file)], env
    )
    m = json.loads((work / "llmft-out" / "metrics.json").read_text())
    return {
        "tokens": m["tokensSeen"],
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "trainCpuSeconds": m["trainCpuSeconds"],
        "tokensPerSecond": m["tokensSeen"] / m["trainRuntimeSeconds"],
        "peakMemoryBytes": int(m["peakMemoryGiB"] * 1024**3),
        "trainLoss": m["trainLoss"],
        "wallSeconds": wall,
        "processCpuSeconds": cpu,
    }


def run_baseline(
    args: argparse.Namespace, model: Path, conversations: Path, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    script = Path(__file__).with_name("baseline_sft.py")
    cmd = [
        sys.executable,
        str(script),
        "--model",
        str(model),
        "--train",
        str(conversations),
        "--method",
        args.method,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--seq-len",
        str(args.seq_len),
        "--out",
        str(work / "baseline-out"),
    ]
    if args.gradient_checkpointing:
        cmd.append("--gradient-checkpointing")
    stdout, wall, cpu = run(cmd, env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wallSeconds"] = wall
    result["processCpuSeconds"] = cpu
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--method", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--answer-words", type=int, default=40)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: SmolLM2's, packaged)")
    parser.add_argument("--order", choices=["llmft-first", "baseline-first"], default="llmft-first")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="llmft-bench-") as tmp:
        work = Path(tmp)
        model = build_model(work / "model", args.preset, args.tokenizer)
        conversations = write_data(work / "data", args.rows, args.answer_words)
        runners = [
            ("llmft", lambda: run_llmft(args, model, work / "data", work, env)),
            ("baseline", lambda: run_baseline(args, model, conversations, work, env)),
        ]
        if args.order == "baseline-first":
            runners.reverse()
        results = {}
        for label, fn in runners:
            print(f"running {label} ...", flush=True)
            results[label] = fn()

    ours, base = results["llmft"], results["baseline"]
    device = "cuda" if _cuda() else "cpu"
    print(
        f"\n{args.preset} Llama, {args.method}, {args.steps} steps x batch {args.batch_size} x "
        f"seq {args.seq_len}, gradient checkpointing {args.gradient_checkpointing}, device {device}"
    )
    print(
        f"{'':10} {'tokens/s':>10} {'peak GiB':>9} {'train s':>8} {'tokens':>8} {'loss':>7} "
        f"{'train CPU s':>12} {'tokens/CPU s':>13} {'process CPU s':>14}"
    )
    for label in ("llmft", "baseline"):
        r = results[label]
        r["tokensPerCpuSecond"] = r["tokens"] / r["trainCpuSeconds"]
        print(
            f"{label:10} {r['tokensPerSecond']:10.1f} {r['peakMemoryBytes'] / 1024**3:9.3f} "
            f"{r['trainRuntimeSeconds']:8.2f} {r['tokens']:8d} {r['trainLoss']:7.3f} "
            f"{r['trainCpuSeconds']:12.1f} {r['tokensPerCpuSecond']:13.1f} "
            f"{r['processCpuSeconds']:14.1f}"
        )
    ratio_tps = ours["tokensPerSecond"] / base["tokensPerSecond"]
    ratio_mem = ours["peakMemoryBytes"] / base["peakMemoryBytes"]
    ratio_cpu = ours["tokensPerCpuSecond"] / base["tokensPerCpuSecond"]
    print(
        f"ratio llmft/baseline: tokens/s {ratio_tps:.3f}, tokens per CPU second {ratio_cpu:.3f}, "
        f"peak memory {ratio_mem:.3f}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "device": device,
                    "results": results,
                    "ratio": {
                        "tokensPerSecond": ratio_tps,
                        "tokensPerCpuSecond": ratio_cpu,
                        "peakMemory": ratio_mem,
                    },
                },
                indent=2,
            )
        )
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
