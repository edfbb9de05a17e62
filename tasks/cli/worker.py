"""``patchswarm worker``: a Celery worker for the ``verify`` queue (Docker machines) or the
``sample`` queue (machines that hold a model or reach an OpenAI-compatible server).

Everything a task could abuse is this command's configuration, not the task's: sandbox limits
and network, the test timeout's ceiling, the verdict cache's address, the image names it runs
and where it may build images from (see ``task_schema``). Each option has a ``PATCHSWARM_*``
environment variable, which is also how the settings reach the pool processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from patchswarm.tasks.distributed.workers import (  # noqa: F401 - the command's own names
    QUEUES,
    default_pool,
    spawn_worker,
    worker_argv,
)


def worker_env(memory: str, cpus: float, pids: int, network: bool, runtime: str | None,
               max_timeout: float, cache_url: str | None, cache_prefix: str, no_cache: bool,
               image_prefixes: tuple[str, ...], build_roots: tuple[Path, ...],
               build_install: bool, secret_file: Path | None) -> dict[str, str]:
    """The worker's options as the environment ``task_schema.WorkerConfig`` reads."""
    env = {"PATCHSWARM_WORKER_MEMORY": memory, "PATCHSWARM_WORKER_CPUS": str(cpus),
           "PATCHSWARM_WORKER_PIDS": str(pids),
           "PATCHSWARM_WORKER_NETWORK": "1" if network else "0",
           "PATCHSWARM_WORKER_RUNTIME": runtime or "",
           "PATCHSWARM_WORKER_MAX_TIMEOUT": str(max_timeout),
           "PATCHSWARM_CACHE_PREFIX": cache_prefix}
    # Options given several times or as flags only add to what the environment already says.
    if no_cache:
        env["PATCHSWARM_CACHE"] = "0"
    if image_prefixes:
        env["PATCHSWARM_WORKER_IMAGES"] = ",".join(image_prefixes)
    if build_roots:
        env["PATCHSWARM_BUILD_ROOTS"] = os.pathsep.join(str(p.resolve()) for p in build_roots)
    if build_install:
        env["PATCHSWARM_BUILD_INSTALL"] = "1"
    if cache_url:
        env["PATCHSWARM_CACHE_URL"] = cache_url
    if secret_file:
        env["PATCHSWARM_TASK_SECRET_FILE"] = str(secret_file.resolve())
    return env


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
@click.option("--memory", envvar="PATCHSWARM_WORKER_MEMORY", default="1g", show_default=True,
              help="Most memory of one sandbox; a task may only ask for less.")
@click.option("--cpus", envvar="PATCHSWARM_WORKER_CPUS", type=float, default=1.0,
              show_default=True, help="Most CPUs of one sandbox.")
@click.option("--pids", envvar="PATCHSWARM_WORKER_PIDS", type=int, default=256,
              show_default=True, help="Most processes in one sandbox.")
@click.option("--sandbox-network/--no-sandbox-network", envvar="PATCHSWARM_WORKER_NETWORK",
              default=False, show_default=True,
              help="Give sandboxes a network (a task can never switch it on).")
@click.option("--runtime", envvar="PATCHSWARM_WORKER_RUNTIME", default=None,
              help="Container runtime of the sandboxes, e.g. runsc (gVisor).")
@click.option("--max-test-timeout", envvar="PATCHSWARM_WORKER_MAX_TIMEOUT", type=float,
              default=1800.0, show_default=True, help="Ceiling of a task's test timeout (s).")
@click.option("--cache-url", envvar="PATCHSWARM_CACHE_URL", default=None,
              help="Redis of the verdict cache (default: the broker).")
@click.option("--cache-prefix", envvar="PATCHSWARM_CACHE_PREFIX",
              default="patchswarm:verdict:", show_default=True)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the verdict cache.")
@click.option("--image-prefix", "image_prefixes", multiple=True,
              help="Image names this worker runs (default patchswarm/env:); repeatable.")
@click.option("--build-root", "build_roots", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build a missing environment image from a git repository inside this "
                   "folder (repeatable). Without it the worker builds nothing.")
@click.option("--build-install", is_flag=True,
              help="Also run a problem's install step (with network) when building.")
@click.option("--task-secret-file", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path),
              envvar="PATCHSWARM_TASK_SECRET_FILE",
              help="Refuse every task not signed with this shared secret (the orchestrator "
                   "reads the same PATCHSWARM_TASK_SECRET_FILE).")
def worker(queues: str, concurrency: int | None, broker: str | None, pool: str | None,
           hostname: str | None, loglevel: str, visibility_timeout: float | None,
           memory: str, cpus: float, pids: int, sandbox_network: bool, runtime: str | None,
           max_test_timeout: float, cache_url: str | None, cache_prefix: str, no_cache: bool,
           image_prefixes: tuple[str, ...], build_roots: tuple[Path, ...],
           build_install: bool, task_secret_file: Path | None) -> None:
    """Run a worker that takes sampling or verification tasks from the broker."""
    from patchswarm.tasks.distributed.orchestrator import DEFAULT_BROKER, BrokerError, check_broker
    from patchswarm.tasks.distributed.task_schema import ConfigError, WorkerConfig

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
    os.environ.update(worker_env(memory, cpus, pids, sandbox_network, runtime, max_test_timeout,
                                 cache_url, cache_prefix, no_cache, image_prefixes,
                                 build_roots, build_install, task_secret_file))
    try:
        WorkerConfig.from_env(broker)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if visibility_timeout is not None:
        os.environ["PATCHSWARM_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
    from patchswarm.tasks.distributed import celery_app

    celery_app.configure(broker)
    celery_app.app.worker_main(worker_argv(names, concurrency, pool, hostname, loglevel))


COMMANDS = [worker]
