"""Serving the tuned model through Ollama: the trained adapter (or the merged model) becomes an
Ollama model, created through Ollama's own API with the `ollama` client.

`method: adapter` uploads the PEFT adapter's two files as blobs and creates the model `FROM` the
base Ollama model with them as its `ADAPTER`; Ollama converts the safetensors adapter to GGUF
itself (it does so for llama- and gemma2-architecture bases: Llama 3, and Mistral 7B, whose
Ollama builds are llama-architecture GGUFs) and the new model keeps the base's template and
parameters. `method: merged` uploads the merged safetensors model and lets Ollama convert it as a
whole model (Gemma, Llama, Qwen2, Phi-3 and the other architectures its importer knows), for the
families whose adapters Ollama cannot apply.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from llmft.api.finetunejob import OllamaServing
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.trainer.ollama")

FIELD = "spec.output.ollama"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# What Ollama's safetensors import reads from a model directory.
MODEL_SUFFIXES = (".json", ".safetensors", ".model", ".txt")
TOKENIZER_CONFIG = "tokenizer_config.json"
UNSUPPORTED_ADAPTER = "unsupported architecture"


def ollama_model_name(serving: OllamaServing, job_name: str) -> str:
    """The name Ollama lists the model under (a missing tag is `latest`, as Ollama does)."""
    name = serving.model or job_name
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _client(serving: OllamaServing) -> Any:
    import ollama

    return ollama.Client(host=serving.host, timeout=1800)


def _failure(err: Exception, serving: OllamaServing, what: str) -> WorkloadError:
    import ollama

    detail = " ".join(str(getattr(err, "error", None) or err).split())[:400]
    if isinstance(err, ollama.ResponseError) and UNSUPPORTED_ADAPTER in detail:
        if serving.method == "adapter":
            return WorkloadError(
                f"{FIELD}.method: Ollama cannot apply a LoRA adapter to the architecture of "
                f"{serving.base!r} ({detail}); use method: merged"
            )
        return WorkloadError(
            f"{FIELD}.method: Ollama cannot import this model's architecture from safetensors "
            f"({detail}); with a llama-architecture base in Ollama, use method: adapter"
        )
    if isinstance(err, ConnectionError | OSError) or "connect" in detail.lower():
        return WorkloadError(f"{FIELD}.host: cannot reach Ollama at {serving.host}: {detail}")
    kind = type(err).__name__
    return WorkloadError(f"{FIELD}: {what} on {serving.host} failed: {kind}: {detail}")


def _check_base(client: Any, serving: OllamaServing) -> None:
    import ollama

    assert serving.base is not None
    try:
        client.show(serving.base)
    except ollama.ResponseError as err:
        if err.status_code != 404:
            raise _failure(err, serving, f"looking up {serving.base!r}") from None
        try:
            names = sorted(m.model for m in client.list().models)
        except Exception:
            names = []
        raise WorkloadError(
            f"{FIELD}.base: {serving.base!r} is not on the Ollama server at {serving.host} "
            f"(it has {names}); pull or create it first"
        ) from None
    except Exception as err:
        raise _failure(err, serving, f"looking up {serving.base!r}") from None


def _upload(client: Any, folder: Path, names: list[str]) -> dict[str, str]:
    return {name: str(client.create_blob(folder / name)) for name in names}


def _merged_files(client: Any, merged_dir: Path) -> dict[str, str]:
    """The merged model's files as blobs. Ollama reads the chat template from
    tokenizer_config.json only; transformers saves it as chat_template.jinja, so it is put back."""
    names = sorted(
        p.name for p in merged_dir.iterdir() if p.is_file() and p.name.endswith(MODEL_SUFFIXES)
    )
    blobs = _upload(client, merged_dir, [n for n in names if n != TOKENIZER_CONFIG])
    config_file = merged_dir / TOKENIZER_CONFIG
    if config_file.exists():
        config = json.loads(config_file.read_text())
        jinja = merged_dir / "chat_template.jinja"
        if "chat_template" not in config and jinja.exists():
            config["chat_template"] = jinja.read_text()
        with tempfile.TemporaryDirectory() as tmp:
            patched = Path(tmp) / TOKENIZER_CONFIG
            patched.write_text(json.dumps(config))
            blobs[TOKENIZER_CONFIG] = str(client.create_blob(patched))
    return blobs


def publish_to_ollama(
    serving: OllamaServing, job_name: str, adapter_dir: Path, merged_dir: Path | None
) -> dict[str, Any]:
    """Create (or replace) the Ollama model; returns what status records of it."""
    client = _client(serving)
    name = ollama_model_name(serving, job_name)
    try:
        if serving.method == "adapter":
            _check_base(client, serving)
            missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).exists()]
            if missing:
                raise WorkloadError(f"{FIELD}: the adapter in {adapter_dir} lacks {missing}")
            blobs = _upload(client, adapter_dir, list(ADAPTER_FILES))
            log.info("creating Ollama model %s from %s with the adapter", name, serving.base)
            client.create(model=name, from_=serving.base, adapters=blobs, stream=False)
        else:
            if merged_dir is None or not (merged_dir / "config.json").exists():
                raise WorkloadError(f"{FIELD}.method: merged, but no merged model was saved")
            blobs = _merged_files(client, merged_dir)
            log.info("creating Ollama model %s from the merged model", name)
            client.create(model=name, files=blobs, stream=False)
        digest = next((m.digest for m in client.list().models if m.model == name), None)
    except WorkloadError:
        raise
    except Exception as err:
        raise _failure(err, serving, f"creating {name!r}") from None
    out: dict[str, Any] = {"host": serving.host, "model": name, "method": serving.method}
    if serving.base:
        out["base"] = serving.base
    if digest:
        out["digest"] = digest
    return out
