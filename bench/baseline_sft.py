"""The plain transformers + peft + trl baseline that bench/trainer_throughput.py compares against.

What a person would write by hand for the same run: load the model, wrap it in LoRA (or QLoRA),
hand the same prompt/completion conversations to trl's SFTTrainer, train. No llmft code is
imported, so the comparison measures what the llmft trainer adds or loses around the same library
calls.
Prints one JSON line: tokens, seconds, tokens per second, peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--train", required=True, help="JSON lines of prompt/completion messages, or of text"
    )
    parser.add_argument("--method", choices=["lora", "qlora"], default="lora")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--seq-len", type=int, required=True)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {}
    if args.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=dtype, device_map={"": 0 if cuda else "cpu"}, **kwargs
    )
    model.config.use_cache = False
    if args.method == "qlora":
        model = prepare_model_for_kbit_training(model, args.gradient_checkpointing)
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.r,
            lora_alpha=args.alpha,
            lora_dropout=0.05,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    with open(args.train, encoding="utf-8") as f:
        dataset = Dataset.from_list([json.loads(line) for line in f if line.strip()])
    config = SFTConfig(
        output_dir=args.out,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation,
        learning_rate=args.lr,
        max_steps=args.steps,
        max_length=args.seq_len,
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=dtype == torch.bfloat16,
        use_cpu=not cuda,
        save_strategy="no",
        report_to=[],
        logging_steps=max(1, args.steps // 4),
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        seed=0,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    result = trainer.train()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = int(trainer.state.num_input_tokens_seen)
    peak = (
        torch.cuda.max_memory_allocated()
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    print(
        json.dumps(
            {
                "tokens": tokens,
                "trainRuntimeSeconds": float(result.metrics["train_runtime"]),
                "wallSeconds": seconds,
                "trainCpuSeconds": cpu,
                "tokensPerSecond": tokens / float(result.metrics["train_runtime"]),
                "peakMemoryBytes": int(peak),
                "trainLoss": float(result.training_loss),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
