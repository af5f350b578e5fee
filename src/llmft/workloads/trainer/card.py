"""The model card (README.md) saved with an adapter: base model, data, hyper-parameters, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from llmft.api.finetunejob import FineTuneJobSpec

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    for key, value in sorted(metrics.items()):
        if isinstance(value, float):
            value = f"{value:.6g}"
        rows.append(f"| {key} | {value} |")
    return "\n".join(rows)


def model_card(
    spec: FineTuneJobSpec,
    name: str,
    data: dict[str, Any],
    metrics: dict[str, Any],
    target_modules: str | list[str],
    merged: bool = False,
) -> str:
    """Markdown with Hub metadata front matter; the hyper-parameters are the spec's, verbatim."""
    base = spec.base_model.name
    front: dict[str, Any] = {}
    if HUB_ID.match(base):  # the Hub validates base_model; a path or pkg: name would not pass
        front["base_model"] = base
    front |= {
        "library_name": "transformers" if merged else "peft",
        "pipeline_tag": "text-generation",
        "tags": ["llmft", spec.method, spec.mode, "lora"] + (["rag"] if spec.rag.enabled else []),
    }
    what = (
        "merged model (base weights with the LoRA adapter folded in)" if merged else "LoRA adapter"
    )
    method = "QLoRA (4-bit NF4 base, double quantisation)" if spec.method == "qlora" else "LoRA"
    mode = (
        "continued pre-training on the document corpus (packed sequences)"
        if spec.mode == "causal"
        else "instruction tuning on question/answer pairs, loss on the answer only"
    )
    rag = (
        f"on: prompts carry up to {spec.rag.top_k} context passages "
        f"(from the {spec.rag.context_source}), in the format the evaluation uses"
        if spec.rag.enabled
        else "off"
    )
    hyper = spec.hyperparameters.to_wire()
    hyper["lora"]["targetModules"] = target_modules
    usage = (
        "```python\nfrom transformers import AutoModelForCausalLM\n\n"
        'model = AutoModelForCausalLM.from_pretrained("<this directory or repo>")\n```'
        if merged
        else "```python\nfrom peft import AutoPeftModelForCausalLM\n\n"
        'model = AutoPeftModelForCausalLM.from_pretrained("<this directory or repo>")\n```'
    )
    gguf = f" (GGUF file `{spec.base_model.gguf_file}`)" if spec.base_model.gguf_file else ""
    body = f"""# {name}

A {what} trained by the llmft FineTuneJob `{name}`.

- **Base model:** `{base}`{gguf}
- **Method:** {method}
- **Mode:** {mode}
- **RAG context in prompts:** {rag}

## Data

```json
{json.dumps(data, indent=2)}
```

## Hyper-parameters

```yaml
{yaml.safe_dump(hyper, sort_keys=True).strip()}
```

## Metrics

{_metrics_table(metrics)}

## Use

{usage}
"""
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + body


def write_model_card(directory: Path, text: str) -> Path:
    path = directory / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
