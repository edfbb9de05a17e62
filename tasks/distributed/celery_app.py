"""The Celery app: a ``sample`` queue for workers that hold a model, a ``verify`` queue for
workers that hold a Docker engine.

Start workers with ``patchswarm worker --queues verify`` (or ``celery -A
patchswarm.tasks.distributed.celery_app worker -Q verify``); the broker comes from ``--broker`` or
``PATCHSWARM_BROKER``. Tasks carry plain data only (dicts and strings) and return plain data.

Delivery guarantees, and what gives each one:

- a worker killed mid-task: ``acks_late`` (the message is acknowledged only when the task has
  finished) with ``task_reject_on_worker_lost`` (a lost pool process puts the message back at
  once) and the Redis visibility timeout (a whole worker that died: its unacknowledged message
  goes back to the queue after ``PATCHSWARM_VISIBILITY_TIMEOUT`` seconds);
- a task that hangs: a soft time limit raises inside the task, which is then retried; the hard
  limit kills the pool process if the soft one could not stop it;
- a task that keeps killing its workers: each delivery is counted in Redis, and past a bound
  the task answers an error verdict instead of running again;
- a malformed message (an unknown field, a wrong type, a bad signature when the workers
  share a task secret): rejected without requeue and logged, never retried, before any work;
- the same change verified twice (a redelivery): results are keyed by the normalised-patch
  key, so the orchestrator keeps the first and counts it once.

What a message may ask for is in ``task_schema``: limits, network, the cache and where images
are built from are this worker's own configuration; a message can only ask for less.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict
from typing import Any, NoReturn

from celery import Celery, signals
from celery.exceptions import Reject, SoftTimeLimitExceeded

# Imported here, not in the tasks, so that prefork children inherit them loaded.
from patchswarm.agent.sampler import SamplerError, SamplingParams
from patchswarm.tasks.distributed import worker_sandboxes as sandboxes
from patchswarm.tasks.distributed.broker import (
    DEFAULT_BROKER,
    PROGRESS_STATE,
    SAMPLE_QUEUE,
    SAMPLE_TASK,
    VERIFY_QUEUE,
    VERIFY_TASK,
    SharedVerdictCache,
)
from patchswarm.tasks.distributed.task_schema import (
    NOTIFY_PREFIX,
    ConfigError,
    SchemaError,
    VerifyTask,
    WorkerConfig,
    sample_endpoint,
    validate_verify,
)
from patchswarm.tasks.engine.cache import cache_key
from patchswarm.tasks.engine.runner import limits_record, stamp, verify_patch
from patchswarm.verifiers.registry import UnknownVerifier
from patchswarm.verifiers.verdict import ERROR, Verdict

VERIFY_RETRIES = 2
"""Retries of a verify task after a hang (soft time limit) before it fails."""
EXTRA_DELIVERIES = 3
"""Redeliveries (lost workers) a task may have on top of its retries before it gives up."""
DELIVERY_PREFIX = "patchswarm:deliveries:"

log = logging.getLogger("patchswarm.worker")


def visibility_timeout() -> float:
    return float(os.environ.get("PATCHSWARM_VISIBILITY_TIMEOUT", "3600"))


def settings_for(broker: str) -> dict[str, Any]:
    """The app's configuration for ``broker`` (Redis), used as broker and result backend."""
    visibility = visibility_timeout()
    return dict(
        broker_url=broker,
        result_backend=broker,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # No STARTED state and no task events by default: each costs Redis round trips on
        # every task. Flower switches the workers' events on by itself while it runs.
        task_track_started=False,
        task_send_sent_event=False,
        worker_send_task_events=False,
        result_expires=24 * 3600,
        task_routes={VERIFY_TASK: {"queue": VERIFY_QUEUE}, SAMPLE_TASK: {"queue": SAMPLE_QUEUE}},
        task_default_queue=VERIFY_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for abandoned messages a few times per visibility timeout.
            "unacked_restore_interval": max(1, min(10, int(visibility // 4))),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
        },
        result_backend_transport_options={"socket_connect_timeout": 5, "socket_keepalive": True},
        result_backend_always_retry=True,
        result_backend_max_retries=60,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=2000,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 5, "interval_start": 0.2,
                                   "interval_step": 0.5, "interval_max": 2},
    )


def make_app(broker: str | None = None) -> Celery:
    """A Celery app on ``broker`` (default: ``PATCHSWARM_BROKER``, else local Redis)."""
    broker = broker or os.environ.get("PATCHSWARM_BROKER") or DEFAULT_BROKER
    app = Celery("patchswarm")
    app.conf.update(settings_for(broker))
    return app


def configure(broker: str) -> None:
    """Point this module's app (the workers' one) at ``broker``; call before it connects."""
    app.conf.update(settings_for(broker))


app = make_app()


def _drop_undecodable_messages() -> None:
    """Make kombu's Redis transport drop (and log) a message it cannot decode.

    As shipped, an item in a queue that is not a JSON message envelope raises out of the
    worker's event loop and ends the whole worker ("Unrecoverable error"); restarted, the next
    worker would meet the next bad item. The item has already been taken off the queue when
    decoding fails, so dropping it is all that is left to do.
    """
    from kombu.transport import redis as kredis

    if getattr(kredis.Channel, "_patchswarm_safe", False):
        return
    brpop_read, get = kredis.Channel._brpop_read, kredis.Channel._get
    bad = (ValueError, KeyError, TypeError, AttributeError)

    def _brpop_read(self, **options):  # noqa: ANN001, ANN202
        try:
            return brpop_read(self, **options)
        except bad as exc:
            log.error("dropped a malformed message (not a task envelope): %r", exc)
            raise kredis.Empty() from None

    def _get(self, queue):  # noqa: ANN001, ANN202
        try:
            return get(self, queue)
        except bad as exc:
            log.error("dropped a malformed message from %s (not a task envelope): %r", queue, exc)
            raise kredis.Empty() from None

    kredis.Channel._brpop_read = _brpop_read
    kredis.Channel._get = _get
    kredis.Channel._patchswarm_safe = True


_drop_undecodable_messages()


# --------------------------------------------------------------------------- worker state
# One set per worker process: made lazily on the first task, since prefork children are
# forked from the main process and must not share its Docker connection.

_CACHES: dict[tuple[int, str, str], Any] = {}
_SAMPLERS: dict[tuple[str, str | None], tuple[Any, threading.Lock]] = {}
_SAMPLERS_LOCK = threading.Lock()
_REDIS: Any = None
_CONFIG: tuple[int, WorkerConfig] | None = None


@signals.worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    sandboxes.shutdown()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    sandboxes.shutdown()


def _redis() -> Any:
    """This process's own Redis client (never one inherited through a fork)."""
    global _REDIS
    if _REDIS is None or _REDIS[0] != os.getpid():
        import redis

        _REDIS = (os.getpid(), redis.Redis.from_url(app.conf.broker_url, socket_timeout=10,
                                                    socket_connect_timeout=5))
    return _REDIS[1]


def _notify(args: Any) -> None:
    """Wake the orchestrator waiting for this task (it blocks on its notify list), so that
    a result is seen at once rather than at its next poll."""
    payload = args[0] if isinstance(args, (list, tuple)) and args else None
    key = payload.get("notify") if isinstance(payload, dict) else None
    if not isinstance(key, str) or not key.startswith(NOTIFY_PREFIX):
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.rpush(key, 1)
        pipe.expire(key, 3600)
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the orchestrator polls anyway
        log.warning("could not notify the orchestrator: %s", exc)


@signals.task_success.connect
def _on_success(sender: Any = None, **_: Any) -> None:
    # Sent after the result is stored, in the process that ran the task.
    _notify(getattr(getattr(sender, "request", None), "args", None))


@signals.task_failure.connect
def _on_failure(args: Any = None, **_: Any) -> None:
    _notify(args)


def _count_delivery(task_id: str) -> int:
    """How many times this task id has started (retries and redeliveries), or 0 if unknown."""
    try:
        pipe = _redis().pipeline()
        pipe.incr(DELIVERY_PREFIX + task_id)
        pipe.expire(DELIVERY_PREFIX + task_id, 24 * 3600)
        return int(pipe.execute()[0])
    except Exception as exc:  # noqa: BLE001 - counting is a safeguard, not a requirement
        log.warning("could not count the delivery of %s: %s", task_id, exc)
        return 0


def _config() -> WorkerConfig:
    """This worker's own configuration (its command line, through the environment)."""
    global _CONFIG
    if _CONFIG is None or _CONFIG[0] != os.getpid():
        _CONFIG = (os.getpid(), WorkerConfig.from_env(app.conf.broker_url))
    return _CONFIG[1]


def _cache(config: WorkerConfig) -> Any:
    """The worker's own verdict cache (never an address named by a message)."""
    if config.cache_url is None:
        return None
    k = (os.getpid(), config.cache_url, config.cache_prefix)  # never a forked client
    if k not in _CACHES:
        _CACHES[k] = SharedVerdictCache(config.cache_url, config.cache_prefix)
    return _CACHES[k]


def _reject(task: Any, why: str) -> NoReturn:
    log.error("rejected malformed %s task %s: %s (it is not retried)", task.name,
              task.request.id, why)
    raise Reject(f"malformed task: {why}", requeue=False)


# --------------------------------------------------------------------------- tasks

def _envelope(self: Any, task: VerifyTask, verdict: dict[str, Any], cached: bool,
              delivery: int, t0: float) -> dict[str, Any]:
    """The result, with what the sandbox really got (the limits after this worker's ceilings
    and the test timeout), so that the orchestrator caches it under the right key."""
    return {"key": task.key, "verdict": verdict, "cached": cached,
            "worker": self.request.hostname or socket.gethostname(), "pid": os.getpid(),
            "retries": self.request.retries, "delivery": delivery,
            "task_seconds": round(time.monotonic() - t0, 4),
            "limits": limits_record(task.limits), "spec": task.spec}


@app.task(name=VERIFY_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=(SoftTimeLimitExceeded,), max_retries=VERIFY_RETRIES,
          retry_backoff=1, retry_backoff_max=30, retry_jitter=False,
          soft_time_limit=1800, time_limit=1860)
def verify_task(self: Any, payload: Any) -> dict[str, Any]:
    """Verify one distinct candidate in a fresh sandbox: the in-process runner's function."""
    t0 = time.monotonic()
    try:
        config = _config()
    except ConfigError as exc:
        _reject(self, f"this worker's configuration is unusable: {exc}")
    try:
        task = validate_verify(payload, config)
    except SchemaError as exc:
        _reject(self, str(exc))
    sandboxes.process_setup()
    try:
        verifier = sandboxes.verifier_for(task.verifier)
    except (UnknownVerifier, TypeError, ValueError) as exc:
        _reject(self, f"verifier {task.verifier!r}: {exc}")
    return _verify(self, task, verifier, config, t0)


def _verify(self: Any, task: VerifyTask, verifier: Any, config: WorkerConfig,
            t0: float) -> dict[str, Any]:
    delivery = _count_delivery(self.request.id)
    if delivery > VERIFY_RETRIES + 1 + EXTRA_DELIVERIES:
        log.error("task %s was delivered %d times, its worker lost each time: giving up",
                  self.request.id, delivery)
        v = Verdict(ERROR, f"gave up after {delivery} deliveries: the worker running this "
                           "candidate was lost each time (out of memory?)",
                    verifier=verifier.name)
        return _envelope(self, task, v.to_dict(), False, delivery, t0)

    cache = _cache(config) if task.use_cache else None
    ck = cache_key(task.image, task.patch, verifier.settings(), task.spec,
                   limits_record(task.limits))
    if cache is not None:
        hit = cache.get(ck)
        if hit is not None:
            return _envelope(self, task, hit, True, delivery, t0)

    missing = sandboxes.ensure_image(task.image, task.build, config)
    if missing:
        v = Verdict(ERROR, missing, verifier=verifier.name)
        return _envelope(self, task, v.to_dict(), False, delivery, t0)
    pool = sandboxes.Tracking(sandboxes.pool_for(task.image, task.limits))
    try:
        verdict = verify_patch(pool, verifier, task.spec, task.patch,
                               passthrough=(SoftTimeLimitExceeded,))
    except SoftTimeLimitExceeded:
        sandboxes.discard(task.image, task.limits, pool.container_id)
        raise
    out = stamp(verdict, task.patch).to_dict()
    if cache is not None:
        cache.put(ck, out)
    return _envelope(self, task, out, False, delivery, t0)


def _sampler(model: str, endpoint: str | None) -> tuple[Any, threading.Lock]:
    """One sampler per (model, endpoint) per worker process, made on first use: the engine is
    started once and serves every later task."""
    k = (model, endpoint)
    with _SAMPLERS_LOCK:
        if k not in _SAMPLERS:
            if endpoint:
                from patchswarm.agent.openai_backend import OpenAISampler

                sampler = OpenAISampler(endpoint, model)
            else:
                from patchswarm.agent.models import resolve_model
                from patchswarm.agent.sampler import VLLMSampler

                sampler = VLLMSampler(str(resolve_model(model)), name=model)
            _SAMPLERS[k] = (sampler, threading.Lock())
        return _SAMPLERS[k]


PROGRESS_EVERY = 1.0
"""Seconds between the progress a sampling worker stores in the result backend."""


def _publish_progress(task: Any) -> Any:
    """A progress callback for the worker's engine: the counts go to the result backend as
    the task's ``PROGRESS`` state, at most once a second, where the caller reads them."""
    last = [0.0]

    def publish(p: Any) -> None:
        now = time.monotonic()
        if p.done or now - last[0] < PROGRESS_EVERY:
            return  # the finished task's result carries the final counts
        last[0] = now
        try:
            task.update_state(state=PROGRESS_STATE, meta={
                "samples": p.samples, "finished": p.finished, "tokens": p.tokens,
                "seconds": round(p.seconds, 3)})
        except Exception:  # noqa: BLE001 - progress is for show; sampling goes on
            log.debug("could not store sampling progress", exc_info=True)

    return publish


@app.task(name=SAMPLE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=3600, time_limit=3660)
def sample_task(self: Any, payload: Any) -> dict[str, Any]:
    """n completions of one prompt from the model this worker holds (or reaches)."""
    try:
        endpoint = sample_endpoint(payload, _config())
    except (SchemaError, ConfigError) as exc:
        _reject(self, str(exc))
    try:
        params = SamplingParams(**payload["params"])
    except TypeError as exc:
        _reject(self, f"params: {exc}")
    t0 = time.monotonic()
    try:
        sampler, lock = _sampler(payload["model"], endpoint)
        with lock:  # an in-process engine serves one request at a time
            streams = hasattr(sampler, "progress")
            if streams:
                sampler.progress = _publish_progress(self)
            try:
                completions = sampler.sample(payload["messages"], params)
            finally:
                if streams:
                    sampler.progress = None
    except SamplerError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a model that cannot load is the user's to fix
        log.exception("sampling failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"model": sampler.model, "completions": [asdict(c) for c in completions],
            "worker": self.request.hostname, "seconds": round(time.monotonic() - t0, 3)}
