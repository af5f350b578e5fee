"""Loading base models, tokenizers and adapters the same way for training and evaluation.

Both workloads name a model with a `ModelSource` (a Hub id, a local path, or `pkg:<package>`
for a model shipped in a Python package, possibly as a GGUF file). This module turns that into
a tokenizer and a model: plain precision or 4-bit NF4 (QLoRA), offline when the spec asks for
it; `load_chat_format` binds the tokenizer to its model family's rules (llmft.families).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmft.api.common import ModelSource
from llmft.models import (
    PKG_SCHEME,
    ModelLocation,
    ModelNotFound,
    resolve_model,
)
from llmft.workloads import hubsource
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubsource import HubRef

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from llmft.workloads.chatformat import ChatFormat

log = logging.getLogger("llmft.modeling")

CACHE_ENV = "LLMFT_MODEL_CACHE"


def hub_ref(source: ModelSource, field: str) -> HubRef | None:
    """The Hub repository a model source names (hf:// URI or owner/name), None when local."""
    if hubsource.is_hub_uri(source.name):
        ref = hubsource.parse_hub_uri(source.name, f"{field}.name", expect="model")
        if source.revision and ref.revision and source.revision != ref.revision:
            raise WorkloadError(
                f"{field}.revision: {source.revision!r} differs from the revision in "
                f"{field}.name ({ref.revision!r}); set one"
            )
        return HubRef("model", ref.repo_id, ref.revision or source.revision, ref.subfolder)
    if source.name.startswith(PKG_SCHEME) or source.name.startswith(("/", "./", "../")):
        return None
    return HubRef("model", source.name, source.revision)


def resolve_source(source: ModelSource, field: str | None = None) -> ModelLocation:
    """Where the model's files are (downloading a Hub model into the Hub cache); a clear error
    naming the field when they are nowhere. With `field`, a Hub download is recorded under it."""
    where = field or "baseModel"
    ref = hub_ref(source, where)
    if ref is not None:
        patterns = (source.gguf_file, "*.json") if source.gguf_file else hubsource.MODEL_PATTERNS
        fetched = hubsource.fetch(
            ref,
            f"{where}.name",
            f"{where}.tokenSecretRef",
            patterns,
            offline=source.offline,
            record=field is not None,
        )
        try:
            return resolve_model(str(fetched.path), source.gguf_file)
        except ModelNotFound as err:
            raise WorkloadError(f"{where}.ggufFile: {err}") from None
    try:
        return resolve_model(source.name, source.gguf_file)
    except ModelNotFound as err:
        raise WorkloadError(f"{where}.name: {err}") from None


def resolve_adapter(path: str | Path, field: str, token_field: str) -> Path:
    """A local adapter directory, downloading an hf:// adapter repository first."""
    if hubsource.is_hub_uri(str(path)):
        ref = hubsource.parse_hub_uri(str(path), field, expect="model")
        return hubsource.fetch(ref, field, token_field, hubsource.MODEL_PATTERNS).path
    return Path(path)


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(device: str | None = None) -> torch.dtype:
    """bf16 where the GPU does it natively, fp16 on older GPUs, fp32 on CPU (fp16 on CPU crawls)."""
    import torch

    device = device or best_device()
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured) if configured else Path.home() / ".cache" / "llmft" / "models"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-probe"
        probe.touch()
        probe.unlink()
    except OSError:
        # A read-only home (common in locked-down pods): convert into the temp dir instead.
        root = Path(tempfile.gettempdir()) / "llmft-models"
        root.mkdir(parents=True, exist_ok=True)
    return root


def _gguf_cache_dir(gguf_path: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return _cache_root() / f"{gguf_path.stem}-{key.hexdigest()[:12]}"


def _convert_gguf(location: ModelLocation) -> Path:
    """Dequantise a GGUF model once into a safetensors directory that loads fast and quantises.

    transformers dequantises GGUF on every load (slow) and cannot put bitsandbytes on top of a
    GGUF load, so both workloads load the converted copy instead.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert location.gguf_file is not None
    target = _gguf_cache_dir(Path(location.path_or_id) / location.gguf_file)
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    log.info("converting %s/%s to %s", location.path_or_id, location.gguf_file, target)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(location.path_or_id, gguf_file=location.gguf_file)
        loaded = AutoModelForCausalLM.from_pretrained(
            location.path_or_id, gguf_file=location.gguf_file
        )
        # The load is marked "gguf-quantised" (and so unsaveable) although its weights are plain
        # dequantised tensors: move them into an unmarked model of the same architecture.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
        model.load_state_dict(loaded.state_dict(), assign=True)
        model.tie_weights()
        del loaded
        model.save_pretrained(staging)
        tok.save_pretrained(staging)
        del model
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same conversion first; theirs is as good as ours.
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def model_files(source: ModelSource) -> tuple[str, dict[str, Any]]:
    """What `from_pretrained` gets for this source: a local directory, and keyword arguments."""
    location = resolve_source(source)
    if location.gguf_file:
        return str(_convert_gguf(location)), {}
    return location.path_or_id, {}


def _hub_error(source: ModelSource, err: Exception) -> WorkloadError:
    hint = " (baseModel.offline is set: the model must already be in the local cache)"
    return WorkloadError(
        f"baseModel.name: cannot load {source.name!r}: {type(err).__name__}: {err}"
        + (hint if source.offline else "")
    )


def load_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    """The source's tokenizer as it ships (no template or pad added; see `load_chat_format`)."""
    from transformers import AutoTokenizer

    path, kwargs = model_files(source)
    try:
        return AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise _hub_error(source, err) from err


def load_config(source: ModelSource) -> Any:
    """The source's config.json (architecture, sizes, model_type); no weights read."""
    from transformers import AutoConfig

    path, kwargs = model_files(source)
    try:
        return AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise _hub_error(source, err) from err


def load_chat_format(
    source: ModelSource,
    field_path: str = "spec.baseModel",
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> ChatFormat:
    """The source's tokenizer bound to its model family's rules, verified on a probe."""
    from llmft.workloads.chatformat import build_chat_format

    if tokenizer is None:
        tokenizer = load_tokenizer(source)
    model_type = getattr(load_config(source), "model_type", None)
    return build_chat_format(source, tokenizer, model_type, field_path)


def check_4bit_support(device: str | None = None) -> None:
    """Raise a WorkloadError unless bitsandbytes can quantise and dequantise 4-bit on `device`."""
    device = device or best_device()
    try:
        import bitsandbytes.functional as bnbf
        import torch

        sample = torch.randn(64, 64, device=device, dtype=compute_dtype(device))
        packed, state = bnbf.quantize_4bit(sample, quant_type="nf4")
        restored = bnbf.dequantize_4bit(packed, state)
        if not torch.isfinite(restored).all():
            raise RuntimeError("4-bit round trip produced non-finite values")
    except Exception as err:
        raise WorkloadError(
            f"method: qlora needs 4-bit bitsandbytes on {device}, which does not work here "
            f"({type(err).__name__}: {err}); use method: lora or a supported GPU"
        ) from None


def bnb_4bit_config(device: str | None = None) -> Any:
    """QLoRA's quantisation: NF4 weights, double quantisation, compute in the best dtype."""
    from transformers import BitsAndBytesConfig

    dtype = compute_dtype(device)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )


def meta_model(source: ModelSource) -> PreTrainedModel:
    """The source's architecture on the meta device: module names and shapes, no weights read."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(source)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_base_model(
    source: ModelSource,
    quantize_4bit: bool,
    *,
    dtype: torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (4-bit NF4 when asked) and its tokenizer, prepared by its chat format;
    `attn_implementation` as transformers names it (None: its default)."""
    from transformers import AutoModelForCausalLM

    device = best_device()
    dtype = dtype or compute_dtype(device)
    if tokenizer is None:
        tokenizer = load_chat_format(source).tokenizer
    path, kwargs = model_files(source)
    if quantize_4bit:
        check_4bit_support(device)
        kwargs["quantization_config"] = bnb_4bit_config(device)
    if device_map is None:
        device_map = {"": 0} if device == "cuda" else {"": "cpu"}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, device_map=device_map, **kwargs
        )
    except (OSError, ValueError) as err:
        raise _hub_error(source, err) from err
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def saved_adapter_tokenizer(adapter_path: str | Path | None) -> PreTrainedTokenizerBase | None:
    """The tokenizer the trainer saved with an adapter (its chat template and pad), if any."""
    from transformers import AutoTokenizer

    if adapter_path is None or not (Path(adapter_path) / "tokenizer_config.json").exists():
        return None
    return AutoTokenizer.from_pretrained(adapter_path)


def load_with_adapter(
    source: ModelSource,
    adapter_path: str | Path,
    quantize_4bit: bool = False,
    *,
    dtype: torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model with a trained PEFT adapter on top, and the tokenizer saved with it."""
    from peft import PeftModel

    adapter = Path(adapter_path)
    if not (adapter / "adapter_config.json").exists():
        raise WorkloadError(f"adapterPath: {adapter} holds no PEFT adapter (adapter_config.json)")
    if tokenizer is None:
        tokenizer = load_chat_format(source, tokenizer=saved_adapter_tokenizer(adapter)).tokenizer
    model, tokenizer = load_base_model(
        source, quantize_4bit, dtype=dtype, device_map=device_map, tokenizer=tokenizer
    )
    peft_model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    peft_model.eval()
    return peft_model, tokenizer
