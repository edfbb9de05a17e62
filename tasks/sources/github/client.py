"""GitHub App access through githubkit: the app's JWT, then an installation token.

Only the REST calls the bot makes are wrapped here. Responses are read as plain JSON (the
fields the bot uses), so a stand-in server in the tests need not return GitHub's whole
schema. Rate limits: githubkit retries a 403/429 that carries ``Retry-After`` or
``X-RateLimit-Remaining: 0`` after the time GitHub names (configured here with more tries
than its default), and this wrapper also waits before a call when the last response said the
quota is nearly spent, until ``X-RateLimit-Reset``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("patchswarm.github")

DEFAULT_API = "https://api.github.com"
WRITE_PERMISSIONS = ("admin", "maintain", "write")


class GitHubError(Exception):
    """A GitHub call failed; the message names the call and GitHub's answer."""


def _githubkit():  # noqa: ANN202
    try:
        import githubkit
        from githubkit.retry import RetryChainDecision, RetryRateLimit, RetryServerError
    except ImportError as exc:
        raise GitHubError("the GitHub bot needs the `bot` extra: pip install "
                          f"'patchswarm[bot]' ({exc})") from exc
    return githubkit, RetryChainDecision, RetryRateLimit, RetryServerError


@dataclass
class RateLimit:
    """What the last response said of the quota."""

    remaining: int | None = None
    reset: float | None = None
    """Unix time at which the quota refills."""


class RateGate:
    """Waits before a call when the quota is nearly spent (``X-RateLimit-Remaining``)."""

    def __init__(self, min_remaining: int = 5, max_wait: float = 900.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.min_remaining = min_remaining
        self.max_wait = max_wait
        self.sleep = sleep
        self.state = RateLimit()
        self.waited: list[float] = []
        self._lock = threading.Lock()

    def observe(self, response: httpx.Response) -> None:
        h = response.headers
        with self._lock:
            if "x-ratelimit-remaining" in h:
                try:
                    self.state.remaining = int(h["x-ratelimit-remaining"])
                    self.state.reset = float(h.get("x-ratelimit-reset", 0)) or None
                except ValueError:
                    pass

    def before_call(self) -> None:
        with self._lock:
            remaining, reset = self.state.remaining, self.state.reset
        if remaining is None or remaining > self.min_remaining or reset is None:
            return
        wait = reset - time.time() + 1.0
        if wait <= 0:
            return
        if wait > self.max_wait:
            raise GitHubError(f"the GitHub rate limit is spent ({remaining} calls left) and "
                              f"refills in {wait:.0f}s; try again later")
        log.warning("GitHub rate limit nearly spent (%s left): waiting %.0fs", remaining, wait)
        self.waited.append(wait)
        self.sleep(wait)
        with self._lock:
            self.state.remaining = None


class GitHubApp:
    """The app itself (JWT auth): mints installation tokens."""

    def __init__(self, app_id: int | str, private_key: str, base_url: str = DEFAULT_API,
                 rate_retries: int = 3, timeout: float = 30.0,
                 gate: RateGate | None = None) -> None:
        gk, chain, retry_rate, retry_server = _githubkit()
        self.app_id = app_id
        self.base_url = base_url
        self.timeout = timeout
        self.gate = gate or RateGate()
        self._retry = chain(retry_rate(rate_retries), retry_server(3))
        self._gk = gk
        from githubkit.cache import MemCacheStrategy

        # githubkit's default cache is one per process, keyed by app id: a JWT made with one
        # key would serve another app object of the same id. Each app keeps its own.
        self._cache = MemCacheStrategy()
        self._app_auth = gk.AppAuthStrategy(app_id, private_key)
        self._app = self._client(self._app_auth)

    def _client(self, auth: Any) -> Any:
        return self._gk.GitHub(
            auth, base_url=self.base_url, auto_retry=self._retry, http_cache=False,
            cache_strategy=self._cache,
            timeout=self.timeout, user_agent="patchswarm-bot",
            event_hooks={"response": [self.gate.observe]},
        )

    def installation_token(self, installation_id: int) -> tuple[str, str]:
        """A fresh installation token and its expiry (``POST
        /app/installations/{id}/access_tokens``, authenticated with the app's RS256 JWT)."""
        data = _call(self.gate, "create an installation token",
                     lambda: self._app.rest.apps.create_installation_access_token(
                         installation_id))
        return data["token"], data.get("expires_at", "")

    def installation(self, installation_id: int) -> Installation:
        token, expires = self.installation_token(installation_id)
        return Installation(self, token, expires)


class Installation:
    """Calls as one installation of the app, with its token."""

    def __init__(self, app: GitHubApp, token: str, expires_at: str = "") -> None:
        self.app = app
        self.token = token
        self.expires_at = expires_at
        self.gh = app._client(app._gk.TokenAuthStrategy(token))

    def repo(self, owner: str, name: str) -> dict[str, Any]:
        return _call(self.app.gate, f"read {owner}/{name}",
                     lambda: self.gh.rest.repos.get(owner, name))

    def permission(self, owner: str, name: str, user: str) -> str:
        """``admin``, ``maintain``, ``write``, ``triage``, ``read`` or ``none``."""
        try:
            data = _call(self.app.gate, f"read {user}'s permission on {owner}/{name}",
                         lambda: self.gh.rest.repos.get_collaborator_permission_level(
                             owner, name, user))
        except GitHubError as exc:
            if " 404" in str(exc):  # not a collaborator
                return "none"
            raise
        return str(data.get("role_name") if data.get("role_name") in WRITE_PERMISSIONS
                   else data.get("permission", "none"))

    def comment(self, owner: str, name: str, number: int, body: str) -> dict[str, Any]:
        return _call(self.app.gate, f"comment on {owner}/{name}#{number}",
                     lambda: self.gh.rest.issues.create_comment(owner, name, number,
                                                                body=body))

    def draft_pull(self, owner: str, name: str, title: str, head: str, base: str,
                   body: str) -> dict[str, Any]:
        return _call(self.app.gate, f"open a draft pull request on {owner}/{name}",
                     lambda: self.gh.rest.pulls.create(owner, name, title=title, head=head,
                                                       base=base, body=body, draft=True,
                                                       maintainer_can_modify=True))


def _call(gate: RateGate, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
    from githubkit.exception import GitHubException, RequestFailed

    gate.before_call()
    try:
        resp = fn()
    except RequestFailed as exc:
        status = exc.response.status_code
        try:
            message = exc.response.json().get("message", "")
        except Exception:  # noqa: BLE001
            message = exc.response.text[:200]
        raise GitHubError(f"could not {what}: GitHub answered {status} {message}") from exc
    except GitHubException as exc:
        raise GitHubError(f"could not {what}: {exc}") from exc
    return resp.json()
