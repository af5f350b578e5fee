"""Pushing to the Hugging Face Hub: what is uploaded, where, and how the token is found."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmft.api.common import HuggingFaceRepo, SecretKeyRef
from llmft.workloads.datagen import hub
from llmft.workloads.entry import WorkloadError


def _target(**kwargs: object) -> HuggingFaceRepo:
    ref = SecretKeyRef(name="hf", key="token")
    return HuggingFaceRepo(repo="acme/hr-qa", token_secret_ref=ref, **kwargs)


def test_the_push_creates_a_private_dataset_repo_and_uploads_only_the_dataset(
    tmp_path: Path,
) -> None:
    plan = hub.plan_push(_target(), tmp_path, "hr", "12 pairs from 5 chunks")
    assert plan.create_repo_kwargs() == {
        "repo_id": "acme/hr-qa", "repo_type": "dataset", "private": True, "exist_ok": True,
    }  # fmt: skip
    upload = plan.upload_kwargs()
    assert upload["revision"] == "main" and upload["repo_type"] == "dataset"
    assert "train.jsonl" in upload["allow_patterns"] and "manifest.json" in upload["allow_patterns"]
    assert not any(p.startswith("work") for p in upload["allow_patterns"])  # raw replies stay
    assert plan.create_branch_kwargs() is None
    assert upload["commit_message"] == "llmft DatasetGeneration hr: 12 pairs from 5 chunks"


def test_a_branch_other_than_main_is_created_first(tmp_path: Path) -> None:
    plan = hub.plan_push(_target(branch="v2", private=False), tmp_path, "hr", "x")
    assert plan.create_branch_kwargs() == {
        "repo_id": "acme/hr-qa", "repo_type": "dataset", "branch": "v2", "exist_ok": True,
    }  # fmt: skip
    assert plan.create_repo_kwargs()["private"] is False


def test_the_token_comes_from_the_push_token_variable_only() -> None:
    assert hub.hub_token({"LLMFT_HF_PUSH_TOKEN": " hf_abc \n"}) == "hf_abc"
    with pytest.raises(WorkloadError) as err:
        hub.hub_token({"HF_TOKEN": "hf_pull_only"})
    assert "hf_pull_only" not in str(err.value)
