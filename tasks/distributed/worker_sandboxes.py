"""A verify worker's sandboxes, per pool process: a warm pool per image, the verifiers, and
the environment images it may use or build.

One set per worker process, made lazily on the first task, since prefork children are forked
from the main process and must not share its Docker connection.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import OrderedDict
from typing import Any

from patchswarm.sandbox.container import SandboxPool
from patchswarm.tasks.distributed.task_schema import WorkerConfig, check_build
from patchswarm.verifiers.registry import available, load

log = logging.getLogger("patchswarm.worker")

_STATE_PID: int | None = None
_POOLS: OrderedDict[tuple, Any] = OrderedDict()
_POOLS_LOCK = threading.Lock()
_MAX_POOLS = 3
_IMAGES_SEEN: set[str] = set()
_VERIFIERS: dict[str, Any] = {}
_SETUP_LOCK = threading.Lock()


def process_setup() -> None:
    """Once per worker process: own Docker connection, own container owner label, and
    removal of sandboxes left behind by dead workers of this host."""
    with _SETUP_LOCK:
        _setup_locked()


def _setup_locked() -> None:
    global _STATE_PID
    if _STATE_PID == os.getpid():
        return
    from patchswarm.sandbox import container, engine

    _STATE_PID = os.getpid()
    _POOLS.clear()
    engine.client.cache_clear()
    container.OWNER = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        container.reap()
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort; the task says if Docker is gone
        log.warning("could not reap old sandboxes: %s", exc)


def shutdown() -> None:
    """Close this process's pools (a no-op in a process that never set up)."""
    if _STATE_PID == os.getpid():
        _close_pools()


def _close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        try:
            pool.close()
        except Exception:  # noqa: BLE001 - shutting down
            pass
    try:
        from patchswarm.sandbox.container import _remove_live

        _remove_live()
    except Exception:  # noqa: BLE001 - shutting down
        pass


def pool_for(image: str, limits: Any) -> Any:
    """A warm pool (one started sandbox waiting) per image, the few most recent kept."""
    k = (image, limits)
    with _POOLS_LOCK:
        pool = _POOLS.get(k)
        if pool is not None:
            _POOLS.move_to_end(k)
            return pool
        pool = _POOLS[k] = SandboxPool(image, size=1, limits=limits)
        old = []
        while len(_POOLS) > _MAX_POOLS:
            old.append(_POOLS.popitem(last=False)[1])
    for p in old:
        p.close()
    return pool


class Tracking:
    """A pool that remembers the container it handed out."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.container_id: str | None = None

    def take(self) -> Any:
        sb = self.pool.take()
        self.container_id = sb.container_id
        return sb


def discard(image: str, limits: Any, container_id: str | None) -> None:
    """After a hang: remove the sandbox that hung (it may be frozen, so it is never handed
    out again) and replace the pool, closing the old one in the background."""
    with _POOLS_LOCK:
        pool = _POOLS.pop((image, limits), None)
    if container_id:
        try:
            from patchswarm.sandbox.engine import client

            client().api.remove_container(container_id, force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - the reaper gets it later
            log.warning("could not remove the hung sandbox %s: %s", container_id[:12], exc)
    if pool is not None:
        threading.Thread(target=pool.close, daemon=True).start()


def verifier_for(conf: dict[str, Any]) -> Any:
    """One verifier object per settings per process (finding entry points is not free).

    ``conf`` is a verifier's ``settings()``: its constructor options plus facts such as its
    policy version. The verifier made here must report exactly those settings, or the task is
    refused: a worker running another version of a verifier must not hand out verdicts under
    the settings (and cache key) of this one."""
    import inspect
    import json

    k = json.dumps(conf, sort_keys=True)
    if k not in _VERIFIERS:
        name = conf["name"]
        cls = available().get(name)
        if cls is None:
            load(name)  # raises UnknownVerifier naming the known ones
        cls = cls.load()
        params = inspect.signature(cls).parameters
        verifier = cls(**{n: v for n, v in conf.items() if n != "name" and n in params})
        if verifier.settings() != conf:
            raise ValueError(f"this worker's {name} verifier has the settings "
                             f"{verifier.settings()}, the task asks for {conf} (another "
                             "version of patchswarm on the worker?)")
        _VERIFIERS[k] = verifier
    return _VERIFIERS[k]


def ensure_image(image: str, build: dict[str, Any] | None, config: WorkerConfig) -> str | None:
    """None when ``image`` is on this worker's engine (built here from ``build`` if this
    worker's configuration allows it, see ``task_schema.check_build``), else why it is not."""
    if image in _IMAGES_SEEN:
        return None
    from pathlib import Path

    from patchswarm.sandbox.images import (
        BaseRecipe,
        ensure_base_image,
        ensure_env_image,
        image_exists,
    )

    if image_exists(image):
        _IMAGES_SEEN.add(image)
        return None
    missing = f"the environment image {image} is not on this worker's Docker engine"
    if not build:
        return (f"{missing}; build it where the workers' engine can see it, or push it to a "
                "registry they pull from")
    why = check_build(build, config)
    if why is None and build.get("base_image") and not image_exists(build["base_image"]):
        why = f"the base image {build['base_image']} is not on this worker's engine"
    if why:
        return f"{missing}, and {why}"
    base = ensure_base_image(BaseRecipe(python=build.get("python") or "3.11",
                                        image=build.get("base_image")), log=log.info)
    tag = ensure_env_image(Path(build["repo"]), build["commit"], base,
                           build.get("install") or "", ca_bundle=bool(build.get("ca_bundle")),
                           log=log.info)
    if tag == image:
        _IMAGES_SEEN.add(image)
        return None
    return f"this worker built {tag} from the problem's repository, not {image}"
