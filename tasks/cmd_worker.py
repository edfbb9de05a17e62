"""``patchswarm worker``: a Celery worker for the ``verify`` queue (Docker machines) or the
``sample`` queue (machines that hold a model or reach an OpenAI-compatible server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

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
    """Start ``celery -A patchswarm.tasks.celery_app worker`` as a child process in its own
    process group (so that it can be stopped, or killed, as a whole)."""
    full_env = {**os.environ, "PATCHSWARM_BROKER": broker, **(env or {})}
    argv = [sys.executable, "-m", "celery", "-A", "patchswarm.tasks.celery_app",
            *worker_argv(queues, concurrency, pool or default_pool(queues), hostname, loglevel)]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        if log_path:
            out.close()


@click.command("worker")
@click.option("--queues", "-Q", default="verify", show_default=True,
              help="Comma-separated queues: verify (needs Docker), sample (needs a model or "
                   "--endpoint on the run command), or both.")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Tasks at once (default: one per core for verify, 1 for sample).")
@click.option("--broker", default=None, envvar="PATCHSWARM_BROKER",
              help="Redis URL, e.g. redis://host:6379/0 (default $PATCHSWARM_BROKER, else "
                   "redis://127.0.0.1:6379/0).")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default=None,
              help="Celery pool (default: prefork for verify, threads for sample).")
@click.option("--hostname", "-n", default=None, help="Worker name, e.g. verify1@%h.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--visibility-timeout", type=float, default=None,
              help="Seconds after which a task of a vanished worker is delivered again "
                   "(default 3600; must exceed the longest verification).")
def worker(queues: str, concurrency: int | None, broker: str | None, pool: str | None,
           hostname: str | None, loglevel: str, visibility_timeout: float | None) -> None:
    """Run a worker that takes sampling or verification tasks from the broker."""
    from .distributed import DEFAULT_BROKER, BrokerError, check_broker

    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not names:
        raise click.UsageError("give at least one queue: --queues verify")
    broker = broker or DEFAULT_BROKER
    try:
        check_broker(broker)
    except BrokerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    pool = pool or default_pool(names)
    if pool == "threads" and any(q.startswith("verify") for q in names):
        click.echo("warning: the threads pool cannot enforce time limits on verify tasks; "
                   "a hung verification is then only stopped by the sandbox's own deadline",
                   err=True)
    if concurrency is None:
        concurrency = 1 if any(q.startswith("sample") for q in names) else (os.cpu_count() or 1)
    os.environ["PATCHSWARM_BROKER"] = broker
    if visibility_timeout is not None:
        os.environ["PATCHSWARM_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
    from . import celery_app

    celery_app.configure(broker)
    celery_app.app.worker_main(worker_argv(names, concurrency, pool, hostname, loglevel))


COMMANDS = [worker]
