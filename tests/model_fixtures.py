"""The seed models' real tokenizer files (tests/fixtures/models), unpacked into loadable folders.

Each fixture is shaped like the model's Hub repository (tokenizer files, config.json of the full
architecture, no weights). Large files are committed xz-compressed; `model_dir` unpacks a copy
once per machine into the temp dir, so `AutoTokenizer.from_pretrained(model_dir(name))` runs
transformers' real loading code on the real files.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "models"

# Fixture folder -> the Hub id it stands for.
SEED_MODELS = {
    "meta-llama-3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "mistral-7b-instruct-v0.2": "mistralai/Mistral-7B-Instruct-v0.2",
    "mistral-7b-instruct-v0.3": "mistralai/Mistral-7B-Instruct-v0.3",
    "gemma-2b-it": "google/gemma-2b-it",
    "phi-2": "microsoft/phi-2",
}


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode())
        h.update(str(path.stat().st_size).encode())
        h.update(str(path.stat().st_mtime_ns).encode())
    return h.hexdigest()[:12]


def model_dir(name: str) -> Path:
    """A folder with the fixture's files, compressed ones unpacked; made once, then reused."""
    source = FIXTURES / name
    if name not in SEED_MODELS or not source.is_dir():
        raise KeyError(f"no tokenizer fixture {name!r}; have {', '.join(SEED_MODELS)}")
    target = Path(tempfile.gettempdir()) / "llmft-fixture-models" / f"{name}-{_digest(source)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    for path in source.iterdir():
        if path.suffix == ".xz":
            (staging / path.stem).write_bytes(lzma.decompress(path.read_bytes()))
        else:
            shutil.copy(path, staging / path.name)
    try:
        os.rename(staging, target)
    except OSError:  # another test process unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
    return target
