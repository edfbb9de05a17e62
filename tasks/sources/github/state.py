"""The webhook's own records: delivery ids seen (SQLite, or Redis shared by several
receivers) and jobs with their status, so that a restart takes up what was left unfinished."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchswarm.tasks.sources.github.bot import Trigger


class Deliveries:
    """Delivery ids seen (SQLite); ``first_time`` is atomic."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def first_time(self, delivery: str, event: str) -> bool:
        return self.db.add_delivery(delivery, event)


class RedisDeliveries:
    """Delivery ids in Redis, kept a week (GitHub redelivers for three days)."""

    def __init__(self, url: str, prefix: str = "patchswarm:delivery:",
                 ttl: int = 7 * 86400) -> None:
        import redis

        self.r = redis.Redis.from_url(url, socket_timeout=5)
        self.r.ping()
        self.prefix = prefix
        self.ttl = ttl

    def first_time(self, delivery: str, event: str) -> bool:
        return bool(self.r.set(self.prefix + delivery, event, nx=True, ex=self.ttl))


ACTIVE = ("queued", "running")


class StateDB:
    """The bot's SQLite file: delivery ids and jobs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                    timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.lock = threading.Lock()
        with self.lock:
            self.conn.executescript("""
                CREATE TABLE IF NOT EXISTS deliveries (
                    id TEXT PRIMARY KEY, event TEXT, received REAL);
                CREATE TABLE IF NOT EXISTS jobs (
                    id TEXT PRIMARY KEY, delivery TEXT, repo TEXT, issue INTEGER,
                    status TEXT, trigger TEXT, info TEXT, created REAL, updated REAL);
                CREATE INDEX IF NOT EXISTS jobs_issue ON jobs (repo, issue, status);
            """)

    def add_delivery(self, delivery: str, event: str) -> bool:
        with self.lock:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?)",
                (delivery, event, time.time()))
            return cur.rowcount == 1

    def add_job(self, trig: Trigger) -> str | None:
        """A new job, or None when one for the same issue is already queued or running."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                busy = self.conn.execute(
                    "SELECT id FROM jobs WHERE repo=? AND issue=? AND status IN (?, ?)",
                    (trig.full_name, trig.number, *ACTIVE)).fetchone()
                if busy:
                    self.conn.execute("COMMIT")
                    return None
                job_id = uuid.uuid4().hex[:12]
                now = time.time()
                self.conn.execute(
                    "INSERT INTO jobs VALUES (?, ?, ?, ?, 'queued', ?, '{}', ?, ?)",
                    (job_id, trig.delivery, trig.full_name, trig.number,
                     json.dumps(trig.to_dict()), now, now))
                self.conn.execute("COMMIT")
                return job_id
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT id, delivery, repo, issue, status, trigger, info, created, updated "
                "FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "delivery", "repo", "issue", "status", "trigger", "info", "created",
                "updated")
        d = dict(zip(keys, row, strict=True))
        d["trigger"] = json.loads(d["trigger"])
        d["info"] = json.loads(d["info"])
        return d

    def jobs(self, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        with self.lock:
            ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM jobs ORDER BY created").fetchall()]
        out = [j for j in (self.job(i) for i in ids) if j]
        return [j for j in out if statuses is None or j["status"] in statuses]

    def update(self, job_id: str, status: str | None = None, **info: Any) -> None:
        with self.lock:
            row = self.conn.execute("SELECT status, info FROM jobs WHERE id=?",
                                    (job_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[1]), **info}
            self.conn.execute("UPDATE jobs SET status=?, info=?, updated=? WHERE id=?",
                              (status or row[0], json.dumps(merged), time.time(), job_id))

    def close(self) -> None:
        with self.lock:
            self.conn.close()
