"""Pushing a workload's output folder to a (private) Hugging Face repository: the one push.

The trainer pushes its adapter (a model repository), datagen its dataset (a dataset repository),
both through `push_folder`, which records where the files went in one shape: the repository,
the `branch` pushed to and the `commit` the Hub made. The token comes only from the environment
(`LLMFT_HF_PUSH_TOKEN`, which the operator fills from spec.output.huggingFace.tokenSecretRef).
A failed push becomes a WorkloadError naming the spec field to fix (the token's Secret when the
Hub refused the token), with the server's own message and never the token itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from llmft.api.common import HuggingFaceRepo, SecretKeyRef
from llmft.api.layout import ENV_HF_PUSH_TOKEN
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.hub")

FIELD = "spec.output.huggingFace"
PUBLIC_HUB = "https://huggingface.co"


def check_online() -> None:
    """huggingface_hub refuses every request when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise WorkloadError(
            f"{FIELD}: a push needs the Hub, but HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set "
            "in the workload's environment"
        )


def push_failure(
    err: BaseException,
    repo: str,
    endpoint: str | None,
    token: str,
    secret: SecretKeyRef | None = None,
) -> WorkloadError:
    """The error to raise for `err`; the token is masked wherever it might appear."""
    where = endpoint or PUBLIC_HUB
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    server = getattr(err, "server_message", None) or ""
    said = " ".join(server.split()) or f"HTTP {status}"
    ref = f"Secret {secret.name!r} key {secret.key!r}" if secret is not None else "the push token"
    if status == 401:
        text = (
            f"{FIELD}.tokenSecretRef: {where} rejected the token from {ref} ({said}); "
            "it must be a valid Hugging Face token with write access"
        )
    elif status == 403:
        text = (
            f"{FIELD}.tokenSecretRef: the token from {ref} may not write to {repo} on {where} "
            f"({said}); it needs write access to the namespace {repo.split('/')[0]!r}"
        )
    elif isinstance(err, ValueError) and "README.md" in str(err):
        text = f"{FIELD}: {where} refused the card for {repo}: {' '.join(str(err).split())}"
    else:
        detail = " ".join(str(err).split())
        text = f"{FIELD}: pushing to {repo} on {where} failed: {type(err).__name__}: {detail}"
    return WorkloadError(text.replace(token, "***") if token else text)


def push_token(environ: Mapping[str, str] | None = None) -> str:
    """The push token from the environment, or an error saying where it should come from."""
    env = os.environ if environ is None else environ
    token = env.get(ENV_HF_PUSH_TOKEN, "").strip()
    if not token:
        raise WorkloadError(
            f"{FIELD}.tokenSecretRef: no push token in ${ENV_HF_PUSH_TOKEN}; on a cluster the "
            "operator sets it from tokenSecretRef (check the Secret exists and has that key); "
            f"locally, export {ENV_HF_PUSH_TOKEN}"
        )
    return token


def push_folder(
    target: HuggingFaceRepo,
    folder: Path,
    message: str,
    *,
    repo_type: Literal["model", "dataset"] = "model",
    allow_patterns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Upload `folder` to `target`'s branch (creating the repository and branch if needed).

    Returns {repo, branch, commit, url, private}: `branch` is where the files went, `commit` the
    sha the Hub made, which pins exactly this upload.
    """
    from huggingface_hub import HfApi

    token = push_token()
    check_online()
    api = HfApi(endpoint=target.endpoint, token=token)
    try:
        api.create_repo(target.repo, repo_type=repo_type, private=target.private, exist_ok=True)
        if target.branch != "main":
            api.create_branch(target.repo, repo_type=repo_type, branch=target.branch, exist_ok=True)
        commit = api.upload_folder(
            repo_id=target.repo,
            repo_type=repo_type,
            folder_path=str(folder),
            revision=target.branch,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
            commit_message=message,
        )
    except Exception as err:  # HTTP errors, an unreachable endpoint, a refused card
        raise push_failure(
            err, target.repo, target.endpoint, token, target.token_secret_ref
        ) from None
    log.info("pushed %s to %s@%s (%s)", folder, target.repo, target.branch, commit.oid)
    return {
        "repo": target.repo,
        "branch": target.branch,
        "commit": commit.oid,
        "url": commit.commit_url,
        "private": target.private,
    }
