"""Pushing to the Hugging Face Hub: what is uploaded, where, and how the token is found."""

from __future__ import annotations

import pytest

from llmft.api.common import HuggingFaceRepo, SecretKeyRef
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubpush import push_token


def _target(**kwargs: object) -> HuggingFaceRepo:
    ref = SecretKeyRef(name="hf", key="token")
    return HuggingFaceRepo(repo="acme/hr-qa", token_secret_ref=ref, **kwargs)


def test_the_token_comes_from_the_push_token_variable_only() -> None:
    assert push_token({"LLMFT_HF_PUSH_TOKEN": " hf_abc \n"}) == "hf_abc"
    with pytest.raises(WorkloadError, match=r"spec\.output\.huggingFace\.tokenSecretRef") as err:
        push_token({"HF_TOKEN": "hf_pull_only"})
    assert "hf_pull_only" not in str(err.value)
