"""An in-process Hugging Face Hub for tests: stdlib ``http.server`` on 127.0.0.1.

It speaks the endpoints the real ``huggingface_hub`` client uses (version 2.x), keeps git-like
repositories in memory (branches pointing to immutable commits of files) and logs every
request, so tests can assert on what the client asked for:

- ``HEAD``/``GET /{owner}/{name}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``,
  ``Content-Length`` and ``Connection: close``;
- ``GET /api/models/{owner}/{name}[/revision/{rev}]`` (JSON with ``sha``, ``siblings``);
- ``GET /api/models/{owner}/{name}/tree/{rev}[/{path}]`` (files with ``oid`` and ``size``);
- ``POST /api/repos/create``, ``POST /api/validate-yaml``,
  ``POST /api/models/{repo}/branch/{branch}``,
  ``POST /api/models/{repo}/preupload/{rev}`` (every file "regular") and
  ``POST /api/models/{repo}/commit/{rev}`` (NDJSON, base64 files);
- 404s with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    private: bool = False


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]


class FakeHub:
    """A hub server on 127.0.0.1 (a free port), started with :meth:`start`.

    Examples:
        >>> hub = FakeHub().start()
        >>> sha = hub.commit("acme/demo", {"a.txt": b"hello"})
        >>> hub.stop()
    """

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        #: Files whose GET answers 404 although the tree lists them (a broken storage).
        self.missing_blobs: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "the server is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- repositories ----------------------------------------------------------------------
    def commit(
        self, repo_id: str, files: dict[str, bytes], *, branch: str = "main", replace=True
    ) -> str:
        """Commit ``files`` to ``branch`` (creating repo and branch); returns the commit sha."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.branches.get(branch)
            tree = {} if replace or parent is None else dict(repo.commits[parent])
            tree.update(files)
            self._counter += 1
            sha = hashlib.sha1(f"{repo_id}:{branch}:{self._counter}".encode()).hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
            return sha

    def commit_folder(self, repo_id: str, folder: Path, **kwargs) -> str:
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        return self.commit(repo_id, files, **kwargs)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches.get(revision, revision)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def log(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request so far, in order."""
        with self._lock:
            return [(r.method, r.path) for r in self.requests]

    def _resolve(self, repo_id: str, revision: str) -> tuple[Repo | None, str | None]:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, None
        if revision in repo.branches:
            return repo, repo.branches[revision]
        if revision in repo.commits:
            return repo, revision
        return repo, None


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002  (the stdlib's signature)
            pass

        # -- plumbing ----------------------------------------------------------------------
        def _record(self) -> tuple[list[str], str]:
            split = urlsplit(self.path)
            with hub._lock:
                hub.requests.append(
                    Request(
                        self.command,
                        unquote(split.path),
                        split.query,
                        {key.lower(): value for key, value in self.headers.items()},
                    )
                )
            # Split before unquoting: a revision like refs%2Fpr%2F1 is one segment.
            return [unquote(part) for part in split.path.strip("/").split("/")], split.query

        def _send(
            self, status: int, body: bytes = b"", headers: dict | None = None, head=False
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self.close_connection = True

        def _json(self, status: int, payload, head=False) -> None:
            body = json.dumps(payload).encode()
            self._send(status, body, {"Content-Type": "application/json"}, head=head)

        def _error(self, status: int, code: str | None, message: str, head=False) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            body = json.dumps({"error": message}).encode()
            self._send(status, body, headers, head=head)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        # -- GET / HEAD ------------------------------------------------------------------------
        def do_HEAD(self):  # noqa: N802
            self._get(head=True)

        def do_GET(self):  # noqa: N802
            self._get(head=False)

        def _get(self, head: bool) -> None:
            parts, _ = self._record()
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve_file(f"{parts[0]}/{parts[1]}", parts[3], parts[4:], head)
            if len(parts) >= 4 and parts[:2] == ["api", "models"]:
                repo_id = f"{parts[2]}/{parts[3]}"
                rest = parts[4:]
                if not rest:
                    return self._repo_info(repo_id, "main")
                if rest[0] == "revision" and len(rest) == 2:
                    return self._repo_info(repo_id, rest[1])
                if rest[0] == "tree" and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(p for p in rest[2:] if p))
            return self._error(404, None, f"no route for {self.command} {self.path}", head)

        def _resolve_file(self, repo_id: str, rev: str, path: list[str], head: bool) -> None:
            repo, sha = hub._resolve(repo_id, rev)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            name = "/".join(path)
            content = repo.commits[sha].get(name)
            if content is None or (repo_id, name) in hub.missing_blobs:
                return self._error(404, "EntryNotFound", f"{name} does not exist at {rev}", head)
            headers = {
                "X-Repo-Commit": sha,
                "ETag": f'"{git_blob_sha(content)}"',
                "Content-Type": "application/octet-stream",
            }
            self._send(200, content, headers, head=head)

        def _repo_info(self, repo_id: str, rev: str) -> None:
            repo, sha = hub._resolve(repo_id, rev)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            self._json(
                200,
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": sha,
                    "private": repo.private,
                    "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])],
                },
            )

        def _tree(self, repo_id: str, rev: str, prefix: str) -> None:
            repo, sha = hub._resolve(repo_id, rev)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            entries = [
                {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": name}
                for name, content in sorted(repo.commits[sha].items())
                if not prefix or name.startswith(prefix.rstrip("/") + "/")
            ]
            self._json(200, entries)

        # -- POST ------------------------------------------------------------------------------
        def do_POST(self):  # noqa: N802
            parts, _ = self._record()
            body = self._body()
            if parts == ["api", "repos", "create"]:
                return self._create_repo(json.loads(body or b"{}"))
            if parts == ["api", "validate-yaml"]:
                return self._validate_yaml(json.loads(body)["content"])
            if len(parts) == 6 and parts[:2] == ["api", "models"]:
                repo_id, action, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
                if action == "preupload":
                    return self._preupload(repo_id, rev, json.loads(body))
                if action == "commit":
                    return self._commit(repo_id, rev, body)
                if action == "branch":
                    return self._branch(repo_id, rev, json.loads(body or b"{}"))
            return self._error(404, None, f"no route for POST {self.path}")

        def _create_repo(self, payload: dict) -> None:
            repo_id = f"{payload.get('organization')}/{payload.get('name')}"
            with hub._lock:
                if repo_id in hub.repos:
                    # Like the Hub: a 409 that still says where the repository is.
                    message = "You already created this model repo"
                    body = {"error": message, "url": f"{hub.endpoint}/{repo_id}"}
                    return self._send(
                        409, json.dumps(body).encode(), {"X-Error-Message": message}
                    )
                hub.repos[repo_id] = Repo(private=bool(payload.get("private")))
            # An empty repository still has a main branch with one (empty) commit.
            hub.commit(repo_id, {})
            self._json(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})

        def _validate_yaml(self, content: str) -> None:
            # The Hub checks a README.md's front matter before an upload; so does this one.
            import yaml

            head, sep, rest = content.partition("\n---\n")
            errors = []
            if not head.startswith("---") or not sep:
                errors.append({"message": "README.md has no YAML front matter"})
            else:
                try:
                    metadata = yaml.safe_load(head[3:]) or {}
                except yaml.YAMLError as error:
                    errors.append({"message": f"invalid YAML: {error}"})
                else:
                    if not isinstance(metadata, dict):
                        errors.append({"message": "front matter is not a mapping"})
            if errors:
                return self._json(400, {"errors": errors})
            self._json(200, {"errors": [], "warnings": []})

        def _branch(self, repo_id: str, branch: str, payload: dict) -> None:
            repo, start = hub._resolve(repo_id, payload.get("startingPoint") or "main")
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if branch in repo.branches:
                return self._error(409, None, f"Reference refs/heads/{branch} already exists")
            repo.branches[branch] = start
            self._json(200, {})

        def _preupload(self, repo_id: str, rev: str, payload: dict) -> None:
            repo, sha = hub._resolve(repo_id, rev)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            current = repo.commits.get(sha, {}) if sha else {}
            files = [
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha(current[item["path"]]) if item["path"] in current else None,
                }
                for item in payload["files"]
            ]
            self._json(200, {"files": files, "commitOid": sha})

        def _commit(self, repo_id: str, rev: str, body: bytes) -> None:
            repo, sha = hub._resolve(repo_id, rev)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if rev not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            added: dict[str, bytes] = {}
            deleted: list[str] = []
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    if value.get("encoding") != "base64":
                        return self._error(400, None, f"unsupported encoding {value}")
                    added[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "deletedFile":
                    deleted.append(item["value"]["path"])
                elif item["key"] != "header":
                    return self._error(400, None, f"unsupported commit operation {item['key']}")
            tree = dict(repo.commits[sha])
            tree.update(added)
            for name in deleted:
                tree.pop(name, None)
            new = hub.commit(repo_id, tree, branch=rev)
            self._json(
                200,
                {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{new}", "commitOid": new},
            )

    return Handler
