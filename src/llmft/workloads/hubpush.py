"""What the trainer's and datagen's Hub pushes share: the offline check and the error message.

A failed push becomes a WorkloadError naming the spec field to fix (the token's Secret when the
Hub refused the token), with the server's own message and never the token itself.
"""

from __future__ import annotations

from llmft.api.common import SecretKeyRef
from llmft.workloads.entry import WorkloadError

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
