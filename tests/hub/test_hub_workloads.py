"""The workloads read their inputs from the Hub (the stand-in, through the real client): a
FineTuneJob trains on a Hub base model from a private Hub dataset and pushes its adapter; an
Evaluation scores that Hub adapter; without a token the private dataset is a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubserver import HubServer, allow_hub_requests, running_hub, stand_in_token
from llmft.workloads.entry import run_workload
from trainer.conftest import finetune_manifest, write_dataset

pytestmark = pytest.mark.slow  # a few steps on the tiny Llama: about 30 s in all

TOKEN = stand_in_token()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_base: Path) -> Iterator[HubServer]:
    """A stand-in Hub holding a public base model and a private dataset; HF_TOKEN may read."""
    from huggingface_hub import constants

    with running_hub(tokens={TOKEN: "write"}, namespaces=("acme",)) as server:
        allow_hub_requests(monkeypatch)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("LLMFT_HF_PUSH_TOKEN", TOKEN)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
        files = {p.name: p.read_bytes() for p in tiny_base.iterdir() if p.is_file()}
        server.add_repo("acme/tiny-llama", files)
        data = write_dataset(tmp_path / "dataset")
        rows = {p.name: p.read_bytes() for p in data.iterdir()}
        server.add_repo("acme/hr-qa", rows, repo_type="dataset", private=True)
        yield server


def _run(kind: str, manifest: dict[str, Any], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    if kind == "FineTuneJob":
        from llmft.workloads.trainer.pipeline import main
    else:
        from llmft.workloads.evaluator.pipeline import main
    spec, status = tmp_path / f"{kind}.json", tmp_path / f"{kind}-status.json"
    spec.write_text(json.dumps(manifest))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMFT_STATUS_FILE", str(status))
        rc = run_workload(kind, "test", main, ["--spec", str(spec)])
    return rc, json.loads(status.read_text()) if status.exists() else {}


def _evaluation(out: Path, arms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "llmft.io/v1alpha1",
        "kind": "Evaluation",
        "metadata": {"name": "hub-eval", "namespace": "default"},
        "spec": {
            "dataset": {"path": "hf://datasets/acme/hr-qa"},
            "arms": arms,
            "metrics": ["rouge"],
            "primaryMetric": "rouge",
            "generation": {"maxNewTokens": 8, "batchSize": 2},
            "bootstrap": {"samples": 100},
            "resources": {"gpuCount": 0},
            "output": {"path": str(out)},
        },
    }


def test_train_on_a_hub_base_and_dataset_then_score_the_hub_adapter(  # type: ignore[no-untyped-def]
    hub, tmp_path
) -> None:
    base_commit = hub.repo("acme/tiny-llama").branches["main"]
    data_commit = hub.repo("acme/hr-qa", "dataset").branches["main"]
    manifest = finetune_manifest(
        "hf://acme/tiny-llama@main",
        Path("hf://datasets/acme/hr-qa"),
        tmp_path / "ftj",
        hyperparameters={"maxSteps": 2, "saveSteps": 2, "evalSteps": 2},
        output={
            "path": str(tmp_path / "ftj"),
            "huggingFace": {
                "repo": "acme/hr-adapter",
                "endpoint": hub.url,
                "tokenSecretRef": {"name": "hf", "key": "token"},
            },
        },
    )

    manifest["spec"]["dataset"] = {"path": "hf://datasets/acme/hr-qa"}
    rc, status = _run("FineTuneJob", manifest, tmp_path)

    assert rc == 0, status.get("progress", {}).get("message")
    sources = status["outputs"]["sources"]
    assert sources["spec.baseModel.name"]["commit"] == base_commit
    assert sources["spec.dataset.path"] == {
        "uri": "hf://datasets/acme/hr-qa",
        "repo": "acme/hr-qa",
        "type": "dataset",
        "revision": "main",
        "commit": data_commit,
    }
    pushed = status["outputs"]["huggingFace"]["commit"]

    arms = [
        {"name": "base", "baseModel": {"name": "hf://acme/tiny-llama"}},
        {
            "name": "tuned",
            "baseModel": {"name": "acme/tiny-llama", "revision": "main"},
            "adapterPath": f"hf://acme/hr-adapter@{pushed}",
        },
    ]
    rc, status = _run("Evaluation", _evaluation(tmp_path / "eval", arms), tmp_path)

    assert rc == 0, status.get("progress", {}).get("message")
    assert status["outputs"]["sources"]["spec.arms[1].adapterPath"]["commit"] == pushed
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert sorted(summary["ranking"]) == ["base", "tuned"]
    # The adapter's weights were downloaded from LFS storage, as the Hub serves them.
    assert any(r.path.startswith("/lfs-objects/") for r in hub.requests)


def test_a_private_hub_dataset_without_a_token_fails_naming_field_and_repo(  # type: ignore[no-untyped-def]
    hub, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    arms = [{"name": "base", "baseModel": {"name": "hf://acme/tiny-llama"}}]

    rc, _ = _run("Evaluation", _evaluation(tmp_path / "eval", arms), tmp_path)

    assert rc == 1
    assert (
        f"error: spec.dataset.path: the dataset repository 'acme/hr-qa' on {hub.url} was not "
        "found, or it is private and no token was given (set spec.dataset.tokenSecretRef; "
        "locally, HF_TOKEN)"
    ) in capsys.readouterr().err
