"""Pushing the trained adapter to a (private) Hugging Face repository at a recorded revision."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from llmft.api.common import HuggingFaceRepo
from llmft.api.layout import ENV_HF_PUSH_TOKEN
from llmft.workloads.entry import WorkloadError
from llmft.workloads.hubpush import check_online, push_failure

log = logging.getLogger("llmft.trainer.hub")
FIELD = "spec.output.huggingFace"


def push_folder(target: HuggingFaceRepo, folder: Path, message: str) -> dict[str, Any]:
    """Upload `folder` to the repo's branch; returns where it went and the commit sha.

    The token comes only from the environment (the operator maps the spec's tokenSecretRef to
    it), and is never logged or put into an error message.
    """
    from huggingface_hub import HfApi

    token = os.environ.get(ENV_HF_PUSH_TOKEN, "").strip()
    if not token:
        raise WorkloadError(
            f"{FIELD}.tokenSecretRef: the push token is not set (environment variable "
            f"{ENV_HF_PUSH_TOKEN} is empty; the operator fills it from the referenced Secret key)"
        )
    check_online()
    api = HfApi(endpoint=target.endpoint, token=token)
    try:
        api.create_repo(target.repo, private=target.private, exist_ok=True, repo_type="model")
        if target.branch != "main":
            api.create_branch(target.repo, branch=target.branch, exist_ok=True)
        commit = api.upload_folder(
            repo_id=target.repo,
            folder_path=str(folder),
            revision=target.branch,
            commit_message=message,
            repo_type="model",
        )
    except Exception as err:
        raise push_failure(
            err, target.repo, target.endpoint, token, target.token_secret_ref
        ) from None
    revision = commit.oid  # type: ignore[union-attr]
    log.info("pushed %s to %s@%s (%s)", folder, target.repo, target.branch, revision)
    return {
        "repo": target.repo,
        "branch": target.branch,
        "revision": revision,
        "url": commit.commit_url,  # type: ignore[union-attr]
        "private": target.private,
    }
