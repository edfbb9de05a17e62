"""The Celery path of the runner: the same stages as ``runner.py``, with sampling and
verification done by workers.

Per problem the graph is: sample (one task on the ``sample`` queue: the worker holding the
model returns n completions) → verify each distinct candidate (one task each on the ``verify``
queue, run in parallel by as many workers as there are) → rank (here, from the run store). The
orchestrator is this process: it parses and de-duplicates completions with the in-process
runner's own code, writes every candidate and verdict to the run store as it arrives, and
ranks with the same function, so both paths give the same verdicts and the same choice.

Back-pressure: at most ``max_in_flight`` verify tasks are queued or running per orchestrator
(submitted in a sliding window, so the queue never floods), and a problem's sampling waits
while more than ``max_backlog`` sampled candidates are still waiting for a verdict.

Faults: results are read from the Redis result backend by polling in one round trip, which
also checks a marker key; when the marker has gone, Redis lost its data (a restart without
persistence) and every task still in flight is sent again. A task that failed (a hang past
every retry, a worker killed by its hard time limit) is sent again a bounded number of times,
then judged an error or timeout. A result for a key already judged is ignored, so a
redelivered task is never counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from patchswarm.agent.sampler import (
    Completion,
    ProgressFn,
    SampleProgress,
    SamplerError,
    SamplingParams,
)
from patchswarm.tasks.distributed.broker import (  # noqa: F401 - names the CLI and tests import from here
    DEFAULT_BROKER,
    PROGRESS_STATE,
    SAMPLE_QUEUE,
    SAMPLE_TASK,
    VERIFY_QUEUE,
    VERIFY_TASK,
    BrokerError,
    SharedVerdictCache,
    check_broker,
    redact,
)
from patchswarm.tasks.distributed.task_schema import NOTIFY_PREFIX, secret_from_env, sign
from patchswarm.tasks.engine.cache import NoCache, VerdictCache, cache_key
from patchswarm.tasks.engine.problem import Problem, ProblemError
from patchswarm.tasks.engine.runner import (
    Environment,
    RepairResult,
    RepairSettings,
    Reporter,
    known_verdicts,
    limits_record,
    repair,
    stamp,
)
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.engine.verification import mark
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import ERROR, TIMEOUT, Verdict

log = logging.getLogger("patchswarm.distributed")

EPOCH_PREFIX = "patchswarm:epoch:"
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


class Stopped(Exception):
    """The orchestrator was closed (Ctrl-C, SIGTERM) while this thread waited for workers."""


@dataclass
class ClusterSettings:
    broker: str
    verify_queue: str = VERIFY_QUEUE
    sample_queue: str = SAMPLE_QUEUE
    max_in_flight: int = 16
    """Verify tasks queued or running at once, over every problem of this orchestrator."""
    max_backlog: int = 64
    """Sampled candidates waiting for a verdict before more sampling waits."""
    problems_in_flight: int = 4
    soft_time_limit: float | None = None
    """Per verify task; default: the test timeout times the runs a verifier may make."""
    max_resubmits: int = 2
    """Times a failed task is sent again before its candidate is judged an error."""
    outage_timeout: float = 300.0
    """How long Redis may be away before the run stops with an error."""
    sample_timeout: float = 3600.0
    cache: bool = True
    cache_prefix: str = "patchswarm:verdict:"
    task_secret: bytes | None = field(default_factory=secret_from_env)
    """Signs every task message (``sig``, HMAC-SHA256) for workers that share the secret
    (``PATCHSWARM_TASK_SECRET`` or ``PATCHSWARM_TASK_SECRET_FILE``)."""
    send_build: bool = True
    """Tell workers how the environment image was built (they build it only where their own
    configuration allows: ``patchswarm worker --build-root``)."""


@dataclass
class _Job:
    name: str
    payload: dict[str, Any]
    queue: str
    soft: float
    hard: float
    key: str = ""
    cache_key: str = ""
    patch: str = ""
    task_id: str = ""
    effective: dict[str, Any] = field(default_factory=dict)
    """What the worker says the sandbox really got (limits, spec), from its result."""
    attempts: int = 0
    generation: int = 0
    submitted: float = 0.0


@dataclass
class Stats:
    submitted: int = 0
    resubmitted: int = 0
    results: int = 0
    duplicates_ignored: int = 0
    rejected: int = 0
    data_losses: int = 0
    outages: int = 0
    max_in_flight_seen: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    """One line per verify result: key, worker, delivery count, retries, seconds."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Orchestrator:
    """Sends a run's tasks to the workers and collects what comes back. Thread-safe: many
    problems may be in flight at once, sharing one window of verify tasks."""

    def __init__(self, cluster: ClusterSettings) -> None:
        from patchswarm.tasks.distributed.celery_app import make_app

        check_broker(cluster.broker)
        self.cluster = cluster
        self.sampling_progress: ProgressFn | None = None
        """Given to every sampler this orchestrator makes: the workers' counts as they come."""
        self.app = make_app(cluster.broker)
        self.redis = redis.Redis.from_url(cluster.broker, socket_timeout=10,
                                          socket_connect_timeout=5)
        self.epoch_key = EPOCH_PREFIX + uuid.uuid4().hex
        self.generation = 0
        self.stats = Stats()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, cluster.max_in_flight))
        self._in_flight = 0
        self._backlog = 0
        self._room = threading.Condition()
        self._stop = threading.Event()
        self.cache: VerdictCache = (SharedVerdictCache(cluster.broker, cluster.cache_prefix)
                                    if cluster.cache else NoCache())
        self.redis.set(self.epoch_key, "1", ex=7 * 24 * 3600)
        self._declare_queues()

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Stop every thread still waiting on this orchestrator, and forget the run marker.
        Tasks already sent stay queued; a resumed run finds their verdicts in the cache."""
        self._stop.set()
        with self._room:
            self._room.notify_all()
        try:
            self.redis.delete(self.epoch_key)
        except redis.RedisError:
            pass
        self.redis.close()

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _declare_queues(self) -> None:
        from kombu import Exchange, Queue

        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in {self.cluster.verify_queue, self.cluster.sample_queue}:
                Queue(name, Exchange(name), routing_key=name, channel=channel).declare()

    def _wait_for_redis(self) -> None:
        """Block until Redis answers again, or raise BrokerError after the outage timeout."""
        with self._lock:
            self.stats.outages += 1
        deadline = time.monotonic() + self.cluster.outage_timeout
        delay = 0.2
        while True:
            if self._stop.is_set():
                raise Stopped("the run was stopped")
            try:
                self.redis.ping()
                return
            except REDIS_ERRORS + (redis.RedisError,):
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"lost the broker at {redact(self.cluster.broker)} for more than "
                        f"{self.cluster.outage_timeout:.0f}s; run the same command again once "
                        "it is back: the run continues where it stopped") from None
                time.sleep(delay)
                delay = min(2.0, delay * 1.5)

    def _data_lost(self, seen_generation: int) -> None:
        """Redis came back empty: a new marker, queues declared again, and every job of an
        older generation is sent again by its flight."""
        with self._lock:
            if self.generation != seen_generation:
                return  # another flight has handled it
            if self.redis.exists(self.epoch_key):
                return
            self.generation += 1
            self.stats.data_losses += 1
            self.redis.set(self.epoch_key, "1", ex=7 * 24 * 3600)
        log.warning("the broker lost its data (restarted without persistence?): "
                    "sending the tasks in flight again")
        self._declare_queues()

    def _publish(self, job: _Job) -> None:
        job.task_id = uuid.uuid4().hex
        job.attempts += 1
        job.generation = self.generation
        job.submitted = time.monotonic()
        while True:
            try:
                self.app.send_task(job.name, args=[job.payload], task_id=job.task_id,
                                   queue=job.queue, soft_time_limit=job.soft,
                                   time_limit=job.hard)
                break
            except Exception as exc:  # noqa: BLE001 - kombu wraps connection errors variously
                log.warning("could not send %s (%s); waiting for the broker", job.name, exc)
                self._wait_for_redis()
        with self._lock:
            if job.attempts == 1:
                self.stats.submitted += 1
            else:
                self.stats.resubmitted += 1

    # ------------------------------------------------------------------ back-pressure

    def _add_backlog(self, n: int) -> None:
        with self._room:
            self._backlog += n
            self._room.notify_all()

    def wait_for_room(self) -> None:
        """Block while too many sampled candidates are still waiting for verdicts."""
        with self._room:
            while self._backlog >= self.cluster.max_backlog:
                if self._stop.is_set():
                    raise Stopped("the run was stopped")
                self._room.wait(1.0)

    def _take_slot(self) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._in_flight += 1
            self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, self._in_flight)
        return True

    def _give_slot(self) -> None:
        with self._lock:
            self._in_flight -= 1
        self._slots.release()

    # ------------------------------------------------------------------ verification

    def verify(self, env: Environment, groups: list, settings: RepairSettings,
               store: RunStore, reporter: Reporter, cache: VerdictCache | None = None,
               verifier: Any = None) -> dict[str, Verdict]:
        """``runner.verify`` on the workers: same arguments, same result, same store lines."""
        cache = self.cache if cache is None else cache
        vsettings = (verifier or PytestVerifier()).settings()
        done, found = known_verdicts(env, groups, settings.limits, store, cache, vsettings)
        todo: deque[tuple[Any, str]] = deque(found)
        if todo:
            reporter.stage(f"verifying {len(todo)} distinct candidates on the workers "
                           f"(queue {self.cluster.verify_queue})")
            t0 = time.monotonic()
            self._verify_all(env, todo, settings, store, cache, vsettings, done)
            store.event("verification", time.monotonic() - t0, distinct=len(todo),
                        distributed=True, per_candidate=[
                            round(done[g.key].seconds, 3) for g, _ in todo])
        for g in groups:
            mark(g, done[g.key])
        return done

    def _verify_all(self, env: Environment, todo: deque, settings: RepairSettings,
                    store: RunStore, cache: VerdictCache, vsettings: dict[str, Any],
                    done: dict[str, Verdict]) -> None:
        build = _build_spec(store) if self.cluster.send_build else None
        use_cache = not isinstance(cache, NoCache)
        limits = limits_record(settings.limits)
        runs = 1 + int(vsettings.get("reruns", 0) or 0)
        soft = self.cluster.soft_time_limit or float(env.spec.get("timeout", 300)) * runs + 120
        flight = _Flight(self)
        self._add_backlog(len(todo))
        left = len(todo)
        try:
            while todo or flight.jobs:
                while todo and self._take_slot():
                    g, ck = todo.popleft()
                    payload = {"image": env.image, "spec": env.spec, "patch": g.patch,
                               "key": g.key, "verifier": vsettings, "limits": limits,
                               "cache": use_cache, "build": build}
                    job = _Job(VERIFY_TASK, payload, self.cluster.verify_queue, soft,
                               soft + 60, key=g.key, cache_key=ck, patch=g.patch)
                    try:
                        flight.submit(job)
                    except BaseException:
                        self._give_slot()
                        raise
                finished = flight.poll()
                for job, meta in finished:
                    v = self._verdict_of(job, meta, flight)
                    if v is None:
                        continue  # sent again
                    self._give_slot()
                    self._add_backlog(-1)
                    left -= 1
                    if job.key in done:
                        with self._lock:
                            self.stats.duplicates_ignored += 1
                        continue
                    v = stamp(v, job.patch)
                    store.add_verdict(job.key, v.to_dict())
                    done[job.key] = v
                    if not v.extra.get("cached"):
                        cache.put(self._cache_key_of(env, job, vsettings), v.to_dict())
                flight.wait(bool(finished))
        finally:
            for _ in flight.jobs:
                self._give_slot()
            self._add_backlog(-left)

    @staticmethod
    def _cache_key_of(env: Environment, job: _Job, vsettings: dict[str, Any]) -> str:
        """The key for a worker's verdict: under the limits and spec it really ran with
        (a worker's ceilings may have tightened them), never the ones asked for."""
        eff = job.effective
        if not eff:
            return job.cache_key
        return cache_key(env.image, job.patch, vsettings, eff.get("spec") or env.spec,
                         eff.get("limits"))

    def _verdict_of(self, job: _Job, meta: dict[str, Any], flight: _Flight) -> Verdict | None:
        status, result = meta.get("status"), meta.get("result")
        if status == "SUCCESS" and isinstance(result, dict) and "verdict" in result:
            v = Verdict.from_dict(result["verdict"])
            job.effective = {k: result[k] for k in ("limits", "spec")
                             if isinstance(result.get(k), dict)}
            if result.get("cached"):
                v.extra = {**v.extra, "cached": True}
            with self._lock:
                self.stats.results += 1
                self.stats.deliveries.append({
                    "key": job.key, "worker": result.get("worker"),
                    "delivery": result.get("delivery"), "retries": result.get("retries"),
                    "attempt": job.attempts, "cached": bool(result.get("cached")),
                    "task_seconds": result.get("task_seconds"),
                    "round_trip": round(time.monotonic() - job.submitted, 4)})
            return v
        kind = type(result).__name__
        name = str((job.payload.get("verifier") or {}).get("name", ""))
        if kind == "Reject":
            with self._lock:
                self.stats.rejected += 1
            return Verdict(ERROR, f"the worker rejected the task: {result}", verifier=name)
        if status in ("FAILURE", "REVOKED") or status == "SUCCESS":
            if job.attempts <= self.cluster.max_resubmits:
                log.warning("verify task for %s ended in %s (%s: %s); sending it again",
                            job.key[:12], status, kind, result)
                flight.resubmit(job)
                return None
            if kind in ("TimeLimitExceeded", "SoftTimeLimitExceeded"):
                return Verdict(TIMEOUT, f"verification ran past its time limit ({job.soft:.0f}s) "
                                        f"on {job.attempts} tries", verifier=name)
            return Verdict(ERROR, f"verification failed on {job.attempts} tries: {kind}: "
                                  f"{result}", verifier=name)
        return None

    # ------------------------------------------------------------------ runs

    def sampler(self, model: str, endpoint: str | None = None) -> RemoteSampler:
        return RemoteSampler(self, model, endpoint, self.sampling_progress)

    def repair(self, problem: Problem, settings: RepairSettings, run_dir: Path, model: str,
               endpoint: str | None = None, reporter: Reporter | None = None,
               cache: VerdictCache | None = None) -> RepairResult:
        """``runner.repair`` with sampling and verifying on the workers."""
        return repair(problem, lambda: self.sampler(model, endpoint), settings, run_dir,
                      reporter, cache=self.cache if cache is None else cache,
                      verify_fn=self.verify)

    def repair_many(self, runs: list[tuple[Problem, Path]], settings: RepairSettings,
                    model: str, endpoint: str | None = None,
                    reporter_for: Callable[[str], Reporter] | None = None,
                    ) -> list[RepairResult | Exception]:
        """Many problems at once (``problems_in_flight``), sharing the verify window.
        A problem that fails gives its exception in its place; the others go on."""
        reporter_for = reporter_for or (lambda _id: Reporter())

        def one(item: tuple[Problem, Path]) -> RepairResult | Exception:
            problem, run_dir = item
            try:
                return self.repair(problem, settings, run_dir, model, endpoint,
                                   reporter_for(problem.id))
            except (ProblemError, SamplerError) as exc:
                return exc

        ex = ThreadPoolExecutor(max(1, self.cluster.problems_in_flight))
        try:
            futures = [ex.submit(one, item) for item in runs]
            return [f.result() for f in futures]
        except BaseException:
            self._stop.set()  # Ctrl-C or SIGTERM here: the problem threads stop waiting
            raise
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


class _Flight:
    """The tasks one caller is waiting for; polled in one Redis round trip."""

    def __init__(self, orch: Orchestrator) -> None:
        self.o = orch
        self.jobs: dict[str, _Job] = {}
        self.progress: dict[str, Any] = {}
        """task id → the counts a sampling worker last stored as the task's progress."""
        self.notify_key = NOTIFY_PREFIX + uuid.uuid4().hex
        """Workers push here when one of these tasks has finished (its result stored)."""

    def submit(self, job: _Job) -> None:
        job.payload["notify"] = self.notify_key
        secret = self.o.cluster.task_secret
        if secret:
            job.payload.pop("sig", None)
            job.payload["sig"] = sign(secret, job.payload)
        self.o._publish(job)
        self.jobs[job.task_id] = job

    def resubmit(self, job: _Job) -> None:
        self.jobs.pop(job.task_id, None)
        self.submit(job)

    def poll(self) -> list[tuple[_Job, dict[str, Any]]]:
        if not self.jobs:
            return []
        o = self.o
        ids = list(self.jobs)
        backend = o.app.backend
        generation = o.generation
        try:
            pipe = o.redis.pipeline(transaction=False)
            pipe.delete(self.notify_key)  # what it announced is read just below
            pipe.exists(o.epoch_key)
            pipe.mget([backend.get_key_for_task(t) for t in ids])
            _, alive, raws = pipe.execute()
        except Exception as exc:
            self._stop_or(exc)
            o._wait_for_redis()
            return []
        if not alive:
            o._data_lost(generation)
        stale = [j for j in self.jobs.values() if j.generation < o.generation]
        for job in stale:
            self.resubmit(job)
        if stale:
            return []
        finished = []
        for tid, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            meta = backend.decode_result(raw)
            if meta.get("status") in ("SUCCESS", "FAILURE", "REVOKED"):
                finished.append((self.jobs.pop(tid), meta))
                self.progress.pop(tid, None)
            elif meta.get("status") == PROGRESS_STATE:
                self.progress[tid] = meta.get("result")
        if finished:
            try:
                o.redis.delete(*[backend.get_key_for_task(j.task_id) for j, _ in finished])
            except redis.RedisError:
                pass
        return finished

    def wait(self, progressed: bool, timeout: float = 0.5) -> None:
        """Until a worker announces a finished task, or ``timeout`` (then poll anyway: a
        notice may be lost with a restarted Redis, a result never)."""
        if self.o._stop.is_set():
            raise Stopped("the run was stopped")
        if progressed or not self.jobs:
            return
        try:
            self.o.redis.blpop([self.notify_key], timeout=timeout)
        except Exception as exc:
            self._stop_or(exc)
            time.sleep(0.2)

    def _stop_or(self, exc: Exception) -> None:
        """Raise Stopped if the orchestrator was closed (its client too); re-raise ``exc``
        unless it is a lost connection to Redis, which the caller rides out."""
        if self.o._stop.is_set():
            raise Stopped("the run was stopped") from None
        if not isinstance(exc, REDIS_ERRORS + (redis.RedisError,)):
            raise exc


def progress_of(info: Any) -> SampleProgress | None:
    """A worker's stored progress as counts, or None for anything malformed (it is shown,
    never trusted)."""
    try:
        p = SampleProgress(samples=int(info["samples"]), finished=int(info["finished"]),
                           tokens=int(info["tokens"]), seconds=float(info["seconds"]))
    except (KeyError, TypeError, ValueError):
        return None
    return p if min(p.samples, p.finished, p.tokens) >= 0 and p.seconds >= 0 else None


class RemoteSampler:
    """The Sampler protocol over the ``sample`` queue: a worker holding the model answers."""

    def __init__(self, orch: Orchestrator, model: str, endpoint: str | None = None,
                 progress: ProgressFn | None = None) -> None:
        self.o = orch
        self.model = model
        self.endpoint = endpoint
        self.progress = progress
        """Told the worker's counts while it generates (tokens, samples finished), as an
        in-process engine tells its own, and once more when the samples arrive."""

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        self.o.wait_for_room()
        payload = {"model": self.model, "endpoint": self.endpoint, "messages": messages,
                   "params": params.to_dict()}
        limit = self.o.cluster.sample_timeout
        job = _Job(SAMPLE_TASK, payload, self.o.cluster.sample_queue, limit, limit + 60)
        flight = _Flight(self.o)
        flight.submit(job)
        t0 = time.monotonic()
        warned = False
        shown: list[SampleProgress] = []
        while True:
            for job, meta in flight.poll():
                result = meta.get("result")
                if meta.get("status") == "SUCCESS" and isinstance(result, dict):
                    if result.get("error"):
                        raise SamplerError(f"the sampling worker failed: {result['error']}")
                    completions = [Completion(**c) for c in result["completions"]]
                    if self.progress is not None and shown:
                        self.progress(SampleProgress(
                            samples=len(completions), finished=len(completions),
                            tokens=sum(c.completion_tokens for c in completions),
                            seconds=time.monotonic() - t0, done=True))
                    return completions
                if job.attempts <= self.o.cluster.max_resubmits:
                    flight.resubmit(job)
                else:
                    raise SamplerError(f"sampling failed on {job.attempts} tries: "
                                       f"{type(result).__name__}: {result}")
            for info in flight.progress.values():
                got = progress_of(info)
                if got is not None and self.progress is not None and got != shown[-1:]:
                    shown[:] = [got]
                    self.progress(got)
            waited = time.monotonic() - t0
            if waited > 30 and not warned:
                warned = True
                log.warning("no sampling worker has answered for 30s: is one running? "
                            "(patchswarm worker --queues %s --broker %s)",
                            self.o.cluster.sample_queue, redact(self.o.cluster.broker))
            if waited > limit:
                raise SamplerError(
                    f"no sampling worker answered within {limit:.0f}s on queue "
                    f"{self.o.cluster.sample_queue!r}: start one with `patchswarm worker "
                    f"--queues {self.o.cluster.sample_queue} --broker URL`")
            flight.wait(False)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        raise SamplerError("token counting needs the model; the sampling worker holds it")

    def close(self) -> None:
        pass


def _build_spec(store: RunStore) -> dict[str, Any] | None:
    """How a worker can build the run's environment image itself, from run.json."""
    run = store.read_json("run.json") or {}
    problem, settings = run.get("problem"), run.get("settings") or {}
    if not problem or not isinstance(problem.get("repo"), str) \
            or not isinstance(problem.get("base_commit"), str):
        return None
    return {"repo": problem.get("repo"), "commit": problem.get("base_commit"),
            "python": problem.get("python", "3.11"), "install": problem.get("install", ""),
            "base_image": settings.get("base_image"), "ca_bundle": settings.get("ca_bundle")}
