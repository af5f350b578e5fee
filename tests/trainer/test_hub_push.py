"""Pushing the adapter to a private Hub repo, against tests/hubserver.py: a stand-in that speaks
the Hub's HTTP API to the real huggingface_hub client (create repo, preupload, NDJSON commit)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import HubServer, hub_for_pushes, push_target, stand_in_token
from llmft.api.common import HuggingFaceRepo
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubpush import push_folder
from trainer.conftest import RunTrainer, finetune_manifest

TOKEN = stand_in_token()
WRONG_TOKEN = stand_in_token()
READ_TOKEN = stand_in_token()
ADAPTER_FILES = {"adapter_model.safetensors", "adapter_config.json", "README.md"}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with hub_for_pushes(monkeypatch, TOKEN, **{READ_TOKEN: "read"}) as server:
        yield server


def target(hub: HubServer, **fields: object) -> HuggingFaceRepo:
    return push_target(hub, "acme/hr-adapter", **fields)


def small_adapter(root: Path) -> Path:
    """An adapter directory's files, without training: tensors, config and a card."""
    import numpy as np
    from safetensors.numpy import save_file

    root.mkdir(parents=True, exist_ok=True)
    save_file({"lora_A": np.ones((8, 64), np.float32)}, str(root / "adapter_model.safetensors"))
    (root / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (root / "README.md").write_text("---\nlibrary_name: peft\ntags: [llmft]\n---\n# adapter\n")
    return root


@pytest.mark.slow  # one training step on the tiny Llama: about 20 s with the model built
def test_the_trained_adapter_lands_in_a_private_repo_at_the_recorded_commit(
    hub: HubServer,
    tiny_model: Path,
    dataset_dir: Path,
    tmp_path: Path,
    run_trainer: RunTrainer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    manifest = finetune_manifest(
        tiny_model, dataset_dir, out, hyperparameters={"maxSteps": 1, "evalSteps": 1}
    )
    manifest["spec"]["output"]["huggingFace"] = target(hub).to_wire()
    caplog.set_level(logging.DEBUG)

    rc, status = run_trainer(manifest)

    assert rc == 0, status
    repo = hub.repo("acme/hr-adapter")
    assert repo.private
    remote = repo.files("main")
    assert set(remote) >= ADAPTER_FILES
    for name in ADAPTER_FILES:
        assert remote[name] == (out / "adapter" / name).read_bytes(), name
    pushed = status["outputs"]["huggingFace"]
    assert pushed["commit"] == repo.branches["main"] == repo.resolve("main").oid  # type: ignore[union-attr]
    assert pushed["url"].endswith(f"/acme/hr-adapter/commit/{pushed['commit']}")
    assert pushed["private"] is True and pushed["branch"] == "main"
    assert repo.resolve("main").summary == "llmft FineTuneJob test-ftj: step 1"  # type: ignore[union-attr]
    result = (out / "result.json").read_text()
    assert json.loads(result)["outputs"]["huggingFace"]["commit"] == pushed["commit"]
    captured = capfd.readouterr()
    for text in (result, json.dumps(status), caplog.text, captured.out, captured.err):
        assert TOKEN not in text
    assert all(r.authenticated for r in hub.requests if r.path != "/api/validate-yaml")


def test_a_wrong_token_fails_naming_the_secret_and_creates_nothing(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMFT_HF_PUSH_TOKEN", WRONG_TOKEN)
    with pytest.raises(WorkloadError) as err:
        push_folder(target(hub), small_adapter(tmp_path / "adapter"), "x")
    message = str(err.value)
    assert message.startswith("spec.output.huggingFace.tokenSecretRef: ")
    assert "Secret 'hf-push' key 'token'" in message
    assert "Invalid credentials in Authorization header" in message
    assert WRONG_TOKEN not in message and "Traceback" not in message
    assert hub.repos == {}
    assert {r.status for r in hub.requests} == {401}


def test_a_read_only_token_is_refused_with_the_namespace_it_needs(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMFT_HF_PUSH_TOKEN", READ_TOKEN)
    with pytest.raises(WorkloadError, match=r"tokenSecretRef: .*namespace 'acme'") as err:
        push_folder(target(hub), small_adapter(tmp_path / "adapter"), "x")
    assert READ_TOKEN not in str(err.value)
    assert hub.repos == {}


@pytest.mark.parametrize("xet", [True, False], ids=["pipelined-upload", "create-commit"])
def test_a_branch_push_is_repeatable_and_an_unchanged_retry_keeps_the_commit(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xet: bool
) -> None:
    """Both of huggingface_hub's upload paths (with hf_xet installed, and without); a pod that
    restarts after pushing pushes again and must record the same commit."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    folder = small_adapter(tmp_path / "adapter")
    spec = target(hub, branch="run-7", private=False)

    first = push_folder(spec, folder, "first")
    again = push_folder(spec, folder, "first, retried")
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    changed = push_folder(spec, folder, "second")

    repo = hub.repo("acme/hr-adapter")
    assert not repo.private
    assert first["commit"] == again["commit"] != changed["commit"]
    assert repo.branches["run-7"] == changed["commit"]
    assert repo.resolve(changed["commit"]).parent == first["commit"]  # type: ignore[union-attr]
    assert json.loads(repo.files("run-7")["adapter_config.json"])["r"] == 16
    assert "adapter_config.json" not in repo.files("main")  # main keeps only .gitattributes


def test_an_offline_workload_says_so_before_any_request(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WorkloadError, match="HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set"):
        push_folder(target(hub), small_adapter(tmp_path / "adapter"), "x")
    assert hub.requests == []


def test_an_unreachable_endpoint_is_one_line_naming_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = target(hub, endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(
        WorkloadError, match=rf"pushing to acme/hr-adapter on http://127.0.0.1:{port}"
    ):
        push_folder(spec, small_adapter(tmp_path / "adapter"), "x")
