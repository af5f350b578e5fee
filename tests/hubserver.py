"""An in-memory stand-in for the Hugging Face Hub's HTTP API, enough for pushing a folder.

It speaks the wire protocol that `huggingface_hub` (2.x) uses for `HfApi.create_repo`,
`create_branch`, `upload_folder` / `create_commit` and `repo_info`:

- `POST /api/repos/create` (JSON `{name, organization, visibility, type}`): 200 with the repo
  URL, 409 when it exists (the client's `exist_ok=True` swallows that).
- `POST /api/validate-yaml` (`{content, repoType}`): the README's front matter must parse as a
  YAML mapping; 400 with `errors` otherwise, a warning when there is none.
- `POST /api/{type}s/{owner}/{name}/preupload/{revision}`: every file is answered with
  `uploadMode: "regular"`, so the client inlines its bytes (base64) in the commit and never
  talks to LFS or Xet storage; `oid` is the git blob sha1 of the file already on the branch,
  which lets the client skip unchanged files as it does against the real Hub.
- `POST /api/{type}s/{owner}/{name}/commit/{revision}` (NDJSON: a `header` line, then `file`,
  `deletedFile`, `deletedFolder` lines; `lfsFile` is refused because no LFS upload was offered):
  returns `{commitOid, commitUrl}`; a stale `parentCommit` gets 412.
- `POST /api/{type}s/{owner}/{name}/branch/{branch}`: a branch from `startingPoint` or main.
- `GET /api/{type}s/{owner}/{name}[/revision/{revision}]`: repo info with `sha` and `siblings`.

Authentication is `Authorization: Bearer <token>`. An unknown token gets 401 with the Hub's
"Invalid credentials in Authorization header" message on every endpoint; a read token gets 403
on writes; writing outside the token's namespaces gets 403. Private repos are invisible (401)
without a token. Every request is recorded in `requests` (method, path, authenticated?) without
the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

_REPO = r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
ROUTE_ACTION = re.compile(_REPO + r"/(?P<action>preupload|commit|branch)/(?P<rev>.+)$")
ROUTE_INFO = re.compile(_REPO + r"(?:/revision/(?P<rev>.+))?$")


def stand_in_token() -> str:
    """A fresh token in the Hub's shape, made per run so no token-like literal is committed."""
    return "hf_" + secrets.token_hex(16)


def git_blob_sha1(data: bytes) -> str:
    """What `git hash-object` prints; the Hub's oid for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    summary: str
    description: str
    files: dict[str, bytes]  # the whole tree after this commit


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # branch -> head commit oid

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)

    def files(self, revision: str = "main") -> dict[str, bytes]:
        commit = self.resolve(revision)
        if commit is None:
            raise KeyError(f"{self.repo_id} has no revision {revision!r}")
        return dict(commit.files)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Request:
    method: str
    path: str
    authenticated: bool
    status: int = 0


class HubServer:
    """A threaded HTTP server on 127.0.0.1 holding repositories in memory.

    `tokens` maps a token to "write" or "read"; `namespaces` are the owners a write token may
    create repositories under (the user and their organisations).
    """

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        namespaces: tuple[str, ...] = ("llmft-bot", "acme"),
    ) -> None:
        self.tokens = tokens if tokens is not None else {stand_in_token(): "write"}
        self.namespaces = set(namespaces)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._seq = 0
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="hub-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    # -- request handling (called from handler threads) -------------------------------

    def _auth(self, header: str | None) -> str | None:
        """The token's role, None when there is no token; 401 for an unknown one."""
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        role = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise HubError(401, INVALID_CREDENTIALS)
        return role

    def _need_write(self, role: str | None, namespace: str) -> None:
        if role is None:
            raise HubError(401, "You must be authenticated to access this endpoint")
        if role != "write":
            raise HubError(403, "You don't have the rights to write with a read token")
        if namespace not in self.namespaces:
            raise HubError(403, f'You don\'t have the rights to write under "{namespace}"')

    def _commit(
        self, repo: Repo, parent: str | None, files: dict[str, bytes], summary: str, desc: str
    ) -> Commit:
        self._seq += 1
        h = hashlib.sha1(f"{self._seq}\0{parent}\0{summary}\0{desc}\0".encode())
        for path in sorted(files):
            h.update(f"{path}\0{git_blob_sha1(files[path])}\0".encode())
        commit = Commit(h.hexdigest(), parent, summary, desc, files)
        repo.commits[commit.oid] = commit
        return commit

    def _find(self, kind: str, repo_id: str, role: str | None) -> Repo:
        repo = self.repos.get((REPO_TYPES[kind], repo_id))
        if repo is None or (repo.private and role is None):
            raise HubError(404 if role else 401, "Repository not found", "RepoNotFound")
        return repo

    def handle(self, method: str, path: str, auth: str | None, body: bytes, ctype: str) -> Any:
        role = self._auth(auth)
        with self._lock:
            if method == "POST" and path == "/api/validate-yaml":
                return self._validate_yaml(_json(body))
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(_json(body), role)
            if method == "GET" and path == "/api/agent-harnesses":
                return {"harnesses": {}, "standardEnvVars": []}
            match = ROUTE_ACTION.match(path)
            if method == "POST" and match:
                repo = self._find(match["type"], match["repo"], role)
                self._need_write(role, repo.repo_id.split("/")[0])
                rev = unquote(match["rev"])
                if match["action"] == "branch":
                    return self._create_branch(repo, rev, _json(body))
                commit = repo.resolve(rev)
                if commit is None or rev not in repo.branches:
                    raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
                if match["action"] == "preupload":
                    return self._preupload(commit, _json(body))
                if not ctype.startswith("application/x-ndjson"):
                    raise HubError(400, f"commit body must be application/x-ndjson, not {ctype}")
                return self._create_commit(repo, rev, body)
            match = ROUTE_INFO.match(path)
            if method == "GET" and match:
                repo = self._find(match["type"], match["repo"], role)
                return self._info(repo, unquote(match["rev"] or "main"))
        raise HubError(404, f"the stand-in has no route {method} {path}")

    def _validate_yaml(self, payload: dict[str, Any]) -> dict[str, Any]:
        content = payload.get("content")
        if not isinstance(content, str):
            raise HubError(400, "content must be a string")
        lines = content.splitlines()
        if not lines or lines[0].strip() != "---":
            return {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}
        try:
            end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
            meta = yaml.safe_load("\n".join(lines[1:end]))
        except (StopIteration, yaml.YAMLError) as err:
            return _bad_yaml(f"README.md metadata is not valid YAML: {err}")
        if meta is not None and not isinstance(meta, dict):
            return _bad_yaml("README.md metadata must be a YAML mapping")
        return {"errors": [], "warnings": []}

    def _create_repo(self, payload: dict[str, Any], role: str | None) -> dict[str, Any]:
        name, owner = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not name or not owner:
            raise HubError(400, "name and organization are required")
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        self._need_write(role, owner)
        repo_id = f"{owner}/{name}"
        url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            # The client reads `url` from the 409 body when exist_ok=True.
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        visibility = payload.get("visibility", "public")
        repo = Repo(repo_type, repo_id, private=visibility == "private")
        first = self._commit(repo, None, {".gitattributes": GITATTRIBUTES}, "initial commit", "")
        repo.branches["main"] = first.oid
        self.repos[(repo_type, repo_id)] = repo
        return {"url": url, "name": repo_id, "id": f"stand-in-{self._seq}"}

    def _create_branch(self, repo: Repo, branch: str, payload: dict[str, Any]) -> dict[str, Any]:
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            raise HubError(404, "Invalid startingPoint", "RevisionNotFound")
        repo.branches[branch] = start.oid
        return {}

    def _preupload(self, head: Commit, payload: dict[str, Any]) -> dict[str, Any]:
        files = payload.get("files")
        if not isinstance(files, list):
            raise HubError(400, "files must be a list")
        answer = []
        for entry in files:
            path = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(path, str) or not isinstance(entry.get("size"), int):
                raise HubError(400, f"bad preupload entry {entry!r}")
            base64.b64decode(entry.get("sample", ""), validate=True)
            old = head.files.get(path)
            answer.append(
                {
                    "path": path,
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(old) if old is not None else None,
                }
            )
        return {"files": answer, "commitOid": head.oid}

    def _create_commit(self, repo: Repo, branch: str, body: bytes) -> dict[str, Any]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the header")
        header = lines[0]["value"]
        head = repo.resolve(branch)
        assert head is not None
        if header.get("parentCommit") not in (None, head.oid):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path or path.startswith("/"):
                raise HubError(400, f"bad path in {key} operation: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"{path}: only base64 content is supported")
                files[path] = base64.b64decode(value["content"], validate=True)
            elif key == "lfsFile":
                raise HubError(400, f"{path}: LFS object {value.get('oid')} was never uploaded")
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"{path}: no such file to delete", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = self._commit(
            repo, head.oid, files, header.get("summary", ""), header.get("description", "")
        )
        repo.branches[branch] = commit.oid
        return {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/"
            f"{commit.oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }

    def _info(self, repo: Repo, revision: str) -> dict[str, Any]:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "lastModified": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except json.JSONDecodeError as err:
        raise HubError(400, f"body is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise HubError(400, "body must be a JSON object")
    return value


def _bad_yaml(message: str) -> dict[str, Any]:
    raise _YamlError({"errors": [{"message": message}], "warnings": []})


class _YamlError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload)
        self.payload = payload


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every reply has a length
    server_hub: HubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; requests are recorded on the server object instead

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                data = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(data)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self, method: str) -> None:
        hub = self.server_hub
        path = urlsplit(self.path).path
        body = self._body()
        auth = self.headers.get("Authorization")
        record = Request(method, path, authenticated=bool(auth))
        headers: dict[str, str] = {}
        try:
            status, payload = (
                200,
                hub.handle(method, path, auth, body, self.headers.get("Content-Type", "")),
            )
        except HubError as err:
            status, payload = err.status, {"error": err.message, **err.extra}
            headers["X-Error-Message"] = err.message
            if err.code:
                headers["X-Error-Code"] = err.code
        except _YamlError as err:
            status, payload = 400, err.payload
        except Exception as err:  # a bug in the stand-in: say so rather than hang the client
            status, payload = 500, {"error": f"stand-in error: {type(err).__name__}: {err}"}
        record.status = status
        with hub._lock:
            hub.requests.append(record)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


@contextmanager
def running_hub(**kwargs: Any) -> Iterator[HubServer]:
    hub = HubServer(**kwargs).start()
    try:
        yield hub
    finally:
        hub.stop()


def allow_hub_requests(monkeypatch: Any) -> None:
    """Undo the test session's offline switches for huggingface_hub, for one test.

    conftest.py sets HF_HUB_OFFLINE, which huggingface_hub reads once at import into
    `constants`; telemetry stays off so no request goes anywhere but the stand-in.
    """
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
