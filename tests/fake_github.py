"""A stand-in for GitHub's REST API on 127.0.0.1, for the bot's tests.

It implements the endpoints the bot calls, checks authentication the way GitHub does (the
app's JWT must be RS256-signed by the app's key; other calls need an installation token it
issued), sends rate-limit headers, records every request in order, and can answer a call
with a rate-limit error once (``rate_limit_once``). A repository's ``clone_url`` is a local
bare repository made by the test.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    auth: str
    """``jwt``, ``token`` or ``none``: how the request authenticated."""
    body: Any = None

    def line(self) -> str:
        extra = ""
        if isinstance(self.body, dict):
            if "draft" in self.body:
                extra = f" draft={self.body['draft']} head={self.body.get('head')}"
            elif "body" in self.body:
                first = str(self.body["body"]).splitlines()[0] if self.body["body"] else ""
                extra = f" body={first[:70]!r}"
        return f"{self.method} {self.path} [{self.auth}] -> {self.status}{extra}"


@dataclass
class FakeRepo:
    clone_url: str
    default_branch: str = "main"
    permissions: dict[str, str] = field(default_factory=dict)
    """login → admin / maintain / write / triage / read."""


class FakeGitHub:
    def __init__(self, app_id: int, public_key_pem: bytes, installation_id: int,
                 repos: dict[str, FakeRepo]) -> None:
        self.app_id = app_id
        self.public_key = public_key_pem
        self.installation_id = installation_id
        self.repos = repos
        self.requests: list[Recorded] = []
        self.tokens: set[str] = set()
        self.comments: list[dict[str, Any]] = []
        self.pulls: list[dict[str, Any]] = []
        self.rate_limit_once: set[tuple[str, str]] = set()
        """(method, path regex) answered 403 with Retry-After: 1 the first time."""
        self.remaining = 5000
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def transcript(self) -> list[str]:
        with self._lock:
            return [r.line() for r in self.requests]

    def calls(self, method: str | None = None, pattern: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and re.search(pattern, r.path)]

    # ------------------------------------------------------------------ handling

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake._serve(self, "POST")

        return Handler

    def _auth(self, header: str) -> tuple[str, bool]:
        if header.startswith("Bearer "):
            try:
                claims = jwt.decode(header[7:], self.public_key, algorithms=["RS256"],
                                    options={"require": ["iat", "exp", "iss"]})
            except jwt.PyJWTError:
                return "jwt", False
            return "jwt", str(claims["iss"]) == str(self.app_id)
        if header.startswith("token "):
            return "token", header[6:] in self.tokens
        return "none", False

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        path = h.path.split("?", 1)[0]
        kind, ok = self._auth(h.headers.get("Authorization", ""))
        status, data, headers = self._route(method, path, kind, ok, body)
        with self._lock:
            self.requests.append(Recorded(method, path, status, kind, body))
            self.remaining -= 1
            remaining = self.remaining
        out = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(out)))
        h.send_header("X-RateLimit-Limit", "5000")
        h.send_header("X-RateLimit-Remaining", str(max(0, remaining)))
        h.send_header("X-RateLimit-Used", str(5000 - max(0, remaining)))
        h.send_header("X-RateLimit-Reset", str(int(time.time()) + 3600))
        h.send_header("X-RateLimit-Resource", "core")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(out)

    def _route(self, method: str, path: str, kind: str, ok: bool,
               body: Any) -> tuple[int, Any, dict[str, str]]:
        for m, pat in list(self.rate_limit_once):
            if m == method and re.fullmatch(pat, path):
                self.rate_limit_once.discard((m, pat))
                return 403, {"message": "You have exceeded a secondary rate limit."}, {
                    "Retry-After": "1"}
        m = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if m and method == "POST":
            if kind != "jwt" or not ok:
                return 401, {"message": "A JSON web token could not be decoded"}, {}
            if int(m.group(1)) != self.installation_id:
                return 404, {"message": "Not Found"}, {}
            token = "ghs_" + secrets.token_hex(18)
            with self._lock:
                self.tokens.add(token)
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            return 201, {"token": token, "expires_at": expires,
                         "permissions": {"issues": "write", "pull_requests": "write",
                                         "contents": "write", "metadata": "read"},
                         "repository_selection": "all"}, {}
        if kind != "token" or not ok:
            return 401, {"message": "Bad credentials"}, {}
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
        if not m or f"{m.group(1)}/{m.group(2)}" not in self.repos:
            return 404, {"message": "Not Found"}, {}
        owner, name, rest = m.group(1), m.group(2), m.group(3) or ""
        repo = self.repos[f"{owner}/{name}"]
        if method == "GET" and rest == "":
            return 200, {"id": 1, "name": name, "full_name": f"{owner}/{name}",
                         "owner": {"login": owner}, "private": False,
                         "clone_url": repo.clone_url, "default_branch": repo.default_branch,
                         "html_url": f"https://github.example/{owner}/{name}"}, {}
        pm = re.fullmatch(r"/collaborators/([^/]+)/permission", rest)
        if method == "GET" and pm:
            user = pm.group(1)
            if user not in repo.permissions:
                return 404, {"message": f"{user} is not a user"}, {}
            perm = repo.permissions[user]
            legacy = {"maintain": "write", "triage": "read"}.get(perm, perm)
            return 200, {"permission": legacy, "role_name": perm,
                         "user": {"login": user}}, {}
        cm = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if method == "POST" and cm:
            if not isinstance(body, dict) or not body.get("body"):
                return 422, {"message": "body is required"}, {}
            with self._lock:
                cid = 1000 + len(self.comments)
                self.comments.append({"id": cid, "issue": int(cm.group(1)), **body})
            return 201, {"id": cid, "body": body["body"],
                         "html_url": f"https://github.example/{owner}/{name}/issues/"
                                     f"{cm.group(1)}#issuecomment-{cid}"}, {}
        if method == "POST" and rest == "/pulls":
            if not isinstance(body, dict) or body.get("draft") is not True:
                return 422, {"message": "this stand-in only accepts draft pull requests"}, {}
            head = str(body.get("head", ""))
            if subprocess.run(["git", "-C", repo.clone_url, "rev-parse", "--verify",
                               "--quiet", f"refs/heads/{head}"],
                              capture_output=True).returncode != 0:
                return 422, {"message": "Validation Failed",
                             "errors": [{"field": "head", "code": "invalid"}]}, {}
            with self._lock:
                number = 100 + len(self.pulls)
                self.pulls.append({"number": number, **body})
            return 201, {"number": number, "draft": True, "state": "open",
                         "html_url": f"https://github.example/{owner}/{name}/pull/{number}",
                         "head": {"ref": head}, "base": {"ref": body.get("base")}}, {}
        return 404, {"message": "Not Found"}, {}
