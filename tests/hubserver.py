"""An in-memory stand-in for the Hugging Face Hub's HTTP API: pushing a folder, downloading one.

It speaks the wire protocol that `huggingface_hub` (2.x) uses for `HfApi.create_repo`,
`create_branch`, `upload_folder` / `create_commit`, `repo_info`, `list_repo_tree`,
`hf_hub_download` and `snapshot_download`:

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

Downloads, as `hf_hub_download` / `snapshot_download` read them from the real Hub:
- `GET /api/{type}s/{owner}/{name}/tree/{revision}[/{path}]?recursive=`: the file listing, with
  each file's git blob `oid` and size, and for LFS files an `lfs` block (sha256, size, pointer
  size).
- `HEAD|GET /[{type}s/]{owner}/{name}/resolve/{revision}/{path}`: a regular file answers 200 with
  its bytes, `ETag` (git blob sha1) and `X-Repo-Commit`; an LFS file (one the commit's
  `.gitattributes` marks `filter=lfs`, as git decides) answers 302 to the LFS object store
  (`http://localhost:{port}/lfs-objects/{sha256}`: another host name, as the Hub's CDN is, and
  no token, like its signed links) with
  `X-Linked-Etag` (its sha256), `X-Linked-Size`, `X-Repo-Commit` and the pointer file's `ETag`.
  A missing file is 404 `EntryNotFound`, a missing revision 404 `RevisionNotFound`.

Authentication is `Authorization: Bearer <token>`. An unknown token gets 401 with the Hub's
"Invalid credentials in Authorization header" message on every endpoint; a read token gets 403
on writes; writing outside the token's namespaces gets 403. Private repos are invisible (401)
without a token. Every request is recorded in `requests` (method, path, authenticated?) without
the token itself.
"""

from __future__ import annotations

import base64
import fnmatch
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

from llmft.api.common import HuggingFaceRepo

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# As the Hub's default .gitattributes: binary weights and data go to LFS storage.
GITATTRIBUTES = b"".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n".encode()
    for pattern in ("*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth", "*.parquet", "*.arrow")
)
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

_REPO = r"/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
ROUTE_ACTION = re.compile(_REPO + r"/(?P<action>preupload|commit|branch)/(?P<rev>.+)$")
ROUTE_INFO = re.compile(_REPO + r"(?:/revision/(?P<rev>.+))?$")
ROUTE_TREE = re.compile(_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
ROUTE_RESOLVE = re.compile(
    r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)
ROUTE_LFS_OBJECT = re.compile(r"^/lfs-objects/(?P<oid>[0-9a-f]{64})$")


def stand_in_token() -> str:
    """A fresh token in the Hub's shape, made per run so no token-like literal is committed."""
    return "hf_" + secrets.token_hex(16)


def git_blob_sha1(data: bytes) -> str:
    """What `git hash-object` prints; the Hub's oid for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    oid = hashlib.sha256(data).hexdigest()
    spec = "version https://git-lfs.github.com/spec/v1\n"
    return f"{spec}oid sha256:{oid}\nsize {len(data)}\n".encode()


def lfs_patterns(gitattributes: bytes | None) -> list[str]:
    """The patterns a .gitattributes file sends through LFS (`filter=lfs`)."""
    patterns = []
    for line in (gitattributes or b"").decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def is_lfs(files: dict[str, bytes], path: str) -> bool:
    """Whether git would store `path` as an LFS pointer under the tree's .gitattributes."""
    name = path.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p)
        for p in lfs_patterns(files.get(".gitattributes"))
    )


@dataclass
class Raw:
    """A reply that is not JSON: a file, or a redirect to LFS storage."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


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
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> bytes, served by the "CDN" route
        self._lock = threading.Lock()
        self._lfs_lock = threading.Lock()
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

    @property
    def lfs_url(self) -> str:
        """The LFS store's origin: the same server under another host name, as the Hub's CDN is
        another host (the client follows redirects within the Hub only, with the token)."""
        port = self._httpd.server_address[1]
        return f"http://localhost:{port}"

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

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes],
        repo_type: str = "model",
        private: bool = False,
        summary: str = "seed",
    ) -> str:
        """Create a repository holding `files` on main (as a push would); returns the commit."""
        with self._lock:
            repo = Repo(repo_type, repo_id, private=private)
            first = self._commit(repo, None, {".gitattributes": GITATTRIBUTES}, "initial", "")
            head = self._commit(repo, first.oid, {**first.files, **files}, summary, "")
            repo.branches["main"] = head.oid
            self.repos[(repo_type, repo_id)] = repo
            return head.oid

    def handle(
        self, method: str, path: str, auth: str | None, body: bytes, ctype: str, query: str = ""
    ) -> Any:
        role = self._auth(auth)
        if method in ("GET", "HEAD"):
            match = ROUTE_LFS_OBJECT.match(path)
            if match:
                return self._lfs_object(match["oid"])
        with self._lock:
            if method in ("GET", "HEAD"):
                match = ROUTE_RESOLVE.match(path)
                if match and not path.startswith("/api/"):
                    kind = match["type"] or "models"
                    repo = self._find(kind, match["repo"], role)
                    return self._resolve(repo, unquote(match["rev"]), unquote(match["path"]))
                match = ROUTE_TREE.match(path)
                if method == "GET" and match:
                    repo = self._find(match["type"], match["repo"], role)
                    recursive = "recursive=true" in query.lower() or "recursive=1" in query
                    return self._tree(repo, unquote(match["rev"]), match["path"] or "", recursive)
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

    def _at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self._at(repo, revision)
        prefix = unquote(path).strip("/")
        prefix = prefix + "/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for name in sorted(commit.files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if "/" in rest and not recursive:
                folder = prefix + rest.split("/", 1)[0]
                entries.setdefault(folder, _folder_entry(folder))
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    folder = prefix + "/".join(parts[: i + 1])
                    entries.setdefault(folder, _folder_entry(folder))
            data = commit.files[name]
            entry: dict[str, Any] = {"type": "file", "path": name, "size": len(data)}
            if is_lfs(commit.files, name):
                pointer = lfs_pointer(data)
                entry["oid"] = git_blob_sha1(pointer)
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": len(pointer),
                }
            else:
                entry["oid"] = git_blob_sha1(data)
            entries[name] = entry
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return list(entries.values())

    def _resolve(self, repo: Repo, revision: str, path: str) -> Raw:
        commit = self._at(repo, revision)
        data = commit.files.get(path)
        if data is None:
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream"}
        if is_lfs(commit.files, path):
            oid = hashlib.sha256(data).hexdigest()
            with self._lfs_lock:
                self.lfs_objects[oid] = data
            headers.update(
                {
                    "Location": f"{self.lfs_url}/lfs-objects/{oid}",
                    "X-Linked-Etag": f'"{oid}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_sha1(lfs_pointer(data))}"',
                }
            )
            return Raw(302, headers)
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        return Raw(200, headers, data)

    def _lfs_object(self, oid: str) -> Raw:
        with self._lfs_lock:
            data = self.lfs_objects.get(oid)
        if data is None:
            raise HubError(404, f"no LFS object {oid}")
        return Raw(200, {"Content-Type": "application/octet-stream", "ETag": f'"{oid}"'}, data)

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


def _folder_entry(path: str) -> dict[str, Any]:
    return {"type": "directory", "path": path, "size": 0, "oid": git_blob_sha1(path.encode())}


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
        parts = urlsplit(self.path)
        path = parts.path
        body = self._body()
        auth = self.headers.get("Authorization")
        record = Request(method, path, authenticated=bool(auth))
        headers: dict[str, str] = {}
        try:
            ctype = self.headers.get("Content-Type", "")
            status, payload = 200, hub.handle(method, path, auth, body, ctype, parts.query)
            if isinstance(payload, Raw):
                record.status = payload.status
                with hub._lock:
                    hub.requests.append(record)
                self.send_response(payload.status)
                for key, value in payload.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload.body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(payload.body)
                return
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
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")


@contextmanager
def running_hub(**kwargs: Any) -> Iterator[HubServer]:
    hub = HubServer(**kwargs).start()
    try:
        yield hub
    finally:
        hub.stop()


@contextmanager
def hub_for_pushes(monkeypatch: Any, push_token: str, **tokens: str) -> Iterator[HubServer]:
    """A running stand-in Hub with namespace `acme` that one test may reach, pushes authorised
    by `push_token` (a write token, as LLMFT_HF_PUSH_TOKEN), `tokens` other tokens' roles."""
    allow_hub_requests(monkeypatch)
    monkeypatch.setenv("LLMFT_HF_PUSH_TOKEN", push_token)
    with running_hub(tokens={push_token: "write", **tokens}, namespaces=("acme",)) as server:
        yield server


def push_target(hub: HubServer, repo: str, **fields: object) -> HuggingFaceRepo:
    """spec.output.huggingFace for `repo` on the stand-in, token by its Secret reference."""
    body = {
        "repo": repo,
        "tokenSecretRef": {"name": "hf-push", "key": "token"},
        "endpoint": hub.url,
        **fields,
    }
    return HuggingFaceRepo.model_validate(body)


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
