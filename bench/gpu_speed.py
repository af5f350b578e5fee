"""llmft's trainer against the plain trl script, per seed architecture, under an A10's memory.

One prepared run for a GPU session (GPU time is short): for each case (a 1B Llama and the four
seed architectures at full size, random weights from their real configs, their real
tokenizers), both trainers run in fresh processes in both orders, each process capped to
`--memory-gib` of GPU memory (torch.cuda.set_per_process_memory_fraction, 24 GiB standing for
an A10). llmft runs with its defaults (spec.speed: auto, or --speed); the baseline is
bench/baseline_sft.py, what a user writes with trl. Printed per run: tokens/s, peak GPU
memory, MFU; per case: the ratio llmft / baseline of tokens/s and of peak memory, in each
order. Results go to --out as
JSON lines, one per finished run, so a run cut short keeps what it measured.

MFU = tokens/s x FLOPs per token / the GPU's peak dense bf16 FLOP/s, with the usual convention
FLOPs per token = 6 x (matmul parameters) + 12 x layers x hidden x sequence length (PaLM's),
although LoRA skips the frozen weights' gradients (about 4/6 of that work is done).

    python bench/gpu_speed.py --smoke                  # CPU, tiny shapes: the script works
    python bench/gpu_speed.py --out results.jsonl      # GPU: every case, both orders
    python bench/gpu_speed.py --cases llama-1b:lora,gemma-2b:qlora --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # model_fixtures: the seed models' tokenizers, configs

# name -> (tokenizer/config fixture, config overrides); full size unless --smoke.
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    # Llama 3.2 1B's shape with Llama 3's tokenizer.
    "llama-1b": (
        "meta-llama-3-8b-instruct",
        {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "tie_word_embeddings": True,
        },
    ),
    "llama3-8b": ("meta-llama-3-8b-instruct", {}),
    "mistral-7b": ("mistral-7b-instruct-v0.3", {}),
    "gemma-2b": ("gemma-2b-it", {}),
    "phi-2": ("phi-2", {}),
}
DEFAULT_CASES = (
    "llama-1b:lora,llama-1b:qlora,llama3-8b:qlora,mistral-7b:qlora,gemma-2b:lora,phi-2:lora"
)
SMOKE_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
# Peak dense bf16 TFLOP/s by device name (the vendors' figures, without sparsity).
PEAK_TFLOPS = {
    "H200": 989.5,
    "H100": 989.5,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
    "L4": 121.0,
}
from trainer_throughput import WORDS  # noqa: E402  (the same vocabulary of handbook words)


def build_model(name: str, out: Path, smoke: bool) -> tuple[Path, dict[str, Any]]:
    """A random-weight model of the architecture (full size unless smoke) with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from model_fixtures import model_dir

    fixture, overrides = ARCHITECTURES[name]
    source = model_dir(fixture)
    config = AutoConfig.from_pretrained(source)
    shape = dict(overrides)
    if smoke:
        shape |= SMOKE_SHAPE
        if config.model_type == "gemma":
            shape["head_dim"] = 16
        if config.model_type == "phi":
            shape["num_key_value_heads"] = shape["num_attention_heads"]
        shape["tie_word_embeddings"] = True
    for key, value in shape.items():
        setattr(config, key, value)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not tokenizer.chat_template and config.model_type == "phi":
        # Phi-2 ships no chat template; a trl user must bring one: the model card's format,
        # the one llmft uses, so both sides train on the same text.
        from llmft.families import PHI2_TEMPLATE

        tokenizer.chat_template = PHI2_TEMPLATE
    tokenizer.save_pretrained(out)
    info = describe(model, config)
    del model
    if cuda:
        torch.cuda.empty_cache()
    print(f"model {name}: {info['parameters'] / 1e9:.2f}B parameters", flush=True)
    return out, info


def describe(model: Any, config: Any) -> dict[str, Any]:
    """Parameter counts for the FLOPs per token."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return {
        "parameters": total,
        # The input embedding is a lookup; a tied output head still multiplies.
        "matmulParameters": total if tied else total - embedding,
        "layers": int(config.num_hidden_layers),
        "hidden": int(config.hidden_size),
        "modelType": config.model_type,
    }


def flops_per_token(info: dict[str, Any], seq_len: int) -> float:
    return 6.0 * info["matmulParameters"] + 12.0 * info["layers"] * info["hidden"] * seq_len


def write_data(root: Path, rows: int, max_words: int, seed: int = 0) -> dict[str, Path]:
    """Q/A pairs and corpus documents of varied lengths (as real data is), in llmft's dataset
    layout and as the baseline's prompt/completion and text rows."""
    from llmft.prompts import build_conversation

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs, docs = [], []
    for i in range(rows):
        question = f"Question {i}: what does the handbook say about " + " ".join(
            rng.choices(WORDS, k=rng.randint(4, 16))
        )
        answer = " ".join(rng.choices(WORDS, k=rng.randint(max_words // 8, max_words))) + "."
        pairs.append((question, answer))
        docs.append(" ".join(rng.choices(WORDS, k=rng.randint(max_words // 4, 2 * max_words))))

    def dump(name: str, items: list[dict[str, Any]]) -> Path:
        path = root / name
        path.write_text("".join(json.dumps(x) + "\n" for x in items))
        return path

    dump("train.jsonl", [{"question": q, "answer": a} for q, a in pairs])
    dump("corpus_train.jsonl", [{"text": d} for d in docs])
    conversations = []
    for q, a in pairs:
        messages = build_conversation(q, a)
        conversations.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return {
        "dataset": root,
        "instruct": dump("baseline_instruct.jsonl", conversations),
        "causal": root / "corpus_train.jsonl",
    }


def baseline_conversations(paths: dict[str, Path], model: Path) -> Path:
    """The baseline's prompt/completion rows for this model: as written, or with the system
    prompt folded into the question where the template refuses a system role (Gemma), as a
    user of plain trl has to."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(probe, tokenize=False)
        return paths["instruct"]
    except Exception:  # jinja2's TemplateError: "System role not supported"
        pass
    folded = []
    for line in paths["instruct"].read_text().splitlines():
        row = json.loads(line)
        system = [m["content"] for m in row["prompt"] if m["role"] == "system"]
        rest = [dict(m) for m in row["prompt"] if m["role"] != "system"]
        if system and rest:
            rest[0]["content"] = "\n\n".join([*system, rest[0]["content"]])
        folded.append(json.dumps({"prompt": rest, "completion": row["completion"]}))
    out = model.parent / f"{model.name}-baseline.jsonl"
    out.write_text("\n".join(folded) + "\n")
    return out


def capped(argv: list[str], fraction: float | None) -> list[str]:
    """The command run under a per-process GPU memory cap (set before anything allocates)."""
    if fraction is None:
        if argv[0].startswith("-m:"):
            return [sys.executable, "-m", argv[0][3:], *argv[1:]]
        return [sys.executable, *argv]
    code = (
        "import runpy, sys, torch; "
        f"torch.cuda.set_per_process_memory_fraction({fraction:.6f}); "
        "sys.argv = sys.argv[1:]; "
        "runpy.run_module(sys.argv[0][3:], run_name='__main__') if sys.argv[0].startswith('-m:') "
        "else runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    return [sys.executable, "-c", code, *argv]


def run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd[:4])} ...")
    return proc.stdout


def run_llmft(case: dict[str, Any], paths: dict[str, Path], work: Path, env: dict[str, str]):
    out = work / "llmft-out"
    spec = {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "bench"},
        "spec": {
            "baseModel": {"name": str(case["model"])},
            "dataset": {"path": str(paths["dataset"])},
            "method": case["method"],
            "mode": case["mode"],
            "hyperparameters": {
                "maxSteps": case["steps"],
                "batchSize": case["batch"],
                "gradientAccumulationSteps": case["accumulation"],
                "maxSeqLength": case["seq_len"],
                "maxTruncatedShare": 1.0,
                "learningRate": 2e-4,
                "warmupRatio": 0.0,
                "lrScheduler": "constant",
                "gradientCheckpointing": case["gradient_checkpointing"],
                "loggingSteps": max(1, case["steps"] // 4),
                "saveSteps": case["steps"] * 10,
                "seed": 0,
                "lora": {"r": 16, "alpha": 32, "targetModules": ["all-linear"]},
            },
            "speed": case["speed"],
            "memoryCheck": "warn",
            "output": {"path": str(out)},
        },
    }
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(spec))
    status_file = work / "status.json"
    run_env = {**env, "LLMFT_STATUS_FILE": str(status_file)}
    run(capped(["-m:llmft.workloads.trainer", "--spec", str(spec_file)], case["fraction"]), run_env)
    m = json.loads((out / "metrics.json").read_text())
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    return {
        "tokens": m["tokensSeen"],
        "trainRuntimeSeconds": m["trainRuntimeSeconds"],
        "tokensPerSecond": m["tokensSeen"] / m["trainRuntimeSeconds"],
        "peakMemoryBytes": int(m["peakMemoryGiB"] * 1024**3),
        "trainLoss": m["trainLoss"],
        "speed": status.get("speed"),
        "shape": status.get("hyperparameters"),
    }


def run_baseline(case: dict[str, Any], paths: dict[str, Path], work: Path, env: dict[str, str]):
    script = str(ROOT / "bench" / "baseline_sft.py")
    if case["mode"] == "causal":
        train = paths["causal"]
    else:
        train = baseline_conversations(paths, case["model"])
    argv = [
        script,
        "--model", str(case["model"]),
        "--train", str(train),
        "--method", case["method"],
        "--steps", str(case["steps"]),
        "--batch-size", str(case["batch"]),
        "--gradient-accumulation", str(case["accumulation"]),
        "--seq-len", str(case["seq_len"]),
        "--out", str(work / "baseline-out"),
    ]  # fmt: skip
    if case["gradient_checkpointing"]:
        argv.append("--gradient-checkpointing")
    stdout = run(capped(argv, case["fraction"]), env)
    return json.loads(stdout.strip().splitlines()[-1])


def device_facts(memory_gib: float) -> tuple[str, float | None, float | None]:
    """Device name, its peak bf16 TFLOP/s (if known) and the memory fraction for the cap."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", None, None
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    return name, peak, min(1.0, memory_gib * 1024**3 / total)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--cases", default=DEFAULT_CASES, help="arch:method[:mode],...")
    parser.add_argument("--mode", choices=["instruct", "causal"], default="instruct")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--max-words", type=int, default=400, help="longest answer, in words")
    parser.add_argument("--memory-gib", type=float, default=24.0, help="GPU memory cap")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--speed", default="{}", help="llmft spec.speed overrides (JSON)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's peak (default: by name)")
    parser.add_argument("--orders", default="llmft-first,baseline-first")
    parser.add_argument("--budget-s", type=float, default=0, help="start no case after this")
    parser.add_argument("--out", help="JSON lines, one per finished run")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized shapes, a few steps")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.rows, args.seq_len, args.max_words = 2, 16, 96, 40
        args.batch_size = 4

    device, peak_tflops, fraction = device_facts(args.memory_gib)
    peak_tflops = args.peak_tflops or peak_tflops
    if device == "cpu" and not args.smoke:
        raise SystemExit("no GPU: run with --smoke to check the script on a CPU")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["HF_DATASETS_OFFLINE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(
        f"device {device}; cap {args.memory_gib} GiB (fraction {fraction}); peak "
        f"{peak_tflops} TFLOP/s; {args.steps} steps x batch {args.batch_size} x accumulation "
        f"{args.gradient_accumulation} x seq {args.seq_len}",
        flush=True,
    )
    started = time.monotonic()
    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llmft-gpu-bench-") as tmp:
        work = Path(tmp)
        paths = write_data(work / "data", args.rows, args.max_words)
        for spec in args.cases.split(","):
            if args.budget_s and time.monotonic() - started > args.budget_s:
                print(f"budget spent: {spec} and later cases not run", flush=True)
                break
            arch, method, *rest = spec.split(":")
            mode = rest[0] if rest else args.mode
            model, info = build_model(arch, work / f"model-{arch}", args.smoke)
            case = {
                "arch": arch,
                "method": method,
                "mode": mode,
                "model": model,
                "steps": args.steps,
                "batch": args.batch_size,
                "accumulation": args.gradient_accumulation,
                "seq_len": args.seq_len,
                "gradient_checkpointing": not args.no_gradient_checkpointing,
                "speed": json.loads(args.speed),
                "fraction": fraction,
            }
            fpt = flops_per_token(info, args.seq_len)
            for order in args.orders.split(","):
                labels = ["llmft", "baseline"]
                if order == "baseline-first":
                    labels.reverse()
                results: dict[str, Any] = {}
                for label in labels:
                    side = work / f"{arch}-{method}-{order}-{label}"
                    side.mkdir()
                    fn = run_llmft if label == "llmft" else run_baseline
                    try:
                        results[label] = fn(case, paths, side, env)
                    except RuntimeError as err:
                        results[label] = {"error": str(err)}
                    r = results[label]
                    if "tokensPerSecond" in r and peak_tflops:
                        r["mfu"] = r["tokensPerSecond"] * fpt / (peak_tflops * 1e12)
                row = {
                    "arch": arch,
                    "method": method,
                    "mode": mode,
                    "order": order,
                    "device": device,
                    "memoryCapGiB": args.memory_gib,
                    "model": info,
                    **{k: v for k, v in case.items() if k in ("steps", "batch", "seq_len")},
                    **results,
                }
                ours, base = results.get("llmft", {}), results.get("baseline", {})
                if "tokensPerSecond" in ours and "tokensPerSecond" in base:
                    row["ratioTokensPerSecond"] = ours["tokensPerSecond"] / base["tokensPerSecond"]
                    row["ratioPeakMemory"] = ours["peakMemoryBytes"] / max(
                        1, base["peakMemoryBytes"]
                    )
                table.append(row)
                print_row(row)
                if args.out:
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row, default=str) + "\n")
            shutil_rmtree(model)
    failed = [r for r in table if "ratioTokensPerSecond" not in r]
    return 1 if failed or not table else 0


def print_row(row: dict[str, Any]) -> None:
    def side(r: dict[str, Any]) -> str:
        if "error" in r:
            return "FAILED"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        return (
            f"{r['tokensPerSecond']:9.1f} tok/s {r['peakMemoryBytes'] / 1024**3:6.2f} GiB MFU {mfu}"
        )

    ratio = row.get("ratioTokensPerSecond")
    mem = row.get("ratioPeakMemory")
    shape = (row.get("llmft") or {}).get("shape") or {}
    print(
        f"{row['arch']:10} {row['method']:5} {row['mode']:8} {row['order']:14} | llmft "
        f"{side(row['llmft'])} (micro-batch {shape.get('batchSize')}) | baseline "
        f"{side(row['baseline'])} | ratio tok/s "
        f"{f'{ratio:.3f}' if ratio else '-'}, peak memory {f'{mem:.3f}' if mem else '-'}",
        flush=True,
    )


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)  # a full-size model is many GiB of disk


if __name__ == "__main__":
    sys.exit(main())
