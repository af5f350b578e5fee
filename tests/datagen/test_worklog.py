"""The work log: what a restarted run finds already done."""

from __future__ import annotations

from pathlib import Path

from llmft.workloads.datagen.worklog import ChunkRecord, WorkLog, fingerprint


def _record(chunk_id: str, fp: str, raw: str = "{}") -> ChunkRecord:
    return ChunkRecord(chunk_id, fp, raw, ["factual"], [chunk_id], "ollama", "smollm2", 0.5)


def test_records_survive_a_restart(tmp_path: Path) -> None:
    log = WorkLog(tmp_path, "fp1")
    log.append(_record("a", "fp1"))
    log.append(_record("b", "fp1"))
    assert sorted(WorkLog(tmp_path, "fp1").load()) == ["a", "b"]


def test_records_made_with_other_settings_are_ignored(tmp_path: Path) -> None:
    WorkLog(tmp_path, "old").append(_record("a", "old"))
    log = WorkLog(tmp_path, "new")
    log.append(_record("b", "new"))
    assert sorted(log.load()) == ["b"]


def test_a_line_torn_by_a_kill_is_skipped_and_later_records_still_read(tmp_path: Path) -> None:
    log = WorkLog(tmp_path, "fp")
    log.append(_record("a", "fp"))
    with log.path.open("a") as f:
        f.write('{"chunk_id": "b", "fingerpr')  # the process died mid-write
    log.append(_record("c", "fp"))
    assert sorted(WorkLog(tmp_path, "fp").load()) == ["a", "c"]


def test_the_last_record_of_a_chunk_wins(tmp_path: Path) -> None:
    log = WorkLog(tmp_path, "fp")
    log.append(_record("a", "fp", raw="first"))
    log.append(_record("a", "fp", raw="second"))
    assert log.load()["a"].raw == "second"


def test_fingerprints_depend_on_settings_not_their_order() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
