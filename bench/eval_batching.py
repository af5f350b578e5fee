"""Evaluator generation throughput: batched vs one-at-a-time greedy answers, items per second.

Both passes answer the same HR questions with the evaluator's own `AnswerGenerator` (the chat
prompt format of training, left padding, length-sorted batches), after one warm-up batch.
A pass's time covers generation only (model loading excluded). It also checks that the batched
answers equal the one-at-a-time answers, which greedy decoding with left padding promises.

    python bench/eval_batching.py                               # SmolLM2-135M-Instruct, CPU
    python bench/eval_batching.py --items 64 --batch-size 16    # a larger run (e.g. on a GPU)
    python bench/eval_batching.py --model /path/to/model --json out.json
    python bench/eval_batching.py --model DIR --random-init     # DIR's architecture, random
                                                                # weights (no weight files)

With --random-init the answers are noise, but every answer costs as much compute per token as
the real model's: use it where the weights cannot be copied (the GPU machine of a session).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

QUESTIONS = [
    "How many days of annual leave do full-time employees get?",
    "When does the leave year start and end?",
    "How much notice do I need to give before taking a week off?",
    "Who approves leave requests of more than ten working days?",
    "What happens to the days of the Christmas shutdown?",
    "When do I need a fit note from a doctor?",
    "Who should I call on the first day of sickness absence?",
    "What are the core working hours?",
    "How many days a week do hybrid staff work from the office?",
    "How long do I have to claim travel expenses?",
    "Can I travel first class by train?",
    "How is leave calculated for part-time staff?",
    "How many extra days of leave do I gain with service?",
    "What is the maximum annual leave allowance?",
    "Where do I request leave?",
    "How quickly must managers answer leave requests?",
]


def questions(n: int) -> list[str]:
    """`n` questions, cycling the list with a suffix so that repeats are distinct prompts."""
    return [
        QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" (case {i})")
        for i in range(n)
    ]


def random_copy(model_dir: str) -> str:
    """A directory with `model_dir`'s config and tokenizer and freshly initialised weights."""
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tempfile.mkdtemp(prefix="eval-bench-model-")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def load(model: str) -> tuple[Any, Any]:
    """SmolLM2 through the workloads' loader; a directory with plain transformers (bf16 on a
    GPU, as the loader does), which keeps the pydantic-free path for bare GPU machines."""
    if model == "smollm2":
        from llmft.api.common import ModelSource
        from llmft.models import SMOLLM2, SMOLLM2_GGUF
        from llmft.workloads.modeling import load_base_model

        return load_base_model(ModelSource(name=SMOLLM2, gguf_file=SMOLLM2_GGUF), False)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(
        model, dtype=torch.bfloat16 if cuda else torch.float32
    )
    return loaded.to("cuda" if cuda else "cpu"), tok


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from llmft.prompts import build_messages
    from llmft.workloads.evaluator.generation import AnswerGenerator

    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = random_copy(args.model) if args.random_init else args.model
    model, tok = load(model_path)
    generator = AnswerGenerator(model, tok, max_new_tokens=args.max_new_tokens)
    prompts = [
        str(tok.apply_chat_template(build_messages(q), tokenize=False, add_generation_prompt=True))
        for q in questions(args.items)
    ]
    generator.generate(prompts[: args.batch_size], args.batch_size)  # warm-up

    def timed(batch_size: int) -> tuple[list[str], float]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        answers = generator.generate(prompts, batch_size)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return answers, time.perf_counter() - start

    single, t_single = timed(1)
    batched, t_batched = timed(args.batch_size)
    new_tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in batched)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "model": args.model + (" (random init)" if args.random_init else ""),
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else platform.processor() or "cpu",
        "torchThreads": torch.get_num_threads(),
        "items": args.items,
        "batchSize": args.batch_size,
        "maxNewTokens": args.max_new_tokens,
        "oneAtATime": {"seconds": round(t_single, 3), "itemsPerSecond": args.items / t_single},
        "batched": {"seconds": round(t_batched, 3), "itemsPerSecond": args.items / t_batched},
        "speedup": t_single / t_batched,
        "identicalAnswers": sum(a == b for a, b in zip(single, batched, strict=True)),
        "answerTokens": new_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 (packaged GGUF) or a path")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--random-init", action="store_true", help="random weights, same shape")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()
    result = run(args)
    print(
        f"{result['model']} on {result['device']} ({result['torchThreads']} threads): "
        f"{args.items} items, max {args.max_new_tokens} new tokens\n"
        f"  one at a time: {result['oneAtATime']['itemsPerSecond']:.2f} items/s "
        f"({result['oneAtATime']['seconds']:.1f} s)\n"
        f"  batch of {args.batch_size}:    {result['batched']['itemsPerSecond']:.2f} items/s "
        f"({result['batched']['seconds']:.1f} s)\n"
        f"  speedup: {result['speedup']:.2f}x; identical answers: "
        f"{result['identicalAnswers']}/{args.items}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
