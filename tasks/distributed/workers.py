"""Starting Celery worker processes: the argument list and the child process, shared by
``patchswarm worker``, the pipeline benchmark and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

QUEUES = ("verify", "sample")


def default_pool(queues: list[str]) -> str:
    """prefork for verifying (time limits need it); threads where a model is held, since a
    prefork child is daemonic and vLLM's engine must start processes of its own."""
    return "threads" if any(q.startswith("sample") for q in queues) else "prefork"


def worker_argv(queues: list[str], concurrency: int, pool: str, hostname: str | None,
                loglevel: str) -> list[str]:
    argv = ["worker", "-Q", ",".join(queues), "-c", str(concurrency), "-P", pool,
            "-l", loglevel, "--without-gossip", "--without-mingle"]
    if hostname:
        argv += ["-n", hostname]
    return argv


def spawn_worker(broker: str, queues: list[str], concurrency: int = 1,
                 hostname: str | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None, pool: str | None = None,
                 loglevel: str = "INFO") -> subprocess.Popen:
    """Start ``celery -A patchswarm.tasks.distributed.celery_app worker`` as a child process
    in its own process group (so that it can be stopped, or killed, as a whole)."""
    full_env = {**os.environ, "PATCHSWARM_BROKER": broker, **(env or {})}
    argv = [sys.executable, "-m", "celery", "-A", "patchswarm.tasks.distributed.celery_app",
            *worker_argv(queues, concurrency, pool or default_pool(queues), hostname, loglevel)]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        if log_path:
            out.close()
