"""The record of chunks already generated, so a restarted run only asks for the rest.

`work/generated.jsonl` in the output directory gets one line per chunk as soon as its reply
arrives, flushed to disk. Each line carries the generation fingerprint (prompts, model and
sampling settings); lines from a run with other settings are ignored, so changing the prompt
regenerates everything while changing only the quality filters regenerates nothing. A line
cut short by a kill is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("llmft.datagen.worklog")

WORK_DIR = "work"
GENERATED = "generated.jsonl"


@dataclass
class ChunkRecord:
    """What one chunk's generation produced: the model's raw reply and how it was asked."""

    chunk_id: str
    fingerprint: str
    raw: str
    kinds: list[str]
    context_chunk_ids: list[str]
    backend: str
    model: str
    seconds: float
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of the settings that change what a chunk's reply would be."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class WorkLog:
    """Append-only JSONL of ChunkRecords, safe to append from several threads."""

    def __init__(self, output_dir: Path, current_fingerprint: str) -> None:
        self.path = output_dir / WORK_DIR / GENERATED
        self.fingerprint = current_fingerprint
        self._lock = threading.Lock()

    def load(self) -> dict[str, ChunkRecord]:
        """Records made with the current fingerprint, by chunk id (the last one wins)."""
        done: dict[str, ChunkRecord] = {}
        if not self.path.exists():
            return done
        stale = broken = 0
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    record = ChunkRecord(**json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    broken += 1
                    continue
                if record.fingerprint != self.fingerprint:
                    stale += 1
                    continue
                done[record.chunk_id] = record
        if stale or broken:
            log.info(
                "%s: ignoring %d line(s) from other settings, %d unreadable",
                self.path,
                stale,
                broken,
            )
        return done

    def append(self, record: ChunkRecord) -> None:
        line = json.dumps(asdict(record), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                if f.tell() > 0 and not self._ends_with_newline():
                    f.write("\n")  # a previous kill left half a line; keep records apart
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
