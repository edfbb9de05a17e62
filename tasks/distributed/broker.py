"""The broker's side of the distributed runner: addresses, queue and task names, checking
that a broker answers, and the verdict cache the orchestrator and the workers share in Redis.

Both ends import this module (the orchestrator in ``distributed``, the workers in
``celery_app``), so neither has to import the other.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from patchswarm.tasks.engine.cache import RedisVerdictCache

log = logging.getLogger("patchswarm.distributed")

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
VERIFY_QUEUE = "verify"
SAMPLE_QUEUE = "sample"
VERIFY_TASK = "patchswarm.verify"
SAMPLE_TASK = "patchswarm.sample"
PROGRESS_STATE = "PROGRESS"
"""The task state a sampling worker stores while it generates (its counts as the result)."""



class BrokerError(Exception):
    """The broker cannot be used; the message names it and says what to do."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return url


def check_broker(url: str, timeout: float = 3.0) -> None:
    """Raise BrokerError, naming the URL, unless a Redis server answers there."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise BrokerError(f"unsupported broker {redact(url)!r}: patchswarm runs on Redis; "
                          "give --broker redis://HOST:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        raise BrokerError(
            f"cannot reach the broker at {redact(url)}: {str(exc).rstrip('.')}. Start Redis there "
            "(e.g. `docker compose -f docker/compose.yml up -d redis`), or leave out --broker "
            "to run everything in this process."
        ) from exc
    except ValueError as exc:
        raise BrokerError(f"cannot parse the broker URL {redact(url)!r}: {exc}") from exc


class SharedVerdictCache(RedisVerdictCache):
    """The verdict cache in Redis, shared by the orchestrator and every worker. Redis being
    away makes it miss, never fail: the worst case is verifying a change again."""

    def __init__(self, url: str, prefix: str = "patchswarm:verdict:") -> None:
        super().__init__(url, prefix)
        self.url = url
        self.prefix = prefix

    def conf(self) -> dict[str, str]:
        return {"url": self.url, "prefix": self.prefix}

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return super().get(key)
        except redis.RedisError as exc:
            log.warning("verdict cache unavailable (%s): treated as a miss", exc)
            return None

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        try:
            super().put(key, verdict)
        except redis.RedisError as exc:
            log.warning("verdict cache unavailable (%s): verdict not cached", exc)
