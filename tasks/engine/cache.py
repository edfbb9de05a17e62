"""The verdict cache: a patch verified once is never run again, in one run or across runs.

Identity is exact. A verdict is reused only for the same applied bytes: the key is the SHA-256
of the exact patch text, never the normalised-patch key that groups votes. Two patches whose
normalised code is equal may still behave differently (a ``# coding:`` cookie is a comment
that changes how the file decodes; a docstring read through ``__doc__``; tabs against
spaces), so neither may inherit the other's verdict. The key also names the environment
image, the verifier and its settings (which carry the verifier's policy version), the test
spec and the sandbox limits the verdict was reached under.

A local SQLite file serves one machine; ``RedisVerdictCache`` serves many workers. Timeouts
and errors of the sandbox itself are not cached, since a retry may succeed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

CACHEABLE = ("passed", "failed")
KEY_FORMAT = 2
"""Bumped whenever what a key names changes, so that entries of older keys are never hit
(format 1 keyed on the normalised patch)."""


def patch_digest(patch: str) -> str:
    """SHA-256 of the exact patch text, the identity of an applied change."""
    return hashlib.sha256(patch.encode("utf-8", "surrogatepass")).hexdigest()


def cache_key(image: str, patch: str, verifier: dict[str, Any], spec: dict[str, Any],
              limits: dict[str, Any] | None = None) -> str:
    """The cache key of ``patch`` (the exact text that is applied) verified by ``verifier``
    (its ``settings()``) against ``spec`` in ``image`` under ``limits``."""
    blob = json.dumps({"format": KEY_FORMAT, "image": image, "patch": patch_digest(patch),
                       "verifier": verifier, "spec": spec, "limits": limits or {}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class VerdictCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, verdict: dict[str, Any]) -> None: ...


class SqliteVerdictCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, v TEXT)")
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM verdicts WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        if verdict.get("status") not in CACHEABLE:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?)",
                             (key, json.dumps(verdict)))
            self._db.commit()


class RedisVerdictCache:
    def __init__(self, url: str, prefix: str = "patchswarm:verdict:") -> None:
        import redis

        self._r = redis.Redis.from_url(url)
        self._prefix = prefix

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._r.get(self._prefix + key)
        return json.loads(raw) if raw else None

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        if verdict.get("status") in CACHEABLE:
            self._r.set(self._prefix + key, json.dumps(verdict))


class NoCache:
    def get(self, key: str) -> dict[str, Any] | None:
        return None

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        pass
