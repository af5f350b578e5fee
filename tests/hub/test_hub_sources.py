"""Hub sources against the Hub stand-in, through the real huggingface_hub client: downloads
(regular and LFS files), revisions, the resolved commit, and errors that name field and repo."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubserver import HubServer, allow_hub_requests, running_hub, stand_in_token
from llmft.workloads import hubsource
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubsource import HubRef

WEIGHTS = bytes(range(256)) * 64  # binary: an LFS file under the Hub's .gitattributes
CONFIG = b'{"model_type": "llama"}\n'


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """A stand-in Hub as HF_ENDPOINT, a fresh Hub cache, online for this test only."""
    from huggingface_hub import constants

    token = stand_in_token()
    with running_hub(tokens={token: "read"}) as server:
        allow_hub_requests(monkeypatch)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
        server.read_token = token  # type: ignore[attr-defined]
        yield server


def test_a_model_repo_is_downloaded_at_its_commit_lfs_files_included(hub) -> None:  # type: ignore[no-untyped-def]
    commit = hub.add_repo("acme/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    hubsource.start_recording()

    fetched = hubsource.fetch(
        HubRef("model", "acme/tiny", "main"),
        "spec.baseModel.name",
        "spec.baseModel.tokenSecretRef",
        hubsource.MODEL_PATTERNS,
    )

    assert fetched.commit == commit
    assert (fetched.path / "model.safetensors").read_bytes() == WEIGHTS
    assert (fetched.path / "config.json").read_bytes() == CONFIG
    oid = hashlib.sha256(WEIGHTS).hexdigest()
    paths = [r.path for r in hub.requests]
    assert f"/lfs-objects/{oid}" in paths  # the weights came through LFS storage
    assert hubsource.fetched_sources() == {
        "spec.baseModel.name": {
            "uri": "hf://acme/tiny@main",
            "repo": "acme/tiny",
            "type": "model",
            "revision": "main",
            "commit": commit,
        }
    }


def test_an_older_revision_and_a_dataset_subfolder(hub) -> None:  # type: ignore[no-untyped-def]
    first = hub.add_repo("acme/qa", {"v1/train.jsonl": b"{}\n"}, repo_type="dataset")
    ref = hubsource.parse_hub_uri(f"hf://datasets/acme/qa@{first}/v1", "spec.dataset.path")

    fetched = hubsource.fetch(ref, "spec.dataset.path", "spec.dataset.tokenSecretRef")

    assert ref == HubRef("dataset", "acme/qa", first, "v1")
    assert fetched.path.name == "v1" and (fetched.path / "train.jsonl").read_bytes() == b"{}\n"


def test_a_private_repo_without_a_token_names_the_field_and_repo(hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hub.add_repo("acme/secret-adapter", {"adapter_config.json": b"{}"}, private=True)
    ref = HubRef("model", "acme/secret-adapter")

    with pytest.raises(WorkloadError) as err:
        hubsource.fetch(ref, "spec.arms[1].adapterPath", "spec.arms[1].adapterTokenSecretRef")
    assert str(err.value) == (
        f"spec.arms[1].adapterPath: the model repository 'acme/secret-adapter' on {hub.url} was "
        "not found, or it is private and no token was given (set "
        "spec.arms[1].adapterTokenSecretRef; locally, HF_TOKEN)"
    )

    monkeypatch.setenv("HF_TOKEN", hub.read_token)
    fetched = hubsource.fetch(ref, "spec.arms[1].adapterPath", "x")
    assert (fetched.path / "adapter_config.json").read_bytes() == b"{}"


def test_missing_repo_revision_and_offline_cache_are_clear(hub, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from huggingface_hub import constants

    hub.add_repo("acme/tiny", {"config.json": CONFIG})
    with pytest.raises(WorkloadError, match=r"^spec\.baseModel\.name: revision 'v9' not found"):
        hubsource.fetch(HubRef("model", "acme/tiny", "v9"), "spec.baseModel.name", "t")
    with pytest.raises(WorkloadError, match=r"'acme/nothing' on .* was not found"):
        hubsource.fetch(HubRef("model", "acme/nothing"), "spec.baseModel.name", "t")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WorkloadError, match=r"not in the Hub cache .* \(HF_HUB_OFFLINE is set\)"):
        hubsource.fetch(HubRef("model", "acme/tiny", "main"), "spec.baseModel.name", "t")


def test_a_uri_of_the_wrong_kind_names_the_field() -> None:
    with pytest.raises(WorkloadError, match=r"spec\.dataset\.path: .* expected a dataset"):
        hubsource.parse_hub_uri("hf://acme/qa", "spec.dataset.path", expect="dataset")
