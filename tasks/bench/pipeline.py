"""``patchswarm bench pipeline``: the same candidates through the in-process runner and
through Celery with one and with two verify workers, in one run.

It prints the Celery path's overhead per task (target: at most 20 ms) and the speed-up of
two verify workers over one. No model is needed: the candidates are made from an example's
gold fix (right ones) and its buggy code (wrong ones), each with a distinct harmless line so
that every one is a distinct change and is verified.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.edits import apply_patch_to_files, make_diff
from patchswarm.agent.normalise import patch_key

OVERHEAD_TARGET_MS = 20.0


# ----------------------------------------------------------------------------- candidates

def _gold(example_id: str) -> str:
    from patchswarm.tasks.sources import examples

    return (examples.load_example(example_id)["root"] / "fix.patch").read_text()


def _touched(patch: str) -> list[str]:
    return [line[6:].strip() for line in patch.splitlines() if line.startswith("+++ b/")]


def originals_for(example_id: str, repo: Path) -> dict[str, str]:
    """The files the example's fix touches, at the repository's HEAD."""
    from patchswarm.tasks.engine.problem import read_files

    return read_files(str(repo), "HEAD", _touched(_gold(example_id)))


def variant_patches(example_id: str, repo: Path, count: int, sleep: float = 0.0,
                    tag: str = "") -> list[tuple[str, str]]:
    """``count`` distinct patches, alternately right (the gold fix) and wrong (the bug kept),
    as (name, unified diff). ``sleep`` > 0 makes each module import sleep that long (a slow
    candidate, for fault tests); ``tag`` makes the set distinct from other sets."""
    originals = originals_for(example_id, repo)
    fixed = apply_patch_to_files(_gold(example_id), originals)
    target = _touched(_gold(example_id))[0]
    out = []
    for i in range(count):
        right = i % 2 == 0
        files = dict(fixed if right else originals)
        extra = f"\n\n_PATCHSWARM_VARIANT = {f'{tag}-{i}'!r}\n"
        if sleep:
            extra += f"import time as _patchswarm_time\n_patchswarm_time.sleep({sleep})\n"
        files[target] = files[target].rstrip("\n") + extra
        out.append((f"{'right' if right else 'wrong'}-{tag}{i}", make_diff(originals, files)))
    return out


def candidates_from(problem_id: str, patches: list[str],
                    originals: dict[str, str]) -> list[Candidate]:
    """Candidates as the sampler would have made them (keyed by normalised patch)."""
    return [Candidate(id=f"{problem_id}/0-{i}", problem_id=problem_id, index=i, text="",
                      patch=p, key=patch_key(p, originals), model="fixed")
            for i, p in enumerate(patches)]


# ----------------------------------------------------------------------------- redis

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int) -> subprocess.Popen:
    """A private redis-server on 127.0.0.1:port with nothing saved to disk."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise click.ClickException("redis-server is not installed: give --broker redis://...")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port, socket_connect_timeout=0.5).ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    proc.kill()
    raise click.ClickException(f"redis-server did not start on port {port}")


def wait_for_workers(app: Any, names: list[str], timeout: float = 60.0) -> None:
    """Until every named worker answers a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(destination=names, timeout=0.5) or []
        seen = {name for r in replies for name in r}
        if set(names) <= seen:
            return
    raise click.ClickException(f"workers {names} did not start within {timeout:.0f}s")


# ----------------------------------------------------------------------------- benchmark

def run_benchmark(broker: str, example_id: str, count: int, workdir: Path,
                  log=lambda msg: None) -> dict[str, Any]:  # noqa: ANN001
    from patchswarm.tasks.distributed.orchestrator import ClusterSettings, Orchestrator
    from patchswarm.tasks.distributed.workers import spawn_worker
    from patchswarm.tasks.engine.cache import NoCache
    from patchswarm.tasks.engine.problem import local_problem
    from patchswarm.tasks.engine.runner import RepairSettings, Reporter, groups_of, prepare, verify
    from patchswarm.tasks.engine.store import RunStore
    from patchswarm.tasks.sources import examples

    meta = examples.load_example(example_id)
    repo = examples.materialise(example_id, workdir / "repo")
    problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=example_id,
                            files=meta.get("files"))
    problem.fail_to_pass = list(meta.get("fail_to_pass", []))
    problem.pass_to_pass = list(meta.get("pass_to_pass", []))
    log("preparing the environment image and the baseline")
    one = RepairSettings(verify_workers=1)
    env = prepare(problem, one, RunStore(workdir / "prepare"), Reporter())
    originals = originals_for(example_id, repo)
    patches = [p for _, p in variant_patches(example_id, repo, count,
                                             tag=uuid.uuid4().hex[:6])]

    def fresh_groups():  # noqa: ANN202
        return groups_of(candidates_from(problem.id, patches, originals))

    results: dict[str, Any] = {}
    statuses: dict[str, dict[str, str]] = {}

    def timed(name: str, fn) -> None:  # noqa: ANN001
        groups = fresh_groups()
        t0 = time.monotonic()
        verdicts = fn(groups, RunStore(workdir / name))
        wall = time.monotonic() - t0
        statuses[name] = {k: v.status for k, v in verdicts.items()}
        results[name] = {"seconds": round(wall, 3),
                         "per_task_ms": round(1000 * wall / len(groups), 1),
                         "passed": sum(v.status == "passed" for v in verdicts.values())}
        log(f"{name}: {wall:.2f}s for {len(groups)} candidates")

    for workers in (1, 2):
        settings = RepairSettings(verify_workers=workers)
        timed(f"in_process_{workers}",
              lambda g, s, st=settings: verify(env, g, st, s, Reporter(), NoCache()))

    queue = f"verify-bench-{uuid.uuid4().hex[:8]}"
    procs: list = []
    logs = workdir / "workers.log"
    latency: list[dict[str, Any]] = []
    try:
        for workers in (1, 2):
            while len(procs) < workers:
                name = f"bench{len(procs) + 1}-{queue}@{socket.gethostname()}"
                procs.append((name, spawn_worker(broker, [queue], 1, name, logs,
                                                 loglevel="WARNING")))
            cluster = ClusterSettings(broker=broker, verify_queue=queue, cache=False,
                                      max_in_flight=4 * workers)
            with Orchestrator(cluster) as orch:
                wait_for_workers(orch.app, [n for n, _ in procs])
                timed(f"celery_{workers}",
                      lambda g, s, o=orch: o.verify(env, g, one, s, Reporter(), NoCache()))
            if workers == 1:
                # One task at a time: what Celery adds to each task's own time (publish,
                # delivery, hand-over to the pool process, result, wake-up).
                cluster = ClusterSettings(broker=broker, verify_queue=queue, cache=False,
                                          max_in_flight=1)
                with Orchestrator(cluster) as orch:
                    orch.verify(env, fresh_groups(), one, RunStore(workdir / "latency"),
                                Reporter(), NoCache())
                    latency = orch.stats.deliveries
                log("latency: one task at a time done")
    finally:
        for _, p in procs:
            p.terminate()
        for _, p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    base = results["in_process_1"]["seconds"]
    gaps = sorted(1000 * (d["round_trip"] - d["task_seconds"]) for d in latency)
    overhead = sum(gaps) / len(gaps)
    return {
        "example": example_id,
        "candidates": count,
        "image": env.image,
        "runs": results,
        "celery_overhead_ms_per_task": round(overhead, 1),
        "celery_overhead_ms_per_task_median": round(gaps[len(gaps) // 2], 1),
        "celery_overhead_ms_per_task_max": round(gaps[-1], 1),
        "overhead_target_ms": OVERHEAD_TARGET_MS,
        "overhead_within_target": overhead <= OVERHEAD_TARGET_MS,
        "wall_difference_ms_per_task": round(
            1000 * (results["celery_1"]["seconds"] - base) / count, 1),
        "speedup_two_workers": round(results["celery_1"]["seconds"]
                                     / results["celery_2"]["seconds"], 2),
        "in_process_speedup_two_workers": round(
            base / results["in_process_2"]["seconds"], 2),
        "same_verdicts": all(s == statuses["in_process_1"] for s in statuses.values()),
        "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "notes": ("overhead: mean over one-at-a-time tasks of (round trip seen by the "
                  "orchestrator - time inside the task); wall_difference: Celery with one "
                  "worker minus the in-process runner with one sandbox at a time, per "
                  "candidate (noisy on a busy machine)"),
    }


@click.command("pipeline")
@click.option("--broker", default=None,
              help="Redis URL (default: a private redis-server started for the benchmark).")
@click.option("--example", "example_id", default="gradebook-average", show_default=True)
@click.option("-n", "--candidates", "count", default=12, show_default=True,
              help="Distinct candidates verified by each path.")
@click.option("--json", "as_json", is_flag=True)
def pipeline(broker: str | None, example_id: str, count: int, as_json: bool) -> None:
    """In-process runner vs Celery (one and two verify workers) on the same candidates."""
    from patchswarm.tasks.distributed.orchestrator import BrokerError, check_broker

    if count < 2:
        raise click.UsageError("give at least 2 candidates")
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="patchswarm-bench-"))
    try:
        if broker is None:
            port = free_port()
            server = start_redis(port)
            broker = f"redis://127.0.0.1:{port}/0"
        try:
            check_broker(broker)
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from exc
        report = run_benchmark(broker, example_id, count, workdir,
                               log=lambda m: click.echo(m, err=True))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        from patchswarm.sandbox.container import reap

        reap()
        shutil.rmtree(workdir, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for name, r in report["runs"].items():
        click.echo(f"{name:14s} {r['seconds']:8.2f}s  {r['per_task_ms']:8.1f} ms/candidate")
    click.echo(f"Celery overhead per task: {report['celery_overhead_ms_per_task']} ms mean, "
               f"{report['celery_overhead_ms_per_task_median']} ms median "
               f"(target <= {OVERHEAD_TARGET_MS:.0f} ms)")
    click.echo(f"two verify workers over one: {report['speedup_two_workers']}x")
    if not report["same_verdicts"]:
        click.echo("the paths disagreed on some verdicts", err=True)
        sys.exit(1)


def _attach() -> list:
    """Attach to the shared ``bench`` group (tasks/cmd_bench.py)."""
    from patchswarm.tasks.bench import register

    register(pipeline)
    return []


COMMANDS: list = _attach()
