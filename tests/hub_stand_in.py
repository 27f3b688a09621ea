"""A local stand-in for the Hugging Face hub: the few HTTP endpoints the real hub client calls to download.

Serves repositories from folders on disk, one commit each, at `http://127.0.0.1:PORT`; pointing the
client's `HF_ENDPOINT` (`huggingface_hub.constants.ENDPOINT`) at it lets `snapshot_download`,
`hf_hub_download` and `HfApi` run unchanged, as on a login node. Every request is counted, so a test
can show that a job touched no network at all.

Endpoints: repository info (`/api/{models,datasets}/REPO[/revision/REV]`, with its commit and files),
its file listing (`.../tree/REV`),
a gated-access check (`/api/models/REPO/auth-check`), the current user (`/api/whoami-v2`) and file
downloads (`HEAD`/`GET /[datasets/]REPO/resolve/REV/PATH`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class Repo:
    folder: Path
    commit: str
    gated: bool = False
    accepted: bool = True  # for a gated repository: whether the token's user accepted its licence

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())


@dataclass
class HubStandIn:
    """Repositories by (kind, id), kind `model` or `dataset`; `token` is the one token allowed past a gate."""

    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    token: str | None = None
    requests: list[str] = field(default_factory=list)

    def add(self, kind: str, repo_id: str, folder: Path, gated: bool = False, accepted: bool = True) -> str:
        digest = hashlib.sha1()
        for name in Repo(folder, "").files():
            digest.update(name.encode() + (folder / name).read_bytes())
        commit = digest.hexdigest()
        self.repos[(kind, repo_id)] = Repo(folder, commit, gated, accepted)
        return commit

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def do_HEAD(self):
                self._answer(head=True)

            def do_GET(self):
                self._answer(head=False)

            def _authorised(self, repo: Repo) -> bool:
                return not repo.gated or (repo.accepted and self.headers.get("authorization") == f"Bearer {hub.token}")

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head=False):
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(name, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, value, headers=None, head=False):
                self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})},
                           head)

            def _answer(self, head: bool):
                path = unquote(self.path.split("?")[0])
                hub.requests.append(f"{self.command} {path}")
                if path == "/api/whoami-v2":
                    ok = hub.token and self.headers.get("authorization") == f"Bearer {hub.token}"
                    return self._json(200 if ok else 401, {"name": "stand-in-user"} if ok else {"error": "no token"})
                parts = path.strip("/").split("/")
                if parts[0] == "api":
                    return self._api(parts[1:], head)
                kind = "dataset" if parts[0] == "datasets" else "model"
                parts = parts[1:] if kind == "dataset" else parts
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._json(404, {"error": "not found"}, head=head)
                repo = hub.repos.get((kind, "/".join(parts[:2])))
                if repo is None:
                    return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                if not self._authorised(repo):
                    return self._json(403, {"error": "gated"}, {"X-Error-Code": "GatedRepo"}, head)
                file = repo.folder / "/".join(parts[4:])
                if not file.is_file():
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound",
                                                                           "X-Repo-Commit": repo.commit}, head)
                body = file.read_bytes()
                self._send(200, body, {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'},
                           head)

            def _api(self, parts: list[str], head: bool):
                kind = {"models": "model", "datasets": "dataset"}.get(parts[0])
                repo = hub.repos.get((kind, "/".join(parts[1:3])))
                if repo is None:
                    return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                if not self._authorised(repo):
                    return self._json(403, {"error": "gated"}, {"X-Error-Code": "GatedRepo"}, head)
                if parts[3:] == ["auth-check"]:
                    return self._json(200, {}, head=head)
                if parts[3:4] == ["tree"]:
                    return self._json(200, [{"type": "file", "path": name, "size": (repo.folder / name).stat().st_size,
                                             "oid": hashlib.sha1((repo.folder / name).read_bytes()).hexdigest()}
                                            for name in repo.files()], head=head)
                info = {"id": "/".join(parts[1:3]), "sha": repo.commit, "private": False, "gated": repo.gated,
                        "siblings": [{"rfilename": name} for name in repo.files()]}
                return self._json(200, info, head=head)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{server.server_address[1]}"
