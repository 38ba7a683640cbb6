"""A small Hugging Face Hub look-alike for tests: the real `huggingface_hub` client and `transformers` talk to it.

It answers the endpoints that `huggingface_hub` 2.4 calls for repos (create, delete, settings, info, tree, refs,
commits, paths-info, preupload, commit, branches, tags, pull requests), file downloads (`/resolve/`), the YAML
validator, whoami and collections, with the JSON shapes the client parses. Storage is in memory: every commit is a
full snapshot (path -> blob), blobs are keyed by their git oid. Uploads are always "regular" (base64 inside the
commit), never LFS or Xet; files over 10 MiB or with a weight-like suffix are still *reported* as LFS files (tree,
siblings, `X-Linked-Etag` on downloads), as the Hub does.

Point the client at it by setting `HF_ENDPOINT` before `huggingface_hub` is imported (`start_session_hub` does that),
or with `point_clients_at(url)` once it is imported.

    with HubServer(tokens={"hf_alice": "alice"}, orgs={"alice": ["lab"]}) as hub:
        undo = point_clients_at(hub.url)
        HfApi(token="hf_alice").create_repo("alice/tiny")
        hub.fail_next(2, status=500, path_contains="/commit/")
        ...
        undo()

Tokens are never recorded or logged: `hub.log` holds method, path, query, status and the user name only.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

# The Hub refuses regular (non-LFS) files above 10 MiB and routes these suffixes to LFS through `.gitattributes`.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".npy", ".npz",
    ".pkl", ".pickle", ".zip", ".tar", ".gz", ".tgz", ".zst", ".parquet", ".arrow", ".model", ".tflite",
)
GITATTRIBUTES = b"".join(
    f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n".encode() for suffix in LFS_SUFFIXES
)
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def git_blob_oid(data: bytes) -> str:
    """The oid git gives a file: sha1 of `blob <size>\\0<data>` (what the Hub returns as a regular file's `oid`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "collection"


class HubError(Exception):
    """An error answer: HTTP status, message (JSON `error` and `X-Error-Message`) and the Hub's `X-Error-Code`."""

    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, str]  # path -> blob oid
    title: str
    message: str
    author: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    object_id: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)  # num -> head commit of refs/pr/num
    discussions: dict[int, dict] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    gated: str | bool = False

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]


@dataclass
class FaultRule:
    remaining: int
    status: int
    path_contains: str
    mode: str
    method: str | None
    retry_after: int | None
    skip: int = 0  # matching requests let through before the failures start


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "HubServer/1.0"
    timeout = 60

    def log_message(self, format, *args):
        pass  # requests are recorded in HubServer.log; the default stderr log is noise

    def _dispatch(self):
        self.server.hub._serve(self)  # type: ignore[attr-defined]

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class HubServer:
    """An in-memory Hub on `http://127.0.0.1:<port>`, served from a background thread.

    Args:
        tokens (`dict[str, str]`, *optional*):
            Bearer token -> user name. A request with a token not listed here gets a 401 (as on the Hub, even for
            public reads); a request without a token may read public repos only.
        orgs (`dict[str, list[str]]`, *optional*):
            User name -> organisations the user can write to (besides their own namespace).
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Address to bind.
        port (`int`, *optional*, defaults to `0`):
            Port to bind; `0` picks a free one. The socket is bound here, so `url` is known before `start()`.
    """

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        self.tokens = dict(tokens or {})
        self.orgs = {user: list(names) for user, names in (orgs or {}).items()}
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all repos, blobs, collections, pending faults and the request log (users and orgs stay)."""
        with self._lock:
            self.repos: dict[tuple[str, str], Repo] = {}
            self.blobs: dict[str, bytes] = {}
            self._lfs_cache: dict[str, tuple[str, str, int]] = {}
            self.collections: dict[str, dict] = {}  # object id -> collection record
            self._faults: list[FaultRule] = []
            self.log: list[dict] = []

    # ------------------------------------------------------------------ test helpers
    @property
    def requests(self) -> list[tuple[str, str]]:
        """`(method, path)` of every request received, in order; `path` is as sent (percent-encoded), without query."""
        with self._lock:
            return [(entry["method"], entry["path"]) for entry in self.log]

    def fail_next(self, n: int = 1, status: int = 500, path_contains: str = "", mode: str = "status",
                  method: str | None = None, retry_after: int | None = None, after: int = 0) -> None:
        """Make the next `n` requests whose path contains `path_contains` fail.

        Args:
            n (`int`): How many matching requests fail.
            status (`int`): Status to answer with (`mode="status"`).
            path_contains (`str`): Substring of the percent-encoded path (no query), e.g. `"/commit/"`, `"/resolve/"`.
            mode (`str`): `"status"` answers `status`; `"drop"` reads the request and closes the connection without
                answering (the client sees `RemoteProtocolError: Server disconnected without sending a response`);
                `"drop_after"` carries the request out (e.g. creates the commit) and then drops the answer, as when
                a response is lost on the way back: a client that retries then repeats the operation.
            method (`str`, *optional*): Only requests with this HTTP method match.
            retry_after (`int`, *optional*): `Retry-After` seconds to send; defaults to 0 for 429 and 503, else none.
                The client waits `Retry-After + 1` s when it is set, else 1 s, 2 s, 4 s ... between retries.
            after (`int`): Let this many matching requests through first (e.g. fail a push after its first commit).
        """
        if mode not in ("status", "drop", "drop_after"):
            raise ValueError(f"mode={mode!r} is not one of 'status', 'drop', 'drop_after'.")
        if retry_after is None and status in (429, 503):
            retry_after = 0
        with self._lock:
            self._faults.append(FaultRule(n, status, path_contains, mode, method and method.upper(), retry_after, after))

    def clear_faults(self) -> None:
        """Drop every pending injected failure (repos and the request log stay)."""
        with self._lock:
            self._faults.clear()

    def add_repo(self, repo_id: str, files: dict[str, bytes] | None = None, *, repo_type: str = "model",
                 private: bool = False, message: str = "Upload files") -> str:
        """Create `repo_id` (if needed) and commit `files` to `main`, bypassing HTTP; returns the commit sha."""
        with self._lock:
            repo = self.repos.get((repo_type, repo_id)) or self._create_repo(repo_type, repo_id, private)
            if not files:
                return repo.branches["main"]
            head = repo.commits[repo.branches["main"]]
            snapshot = dict(head.files)
            for path, data in files.items():
                snapshot[path] = self._store(data)
            sha = self._new_commit(repo, head.sha, snapshot, message, "", repo.namespace)
            repo.branches["main"] = sha
            return sha

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (branch, tag, `refs/pr/N` or commit sha), as `{path: bytes}`."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            commit = repo.commits[self._resolve(repo, revision)]
            return {path: self.blobs[oid] for path, oid in commit.files.items()}

    # ------------------------------------------------------------------ storage
    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(repo_type, repo_id, private, _now(), self._object_id())
        # Like the Hub: a new repo starts with one commit holding `.gitattributes`.
        sha = self._new_commit(repo, None, {".gitattributes": self._store(GITATTRIBUTES)}, "initial commit", "",
                               repo.namespace)
        repo.branches["main"] = sha
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def _object_id(self) -> str:
        return f"{next(self._ids):024x}"

    def _store(self, data: bytes) -> str:
        oid = git_blob_oid(data)
        self.blobs[oid] = data
        return oid

    def _new_commit(self, repo: Repo, parent: str | None, files: dict[str, str], title: str, message: str,
                    author: str) -> str:
        date = _now()
        # Unique even for identical trees: the parent and a counter go into the hash.
        digest_input = json.dumps([parent, sorted(files.items()), title, message, author, date, next(self._ids)])
        sha = hashlib.sha1(digest_input.encode()).hexdigest()
        repo.commits[sha] = Commit(sha, parent, files, title, message, author, date)
        return sha

    @staticmethod
    def _is_lfs(path: str, size: int) -> bool:
        return size > LFS_SIZE_THRESHOLD or path.lower().endswith(LFS_SUFFIXES)

    def _lfs_info(self, oid: str) -> tuple[str, str, int]:
        """`(sha256, pointer oid, pointer size)` of a blob stored as LFS."""
        if oid not in self._lfs_cache:  # hashing a large blob on every HEAD and listing adds up
            data = self.blobs[oid]
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
            self._lfs_cache[oid] = (sha256, git_blob_oid(pointer), len(pointer))
        return self._lfs_cache[oid]

    def _file_entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
        oid = commit.files[path]
        size = len(self.blobs[oid])
        entry: dict = {"type": "file", "oid": oid, "size": size, "path": path}
        if self._is_lfs(path, size):
            sha256, pointer_oid, pointer_size = self._lfs_info(oid)
            entry["oid"] = pointer_oid
            entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": pointer_size}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path)
        return entry

    def _folder_entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
        children = sorted((p, o) for p, o in commit.files.items() if p.startswith(path + "/"))
        entry: dict = {"type": "directory", "oid": hashlib.sha1(json.dumps(children).encode()).hexdigest(),
                       "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path)
        return entry

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> dict:
        def state(c: Commit):
            return sorted((p, o) for p, o in c.files.items() if p == path or p.startswith(path + "/"))

        current = commit
        while current.parent is not None and state(repo.commits[current.parent]) == state(current):
            current = repo.commits[current.parent]
        return {"id": current.sha, "title": current.title, "date": current.date}

    @staticmethod
    def _folders(files) -> set[str]:
        return {"/".join(parts[:i]) for parts in (p.split("/") for p in files) for i in range(1, len(parts))}

    # ------------------------------------------------------------------ auth and lookups
    def _authenticate(self, headers) -> str | None:
        authorization = headers.get("Authorization")
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token.strip()]

    def _can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or namespace in self.orgs.get(user, []))

    def _can_read(self, user: str | None, repo: Repo) -> bool:
        return not repo.private or self._can_write(user, repo.namespace)

    @staticmethod
    def _require_user(user: str | None) -> str:
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _repo(self, repo_type: str, repo_id: str, user: str | None, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or not self._can_read(user, repo):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not self._can_write(user, repo.namespace):
            raise HubError(403, f"You don't have the rights to write to the {repo_type} {repo_id}")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> str:
        """Commit sha of a branch, tag, `refs/heads|tags/...`, `refs/pr/N` or a (prefix of a) commit sha."""
        name = revision
        for prefix in ("refs/heads/", "refs/tags/"):
            name = name.removeprefix(prefix)
        if name in repo.branches:
            return repo.branches[name]
        if name in repo.tags:
            return repo.tags[name]
        if (match := re.fullmatch(r"refs/pr/(\d+)", revision)) and int(match[1]) in repo.pull_requests:
            return repo.pull_requests[int(match[1])]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            found = [sha for sha in repo.commits if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # ------------------------------------------------------------------ HTTP plumbing
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        method, path = handler.command, split.path
        query = parse_qs(split.query, keep_blank_values=True)
        body = self._read_body(handler)
        entry = {"method": method, "path": path, "query": split.query, "status": None, "user": None}

        rule = self._take_fault(method, path)
        if rule is not None and rule.mode == "drop":
            entry["status"] = "dropped"
            self._record(entry)
            self._drop(handler)
            return

        headers: dict[str, str] = {}
        try:
            if rule is not None and rule.mode == "status":
                if rule.retry_after is not None:
                    headers["Retry-After"] = str(rule.retry_after)
                raise HubError(rule.status, f"Injected failure ({rule.status})")
            user = entry["user"] = self._authenticate(handler.headers)
            with self._lock:
                status, payload, extra_headers = self._route(method, path, query, body, handler.headers, user)
            headers.update(extra_headers)
        except HubError as error:
            status = error.status
            payload = {"error": error.message, **error.extra}
            headers.update(error.headers)
            headers["X-Error-Message"] = error.message
            if error.code:
                headers["X-Error-Code"] = error.code
        except Exception as error:  # noqa: BLE001 - a bug here should read as a 500, not hang the client
            status, payload = 500, {"error": f"HubServer internal error: {error!r}"}
        if rule is not None and rule.mode == "drop_after":
            entry["status"] = f"{status}, dropped"
            self._record(entry)
            self._drop(handler)
            return
        entry["status"] = status
        self._record(entry)
        self._respond(handler, status, payload, headers)

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        """Close the connection without answering: the client reads EOF where the status line should be."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.log.append(entry)

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._faults:
                if rule.remaining > 0 and rule.path_contains in path and rule.method in (None, method):
                    if rule.skip > 0:
                        rule.skip -= 1
                        return None
                    rule.remaining -= 1
                    return rule
        return None

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _respond(handler: BaseHTTPRequestHandler, status: int, payload, headers: dict[str, str]) -> None:
        if isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
            headers.setdefault("Content-Type", "application/octet-stream")
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        handler.send_response(status)
        for key, value in headers.items():
            # Messages may hold newlines (YAML errors) or non-Latin-1 text, neither of which a header can carry.
            value = re.sub(r"[\r\n]+", " ", str(value)).encode("latin-1", "replace").decode("latin-1")
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, path: str, query: dict, body: bytes, headers, user: str | None):
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        raw_parts = path.strip("/").split("/")

        if "resolve" in raw_parts and raw_parts[0] != "api":
            return self._resolve_file(method, raw_parts, headers, user)
        if not parts or parts[0] != "api" or len(parts) < 2:
            raise HubError(404, f"Not found: {method} {path}")

        head = parts[1]
        if head == "whoami-v2" and method == "GET":
            return 200, self._whoami(self._require_user(user)), {}
        if head == "agent-harnesses" and method == "GET":  # huggingface_hub's agent detection, best-effort
            return 200, {"standardEnvVars": [], "harnesses": {}}, {}
        if head == "validate-yaml" and method == "POST":
            return self._validate_yaml(self._json(body))
        if head == "repos" and len(parts) == 3:
            if parts[2] == "create" and method == "POST":
                return self._create_repo_api(self._json(body), user)
            if parts[2] == "delete" and method == "DELETE":
                return self._delete_repo_api(self._json(body), user)
        if head == "collections":
            return self._collections_api(method, parts[2:], query, self._json(body) if body else {}, user)
        if head in REPO_TYPES:
            repo_type = REPO_TYPES[head]
            if len(parts) == 2 and method == "GET":
                return 200, self._list_repos(repo_type, query, user), {}
            if len(parts) >= 4:
                return self._repo_api(method, repo_type, f"{parts[2]}/{parts[3]}", parts[4:], query, body, headers,
                                      user)
        raise HubError(404, f"Not found: {method} {path}")

    @staticmethod
    def _json(body: bytes) -> dict:
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from error

    @staticmethod
    def _split_revision(rest: list[str]) -> tuple[str, list[str]]:
        """Revision from the first segment(s): the client percent-encodes `/`, but accept `refs/pr/1` split too."""
        if not rest:
            raise HubError(400, "Missing revision")
        if rest[0] == "refs" and len(rest) >= 3:
            return "/".join(rest[:3]), rest[3:]
        return rest[0], rest[1:]

    def _repo_api(self, method, repo_type, repo_id, rest, query, body, headers, user):
        action = rest[0] if rest else ""
        if action == "" and method == "GET":
            return 200, self._repo_info(self._repo(repo_type, repo_id, user), "main", query), {}
        if action == "revision" and method == "GET":
            revision, _ = self._split_revision(rest[1:])
            return 200, self._repo_info(self._repo(repo_type, repo_id, user), revision, query), {}
        if action == "tree" and method == "GET":
            revision, path_parts = self._split_revision(rest[1:])
            return 200, self._tree(self._repo(repo_type, repo_id, user), revision, "/".join(path_parts), query), {}
        if action == "refs" and method == "GET":
            return 200, self._refs(self._repo(repo_type, repo_id, user), query), {}
        if action == "commits" and method == "GET":
            revision, _ = self._split_revision(rest[1:])
            return 200, self._commits(self._repo(repo_type, repo_id, user), revision), {}
        if action == "paths-info" and method == "POST":
            revision, _ = self._split_revision(rest[1:])
            return 200, self._paths_info(self._repo(repo_type, repo_id, user), revision, body, headers), {}
        if action == "preupload" and method == "POST":
            revision, _ = self._split_revision(rest[1:])
            return self._preupload(repo_type, repo_id, revision, query, self._json(body), user)
        if action == "commit" and method == "POST":
            revision, _ = self._split_revision(rest[1:])
            return self._commit(repo_type, repo_id, revision, query, body, user)
        if action == "settings" and method == "PUT":
            return self._settings(self._repo(repo_type, repo_id, self._require_user(user), write=True),
                                  self._json(body))
        if action == "discussions":
            return self._discussions(method, repo_type, repo_id, rest[1:], self._json(body) if body else {}, user)
        if action == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
            repo = self._repo(repo_type, repo_id, self._require_user(user), write=True)
            return self._branch(method, repo, rest[1], self._json(body) if body else {})
        if action == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
            repo = self._repo(repo_type, repo_id, self._require_user(user), write=True)
            return self._tag(method, repo, rest[1], self._json(body) if body else {})
        raise HubError(404, f"Not found: {method} /api/{repo_type}s/{repo_id}/{'/'.join(rest)}")

    # ------------------------------------------------------------------ account and repos
    def _whoami(self, user: str) -> dict:
        return {
            "type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user, "fullname": user,
            "email": f"{user}@example.com", "emailVerified": True, "isPro": False, "canPay": False,
            "avatarUrl": f"{self.url}/avatars/{user}.svg",
            "orgs": [{"type": "org", "name": org, "fullname": org, "roleInOrg": "write"}
                     for org in self.orgs.get(user, [])],
            "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
        }

    def _create_repo_api(self, payload: dict, user: str | None):
        user = self._require_user(user)
        repo_type = payload.get("type") or "model"
        if repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        namespace = payload.get("organization") or user
        name = payload.get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) or "--" in name or ".." in name:
            raise HubError(400, f"Invalid repo name {name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if not self._can_write(user, namespace):
            raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this model repo", extra={"url": url})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self._create_repo(repo_type, repo_id, private)
        return 200, {"url": url, "name": repo_id, "id": repo.object_id}, {}

    def _delete_repo_api(self, payload: dict, user: str | None):
        user = self._require_user(user)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload.get('name')}"
        repo = self._repo(repo_type, repo_id, user, write=True)
        del self.repos[(repo.repo_type, repo.repo_id)]
        return 200, {}, {}

    def _settings(self, repo: Repo, payload: dict):
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        if "private" in payload:
            repo.private = bool(payload["private"])
        if "gated" in payload:
            repo.gated = payload["gated"]
        return 200, {}, {}

    def _list_repos(self, repo_type: str, query: dict, user: str | None) -> list[dict]:
        author = (query.get("author") or [None])[0]
        search = (query.get("search") or [""])[0]
        found = []
        for (kind, repo_id), repo in sorted(self.repos.items()):
            if kind != repo_type or not self._can_read(user, repo):
                continue
            if (author and repo.namespace != author) or search not in repo_id:
                continue
            head = repo.commits[repo.branches["main"]]
            found.append({"_id": repo.object_id, "id": repo_id, "private": repo.private, "sha": head.sha,
                          "lastModified": head.date, "createdAt": repo.created_at, "likes": 0, "downloads": 0,
                          "tags": []})
        return found

    def _repo_info(self, repo: Repo, revision: str, query: dict) -> dict:
        commit = repo.commits[self._resolve(repo, revision)]
        with_blobs = (query.get("blobs") or ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict = {"rfilename": path}
            if with_blobs:
                entry = self._file_entry(repo, commit, path, expand=False)
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if "lfs" in entry:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        card = self._card_data(self.blobs[commit.files["README.md"]]) if "README.md" in commit.files else None
        info: dict = {
            "_id": repo.object_id, "id": repo.repo_id, "author": repo.namespace, "sha": commit.sha,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0,
            "tags": list((card or {}).get("tags") or []), "siblings": siblings,
            "usedStorage": sum(len(self.blobs[oid]) for oid in set(commit.files.values())),
        }
        if card is not None:
            info["cardData"] = card
            for key in ("library_name", "pipeline_tag"):
                if card.get(key):
                    info[key] = card[key]
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info["spaces"] = []
        return info

    @staticmethod
    def _card_data(readme: bytes) -> dict | None:
        match = re.match(rb"^---\s*\n(.*?)\n---\s*(\n|$)", readme, re.DOTALL)
        if match is None:
            return None
        import yaml  # a dependency of huggingface_hub

        try:
            data = yaml.safe_load(match[1])
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def _validate_yaml(self, payload: dict):
        content = (payload.get("content") or "").encode()
        match = re.match(rb"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if match is not None:
            import yaml

            try:
                data = yaml.safe_load(match[1])
            except yaml.YAMLError as error:
                message = f"Invalid YAML in README.md metadata: {error}"
                raise HubError(400, message, extra={"errors": [{"message": message}], "warnings": []}) from error
            if data is not None and not isinstance(data, dict):
                message = "README.md metadata must be a YAML mapping"
                raise HubError(400, message, extra={"errors": [{"message": message}], "warnings": []})
        return 200, {"errors": [], "warnings": []}, {}

    # ------------------------------------------------------------------ reading files
    def _tree(self, repo: Repo, revision: str, folder: str, query: dict) -> list[dict]:
        commit = repo.commits[self._resolve(repo, revision)]
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        expand = (query.get("expand") or ["false"])[0].lower() in ("1", "true")
        folder = folder.strip("/")
        folders = self._folders(commit.files)
        if folder and folder not in folders:
            raise HubError(404, f"{folder} does not exist on {revision}", "EntryNotFound")
        prefix = f"{folder}/" if folder else ""
        entries = []
        for path in sorted(set(commit.files) | folders):
            if not path.startswith(prefix) or (not recursive and "/" in path[len(prefix):]):
                continue
            if path in commit.files:
                entries.append(self._file_entry(repo, commit, path, expand))
            else:
                entries.append(self._folder_entry(repo, commit, path, expand))
        return entries

    def _paths_info(self, repo: Repo, revision: str, body: bytes, headers) -> list[dict]:
        commit = repo.commits[self._resolve(repo, revision)]
        if "json" in headers.get("Content-Type", ""):
            payload = self._json(body)
            paths, expand = payload.get("paths") or [], bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), (form.get("expand") or ["false"])[0].lower() in ("1", "true")
        folders = self._folders(commit.files)
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(self._file_entry(repo, commit, path, expand))
            elif path in folders:
                entries.append(self._folder_entry(repo, commit, path, expand))
        return entries

    def _refs(self, repo: Repo, query: dict) -> dict:
        refs: dict = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()],
            "converts": [],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()],
        }
        if (query.get("include_prs") or ["0"])[0] in ("1", "true", "True"):
            refs["pullRequests"] = [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": s}
                                    for n, s in repo.pull_requests.items()]
        return refs

    def _commits(self, repo: Repo, revision: str) -> list[dict]:
        history, sha = [], self._resolve(repo, revision)
        while sha is not None:
            commit = repo.commits[sha]
            history.append({"id": commit.sha, "title": commit.title, "message": commit.message,
                            "date": commit.date, "authors": [{"user": commit.author}]})
            sha = commit.parent
        return history

    def _resolve_file(self, method: str, raw_parts: list[str], headers, user: str | None):
        if method not in ("GET", "HEAD"):
            raise HubError(405, f"{method} is not allowed on /resolve/")
        index = raw_parts.index("resolve")
        repo_parts = [unquote(p) for p in raw_parts[:index]]
        repo_type = "model"
        if len(repo_parts) == 3 and repo_parts[0] in REPO_TYPES:
            repo_type = REPO_TYPES[repo_parts.pop(0)]
        if len(repo_parts) != 2:
            raise HubError(404, "Repository not found", "RepoNotFound")
        repo = self._repo(repo_type, "/".join(repo_parts), user)
        revision, path_parts = self._split_revision([unquote(p) for p in raw_parts[index + 1:]])
        sha = self._resolve(repo, revision)
        path = "/".join(path_parts)
        commit = repo.commits[sha]
        if path not in commit.files:
            raise HubError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        oid = commit.files[path]
        data = self.blobs[oid]
        response_headers = {"X-Repo-Commit": sha, "ETag": f'"{oid}"', "Accept-Ranges": "bytes",
                            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"'}
        if self._is_lfs(path, len(data)):
            sha256, pointer_oid, _ = self._lfs_info(oid)
            response_headers.update({"ETag": f'"{pointer_oid}"', "X-Linked-Etag": f'"{sha256}"',
                                     "X-Linked-Size": str(len(data))})
        byte_range = headers.get("Range")
        if byte_range and method == "GET":
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", byte_range)
            if match is None or (not match[1] and not match[2]):
                raise HubError(416, f"Unsupported range {byte_range!r}")
            if match[1]:
                start, end = int(match[1]), int(match[2]) if match[2] else len(data) - 1
            else:
                start, end = max(len(data) - int(match[2]), 0), len(data) - 1
            if start >= len(data):
                raise HubError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            response_headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, data[start:end + 1], response_headers
        return 200, data, response_headers

    # ------------------------------------------------------------------ writing files
    def _writable_ref(self, repo: Repo, revision: str) -> tuple[str, str | int]:
        """`("branch", name)` or `("pr", num)` for a revision a commit can go to."""
        name = revision.removeprefix("refs/heads/")
        if name in repo.branches:
            return "branch", name
        if (match := re.fullmatch(r"refs/pr/(\d+)", revision)) and int(match[1]) in repo.pull_requests:
            return "pr", int(match[1])
        if name in repo.tags or re.fullmatch(r"[0-9a-f]{7,40}", revision):
            raise HubError(400, f"Cannot commit to {revision}: not a branch or a pull request ref")
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _can_push_to(self, user: str, repo: Repo, kind: str) -> bool:
        # Anyone who can read a repo may open and push to pull requests, as on the Hub.
        return kind == "pr" or self._can_write(user, repo.namespace)

    def _preupload(self, repo_type, repo_id, revision, query, payload, user):
        user = self._require_user(user)
        repo = self._repo(repo_type, repo_id, user)
        create_pr = (query.get("create_pr") or ["0"])[0] in ("1", "true", "True")
        kind, _ = self._writable_ref(repo, revision)
        if not (create_pr or self._can_push_to(user, repo, kind)):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        commit = repo.commits[self._resolve(repo, revision)]
        files = []
        for file in payload.get("files") or []:
            answer = {"path": file["path"], "uploadMode": "regular", "shouldIgnore": False}
            if file["path"] in commit.files:
                answer["oid"] = commit.files[file["path"]]  # git oid: what the client compares for no-op files
            files.append(answer)
        return 200, {"files": files, "commitOid": commit.sha}, {}

    def _commit(self, repo_type, repo_id, revision, query, body, user):
        user = self._require_user(user)
        repo = self._repo(repo_type, repo_id, user)
        create_pr = (query.get("create_pr") or ["0"])[0] in ("1", "true", "True")
        kind, ref = self._writable_ref(repo, revision)
        if not (create_pr or self._can_push_to(user, repo, kind)):
            raise HubError(403, f"You don't have the rights to write to {repo_id}")

        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid NDJSON commit payload: {error}") from error
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        head_sha = repo.branches[ref] if kind == "branch" else repo.pull_requests[ref]
        parent_commit = header.get("parentCommit")
        if parent_commit and not create_pr and not head_sha.startswith(parent_commit):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")

        snapshot = dict(repo.commits[head_sha].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path", "").strip("/")
            if key == "file":
                content = value.get("content", "")
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                snapshot[path] = self._store(data)
            elif key == "deletedFile":
                if path not in snapshot:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del snapshot[path]
            elif key == "deletedFolder":
                inside = [p for p in snapshot if p.startswith(path + "/")]
                if not inside:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in inside:
                    del snapshot[p]
            elif key == "lfsFile":
                raise HubError(422, "This test Hub accepts regular uploads only (preupload never answers 'lfs')")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")

        sha = self._new_commit(repo, head_sha, snapshot, header.get("summary") or "", header.get("description") or "",
                               user)
        prefix = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        answer = {"success": True, "commitOid": sha, "commitUrl": f"{prefix}/commit/{sha}"}
        if create_pr:
            num = self._open_discussion(repo, header.get("summary") or "", user, pull_request=True, status="open",
                                        base=f"refs/heads/{ref}" if kind == "branch" else revision)
            repo.pull_requests[num] = sha
            answer["pullRequestUrl"] = f"{prefix}/discussions/{num}"
        elif kind == "branch":
            repo.branches[ref] = sha
        else:
            repo.pull_requests[ref] = sha
        return 200, answer, {}

    def _open_discussion(self, repo: Repo, title: str, user: str, pull_request: bool, status: str,
                         base: str = "refs/heads/main") -> int:
        num = len(repo.discussions) + 1
        repo.discussions[num] = {"num": num, "title": title, "author": user, "createdAt": _now(), "status": status,
                                 "isPullRequest": pull_request, "base": base}
        return num

    def _discussions(self, method, repo_type, repo_id, rest, payload, user):
        if method == "POST" and not rest:
            user = self._require_user(user)
            repo = self._repo(repo_type, repo_id, user)
            pull_request = bool(payload.get("pullRequest"))
            num = self._open_discussion(repo, payload.get("title") or "", user, pull_request,
                                        status="draft" if pull_request else "open")
            if pull_request:
                repo.pull_requests[num] = repo.branches["main"]
            return 200, {"num": num, "pullRequest": pull_request, "url": f"{repo_id}/discussions/{num}"}, {}
        if method == "GET" and len(rest) == 1 and rest[0].isdigit():
            repo = self._repo(repo_type, repo_id, user)
            discussion = repo.discussions.get(int(rest[0]))
            if discussion is None:
                raise HubError(404, "Discussion not found")
            return 200, {
                "num": discussion["num"], "title": discussion["title"], "status": discussion["status"],
                "author": {"name": discussion["author"]}, "createdAt": discussion["createdAt"],
                "repo": {"name": repo.repo_id, "type": repo.repo_type}, "isPullRequest": discussion["isPullRequest"],
                "events": [], "changes": {"base": discussion["base"]}, "filesWithConflicts": [], "diff": "",
            }, {}
        raise HubError(404, f"Not found: {method} discussions/{'/'.join(rest)}")

    def _branch(self, method: str, repo: Repo, branch: str, payload: dict):
        if method == "DELETE":
            if branch not in repo.branches or branch == "main":
                raise HubError(404 if branch not in repo.branches else 403, f"Cannot delete branch {branch}")
            del repo.branches[branch]
            return 200, {}, {}
        if branch in repo.branches:
            raise HubError(409, f"Branch {branch} already exists")
        repo.branches[branch] = self._resolve(repo, payload.get("startingPoint") or "main")
        return 200, {}, {}

    def _tag(self, method: str, repo: Repo, name: str, payload: dict):
        if method == "DELETE":
            if name not in repo.tags:
                raise HubError(404, f"Tag {name} not found", "RevisionNotFound")
            del repo.tags[name]
            return 200, {}, {}
        tag = payload.get("tag") or ""
        if tag in repo.tags:
            raise HubError(409, f"Tag {tag} already exists")
        repo.tags[tag] = self._resolve(repo, name)  # `name` is the revision being tagged
        return 200, {}, {}

    # ------------------------------------------------------------------ collections
    def _collections_api(self, method: str, rest: list[str], query: dict, payload: dict, user: str | None):
        if not rest:
            if method == "POST":
                return self._create_collection(payload, self._require_user(user))
            if method == "GET":
                owners = query.get("owner") or []
                listed = [self._collection_json(c, truncate=True) for c in self.collections.values()
                          if self._collection_visible(c, user) and (not owners or c["namespace"] in owners)]
                return 200, listed, {}
        if len(rest) < 2:
            raise HubError(404, "Collection not found")
        collection = self.collections.get(rest[1].rsplit("-", 1)[-1])
        if collection is None or collection["namespace"] != rest[0] or not self._collection_visible(collection, user):
            raise HubError(404, "Collection not found")
        sub = rest[2:]
        if not sub and method == "GET":
            return 200, self._collection_json(collection), {}
        user = self._require_user(user)
        if not self._can_write(user, collection["namespace"]):
            raise HubError(403, "You don't have the rights to edit this collection")
        if not sub and method == "DELETE":
            del self.collections[collection["object_id"]]
            return 200, {}, {}
        if not sub and method == "PATCH":
            for key in ("title", "description", "private", "theme"):
                if key in payload:
                    collection[key] = payload[key]
            if "position" in payload:
                collection["position"] = payload["position"]
            collection["lastUpdated"] = _now()
            return 200, {"success": True, "data": self._collection_json(collection)}, {}
        if sub == ["items"] and method == "POST":
            return self._add_collection_item(collection, payload, user)
        if len(sub) == 2 and sub[0] == "items" and method in ("PATCH", "DELETE"):
            items = collection["items"]
            item = next((i for i in items if i["_id"] == sub[1]), None)
            if item is None:
                raise HubError(404, "Item not found in collection")
            if method == "DELETE":
                items.remove(item)
            else:
                if "note" in payload:
                    item["note"] = payload["note"]
                if "position" in payload:
                    items.remove(item)
                    items.insert(max(0, min(int(payload["position"]), len(items))), item)
            collection["lastUpdated"] = _now()
            return 200, {}, {}
        raise HubError(404, f"Not found: {method} /api/collections/{'/'.join(rest)}")

    def _collection_visible(self, collection: dict, user: str | None) -> bool:
        return not collection["private"] or self._can_write(user, collection["namespace"])

    def _create_collection(self, payload: dict, user: str):
        namespace = payload.get("namespace") or user
        title = (payload.get("title") or "").strip()
        if not title:
            raise HubError(400, "A collection needs a title")
        if not self._can_write(user, namespace):
            raise HubError(403, f'You don\'t have the rights to create a collection under "{namespace}"')
        for collection in self.collections.values():
            if collection["namespace"] == namespace and collection["title"] == title:
                raise HubError(409, "Collection already exists", extra={"slug": collection["slug"]})
        object_id = self._object_id()
        collection = {
            "object_id": object_id, "namespace": namespace, "slug": f"{namespace}/{_slugify(title)}-{object_id}",
            "title": title, "description": payload.get("description"), "private": bool(payload.get("private")),
            "theme": "default", "position": 0, "lastUpdated": _now(), "items": [],
        }
        self.collections[object_id] = collection
        return 200, self._collection_json(collection), {}

    def _add_collection_item(self, collection: dict, payload: dict, user: str):
        item = payload.get("item") or {}
        item_id, item_type = item.get("id"), item.get("type")
        if not item_id or not item_type:
            raise HubError(400, "`item` needs an `id` and a `type`")
        if item_type in URL_PREFIXES:
            self._repo(item_type, item_id, user)  # 404 for a repo that does not exist or is hidden
        if any(i["id"] == item_id and i["type"] == item_type for i in collection["items"]):
            raise HubError(409, "Item already exists in collection")
        entry = {"_id": self._object_id(), "id": item_id, "type": item_type}
        if payload.get("note"):
            entry["note"] = payload["note"]
        collection["items"].append(entry)
        collection["lastUpdated"] = _now()
        return 200, self._collection_json(collection), {}

    def _collection_json(self, collection: dict, truncate: bool = False) -> dict:
        items = collection["items"][:4] if truncate else collection["items"]
        namespace = collection["namespace"]
        is_org = any(namespace in names for names in self.orgs.values())
        data = {
            "slug": collection["slug"], "title": collection["title"], "description": collection["description"],
            "owner": {"name": namespace, "type": "org" if is_org else "user"},
            "items": [
                {"_id": i["_id"], "id": i["id"], "type": i["type"], "position": position,
                 **({"note": {"text": i["note"], "html": i["note"]}} if i.get("note") else {}),
                 **({"repoType": i["type"], "author": i["id"].split("/")[0]} if i["type"] in URL_PREFIXES else {})}
                for position, i in enumerate(items)
            ],
            "lastUpdated": collection["lastUpdated"], "private": collection["private"], "theme": collection["theme"],
            "upvotes": 0, "isUpvotedByUser": False, "gating": False,
        }
        if not truncate:  # `list_collections` passes `position` itself
            data["position"] = collection["position"]
        return data


# ---------------------------------------------------------------------- pointing clients at a server
def point_clients_at(url: str, online: bool = True) -> Callable[[], None]:
    """Point an already-imported `huggingface_hub` (and `transformers`) at `url`; returns a function that undoes it.

    `huggingface_hub` reads `HF_ENDPOINT` once, at import, into several constants (and a module-level `HfApi`);
    `transformers` caches its own `HfApi`. Setting `HF_ENDPOINT` later does nothing, so patch them all. `HfApi`
    objects created before the call keep their old endpoint.

    Args:
        url (`str`): The server's base URL, e.g. `HubServer.url`.
        online (`bool`, *optional*, defaults to `True`): Also turn off offline mode (`HF_HUB_OFFLINE`) in the client.
    """
    from urllib.parse import urlsplit as _urlsplit

    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _http

    url = url.rstrip("/")
    saved = [
        (constants, "ENDPOINT", constants.ENDPOINT),
        (constants, "HUGGINGFACE_CO_URL_TEMPLATE", constants.HUGGINGFACE_CO_URL_TEMPLATE),
        (constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS),
        (constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE),
        (_http, "_HUB_ORIGINS", _http._HUB_ORIGINS),
        (hf_api.api, "endpoint", hf_api.api.endpoint),
    ]
    constants.ENDPOINT = url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    constants.HF_URL_HOSTS = constants.HF_URL_HOSTS | {_urlsplit(url).hostname}
    if online:
        constants.HF_HUB_OFFLINE = False
    _http._HUB_ORIGINS = _http._HUB_ORIGINS | {_http._url_origin(url)}
    hf_api.api.endpoint = url
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        saved.append((transformers_hub, "_hf_api", transformers_hub._hf_api))
        transformers_hub._hf_api = None  # rebuilt on next use, from the patched constants

    def undo() -> None:
        for owner, name, value in saved:
            setattr(owner, name, value)

    return undo


def start_session_hub(tokens: dict[str, str] | None = None, orgs: dict[str, list[str]] | None = None,
                      hf_home: str | os.PathLike | None = None) -> HubServer:
    """Start a `HubServer` for a whole pytest session and point the Hub clients at it.

    Call it at the top of `conftest.py`, before anything imports `huggingface_hub`: it sets `HF_ENDPOINT` (read once,
    at import). If `huggingface_hub` is already imported, it patches it instead (`point_clients_at`).

    It also removes `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` (the client refuses every request in offline mode) and
    `HF_TOKEN`, and points `HF_TOKEN_PATH` at an empty file location, so that a developer's own token is never sent
    (an unknown token gets a 401 here, as on the Hub, even for public reads).

    Args:
        tokens (`dict[str, str]`, *optional*): Token -> user, see `HubServer`.
        orgs (`dict[str, list[str]]`, *optional*): User -> organisations, see `HubServer`.
        hf_home (`str` or `os.PathLike`, *optional*): If given, set as `HF_HOME` (cache, token and settings folder).

    Returns:
        The started `HubServer`; stop it at session end (or let the daemon thread die with the process).
    """
    hub = HubServer(tokens=tokens, orgs=orgs).start()
    os.environ["HF_ENDPOINT"] = hub.url
    for name in (*_OFFLINE_VARIABLES, "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        os.environ.pop(name, None)
    os.environ["HF_TOKEN_PATH"] = os.path.join(tempfile.mkdtemp(prefix="hub-session-"), "token")
    if hf_home is not None:
        os.environ["HF_HOME"] = os.fspath(hf_home)
    if "huggingface_hub" in sys.modules:
        point_clients_at(hub.url)
    return hub
