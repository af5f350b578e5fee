"""Pushing the dataset to a private Hub dataset repo, against tests/hubserver.py: a stand-in that
speaks the Hub's HTTP API to the real huggingface_hub client (create repo, preupload, commit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from datagen.conftest import make_mixed_docs
from datagen.test_entrypoint import write_spec
from hubserver import HubServer, hub_for_pushes, push_target, stand_in_token
from llmft.api.common import HuggingFaceRepo
from llmft.workloads.datagen import hub
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubpush import push_folder

TOKEN = stand_in_token()
WRONG_TOKEN = stand_in_token()


@pytest.fixture
def hub_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with hub_for_pushes(monkeypatch, TOKEN) as server:
        yield server


def target(server: HubServer, **fields: object) -> HuggingFaceRepo:
    return push_target(server, "acme/hr-qa", **fields)


def dataset_dir(root: Path) -> Path:
    """The files a DatasetGeneration leaves, with the real card, plus its work log."""
    pair = {"question": "How many leave days?", "answer": "27 days.", "chunk_id": "a0"}
    rows = {
        "train.jsonl": [pair],
        "eval.jsonl": [{**pair, "chunk_id": "b0"}],
        "eval_closed_book.jsonl": [{**pair, "question": "How much leave is there?"}],
        "corpus_train.jsonl": [{"text": "Staff get 27 days of leave.", "chunk_id": "a0"}],
        "corpus_eval.jsonl": [{"text": "Salaries are paid monthly.", "chunk_id": "b0"}],
        "chunks.jsonl": [{"id": "a0", "split": "train"}, {"id": "b0", "split": "eval"}],
    }
    (root / "work").mkdir(parents=True)
    for name, items in rows.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in items))
    manifest = {
        "counts": {
            "documents": 1,
            "chunks": 2,
            "trainPairs": 1,
            "evalPairs": 1,
            "closedBookPairs": 1,
        },
        "generator": {"model": "smollm2", "backend": "ollama"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / hub.CARD).write_text(hub.dataset_card("hr", manifest))
    (root / "work" / "generated.jsonl").write_text('{"raw": "model replies stay local"}\n')
    return root


def push_dataset(repo: HuggingFaceRepo, folder: Path, message: str) -> dict[str, object]:
    return push_folder(repo, folder, message, repo_type="dataset", allow_patterns=hub.PUSHED_FILES)


def test_the_dataset_files_land_in_a_private_dataset_repo_at_the_returned_commit(
    hub_server: HubServer, tmp_path: Path
) -> None:
    folder = dataset_dir(tmp_path / "out")
    pushed = push_dataset(
        target(hub_server), folder, "llmft DatasetGeneration hr: 2 pairs from 2 chunks"
    )

    repo = hub_server.repo("acme/hr-qa", "dataset")
    assert repo.private
    assert (pushed["repo"], pushed["branch"], pushed["commit"]) == (
        "acme/hr-qa",
        "main",
        repo.branches["main"],
    )
    remote = repo.files("main")
    assert set(remote) == set(hub.PUSHED_FILES) | {".gitattributes"}  # not work/
    for name in hub.PUSHED_FILES:
        assert remote[name] == (folder / name).read_bytes(), name
    front = remote[hub.CARD].decode().split("---")[1]
    assert [c["config_name"] for c in yaml.safe_load(front)["configs"]] == [
        "instruct",
        "corpus",
        "chunks",
    ]
    assert repo.resolve("main").summary == "llmft DatasetGeneration hr: 2 pairs from 2 chunks"  # type: ignore[union-attr]
    assert ("POST", "/api/datasets/acme/hr-qa/commit/main") in {
        (r.method, r.path) for r in hub_server.requests
    }


def test_a_wrong_token_names_the_secret_and_never_shows_the_token(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMFT_HF_PUSH_TOKEN", WRONG_TOKEN)
    with pytest.raises(WorkloadError) as err:
        push_dataset(target(hub_server), dataset_dir(tmp_path / "out"), "x")
    message = str(err.value)
    assert message.startswith("spec.output.huggingFace.tokenSecretRef: ")
    assert "Secret 'hf-push' key 'token'" in message and "Invalid credentials" in message
    assert WRONG_TOKEN not in message
    assert hub_server.repos == {}


def test_a_card_the_hub_refuses_is_a_clear_error(hub_server: HubServer, tmp_path: Path) -> None:
    folder = dataset_dir(tmp_path / "out")
    (folder / hub.CARD).write_text("---\nconfigs: [unclosed\n---\n# hr\n")
    with pytest.raises(WorkloadError, match=r"spec.output.huggingFace: .* refused the card"):
        push_dataset(target(hub_server), folder, "x")
    assert "README.md" not in hub_server.repo("acme/hr-qa", "dataset").files("main")


def test_a_second_branch_gets_its_own_commit_and_main_is_untouched(
    hub_server: HubServer, tmp_path: Path
) -> None:
    folder = dataset_dir(tmp_path / "out")
    main = push_dataset(target(hub_server), folder, "x")
    (folder / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    v2 = push_dataset(target(hub_server, branch="v2"), folder, "y")

    repo = hub_server.repo("acme/hr-qa", "dataset")
    assert v2["branch"] == "v2" and v2["commit"] == repo.branches["v2"] != main["commit"]
    assert repo.branches["main"] == main["commit"]
    assert repo.files("v2")["train.jsonl"] == b'{"question": "q", "answer": "a"}\n'


@pytest.mark.ollama
def test_the_datagen_workload_pushes_and_records_the_commit(
    hub_server: HubServer, ollama_server, datagen_model: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The entrypoint end to end with the real SmolLM2 on Ollama: one short document."""
    docs = make_mixed_docs(tmp_path / "all-docs")
    for path in docs.iterdir():
        if path.name != "leave.md":
            path.unlink()
    out = tmp_path / "out"
    spec = {
        "source": {"path": str(docs)},
        "chunking": {"maxTokens": 96, "overlapTokens": 0, "minTokens": 16},
        "generator": {
            "ollamaHost": ollama_server.url,
            "model": datagen_model,
            "questionsPerChunk": 2,
            "numPredict": 160,
            "temperature": 0.0,
            "seed": 7,
            "timeoutSeconds": 120,
        },
        "split": {"evalFraction": 0.5, "seed": 3, "groupChunks": 1},
        "output": {"path": str(out), "huggingFace": target(hub_server).to_wire()},
    }
    status_file = tmp_path / "status.json"
    env = {**os.environ, "LLMFT_STATUS_FILE": str(status_file), "LLMFT_HF_PUSH_TOKEN": TOKEN}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    spec_file = write_spec(tmp_path / "spec.yaml", spec)
    proc = subprocess.run(
        [sys.executable, "-m", "llmft.workloads.datagen", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    repo = hub_server.repo("acme/hr-qa", "dataset")
    status = json.loads(status_file.read_text())
    assert status["outputs"]["huggingFace"]["repo"] == "acme/hr-qa"
    assert status["outputs"]["huggingFace"]["branch"] == "main"
    assert status["outputs"]["huggingFace"]["commit"] == repo.branches["main"]
    result = (out / "result.json").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["hub"]["commit"] == repo.branches["main"]
    remote = repo.files("main")
    assert remote["train.jsonl"] == (out / "train.jsonl").read_bytes()
    # The manifest is rewritten with the commit after the push: the pushed copy predates it.
    assert "hub" not in json.loads(remote["manifest.json"])
    for text in (result, status_file.read_text(), proc.stdout, proc.stderr):
        assert TOKEN not in text
