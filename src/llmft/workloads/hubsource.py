"""Models, adapters and datasets named as Hugging Face Hub repositories: downloaded once into the
Hub cache, resolved to the commit they were read at, and recorded for the resource's status.

A spec names a Hub repository either as an `hf://` URI (`hf://owner/name@revision`,
`hf://datasets/owner/name@revision/subfolder`, the grammar `huggingface_hub.parse_hf_uri` reads)
or, for a base model, as a bare `owner/name` with `revision`. Files are fetched with
`huggingface_hub.snapshot_download` into the Hub cache (`HF_HOME`, which the operator puts on the
artefact volume, so a restarted pod or the next job finds them there), with the token from
`HF_TOKEN` (the operator fills it from the spec's tokenSecretRef) and the endpoint from
`HF_ENDPOINT`. Offline (`HF_HUB_OFFLINE=1`) only the cache is read. Every failure is a
WorkloadError naming the spec field and the repository; the token never appears in one.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmft.api.common import HF_SCHEME
from llmft.api.layout import ENV_HF_TOKEN
from llmft.workloads.entry import WorkloadError

log = logging.getLogger("llmft.hub")

# What loading a model or an adapter reads (transformers, peft, tokenizers); a repository's
# other files (original checkpoints, ONNX or GGUF variants, images) are never downloaded.
MODEL_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")
LEGACY_WEIGHTS = ("*.bin",)  # only where a repository has no safetensors at all
PUBLIC_HUB = "https://huggingface.co"


@dataclass(frozen=True)
class HubRef:
    """A repository (and folder in it) on the Hub, at a revision."""

    repo_type: str  # model or dataset
    repo_id: str
    revision: str | None = None
    subfolder: str = ""

    @property
    def uri(self) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        rev = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        return f"{HF_SCHEME}{prefix}{self.repo_id}{rev}{sub}"


@dataclass(frozen=True)
class Fetched:
    """Where the files landed and the commit they were read at."""

    ref: HubRef
    path: Path
    commit: str

    def record(self) -> dict[str, Any]:
        return {
            "uri": self.ref.uri,
            "repo": self.ref.repo_id,
            "type": self.ref.repo_type,
            "revision": self.ref.revision or "main",
            "commit": self.commit,
        }


_lock = threading.Lock()
_fetched: dict[tuple[HubRef, tuple[str, ...] | None, str | None], Fetched] = {}
_records: dict[str, dict[str, Any]] = {}


def parse_hub_uri(value: str, field: str, expect: str | None = None) -> HubRef:
    """The repository an `hf://` URI names; a malformed URI or a wrong kind names the field."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(value)
    except HfUriError as err:
        raise WorkloadError(f"{field}: {value!r} is not a Hub URI: {err}") from None
    if uri.type not in ("model", "dataset"):
        raise WorkloadError(f"{field}: {value!r} names a {uri.type}; models and datasets only")
    if expect is not None and uri.type != expect:
        hint = f"hf://{expect}s/{uri.id}" if expect != "model" else f"hf://{uri.id}"
        raise WorkloadError(f"{field}: {value!r} names a {uri.type}, expected a {expect} ({hint})")
    return HubRef(uri.type, uri.id, uri.revision, uri.path_in_repo.strip("/"))


def is_hub_uri(value: str | None) -> bool:
    return bool(value) and str(value).startswith(HF_SCHEME)


def start_recording() -> None:
    """Forget what earlier runs in this process recorded (a workload's run starts here)."""
    with _lock:
        _records.clear()


def fetched_sources() -> dict[str, dict[str, Any]]:
    """Field -> what was read from the Hub for it (repo, revision, commit), for status.outputs."""
    with _lock:
        return {k: dict(v) for k, v in _records.items()}


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _token() -> str | None:
    from huggingface_hub import get_token

    return os.environ.get(ENV_HF_TOKEN) or get_token()


def _patterns(ref: HubRef, patterns: tuple[str, ...] | None) -> list[str] | None:
    if patterns is None:
        return [f"{ref.subfolder}/*"] if ref.subfolder else None
    prefix = f"{ref.subfolder}/" if ref.subfolder else ""
    return [prefix + p for p in patterns]


def _failure(err: Exception, ref: HubRef, field: str, token_field: str, token: str | None) -> str:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _endpoint() or PUBLIC_HUB
    what = f"{ref.repo_type} repository {ref.repo_id!r} on {where}"
    server = " ".join((getattr(err, "server_message", None) or "").split())
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, RevisionNotFoundError):
        return f"{field}: revision {ref.revision!r} not found in the {what}"
    if isinstance(err, GatedRepoError):
        return f"{field}: the {what} is gated: accept its terms with the account of {token_field}"
    if isinstance(err, RepositoryNotFoundError):
        if token is None:
            return (
                f"{field}: the {what} was not found, or it is private and no token was given "
                f"(set {token_field}; locally, HF_TOKEN)"
            )
        return (
            f"{field}: the {what} was not found, or the token of {token_field} may not read it"
            + (f" ({server})" if server else "")
        )
    if isinstance(err, HfHubHTTPError) and status == 401:
        return f"{field}: {where} rejected the token of {token_field} ({server or 'HTTP 401'})"
    if isinstance(err, LocalEntryNotFoundError):
        from huggingface_hub import constants

        if constants.is_offline_mode():
            return (
                f"{field}: {ref.uri} is not in the Hub cache ({constants.HF_HUB_CACHE}) and the "
                "Hub is off (HF_HUB_OFFLINE is set): fetch it once online or turn offline mode off"
            )
        return f"{field}: cannot reach {where} for {ref.uri} and it is not in the Hub cache: {err}"
    detail = " ".join(str(err).split())[:300]
    return f"{field}: reading {ref.uri} from {where} failed: {type(err).__name__}: {detail}"


def fetch(
    ref: HubRef,
    field: str,
    token_field: str,
    patterns: tuple[str, ...] | None = None,
    offline: bool = False,
    record: bool = True,
) -> Fetched:
    """Download (or find in the cache) the files of `ref`; `patterns` limits which (model files).

    With `record`, what was read is kept under `field` for `fetched_sources()` (status).
    """
    from huggingface_hub import HfApi, snapshot_download

    key = (ref, patterns, _endpoint())
    with _lock:
        done = _fetched.get(key)
        if done is not None and record:
            _records[field] = done.record()
    if done is not None:
        return done
    token = _token()
    try:
        allow = _patterns(ref, patterns)
        if patterns is not None and not offline:
            # Old repositories have PyTorch .bin weights only: take those when no safetensors.
            from huggingface_hub import constants

            if not constants.is_offline_mode():
                files = HfApi(endpoint=_endpoint(), token=token).list_repo_files(
                    ref.repo_id, repo_type=ref.repo_type, revision=ref.revision
                )
                if not any(f.endswith(".safetensors") for f in files):
                    allow = _patterns(ref, patterns + LEGACY_WEIGHTS)
        folder = snapshot_download(
            ref.repo_id,
            repo_type=ref.repo_type,
            revision=ref.revision,
            allow_patterns=allow,
            token=token,
            endpoint=_endpoint(),
            local_files_only=offline,
        )
    except Exception as err:
        message = _failure(err, ref, field, token_field, token)
        raise WorkloadError(message.replace(token, "***") if token else message) from None
    root = Path(folder)
    path = root / ref.subfolder if ref.subfolder else root
    if not path.is_dir():
        raise WorkloadError(f"{field}: {ref.uri} has no folder {ref.subfolder!r}")
    result = Fetched(ref, path, root.name)
    log.info("%s: %s at commit %s in %s", field, ref.uri, result.commit, path)
    with _lock:
        _fetched[key] = result
        if record:
            _records[field] = result.record()
    return result


def local_dataset(path: str) -> Path:
    """The dataset directory of spec.dataset.path, downloading an hf://datasets/ repository."""
    if is_hub_uri(path):
        ref = parse_hub_uri(path, "spec.dataset.path", expect="dataset")
        return fetch(ref, "spec.dataset.path", "spec.dataset.tokenSecretRef").path
    return Path(path)
