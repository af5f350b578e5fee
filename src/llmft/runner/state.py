"""The local runner's state directory: each resource's status, resolved spec, log and artefacts.

Layout under the state directory (default `.llmft`):
- `status/<Kind>/<name>.json`: the status the operator would write (phase, conditions, times,
  progress, metrics, outputs) plus `specHash`, `runId` and the `inputs` it was built from;
  the workload merges its progress and results into the same file through LLMFT_STATUS_FILE;
- `specs/<Kind>/<name>.json`: the resolved spec the workload was given;
- `logs/<Kind>/<name>.log`: the workload's output, appended per attempt;
- `artifacts/<output path>`: what the workloads write (datasets/, finetune/, evaluations/).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmft.api.status import merge_patch
from llmft.jsonfiles import write_json

DEFAULT_STATE_DIR = ".llmft"


class StateLocked(RuntimeError):
    """Another `llmft run` is using the same state directory."""


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, with symlinks and '..' resolved, lies inside `root` (or is root itself)."""
    return path.resolve().is_relative_to(root.resolve())


class StateDir:
    """Paths and atomic reads/writes of one state directory."""

    def __init__(self, root: Path | str = DEFAULT_STATE_DIR) -> None:
        self.root = Path(root).absolute()

    @property
    def artifacts_root(self) -> Path:
        return self.root / "artifacts"

    def _file(self, area: str, key: str, suffix: str) -> Path:
        kind, _, name = key.partition("/")
        return self.root / area / kind / f"{name}{suffix}"

    def status_file(self, key: str) -> Path:
        return self._file("status", key, ".json")

    def spec_file(self, key: str) -> Path:
        return self._file("specs", key, ".json")

    def log_file(self, key: str) -> Path:
        return self._file("logs", key, ".log")

    def read_status(self, key: str) -> dict[str, Any] | None:
        return _read_json(self.status_file(key))

    def write_status(self, key: str, status: dict[str, Any]) -> None:
        _write_json(self.status_file(key), status)

    def update_status(self, key: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status, as the API server does, keeping what the workload wrote."""
        status = merge_patch(self.read_status(key) or {}, patch)
        self.write_status(key, status)
        return status

    def read_spec(self, key: str) -> dict[str, Any] | None:
        return _read_json(self.spec_file(key))

    def write_spec(self, key: str, manifest: dict[str, Any]) -> Path:
        path = self.spec_file(key)
        _write_json(path, manifest)
        return path

    def keys(self, kind: str | None = None) -> list[str]:
        """Every resource with a status file, as `Kind/name`, sorted."""
        base = self.root / "status"
        if not base.is_dir():
            return []
        kinds = [base / kind] if kind else sorted(p for p in base.iterdir() if p.is_dir())
        return [f"{k.name}/{f.stem}" for k in kinds if k.is_dir() for f in sorted(k.glob("*.json"))]

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory for one run; a second concurrent run fails at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateLocked(
                    f"{self.root} is in use by another `llmft run`; wait for it or use "
                    "another --state-dir"
                ) from None
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError:
        return None  # a torn or hand-edited file counts as no status: the resource reruns
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json(path, data, sort_keys=True)
